//! Storage in the real etcd through etcd-client: bounded, retrying calls, optimistic
//! concurrency with transactions on mod_revision, and a background health probe whose
//! result /readyz, /healthz and the controller read.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Identity,
    PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchStream,
};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::flags::Flags;
use crate::log::{info, warning};

/// One stored key.
#[derive(Debug, Clone)]
pub struct Kv {
    /// Full etcd key.
    pub key: String,
    /// Stored bytes (JSON).
    pub value: Vec<u8>,
    /// etcd mod_revision (the object's resourceVersion).
    pub mod_revision: i64,
}

/// Why a storage call failed.
#[derive(Debug, Clone)]
pub enum StoreError {
    /// No answer before the deadline (etcd down, wrong address, TLS failure): 504.
    Unreachable(String),
    /// etcd answered with an error (`etcdserver: request timed out`, quota): 500.
    Answered(String),
    /// Create of an existing key.
    AlreadyExists,
    /// Compare on mod_revision failed.
    Conflict,
    /// The key does not exist.
    NotFound,
}

/// Last result of the etcd health probe.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// A probe has completed at least once.
    pub checked: bool,
    /// The last probe got an answer.
    pub ok: bool,
    /// Error of the last failed probe, as the etcd health check reports it.
    pub error: String,
    /// The underlying cause (`dial tcp 127.0.0.1:2379: connect: connection refused`).
    pub detail: String,
}

/// The etcd-backed store.
#[derive(Clone)]
pub struct Store {
    client: Client,
    /// `--etcd-prefix`.
    pub prefix: String,
    /// How long a request waits for an unreachable etcd.
    pub timeout: Duration,
    endpoints: Arc<String>,
    /// First endpoint as host:port, for messages.
    addr: Arc<String>,
    health: watch::Receiver<Health>,
    health_tx: Arc<watch::Sender<Health>>,
}

/// Reads the etcd TLS files and builds the (lazy) client. Errors are startup failures, as
/// with the real server (e.g. a missing `--etcd-cafile`).
pub async fn connect(flags: &Flags) -> Result<Store, String> {
    let tls_wanted = flags.etcd_servers.iter().any(|e| e.starts_with("https://"));
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
        .with_keep_alive_while_idle(true);
    if tls_wanted {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &flags.etcd_cafile {
            let pem = std::fs::read(ca).map_err(|e| format!("open {}: {}", ca.display(), e))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        match (&flags.etcd_certfile, &flags.etcd_keyfile) {
            (Some(c), Some(k)) => {
                let cert = std::fs::read(c).map_err(|e| format!("open {}: {}", c.display(), e))?;
                let key = std::fs::read(k).map_err(|e| format!("open {}: {}", k.display(), e))?;
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            (None, None) => {}
            _ => {
                return Err("--etcd-certfile and --etcd-keyfile must be given together".to_string())
            }
        }
        opts = opts.with_tls(tls);
    }
    // Mixed schemes: the client speaks one; keep the endpoints of the first scheme.
    let eps: Vec<String> = flags
        .etcd_servers
        .iter()
        .filter(|e| e.starts_with("https://") == tls_wanted)
        .cloned()
        .collect();
    let client = Client::connect(&eps, Some(opts))
        .await
        .map_err(|e| format!("creating the etcd client for {}: {e}", eps.join(",")))?;
    let (tx, rx) = watch::channel(Health::default());
    Ok(Store {
        client,
        prefix: flags.etcd_prefix.trim_end_matches('/').to_string(),
        timeout: flags.storage_timeout.min(flags.request_timeout),
        endpoints: Arc::new(eps.join(",")),
        addr: Arc::new(
            eps.first()
                .map(|e| {
                    e.trim_start_matches("https://")
                        .trim_start_matches("http://")
                        .trim_end_matches('/')
                        .to_string()
                })
                .unwrap_or_default(),
        ),
        health: rx,
        health_tx: Arc::new(tx),
    })
}

/// Sorts an etcd-client error: a gRPC status without a source came from etcd; anything
/// else is a connection/TLS failure on this side, described the way Go's gRPC does.
fn classify(e: etcd_client::Error, addr: &str) -> StoreError {
    match &e {
        etcd_client::Error::GRpcStatus(s) if std::error::Error::source(s).is_none() => {
            StoreError::Answered(s.message().to_string())
        }
        etcd_client::Error::GRpcStatus(s) => StoreError::Unreachable(describe(s, addr)),
        etcd_client::Error::TransportError(t) => StoreError::Unreachable(describe(t, addr)),
        _ => StoreError::Unreachable(describe(&e, addr)),
    }
}

/// Go-style text for a transport failure (`dial tcp 127.0.0.1:2379: connect: connection
/// refused`, `x509: certificate signed by unknown authority`).
fn describe(e: &(dyn std::error::Error + 'static), addr: &str) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut last = e.to_string();
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            if let Some(inner) = io.get_ref() {
                if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                    return tls_text(tls);
                }
            }
            let what = match io.kind() {
                K::ConnectionRefused => "connect: connection refused".to_string(),
                K::TimedOut => "i/o timeout".to_string(),
                K::ConnectionReset => "read: connection reset by peer".to_string(),
                K::UnexpectedEof => return "error reading server preface: EOF".to_string(),
                _ => io.to_string().to_lowercase(),
            };
            return format!("dial tcp {addr}: {what}");
        }
        if let Some(tls) = c.downcast_ref::<rustls::Error>() {
            return tls_text(tls);
        }
        let t = c.to_string();
        if !t.is_empty() {
            last = t;
        }
        cur = c.source();
    }
    if last.contains("frame") || last.contains("h2") || last.contains("http2") {
        return "error reading server preface: http2: frame too large".to_string();
    }
    last
}

