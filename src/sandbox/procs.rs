//! Processes: identifies the sandbox's host processes (by PID + start time, or by the marker
//! in a node's PID 1 environment), checks they are alive, and ends them: SIGTERM first (a
//! `systemd-nspawn` powers its node off), SIGKILL after a grace period. Never by name.

use std::fs;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::state::{ProcKind, Resource, State};

/// Environment variable set in every node's PID 1 (value: the sandbox id).
pub const MARKER_ENV: &str = "BREAKFIX_SANDBOX_ID";

/// Start time (clock ticks since boot, field 22 of /proc/PID/stat) and state letter of `pid`,
/// or `None` when there is no such process.
pub fn stat(pid: i32) -> Option<(u64, char)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces or parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state))
}

/// Start time of a live (not zombie) process, or `None`.
pub fn start_time(pid: i32) -> Option<u64> {
    match stat(pid) {
        Some((start, state)) if state != 'Z' && state != 'X' => Some(start),
        _ => None,
    }
}

/// True when `pid` is alive and is still the process that started at `start`.
pub fn is_same_alive(pid: i32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// PIDs of live processes whose parent is `ppid`.
pub fn children(ppid: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&p| {
            fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|t| {
                    let rest = t[t.rfind(')')? + 1..].to_string();
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(ppid)
        })
        .collect()
}

fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Live processes that belong to the sandbox `st` although they may not be recorded: every
/// process in a node's cgroup, node PID 1s carrying `BREAKFIX_SANDBOX_ID=<id>` in their environment, and `systemd-nspawn`
/// processes whose command line names one of the sandbox's node roots.
pub fn find_unrecorded(st: &State) -> Vec<(i32, u64)> {
    let marker = format!("{MARKER_ENV}={}", st.id);
    let roots: Vec<String> = st
        .nodes
        .iter()
        .map(|n| st.node_dir(&n.name).join("root").display().to_string())
        .collect();
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    // Whatever runs in a node's cgroup belongs to that node.
    for r in &st.resources {
        if let Resource::Cgroup { path } = r {
            for pid in super::cgroup::pids_in(path) {
                if let Some(start) = start_time(pid) {
                    if pid != me && !found.contains(&(pid, start)) {
                        found.push((pid, start));
                    }
                }
            }
        }
    }
    for pid in all_pids() {
        if pid == me {
            continue;
        }
        let Some(start) = start_time(pid) else {
            continue;
        };
        if found.contains(&(pid, start)) {
            continue;
        }
        let env = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let has_marker = env.split(|&b| b == 0).any(|kv| kv == marker.as_bytes());
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).to_string())
            .collect();
        let is_our_nspawn = args
            .first()
            .map(|a| a.ends_with("systemd-nspawn"))
            .unwrap_or(false)
            && args.iter().any(|a| {
                roots
                    .iter()
                    .any(|r| a == r || a.ends_with(&format!("={r}")))
            });
        if has_marker || is_our_nspawn {
            found.push((pid, start));
        }
    }
    found
}

/// True when every planned node of `st` has a recorded, live nspawn process.
pub fn all_nodes_running(st: &State) -> bool {
    !st.nodes.is_empty()
        && st.nodes.iter().all(|n| {
            st.processes_of(&n.name)
                .any(|(k, pid, start)| k == ProcKind::Nspawn && is_same_alive(pid, start))
        })
}

/// Every process of the sandbox that is alive now: recorded ones (PID + start time still
/// matching) plus those [`find_unrecorded`] finds. Deduplicated.
pub fn live_processes(st: &State) -> Vec<(i32, u64)> {
    let mut v: Vec<(i32, u64)> = st
        .resources
        .iter()
        .filter_map(|r| match r {
            Resource::Process {
                pid, start_time, ..
            } if is_same_alive(*pid, *start_time) => Some((*pid, *start_time)),
            _ => None,
        })
        .collect();
    for p in find_unrecorded(st) {
        if !v.contains(&p) {
            v.push(p);
        }
    }
    v
}

