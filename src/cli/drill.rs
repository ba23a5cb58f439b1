//! `breakfix drill SCENARIO|LAB`: an instructor's timed drill — break, confirm, start the
//! clock, poll verify, unlock hints on time, stop the clock when the fix holds or time is up,
//! print the result table (task, time used, hints, score).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::args::TargetArgs;
use super::{Globals, EXIT_FAIL, EXIT_PASS};
use crate::engine::live::Round;
use crate::engine::runner::{evaluate, EvalOptions, Patience, Want};
use crate::engine::score::{has_evidence, score, TaskScore};
use crate::engine::verdict::{Status, Verdict};
use crate::engine::{self, hints, history};
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::plan::Plan;

/// Output formats of a drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum DrillOutput {
    /// Table for people.
    #[default]
    Human,
    /// One JSON document.
    Json,
    /// JUnit XML (a testcase per task).
    Junit,
    /// TAP version 13 (a test point per task).
    Tap,
}

/// Arguments of `drill`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  breakfix drill scenarios/etcd-service-stopped.yaml --inventory class/alice.yaml\n  breakfix drill labs/etcd-outage.yaml --output junit > drill.xml"
)]
pub struct DrillArgs {
    /// Scenario or lab file.
    pub file: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Pause between verify rounds.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "2s")]
    pub poll: Duration,
    /// Override the time limit.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub time_limit: Option<Duration>,
    /// Apply the reference solution this long after the clock starts (demos, tests).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub solution_after: Option<Duration>,
    /// Leave the cluster as it is at the end instead of replaying the journal.
    #[arg(long)]
    pub no_reset: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: DrillOutput,
}

/// The result of one scenario's drill.
#[derive(Debug, Clone, Serialize)]
pub struct DrillResult {
    /// Scenario name.
    pub scenario: String,
    /// Title.
    pub title: String,
    /// `pass` when every verify probe held at the end.
    pub outcome: String,
    /// Seconds from the start of the clock to the fix (first all-pass round), if fixed.
    pub time_to_fix: Option<f64>,
    /// Seconds the clock ran.
    pub clock: f64,
    /// Time limit in seconds.
    pub time_limit: f64,
    /// Per-task scores.
    pub tasks: Vec<TaskScore>,
    /// Points earned / possible.
    pub score: u32,
    /// Points possible.
    pub possible: u32,
    /// Final verify verdicts.
    pub verify: Vec<Verdict>,
}

