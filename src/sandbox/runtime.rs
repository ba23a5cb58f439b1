//! Runtime: what makes a sandbox node a Kubernetes node before kubeadm runs: containerd's
//! configuration, the kubelet's systemd unit with kubeadm's drop-in, crictl's configuration,
//! the node's CNI network, and two oneshot units that adapt the container to containerd
//! (writable cgroup v1 controllers, `/dev/kmsg`) and import the locally built images.
//!
//! Why each adjustment exists is in docs/sandbox.md ("Containers inside a node"); the facts
//! come from shared/reference/containerd-in-nspawn.md:
//! - overlayfs cannot use an upper dir on overlayfs (the node's root), so
//!   `/var/lib/containerd` is a bind mount of a host directory (see [`CONTAINERD_DIR`]);
//! - nspawn mounts the v1 cgroup controllers read-only: [`CGROUPS_UNIT`] remounts them
//!   read-write (memory is "busy" for a remount, so it is mounted afresh);
//! - nspawn's seccomp filter refuses the session keyring: runc runs with `NoNewKeyring`.

use super::NodeSpec;

/// containerd's state directory in a node: a bind mount of `nodes/<name>/containerd` on the
/// host (ext4, so containerd's overlayfs snapshotter works).
pub const CONTAINERD_DIR: &str = "/var/lib/containerd";
/// Where a node sees the image archives it imports (read-only bind of the build cache's
/// `images/<role>`), one subdirectory per role (`common`, `control-plane`).
pub const IMAGES_DIR: &str = "/opt/breakfix/images";
/// containerd's CRI socket (what kubeadm and crictl are told).
pub const CRI_SOCKET: &str = "unix:///run/containerd/containerd.sock";
/// Debian's containernetworking-plugins put the CNI plugins here.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// The cluster's pod network; node `i` (0 = controlplane) gets `10.244.<i>.0/24`.
pub const POD_SUBNET: &str = "10.244.0.0/16";
/// kubeadm's default service range.
pub const SERVICE_SUBNET: &str = "10.96.0.0/12";
/// Name of the oneshot unit that makes the cgroup controllers writable.
pub const CGROUPS_UNIT: &str = "breakfix-cgroups.service";
/// Name of the oneshot unit that imports the images into containerd.
pub const IMAGES_UNIT: &str = "breakfix-images.service";

/// One file written into a node's root: absolute path inside the node, content, mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFile {
    /// Absolute path inside the node.
    pub path: String,
    /// Content.
    pub text: String,
    /// Permission bits.
    pub mode: u32,
}

fn file(path: &str, text: String, mode: u32) -> NodeFile {
    NodeFile {
        path: path.into(),
        text,
        mode,
    }
}

/// The pod subnet of node number `index` (0 = controlplane): `10.244.<index>.0/24`.
pub fn pod_cidr(index: usize) -> String {
    format!("10.244.{index}.0/24")
}

/// containerd 1.6's configuration (config version 2): the CRI plugin with kubeadm's pause
/// image, runc through the v2 shim with the cgroupfs driver and no session keyring, CNI from
/// Debian's plugin directory, and `restrict_oom_score_adj` (this machine grants no process
/// CAP_SYS_RESOURCE, so runc cannot give a pod the kubelet's negative `oom_score_adj`; the
/// CRI plugin then keeps containerd's own score, 0, as it does for rootless containerd).
pub fn containerd_config(pause_image: &str) -> String {
    format!(
        r#"# breakfix sandbox: containerd for the kubelet (docs/sandbox.md).
version = 2

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  # No CAP_SYS_RESOURCE here: a negative oom_score_adj cannot be set (docs/sandbox.md).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # The kubelet uses the cgroupfs driver: the node's systemd does not own the v1
        # controllers.
        SystemdCgroup = false
        # systemd-nspawn's seccomp filter refuses keyctl(2) (a session keyring per container).
        NoNewKeyring = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "/etc/cni/net.d"
"#
    )
}

