//! `breakfix run SCENARIO` (break, confirm, wait for the fix, grade, reset) and
//! `breakfix break SCENARIO` (break and confirm, leave it broken).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;

use super::args::{Output, TargetArgs};
use super::{Globals, EXIT_FAIL, EXIT_PASS};
use crate::engine::{self, session::Session};
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::plan::Plan;
use crate::report::{Outcome, Report};

/// Arguments of `run`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  breakfix run scenarios/etcd-service-stopped.yaml --solution\n  breakfix run scenarios/etcd-service-stopped.yaml --time-limit 10m --output json"
)]
pub struct RunArgs {
    /// Scenario file.
    pub scenario: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Apply the scenario's reference solution after the break is confirmed (demos, CI).
    #[arg(long)]
    pub solution: bool,
    /// With --solution: wait this long before applying it (e.g. `5s`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "0s")]
    pub solution_delay: Duration,
    /// Override the scenario's time limit (e.g. `10m`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub time_limit: Option<Duration>,
    /// Pause between verify rounds while waiting for the fix.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "2s")]
    pub poll: Duration,
    /// Leave the node as it is at the end instead of replaying the journal.
    #[arg(long)]
    pub no_reset: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

/// Arguments of `break`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  breakfix break scenarios/etcd-service-stopped.yaml && breakfix check\n  breakfix break --lab labs/etcd-outage.yaml --step 2"
)]
pub struct BreakArgs {
    /// Scenario file (or use --lab with --step).
    #[arg(required_unless_present = "lab")]
    pub scenario: Option<PathBuf>,
    /// A lab file: break with the scenario of its step `--step`.
    #[arg(
        long,
        value_name = "LAB",
        requires = "step",
        conflicts_with = "scenario"
    )]
    pub lab: Option<PathBuf>,
    /// 1-based lab step.
    #[arg(long, value_name = "N")]
    pub step: Option<usize>,
    /// When a fault fails or the break does not show, keep what was applied (journaled)
    /// instead of undoing it at once, so you can look at the node; `breakfix reset` undoes it.
    #[arg(long)]
    pub keep_on_failure: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// The scenario to use: the given file, or the one of a lab step for the topology of
/// `target`'s inventory. `Ok(None)` for a lab step that only teaches (no scenario).
pub fn resolve_scenario(
    scenario: Option<&std::path::Path>,
    lab: Option<&std::path::Path>,
    step: Option<usize>,
    target: &super::args::TargetArgs,
) -> Result<Option<PathBuf>> {
    match (scenario, lab, step) {
        (Some(s), None, _) => Ok(Some(s.to_path_buf())),
        (None, Some(l), Some(n)) => {
            let lab = crate::lab::LoadedLab::load(l)?;
            lab.step(n)?;
            let (_, inv) = target.load_inventory()?;
            lab.scenario_for(n, inv.cluster.topology)
        }
        (None, Some(_), None) => Err(Error::other("--lab needs --step N")),
        _ => Err(Error::other(
            "which scenario? pass SCENARIO or --lab LAB --step N",
        )),
    }
}

fn print_tasks(plan: &Plan) {
    println!("\n{} {}", console::style("Incident:").bold(), plan.title);
    if !plan.description.trim().is_empty() {
        println!("{}", plan.description.trim());
    }
    for (i, t) in plan.tasks.iter().enumerate() {
        let limit = t.time_limit.map(|d| format!(" ({d})")).unwrap_or_default();
        println!(
            "\n  {}. {}{}",
            i + 1,
            console::style(&t.title).bold(),
            limit
        );
        if !t.text.trim().is_empty() {
            for line in t.text.trim().lines() {
                println!("     {line}");
            }
        }
    }
    println!();
}

async fn break_and_confirm(
    plan: &Plan,
    sessions: &engine::Sessions,
    inv: &crate::inventory::Inventory,
    journal: &Journal,
    g: Globals,
    keep_on_failure: bool,
) -> Result<engine::BreakOutcome> {
    match engine::break_(plan, sessions, inv, journal, g.quiet).await {
        Ok(o) => Ok(o),
        Err(e) if keep_on_failure => {
            let nodes: Vec<&str> = sessions.keys().map(String::as_str).collect();
            Err(Error::other(format!(
                "{e}\n(kept as it is (--keep-on-failure): what was applied stays, journaled; look at {}, then run `breakfix reset` to undo it)",
                nodes.join(", ")
            )))
        }
        Err(e) => {
            // Never leave a half-applied or unconfirmed break behind.
            let undone = engine::reset(sessions, journal, g.quiet).await;
            let tail = match undone {
                Ok(v) => format!("{} recorded change(s) undone", v.undone.len()),
                Err(r) => format!("undo ALSO failed: {r}; run `breakfix reset`"),
            };
            Err(Error::other(format!("{e}\n({tail})")))
        }
    }
}

