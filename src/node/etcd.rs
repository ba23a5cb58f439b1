//! etcd access from a node: the endpoint as seen from the node, the TLS files read over the
//! transport, a port forward, and an etcd-client on its local end, cached per node session
//! ([`crate::node::NodeSession::etcd`]). Used by the `etcd` probe, the `etcd_*` faults, the
//! journal (etcd's cluster ID) and the snapshots.
//!
//! # Guarantees
//! - The server certificate is verified against the endpoint's host as seen from the node,
//!   exactly as a client on the node would verify it.
//! - The TLS files are re-read when the cached access is older than [`TLS_RECHECK`]; a
//!   change rebuilds the client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::NodeSession;
use crate::error::{Error, Result};
use crate::inventory::Inventory;
use crate::transport::Forward;

/// etcd's client port when an endpoint gives none.
const DEFAULT_PORT: u16 = 2379;

/// Why a request failed.
#[derive(Debug)]
pub enum Failure {
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
pub fn classify(e: etcd_client::Error, ep: &Endpoint) -> Failure {
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
pub struct Endpoint {
    /// The URL as written.
    pub url: String,
    /// `https` (or no scheme): TLS with the inventory's files; `http`: plain.
    pub tls: bool,
    /// Host as seen from the node (IPv6 without brackets); also the name the server
    /// certificate is verified against.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// Parses `https://127.0.0.1:2379`, `http://[::1]:2379`, `localhost` (port 2379, TLS).
    pub fn parse(url: &str) -> Result<Endpoint> {
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
/// Kept in [`crate::node::NodeSession::etcd`] and reused across attempts.
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
pub const TLS_RECHECK: Duration = Duration::from_secs(1);

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
pub async fn access(
    session: &NodeSession,
    inventory: &Inventory,
    ep: &Endpoint,
    deadline: Instant,
    timeout: Duration,
) -> Result<(Client, u64)> {
    let mut slot = session.etcd.lock().await;
    if let Some(a) = slot.as_ref() {
        if a.endpoint == ep.url && a.verified_at.elapsed() < TLS_RECHECK {
            return Ok((a.client.clone(), a.id));
        }
    }
    let (target, files, sha) = inventory_tls(session, inventory, ep, deadline).await?;
    if let Some(a) = slot.as_mut() {
        if a.endpoint == ep.url && a.tls_sha256 == sha {
            a.verified_at = Instant::now();
            return Ok((a.client.clone(), a.id));
        }
    }
    let a = open(session, ep, &target, files, sha, timeout).await?;
    let out = (a.client.clone(), a.id);
    *slot = Some(a);
    Ok(out)
}

/// A new access to `ep` that is not cached: for a look at another member of the cluster
/// (the session's cache keeps the probe's own endpoint). The TLS files are the inventory's,
/// read on the node; the forward lives as long as the returned access.
///
/// Errors: as [`access`].
pub async fn access_uncached(
    session: &NodeSession,
    inventory: &Inventory,
    ep: &Endpoint,
    deadline: Instant,
    timeout: Duration,
) -> Result<EtcdAccess> {
    let (target, files, sha) = inventory_tls(session, inventory, ep, deadline).await?;
    open(session, ep, &target, files, sha, timeout).await
}

/// The inventory's TLS files for `ep` as read on the node now (none for plain `http`), with
/// their target and digest.
async fn inventory_tls(
    session: &NodeSession,
    inventory: &Inventory,
    ep: &Endpoint,
    deadline: Instant,
) -> Result<(EtcdTarget, Option<TlsFiles>, [u8; 32])> {
    let target = EtcdTarget::with_inventory_tls(inventory, &ep.url);
    let files = if ep.tls {
        Some(TlsFiles::read(session, &target, TlsOrigin::Inventory, deadline).await?)
    } else {
        None
    };
    let sha = TlsFiles::sha256(files.as_ref());
    Ok((target, files, sha))
}

/// Drops the cached access if it is still the one with `id`.
pub async fn forget(session: &NodeSession, id: u64) {
    let mut slot = session.etcd.lock().await;
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
