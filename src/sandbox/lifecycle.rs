//! Lifecycle: `up` (preflight, image, bridge, keys and PKI, node roots, boot, readiness,
//! and for the stacked topology the API server's readiness and seed 000's workloads;
//! inventory), `down` (processes, mounts, loop devices, bridge, files: in reverse order of
//! the state record) and `status` (what runs and answers now).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::fsutil;
use super::node::{self, NodeConfig, NodePaths};
use super::progress::Progress;
use super::state::{Lock, Phase, ProcKind, Resource, State};
use super::{
    binaries, image, image_dir, keys, kubeapi, loopdev, manifests, network, pki, plan_nodes,
    preflight, procs, readiness, state_dir, NodeSpec, BRIDGE,
};
use crate::error::{Error, Result};
use crate::inventory::{Cluster, EtcdInfo, Inventory, Node, Topology, TransportKind};

/// Options of `sandbox up`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpOptions {
    /// Number of nodes (1 control plane + workers), 1..=[`super::MAX_NODES`].
    pub nodes: u8,
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
            topology: Topology::External,
            recreate: false,
        }
    }
}

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
/// Bound on waiting for the API server's /readyz once etcd answers (stacked topology).
pub const APISERVER_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on waiting for seed 000's `critical-app` to be 3/3 ready once applied.
pub const WORKLOADS_TIMEOUT: Duration = Duration::from_secs(60);

