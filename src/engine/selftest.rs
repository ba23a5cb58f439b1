//! Self-test: the scenario matrix of docs/architecture.md run on a live cluster —
//! (1) baseline verify passes, (2) the break is confirmed and verify fails, (3) the reference
//! solution makes verify pass, (4) break + reset restores the baseline snapshot, (5) every
//! wrong fix leaves verify failing.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::engine::runner::{evaluate, EvalOptions, Sessions, Want};
use crate::engine::snapshot;
use crate::engine::verdict::{Status, Verdict};
use crate::engine::{apply, break_, reset, wait_for_fix};
use crate::inventory::Inventory;
use crate::journal::Journal;
use crate::plan::Plan;

/// Outcome of one matrix row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RowStatus {
    /// The row held.
    Pass,
    /// The row did not hold: the scenario is wrong.
    Fail,
    /// breakfix could not run the row (a failed earlier step, a node error).
    Error,
    /// Not run because an earlier row failed.
    Skip,
}

/// One row's result.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Row name: `baseline`, `break`, `solution`, `reset`, `wrong-fix: <name>`.
    pub name: String,
    /// Outcome.
    pub status: RowStatus,
    /// Why (failing probes, snapshot differences, errors).
    pub message: String,
    /// Seconds spent.
    pub duration: f64,
}

fn row(name: &str, status: RowStatus, message: String, started: Instant) -> Row {
    Row {
        name: name.to_string(),
        status,
        message,
        duration: started.elapsed().as_secs_f64(),
    }
}

fn failing(v: &[Verdict]) -> String {
    let f: Vec<String> = v
        .iter()
        .filter(|v| v.status != Status::Pass)
        .map(|v| {
            let why = v.failures().join("; ");
            let note = v.note.as_deref().unwrap_or("");
            format!(
                "{} {} ({}{}{})",
                v.probe,
                v.status.label(),
                why,
                if why.is_empty() || note.is_empty() {
                    ""
                } else {
                    "; "
                },
                note
            )
        })
        .collect();
    f.join(", ")
}

/// A snapshot taken once the cluster has settled: two snapshots 2 s apart agree (a static pod
/// restarted by the kubelet, or a controller recreating objects, changes it for a moment).
/// Gives up after ~40 s and returns the last one.
async fn settled(
    plan: &Plan,
    sessions: &Sessions,
    inventory: &Inventory,
) -> crate::Result<snapshot::Snapshot> {
    let mut last = snapshot::take(plan, sessions, inventory).await?;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let next = snapshot::take(plan, sessions, inventory).await?;
        if next == last {
            return Ok(next);
        }
        last = next;
    }
    Ok(last)
}

/// The `reset` row: the node after a reset compared with the baseline snapshot `before`.
/// `after_failed_break` words it for the reset that follows a break that did not take.
fn reset_row(
    after: crate::error::Result<snapshot::Snapshot>,
    before: Option<&snapshot::Snapshot>,
    after_failed_break: bool,
    t: Instant,
) -> Row {
    let (status, message) = match (after, before) {
        (Err(e), _) if after_failed_break => (
            RowStatus::Error,
            format!("reset after the failed break failed: {e} (run `breakfix reset`)"),
        ),
        (Err(e), _) => (RowStatus::Error, e.to_string()),
        (Ok(_), None) => (RowStatus::Error, "no baseline snapshot".into()),
        (Ok(after), Some(before)) => {
            let d = before.diff(&after);
            match (d.is_empty(), after_failed_break) {
                (true, true) => (RowStatus::Pass, "after the failed break".into()),
                (true, false) => (RowStatus::Pass, String::new()),
                (false, true) => (
                    RowStatus::Fail,
                    format!(
                        "reset after the failed break leaves differences: {}",
                        d.join("; ")
                    ),
                ),
                (false, false) => (
                    RowStatus::Fail,
                    format!("reset leaves differences: {}", d.join("; ")),
                ),
            }
        }
    };
    row("reset", status, message, t)
}

