//! Kubernetes API access from a node: its kubeconfig read over the transport, a port forward
//! to the API server it names, and a kube client on the forward's local end, cached per node
//! session ([`crate::node::NodeSession::kube`]). Used by the `kube` probe.

use std::time::Duration;

use kube::Client;

use super::NodeSession;
use crate::error::{Error, Result};
use crate::inventory::Inventory;

/// An open route to one node's API server: the forward and a client using it.
pub struct KubeAccess {
    /// Local end of the forward.
    pub forward: crate::transport::Forward,
    /// Client configured from the node's kubeconfig, pointed at the forward.
    pub client: Client,
}

impl KubeAccess {
    /// Reads the node's kubeconfig (the inventory's `cluster.kubeconfig`, default kubeadm's
    /// /etc/kubernetes/admin.conf) over the transport, opens a forward to the API server it
    /// names (as seen from the node) and builds a client on the forward's local end that
    /// verifies the server's certificate against the API server's host. `timeout` bounds the
    /// read and the connect (seconds-scale; requests are bounded by their callers).
    ///
    /// Errors: the kubeconfig is missing or invalid (naming the node and path), the forward
    /// cannot be opened.
    pub async fn open(
        session: &NodeSession,
        inventory: &Inventory,
        timeout: Duration,
    ) -> Result<KubeAccess> {
        let path = inventory
            .cluster
            .kubeconfig
            .clone()
            .unwrap_or_else(|| "/etc/kubernetes/admin.conf".into());
        let host = session.transport.host().to_string();
        let bytes = session
            .transport
            .read_file(&path, timeout)
            .await?
            .ok_or_else(|| Error::Transport {
                host: host.clone(),
                message: format!("kubeconfig {path} does not exist on the node"),
            })?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let kc = kube::config::Kubeconfig::from_yaml(&text).map_err(|e| Error::Transport {
            host: host.clone(),
            message: format!("kubeconfig {path}: {e}"),
        })?;
        let mut config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Transport {
                    host: host.clone(),
                    message: format!("kubeconfig {path}: {e}"),
                })?;
        let server = config.cluster_url.clone();
        let api_host = server
            .host()
            .unwrap_or("127.0.0.1")
            .trim_matches(['[', ']'])
            .to_string();
        let api_port = server.port_u16().unwrap_or(443);
        let forward = session.transport.forward(&api_host, api_port).await?;
        config.cluster_url = format!("https://{}", forward.local)
            .parse()
            .map_err(|e| Error::other(format!("forward address: {e}")))?;
        config.tls_server_name = Some(config.tls_server_name.clone().unwrap_or(api_host));
        config.connect_timeout = Some(timeout);
        // No client-wide read/write timeouts: the access is shared by every kube probe of the
        // node, each bounding its own requests by its own timeout (a read timeout taken from the
        // probe that happened to open the access cut the others' requests short).
        config.read_timeout = None;
        config.write_timeout = None;
        let client = Client::try_from(config).map_err(|e| Error::Transport {
            host,
            message: format!("kube client: {e}"),
        })?;
        Ok(KubeAccess { forward, client })
    }
}
