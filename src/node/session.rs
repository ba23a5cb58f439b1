//! Connect: one [`NodeSession`] per target node, opened concurrently, each with its transport.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::inventory::{Inventory, Node};
use crate::node::owners::Owners;
use crate::node::proc_net;
use crate::node::units::{UnitState, UnitStates};
use crate::transport::{Output, Transport};

/// Default connect timeout: 10 seconds.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected node.
pub struct NodeSession {
    /// The node as the inventory describes it.
    pub node: Node,
    /// Its transport.
    pub transport: Transport,
    /// Lazily opened etcd access (port forward + client), shared by the node's etcd probes.
    pub etcd: tokio::sync::Mutex<Option<crate::node::etcd::EtcdAccess>>,
    /// Lazily opened Kubernetes API access (port forward + client), shared by kube probes.
    pub kube: tokio::sync::Mutex<Option<crate::node::kube::KubeAccess>>,
    /// The last TCP listener listing and when it was taken (shared by the port probes of a
    /// round).
    listeners: tokio::sync::Mutex<Option<(std::time::Instant, Vec<String>)>>,
    /// systemd unit states, read in one `systemctl` command per round (systemd probes).
    units: UnitStates,
    /// User and group names of file owners (file probes).
    owners: Owners,
    /// The node's `/etc/machine-id`, read once per session (journal identity).
    pub machine_id: tokio::sync::OnceCell<Option<String>>,
}

/// How long one listing of TCP listeners serves the port probes of a round.
const LISTENERS_FRESH: Duration = Duration::from_millis(500);

impl NodeSession {
    /// Connects to `node`.
    pub async fn connect(node: &Node, timeout: Duration) -> Result<NodeSession> {
        let transport = Transport::connect(node, timeout).await?;
        Ok(NodeSession {
            node: node.clone(),
            transport,
            etcd: tokio::sync::Mutex::new(None),
            kube: tokio::sync::Mutex::new(None),
            listeners: tokio::sync::Mutex::new(None),
            units: UnitStates::default(),
            owners: Owners::default(),
            machine_id: tokio::sync::OnceCell::new(),
        })
    }

    /// Local addresses (`ip:port`, as `ss -Htln` prints them) of the node's TCP listeners,
    /// from /proc/net/tcp and /proc/net/tcp6 (no process on the node), taken at most every
    /// 500 ms: the port probes of one round share one listing.
    pub async fn listeners(&self, timeout: Duration) -> Result<Vec<String>> {
        let mut slot = self.listeners.lock().await;
        if let Some((at, found)) = slot.as_ref() {
            if at.elapsed() < LISTENERS_FRESH {
                return Ok(found.clone());
            }
        }
        let t = &self.transport;
        let (v4, v6) = futures::future::try_join(
            t.read_file("/proc/net/tcp", timeout),
            t.read_file("/proc/net/tcp6", timeout),
        )
        .await?;
        let Some(v4) = v4 else {
            return Err(Error::Transport {
                host: t.host().to_string(),
                message: "cannot list TCP listeners: /proc/net/tcp does not exist".into(),
            });
        };
        let mut found = proc_net::listening(&String::from_utf8_lossy(&v4));
        // No /proc/net/tcp6 when IPv6 is disabled.
        if let Some(v6) = v6 {
            found.extend(proc_net::listening(&String::from_utf8_lossy(&v6)));
        }
        *slot = Some((std::time::Instant::now(), found.clone()));
        Ok(found)
    }

    /// Announces that a probe of the coming round will ask about systemd `unit` (and its
    /// `enabled` state when `enabled`): the round's first unit query then reads it too.
    pub fn announce_unit(&self, unit: &str, enabled: bool) {
        self.units.announce(unit, enabled);
    }

    /// `unit`'s state, read after this call began; one `systemctl` command serves every unit
    /// announced for the round (see [`crate::node::units`]).
    pub async fn unit_state(
        &self,
        unit: &str,
        enabled: bool,
        timeout: Duration,
    ) -> Result<UnitState> {
        self.units
            .get(&self.transport, unit, enabled, timeout)
            .await
    }

    /// `user:group` names of the file at `path` owned by `uid`:`gid` (see
    /// [`crate::node::owners`]).
    pub async fn owner(&self, path: &str, uid: u32, gid: u32, timeout: Duration) -> Result<String> {
        self.owners
            .owner(&self.transport, path, uid, gid, timeout)
            .await
    }

    /// Runs a command (a non-zero exit is not an error here).
    pub async fn exec(&self, cmd: &str, timeout: Duration) -> Result<Output> {
        self.transport.exec(cmd, timeout).await
    }

    /// Runs a command that must succeed; a non-zero exit becomes [`Error::Command`].
    pub async fn run_ok(&self, cmd: &str, timeout: Duration) -> Result<Output> {
        let out = self.transport.exec(cmd, timeout).await?;
        if !out.success() {
            return Err(Error::Command {
                host: self.transport.host().to_string(),
                command: cmd.to_string(),
                exit: out.exit.unwrap_or(-1),
                stderr: out.stderr.trim().to_string(),
            });
        }
        Ok(out)
    }
}

/// Connects to every named node concurrently. The first error (naming the host) wins.
pub async fn connect_all(inventory: &Inventory, names: &[String]) -> Result<Vec<NodeSession>> {
    let futs = names.iter().map(|n| async move {
        let node = inventory
            .node(n)
            .ok_or_else(|| Error::other(format!("node `{n}` is not in the inventory")))?;
        NodeSession::connect(node, CONNECT_TIMEOUT).await
    });
    futures::future::try_join_all(futs).await
}
