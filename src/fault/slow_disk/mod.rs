//! `slow_disk` fault: make a process's disk (etcd's, by default) slow, in one of three ways:
//!
//! - `fsync_delay`: a detached `strace` attached to the process delays every `fdatasync` and
//!   `fsync` it makes (`-e inject=...:delay_enter=`). Only that process is slowed; the delay
//!   ends when the process exits (a restarted etcd is not traced).
//! - `throttle`: a write IOPS (and/or bytes/s) limit for the block device under `path`, written
//!   into the process's cgroup (v2 `io.max`, or v1 `blkio.throttle.write_*_device`).
//! - `fio`: a background fio load (large writes, each followed by fsync) on the filesystem of
//!   `path`, competing with the process for the device.
//!
//! `auto` (the default) is `throttle` when the process's cgroup has a writable block-I/O
//! limit file, else `fsync_delay`.
//!
//! # Guarantees
//! - Everything that can be checked (the process, the tools, the device, the cgroup files,
//!   free space) is checked BEFORE the undo is journaled; nothing changes when a check fails.
//! - Background processes are started through `setsid` with a pid file under `/run/breakfix/`
//!   and a marker in their environment (`BREAKFIX_FAULT_ID=<id>`); the undo kills exactly the
//!   process whose pid file names it AND that carries the marker (a process that lost its pid
//!   file is still found by the marker), so it never kills an unrelated process that reused
//!   the PID. Undo is idempotent and safe after a partial inject.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{ActionCtx, FaultKind, Problem, Role, Touches, Undo, UndoKind};
use crate::duration::Dur;
use crate::node::NodeSession;
use crate::error::{Error, Result};
use crate::template::Renderer;
use crate::transport::{sh_program, shell_quote};

mod fio;
mod fsync_delay;
mod throttle;

pub use fio::{fio_bytes, fio_job};
use fio::fio_output;
pub use fsync_delay::strace_args;
pub use throttle::{io_max_values, parse_candidates, v1_value, CgroupCandidate};

/// Directory on the node for pid files, job files and logs of background helpers.
pub const RUN_DIR: &str = "/run/breakfix";
/// Name of the environment variable that marks breakfix's background helpers.
pub const MARKER_VAR: &str = "BREAKFIX_FAULT_ID";

const DEFAULT_PROCESS: &str = "etcd";
const DEFAULT_PATH: &str = "/var/lib/etcd";
/// fsync delay that makes `etcdctl check perf` fail (etcd fault reference, section 6).
const DEFAULT_DELAY: Duration = Duration::from_millis(300);
/// Write IOPS that make `etcdctl check perf` fail (etcd fault reference, section 6).
const DEFAULT_WRITE_IOPS: u64 = 20;
const DEFAULT_FIO_JOBS: u32 = 8;
const DEFAULT_FIO_BLOCK_SIZE: &str = "1M";
const DEFAULT_FIO_SIZE: &str = "32M";
const DEFAULT_FIO_RUNTIME: Duration = Duration::from_secs(2 * 3600);

/// How to slow the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlowDiskMode {
    /// `throttle` where the cgroup allows it, else `fsync_delay`.
    #[default]
    Auto,
    /// Delay the process's fdatasync/fsync calls with strace.
    FsyncDelay,
    /// Block-I/O limit in the process's cgroup.
    Throttle,
    /// Background fio load on the same filesystem.
    Fio,
}

impl SlowDiskMode {
    fn word(self) -> &'static str {
        match self {
            SlowDiskMode::Auto => "auto",
            SlowDiskMode::FsyncDelay => "fsync_delay",
            SlowDiskMode::Throttle => "throttle",
            SlowDiskMode::Fio => "fio",
        }
    }
}

