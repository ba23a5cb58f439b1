//! kubeadm: the cluster is made by kubeadm itself. The configuration file `kubeadm init`
//! reads (both topologies), the preflight checks a container node cannot pass (each with its
//! reason), and running `kubeadm init` / `kubeadm join` on the nodes over SSH.
//!
//! Source of the shapes: kubeadm's configuration API `kubeadm.k8s.io/v1beta4` (the version
//! kubeadm 1.37 prefers) and its external-etcd layout ("Set up a High Availability etcd
//! cluster with kubeadm" / "Options for Highly Available topology" in the Kubernetes docs).

use std::net::Ipv4Addr;
use std::time::Duration;

use super::kubebuild::Pins;
use super::runtime::{CRI_SOCKET, POD_SUBNET, SERVICE_SUBNET};
use super::NodeSpec;
use crate::error::{Error, Result};
use crate::inventory::Topology;
use crate::transport::ssh::SshTransport;

/// Where the sandbox puts kubeadm's configuration file on the control plane.
pub const CONFIG_PATH: &str = "/etc/kubernetes/kubeadm-config.yaml";
/// Bound on `kubeadm init` (kubeadm waits up to 4 minutes for the control plane itself).
pub const INIT_TIMEOUT: Duration = Duration::from_secs(300);
/// Bound on `kubeadm join` on one worker.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(240);

/// Preflight checks a sandbox node fails for reasons of the container, not of the cluster,
/// with the reason (listed in docs/sandbox.md). Everything else kubeadm checks still runs.
pub const IGNORED_PREFLIGHT: &[(&str, &str)] = &[
    (
        "SystemVerification",
        "the host kernel mounts cgroup v1 controllers (kubeadm 1.37 wants cgroup v2) and its \
         config is not readable from the container",
    ),
    (
        "FileContent--proc-sys-net-bridge-bridge-nf-call-iptables",
        "br_netfilter's sysctl belongs to the host; nothing in the sandbox relies on \
         iptables seeing bridged traffic (no kube-proxy)",
    ),
];

/// The comma list for `--ignore-preflight-errors`.
pub fn ignored_preflight() -> String {
    IGNORED_PREFLIGHT
        .iter()
        .map(|(c, _)| *c)
        .collect::<Vec<_>>()
        .join(",")
}

/// kubeadm phases the sandbox skips, with the reason: kube-proxy needs iptables/nftables
/// programs in its image and CoreDNS reaches the API through the Service IP kube-proxy
/// programs; neither is built here (docs/sandbox.md).
pub const SKIPPED_PHASES: &[&str] = &["addon/kube-proxy", "addon/coredns"];

