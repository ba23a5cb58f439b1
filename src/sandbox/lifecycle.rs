//! Lifecycle: `up` (preflight, image, bridge, keys and PKI, node roots, boot, readiness,
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
    image, image_dir, keys, loopdev, network, pki, plan_nodes, preflight, procs, readiness,
    state_dir, NodeSpec, BRIDGE,
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
}

impl Default for UpOptions {
    fn default() -> Self {
        UpOptions {
            nodes: 2,
            topology: Topology::External,
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
        s.push_str(&format!(
            "\n{:<14} {:<13} {:<20} {:<16} {:<5} {}\n",
            "NODE", "ADDRESS", "ROLES", "CONTAINER", "SSH", "ETCD"
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
            s.push_str(&format!(
                "{:<14} {:<13} {:<20} {:<16} {:<5} {}\n",
                n.name,
                n.address,
                n.roles.join(","),
                container,
                if n.ssh { "ok" } else { "no" },
                etcd
            ));
        }
        if self.state == "partial" || self.state == "creating" {
            s.push_str("\nnot every node runs: `breakfix sandbox down` removes what is left, then `up` again\n");
        }
        if let Some(ex) = &self.ssh_example {
            s.push_str(&format!("\nlog in:  {ex}\n"));
        }
        s
    }
}

/// Brings the sandbox up (see docs/sandbox.md), or does nothing but report when it is already
/// up. Leftovers of an `up` that died are removed first. On failure the half-built sandbox
/// is left in place for inspection and the error says how to remove it.
///
/// Errors: preflight failures (not root, tools missing, no space, network taken), image
/// build failures, a node that does not become ready in time (named, with its console log).
pub async fn up(opts: &UpOptions) -> Result<StatusReport> {
    preflight::require_root()?;
    preflight::require_tools()?;
    preflight::require_overlayfs()?;
    if opts.topology == Topology::Stacked {
        return Err(Error::other(
            "`--topology stacked` (etcd and kube-apiserver as static pods run by a kubelet stand-in) is not supported yet (issue 4); use `--topology external`",
        ));
    }
    let nodes = plan_nodes(opts.nodes)?;
    let dir = state_dir();
    let imgdir = image_dir();
    let _lock = Lock::acquire(&dir)?;
    let progress = Progress::new();

    if let Some(old) = State::load(&dir)? {
        if old.phase == Phase::Ready && procs::all_nodes_running(&old) {
            if old.nodes.len() != nodes.len() || old.topology != opts.topology {
                progress.println(format!(
                    "note: the sandbox is already up with {} node(s) ({:?} topology); `breakfix sandbox down` first to change it",
                    old.nodes.len(),
                    old.topology
                ));
            }
            return Ok(report(Some(&old)).await);
        }
        progress.println(format!(
            "found an unfinished sandbox in {} (phase {:?}): removing it first",
            dir.display(),
            old.phase
        ));
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
    let built = build(&mut st, &progress).await;
    progress.finish();
    match built {
        Ok(()) => Ok(report(Some(&st)).await),
        Err(e) => Err(Error::other(format!(
            "{e}\nThe half-built sandbox is left in place for inspection (state in {}); `breakfix sandbox down` removes it.",
            dir.display()
        ))),
    }
}

async fn build(st: &mut State, progress: &Progress) -> Result<()> {
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

    let checks = booted.iter().map(|(n, paths, pid, step)| {
        let pki_dir = dir.join(HOST_PKI);
        async move {
            let r = wait_ready(n, paths, *pid, step, &pki_dir).await;
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
        .map_err(|e| {
            hint(Error::other(format!(
                "{e}\n  (inside the node: `journalctl -u etcd`, `systemctl status etcd`)"
            )))
        })?;
    }
    Ok(())
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
    let ended = procs::end_all(&st, STOP_GRACE).await;
    if !ended.killed.is_empty() {
        let names: Vec<String> = st
            .resources
            .iter()
            .filter_map(|r| match r {
                Resource::Process { node, pid, .. } if ended.killed.contains(pid) => {
                    Some(node.clone())
                }
                _ => None,
            })
            .collect();
        progress.println(format!(
            "note: node(s) {names:?} did not power off within {}s and were killed (pids {:?})",
            STOP_GRACE.as_secs(),
            ended.killed
        ));
        for n in &names {
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
            let (ssh, etcd) = if running {
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
                let (s, e) = tokio::join!(ssh, etcd);
                (s.is_ok(), e)
            } else {
                (false, None)
            };
            NodeStatus {
                name: n.name.clone(),
                address: n.ip.to_string(),
                roles: n.roles.clone(),
                pid,
                running,
                ssh,
                etcd,
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
