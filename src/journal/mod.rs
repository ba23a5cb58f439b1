//! Journal: every fault's undo, recorded before the fault mutates anything, both locally
//! (state dir) and on the node (`/var/lib/breakfix/journal/`), replayed LIFO by `reset`.
//!
//! # Guarantees
//! - [`Journal::record`] returns only after the entry is durable locally (fsync) AND written
//!   on the node; a fault proceeds only after that.
//! - Every entry names the machine it was applied to ([`identity::NodeIdentity`]: machine-id,
//!   verified host key, and etcd's cluster ID where the undo talks to etcd). `reset` applies
//!   an entry only to that machine; any other entry is set aside as stale ([`stale`]) and
//!   reported, never applied.
//! - `reset` reads both copies (union by id), so it works after the local state is lost or
//!   after the engine was killed mid-break.

pub mod identity;
pub mod lock;
pub mod stale;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fault::Undo;
use crate::node::NodeSession;
use crate::transport::shell_quote;
use identity::NodeIdentity;
use stale::StaleEntry;

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
    /// The machine the fault was applied to (`None` in entries written before identities
    /// were recorded: such entries are never applied, only set aside).
    #[serde(default)]
    pub identity: Option<NodeIdentity>,
    /// How to revert.
    pub undo: Undo,
}

/// What [`Journal::reset`] did on one node.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Entries whose undo ran (newest first).
    pub undone: Vec<Entry>,
    /// Entries set aside as stale (not applied), with the reason.
    pub set_aside: Vec<StaleEntry>,
}

/// Reads every `<root>/<node>/*.json` as a `T`, per node directory name. Files that cannot be
/// read or decoded are listed (`path: why`) in the second value, never fatal.
pub(crate) fn read_node_dirs<T: serde::de::DeserializeOwned>(
    root: &std::path::Path,
) -> (Vec<(String, Vec<T>)>, Vec<String>) {
    let (mut out, mut bad) = (Vec::new(), Vec::new());
    let Ok(nodes) = std::fs::read_dir(root) else {
        return (out, bad);
    };
    for n in nodes.flatten() {
        let Ok(files) = std::fs::read_dir(n.path()) else {
            continue;
        };
        let mut list = Vec::new();
        for f in files.flatten() {
            let p = f.path();
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match std::fs::read(&p)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<T>(&b).map_err(|e| e.to_string()))
            {
                Ok(v) => list.push(v),
                Err(e) => bad.push(format!("{}: {e}", p.display())),
            }
        }
        out.push((n.file_name().to_string_lossy().to_string(), list));
    }
    (out, bad)
}