/// The kubelet's unit as kubeadm's packages ship it (`kubelet.service` plus the drop-in
/// `10-kubeadm.conf`): restarts every 10 s until `kubeadm init`/`join` wrote its
/// configuration, as on any kubeadm node before init.
pub const KUBELET_UNIT: &str = "# breakfix sandbox: the kubelet unit of kubeadm's packages.\n\
[Unit]\n\
Description=kubelet: The Kubernetes Node Agent\n\
Documentation=https://kubernetes.io/docs/\n\
Wants=network-online.target\n\
After=network-online.target containerd.service\n\
\n\
[Service]\n\
ExecStart=/usr/bin/kubelet\n\
Restart=always\n\
StartLimitInterval=0\n\
RestartSec=10\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n";

/// kubeadm's drop-in for the kubelet unit (`/etc/systemd/system/kubelet.service.d/10-kubeadm.conf`).
pub const KUBEADM_DROPIN: &str = "# Note: This dropin only works with kubeadm and kubelet v1.11+\n\
[Service]\n\
Environment=\"KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf\"\n\
Environment=\"KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml\"\n\
# This is a file that \"kubeadm init\" and \"kubeadm join\" generates at runtime, populating the KUBELET_KUBEADM_ARGS variable dynamically\n\
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env\n\
# This is a file that the user can use for overrides of the kubelet args as a last resort.\n\
EnvironmentFile=-/etc/default/kubelet\n\
ExecStart=\n\
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS\n";

/// `/etc/crictl.yaml`: crictl talks to containerd's socket.
pub fn crictl_config() -> String {
    format!(
        "runtime-endpoint: {CRI_SOCKET}\nimage-endpoint: {CRI_SOCKET}\ntimeout: 10\ndebug: false\n"
    )
}

/// The oneshot unit that adapts the container for containerd and the kubelet, before either
/// starts: every v1 cgroup controller read-write (remounted; a busy one mounted afresh) and
/// `/dev/kmsg` (the kubelet's OOM watcher reads it; nspawn has none) pointing at the console,
/// as kind does.
pub fn cgroups_unit() -> String {
    "# breakfix sandbox: writable cgroup controllers and /dev/kmsg for containerd and the kubelet.\n\
[Unit]\n\
Description=Writable cgroup v1 controllers for containerd and the kubelet\n\
DefaultDependencies=no\n\
After=local-fs.target\n\
Before=containerd.service kubelet.service sysinit.target\n\
\n\
[Service]\n\
Type=oneshot\n\
RemainAfterExit=yes\n\
ExecStart=/bin/sh -ec '\\\n  \
for d in /sys/fs/cgroup/*/; do \\\n    \
c=$(basename \"$d\"); \\\n    \
case \"$c\" in unified|systemd) continue;; esac; \\\n    \
mount -o remount,rw \"$d\" 2>/dev/null \\\n      \
|| { umount -l \"$d\" && mount -t cgroup -o rw,nosuid,nodev,noexec,\"$c\" cgroup \"$d\"; }; \\\n  \
done; \\\n  \
[ -e /dev/kmsg ] || ln -s /dev/console /dev/kmsg'\n\
\n\
[Install]\n\
WantedBy=sysinit.target\n"
        .to_string()
}

/// The oneshot unit that imports the image archives under [`IMAGES_DIR`] into containerd's
/// `k8s.io` namespace (where the kubelet looks) before the kubelet starts, so kubeadm's
/// static pods (`imagePullPolicy: IfNotPresent`) pull nothing.
pub fn images_unit() -> String {
    format!(
        "# breakfix sandbox: the locally built images, imported before the kubelet starts.\n\
[Unit]\n\
Description=Import the sandbox's container images into containerd\n\
Requires=containerd.service\n\
After=containerd.service\n\
Before=kubelet.service\n\
\n\
[Service]\n\
Type=oneshot\n\
RemainAfterExit=yes\n\
ExecStart=/bin/sh -ec 'for f in {IMAGES_DIR}/*/*.tar; do ctr -n k8s.io images import \"$f\"; done'\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n"
    )
}

