//! Lifecycle: `up` (preflight, image, bridge, keys and PKI, node roots, boot, readiness,
//! and for the stacked topology the API server's readiness and seed 000's workloads;
//! inventory), `down` (processes, mounts, loop devices, bridge, files: in reverse order of
//! the state record) and `status` (what runs and answers now).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::fsutil;
use super::kube_images::{self, Images};
use super::kubebuild::{self, Build, Pins};
use super::node::{self, NodeConfig, NodePaths};
use super::progress::Progress;
use super::state::{Lock, Phase, ProcKind, Resource, State};
use super::{
    image, image_dir, keys, kubeadm, kubeapi, loopdev, network, pki, plan_cluster_of, preflight,
    procs, readiness, runtime, state_dir, sysctl, NodeSpec,
};
use crate::error::{Error, Result};
use crate::inventory::{Cluster, EtcdInfo, Inventory, Node, Topology, TransportKind};
use crate::transport::ssh::SshTransport;

/// Options of `sandbox up`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpOptions {
    /// Number of nodes (control planes + workers), 1..=[`super::MAX_NODES`].
    pub nodes: u8,
    /// Control-plane nodes (etcd members), 1..=[`super::MAX_CONTROL_PLANES`].
    pub control_planes: u8,
    /// Where etcd runs.
    pub topology: Topology,
    /// Take down whatever sandbox exists first (any topology or size), then bring up the one
    /// asked for. Without it, `up` on a sandbox of another topology is an error.
    pub recreate: bool,
}

impl Default for UpOptions {
    fn default() -> Self {
        UpOptions {
            nodes: 2,
            control_planes: 1,
            topology: Topology::External,
            recreate: false,
        }
    }
}

/// Where systemd-nspawn keeps a directory per machine to propagate mounts into it
/// (systemd-nspawn(1), `machinectl bind`); a killed nspawn leaves its directory behind.
const NSPAWN_PROPAGATE_DIR: &str = "/run/systemd/nspawn/propagate";

/// How long `down` lets the nodes power off before killing them.
pub const STOP_GRACE: Duration = Duration::from_secs(20);

/// Files of the sandbox's SSH client side, relative to the state directory.
pub const CLIENT_KEY: &str = "ssh/id_ed25519";
/// known_hosts with every node's host key, relative to the state directory.
pub const KNOWN_HOSTS: &str = "ssh/known_hosts";
/// Host copy of the control plane's /etc/kubernetes/pki, relative to the state directory.
pub const HOST_PKI: &str = "pki";
/// Host copy of the control plane's /etc/kubernetes/admin.conf, relative to the state
/// directory (its server, https://198.18.0.11:6443, is reachable from the host).
pub const HOST_ADMIN_CONF: &str = "admin.conf";
/// Bound on waiting for the API server's /readyz once kubeadm init returned.
pub const APISERVER_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on waiting for every Node to be `Ready` once they joined.
pub const NODES_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on waiting for seed 000's `critical-app` to be 3/3 ready once applied.
pub const WORKLOADS_TIMEOUT: Duration = Duration::from_secs(60);

/// The sandbox as it is now (`sandbox status`, and what `up` prints at the end).
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// `up` (every node running), `down` (no sandbox), `partial` (some resources exist but
    /// not every node runs: run `sandbox down`), `creating` (an `up` is under way or died).
    pub state: String,
    /// The sandbox instance (0-7; `breakfix sandbox --instance`).
    pub instance: u8,
    /// State directory.
    pub state_dir: PathBuf,
    /// Inventory file, when the sandbox is up.
    pub inventory: Option<PathBuf>,
    /// Topology, when there is a sandbox.
    pub topology: Option<Topology>,
    /// Creation time (RFC 3339), when there is a sandbox.
    pub created: Option<String>,
    /// Per-node status.
    pub nodes: Vec<NodeStatus>,
    /// An `ssh` command line that logs into the control plane.
    pub ssh_example: Option<String>,
    /// Several control planes: the load balancer in front of their API servers, e.g.
    /// `https://198.18.0.1:6443 (haproxy, pid 4242)`, or `... (haproxy not running)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<String>,
}

/// One node in a [`StatusReport`].
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// Host name.
    pub name: String,
    /// Address on the sandbox bridge.
    pub address: String,
    /// Inventory roles.
    pub roles: Vec<String>,
    /// PID of the node's systemd-nspawn process, when it runs.
    pub pid: Option<i32>,
    /// The container runs.
    pub running: bool,
    /// sshd answered with an SSH banner.
    pub ssh: bool,
    /// etcd answered a status request (etcd nodes only): its version.
    pub etcd: Option<String>,
    /// The API server's /readyz answered 200 (control plane of the stacked topology only).
    pub apiserver: Option<bool>,
    /// Console log (where to look when the node misbehaves).
    pub console_log: PathBuf,
}