crate::action_spec! {
    /// ```yaml
    /// - kind: slow_disk
    ///   mode: fsync_delay
    ///   process: etcd
    ///   delay: 300ms
    /// ```
    pub struct SlowDiskAction {
        /// `auto` (default), `fsync_delay`, `throttle` or `fio`.
        #[serde(default)]
        pub mode: SlowDiskMode,
        /// Process to slow, by exact command name (`comm`); the newest one wins. Default `etcd`.
        /// (`auto`, `fsync_delay`, `throttle`)
        #[serde(default)]
        pub process: Option<String>,
        /// Delay added before each fdatasync/fsync (`fsync_delay`, `auto`; default 300ms).
        #[serde(default)]
        pub delay: Option<Dur>,
        /// A watcher attaches the tracer again whenever `process` starts anew, so restarting
        /// the process does not end the fault: only stopping the watcher does (`fsync_delay`;
        /// default false).
        #[serde(default)]
        pub reattach: bool,
        /// A path on the disk to slow (`throttle`, `fio`, `auto`; default /var/lib/etcd).
        #[serde(default)]
        pub path: Option<String>,
        /// Write I/O operations per second (`throttle`, `auto`; default 20 when no
        /// `write_bps` is given).
        #[serde(default)]
        pub write_iops: Option<u64>,
        /// Write bytes per second (`throttle`, `auto`).
        #[serde(default)]
        pub write_bps: Option<u64>,
        /// Number of fio writers (`fio`; default 8).
        #[serde(default)]
        pub jobs: Option<u32>,
        /// fio block size, fio syntax (`fio`; default `1M`).
        #[serde(default)]
        pub block_size: Option<String>,
        /// Size of each writer's file, fio syntax (`fio`; default `32M`).
        #[serde(default)]
        pub size: Option<String>,
        /// fio stops by itself after this long (`fio`; default 2h).
        #[serde(default)]
        pub runtime: Option<Dur>,
        /// Directory for fio's files (`fio`; default `.breakfix-fio-<id>` at the top of the
        /// filesystem holding `path`). Removed by the undo.
        #[serde(default)]
        pub dir: Option<String>,
    }
}

/// A cgroup file write that undoes a limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CgroupWrite {
    /// The cgroup file.
    pub file: String,
    /// The line written back (the previous limit, or "no limit").
    pub restore: String,
}

/// How to undo a slow disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum SlowDiskUndo {
    /// Stop the strace that delays fsyncs.
    FsyncDelay {
        /// Pid file of the strace.
        pid_file: String,
        /// Value of `BREAKFIX_FAULT_ID` in the strace's environment.
        marker: String,
        /// The traced process (for messages).
        target_pid: u32,
    },
    /// Write the previous limits back.
    Throttle {
        /// `MAJ:MIN` of the device.
        device: String,
        /// Writes that restore the previous state, in order.
        writes: Vec<CgroupWrite>,
    },
    /// Stop fio, remove its files.
    Fio {
        /// Pid file of fio.
        pid_file: String,
        /// Value of `BREAKFIX_FAULT_ID` in fio's environment.
        marker: String,
        /// fio's job file.
        job_file: String,
        /// Directory of fio's data files (removed).
        dir: String,
    },
}


/// Where a helper's stderr goes: `<pid file without .pid>.log`.
fn err_log(pid_file: &str) -> String {
    format!("{}.log", pid_file.strip_suffix(".pid").unwrap_or(pid_file))
}

/// The node-side program that stops a marked helper and removes its files.
const STOP_MARKED: &str = include_str!("../sh/stop_marked.sh");

/// The command that stops the process named by `pid_file` if (and only if) it carries the
/// marker, plus any other process carrying the marker (one started but whose pid file was
/// lost), SIGTERM then SIGKILL after 5 s, and then removes `remove` (see
/// src/fault/sh/stop_marked.sh). Never fails.
pub fn stop_marked(pid_file: &str, marker: &str, remove: &[&str]) -> String {
    let m = format!("{MARKER_VAR}={marker}");
    let mut args = vec![pid_file, m.as_str()];
    args.extend_from_slice(remove);
    sh_program(STOP_MARKED, "stop_marked", &args)
}

/// A fresh id for pid files and markers.
fn new_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{nanos:x}")
}


/// The node-side program of this fault's checks, launches and waits (src/fault/sh/slow_disk.sh).
const PROGRAM: &str = include_str!("../sh/slow_disk.sh");

/// The command that runs one operation of [`PROGRAM`] with its values as arguments.
pub(super) fn program(args: &[&str]) -> String {
    sh_program(PROGRAM, "slow_disk", args)
}

/// The command that starts `command` (argv) detached (own session, no terminal, stdio
/// redirected, stderr to the helper's log), writes its PID to `pid_file` and marks it with
/// `marker` in its environment (`BREAKFIX_FAULT_ID=<marker>`).
pub fn detached(pid_file: &str, marker: &str, command: &[&str]) -> String {
    let m = format!("{MARKER_VAR}={marker}");
    let log = err_log(pid_file);
    let mut args = vec!["start", pid_file, m.as_str(), log.as_str(), RUN_DIR];
    args.extend_from_slice(command);
    program(&args)
}







