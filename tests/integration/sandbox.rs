//! The sandbox (`breakfix sandbox up|status|down`) against the real thing: systemd-nspawn
//! nodes made a kubeadm cluster, the real OpenSSH client with the inventory's key and
//! known_hosts, the real etcdctl and kubectl inside the node, and the host's own view (/proc, `ip link`, /proc/mounts, `losetup -a`)
//! to prove `down` leaves nothing behind, also after an `up` killed half-way.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use breakfix::inventory::Topology;
use breakfix::sandbox::state::{Resource, State};

use crate::common::{sandbox, ssh_with};

const ETCDCTL: &str = "etcdctl --endpoints=https://127.0.0.1:2379 \
    --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/server.crt \
    --key=/etc/kubernetes/pki/etcd/server.key";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn etcd_runs_as_a_systemd_unit_with_kubeadm_tls() {
    let sb = sandbox();
    assert_eq!(
        sb.ssh_ok("controlplane", "systemctl is-active etcd").trim(),
        "active"
    );

    let out = sb.ssh("controlplane", &format!("{ETCDCTL} endpoint health"));
    assert!(
        out.status.success(),
        "endpoint health failed: {}",
        text(&out.stderr)
    );
    // etcdctl 3.6 prints the health line on stdout.
    assert!(
        text(&out.stdout).contains("127.0.0.1:2379 is healthy"),
        "health line (stdout): {}",
        text(&out.stdout)
    );
    assert!(
        sb.ssh_ok("controlplane", "etcd --version")
            .starts_with("etcd Version: 3.6."),
        "the pinned etcd 3.6 runs"
    );

    let table = sb.ssh_ok("controlplane", &format!("{ETCDCTL} member list -w table"));
    let members: Vec<&str> = table.lines().filter(|l| l.contains("| started")).collect();
    assert_eq!(members.len(), 1, "one member expected:\n{table}");
    assert!(members[0].contains("| controlplane |"), "{table}");
    assert!(members[0].contains("https://198.18.0.11:2380"), "{table}");

    let log = sb.ssh_ok("controlplane", "journalctl -u etcd --no-pager -o cat");
    assert!(
        log.contains("serving client traffic securely"),
        "etcd's log in the journal:\n{log}"
    );

    let ss = sb.ssh_ok("controlplane", "ss -tlnp");
    for want in [
        "127.0.0.1:2379",
        "198.18.0.11:2379",
        "198.18.0.11:2380",
        "127.0.0.1:2381",
    ] {
        assert!(ss.contains(want), "{want} not listening:\n{ss}");
    }
    // The data dir is its own (loop-backed) filesystem, as the slow-disk faults need.
    let src = sb.ssh_ok("controlplane", "findmnt -n -o SOURCE,FSTYPE /var/lib/etcd");
    assert!(src.contains("/dev/loop") && src.contains("ext4"), "{src}");
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn etcd_stop_and_start_keep_the_keys() {
    let sb = sandbox();
    let value = format!("v{}", std::process::id());
    sb.ssh_ok(
        "controlplane",
        &format!("{ETCDCTL} put /breakfix-test/survives {value}"),
    );
    sb.ssh_ok("controlplane", "systemctl stop etcd");
    let state = sb.ssh("controlplane", "systemctl is-active etcd");
    assert_eq!(text(&state.stdout).trim(), "inactive");
    let down = sb.ssh(
        "controlplane",
        &format!("{ETCDCTL} --dial-timeout=1s --command-timeout=2s endpoint health"),
    );
    assert!(
        !down.status.success(),
        "health must fail while etcd is stopped"
    );
    sb.ssh_ok("controlplane", "systemctl start etcd");
    assert_eq!(
        sb.ssh_ok("controlplane", "systemctl is-active etcd").trim(),
        "active"
    );
    let got = sb.ssh_ok(
        "controlplane",
        &format!("{ETCDCTL} get /breakfix-test/survives --print-value-only"),
    );
    assert_eq!(got.trim(), value);
    sb.ssh_ok(
        "controlplane",
        &format!("{ETCDCTL} del /breakfix-test/survives"),
    );
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn nodes_are_kubeadm_shaped_and_know_each_other() {
    let sb = sandbox();
    let inv = sb.load();
    assert_eq!(inv.cluster.topology, Topology::External);
    assert_eq!(inv.cluster.etcd.endpoints, ["https://127.0.0.1:2379"]);
    assert_eq!(
        inv.cluster.etcd.cert_file,
        "/etc/kubernetes/pki/etcd/server.crt"
    );
    assert_eq!(
        inv.cluster.kubeconfig.as_deref(),
        Some("/etc/kubernetes/admin.conf")
    );
    let names: Vec<&str> = inv.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["controlplane", "node01"]);
    assert_eq!(inv.nodes[0].roles, ["control-plane", "etcd"]);
    assert_eq!(inv.nodes[1].roles, ["worker"]);

    // No unit failed on any node (nodes sharing one cgroup made units fail with 219/CGROUP).
    for n in ["controlplane", "node01"] {
        let state = sb.ssh(n, "timeout 20 systemctl is-system-running --wait");
        assert_eq!(
            text(&state.stdout).trim(),
            "running",
            "{n}: {}",
            sb.ssh_ok(n, "systemctl --failed --no-legend")
        );
    }
    assert_eq!(sb.ssh_ok("node01", "hostname").trim(), "node01");
    let hosts = sb.ssh_ok("node01", "getent hosts controlplane");
    assert!(hosts.starts_with("198.18.0.11"), "{hosts}");
    sb.ssh_ok("node01", "ping -c 1 -W 2 controlplane");
    // etcd is reachable from the worker over the sandbox network (TLS + client cert needed).
    let refused = sb.ssh(
        "node01",
        "curl -sk --max-time 3 https://controlplane:2379/health",
    );
    assert!(
        !refused.status.success() || !text(&refused.stdout).contains("true"),
        "etcd must require a client certificate"
    );

    let modes = sb.ssh_ok(
        "controlplane",
        "stat -c '%a %n' /etc/kubernetes/pki/ca.key /etc/kubernetes/pki/etcd/server.key \
         /etc/kubernetes/pki/etcd/server.crt /etc/kubernetes/pki/apiserver-etcd-client.key \
         /etc/kubernetes/pki/etcd/healthcheck-client.crt /etc/kubernetes/pki/etcd/peer.key /etc/kubernetes/admin.conf",
    );
    for line in modes.lines() {
        let want = if line.ends_with(".crt") {
            "644 "
        } else {
            "600 "
        };
        assert!(line.starts_with(want), "mode: {line}");
    }
    sb.ssh_ok("controlplane", "test -d /etc/kubernetes/manifests");
    sb.ssh_ok(
        "node01",
        "test -f /etc/kubernetes/pki/ca.crt && ! test -e /etc/kubernetes/pki/ca.key",
    );
    assert_eq!(
        sb.ssh("node01", "systemctl is-active etcd").stdout,
        b"inactive\n"
    );

    let sshd = sb.ssh_ok("controlplane", "sshd -T");
    for want in [
        "permitrootlogin without-password",
        "passwordauthentication no",
        "kbdinteractiveauthentication no",
        "usedns no",
    ] {
        assert!(sshd.contains(want), "sshd: {want} missing");
    }
    // Each node has its own host key.
    let k1 = sb.ssh_ok("controlplane", "cat /etc/ssh/ssh_host_ed25519_key.pub");
    let k2 = sb.ssh_ok("node01", "cat /etc/ssh/ssh_host_ed25519_key.pub");
    assert_ne!(k1.split_whitespace().nth(1), k2.split_whitespace().nth(1));
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn a_wrong_host_key_is_refused() {
    let sb = sandbox();
    let inv = sb.load();
    let node = inv.node("controlplane").expect("controlplane").clone();
    let good = node.known_hosts.clone().expect("known_hosts");
    let dir = tempfile::tempdir().expect("tempdir");
    // Same names, another key: as if someone else answered at 198.18.0.11.
    let impostor = breakfix::sandbox::keys::generate("impostor").expect("key");
    let line = breakfix::sandbox::keys::known_hosts_line(
        "controlplane",
        "198.18.0.11".parse().expect("ip"),
        &impostor,
    )
    .expect("line");
    let bad = dir.path().join("known_hosts");
    std::fs::write(&bad, format!("{line}\n")).expect("write");
    let out = ssh_with(&node, &bad, "true");
    assert!(
        !out.status.success(),
        "ssh must refuse a host whose key does not match"
    );
    assert!(
        text(&out.stderr).contains("Host key verification failed")
            || text(&out.stderr).contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        text(&out.stderr)
    );
    // An empty known_hosts is refused too (no trust on first use).
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").expect("write");
    assert!(!ssh_with(&node, &empty, "true").status.success());
    // And the real one works.
    assert!(ssh_with(&node, &good, "true").status.success());
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn up_again_is_a_quick_no_op_and_status_reports_json() {
    let sb = sandbox();
    let start = Instant::now();
    let out = sb.breakfix(&["sandbox", "up"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "no-op took {:?}",
        start.elapsed()
    );
    assert!(
        text(&out.stdout).contains("sandbox: up"),
        "{}",
        text(&out.stdout)
    );

    let out = sb.breakfix(&["sandbox", "status", "--output", "json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(v["state"], "up");
    assert_eq!(v["nodes"][0]["name"], "controlplane");
    assert_eq!(v["nodes"][0]["ssh"], true);
    let pins = breakfix::sandbox::kubebuild::pins().expect("pins");
    assert_eq!(
        v["nodes"][0]["etcd"],
        pins.etcd.trim_start_matches('v'),
        "the pinned etcd answers"
    );
    assert_eq!(v["nodes"][0]["apiserver"], true);
    assert_eq!(v["nodes"][1]["running"], true);

    // Up with the other topology: refused, saying how to switch (and nothing is touched).
    let out = sb.breakfix(&["sandbox", "up", "--topology", "stacked"]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("sandbox down") && text(&out.stderr).contains("--recreate"),
        "{}",
        text(&out.stderr)
    );
    assert!(breakfix::sandbox::is_up());
}

/// What the sandbox had recorded, read before `down`.
struct Recorded {
    dir: PathBuf,
    /// The sandbox's id (its nodes' `BREAKFIX_SANDBOX_ID`); empty when none was recorded.
    id: String,
    pids: Vec<i32>,
    loop_files: Vec<PathBuf>,
    /// Host sysctls `up` changed for the kubelet, with their values before.
    sysctls: Vec<(String, String)>,
}

fn recorded() -> Recorded {
    let dir = breakfix::sandbox::state_dir();
    let st = State::load(&dir).expect("state").expect("a sandbox exists");
    let mut pids = Vec::new();
    let mut loop_files = Vec::new();
    let mut sysctls = Vec::new();
    for r in &st.resources {
        match r {
            Resource::Process { pid, .. } => pids.push(*pid),
            Resource::LoopDevice { file, .. } => loop_files.push(file.clone()),
            Resource::Sysctl { key, old } => sysctls.push((key.clone(), old.clone())),
            _ => {}
        }
    }
    Recorded {
        dir,
        id: st.id.clone(),
        pids,
        loop_files,
        sysctls,
    }
}

fn proc_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(s) => !s
            .lines()
            .any(|l| l.starts_with("State:") && (l.contains("Z") || l.contains("X"))),
        Err(_) => false,
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect(cmd);
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

/// Checks the host itself: no process, bridge, veth, mount, loop device or file of the
/// sandbox is left.
fn assert_nothing_left(rec: &Recorded) {
    // With the separator, so that instance 1's /var/lib/breakfix/sandbox-1/ (the stacked
    // tests' sandbox, maybe up meanwhile) is not mistaken for instance 0's leftovers.
    let dir = format!("{}/", rec.dir.display());
    for &pid in &rec.pids {
        assert!(!proc_alive(pid), "recorded process {pid} is still alive");
    }
    // No process anywhere mentions the sandbox's node roots (nspawn) or carries its marker.
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let c = text(&cmdline).replace('\0', " ");
        if proc_alive(pid) && c.contains("systemd-nspawn") && c.contains(&dir) {
            panic!("nspawn process {pid} of the sandbox is still running: {c}");
        }
        if !rec.id.is_empty()
            && proc_alive(pid)
            && text(&env).contains(&format!("BREAKFIX_SANDBOX_ID={}", rec.id))
        {
            panic!("process {pid} of a sandbox node is still running: {c}");
        }
    }
    let links = run("ip", &["-br", "link"]);
    assert!(!links.contains("bfbr0"), "bridge left:\n{links}");
    assert!(
        !links.contains("vb-controlplane") && !links.contains("vb-node0"),
        "veth left:\n{links}"
    );
    let mounts = std::fs::read_to_string("/proc/mounts").expect("/proc/mounts");
    assert!(!mounts.contains(&dir), "mount left:\n{mounts}");
    let loops = run("losetup", &["-a"]);
    assert!(!loops.contains(&dir), "loop device left:\n{loops}");
    for f in &rec.loop_files {
        assert!(
            !loops.contains(&f.display().to_string()),
            "loop device of {} left",
            f.display()
        );
    }
    assert!(!Path::new(&rec.dir).exists(), "state directory {dir} left");
    // The kubelet's host settings: written back, unless another instance (the stacked
    // tests' instance 1) is up, whose state then holds the old values for the last `down`.
    let heir = (1..breakfix::sandbox::MAX_INSTANCES).find(|&k| breakfix::sandbox::is_up_of(k));
    for (key, old) in &rec.sysctls {
        match heir {
            None => assert_eq!(
                &breakfix::sandbox::sysctl::read(key).expect("sysctl"),
                old,
                "{key} not written back"
            ),
            Some(k) => {
                let st = State::load(&breakfix::sandbox::state_dir_of(k))
                    .expect("state")
                    .expect("the other instance's state");
                let handed = Resource::Sysctl {
                    key: key.clone(),
                    old: old.clone(),
                };
                assert!(
                    st.resources.contains(&handed),
                    "{key}={old} not handed over to instance {k}: {:?}",
                    st.resources
                );
            }
        }
    }
    for cg in breakfix::sandbox::cgroup::node_cgroups("controlplane") {
        assert!(!cg.exists(), "cgroup {} left", cg.display());
    }
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn down_leaves_nothing_and_the_next_user_brings_it_up_again() {
    let sb = sandbox();
    let rec = recorded();
    assert!(
        rec.pids.len() >= 4,
        "nspawn + init recorded per node: {:?}",
        rec.pids
    );
    assert!(!rec.loop_files.is_empty());
    let out = sb.breakfix(&["sandbox", "down"]);
    assert!(out.status.success(), "down failed: {}", text(&out.stderr));
    assert_nothing_left(&rec);
    assert!(!breakfix::sandbox::is_up());
    // A second down is harmless.
    let out = sb.breakfix(&["sandbox", "down"]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("no sandbox"),
        "{}",
        text(&out.stdout)
    );
    let out = sb.breakfix(&["sandbox", "status"]);
    assert!(text(&out.stdout).contains("sandbox: down"));

    // The next user of the sandbox brings it up again, here from a shell holding a descriptor
    // without close-on-exec (as `flock FILE cmd` does): the long-lived nodes must not keep it.
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("inherited.lock");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "exec 7>'{}'; exec '{}' sandbox up",
            marker.display(),
            env!("CARGO_BIN_EXE_breakfix")
        ))
        .stdin(Stdio::null())
        .output()
        .expect("bash");
    assert!(out.status.success(), "up failed: {}", text(&out.stderr));
    for pid in recorded().pids {
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("fds")
            .flatten()
        {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            assert_ne!(
                target, marker,
                "node process {pid} kept an inherited descriptor"
            );
        }
    }
    sb.ensure_up();
    assert_eq!(
        sb.ssh_ok("controlplane", "systemctl is-active etcd").trim(),
        "active"
    );
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn down_after_an_up_killed_half_way_leaves_nothing() {
    let sb = sandbox();
    let out = sb.breakfix(&["sandbox", "down"]);
    assert!(out.status.success(), "down failed: {}", text(&out.stderr));
    // Kill `up` at different points of its work (the image is cached: resources appear in the
    // first ~150 ms, then `up` waits ~1-2 s for sshd and etcd).
    for delay_ms in [30u64, 80, 120, 250, 900] {
        let mut child = crate::common::Cli::new()
            .command(&["sandbox", "up"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start up");
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let dir = breakfix::sandbox::state_dir();
        let rec = match State::load(&dir) {
            Ok(Some(_)) => recorded(),
            _ => Recorded {
                dir,
                id: String::new(),
                pids: vec![],
                loop_files: vec![],
                sysctls: vec![],
            },
        };
        let out = sb.breakfix(&["sandbox", "down"]);
        assert!(
            out.status.success(),
            "down after a kill at {delay_ms} ms failed: {}",
            text(&out.stderr)
        );
        assert_nothing_left(&rec);
    }
    sb.ensure_up();
    assert!(sb.breakfix(&["sandbox", "status"]).status.success());
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn up_refuses_a_sandbox_network_taken_by_something_else() {
    let sb = sandbox();
    let out = sb.breakfix(&["sandbox", "down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Someone else's interface holding an address of instance 0's 198.18.0.0/27.
    let add = run("ip", &["link", "add", "bftest0", "type", "bridge"]);
    assert!(!add.contains("rror"), "{add}");
    // (A /27 of instance 0 only: the stacked tests' instance 1 may be up meanwhile.)
    run("ip", &["addr", "add", "198.18.0.1/27", "dev", "bftest0"]);
    let out = sb.breakfix(&["sandbox", "up"]);
    run("ip", &["link", "del", "bftest0"]);
    assert!(!out.status.success(), "up must refuse a taken network");
    let err = text(&out.stderr);
    assert!(
        err.contains("already in use") && err.contains("bftest0"),
        "{err}"
    );
    assert!(
        !breakfix::sandbox::state_dir().exists(),
        "a refused up creates nothing"
    );
    sb.ensure_up();
}

#[test]
fn sandbox_commands_need_root() {
    // As `nobody` (as root, through setpriv) or as the user running the tests (the pure tier
    // runs as any user): refused before anything is touched, with a message that says why.
    let bin = env!("CARGO_BIN_EXE_breakfix");
    let mut cmd = if nix::unistd::geteuid().is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin);
        c
    } else {
        Command::new(bin)
    };
    let out = cmd
        .args(["sandbox", "up"])
        .stdin(Stdio::null())
        .output()
        .expect("run breakfix (as root: through setpriv, from util-linux)");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("needs root"),
        "{}",
        text(&out.stderr)
    );
}

/// A failed kubeadm step is reported with the step, the node, the command, the last lines of
/// its output and the kubelet's journal, over the real transport (OpenSSH on loopback; the
/// command fails the way `kubeadm init`'s preflight does when port 6443 is taken).
#[tokio::test]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn a_failed_kubeadm_step_names_the_step_the_node_and_its_output() {
    let sshd = crate::common::sshd::Sshd::start();
    let t = breakfix::transport::ssh::SshTransport::connect(&sshd.node(), Duration::from_secs(10))
        .await
        .expect("connect to the loopback sshd");
    let failing = "echo '[init] Using Kubernetes version: v1.37.2'; \
        echo 'error execution phase preflight: [preflight] Some fatal errors occurred:' >&2; \
        echo '[ERROR Port-6443]: Port 6443 is in use' >&2; exit 1";
    let e =
        breakfix::sandbox::kubeadm::run_step(&t, "kubeadm init", failing, Duration::from_secs(20))
            .await
            .expect_err("the step fails");
    let m = e.to_string();
    assert!(
        m.starts_with(&format!("kubeadm init on {} failed (exit 1)", t.host())),
        "{m}"
    );
    assert!(m.contains("Port 6443 is in use"), "{m}");
    assert!(m.contains("Using Kubernetes version"), "{m}");
    assert!(m.contains("last lines of `journalctl -u kubelet`"), "{m}");
}