/// The node's CNI network (`/etc/cni/net.d/10-breakfix.conflist`): a Linux bridge `cni0`
/// with the node's pod subnet (host-local IPAM); pods of other nodes are reached through the
/// routes [`pod_routes`] adds.
pub fn cni_config(index: usize) -> String {
    format!(
        "{{\n  \"cniVersion\": \"1.0.0\",\n  \"name\": \"breakfix\",\n  \"plugins\": [\n    {{\n      \"type\": \"bridge\",\n      \"bridge\": \"cni0\",\n      \"isGateway\": true,\n      \"ipMasq\": false,\n      \"hairpinMode\": true,\n      \"ipam\": {{\n        \"type\": \"host-local\",\n        \"ranges\": [[{{\"subnet\": \"{}\"}}]],\n        \"routes\": [{{\"dst\": \"0.0.0.0/0\"}}]\n      }}\n    }}\n  ]\n}}\n",
        pod_cidr(index)
    )
}

/// Shell lines (for the node's address unit) that route the other nodes' pod subnets
/// through their node addresses.
pub fn pod_routes(me: &NodeSpec, all: &[NodeSpec]) -> Vec<String> {
    all.iter()
        .enumerate()
        .filter(|(_, n)| n.name != me.name)
        .map(|(i, n)| format!("ip route replace {} via {}", pod_cidr(i), n.ip))
        .collect()
}

/// Every runtime file of a node: containerd, kubelet unit and drop-in, crictl, CNI, the two
/// oneshot units (their `WantedBy` symlinks are made by the caller).
pub fn node_files(index: usize, pause_image: &str) -> Vec<NodeFile> {
    vec![
        file(
            "/etc/containerd/config.toml",
            containerd_config(pause_image),
            0o644,
        ),
        file(
            "/etc/systemd/system/kubelet.service",
            KUBELET_UNIT.into(),
            0o644,
        ),
        file(
            "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
            KUBEADM_DROPIN.into(),
            0o644,
        ),
        file("/etc/crictl.yaml", crictl_config(), 0o644),
        file(
            "/etc/cni/net.d/10-breakfix.conflist",
            cni_config(index),
            0o644,
        ),
        file(
            &format!("/etc/systemd/system/{CGROUPS_UNIT}"),
            cgroups_unit(),
            0o644,
        ),
        file(
            &format!("/etc/systemd/system/{IMAGES_UNIT}"),
            images_unit(),
            0o644,
        ),
    ]
}

/// Units to enable: (unit, target whose `.wants/` gets the symlink).
pub const ENABLED_UNITS: &[(&str, &str)] = &[
    ("kubelet.service", "multi-user.target"),
    (CGROUPS_UNIT, "sysinit.target"),
    (IMAGES_UNIT, "multi-user.target"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_gets_its_own_pod_subnet_and_routes_to_the_others() {
        let nodes = super::super::plan_nodes(3).expect("plan");
        assert!(cni_config(1).contains("10.244.1.0/24"));
        let routes = pod_routes(&nodes[1], &nodes);
        assert_eq!(
            routes,
            [
                "ip route replace 10.244.0.0/24 via 198.18.0.11",
                "ip route replace 10.244.2.0/24 via 198.18.0.13"
            ]
        );
        let _: serde_json::Value =
            serde_json::from_str(&cni_config(2)).expect("CNI config is JSON");
    }

    #[test]
    fn containerd_runs_runc_without_a_session_keyring_on_cgroupfs() {
        let c = containerd_config("registry.k8s.io/pause:3.10.2");
        assert!(c.contains("NoNewKeyring = true"));
        assert!(c.contains("SystemdCgroup = false"));
        assert!(c.contains("sandbox_image = \"registry.k8s.io/pause:3.10.2\""));
        assert!(c.contains("bin_dir = \"/usr/lib/cni\""));
        assert!(c.contains("restrict_oom_score_adj = true"));
    }
}
