//! Self-test: the scenario matrix of docs/architecture.md run on a live cluster —
//! (1) baseline verify passes, (2) the break is confirmed and verify fails, (3) the reference
//! solution makes verify pass, (4) break + reset restores the baseline snapshot, (5) every
//! wrong fix leaves verify failing.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::engine::runner::{evaluate, EvalOptions, Patience, Sessions, Want};
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
    /// Row name: `baseline`, `break`, `solution`, `reset`, `wrong-fix: <name>`, `alternative-fix: <name>`.
    pub name: String,
    /// Outcome.
    pub status: RowStatus,
    /// Why (failing probes, snapshot differences, errors).
    pub message: String,
    /// Seconds spent.
    pub duration: f64,
}

pub(crate) fn row(name: &str, status: RowStatus, message: String, started: Instant) -> Row {
    Row {
        name: name.to_string(),
        status,
        message,
        duration: started.elapsed().as_secs_f64(),
    }
}

pub(crate) fn failing(v: &[Verdict]) -> String {
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

/// A snapshot taken once the cluster has settled.
/// - `target: None`: two snapshots 2 s apart agree, etcd answering (a static pod restarted by
///   the kubelet, or a controller recreating objects, changes it for a moment); gives up
///   after 40 s.
/// - `target: Some(baseline)` (after a reset): as soon as one shows no difference from the
///   baseline ([`snapshot::Snapshot::diff`]) (a real
///   kubelet and controller manager take tens of seconds to bring back pods after an outage,
///   and may hold still in between; a static pod restored to the manifest it crash-looped
///   under keeps the kubelet's back-off, up to 5 minutes); gives up after 5 min.
///
/// Either way the last snapshot is returned when it gives up: its differences are the row's
/// report.
pub(crate) async fn settle(
    target: Option<&snapshot::Snapshot>,
    plan: &Plan,
    sessions: &Sessions,
    inventory: &Inventory,
) -> crate::Result<snapshot::Snapshot> {
    let patience = if target.is_some() {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(40)
    };
    let deadline = Instant::now() + patience;
    let mut last = snapshot::take(plan, sessions, inventory).await?;
    let back = |s: &snapshot::Snapshot| target.is_some_and(|t| t.diff(s).is_empty());
    while !back(&last) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let next = snapshot::take(plan, sessions, inventory).await?;
        // A settled baseline is one etcd answered (verify has just passed, so it does; a
        // busy etcd that missed one snapshot's read is waited for, up to the patience).
        if target.is_none() && next == last && next.etcd_keys.is_some() {
            return Ok(next);
        }
        last = next;
    }
    Ok(last)
}

/// How long the matrix waits for verify to pass at the baseline and again after each reset: a
/// kube-apiserver restarted by a reset serves 403s and failing /readyz checks for tens of
/// seconds while its caches fill (seen on the sandbox: 30 s was not always enough).
const HEALTHY_WITHIN: Duration = Duration::from_secs(180);

/// Polls verify every 2 s until it passes (graded patiently) or [`HEALTHY_WITHIN`] is over;
/// returns the last verdicts (all PASS when the cluster is healthy).
pub(crate) async fn healthy(
    plan: &Plan,
    sessions: &Sessions,
    inventory: &Inventory,
) -> Vec<Verdict> {
    let deadline = Instant::now() + HEALTHY_WITHIN;
    wait_for_fix(
        plan,
        sessions,
        inventory,
        deadline,
        Duration::from_secs(2),
        true,
    )
    .await
    .0
}

/// After a reset: waits until the snapshot equals `before` (see [`settle`]) and, when verify
/// passed at the baseline (`baseline_ok`), until it passes again. Returns what is not back:
/// snapshot differences, then failing probes; empty when the cluster is back. The next row
/// starts from here, so a reset that never gets back fails its own row instead of the next.
///
/// Errors: no baseline snapshot, or a snapshot could not be taken.
pub(crate) async fn back_to_baseline(
    before: Option<&snapshot::Snapshot>,
    baseline_ok: bool,
    plan: &Plan,
    sessions: &Sessions,
    inventory: &Inventory,
) -> crate::Result<Vec<String>> {
    let Some(before) = before else {
        return Err(crate::Error::other("no baseline snapshot"));
    };
    let after = settle(Some(before), plan, sessions, inventory).await?;
    let mut left = before.diff(&after);
    if baseline_ok {
        let v = healthy(plan, sessions, inventory).await;
        if v.iter().any(|v| v.status != Status::Pass) {
            left.push(format!(
                "verify fails {}s after the reset: {}",
                HEALTHY_WITHIN.as_secs(),
                failing(&v)
            ));
        }
    }
    Ok(left)
}

