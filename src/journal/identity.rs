//! Identity: which machine (and which etcd cluster) a journal entry was applied to, so that
//! `reset` never replays an undo on a node that merely has the same name or address.
//!
//! # Guarantees
//! - An entry is applied only when every identity field recorded both in the entry and on
//!   the node now is equal, and at least one such field exists ([`NodeIdentity::mismatch`]).
//!
//! # Caveats
//! - The etcd cluster ID is derived by etcd from the members' peer URLs and the cluster token
//!   (etcd's `--initial-cluster-token`, default `etcd-cluster`), not drawn at random: a
//!   cluster rebuilt with the same addresses and token gets the same ID (and so does a
//!   snapshot restore with the same flags). It tells apart two different etcd clusters
//!   behind the same node; the machine-id and the host key tell apart rebuilt machines.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::node::etcd::EtcdTarget;
use crate::node::NodeSession;

/// Who a journal entry was applied to. Fields that could not be known are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// The node's `/etc/machine-id` (32 lowercase hex digits, systemd's machine-id(5)): set
    /// once when the machine is installed, kept across reboots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    /// SHA256 fingerprint of the SSH host key the transport verified (`SHA256:...`, as
    /// `ssh-keygen -l` prints it); `None` over the local transport.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    /// etcd's cluster ID (16 hex digits, as `etcdctl member list -w table` prints it in its
    /// header), for entries whose undo talks to etcd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_cluster_id: Option<String>,
}

/// Bound on reading the identity.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

impl NodeIdentity {
    /// The node's identity now: its machine-id (read through the transport once per session)
    /// and the host key its connection verified. No etcd cluster ID (see [`etcd_cluster_id`]).
    ///
    /// Errors: the transport fails or times out. A missing or empty `/etc/machine-id` is not
    /// an error (`machine_id` is `None`).
    pub async fn of(s: &NodeSession) -> Result<NodeIdentity> {
        let machine_id = s
            .machine_id
            .get_or_try_init(|| async {
                Ok::<_, crate::error::Error>(
                    s.transport
                        .read_file("/etc/machine-id", READ_TIMEOUT)
                        .await?
                        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                        .filter(|m| !m.is_empty()),
                )
            })
            .await?
            .clone();
        Ok(NodeIdentity {
            machine_id,
            host_key: s.transport.host_key(),
            etcd_cluster_id: None,
        })
    }

    /// Why a node whose identity is `now` is not the one `self` was recorded on, or `None`
    /// when it is. Compares the machine-id and the host key where both sides have them
    /// (the etcd cluster ID is compared separately, only where the undo needs etcd); with no
    /// field to compare, the node cannot be proven the same and that is the reason given.
    pub fn mismatch(&self, now: &NodeIdentity) -> Option<String> {
        let mut compared = 0;
        let mut why = Vec::new();
        if let (Some(a), Some(b)) = (&self.machine_id, &now.machine_id) {
            compared += 1;
            if a != b {
                why.push(format!("machine-id was {a}, the node now has {b}"));
            }
        }
        if let (Some(a), Some(b)) = (&self.host_key, &now.host_key) {
            compared += 1;
            if a != b {
                why.push(format!("host key was {a}, the node now offers {b}"));
            }
        }
        if compared == 0 {
            return Some(
                "the entry and the node have no identity field in common (machine-id, host key)"
                    .into(),
            );
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

/// The cluster ID (16 hex digits) of the etcd at `target`, asked from the node: the header of
/// a status response. Waits up to `wait` for etcd to answer.
///
/// Errors: etcd does not answer within `wait` (see [`crate::fault::etcd::Etcd::open`]).
pub async fn etcd_cluster_id(
    s: &NodeSession,
    target: &EtcdTarget,
    wait: Duration,
) -> Result<String> {
    let etcd = crate::fault::etcd::Etcd::open(s, target, wait).await?;
    let mut c = etcd.client();
    let r = etcd
        .call("status", wait.max(Duration::from_secs(2)), c.status())
        .await
        .map_err(|message| crate::error::Error::Transport {
            host: s.node.name.clone(),
            message,
        })?;
    Ok(format!(
        "{:016x}",
        r.header().map(|h| h.cluster_id()).unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(m: Option<&str>, k: Option<&str>) -> NodeIdentity {
        NodeIdentity {
            machine_id: m.map(str::to_string),
            host_key: k.map(str::to_string),
            etcd_cluster_id: None,
        }
    }

    #[test]
    fn the_same_machine_matches() {
        let a = id(Some("aa"), Some("SHA256:x"));
        assert_eq!(a.mismatch(&a.clone()), None);
        // The local transport has no host key: the machine-id alone decides.
        assert_eq!(
            id(Some("aa"), None).mismatch(&id(Some("aa"), Some("SHA256:x"))),
            None
        );
    }

    #[test]
    fn another_machine_id_or_host_key_is_named() {
        let a = id(Some("aa"), Some("SHA256:x"));
        let m = a
            .mismatch(&id(Some("bb"), Some("SHA256:x")))
            .expect("differs");
        assert_eq!(m, "machine-id was aa, the node now has bb");
        let m = a
            .mismatch(&id(Some("aa"), Some("SHA256:y")))
            .expect("differs");
        assert_eq!(m, "host key was SHA256:x, the node now offers SHA256:y");
        let m = a
            .mismatch(&id(Some("bb"), Some("SHA256:y")))
            .expect("differs");
        assert!(m.contains("machine-id") && m.contains("host key"), "{m}");
    }

    #[test]
    fn nothing_in_common_is_not_a_match() {
        let m = id(Some("aa"), None)
            .mismatch(&id(None, Some("SHA256:x")))
            .expect("unprovable");
        assert!(m.contains("no identity field in common"), "{m}");
        assert!(id(None, None).mismatch(&id(None, None)).is_some());
    }
}
