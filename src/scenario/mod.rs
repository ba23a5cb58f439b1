//! Scenario: the lab author's YAML file (format v1, docs/scenario-format.md), as loaded.
//!
//! Loading keeps YAML locations for the fields validation checks ([`Spanned`]); rendering
//! (templates) happens later, per node, in [`crate::plan`].

pub mod check;
pub mod codes;
pub mod diagnostic;
pub mod load;
pub mod tree;
pub mod validate;

pub use check::{check_file, load_valid, FileReport};
pub use codes::Code;
pub use diagnostic::Diagnostic;
pub use load::{load, Loaded, LoadedGrader};
pub use validate::validate;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::duration::Dur;
use crate::fault::Action;
use crate::probe::Probe;

/// The whole scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Always `breakfix/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: Spanned<String>,
    /// Always `Scenario`.
    pub kind: Spanned<String>,
    /// Name, title, story, difficulty, time limit, tags.
    pub metadata: Metadata,
    /// Parameters with defaults, overridable with `--param name=value`.
    #[serde(default)]
    pub params: BTreeMap<String, Param>,
    /// Named node selections (`cp: { role: control-plane }`).
    #[serde(default)]
    pub targets: BTreeMap<String, TargetSpec>,
    /// Probes that must all PASS before anything runs (before `setup`); otherwise the break
    /// refuses with their report and changes nothing.
    #[serde(default)]
    pub preconditions: Vec<Probe>,
    /// Steps run before the break (not journaled, not undone).
    #[serde(default)]
    pub setup: Vec<Action>,
    /// The break: each fault journals its undo before it mutates.
    pub faults: Vec<Action>,
    /// Probes written as HEALTHY expectations that must FAIL after the break (proof that
    /// the fault took).
    #[serde(default)]
    pub confirm: Vec<Probe>,
    /// Probes never graded that tell where the learner is (e.g. "etcd runs but its port is
    /// closed"): hints name them in `when:` to unlock on evidence instead of a clock.
    #[serde(default)]
    pub signals: Vec<Probe>,
    /// The learner's tasks.
    #[serde(default)]
    pub tasks: Vec<Task>,
    /// Probes that must all PASS once fixed (own probes plus included graders).
    pub verify: Verify,
    /// The reference fix (used by `run --solution` and `breakfix test`).
    #[serde(default)]
    pub solution: Vec<Action>,
    /// Plausible fixes that must NOT pass verify (self-test).
    #[serde(default)]
    pub wrong_fixes: Vec<WrongFix>,
    /// Other correct fixes, written another way than `solution:`, that MUST pass verify
    /// (self-test): the grade checks meaning, not one spelling.
    #[serde(default)]
    pub alternative_fixes: Vec<WrongFix>,
}

/// Descriptive fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Identifier: lowercase letters, digits and dashes.
    pub name: Spanned<String>,
    /// One-line title.
    pub title: String,
    /// The story (markdown).
    #[serde(default)]
    pub description: String,
    /// `beginner`, `intermediate` or `advanced`.
    #[serde(default)]
    pub difficulty: Difficulty,
    /// Total time for the learner (default 30m).
    #[serde(default)]
    pub time_limit: Option<Dur>,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Topologies the scenario applies to (`external`, `stacked`); empty means any.
    #[serde(default)]
    pub topologies: Vec<crate::inventory::Topology>,
    /// What the cluster must have for the scenario to make sense (e.g. three etcd members
    /// for a quorum incident); checked against the inventory before anything runs.
    #[serde(default)]
    pub requires: Requires,
}

/// `metadata.requires`: the cluster a scenario needs.
///
/// ```yaml
/// metadata:
///   requires: { etcd_members: 3 }
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requires {
    /// The least number of etcd members: inventory nodes with the `etcd` role
    /// (`breakfix sandbox up --control-planes 3` has three).
    #[serde(default)]
    pub etcd_members: Option<usize>,
}

impl Metadata {
    /// Why `inventory`'s cluster cannot run this scenario, or `None`: (`"topology"`, ...) when
    /// its topology is not one of `topologies`, (`"requires"`, ...) when it has fewer etcd
    /// members than `requires.etcd_members`. The message is a clause with its verb: "is
    /// written for the stacked topology; this cluster is external".
    pub fn unmet(&self, inventory: &crate::inventory::Inventory) -> Option<(&'static str, String)> {
        let tops = &self.topologies;
        if !tops.is_empty() && !tops.contains(&inventory.cluster.topology) {
            return Some((
                "topology",
                format!(
                    "is written for the {} topology; this cluster is {}",
                    tops.iter().map(|t| t.name()).collect::<Vec<_>>().join("/"),
                    inventory.cluster.topology.name()
                ),
            ));
        }
        if let Some(want) = self.requires.etcd_members {
            let have = inventory
                .nodes
                .iter()
                .filter(|n| n.roles.iter().any(|r| r == "etcd"))
                .count();
            if have < want {
                return Some(("requires", format!(
                    "needs {want} etcd members (metadata.requires.etcd_members); this cluster's inventory has {have} node(s) with the `etcd` role (`breakfix sandbox up --control-planes {want}` makes one)"
                )));
            }
        }
        None
    }
}

/// Difficulty level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Difficulty {
    /// New to etcd.
    Beginner,
    /// Knows etcdctl and systemd.
    #[default]
    Intermediate,
    /// Production incident level.
    Advanced,
}

/// A parameter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    /// Default value (strings; numbers are written as they appear).
    pub default: ParamValue,
    /// What it means.
    #[serde(default)]
    pub description: Option<String>,
}

/// A parameter value: any scalar, kept as text.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamValue(pub String);

