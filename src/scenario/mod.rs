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
