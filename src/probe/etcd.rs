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
//! [`crate::engine::connect::NodeSession::etcd`] and reused by later attempts; when etcd cannot
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    AlarmAction, AlarmType, Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions,
};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::{Facts, ProbeCtx, ProbeKind};
use crate::engine::connect::NodeSession;
use crate::error::{Error, Result};
use crate::inventory::Inventory;
use crate::template::Renderer;
use crate::transport::Forward;

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
    }
}

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

/// Port used when an endpoint URL names none (etcd's client port).
const DEFAULT_PORT: u16 = 2379;

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
        if want("leader") || want("db_size") || want("revision") {
            let mut c = q.client.clone();
            match q.call(c.status()).await {
                Ok(s) => {
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
        if want("members") || want("member_names") || want("member_peer_urls") {
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

/// Why a request failed.
#[derive(Debug)]
enum Failure {
    /// No answer: connection or TLS failure, or the deadline passed. etcd counts as down.
    Unreachable(String),
    /// etcd answered with an error (e.g. `mvcc: database space exceeded`).
    Answered {
        /// gRPC status code as a number.
        code: i32,
        /// etcd's message.
        message: String,
    },
}

/// Sorts an etcd-client error into "etcd answered" and "etcd unreachable". A gRPC status
/// that carries a source error was made on this side from a transport failure; one without
/// came from etcd.
fn classify(e: etcd_client::Error, ep: &Endpoint) -> Failure {
    match &e {
        etcd_client::Error::GRpcStatus(s) => match std::error::Error::source(s) {
            None => Failure::Answered {
                code: s.code() as i32,
                message: s.message().to_string(),
            },
            Some(src) => {
                let mut text = describe(src);
                if !text.contains(s.message()) {
                    text = format!("{text}: {}", s.message());
                }
                Failure::Unreachable(explain(&text, ep))
            }
        },
        _ => Failure::Unreachable(explain(&describe(&e), ep)),
    }
}

/// `error: cause: cause...`, skipping causes already contained in the text so far and
/// dropping links to manuals (rustls appends one to some errors).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = strip_links(&e.to_string());
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = strip_links(&c.to_string());
        if !s.is_empty() && !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

/// Removes `: https://...` links from an error message.
fn strip_links(s: &str) -> String {
    s.split(": ")
        .filter(|part| !(part.starts_with("https://") || part.starts_with("http://")))
        .collect::<Vec<_>>()
        .join(": ")
}

/// Adds what a transport failure most likely means, in etcd terms.
fn explain(msg: &str, ep: &Endpoint) -> String {
    let m = msg.to_ascii_lowercase();
    let hint = if m.contains("unknownissuer")
        || m.contains("unknown authority")
        || m.contains("badsignature")
    {
        Some("x509: certificate signed by unknown authority (etcd's serving certificate is not signed by the inventory's ca_file)".to_string())
    } else if m.contains("notvalidforname") || m.contains("not valid for name") {
        Some(format!(
            "x509: etcd's serving certificate is not valid for `{}` (check its SANs)",
            ep.host
        ))
    } else if m.contains("expired") || m.contains("notvalidyet") {
        Some("x509: certificate has expired or is not yet valid".to_string())
    } else if m.contains("alert") && (m.contains("certificate") || m.contains("unknownca")) {
        Some(
            "etcd rejected breakfix's client certificate (--client-cert-auth / --trusted-ca-file)"
                .to_string(),
        )
    } else if m.contains("unexpectedeof")
        || m.contains("unexpected eof")
        || m.contains("connection reset")
        || m.contains("broken pipe")
        || m.contains("connection refused")
        || m.contains("closed")
    {
        Some(format!(
            "connection refused or closed: nothing accepted the connection at {}:{} on the node (is etcd running?)",
            ep.host, ep.port
        ))
    } else {
        None
    };
    match hint {
        Some(h) => format!("{h} [{msg}]"),
        None => msg.to_string(),
    }
}

/// A parsed client URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    /// The URL as written.
    url: String,
    /// `https` (or no scheme): TLS with the inventory's files; `http`: plain.
    tls: bool,
    /// Host as seen from the node (IPv6 without brackets); also the name the server
    /// certificate is verified against.
    host: String,
    /// TCP port.
    port: u16,
}

impl Endpoint {
    /// Parses `https://127.0.0.1:2379`, `http://[::1]:2379`, `localhost` (port 2379, TLS).
    fn parse(url: &str) -> Result<Endpoint> {
        let bad = |why: &str| Error::other(format!("etcd endpoint `{url}`: {why}"));
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if url.contains("://") {
            return Err(bad("the scheme must be https or http"));
        } else {
            (true, url)
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed `[` in the host"))?;
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if after.is_empty() => (h, None),
                None => return Err(bad("unexpected text after the IPv6 host")),
            }
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| bad("the port must be a number from 1 to 65535"))?,
            None => DEFAULT_PORT,
        };
        if port == 0 {
            return Err(bad("the port must be a number from 1 to 65535"));
        }
        Ok(Endpoint {
            url: url.to_string(),
            tls,
            host: host.to_string(),
            port,
        })
    }
}

/// Source of [`EtcdAccess::id`].
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// An open route to one node's etcd: the port forward and a client speaking through it.
/// Kept in [`crate::engine::connect::NodeSession::etcd`] and reused across attempts.
pub struct EtcdAccess {
    /// The endpoint URL (as seen from the node) this access reaches.
    pub endpoint: String,
    /// Local end of the forward to the node's etcd client port; shared with requests in
    /// flight so that dropping the cache does not cut them off.
    pub forward: Arc<Forward>,
    /// Client speaking TLS through the forward (cheap to clone).
    pub client: Client,
    /// SHA-256 of the CA, certificate and key the client was built from.
    tls_sha256: [u8; 32],
    /// Distinguishes accesses so a failing attempt only drops the one it used.
    id: u64,
    /// When the node's TLS files were last read and found unchanged.
    verified_at: Instant,
}

/// How long a check of the node's TLS files stays good: concurrent probes of one round share
/// one read of the three files instead of three reads each.
const TLS_RECHECK: Duration = Duration::from_secs(1);

/// The node's TLS files, as read on this attempt.
struct TlsFiles {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl TlsFiles {
    /// Reads the target's CA, certificate and key on the node (three concurrent reads, through
    /// SFTP on SSH nodes, bounded by what is left of the attempt).
    async fn read(
        session: &NodeSession,
        target: &EtcdTarget,
        origin: TlsOrigin,
        deadline: Instant,
    ) -> Result<TlsFiles> {
        let (ca, cert, key) = futures::future::try_join3(
            read_tls_file(session, origin, "ca_file", &target.ca_file, deadline),
            read_tls_file(session, origin, "cert_file", &target.cert_file, deadline),
            read_tls_file(session, origin, "key_file", &target.key_file, deadline),
        )
        .await?;
        Ok(TlsFiles { ca, cert, key })
    }

    fn sha256(files: Option<&TlsFiles>) -> [u8; 32] {
        let mut h = Sha256::new();
        if let Some(f) = files {
            for part in [&f.ca, &f.cert, &f.key] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part);
            }
        }
        h.finalize().into()
    }
}

