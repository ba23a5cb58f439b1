//! `disk_fill` fault: fill the filesystem holding a path, to a use percentage or until only
//! so many bytes are free, with one filler file that the undo removes.
//!
//! The filler is `.breakfix-fill-<time>` at the top of that filesystem (its mount point), made
//! with `fallocate` (or written with zeros where the filesystem cannot allocate). Free space
//! is counted as the filesystem's size minus its used bytes (`df -B1`), i.e. INCLUDING the
//! blocks ext4 reserves for root: etcd and the kubelet run as root and may use them, so
//! `free: 0` leaves nothing even for root. (df's `Use%` counts the reserved blocks as used,
//! so it shows 100% a little before `use_percent: 100`.)
//!
//! # Guarantees
//! - The root filesystem (mount point `/`) is refused unless `allow_root_filesystem: true`.
//! - The filler's name is checked to be free BEFORE the undo (remove exactly that file) is
//!   journaled, so the undo never removes a file breakfix did not create.
//! - A fill that fails part-way leaves its partial file to the undo, which removes it.
//!
//! # Caveats
//! - A mount point with spaces in its name is not supported (df's columns are split on
//!   whitespace); the fault then fails before journaling anything.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{ActionCtx, FaultKind, Problem, Role, Touches, Undo, UndoKind};
use crate::node::NodeSession;
use crate::error::{Error, Result};
use crate::template::Renderer;
use crate::transport::sh_program;

/// The node-side program (measure, fill), run with its values as arguments.
const PROGRAM: &str = include_str!("sh/disk_fill.sh");
/// Path filled when `path:` is not given: etcd's data-dir (kubeadm's default).
const DEFAULT_PATH: &str = "/var/lib/etcd";
/// Bound of the fill itself (allocating is instant; writing zeros on a slow disk is not).
const FILL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

crate::action_spec! {
    /// ```yaml
    /// - kind: disk_fill
    ///   path: /var/lib/etcd     # the filesystem holding this path (default /var/lib/etcd)
    ///   free: 16M               # leave 16 MiB free; or `use_percent: 98`
    /// ```
    pub struct DiskFillAction {
        /// A path on the filesystem to fill (default `/var/lib/etcd`).
        #[serde(default)]
        pub path: Option<String>,
        /// Bytes to leave free: a number with an optional `K`, `M`, `G` or `T` suffix (powers
        /// of 1024), e.g. `16M`; `0` fills it completely. Give this or `use_percent`.
        #[serde(default)]
        pub free: Option<String>,
        /// Fill until this percentage of the filesystem's size is used (1 to 100).
        #[serde(default)]
        pub use_percent: Option<u8>,
        /// Allow filling the root filesystem (default `false`: a full `/` can take the whole
        /// node down, SSH logins included).
        #[serde(default)]
        pub allow_root_filesystem: bool,
    }
}

/// The journaled undo: remove the filler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskFillUndo {
    /// Absolute path of the filler file.
    pub file: String,
    /// Bytes it was to hold.
    pub bytes: u64,
}

/// The filesystem holding a path, as `df -B1` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filesystem {
    /// Filesystem type, e.g. `ext4`.
    pub fstype: String,
    /// Size in bytes.
    pub size: u64,
    /// Used bytes.
    pub used: u64,
    /// Bytes available to unprivileged users (size - used - reserved).
    pub avail: u64,
    /// Mount point.
    pub mount_point: String,
}

/// Parses the program's `measure` line (`<fstype> <size> <used> <avail> <mount point>`).
pub fn parse_measure(line: &str) -> Option<Filesystem> {
    let mut f = line.split_whitespace();
    let fs = Filesystem {
        fstype: f.next()?.to_string(),
        size: f.next()?.parse().ok()?,
        used: f.next()?.parse().ok()?,
        avail: f.next()?.parse().ok()?,
        mount_point: f.next()?.to_string(),
    };
    f.next().is_none().then_some(fs)
}

/// Bytes of a size such as `0`, `512`, `16M`, `2G` (powers of 1024).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return None,
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// What to allocate: the bytes above what `free`/`use_percent` leaves (0 when the filesystem
/// is already that full).
pub fn bytes_to_fill(fs: &Filesystem, free: Option<u64>, use_percent: Option<u8>) -> u64 {
    let free_now = fs.size.saturating_sub(fs.used);
    match (free, use_percent) {
        (Some(keep), _) => free_now.saturating_sub(keep),
        (None, Some(p)) => (fs.size as u128 * p as u128 / 100)
            .saturating_sub(fs.used as u128)
            .min(free_now as u128) as u64,
        (None, None) => 0,
    }
}

impl DiskFillAction {
    fn path(&self) -> &str {
        self.path.as_deref().unwrap_or(DEFAULT_PATH)
    }

