//! Engine: connect, break, confirm, wait for the fix, verify, grade, reset.
//!
//! Each phase is a function over a [`Plan`] and connected [`Sessions`]; the CLI strings them
//! together (`run` = all of them, `break` = up to confirm, `check` = verify once).

pub mod crashtest;
pub mod hints;
pub mod history;
pub mod live;
pub mod runner;
pub mod score;
pub mod selftest;
pub mod session;
pub mod snapshot;
pub mod verdict;

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{Error, Result};
use crate::fault::ActionCtx;
use crate::inventory::Inventory;
use crate::journal::Journal;
use crate::plan::{Plan, PlannedAction};
pub use runner::{EvalOptions, Patience, Sessions, Want};
use verdict::{Status, Verdict};

/// Default timeout for one action's command: 60 seconds.
pub const ACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// A spinner on stderr (hidden when stderr is not a terminal or `quiet`).
pub fn spinner(msg: impl Into<String>, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner:.cyan} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.enable_steady_tick(Duration::from_millis(100));
    pb.set_message(msg.into());
    pb
}

/// Connects to every node the plan touches, concurrently.
pub async fn connect(plan: &Plan, inventory: &Inventory, quiet: bool) -> Result<Sessions> {
    let names = plan.nodes(inventory);
    connect_nodes(inventory, &names, quiet).await
}

/// Connects to the named nodes, concurrently.
pub async fn connect_nodes(
    inventory: &Inventory,
    names: &[String],
    quiet: bool,
) -> Result<Sessions> {
    let pb = spinner(format!("connecting to {}", names.join(", ")), quiet);
    let sessions = crate::node::connect_all(inventory, names).await;
    pb.finish_and_clear();
    Ok(sessions?
        .into_iter()
        .map(|s| (s.node.name.clone(), s))
        .collect())
}

/// Takes the node lock (see [`crate::journal::lock`]) on every connected node for this
/// process's command line, so no other breakfix breaks or resets them meanwhile. Reports a
/// replaced dead or expired lock on stderr (unless `quiet`).
///
/// Errors: a node is held by another live breakfix (named, with its command, PID, host and
/// start time), or the lock command fails.
pub async fn lock(sessions: &Sessions, quiet: bool) -> Result<crate::journal::lock::NodeLocks> {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let locks = crate::journal::lock::NodeLocks::acquire(sessions.values(), &command).await?;
    if !quiet {
        for (node, o) in &locks.replaced {
            eprintln!(
                "  note: {node}: took over the lock of {}, which is no longer running",
                o.describe()
            );
        }
    }
    Ok(locks)
}