/// Runs the matrix for one planned scenario; always tries to leave the cluster reset.
/// `progress` gets a line per step.
pub async fn run(
    plan: &Plan,
    sessions: &Sessions,
    inventory: &Inventory,
    journal: &Journal,
    quiet: bool,
    progress: &dyn Fn(&str),
) -> Vec<Row> {
    let mut rows = Vec::new();
    let patient = EvalOptions {
        want: Want::Pass,
        patient: true,
    };
    let once = EvalOptions {
        want: Want::Pass,
        patient: false,
    };

    // 1. baseline (after the setup steps, which are idempotent by contract)
    progress("baseline");
    let t = Instant::now();
    if let Err(e) = apply(&plan.setup, sessions, None, &plan.name, "setup", true).await {
        rows.push(row(
            "baseline",
            RowStatus::Error,
            format!("setup failed: {e}"),
            t,
        ));
        return rows;
    }
    let v = evaluate(&plan.verify, sessions, inventory, patient).await;
    let baseline_ok = v.iter().all(|v| v.status == Status::Pass);
    rows.push(row(
        "baseline",
        if baseline_ok {
            RowStatus::Pass
        } else {
            RowStatus::Fail
        },
        if baseline_ok {
            String::new()
        } else {
            format!("verify fails before the break: {}", failing(&v))
        },
        t,
    ));
    let before = match settled(plan, sessions, inventory).await {
        Ok(s) => Some(s),
        Err(e) => {
            rows.push(row("snapshot", RowStatus::Error, e.to_string(), t));
            None
        }
    };

    // 2. break: confirm holds and verify fails
    progress("break");
    let t = Instant::now();
    match break_(plan, sessions, inventory, journal, quiet).await {
        Err(e) => {
            rows.push(row("break", RowStatus::Fail, e.to_string(), t));
            rows.push(row(
                "solution",
                RowStatus::Skip,
                "the break did not take".into(),
                Instant::now(),
            ));
            // A break that failed half-way still journaled the undo of every step it began:
            // put the node back now, and say so when that fails too.
            let t = Instant::now();
            let r = async {
                reset(sessions, journal, true).await?;
                let _ = evaluate(&plan.verify, sessions, inventory, patient).await;
                settled(plan, sessions, inventory).await
            }
            .await;
            rows.push(reset_row(r, before.as_ref(), true, t));
            return rows;
        }
        Ok(_) => {
            let v = evaluate(&plan.verify, sessions, inventory, once).await;
            if v.iter().all(|v| v.status == Status::Pass) {
                rows.push(row(
                    "break",
                    RowStatus::Fail,
                    "verify passes on the broken node: the grade cannot tell broken from fixed"
                        .into(),
                    t,
                ));
            } else {
                rows.push(row(
                    "break",
                    RowStatus::Pass,
                    format!("verify fails as intended: {}", failing(&v)),
                    t,
                ));
            }
        }
    }

    // 3. solution
    progress("solution");
    let t = Instant::now();
    match apply(&plan.solution, sessions, None, &plan.name, "solution", true).await {
        Err(e) => rows.push(row(
            "solution",
            RowStatus::Fail,
            format!("the solution failed to apply: {e}"),
            t,
        )),
        Ok(()) => {
            let (v, fixed) = wait_for_fix(
                plan,
                sessions,
                inventory,
                Instant::now() + plan.time_limit.min(Duration::from_secs(300)),
                Duration::from_secs(1),
                true,
            )
            .await;
            let ok = fixed.is_some() && v.iter().all(|v| v.status == Status::Pass);
            rows.push(row(
                "solution",
                if ok { RowStatus::Pass } else { RowStatus::Fail },
                if ok {
                    String::new()
                } else {
                    format!("verify still fails after the solution: {}", failing(&v))
                },
                t,
            ));
        }
    }
    if let Err(e) = reset(sessions, journal, true).await {
        rows.push(row(
            "reset",
            RowStatus::Error,
            format!("reset after the solution failed: {e}"),
            t,
        ));
        return rows;
    }

    // 4. break + reset -> baseline
    progress("reset");
    let t = Instant::now();
    let r = async {
        break_(plan, sessions, inventory, journal, true).await?;
        reset(sessions, journal, true).await?;
        // Give restarted services a moment, then compare once things stop moving.
        let _ = evaluate(&plan.verify, sessions, inventory, patient).await;
        settled(plan, sessions, inventory).await
    }
    .await;
    if r.is_err() {
        let _ = reset(sessions, journal, true).await;
    }
    rows.push(reset_row(r, before.as_ref(), false, t));

    // 5. wrong fixes: journaled so reset undoes them too
    for w in &plan.wrong_fixes {
        let name = format!("wrong-fix: {}", w.name);
        progress(&name);
        let t = Instant::now();
        let r = async {
            break_(plan, sessions, inventory, journal, true).await?;
            apply(
                &w.steps,
                sessions,
                Some(journal),
                &plan.name,
                "wrong fix",
                true,
            )
            .await?;
            Ok::<_, crate::Error>(evaluate(&plan.verify, sessions, inventory, patient).await)
        }
        .await;
        let undo = reset(sessions, journal, true).await;
        match r {
            Err(e) => rows.push(row(&name, RowStatus::Error, e.to_string(), t)),
            Ok(v) if v.iter().all(|v| v.status == Status::Pass) => rows.push(row(
                &name,
                RowStatus::Fail,
                format!(
                    "verify PASSES after this wrong fix{}",
                    w.why
                        .as_deref()
                        .map(|y| format!(" ({y})"))
                        .unwrap_or_default()
                ),
                t,
            )),
            Ok(v) => rows.push(row(
                &name,
                RowStatus::Pass,
                format!("verify fails as intended: {}", failing(&v)),
                t,
            )),
        }
        if let Err(e) = undo {
            rows.push(row(
                &format!("{name} (reset)"),
                RowStatus::Error,
                e.to_string(),
                t,
            ));
        }
    }
    rows
}
