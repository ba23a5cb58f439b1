//! `etcd_keys` fault: etcd data — delete objects (the "accidental deletion" of a backup/restore
//! lab) or save a snapshot on the node (so a backup exists before the break).
//!
//! # `delete: PREFIX`
//! Deletes every key starting with `PREFIX` (`etcdctl del --prefix`), or only the key equal to
//! it with `exact: true`. The keys and their values (base64) are read first and journaled,
//! then exactly those keys are deleted (in transactions of up to [`TXN_OPS`] deletes). Undo puts
//! back each journaled key whose current value differs (missing or changed), so replaying it
//! is safe. Restored keys carry no lease (a leased key, e.g. an event, comes back without its
//! TTL). At least one key must match and at most `max_keys` (default 1000).
//!
//! # `snapshot: PATH`
//! Streams a snapshot from etcd (the Maintenance Snapshot RPC, what `etcdctl snapshot save`
//! uses), checks the sha256 etcd appends to it, and writes it to `PATH` ON THE NODE (mode 0600,
//! atomically). The path must not exist yet and its directory must; undo removes the file.
//! Written as a fault, `breakfix reset` removes it; written as a `setup:` step it stays.
//!
//! Which etcd: see [`super::etcd`] (fields default to the inventory's `cluster.etcd`).

use base64::Engine as _;
use etcd_client::{GetOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::etcd::{render_target, target_of, Etcd, CALL_TIMEOUT, READY_WAIT};
use super::file::FileUndo;
use super::{ActionCtx, FaultKind, Problem, Role, Touches, Undo, UndoKind};
use crate::duration::Dur;
use crate::node::NodeSession;
use crate::error::{Error, Result};
use crate::node::etcd::EtcdTarget;
use crate::template::Renderer;
use crate::transport::shell_quote;

/// Deletes per transaction (etcd's default `--max-txn-ops` is 128).
pub const TXN_OPS: usize = 100;
/// Default `max_keys`.
pub const DEFAULT_MAX_KEYS: u64 = 1000;
/// Default bound of a snapshot (stream and write).
pub const DEFAULT_SNAPSHOT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

crate::action_spec! {
    /// ```yaml
    /// - kind: etcd_keys
    ///   snapshot: /var/lib/etcd-backup/before.db          # a backup exists before the break
    /// - kind: etcd_keys
    ///   delete: /registry/deployments/default/critical-app
    ///   exact: true
    /// ```
    pub struct EtcdKeysAction {
        /// Delete every key starting with this prefix (with `exact: true`, only this key).
        #[serde(default)]
        pub delete: Option<String>,
        /// With `delete`: only the key equal to `delete` (default false: every key under it).
        #[serde(default)]
        pub exact: Option<bool>,
        /// With `delete`: refuse when more keys match (default 1000).
        #[serde(default)]
        pub max_keys: Option<u64>,
        /// Save an etcd snapshot to this path ON THE NODE (must not exist; its directory must).
        #[serde(default)]
        pub snapshot: Option<String>,
        /// Bound of the snapshot (default 5m).
        #[serde(default)]
        pub timeout: Option<Dur>,
    }
    with etcd_connection
}

/// One journaled key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedKey {
    /// The key (base64).
    pub key: String,
    /// Its value (base64).
    pub value: String,
}

/// Undo of `delete`: the deleted keys with their values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtcdKeysUndo {
    /// The etcd the keys were deleted from.
    pub etcd: EtcdTarget,
    /// What was deleted (for messages): the prefix or key as written.
    pub deleted: String,
    /// The keys and values to put back.
    pub keys: Vec<SavedKey>,
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

impl EtcdKeysAction {
    /// `Some(problem)` unless exactly one of `delete` and `snapshot` is given (and the
    /// options fit the mode). Used by validation and before applying.
    pub fn mode_problem(&self) -> Option<String> {
        match (&self.delete, &self.snapshot) {
            (Some(_), Some(_)) => Some("give either `delete:` or `snapshot:`, not both".into()),
            (None, None) => {
                Some("needs `delete:` (a key prefix) or `snapshot:` (a path on the node)".into())
            }
            (Some(d), None) if d.is_empty() => {
                Some("`delete:` is empty: it would delete every key in etcd".into())
            }
            (None, Some(_)) if self.exact.is_some() || self.max_keys.is_some() => {
                Some("`exact:` and `max_keys:` go with `delete:`, not `snapshot:`".into())
            }
            (Some(_), None) if self.timeout.is_some() => {
                Some("`timeout:` goes with `snapshot:`".into())
            }
            (None, Some(p)) if !p.starts_with('/') && !p.contains("{{") => Some(format!(
                "`snapshot: {p}` must be an absolute path on the node"
            )),
            _ => None,
        }
    }

