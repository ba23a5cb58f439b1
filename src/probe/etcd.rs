//! `etcd` probe: asks a node's etcd for its health, status, alarms, members and key counts
//! through etcd-client (gRPC over TLS) with the node's own client certificate, reached through
//! a port forward over the node's transport.
//!
//! # How it reaches etcd
//! The CA, client certificate and key named in the inventory (`cluster.etcd`, paths ON THE
//! NODE) are read over the transport; a forward to the endpoint's host and port *as seen from
//! the node* is opened ([`crate::transport::Transport::forward`]); etcd-client connects to the
//! forward's local end and verifies the server certificate against the endpoint's host (e.g.
//! `127.0.0.1`), exactly as a client on the node would. The forward and client are cached in
//! [`crate::node::NodeSession::etcd`] and reused by later attempts; when etcd cannot
//! be reached the cache is dropped so the next attempt reconnects from scratch. The TLS files
//! are read again on every attempt (three small reads) and a change rebuilds the client, so a
//! fault that replaces them is seen at once.
//!
//! # Timeouts
//! One attempt (file reads, connect, TLS handshake and every request) is bounded by the
//! probe's timeout (`ctx.timeout`); asking for several facts does not multiply it.
//!
//! # Down is a fact, not an error
//! etcd stopped, refusing connections, rejecting the TLS handshake or not answering within the
//! probe's timeout gives `healthy: false` (the other facts absent) with [`Facts::note`] saying
//! why. Only failures of breakfix's own access are errors: a TLS file that cannot be read on
//! the node (the message names the path), a transport failure, a malformed endpoint.
//!
//! # Caveats
//! - etcd-client connects lazily: a connect that returns Ok proves nothing, so every fact comes
//!   from a real request.
//! - etcd 3.4 stays `healthy` with an active NOSPACE alarm; check `alarms` too.
//! - When the forward's far end refuses the connection, the client only sees the connection
//!   close during the TLS handshake; the note says so and names the endpoint.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use etcd_client::{
    AlarmAction, AlarmType, Client, GetOptions,
};
use tokio::time::Instant;

use super::{Facts, ProbeCtx, ProbeKind};
use crate::error::{Error, Result};
use crate::node::etcd::{access, access_uncached, classify, forget, Endpoint, Failure};
use crate::template::Renderer;

crate::probe_spec! {
    /// ```yaml
    /// - kind: etcd
    ///   name: etcd-healthy
    ///   expect: { healthy: true, alarms: [], member_names: { contains: controlplane } }
    /// ```
    pub struct EtcdProbe {
        /// Client URL as seen from the node (default: the inventory's first etcd endpoint).
        #[serde(default)]
        pub endpoint: Option<String>,
        /// Key prefix for `key_count` (default `/`).
        #[serde(default)]
        pub prefix: Option<String>,
        /// Expectations.
        pub expect: EtcdExpect,
    }
}

