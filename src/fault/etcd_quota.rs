//! `etcd_quota` fault: fills etcd until it refuses writes with `mvcc: database space exceeded`
//! and its NOSPACE alarm is raised — in seconds, not minutes.
//!
//! # How
//! Concurrent puts of large values (default 1 MiB; etcd refuses requests over its
//! `--max-request-bytes`, 1.5 MiB by default) under a key prefix of its own (default
//! `/breakfix/quota-fill/`), through etcd-client over a forward on the node's transport (see
//! [`super::etcd`]), until a put is refused with `database space exceeded`; then the NOSPACE
//! alarm is confirmed with an alarm list. Before the fill the fault checks that no NOSPACE
//! alarm is active and that the prefix holds no keys (its undo deletes every key under it).
//! etcd sees its database grow only at each backend commit (every 100 ms), so puts in flight
//! still land after the quota is crossed: the database ends up to ~1.6x the quota.
//!
//! # Small quota first
//! The fault does not change etcd's quota: the scenario sets a small `--quota-backend-bytes`
//! itself, with a `manifest` fault (stacked etcd) or a `file` fault on the unit (external etcd)
//! listed BEFORE this one. The fill waits up to [`super::etcd::READY_WAIT`] for etcd to answer
//! after that restart. Without a small quota it stops with an error after `max_bytes`
//! (default 1 GiB) of values.
//!
//! # Undo
//! Journaled before the first put: etcd's recovery, in the order it requires (reference
//! section 5): delete the filler keys, read the revision, compact to it (physically),
//! defragment, then disarm every NOSPACE alarm. Compacting and disarming without the
//! defragmentation re-raises the alarm on the next put, so the undo never skips it.
//! Idempotent: with no filler key, no NOSPACE alarm and the database no bigger than before the
//! fill (plus 1 MiB), there is nothing to do.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::{
    AlarmAction, AlarmOptions, AlarmType, CompactionOptions, DeleteOptions, GetOptions,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::etcd::{render_target, target_of, Etcd, CALL_TIMEOUT, READY_WAIT};
use super::{ActionCtx, FaultKind, Problem, Role, Undo, UndoKind};
use crate::duration::Dur;
use crate::node::NodeSession;
use crate::error::{Error, Result};
use crate::node::etcd::EtcdTarget;
use crate::template::Renderer;

/// Default key prefix of the filler keys.
pub const DEFAULT_PREFIX: &str = "/breakfix/quota-fill/";
/// Default value size: 1 MiB.
pub const DEFAULT_VALUE_SIZE: u64 = 1 << 20;
/// Largest value accepted: etcd's default `--max-request-bytes` (1.5 MiB) minus room for the
/// key and the request's framing.
pub const MAX_VALUE_SIZE: u64 = 1_572_864 - 4096;
/// Default number of puts in flight.
pub const DEFAULT_CONCURRENCY: u32 = 8;
/// Default safety stop: bytes of values written without etcd refusing a put.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Default bound of the whole fill.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// The undo's bound for the defragmentation (it rewrites the whole database).
const DEFRAG_TIMEOUT: Duration = Duration::from_secs(300);
/// Growth of the database (over its size before the fill) the undo tolerates as "nothing to do".
const SLACK_BYTES: i64 = 1 << 20;
/// Rounds of list-then-disarm after the defragmentation before the recovery gives up.
const DISARM_ROUNDS: usize = 3;

crate::action_spec! {
    /// ```yaml
    /// faults:
    ///   - kind: manifest              # first a small quota (the kubelet restarts etcd)
    ///     pod: etcd
    ///     edit: { set_flag: { flag: --quota-backend-bytes, value: "16777216" } }
    ///   - kind: etcd_quota            # then fill it until NOSPACE
    /// ```
    pub struct EtcdQuotaAction {
        /// Key prefix of the filler keys (default `/breakfix/quota-fill/`). Must hold no keys
        /// before the fill: the undo deletes every key under it.
        #[serde(default)]
        pub prefix: Option<String>,
        /// Bytes per value (default 1048576; at most 1568768, etcd refuses bigger requests).
        #[serde(default)]
        pub value_size: Option<u64>,
        /// Puts in flight (default 8, 1 to 64).
        #[serde(default)]
        pub concurrency: Option<u32>,
        /// Stop with an error after this many bytes of values without NOSPACE (default 1 GiB):
        /// the quota was not made small first.
        #[serde(default)]
        pub max_bytes: Option<u64>,
        /// Bound of the whole fill (default 2m).
        #[serde(default)]
        pub timeout: Option<Dur>,
    }
    with etcd_connection
}

