//! `breakfix test SCENARIO...`: the self-test matrix on a live cluster, with JUnit/JSON output.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::args::{Output, TargetArgs};
use super::{Globals, EXIT_FAIL, EXIT_PASS};
use crate::engine::crashtest;
use crate::engine::selftest::{self, Row, RowStatus};
use crate::engine::{self};
use crate::error::{Error, Result};
use crate::journal::Journal;

/// Arguments of `test`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  breakfix test scenarios/*.yaml --junit target/breakfix-junit.xml\n  breakfix test scenarios/etcd-service-stopped.yaml --crash-matrix"
)]
pub struct TestArgs {
    /// Scenario files.
    #[arg(required = true, value_name = "SCENARIO")]
    pub scenarios: Vec<PathBuf>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Also write a JUnit XML report (one testcase per scenario x row).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Instead of the self-test matrix, the crash matrix: kill `breakfix break` (SIGKILL) at
    /// each of its steps in turn, `reset`, and compare the node with its snapshot from before
    /// the break (one row per step).
    #[arg(long)]
    pub crash_matrix: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

/// One scenario's rows.
#[derive(Debug, serde::Serialize)]
struct ScenarioResult {
    file: String,
    scenario: String,
    rows: Vec<Row>,
    duration: f64,
}

/// Runs the matrix for every scenario; exit 0 when every row passes, 1 otherwise.
pub async fn run(a: TestArgs, g: Globals) -> Result<u8> {
    let quiet = g.quiet || a.output == Output::Json;
    let (inv_path, inv) = a.target.load_inventory()?;
    let journal = Journal::open();
    let mut results = Vec::new();
    for file in &a.scenarios {
        let started = Instant::now();
        // A scenario written for another topology, or needing more etcd members, is skipped, not
        // failed: `test scenarios/*.yaml` runs each scenario against the clusters it fits.
        if let Ok(l) = crate::scenario::load_valid(file, a.target.graders.as_deref(), g.color) {
            if let Some((row, msg)) = l.scenario.metadata.unmet(&inv) {
                if a.output == Output::Human {
                    println!(
                        "{} {}
  {} {msg}",
                        console::style(&l.scenario.metadata.name.value)
                            .cyan()
                            .bold(),
                        console::style(file.display()).dim(),
                        console::style("SKIP ").yellow()
                    );
                }
                results.push(ScenarioResult {
                    file: file.display().to_string(),
                    scenario: l.scenario.metadata.name.value.clone(),
                    rows: vec![Row {
                        name: row.into(),
                        status: RowStatus::Skip,
                        message: msg,
                        duration: 0.0,
                    }],
                    duration: 0.0,
                });
                continue;
            }
        }
        let loaded = super::load::plan(
            file,
            a.target.graders.as_deref(),
            &inv,
            &a.target.params,
            g.color,
        );
        let (scenario, rows) = match loaded {
            Err(e) => (
                file.display().to_string(),
                vec![Row {
                    name: "load".into(),
                    status: RowStatus::Error,
                    message: e.to_string(),
                    duration: 0.0,
                }],
            ),
            Ok((_, plan)) => {
                let rows = match engine::connect(&plan, &inv, quiet).await {
                    Err(e) => vec![Row {
                        name: "connect".into(),
                        status: RowStatus::Error,
                        message: e.to_string(),
                        duration: 0.0,
                    }],
                    Ok(sessions) => match engine::lock(&sessions, quiet).await {
                        Err(e) => vec![Row {
                            name: "lock".into(),
                            status: RowStatus::Error,
                            message: e.to_string(),
                            duration: 0.0,
                        }],
                        Ok(locks) => {
                            let pb = engine::spinner(format!("{}: starting", plan.name), quiet);
                            let name = plan.name.clone();
                            let progress = |step: &str| pb.set_message(format!("{name}: {step}"));
                            let rows = if a.crash_matrix {
                                // The crashing `break` processes take the lock themselves.
                                locks.release().await;
                                let cmd = crashtest::BreakCommand {
                                    scenario: file.clone(),
                                    inventory: inv_path.clone(),
                                    graders: a.target.graders.clone(),
                                    params: a.target.params.clone(),
                                };
                                crashtest::run(&plan, &sessions, &inv, &journal, &cmd, &progress)
                                    .await
                            } else {
                                let rows = selftest::run(
                                    &plan, &sessions, &inv, &journal, true, &progress,
                                )
                                .await;
                                locks.release().await;
                                rows
                            };
                            pb.finish_and_clear();
                            rows
                        }
                    },
                };
                (plan.name.clone(), rows)
            }
        };
        if a.output == Output::Human {
            println!(
                "{} {}",
                console::style(&scenario).cyan().bold(),
                console::style(file.display()).dim()
            );
            for r in &rows {
                let label = match r.status {
                    RowStatus::Pass => console::style("PASS ").green(),
                    RowStatus::Fail => console::style("FAIL ").red(),
                    RowStatus::Error => console::style("ERROR").red(),
                    RowStatus::Skip => console::style("SKIP ").yellow(),
                };
                println!(
                    "  {label} {:<32} {:>6.1}s  {}",
                    r.name,
                    r.duration,
                    crate::report::printable(&r.message)
                );
            }
        }
        results.push(ScenarioResult {
            file: file.display().to_string(),
            scenario,
            rows,
            duration: started.elapsed().as_secs_f64(),
        });
    }
    if let Some(path) = &a.junit {
        write_junit(path, &results)?;
    }
    if a.output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&results).unwrap_or_default()
        );
    }
    let ok = results.iter().all(|r| {
        r.rows.iter().all(|row| {
            row.status == RowStatus::Pass
                || (row.status == RowStatus::Skip
                    && (row.name == "topology" || row.name == "requires"))
        })
    });
    if a.output == Output::Human {
        let total: usize = results.iter().map(|r| r.rows.len()).sum();
        let passed: usize = results
            .iter()
            .map(|r| {
                r.rows
                    .iter()
                    .filter(|x| x.status == RowStatus::Pass)
                    .count()
            })
            .sum();
        println!(
            "\n{passed} of {total} rows passed across {} scenario(s)",
            results.len()
        );
    }
    Ok(if ok { EXIT_PASS } else { EXIT_FAIL })
}

fn write_junit(path: &std::path::Path, results: &[ScenarioResult]) -> Result<()> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new("breakfix-selftest");
    for r in results {
        let mut suite = TestSuite::new(r.scenario.clone());
        suite.set_time(std::time::Duration::from_secs_f64(r.duration));
        for row in &r.rows {
            let status = match row.status {
                RowStatus::Pass => TestCaseStatus::success(),
                RowStatus::Skip => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(crate::report::xml_safe(&row.message).into_owned());
                    s
                }
                RowStatus::Fail | RowStatus::Error => {
                    let kind = if row.status == RowStatus::Fail {
                        NonSuccessKind::Failure
                    } else {
                        NonSuccessKind::Error
                    };
                    let mut s = TestCaseStatus::non_success(kind);
                    s.set_message(crate::report::xml_safe(&row.message).into_owned());
                    s
                }
            };
            let mut case = TestCase::new(row.name.clone(), status);
            case.set_classname(format!("breakfix.{}", r.scenario));
            case.set_time(std::time::Duration::from_secs_f64(row.duration));
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    let xml = report
        .to_string()
        .map_err(|e| Error::other(format!("JUnit report: {e}")))?;
    std::fs::write(path, xml).map_err(|source| Error::Io {
        context: format!("writing {}", path.display()),
        source,
    })
}
