//! Node lock: one breakfix at a time breaks or resets a node. The lock is a lease in a file
//! on the node (`<journal dir>.lock`, default `/var/lib/breakfix/journal.lock`), written
//! under `flock(1)` on a guard file so two engines cannot both take it.
//!
//! # Guarantees
//! - [`NodeLocks::acquire`] succeeds on every node or on none: a node held by another live
//!   engine makes it fail, naming that engine's command, PID, host and start time, after
//!   releasing the nodes it had already taken.
//! - A crashed owner does not leave a node stuck: its lease ([`LEASE`]) is renewed every
//!   [`RENEW`] only while it runs, so it expires within [`LEASE`] of the crash; a crashed
//!   owner on this same machine (its PID gone or reused) is recognized at once.
//!
//! # Caveats
//! - Expiry uses the node's clock, on both sides (`date +%s` on the node).
//! - An owner cut off from a node (network lost) keeps nothing on the node after [`LEASE`]:
//!   another engine may then take it while the first one still believes it holds it; the
//!   first one's renewals then log a warning.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::node::NodeSession;
use crate::transport::{sh_program, Transport};

/// How long a lock lives without renewal: 60 seconds.
pub const LEASE: Duration = Duration::from_secs(60);
/// How often a held lock is renewed: every 15 seconds.
pub const RENEW: Duration = Duration::from_secs(15);
/// Bound on one lock command.
const T: Duration = Duration::from_secs(15);

/// The lock file on the nodes.
pub fn lock_path() -> String {
    format!("{}.lock", super::remote_dir().trim_end_matches('/'))
}

/// Who holds a lock, as written in the lock file (one `key=value` per line).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Owner {
    /// Random token of one acquisition.
    pub token: String,
    /// The command line that holds it.
    pub command: String,
    /// Its process ID on its host.
    pub pid: u32,
    /// Its start time on its host (clock ticks since boot, /proc/PID/stat field 22): tells
    /// a reused PID apart.
    pub pid_start: u64,
    /// Its host: `/etc/machine-id` of the machine the engine runs on.
    pub host_id: String,
    /// Its host name, for messages.
    pub hostname: String,
    /// Seconds since the epoch when it was taken.
    pub since: u64,
    /// Seconds since the epoch (node clock) when the lease ends.
    pub expires: u64,
}

impl Owner {
    /// This process, running `command`.
    pub fn me(command: &str) -> Owner {
        let pid = std::process::id();
        Owner {
            token: format!("{:016x}", rand::random::<u64>()),
            command: command.replace(['\n', '\r'], " "),
            pid,
            pid_start: pid_start(pid).unwrap_or(0),
            host_id: local_machine_id(),
            hostname: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().to_string())
                .unwrap_or_default(),
            since: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
            expires: 0,
        }
    }

    /// Parses the lock file's `key=value` lines (unknown keys ignored).
    pub fn parse(text: &str) -> Owner {
        let mut o = Owner::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k {
                "token" => o.token = v.into(),
                "command" => o.command = v.into(),
                "pid" => o.pid = v.parse().unwrap_or(0),
                "pid_start" => o.pid_start = v.parse().unwrap_or(0),
                "host_id" => o.host_id = v.into(),
                "hostname" => o.hostname = v.into(),
                "since" => o.since = v.parse().unwrap_or(0),
                "expires" => o.expires = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        o
    }

    /// True when this owner ran on this machine and its process is gone (or the PID now
    /// belongs to another process).
    pub fn is_dead_here(&self) -> bool {
        if self.host_id.is_empty() || self.host_id != local_machine_id() || self.pid == 0 {
            return false;
        }
        match pid_start(self.pid) {
            None => true,
            Some(start) => self.pid_start != 0 && start != self.pid_start,
        }
    }

    /// `` `breakfix drill ...` (PID 42 on ws1, since 2026-12-02T10:00:00Z) ``
    pub fn describe(&self) -> String {
        let since = crate::duration::timestamp(self.since);
        format!(
            "`{}` (PID {} on {}, since {since})",
            self.command, self.pid, self.hostname
        )
    }

    /// The lock file's `key=value` lines for this owner, but `expires` (computed on the node).
    fn lines(&self) -> [String; 7] {
        [
            format!("token={}", self.token),
            format!("command={}", self.command),
            format!("pid={}", self.pid),
            format!("pid_start={}", self.pid_start),
            format!("host_id={}", self.host_id),
            format!("hostname={}", self.hostname),
            format!("since={}", self.since),
        ]
    }
}