crate::expect_block! {
    /// Facts of an `etcd` probe.
    pub struct EtcdExpect {
        /// A linearizable read succeeded (what `etcdctl endpoint health` does). NOTE: etcd 3.4
        /// stays "healthy" with an active NOSPACE alarm; check `alarms` too.
        healthy,
        /// The endpoint reports a leader (bool).
        leader,
        /// Backend database size in bytes (`dbSize`).
        db_size,
        /// Current store revision.
        revision,
        /// The endpoint's raft term (`etcdctl endpoint status`'s RAFT TERM): it grows by one
        /// per election, so a term that moved between two probes means a leader election.
        raft_term,
        /// The endpoint's raft index (`etcdctl endpoint status`'s RAFT INDEX).
        raft_index,
        /// Active alarms, e.g. `["NOSPACE"]`; `[]` when none.
        alarms,
        /// Number of members.
        members,
        /// Member names.
        member_names,
        /// Peer URLs of every member, flattened (e.g. `["https://198.18.0.11:2380"]`); after a
        /// `snapshot restore` without `--initial-advertise-peer-urls` etcd keeps the
        /// restore's default `http://localhost:2380` (etcdctl 3.4 `snapshot restore --help`).
        member_peer_urls,
        /// Number of keys under `prefix`.
        key_count,
        /// Number of keys under `prefix` per group, a map: a key's group is the key up to its
        /// third `/` (`/registry/pods/default/x` -> `/registry/pods/`), read in one request,
        /// so at one revision. breakfix's own probe objects are left out (see
        /// [`is_probe_scratch`]): they are not the cluster's.
        key_groups,
        /// A put then get of a scratch key round-trips (bool).
        writable,
        /// Voting members whose own client URL answers a linearizable read, each asked
        /// through the node like `etcdctl endpoint health --cluster` (a number). Learners
        /// are not counted (they serve no linearizable reads).
        members_healthy,
        /// Names of the voting members that do not answer (a member added but never started
        /// has no name: its hex ID stands in), `[]` when all do.
        unhealthy_members,
        /// Quorum holds: more than half of the voting members answer (bool). A cluster of
        /// three keeps it with one member down and loses it with two
        /// (<https://etcd.io/docs/v3.5/faq/#what-is-failure-tolerance>).
        quorum,
        /// Name of the member the endpoint reports as leader; absent when it knows none.
        leader_name,
        /// Names of the members that are learners (`member add --learner`, not yet promoted).
        learners,
        /// Every voting member holds the same keys: their KV hashes (the Maintenance HashKV RPC,
        /// what `etcdctl endpoint hashkv --cluster` prints) agree at one revision, the lowest
        /// current revision among them (bool). Absent, with a note, when a member cannot be
        /// asked; give the probe `needs:` on a `members_healthy` probe.
        hashes_agree,
    }
}

/// The cluster facts: they need the member list and a look at every member.
const CLUSTER_FACTS: [&str; 6] = [
    "members_healthy",
    "unhealthy_members",
    "quorum",
    "leader_name",
    "learners",
    "hashes_agree",
];

/// The group of a key for `key_groups`: the key up to and including its third `/`, or the
/// whole key when it has fewer (`/registry/pods/default/x` -> `/registry/pods/`).
pub fn key_group(key: &str) -> String {
    match key.match_indices('/').nth(2) {
        Some((i, _)) => key[..=i].to_string(),
        None => key.to_string(),
    }
}

/// Whether `key` is a scratch object of breakfix's own `writable` checks: an etcd key under
/// [`SCRATCH_PREFIX`] or a ConfigMap of the kube probe's check
/// ([`crate::probe::kube::WRITABLE_KEY_PREFIX`]). A check cut short (a timed-out create that
/// still lands, or an etcd replaced between the create and the delete, as when a learner
/// repoints etcd at a restored data-dir) can leave one behind until the next check deletes it.
pub fn is_probe_scratch(key: &str) -> bool {
    key.starts_with(SCRATCH_PREFIX) || key.starts_with(super::kube::WRITABLE_KEY_PREFIX)
}

/// Default prefix for `key_count`.
const DEFAULT_PREFIX: &str = "/";

/// Scratch keys of the `writable` check live under this prefix (and are deleted again).
pub const SCRATCH_PREFIX: &str = "/breakfix/probe/";

/// gRPC status code `PERMISSION_DENIED` (etcdctl counts it as healthy: etcd answered).
const GRPC_PERMISSION_DENIED: i32 = 7;

