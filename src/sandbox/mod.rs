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
//! (etcd's systemd unit for the external topology), [`lb`] (HAProxy in front of several
//! control planes), [`kubeapi`] (the API from the host:
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
pub mod lb;
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

/// Environment variable that picks the sandbox instance (`0` to `7`; default `0`). Several
/// instances run side by side, each its own cluster (see [`instance`]).
pub const ENV_INSTANCE: &str = "BREAKFIX_SANDBOX_INSTANCE";
/// How many sandbox instances fit in 198.18.0.0/24 (a /27 each).
pub const MAX_INSTANCES: u8 = 8;
/// Prefix length of one instance's network (a /27 of 198.18.0.0/24).
pub const PREFIX_LEN: u8 = 27;
/// Last octet of the first node's address within its instance's /27 (`controlplane` of
/// instance 0 = 198.18.0.11, of instance 1 = 198.18.0.43).
pub const FIRST_NODE_OCTET: u8 = 11;
/// Most nodes one sandbox can have (one control plane + workers `node01`..).
pub const MAX_NODES: u8 = 8;

static INSTANCE: std::sync::OnceLock<u8> = std::sync::OnceLock::new();

/// Picks the instance for this process (the `--instance` flag), before anything asks
/// [`instance`].
///
/// Errors: `k` is [`MAX_INSTANCES`] or more, or this process already works on another one.
pub fn set_instance(k: u8) -> crate::Result<()> {
    if k >= MAX_INSTANCES {
        return Err(crate::Error::other(format!(
            "--instance must be between 0 and {}, got {k}",
            MAX_INSTANCES - 1
        )));
    }
    match INSTANCE.set(k) {
        Ok(()) => Ok(()),
        Err(_) if instance() == k => Ok(()),
        Err(_) => Err(crate::Error::other(format!(
            "internal: sandbox instance {} was chosen before --instance {k}",
            instance()
        ))),
    }
}

/// The instance [`ENV_INSTANCE`] names, if set. Errors: it is not a number from 0 to 7.
pub fn instance_from_env() -> crate::Result<Option<u8>> {
    match std::env::var(ENV_INSTANCE) {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<u8>() {
            Ok(k) if k < MAX_INSTANCES => Ok(Some(k)),
            _ => Err(crate::Error::other(format!(
                "{ENV_INSTANCE}={v}: expected a sandbox instance from 0 to {}",
                MAX_INSTANCES - 1
            ))),
        },
        _ => Ok(None),
    }
}

/// The sandbox instance this process works on: [`set_instance`]'s, else [`ENV_INSTANCE`]'s
/// (an invalid value counts as 0; the sandbox commands refuse it first), else 0.
///
/// Instance `k` is a cluster of its own: state in [`state_dir_of`]`(k)`, bridge `bfbr<k>`, the
/// network 198.18.0.`32k`/27 (host `.32k+1`, nodes from `.32k+11`), nspawn machines named
/// `bf<k>-...` for k > 0 (instance 0 keeps the node names). The node names inside (host names,
/// Kubernetes node names, inventory names) are the same in every instance.
pub fn instance() -> u8 {
    *INSTANCE.get_or_init(|| instance_from_env().ok().flatten().unwrap_or(0))
}

/// Name of instance `k`'s host bridge (`bfbr0`, `bfbr1`, ...).
pub fn bridge_of(k: u8) -> String {
    format!("bfbr{k}")
}

/// Name of this instance's host bridge.
pub fn bridge() -> String {
    bridge_of(instance())
}

/// First address of instance `k`'s /27 (198.18.0.`32k`).
pub fn network_of(k: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 32 * k)
}

/// The host's address on instance `k`'s bridge (198.18.0.`32k+1`, prefix [`PREFIX_LEN`]).
pub fn host_addr_of(k: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 32 * k + 1)
}

/// The host's address on this instance's bridge.
pub fn host_addr() -> Ipv4Addr {
    host_addr_of(instance())
}

/// Where instance `k` keeps its state: `/var/lib/breakfix/sandbox` (k = 0) or
/// `/var/lib/breakfix/sandbox-<k>`.
pub fn state_dir_of(k: u8) -> PathBuf {
    if k == 0 {
        PathBuf::from("/var/lib/breakfix/sandbox")
    } else {
        PathBuf::from(format!("/var/lib/breakfix/sandbox-{k}"))
    }
}

