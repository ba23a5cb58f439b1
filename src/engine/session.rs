//! Session: what `breakfix break` leaves in the state dir so `check`, `hint` and `reset`
//! know the scenario and inventory without being told again.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The current break.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// Scenario file (absolute).
    pub scenario: PathBuf,
    /// Inventory file (absolute).
    pub inventory: PathBuf,
    /// Graders directory used.
    pub graders: Option<PathBuf>,
    /// `--param` overrides.
    pub params: BTreeMap<String, String>,
    /// Seconds since the epoch when the break was confirmed (the clock's start).
    pub confirmed_at: u64,
    /// The lab and step this break belongs to, if any.
    #[serde(default)]
    pub lab: Option<PathBuf>,
    /// 1-based lab step.
    #[serde(default)]
    pub step: Option<usize>,
    /// Hints revealed so far, per task (0-based task index -> count).
    #[serde(default)]
    pub hints: BTreeMap<usize, u32>,
    /// When `breakfix watch` first saw each task done: 0-based task index -> seconds after
    /// `confirmed_at`.
    #[serde(default)]
    pub done: BTreeMap<usize, f64>,
}

fn path() -> PathBuf {
    crate::state::state_dir().join("session.json")
}

impl Session {
    /// Saves (atomically) to `<state>/session.json`.
    pub fn save(&self) -> Result<()> {
        let p = path();
        let io = |source| Error::Io {
            context: format!("writing {}", p.display()),
            source,
        };
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = p.with_extension("json.tmp");
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::other(e.to_string()))?;
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::rename(&tmp, &p).map_err(io)
    }

    /// Loads the current session, if any.
    pub fn load() -> Result<Option<Session>> {
        let p = path();
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| Error::Config {
                    file: p.display().to_string(),
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io {
                context: format!("reading {}", p.display()),
                source,
            }),
        }
    }

    /// Forgets the session (after `reset`).
    pub fn clear() {
        let _ = std::fs::remove_file(path());
    }
}