impl EtcdProbe {
    /// Asks etcd for each wanted fact in turn. `Err` (with the cause) as soon as etcd cannot
    /// be reached; errors etcd itself answers with become notes.
    async fn collect(
        &self,
        q: &mut Query<'_>,
        facts: &mut Facts,
        want: &(dyn Fn(&str) -> bool + Sync),
    ) -> std::result::Result<(), String> {
        if want("healthy") {
            let mut c = q.client.clone();
            match q.call(c.get("health", None)).await {
                Ok(_) => facts.set("healthy", true),
                Err(Failure::Answered { code, .. }) if code == GRPC_PERMISSION_DENIED => {
                    facts.set("healthy", true)
                }
                Err(Failure::Answered { message, .. }) => {
                    facts.set("healthy", false);
                    q.notes
                        .push(format!("health check (linearizable get): {message}"));
                }
                Err(Failure::Unreachable(m)) => return Err(m),
            }
        }
        if want("leader")
            || want("db_size")
            || want("revision")
            || want("leader_name")
            || want("raft_term")
            || want("raft_index")
        {
            let mut c = q.client.clone();
            match q.call(c.status()).await {
                Ok(s) => {
                    q.leader = Some(s.leader());
                    if want("leader") {
                        facts.set("leader", s.leader() != 0);
                    }
                    if want("db_size") {
                        facts.set("db_size", s.db_size());
                    }
                    if want("revision") {
                        if let Some(h) = s.header() {
                            facts.set("revision", h.revision());
                        }
                    }
                    if want("raft_term") {
                        facts.set("raft_term", s.raft_term());
                    }
                    if want("raft_index") {
                        facts.set("raft_index", s.raft_index());
                    }
                }
                Err(f) => q.note("status", f)?,
            }
        }
        if want("alarms") {
            let mut c = q.client.clone();
            match q
                .call(c.alarm(AlarmAction::Get, AlarmType::None, None))
                .await
            {
                Ok(a) => {
                    let names: BTreeSet<&str> =
                        a.alarms().iter().map(|m| m.alarm().as_str_name()).collect();
                    facts.set("alarms", names.into_iter().collect::<Vec<_>>());
                }
                Err(f) => q.note("alarm list", f)?,
            }
        }
        let cluster = CLUSTER_FACTS.iter().any(|f| want(f));
        if want("members") || want("member_names") || want("member_peer_urls") || cluster {
            let mut c = q.client.clone();
            match q.call(c.member_list()).await {
                Ok(m) => {
                    if want("members") {
                        facts.set("members", m.members().len());
                    }
                    if want("member_names") {
                        let names: Vec<&str> = m.members().iter().map(|x| x.name()).collect();
                        facts.set("member_names", names);
                    }
                    if want("member_peer_urls") {
                        let urls: Vec<&str> = m
                            .members()
                            .iter()
                            .flat_map(|x| x.peer_urls().iter().map(String::as_str))
                            .collect();
                        facts.set("member_peer_urls", urls);
                    }
                    // Kept for the cluster facts (see `cluster`).
                    q.members = Some(m);
                }
                Err(f) => q.note("member list", f)?,
            }
        }
        if want("key_count") {
            let prefix = self.prefix.as_deref().unwrap_or(DEFAULT_PREFIX);
            let mut c = q.client.clone();
            let opts = GetOptions::new().with_prefix().with_count_only();
            match q.call(c.get(prefix, Some(opts))).await {
                Ok(r) => facts.set("key_count", r.count()),
                Err(f) => q.note(&format!("count of keys under `{prefix}`"), f)?,
            }
        }
        if want("key_groups") {
            let prefix = self.prefix.as_deref().unwrap_or(DEFAULT_PREFIX);
            let mut c = q.client.clone();
            let opts = GetOptions::new().with_prefix().with_keys_only();
            match q.call(c.get(prefix, Some(opts))).await {
                Ok(r) => {
                    let mut groups = serde_json::Map::new();
                    for kv in r.kvs() {
                        let key = String::from_utf8_lossy(kv.key());
                        if is_probe_scratch(&key) {
                            continue;
                        }
                        let g = key_group(&key);
                        let n = groups.get(&g).and_then(|v| v.as_u64()).unwrap_or(0);
                        groups.insert(g, (n + 1).into());
                    }
                    facts.set("key_groups", serde_json::Value::Object(groups));
                }
                Err(f) => q.note(&format!("keys under `{prefix}`"), f)?,
            }
        }
        if want("writable") {
            let ok = write_round_trip(q).await?;
            facts.set("writable", ok);
        }
        Ok(())
    }

