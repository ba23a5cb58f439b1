//! Sandbox: a real kubeadm cluster on this machine (`breakfix sandbox build|up|status|down`).
//!
//! Nodes are `systemd-nspawn` containers booted with a real systemd, journald, OpenSSH server,
//! containerd and runc (Debian packages) on a bridge of their own in 198.18.0.0/24. kubeadm,
//! the kubelet, the control plane, kubectl, etcd and crictl are built from their Go modules at
//! pinned versions and cached; their container images are built here as OCI archives (no
//! registry). `kubeadm init` and `kubeadm join` make the cluster. `up` writes an inventory
//! file that the engine reads like any other (see docs/inventory.md and docs/sandbox.md).
//!
//! Every resource (bridge, mount, loop device, host sysctl, process) is recorded in the
//! on-disk state BEFORE it is created, so `down` removes everything even after `up` died
//! half-way.
//!
//! One file per concern: [`preflight`] (checks before anything is touched), [`mirror`] (the
//! Debian mirror from the host's apt sources), [`image`] (the cached node image),
//! [`kubebuild`] (Kubernetes, etcd and crictl built from source, cached), [`oci`] (container
//! images as OCI archives, no registry), [`kube_images`] (kubeadm's images and the node
//! layer from a build), [`runtime`] (containerd, kubelet unit, CNI and crictl files of a
//! node), [`kubeadm`] (kubeadm's configuration, init and join), [`sysctl`] (host kernel
//! settings the kubelet requires), [`pki`] (external etcd's certificates), [`keys`] (SSH keys
//! and known_hosts), [`network`] (the bridge), [`loopdev`] (etcd's loop-mounted data disk),
//! [`node`] (a node's root, boot and stop), [`cgroup`] (a cgroup per node), [`etcd_unit`]
//! (etcd's systemd unit for the external topology), [`kubeapi`] (the API from the host:
//! readiness, nodes, seed 000's workloads), [`state`] (the on-disk record), [`procs`]
//! (finding and ending the sandbox's processes), [`readiness`] (waiting for sshd and etcd),
//! [`lifecycle`] (up/down/status), [`cli`] (the clap front end).

pub mod cgroup;
pub mod cli;
pub mod cmd;
pub mod etcd_unit;
pub mod fsutil;
pub mod image;
pub mod journal;
pub mod keys;
pub mod kube_images;
pub mod kubeadm;
pub mod kubeapi;
pub mod kubebuild;
pub mod lifecycle;
pub mod loopdev;
pub mod mirror;
pub mod network;
pub mod node;
pub mod oci;
pub mod pki;
pub mod preflight;
pub mod procs;
pub mod progress;
pub mod readiness;
pub mod runtime;
pub mod state;
pub mod sysctl;

use std::net::Ipv4Addr;
use std::path::PathBuf;

pub use cli::{run, SandboxArgs};
pub use lifecycle::{down, status, up, StatusReport, UpOptions};

/// Environment variable that overrides the state directory (default `/var/lib/breakfix/sandbox`).
pub const ENV_SANDBOX_DIR: &str = "BREAKFIX_SANDBOX_DIR";
/// Environment variable that overrides the image cache directory (default
/// `/var/lib/breakfix/images`).
pub const ENV_IMAGE_DIR: &str = "BREAKFIX_IMAGE_DIR";

/// Name of the host bridge the nodes are attached to.
pub const BRIDGE: &str = "bfbr0";
/// The host's address on the bridge (prefix length [`PREFIX_LEN`]).
pub const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Prefix length of the sandbox network 198.18.0.0/24.
pub const PREFIX_LEN: u8 = 24;
/// Last octet of the first node's address (`controlplane` = 198.18.0.11).
pub const FIRST_NODE_OCTET: u8 = 11;
/// Most nodes one sandbox can have (one control plane + workers `node01`..).
pub const MAX_NODES: u8 = 8;

/// Where the sandbox keeps its state: `$BREAKFIX_SANDBOX_DIR` or `/var/lib/breakfix/sandbox`.
pub fn state_dir() -> PathBuf {
    match std::env::var_os(ENV_SANDBOX_DIR) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from("/var/lib/breakfix/sandbox"),
    }
}

/// Where node images are cached: `$BREAKFIX_IMAGE_DIR` or `/var/lib/breakfix/images`.
pub fn image_dir() -> PathBuf {
    match std::env::var_os(ENV_IMAGE_DIR) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from("/var/lib/breakfix/images"),
    }
}

/// Path of the inventory file `breakfix sandbox up` writes (`<state dir>/inventory.yaml`).
/// The engine's `--inventory` defaults to it when [`is_up`] is true.
pub fn default_inventory_path() -> PathBuf {
    state_dir().join("inventory.yaml")
}

/// True when a sandbox is up: its state says it finished booting, its inventory exists and
/// every node's container process is still alive. Cheap (reads one file and /proc); never
/// fails: anything unreadable counts as "not up".
pub fn is_up() -> bool {
    match state::State::load(&state_dir()) {
        Ok(Some(st)) => {
            st.phase == state::Phase::Ready
                && default_inventory_path().is_file()
                && procs::all_nodes_running(&st)
        }
        _ => false,
    }
}

/// One node of the sandbox as planned: name, address and roles.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeSpec {
    /// Host name, e.g. `controlplane`, `node01`.
    pub name: String,
    /// Address on the sandbox bridge.
    pub ip: Ipv4Addr,
    /// Inventory roles: `[control-plane, etcd]` or `[worker]`.
    pub roles: Vec<String>,
}

impl NodeSpec {
    /// True for the node that runs the control plane (and etcd).
    pub fn is_control_plane(&self) -> bool {
        self.roles.iter().any(|r| r == "control-plane")
    }
}

/// Plans `count` nodes: `controlplane` (198.18.0.11) then `node01`, `node02`, ... (.12, .13).
///
/// Errors: `count` is 0 or more than [`MAX_NODES`].
pub fn plan_nodes(count: u8) -> crate::Result<Vec<NodeSpec>> {
    if count == 0 || count > MAX_NODES {
        return Err(crate::Error::other(format!(
            "--nodes must be between 1 and {MAX_NODES} (one control plane plus workers), got {count}"
        )));
    }
    Ok((0..count)
        .map(|i| {
            let (name, roles) = if i == 0 {
                (
                    "controlplane".to_string(),
                    vec!["control-plane".to_string(), "etcd".to_string()],
                )
            } else {
                (format!("node{i:02}"), vec!["worker".to_string()])
            };
            NodeSpec {
                name,
                ip: Ipv4Addr::new(198, 18, 0, FIRST_NODE_OCTET + i),
                roles,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_kubeadm_names_and_addresses() {
        let nodes = plan_nodes(3).expect("3 nodes");
        let names: Vec<_> = nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["controlplane", "node01", "node02"]);
        assert_eq!(nodes[0].ip, Ipv4Addr::new(198, 18, 0, 11));
        assert_eq!(nodes[2].ip, Ipv4Addr::new(198, 18, 0, 13));
        assert!(nodes[0].is_control_plane());
        assert_eq!(nodes[1].roles, ["worker"]);
    }

    #[test]
    fn rejects_zero_and_too_many_nodes() {
        assert!(plan_nodes(0).is_err());
        assert!(plan_nodes(MAX_NODES + 1).is_err());
        assert!(plan_nodes(MAX_NODES).is_ok());
    }
}