/// The journaled recovery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtcdQuotaUndo {
    /// The etcd that was filled.
    pub etcd: EtcdTarget,
    /// Prefix of the filler keys (every key under it is deleted).
    pub prefix: String,
    /// etcd's database size (bytes) before the fill.
    pub db_size_before: i64,
}

/// What a fill did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillStats {
    /// Puts etcd accepted.
    pub puts: u64,
    /// Bytes of values etcd accepted.
    pub bytes: u64,
    /// Database size after the fill (bytes).
    pub db_size: i64,
    /// Wall time from the first put to the confirmed alarm.
    pub elapsed: Duration,
}

/// True for etcd's "quota exceeded" refusal.
fn is_nospace(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("database space exceeded"))
}

impl EtcdQuotaAction {
    /// The filler prefix.
    pub fn prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or(DEFAULT_PREFIX)
    }

    /// Checks the settings; `Err` says which one is wrong and what is expected.
    fn check(&self) -> std::result::Result<(), String> {
        let p = self.prefix();
        if p.is_empty() || p == "/" || "/registry/".starts_with(p) || p.starts_with("/registry") {
            return Err(format!(
                "prefix `{p}` would let the undo delete other keys (it deletes every key under the prefix): use a prefix of its own, e.g. `{DEFAULT_PREFIX}`"
            ));
        }
        let size = self.value_size.unwrap_or(DEFAULT_VALUE_SIZE);
        if size == 0 || size > MAX_VALUE_SIZE {
            return Err(format!(
                "value_size {size} must be from 1 to {MAX_VALUE_SIZE} bytes (etcd refuses requests over 1.5 MiB by default)"
            ));
        }
        let c = self.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if !(1..=64).contains(&c) {
            return Err(format!("concurrency {c} must be from 1 to 64"));
        }
        Ok(())
    }

    /// [`Self::apply`], returning what the fill did.
    ///
    /// Errors (naming the node): etcd unreachable; a NOSPACE alarm already active; keys
    /// already under the prefix; a put refused for another reason; no NOSPACE after
    /// `max_bytes` or within `timeout`; no NOSPACE alarm after etcd refused a put.
    pub async fn inject(&self, ctx: &ActionCtx<'_>, label: &str) -> Result<FillStats> {
        let node = ctx.session.node.name.clone();
        let fe = |message: String| Error::Fault {
            fault: label.to_string(),
            host: node.clone(),
            message,
        };
        self.check().map_err(&fe)?;
        let target = target_of(self)?;
        let prefix = self.prefix().to_string();
        let t0 = Instant::now();
        let etcd = Etcd::open(ctx.session, &target, READY_WAIT).await?;
        tracing::debug!("{node}: etcd_quota: etcd answered after {:?}", t0.elapsed());

        // Before anything changes: no alarm yet, the prefix is ours alone, the size before.
        let alarms = etcd.alarms().await.map_err(&fe)?;
        if alarms.iter().any(|(_, a)| a == "NOSPACE") {
            return Err(fe(format!(
                "etcd at {} already has a NOSPACE alarm before the fill; expected none (recover it or run `breakfix reset` first)",
                target.endpoint
            )));
        }
        let mut c = etcd.client();
        let existing = etcd
            .call(
                &format!("count of keys under `{prefix}`"),
                CALL_TIMEOUT,
                c.get(
                    prefix.as_str(),
                    Some(GetOptions::new().with_prefix().with_count_only()),
                ),
            )
            .await
            .map_err(&fe)?
            .count();
        if existing > 0 {
            return Err(fe(format!(
                "{existing} key(s) already exist under `{prefix}`; expected none, because the undo deletes every key under the prefix (an earlier fill not reset? run `breakfix reset`, or choose another `prefix`)"
            )));
        }
        let mut c = etcd.client();
        let db_size_before = etcd
            .call("status", CALL_TIMEOUT, c.status())
            .await
            .map_err(&fe)?
            .db_size();

        tracing::debug!(
            "{node}: etcd_quota: pre-checks done after {:?}",
            t0.elapsed()
        );
        if let Some(journal) = ctx.journal {
            let undo = EtcdQuotaUndo {
                etcd: target.clone(),
                prefix: prefix.clone(),
                db_size_before,
            };
            journal
                .record(ctx.session, ctx.scenario, label, Undo::EtcdQuota(undo))
                .await?;
        }

        let start = Instant::now();
        let deadline = start + self.timeout.map(Into::into).unwrap_or(DEFAULT_TIMEOUT);
        tracing::debug!("{node}: etcd_quota: journaled after {:?}", t0.elapsed());
        let (puts, bytes) = self.fill(&etcd, &prefix, deadline).await.map_err(&fe)?;
        crate::failpoint::hit("etcd_quota: filled");
        tracing::debug!(
            "{node}: etcd_quota: NOSPACE refusal after {:?}",
            t0.elapsed()
        );

        // etcd raises the alarm through raft when it refuses the put; allow it a moment.
        loop {
            let alarms = etcd.alarms().await.map_err(&fe)?;
            if alarms.iter().any(|(_, a)| a == "NOSPACE") {
                break;
            }
            if Instant::now() >= deadline {
                return Err(fe(format!(
                    "etcd refused a put with `database space exceeded` but no NOSPACE alarm was raised (alarms: {alarms:?})"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let elapsed = start.elapsed();
        let mut c = etcd.client();
        let db_size = etcd
            .call("status", CALL_TIMEOUT, c.status())
            .await
            .map_err(&fe)?
            .db_size();
        tracing::info!(
            "{node}: etcd NOSPACE after {puts} puts ({bytes} bytes) in {elapsed:?}; db size {db_size_before} -> {db_size}"
        );
        Ok(FillStats {
            puts,
            bytes,
            db_size,
            elapsed,
        })
    }

    /// Puts values under `prefix` from `concurrency` workers until etcd refuses one with
    /// `database space exceeded`. Returns the accepted puts and bytes.
    async fn fill(
        &self,
        etcd: &Etcd,
        prefix: &str,
        deadline: Instant,
    ) -> std::result::Result<(u64, u64), String> {
        let size = self.value_size.unwrap_or(DEFAULT_VALUE_SIZE);
        let max_bytes = self.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
        let workers = self.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        let value = vec![
            b'q';
            usize::try_from(size)
                .map_err(|_| "value_size does not fit in memory".to_string())?
        ];
        let next = AtomicU64::new(0);
        let stop = AtomicBool::new(false);
        let nospace = AtomicBool::new(false);
        let accepted = AtomicU64::new(0);
        let (value, next, stop, nospace, accepted_ref) =
            (&value, &next, &stop, &nospace, &accepted);
        let worker = move || async move {
            let accepted = accepted_ref;
            let mut c = etcd.client();
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i.saturating_mul(size) >= max_bytes {
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
                let key = format!("{prefix}{i:08}");
                match tokio::time::timeout_at(deadline, c.put(key.as_str(), value.clone(), None))
                    .await
                {
                    Ok(Ok(_)) => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) if is_nospace(&e) => {
                        nospace.store(true, Ordering::Relaxed);
                        stop.store(true, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => {
                        stop.store(true, Ordering::Relaxed);
                        return Err(format!("put {key}: {}", etcd.access.explain(e)));
                    }
                    Err(_) => {
                        stop.store(true, Ordering::Relaxed);
                        return Err(format!(
                            "etcd did not refuse a put with NOSPACE within the fill's timeout ({} values accepted under `{prefix}`); is its quota small (`--quota-backend-bytes`)?",
                            accepted.load(Ordering::Relaxed)
                        ));
                    }
                }
            }
            Ok(())
        };
        let results = futures::future::join_all((0..workers).map(|_| worker())).await;
        let puts = accepted.load(Ordering::Relaxed);
        let bytes = puts * size;
        if nospace.load(Ordering::Relaxed) {
            return Ok((puts, bytes));
        }
        for r in results {
            r?;
        }
        Err(format!(
            "wrote {bytes} bytes under `{prefix}` (max_bytes) and etcd still accepts puts; expected NOSPACE: set a small --quota-backend-bytes first (a `manifest` or `file` fault before this one), or raise max_bytes"
        ))
    }
}

impl UndoKind for EtcdQuotaUndo {
    fn etcd_target(&self) -> Option<&EtcdTarget> {
        Some(&self.etcd)
    }

    /// Deletes the filler, compacts, defragments and disarms NOSPACE, in that order (see the
    /// module docs); nothing when there is nothing to recover. Errors name the node and the
    /// step that failed.
    async fn revert(&self, s: &NodeSession) -> Result<()> {
        let etcd = Etcd::open(s, &self.etcd, READY_WAIT).await?;
        let err = |step: &str, m: String| Error::Transport {
            host: s.transport.host().to_string(),
            message: format!(
                "etcd quota recovery, {step}: {m} (expected etcd at {} to accept it)",
                self.etcd.endpoint
            ),
        };
        let prefix = self.prefix.as_str();
        let mut c = etcd.client();
        let filler = etcd
            .call(
                "count",
                CALL_TIMEOUT,
                c.get(
                    prefix,
                    Some(GetOptions::new().with_prefix().with_count_only()),
                ),
            )
            .await
            .map_err(|m| err("counting the filler keys", m))?
            .count();
        let nospace: Vec<u64> = etcd
            .alarms()
            .await
            .map_err(|m| err("listing alarms", m))?
            .into_iter()
            .filter(|(_, a)| a == "NOSPACE")
            .map(|(m, _)| m)
            .collect();
        let mut c = etcd.client();
        let db = etcd
            .call("status", CALL_TIMEOUT, c.status())
            .await
            .map_err(|m| err("status", m))?
            .db_size();
        if filler == 0 && nospace.is_empty() && db <= self.db_size_before + SLACK_BYTES {
            return Ok(());
        }
        // 1. Delete the filler keys (allowed under NOSPACE).
        let mut c = etcd.client();
        etcd.call(
            "delete",
            CALL_TIMEOUT,
            c.delete(prefix, Some(DeleteOptions::new().with_prefix())),
        )
        .await
        .map_err(|m| err(&format!("deleting the keys under `{prefix}`"), m))?;
        // 2. The current revision.
        let mut c = etcd.client();
        let rev = etcd
            .call("status", CALL_TIMEOUT, c.status())
            .await
            .map_err(|m| err("reading the revision", m))?
            .header()
            .map(|h| h.revision())
            .unwrap_or(0);
        // 3. Compact to it (physically: done before the defragmentation starts). Already
        //    compacted (a learner's own recovery) is fine.
        if rev > 0 {
            let mut c = etcd.client();
            let r = etcd
                .call(
                    &format!("compact {rev}"),
                    DEFRAG_TIMEOUT,
                    c.compact(rev, Some(CompactionOptions::new().with_physical())),
                )
                .await;
            if let Err(m) = r {
                if !m.contains("required revision has been compacted") {
                    return Err(err("compacting", m));
                }
            }
        }
        // 4. Defragment: gives the freed pages back; without it the alarm comes back.
        let mut c = etcd.client();
        etcd.call("defrag", DEFRAG_TIMEOUT, c.defragment())
            .await
            .map_err(|m| err("defragmenting", m))?;
        // 5. Disarm every NOSPACE alarm active now, not only those seen at the start: a write
        //    between the first listing and the defragmentation (the API server's, or any
        //    client's once a wrong fix disarmed and etcd restarted under the small quota)
        //    raises the alarm again while the file is still full. After the defragmentation
        //    the file is small, so a second round only meets an alarm raised in that window.
        for _ in 0..DISARM_ROUNDS {
            let left = etcd.alarms().await.map_err(|m| err("listing alarms", m))?;
            let active: Vec<u64> = left
                .iter()
                .filter(|(_, a)| a == "NOSPACE")
                .map(|(m, _)| *m)
                .collect();
            if active.is_empty() {
                return Ok(());
            }
            for member in active {
                let mut opts = AlarmOptions::new();
                opts.with_member(member);
                let mut c = etcd.client();
                etcd.call(
                    "alarm disarm",
                    CALL_TIMEOUT,
                    c.alarm(AlarmAction::Deactivate, AlarmType::Nospace, Some(opts)),
                )
                .await
                .map_err(|m| err(&format!("disarming NOSPACE of member {member:x}"), m))?;
            }
        }
        let left = etcd.alarms().await.map_err(|m| err("listing alarms", m))?;
        if left.iter().any(|(_, a)| a == "NOSPACE") {
            return Err(err(
                "after disarming",
                format!("the NOSPACE alarm is still active after {DISARM_ROUNDS} rounds: {left:?}"),
            ));
        }
        Ok(())
    }

    /// One line for `breakfix reset`.
    fn describe(&self) -> String {
        format!(
            "delete etcd keys under {}, compact, defragment, disarm NOSPACE ({})",
            self.prefix, self.etcd.endpoint
        )
    }
}

impl FaultKind for EtcdQuotaAction {
    fn problems(&self, _role: Role) -> Vec<Problem> {
        self.check().err().map(Problem::new).into_iter().collect()
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        vec![("does", self.default_label())]
    }

    /// Journals the recovery (faults), then fills etcd until NOSPACE; see the module docs.
    async fn apply(&self, ctx: &ActionCtx<'_>, label: &str) -> Result<()> {
        self.inject(ctx, label).await.map(|_| ())
    }

    /// Display name.
    fn default_label(&self) -> String {
        format!("fill etcd until NOSPACE (under {})", self.prefix())
    }

    /// Renders the prefix and the connection fields (missing ones from the inventory).
    fn render(&self, r: &Renderer) -> Result<Self> {
        let mut a = self.clone();
        a.prefix = self.prefix.as_deref().map(|p| r.text(p)).transpose()?;
        render_target(r, &mut a)?;
        Ok(a)
    }
}