/// The sandbox as it is now (`sandbox status`, and what `up` prints at the end).
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// `up` (every node running), `down` (no sandbox), `partial` (some resources exist but
    /// not every node runs: run `sandbox down`), `creating` (an `up` is under way or died).
    pub state: String,
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
        s.push_str(&format!("state:     {}\n", self.state_dir.display()));
        if let Some(inv) = &self.inventory {
            s.push_str(&format!("inventory: {}\n", inv.display()));
        }
        let stacked = self.topology == Some(Topology::Stacked);
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
        if stacked && self.state == "up" {
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
/// Errors: preflight failures (not root, tools missing, no space, network taken, stand-in
/// binaries missing for the stacked topology), a sandbox of the other topology is up (without
/// [`UpOptions::recreate`]), image build failures, a node that does not become ready in time
/// (named, with its console log), the API server or the workloads not ready in time (stacked).
pub async fn up(opts: &UpOptions) -> Result<StatusReport> {
    preflight::require_root()?;
    preflight::require_tools()?;
    preflight::require_overlayfs()?;
    let standins = match opts.topology {
        Topology::Stacked => Some(binaries::find()?),
        Topology::External => None,
    };
    let nodes = plan_nodes(opts.nodes)?;
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
                    topology_name(old.topology),
                    old.nodes.len(),
                    topology_name(opts.topology),
                )));
            }
            if old.nodes.len() != nodes.len() {
                progress.println(format!(
                    "note: the sandbox is already up with {} node(s) ({} topology); `breakfix sandbox down` first (or `up --recreate`) to change it",
                    old.nodes.len(),
                    topology_name(old.topology)
                ));
            }
            return Ok(report(Some(&old)).await);
        }
        if running {
            progress.println(format!(
                "--recreate: removing the sandbox that is up ({} topology, {} node(s))",
                topology_name(old.topology),
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
    network::check_free(BRIDGE, false).await?;

    let step = progress.step("node image");
    let image = match image::ensure(&imgdir, &step).await {
        Ok(i) => {
            step.done("ready");
            i
        }
        Err(e) => {
            step.fail("build failed");
            progress.finish();
            return Err(e);
        }
    };

    fsutil::mkdir_mode(&dir, 0o755)?;
    let mut st = State::new(&dir, opts.topology, nodes, image);
    st.save()?;
    let built = build(&mut st, &progress, standins).await;
    progress.finish();
    match built {
        Ok(()) => Ok(report(Some(&st)).await),
        Err(e) => Err(Error::other(format!(
            "{e}\nThe half-built sandbox is left in place for inspection (state in {}); `breakfix sandbox down` removes it.",
            dir.display()
        ))),
    }
}

/// `external` / `stacked`, as the CLI spells them.
pub fn topology_name(t: Topology) -> &'static str {
    match t {
        Topology::External => "external",
        Topology::Stacked => "stacked",
    }
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

async fn build(
    st: &mut State,
    progress: &Progress,
    standins: Option<binaries::StandIns>,
) -> Result<()> {
    let dir = st.dir.clone();

    let step = progress.step("network");
    st.record(Resource::Bridge {
        name: BRIDGE.into(),
    })?;
    network::create_bridge(BRIDGE).await?;
    step.done(format!(
        "bridge {BRIDGE} {}/{}",
        super::HOST_ADDR,
        super::PREFIX_LEN
    ));

    let step = progress.step("keys and certificates");
    let client = keys::generate("breakfix-sandbox")?;
    keys::write_pair(&client, &dir.join(CLIENT_KEY))?;
    fsutil::mkdir_mode(&dir.join("ssh"), 0o700)?;
    let authorized = keys::public_line(&client)?;
    let pki = pki::Pki::generate()?;
    let mut known_hosts = String::new();
    let mut configs = Vec::new();
    for n in &st.nodes {
        let host_key = keys::generate(&format!("root@{}", n.name))?;
        known_hosts.push_str(&keys::known_hosts_line(&n.name, n.ip, &host_key)?);
        known_hosts.push('\n');
        let files = pki.node_files(n)?;
        if n.is_control_plane() {
            for f in &files {
                if let Some(rel) = f.rel.strip_prefix("pki/") {
                    fsutil::write_file(&dir.join(HOST_PKI).join(rel), &f.bytes, f.mode)?;
                } else if f.rel == "admin.conf" {
                    fsutil::write_file(&dir.join(HOST_ADMIN_CONF), &f.bytes, f.mode)?;
                }
            }
        }
        configs.push((
            keys::private_openssh(&host_key)?,
            keys::public_line(&host_key)?,
            files,
        ));
    }
    fsutil::write_file(&dir.join(KNOWN_HOSTS), known_hosts.as_bytes(), 0o644)?;
    step.done("ed25519 keys, kubeadm PKI");

    // Prepare every root first, then boot them all, then wait for all: boots overlap.
    let nodes = st.nodes.clone();
    let mut booted = Vec::new();
    for (n, (hk_priv, hk_pub, files)) in nodes.iter().zip(configs) {
        let step = progress.step(format!("node {}", n.name));
        step.set_message("preparing root");
        let paths = NodePaths::new(&dir, &n.name);
        let image = st.image.clone();
        node::mount_root(st, &paths, &image).await?;
        let cfg = NodeConfig {
            node: n,
            all: &nodes,
            topology: st.topology,
            host_key_private: hk_priv,
            host_key_public: hk_pub,
            authorized_key: authorized.clone(),
            pki: files,
            standins: standins.clone(),
        };
        node::write_config(&paths.root, &cfg)?;
        let mut binds: Vec<(PathBuf, &str)> = Vec::new();
        if n.is_control_plane() {
            step.set_message("etcd data disk");
            let (file, mnt) = loopdev::paths(&paths.dir);
            loopdev::setup(st, &file, &mnt).await?;
            binds.push((mnt, super::etcd_unit::DATA_DIR));
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
                Ok(()) => step.done(format!("ready at {}", n.ip)),
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
    if st.topology == Topology::Stacked {
        control_plane_ready(st, progress).await?;
    }

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
    if n.roles.iter().any(|r| r == "etcd") {
        step.set_message("waiting for etcd");
        readiness::wait_for("etcd on port 2379", readiness::ETCD_TIMEOUT, alive, || {
            readiness::etcd_status(n.ip, pki_dir, Duration::from_secs(3))
        })
        .await
        .map_err(|e| match topology {
            Topology::External => hint(Error::other(format!(
                "{e}\n  (inside the node: `journalctl -u etcd`, `systemctl status etcd`)"
            ))),
            Topology::Stacked => Error::other(format!(
                "node {} ({}): {e}\n{}",
                n.name,
                n.ip,
                static_pod_hint(paths, &n.name, "etcd")
            )),
        })?;
    }
    Ok(())
}

/// Stacked topology, once every node is up and etcd answers: waits for the API server's
/// `/readyz`, applies seed 000's workloads (on a single node after lifting the control
/// plane's NoSchedule taint, as single-node kubeadm clusters do) and waits for
/// `critical-app` to be 3/3 ready.
async fn control_plane_ready(st: &State, progress: &Progress) -> Result<()> {
    let Some(cp) = st.nodes.iter().find(|n| n.is_control_plane()) else {
        return Err(Error::other("internal: no control-plane node planned"));
    };
    let paths = NodePaths::new(&st.dir, &cp.name);
    let conf_path = st.dir.join(HOST_ADMIN_CONF);
    let conf = std::fs::read_to_string(&conf_path).map_err(|e| Error::Io {
        context: format!("reading {}", conf_path.display()),
        source: e,
    })?;
    let call = Duration::from_secs(5);
    let client = kubeapi::client(&conf, call).await?;

    let step = progress.step("kube-apiserver (stand-in)");
    step.set_message(format!("waiting for https://{}:6443/readyz", cp.ip));
    let ready = kubeapi::poll("kube-apiserver /readyz", APISERVER_TIMEOUT, || async {
        kubeapi::readyz(&client, call).await.map(|()| true)
    })
    .await;
    if let Err(e) = ready {
        step.fail("not ready");
        return Err(Error::other(format!(
            "node {} ({}): {e}\n{}",
            cp.name,
            cp.ip,
            static_pod_hint(&paths, &cp.name, "kube-apiserver")
        )));
    }
    step.done("ready (/readyz 200)");

    let step = progress.step("seed 000 workloads");
    let workloads = async {
        if st.nodes.len() == 1 {
            step.set_message(format!("untainting {}", cp.name));
            kubeapi::poll(
                "the control-plane Node object",
                APISERVER_TIMEOUT,
                || async {
                    kubeapi::untaint(&client, &cp.name, call)
                        .await
                        .map(|()| true)
                },
            )
            .await?;
        }
        step.set_message("applying");
        kubeapi::apply(&client, kubeapi::WORKLOADS, call).await?;
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
                static_pod_hint(&paths, &cp.name, "kube-apiserver")
            )))
        }
    }
}