/// Applies actions in order. With `journal`, each records its undo first (faults).
pub async fn apply(
    actions: &[PlannedAction],
    sessions: &Sessions,
    journal: Option<&Journal>,
    scenario: &str,
    phase: &str,
    quiet: bool,
) -> Result<()> {
    for a in actions {
        let session = sessions
            .get(&a.node)
            .ok_or_else(|| Error::other(format!("node `{}` is not connected", a.node)))?;
        let pb = spinner(
            format!("{phase}: {} on {}", a.action.label(), a.node),
            quiet,
        );
        let ctx = ActionCtx {
            session,
            journal: journal.map(|j| j as &dyn crate::fault::UndoLog),
            scenario,
            timeout: ACTION_TIMEOUT,
        };
        let r = a.action.apply(&ctx).await;
        pb.finish_and_clear();
        if let Err(e) = r {
            let i = actions.iter().position(|x| std::ptr::eq(x, a)).unwrap_or(0);
            if journal.is_none() {
                // Setup and solution steps are not journaled: say which one failed.
                return Err(Error::other(format!(
                    "{phase} step {} of {} (`{}` on {}) failed: {e}",
                    i + 1,
                    actions.len(),
                    a.action.label(),
                    a.node
                )));
            }
            // Say exactly where the break stopped: what is applied (and journaled), what is
            // not. The fault that failed may have journaled its undo before failing.
            let list = |xs: &[PlannedAction]| {
                if xs.is_empty() {
                    "none".to_string()
                } else {
                    xs.iter()
                        .map(|x| format!("`{}` on {}", x.action.label(), x.node))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            };
            // A kind's own error already names this fault and node: say them once.
            let cause = match &e {
                Error::Fault {
                    fault,
                    host,
                    message,
                } if *fault == a.action.label() && *host == a.node => message.clone(),
                _ => e.to_string(),
            };
            return Err(Error::Fault {
                fault: a.action.label(),
                host: a.node.clone(),
                message: format!(
                    "{cause}\n  the break stopped at fault {} of {}. Applied before it: {}. Not applied: {}. \
                     Every fault begun is journaled: `breakfix reset` undoes them (once {} answers again, if it is unreachable).",
                    i + 1,
                    actions.len(),
                    list(&actions[..i]),
                    list(&actions[i + 1..]),
                    a.node
                ),
            });
        }
        if journal.is_some() {
            crate::failpoint::hit("break: fault applied");
        }
        if !quiet {
            eprintln!("  {phase}: {} on {}", a.action.label(), a.node);
        }
    }
    Ok(())
}

/// Result of the break phase.
pub struct BreakOutcome {
    /// Confirm verdicts.
    pub confirm: Vec<Verdict>,
    /// When the break was confirmed.
    pub confirmed_at: Instant,
}

/// Evaluates `probes` patiently (their `within` and `stable_for`) wanting `want`, behind a
/// spinner saying `what`.
async fn graded(
    probes: &[crate::plan::PlannedProbe],
    want: Want,
    what: &str,
    sessions: &Sessions,
    inventory: &Inventory,
    quiet: bool,
) -> Vec<Verdict> {
    let pb = spinner(what, quiet);
    let v = runner::evaluate(
        probes,
        sessions,
        inventory,
        EvalOptions {
            want,
            patience: Patience::Full,
        },
    )
    .await;
    pb.finish_and_clear();
    v
}

/// Preconditions (every one must PASS, or nothing runs), setup, faults (journaled), then
/// confirm: every non-skipped confirm probe must FAIL.
///
/// Errors: a precondition that does not pass (nothing changed), a fault that cannot be applied (already-applied faults stay journaled for
/// `reset`), or a break that does not show (some confirm probe still passes or errors).
pub async fn break_(
    plan: &Plan,
    sessions: &Sessions,
    inventory: &Inventory,
    journal: &Journal,
    quiet: bool,
) -> Result<BreakOutcome> {
    if !plan.preconditions.is_empty() {
        let pre = graded(
            &plan.preconditions,
            Want::Pass,
            "checking the preconditions",
            sessions,
            inventory,
            quiet,
        )
        .await;
        let unmet: Vec<String> = pre
            .iter()
            .filter(|v| v.status != Status::Pass)
            .map(|v| {
                let why = v.failures().join("; ");
                let why = match (why.is_empty(), v.note.as_deref()) {
                    (false, _) => why,
                    (true, Some(n)) => n.to_string(),
                    (true, None) => String::new(),
                };
                format!("{} on {}: {} {why}", v.probe, v.node, v.status.label())
            })
            .collect();
        if !unmet.is_empty() {
            return Err(Error::other(format!(
                "the break refuses: precondition(s) not met, nothing was changed:\n  {}",
                unmet.join("\n  ")
            )));
        }
    }
    apply(&plan.setup, sessions, None, &plan.name, "setup", quiet).await?;
    apply(
        &plan.faults,
        sessions,
        Some(journal),
        &plan.name,
        "break",
        quiet,
    )
    .await?;
    let confirm = graded(
        &plan.confirm,
        Want::Fail,
        "confirming the break",
        sessions,
        inventory,
        quiet,
    )
    .await;
    let not_shown: Vec<String> = confirm
        .iter()
        .filter(|v| matches!(v.status, Status::Pass | Status::Error))
        .map(|v| {
            format!(
                "{} ({}{})",
                v.probe,
                v.status.label(),
                v.note
                    .as_deref()
                    .map(|n| format!(": {n}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    if !not_shown.is_empty() {
        return Err(Error::other(format!(
            "the break did not show: confirm probe(s) {} did not fail as intended (the faults applied are journaled)",
            not_shown.join(", ")
        )));
    }
    Ok(BreakOutcome {
        confirm,
        confirmed_at: Instant::now(),
    })
}

/// Polls the verify probes (one attempt each per round) until a round passes completely,
/// then grades patiently (`within`, `stable_for`). Ends at `deadline` with the last round.
/// Returns the verdicts and when the first all-pass round started.
pub async fn wait_for_fix(
    plan: &Plan,
    sessions: &Sessions,
    inventory: &Inventory,
    deadline: Instant,
    poll: Duration,
    quiet: bool,
) -> (Vec<Verdict>, Option<Instant>) {
    let pb = spinner("waiting for the fix", quiet);
    loop {
        let round_start = Instant::now();
        let round = runner::evaluate(
            &plan.verify,
            sessions,
            inventory,
            EvalOptions {
                want: Want::Pass,
                patience: Patience::Once,
            },
        )
        .await;
        let passing = round.iter().filter(|v| v.status == Status::Pass).count();
        let failing: Vec<&str> = round
            .iter()
            .filter(|v| v.status != Status::Pass)
            .map(|v| v.probe.as_str())
            .collect();
        let left = deadline.saturating_duration_since(Instant::now()).as_secs();
        pb.set_message(format!(
            "waiting for the fix: {passing}/{} passing, {left}s left{}",
            round.len(),
            if failing.is_empty() {
                String::new()
            } else {
                format!(" (failing: {})", failing.join(", "))
            }
        ));
        if failing.is_empty() {
            pb.set_message("fix seen: grading");
            let graded = runner::evaluate(
                &plan.verify,
                sessions,
                inventory,
                EvalOptions {
                    want: Want::Pass,
                    patience: Patience::Full,
                },
            )
            .await;
            if graded.iter().all(|v| v.status == Status::Pass) || Instant::now() >= deadline {
                pb.finish_and_clear();
                return (graded, Some(round_start));
            }
        }
        if Instant::now() >= deadline {
            pb.finish_and_clear();
            return (round, None);
        }
        tokio::time::sleep(poll.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// Grades now: verify probes with their own `within`/`stable_for` ([`Patience::Full`]), or
/// a learner's quick Check ([`Patience::WhileChanging`]).
pub async fn check(
    plan: &Plan,
    sessions: &Sessions,
    inventory: &Inventory,
    patience: Patience,
    quiet: bool,
) -> Vec<Verdict> {
    let pb = spinner(format!("checking {} probes", plan.verify.len()), quiet);
    let v = runner::evaluate(
        &plan.verify,
        sessions,
        inventory,
        EvalOptions {
            want: Want::Pass,
            patience,
        },
    )
    .await;
    pb.finish_and_clear();
    v
}

/// What [`reset`] did: `(node, "fault — undo")` lines for the undos that ran, and the
/// entries set aside as stale (recorded on another machine or etcd cluster).
#[derive(Debug, Default)]
pub struct ResetOutcome {
    /// `(node, "fault — undo")` per undo that ran, newest first per node.
    pub undone: Vec<(String, String)>,
    /// Entries set aside, not applied.
    pub set_aside: Vec<crate::journal::stale::StaleEntry>,
}

/// Replays the journal on every connected node (newest first), setting aside entries that
/// belong to another machine.
pub async fn reset(sessions: &Sessions, journal: &Journal, quiet: bool) -> Result<ResetOutcome> {
    let mut out = ResetOutcome::default();
    for (name, s) in sessions {
        let pb = spinner(format!("reset: replaying the journal on {name}"), quiet);
        let r = journal.reset(s).await;
        pb.finish_and_clear();
        let r = r?;
        for e in r.undone {
            out.undone
                .push((name.clone(), format!("{} — {}", e.fault, e.undo.describe())));
        }
        out.set_aside.extend(r.set_aside);
    }
    Ok(out)
}
