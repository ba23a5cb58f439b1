//! Score: points per verified task, minus hint costs and overtime penalties.
//!
//! - A task is done when all its probes pass (a task without `probes:` needs the whole
//!   verify to pass; a task with `evidence:` needs its own evidence probes to pass, and
//!   verify never marks it done); it earns its `points` (default 10).
//! - Each revealed hint subtracts its `cost` (default 1), whether unlocked by time or asked for.
//! - A task finished after its deadline (the sum of the time limits of the tasks up to and
//!   including it, counted from the start of the clock) loses 1 point per started minute late.
//! - A task's score never goes below 0.

use std::time::Duration;

use serde::Serialize;

use crate::engine::verdict::{Status, Verdict};
use crate::plan::Plan;

/// One task's line of the result table.
#[derive(Debug, Clone, Serialize)]
pub struct TaskScore {
    /// 1-based task number.
    pub task: usize,
    /// Title.
    pub title: String,
    /// Seconds from the start of the clock to the first round where the task's probes all
    /// passed; `None` when never.
    pub done_after: Option<f64>,
    /// Seconds allowed (cumulative deadline), if the task has a limit.
    pub deadline: Option<f64>,
    /// Hints revealed.
    pub hints: u32,
    /// Points lost to hints.
    pub hint_cost: u32,
    /// Points lost to overtime.
    pub overtime_penalty: u32,
    /// Points possible.
    pub points: u32,
    /// Points earned.
    pub score: u32,
}

/// Does `verdicts` (of the verify probes) show task `i` (0-based) done? Always false for a
/// task with `evidence:`: see [`evidence_done`].
pub fn task_done(plan: &Plan, i: usize, verdicts: &[Verdict]) -> bool {
    let Some(t) = plan.tasks.get(i) else {
        return false;
    };
    if has_evidence(plan, i) {
        return false;
    }
    let ok = |v: &Verdict| v.status == Status::Pass;
    if t.probes.is_empty() {
        return !verdicts.is_empty() && verdicts.iter().all(ok);
    }
    t.probes.iter().all(|name| {
        let matching: Vec<&Verdict> = verdicts
            .iter()
            .filter(|v| v.probe == name.value || v.probe.starts_with(&format!("{}@", name.value)))
            .collect();
        !matching.is_empty() && matching.into_iter().all(ok)
    })
}

/// Is task `i` (0-based) graded by its own `evidence:` probes?
pub fn has_evidence(plan: &Plan, i: usize) -> bool {
    plan.evidence.get(i).is_some_and(|e| !e.is_empty())
}

/// Do `verdicts` (of one task's evidence probes) show it done: at least one, all PASS?
pub fn evidence_done(verdicts: &[Verdict]) -> bool {
    !verdicts.is_empty() && verdicts.iter().all(|v| v.status == Status::Pass)
}

/// Scores every task from when it was done and how many hints were revealed (per task).
pub fn score(plan: &Plan, done_after: &[Option<Duration>], hints: &[u32]) -> Vec<TaskScore> {
    let mut deadline = Duration::ZERO;
    let mut has_deadline = true;
    plan.tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            match t.time_limit {
                Some(l) if has_deadline => deadline += l.0,
                _ => has_deadline = false,
            }
            let used = hints.get(i).copied().unwrap_or(0) as usize;
            let hint_cost: u32 = t.hints.iter().take(used).map(|h| h.cost).sum();
            let done = done_after.get(i).copied().flatten();
            let overtime_penalty = match (done, has_deadline) {
                (Some(d), true) if d > deadline => (d - deadline).as_secs().div_ceil(60) as u32,
                _ => 0,
            };
            let earned = if done.is_some() { t.points } else { 0 };
            TaskScore {
                task: i + 1,
                title: t.title.clone(),
                done_after: done.map(|d| d.as_secs_f64()),
                deadline: has_deadline.then_some(deadline.as_secs_f64()),
                hints: used as u32,
                hint_cost,
                overtime_penalty,
                points: t.points,
                score: earned
                    .saturating_sub(hint_cost)
                    .saturating_sub(overtime_penalty),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(probe: &str, status: Status) -> Verdict {
        Verdict::sample(probe, "file", status)
    }

    #[test]
    fn a_task_with_evidence_is_done_by_its_evidence_alone() {
        let plan = crate::plan::every_field_plan(&[]);
        let all_verify: Vec<Verdict> = plan
            .verify
            .iter()
            .map(|p| verdict(&p.id, Status::Pass))
            .collect();
        // Task 1 names a verify probe; task 2 is graded on its evidence.
        assert!(task_done(&plan, 0, &all_verify));
        assert!(has_evidence(&plan, 1));
        assert!(
            !task_done(&plan, 1, &all_verify),
            "a passing verify must not mark a diagnosis task done"
        );
        let pass = [
            verdict("data-dir-named", Status::Pass),
            verdict("answer-is-private", Status::Pass),
        ];
        assert!(evidence_done(&pass));
        let half = [
            verdict("data-dir-named", Status::Pass),
            verdict("answer-is-private", Status::Skip),
        ];
        assert!(!evidence_done(&half));
        assert!(!evidence_done(&[]));
        // Scored like any task: a diagnosis never found earns nothing.
        let s = score(
            &plan,
            &[Some(std::time::Duration::from_secs(30)), None],
            &[0, 0],
        );
        assert_eq!((s[0].score, s[1].score, s[1].points), (10, 0, 5));
    }
}
