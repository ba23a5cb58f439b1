//! Process identity from /proc: a PID plus its start time (so a reused PID is never mistaken for
//! a container), and the boot id (so state left from before a reboot is recognised as dead).

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// A process as recorded in a state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRef {
    pub pid: i32,
    /// Field 22 of /proc/<pid>/stat (clock ticks after boot).
    pub start_ticks: u64,
}

/// `(state, start_ticks)` from /proc/<pid>/stat.
fn stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: parse after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

impl ProcRef {
    /// The live process `pid` (None if it does not exist or is a zombie).
    pub fn of(pid: i32) -> Option<ProcRef> {
        match stat(pid)? {
            ('Z' | 'X', _) => None,
            (_, start_ticks) => Some(ProcRef { pid, start_ticks }),
        }
    }

    /// The process `pid`, even if it already exited and waits to be reaped (a zombie keeps its
    /// start time): for recording a child right after it was spawned.
    pub fn of_child(pid: i32) -> Option<ProcRef> {
        stat(pid).map(|(_, start_ticks)| ProcRef { pid, start_ticks })
    }

    /// True while this very process (same PID and start time) runs and is not a zombie.
    pub fn alive(&self) -> bool {
        ProcRef::of(self.pid).is_some_and(|p| p == *self)
    }

    /// Sends `sig` to the process if it is still this process.
    pub fn signal(&self, sig: Signal) -> bool {
        self.alive() && kill(Pid::from_raw(self.pid), sig).is_ok()
    }

    /// Sends `sig` to the process group this process leads (containers run in their own group).
    pub fn signal_group(&self, sig: Signal) -> bool {
        self.alive() && killpg(Pid::from_raw(self.pid), sig).is_ok()
    }
}

/// /proc/sys/kernel/random/boot_id, or "" where it cannot be read.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive() {
        let me = ProcRef::of(std::process::id() as i32);
        assert!(me.is_some_and(|p| p.alive()));
        let other = me.map(|p| ProcRef {
            start_ticks: p.start_ticks + 1,
            ..p
        });
        assert!(other.is_some_and(|p| !p.alive()));
    }
}