/// The `reset` row from what [`back_to_baseline`] found. `after_failed_break` words it for the
/// reset that follows a break that did not take.
fn reset_row(left: crate::Result<Vec<String>>, after_failed_break: bool, t: Instant) -> Row {
    let (status, message) = match left {
        Err(e) if after_failed_break => (
            RowStatus::Error,
            format!("reset after the failed break failed: {e} (run `breakfix reset`)"),
        ),
        Err(e) => (RowStatus::Error, e.to_string()),
        Ok(d) => match (d.is_empty(), after_failed_break) {
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
        },
    };
    row("reset", status, message, t)
}

/// What both matrices (this one and the crash matrix) start from.
pub(crate) struct Baseline {
    /// The `baseline` row: PASS when verify passes after the setup steps, FAIL otherwise.
    pub row: Row,
    /// Verify passed.
    pub ok: bool,
    /// The settled node snapshot that a reset must bring back, or why none was taken.
    pub snapshot: crate::Result<snapshot::Snapshot>,
}

/// Runs the plan's setup steps (idempotent by contract), waits for verify to pass (as
/// patiently as after a reset: the previous scenario's reset may still be settling, e.g. a
/// restarted API server) and takes the settled snapshot.
///
/// Errors: a setup step failed; the row says which.
pub(crate) async fn baseline(
    plan: &Plan,
    sessions: &Sessions,
    inventory: &Inventory,
) -> Result<Baseline, Row> {
    let t = Instant::now();
    if let Err(e) = apply(&plan.setup, sessions, None, &plan.name, "setup", true).await {
        return Err(row("baseline", RowStatus::Error, e.to_string(), t));
    }
    let v = healthy(plan, sessions, inventory).await;
    let ok = v.iter().all(|v| v.status == Status::Pass);
    let row = if ok {
        row("baseline", RowStatus::Pass, String::new(), t)
    } else {
        let why = format!("verify fails before the break: {}", failing(&v));
        row("baseline", RowStatus::Fail, why, t)
    };
    let snapshot = settle(None, plan, sessions, inventory).await;
    Ok(Baseline { row, ok, snapshot })
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
        patience: Patience::Full,
    };
    let once = EvalOptions {
        want: Want::Pass,
        patience: Patience::Once,
    };

    // 1. baseline (after the setup steps, which are idempotent by contract)
    progress("baseline");
    let t = Instant::now();
    let base = match baseline(plan, sessions, inventory).await {
        Ok(b) => b,
        Err(r) => {
            rows.push(r);
            return rows;
        }
    };
    rows.push(base.row);
    let baseline_ok = base.ok;
    let before = match base.snapshot {
        Ok(s) => Some(s),
        Err(e) => {
            rows.push(row("snapshot", RowStatus::Error, e.to_string(), t));
            None
        }
    };

    // 2. break: confirm holds and verify fails (and no task's evidence passes yet)
    progress("break");
    let mut evidence_early: Vec<(usize, bool)> = Vec::new();
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
                back_to_baseline(before.as_ref(), baseline_ok, plan, sessions, inventory).await
            }
            .await;
            rows.push(reset_row(r, true, t));
            return rows;
        }
        Ok(_) => {
            for (i, e) in plan.evidence.iter().enumerate() {
                if !e.is_empty() {
                    let v = evaluate(e, sessions, inventory, once).await;
                    evidence_early.push((i, v.iter().all(|v| v.status == Status::Pass)));
                }
            }
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
        Err(e) => rows.push(row("solution", RowStatus::Fail, e.to_string(), t)),
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
    // 3b. each task graded by evidence: FAIL on the broken node, PASS after the solution
    for (i, early) in evidence_early {
        let t = Instant::now();
        let v = evaluate(&plan.evidence[i], sessions, inventory, patient).await;
        let name = format!("evidence: task {}", i + 1);
        rows.push(if early {
            row(
                &name,
                RowStatus::Fail,
                "the evidence passes on the broken node before anyone did anything: it cannot tell a learner who diagnosed from one who did not".into(),
                t,
            )
        } else if v.iter().all(|v| v.status == Status::Pass) {
            row(&name, RowStatus::Pass, "fails after the break, passes after the solution".into(), t)
        } else {
            row(
                &name,
                RowStatus::Fail,
                format!("the evidence still fails after the solution: {}", failing(&v)),
                t,
            )
        });
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
        back_to_baseline(before.as_ref(), baseline_ok, plan, sessions, inventory).await
    }
    .await;
    if r.is_err() {
        let _ = reset(sessions, journal, true).await;
    }
    rows.push(reset_row(r, false, t));

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
        let after = reset_after_fix(
            &Before {
                before: before.as_ref(),
                ok: baseline_ok,
            },
            plan,
            sessions,
            inventory,
            journal,
        )
        .await;
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
        rows.extend(after.row(&name, "wrong fix", t));
    }

    // 6. alternative fixes: correct fixes written another way; verify must pass after each
    for w in &plan.alternative_fixes {
        let name = format!("alternative-fix: {}", w.name);
        progress(&name);
        let t = Instant::now();
        let r = async {
            break_(plan, sessions, inventory, journal, true).await?;
            apply(
                &w.steps,
                sessions,
                None,
                &plan.name,
                "alternative fix",
                true,
            )
            .await?;
            Ok::<_, crate::Error>(
                wait_for_fix(
                    plan,
                    sessions,
                    inventory,
                    Instant::now() + plan.time_limit.min(Duration::from_secs(300)),
                    Duration::from_secs(1),
                    true,
                )
                .await,
            )
        }
        .await;
        let after = reset_after_fix(
            &Before {
                before: before.as_ref(),
                ok: baseline_ok,
            },
            plan,
            sessions,
            inventory,
            journal,
        )
        .await;
        match r {
            Err(e) => rows.push(row(&name, RowStatus::Error, e.to_string(), t)),
            Ok((v, Some(_))) if v.iter().all(|v| v.status == Status::Pass) => {
                rows.push(row(&name, RowStatus::Pass, String::new(), t))
            }
            Ok((v, _)) => rows.push(row(
                &name,
                RowStatus::Fail,
                format!(
                    "verify still fails after this correct fix{}: {}",
                    w.why
                        .as_deref()
                        .map(|y| format!(" ({y})"))
                        .unwrap_or_default(),
                    failing(&v)
                ),
                t,
            )),
        }
        rows.extend(after.row(&name, "alternative fix", t));
    }
    rows
}

