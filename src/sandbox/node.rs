//! Node: one sandbox node. Mounts its root (an overlay of the cached image with a private
//! upper layer, so nodes share no state), writes its identity and configuration into it
//! (host name, /etc/hosts, address unit, SSH host key and authorized key, kubeadm PKI, etcd
//! unit), and boots it with `systemd-nspawn` as a detached process that outlives breakfix.

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::fsutil::{self, io_err};
use super::pki::PkiFile;
use super::procs::{self, MARKER_ENV};
use super::state::{ProcKind, Resource, State};
use super::{cgroup, cmd, etcd_unit, kubeadm, runtime, NodeSpec};
use crate::error::Result;
use crate::inventory::Topology;

/// Name of the oneshot unit that sets the node's address on `host0`.
pub const NETWORK_UNIT: &str = "sandbox-network.service";

/// Host-side paths of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePaths {
    /// `<state>/nodes/<name>`.
    pub dir: PathBuf,
    /// The node's root as booted (overlay mount point).
    pub root: PathBuf,
    /// Overlay upper layer: everything the node changed.
    pub upper: PathBuf,
    /// Overlay work directory.
    pub work: PathBuf,
    /// nspawn's output (the node's console): where to look when a node does not come up.
    pub console_log: PathBuf,
}

impl NodePaths {
    /// Paths for node `name` under the state directory.
    pub fn new(state_dir: &Path, name: &str) -> NodePaths {
        let dir = super::state::node_dir(state_dir, name);
        NodePaths {
            root: dir.join("root"),
            upper: dir.join("upper"),
            work: dir.join("work"),
            console_log: dir.join("console.log"),
            dir,
        }
    }
}

/// Mounts the node's root: overlay with `lowers` as the read-only lower layers (topmost
/// first: the node layer of built programs, then the Debian image). The mount is recorded in
/// the state before it is made.
///
/// Errors: directories cannot be created or `mount -t overlay` fails.
pub async fn mount_root(st: &mut State, paths: &NodePaths, lowers: &[PathBuf]) -> Result<()> {
    for d in [&paths.dir, &paths.upper, &paths.work, &paths.root] {
        fsutil::mkdir_mode(d, 0o755)?;
    }
    st.record(Resource::Mount {
        target: paths.root.clone(),
    })?;
    if fsutil::is_mounted(&paths.root) {
        return Ok(());
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers
            .iter()
            .map(|l| l.display().to_string())
            .collect::<Vec<_>>()
            .join(":"),
        paths.upper.display(),
        paths.work.display()
    );
    cmd::run(
        "mount",
        &[
            "-t".as_ref(),
            "overlay".as_ref(),
            "overlay".as_ref(),
            "-o".as_ref(),
            opts.as_ref(),
            paths.root.as_os_str(),
        ] as &[&std::ffi::OsStr],
    )
    .await?;
    Ok(())
}

/// Everything a node needs written into its root before boot.
pub struct NodeConfig<'a> {
    /// This node.
    pub node: &'a NodeSpec,
    /// All nodes (for /etc/hosts and the pod routes).
    pub all: &'a [NodeSpec],
    /// Cluster topology.
    pub topology: Topology,
    /// The node's SSH host key, OpenSSH private format.
    pub host_key_private: String,
    /// The node's SSH host key, public line.
    pub host_key_public: String,
    /// Public key lines root's authorized_keys lists: the sandbox client's and the nodes'
    /// shared root key's.
    pub authorized_keys: Vec<String>,
    /// The private half (OpenSSH format) of the key root uses to reach the other nodes
    /// (`/root/.ssh/id_ed25519`; the same on every node).
    pub root_key_private: String,
    /// known_hosts with every node's host key (`/root/.ssh/known_hosts`), so node-to-node
    /// SSH verifies host keys without trust-on-first-use.
    pub known_hosts: String,
    /// PKI files written before kubeadm runs (relative to /etc/kubernetes): the external
    /// topology's etcd certificates on the control plane; nothing otherwise (kubeadm makes
    /// its own PKI).
    pub pki: Vec<PkiFile>,
    /// containerd, kubelet, crictl and CNI files ([`runtime::node_files`]).
    pub runtime: Vec<runtime::NodeFile>,
    /// kubeadm's configuration file (control plane only).
    pub kubeadm_config: Option<String>,
}

