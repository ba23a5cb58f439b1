//! History: every `check` and `drill` appended to `<state>/history.jsonl`, so a learner's
//! attempts survive a restart.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::engine::verdict::{Status, Verdict};
use crate::error::{Error, Result};

/// One recorded attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    /// Seconds since the epoch.
    pub at: u64,
    /// `check` or `drill`.
    pub command: String,
    /// Scenario name.
    pub scenario: String,
    /// `pass` or `fail`.
    pub outcome: String,
    /// Probes passed.
    pub passed: usize,
    /// Probes graded.
    pub total: usize,
    /// Ids of the probes that did not pass.
    pub failing: Vec<String>,
}

impl Attempt {
    /// An attempt from verdicts.
    pub fn new(command: &str, scenario: &str, verdicts: &[Verdict]) -> Attempt {
        let passed = verdicts.iter().filter(|v| v.status == Status::Pass).count();
        Attempt {
            at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
            command: command.into(),
            scenario: scenario.into(),
            outcome: if passed == verdicts.len() && passed > 0 {
                "pass"
            } else {
                "fail"
            }
            .into(),
            passed,
            total: verdicts.len(),
            failing: verdicts
                .iter()
                .filter(|v| v.status != Status::Pass)
                .map(|v| v.probe.clone())
                .collect(),
        }
    }
}

fn path() -> std::path::PathBuf {
    crate::state::state_dir().join("history.jsonl")
}

/// Appends one attempt (one JSON line, fsync'd).
pub fn record(a: &Attempt) -> Result<()> {
    let p = path();
    let io = |source| Error::Io {
        context: format!("writing {}", p.display()),
        source,
    };
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(io)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .map_err(io)?;
    let line = serde_json::to_string(a).map_err(|e| Error::other(e.to_string()))?;
    writeln!(f, "{line}").map_err(io)?;
    f.sync_all().map_err(io)
}

/// Every recorded attempt, oldest first (unreadable lines are skipped).
pub fn load() -> Vec<Attempt> {
    std::fs::read_to_string(path())
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}
