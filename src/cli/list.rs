//! `breakfix list [DIR]`: the scenarios in a directory, one line each.

use std::path::PathBuf;

use clap::Args;

use super::args::Output;
use super::{Globals, EXIT_PASS};
use crate::error::{Error, Result};

/// Arguments of `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Directory to scan (default `scenarios`).
    #[arg(default_value = "scenarios")]
    pub dir: PathBuf,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

/// Lists `*.yaml` scenarios with name, difficulty, time limit, topologies and title;
/// invalid files are listed as such.
pub async fn run(a: ListArgs, _g: Globals) -> Result<u8> {
    let rd = std::fs::read_dir(&a.dir).map_err(|source| Error::Io {
        context: format!("reading {}", a.dir.display()),
        source,
    })?;
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut rows = Vec::new();
    for f in files {
        let report = super::load::check_file(&f, None);
        let row = match &report.loaded {
            Some(l) if report.diagnostics.is_empty() => {
                let m = &l.scenario.metadata;
                serde_json::json!({
                    "file": f.display().to_string(), "name": m.name.value, "title": m.title,
                    "difficulty": m.difficulty, "time_limit": m.time_limit.map(|d| d.to_string()),
                    "tags": m.tags, "topologies": m.topologies, "valid": true,
                })
            }
            _ => {
                serde_json::json!({"file": f.display().to_string(), "valid": false, "errors": report.diagnostics.len()})
            }
        };
        rows.push(row);
    }
    if a.output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    } else {
        let width = rows
            .iter()
            .filter_map(|r| r["name"].as_str().or(r["file"].as_str()))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let topologies = |r: &serde_json::Value| {
            let t: Vec<&str> = r["topologies"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            if t.is_empty() {
                "any".to_string()
            } else {
                t.join(",")
            }
        };
        for r in &rows {
            if r["valid"] == true {
                println!(
                    "{:<width$}  {:<12}  {:>4}  {:<16}  {}",
                    r["name"].as_str().unwrap_or(""),
                    r["difficulty"].as_str().unwrap_or(""),
                    r["time_limit"].as_str().unwrap_or("-"),
                    topologies(r),
                    r["title"].as_str().unwrap_or("")
                );
            } else {
                println!(
                    "{:<width$}  invalid ({} errors): run `breakfix validate {}`",
                    r["file"].as_str().unwrap_or(""),
                    r["errors"],
                    r["file"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(EXIT_PASS)
}