/// `/etc/hosts` for the sandbox: loopback plus every node.
pub fn hosts_file(all: &[NodeSpec]) -> String {
    let mut s = String::from(
        "# breakfix sandbox\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    for n in all {
        s.push_str(&format!("{}\t{}\n", n.ip, n.name));
    }
    s
}

/// The oneshot unit that puts the node's address on `host0` early in boot (before
/// sysinit.target, so sshd and etcd find it), with IPv6 off on that interface, IPv4
/// forwarding on (pods behind the CNI bridge; kubeadm checks it) and `extra` shell lines
/// (the routes to the other nodes' pod subnets). One process does it all (on cgroup v1 hosts
/// a oneshot's second `ExecStart=` can lose a race with the cleanup of its cgroup), and a
/// failure is retried.
pub fn network_unit(ip: Ipv4Addr, extra: &[String]) -> String {
    let mut lines = vec![
        "echo 1 > /proc/sys/net/ipv6/conf/host0/disable_ipv6 || true".to_string(),
        "echo 1 > /proc/sys/net/ipv4/ip_forward".to_string(),
        "ip link set lo up".to_string(),
        format!("ip addr replace {ip}/{} dev host0", super::PREFIX_LEN),
        "ip link set host0 up".to_string(),
    ];
    lines.extend(extra.iter().cloned());
    format!(
        "# breakfix sandbox: the node's address on the sandbox bridge.\n\
         [Unit]\n\
         Description=Sandbox node address {ip}/{len} on host0\n\
         DefaultDependencies=no\n\
         Before=sysinit.target network-pre.target network.target network-online.target\n\
         Wants=network-pre.target\n\
         StartLimitIntervalSec=0\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart=/bin/sh -ec '\\\n  {body}'\n\
         Restart=on-failure\n\
         RestartSec=200ms\n\
         \n\
         [Install]\n\
         WantedBy=sysinit.target\n",
        len = super::PREFIX_LEN,
        body = lines.join("; \\\n  ")
    )
}

/// sshd drop-in: root by key only, no DNS lookups, the node's ed25519 host key only.
pub const SSHD_CONFIG: &str = "# breakfix sandbox: root logs in with the sandbox's key only.\n\
HostKey /etc/ssh/ssh_host_ed25519_key\n\
PermitRootLogin prohibit-password\n\
PubkeyAuthentication yes\n\
PasswordAuthentication no\n\
KbdInteractiveAuthentication no\n\
UseDNS no\n";

/// root's ~/.bashrc: returns at once for non-interactive shells so remote commands start fast;
/// interactive shells get kubectl's admin kubeconfig, as on a lab's control plane.
pub const ROOT_BASHRC: &str =
    "# ~/.bashrc (breakfix sandbox): kept light so remote commands start fast.\n\
[ -z \"$PS1\" ] && return\n\
PS1='\\u@\\h:\\w\\$ '\n\
alias ll='ls -l'\n\
alias k=kubectl\n";

/// `/etc/environment` (read by pam_env for every SSH session, `ssh node cmd` included):
/// `KUBECONFIG` pointing at kubeadm's admin kubeconfig, as lab images set it. (Not
/// `ETCDCTL_API`: etcdctl 3.6 speaks v3 only and warns about the variable.)
pub const ROOT_ENV: &str = "KUBECONFIG=/etc/kubernetes/admin.conf\n";

