//! `breakfix validate FILE...`: load and validate scenario files; print diagnostics.

use std::path::PathBuf;

use clap::Args;

use super::args::Output;
use super::{Globals, EXIT_ERROR, EXIT_PASS};
use crate::error::Result;

/// Arguments of `validate`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  breakfix validate scenarios/*.yaml --output json")]
pub struct ValidateArgs {
    /// Scenario files.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Directory of grader files (default: `graders/` beside each scenario's directory).
    #[arg(long, value_name = "DIR")]
    pub graders: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

/// Exit 0 when every file is valid, 2 otherwise.
pub async fn run(a: ValidateArgs, g: Globals) -> Result<u8> {
    let mut bad = 0usize;
    let mut json = Vec::new();
    for f in &a.files {
        let report = super::load::check_file(f, a.graders.as_deref());
        let ok = report.is_ok() && report.loaded.is_some();
        if !ok {
            bad += 1;
        }
        match a.output {
            Output::Human => {
                if ok {
                    println!("{} {}", console::style("ok").green(), f.display());
                } else {
                    print!("{}", report.render(g.color));
                }
            }
            Output::Json => json.push(serde_json::to_value(report.json()).unwrap_or_default()),
        }
    }
    if a.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&json).unwrap_or_default());
    } else if bad > 0 {
        eprintln!("{bad} of {} file(s) invalid", a.files.len());
    }
    Ok(if bad == 0 { EXIT_PASS } else { EXIT_ERROR })
}