/// The kubeadm configuration for `kubeadm init` on `cp`: InitConfiguration (advertise
/// address, node name, containerd's socket, `imagePullPolicy: Never` so a missing image fails
/// instead of pulling), ClusterConfiguration (pinned version, pod and service subnets; the
/// stacked topology's etcd image tag, or the external topology's etcd endpoint and client
/// certificate), and a KubeletConfiguration (cgroupfs driver, cgroup v1 accepted; no image
/// garbage collection and no disk-pressure eviction, as kind's nodes: a node's image
/// filesystem is the host's disk, whose fill level says nothing about the node, and an image
/// collected there cannot be pulled again, since the images are imported, not pulled. The
/// kubelet's default collects once the host's disk is 85% used (by its own count, reserved
/// blocks included): with 41 GiB of 252 free, a stacked node lost its pause image and could
/// start no pod).
/// `schedulable`: the control plane gets no `NoSchedule` taint (kubeadm's documented
/// `taints: []`), for a one-node cluster whose workloads must run somewhere. `etcd_members`:
/// the external topology's etcd members' addresses, one endpoint each (empty: `cp`'s own).
/// `ha`: several control planes (kubeadm's HA layout): `controlPlaneEndpoint` is the load
/// balancer and `certificateKey` the key `kubeadm init --upload-certs` encrypts the shared
/// certificates with, for `kubeadm join --control-plane`.
pub fn init_config(
    cp: &NodeSpec,
    etcd_members: &[Ipv4Addr],
    topology: Topology,
    pins: &Pins,
    schedulable: bool,
    ha: Option<&Ha>,
) -> String {
    let etcd = match topology {
        Topology::Stacked => format!(
            "etcd:\n  local:\n    dataDir: /var/lib/etcd\n    imageTag: {}\n",
            pins.etcd_image_tag
        ),
        Topology::External => {
            let own = [cp.ip];
            let members = if etcd_members.is_empty() {
                &own[..]
            } else {
                etcd_members
            };
            let endpoints: String = members
                .iter()
                .map(|ip| format!("    - https://{ip}:2379\n"))
                .collect();
            format!(
                "etcd:\n  external:\n    endpoints:\n{endpoints}    caFile: /etc/kubernetes/pki/etcd/ca.crt\n    certFile: /etc/kubernetes/pki/apiserver-etcd-client.crt\n    keyFile: /etc/kubernetes/pki/apiserver-etcd-client.key\n"
            )
        }
    };
    let ignore: String = IGNORED_PREFLIGHT
        .iter()
        .map(|(c, _)| format!("  - {c}\n"))
        .collect();
    let (key, endpoint) = match ha {
        Some(h) => (
            format!("certificateKey: {}\n", h.certificate_key),
            format!(
                "controlPlaneEndpoint: \"{}:{}\"\n",
                h.endpoint,
                super::lb::PORT
            ),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        "# breakfix sandbox: `kubeadm init --config {CONFIG_PATH}` (docs/sandbox.md).\n\
apiVersion: kubeadm.k8s.io/v1beta4\n\
kind: InitConfiguration\n\
{key}\
localAPIEndpoint:\n\
\x20 advertiseAddress: {ip}\n\
\x20 bindPort: 6443\n\
nodeRegistration:\n\
\x20 name: {name}\n\
\x20 criSocket: {CRI_SOCKET}\n\
\x20 imagePullPolicy: Never\n\
{taints}\
\x20 ignorePreflightErrors:\n\
{ignore}\
skipPhases:\n\
{skip}\
---\n\
apiVersion: kubeadm.k8s.io/v1beta4\n\
kind: ClusterConfiguration\n\
clusterName: kubernetes\n\
kubernetesVersion: {version}\n\
{endpoint}\
networking:\n\
\x20 dnsDomain: cluster.local\n\
\x20 podSubnet: {POD_SUBNET}\n\
\x20 serviceSubnet: {SERVICE_SUBNET}\n\
{etcd}\
---\n\
apiVersion: kubelet.config.k8s.io/v1beta1\n\
kind: KubeletConfiguration\n\
cgroupDriver: cgroupfs\n\
failCgroupV1: false\n\
failSwapOn: false\n\
imageGCHighThresholdPercent: 100\n\
evictionHard:\n\
\x20 nodefs.available: \"0%\"\n\
\x20 nodefs.inodesFree: \"0%\"\n\
\x20 imagefs.available: \"0%\"\n",
        ip = cp.ip,
        name = cp.name,
        version = pins.kubernetes,
        taints = if schedulable { "  taints: []\n" } else { "" },
        skip = SKIPPED_PHASES
            .iter()
            .map(|p| format!("- {p}\n"))
            .collect::<String>(),
    )
}

/// Runs `command` on a node, requiring exit 0.
///
/// Errors: the command fails (the error names the step, the node, the command and quotes
/// the last lines of its output and of `journalctl -u kubelet`), or times out.
pub async fn run_step(
    t: &SshTransport,
    step: &str,
    command: &str,
    timeout: Duration,
) -> Result<String> {
    let out = t
        .exec(command, None, timeout)
        .await
        .map_err(|e| Error::other(format!("{step} on {}: {e}", t.host())))?;
    if out.success() {
        return Ok(out.stdout);
    }
    let both = format!("{}\n{}", out.stdout, out.stderr);
    let lines: Vec<&str> = both.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n    ");
    let kubelet = t
        .exec(
            "journalctl -u kubelet --no-pager -n 8 -o cat 2>/dev/null",
            None,
            Duration::from_secs(10),
        )
        .await
        .map(|o| o.stdout)
        .unwrap_or_default();
    let kubelet = kubelet
        .lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n");
    Err(Error::other(format!(
        "{step} on {} failed (exit {}): `{command}`\n  last lines of its output:\n    {tail}\n  last lines of `journalctl -u kubelet`:\n{kubelet}",
        t.host(),
        out.exit.map(|c| c.to_string()).unwrap_or_else(|| "signal".into()),
    )))
}

/// `kubeadm init` on the control plane with the configuration at [`CONFIG_PATH`].
///
/// Errors: as [`run_step`] (step `kubeadm init`).
/// With `upload_certs` (several control planes), kubeadm also stores the shared certificates
/// in the cluster, encrypted with the configuration's `certificateKey`.
pub async fn init(t: &SshTransport, upload_certs: bool) -> Result<String> {
    let upload = if upload_certs { " --upload-certs" } else { "" };
    run_step(
        t,
        "kubeadm init",
        &format!("kubeadm init --config {CONFIG_PATH}{upload} 2>&1"),
        INIT_TIMEOUT,
    )
    .await
}

/// Several control planes: the load balancer's address and the certificate key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ha {
    /// Where the API is reached: the load balancer on the host bridge ([`super::lb`]).
    pub endpoint: Ipv4Addr,
    /// 32 random bytes, hex: the AES key `kubeadm init --upload-certs` encrypts the shared
    /// certificates with and `kubeadm join --control-plane --certificate-key` decrypts them
    /// with (kubeadm's `certificateKey`).
    pub certificate_key: String,
}

impl Ha {
    /// A fresh certificate key for the load balancer at `endpoint`.
    pub fn new(endpoint: Ipv4Addr) -> Ha {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Ha {
            endpoint,
            certificate_key: hex::encode(key),
        }
    }
}