/// The cached access for `ep`, or a new one (cached in turn) when there is none, it is for
/// another endpoint, or the node's TLS files changed since it was built (a fault may have
/// replaced them: the probe must see what a client on the node would see). The TLS files are
/// read again when the last read is older than [`TLS_RECHECK`]; the lock is held while they
/// are read, so the probes of one round read them once. Returns a client clone and the
/// access's id.
async fn access(ctx: &ProbeCtx<'_>, ep: &Endpoint, deadline: Instant) -> Result<(Client, u64)> {
    let mut slot = ctx.session.etcd.lock().await;
    if let Some(a) = slot.as_ref() {
        if a.endpoint == ep.url && a.verified_at.elapsed() < TLS_RECHECK {
            return Ok((a.client.clone(), a.id));
        }
    }
    let target = EtcdTarget::with_inventory_tls(ctx.inventory, &ep.url);
    let files = if ep.tls {
        Some(TlsFiles::read(ctx.session, &target, TlsOrigin::Inventory, deadline).await?)
    } else {
        None
    };
    let sha = TlsFiles::sha256(files.as_ref());
    if let Some(a) = slot.as_mut() {
        if a.endpoint == ep.url && a.tls_sha256 == sha {
            a.verified_at = Instant::now();
            return Ok((a.client.clone(), a.id));
        }
    }
    let a = open(ctx.session, ep, &target, files, sha, ctx.timeout).await?;
    let out = (a.client.clone(), a.id);
    *slot = Some(a);
    Ok(out)
}