impl<'de> Deserialize<'de> for ParamValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ParamValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a scalar (string, number or bool)")
            }
            fn visit_str<E>(self, v: &str) -> Result<ParamValue, E> {
                Ok(ParamValue(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<ParamValue, E> {
                Ok(ParamValue(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<ParamValue, E> {
                Ok(ParamValue(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<ParamValue, E> {
                Ok(ParamValue(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<ParamValue, E> {
                Ok(ParamValue(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Which nodes a target name means.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// Select nodes carrying this role (e.g. `control-plane`).
    #[serde(default)]
    pub role: Option<String>,
    /// Select one node by name (e.g. `controlplane`).
    #[serde(default)]
    pub node: Option<String>,
    /// With `role`: every matching node instead of the first one.
    #[serde(default)]
    pub all: bool,
}

/// A learner task.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// Short title.
    pub title: String,
    /// What to do (markdown).
    #[serde(default)]
    pub text: String,
    /// Time budget for this task.
    #[serde(default)]
    pub time_limit: Option<Dur>,
    /// Hints, in the order they unlock.
    #[serde(default)]
    pub hints: Vec<Hint>,
    /// Names of verify probes that show this task done (none: the whole verify).
    #[serde(default)]
    pub probes: Vec<Spanned<String>>,
    /// Probes of the task's own (any kind) whose PASS shows it done instead of verify probes:
    /// evidence the learner produces without fixing anything (an answer file, for a diagnosis
    /// task). They never count in the scenario's verdict. Exclusive with `probes` (BF407).
    #[serde(default)]
    pub evidence: Vec<Probe>,
    /// Points for finishing the task (default 10).
    #[serde(default = "ten")]
    pub points: u32,
}

fn ten() -> u32 {
    10
}

/// A hint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hint {
    /// The hint text.
    pub text: String,
    /// Unlocks by itself this long after the clock started (default: on request only).
    #[serde(default)]
    pub after: Option<Dur>,
    /// Points it costs (default 1).
    #[serde(default = "one")]
    pub cost: u32,
    /// Names of probes (`signals:`, verify, or this task's `evidence:`) that unlock the hint
    /// once they all PASS, checked on the drill's rounds; with `after` too, whichever comes
    /// first. Empty: time or request only.
    #[serde(default)]
    pub when: Vec<Spanned<String>>,
}

fn one() -> u32 {
    1
}

/// The grade's probes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    /// Graders from `graders/<name>.yaml` whose probes are added.
    #[serde(default)]
    pub include: Vec<Spanned<String>>,
    /// The scenario's own probes.
    #[serde(default)]
    pub probes: Vec<Probe>,
}

/// A plausible but wrong fix (`wrong_fixes:`), or another correct one
/// (`alternative_fixes:`): a name, why, and steps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrongFix {
    /// Name in reports.
    pub name: String,
    /// Why it is wrong, or why it is as good as the solution (shown by `breakfix test`).
    #[serde(default)]
    pub why: Option<String>,
    /// The steps.
    pub steps: Vec<Action>,
}

/// A grader file (`graders/<name>.yaml`): a reusable probe set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grader {
    /// Always `breakfix/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: Spanned<String>,
    /// Always `Grader`.
    pub kind: Spanned<String>,
    /// `name` and a description.
    pub metadata: GraderMeta,
    /// Parameters the probes use (merged under the scenario's own).
    #[serde(default)]
    pub params: BTreeMap<String, Param>,
    /// The probes.
    pub probes: Vec<Probe>,
}

/// Grader metadata.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraderMeta {
    /// Name (the file stem).
    pub name: String,
    /// What it checks.
    #[serde(default)]
    pub description: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Inventory;

    fn inventory(topology: &str, etcd_nodes: usize) -> Inventory {
        let nodes: String = (0..etcd_nodes)
            .map(|i| {
                format!(
                    "- {{ name: cp{i}, address: 198.18.0.{}, known_hosts: kh, roles: [control-plane, etcd] }}\n",
                    11 + i
                )
            })
            .collect();
        let text = format!(
            "apiVersion: breakfix/v1\nkind: Inventory\ncluster:\n  name: c\n  topology: {topology}\n  etcd:\n    endpoints: [https://127.0.0.1:2379]\n    ca_file: ca\n    cert_file: c\n    key_file: k\nnodes:\n{nodes}"
        );
        Inventory::parse(std::path::Path::new("i.yaml"), &text).expect("inventory")
    }

    fn metadata(extra: &str) -> Metadata {
        serde_saphyr::from_str(&format!("name: x\ntitle: t\n{extra}")).expect("metadata")
    }

    #[test]
    fn a_scenario_for_three_members_is_refused_on_one_with_the_reason() {
        let m = metadata("topologies: [external]\nrequires: { etcd_members: 3 }\n");
        let (field, why) = m.unmet(&inventory("external", 1)).expect("refused");
        assert_eq!(field, "requires");
        assert!(why.contains("needs 3 etcd members"), "{why}");
        assert!(why.contains("has 1 node(s) with the `etcd` role"), "{why}");
        assert!(m.unmet(&inventory("external", 3)).is_none());
        // The topology is checked first.
        let (field, why) = m.unmet(&inventory("stacked", 3)).expect("refused");
        assert_eq!(field, "topology");
        assert!(
            why.starts_with("is written for the external topology"),
            "{why}"
        );
        // No requirement: any cluster.
        assert!(metadata("").unmet(&inventory("stacked", 1)).is_none());
        // A misspelt requirement is an error, not ignored.
        assert!(serde_saphyr::from_str::<Metadata>(
            "name: x\ntitle: t\nrequires: { etcd_member: 3 }\n"
        )
        .is_err());
    }
}