/// Writes the node's configuration into its mounted root `root`.
///
/// Errors: [`crate::error::Error::Io`] naming the file.
pub fn write_config(root: &Path, c: &NodeConfig<'_>) -> Result<()> {
    let n = c.node;
    let w = |rel: &str, text: &[u8], mode: u32| fsutil::write_file(&root.join(rel), text, mode);
    w("etc/hostname", format!("{}\n", n.name).as_bytes(), 0o644)?;
    w("etc/hosts", hosts_file(c.all).as_bytes(), 0o644)?;
    let mut id = [0u8; 16];
    {
        use rand::RngCore;
        rand::rngs::OsRng.fill_bytes(&mut id);
    }
    w(
        "etc/machine-id",
        format!("{}\n", hex::encode(id)).as_bytes(),
        0o444,
    )?;

    // Address on host0, early in boot, and routes to the other nodes' pods.
    w(
        &format!("etc/systemd/system/{NETWORK_UNIT}"),
        network_unit(n.ip, &runtime::pod_routes(n, c.all)).as_bytes(),
        0o644,
    )?;
    enable(root, NETWORK_UNIT, "sysinit.target")?;

    // SSH: this node's own host key, root by key only.
    w(
        "etc/ssh/ssh_host_ed25519_key",
        c.host_key_private.as_bytes(),
        0o600,
    )?;
    w(
        "etc/ssh/ssh_host_ed25519_key.pub",
        format!("{}\n", c.host_key_public).as_bytes(),
        0o644,
    )?;
    w(
        "etc/ssh/sshd_config.d/breakfix-sandbox.conf",
        SSHD_CONFIG.as_bytes(),
        0o644,
    )?;
    fsutil::mkdir_mode(&root.join("root/.ssh"), 0o700)?;
    let mut authorized = c.authorized_keys.join("\n");
    authorized.push('\n');
    w("root/.ssh/authorized_keys", authorized.as_bytes(), 0o600)?;
    w("root/.ssh/id_ed25519", c.root_key_private.as_bytes(), 0o600)?;
    w("root/.ssh/known_hosts", c.known_hosts.as_bytes(), 0o644)?;
    w("root/.bashrc", ROOT_BASHRC.as_bytes(), 0o644)?;
    w("etc/environment", ROOT_ENV.as_bytes(), 0o644)?;

    // Container runtime and kubelet.
    for f in &c.runtime {
        w(f.path.trim_start_matches('/'), f.text.as_bytes(), f.mode)?;
    }
    for (unit, target) in runtime::ENABLED_UNITS {
        enable(root, unit, target)?;
    }

    // kubeadm layout: kubeadm itself fills it; only external etcd's certificates come first.
    fsutil::mkdir_mode(&root.join("etc/kubernetes/manifests"), 0o755)?;
    for f in &c.pki {
        w(&format!("etc/kubernetes/{}", f.rel), &f.bytes, f.mode)?;
    }
    if let Some(cfg) = &c.kubeadm_config {
        w(
            kubeadm::CONFIG_PATH.trim_start_matches('/'),
            cfg.as_bytes(),
            0o600,
        )?;
    }
    if n.runs_etcd() {
        fsutil::mkdir_mode(&root.join("var/lib/etcd"), 0o700)?;
        if c.topology == Topology::External {
            let member = etcd_unit::EtcdMember {
                name: n.name.clone(),
                ip: n.ip,
                cluster: c
                    .all
                    .iter()
                    .filter(|m| m.runs_etcd())
                    .map(|m| (m.name.clone(), m.ip))
                    .collect(),
            };
            w(
                "etc/systemd/system/etcd.service",
                member.systemd_unit().as_bytes(),
                0o644,
            )?;
            enable(root, "etcd.service", "multi-user.target")?;
        }
    }
    Ok(())
}

/// Enables `unit` for `target` the way `systemctl enable` does (a symlink in
/// `/etc/systemd/system/<target>.wants/`).
fn enable(root: &Path, unit: &str, target: &str) -> Result<()> {
    fsutil::symlink(
        &format!("/etc/systemd/system/{unit}"),
        &root.join(format!("etc/systemd/system/{target}.wants/{unit}")),
    )
}

/// A host directory a node sees at `inside` (read-only or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Host path.
    pub host: PathBuf,
    /// Path inside the node.
    pub inside: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// The `systemd-nspawn` arguments that boot the node whose machine name is `name` (see
/// [`NodeSpec::machine`]; its host name comes from its /etc/hostname) from `root`, on this
/// instance's bridge.
pub fn nspawn_args(name: &str, root: &Path, sandbox_id: &str, binds: &[Bind]) -> Vec<String> {
    let mut a = vec![
        "--boot".to_string(),
        "--register=no".into(),
        "--keep-unit".into(),
        format!("--network-bridge={}", super::bridge()),
        format!("--directory={}", root.display()),
        format!("--machine={name}"),
        "--link-journal=no".into(),
        "--resolv-conf=off".into(),
        "--console=read-only".into(),
        // Beyond nspawn's default set: the kubelet and runc set oom_score_adj below 0 and
        // raise rlimits (CAP_SYS_RESOURCE); containers may lock memory (CAP_IPC_LOCK).
        "--capability=CAP_SYS_RESOURCE,CAP_IPC_LOCK".into(),
        format!("--setenv={MARKER_ENV}={sandbox_id}"),
    ];
    for b in binds {
        let opt = if b.read_only { "--bind-ro" } else { "--bind" };
        a.push(format!("{opt}={}:{}", b.host.display(), b.inside));
    }
    a
}

