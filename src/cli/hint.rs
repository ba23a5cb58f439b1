//! `breakfix hint`: reveal the next hint of the current break's task (each costs points).

use clap::Args;

use super::{Globals, EXIT_PASS};
use crate::engine::history;
use crate::error::{Error, Result};

/// Arguments of `hint`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  breakfix hint            # next hint of the first unfinished task\n  breakfix hint --task 2\n  breakfix hint --list     # hints revealed so far"
)]
pub struct HintArgs {
    /// Task number (default: the first task the last check showed unfinished).
    #[arg(long, value_name = "N")]
    pub task: Option<usize>,
    /// Show the hints revealed so far instead of revealing a new one.
    #[arg(long)]
    pub list: bool,
}

/// Reveals (and records) the next hint.
pub async fn run(a: HintArgs, g: Globals) -> Result<u8> {
    // Hints are rendered like every other text of the plan (`{{ params.x }}`, `{{ node.name }}`),
    // for the inventory and parameters of the break.
    let (mut session, loaded, _, plan) = super::load::session_plan(None, g.color)?;
    let tasks = &plan.tasks;
    if tasks.is_empty() {
        return Err(Error::other(format!(
            "scenario `{}` has no tasks, so no hints",
            loaded.scenario.metadata.name.value
        )));
    }
    if a.list {
        for (i, t) in tasks.iter().enumerate() {
            let n = session.hints.get(&i).copied().unwrap_or(0) as usize;
            for h in t.hints.iter().take(n) {
                println!("task {} (-{} pt): {}", i + 1, h.cost, h.text);
            }
        }
        return Ok(EXIT_PASS);
    }
    let index = match a.task {
        Some(n) if n >= 1 && n <= tasks.len() => n - 1,
        Some(n) => {
            return Err(Error::other(format!(
                "--task {n}: the scenario has tasks 1..={}",
                tasks.len()
            )))
        }
        None => {
            // The first task with a probe the last check saw failing; else the first task not
            // seen done. A diagnosis task (graded on its `evidence:`, which a check does not
            // run) counts while it has hints left; a task `breakfix watch` saw done does not.
            let last = history::load()
                .into_iter()
                .rev()
                .find(|h| h.scenario == loaded.scenario.metadata.name.value);
            let failing = last.map(|h| h.failing).unwrap_or_default();
            tasks
                .iter()
                .enumerate()
                .position(|(i, t)| {
                    if session.done.contains_key(&i) {
                        return false; // `breakfix watch` saw it done
                    }
                    if crate::engine::score::has_evidence(&plan, i) {
                        return (session.hints.get(&i).copied().unwrap_or(0) as usize)
                            < t.hints.len();
                    }
                    t.probes.is_empty()
                        || t.probes.iter().any(|p| {
                            failing
                                .iter()
                                .any(|f| f == &p.value || f.starts_with(&format!("{}@", p.value)))
                        })
                })
                .or_else(|| (0..tasks.len()).find(|i| !session.done.contains_key(i)))
                .unwrap_or(0)
        }
    };
    let used = session.hints.get(&index).copied().unwrap_or(0) as usize;
    let task = &tasks[index];
    let Some(h) = task.hints.get(used) else {
        println!(
            "task {} (`{}`) has no more hints ({} used).",
            index + 1,
            task.title,
            used
        );
        return Ok(EXIT_PASS);
    };
    session.hints.insert(index, used as u32 + 1);
    session.save()?;
    println!(
        "hint {}/{} for task {} (`{}`), -{} point(s):\n  {}",
        used + 1,
        task.hints.len(),
        index + 1,
        task.title,
        h.cost,
        h.text
    );
    Ok(EXIT_PASS)
}