fn tls_text(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let text = match e {
        E::InvalidCertificate(C::UnknownIssuer) | E::InvalidCertificate(C::BadSignature) => {
            "x509: certificate signed by unknown authority".to_string()
        }
        E::InvalidCertificate(C::Expired) | E::InvalidCertificate(C::NotValidYet) => {
            "x509: certificate has expired or is not yet valid".to_string()
        }
        E::InvalidCertificate(C::NotValidForName) => {
            "x509: certificate is not valid for the requested name".to_string()
        }
        E::AlertReceived(A::BadCertificate) => "remote error: tls: bad certificate".to_string(),
        E::AlertReceived(A::UnknownCA) => {
            "remote error: tls: unknown certificate authority".to_string()
        }
        E::AlertReceived(A::CertificateRequired) => {
            "remote error: tls: certificate required".to_string()
        }
        E::InvalidMessage(_) | E::General(_) => {
            "tls: first record does not look like a TLS handshake".to_string()
        }
        other => format!("tls: {other}"),
    };
    format!("authentication handshake failed: {text}")
}

fn to_kv(kv: &etcd_client::KeyValue) -> Kv {
    Kv {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        mod_revision: kv.mod_revision(),
    }
}

impl Store {
    /// Deadline for a request: the storage timeout, shortened by the request's own timeout.
    pub fn deadline(&self, request_timeout: Option<Duration>) -> Instant {
        let t = match request_timeout {
            Some(r) if r < self.timeout => r,
            _ => self.timeout,
        };
        Instant::now() + t
    }

    /// The health channel (current value and change notifications).
    pub fn health(&self) -> watch::Receiver<Health> {
        self.health.clone()
    }