/// The node's supervisor (`sh -c SUPERVISOR breakfix-node systemd-nspawn ARGS...`): runs
/// nspawn and runs it again when it exits with 133, which is how `systemd-nspawn --boot`
/// reports that the node rebooted (systemd-nspawn(1); systemd's own `systemd-nspawn@.service`
/// restarts on it with `RestartForceExitStatus=133`). Any other exit status ends the
/// supervisor with that status. SIGTERM (what `down` sends) is passed to nspawn, which powers
/// the node off, and ends the loop.
pub const SUPERVISOR: &str = r#"stop=0; child=
trap 'stop=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM INT HUP
while :; do
  "$@" & child=$!
  while :; do wait "$child"; rc=$?; kill -0 "$child" 2>/dev/null || break; done
  child=
  if [ "$stop" = 0 ] && [ "$rc" = 133 ]; then
    echo "breakfix: the node rebooted (systemd-nspawn exited 133); booting it again"
  else
    exit "$rc"
  fi
done"#;

/// Boots the node: starts its [`SUPERVISOR`] (which runs `systemd-nspawn`, again after each
/// reboot of the node) in a new session with stdin from /dev/null and output appended to the
/// console log, so it outlives breakfix, and records the supervisor's PID (and start time) in
/// the state at once as the node's `Nspawn` process. (Until the record is written, and for
/// every nspawn after a reboot, the processes are still found by `down`: they run in the
/// node's cgroup.)
///
/// Errors: the supervisor cannot be started, or the state cannot be saved.
pub fn boot(st: &mut State, node: &NodeSpec, paths: &NodePaths, binds: &[Bind]) -> Result<i32> {
    let nspawn = cmd::which("systemd-nspawn").unwrap_or_else(|| "systemd-nspawn".into());
    let mut args = vec![
        "-c".to_string(),
        SUPERVISOR.to_string(),
        "breakfix-node".to_string(),
        nspawn.display().to_string(),
    ];
    args.extend(nspawn_args(node.machine(), &paths.root, &st.id, binds));
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&paths.console_log)
        .map_err(io_err(format!("opening {}", paths.console_log.display())))?;
    let log2 = log
        .try_clone()
        .map_err(io_err(format!("opening {}", paths.console_log.display())))?;
    let mut command = std::process::Command::new("/bin/sh");
    command
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2));
    // Its own cgroup, so the nodes' systemds do not share (and prune) each other's.
    let cgroups = cgroup::node_cgroups(node.machine());
    for path in &cgroups {
        st.record(Resource::Cgroup { path: path.clone() })?;
    }
    cgroup::create(&cgroups)?;
    let procs_files = cgroup::procs_files(&cgroups)?;
    // SAFETY: between fork and exec the closure only makes raw system calls (setsid, open,
    // write, close, close_range), which are async-signal-safe, on memory prepared before the
    // fork. setsid() detaches nspawn from breakfix's session and terminal so it survives
    // breakfix exiting; closing every descriptor above stderr keeps the long-lived node from
    // holding anything breakfix's caller had open (a lock file inherited without
    // close-on-exec would otherwise stay locked for as long as the sandbox runs).
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            cgroup::join_self(&procs_files);
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
                for fd in 3..4096 {
                    libc::close(fd);
                }
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(io_err(format!("starting systemd-nspawn for {}", node.name)))?;
    let pid = child.id() as i32;
    // The child is not waited for: it must outlive this process (init reaps it then).
    drop(child);
    let start_time = procs::stat(pid).map(|(s, _)| s).unwrap_or(0);
    st.record(Resource::Process {
        node: node.name.clone(),
        what: ProcKind::Nspawn,
        pid,
        start_time,
    })?;
    Ok(pid)
}

/// Finds the node's PID 1 (the process carrying the sandbox marker, a child of the nspawn
/// that the supervisor `supervisor_pid` runs) and records it, so `down` can kill it even if
/// its nspawn dies first. Returns it if found.
///
/// Errors: the state cannot be saved.
pub fn record_init(st: &mut State, node: &str, supervisor_pid: i32) -> Result<Option<i32>> {
    let marker = format!("{MARKER_ENV}={}", st.id);
    let nspawns = procs::children(supervisor_pid);
    for pid in nspawns.into_iter().flat_map(procs::children) {
        let env = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if env.split(|&b| b == 0).any(|kv| kv == marker.as_bytes()) {
            if let Some(start_time) = procs::start_time(pid) {
                st.record(Resource::Process {
                    node: node.to_string(),
                    what: ProcKind::Init,
                    pid,
                    start_time,
                })?;
                return Ok(Some(pid));
            }
        }
    }
    Ok(None)
}

