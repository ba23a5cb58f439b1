//! Live rounds: what one poll of a drill or of `breakfix watch` sees (verify, the evidence of
//! the tasks not done yet, the signals) and which tasks it shows done.
//!
//! Guarantees:
//! - Every probe runs once per round (no `within` retries): a round answers in about the time
//!   of its slowest probe.
//! - The evidence of a task already done is not evaluated again; signals only when the
//!   scenario has any.

use crate::engine::runner::{evaluate, EvalOptions, Patience, Want};
use crate::engine::score::{evidence_done, has_evidence, task_done};
use crate::engine::verdict::Verdict;
use crate::engine::Sessions;
use crate::inventory::Inventory;
use crate::plan::Plan;

/// The verdicts of one round.
#[derive(Debug, Clone, Default)]
pub struct Round {
    /// Verify probes.
    pub verify: Vec<Verdict>,
    /// Per task (index of `plan.tasks`): its evidence verdicts; empty for a task graded by
    /// verify or already done.
    pub evidence: Vec<Vec<Verdict>>,
    /// `signals:` probes.
    pub signals: Vec<Verdict>,
}

impl Round {
    /// Runs one round; `done[i]` says task `i` is done already (its evidence is skipped).
    pub async fn take(plan: &Plan, sessions: &Sessions, inv: &Inventory, done: &[bool]) -> Round {
        let once = EvalOptions {
            want: Want::Pass,
            patience: Patience::Once,
        };
        let verify = evaluate(&plan.verify, sessions, inv, once).await;
        let mut evidence = vec![Vec::new(); plan.tasks.len()];
        for (i, e) in evidence.iter_mut().enumerate() {
            if !done.get(i).copied().unwrap_or(false) && has_evidence(plan, i) {
                *e = evaluate(&plan.evidence[i], sessions, inv, once).await;
            }
        }
        let signals = if plan.signals.is_empty() {
            Vec::new()
        } else {
            evaluate(&plan.signals, sessions, inv, once).await
        };
        Round {
            verify,
            evidence,
            signals,
        }
    }

    /// Does this round show task `i` (0-based) done: its evidence passes, or (a task without
    /// evidence) its verify probes do?
    pub fn task_done(&self, plan: &Plan, i: usize) -> bool {
        if has_evidence(plan, i) {
            self.evidence.get(i).is_some_and(|e| evidence_done(e))
        } else {
            task_done(plan, i, &self.verify)
        }
    }

    /// What a hint of task `i` may wait for (`when:`): verify, the task's evidence, signals.
    pub fn seen(&self, i: usize) -> [&[Verdict]; 3] {
        [
            &self.verify,
            self.evidence.get(i).map(Vec::as_slice).unwrap_or(&[]),
            &self.signals,
        ]
    }
}
