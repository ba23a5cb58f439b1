//! Journal: every fault's undo, recorded before the fault mutates anything, both locally
//! (state dir) and on the node (`/var/lib/breakfix/journal/`), replayed LIFO by `reset`.
//!
//! # Guarantees
//! - [`Journal::record`] returns only after the entry is durable locally (fsync) AND written
//!   on the node; a fault proceeds only after that.
//! - `reset` reads both copies (union by id), so it works after the local state is lost or
//!   after the engine was killed mid-break.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::engine::connect::NodeSession;
use crate::error::{Error, Result};
use crate::fault::Undo;
use crate::transport::shell_quote;

/// Default journal directory on every node.
pub const REMOTE_DIR: &str = "/var/lib/breakfix/journal";

/// The journal directory on the nodes: `$BREAKFIX_NODE_JOURNAL_DIR` (tests that share one
/// host, non-root users) or [`REMOTE_DIR`].
pub fn remote_dir() -> String {
    std::env::var("BREAKFIX_NODE_JOURNAL_DIR").unwrap_or_else(|_| REMOTE_DIR.to_string())
}

/// One recorded undo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Sortable id: nanoseconds since the epoch, zero-padded.
    pub id: String,
    /// Node name.
    pub node: String,
    /// Scenario name.
    pub scenario: String,
    /// Fault label.
    pub fault: String,
    /// Seconds since the epoch when recorded.
    pub recorded_at: u64,
    /// How to revert.
    pub undo: Undo,
}

/// The local half of the journal: `<state>/journal/<node>/<id>.json`.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

const T: Duration = Duration::from_secs(20);

impl Journal {
    /// The journal under the state dir.
    pub fn open() -> Journal {
        Journal {
            dir: crate::state::state_dir().join("journal"),
        }
    }

    /// A journal in an explicit directory (tests).
    pub fn at(dir: PathBuf) -> Journal {
        Journal { dir }
    }

    /// Records `undo` locally (fsync) and on the node. Errors mean nothing was mutated yet.
    pub async fn record(
        &self,
        s: &NodeSession,
        scenario: &str,
        fault: &str,
        undo: Undo,
    ) -> Result<Entry> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let entry = Entry {
            id: format!("{:020}", now.as_nanos()),
            node: s.node.name.clone(),
            scenario: scenario.to_string(),
            fault: fault.to_string(),
            recorded_at: now.as_secs(),
            undo,
        };
        let json = serde_json::to_vec_pretty(&entry).map_err(|e| Error::other(e.to_string()))?;
        let dir = self.dir.join(&s.node.name);
        let io = |context: String| move |source| Error::Io { context, source };
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let path = dir.join(format!("{}.json", entry.id));
        {
            use std::io::Write;
            let mut f =
                std::fs::File::create(&path).map_err(io(format!("writing {}", path.display())))?;
            f.write_all(&json)
                .map_err(io(format!("writing {}", path.display())))?;
            f.sync_all()
                .map_err(io(format!("syncing {}", path.display())))?;
        }
        let remote = remote_dir();
        s.run_ok(&format!("mkdir -p {}", shell_quote(&remote)), T)
            .await?;
        s.transport
            .write_file(
                &format!("{remote}/{}.json", entry.id),
                &json,
                Some(0o600),
                T,
            )
            .await?;
        Ok(entry)
    }

    /// Every entry for the node (local and remote copies merged), newest first.
    pub async fn entries(&self, s: &NodeSession) -> Result<Vec<Entry>> {
        let mut all = std::collections::BTreeMap::new();
        let dir = self.dir.join(&s.node.name);
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "json") {
                    let bytes = std::fs::read(&p).map_err(|source| Error::Io {
                        context: format!("reading {}", p.display()),
                        source,
                    })?;
                    let entry: Entry =
                        serde_json::from_slice(&bytes).map_err(|e| Error::Config {
                            file: p.display().to_string(),
                            message: e.to_string(),
                        })?;
                    all.insert(entry.id.clone(), entry);
                }
            }
        }
        let remote = shell_quote(&remote_dir());
        let out = s
            .exec(
                &format!(
                    "for f in {remote}/*.json; do [ -f \"$f\" ] && cat \"$f\" && echo; done; true"
                ),
                T,
            )
            .await?;
        let de = serde_json::Deserializer::from_str(&out.stdout).into_iter::<Entry>();
        for item in de {
            match item {
                Ok(entry) => {
                    all.entry(entry.id.clone()).or_insert(entry);
                }
                Err(e) => {
                    return Err(Error::Transport {
                        host: s.transport.host().to_string(),
                        message: format!("unreadable journal entry in {}: {e}", remote_dir()),
                    })
                }
            }
        }
        Ok(all.into_values().rev().collect())
    }

    /// Removes an entry from both copies (after its undo succeeded).
    pub async fn forget(&self, s: &NodeSession, id: &str) -> Result<()> {
        let p = self.dir.join(&s.node.name).join(format!("{id}.json"));
        let _ = std::fs::remove_file(&p);
        let remote = shell_quote(&remote_dir());
        s.run_ok(&format!("rm -f {remote}/{id}.json"), T)
            .await
            .map(|_| ())
    }

    /// Replays every undo for the node, newest first, forgetting each one that succeeded.
    /// Returns the entries reverted. Stops at the first failing undo (later-recorded undos
    /// already ran; the failing and older ones stay journaled for the next reset).
    pub async fn reset(&self, s: &NodeSession) -> Result<Vec<Entry>> {
        let mut done = Vec::new();
        for entry in self.entries(s).await? {
            entry.undo.revert(s).await.map_err(|e| Error::Fault {
                fault: entry.fault.clone(),
                host: s.node.name.clone(),
                message: format!("undo failed ({}): {e}", entry.undo.describe()),
            })?;
            self.forget(s, &entry.id).await?;
            done.push(entry);
        }
        Ok(done)
    }
}