/// Writes `bytes` to `path` and fsyncs it.
pub(crate) fn write_synced(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let io = |source| Error::Io {
        context: format!("writing {}", path.display()),
        source,
    };
    let mut f = std::fs::File::create(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// The local half of the journal: `<state>/journal/<node>/<id>.json`.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

const T: Duration = Duration::from_secs(20);

impl crate::fault::UndoLog for Journal {
    fn record<'a>(
        &'a self,
        s: &'a NodeSession,
        scenario: &'a str,
        fault: &'a str,
        undo: Undo,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(async move {
            Journal::record(self, s, scenario, fault, undo)
                .await
                .map(|_| ())
        })
    }
}

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

    /// The local directory of one node's entries.
    fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join(node)
    }

    /// The local directory of stale entries beside this journal's
    /// (`<state>/journal-stale`).
    pub fn stale_dir(&self) -> PathBuf {
        let mut d = self.dir.clone().into_os_string();
        d.push("-stale");
        PathBuf::from(d)
    }

    /// Entries in the local copy, per node name (no node is contacted), newest first.
    /// Unreadable files are reported in the second list.
    pub fn local_entries(&self) -> (std::collections::BTreeMap<String, Vec<Entry>>, Vec<String>) {
        let (per_node, bad) = read_node_dirs::<Entry>(&self.dir);
        let mut out = std::collections::BTreeMap::new();
        for (name, mut list) in per_node {
            if !list.is_empty() {
                list.sort_by(|a, b| b.id.cmp(&a.id));
                out.insert(name, list);
            }
        }
        (out, bad)
    }

    /// Sets every local entry for which `belongs` holds aside as stale with `reason` (local
    /// copies only: no node is contacted). Returns them.
    ///
    /// Errors: [`Error::Io`] naming the file.
    pub fn set_aside_local(
        &self,
        belongs: impl Fn(&Entry) -> bool,
        reason: &str,
    ) -> Result<Vec<StaleEntry>> {
        let mut out = Vec::new();
        for (node, entries) in self.local_entries().0 {
            for e in entries.into_iter().filter(|e| belongs(e)) {
                let pending = self.node_dir(&node).join(format!("{}.json", e.id));
                let st = StaleEntry::new(e, reason);
                stale::store(&self.stale_dir(), &st, Some(&pending))?;
                out.push(st);
            }
        }
        Ok(out)
    }

    /// Records `undo` locally (fsync) and on the node, with the node's identity (and etcd's
    /// cluster ID when the undo talks to etcd). Errors mean nothing was mutated yet.
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
        // Boxed: these futures are large, and faults await `record` deep in their own.
        let mut identity = Box::pin(NodeIdentity::of(s)).await?;
        if let Some(target) = undo.etcd_target() {
            identity.etcd_cluster_id =
                Some(Box::pin(identity::etcd_cluster_id(s, target, ETCD_ID_WAIT)).await?);
        }
        let entry = Entry {
            id: format!("{:020}", now.as_nanos()),
            node: s.node.name.clone(),
            scenario: scenario.to_string(),
            fault: fault.to_string(),
            recorded_at: now.as_secs(),
            identity: Some(identity),
            undo,
        };
        let json = serde_json::to_vec_pretty(&entry).map_err(|e| Error::other(e.to_string()))?;
        let dir = self.node_dir(&s.node.name);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            context: format!("creating {}", dir.display()),
            source,
        })?;
        write_synced(&dir.join(format!("{}.json", entry.id)), &json)?;
        crate::failpoint::hit("journal: local copy written");
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
        crate::failpoint::hit("journal: node copy written");
        Ok(entry)
    }

    /// Every entry for the node (local and remote copies merged), newest first.
    pub async fn entries(&self, s: &NodeSession) -> Result<Vec<Entry>> {
        Ok(self.located(s).await?.0)
    }

    /// [`Self::entries`], plus the ids of the entries that have a copy on the node.
    async fn located(
        &self,
        s: &NodeSession,
    ) -> Result<(Vec<Entry>, std::collections::BTreeSet<String>)> {
        let mut on_node = std::collections::BTreeSet::new();
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
        let entries = decode_stream(&out.stdout, &s.node.name).map_err(|e| Error::Transport {
            host: s.transport.host().to_string(),
            message: format!("unreadable journal entry in {}: {e}", remote_dir()),
        })?;
        for entry in entries {
            on_node.insert(entry.id.clone());
            all.entry(entry.id.clone()).or_insert(entry);
        }
        Ok((all.into_values().rev().collect(), on_node))
    }

    /// Removes an entry from both copies (after its undo succeeded).
    pub async fn forget(&self, s: &NodeSession, id: &str) -> Result<()> {
        if !valid_id(id) {
            return Err(Error::other(format!("not a journal entry id: {id:?}")));
        }
        let p = self.dir.join(&s.node.name).join(format!("{id}.json"));
        let _ = std::fs::remove_file(&p);
        let remote = shell_quote(&format!("{}/{id}.json", remote_dir()));
        s.run_ok(&format!("rm -f {remote}"), T).await.map(|_| ())
    }

    /// Replays every undo recorded for this node, newest first, forgetting each one that
    /// succeeded. An entry recorded on another machine (see [`NodeIdentity::mismatch`]) or
    /// another etcd cluster is set aside as stale instead ([`stale`]), never applied.
    /// Stops at the first failing undo (later-recorded undos already ran; the failing and
    /// older ones stay journaled for the next reset).
    pub async fn reset(&self, s: &NodeSession) -> Result<Outcome> {
        let now = Box::pin(NodeIdentity::of(s)).await?;
        let mut out = Outcome::default();
        let (entries, on_node) = self.located(s).await?;
        for entry in entries {
            if let Some(reason) = Box::pin(self.stale_reason(s, &entry, &now)).await {
                let remote = on_node.contains(&entry.id);
                let st = StaleEntry::new(entry, reason);
                self.set_aside(s, &st, remote).await?;
                out.set_aside.push(st);
                continue;
            }
            Box::pin(entry.undo.revert(s))
                .await
                .map_err(|e| Error::Fault {
                    fault: entry.fault.clone(),
                    host: s.node.name.clone(),
                    message: format!("undo failed ({}): {e}", entry.undo.describe()),
                })?;
            crate::failpoint::hit("reset: undo done");
            self.forget(s, &entry.id).await?;
            out.undone.push(entry);
        }
        Ok(out)
    }

    /// Why `entry` must not be applied to the node whose identity is `now`, or `None`.
    async fn stale_reason(
        &self,
        s: &NodeSession,
        entry: &Entry,
        now: &NodeIdentity,
    ) -> Option<String> {
        let Some(then) = &entry.identity else {
            return Some("recorded without the node's identity (by an older breakfix)".into());
        };
        if let Some(why) = then.mismatch(now) {
            return Some(format!("another machine: {why}"));
        }
        if let (Some(id), Some(target)) = (&then.etcd_cluster_id, entry.undo.etcd_target()) {
            // An etcd that does not answer is left to the undo, which then fails with its
            // own message and stays journaled.
            if let Ok(cur) = identity::etcd_cluster_id(s, target, ETCD_ID_WAIT).await {
                if &cur != id {
                    return Some(format!(
                        "another etcd cluster: recorded on cluster ID {id}, {} now answers with {cur}",
                        target.endpoint
                    ));
                }
            }
        }
        None
    }

    /// Moves `st`'s entry aside: locally into the stale directory, and, when the node holds
    /// a copy (`on_node`; e.g. a cloned disk), on the node into `<journal dir>/stale/`.
    async fn set_aside(&self, s: &NodeSession, st: &StaleEntry, on_node: bool) -> Result<()> {
        let id = &st.entry.id;
        let pending = self.node_dir(&s.node.name).join(format!("{id}.json"));
        stale::store(&self.stale_dir(), st, Some(&pending))?;
        if !on_node {
            return Ok(());
        }
        let remote = remote_dir();
        let json = serde_json::to_vec_pretty(st).map_err(|e| Error::other(e.to_string()))?;
        s.run_ok(
            &format!("mkdir -p {}", shell_quote(&format!("{remote}/stale"))),
            T,
        )
        .await?;
        s.transport
            .write_file(&format!("{remote}/stale/{id}.json"), &json, Some(0o600), T)
            .await?;
        s.run_ok(
            &format!("rm -f {}", shell_quote(&format!("{remote}/{id}.json"))),
            T,
        )
        .await
        .map(|_| ())
    }

    /// Deletes every stale entry: the local ones, and those on each connected node in
    /// `sessions`. Returns how many were deleted.
    ///
    /// Errors: [`Error::Io`] or the transport's error naming the node.
    pub async fn forget_stale<'a>(
        &self,
        sessions: impl IntoIterator<Item = &'a NodeSession>,
    ) -> Result<usize> {
        let mut n = stale::forget_all(&self.stale_dir())?;
        let remote = shell_quote(&format!("{}/stale", remote_dir()));
        for s in sessions {
            let out = s
                .run_ok(
                    &format!("ls {remote}/*.json 2>/dev/null | wc -l; rm -rf {remote}"),
                    T,
                )
                .await?;
            n += out.stdout.trim().parse::<usize>().unwrap_or(0);
        }
        Ok(n)
    }
}

/// True for an entry id as [`Journal::record`] makes them: 1 to 40 ASCII digits. Ids read
/// from a node are checked before they name a file here or there.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 40 && id.bytes().all(|b| b.is_ascii_digit())
}

/// Decodes the node's journal as `entries` reads it (the JSON entries one after another) for
/// node `node`. Every entry must parse, carry a [`valid_id`] and name `node`: the text comes
/// from the node, and an id or node name becomes a file name on this machine.
///
/// Errors: the first entry that does not, described.
pub fn decode_stream(text: &str, node: &str) -> std::result::Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for item in serde_json::Deserializer::from_str(text).into_iter::<Entry>() {
        let e = item.map_err(|e| e.to_string())?;
        if !valid_id(&e.id) {
            return Err(format!("entry id {:?} is not 1 to 40 digits", e.id));
        }
        if e.node != node {
            return Err(format!(
                "entry {} names node {:?}, found on node {node:?}",
                e.id, e.node
            ));
        }
        out.push(e);
    }
    Ok(out)
}

/// How long recording or resetting waits for etcd to tell its cluster ID.
const ETCD_ID_WAIT: Duration = Duration::from_secs(20);
