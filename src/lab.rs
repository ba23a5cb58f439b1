//! Lab: a multi-step lab (`labs/*.yaml`) — intro, steps that each break with a scenario or
//! only teach, and a finish text. Drives `breakfix drill LAB`, `check --lab --step N` and the
//! Killercoda export.
//!
//! ```yaml
//! apiVersion: breakfix/v1
//! kind: Lab
//! metadata: { name: etcd-outage, title: "etcd service and connectivity outage", time_limit: 40m }
//! intro: |
//!   It is 03:00 ...
//! steps:
//!   - title: Bring etcd back
//!     text: |
//!       Start etcd again and prove it serves reads and writes.
//!     scenario: ../scenarios/etcd-service-stopped.yaml
//! finish: |
//!   Well done.
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::duration::Dur;
use crate::error::{Error, Result};

/// A lab file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lab {
    /// Always `breakfix/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Always `Lab`.
    pub kind: String,
    /// Name, title, description, time limit.
    pub metadata: LabMeta,
    /// Text shown before the first step (markdown).
    #[serde(default)]
    pub intro: String,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Text shown at the end (markdown).
    #[serde(default)]
    pub finish: String,
}

/// Lab metadata.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabMeta {
    /// Identifier (`[a-z0-9-]+`).
    pub name: String,
    /// Title.
    pub title: String,
    /// Summary (markdown).
    #[serde(default)]
    pub description: String,
    /// Total time budget (default: the sum of the steps' limits).
    #[serde(default)]
    pub time_limit: Option<Dur>,
    /// `beginner`, `intermediate` or `advanced`.
    #[serde(default)]
    pub difficulty: crate::scenario::Difficulty,
    /// Source this lab was adapted from (free text).
    #[serde(default)]
    pub source: Option<String>,
}

/// One step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Title.
    pub title: String,
    /// Instructions (markdown).
    #[serde(default)]
    pub text: String,
    /// Scenario this step breaks with (path relative to the lab file). Without one the step
    /// only teaches and its check always passes.
    #[serde(default)]
    pub scenario: Option<PathBuf>,
    /// Time budget for the step (default: the scenario's).
    #[serde(default)]
    pub time_limit: Option<Dur>,
}

/// A loaded lab with its file's location.
#[derive(Debug, Clone)]
pub struct LoadedLab {
    /// The lab file.
    pub path: PathBuf,
    /// Parsed content.
    pub lab: Lab,
}

impl LoadedLab {
    /// Reads and checks a lab: kind/apiVersion, at least one step, every step's scenario
    /// file exists. Scenario files themselves are validated when a step uses them.
    pub fn load(path: &Path) -> Result<LoadedLab> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            context: format!("reading lab {}", path.display()),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// [`Self::load`] of `text` as if read from `path` (step scenarios are looked up beside
    /// `path`).
    ///
    /// Errors: as [`Self::load`], but for reading the file.
    pub fn parse(path: &Path, text: &str) -> Result<LoadedLab> {
        let lab: Lab = serde_saphyr::from_str_with_options(text, crate::scenario::load::options())
            .map_err(|e| Error::Config {
                file: path.display().to_string(),
                message: e.to_string(),
            })?;
        let bad = |m: String| Error::Config {
            file: path.display().to_string(),
            message: m,
        };
        if lab.api_version != "breakfix/v1" || lab.kind != "Lab" {
            return Err(bad(format!(
                "expected apiVersion: breakfix/v1 and kind: Lab, found {}/{}",
                lab.api_version, lab.kind
            )));
        }
        if lab.steps.is_empty() {
            return Err(bad("a lab needs at least one step".into()));
        }
        let l = LoadedLab {
            path: path.to_path_buf(),
            lab,
        };
        for (i, s) in l.lab.steps.iter().enumerate() {
            if let Some(sc) = l.scenario_path(i + 1) {
                if !sc.exists() {
                    return Err(bad(format!(
                        "step {} (`{}`): scenario {} does not exist",
                        i + 1,
                        s.title,
                        sc.display()
                    )));
                }
            }
            let _ = s;
        }
        Ok(l)
    }

    /// Step `n` (1-based).
    pub fn step(&self, n: usize) -> Result<&Step> {
        n.checked_sub(1)
            .and_then(|i| self.lab.steps.get(i))
            .ok_or_else(|| {
                Error::other(format!(
                    "lab `{}` has steps 1..={}, not {n}",
                    self.lab.metadata.name,
                    self.lab.steps.len()
                ))
            })
    }

    /// The scenario file of step `n` (1-based), resolved against the lab's directory.
    pub fn scenario_path(&self, n: usize) -> Option<PathBuf> {
        let s = self.lab.steps.get(n.checked_sub(1)?)?;
        let p = s.scenario.as_ref()?;
        Some(if p.is_absolute() {
            p.clone()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        })
    }
}

/// Is this YAML file a lab (`kind: Lab`)? Cheap sniff used to dispatch `drill FILE`.
pub fn is_lab_file(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .map(|t| t.lines().any(|l| l.trim() == "kind: Lab"))
        .unwrap_or(false)
}
