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
use crate::transport::shell_quote;

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

/// fio's report file: `<pid file without .pid>.out`.
fn fio_output(pid_file: &str) -> String {
    format!("{}.out", pid_file.strip_suffix(".pid").unwrap_or(pid_file))
}

/// Where a helper's stderr goes: `<pid file without .pid>.log`.
fn err_log(pid_file: &str) -> String {
    format!("{}.log", pid_file.strip_suffix(".pid").unwrap_or(pid_file))
}

/// Shell that stops the process named by `pid_file` if (and only if) it carries the marker,
/// plus any other process carrying the marker (one started but whose pid file was lost);
/// SIGTERM, then SIGKILL after 5 s. Never fails.
pub fn kill_marked_script(pid_file: &str, marker: &str) -> String {
    let pf = shell_quote(pid_file);
    let m = shell_quote(&format!("{MARKER_VAR}={marker}"));
    format!(
        "bf_marked() {{ tr '\\0' '\\n' < /proc/$1/environ 2>/dev/null | grep -qxF -- {m}; }}; \
         bf_stop() {{ kill -TERM \"$1\" 2>/dev/null; i=0; while [ -d /proc/$1 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; \
         if [ -d /proc/$1 ] && bf_marked \"$1\"; then kill -KILL \"$1\" 2>/dev/null; fi; }}; \
         p=$(cat {pf} 2>/dev/null); \
         if [ -n \"$p\" ] && bf_marked \"$p\"; then bf_stop \"$p\"; fi; \
         for d in /proc/[0-9]*; do q=${{d#/proc/}}; if bf_marked \"$q\"; then bf_stop \"$q\"; fi; done; true"
    )
}

/// A fresh id for pid files and markers.
fn new_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{nanos:x}")
}

/// `strace` arguments that delay every fdatasync/fsync of `pid` by `delay`.
pub fn strace_args(pid: u32, delay: Duration) -> String {
    let usec = delay.as_micros().max(1);
    format!("strace -f -qq -o /dev/null -e trace=fdatasync,fsync -e inject=fdatasync,fsync:delay_enter={usec} -p {pid}")
}

/// Shell that starts `command` detached (own session, no terminal, stdio redirected),
/// writes its PID to `pid_file` and marks it with `marker` in its environment.
pub fn detached(pid_file: &str, marker: &str, command: &str) -> String {
    let inner = format!(
        "echo $$ > {}; exec env {MARKER_VAR}={} {command}",
        shell_quote(pid_file),
        shell_quote(marker)
    );
    format!(
        "mkdir -p {RUN_DIR} && rm -f {pf} && setsid -f sh -c {} </dev/null >/dev/null 2>{}",
        shell_quote(&inner),
        shell_quote(&err_log(pid_file)),
        pf = shell_quote(pid_file),
    )
}

/// What the cgroup probe found for one candidate file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupCandidate {
    /// `2` or `1`.
    pub version: u8,
    /// The file (v2: io.max; v1: blkio.throttle.write_iops_device).
    pub file: String,
    /// `ok`, `missing` or `read-only`.
    pub state: String,
}

/// Parses the probe script's `V2 <file> <state>` / `V1 <file> <state>` lines.
pub fn parse_candidates(out: &str) -> Vec<CgroupCandidate> {
    out.lines()
        .filter_map(|l| {
            let (v, rest) = l.split_once(' ')?;
            let version = match v {
                "V2" => 2,
                "V1" => 1,
                _ => return None,
            };
            let (file, state) = rest.rsplit_once(' ')?;
            Some(CgroupCandidate {
                version,
                file: file.to_string(),
                state: state.to_string(),
            })
        })
        .collect()
}

/// The limit line for `device` in a v2 `io.max`, as `key -> value`.
pub fn io_max_values(io_max: &str, device: &str) -> Vec<(String, String)> {
    io_max
        .lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(device)).then(|| {
                it.filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// The value for `device` in a v1 `blkio.throttle.*_device` file (`MAJ:MIN N` lines).
pub fn v1_value(contents: &str, device: &str) -> Option<String> {
    contents.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(device))
            .then(|| it.next().map(str::to_string))
            .flatten()
    })
}

/// Bytes of a fio size (`32M`, `1m`, `4k`, `512`; powers of 1024).
pub fn fio_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_lowercase() {
                'k' => 1 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                _ => return None,
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    num.parse::<u64>().ok().filter(|n| *n > 0).map(|n| n * mult)
}

