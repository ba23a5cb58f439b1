//! Score: points per verified task, minus hint costs and overtime penalties.
//!
//! - A task is done when all its probes pass (a task without `probes:` needs the whole
//!   verify to pass); it earns its `points` (default 10).
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

/// Does `verdicts` show task `i` (0-based) done?
pub fn task_done(plan: &Plan, i: usize, verdicts: &[Verdict]) -> bool {
    let Some(t) = plan.tasks.get(i) else {
        return false;
    };
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