/// Drops the cached access if it is still the one with `id`.
async fn forget(ctx: &ProbeCtx<'_>, id: u64) {
    let mut slot = ctx.session.etcd.lock().await;
    if slot.as_ref().is_some_and(|a| a.id == id) {
        *slot = None;
    }
}

/// Opens the forward and builds the (lazy) client from the node's TLS files.
async fn open(
    session: &NodeSession,
    ep: &Endpoint,
    target: &EtcdTarget,
    files: Option<TlsFiles>,
    tls_sha256: [u8; 32],
    timeout: Duration,
) -> Result<EtcdAccess> {
    let tls = files.map(|f| {
        TlsOptions::new()
            .ca_certificate(Certificate::from_pem(f.ca))
            .identity(Identity::from_pem(f.cert, f.key))
            .domain_name(ep.host.clone())
            .timeout(timeout)
    });
    let forward = session.transport.forward(&ep.host, ep.port).await?;
    let url = format!(
        "{}://{}",
        if ep.tls { "https" } else { "http" },
        forward.local
    );
    let mut opts = ConnectOptions::new().with_connect_timeout(timeout);
    if let Some(t) = tls {
        opts = opts.with_tls(t);
    }
    let client = Client::connect([url.as_str()], Some(opts))
        .await
        .map_err(|e| Error::Transport {
            host: session.transport.host().to_string(),
            message: format!(
                "setting up the etcd client for {} with the node's TLS files ({}, {}, {}): {}",
                ep.url,
                target.ca_file,
                target.cert_file,
                target.key_file,
                describe(&e)
            ),
        })?;
    Ok(EtcdAccess {
        endpoint: ep.url.clone(),
        forward: Arc::new(forward),
        client,
        tls_sha256,
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        verified_at: Instant::now(),
    })
}

/// Where the TLS file paths came from (named in the error when a file is missing).
#[derive(Debug, Clone, Copy)]
enum TlsOrigin {
    /// `cluster.etcd` of the inventory (the probe).
    Inventory,
    /// A caller of [`connect`] (a fault's fields, defaulting to the inventory's).
    Caller,
}

/// Reads one TLS file on the node; a missing file is an error naming the path and the
/// field it came from.
async fn read_tls_file(
    session: &NodeSession,
    origin: TlsOrigin,
    field: &str,
    path: &str,
    deadline: Instant,
) -> Result<Vec<u8>> {
    let left = deadline.saturating_duration_since(Instant::now());
    let host = session.transport.host().to_string();
    match session.transport.read_file(path, left).await? {
        Some(b) => Ok(b),
        None => Err(Error::Transport {
            host,
            message: match origin {
                TlsOrigin::Inventory => format!(
                    "etcd TLS file {path} (cluster.etcd.{field} in the inventory) does not exist on the node"
                ),
                TlsOrigin::Caller => format!(
                    "etcd TLS file {path} (`{field}`, by default cluster.etcd.{field} of the inventory) does not exist on the node"
                ),
            },
        }),
    }
}

/// How to reach one etcd from a node: its client URL as seen FROM THE NODE and the TLS files
/// ON THE NODE. Faults journal it with their undo, so `reset` needs no inventory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EtcdTarget {
    /// Client URL, e.g. `https://127.0.0.1:2379` (`http://` for a plain-text etcd).
    pub endpoint: String,
    /// CA bundle that signed etcd's serving certificate.
    pub ca_file: String,
    /// Client certificate etcd accepts.
    pub cert_file: String,
    /// Key of `cert_file`.
    pub key_file: String,
}