    /// The cluster facts ([`CLUSTER_FACTS`]) from the member list and the leader [`collect`]
    /// read from the probed endpoint (nothing when the list could not be read: its note is
    /// there), then a linearizable read on every voting member's first client URL, all at
    /// once, through the node, within the attempt's deadline.
    ///
    /// [`collect`]: Self::collect
    async fn cluster(
        &self,
        ctx: &ProbeCtx<'_>,
        q: &mut Query<'_>,
        facts: &mut Facts,
        want: &(dyn Fn(&str) -> bool + Sync),
    ) -> std::result::Result<(), String> {
        let Some(list) = q.members.take() else {
            return Ok(());
        };
        let label = |m: &etcd_client::Member| {
            if m.name().is_empty() {
                format!("{:x}", m.id())
            } else {
                m.name().to_string()
            }
        };
        if want("learners") {
            let names: Vec<String> = list
                .members()
                .iter()
                .filter(|m| m.is_learner())
                .map(label)
                .collect();
            facts.set("learners", names);
        }
        if want("leader_name") {
            match q.leader {
                Some(0) => q.notes.push("status: no leader known".into()),
                Some(leader) => {
                    if let Some(m) = list.members().iter().find(|m| m.id() == leader) {
                        facts.set("leader_name", label(m));
                    }
                }
                // The status request failed: its note is there.
                None => {}
            }
        }
        let voters: Vec<&etcd_client::Member> =
            list.members().iter().filter(|m| !m.is_learner()).collect();
        if want("members_healthy") || want("unhealthy_members") || want("quorum") {
            let (deadline, timeout) = (q.deadline, q.timeout);
            let checks = voters.iter().map(|m| {
                let url = m.client_urls().first().cloned();
                async move {
                    let Some(url) = url else {
                        return Err("no client URL (added but never started)".to_string());
                    };
                    member_answers(ctx, &url, deadline, timeout).await
                }
            });
            let results = futures::future::join_all(checks).await;
            let mut down = Vec::new();
            for (m, r) in voters.iter().zip(results) {
                if let Err(why) = r {
                    q.notes.push(format!("member {}: {why}", label(m)));
                    down.push(label(m));
                }
            }
            let healthy = voters.len() - down.len();
            facts.set("members_healthy", healthy);
            facts.set("unhealthy_members", down);
            facts.set("quorum", healthy > voters.len() / 2);
        }
        if want("hashes_agree") {
            let urls: Vec<Option<String>> = voters
                .iter()
                .map(|m| m.client_urls().first().cloned())
                .collect();
            match member_hashes(ctx, &urls, q.deadline, q.timeout).await {
                Ok((rev, hashes)) => {
                    let agree = hashes.windows(2).all(|w| w[0] == w[1]);
                    if !agree {
                        let each: Vec<String> = voters
                            .iter()
                            .zip(&hashes)
                            .map(|(m, h)| format!("{} {h}", label(m)))
                            .collect();
                        q.notes.push(format!(
                            "KV hashes at revision {rev} differ: {}",
                            each.join(", ")
                        ));
                    }
                    facts.set("hashes_agree", agree);
                }
                Err((i, why)) => q.notes.push(format!(
                    "KV hashes not compared: member {}: {why}",
                    label(voters[i])
                )),
            }
        }
        Ok(())
    }

    /// The endpoint to probe: `endpoint`, else the inventory's first etcd endpoint.
    fn endpoint(&self, ctx: &ProbeCtx<'_>) -> Result<Endpoint> {
        let url = match &self.endpoint {
            Some(u) => u.as_str(),
            None => ctx.inventory.cluster.etcd.endpoints.first().map(String::as_str).ok_or_else(|| {
                Error::other(format!(
                    "probe `{}`: no `endpoint:` given and the inventory lists no cluster.etcd.endpoints",
                    self.name
                ))
            })?,
        };
        Endpoint::parse(url)
    }
}

/// A fresh client of the member at client URL `url` (as seen from the node), through the
/// node, before `deadline`; `Err` says why not.
async fn reach_member(
    ctx: &ProbeCtx<'_>,
    url: &str,
    deadline: Instant,
    timeout: Duration,
) -> std::result::Result<(Endpoint, crate::node::etcd::EtcdAccess), String> {
    let ep = Endpoint::parse(url).map_err(|e| e.to_string())?;
    let a = tokio::time::timeout_at(
        deadline,
        access_uncached(ctx.session, ctx.inventory, &ep, deadline, timeout),
    )
    .await
    .map_err(|_| format!("no answer from {url} in time"))?
    .map_err(|e| e.to_string())?;
    Ok((ep, a))
}

