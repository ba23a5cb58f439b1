//! `breakfix watch`: re-checks the current break's tasks on an interval and shows each one
//! turning done as the learner works; the first time each task passed goes into the session.
//!
//! A round runs every verify probe once, the evidence of the tasks not done yet and the
//! signals ([`Round`]). A task, once seen done, stays done (the first-pass time is what an
//! instructor wants); `breakfix check` still grades the fix as it is now.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::args::Output;
use super::{Globals, EXIT_FAIL, EXIT_PASS};
use crate::engine::{self, live::Round};
use crate::error::{Error, Result};

/// Arguments of `watch`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  breakfix watch                       # until every task is done (Ctrl-C stops)\n  breakfix watch --interval 10s --timeout 30m\n  breakfix watch --once --output json  # one round: each task's state as JSON\n\nExit codes: 0 every task done, 1 stopped at --timeout (or after --once) with tasks left, 2 error."
)]
pub struct WatchArgs {
    /// Pause between rounds.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub interval: Duration,
    /// Stop after this long even if tasks are left (default: only when every task is done).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// One round, then exit.
    #[arg(long)]
    pub once: bool,
    /// Inventory file (default: the one of the last `breakfix break`).
    #[arg(long, short = 'i', env = "BREAKFIX_INVENTORY", value_name = "FILE")]
    pub inventory: Option<std::path::PathBuf>,
    /// Output: lines for people, or JSON lines (one object per task when it turns done, then
    /// a summary object).
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

/// One task's state, as JSON.
#[derive(Debug, Serialize)]
struct TaskState<'a> {
    /// `done` (a task that turned done) or `summary` (the last line).
    event: &'a str,
    /// 1-based task number.
    task: usize,
    /// Title.
    title: &'a str,
    /// Seconds after the break was confirmed that the task was first seen done.
    done_after: Option<f64>,
}

/// Watches until every task is done, `--timeout`, or one round with `--once`.
pub async fn run(a: WatchArgs, g: Globals) -> Result<u8> {
    let (mut session, _, inventory, plan) =
        super::load::session_plan(a.inventory.as_deref(), g.color)?;
    if plan.tasks.is_empty() {
        return Err(Error::other(format!(
            "scenario `{}` has no tasks to watch; `breakfix check` grades it",
            plan.name
        )));
    }
    let json = a.output == Output::Json;
    let quiet = g.quiet || json;
    let sessions = engine::connect(&plan, &inventory, quiet).await?;
    let pb = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let say = |line: String| super::drill::say(&pb, quiet, line);
    let n = plan.tasks.len();
    for (i, t) in plan.tasks.iter().enumerate() {
        let mark = match session.done.get(&i) {
            Some(s) => format!("done after {s:.0}s"),
            None => "open".into(),
        };
        say(format!("task {}: {} ({mark})", i + 1, t.title));
    }
    let started = Instant::now();
    loop {
        let done: Vec<bool> = (0..n).map(|i| session.done.contains_key(&i)).collect();
        let round = Round::take(&plan, &sessions, &inventory, &done).await;
        let since_break = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
            - session.confirmed_at as f64;
        let mut changed = false;
        for (i, t) in plan.tasks.iter().enumerate() {
            if done[i] || !round.task_done(&plan, i) {
                continue;
            }
            let after = since_break.max(0.0);
            session.done.insert(i, after);
            changed = true;
            if json {
                let line = TaskState {
                    event: "done",
                    task: i + 1,
                    title: &t.title,
                    done_after: Some(after),
                };
                println!("{}", serde_json::to_string(&line).unwrap_or_default());
            }
            say(format!(
                "{} task {} done ({after:.0}s after the break): {}",
                console::style("✓").green().bold(),
                i + 1,
                t.title
            ));
        }
        if changed {
            session.save()?;
        }
        let left = (0..n).filter(|i| !session.done.contains_key(i)).count();
        let next = (0..n).find(|i| !session.done.contains_key(i));
        pb.set_message(match next {
            Some(i) => format!(
                "{}/{n} tasks done; now: task {} ({})",
                n - left,
                i + 1,
                plan.tasks[i].title
            ),
            None => format!("{n}/{n} tasks done"),
        });
        pb.tick();
        let out_of_time = a
            .timeout
            .is_some_and(|t| started.elapsed() + a.interval > t);
        if left == 0 || a.once || out_of_time {
            pb.finish_and_clear();
            if json {
                for (i, t) in plan.tasks.iter().enumerate() {
                    let line = TaskState {
                        event: "summary",
                        task: i + 1,
                        title: &t.title,
                        done_after: session.done.get(&i).copied(),
                    };
                    println!("{}", serde_json::to_string(&line).unwrap_or_default());
                }
            } else if left > 0 {
                say(format!(
                    "{left} of {n} tasks not done yet; `breakfix hint` gives the next hint"
                ));
            } else {
                say("every task is done; `breakfix check` grades the fix".into());
            }
            return Ok(if left == 0 { EXIT_PASS } else { EXIT_FAIL });
        }
        tokio::time::sleep(a.interval).await;
    }
}