impl EtcdTarget {
    /// `endpoint` with the inventory's TLS files.
    pub fn with_inventory_tls(inventory: &Inventory, endpoint: &str) -> EtcdTarget {
        let f = &inventory.cluster.etcd;
        EtcdTarget {
            endpoint: endpoint.to_string(),
            ca_file: f.ca_file.clone(),
            cert_file: f.cert_file.clone(),
            key_file: f.key_file.clone(),
        }
    }
}

/// Opens a NEW access to `target`'s etcd for `session`'s node (not the probes' cached one):
/// reads the TLS files on the node, opens a forward to the endpoint as seen from the node and
/// builds a TLS client over it. All of it is bounded by `timeout`, which also bounds the
/// client's connect and TLS handshake. The client connects lazily: the first request is the
/// proof; turn its errors into text with [`EtcdAccess::explain`].
///
/// Errors: malformed endpoint, a TLS file missing on the node (names the path and field),
/// transport failures, `timeout` passed.
pub async fn connect(
    session: &NodeSession,
    target: &EtcdTarget,
    timeout: Duration,
) -> Result<EtcdAccess> {
    let deadline = Instant::now() + timeout;
    let ep = Endpoint::parse(&target.endpoint)?;
    let opening = async {
        let files = if ep.tls {
            Some(TlsFiles::read(session, target, TlsOrigin::Caller, deadline).await?)
        } else {
            None
        };
        let sha = TlsFiles::sha256(files.as_ref());
        open(session, &ep, target, files, sha, timeout).await
    };
    match tokio::time::timeout_at(deadline, opening).await {
        Ok(r) => r,
        Err(_) => Err(Error::Transport {
            host: session.transport.host().to_string(),
            message: format!(
                "opening the etcd client for {} did not finish within {}",
                target.endpoint,
                humantime::format_duration(timeout)
            ),
        }),
    }
}

impl EtcdAccess {
    /// One line for an etcd-client error: etcd's own message when etcd answered (e.g.
    /// `etcdserver: mvcc: database space exceeded`), else the transport failure with what it
    /// most likely means (etcd down, TLS rejected, ...).
    pub fn explain(&self, e: etcd_client::Error) -> String {
        match Endpoint::parse(&self.endpoint) {
            Ok(ep) => match classify(e, &ep) {
                Failure::Answered { message, .. } => message,
                Failure::Unreachable(m) => m,
            },
            Err(_) => describe(&e),
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
        let (client, id) = access(ctx, &endpoint, deadline).await?;
        let mut q = Query {
            client,
            deadline,
            timeout: ctx.timeout,
            endpoint: &endpoint,
            notes: Vec::new(),
        };
        if let Err(cause) = self.collect(&mut q, &mut facts, &want).await {
            forget(ctx, id).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        let e = Endpoint::parse("https://127.0.0.1:2379").expect("parse");
        assert_eq!((e.tls, e.host.as_str(), e.port), (true, "127.0.0.1", 2379));
        let e = Endpoint::parse("http://[::1]:12379/").expect("parse");
        assert_eq!((e.tls, e.host.as_str(), e.port), (false, "::1", 12379));
        let e = Endpoint::parse("localhost").expect("parse");
        assert_eq!((e.tls, e.host.as_str(), e.port), (true, "localhost", 2379));
        let e = Endpoint::parse("https://[fd00::1]").expect("parse");
        assert_eq!((e.host.as_str(), e.port), ("fd00::1", 2379));
        assert!(Endpoint::parse("unix://x").is_err());
        assert!(Endpoint::parse("https://:2379").is_err());
        assert!(Endpoint::parse("https://h:99999").is_err());
        assert!(Endpoint::parse("https://h:0").is_err());
        assert!(Endpoint::parse("https://[::1").is_err());
    }

    #[test]
    fn explains_tls_and_refusals() {
        let ep = Endpoint::parse("https://127.0.0.1:2379").expect("parse");
        assert!(explain("invalid peer certificate: UnknownIssuer", &ep)
            .starts_with("x509: certificate signed by unknown authority"));
        assert!(explain("tls handshake eof: unexpected EOF", &ep).contains("is etcd running"));
        assert_eq!(explain("something else", &ep), "something else");
        assert_eq!(
            strip_links("closed without close_notify: https://docs.rs/x#y: more"),
            "closed without close_notify: more"
        );
    }
}