    async fn delete(
        &self,
        ctx: &ActionCtx<'_>,
        label: &str,
        target: &EtcdTarget,
        prefix: &str,
        fe: &(dyn Fn(String) -> Error + Sync),
    ) -> Result<()> {
        let exact = self.exact == Some(true);
        let etcd = Etcd::open(ctx.session, target, READY_WAIT).await?;
        let opts = if exact {
            None
        } else {
            Some(GetOptions::new().with_prefix())
        };
        let what = if exact {
            format!("key `{prefix}`")
        } else {
            format!("keys under `{prefix}`")
        };
        let mut c = etcd.client();
        let found = etcd
            .call(&format!("get {what}"), CALL_TIMEOUT, c.get(prefix, opts))
            .await
            .map_err(fe)?;
        let kvs = found.kvs();
        if kvs.is_empty() {
            return Err(fe(format!(
                "no {what} in etcd at {}; expected at least one to delete",
                target.endpoint
            )));
        }
        let max = self.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
        if kvs.len() as u64 > max {
            return Err(fe(format!(
                "{} {what}, more than max_keys ({max}); expected a narrower prefix (or raise max_keys)",
                kvs.len()
            )));
        }
        if let Some(journal) = ctx.journal {
            let undo = EtcdKeysUndo {
                etcd: target.clone(),
                deleted: prefix.to_string(),
                keys: kvs
                    .iter()
                    .map(|kv| SavedKey {
                        key: b64(kv.key()),
                        value: b64(kv.value()),
                    })
                    .collect(),
            };
            journal
                .record(ctx.session, ctx.scenario, label, Undo::EtcdKeys(undo))
                .await?;
        }
        // Exactly the journaled keys: a key created under the prefix meanwhile stays.
        for chunk in kvs.chunks(TXN_OPS) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|kv| TxnOp::delete(kv.key(), None))
                .collect();
            let mut c = etcd.client();
            etcd.call(
                &format!("delete {what}"),
                CALL_TIMEOUT,
                c.txn(Txn::new().and_then(ops)),
            )
            .await
            .map_err(fe)?;
            crate::failpoint::hit("etcd_keys: a batch deleted");
        }
        tracing::info!(
            "{}: deleted {} etcd {what}",
            ctx.session.node.name,
            kvs.len()
        );
        Ok(())
    }

    async fn snapshot(
        &self,
        ctx: &ActionCtx<'_>,
        label: &str,
        target: &EtcdTarget,
        path: &str,
        fe: &(dyn Fn(String) -> Error + Sync),
    ) -> Result<()> {
        let s = ctx.session;
        let q = shell_quote(path);
        let check = s
            .exec(
                &format!("if [ -e {q} ] || [ -L {q} ]; then echo exists; elif [ ! -d \"$(dirname -- {q})\" ]; then echo nodir; fi"),
                ctx.timeout,
            )
            .await?;
        match check.stdout.trim() {
            "exists" => {
                return Err(fe(format!(
                    "{path} already exists on the node; expected a new path (the undo removes the file, so it must not replace one)"
                )))
            }
            "nodir" => {
                return Err(fe(format!(
                    "the directory of {path} does not exist on the node; create it first (e.g. a `setup:` command `mkdir -p`)"
                )))
            }
            _ => {}
        }
        if let Some(journal) = ctx.journal {
            let undo = FileUndo {
                path: path.to_string(),
                pre_image: None,
                sha256: None,
                then: None,
            };
            journal
                .record(s, ctx.scenario, label, Undo::File(undo))
                .await?;
        }
        let timeout = self
            .timeout
            .map(Into::into)
            .unwrap_or(DEFAULT_SNAPSHOT_TIMEOUT);
        let deadline = tokio::time::Instant::now() + timeout;
        let etcd = Etcd::open(s, target, READY_WAIT).await?;
        let bytes = tokio::time::timeout_at(deadline, stream_snapshot_retrying(&etcd))
            .await
            .map_err(|_| {
                fe(format!(
                    "the snapshot stream from {} did not finish within {}",
                    target.endpoint,
                    humantime::format_duration(timeout)
                ))
            })?
            .map_err(fe)?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        s.transport
            .write_file(path, &bytes, Some(0o600), left)
            .await?;
        tracing::info!(
            "{}: saved an etcd snapshot of {} bytes to {path}",
            s.node.name,
            bytes.len()
        );
        Ok(())
    }
}

