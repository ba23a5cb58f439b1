//! Stale entries: journal entries set aside, never applied, because the node they were
//! recorded for is gone or is now another machine. Kept (with why and when) until a user
//! deletes them on purpose with `breakfix reset --forget-stale`.
//!
//! Layout: locally `<state>/journal-stale/<node>/<id>.json`; on a node
//! `<journal dir>/stale/<id>.json` (an entry found on a node that is not the machine it names,
//! e.g. a cloned disk). Both hold a [`StaleEntry`].

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::Entry;
use crate::error::{Error, Result};

/// An entry that was set aside, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StaleEntry {
    /// The entry as it was recorded.
    pub entry: Entry,
    /// Seconds since the epoch when it was set aside.
    pub set_aside_at: u64,
    /// Why it was not applied (identity mismatch, sandbox removed, ...).
    pub reason: String,
}

impl StaleEntry {
    /// `entry` set aside now for `reason`.
    pub fn new(entry: Entry, reason: impl Into<String>) -> StaleEntry {
        StaleEntry {
            entry,
            set_aside_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
            reason: reason.into(),
        }
    }
}

/// The local directory of stale entries: `<state>/journal-stale`.
pub fn local_dir() -> PathBuf {
    crate::state::state_dir().join("journal-stale")
}

/// Writes `stale` under `root/<node>/<id>.json` (fsync), then removes `pending` (the entry's
/// file in the live journal) if given: a crash in between leaves the entry in both places,
/// and the next reset sets it aside again (idempotent).
///
/// Errors: [`Error::Io`] naming the file.
pub fn store(root: &Path, stale: &StaleEntry, pending: Option<&Path>) -> Result<()> {
    let dir = root.join(&stale.entry.node);
    let io = |context: String| move |source| Error::Io { context, source };
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let path = dir.join(format!("{}.json", stale.entry.id));
    let json = serde_json::to_vec_pretty(stale).map_err(|e| Error::other(e.to_string()))?;
    super::write_synced(&path, &json)?;
    if let Some(p) = pending {
        match std::fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::Io {
                    context: format!("removing {}", p.display()),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Every stale entry under `root` (all nodes), oldest first. Unreadable files are skipped
/// with their path in the second list (they are reported, never fatal).
pub fn list(root: &Path) -> (Vec<StaleEntry>, Vec<String>) {
    let (per_node, bad) = super::read_node_dirs::<StaleEntry>(root);
    let mut found: Vec<StaleEntry> = per_node.into_iter().flat_map(|(_, v)| v).collect();
    found.sort_by(|a, b| a.entry.id.cmp(&b.entry.id));
    (found, bad)
}

/// Deletes every stale entry under `root`; returns how many files were removed.
///
/// Errors: [`Error::Io`] naming the directory.
pub fn forget_all(root: &Path) -> Result<usize> {
    let mut n = 0;
    let Ok(nodes) = std::fs::read_dir(root) else {
        return Ok(0);
    };
    for d in nodes.flatten() {
        if let Ok(files) = std::fs::read_dir(d.path()) {
            n += files.flatten().count();
        }
        std::fs::remove_dir_all(d.path()).map_err(|source| Error::Io {
            context: format!("removing {}", d.path().display()),
            source,
        })?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{command::CommandUndo, Undo};

    fn entry(node: &str, id: &str) -> Entry {
        Entry {
            id: id.into(),
            node: node.into(),
            scenario: "s".into(),
            fault: "f".into(),
            recorded_at: 1,
            identity: None,
            undo: Undo::Command(CommandUndo::new("true".into(), None)),
        }
    }

    #[test]
    fn stored_entries_are_listed_then_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pending = dir.path().join("pending.json");
        std::fs::write(&pending, b"{}").expect("write");
        store(
            dir.path(),
            &StaleEntry::new(entry("n1", "002"), "gone"),
            Some(&pending),
        )
        .expect("store");
        store(
            dir.path(),
            &StaleEntry::new(entry("n2", "001"), "other"),
            None,
        )
        .expect("store");
        assert!(!pending.exists(), "the live copy is removed");
        std::fs::write(dir.path().join("n1/garbage.json"), b"not json").expect("write");
        let (found, bad) = list(dir.path());
        let ids: Vec<_> = found.iter().map(|s| s.entry.id.as_str()).collect();
        assert_eq!(ids, ["001", "002"]);
        assert_eq!(found[1].reason, "gone");
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(forget_all(dir.path()).expect("forget"), 3);
        assert!(list(dir.path()).0.is_empty());
    }
}