/// Last `n` lines of a node's console log (for error messages).
pub fn console_tail(paths: &NodePaths, n: usize) -> String {
    let text = fs::read_to_string(&paths.console_log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The supervisor with `node` (a shell command) standing in for systemd-nspawn.
    fn supervise(node: &str) -> std::process::Command {
        let mut c = std::process::Command::new("/bin/sh");
        c.args(["-c", SUPERVISOR, "breakfix-node", "/bin/sh", "-c", node]);
        c
    }

    #[test]
    fn the_supervisor_boots_the_node_again_after_a_reboot_and_passes_other_exits_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let count = dir.path().join("boots");
        let c = count.display();
        // Exits 133 (a reboot) twice, then 7.
        let node =
            format!("echo x >> {c}; n=$(wc -l < {c}); if [ $n -lt 3 ]; then exit 133; fi; exit 7");
        let out = supervise(&node).output().expect("sh runs");
        assert_eq!(out.status.code(), Some(7));
        let boots = std::fs::read_to_string(&count).expect("count");
        assert_eq!(boots.lines().count(), 3);
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(said.matches("the node rebooted").count(), 2, "{said}");
    }

    #[test]
    fn sigterm_to_the_supervisor_stops_the_node_and_ends_the_loop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("pid");
        // A node that records its PID and exits 133 when terminated (as if it rebooted): the
        // supervisor must still stop.
        let node = format!(
            "trap 'exit 133' TERM; echo $$ > {}; while :; do sleep 0.1; done",
            pidfile.display()
        );
        let mut child = supervise(&node).spawn().expect("sh runs");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let node_pid = loop {
            if let Some(p) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok())
            {
                break p;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the node never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("kill");
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), Some(133));
        assert!(
            procs::start_time(node_pid).is_none(),
            "the node outlived its supervisor"
        );
    }

    #[test]
    fn hosts_lists_every_node() {
        let nodes = super::super::plan_nodes(3).expect("plan");
        let h = hosts_file(&nodes);
        assert!(h.contains("198.18.0.11\tcontrolplane\n"));
        assert!(h.contains("198.18.0.13\tnode02\n"));
    }

    fn config<'a>(nodes: &'a [NodeSpec], i: usize, topology: Topology) -> NodeConfig<'a> {
        let pins = super::super::kubebuild::pins().expect("pins");
        NodeConfig {
            node: &nodes[i],
            all: nodes,
            topology,
            host_key_private: "PRIVATE".into(),
            host_key_public: "ssh-ed25519 AAAA".into(),
            authorized_keys: vec![
                "ssh-ed25519 BBBB client".into(),
                "ssh-ed25519 CCCC nodes".into(),
            ],
            root_key_private: "NODE PRIVATE".into(),
            known_hosts: "controlplane,198.18.0.11 ssh-ed25519 AAAA\n".into(),
            pki: vec![],
            runtime: runtime::node_files(i, "registry.k8s.io/pause:3.10.2"),
            kubeadm_config: (i == 0)
                .then(|| kubeadm::init_config(&nodes[0], &[], topology, &pins, false, None)),
        }
    }

    #[test]
    fn writes_a_control_plane_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = super::super::plan_nodes(2).expect("plan");
        write_config(dir.path(), &config(&nodes, 0, Topology::External)).expect("write");
        let r = dir.path();
        assert_eq!(
            fs::read_to_string(r.join("etc/hostname")).expect("hostname"),
            "controlplane\n"
        );
        assert!(r.join("etc/kubernetes/manifests").is_dir());
        assert!(
            fs::read_to_string(r.join("etc/systemd/system/etcd.service"))
                .expect("unit")
                .contains("--name=controlplane")
        );
        assert!(
            fs::read_to_string(r.join("etc/kubernetes/kubeadm-config.yaml"))
                .expect("kubeadm config")
                .contains("external:")
        );
        assert_eq!(
            fs::read_link(
                r.join("etc/systemd/system/sysinit.target.wants/sandbox-network.service")
            )
            .expect("link"),
            PathBuf::from("/etc/systemd/system/sandbox-network.service")
        );
        let net = fs::read_to_string(r.join("etc/systemd/system/sandbox-network.service"))
            .expect("network unit");
        assert!(
            net.contains("ip route replace 10.244.1.0/24 via 198.18.0.12"),
            "{net}"
        );
        assert!(net.contains("ip_forward"), "{net}");
        // Node-to-node SSH: the shared root key, trusted, and every node's host key pinned.
        let authorized = fs::read_to_string(r.join("root/.ssh/authorized_keys")).expect("keys");
        assert_eq!(
            authorized,
            "ssh-ed25519 BBBB client\nssh-ed25519 CCCC nodes\n"
        );
        assert_eq!(
            fs::read_to_string(r.join("root/.ssh/id_ed25519")).expect("root key"),
            "NODE PRIVATE"
        );
        assert!(fs::read_to_string(r.join("root/.ssh/known_hosts"))
            .expect("known_hosts")
            .starts_with("controlplane,198.18.0.11 ssh-ed25519 "));
    }

    #[test]
    fn a_third_control_plane_runs_its_etcd_member_and_a_kubelet() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = super::super::plan_cluster_of(0, 4, 3).expect("plan");
        let mut c = config(&nodes, 2, Topology::External);
        c.kubeadm_config = None;
        write_config(dir.path(), &c).expect("write");
        let r = dir.path();
        let unit = fs::read_to_string(r.join("etc/systemd/system/etcd.service")).expect("unit");
        assert!(unit.contains("--name=controlplane03"), "{unit}");
        assert!(
            unit.contains("--initial-cluster=controlplane=https://198.18.0.11:2380,controlplane02=https://198.18.0.12:2380,controlplane03=https://198.18.0.13:2380"),
            "{unit}"
        );
        assert!(r
            .join("etc/systemd/system/multi-user.target.wants/etcd.service")
            .is_symlink());
        assert!(r
            .join("etc/systemd/system/multi-user.target.wants/kubelet.service")
            .is_symlink());
        assert!(!r.join("etc/kubernetes/kubeadm-config.yaml").exists());
    }

    #[test]
    fn every_node_gets_the_runtime_and_the_kubelet() {
        let nodes = super::super::plan_nodes(2).expect("plan");
        let roots = [
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        ];
        for (i, root) in roots.iter().enumerate() {
            write_config(root.path(), &config(&nodes, i, Topology::Stacked)).expect("write");
        }
        for r in [roots[0].path(), roots[1].path()] {
            assert_eq!(
                fs::read_link(r.join("etc/systemd/system/multi-user.target.wants/kubelet.service"))
                    .expect("enabled"),
                PathBuf::from("/etc/systemd/system/kubelet.service")
            );
            assert!(r
                .join("etc/systemd/system/kubelet.service.d/10-kubeadm.conf")
                .is_file());
            assert!(fs::read_to_string(r.join("etc/containerd/config.toml"))
                .expect("containerd")
                .contains("NoNewKeyring = true"));
            assert!(r.join("etc/crictl.yaml").is_file());
            assert!(!r.join("etc/systemd/system/etcd.service").exists());
        }
        assert!(
            fs::read_to_string(roots[0].path().join("etc/kubernetes/kubeadm-config.yaml"))
                .expect("kubeadm config")
                .contains("imageTag")
        );
        assert!(!roots[1]
            .path()
            .join("etc/kubernetes/kubeadm-config.yaml")
            .exists());
        assert!(
            fs::read_to_string(roots[1].path().join("etc/cni/net.d/10-breakfix.conflist"))
                .expect("cni")
                .contains("10.244.1.0/24")
        );
    }

    #[test]
    fn nspawn_args_are_the_verified_ones() {
        let a = nspawn_args(
            "controlplane",
            Path::new("/s/root"),
            "abc",
            &[
                Bind {
                    host: PathBuf::from("/s/etcd"),
                    inside: "/var/lib/etcd".into(),
                    read_only: false,
                },
                Bind {
                    host: PathBuf::from("/c/images"),
                    inside: "/opt/breakfix/images/common".into(),
                    read_only: true,
                },
            ],
        );
        for want in [
            "--boot",
            "--register=no",
            "--keep-unit",
            "--network-bridge=bfbr0",
            "--capability=CAP_SYS_RESOURCE,CAP_IPC_LOCK",
            "--directory=/s/root",
            "--machine=controlplane",
            "--bind=/s/etcd:/var/lib/etcd",
            "--bind-ro=/c/images:/opt/breakfix/images/common",
            "--setenv=BREAKFIX_SANDBOX_ID=abc",
        ] {
            assert!(a.iter().any(|x| x == want), "missing {want}");
        }
    }
}