    fn target_words(&self) -> String {
        match (&self.free, self.use_percent) {
            (Some(f), _) => format!("{f} free"),
            (None, Some(p)) => format!("{p}% used"),
            (None, None) => "?".into(),
        }
    }

    fn err(&self, ctx: &ActionCtx<'_>, label: &str, message: String) -> Error {
        Error::Fault {
            fault: label.to_string(),
            host: ctx.session.node.name.clone(),
            message,
        }
    }
}

impl FaultKind for DiskFillAction {
    fn default_label(&self) -> String {
        format!(
            "fill the filesystem of {} to {}",
            self.path(),
            self.target_words()
        )
    }

    fn problems(&self, _role: Role) -> Vec<Problem> {
        let mut out = Vec::new();
        match (&self.free, self.use_percent) {
            (Some(_), Some(_)) => {
                out.push(Problem::new("give `free:` or `use_percent:`, not both"))
            }
            (None, None) => out.push(Problem::new(
                "needs `free:` (bytes to leave, e.g. `16M`) or `use_percent:` (e.g. `98`)",
            )),
            (Some(f), None) if !f.contains("{{") && parse_size(f).is_none() => {
                out.push(Problem::new(format!(
                    "`free: {f}` is not a size such as `0`, `512K`, `16M` or `2G`"
                )))
            }
            (None, Some(p)) if !(1..=100).contains(&p) => out.push(Problem::new(format!(
                "`use_percent: {p}` must be from 1 to 100"
            ))),
            _ => {}
        }
        if let Some(p) = &self.path {
            if !p.starts_with('/') && !p.contains("{{") {
                out.push(Problem::new(format!(
                    "`path: {p}` must be an absolute path on the node"
                )));
            }
        }
        out
    }

    fn render(&self, r: &Renderer) -> Result<Self> {
        let mut a = self.clone();
        a.path = self.path.as_deref().map(|x| r.text(x)).transpose()?;
        a.free = self.free.as_deref().map(|x| r.text(x)).transpose()?;
        Ok(a)
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        let mut d = vec![("does", self.default_label())];
        if self.allow_root_filesystem {
            d.push(("root filesystem", "allowed".into()));
        }
        d
    }

    fn touches(&self) -> Touches {
        Touches {
            fillers: vec![self.path().to_string()],
            ..Touches::default()
        }
    }

    /// Measures, checks, journals the filler's removal (faults), then allocates it.
    async fn apply(&self, ctx: &ActionCtx<'_>, label: &str) -> Result<()> {
        if let Some(p) = self.problems(Role::Fault).into_iter().next() {
            return Err(self.err(ctx, label, p.message));
        }
        let free = match &self.free {
            Some(f) => Some(parse_size(f).ok_or_else(|| {
                self.err(
                    ctx,
                    label,
                    format!("`free: {f}` is not a size such as `16M`"),
                )
            })?),
            None => None,
        };
        let s = ctx.session;
        let path = self.path();
        let out = s
            .exec(
                &sh_program(PROGRAM, "disk_fill", &["measure", path]),
                ctx.timeout,
            )
            .await?;
        if !out.success() {
            return Err(self.err(
                ctx,
                label,
                format!(
                    "cannot measure the filesystem of {path}: {}",
                    out.stderr.trim()
                ),
            ));
        }
        let fs = parse_measure(out.stdout.trim()).ok_or_else(|| {
            self.err(
                ctx,
                label,
                format!("`df` printed `{}`, not one filesystem", out.stdout.trim()),
            )
        })?;
        if fs.mount_point == "/" && !self.allow_root_filesystem {
            return Err(self.err(
                ctx,
                label,
                format!(
                    "{path} is on the root filesystem ({}, {} bytes): refusing to fill it (a full / can take the whole node down); mount a filesystem of its own there, or set `allow_root_filesystem: true`",
                    fs.fstype, fs.size
                ),
            ));
        }
        let bytes = bytes_to_fill(&fs, free, self.use_percent);
        if bytes == 0 {
            tracing::info!(
                "disk_fill on {}: the filesystem of {path} is already at {} (used {} of {} bytes); nothing to fill",
                s.node.name,
                self.target_words(),
                fs.used,
                fs.size
            );
            return Ok(());
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let file = format!(
            "{}/.breakfix-fill-{nanos}",
            fs.mount_point.trim_end_matches('/')
        );
        let exists = s
            .exec(
                &format!(
                    "test -e {0} || test -L {0}",
                    crate::transport::shell_quote(&file)
                ),
                ctx.timeout,
            )
            .await?;
        if exists.success() {
            return Err(self.err(ctx, label, format!("{file} already exists; try again")));
        }
        if let Some(journal) = ctx.journal {
            let undo = DiskFillUndo {
                file: file.clone(),
                bytes,
            };
            journal
                .record(s, ctx.scenario, label, Undo::DiskFill(undo))
                .await?;
        }
        let size = bytes.to_string();
        let out = s
            .exec(
                &sh_program(PROGRAM, "disk_fill", &["fill", &file, &size]),
                FILL_TIMEOUT,
            )
            .await?;
        crate::failpoint::hit("disk_fill: filled");
        if !out.success() {
            return Err(self.err(
                ctx,
                label,
                format!(
                    "could not allocate {bytes} bytes in {file}: {}",
                    out.stderr.trim()
                ),
            ));
        }
        Ok(())
    }
}

impl UndoKind for DiskFillUndo {
    /// Removes the filler (nothing if it is gone already).
    async fn revert(&self, s: &NodeSession) -> Result<()> {
        s.run_ok(
            &format!("rm -f -- {}", crate::transport::shell_quote(&self.file)),
            std::time::Duration::from_secs(60),
        )
        .await
        .map(|_| ())
    }