impl StatusReport {
    /// Human-readable rendering (a table).
    pub fn render_human(&self) -> String {
        let mut s = String::new();
        match self.state.as_str() {
            "down" => {
                s.push_str("sandbox: down (no sandbox; `breakfix sandbox up` creates one)\n");
                return s;
            }
            st => {
                let topo = match self.topology {
                    Some(Topology::Stacked) => "stacked",
                    _ => "external",
                };
                s.push_str(&format!(
                    "sandbox: {st} ({topo} topology, {} node(s), created {})\n",
                    self.nodes.len(),
                    self.created.as_deref().unwrap_or("?")
                ));
            }
        }
        if self.instance != 0 {
            s.push_str(&format!("instance:  {}\n", self.instance));
        }
        s.push_str(&format!("state:     {}\n", self.state_dir.display()));
        if let Some(inv) = &self.inventory {
            s.push_str(&format!("inventory: {}\n", inv.display()));
        }
        if let Some(lb) = &self.load_balancer {
            s.push_str(&format!("api:       {lb}\n"));
        }
        // Both topologies run a real kube-apiserver on the control plane.
        let stacked = true;
        s.push_str(&format!(
            "\n{:<14} {:<13} {:<20} {:<16} {:<5} {:<20}{}\n",
            "NODE",
            "ADDRESS",
            "ROLES",
            "CONTAINER",
            "SSH",
            "ETCD",
            if stacked { " API" } else { "" }
        ));
        for n in &self.nodes {
            let container = match (n.running, n.pid) {
                (true, Some(p)) => format!("running ({p})"),
                _ => "stopped".into(),
            };
            let etcd = if n.roles.iter().any(|r| r == "etcd") {
                match &n.etcd {
                    Some(v) => format!("healthy (v{v})"),
                    None => "unreachable".into(),
                }
            } else {
                "-".into()
            };
            let api = match (stacked, n.apiserver) {
                (false, _) => String::new(),
                (true, None) => " -".into(),
                (true, Some(true)) => " ready".into(),
                (true, Some(false)) => " not ready".into(),
            };
            s.push_str(&format!(
                "{:<14} {:<13} {:<20} {:<16} {:<5} {:<20}{}\n",
                n.name,
                n.address,
                n.roles.join(","),
                container,
                if n.ssh { "ok" } else { "no" },
                etcd,
                api
            ));
        }
        if self.state == "partial" || self.state == "creating" {
            s.push_str("\nnot every node runs: `breakfix sandbox down` removes what is left, then `up` again\n");
        }
        if let Some(ex) = &self.ssh_example {
            s.push_str(&format!("\nlog in:  {ex}\n"));
        }
        if self.state == "up" {
            s.push_str(&format!(
                "kubectl: kubectl --kubeconfig {} get nodes\n",
                self.state_dir.join(HOST_ADMIN_CONF).display()
            ));
        }
        s
    }
}

/// Brings the sandbox up (see docs/sandbox.md), or does nothing but report when it is already
/// up. Leftovers of an `up` that died, and of a sandbox whose nodes were killed without
/// `down` (dead nspawn processes; bridge, mounts, loop devices and state left behind), are
/// removed first. On failure the half-built sandbox is left in place for inspection and the
/// error says how to remove it.
///
/// Errors: preflight failures (not root, tools missing, no space, network taken), a build
/// that fails, a sandbox of the other topology is up (without
/// [`UpOptions::recreate`]), a node that does not boot in time (named, with its console
/// log), `kubeadm init`/`join` failing, nodes not Ready or the workloads not ready in time
/// (named, with `crictl ps -a` and the kubelet's journal).
pub async fn up(opts: &UpOptions) -> Result<StatusReport> {
    preflight::require_root()?;
    preflight::require_tools()?;
    preflight::require_overlayfs()?;
    let pins = kubebuild::pins()?;
    let nodes = plan_cluster_of(super::instance(), opts.nodes, opts.control_planes)?;
    let dir = state_dir();
    let imgdir = image_dir();
    let _lock = Lock::acquire(&dir)?;
    let progress = Progress::new();

    if let Some(old) = State::load(&dir)? {
        let running = old.phase == Phase::Ready && procs::all_nodes_running(&old);
        if running && !opts.recreate {
            if old.topology != opts.topology {
                return Err(Error::other(format!(
                    "a sandbox with the {} topology is already up ({} node(s)); run `breakfix sandbox down` first, or `breakfix sandbox up --topology {} --recreate` to replace it",
                    old.topology.name(),
                    old.nodes.len(),
                    opts.topology.name(),
                )));
            }
            if old.nodes.len() != nodes.len() {
                progress.println(format!(
                    "note: the sandbox is already up with {} node(s) ({} topology); `breakfix sandbox down` first (or `up --recreate`) to change it",
                    old.nodes.len(),
                    old.topology.name()
                ));
            }
            return Ok(report(Some(&old)).await);
        }
        if running {
            progress.println(format!(
                "--recreate: removing the sandbox that is up ({} topology, {} node(s))",
                old.topology.name(),
                old.nodes.len()
            ));
        } else {
            let dead = dead_nodes(&old);
            if old.phase == Phase::Ready && !dead.is_empty() {
                progress.println(format!(
                    "found a sandbox in {} whose node(s) {dead:?} no longer run (killed without `sandbox down`?): removing what is left of it first",
                    dir.display(),
                ));
            } else {
                progress.println(format!(
                    "found an unfinished sandbox in {} (phase {:?}): removing it first",
                    dir.display(),
                    old.phase
                ));
            }
        }
        teardown(old, &progress).await?;
    } else if dir.exists() {
        // A state directory without a record holds no resources (the record is written
        // before the first one): clear it.
        fsutil::remove_tree(&dir)?;
    }

    preflight::require_space(
        &dir,
        &imgdir,
        image::cached_rootfs(&imgdir).is_some(),
        nodes.len(),
    )?;
    network::check_free(super::instance(), false).await?;

    let (image, _, images) = match prepare(&imgdir, &pins, false, &progress).await {
        Ok(x) => x,
        Err(e) => {
            progress.finish();
            return Err(e);
        }
    };

    fsutil::mkdir_mode(&dir, 0o755)?;
    let mut st = State::new(&dir, opts.topology, nodes, image);
    st.node_layer = Some(images.node_layer.clone());
    st.save()?;
    let built = build(&mut st, &progress, &pins, &images).await;
    progress.finish();
    match built {
        Ok(()) => Ok(report(Some(&st)).await),
        Err(e) => Err(Error::other(format!(
            "{e}\nThe half-built sandbox is left in place for inspection (state in {}); `breakfix sandbox down` removes it.",
            dir.display()
        ))),
    }
}

