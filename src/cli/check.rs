//! `breakfix check [SCENARIO]`: grade now (exit 0 pass, 1 fail, 2 error).

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::args::{Output, TargetArgs};
use super::{Globals, EXIT_FAIL, EXIT_PASS};
use crate::engine::{self, session::Session};
use crate::error::{Error, Result};
use crate::report::{Outcome, Report};

/// Arguments of `check`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  breakfix check                  # the scenario of the last `breakfix break`\n  breakfix check scenarios/etcd-service-stopped.yaml --output json")]
pub struct CheckArgs {
    /// Scenario file (default: the one from the last `breakfix break`).
    pub scenario: Option<PathBuf>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

/// Runs the verify probes once (each with its own within/stable_for) and grades.
pub async fn run(mut a: CheckArgs, g: Globals) -> Result<u8> {
    let started = Instant::now();
    let quiet = g.quiet || a.output == Output::Json;
    let session = Session::load()?;
    let scenario = match (&a.scenario, &session) {
        (Some(s), _) => s.clone(),
        (None, Some(s)) => s.scenario.clone(),
        (None, None) => return Err(Error::other("which scenario? pass SCENARIO, or run `breakfix break SCENARIO` first")),
    };
    if let Some(s) = &session {
        if a.target.inventory.is_none() && a.scenario.is_none() {
            a.target.inventory = Some(s.inventory.clone());
        }
        if a.target.params.is_empty() && a.scenario.is_none() {
            a.target.params = s.params.clone().into_iter().collect();
        }
        if a.target.graders.is_none() && a.scenario.is_none() {
            a.target.graders = s.graders.clone();
        }
    }
    let (_, inv) = a.target.load_inventory()?;
    let (_, plan) = super::load::plan(&scenario, a.target.graders.as_deref(), &inv, &a.target.params, g.color)?;
    let sessions = engine::connect(&plan, &inv, quiet).await?;
    let verify = engine::check(&plan, &sessions, &inv, quiet).await;
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
    match a.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default()),
        Output::Human => report.print_human(&mut std::io::stdout()).map_err(|e| Error::other(e.to_string()))?,
    }
    Ok(if outcome == Outcome::Pass { EXIT_PASS } else { EXIT_FAIL })
}