/// `/etc/machine-id` of this machine ("" when unreadable).
fn local_machine_id() -> String {
    std::fs::read_to_string("/etc/machine-id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Start time of process `pid` (field 22 of /proc/PID/stat), `None` when it does not exist.
fn pid_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The script that takes or renews the lock for `me`; `takeover` is the token of a holder
/// proven dead. Exit 0 taken (stdout may hold `previous` and the former owner's lines when a
/// dead or expired lock was replaced), 3 held by another live owner (stdout: `held` and its
/// lines), 4 the guard stayed busy.
fn take_script(me: &Owner, takeover: &str) -> String {
    let path = lock_path();
    let lease = LEASE.as_secs().to_string();
    let lines = me.lines();
    let mut args = vec![
        "take",
        path.as_str(),
        me.token.as_str(),
        takeover,
        lease.as_str(),
    ];
    args.extend(lines.iter().map(String::as_str));
    sh_program(LOCK_SH, "lock", &args)
}

/// The node program behind the lock (take, renew, release), run with its values as arguments.
const LOCK_SH: &str = include_str!("sh/lock.sh");

/// Locks held on a set of nodes, renewed in the background until [`NodeLocks::release`]
/// (or drop, which stops renewing: the leases then expire).
pub struct NodeLocks {
    me: Owner,
    held: Vec<(String, Transport)>,
    renewals: Vec<tokio::task::JoinHandle<()>>,
    /// Former owners whose dead or expired locks were replaced (node, owner), for messages.
    pub replaced: Vec<(String, Owner)>,
}

impl NodeLocks {
    /// Takes the lock on every node in `sessions` for `command` (all or none).
    ///
    /// Errors: a node is held by another live engine ([`Error::Other`] naming the node and
    /// the holder's command, PID, host and start time), or the lock command fails on a node
    /// (e.g. no `flock`).
    pub async fn acquire<'a>(
        sessions: impl IntoIterator<Item = &'a NodeSession>,
        command: &str,
    ) -> Result<NodeLocks> {
        let mut locks = NodeLocks {
            me: Owner::me(command),
            held: Vec::new(),
            renewals: Vec::new(),
            replaced: Vec::new(),
        };
        for s in sessions {
            if let Err(e) = locks.take(s).await {
                locks.release().await;
                return Err(e);
            }
        }
        Ok(locks)
    }

    async fn take(&mut self, s: &NodeSession) -> Result<()> {
        let node = s.node.name.clone();
        let mut takeover = String::new();
        for _ in 0..2 {
            let script = take_script(&self.me, &takeover);
            let out = s.exec(&script, T).await?;
            match out.exit {
                Some(0) => {
                    if let Some(prev) = out.stdout.strip_prefix("previous\n") {
                        self.replaced.push((node.clone(), Owner::parse(prev)));
                    }
                    self.held.push((node.clone(), s.transport.clone()));
                    self.renewals.push(tokio::spawn(renew(
                        s.transport.clone(),
                        node,
                        self.me.clone(),
                    )));
                    return Ok(());
                }
                Some(3) => {
                    let holder = Owner::parse(out.stdout.strip_prefix("held\n").unwrap_or(""));
                    if holder.is_dead_here() && takeover.is_empty() {
                        takeover = holder.token.clone();
                        continue;
                    }
                    return Err(Error::other(format!(
                        "node {node} is held by another breakfix: {} (lock {}, lease ends in {} s unless renewed); wait for it to finish, or stop it (a stopped or crashed owner's lock expires within {} s)",
                        holder.describe(),
                        lock_path(),
                        holder.expires.saturating_sub(now_on(s).await.unwrap_or(holder.expires)),
                        LEASE.as_secs()
                    )));
                }
                _ => {
                    return Err(Error::Command {
                        host: s.transport.host().to_string(),
                        command: format!("take the breakfix lock {}", lock_path()),
                        exit: out.exit.unwrap_or(-1),
                        stderr: format!("{}{}", out.stdout.trim(), out.stderr.trim()),
                    })
                }
            }
        }
        Err(Error::other(format!(
            "node {node}: the lock changed hands while being taken"
        )))
    }

    /// Stops renewing and removes the locks (best effort: a lock that cannot be removed
    /// expires within [`LEASE`]).
    pub async fn release(mut self) {
        for r in self.renewals.drain(..) {
            r.abort();
        }
        let path = lock_path();
        let cmd = sh_program(LOCK_SH, "lock", &["release", &path, &self.me.token]);
        for (node, t) in self.held.drain(..) {
            if let Err(e) = t.exec(&cmd, T).await {
                tracing::warn!(
                    "{node}: releasing the breakfix lock failed ({e}); it expires by itself"
                );
            }
        }
    }
}

impl Drop for NodeLocks {
    fn drop(&mut self) {
        for r in &self.renewals {
            r.abort();
        }
    }
}

/// The node's clock (seconds since the epoch).
async fn now_on(s: &NodeSession) -> Option<u64> {
    s.exec("date +%s", T).await.ok()?.stdout.trim().parse().ok()
}

/// Renews `me`'s lease on the node every [`RENEW`] until aborted.
async fn renew(t: Transport, node: String, me: Owner) {
    loop {
        tokio::time::sleep(RENEW).await;
        match t.exec(&take_script(&me, ""), T).await {
            Ok(o) if o.exit == Some(0) => {}
            Ok(o) => tracing::warn!(
                "{node}: renewing the breakfix lock failed (exit {:?}): {}",
                o.exit,
                o.stdout.trim()
            ),
            Err(e) => tracing::warn!("{node}: renewing the breakfix lock failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_lines_round_trip() {
        let mut me = Owner::me("breakfix break x.yaml");
        me.expires = 99;
        let text = format!("{}\nexpires=99\n", me.lines().join("\n"));
        assert_eq!(Owner::parse(&text), me);
    }

    /// Runs lock.sh here (a real `sh`, `flock`, `sed`) on `file`; returns (exit, stdout).
    fn lock_sh(args: &[&str]) -> (Option<i32>, String) {
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(LOCK_SH)
            .arg("lock")
            .args(args)
            .output()
            .expect("run sh");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    }

    #[test]
    fn the_lock_program_takes_refuses_replaces_and_releases() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("sub/journal.lock");
        let f = f.to_str().expect("utf-8");
        // A takes a fresh lock (the directory is created); its lines and lease are written.
        let (code, out) = lock_sh(&["take", f, "A", "", "60", "token=A", "command=x 'y' $z"]);
        assert_eq!((code, out.as_str()), (Some(0), ""));
        let text = std::fs::read_to_string(f).expect("lock file");
        assert!(
            text.starts_with("token=A\ncommand=x 'y' $z\nexpires="),
            "{text}"
        );
        // B is refused while A's lease runs, and sees A's lines; a renewal by A is fine.
        let (code, out) = lock_sh(&["take", f, "B", "", "60", "token=B"]);
        assert_eq!(code, Some(3));
        assert!(out.starts_with("held\ntoken=A\n"), "{out}");
        assert_eq!(lock_sh(&["take", f, "A", "", "60", "token=A"]).0, Some(0));
        // B may take over when A is proven dead (its token named), and reports A.
        let (code, out) = lock_sh(&["take", f, "B", "A", "60", "token=B"]);
        assert_eq!(code, Some(0));
        assert!(out.starts_with("previous\ntoken=A\n"), "{out}");
        // An expired lease is replaced without naming it.
        std::fs::write(f, "token=C\nexpires=1\n").expect("write");
        let (code, out) = lock_sh(&["take", f, "B", "", "60", "token=B"]);
        assert_eq!(code, Some(0));
        assert!(out.starts_with("previous\ntoken=C\n"), "{out}");
        // Release by another token leaves the lock; by its holder removes it.
        assert_eq!(lock_sh(&["release", f, "A"]).0, Some(0));
        assert!(std::path::Path::new(f).exists());
        assert_eq!(lock_sh(&["release", f, "B"]).0, Some(0));
        assert!(!std::path::Path::new(f).exists());
    }

    #[test]
    fn a_lock_file_from_a_hostile_node_is_described_without_panicking() {
        // Found by the `journal` fuzz target: a start time past the year 9999 made the
        // timestamp's Display fail, which `format!` turns into a panic.
        let o = Owner::parse("since=99999999999999999\npid=1\n");
        assert!(
            o.describe().contains("99999999999999999 s after the epoch"),
            "{}",
            o.describe()
        );
        let o = Owner::parse(&format!("since={}\n", u64::MAX));
        assert!(o.describe().contains("s after the epoch"));
    }

    #[test]
    fn this_process_is_alive_and_a_gone_pid_is_dead() {
        let me = Owner::me("x");
        assert!(me.pid_start > 0);
        assert!(!me.is_dead_here(), "this very process");
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("wait");
        let gone = Owner {
            pid,
            pid_start: 1,
            ..me.clone()
        };
        assert!(gone.is_dead_here(), "reaped child {pid}");
        let elsewhere = Owner {
            host_id: "another-machine".into(),
            ..gone
        };
        assert!(
            !elsewhere.is_dead_here(),
            "cannot judge another host's PIDs"
        );
    }
}