/// [`stream_snapshot`], up to [`SNAPSHOT_ATTEMPTS`] times: the stream is read whole before
/// anything is written, so a stream cut half-way (seen through the SSH forward: h2's
/// `too_many_data_frames` guard, or etcd restarting) is simply asked for again.
async fn stream_snapshot_retrying(etcd: &Etcd) -> std::result::Result<Vec<u8>, String> {
    let mut last = String::new();
    for attempt in 1..=SNAPSHOT_ATTEMPTS {
        match stream_snapshot(etcd).await {
            Ok(b) => return Ok(b),
            Err(e) => {
                tracing::warn!("etcd snapshot attempt {attempt}/{SNAPSHOT_ATTEMPTS}: {e}");
                last = e;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
    Err(format!("{last} (after {SNAPSHOT_ATTEMPTS} attempts)"))
}

/// How often a snapshot stream is tried.
const SNAPSHOT_ATTEMPTS: u32 = 3;

/// The whole snapshot stream; checks the sha256 etcd appends (the last 32 bytes are the
/// digest of everything before them), as `etcdctl snapshot restore` does.
async fn stream_snapshot(etcd: &Etcd) -> std::result::Result<Vec<u8>, String> {
    let mut c = etcd.client();
    let mut stream = c
        .snapshot()
        .await
        .map_err(|e| format!("snapshot: {}", etcd.access.explain(e)))?;
    let mut out = Vec::new();
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|e| format!("snapshot stream: {}", etcd.access.explain(e)))?
    {
        out.extend_from_slice(chunk.blob());
    }
    if out.len() < 32 + 512 {
        return Err(format!(
            "the snapshot stream ended after {} bytes; expected a database",
            out.len()
        ));
    }
    let (db, sum) = out.split_at(out.len() - 32);
    if Sha256::digest(db).as_slice() != sum {
        return Err(
            "the snapshot stream fails its sha256 check (truncated or corrupted on the way)".into(),
        );
    }
    Ok(out)
}

impl UndoKind for EtcdKeysUndo {
    fn etcd_target(&self) -> Option<&EtcdTarget> {
        Some(&self.etcd)
    }

    /// Puts back every journaled key that is missing or holds another value. Idempotent.
    async fn revert(&self, s: &NodeSession) -> Result<()> {
        let etcd = Etcd::open(s, &self.etcd, READY_WAIT).await?;
        let err = |m: String| Error::Transport {
            host: s.transport.host().to_string(),
            message: format!(
                "putting back the etcd keys of `{}`: {m} (expected etcd at {} to accept writes)",
                self.deleted, self.etcd.endpoint
            ),
        };
        let dec = |x: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(x)
                .map_err(|e| err(format!("journal entry is corrupt: {e}")))
        };
        for k in &self.keys {
            let (key, value) = (dec(&k.key)?, dec(&k.value)?);
            let shown = String::from_utf8_lossy(&key).to_string();
            let mut c = etcd.client();
            let now = etcd
                .call(
                    &format!("get {shown}"),
                    CALL_TIMEOUT,
                    c.get(key.clone(), None),
                )
                .await
                .map_err(&err)?;
            if now
                .kvs()
                .first()
                .is_some_and(|kv| kv.value() == value.as_slice())
            {
                continue;
            }
            let mut c = etcd.client();
            etcd.call(
                &format!("put {shown}"),
                CALL_TIMEOUT,
                c.put(key, value, None),
            )
            .await
            .map_err(&err)?;
        }
        Ok(())
    }

    /// One line for `breakfix reset`.
    fn describe(&self) -> String {
        let first = self
            .keys
            .first()
            .and_then(|k| {
                base64::engine::general_purpose::STANDARD
                    .decode(&k.key)
                    .ok()
            })
            .map(|k| String::from_utf8_lossy(&k).to_string())
            .unwrap_or_default();
        match self.keys.len() {
            1 => format!("put back etcd key {first} ({})", self.etcd.endpoint),
            n => format!(
                "put back {n} etcd keys under {} ({})",
                self.deleted, self.etcd.endpoint
            ),
        }
    }
}

impl FaultKind for EtcdKeysAction {
    fn problems(&self, _role: Role) -> Vec<Problem> {
        self.mode_problem().map(Problem::new).into_iter().collect()
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        vec![("does", self.default_label())]
    }

    fn touches(&self) -> Touches {
        Touches {
            files: self.snapshot.clone().into_iter().collect(),
            ..Touches::default()
        }
    }

    /// Applies the mode; with a journal, records the undo first. See the module docs.
    async fn apply(&self, ctx: &ActionCtx<'_>, label: &str) -> Result<()> {
        let node = ctx.session.node.name.clone();
        let fe = |message: String| Error::Fault {
            fault: label.to_string(),
            host: node.clone(),
            message,
        };
        if let Some(p) = self.mode_problem() {
            return Err(fe(p));
        }
        let target = target_of(self)?;
        match (&self.delete, &self.snapshot) {
            (Some(prefix), _) => self.delete(ctx, label, &target, prefix, &fe).await,
            (None, Some(path)) => self.snapshot(ctx, label, &target, path, &fe).await,
            (None, None) => Ok(()),
        }
    }

    /// Display name.
    fn default_label(&self) -> String {
        match (&self.delete, &self.snapshot) {
            (Some(d), _) if self.exact == Some(true) => format!("delete etcd key {d}"),
            (Some(d), _) => format!("delete etcd keys under {d}"),
            (None, Some(p)) => format!("save an etcd snapshot to {p}"),
            (None, None) => "etcd keys".into(),
        }
    }

    /// Renders the key/path and the connection fields (missing ones from the inventory).
    fn render(&self, r: &Renderer) -> Result<Self> {
        let mut a = self.clone();
        a.delete = self.delete.as_deref().map(|d| r.text(d)).transpose()?;
        a.snapshot = self.snapshot.as_deref().map(|p| r.text(p)).transpose()?;
        render_target(r, &mut a)?;
        if let Some(p) = a.mode_problem() {
            return Err(Error::other(p));
        }
        Ok(a)
    }
}