    fn describe(&self) -> String {
        format!("remove the filler {} ({} bytes)", self.file, self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs(size: u64, used: u64, avail: u64) -> Filesystem {
        Filesystem {
            fstype: "ext4".into(),
            size,
            used,
            avail,
            mount_point: "/var/lib/etcd".into(),
        }
    }

    #[test]
    fn sizes_parse_with_binary_suffixes_and_zero() {
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("16M"), Some(16 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("1T"), Some(1 << 40));
        assert_eq!(parse_size("16MB"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("99999999999999999999T"), None);
    }

    #[test]
    fn df_line_parses_and_extra_columns_are_refused() {
        let line = "ext4 1020702720 147456 968110080 /var/lib/etcd";
        let f = parse_measure(line).unwrap();
        assert_eq!(f.mount_point, "/var/lib/etcd");
        assert_eq!((f.size, f.used, f.avail), (1020702720, 147456, 968110080));
        assert_eq!(parse_measure("ext4 1 2 3 /mnt/with space"), None);
        assert_eq!(parse_measure("Type 1B-blocks Used Avail Mounted"), None);
    }

    #[test]
    fn fill_counts_reserved_blocks_as_free_and_never_goes_negative() {
        // 1000 bytes, 100 used, 850 available (50 reserved for root).
        let f = fs(1000, 100, 850);
        assert_eq!(bytes_to_fill(&f, Some(0), None), 900);
        assert_eq!(bytes_to_fill(&f, Some(200), None), 700);
        assert_eq!(bytes_to_fill(&f, Some(5000), None), 0);
        assert_eq!(bytes_to_fill(&f, None, Some(50)), 400);
        assert_eq!(bytes_to_fill(&f, None, Some(100)), 900);
        assert_eq!(bytes_to_fill(&f, None, Some(5)), 0);
    }

    #[test]
    fn settings_are_checked_before_the_node() {
        let a: DiskFillAction = serde_saphyr::from_str("{ free: 16M, use_percent: 90 }").unwrap();
        assert_eq!(a.problems(Role::Fault).len(), 1);
        let a: DiskFillAction = serde_saphyr::from_str("{ path: var/lib }").unwrap();
        let p: Vec<String> = a
            .problems(Role::Fault)
            .into_iter()
            .map(|p| p.message)
            .collect();
        assert_eq!(p.len(), 2, "{p:?}");
        let a: DiskFillAction = serde_saphyr::from_str("{ use_percent: 101 }").unwrap();
        assert!(a.problems(Role::Fault)[0].message.contains("1 to 100"));
        let a: DiskFillAction = serde_saphyr::from_str("{ free: '{{ params.keep }}' }").unwrap();
        assert!(a.problems(Role::Fault).is_empty());
        assert_eq!(
            a.default_label(),
            "fill the filesystem of /var/lib/etcd to {{ params.keep }} free"
        );
    }

    #[test]
    fn the_program_measures_and_fills_a_real_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().to_str().unwrap();
        let run = |args: &[&str]| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(sh_program(PROGRAM, "disk_fill", args))
                .output()
                .unwrap()
        };
        let out = run(&["measure", p]);
        assert!(out.status.success(), "{out:?}");
        let f = parse_measure(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
        assert!(f.size > 0 && f.size >= f.used);
        let file = format!("{p}/.breakfix-fill-1");
        let out = run(&["fill", &file, "65536"]);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 65536);
        let out = run(&["fill", &file, "1"]);
        assert_eq!(out.status.code(), Some(3), "an existing file is refused");
        assert_eq!(
            std::fs::metadata(&file).unwrap().len(),
            65536,
            "and left as it was"
        );
    }
}