/// The state directory of another sandbox instance that is up (not `own`), if any.
fn other_instance_up(own: &Path) -> Option<PathBuf> {
    (0..super::MAX_INSTANCES)
        .map(super::state_dir_of)
        .filter(|d| d != own)
        .find(|d| {
            matches!(State::load(d), Ok(Some(st)) if st.phase == Phase::Ready && procs::all_nodes_running(&st))
        })
}

/// Records a shared host setting's old value in the state in `heir` (an instance that is up)
/// instead of writing it back now. Sandbox commands hold one lock for the whole machine
/// ([`Lock`]), so the heir's state cannot change meanwhile.
///
/// Errors: the heir's state cannot be read or written.
fn hand_over(heir: &Path, key: &str, old: &str) -> Result<()> {
    let Some(mut st) = State::load(heir)? else {
        return Err(Error::other(format!(
            "the sandbox in {} went away while handing over {key}",
            heir.display()
        )));
    };
    let r = Resource::Sysctl {
        key: key.to_string(),
        old: old.to_string(),
    };
    if !st.resources.contains(&r) {
        st.resources.insert(0, r);
        st.save()?;
    }
    Ok(())
}

/// Everything the nodes are made of, built once and cached: the Debian node image, the
/// programs built from their Go modules (`kubebuild`), and from both the container images
/// and the node layer (`kube_images`). `rebuild` rebuilds the programs even when cached.
/// Returns (node image rootfs, build, images).
///
/// Errors: a build fails (the message names the step and quotes its log), or a cache is
/// corrupt.
pub async fn prepare(
    imgdir: &Path,
    pins: &Pins,
    rebuild: bool,
    progress: &Progress,
) -> Result<(PathBuf, Build, Images)> {
    let step = progress.step(format!(
        "Kubernetes {} + etcd {} (built from source)",
        pins.kubernetes, pins.etcd
    ));
    let kube = match kubebuild::ensure(imgdir, rebuild, &step).await {
        Ok(b) => {
            step.done(format!("{}", b.dir.display()));
            b
        }
        Err(e) => {
            step.fail("build failed");
            return Err(e);
        }
    };
    let step = progress.step("node image");
    let image = match image::ensure(imgdir, &step).await {
        Ok(i) => {
            step.done("ready");
            i
        }
        Err(e) => {
            step.fail("build failed");
            return Err(e);
        }
    };
    let step = progress.step("container images");
    step.set_message(
        "kube-apiserver, kube-controller-manager, kube-scheduler, etcd, pause, workload",
    );
    let images = {
        let (kube, pins, image) = (kube.clone(), pins.clone(), image.clone());
        tokio::task::spawn_blocking(move || kube_images::ensure(&kube, &pins, &image))
            .await
            .map_err(|e| Error::other(format!("building the container images: {e}")))?
    };
    match images {
        Ok(i) => {
            step.done(format!(
                "{} images",
                kube_images::kubeadm_images(pins).len() + 1
            ));
            Ok((image, kube, i))
        }
        Err(e) => {
            step.fail("failed");
            Err(e)
        }
    }
}

/// `breakfix sandbox build`: [`prepare`] alone, under the sandbox lock. Returns a summary
/// (pinned versions and cache paths).
///
/// Errors: not root, tools missing, or as [`prepare`].
pub async fn build_only(rebuild: bool) -> Result<String> {
    preflight::require_root()?;
    preflight::require_tools()?;
    let pins = kubebuild::pins()?;
    let imgdir = image_dir();
    let _lock = Lock::acquire(&state_dir())?;
    let progress = Progress::new();
    let r = prepare(&imgdir, &pins, rebuild, &progress).await;
    progress.finish();
    let (image, kube, images) = r?;
    Ok(format!(
        "built: Kubernetes {}, etcd {}, crictl {}, pause {}\n  programs:   {}\n  node image: {}\n  images:     {} and {}",
        pins.kubernetes,
        pins.etcd,
        pins.cri_tools,
        pins.pause,
        kube.bin.display(),
        image.display(),
        images.control_plane.display(),
        images.common.display()
    ))
}

/// Nodes of `st` whose recorded nspawn process is gone.
fn dead_nodes(st: &State) -> Vec<String> {
    st.nodes
        .iter()
        .filter(|n| {
            !st.processes_of(&n.name)
                .any(|(k, pid, start)| k == ProcKind::Nspawn && procs::is_same_alive(pid, start))
        })
        .map(|n| n.name.clone())
        .collect()
}