/// The whole cycle. Exit 0 when the fix grades PASS, 1 when it does not.
pub async fn run(a: RunArgs, g: Globals) -> Result<u8> {
    let started = Instant::now();
    let quiet = g.quiet || a.output == Output::Json;
    let g = Globals { quiet, ..g };
    let (_, inv, plan) = a.target.plan(&a.scenario, g.color)?;
    let sessions = engine::connect(&plan, &inv, quiet).await?;
    let locks = engine::lock(&sessions, quiet).await?;
    let journal = Journal::open();
    let broken = break_and_confirm(&plan, &sessions, &inv, &journal, g, false).await?;
    if a.output == Output::Human {
        print_tasks(&plan);
    }
    if a.solution {
        tokio::time::sleep(a.solution_delay).await;
        engine::apply(
            &plan.solution,
            &sessions,
            None,
            &plan.name,
            "solution",
            quiet,
        )
        .await?;
    }
    let limit = a.time_limit.unwrap_or(plan.time_limit);
    let (verify, fixed_at) = engine::wait_for_fix(
        &plan,
        &sessions,
        &inv,
        broken.confirmed_at + limit,
        a.poll,
        quiet,
    )
    .await;
    let outcome = Report::grade(&verify);
    let report = Report {
        scenario: plan.name.clone(),
        title: plan.title.clone(),
        mode: "run".into(),
        outcome,
        confirm: broken.confirm,
        verify,
        time_to_fix: fixed_at
            .filter(|_| outcome == Outcome::Pass)
            .map(|t| t.duration_since(broken.confirmed_at).as_secs_f64()),
        solution_applied: a.solution,
        duration: started.elapsed().as_secs_f64(),
    };
    if !a.no_reset {
        engine::reset(&sessions, &journal, quiet).await?;
    }
    locks.release().await;
    match a.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ),
        Output::Human => report
            .print_human(&mut std::io::stdout())
            .map_err(|e| Error::other(e.to_string()))?,
    }
    Ok(if outcome == Outcome::Pass {
        EXIT_PASS
    } else {
        EXIT_FAIL
    })
}

/// Break and confirm; record the session for `check`, `hint` and `reset`.
pub async fn run_break(a: BreakArgs, g: Globals) -> Result<u8> {
    let Some(scenario) =
        resolve_scenario(a.scenario.as_deref(), a.lab.as_deref(), a.step, &a.target)?
    else {
        println!("This lab step has nothing to break: read its text and go on.");
        return Ok(EXIT_PASS);
    };
    let (inv_path, inv, plan) = a.target.plan(&scenario, g.color)?;
    let sessions = engine::connect(&plan, &inv, g.quiet).await?;
    let locks = engine::lock(&sessions, g.quiet).await?;
    let journal = Journal::open();
    let abs = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let session = Session {
        scenario: abs(&scenario),
        inventory: abs(&inv_path),
        graders: a.target.graders.as_deref().map(abs),
        params: a.target.params.iter().cloned().collect(),
        confirmed_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
        lab: a.lab.as_deref().map(abs),
        step: a.step,
        hints: Default::default(),
        done: Default::default(),
    };
    let broken =
        match break_and_confirm(&plan, &sessions, &inv, &journal, g, a.keep_on_failure).await {
            Ok(b) => b,
            Err(e) => {
                locks.release().await;
                if a.keep_on_failure {
                    // `reset` and `status` then know the kept break's scenario and inventory.
                    session.save()?;
                }
                return Err(e);
            }
        };
    locks.release().await;
    Session {
        confirmed_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
        ..session
    }
    .save()?;
    for v in &broken.confirm {
        crate::report::print_verdict(&mut std::io::stderr(), v, true)
            .map_err(|e| Error::other(e.to_string()))?;
    }
    print_tasks(&plan);
    println!("The break is confirmed. Fix it, then run `breakfix check`; `breakfix reset` puts everything back.");
    Ok(EXIT_PASS)
}