impl SlowDiskAction {
    fn err(&self, ctx: &ActionCtx<'_>, label: &str, message: String) -> Error {
        Error::Fault {
            fault: label.to_string(),
            host: ctx.session.node.name.clone(),
            message,
        }
    }

    /// Fields that do not belong to `mode` (an error: they would silently do nothing).
    pub fn misplaced_fields(&self) -> Vec<&'static str> {
        let mut bad = Vec::new();
        let m = self.mode;
        let uses = |modes: &[SlowDiskMode]| {
            modes.contains(&m)
                || m == SlowDiskMode::Auto && modes.iter().any(|x| *x != SlowDiskMode::Fio)
        };
        use SlowDiskMode::*;
        if self.process.is_some() && !uses(&[FsyncDelay, Throttle]) {
            bad.push("process");
        }
        if self.delay.is_some() && !uses(&[FsyncDelay]) {
            bad.push("delay");
        }
        if self.reattach && m != FsyncDelay {
            bad.push("reattach");
        }
        if self.path.is_some() && !uses(&[Throttle, Fio]) {
            bad.push("path");
        }
        if self.write_iops.is_some() && !uses(&[Throttle]) {
            bad.push("write_iops");
        }
        if self.write_bps.is_some() && !uses(&[Throttle]) {
            bad.push("write_bps");
        }
        for (set, name) in [
            (self.jobs.is_some(), "jobs"),
            (self.block_size.is_some(), "block_size"),
            (self.size.is_some(), "size"),
            (self.runtime.is_some(), "runtime"),
            (self.dir.is_some(), "dir"),
        ] {
            if set && m != Fio {
                bad.push(name);
            }
        }
        bad
    }

    /// Every problem `validate` can see without the node: fields set for another mode, a zero
    /// `delay` or `jobs`, a `block_size`/`size` that is not a fio size (unless templated).
    pub fn static_problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self.mode_problem().into_iter().collect();
        if self.delay.is_some_and(|d| Duration::from(d).is_zero()) {
            out.push("`delay` must be more than 0".into());
        }
        if self.jobs == Some(0) {
            out.push("`jobs` must be at least 1".into());
        }
        for (field, v) in [("block_size", &self.block_size), ("size", &self.size)] {
            if let Some(v) = v.as_deref().filter(|v| !v.contains("{{")) {
                if fio_bytes(v).is_none() {
                    out.push(format!("`{field}: {v}` is not a size such as `4k` or `1M`"));
                }
            }
        }
        out
    }

    /// Fields set for another mode, as a message (`None`: all fine). Used by validation.
    pub fn mode_problem(&self) -> Option<String> {
        let bad = self.misplaced_fields();
        (!bad.is_empty()).then(|| {
            format!(
                "field(s) {} do not apply to `mode: {}`",
                bad.join(", "),
                self.mode.word()
            )
        })
    }

    fn process(&self) -> &str {
        self.process.as_deref().unwrap_or(DEFAULT_PROCESS)
    }

    fn path(&self) -> &str {
        self.path.as_deref().unwrap_or(DEFAULT_PATH)
    }

    /// Newest PID whose command name is exactly `process`.
    async fn find_pid(&self, ctx: &ActionCtx<'_>, label: &str) -> Result<u32> {
        let name = self.process();
        let out = ctx
            .session
            .exec(&format!("pgrep -xn {}", shell_quote(name)), ctx.timeout)
            .await?;
        match out.exit {
            Some(0) => out.stdout.trim().parse().map_err(|_| {
                self.err(
                    ctx,
                    label,
                    format!(
                        "`pgrep -xn {name}` printed `{}`, not a PID",
                        out.stdout.trim()
                    ),
                )
            }),
            Some(1) => Err(self.err(
                ctx,
                label,
                format!("no process named `{name}` is running (`pgrep -x {name}` found none)"),
            )),
            _ => Err(self.err(
                ctx,
                label,
                format!(
                    "`pgrep -xn {name}` failed: {} (is procps installed?)",
                    out.stderr.trim()
                ),
            )),
        }
    }





    /// Summary for plans and reports.
    pub fn summary(&self) -> String {
        match self.mode {
            SlowDiskMode::Fio => format!("fio load on the disk of {}", self.path()),
            SlowDiskMode::Throttle => format!(
                "throttle writes of {} on the disk of {}",
                self.process(),
                self.path()
            ),
            SlowDiskMode::FsyncDelay => format!(
                "delay fsyncs of {} by {}{}",
                self.process(),
                humantime::format_duration(self.delay.map(Into::into).unwrap_or(DEFAULT_DELAY)),
                if self.reattach {
                    ", again after every restart"
                } else {
                    ""
                }
            ),
            SlowDiskMode::Auto => format!("slow the disk of {}", self.process()),
        }
    }
}


