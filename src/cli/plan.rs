//! `breakfix plan SCENARIO`: show the rendered steps and probes per node, change nothing.

use std::path::PathBuf;

use clap::Args;

use super::args::{Output, TargetArgs};
use super::{Globals, EXIT_PASS};
use crate::error::Result;

/// Arguments of `plan`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  breakfix plan scenarios/etcd-service-stopped.yaml --param unit=etcd"
)]
pub struct PlanArgs {
    /// Scenario file.
    pub scenario: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

/// Prints the plan.
pub async fn run(a: PlanArgs, g: Globals) -> Result<u8> {
    let (_, _, plan) = a.target.plan(&a.scenario, g.color)?;
    let view = plan.view();
    if a.output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&view).unwrap_or_default()
        );
        return Ok(EXIT_PASS);
    }
    println!(
        "{} — {}",
        console::style(&plan.name).cyan().bold(),
        plan.title
    );
    if !view.params.is_empty() {
        let ps: Vec<String> = view
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("params: {}", ps.join(" "));
    }
    for (phase, items) in &view.phases {
        println!("\n{}", console::style(&phase[2..]).bold());
        if items.is_empty() {
            println!("  (none)");
        }
        for (node, what) in items {
            let mut lines = what.lines();
            println!("  {node:<14} {}", lines.next().unwrap_or(""));
            for l in lines {
                println!("  {:<14} {l}", "");
            }
        }
    }
    Ok(EXIT_PASS)
}