/// `kubeadm join --control-plane` on a further control plane: the worker's join line plus
/// the certificate key, the node's own API address, its name, containerd's socket and the
/// ignored preflight checks. kubeadm adds a stacked etcd member on it (stacked topology).
///
/// Errors: as [`run_step`] (step `kubeadm join --control-plane`).
pub async fn join_control_plane(
    t: &SshTransport,
    join_line: &str,
    node: &NodeSpec,
    ha: &Ha,
) -> Result<String> {
    let cmd = format!(
        "{join_line} --control-plane --certificate-key {} --apiserver-advertise-address {} --node-name {} --cri-socket {CRI_SOCKET} --ignore-preflight-errors={} 2>&1",
        ha.certificate_key,
        node.ip,
        node.name,
        ignored_preflight()
    );
    run_step(t, "kubeadm join --control-plane", &cmd, INIT_TIMEOUT).await
}

/// The join command for workers: `kubeadm token create --print-join-command` on the control
/// plane (a fresh bootstrap token and the CA's public key hash).
///
/// Errors: as [`run_step`].
pub async fn join_command(cp: &SshTransport) -> Result<String> {
    let out = run_step(
        cp,
        "kubeadm token create",
        "kubeadm token create --print-join-command",
        Duration::from_secs(60),
    )
    .await?;
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("kubeadm join "))
        .ok_or_else(|| {
            Error::other(format!(
                "kubeadm token create --print-join-command on {} printed no `kubeadm join` line:\n{out}",
                cp.host()
            ))
        })?;
    Ok(line.trim().to_string())
}

/// `kubeadm join` on a worker, with its node name, containerd's socket and the same ignored
/// preflight checks as init.
///
/// Errors: as [`run_step`] (step `kubeadm join`).
pub async fn join(t: &SshTransport, join_line: &str, node: &NodeSpec) -> Result<String> {
    let cmd = format!(
        "{join_line} --node-name {} --cri-socket {CRI_SOCKET} --ignore-preflight-errors={} 2>&1",
        node.name,
        ignored_preflight()
    );
    run_step(t, "kubeadm join", &cmd, JOIN_TIMEOUT).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pins() -> Pins {
        super::super::kubebuild::pins().expect("pins")
    }

    #[test]
    fn stacked_config_pins_the_version_and_etcd_image() {
        let nodes = super::super::plan_nodes(2).expect("plan");
        let p = pins();
        let c = init_config(&nodes[0], &[], Topology::Stacked, &p, false, None);
        assert!(c.contains(&format!("kubernetesVersion: {}\n", p.kubernetes)));
        assert!(c.contains(&format!("imageTag: {}\n", p.etcd_image_tag)));
        assert!(c.contains("advertiseAddress: 198.18.0.11\n"));
        assert!(c.contains("  name: controlplane\n"));
        assert!(c.contains("- addon/kube-proxy\n"));
        assert!(c.contains("failCgroupV1: false\n"));
        assert!(!c.contains("external:"));
        assert!(!c.contains("taints"));
        assert!(
            init_config(&nodes[0], &[], Topology::Stacked, &p, true, None)
                .contains("  taints: []\n")
        );
    }

    #[test]
    fn the_kubelet_neither_collects_images_nor_evicts_for_the_hosts_disk() {
        let nodes = super::super::plan_nodes(1).expect("plan");
        let c = init_config(&nodes[0], &[], Topology::Stacked, &pins(), true, None);
        let kubelet = c
            .split("\n---\n")
            .find(|d| d.contains("kind: KubeletConfiguration"))
            .expect("a KubeletConfiguration document");
        let v: serde_json::Value = serde_saphyr::from_str(kubelet).expect("valid YAML");
        assert_eq!(v["imageGCHighThresholdPercent"], 100, "{kubelet}");
        for signal in ["nodefs.available", "nodefs.inodesFree", "imagefs.available"] {
            assert_eq!(v["evictionHard"][signal], "0%", "{signal}: {kubelet}");
        }
    }

    #[test]
    fn external_config_points_at_the_etcd_unit() {
        let nodes = super::super::plan_nodes(1).expect("plan");
        let c = init_config(&nodes[0], &[], Topology::External, &pins(), true, None);
        assert!(c.contains("    - https://198.18.0.11:2379\n"), "{c}");
        assert!(c.contains("certFile: /etc/kubernetes/pki/apiserver-etcd-client.crt"));
        assert!(!c.contains("imageTag"));
        let nodes = super::super::plan_cluster_of(0, 4, 3).expect("plan");
        let ips: Vec<_> = nodes
            .iter()
            .filter(|n| n.runs_etcd())
            .map(|n| n.ip)
            .collect();
        let ha = Ha::new(Ipv4Addr::new(198, 18, 0, 1));
        let c = init_config(
            &nodes[0],
            &ips,
            Topology::External,
            &pins(),
            false,
            Some(&ha),
        );
        assert!(
            c.contains("controlPlaneEndpoint: \"198.18.0.1:6443\"\n"),
            "{c}"
        );
        assert!(c.contains(&format!("certificateKey: {}\n", ha.certificate_key)));
        assert_eq!(ha.certificate_key.len(), 64);
        assert!(
            c.contains("    endpoints:\n    - https://198.18.0.11:2379\n    - https://198.18.0.12:2379\n    - https://198.18.0.13:2379\n"),
            "{c}"
        );
    }
}