/// What to look at when a static pod of the stacked topology does not become ready: the
/// kubelet stand-in's view of the pod (from its status file) and the tail of the pod's
/// newest container log, both read through the host's view of the node's root, plus where
/// to look inside the node.
pub fn static_pod_hint(paths: &NodePaths, node: &str, container: &str) -> String {
    let pod = format!("{container}-{node}");
    let mut s = String::new();
    let status_file = paths
        .root
        .join(manifests::KUBELET_STATUS_FILE.trim_start_matches('/'));
    let state = std::fs::read(&status_file)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            v.get("pods")?
                .as_array()?
                .iter()
                .find(|p| p.get("name").and_then(|n| n.as_str()) == Some(pod.as_str()))
                .cloned()
        });
    match state {
        Some(p) => {
            let c = p
                .pointer("/containers/0")
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            let f = |k: &str| match c.get(k) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            };
            let why = match (f("reason"), f("message")) {
                (r, _) if r.is_empty() => String::new(),
                (r, m) if m.is_empty() => format!(" ({r})"),
                (r, m) => format!(" ({r}: {m})"),
            };
            s.push_str(&format!(
                "  kubelet stand-in: pod kube-system/{pod} phase {}, container {container} {}{why}, last exit code {}, restarts {}\n",
                p.get("phase").and_then(|v| v.as_str()).unwrap_or("?"),
                f("state"),
                f("exit_code"),
                f("restart_count"),
            ));
        }
        None => s.push_str(&format!(
            "  kubelet stand-in: no pod kube-system/{pod} in {} (did the kubelet unit start? is the manifest valid?)\n",
            manifests::KUBELET_STATUS_FILE
        )),
    }
    let logs = paths
        .root
        .join(manifests::POD_LOG_DIR.trim_start_matches('/'));
    let newest = std::fs::read_dir(&logs)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("kube-system_{pod}_"))
        })
        .flat_map(|e| {
            std::fs::read_dir(e.path().join(container))
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max_by_key(|(t, _)| *t)
        .map(|(_, p)| p);
    if let Some(log) = newest {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(6)..].join("\n");
        let inside = log
            .strip_prefix(&paths.root)
            .map(|p| format!("/{}", p.display()))
            .unwrap_or_else(|_| log.display().to_string());
        s.push_str(&format!("  last lines of {inside}:\n{}\n", indent(&tail)));
    }
    s.push_str(&format!(
        "  (inside the node: `journalctl -u kubelet`, `ls /var/log/pods/`, `cat /var/log/pods/kube-system_{pod}_*/{container}/*.log`, `cat /etc/kubernetes/manifests/{}.yaml`)",
        container
    ));
    s
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
    for r in st.resources.iter().rev() {
        let res = match r {
            Resource::Process { .. } => Ok(()),
            Resource::Mount { target } => unmount(target).await,
            Resource::LoopDevice { file, .. } => loopdev::detach(file).await,
            Resource::Cgroup { path } => super::cgroup::remove(path, Duration::from_secs(10)).await,
            Resource::Bridge { name } => network::delete_bridge(name).await,
        };
        if let Err(e) = res {
            errors.push(e.to_string());
        }
    }
    // Belt and braces: nothing of ours may stay mounted or attached, recorded or not.
    image::unmount_all_under(&st.dir).await;
    for n in &st.nodes {
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
            state_dir: state_dir(),
            inventory: None,
            topology: None,
            created: None,
            nodes: vec![],
            ssh_example: None,
        },
    }
}

