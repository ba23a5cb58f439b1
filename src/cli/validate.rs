//! `breakfix validate FILE...`: load and validate scenario, grader and lab files; print
//! diagnostics.

use std::path::PathBuf;

use clap::Args;

use super::args::Output;
use super::{Globals, EXIT_ERROR, EXIT_PASS};
use crate::error::Result;

/// Arguments of `validate`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  breakfix validate scenarios/*.yaml --output json")]
pub struct ValidateArgs {
    /// Scenario, grader (`kind: Grader`) or lab (`kind: Lab`) files.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Directory of grader files (default: `graders/` beside each scenario's directory).
    #[arg(long, value_name = "DIR")]
    pub graders: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

/// Is this a grader file (`kind: Grader`)?
fn is_grader_file(path: &std::path::Path) -> bool {
    std::fs::read_to_string(path)
        .map(|t| t.lines().any(|l| l.trim() == "kind: Grader"))
        .unwrap_or(false)
}

/// Checks a grader on its own: through a minimal scenario that includes it, keeping only the
/// diagnostics about the grader file itself.
fn check_grader(path: &std::path::Path) -> crate::scenario::FileReport {
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("grader")
        .to_string();
    let dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(std::path::Path::new("."));
    let holder = match tempfile::Builder::new()
        .prefix("breakfix-grader-check-")
        .tempdir()
    {
        Ok(d) => d,
        Err(_) => return super::load::check_file(path, None),
    };
    let sc = holder.path().join("grader-check.yaml");
    let text = format!(
        "apiVersion: breakfix/v1\nkind: Scenario\nmetadata:\n  name: grader-check\n  title: grader check\ntargets:\n  cp:\n    role: control-plane\nfaults:\n  - kind: command\n    run: \"true\"\n    undo: \"true\"\nverify:\n  include: [{name}]\n"
    );
    if std::fs::write(&sc, text).is_err() {
        return super::load::check_file(path, None);
    }
    let mut report = super::load::check_file(&sc, Some(dir));
    let own = report
        .diagnostics
        .iter()
        .any(|d| d.file != sc.display().to_string());
    report
        .diagnostics
        .retain(|d| d.file != sc.display().to_string() || !own);
    report.path = path.to_path_buf();
    report
}

/// Checks a lab (`kind: Lab`): the lab file itself, then every step's scenario (with the
/// graders beside it, or `--graders`). Prints in human mode; returns (valid, JSON report).
/// The report's `etcd_members` is the most members a step's scenario needs
/// (`metadata.requires.etcd_members`; 1 when none says), so that a lab for a multi-member
/// cluster says so before anyone exports or drills it.
fn check_lab(f: &std::path::Path, a: &ValidateArgs, g: &Globals) -> (bool, serde_json::Value) {
    let lab = match crate::lab::LoadedLab::load(f) {
        Ok(l) => l,
        Err(e) => {
            if a.output == Output::Human {
                println!("{} {e}", console::style("error").red());
            }
            return (
                false,
                serde_json::json!({"file": f.display().to_string(), "ok": false, "error": e.to_string()}),
            );
        }
    };
    let mut ok = true;
    let mut steps = Vec::new();
    // The topologies the lab runs on: those every step has a variant for, less those a step's
    // one-for-all scenario is not written for.
    let mut runs_on = lab.topologies();
    let mut etcd_members = 1usize;
    for n in 1..=lab.lab.steps.len() {
        for (topology, sc) in lab.scenario_variants(n) {
            let report = super::load::check_file(&sc, a.graders.as_deref());
            if let Some(l) = &report.loaded {
                let meta = &l.scenario.metadata;
                if topology.is_none() {
                    runs_on.retain(|t| meta.topologies.is_empty() || meta.topologies.contains(t));
                }
                etcd_members = etcd_members.max(meta.requires.etcd_members.unwrap_or(1));
            }
            let mut step_ok = report.is_ok() && report.loaded.is_some();
            // A scenario given for one topology must be written for it.
            let mismatch = topology.and_then(|t| {
                let tops = &report.loaded.as_ref()?.scenario.metadata.topologies;
                (!tops.is_empty() && !tops.contains(&t)).then(|| {
                    let names: Vec<&str> = tops.iter().map(|t| t.name()).collect();
                    format!(
                        "step {n}'s scenario for {t}, {}, is written for the {} topology",
                        sc.display(),
                        names.join("/")
                    )
                })
            });
            step_ok &= mismatch.is_none();
            ok &= step_ok;
            let of = topology.map(|t| format!(" ({t})")).unwrap_or_default();
            if a.output == Output::Human && !step_ok {
                println!(
                    "{} step {n}{of} of {}:",
                    console::style("error").red(),
                    f.display()
                );
                match &mismatch {
                    Some(m) => println!("  {m}"),
                    None => print!("{}", report.render(g.color)),
                }
            }
            steps.push(serde_json::json!({
                "step": n,
                "topology": topology.map(|t| t.name()),
                "error": mismatch,
                "report": report.json(),
            }));
        }
    }
    let topologies: Vec<&str> = runs_on.into_iter().map(|t| t.name()).collect();
    if topologies.is_empty() {
        ok = false;
        if a.output == Output::Human {
            println!(
                "{} {}: no topology has a scenario written for it and a text in every step",
                console::style("error").red(),
                f.display()
            );
        }
    }
    if a.output == Output::Human && ok {
        let with = (1..=lab.lab.steps.len())
            .filter(|n| !lab.scenario_variants(*n).is_empty())
            .count();
        let members = if etcd_members > 1 {
            format!("; needs {etcd_members} etcd members")
        } else {
            String::new()
        };
        println!(
            "{} {} (lab: {} steps, {with} with a scenario; topologies: {}{members})",
            console::style("ok").green(),
            f.display(),
            lab.lab.steps.len(),
            topologies.join(", ")
        );
    }
    (
        ok,
        serde_json::json!({"file": f.display().to_string(), "ok": ok, "topologies": topologies, "etcd_members": etcd_members, "steps": steps}),
    )
}

/// Exit 0 when every file is valid, 2 otherwise.
pub async fn run(a: ValidateArgs, g: Globals) -> Result<u8> {
    let mut bad = 0usize;
    let mut json = Vec::new();
    for f in &a.files {
        if crate::lab::is_lab_file(f) {
            let (ok, j) = check_lab(f, &a, &g);
            if !ok {
                bad += 1;
            }
            json.push(j);
            continue;
        }
        let report = if is_grader_file(f) {
            check_grader(f)
        } else {
            super::load::check_file(f, a.graders.as_deref())
        };
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
        println!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        );
    } else if bad > 0 {
        eprintln!("{bad} of {} file(s) invalid", a.files.len());
    }
    Ok(if bad == 0 { EXIT_PASS } else { EXIT_ERROR })
}
