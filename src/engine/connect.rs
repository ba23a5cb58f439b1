//! Connect: one [`NodeSession`] per target node, opened concurrently, each with its transport.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::inventory::{Inventory, Node};
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
    pub etcd: tokio::sync::Mutex<Option<crate::probe::etcd::EtcdAccess>>,
    /// Lazily opened Kubernetes API access (port forward + client), shared by kube probes.
    pub kube: tokio::sync::Mutex<Option<crate::probe::kube::KubeAccess>>,
    /// The last `ss -Htln` output and when it was taken (shared by the port probes of a round).
    listeners: tokio::sync::Mutex<Option<(std::time::Instant, String)>>,
}

/// How long one `ss -Htln` listing serves the port probes of a round.
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
        })
    }

    /// TCP listeners (`ss -Htln` output), taken at most every 500 ms: the port probes of one
    /// round share one listing instead of one `ss` each.
    pub async fn listeners(&self, timeout: Duration) -> Result<String> {
        let mut slot = self.listeners.lock().await;
        if let Some((at, text)) = slot.as_ref() {
            if at.elapsed() < LISTENERS_FRESH {
                return Ok(text.clone());
            }
        }
        let out = self.transport.exec("ss -Htln", timeout).await?;
        *slot = Some((std::time::Instant::now(), out.stdout.clone()));
        Ok(out.stdout)
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