async fn build(st: &mut State, progress: &Progress, pins: &Pins, images: &Images) -> Result<()> {
    let dir = st.dir.clone();

    let step = progress.step("network");
    let k = super::instance();
    st.record(Resource::Bridge {
        name: super::bridge_of(k),
    })?;
    network::create_bridge(k).await?;
    step.done(format!(
        "bridge {} {}/{}",
        super::bridge_of(k),
        super::host_addr_of(k),
        super::PREFIX_LEN
    ));

    let step = progress.step("host kernel settings for the kubelet");
    let changes = sysctl::to_change()?;
    for (key, old, want) in &changes {
        st.record(Resource::Sysctl {
            key: key.clone(),
            old: old.clone(),
        })?;
        sysctl::write(key, want)?;
    }
    step.done(if changes.is_empty() {
        "already set".to_string()
    } else {
        changes
            .iter()
            .map(|(k, _, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    });

    let step = progress.step("keys and certificates");
    let client = keys::generate("breakfix-sandbox")?;
    keys::write_pair(&client, &dir.join(CLIENT_KEY))?;
    fsutil::mkdir_mode(&dir.join("ssh"), 0o700)?;
    let authorized = keys::public_line(&client)?;
    // One key for root on every node, trusted by every node, with every node's host key in
    // root's known_hosts: `ssh controlplane02` and `scp` work from node to node, verified, as
    // on Killercoda's multi-node environments (lab steps copy a snapshot to other members).
    let node_root_key = keys::generate("root@breakfix-sandbox-node")?;
    let node_root_private = keys::private_openssh(&node_root_key)?;
    let node_root_public = keys::public_line(&node_root_key)?;
    // kubeadm makes the cluster's PKI. Only the external topology's etcd needs certificates
    // before kubeadm runs (kubeadm's external-etcd layout: etcd's CA, server, peer and
    // health-check certificates, and the API server's etcd client certificate).
    let pki = pki::Pki::generate()?;
    let mut known_hosts = String::new();
    let mut configs = Vec::new();
    for n in &st.nodes {
        let host_key = keys::generate(&format!("root@{}", n.name))?;
        known_hosts.push_str(&keys::known_hosts_line(&n.name, n.ip, &host_key)?);
        known_hosts.push('\n');
        let files: Vec<pki::PkiFile> = if st.topology == Topology::External && n.runs_etcd() {
            pki.node_files(n)?
                .into_iter()
                .filter(|f| {
                    f.rel.starts_with("pki/etcd/")
                        || f.rel.starts_with("pki/apiserver-etcd-client.")
                })
                .collect()
        } else {
            vec![]
        };
        for f in &files {
            if let Some(rel) = f.rel.strip_prefix("pki/") {
                fsutil::write_file(&dir.join(HOST_PKI).join(rel), &f.bytes, f.mode)?;
            }
        }
        configs.push((
            keys::private_openssh(&host_key)?,
            keys::public_line(&host_key)?,
            files,
        ));
    }
    fsutil::write_file(&dir.join(KNOWN_HOSTS), known_hosts.as_bytes(), 0o644)?;
    step.done(if st.topology == Topology::External {
        "ed25519 keys, external etcd's PKI"
    } else {
        "ed25519 keys (kubeadm makes the PKI)"
    });

    // Prepare every root first, then boot them all, then wait for all: boots overlap.
    let nodes = st.nodes.clone();
    let single = nodes.len() == 1;
    let etcd_members: Vec<std::net::Ipv4Addr> = nodes
        .iter()
        .filter(|n| n.runs_etcd())
        .map(|n| n.ip)
        .collect();
    // Several control planes: kubeadm's HA layout behind the load balancer on the bridge.
    let ha = (nodes.iter().filter(|n| n.is_control_plane()).count() > 1)
        .then(|| kubeadm::Ha::new(super::host_addr()));
    let pause = kube_images::pause_image(pins);
    let mut lowers = Vec::new();
    if let Some(l) = &st.node_layer {
        lowers.push(l.clone());
    }
    lowers.push(st.image.clone());
    let mut booted = Vec::new();
    for (i, (n, (hk_priv, hk_pub, files))) in nodes.iter().zip(configs).enumerate() {
        let step = progress.step(format!("node {}", n.name));
        step.set_message("preparing root");
        let paths = NodePaths::new(&dir, &n.name);
        node::mount_root(st, &paths, &lowers).await?;
        let cfg = NodeConfig {
            node: n,
            all: &nodes,
            topology: st.topology,
            host_key_private: hk_priv,
            host_key_public: hk_pub,
            authorized_keys: vec![authorized.clone(), node_root_public.clone()],
            root_key_private: node_root_private.clone(),
            known_hosts: known_hosts.clone(),
            pki: files,
            runtime: runtime::node_files(i, &pause),
            kubeadm_config: (i == 0).then(|| {
                kubeadm::init_config(n, &etcd_members, st.topology, pins, single, ha.as_ref())
            }),
        };
        node::write_config(&paths.root, &cfg)?;
        let containerd = paths.dir.join("containerd");
        fsutil::mkdir_mode(&containerd, 0o711)?;
        let mut binds = vec![
            node::Bind {
                host: containerd,
                inside: runtime::CONTAINERD_DIR.into(),
                read_only: false,
            },
            node::Bind {
                host: images.common.clone(),
                inside: format!("{}/common", runtime::IMAGES_DIR),
                read_only: true,
            },
        ];
        if n.is_control_plane() {
            binds.push(node::Bind {
                host: images.control_plane.clone(),
                inside: format!("{}/control-plane", runtime::IMAGES_DIR),
                read_only: true,
            });
        }
        if n.runs_etcd() {
            step.set_message("etcd data disk");
            let (file, mnt) = loopdev::paths(&paths.dir);
            loopdev::setup(st, &file, &mnt).await?;
            binds.push(node::Bind {
                host: mnt,
                inside: super::etcd_unit::DATA_DIR.into(),
                read_only: false,
            });
        }
        step.set_message("booting");
        let pid = node::boot(st, n, &paths, &binds)?;
        booted.push((n.clone(), paths, pid, step));
    }

    let topology = st.topology;
    let checks = booted.iter().map(|(n, paths, pid, step)| {
        let pki_dir = dir.join(HOST_PKI);
        async move {
            let r = wait_ready(n, paths, *pid, step, &pki_dir, topology).await;
            match &r {
                Ok(()) => step.done(format!("booted at {}", n.ip)),
                Err(_) => step.fail("not ready"),
            }
            r
        }
    });
    let results = futures::future::join_all(checks).await;
    let mut errors = Vec::new();
    for ((n, _, pid, _), r) in booted.iter().zip(results) {
        match r {
            Ok(()) => {
                node::record_init(st, &n.name, *pid)?;
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        return Err(Error::other(errors.join("\n")));
    }
    if let Some(h) = &ha {
        let step = progress.step("load balancer");
        step.set_message("haproxy");
        match super::lb::start(st, h.endpoint).await {
            Ok(pid) => step.done(format!(
                "haproxy (pid {pid}) on {}:{} for {} control planes",
                h.endpoint,
                super::lb::PORT,
                etcd_members.len()
            )),
            Err(e) => {
                step.fail("not started");
                return Err(e);
            }
        }
    }
    kubeadm_cluster(st, progress, ha.as_ref()).await?;

    let inv = inventory(st);
    inv.save(&dir.join("inventory.yaml"))?;
    st.set_phase(Phase::Ready)?;
    Ok(())
}

async fn wait_ready(
    n: &NodeSpec,
    paths: &NodePaths,
    pid: i32,
    step: &super::progress::Step,
    pki_dir: &Path,
    topology: Topology,
) -> Result<()> {
    let start = procs::stat(pid).map(|(s, _)| s).unwrap_or(0);
    let alive = || procs::is_same_alive(pid, start);
    let hint = |e: Error| {
        Error::other(format!(
            "node {} ({}): {e}\n  console log: {}\n  last lines:\n{}",
            n.name,
            n.ip,
            paths.console_log.display(),
            indent(&node::console_tail(paths, 8))
        ))
    };
    step.set_message("waiting for sshd");
    readiness::wait_for("sshd on port 22", readiness::SSH_TIMEOUT, alive, || {
        readiness::ssh_banner(n.ip, Duration::from_secs(2))
    })
    .await
    .map_err(hint)?;
    if topology == Topology::External && n.roles.iter().any(|r| r == "etcd") {
        step.set_message("waiting for etcd");
        readiness::wait_for("etcd on port 2379", readiness::ETCD_TIMEOUT, alive, || {
            readiness::etcd_status(n.ip, pki_dir, Duration::from_secs(3))
        })
        .await
        .map_err(|e| {
            hint(Error::other(format!(
                "{e}\n  (inside the node: `journalctl -u etcd`, `systemctl status etcd`)"
            )))
        })?;
    }
    Ok(())
}

/// The SSH connection the sandbox itself uses to run kubeadm on a node.
async fn connect(st: &State, n: &NodeSpec) -> Result<SshTransport> {
    let inv = inventory(st);
    let node = inv
        .node(&n.name)
        .ok_or_else(|| Error::other(format!("internal: no node {} in the inventory", n.name)))?;
    SshTransport::connect(node, Duration::from_secs(20)).await
}

/// kubeadm for real, once every node booted: `kubeadm init` on the control plane (the host
/// keeps copies of admin.conf and the PKI), `kubeadm join` on every worker, then the wait for
/// the API server's `/readyz` and every Node `Ready`, and seed 000's workloads applied and
/// `critical-app` 3/3 ready.
async fn kubeadm_cluster(st: &State, progress: &Progress, ha: Option<&kubeadm::Ha>) -> Result<()> {
    let Some(cp) = st.nodes.iter().find(|n| n.is_control_plane()) else {
        return Err(Error::other("internal: no control-plane node planned"));
    };
    let paths = NodePaths::new(&st.dir, &cp.name);
    let step = progress.step(format!("kubeadm init on {}", cp.name));
    step.set_message(format!("kubeadm init --config {}", kubeadm::CONFIG_PATH));
    let t = connect(st, cp).await?;
    if let Err(e) = kubeadm::init(&t, ha.is_some()).await {
        step.fail("failed");
        return Err(e);
    }
    copy_admin_files(&st.dir, &paths)?;
    step.done("control plane up");

    // Further control planes join one at a time (each adds an etcd member when stacked, and
    // etcd adds members one by one), then the workers all at once.
    if let Some(h) = ha {
        let join_line = kubeadm::join_command(&t).await?;
        for n in st.nodes.iter().skip(1).filter(|n| n.is_control_plane()) {
            let step = progress.step(format!("kubeadm join --control-plane on {}", n.name));
            step.set_message("kubeadm join --control-plane");
            let r = async {
                let nt = connect(st, n).await?;
                kubeadm::join_control_plane(&nt, &join_line, n, h).await
            }
            .await;
            match r {
                Ok(_) => step.done("joined"),
                Err(e) => {
                    step.fail("failed");
                    return Err(e);
                }
            }
        }
    }
    let workers: Vec<&NodeSpec> = st.nodes.iter().filter(|n| !n.is_control_plane()).collect();
    if !workers.is_empty() {
        let join_line = kubeadm::join_command(&t).await?;
        let joins = workers.iter().map(|w| {
            let step = progress.step(format!("kubeadm join on {}", w.name));
            let join_line = join_line.clone();
            async move {
                step.set_message("kubeadm join");
                let r = async {
                    let wt = connect(st, w).await?;
                    kubeadm::join(&wt, &join_line, w).await
                }
                .await;
                match &r {
                    Ok(_) => step.done("joined"),
                    Err(_) => step.fail("failed"),
                }
                r
            }
        });
        let errors: Vec<String> = futures::future::join_all(joins)
            .await
            .into_iter()
            .filter_map(|r| r.err().map(|e| e.to_string()))
            .collect();
        if !errors.is_empty() {
            return Err(Error::other(errors.join("\n")));
        }
    }

    let conf_path = st.dir.join(HOST_ADMIN_CONF);
    let conf = std::fs::read_to_string(&conf_path).map_err(|e| Error::Io {
        context: format!("reading {}", conf_path.display()),
        source: e,
    })?;
    let call = Duration::from_secs(5);
    let client = kubeapi::client(&conf, call).await?;
    let step = progress.step("nodes Ready");
    let want = st.nodes.len();
    let last = std::sync::Mutex::new(Vec::new());
    let ready = kubeapi::poll("every node Ready", NODES_READY_TIMEOUT, || async {
        let nodes = kubeapi::nodes_ready(&client, call).await?;
        step.set_message(format!(
            "{}/{want} Ready",
            nodes.iter().filter(|(_, r)| *r).count()
        ));
        let ok = nodes.len() == want && nodes.iter().all(|(_, r)| *r);
        if let Ok(mut l) = last.lock() {
            *l = nodes;
        }
        Ok(ok)
    })
    .await;
    if let Err(e) = ready {
        step.fail("not ready");
        let seen = last.lock().map(|l| format!("{l:?}")).unwrap_or_default();
        return Err(Error::other(format!(
            "{e}\n  nodes (name, Ready): {seen}\n{}",
            node_hint(&t).await
        )));
    }
    step.done(format!("{want}/{want} Ready"));

    let step = progress.step("seed 000 workloads");
    let workloads = async {
        step.set_message("applying");
        // The controller manager creates each namespace's `default` ServiceAccount a moment
        // after the API comes up; pods are refused until then.
        kubeapi::poll("seed 000 workloads applied", WORKLOADS_TIMEOUT, || async {
            kubeapi::apply(&client, kubeapi::WORKLOADS, call)
                .await
                .map(|_| true)
        })
        .await?;
        step.set_message("waiting for deployment critical-app 3/3");
        kubeapi::poll(
            "deployment critical-app 3/3 ready",
            WORKLOADS_TIMEOUT,
            || async {
                kubeapi::ready_replicas(&client, "default", "critical-app", call)
                    .await
                    .map(|n| n >= 3)
            },
        )
        .await
    };
    match workloads.await {
        Ok(()) => {
            step.done("critical-app 3/3, critical-app-service, kube-system/cluster-monitor");
            Ok(())
        }
        Err(e) => {
            step.fail("not ready");
            Err(Error::other(format!(
                "node {} ({}): seed 000 workloads: {e}\n{}",
                cp.name,
                cp.ip,
                node_hint(&t).await
            )))
        }
    }
}

/// Copies admin.conf and /etc/kubernetes/pki from the control plane's root (the host sees
/// it through the overlay mount) into the state directory.
fn copy_admin_files(dir: &Path, cp: &NodePaths) -> Result<()> {
    let conf = cp.root.join("etc/kubernetes/admin.conf");
    let bytes = std::fs::read(&conf).map_err(super::fsutil::io_err(format!(
        "reading {} (kubeadm init should have written it)",
        conf.display()
    )))?;
    fsutil::write_file(&dir.join(HOST_ADMIN_CONF), &bytes, 0o600)?;
    copy_tree(&cp.root.join("etc/kubernetes/pki"), &dir.join(HOST_PKI))
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let rd = std::fs::read_dir(from)
        .map_err(super::fsutil::io_err(format!("reading {}", from.display())))?;
    for e in rd.flatten() {
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            copy_tree(&p, &dest)?;
        } else if p.is_file() {
            let bytes = std::fs::read(&p)
                .map_err(super::fsutil::io_err(format!("reading {}", p.display())))?;
            fsutil::write_file(&dest, &bytes, 0o600)?;
        }
    }
    Ok(())
}

/// What to look at when the cluster does not come up: the containers crictl lists on the
/// control plane and the kubelet's last log lines, read over SSH.
async fn node_hint(t: &SshTransport) -> String {
    let limit = Duration::from_secs(15);
    let run = |c: &'static str| async move {
        match t.exec(c, None, limit).await {
            Ok(o) => format!("{}{}", o.stdout, o.stderr),
            Err(e) => e.to_string(),
        }
    };
    format!(
        "  on {}: `crictl ps -a`:\n{}\n  `journalctl -u kubelet` (last lines):\n{}",
        t.host(),
        indent(&run("crictl ps -a 2>&1").await),
        indent(&run("journalctl -u kubelet --no-pager -n 12 -o cat 2>&1").await)
    )
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The inventory the engine reads: one entry per node (root over SSH with the sandbox's key,
/// host keys pinned in known_hosts), etcd's endpoint and TLS file paths on the control plane.
pub fn inventory(st: &State) -> Inventory {
    let pki = super::etcd_unit::PKI_DIR;
    Inventory {
        api_version: "breakfix/v1".into(),
        kind: "Inventory".into(),
        cluster: Cluster {
            name: "breakfix-sandbox".into(),
            topology: st.topology,
            etcd: EtcdInfo {
                endpoints: vec![format!(
                    "https://127.0.0.1:{}",
                    super::etcd_unit::CLIENT_PORT
                )],
                ca_file: format!("{pki}/ca.crt"),
                cert_file: format!("{pki}/server.crt"),
                key_file: format!("{pki}/server.key"),
            },
            kubeconfig: Some("/etc/kubernetes/admin.conf".into()),
        },
        nodes: st
            .nodes
            .iter()
            .map(|n| Node {
                name: n.name.clone(),
                address: n.ip.to_string(),
                port: 22,
                user: "root".into(),
                identity_file: Some(st.dir.join(CLIENT_KEY)),
                known_hosts: Some(st.dir.join(KNOWN_HOSTS)),
                roles: n.roles.clone(),
                transport: TransportKind::Ssh,
            })
            .collect(),
    }
}

/// Removes the sandbox: ends its processes, unmounts, detaches loop devices, deletes the
/// bridge and the state directory. Works from whatever `up` managed to record. The image
/// cache stays. Returns `false` when there was no sandbox.
///
/// Errors: not root; a resource could not be removed (the state is kept so `down` can be run
/// again; the message lists every failure).
pub async fn down() -> Result<bool> {
    preflight::require_root()?;
    let dir = state_dir();
    let _lock = Lock::acquire(&dir)?;
    let progress = Progress::new();
    match State::load(&dir)? {
        Some(st) => {
            let r = teardown(st, &progress).await;
            progress.finish();
            r.map(|()| true)
        }
        None => {
            if dir.exists() {
                fsutil::remove_tree(&dir)?;
                Ok(true)
            } else {
                Ok(false)
            }
        }
    }
}

async fn teardown(mut st: State, progress: &Progress) -> Result<()> {
    let mut errors: Vec<String> = Vec::new();
    // Faults still journaled for these nodes are undone while they run, the rest set aside
    // once they are gone (see `super::journal`).
    let machine_ids = super::journal::machine_ids(&st);
    let running = st.phase == Phase::Ready && procs::all_nodes_running(&st);
    super::journal::before_teardown(&st, running, progress).await;
    st.set_phase(Phase::Removing)?;

    // Helper commands an `up` that was killed may have left running finish first.
    let helpers = procs::helpers_running(&st);
    if !helpers.is_empty() {
        let _ = procs::wait_gone(&helpers, Duration::from_secs(30)).await;
    }
    let step = progress.step("stop nodes");
    // Nodes whose nspawn is already gone (killed without `down`) cannot power off: what is
    // left of them (their PID 1 and everything under it) is killed at once, which is expected
    // and not worth their console.
    let dead_before = dead_nodes(&st);
    let ended = procs::end_all(&st, STOP_GRACE).await;
    if !ended.killed.is_empty() {
        let mut names: Vec<String> = st
            .resources
            .iter()
            .filter_map(|r| match r {
                Resource::Process { node, pid, .. } if ended.killed.contains(pid) => {
                    Some(node.clone())
                }
                _ => None,
            })
            .collect();
        names.sort();
        names.dedup();
        let (orphaned, hung): (Vec<String>, Vec<String>) =
            names.into_iter().partition(|n| dead_before.contains(n));
        if !orphaned.is_empty() {
            progress.println(format!(
                "note: killed what was left of node(s) {orphaned:?} (their systemd-nspawn had died)"
            ));
        }
        if !hung.is_empty() {
            progress.println(format!(
                "note: node(s) {hung:?} did not power off within {}s and were killed (pids {:?})",
                STOP_GRACE.as_secs(),
                ended.killed
            ));
        }
        for n in &hung {
            let paths = NodePaths::new(&st.dir, n);
            progress.println(format!(
                "  last console lines of {n}:\n{}",
                indent(&node::console_tail(&paths, 15))
            ));
        }
    }
    if ended.left.is_empty() {
        step.done("stopped");
    } else {
        step.fail(format!("still running: {:?}", ended.left));
        errors.push(format!("processes that would not die: {:?}", ended.left));
    }

    let step = progress.step("remove mounts, loop devices, bridge");
    // The kubelet's host settings are shared by every instance: while another one is up they
    // stay, and its state takes over the old values, so the last `down` puts them back.
    let heir = other_instance_up(&st.dir);
    for r in st.resources.iter().rev() {
        if let (Resource::Sysctl { key, old }, Some(heir)) = (r, &heir) {
            if let Err(e) = hand_over(heir, key, old) {
                errors.push(e.to_string());
            }
            continue;
        }
        let res = match r {
            Resource::Process { .. } => Ok(()),
            Resource::Mount { target } => unmount(target).await,
            Resource::LoopDevice { file, .. } => loopdev::detach(file).await,
            Resource::Cgroup { path } => super::cgroup::remove(path, Duration::from_secs(10)).await,
            Resource::Bridge { name } => network::delete_bridge(name).await,
            Resource::Sysctl { key, old } => sysctl::write(key, old),
        };
        if let Err(e) = res {
            errors.push(e.to_string());
        }
    }
    // Belt and braces: nothing of ours may stay mounted or attached, recorded or not.
    image::unmount_all_under(&st.dir).await;
    for n in &st.nodes {
        // What a killed systemd-nspawn could not clean up: the veth pair (see
        // `network::delete_node_veth`) and its per-machine propagation directory, which makes
        // the next nspawn of that name fail ("Attempted to remove disk file system under
        // /run/systemd/nspawn/propagate/<machine>").
        if let Err(e) = network::delete_node_veth(n.machine()).await {
            errors.push(e.to_string());
        }
        let propagate = Path::new(NSPAWN_PROPAGATE_DIR).join(n.machine());
        if let Err(e) = fsutil::remove_tree(&propagate) {
            errors.push(e.to_string());
        }
        let (file, _) = loopdev::paths(&st.node_dir(&n.name));
        if let Err(e) = loopdev::detach(&file).await {
            errors.push(e.to_string());
        }
    }
    if errors.is_empty() {
        step.done("done");
    } else {
        step.fail("some resources remain");
        return Err(Error::other(format!(
            "`sandbox down` could not remove everything (state kept in {}; run it again after fixing):\n  {}",
            st.dir.display(),
            errors.join("\n  ")
        )));
    }
    super::journal::after_teardown(&st, &machine_ids, progress);
    let step = progress.step("remove files");
    fsutil::remove_tree(&st.dir)?;
    step.done(st.dir.display().to_string());
    Ok(())
}

async fn unmount(target: &Path) -> Result<()> {
    if !fsutil::is_mounted(target) {
        return Ok(());
    }
    if super::cmd::run("umount", &[target.as_os_str()])
        .await
        .is_ok()
    {
        return Ok(());
    }
    // Busy (a straggler still has it open): detach it lazily; it goes when the last user does.
    super::cmd::run("umount", &["-l".as_ref(), target.as_os_str()]).await?;
    Ok(())
}

/// The sandbox's status now: containers alive, sshd answering, etcd answering (each check
/// bounded by a couple of seconds). Never fails: an unreadable state shows as `partial`.
pub async fn status() -> StatusReport {
    match State::load(&state_dir()) {
        Ok(st) => report(st.as_ref()).await,
        Err(_) => StatusReport {
            state: "partial".into(),
            instance: super::instance(),
            state_dir: state_dir(),
            inventory: None,
            topology: None,
            created: None,
            nodes: vec![],
            ssh_example: None,
            load_balancer: None,
        },
    }
}

/// One bounded `/readyz` through the host copy of admin.conf.
async fn api_ready(dir: &Path, ip: std::net::Ipv4Addr) -> bool {
    let Ok(conf) = std::fs::read_to_string(dir.join(HOST_ADMIN_CONF)) else {
        return false;
    };
    let limit = Duration::from_secs(3);
    match kubeapi::client_at(&conf, ip, limit).await {
        Ok(c) => kubeapi::readyz(&c, limit).await.is_ok(),
        Err(_) => false,
    }
}

async fn report(st: Option<&State>) -> StatusReport {
    let Some(st) = st else {
        return StatusReport {
            state: "down".into(),
            instance: super::instance(),
            state_dir: state_dir(),
            inventory: None,
            topology: None,
            created: None,
            nodes: vec![],
            ssh_example: None,
            load_balancer: None,
        };
    };
    let pki_dir = st.dir.join(HOST_PKI);
    let checks = st.nodes.iter().map(|n| {
        let pid = st
            .processes_of(&n.name)
            .find(|(k, p, s)| *k == ProcKind::Nspawn && procs::is_same_alive(*p, *s))
            .map(|(_, p, _)| p);
        let pki_dir = pki_dir.clone();
        async move {
            let running = pid.is_some();
            let (ssh, etcd, apiserver) = if running {
                let ssh = readiness::ssh_banner(n.ip, Duration::from_secs(2));
                let etcd = async {
                    if n.roles.iter().any(|r| r == "etcd") {
                        readiness::etcd_status(n.ip, &pki_dir, Duration::from_secs(3))
                            .await
                            .ok()
                    } else {
                        None
                    }
                };
                let api = async {
                    if n.is_control_plane() {
                        Some(api_ready(&st.dir, n.ip).await)
                    } else {
                        None
                    }
                };
                let (s, e, a) = tokio::join!(ssh, etcd, api);
                (s.is_ok(), e, a)
            } else {
                (false, None, None)
            };
            NodeStatus {
                name: n.name.clone(),
                address: n.ip.to_string(),
                roles: n.roles.clone(),
                pid,
                running,
                ssh,
                etcd,
                apiserver,
                console_log: NodePaths::new(&st.dir, &n.name).console_log,
            }
        }
    });
    let nodes = futures::future::join_all(checks).await;
    let all_running = !nodes.is_empty() && nodes.iter().all(|n| n.running);
    let state = match st.phase {
        Phase::Ready if all_running => "up",
        Phase::Creating => "creating",
        _ => "partial",
    };
    let inventory = (state == "up").then(|| st.dir.join("inventory.yaml"));
    let load_balancer = st.resources.iter().find_map(|r| match r {
        Resource::Process {
            what: ProcKind::LoadBalancer,
            pid,
            start_time,
            ..
        } => Some(if procs::is_same_alive(*pid, *start_time) {
            format!(
                "https://{}:{} (haproxy, pid {pid})",
                super::host_addr(),
                super::lb::PORT
            )
        } else {
            format!(
                "https://{}:{} (haproxy not running: `breakfix sandbox up --recreate`)",
                super::host_addr(),
                super::lb::PORT
            )
        }),
        _ => None,
    });
    let ssh_example = (state == "up").then(|| {
        format!(
            "ssh -i {} -o UserKnownHostsFile={} root@{}",
            st.dir.join(CLIENT_KEY).display(),
            st.dir.join(KNOWN_HOSTS).display(),
            st.nodes
                .first()
                .map(|n| n.ip.to_string())
                .unwrap_or_default()
        )
    });
    StatusReport {
        state: state.into(),
        instance: super::instance(),
        state_dir: st.dir.clone(),
        inventory,
        topology: Some(st.topology),
        created: Some(st.created.clone()),
        nodes,
        ssh_example,
        load_balancer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table_shows_the_api_server_for_stacked() {
        let report = StatusReport {
            state: "up".into(),
            instance: 0,
            state_dir: "/var/lib/breakfix/sandbox".into(),
            inventory: None,
            topology: Some(Topology::Stacked),
            created: Some("now".into()),
            nodes: vec![NodeStatus {
                name: "controlplane".into(),
                address: "198.18.0.11".into(),
                roles: vec!["control-plane".into(), "etcd".into()],
                pid: Some(1),
                running: true,
                ssh: true,
                etcd: Some("3.4.23".into()),
                apiserver: Some(true),
                console_log: "/x".into(),
            }],
            ssh_example: None,
            load_balancer: Some("https://198.18.0.1:6443 (haproxy, pid 7)".into()),
        };
        let text = report.render_human();
        assert!(
            text.contains("api:       https://198.18.0.1:6443 (haproxy, pid 7)\n"),
            "{text}"
        );
        assert!(text.contains(" API"), "{text}");
        assert!(text.contains(" ready"), "{text}");
        assert!(text.contains("kubectl --kubeconfig /var/lib/breakfix/sandbox/admin.conf"));
    }
}