/// The snapshot taken before the break and whether the baseline row passed.
struct Before<'a> {
    before: Option<&'a snapshot::Snapshot>,
    ok: bool,
}

/// How the reset after a wrong or alternative fix went.
struct AfterFix {
    undo: crate::Result<()>,
    left: Vec<String>,
}

/// Resets after a fix row and waits for the baseline: the next row (or scenario) starts from
/// it, and a real kubelet takes its time to bring static pods back after the reset. A reset
/// that never gets there is this row's failure (it would otherwise surface as a puzzling
/// difference rows later).
async fn reset_after_fix(
    baseline: &Before<'_>,
    plan: &Plan,
    sessions: &Sessions,
    inventory: &Inventory,
    journal: &Journal,
) -> AfterFix {
    let undo = reset(sessions, journal, true).await;
    let mut left = Vec::new();
    if undo.is_ok() && baseline.before.is_some() {
        match back_to_baseline(baseline.before, baseline.ok, plan, sessions, inventory).await {
            Ok(d) => left = d,
            Err(e) => left.push(e.to_string()),
        }
    }
    AfterFix {
        undo: undo.map(|_| ()),
        left,
    }
}

impl AfterFix {
    /// The `NAME (reset)` row when the reset failed or left differences.
    fn row(self, name: &str, what: &str, t: Instant) -> Option<Row> {
        match self.undo {
            Err(e) => Some(row(
                &format!("{name} (reset)"),
                RowStatus::Error,
                e.to_string(),
                t,
            )),
            Ok(()) if !self.left.is_empty() => Some(row(
                &format!("{name} (reset)"),
                RowStatus::Fail,
                format!(
                    "reset after this {what} leaves differences: {}",
                    self.left.join("; ")
                ),
                t,
            )),
            Ok(()) => None,
        }
    }
}