/// The fio job file.
pub fn fio_job(dir: &str, jobs: u32, block_size: &str, size: &str, runtime: Duration) -> String {
    format!(
        "# breakfix slow_disk fault: competing writes, each followed by fsync\n\
         [global]\n\
         ioengine=psync\n\
         rw=write\n\
         bs={block_size}\n\
         size={size}\n\
         fsync=1\n\
         time_based=1\n\
         runtime={}\n\
         thread=1\n\
         directory={dir}\n\
         group_reporting=1\n\
         \n\
         [breakfix-slow-disk]\n\
         numjobs={jobs}\n",
        runtime.as_secs().max(1)
    )
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

    async fn apply_fsync_delay(&self, ctx: &ActionCtx<'_>, label: &str, pid: u32) -> Result<()> {
        let s = ctx.session;
        let delay: Duration = self.delay.map(Into::into).unwrap_or(DEFAULT_DELAY);
        if delay.is_zero() {
            return Err(self.err(ctx, label, "`delay` must be more than 0".into()));
        }
        let check = s
            .exec(
                &format!(
                    "command -v strace >/dev/null || {{ echo 'NO_STRACE'; exit 0; }}; \
                     command -v setsid >/dev/null || {{ echo 'NO_SETSID'; exit 0; }}; \
                     awk '/^TracerPid:/ {{print \"TRACER \" $2}}' /proc/{pid}/status"
                ),
                ctx.timeout,
            )
            .await?;
        let o = check.stdout.trim();
        if o.contains("NO_STRACE") {
            return Err(self.err(ctx, label, "strace is not installed on the node; `mode: fsync_delay` needs it (or use `mode: throttle` / `mode: fio`)".into()));
        }
        if o.contains("NO_SETSID") {
            return Err(self.err(
                ctx,
                label,
                "setsid (util-linux) is not installed on the node".into(),
            ));
        }
        match o.strip_prefix("TRACER ").map(str::trim) {
            Some("0") => {}
            Some(t) => {
                return Err(self.err(
                    ctx,
                    label,
                    format!("`{}` (PID {pid}) is already traced by PID {t} (another fsync_delay fault, or a debugger); a process has one tracer at most", self.process()),
                ))
            }
            None => return Err(self.err(ctx, label, format!("cannot read /proc/{pid}/status: {}", check.stderr.trim()))),
        }
        let id = new_id();
        let pid_file = format!("{RUN_DIR}/slow-disk-{id}.pid");
        let undo = SlowDiskUndo::FsyncDelay {
            pid_file: pid_file.clone(),
            marker: id.clone(),
            target_pid: pid,
        };
        if let Some(journal) = ctx.journal {
            journal
                .record(s, ctx.scenario, label, Undo::SlowDisk(undo.clone()))
                .await?;
        }
        s.run_ok(
            &detached(&pid_file, &id, &strace_args(pid, delay)),
            ctx.timeout,
        )
        .await?;
        crate::failpoint::hit("slow_disk: fsync tracer started");
        // Attached when the target's TracerPid is the strace.
        let pf = shell_quote(&pid_file);
        let log = shell_quote(&err_log(&pid_file));
        let verify = format!(
            "i=0; while [ $i -lt 100 ]; do p=$(cat {pf} 2>/dev/null); \
             if [ -n \"$p\" ]; then \
               t=$(awk '/^TracerPid:/ {{print $2}}' /proc/{pid}/status 2>/dev/null); \
               if [ \"$t\" = \"$p\" ]; then echo ATTACHED; exit 0; fi; \
               if [ ! -d /proc/$p ]; then echo 'strace exited:'; cat {log}; exit 3; fi; \
             fi; sleep 0.1; i=$((i+1)); done; echo 'strace did not attach within 10s:'; cat {log}; exit 4"
        );
        let out = s.exec(&verify, Duration::from_secs(30)).await?;
        if out.success() {
            return Ok(());
        }
        // Leave nothing behind on failure.
        let cleanup = undo.revert(s).await;
        let mut msg = format!(
            "could not attach strace to `{}` (PID {pid}): {}",
            self.process(),
            out.stdout.trim()
        );
        if let Err(e) = cleanup {
            msg.push_str(&format!("; cleaning up failed too: {e}"));
        }
        Err(self.err(ctx, label, msg))
    }

    /// Finds the device and a writable cgroup limit file. `Ok(Err(why))`: throttling is
    /// impossible here (why names the node, the process and every file tried).
    async fn throttle_plan(
        &self,
        ctx: &ActionCtx<'_>,
        label: &str,
        pid: u32,
    ) -> Result<std::result::Result<ThrottlePlan, String>> {
        let s = ctx.session;
        let path = self.path();
        let node = &s.node.name;
        let q = shell_quote(path);
        let dev = s
            .exec(
                &format!("findmnt -n -o SOURCE,MAJ:MIN --target {q}"),
                ctx.timeout,
            )
            .await?;
        if !dev.success() {
            return Err(self.err(
                ctx,
                label,
                format!(
                    "`findmnt --target {path}` failed: {} {}",
                    dev.stdout.trim(),
                    dev.stderr.trim()
                ),
            ));
        }
        let mut parts = dev.stdout.split_whitespace();
        let (Some(source), Some(majmin)) = (parts.next(), parts.next()) else {
            return Err(self.err(
                ctx,
                label,
                format!("`findmnt --target {path}` printed `{}`", dev.stdout.trim()),
            ));
        };
        if majmin.starts_with("0:") {
            return Ok(Err(format!(
                "{path} on {node} is on {source} ({majmin}), which is not a block device, so there is nothing to throttle; use `mode: fsync_delay`"
            )));
        }
        // Throttling works on whole disks: a partition's limit goes on its disk.
        let disk = s
            .exec(
                &format!("d={majmin}; if [ -e /sys/dev/block/$d/partition ]; then cat /sys/dev/block/$d/../dev; else echo $d; fi"),
                ctx.timeout,
            )
            .await?;
        let device = disk.stdout.trim().to_string();
        let device = if device.contains(':') {
            device
        } else {
            majmin.to_string()
        };
        let script = format!(
            "pid={pid}; \
             cg2=$(sed -n 's/^0:://p' /proc/$pid/cgroup); cg2=${{cg2%/}}; \
             cg1=$(sed -n 's/^[0-9]*:\\([^:]*,\\)\\{{0,1\\}}blkio\\(,[^:]*\\)\\{{0,1\\}}://p' /proc/$pid/cgroup); cg1=${{cg1%/}}; \
             st() {{ if [ ! -e \"$1\" ]; then echo missing; elif [ -w \"$1\" ]; then echo ok; else echo read-only; fi; }}; \
             if [ -n \"$(sed -n '/^0::/p' /proc/$pid/cgroup)\" ]; then \
               for m in $(findmnt -rn -t cgroup2 -o TARGET); do f=\"$m$cg2/io.max\"; echo \"V2 $f $(st \"$f\")\"; done; fi; \
             if [ -n \"$(sed -n '/^[0-9]*:\\([^:]*,\\)\\{{0,1\\}}blkio\\(,[^:]*\\)\\{{0,1\\}}:/p' /proc/$pid/cgroup)\" ]; then \
               for m in $(findmnt -rn -t cgroup -o TARGET,OPTIONS | awk '$2 ~ /(^|,)blkio(,|$)/ {{print $1}}'); do \
                 f=\"$m$cg1/blkio.throttle.write_iops_device\"; echo \"V1 $f $(st \"$f\")\"; done; fi; true"
        );
        let out = s.run_ok(&script, ctx.timeout).await?;
        let cands = parse_candidates(&out.stdout);
        let Some(pick) = cands.iter().find(|c| c.state == "ok").cloned() else {
            let tried: Vec<String> = cands
                .iter()
                .map(|c| {
                    let why = match (c.version, c.state.as_str()) {
                        (2, "missing") => {
                            "missing: the io controller is not enabled for this cgroup"
                        }
                        (_, "missing") => "missing",
                        (_, "read-only") => {
                            "read-only: the controller is not delegated to this node"
                        }
                        (_, other) => other,
                    };
                    format!("{} ({why})", c.file)
                })
                .collect();
            let tried = if tried.is_empty() {
                "none found (no cgroup2 or v1 blkio hierarchy is mounted)".to_string()
            } else {
                tried.join(", ")
            };
            return Ok(Err(format!(
                "cannot throttle block I/O on {node}: no writable cgroup limit file for `{}` (PID {pid}); tried: {tried}. \
                 A node whose cgroup controllers are not delegated to it (a container, such as the breakfix sandbox's nodes) \
                 cannot limit its own disk; use `mode: fsync_delay` instead",
                self.process()
            )));
        };
        Ok(Ok(ThrottlePlan {
            device,
            source: source.to_string(),
            pick,
        }))
    }

    async fn apply_throttle(
        &self,
        ctx: &ActionCtx<'_>,
        label: &str,
        plan: ThrottlePlan,
    ) -> Result<()> {
        let s = ctx.session;
        let iops = match (self.write_iops, self.write_bps) {
            (None, None) => Some(DEFAULT_WRITE_IOPS),
            (i, _) => i,
        };
        if iops == Some(0) || self.write_bps == Some(0) {
            return Err(self.err(
                ctx,
                label,
                "`write_iops` and `write_bps` must be more than 0".into(),
            ));
        }
        let dev = &plan.device;
        // (file, new line, restore line)
        let mut changes: Vec<(String, String, String)> = Vec::new();
        if plan.pick.version == 2 {
            let cur = s
                .run_ok(
                    &format!("cat {}", shell_quote(&plan.pick.file)),
                    ctx.timeout,
                )
                .await?;
            let prev = io_max_values(&cur.stdout, dev);
            let get = |k: &str| {
                prev.iter()
                    .find(|(kk, _)| kk == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| "max".into())
            };
            let mut new = dev.clone();
            let mut restore = dev.clone();
            if let Some(n) = iops {
                new.push_str(&format!(" wiops={n}"));
                restore.push_str(&format!(" wiops={}", get("wiops")));
            }
            if let Some(n) = self.write_bps {
                new.push_str(&format!(" wbps={n}"));
                restore.push_str(&format!(" wbps={}", get("wbps")));
            }
            changes.push((plan.pick.file.clone(), new, restore));
        } else {
            let iops_file = plan.pick.file.clone();
            let bps_file = iops_file.replace("write_iops_device", "write_bps_device");
            for (n, file) in [(iops, iops_file), (self.write_bps, bps_file)] {
                let Some(n) = n else { continue };
                let cur = s
                    .run_ok(&format!("cat {}", shell_quote(&file)), ctx.timeout)
                    .await?;
                let prev = v1_value(&cur.stdout, dev).unwrap_or_else(|| "0".into());
                changes.push((file, format!("{dev} {n}"), format!("{dev} {prev}")));
            }
        }
        let undo = SlowDiskUndo::Throttle {
            device: dev.clone(),
            writes: changes
                .iter()
                .map(|(f, _, r)| CgroupWrite {
                    file: f.clone(),
                    restore: r.clone(),
                })
                .collect(),
        };
        if let Some(journal) = ctx.journal {
            journal
                .record(s, ctx.scenario, label, Undo::SlowDisk(undo))
                .await?;
        }
        for (file, line, _) in &changes {
            let out = s
                .exec(
                    &format!("echo {} > {}", shell_quote(line), shell_quote(file)),
                    ctx.timeout,
                )
                .await?;
            if !out.success() {
                return Err(self.err(
                    ctx,
                    label,
                    format!(
                        "writing `{line}` to {file} (device {} of {}) failed: {}",
                        plan.device,
                        plan.source,
                        out.stderr.trim()
                    ),
                ));
            }
            crate::failpoint::hit("slow_disk: throttle written");
        }
        Ok(())
    }

    async fn apply_fio(&self, ctx: &ActionCtx<'_>, label: &str) -> Result<()> {
        let s = ctx.session;
        let path = self.path();
        let jobs = self.jobs.unwrap_or(DEFAULT_FIO_JOBS);
        let bs = self.block_size.as_deref().unwrap_or(DEFAULT_FIO_BLOCK_SIZE);
        let size = self.size.as_deref().unwrap_or(DEFAULT_FIO_SIZE);
        let runtime: Duration = self.runtime.map(Into::into).unwrap_or(DEFAULT_FIO_RUNTIME);
        if jobs == 0 {
            return Err(self.err(ctx, label, "`jobs` must be at least 1".into()));
        }
        if fio_bytes(bs).is_none() {
            return Err(self.err(
                ctx,
                label,
                format!("`block_size: {bs}` is not a size such as `4k` or `1M`"),
            ));
        }
        let Some(size_bytes) = fio_bytes(size) else {
            return Err(self.err(
                ctx,
                label,
                format!("`size: {size}` is not a size such as `32M` or `1G`"),
            ));
        };
        let q = shell_quote(path);
        let check = s
            .exec(
                &format!(
                    "command -v fio >/dev/null || {{ echo NO_FIO; exit 0; }}; command -v setsid >/dev/null || {{ echo NO_SETSID; exit 0; }}; \
                     echo \"MNT $(findmnt -n -o TARGET --target {q})\"; echo \"AVAIL $(df -Pk {q} | awk 'NR==2 {{print $4}}')\""
                ),
                ctx.timeout,
            )
            .await?;
        if check.stdout.contains("NO_FIO") {
            return Err(self.err(ctx, label, "fio is not installed on the node; `mode: fio` needs it (or use `mode: fsync_delay`)".into()));
        }
        if check.stdout.contains("NO_SETSID") {
            return Err(self.err(
                ctx,
                label,
                "setsid (util-linux) is not installed on the node".into(),
            ));
        }
        let field = |k: &str| {
            check
                .stdout
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let mnt = field("MNT ");
        if mnt.is_empty() {
            return Err(self.err(
                ctx,
                label,
                format!("{path} does not exist (findmnt found no filesystem for it)"),
            ));
        }
        let need = size_bytes.saturating_mul(jobs as u64);
        if let Ok(avail_k) = field("AVAIL ").parse::<u64>() {
            if avail_k.saturating_mul(1024) < need.saturating_add(need / 10) {
                return Err(self.err(
                    ctx,
                    label,
                    format!("{mnt} has {} MiB free; fio needs {} MiB ({jobs} jobs x {size}) plus 10%: lower `jobs` or `size`", avail_k / 1024, need >> 20),
                ));
            }
        }
        let id = new_id();
        let dir = match &self.dir {
            Some(d) => d.clone(),
            None => format!("{}/.breakfix-fio-{id}", mnt.trim_end_matches('/')),
        };
        // The undo removes the directory: it must be fio's own, so it must not exist yet.
        let exists = s
            .exec(
                &format!("[ -e {} ] && echo EXISTS; true", shell_quote(&dir)),
                ctx.timeout,
            )
            .await?;
        if exists.stdout.contains("EXISTS") || !dir.starts_with('/') {
            return Err(self.err(
                ctx,
                label,
                format!("fio's directory {dir} must be an absolute path that does not exist yet (the undo removes it)"),
            ));
        }
        let pid_file = format!("{RUN_DIR}/slow-disk-fio-{id}.pid");
        let job_file = format!("{RUN_DIR}/slow-disk-fio-{id}.fio");
        let undo = SlowDiskUndo::Fio {
            pid_file: pid_file.clone(),
            marker: id.clone(),
            job_file: job_file.clone(),
            dir: dir.clone(),
        };
        if let Some(journal) = ctx.journal {
            journal
                .record(s, ctx.scenario, label, Undo::SlowDisk(undo.clone()))
                .await?;
        }
        let result = async {
            s.run_ok(&format!("mkdir -p {RUN_DIR} {}", shell_quote(&dir)), ctx.timeout).await?;
            s.transport.write_file(&job_file, fio_job(&dir, jobs, bs, size, runtime).as_bytes(), Some(0o600), ctx.timeout).await?;
            let cmd = format!("fio --output={} {}", shell_quote(&fio_output(&pid_file)), shell_quote(&job_file));
            s.run_ok(&detached(&pid_file, &id, &cmd), ctx.timeout).await?;
            crate::failpoint::hit("slow_disk: fio started");
            // Running after 2 s: fio has laid out its files and started writing.
            let pf = shell_quote(&pid_file);
            let log = shell_quote(&err_log(&pid_file));
            let verify = format!(
                "sleep 2; p=$(cat {pf} 2>/dev/null); if [ -n \"$p\" ] && [ -d /proc/$p ]; then echo RUNNING; else echo 'fio exited:'; cat {log}; exit 3; fi"
            );
            let out = s.exec(&verify, Duration::from_secs(30)).await?;
            if out.success() {
                Ok(())
            } else {
                Err(Error::other(out.stdout.trim().to_string()))
            }
        }
        .await;
        if let Err(e) = result {
            let cleanup = undo.revert(s).await;
            let mut msg = format!("could not start fio: {e}");
            if let Err(c) = cleanup {
                msg.push_str(&format!("; cleaning up failed too: {c}"));
            }
            return Err(self.err(ctx, label, msg));
        }
        Ok(())
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
                "delay fsyncs of {} by {}",
                self.process(),
                humantime::format_duration(self.delay.map(Into::into).unwrap_or(DEFAULT_DELAY))
            ),
            SlowDiskMode::Auto => format!("slow the disk of {}", self.process()),
        }
    }
}

