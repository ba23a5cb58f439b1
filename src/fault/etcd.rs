//! Shared by the etcd fault kinds (`etcd_quota`, `etcd_keys`): which etcd to reach, opening
//! the access through the node's transport, and requests bounded by a timeout.
//!
//! # Which etcd
//! Every etcd fault has the optional fields `endpoint`, `ca_file`, `cert_file` and `key_file`
//! (URL as seen FROM THE NODE, paths ON THE NODE). Missing ones are filled in when the fault is
//! rendered for its node, from the inventory's `cluster.etcd` (first endpoint), so the planned
//! fault — and the undo it journals — names the exact etcd and files. `reset` therefore needs
//! no inventory to put etcd back.
//!
//! # How it is reached
//! Exactly like the `etcd` probe: [`crate::probe::etcd::connect`] reads the TLS files over the
//! transport, opens a forward to the endpoint as seen from the node and speaks TLS through it.
//! Faults open their own access (not the probes' cached one) and drop it when done.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::engine::connect::NodeSession;
use crate::error::{Error, Result};
use crate::probe::etcd::{connect, EtcdAccess, EtcdTarget};
use crate::template::Renderer;

/// How long a fault waits for etcd to answer its first request (etcd may just have been
/// restarted by an earlier fault, e.g. one that set `--quota-backend-bytes`).
pub const READY_WAIT: Duration = Duration::from_secs(60);

/// Bound of one ordinary request (get, put, delete, status, alarm).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// The four connection fields of an etcd fault, rendered; `None` ones default to the
/// inventory's `cluster.etcd` (its first endpoint).
pub fn render_target(
    r: &Renderer,
    endpoint: &Option<String>,
    ca_file: &Option<String>,
    cert_file: &Option<String>,
    key_file: &Option<String>,
) -> Result<[Option<String>; 4]> {
    let one = |given: &Option<String>, default: &str, field: &str| -> Result<Option<String>> {
        let out = match given {
            Some(v) => r.text(v)?,
            None => r.text(default).map_err(|_| {
                Error::other(format!(
                    "no `{field}:` given and the inventory has no {}",
                    default.trim_matches(|c| c == '{' || c == '}' || c == ' ')
                ))
            })?,
        };
        Ok(Some(out))
    };
    Ok([
        one(endpoint, "{{ cluster.etcd.endpoints[0] }}", "endpoint")?,
        one(ca_file, "{{ cluster.etcd.ca_file }}", "ca_file")?,
        one(cert_file, "{{ cluster.etcd.cert_file }}", "cert_file")?,
        one(key_file, "{{ cluster.etcd.key_file }}", "key_file")?,
    ])
}

/// The target of a rendered fault (all four fields set by [`render_target`]).
pub fn target_of(
    endpoint: &Option<String>,
    ca_file: &Option<String>,
    cert_file: &Option<String>,
    key_file: &Option<String>,
) -> Result<EtcdTarget> {
    match (endpoint, ca_file, cert_file, key_file) {
        (Some(e), Some(ca), Some(c), Some(k)) => Ok(EtcdTarget {
            endpoint: e.clone(),
            ca_file: ca.clone(),
            cert_file: c.clone(),
            key_file: k.clone(),
        }),
        _ => Err(Error::other(
            "internal: an etcd fault was applied without being rendered for its node",
        )),
    }
}

/// True for [`connect`] errors that waiting cannot fix (see its docs for the wording).
fn is_permanent(e: &Error) -> bool {
    let m = e.to_string();
    m.contains("does not exist on the node") || m.contains("etcd endpoint `")
}

/// An open access plus the node's name for messages.
pub struct Etcd {
    /// The access (forward + client).
    pub access: EtcdAccess,
    /// Node name, for messages.
    pub node: String,
}

impl Etcd {
    /// Opens an access to `target` and waits (up to `wait`) until etcd answers a status
    /// request, reconnecting from scratch between attempts. Errors name the node, the
    /// endpoint and the last failure.
    pub async fn open(s: &NodeSession, target: &EtcdTarget, wait: Duration) -> Result<Etcd> {
        let deadline = Instant::now() + wait;
        let node = s.node.name.clone();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = CALL_TIMEOUT.min(left.max(Duration::from_millis(500)));
            let last = match connect(s, target, attempt).await {
                Ok(access) => {
                    let mut c = access.client.clone();
                    match tokio::time::timeout(attempt, c.status()).await {
                        Ok(Ok(_)) => return Ok(Etcd { access, node }),
                        Ok(Err(e)) => access.explain(e),
                        Err(_) => {
                            format!("no answer within {}", humantime::format_duration(attempt))
                        }
                    }
                }
                // A missing TLS file or a malformed endpoint does not get better by waiting.
                Err(e) if is_permanent(&e) => return Err(e),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(Error::Transport {
                    host: node,
                    message: format!(
                        "etcd at {} did not answer within {} (expected a running etcd accepting the TLS files {}, {}, {}): {last}",
                        target.endpoint,
                        humantime::format_duration(wait),
                        target.ca_file,
                        target.cert_file,
                        target.key_file
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// A client clone (cheap; shares the connection).
    pub fn client(&self) -> etcd_client::Client {
        self.access.client.clone()
    }

    /// Runs one request bounded by `timeout`; the error text says `what` failed and why.
    pub async fn call<T>(
        &self,
        what: &str,
        timeout: Duration,
        fut: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> std::result::Result<T, String> {
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(format!("{what}: {}", self.access.explain(e))),
            Err(_) => Err(format!(
                "{what}: no answer from etcd at {} within {}",
                self.access.endpoint,
                humantime::format_duration(timeout)
            )),
        }
    }

    /// Names of the active alarms with their member ids (`(member, "NOSPACE")`).
    pub async fn alarms(&self) -> std::result::Result<Vec<(u64, String)>, String> {
        use etcd_client::{AlarmAction, AlarmType};
        let mut c = self.client();
        let r = self
            .call(
                "alarm list",
                CALL_TIMEOUT,
                c.alarm(AlarmAction::Get, AlarmType::None, None),
            )
            .await?;
        Ok(r.alarms()
            .iter()
            .map(|m| (m.member_id(), m.alarm().as_str_name().to_string()))
            .collect())
    }
}