/// Whether the member at client URL `url` (as seen from the node) answers a linearizable
/// read before `deadline`; `Err` says why not.
async fn member_answers(
    ctx: &ProbeCtx<'_>,
    url: &str,
    deadline: Instant,
    timeout: Duration,
) -> std::result::Result<(), String> {
    let (ep, a) = reach_member(ctx, url, deadline, timeout).await?;
    let mut c = a.client.clone();
    match tokio::time::timeout_at(deadline, c.get("health", None)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => match classify(e, &ep) {
            Failure::Answered { code, .. } if code == GRPC_PERMISSION_DENIED => Ok(()),
            Failure::Answered { message, .. } => Err(message),
            Failure::Unreachable(m) => Err(m),
        },
        Err(_) => Err(format!("no answer from {url} in time")),
    }
}

/// The KV hash of every member at `urls` (client URLs as seen from the node) at one revision,
/// the lowest of their current revisions: `(revision, hashes)` in the order of `urls`, or the
/// index of a member that could not be asked and why. Two rounds, each to all members at
/// once: a status (the current revision), then HashKV at the common revision.
async fn member_hashes(
    ctx: &ProbeCtx<'_>,
    urls: &[Option<String>],
    deadline: Instant,
    timeout: Duration,
) -> std::result::Result<(i64, Vec<u32>), (usize, String)> {
    let connect = urls.iter().map(|url| async move {
        let url = url
            .as_deref()
            .ok_or_else(|| "no client URL (added but never started)".to_string())?;
        let (_, a) = reach_member(ctx, url, deadline, timeout).await?;
        let mut c = a.client.clone();
        let status = bounded(deadline, url, c.status()).await?;
        let rev = status.header().map(|h| h.revision()).unwrap_or(0);
        Ok::<_, String>((a, url.to_string(), rev))
    });
    let mut members = Vec::new();
    for (i, r) in futures::future::join_all(connect).await.into_iter().enumerate() {
        members.push(r.map_err(|why| (i, why))?);
    }
    let rev = members.iter().map(|(_, _, r)| *r).min().unwrap_or(0);
    let hashes = members.iter().map(|(a, url, _)| async move {
        let mut c = a.client.clone();
        bounded(deadline, url, c.hash_kv(rev)).await.map(|h| h.hash())
    });
    let mut out = Vec::new();
    for (i, r) in futures::future::join_all(hashes).await.into_iter().enumerate() {
        out.push(r.map_err(|why| (i, why))?);
    }
    Ok((rev, out))
}

/// One request to the member at `url`, bounded by `deadline`; `Err` says why it failed.
async fn bounded<T>(
    deadline: Instant,
    url: &str,
    fut: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
) -> std::result::Result<T, String> {
    match tokio::time::timeout_at(deadline, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer from {url} in time")),
    }
}

/// Puts a scratch key under [`SCRATCH_PREFIX`], reads it back (linearizable) and deletes it.
/// `Ok(false)` when etcd refuses (e.g. NOSPACE) or returns something else; `Err` when etcd
/// cannot be reached.
async fn write_round_trip(q: &mut Query<'_>) -> std::result::Result<bool, String> {
    let key = format!("{SCRATCH_PREFIX}{:016x}", rand::random::<u64>());
    let value = format!("breakfix-{:016x}", rand::random::<u64>());
    let mut c = q.client.clone();
    if let Err(f) = q.call(c.put(key.as_str(), value.as_str(), None)).await {
        q.note(&format!("put {key}"), f)?;
        return Ok(false);
    }
    let mut c = q.client.clone();
    let ok = match q.call(c.get(key.as_str(), None)).await {
        Ok(r) => {
            let same = r
                .kvs()
                .first()
                .is_some_and(|kv| kv.value() == value.as_bytes());
            if !same {
                q.notes
                    .push(format!("get {key} did not return the value just put"));
            }
            same
        }
        Err(f) => {
            q.note(&format!("get {key}"), f)?;
            false
        }
    };
    let mut c = q.client.clone();
    if let Err(f) = q.call(c.delete(key.as_str(), None)).await {
        q.note(&format!("delete {key} (scratch key left behind)"), f)?;
    }
    Ok(ok)
}