/// Sends `sig` to `pid` if it is still the process that started at `start`.
pub fn signal(pid: i32, start: u64, sig: Signal) {
    if is_same_alive(pid, start) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Waits until none of `procs` is alive, at most `timeout`. Returns those still alive.
pub async fn wait_gone(procs: &[(i32, u64)], timeout: Duration) -> Vec<(i32, u64)> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive: Vec<(i32, u64)> = procs
            .iter()
            .copied()
            .filter(|&(p, s)| is_same_alive(p, s))
            .collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Host helper commands (`mount`, `losetup`, `mkfs.ext4`, `ip`, ...) still working on the
/// sandbox's files or bridge: left running when an `up` was killed half-way. `down` lets them
/// finish first, so nothing they create appears after it cleaned up.
pub fn helpers_running(st: &State) -> Vec<(i32, u64)> {
    // With the separator: instance 0's /var/lib/breakfix/sandbox must not match instance 1's
    // /var/lib/breakfix/sandbox-1/... .
    let dir = format!("{}/", st.dir.display());
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    for pid in all_pids() {
        if pid == me {
            continue;
        }
        let Some(start) = start_time(pid) else {
            continue;
        };
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).to_string())
            .collect();
        let prog = args
            .first()
            .map(|a| a.rsplit('/').next().unwrap_or("").to_string())
            .unwrap_or_default();
        let helper = matches!(
            prog.as_str(),
            "mount" | "umount" | "losetup" | "mkfs.ext4" | "mke2fs" | "ip"
        );
        let bridge = super::bridge();
        let ours = args.iter().any(|a| a.contains(&dir) || *a == bridge);
        if helper && ours {
            found.push((pid, start));
        }
    }
    found
}

/// What [`end_all`] had to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ended {
    /// Processes that did not exit within the grace period and got SIGKILL.
    pub killed: Vec<i32>,
    /// Processes still alive after SIGKILL (normally none).
    pub left: Vec<i32>,
}

/// Ends every live process of the sandbox: SIGTERM to the `systemd-nspawn` processes (each
/// powers its node off cleanly), wait up to `grace`; then SIGKILL whatever is left (nspawn
/// and orphaned node PID 1s, which takes their whole PID namespace down) and wait again.
pub async fn end_all(st: &State, grace: Duration) -> Ended {
    let procs = live_processes(st);
    if procs.is_empty() {
        return Ended::default();
    }
    let mut term: Vec<(i32, u64)> = Vec::new();
    for &(pid, start) in &procs {
        // The load balancer ends on SIGTERM too (HAProxy's hard stop).
        let recorded_nspawn = st.resources.iter().any(|r| {
            matches!(r, Resource::Process { what: ProcKind::Nspawn | ProcKind::LoadBalancer, pid: p, start_time: s, .. } if *p == pid && *s == start)
        });
        let is_nspawn = recorded_nspawn
            || fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    c.split(|&b| b == 0)
                        .next()
                        .map(|a| a.ends_with(b"systemd-nspawn"))
                        .unwrap_or(false)
                })
                .unwrap_or(false);
        if is_nspawn {
            term.push((pid, start));
        }
    }
    for &(pid, start) in &term {
        signal(pid, start, Signal::SIGTERM);
    }
    let _ = wait_gone(&term, grace).await;
    // Everything still alive (including node PID 1s whose nspawn is gone) is killed.
    let mut left: Vec<(i32, u64)> = Vec::new();
    for p in procs.iter().copied().chain(find_unrecorded(st)) {
        if is_same_alive(p.0, p.1) && !left.contains(&p) {
            left.push(p);
        }
    }
    for &(pid, start) in &left {
        signal(pid, start, Signal::SIGKILL);
    }
    let still = wait_gone(&left, Duration::from_secs(10)).await;
    Ended {
        killed: left.iter().map(|(p, _)| *p).collect(),
        left: still.into_iter().map(|(p, _)| p).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_start_time() {
        let me = std::process::id() as i32;
        let start = start_time(me).expect("own stat");
        assert!(is_same_alive(me, start));
        assert!(!is_same_alive(me, start + 1));
    }
}