impl UndoKind for SlowDiskUndo {
    /// Reverts on the node. Idempotent.
    async fn revert(&self, s: &NodeSession) -> Result<()> {
        let t = Duration::from_secs(60);
        match self {
            SlowDiskUndo::FsyncDelay {
                pid_file, marker, ..
            } => {
                let cmd = stop_marked(pid_file, marker, &[pid_file, &err_log(pid_file)]);
                s.run_ok(&cmd, t).await.map(|_| ())
            }
            SlowDiskUndo::Throttle { writes, .. } => {
                for w in writes {
                    // A cgroup that is gone took its limit with it.
                    let f = shell_quote(&w.file);
                    let cmd = format!(
                        "if [ -e {f} ]; then echo {} > {f}; fi",
                        shell_quote(&w.restore)
                    );
                    s.run_ok(&cmd, t).await?;
                }
                Ok(())
            }
            SlowDiskUndo::Fio {
                pid_file,
                marker,
                job_file,
                dir,
            } => {
                let cmd = stop_marked(
                    pid_file,
                    marker,
                    &[
                        dir,
                        pid_file,
                        job_file,
                        &err_log(pid_file),
                        &fio_output(pid_file),
                    ],
                );
                s.run_ok(&cmd, t).await.map(|_| ())
            }
        }
    }

    /// One line for `breakfix reset`.
    fn describe(&self) -> String {
        match self {
            SlowDiskUndo::FsyncDelay {
                pid_file,
                target_pid,
                ..
            } => {
                format!("stop the fsync delay on PID {target_pid} (strace in {pid_file})")
            }
            SlowDiskUndo::Throttle { device, writes } => {
                let files: Vec<&str> = writes.iter().map(|w| w.file.as_str()).collect();
                format!(
                    "lift the block-I/O limit on {device} ({})",
                    files.join(", ")
                )
            }
            SlowDiskUndo::Fio { pid_file, dir, .. } => {
                format!("stop fio ({pid_file}) and remove {dir}")
            }
        }
    }
}

impl FaultKind for SlowDiskAction {
    fn default_label(&self) -> String {
        self.summary()
    }

    fn problems(&self, _role: Role) -> Vec<Problem> {
        self.static_problems()
            .into_iter()
            .map(Problem::new)
            .collect()
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        vec![("does", self.summary())]
    }

    fn touches(&self) -> Touches {
        Touches {
            io_throttle: true,
            ..Touches::default()
        }
    }

    /// Checks, journals the undo (faults), then slows the disk.
    async fn apply(&self, ctx: &ActionCtx<'_>, label: &str) -> Result<()> {
        if let Some(problem) = self.mode_problem() {
            return Err(self.err(ctx, label, problem));
        }
        match self.mode {
            SlowDiskMode::Fio => self.apply_fio(ctx, label).await,
            SlowDiskMode::FsyncDelay => {
                let pid = self.find_pid(ctx, label).await?;
                self.apply_fsync_delay(ctx, label, pid).await
            }
            SlowDiskMode::Throttle => {
                let pid = self.find_pid(ctx, label).await?;
                match self.throttle_plan(ctx, label, pid).await? {
                    Ok(plan) => self.apply_throttle(ctx, label, plan).await,
                    Err(why) => Err(self.err(ctx, label, why)),
                }
            }
            SlowDiskMode::Auto => {
                let pid = self.find_pid(ctx, label).await?;
                match self.throttle_plan(ctx, label, pid).await? {
                    Ok(plan) => self.apply_throttle(ctx, label, plan).await,
                    Err(why) => {
                        tracing::info!(
                            "slow_disk auto on {}: no throttle ({why}); using fsync_delay",
                            ctx.session.node.name
                        );
                        self.apply_fsync_delay(ctx, label, pid).await
                    }
                }
            }
        }
    }

