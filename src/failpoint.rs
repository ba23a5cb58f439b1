//! Failpoints: crash the process on purpose at a numbered step, to prove that `reset`
//! restores a node whatever step a break was killed at.
//!
//! `BREAKFIX_CRASH_AT=k` (k >= 1) kills this process with SIGKILL at the k-th [`hit`]: no
//! unwinding, no destructors, no flushing, exactly as `kill -9` would. Hits are counted in
//! program order; the break of a scenario hits one after each journal write (local copy,
//! node copy) and one after each change a fault makes on a node. Unset or `0`: [`hit`] only
//! counts. `BREAKFIX_CRASH_LOG=FILE` appends one line per hit (`k name`), so a test learns how
//! many steps a break has.
//!
//! # Caveats
//! The count is per process; the crash matrix (`tests/integration/crash.rs`) runs one
//! `breakfix break` per k.

use std::sync::atomic::{AtomicU64, Ordering};

static HITS: AtomicU64 = AtomicU64::new(0);

/// Marks step `name` done; kills the process here when this is the `BREAKFIX_CRASH_AT`-th hit.
pub fn hit(name: &str) {
    let k = HITS.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some(log) = std::env::var_os("BREAKFIX_CRASH_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "{k} {name}");
        }
    }
    let at = std::env::var("BREAKFIX_CRASH_AT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if at != 0 && k == at {
        eprintln!("breakfix: failpoint {k} ({name}): BREAKFIX_CRASH_AT={at}, killing this process");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        // Not reached: SIGKILL cannot be caught.
        std::process::abort();
    }
}
