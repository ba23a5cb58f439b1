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
//!     scenario: ../scenarios/etcd-disk-full.yaml
//!   - title: etcd is down
//!     scenario:                        # one scenario per topology (docs/lab-format.md)
//!       external: ../scenarios/etcd-service-stopped.yaml
//!       stacked: ../scenarios/etcd-static-pod-missing.yaml
//!     text:
//!       external: "`systemctl status etcd` ..."
//!       stacked: "`crictl ps -a --name etcd` ..."
//! finish: |
//!   Well done.
//! ```
//!
//! A step's variant is picked by the topology of the cluster it runs on (the inventory's
//! `cluster.topology`, or the export's `--topology`); a step without a variant for that
//! topology is refused with the topologies it has.

mod by_topology;

pub use by_topology::ByTopology;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::duration::Dur;
use crate::error::{Error, Result};
use crate::inventory::Topology;

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
    /// Instructions (markdown), for every topology or per topology.
    #[serde(default)]
    pub text: ByTopology,
    /// Scenario this step breaks with (path relative to the lab file), for every topology or
    /// per topology. Without one the step only teaches and its check always passes.
    #[serde(default)]
    pub scenario: Option<ByTopology>,
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
            for (t, sc) in s.scenario.iter().flat_map(ByTopology::variants) {
                let sc = l.resolve(sc);
                if !sc.exists() {
                    let of = t.map(|t| format!(" for {t}")).unwrap_or_default();
                    return Err(bad(format!(
                        "step {} (`{}`): scenario{of} {} does not exist",
                        i + 1,
                        s.title,
                        sc.display()
                    )));
                }
            }
            if let (Some(ByTopology::Each(sc)), ByTopology::Each(text)) = (&s.scenario, &s.text) {
                if let Some(t) = sc.keys().find(|t| !text.contains_key(t)) {
                    return Err(bad(format!(
                        "step {} (`{}`): it has a scenario for {t} but no text for {t}; give `text` an entry for every topology of `scenario`, or one text for all",
                        i + 1,
                        s.title
                    )));
                }
            }
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

    /// The scenario file of step `n` (1-based) on topology `t`, resolved against the lab's
    /// directory. `Ok(None)` for a step that only teaches.
    ///
    /// Errors: no step `n`; the step has scenarios for other topologies only.
    pub fn scenario_for(&self, n: usize, t: Topology) -> Result<Option<PathBuf>> {
        let step = self.step(n)?;
        let Some(sc) = &step.scenario else {
            return Ok(None);
        };
        match sc.get(t) {
            Some(p) => Ok(Some(self.resolve(p))),
            None => Err(self.no_variant(n, step, "scenario", sc, t)),
        }
    }

    /// The text of step `n` (1-based) on topology `t`.
    ///
    /// Errors: no step `n`; the step has texts for other topologies only.
    pub fn text_for(&self, n: usize, t: Topology) -> Result<&str> {
        let step = self.step(n)?;
        step.text
            .get(t)
            .ok_or_else(|| self.no_variant(n, step, "text", &step.text, t))
    }

    /// Every scenario file of step `n` (1-based), each with the topology it is for (`None`:
    /// every topology).
    pub fn scenario_variants(&self, n: usize) -> Vec<(Option<Topology>, PathBuf)> {
        let Some(step) = n.checked_sub(1).and_then(|i| self.lab.steps.get(i)) else {
            return Vec::new();
        };
        step.scenario
            .iter()
            .flat_map(ByTopology::variants)
            .map(|(t, p)| (t, self.resolve(p)))
            .collect()
    }

    /// The topologies every step has a scenario and a text for (the lab's scenarios' own
    /// `metadata.topologies` are not read here).
    pub fn topologies(&self) -> Vec<Topology> {
        [Topology::External, Topology::Stacked]
            .into_iter()
            .filter(|t| {
                self.lab.steps.iter().all(|s| {
                    s.text.get(*t).is_some()
                        && s.scenario.as_ref().is_none_or(|sc| sc.get(*t).is_some())
                })
            })
            .collect()
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }

    fn no_variant(&self, n: usize, step: &Step, what: &str, v: &ByTopology, t: Topology) -> Error {
        let has: Vec<&str> = v
            .topologies()
            .unwrap_or_default()
            .into_iter()
            .map(Topology::name)
            .collect();
        Error::Config {
            file: self.path.display().to_string(),
            message: format!(
                "step {n} (`{}`) has a {what} for the {} topology only, and this cluster is {t}; run the lab on a cluster of that topology (or export it with `--topology {}`), or give the step a {what} for {t}",
                step.title,
                has.join(" and "),
                has.first().copied().unwrap_or("external"),
            ),
        }
    }
}

