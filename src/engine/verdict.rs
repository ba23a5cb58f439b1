//! Verdict: the outcome of one probe (pass, fail, skip, error) with expected vs found.

use std::time::Duration;

use serde::Serialize;

/// Outcome of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every expectation held.
    Pass,
    /// At least one expectation did not hold.
    Fail,
    /// Not run: a probe it `needs` did not pass.
    Skip,
    /// Could not be judged (transport failure, timeout of the probe itself).
    Error,
}

impl Status {
    /// Upper-case label for reports.
    pub fn label(&self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
            Status::Error => "ERROR",
        }
    }
}

/// One fact compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// Fact name.
    pub fact: String,
    /// The matcher, in words.
    pub expected: String,
    /// What was found (`<absent>` when the fact could not be gathered).
    pub found: String,
    /// Did it hold?
    pub ok: bool,
}

/// The verdict on one probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// Probe id.
    pub probe: String,
    /// Node it ran on.
    pub node: String,
    /// Probe kind.
    pub kind: String,
    /// Its description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Outcome.
    pub status: Status,
    /// Fact comparisons of the last attempt.
    pub checks: Vec<Check>,
    /// Context from the probe (e.g. why etcd is unhealthy) or why it was skipped / errored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// Wall time spent, in seconds.
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

impl Verdict {
    /// A verdict of probe `probe` (kind `kind`) on `controlplane` with no checks, for tests.
    #[cfg(test)]
    pub(crate) fn sample(probe: &str, kind: &str, status: Status) -> Verdict {
        Verdict {
            probe: probe.into(),
            node: "controlplane".into(),
            kind: kind.into(),
            description: None,
            status,
            checks: Vec::new(),
            note: None,
            attempts: 1,
            duration: Duration::ZERO,
        }
    }

    /// `fact: expected X, found Y` for each failing check.
    pub fn failures(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: expected {}, found {}", c.fact, c.expected, c.found))
            .collect()
    }
}
