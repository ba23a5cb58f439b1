//! Shared by the etcd fault kinds (`etcd_quota`, `etcd_keys`): which etcd to reach, opening
//! the access through the node's transport, and requests bounded by a timeout.
//!
//! # Which etcd
//! Every etcd fault has the optional fields `endpoint`, `ca_file`, `cert_file` and `key_file`
//! (URL as seen FROM THE NODE, paths ON THE NODE), declared by writing `with etcd_connection`
//! after its `action_spec!` struct (see [`EtcdConnection`]). Missing ones are filled in when
//! the fault is rendered for its node, from the inventory's `cluster.etcd` (first endpoint), so
//! the planned fault — and the undo it journals — names the exact etcd and files. `reset`
//! therefore needs no inventory to put etcd back.
//!
//! # How it is reached
//! Exactly like the `etcd` probe: [`crate::node::etcd::connect`] reads the TLS files over the
//! transport, opens a forward to the endpoint as seen from the node and speaks TLS through it.
//! Faults open their own access (not the probes' cached one) and drop it when done.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::node::etcd::{connect, EtcdAccess, EtcdTarget};
use crate::node::NodeSession;
use crate::template::Renderer;

/// How long a fault waits for etcd to answer its first request (etcd may just have been
/// restarted by an earlier fault, e.g. one that set `--quota-backend-bytes`).
pub const READY_WAIT: Duration = Duration::from_secs(60);

/// Bound of one ordinary request (get, put, delete, status, alarm).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// The four connection fields of an etcd fault (`endpoint`, `ca_file`, `cert_file`,
/// `key_file`), declared once by `action_spec!`'s `with etcd_connection` form.
pub trait EtcdConnection {
    /// `[endpoint, ca_file, cert_file, key_file]`.
    fn connection(&self) -> [&Option<String>; 4];
    /// The same fields, to fill in when rendering.
    fn connection_mut(&mut self) -> [&mut Option<String>; 4];
}

/// Each connection field's name and its default, a template over the inventory's
/// `cluster.etcd` (its first endpoint); in [`EtcdConnection`] order.
const CONNECTION_DEFAULTS: [(&str, &str); 4] = [
    ("endpoint", "{{ cluster.etcd.endpoints[0] }}"),
    ("ca_file", "{{ cluster.etcd.ca_file }}"),
    ("cert_file", "{{ cluster.etcd.cert_file }}"),
    ("key_file", "{{ cluster.etcd.key_file }}"),
];

/// Renders the four connection fields of `spec` in place; `None` ones default to the
/// inventory's `cluster.etcd` (its first endpoint).
pub fn render_target(r: &Renderer, spec: &mut impl EtcdConnection) -> Result<()> {
    for (slot, (field, default)) in spec.connection_mut().into_iter().zip(CONNECTION_DEFAULTS) {
        let out = match slot {
            Some(v) => r.text(v)?,
            None => r.text(default).map_err(|_| {
                Error::other(format!(
                    "no `{field}:` given and the inventory has no {}",
                    default.trim_matches(|c| c == '{' || c == '}' || c == ' ')
                ))
            })?,
        };
        *slot = Some(out);
    }
    Ok(())
}

/// The target of a rendered fault (all four fields set by [`render_target`]).
pub fn target_of(spec: &impl EtcdConnection) -> Result<EtcdTarget> {
    match spec.connection() {
        [Some(e), Some(ca), Some(c), Some(k)] => Ok(EtcdTarget {
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
