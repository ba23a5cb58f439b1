//! Crash matrix (`breakfix test --crash-matrix`): for k = 1, 2, ... a `breakfix break` of the
//! scenario is killed with SIGKILL at its k-th failpoint (see [`crate::failpoint`]: after
//! each journal write and after each change a fault makes), then `reset` runs and the node
//! snapshot must equal the one taken before the break, and verify must pass again. The
//! matrix ends with the first k the break survives (it completed: one more row for that).
//!
//! # Guarantees
//! - Every row is one real process killed at one step: no unwinding, no destructors, no
//!   flushing (the failpoint raises SIGKILL on itself).
//! - The crashed process's node lock is taken over at once (its PID is gone on this machine),
//!   which the matrix thereby tests too.
//!
//! # Caveats
//! - The child is this same executable with the same state directory (`BREAKFIX_STATE_DIR`
//!   is inherited), so its local journal copies are the ones `reset` reads.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::selftest::{back_to_baseline, baseline, row, Row, RowStatus};
use super::{reset, Sessions};
use crate::inventory::Inventory;
use crate::journal::Journal;
use crate::plan::Plan;

/// How to start the `breakfix break` that crashes.
#[derive(Debug, Clone)]
pub struct BreakCommand {
    /// Scenario file.
    pub scenario: PathBuf,
    /// Inventory file.
    pub inventory: PathBuf,
    /// Graders directory, if given.
    pub graders: Option<PathBuf>,
    /// `--param` overrides.
    pub params: Vec<(String, String)>,
}

/// Most failpoints one break may have before the matrix gives up (a scenario with more
/// faults than this is cut there, with a FAIL row saying so).
const MAX_STEPS: u64 = 60;
/// Bound on one crashing break.
const BREAK_WITHIN: Duration = Duration::from_secs(600);

/// Runs the matrix for one planned scenario; returns one row per k.
pub async fn run(
    plan: &Plan,
    sessions: &Sessions,
    inventory: &Inventory,
    journal: &Journal,
    cmd: &BreakCommand,
    progress: &dyn Fn(&str),
) -> Vec<Row> {
    let mut rows = Vec::new();
    progress("baseline");
    let t = Instant::now();
    let base = match baseline(plan, sessions, inventory).await {
        Ok(b) => b,
        Err(r) => return vec![r],
    };
    let ok = base.ok;
    rows.push(base.row);
    if !ok {
        return rows;
    }
    let before = match base.snapshot {
        Ok(s) => s,
        Err(e) => {
            rows.push(row("snapshot", RowStatus::Error, e.to_string(), t));
            return rows;
        }
    };

    let log_dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            rows.push(row("crash", RowStatus::Error, format!("temp dir: {e}"), t));
            return rows;
        }
    };
    for k in 1..=MAX_STEPS {
        progress(&format!("crash at step {k}"));
        let t = Instant::now();
        let log = log_dir.path().join(format!("steps-{k}.log"));
        let ended = crash_once(cmd, k, &log).await;
        let step = std::fs::read_to_string(&log)
            .ok()
            .and_then(|s| s.lines().last().map(|l| l.to_string()))
            .and_then(|l| l.split_once(' ').map(|(_, n)| n.to_string()))
            .unwrap_or_else(|| "before the first step".into());
        let (name, completed) = match &ended {
            Ok(Ended::Killed) => (format!("crash {k}: {step}"), false),
            Ok(Ended::Completed) => (format!("no crash ({} steps)", k - 1), true),
            Ok(Ended::Failed(msg)) => {
                rows.push(row(
                    &format!("crash {k}"),
                    RowStatus::Error,
                    format!("the break failed instead of crashing: {msg}"),
                    t,
                ));
                (format!("crash {k}: reset"), false)
            }
            Err(e) => {
                rows.push(row(&format!("crash {k}"), RowStatus::Error, e.clone(), t));
                return rows;
            }
        };
        progress(&format!("{name}: reset"));
        let r = async {
            let locks = super::lock(sessions, true).await?;
            let r = reset(sessions, journal, true).await;
            locks.release().await;
            let r = r?;
            if !r.set_aside.is_empty() {
                return Err(crate::Error::other(format!(
                    "reset set aside {} entr(y/ies) of this very node: {}",
                    r.set_aside.len(),
                    r.set_aside[0].reason
                )));
            }
            back_to_baseline(Some(&before), true, plan, sessions, inventory).await
        }
        .await;
        rows.push(match r {
            Ok(left) if left.is_empty() => row(&name, RowStatus::Pass, String::new(), t),
            Ok(left) => row(
                &name,
                RowStatus::Fail,
                format!(
                    "reset after the crash leaves differences: {}",
                    left.join("; ")
                ),
                t,
            ),
            Err(e) => row(
                &name,
                RowStatus::Fail,
                format!("reset after the crash failed: {e}"),
                t,
            ),
        });
        if completed || rows.last().is_some_and(|r| r.status != RowStatus::Pass) {
            return rows;
        }
    }
    rows.push(row(
        "crash",
        RowStatus::Fail,
        format!("the break still had steps after {MAX_STEPS}; the matrix stops there"),
        Instant::now(),
    ));
    rows
}

/// How a crashing break ended.
enum Ended {
    /// Killed by its failpoint (SIGKILL).
    Killed,
    /// Exited 0: it had fewer than k steps.
    Completed,
    /// Exited otherwise (message: exit and stderr tail).
    Failed(String),
}

/// Runs `breakfix break` with `BREAKFIX_CRASH_AT=k`, logging its steps to `log`.
async fn crash_once(cmd: &BreakCommand, k: u64, log: &std::path::Path) -> Result<Ended, String> {
    use std::os::unix::process::ExitStatusExt;
    let exe = std::env::current_exe().map_err(|e| format!("this executable: {e}"))?;
    let mut c = tokio::process::Command::new(exe);
    c.arg("--quiet")
        .arg("break")
        .arg(&cmd.scenario)
        .arg("--inventory")
        .arg(&cmd.inventory);
    if let Some(g) = &cmd.graders {
        c.arg("--graders").arg(g);
    }
    for (n, v) in &cmd.params {
        c.arg("--param").arg(format!("{n}={v}"));
    }
    c.env("BREAKFIX_CRASH_AT", k.to_string())
        .env("BREAKFIX_CRASH_LOG", log)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(BREAK_WITHIN, c.output())
        .await
        .map_err(|_| format!("the break ran past {} s", BREAK_WITHIN.as_secs()))?
        .map_err(|e| format!("starting the break: {e}"))?;
    if out.status.signal() == Some(9) {
        return Ok(Ended::Killed);
    }
    if out.status.code() == Some(0) {
        return Ok(Ended::Completed);
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = err.lines().rev().take(5).collect();
    Ok(Ended::Failed(format!(
        "exit {:?}: {}",
        out.status.code(),
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    )))
}
