//! `breakfix check [SCENARIO]`: grade now (exit 0 pass, 1 fail, 2 error); a learner's
//! self-check. Every check is recorded in the local history.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::args::{Output, TargetArgs};
use super::{Globals, EXIT_FAIL, EXIT_PASS};
use crate::engine::{self, history, session::Session};
use crate::error::{Error, Result};
use crate::plan::{describe_action, Plan, PlannedProbe};
use crate::report::{Outcome, Report};

/// Arguments of `check`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  breakfix check                  # the scenario of the last `breakfix break`\n  breakfix check --step 2         # only task 2's probes or evidence (or lab step 2 after `break --lab`)\n  breakfix check --lab labs/etcd-outage.yaml --step 1 --output json\n  breakfix check --quick           # answer in a second when nothing changes (a Check button)"
)]
pub struct CheckArgs {
    /// Scenario file (default: the one from the last `breakfix break`).
    pub scenario: Option<PathBuf>,
    /// A lab file: check the scenario of its step `--step`.
    #[arg(long, value_name = "LAB", conflicts_with = "scenario")]
    pub lab: Option<PathBuf>,
    /// Lab step (with a lab) or task number (with a scenario), 1-based.
    #[arg(long, value_name = "N")]
    pub step: Option<usize>,
    /// Also print the reference solution (spoiler).
    #[arg(long)]
    pub solution: bool,
    /// Answer fast, as a learner's Check button (the exported verify.sh uses it): a failing
    /// probe is retried within its `within` only while its result keeps changing, so an
    /// unfixed cluster answers in about a second; a fix still settling may fail, check again.
    /// Without it every probe waits out its `within` before it fails.
    #[arg(long)]
    pub quick: bool,
    /// Print only the verdict and what is still wrong, in the probes' own words (their
    /// descriptions); no facts or timings. For a learner's terminal (the exported verify.sh).
    #[arg(long, conflicts_with = "output")]
    pub brief: bool,
    /// Also append the full report (human form, no colour, with the time) to FILE; its
    /// directory is created if missing.
    #[arg(long, value_name = "FILE")]
    pub full_report: Option<PathBuf>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

/// Appends `report` (human form, no colour) to `file` under a line with the time, creating
/// its directory.
///
/// Errors: the directory or file cannot be created or written (named in the error).
fn append_report(file: &std::path::Path, report: &Report) -> Result<()> {
    use std::io::Write as _;
    let io = |source| Error::Io {
        context: format!("writing the full report to {}", file.display()),
        source,
    };
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut body = Vec::new();
    report.print_human(&mut body).map_err(io)?;
    let body = console::strip_ansi_codes(&String::from_utf8_lossy(&body)).into_owned();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map_err(io)?;
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    writeln!(f, "==> breakfix check, {now}").map_err(io)?;
    f.write_all(body.as_bytes()).map_err(io)?;
    writeln!(f).map_err(io)
}

/// Keeps the probes of task `n` (1-based) and those they need; a task with `evidence:` is
/// checked on its evidence probes alone.
fn task_probes(plan: &Plan, n: usize) -> Result<Vec<PlannedProbe>> {
    let t = plan.tasks.get(n.wrapping_sub(1)).ok_or_else(|| {
        Error::other(format!(
            "scenario `{}` has tasks 1..={}, not {n}",
            plan.name,
            plan.tasks.len()
        ))
    })?;
    if let Some(e) = plan.evidence.get(n - 1).filter(|e| !e.is_empty()) {
        return Ok(e.clone());
    }
    if t.probes.is_empty() {
        return Ok(plan.verify.clone());
    }
    let mut keep: std::collections::BTreeSet<String> =
        t.probes.iter().map(|p| p.value.clone()).collect();
    loop {
        let before = keep.len();
        for p in &plan.verify {
            if keep.contains(&p.id) || keep.iter().any(|k| p.id.starts_with(&format!("{k}@"))) {
                keep.extend(p.needs.iter().cloned());
                keep.insert(p.id.clone());
            }
        }
        if keep.len() == before {
            break;
        }
    }
    Ok(plan
        .verify
        .iter()
        .filter(|p| keep.contains(&p.id))
        .cloned()
        .collect())
}

/// Runs the verify probes once (each with its own within/stable_for) and grades.
pub async fn run(mut a: CheckArgs, g: Globals) -> Result<u8> {
    let started = Instant::now();
    let quiet = g.quiet || a.output == Output::Json;
    let session = Session::load()?;
    let explicit = a.scenario.is_some() || a.lab.is_some();
    if let (false, Some(s)) = (explicit, &session) {
        a.target.inventory.get_or_insert(s.inventory.clone());
        if a.target.params.is_empty() {
            a.target.params = s.params.clone().into_iter().collect();
        }
        if a.target.graders.is_none() {
            a.target.graders = s.graders.clone();
        }
        if let (Some(lab), None) = (&s.lab, &a.lab) {
            a.lab = Some(lab.clone());
            a.step = a.step.or(s.step);
        }
    }
    // Which scenario, and is --step a lab step or a task?
    let (scenario, task) = match (&a.scenario, &a.lab, &session) {
        (Some(s), _, _) => (Some(s.clone()), a.step),
        (None, Some(lab), _) => {
            let n = a.step.ok_or_else(|| Error::other("--lab needs --step N"))?;
            (
                super::run::resolve_scenario(None, Some(lab), Some(n), &a.target)?,
                None,
            )
        }
        (None, None, Some(s)) => (Some(s.scenario.clone()), a.step),
        (None, None, None) => {
            return Err(Error::other(
                "which scenario? pass SCENARIO, or run `breakfix break SCENARIO` first",
            ))
        }
    };
    let Some(scenario) = scenario else {
        println!("This lab step has nothing to check: it passes once you have read it.");
        return Ok(EXIT_PASS);
    };
    let (_, inv, mut plan) = a.target.plan(&scenario, g.color)?;
    if let Some(n) = task {
        plan.verify = task_probes(&plan, n)?;
    }
    let sessions = engine::connect(&plan, &inv, quiet).await?;
    let patience = if a.quick {
        engine::Patience::WhileChanging
    } else {
        engine::Patience::Full
    };
    let verify = engine::check(&plan, &sessions, &inv, patience, quiet).await;
    let _ = history::record(&history::Attempt::new("check", &plan.name, &verify));
    let outcome = Report::grade(&verify);
    let report = Report {
        scenario: plan.name.clone(),
        title: plan.title.clone(),
        mode: "check".into(),
        outcome,
        confirm: Vec::new(),
        verify,
        time_to_fix: None,
        solution_applied: false,
        duration: started.elapsed().as_secs_f64(),
    };
    if let Some(f) = &a.full_report {
        append_report(f, &report)?;
    }
    match a.output {
        Output::Human if a.brief => report
            .print_brief(&mut std::io::stdout(), a.full_report.as_deref())
            .map_err(|e| Error::other(e.to_string()))?,
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ),
        Output::Human => {
            report
                .print_human(&mut std::io::stdout())
                .map_err(|e| Error::other(e.to_string()))?;
            if outcome == Outcome::Fail {
                let revealed = session
                    .as_ref()
                    .map(|s| s.hints.values().sum::<u32>())
                    .unwrap_or(0);
                let total: usize = plan.tasks.iter().map(|t| t.hints.len()).sum();
                if (revealed as usize) < total {
                    println!("\n  stuck? `breakfix hint` shows the next hint ({} of {} used; hints cost points)", revealed, total);
                }
            }
            if a.solution {
                println!(
                    "\n  {} (reference solution)",
                    console::style("spoiler").yellow().bold()
                );
                for s in &plan.solution {
                    let text = describe_action(&s.action);
                    let mut lines = text.lines();
                    println!("    {:<14} {}", s.node, lines.next().unwrap_or(""));
                    for l in lines {
                        println!("    {:<14} {l}", "");
                    }
                }
            }
        }
    }
    Ok(if outcome == Outcome::Pass {
        EXIT_PASS
    } else {
        EXIT_FAIL
    })
}