async fn drill_one(
    plan: &Plan,
    a: &DrillArgs,
    inv: &crate::inventory::Inventory,
    g: Globals,
) -> Result<DrillResult> {
    let quiet = g.quiet || a.output != DrillOutput::Human;
    let sessions = engine::connect(plan, inv, quiet).await?;
    // Held for the whole drill: no other breakfix touches the learner's nodes meanwhile.
    let locks = engine::lock(&sessions, quiet).await?;
    let journal = Journal::open();
    let broken = match engine::break_(plan, &sessions, inv, &journal, quiet).await {
        Ok(b) => b,
        Err(e) => {
            let _ = engine::reset(&sessions, &journal, quiet).await;
            locks.release().await;
            return Err(e);
        }
    };
    // The clock starts only now, after the break is confirmed.
    let start = broken.confirmed_at;
    let limit = a.time_limit.unwrap_or(plan.time_limit);
    let deadline = start + limit;
    let pb = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(limit.as_secs())
    };
    pb.set_style(
        ProgressStyle::with_template("{bar:30.cyan/blue} {elapsed_precise} of {len}s  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    say(
        &pb,
        quiet,
        format!(
            "the break is confirmed: the clock runs ({} limit)",
            humantime::format_duration(limit)
        ),
    );
    let mut done_after: Vec<Option<Duration>> = vec![None; plan.tasks.len()];
    let mut hints_shown: Vec<u32> = vec![0; plan.tasks.len()];
    let mut solution_applied = false;
    let mut fixed_at: Option<Duration> = None;
    let mut last: Vec<Verdict>;
    let mut was_down: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let round_start = Instant::now();
        let elapsed = round_start.duration_since(start);
        if let Some(after) = a.solution_after {
            if !solution_applied && elapsed >= after {
                engine::apply(
                    &plan.solution,
                    &sessions,
                    None,
                    &plan.name,
                    "solution",
                    true,
                )
                .await?;
                solution_applied = true;
            }
        }
        let done: Vec<bool> = done_after.iter().map(Option::is_some).collect();
        let round = Round::take(plan, &sessions, inv, &done).await;
        // A node that answers no probe (rebooting, unreachable) is named once when it goes
        // and once when it is back; the transport dials it again on every round.
        let down = unanswered(&round.verify);
        for (node, why) in &down {
            if !was_down.contains_key(node) {
                say(
                    &pb,
                    quiet,
                    format!(
                    "{node}: no probe could run ({why}); still polling, the clock keeps running"
                ),
                );
            }
        }
        for node in was_down.keys().filter(|n| !down.contains_key(*n)) {
            say(&pb, quiet, format!("{node}: answering again"));
        }
        was_down = down;
        // Hints unlocked by time or by evidence, in their order.
        for (i, t) in plan.tasks.iter().enumerate() {
            if done_after[i].is_some() {
                continue;
            }
            for (k, h) in t.hints.iter().enumerate() {
                if k as u32 == hints_shown[i] && hints::unlocked(h, elapsed, &round.seen(i)) {
                    hints_shown[i] += 1;
                    say(
                        &pb,
                        quiet,
                        format!("hint for task {} (-{} pt): {}", i + 1, h.cost, h.text),
                    );
                }
            }
        }
        for (i, d) in done_after.iter_mut().enumerate() {
            if d.is_some() {
                continue;
            }
            if round.task_done(plan, i) {
                *d = Some(round_start.duration_since(start));
                say(
                    &pb,
                    quiet,
                    format!(
                        "task {} done after {:.0}s: {}",
                        i + 1,
                        round_start.duration_since(start).as_secs_f64(),
                        plan.tasks[i].title
                    ),
                );
            }
        }
        last = round.verify;
        let passing = last.iter().filter(|v| v.status == Status::Pass).count();
        pb.set_position(elapsed.as_secs().min(limit.as_secs()));
        pb.set_message(format!("{passing}/{} probes passing", last.len()));
        if passing == last.len() && !last.is_empty() {
            let graded = evaluate(
                &plan.verify,
                &sessions,
                inv,
                EvalOptions {
                    want: Want::Pass,
                    patience: Patience::Full,
                },
            )
            .await;
            if graded.iter().all(|v| v.status == Status::Pass) {
                fixed_at = Some(round_start.duration_since(start));
                last = graded;
                break;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(
            a.poll
                .min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
    }
    let clock = Instant::now()
        .duration_since(start)
        .min(limit.max(Duration::from_millis(1)) + a.poll * 2);
    pb.finish_and_clear();
    if let Some(f) = fixed_at {
        // Tasks graded by verify are done when the whole verify passes; a task graded by its
        // evidence only by that evidence.
        for (i, d) in done_after.iter_mut().enumerate() {
            if !has_evidence(plan, i) {
                d.get_or_insert(f);
            }
        }
    }
    if !a.no_reset {
        engine::reset(&sessions, &journal, quiet).await?;
    }
    locks.release().await;
    let _ = history::record(&history::Attempt::new("drill", &plan.name, &last));
    let tasks = score(plan, &done_after, &hints_shown);
    Ok(DrillResult {
        scenario: plan.name.clone(),
        title: plan.title.clone(),
        outcome: if fixed_at.is_some() { "pass" } else { "fail" }.into(),
        time_to_fix: fixed_at.map(|d| d.as_secs_f64()),
        clock: clock.as_secs_f64(),
        time_limit: limit.as_secs_f64(),
        score: tasks.iter().map(|t| t.score).sum(),
        possible: tasks.iter().map(|t| t.points).sum(),
        tasks,
        verify: last,
    })
}

/// A line for the person at the terminal, above the progress bar; on stderr when the bar
/// is not drawn (stderr is not a terminal: indicatif's `println` prints nothing then) unless
/// `quiet`.
pub(super) fn say(pb: &ProgressBar, quiet: bool, line: String) {
    if quiet {
        return;
    }
    if pb.is_hidden() {
        eprintln!("{line}");
    } else {
        pb.println(line);
    }
}

/// Nodes on which no probe of the round could be judged (each one that ran errored; those
/// skipped for a failed dependency do not count), each with the first error: `node -> note`.
fn unanswered(verdicts: &[Verdict]) -> BTreeMap<String, String> {
    // node -> (every probe that ran errored, the first error's note); `None` until one ran.
    let mut by_node: BTreeMap<&str, Option<(bool, Option<&str>)>> = BTreeMap::new();
    for v in verdicts {
        let e = by_node.entry(&v.node).or_insert(None);
        if v.status == Status::Skip {
            continue;
        }
        let (all_errors, note) = e.get_or_insert((true, None));
        *all_errors &= v.status == Status::Error;
        if note.is_none() && v.status == Status::Error {
            *note = v.note.as_deref();
        }
    }
    by_node
        .into_iter()
        .filter_map(|(n, e)| match e {
            Some((true, note)) => Some((n.to_string(), note.unwrap_or("no answer").to_string())),
            _ => None,
        })
        .collect()
}

/// Runs the drill; exit 0 when every scenario was fixed in time, 1 otherwise.
pub async fn run(a: DrillArgs, g: Globals) -> Result<u8> {
    let (_, inv) = a.target.load_inventory()?;
    let files: Vec<PathBuf> = if crate::lab::is_lab_file(&a.file) {
        let lab = crate::lab::LoadedLab::load(&a.file)?;
        let mut files = Vec::new();
        for n in 1..=lab.lab.steps.len() {
            files.extend(lab.scenario_for(n, inv.cluster.topology)?);
        }
        files
    } else {
        vec![a.file.clone()]
    };
    if files.is_empty() {
        return Err(Error::other(format!(
            "{}: no step has a scenario to drill",
            a.file.display()
        )));
    }
    let mut results = Vec::new();
    for f in &files {
        let (_, plan) = super::load::plan(
            f,
            a.target.graders.as_deref(),
            &inv,
            &a.target.params,
            g.color,
        )?;
        if a.output == DrillOutput::Human && !g.quiet {
            println!(
                "{} {} — clock starts when the break is confirmed ({} limit)",
                console::style("drill").bold(),
                plan.name,
                humantime::format_duration(a.time_limit.unwrap_or(plan.time_limit))
            );
        }
        results.push(drill_one(&plan, &a, &inv, g).await?);
    }
    print(&results, a.output)?;
    Ok(if results.iter().all(|r| r.outcome == "pass") {
        EXIT_PASS
    } else {
        EXIT_FAIL
    })
}

fn print(results: &[DrillResult], output: DrillOutput) -> Result<()> {
    match output {
        DrillOutput::Json => println!(
            "{}",
            serde_json::to_string_pretty(results).unwrap_or_default()
        ),
        DrillOutput::Human => {
            for r in results {
                println!(
                    "\n{} — {}",
                    console::style(&r.scenario).cyan().bold(),
                    r.title
                );
                println!(
                    "  {:<4} {:<52} {:>9} {:>5} {:>7}",
                    "task", "title", "time", "hints", "score"
                );
                for t in &r.tasks {
                    let time = t
                        .done_after
                        .map(|d| format!("{d:.0}s"))
                        .unwrap_or_else(|| "not done".into());
                    println!(
                        "  {:<4} {:<52} {:>9} {:>5} {:>3}/{:<3}",
                        t.task,
                        t.title.chars().take(52).collect::<String>(),
                        time,
                        t.hints,
                        t.score,
                        t.points
                    );
                }
                match r.time_to_fix {
                    Some(t) => println!(
                        "  fixed after {t:.1}s of {:.0}s; score {}/{}",
                        r.time_limit, r.score, r.possible
                    ),
                    None => {
                        println!(
                            "  {} at the time limit ({:.0}s); score {}/{}",
                            console::style("not fixed").red(),
                            r.time_limit,
                            r.score,
                            r.possible
                        );
                        for v in r.verify.iter().filter(|v| v.status != Status::Pass) {
                            let why = v.failures().join("; ");
                            println!(
                                "    {} {}: {}",
                                v.status.label(),
                                v.probe,
                                crate::report::printable(&if why.is_empty() {
                                    v.note.clone().unwrap_or_default()
                                } else {
                                    why
                                })
                            );
                        }
                    }
                }
            }
        }
        DrillOutput::Tap => {
            let total: usize = results.iter().map(|r| r.tasks.len()).sum();
            println!("TAP version 13\n1..{total}");
            let mut n = 0;
            for r in results {
                for t in &r.tasks {
                    n += 1;
                    let ok = if t.done_after.is_some() {
                        "ok"
                    } else {
                        "not ok"
                    };
                    // One line per test point: a newline or `#` in a title would end it.
                    let title = t.title.replace(['\n', '\r'], " ").replace('#', "\\#");
                    println!(
                        "{ok} {n} - {}: {title} # score {}/{}",
                        r.scenario, t.score, t.points
                    );
                }
            }
        }
        DrillOutput::Junit => {
            use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
            let mut report = Report::new("breakfix-drill");
            for r in results {
                let mut suite = TestSuite::new(r.scenario.clone());
                suite.set_time(Duration::from_secs_f64(r.clock));
                for t in &r.tasks {
                    let status = if t.done_after.is_some() {
                        TestCaseStatus::success()
                    } else {
                        let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                        let failing: Vec<String> = r
                            .verify
                            .iter()
                            .filter(|v| v.status != Status::Pass)
                            .map(|v| format!("{}: {}", v.probe, v.failures().join("; ")))
                            .collect();
                        s.set_message(format!("not done within {:.0}s", r.time_limit));
                        s.set_description(
                            crate::report::xml_safe(&failing.join("\n")).into_owned(),
                        );
                        s
                    };
                    let mut c = TestCase::new(format!("task {}: {}", t.task, t.title), status);
                    c.set_classname(format!("breakfix.drill.{}", r.scenario));
                    if let Some(d) = t.done_after {
                        c.set_time(Duration::from_secs_f64(d));
                    }
                    suite.add_test_case(c);
                }
                report.add_test_suite(suite);
            }
            println!(
                "{}",
                report
                    .to_string()
                    .map_err(|e| Error::other(e.to_string()))?
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(node: &str, status: Status, note: Option<&str>) -> Verdict {
        Verdict {
            probe: "p".into(),
            node: node.into(),
            kind: "command".into(),
            description: None,
            status,
            checks: Vec::new(),
            note: note.map(str::to_string),
            attempts: 1,
            duration: Duration::ZERO,
        }
    }

    #[test]
    fn a_node_is_unanswered_when_every_probe_that_ran_errored() {
        let round = [
            v(
                "controlplane",
                Status::Error,
                Some("controlplane (198.18.0.11:22): connection refused"),
            ),
            v("controlplane", Status::Skip, Some("needs `a`")),
            v("controlplane", Status::Error, Some("later")),
            v("node01", Status::Error, Some("timeout")),
            v("node01", Status::Fail, None),
            v("node02", Status::Skip, None),
        ];
        let down = unanswered(&round);
        assert_eq!(
            down.into_iter().collect::<Vec<_>>(),
            [(
                "controlplane".to_string(),
                "controlplane (198.18.0.11:22): connection refused".to_string()
            )]
        );
        assert!(unanswered(&[v("n", Status::Pass, None)]).is_empty());
    }
}