/// Where the sandbox keeps its state: `$BREAKFIX_SANDBOX_DIR`, else [`state_dir_of`] this
/// instance.
pub fn state_dir() -> PathBuf {
    match std::env::var_os(ENV_SANDBOX_DIR) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => state_dir_of(instance()),
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
    is_up_in(&state_dir())
}

/// [`is_up`] for instance `k` (in its default state directory).
pub fn is_up_of(k: u8) -> bool {
    is_up_in(&state_dir_of(k))
}

fn is_up_in(dir: &std::path::Path) -> bool {
    match state::State::load(dir) {
        Ok(Some(st)) => {
            st.phase == state::Phase::Ready
                && dir.join("inventory.yaml").is_file()
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
    /// The systemd-nspawn machine name on the host (unique across instances); empty in
    /// states written before instances existed, which means [`NodeSpec::name`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub machine: String,
}

impl NodeSpec {
    /// True for the node that runs the control plane (and etcd).
    pub fn is_control_plane(&self) -> bool {
        self.roles.iter().any(|r| r == "control-plane")
    }

    /// True for a node that runs an etcd member (role `etcd`).
    pub fn runs_etcd(&self) -> bool {
        self.roles.iter().any(|r| r == "etcd")
    }

    /// True for a node that is a Kubernetes node (`kubeadm init` or `join`): a control plane
    /// or a worker, not an etcd-only node.
    pub fn is_kube_node(&self) -> bool {
        self.roles
            .iter()
            .any(|r| r == "control-plane" || r == "worker")
    }

    /// The host-side name of the node (nspawn machine, veth `vb-<machine>`, cgroup): the
    /// node's name in instance 0, `bf<k>-cp` / `bf<k>-node01` in instance k (short enough for
    /// the 15-byte interface names).
    pub fn machine(&self) -> &str {
        if self.machine.is_empty() {
            &self.name
        } else {
            &self.machine
        }
    }
}

/// Plans `count` nodes of this instance: `controlplane` then `node01`, `node02`, ... from
/// 198.18.0.`32k+11` (one etcd member).
///
/// Errors: `count` is 0 or more than [`MAX_NODES`].
pub fn plan_nodes(count: u8) -> crate::Result<Vec<NodeSpec>> {
    plan_nodes_of(instance(), count)
}

/// [`plan_nodes`] for instance `k`.
///
/// Errors: `count` is 0 or more than [`MAX_NODES`].
pub fn plan_nodes_of(k: u8, count: u8) -> crate::Result<Vec<NodeSpec>> {
    plan_cluster_of(k, count, 1)
}

/// Most control-plane nodes (etcd members) one sandbox can have.
pub const MAX_CONTROL_PLANES: u8 = 3;

/// Plans `count` nodes of instance `k`, the first `control_planes` of them control planes:
/// `controlplane`, `controlplane02`, `controlplane03`, then workers `node01`, `node02`, ...,
/// addresses in that order from 198.18.0.`32k+11`. Every control plane runs an etcd member.
///
/// `controlplane` runs `kubeadm init`, the others `kubeadm join --control-plane` behind the
/// load balancer ([`lb`]).
///
/// Errors: `count` is 0 or more than [`MAX_NODES`]; `control_planes` is 0, more than
/// [`MAX_CONTROL_PLANES`] or more than `count - 1` (a worker is always planned).
pub fn plan_cluster_of(k: u8, count: u8, control_planes: u8) -> crate::Result<Vec<NodeSpec>> {
    if count == 0 || count > MAX_NODES {
        return Err(crate::Error::other(format!(
            "--nodes must be between 1 and {MAX_NODES} (control planes plus workers), got {count}"
        )));
    }
    if control_planes == 0 || control_planes > MAX_CONTROL_PLANES {
        return Err(crate::Error::other(format!(
            "--control-planes must be between 1 and {MAX_CONTROL_PLANES}, got {control_planes}"
        )));
    }
    if control_planes > 1 && count <= control_planes {
        return Err(crate::Error::other(format!(
            "--nodes {count} leaves no worker beside {control_planes} control planes: --nodes counts every node, control planes included (e.g. --control-planes {control_planes} --nodes {})",
            control_planes + 1
        )));
    }
    Ok((0..count)
        .map(|i| {
            let (name, roles, short) = if i == 0 {
                (
                    "controlplane".to_string(),
                    vec!["control-plane".to_string(), "etcd".to_string()],
                    "cp".to_string(),
                )
            } else if i < control_planes {
                (
                    format!("controlplane{:02}", i + 1),
                    vec!["control-plane".to_string(), "etcd".to_string()],
                    format!("cp{:02}", i + 1),
                )
            } else {
                let name = format!("node{:02}", i - control_planes + 1);
                (name.clone(), vec!["worker".to_string()], name)
            };
            // Host-side names fit the 15-byte `vb-<machine>` veth; instance 0 keeps the node
            // names where they fit (what the sandbox always was).
            let machine = match k {
                0 if format!("vb-{name}").len() <= 15 => String::new(),
                _ => format!("bf{k}-{short}"),
            };
            NodeSpec {
                name,
                ip: Ipv4Addr::new(198, 18, 0, 32 * k + FIRST_NODE_OCTET + i),
                roles,
                machine,
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
    fn instances_get_their_own_network_bridge_machines_and_state() {
        let nodes = plan_nodes_of(1, 2).expect("2 nodes");
        assert_eq!(nodes[0].name, "controlplane");
        assert_eq!(nodes[0].machine(), "bf1-cp");
        assert_eq!(nodes[1].machine(), "bf1-node01");
        assert_eq!(nodes[0].ip, Ipv4Addr::new(198, 18, 0, 43));
        assert_eq!(host_addr_of(1), Ipv4Addr::new(198, 18, 0, 33));
        assert_eq!(bridge_of(1), "bfbr1");
        assert_eq!(
            state_dir_of(1),
            PathBuf::from("/var/lib/breakfix/sandbox-1")
        );
        // Instance 0 is what the sandbox always was.
        let nodes = plan_nodes_of(0, 1).expect("1 node");
        assert_eq!(nodes[0].machine(), "controlplane");
        assert_eq!(state_dir_of(0), PathBuf::from("/var/lib/breakfix/sandbox"));
        // The last instance's nodes stay inside its /27 and 198.18.0.0/24; veths fit 15 bytes.
        let last = plan_nodes_of(MAX_INSTANCES - 1, MAX_NODES).expect("plan");
        assert_eq!(last[0].ip, Ipv4Addr::new(198, 18, 0, 235));
        assert_eq!(last[7].ip, Ipv4Addr::new(198, 18, 0, 242));
        assert!(last
            .iter()
            .all(|n| format!("vb-{}", n.machine()).len() <= 15));
        assert!(set_instance(MAX_INSTANCES).is_err());
    }

    #[test]
    fn plans_three_control_planes_first_then_workers() {
        let nodes = plan_cluster_of(0, 5, 3).expect("plan");
        let names: Vec<_> = nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "controlplane",
                "controlplane02",
                "controlplane03",
                "node01",
                "node02"
            ]
        );
        let etcd: Vec<_> = nodes.iter().filter(|n| n.runs_etcd()).collect();
        assert_eq!(etcd.len(), 3);
        assert_eq!(nodes[3].ip, Ipv4Addr::new(198, 18, 0, 14));
        assert!(!nodes[3].is_control_plane() && nodes[1].is_control_plane());
        // Host names too long for a veth get short machine names, in instance 0 too.
        assert_eq!(nodes[0].machine(), "controlplane");
        assert_eq!(nodes[1].machine(), "bf0-cp02");
        assert_eq!(
            plan_cluster_of(2, 4, 3).expect("plan")[2].machine(),
            "bf2-cp03"
        );
        assert!(plan_cluster_of(7, MAX_NODES, 3)
            .expect("plan")
            .iter()
            .all(|n| format!("vb-{}", n.machine()).len() <= 15));
        // No worker left, or too many control planes: refused with the reason.
        let e = plan_cluster_of(0, 3, 3).expect_err("no worker");
        assert!(e.to_string().contains("--nodes counts every node"), "{e}");
        assert!(plan_cluster_of(0, 5, 4).is_err());
        assert!(plan_cluster_of(0, 5, 0).is_err());
    }

    #[test]
    fn rejects_zero_and_too_many_nodes() {
        assert!(plan_nodes(0).is_err());
        assert!(plan_nodes(MAX_NODES + 1).is_err());
        assert!(plan_nodes(MAX_NODES).is_ok());
    }
}