/// Where a throttle goes.
struct ThrottlePlan {
    /// `MAJ:MIN` of the whole disk.
    device: String,
    /// What findmnt reported (`/dev/loop0`).
    source: String,
    /// The writable limit file.
    pick: CgroupCandidate,
}

impl UndoKind for SlowDiskUndo {
    /// Reverts on the node. Idempotent.
    async fn revert(&self, s: &NodeSession) -> Result<()> {
        let t = Duration::from_secs(60);
        match self {
            SlowDiskUndo::FsyncDelay {
                pid_file, marker, ..
            } => {
                let cmd = format!(
                    "{}; rm -f {} {}",
                    kill_marked_script(pid_file, marker),
                    shell_quote(pid_file),
                    shell_quote(&err_log(pid_file))
                );
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
                let cmd = format!(
                    "{}; rm -rf -- {}; rm -f {} {} {} {}",
                    kill_marked_script(pid_file, marker),
                    shell_quote(dir),
                    shell_quote(pid_file),
                    shell_quote(job_file),
                    shell_quote(&err_log(pid_file)),
                    shell_quote(&fio_output(pid_file)),
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
    fn strace_command_delays_both_sync_calls_in_microseconds() {
        assert_eq!(
            strace_args(241, Duration::from_millis(200)),
            "strace -f -qq -o /dev/null -e trace=fdatasync,fsync -e inject=fdatasync,fsync:delay_enter=200000 -p 241"
        );
    }

    #[test]
    fn detached_writes_pid_file_and_marks_environment() {
        let c = detached("/run/breakfix/x.pid", "abc", "strace -p 1");
        assert!(c.contains("setsid -f sh -c"), "{c}");
        assert!(
            c.contains("echo $$ > /run/breakfix/x.pid; exec env BREAKFIX_FAULT_ID=abc strace -p 1"),
            "{c}"
        );
        assert!(
            c.ends_with("</dev/null >/dev/null 2>/run/breakfix/x.log"),
            "{c}"
        );
    }

    #[test]
    fn parses_cgroup_candidates() {
        let out = "V2 /sys/fs/cgroup/unified/system.slice/etcd.service/io.max missing\nV1 /sys/fs/cgroup/blkio/blkio.throttle.write_iops_device read-only\n";
        let c = parse_candidates(out);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].version, 2);
        assert_eq!(c[0].state, "missing");
        assert_eq!(
            c[1].file,
            "/sys/fs/cgroup/blkio/blkio.throttle.write_iops_device"
        );
        assert_eq!(c[1].state, "read-only");
    }

    #[test]
    fn reads_previous_limits() {
        let io = "8:0 rbps=max wbps=max riops=max wiops=max\n7:0 rbps=max wbps=1048576 riops=max wiops=20\n";
        let v = io_max_values(io, "7:0");
        assert!(v.contains(&("wiops".into(), "20".into())));
        assert!(v.contains(&("wbps".into(), "1048576".into())));
        assert!(io_max_values(io, "7:1").is_empty());
        assert_eq!(v1_value("7:0 20\n8:0 5\n", "8:0").as_deref(), Some("5"));
        assert_eq!(v1_value("", "8:0"), None);
    }

    #[test]
    fn fio_sizes() {
        assert_eq!(fio_bytes("32M"), Some(32 << 20));
        assert_eq!(fio_bytes("4k"), Some(4096));
        assert_eq!(fio_bytes("512"), Some(512));
        assert_eq!(fio_bytes("1x"), None);
        assert_eq!(fio_bytes("M"), None);
        let job = fio_job(
            "/var/lib/etcd/.breakfix-fio-1",
            8,
            "1M",
            "32M",
            Duration::from_secs(60),
        );
        assert!(
            job.contains("fsync=1\n")
                && job.contains("numjobs=8\n")
                && job.contains("thread=1\n")
                && job.contains("runtime=60\n"),
            "{job}"
        );
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