/// Is this YAML file a lab (`kind: Lab`)? Cheap sniff used to dispatch `drill FILE`.
pub fn is_lab_file(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .map(|t| t.lines().any(|l| l.trim() == "kind: Lab"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lab in a temporary directory beside the scenario files `names` (empty files: the
    /// loader only checks that they exist).
    fn lab(steps: &str, names: &[&str]) -> (tempfile::TempDir, Result<LoadedLab>) {
        let dir = tempfile::tempdir().expect("tempdir");
        for n in names {
            std::fs::write(dir.path().join(n), "").expect("write");
        }
        let text = format!(
            "apiVersion: breakfix/v1\nkind: Lab\nmetadata: {{ name: l, title: L }}\nsteps:\n{steps}"
        );
        let l = LoadedLab::parse(&dir.path().join("lab.yaml"), &text);
        (dir, l)
    }

    #[test]
    fn each_topology_gets_its_own_scenario_and_text_and_a_missing_one_is_refused() {
        let (dir, l) = lab(
            "  - title: down\n    scenario: { external: e.yaml, stacked: s.yaml }\n    text: { external: use systemctl, stacked: use crictl }\n  - title: teach\n    text: read\n  - title: only external\n    scenario: { external: e.yaml }\n    text: x\n",
            &["e.yaml", "s.yaml"],
        );
        let l = l.expect("valid lab");
        assert_eq!(
            l.scenario_for(1, Topology::Stacked).unwrap(),
            Some(dir.path().join("s.yaml"))
        );
        assert_eq!(l.text_for(1, Topology::External).unwrap(), "use systemctl");
        assert_eq!(l.text_for(1, Topology::Stacked).unwrap(), "use crictl");
        assert_eq!(l.scenario_for(2, Topology::Stacked).unwrap(), None);
        assert_eq!(l.text_for(2, Topology::Stacked).unwrap(), "read");
        let e = l
            .scenario_for(3, Topology::Stacked)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("step 3 (`only external`) has a scenario for the external topology only, and this cluster is stacked"),
            "{e}"
        );
        assert!(e.contains("lab.yaml"), "names the file: {e}");
        assert!(l.scenario_for(4, Topology::Stacked).is_err(), "no step 4");
        assert_eq!(l.topologies(), vec![Topology::External]);
        assert_eq!(l.scenario_variants(3).len(), 1);
    }

    #[test]
    fn a_missing_variant_file_an_unknown_topology_and_a_text_gap_are_refused_at_load() {
        let (_d, l) = lab(
            "  - title: down\n    scenario: { external: e.yaml, stacked: missing.yaml }\n",
            &["e.yaml"],
        );
        let e = l.unwrap_err().to_string();
        assert!(e.contains("step 1 (`down`): scenario for stacked"), "{e}");
        assert!(e.contains("missing.yaml does not exist"), "{e}");

        let (_d, l) = lab(
            "  - title: down\n    scenario: { docker: e.yaml }\n",
            &["e.yaml"],
        );
        let e = l.unwrap_err().to_string();
        assert!(e.contains("external") && e.contains("stacked"), "{e}");
        assert!(e.contains("line 6"), "says where: {e}");

        let (_d, l) = lab(
            "  - title: down\n    scenario: { external: e.yaml, stacked: e.yaml }\n    text: { external: hi }\n",
            &["e.yaml"],
        );
        let e = l.unwrap_err().to_string();
        assert!(
            e.contains("it has a scenario for stacked but no text for stacked"),
            "{e}"
        );
    }
}