/// One attempt's requests: a shared deadline and the notes collected so far.
struct Query<'a> {
    client: Client,
    deadline: Instant,
    timeout: Duration,
    endpoint: &'a Endpoint,
    notes: Vec<String>,
    /// The member list, once read (for the cluster facts).
    members: Option<etcd_client::MemberListResponse>,
    /// The leader's ID from the status, once read (0: none known).
    leader: Option<u64>,
}

impl Query<'_> {
    /// Runs one request, bounded by the attempt's deadline.
    async fn call<T>(
        &self,
        fut: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> std::result::Result<T, Failure> {
        match tokio::time::timeout_at(self.deadline, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(e, self.endpoint)),
            Err(_) => Err(Failure::Unreachable(format!(
                "deadline exceeded: no answer from etcd at {} within {}",
                self.endpoint.url,
                humantime::format_duration(self.timeout)
            ))),
        }
    }

    /// Records an answered error as a note (the fact stays absent); passes an unreachable
    /// etcd up as `Err`.
    fn note(&mut self, what: &str, f: Failure) -> std::result::Result<(), String> {
        match f {
            Failure::Answered { message, .. } => {
                self.notes.push(format!("{what}: {message}"));
                Ok(())
            }
            Failure::Unreachable(m) => Err(m),
        }
    }
}

impl ProbeKind for EtcdProbe {
    type Expect = EtcdExpect;

    fn expect(&self) -> &EtcdExpect {
        &self.expect
    }

    fn plan_target(&self) -> (&'static str, String) {
        (
            "etcd",
            format!(
                "{}{}",
                self.endpoint
                    .as_deref()
                    .unwrap_or("the inventory's endpoints"),
                self.prefix
                    .as_deref()
                    .map(|x| format!(", keys under {x}"))
                    .unwrap_or_default()
            ),
        )
    }

    /// Gathers only the facts in `wanted` (`healthy` alone is one linearizable read). The
    /// whole attempt, including opening the access on first use, is bounded by `ctx.timeout`.
    ///
    /// Errors: the inventory has no etcd endpoint or the endpoint is malformed; a TLS file
    /// cannot be read on the node (names the path); the transport fails. etcd being down is
    /// NOT an error (see the module docs).
    async fn gather(&self, ctx: &ProbeCtx<'_>, wanted: &[&str]) -> Result<Facts> {
        let mut facts = Facts::default();
        let want = |f: &str| wanted.contains(&f);
        if !EtcdExpect::FACTS.iter().any(|f| want(f)) {
            return Ok(facts);
        }
        let deadline = Instant::now() + ctx.timeout;
        let endpoint = self.endpoint(ctx)?;
        let (client, id) = access(ctx.session, ctx.inventory, &endpoint, deadline, ctx.timeout).await?;
        let mut q = Query {
            client,
            deadline,
            timeout: ctx.timeout,
            endpoint: &endpoint,
            notes: Vec::new(),
            members: None,
            leader: None,
        };
        let mut r = self.collect(&mut q, &mut facts, &want).await;
        if r.is_ok() && CLUSTER_FACTS.iter().any(|f| want(f)) {
            r = self.cluster(ctx, &mut q, &mut facts, &want).await;
        }
        if let Err(cause) = r {
            forget(ctx.session, id).await;
            facts.values.clear();
            facts.set("healthy", false);
            q.notes.insert(0, cause);
        }
        if !q.notes.is_empty() {
            facts.note = Some(q.notes.join("; "));
        }
        Ok(facts)
    }

    /// Renders `endpoint` and `prefix`.
    fn render(&self, r: &Renderer) -> Result<Self> {
        let mut p = self.clone();
        p.expect = self.expect.render(r)?;
        if let Some(e) = &self.endpoint {
            p.endpoint = Some(r.text(e)?);
        }
        if let Some(x) = &self.prefix {
            p.prefix = Some(r.text(x)?);
        }
        Ok(p)
    }
}