/// One bounded `/readyz` through the host copy of admin.conf.
async fn api_ready(dir: &Path) -> bool {
    let Ok(conf) = std::fs::read_to_string(dir.join(HOST_ADMIN_CONF)) else {
        return false;
    };
    let limit = Duration::from_secs(3);
    match kubeapi::client(&conf, limit).await {
        Ok(c) => kubeapi::readyz(&c, limit).await.is_ok(),
        Err(_) => false,
    }
}

async fn report(st: Option<&State>) -> StatusReport {
    let Some(st) = st else {
        return StatusReport {
            state: "down".into(),
            state_dir: state_dir(),
            inventory: None,
            topology: None,
            created: None,
            nodes: vec![],
            ssh_example: None,
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
                    if st.topology == Topology::Stacked && n.is_control_plane() {
                        Some(api_ready(&st.dir).await)
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
        state_dir: st.dir.clone(),
        inventory,
        topology: Some(st.topology),
        created: Some(st.created.clone()),
        nodes,
        ssh_example,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_pod_hint_quotes_the_kubelets_view_and_the_pod_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = NodePaths::new(dir.path(), "controlplane");
        let status = serde_json::json!({"node": "controlplane", "pods": [{
            "name": "etcd-controlplane", "namespace": "kube-system", "phase": "Running",
            "containers": [{"name": "etcd", "state": "waiting", "reason": "CrashLoopBackOff",
                "message": "back-off 10s restarting failed container=etcd", "exit_code": 1,
                "restart_count": 2}]}]});
        fsutil::write_file(
            &paths.root.join("var/lib/kubelet/standin-pods.json"),
            status.to_string().as_bytes(),
            0o644,
        )
        .expect("status");
        fsutil::write_file(
            &paths
                .root
                .join("var/log/pods/kube-system_etcd-controlplane_abc/etcd/2.log"),
            b"2026-11-25T12:00:00Z stderr F {\"msg\":\"discovery failed\",\"error\":\"bind: cannot assign requested address\"}\n",
            0o644,
        )
        .expect("log");
        let hint = static_pod_hint(&paths, "controlplane", "etcd");
        assert!(hint.contains("CrashLoopBackOff"), "{hint}");
        assert!(hint.contains("last exit code 1, restarts 2"), "{hint}");
        assert!(
            hint.contains("container etcd waiting (CrashLoopBackOff: back-off 10s"),
            "{hint}"
        );
        assert!(
            hint.contains("/var/log/pods/kube-system_etcd-controlplane_abc/etcd/2.log"),
            "{hint}"
        );
        assert!(
            hint.contains("bind: cannot assign requested address"),
            "{hint}"
        );
        assert!(hint.contains("journalctl -u kubelet"), "{hint}");
        let none = static_pod_hint(&paths, "controlplane", "kube-apiserver");
        assert!(
            none.contains("no pod kube-system/kube-apiserver-controlplane"),
            "{none}"
        );
    }

    #[test]
    fn status_table_shows_the_api_server_for_stacked() {
        let report = StatusReport {
            state: "up".into(),
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
        };
        let text = report.render_human();
        assert!(text.contains(" API"), "{text}");
        assert!(text.contains(" ready"), "{text}");
        assert!(text.contains("kubectl --kubeconfig /var/lib/breakfix/sandbox/admin.conf"));
    }
}