    /// Runs `op` until it succeeds, etcd answers with an error, or the deadline passes;
    /// connection failures are retried.
    async fn call<T, F, Fut>(&self, deadline: Instant, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut last = String::from("context deadline exceeded");
        loop {
            match tokio::time::timeout_at(deadline, op(self.client.clone())).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => match classify(e, &self.addr) {
                    StoreError::Unreachable(m) => last = m,
                    other => return Err(other),
                },
                Err(_) => return Err(StoreError::Unreachable(last)),
            }
            let pause = Instant::now() + Duration::from_millis(300);
            if pause >= deadline {
                return Err(StoreError::Unreachable(last));
            }
            tokio::time::sleep_until(pause).await;
        }
    }

    /// Reads one key.
    pub async fn get(&self, key: &str, deadline: Instant) -> Result<Option<Kv>, StoreError> {
        let resp = self
            .call(deadline, |mut c| {
                let key = key.to_string();
                async move { c.get(key, None).await }
            })
            .await?;
        Ok(resp.kvs().first().map(to_kv))
    }

    /// Reads every key under `prefix`; returns them with the store revision.
    pub async fn list(
        &self,
        prefix: &str,
        deadline: Instant,
    ) -> Result<(Vec<Kv>, i64), StoreError> {
        let resp = self
            .call(deadline, |mut c| {
                let p = prefix.to_string();
                async move { c.get(p, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        Ok((resp.kvs().iter().map(to_kv).collect(), rev))
    }

    /// Creates `key` if absent; returns the new revision.
    pub async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        deadline: Instant,
    ) -> Result<i64, StoreError> {
        let resp = self
            .call(deadline, |mut c| {
                let txn = Txn::new()
                    .when([Compare::version(key, CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key, value.clone(), None)]);
                async move { c.txn(txn).await }
            })
            .await?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists);
        }
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Creates `key` attached to a fresh lease of `ttl` seconds (events expire like the
    /// real ones, --event-ttl=1h); returns the new revision.
    pub async fn create_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: i64,
        deadline: Instant,
    ) -> Result<i64, StoreError> {
        let lease = self
            .call(
                deadline,
                |mut c| async move { c.lease_grant(ttl, None).await },
            )
            .await?
            .id();
        let resp = self
            .call(deadline, |mut c| {
                let put = TxnOp::put(
                    key,
                    value.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                );
                let txn = Txn::new()
                    .when([Compare::version(key, CompareOp::Equal, 0)])
                    .and_then([put]);
                async move { c.txn(txn).await }
            })
            .await?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists);
        }
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Replaces `key` if its mod_revision is still `rev`; returns the new revision.
    pub async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        rev: i64,
        deadline: Instant,
    ) -> Result<i64, StoreError> {
        let resp = self
            .call(deadline, |mut c| {
                let txn = Txn::new()
                    .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
                    .and_then([TxnOp::put(key, value.clone(), None)])
                    .or_else([TxnOp::get(key, None)]);
                async move { c.txn(txn).await }
            })
            .await?;
        if resp.succeeded() {
            return Ok(resp.header().map(|h| h.revision()).unwrap_or(0));
        }
        let exists = resp.op_responses().iter().any(|r| match r {
            TxnOpResponse::Get(g) => !g.kvs().is_empty(),
            _ => false,
        });
        Err(if exists {
            StoreError::Conflict
        } else {
            StoreError::NotFound
        })
    }

    /// Deletes `key` (only at mod_revision `rev` when given); returns the deleted pair.
    pub async fn delete(
        &self,
        key: &str,
        rev: Option<i64>,
        deadline: Instant,
    ) -> Result<Kv, StoreError> {
        let resp = self
            .call(deadline, |mut c| {
                let del = TxnOp::delete(key, Some(DeleteOptions::new().with_prev_key()));
                let txn = match rev {
                    Some(r) => Txn::new()
                        .when([Compare::mod_revision(key, CompareOp::Equal, r)])
                        .and_then([del])
                        .or_else([TxnOp::get(key, None)]),
                    None => Txn::new().and_then([del]),
                };
                async move { c.txn(txn).await }
            })
            .await?;
        let ops = resp.op_responses();
        if !resp.succeeded() {
            let exists = ops
                .iter()
                .any(|r| matches!(r, TxnOpResponse::Get(g) if !g.kvs().is_empty()));
            return Err(if exists {
                StoreError::Conflict
            } else {
                StoreError::NotFound
            });
        }
        for op in &ops {
            if let TxnOpResponse::Delete(d) = op {
                if let Some(kv) = d.prev_kvs().first() {
                    return Ok(to_kv(kv));
                }
            }
        }
        Err(StoreError::NotFound)
    }

    /// Starts an etcd watch on `prefix` from `start_rev` (0: now), with previous values.
    pub async fn watch(
        &self,
        prefix: &str,
        start_rev: i64,
        deadline: Instant,
    ) -> Result<WatchStream, StoreError> {
        self.call(deadline, |mut c| {
            let mut o = WatchOptions::new().with_prefix().with_prev_key();
            if start_rev > 0 {
                o = o.with_start_revision(start_rev);
            }
            let p = prefix.to_string();
            async move { c.watch(p, Some(o)).await }
        })
        .await
    }

    /// Probes etcd every second (a read of `<prefix>/health`, 2 s timeout, like the real
    /// health check) and publishes the result; logs failures the way gRPC does (on change
    /// and every 10 s while failing).
    pub async fn health_loop(self) {
        let key = format!("{}/health", self.prefix);
        let mut last_log: Option<Instant> = None;
        loop {
            let started = Instant::now();
            let mut c = self.client.clone();
            let probe =
                tokio::time::timeout(Duration::from_secs(2), c.get(key.as_str(), None)).await;
            let next = match probe {
                Ok(Ok(_)) => Health {
                    checked: true,
                    ok: true,
                    ..Health::default()
                },
                Ok(Err(e)) => match classify(e, &self.addr) {
                    StoreError::Answered(m) => Health {
                        checked: true,
                        ok: false,
                        error: format!("error getting data from etcd: {m}"),
                        detail: m,
                    },
                    StoreError::Unreachable(m) => Health {
                        checked: true,
                        ok: false,
                        error: "error getting data from etcd: context deadline exceeded".into(),
                        detail: m,
                    },
                    _ => Health {
                        checked: true,
                        ..Health::default()
                    },
                },
                Err(_) => Health {
                    checked: true,
                    ok: false,
                    error: "error getting data from etcd: context deadline exceeded".into(),
                    detail: "context deadline exceeded".into(),
                },
            };
            let prev = self.health.borrow().clone();
            if next.ok && (!prev.ok || !prev.checked) {
                info!("etcd at {} answers (health check passed)", self.endpoints);
                last_log = None;
            }
            if !next.ok
                && (prev.ok || last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)))
            {
                warning!(
                    "[core] [Channel #1 SubChannel #2] grpc: addrConn.createTransport failed to connect to {{Addr: {:?}, ServerName: {:?}, }}. Err: connection error: desc = \"transport: Error while dialing: {}\"",
                    self.addr.as_str(),
                    self.addr.as_str(),
                    next.detail
                );
                last_log = Some(Instant::now());
            }
            // Notify only on changes so watchers (the controller) wake on transitions.
            self.health_tx.send_if_modified(|h| {
                let changed = h.ok != next.ok || h.checked != next.checked;
                *h = next;
                changed
            });
            tokio::time::sleep_until(started + Duration::from_secs(1)).await;
        }
    }
}