    /// Renders the string fields.
    fn render(&self, r: &Renderer) -> Result<Self> {
        let mut a = self.clone();
        a.process = self.process.as_deref().map(|x| r.text(x)).transpose()?;
        a.path = self.path.as_deref().map(|x| r.text(x)).transpose()?;
        a.block_size = self.block_size.as_deref().map(|x| r.text(x)).transpose()?;
        a.size = self.size.as_deref().map(|x| r.text(x)).transpose()?;
        a.dir = self.dir.as_deref().map(|x| r.text(x)).transpose()?;
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_marked_stops_only_the_marked_process_and_removes_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        let spawn = |marker: &str| {
            std::process::Command::new("sleep")
                .arg("60")
                .env(MARKER_VAR, marker)
                .spawn()
                .unwrap()
        };
        let mut marked = spawn("test-stop-marked-a");
        let mut other = spawn("test-stop-marked-b");
        let pid_file = format!("{d}/x.pid");
        std::fs::write(&pid_file, format!("{}\n", other.id())).unwrap();
        let junk = format!("{d}/junk");
        std::fs::create_dir(&junk).unwrap();
        // The pid file names the unmarked process: it must survive; the marked one (found by
        // its marker) must not.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(stop_marked(&pid_file, "test-stop-marked-a", &[&pid_file, &junk]))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        use std::os::unix::process::ExitStatusExt;
        // Already gone (a zombie until reaped): the program killed it, sleep's 60 s did not end.
        assert_eq!(marked.try_wait().unwrap().and_then(|s| s.signal()), Some(15));
        assert!(other.try_wait().unwrap().is_none(), "the unmarked process was stopped");
        other.kill().unwrap();
        let _ = other.wait();
        assert!(!std::path::Path::new(&pid_file).exists());
        assert!(!std::path::Path::new(&junk).exists());
    }

    #[test]
    fn detached_writes_the_pid_file_and_marks_the_environment_of_a_real_process() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        let pid_file = format!("{d}/run/x.pid");
        let marker = format!("test-detached-{}", std::process::id());
        // RUN_DIR may not be writable here: start with a run dir of the test's own.
        let cmd = detached(&pid_file, &marker, &["sleep", "30"]).replacen(
            &crate::transport::shell_quote(RUN_DIR),
            &crate::transport::shell_quote(&format!("{d}/run")),
            1,
        );
        let out = std::process::Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let mut pid = String::new();
        for _ in 0..50 {
            pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
            if !pid.trim().is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let pid = pid.trim().to_string();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(comm.trim(), "sleep", "the PID in the pid file is the command itself");
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let want = format!("{MARKER_VAR}={marker}");
        assert!(env.split(|b| *b == 0).any(|v| v == want.as_bytes()));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(stop_marked(&pid_file, &marker, &[&pid_file]))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(!std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists() || {
            // Reaped by init later; it must at least not run `sleep` with our marker.
            let e = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            !e.split(|b| *b == 0).any(|v| v == want.as_bytes())
        });
    }

    #[test]
    fn misplaced_fields_are_reported() {
        let a: SlowDiskAction = serde_saphyr::from_str("mode: fio\ndelay: 1s\n").expect("parse");
        assert_eq!(a.misplaced_fields(), vec!["delay"]);
        let a: SlowDiskAction =
            serde_saphyr::from_str("delay: 1s\nwrite_iops: 5\n").expect("parse");
        assert!(a.misplaced_fields().is_empty());
        let a: SlowDiskAction = serde_saphyr::from_str("mode: throttle\njobs: 2\n").expect("parse");
        assert_eq!(a.misplaced_fields(), vec!["jobs"]);
    }

    #[test]
    fn undo_round_trips_through_json() {
        let u = Undo::SlowDisk(SlowDiskUndo::Throttle {
            device: "7:0".into(),
            writes: vec![CgroupWrite {
                file: "/sys/fs/cgroup/blkio/blkio.throttle.write_iops_device".into(),
                restore: "7:0 0".into(),
            }],
        });
        let j = serde_json::to_string(&u).expect("json");
        assert!(
            j.contains("\"kind\":\"slow_disk\"") && j.contains("\"mode\":\"throttle\""),
            "{j}"
        );
        let back: Undo = serde_json::from_str(&j).expect("back");
        assert_eq!(back, u);
    }
}
