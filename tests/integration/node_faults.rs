//! Node faults against real components: `slow_disk` (strace fsync delay on the sandbox's etcd;
//! cgroup throttle refused inside a sandbox node; cgroup throttle of a loop device on the host),
//! `netem` (refused on this kernel, which lacks sch_netem) and `tls` (expired and wrong-CA
//! client certificates rejected by the sandbox's etcd). Every break goes through the CLI
//! (`breakfix break` then `breakfix reset`) with a temp state dir; a drop guard resets even
//! when an assertion fails, so the sandbox is left healthy.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::Cli;
use crate::common::{sandbox, SandboxGuard};
use breakfix::fault::UndoKind as _;

const ETCDCTL: &str = "etcdctl --endpoints=https://127.0.0.1:2379 \
    --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/server.crt \
    --key=/etc/kubernetes/pki/etcd/server.key";

/// Milliseconds one `etcdctl put` takes, measured on the node.
const TIMED_PUT: &str = "s=$(date +%s%N); etcdctl --endpoints=https://127.0.0.1:2379 \
    --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/server.crt \
    --key=/etc/kubernetes/pki/etcd/server.key put /breakfix-tests/node-faults x >/dev/null; \
    e=$(date +%s%N); echo $(( (e - s) / 1000000 ))";

/// etcd's log on the controlplane in either topology (journald unit or static pod log).
const ETCD_LOG: &str = "{ journalctl -u etcd -o cat --no-pager 2>/dev/null; \
    cat /var/log/pods/kube-system_etcd-*/etcd/*.log 2>/dev/null; }";

use crate::common::show_output as text;

/// A temp state dir for the CLI; on drop, `breakfix reset` on the controlplane.
struct Lab<'a> {
    g: &'a SandboxGuard,
    dir: tempfile::TempDir,
}

impl<'a> Lab<'a> {
    fn new(g: &'a SandboxGuard) -> Lab<'a> {
        let dir = tempfile::Builder::new()
            .prefix("breakfix-node-faults-")
            .tempdir()
            .expect("tempdir");
        Lab { g, dir }
    }

    fn breakfix(&self, args: &[&str]) -> Output {
        Cli::new()
            .inventory(&self.g.inventory)
            .state_dir(self.dir.path().join("state"))
            .run(args)
    }

    /// Writes a scenario whose faults are `faults` (YAML list items, 2-space indented) and
    /// whose confirm probes are `confirm`.
    fn scenario(&self, name: &str, faults: &str, confirm: &str) -> PathBuf {
        let p = self.dir.path().join(format!("{name}.yaml"));
        let confirm = if confirm.is_empty() {
            String::new()
        } else {
            format!("confirm:\n{confirm}")
        };
        std::fs::write(
            &p,
            format!(
                "apiVersion: breakfix/v1\nkind: Scenario\nmetadata:\n  name: {name}\n  title: node fault test\n\
                 targets:\n  cp:\n    node: controlplane\nfaults:\n{faults}{confirm}\
                 verify:\n  probes:\n    - kind: command\n      name: always\n      run: 'true'\n      expect: {{ exit: 0 }}\n"
            ),
        )
        .expect("write scenario");
        p
    }

    /// `breakfix break SCENARIO`.
    fn run_break(&self, scenario: &Path) -> Output {
        self.breakfix(&["break", scenario.to_str().expect("utf-8 path")])
    }

    /// Writes a scenario (see [`Lab::scenario`]) and breaks it; the break must succeed.
    fn break_ok(&self, name: &str, faults: &str, confirm: &str) {
        let out = self.run_break(&self.scenario(name, faults, confirm));
        assert!(out.status.success(), "break failed:\n{}", text(&out));
    }

    /// Writes a scenario with `faults` and breaks it, which must fail (`why` if it does not);
    /// the CLI's output.
    fn break_refused(&self, name: &str, faults: &str, why: &str) -> String {
        let out = self.run_break(&self.scenario(name, faults, ""));
        let all = text(&out);
        eprintln!("{all}");
        assert!(!out.status.success(), "{why}:\n{all}");
        all
    }

    /// `breakfix reset` of the controlplane.
    fn reset(&self) -> Output {
        self.breakfix(&["reset", "--node", "controlplane"])
    }

    fn ssh(&self, cmd: &str) -> String {
        self.g.ssh_ok("controlplane", cmd)
    }

    /// [`Lab::ssh`], trimmed.
    fn ssh_line(&self, cmd: &str) -> String {
        self.ssh(cmd).trim().to_string()
    }

    /// PID of the newest etcd on the controlplane.
    fn etcd_pid(&self) -> String {
        self.ssh_line("pgrep -xn etcd")
    }

    /// The PID tracing process `pid` on the controlplane (`0`: none).
    fn tracer_of(&self, pid: &str) -> String {
        self.ssh_line(&format!(
            "awk '/^TracerPid:/ {{print $2}}' /proc/{pid}/status"
        ))
    }

    /// `alive` or `gone`: whether process `pid` still runs on the controlplane.
    fn alive_or_gone(&self, pid: &str) -> String {
        self.ssh_line(&format!("[ -d /proc/{pid} ] && echo alive || echo gone"))
    }

    /// Journal entries recorded on the node and locally.
    fn journal_count(&self) -> usize {
        let remote: usize = self
            .ssh("ls /var/lib/breakfix/journal/ 2>/dev/null | wc -l")
            .trim()
            .parse()
            .unwrap_or(0);
        let local = std::fs::read_dir(self.dir.path().join("state/journal/controlplane"))
            .map(|d| d.count())
            .unwrap_or(0);
        remote + local
    }
}

impl Drop for Lab<'_> {
    fn drop(&mut self) {
        let out = self.reset();
        if !out.status.success() {
            eprintln!("node_faults: reset in drop guard failed:\n{}", text(&out));
        }
    }
}

fn median_put_ms(lab: &Lab) -> u64 {
    let mut v: Vec<u64> = (0..3)
        .map(|_| lab.ssh(TIMED_PUT).trim().parse().expect("put ms"))
        .collect();
    v.sort();
    v[1]
}

fn log_count(lab: &Lab, pattern: &str) -> usize {
    lab.ssh(&format!("{ETCD_LOG} | grep -cE '{pattern}' || true"))
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn slow_disk_fsync_delay_slows_etcd_puts_and_reset_stops_strace() {
    let g = sandbox();
    let lab = Lab::new(&g);
    let baseline = median_put_ms(&lab);
    assert!(
        baseline < 250,
        "etcd puts are already slow before the fault: {baseline} ms"
    );
    let slow_log = "apply request took too long|slow fdatasync";
    let warnings_before = log_count(&lab, slow_log);

    lab.break_ok(
        "node-faults-fsync-delay",
        "  - kind: slow_disk\n    mode: fsync_delay\n    process: etcd\n    delay: 300ms\n",
        &format!(
            "  - kind: command\n    name: put-fast\n    run: '{}'\n    within: 20s\n    expect: {{ stdout: {{ lt: 250 }} }}\n",
            TIMED_PUT.replace('\'', "''")
        ),
    );

    // Exactly one strace, attached to the newest etcd, known by its pid file.
    let pid_files = lab.ssh("ls /run/breakfix/slow-disk-*.pid");
    assert_eq!(pid_files.lines().count(), 1, "pid files: {pid_files}");
    let strace_pid = lab.ssh_line(&format!("cat {}", pid_files.trim()));
    let etcd_pid = lab.etcd_pid();
    assert_eq!(
        lab.ssh(&format!("cat /proc/{strace_pid}/comm")).trim(),
        "strace"
    );
    assert_eq!(lab.tracer_of(&etcd_pid), strace_pid, "etcd's tracer");

    let slow = median_put_ms(&lab);
    eprintln!("etcd put: {baseline} ms before, {slow} ms with a 300ms fsync delay");
    assert!(
        slow >= 300,
        "a put took {slow} ms with a 300ms fsync delay (baseline {baseline} ms)"
    );
    let warnings_after = log_count(&lab, slow_log);
    assert!(
        warnings_after > warnings_before,
        "etcd logged no new `{slow_log}` ({warnings_before} -> {warnings_after})"
    );

    let out = lab.reset();
    assert!(out.status.success(), "reset failed:\n{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("stop the fsync delay"),
        "{}",
        text(&out)
    );
    assert_eq!(
        lab.alive_or_gone(&strace_pid),
        "gone",
        "strace {strace_pid} survived the reset"
    );
    assert_eq!(
        lab.ssh("ls /run/breakfix/slow-disk-* 2>/dev/null | wc -l")
            .trim(),
        "0"
    );
    assert_eq!(lab.tracer_of(&etcd_pid), "0", "etcd is still traced");
    assert_eq!(lab.etcd_pid(), etcd_pid, "etcd restarted");
    let after = median_put_ms(&lab);
    eprintln!("etcd put after reset: {after} ms");
    assert!(after < 250, "puts still slow after reset: {after} ms");
    lab.ssh(&format!(
        "{ETCDCTL} del /breakfix-tests/node-faults >/dev/null"
    ));
}

/// `reattach: true`: restarting etcd does not end the delay (the watcher traces the new etcd
/// within a second); killing the tracer alone does not either; reset stops the watcher and
/// its tracer and leaves etcd untraced.
#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn slow_disk_fsync_delay_with_reattach_survives_an_etcd_restart_until_reset() {
    let g = sandbox();
    let lab = Lab::new(&g);
    lab.break_ok(
        "node-faults-fsync-reattach",
        "  - kind: slow_disk\n    mode: fsync_delay\n    process: etcd\n    delay: 300ms\n    reattach: true\n",
        &format!(
            "  - kind: command\n    name: put-fast\n    run: '{}'\n    within: 20s\n    expect: {{ stdout: {{ lt: 250 }} }}\n",
            TIMED_PUT.replace('\'', "''")
        ),
    );
    let watcher = lab.ssh_line("cat /run/breakfix/slow-disk-*.pid");
    let first = lab.etcd_pid();
    let tracer = lab.tracer_of(&first);
    assert_ne!(tracer, "0", "etcd is traced");
    assert_eq!(
        lab.ssh(&format!("cat /proc/{tracer}/comm")).trim(),
        "strace"
    );
    assert_eq!(
        lab.ssh_line(&format!("ps -o ppid= -p {tracer}")),
        watcher,
        "the tracer is the watcher's child"
    );
    // The naive fix: restart etcd. The watcher traces the new one.
    lab.ssh("systemctl restart etcd");
    let second = lab.etcd_pid();
    assert_ne!(second, first, "etcd restarted");
    let mut traced = String::from("0");
    for _ in 0..50 {
        traced = lab.tracer_of(&second);
        if traced != "0" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_ne!(traced, "0", "the restarted etcd is traced again");
    let slow = median_put_ms(&lab);
    assert!(slow >= 300, "a put took {slow} ms after the restart");
    // Killing the tracer alone: traced again.
    lab.ssh(&format!("kill {traced}"));
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_ne!(
        lab.tracer_of(&second),
        "0",
        "re-attached after the tracer was killed"
    );

    let out = lab.reset();
    assert!(out.status.success(), "reset failed:\n{}", text(&out));
    assert_eq!(
        lab.alive_or_gone(&watcher),
        "gone",
        "the watcher survived the reset"
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(lab.tracer_of(&second), "0", "etcd is still traced");
    assert_eq!(
        lab.ssh("grep -l BREAKFIX_FAULT_ID= /proc/[0-9]*/environ 2>/dev/null | wc -l")
            .trim(),
        "0",
        "no marked process is left"
    );
    let after = median_put_ms(&lab);
    assert!(after < 250, "puts still slow after reset: {after} ms");
    lab.ssh(&format!(
        "{ETCDCTL} del /breakfix-tests/node-faults >/dev/null"
    ));
}

/// The blkio limit file of etcd's cgroup inside the controlplane (the node's own blkio root:
/// each node has its own cgroup in every controller, writable inside it).
const NODE_BLKIO_IOPS: &str = "cat /sys/fs/cgroup/blkio/blkio.throttle.write_iops_device";

/// `MAJ:MIN` of the disk under /var/lib/etcd on the controlplane.
fn etcd_disk(lab: &Lab) -> String {
    lab.ssh_line("findmnt -n -o MAJ:MIN --target /var/lib/etcd")
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn slow_disk_auto_throttles_inside_a_sandbox_node_and_reset_lifts_it() {
    let g = sandbox();
    let lab = Lab::new(&g);
    let disk = etcd_disk(&lab);
    assert!(
        !lab.ssh(NODE_BLKIO_IOPS).contains(&format!("{disk} ")),
        "a limit is already set"
    );
    lab.break_ok(
        "node-faults-auto",
        "  - kind: slow_disk\n    delay: 300ms\n",
        "",
    );
    // auto prefers a real block-I/O limit where the node can write one, so etcd is not traced.
    let limits = lab.ssh(NODE_BLKIO_IOPS);
    assert!(
        limits.contains(&format!("{disk} ")),
        "no limit for {disk}:\n{limits}"
    );
    assert_eq!(lab.tracer_of(&lab.etcd_pid()), "0", "auto traced etcd");
    let out = lab.reset();
    assert!(out.status.success(), "reset failed:\n{}", text(&out));
    assert!(
        !lab.ssh(NODE_BLKIO_IOPS).contains(&format!("{disk} ")),
        "reset left the limit"
    );
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn slow_disk_fio_runs_a_load_on_the_data_disk_and_reset_removes_it() {
    let g = sandbox();
    let lab = Lab::new(&g);
    lab.break_ok(
        "node-faults-fio",
        "  - kind: slow_disk\n    mode: fio\n    path: /var/lib/etcd\n    jobs: 2\n    size: 8M\n    runtime: 5m\n",
        "",
    );
    let fio_pid = lab.ssh_line("cat /run/breakfix/slow-disk-fio-*.pid");
    assert_eq!(lab.ssh(&format!("cat /proc/{fio_pid}/comm")).trim(), "fio");
    let dir = lab.ssh_line("ls -d /var/lib/etcd/.breakfix-fio-*");
    let files = lab.ssh(&format!("ls {dir} | wc -l"));
    assert_eq!(files.trim(), "2", "fio files in {dir}");
    eprintln!(
        "fio PID {fio_pid} writing in {dir}; etcd put: {} ms",
        median_put_ms(&lab)
    );

    let out = lab.reset();
    assert!(out.status.success(), "reset failed:\n{}", text(&out));
    assert_eq!(
        lab.alive_or_gone(&fio_pid),
        "gone",
        "fio survived the reset"
    );
    assert_eq!(
        lab.ssh(&format!("[ -e {dir} ] && echo left || echo removed"))
            .trim(),
        "removed"
    );
    assert_eq!(
        lab.ssh("ls /run/breakfix/ | grep -c slow-disk || true")
            .trim(),
        "0"
    );
    lab.ssh(&format!(
        "{ETCDCTL} del /breakfix-tests/node-faults >/dev/null"
    ));
}

#[test]
fn slow_disk_and_netem_field_mistakes_are_reported_by_validate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("bad.yaml");
    std::fs::write(
        &p,
        "apiVersion: breakfix/v1\nkind: Scenario\nmetadata:\n  name: bad-node-faults\n  title: bad\n\
         targets:\n  cp:\n    node: controlplane\nfaults:\n  - kind: slow_disk\n    mode: fio\n    delay: 1s\n\
         \x20 - kind: netem\n    port: 2380\n\
         verify:\n  probes:\n    - kind: command\n      name: always\n      run: 'true'\n      expect: { exit: 0 }\n",
    )
    .expect("write");
    let out = Cli::new().run(&["validate", p.to_str().expect("utf-8")]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("field(s) delay do not apply to `mode: fio`"),
        "{all}"
    );
    assert!(all.contains("bad.yaml:10:11"), "{all}");
    assert!(all.contains("give `delay`, `loss` or both"), "{all}");
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn slow_disk_throttle_inside_a_sandbox_node_limits_the_etcd_disk_and_reset_lifts_it() {
    let g = sandbox();
    let lab = Lab::new(&g);
    let disk = etcd_disk(&lab);
    let before = lab.ssh(NODE_BLKIO_IOPS);
    lab.break_ok(
        "node-faults-throttle",
        "  - kind: slow_disk\n    mode: throttle\n    process: etcd\n    write_iops: 20\n",
        "",
    );
    let limits = lab.ssh(NODE_BLKIO_IOPS);
    assert!(
        limits.lines().any(|l| l.trim() == format!("{disk} 20")),
        "no `{disk} 20` in:\n{limits}"
    );
    // The snapshot's count of block-I/O limits (what the matrices compare) sees it too.
    let throttles = lab.ssh(&breakfix::engine::snapshot::io_throttles_command());
    assert_eq!(throttles.trim(), "T 1", "{limits}");
    let out = lab.reset();
    assert!(out.status.success(), "reset failed:\n{}", text(&out));
    assert_eq!(lab.ssh(NODE_BLKIO_IOPS), before, "reset left a limit");
    let throttles = lab.ssh(&breakfix::engine::snapshot::io_throttles_command());
    assert_eq!(throttles.trim(), "T 0", "after the reset");
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn netem_on_a_kernel_without_sch_netem_fails_clearly_and_changes_nothing() {
    let g = sandbox();
    let lab = Lab::new(&g);
    let qdiscs = "tc qdisc show";
    let before = lab.ssh(qdiscs);
    let journal_before = lab.journal_count();
    let all = lab.break_refused(
        "node-faults-netem",
        "  - kind: netem\n    delay: 200ms\n    loss: 5\n    port: 2380\n",
        "netem should fail on this kernel",
    );
    assert!(
        all.contains("this kernel lacks the netem qdisc (sch_netem), which breakfix needs for network delay/loss"),
        "{all}"
    );
    assert_eq!(lab.ssh(qdiscs), before, "qdiscs changed");
    assert_eq!(
        lab.journal_count(),
        journal_before,
        "something was journaled"
    );
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn tls_expired_and_wrong_ca_client_certs_are_rejected_and_reset_restores_the_bytes() {
    let g = sandbox();
    let lab = Lab::new(&g);
    let cert = "/etc/kubernetes/pki/apiserver-etcd-client.crt";
    let sha = format!("sha256sum {cert} | cut -d' ' -f1");
    let original = lab.ssh(&sha);
    let health = "etcdctl --endpoints=https://127.0.0.1:2379 --dial-timeout=2s --command-timeout=3s \
        --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/apiserver-etcd-client.crt \
        --key=/etc/kubernetes/pki/apiserver-etcd-client.key endpoint health";
    assert!(
        g.ssh("controlplane", health).status.success(),
        "the client certificate does not work before the fault"
    );
    for (cert_fault, log_text) in [
        ("expired", "certificate has expired or is not yet valid"),
        ("wrong_ca", "certificate signed by unknown authority"),
    ] {
        let rejected_before = log_count(&lab, log_text);
        let scenario = lab.scenario(
            &format!("node-faults-tls-{}", cert_fault.replace('_', "-")),
            &format!("  - kind: tls\n    path: {cert}\n    cert: {cert_fault}\n"),
            &format!(
                "  - kind: command\n    name: client-cert-works\n    run: '{health}'\n    expect: {{ exit: 0 }}\n"
            ),
        );
        let out = lab.run_break(&scenario);
        assert!(
            out.status.success(),
            "{cert_fault}: break failed:\n{}",
            text(&out)
        );
        assert_ne!(
            lab.ssh(&sha),
            original,
            "{cert_fault}: the certificate was not replaced"
        );
        assert_eq!(
            lab.ssh(&format!("stat -c %a {cert}")).trim(),
            "644",
            "{cert_fault}: mode changed"
        );
        let failed = g.ssh("controlplane", health);
        assert!(
            !failed.status.success(),
            "{cert_fault}: etcdctl still works"
        );
        // etcd says why it rejected the client (the client only sees a failed handshake).
        let mut seen = 0;
        for _ in 0..10 {
            seen = log_count(&lab, log_text);
            if seen > rejected_before {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        assert!(
            seen > rejected_before,
            "{cert_fault}: etcd logged no new `{log_text}`"
        );
        eprintln!(
            "{cert_fault}: etcd log: {}",
            lab.ssh(&format!("{ETCD_LOG} | grep -E '{log_text}' | tail -1"))
                .trim()
        );

        let out = lab.reset();
        assert!(
            out.status.success(),
            "{cert_fault}: reset failed:\n{}",
            text(&out)
        );
        assert_eq!(
            lab.ssh(&sha),
            original,
            "{cert_fault}: reset did not restore the bytes"
        );
        assert!(
            g.ssh("controlplane", health).status.success(),
            "{cert_fault}: the client certificate does not work after reset"
        );
    }
}

// ---- host side: the cgroup throttle code on a loop device this test creates -------------

/// A loop device with ext4, mounted; a process to throttle. Removed on drop, by name.
struct HostDisk {
    dir: tempfile::TempDir,
    loop_dev: String,
    majmin: String,
    child: std::process::Child,
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    assert!(out.status.success(), "`{cmd}` failed:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl HostDisk {
    fn new() -> HostDisk {
        let dir = tempfile::Builder::new()
            .prefix("breakfix-throttle-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path().display().to_string();
        sh(&format!("truncate -s 64M {d}/disk.img && mkdir {d}/mnt"));
        let loop_dev = sh(&format!("losetup -f --show {d}/disk.img"));
        sh(&format!(
            "mkfs.ext4 -q {loop_dev} && mount {loop_dev} {d}/mnt"
        ));
        let majmin = sh(&format!("findmnt -n -o MAJ:MIN --target {d}/mnt"));
        // A process with a unique command name, in this test's cgroups.
        sh(&format!("cp /bin/sleep {d}/bfthrottle"));
        let child = Command::new(format!("{d}/bfthrottle"))
            .arg("600")
            .spawn()
            .expect("start bfthrottle");
        HostDisk {
            dir,
            loop_dev,
            majmin,
            child,
        }
    }

    fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    /// Milliseconds for 10 direct 4 KiB writes on the loop device's filesystem.
    fn write_ms(&self) -> u64 {
        let f = self.mnt().join("probe");
        sh(&format!(
            "s=$(date +%s%N); dd if=/dev/zero of={} bs=4k count=10 oflag=direct,dsync 2>/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 ))",
            f.display()
        ))
        .parse()
        .expect("ms")
    }
}

impl Drop for HostDisk {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "f=/sys/fs/cgroup/blkio/blkio.throttle.write_iops_device; [ -w $f ] && echo '{} 0' > $f; \
                 umount {mnt}; losetup -d {dev}",
                self.majmin,
                mnt = self.mnt().display(),
                dev = self.loop_dev
            ))
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn host_has_writable_blkio() -> bool {
    Path::new("/sys/fs/cgroup/blkio/blkio.throttle.write_iops_device").exists()
        && nix::unistd::access(
            "/sys/fs/cgroup/blkio/blkio.throttle.write_iops_device",
            nix::unistd::AccessFlags::W_OK,
        )
        .is_ok()
}

#[test]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs root")]
fn slow_disk_throttle_on_the_host_limits_a_loop_device_and_reset_lifts_it() {
    if !is_root() || !host_has_writable_blkio() {
        eprintln!("skipped: needs root and a writable cgroup v1 blkio hierarchy on the host");
        return;
    }
    let disk = HostDisk::new();
    let state = disk.dir.path().join("state");
    let node_journal = disk.dir.path().join("node-journal");
    let inventory = disk.dir.path().join("inventory.yaml");
    std::fs::write(
        &inventory,
        "apiVersion: breakfix/v1\nkind: Inventory\ncluster:\n  name: host\n  etcd:\n    endpoints: [https://127.0.0.1:2379]\n    ca_file: /nonexistent/ca.crt\n    cert_file: /nonexistent/c.crt\n    key_file: /nonexistent/c.key\nnodes:\n  - name: host\n    address: 127.0.0.1\n    roles: [control-plane]\n    transport: local\n",
    )
    .expect("inventory");
    let scenario = disk.dir.path().join("throttle.yaml");
    let timed_dd = format!(
        "s=$(date +%s%N); dd if=/dev/zero of={}/confirm bs=4k count=10 oflag=direct,dsync 2>/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 ))",
        disk.mnt().display()
    );
    std::fs::write(
        &scenario,
        format!(
            "apiVersion: breakfix/v1\nkind: Scenario\nmetadata:\n  name: host-throttle\n  title: host throttle\n\
             targets:\n  h:\n    node: host\nfaults:\n  - kind: slow_disk\n    mode: throttle\n    process: bfthrottle\n    path: {mnt}\n    write_iops: 10\n\
             confirm:\n  - kind: command\n    name: writes-fast\n    timeout: 60s\n    run: '{timed_dd}'\n    expect: {{ stdout: {{ lt: 1000 }} }}\n\
             verify:\n  probes:\n    - kind: command\n      name: always\n      run: 'true'\n      expect: {{ exit: 0 }}\n",
            mnt = disk.mnt().display()
        ),
    )
    .expect("scenario");
    let cli = Cli::new()
        .inventory(&inventory)
        .state_dir(&state)
        .node_journal_dir(&node_journal);
    let bf = |args: &[&str]| cli.run(args);
    let limits = || {
        std::fs::read_to_string("/sys/fs/cgroup/blkio/blkio.throttle.write_iops_device")
            .expect("read blkio")
    };
    let fast = disk.write_ms();
    assert!(
        !limits().contains(&format!("{} ", disk.majmin)),
        "a limit is already set"
    );

    let out = bf(&["break", scenario.to_str().expect("utf-8")]);
    // Reset even if an assertion below fails.
    struct Reset<'a>(&'a dyn Fn(&[&str]) -> Output);
    impl Drop for Reset<'_> {
        fn drop(&mut self) {
            let _ = (self.0)(&["reset"]);
        }
    }
    let _reset = Reset(&bf);
    assert!(out.status.success(), "break failed:\n{}", text(&out));
    assert!(
        limits().contains(&format!("{} 10", disk.majmin)),
        "limit not set: {}",
        limits()
    );
    let slow = disk.write_ms();
    eprintln!(
        "10 direct writes on {}: {fast} ms unthrottled, {slow} ms at 10 write IOPS",
        disk.loop_dev
    );
    assert!(
        slow >= 1000,
        "throttled writes took only {slow} ms (unthrottled {fast} ms)"
    );

    let out = bf(&["reset"]);
    assert!(out.status.success(), "reset failed:\n{}", text(&out));
    assert!(
        !limits().contains(&format!("{} ", disk.majmin)),
        "limit left after reset: {}",
        limits()
    );
    let after = disk.write_ms();
    eprintln!("after reset: {after} ms");
    assert!(after < 1000, "writes still slow after reset: {after} ms");
    let out = bf(&["reset"]);
    assert!(
        out.status.success(),
        "a second reset failed:\n{}",
        text(&out)
    );
}

/// netem itself cannot be added on this kernel, but its undo can be exercised with real `tc`:
/// a qdisc tree standing in for the fault's on the controlplane's loopback is removed, and the
/// kernel's default root comes back; a second undo changes nothing.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
async fn netem_undo_restores_the_default_root_qdisc_with_real_tc() {
    use breakfix::fault::netem::{parse_qdiscs, NetemUndo};

    struct CleanLo<'a>(&'a SandboxGuard);
    impl Drop for CleanLo<'_> {
        fn drop(&mut self) {
            let _ = self
                .0
                .ssh("controlplane", "tc qdisc del dev lo root 2>/dev/null; true");
        }
    }

    let g = sandbox();
    let _clean = CleanLo(&g);
    let inv = g.load();
    let node = inv.node("controlplane").expect("controlplane").clone();
    let s = breakfix::node::NodeSession::connect(&node, Duration::from_secs(10))
        .await
        .expect("connect");
    let show = || g.ssh_ok("controlplane", "tc qdisc show dev lo");
    let default = show();
    assert!(
        parse_qdiscs(&default).iter().all(|q| q.is_default()),
        "lo does not have the default qdisc: {default}"
    );
    // A tree like the one `port:` builds (this kernel has neither prio nor netem: htb + pfifo).
    g.ssh_ok(
        "controlplane",
        "tc qdisc replace dev lo root handle 1: htb default 10 && \
         tc class add dev lo parent 1: classid 1:10 htb rate 1gbit && \
         tc qdisc add dev lo parent 1:10 handle 40: pfifo limit 100",
    );
    assert!(show().contains("htb 1:"), "{}", show());
    let undo = NetemUndo {
        interface: "lo".into(),
        show: default.clone(),
    };
    undo.revert(&s).await.expect("revert");
    assert_eq!(show(), default);
    undo.revert(&s).await.expect("revert again");
    assert_eq!(show(), default);
    eprintln!("restored: {}", default.trim());
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn disk_fill_fills_the_etcd_disk_and_reset_removes_exactly_its_filler() {
    let g = sandbox();
    let lab = Lab::new(&g);
    // The root filesystem is refused before anything is journaled.
    let all = lab.break_refused(
        "node-faults-fill-root",
        "  - kind: disk_fill\n    path: /etc\n    use_percent: 99\n",
        "filling the root filesystem must be refused",
    );
    assert!(all.contains("refusing to fill"), "{all}");
    assert_eq!(
        all.matches("fault `fill the filesystem of /etc").count(),
        1,
        "the fault is named once: {all}"
    );
    assert_eq!(lab.journal_count(), 0, "a refused fill journals nothing");
    // etcd's data-dir is a filesystem of its own on the sandbox; a file of someone else's
    // at its top must outlive the undo.
    lab.ssh("echo mine > /var/lib/etcd/keep-me");
    let free_before: u64 = lab
        .ssh_line("df -B1 --output=size,used /var/lib/etcd | tail -n 1 | awk '{print $1 - $2}'")
        .parse()
        .expect("free bytes");
    // Confirm probes describe the healthy state: they must fail once the disk is full.
    let confirm = "  - kind: filesystem\n    name: etcd-disk-has-room\n    path: /var/lib/etcd\n    expect: { use_percent: { lt: 85 }, fs_type: ext4, exists: true }\n";
    lab.break_ok(
        "node-faults-fill",
        "  - kind: disk_fill\n    path: /var/lib/etcd\n    use_percent: 90\n",
        confirm,
    );
    let filler = lab.ssh_line("ls -d /var/lib/etcd/.breakfix-fill-*");
    let size: u64 = lab
        .ssh_line(&format!("stat -c %s {filler}"))
        .parse()
        .expect("size");
    eprintln!("filler {filler}: {size} bytes; free before: {free_before}");
    assert!(
        size > free_before / 2,
        "the filler holds most of the free space"
    );
    let out = lab.reset();
    assert!(out.status.success(), "reset failed:\n{}", text(&out));
    assert_eq!(
        lab.ssh_line("ls -A /var/lib/etcd | grep -c '^.breakfix-fill-' || true"),
        "0"
    );
    assert_eq!(lab.ssh_line("cat /var/lib/etcd/keep-me"), "mine");
    lab.ssh("rm -f /var/lib/etcd/keep-me");
    // A crash at every step of the same break, then reset: the node's snapshot (filler files
    // counted) is the same as before.
    let scenario = lab.scenario(
        "node-faults-fill-crash",
        "  - kind: disk_fill\n    path: /var/lib/etcd\n    free: 64M\n",
        "",
    );
    let started = std::time::Instant::now();
    let out = lab.breakfix(&["test", "--crash-matrix", scenario.to_str().unwrap()]);
    eprintln!(
        "disk_fill crash matrix: {:.0}s\n{}",
        started.elapsed().as_secs_f64(),
        text(&out)
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        lab.ssh_line("ls -A /var/lib/etcd | grep -c '^.breakfix-fill-' || true"),
        "0"
    );
    // `free: 0` on ext4: fallocate of every free block fails (the file's extent tree needs
    // some of them), so the program allocates less and writes zeros to the brim. ext4 keeps a
    // small reserve even root cannot use (min(2 %, 4096 blocks): statfs still counts it as
    // free), so "full" is: nothing available, and a 1 MiB allocation as root fails.
    let confirm = "  - kind: filesystem\n    name: etcd-disk-has-room\n    path: /var/lib/etcd\n    expect: { available_bytes: { gt: 0 } }\n";
    lab.break_ok(
        "node-faults-fill-brim",
        "  - kind: disk_fill\n    path: /var/lib/etcd\n    free: 0\n",
        confirm,
    );
    let full = lab.ssh_line(
        "df -B1 --output=avail /var/lib/etcd | tail -n 1 | tr -d ' '; \
         if fallocate -l 1M /var/lib/etcd/.bf-probe 2>/dev/null; then echo room; else echo full; fi; \
         rm -f /var/lib/etcd/.bf-probe",
    );
    assert_eq!(
        full.split_whitespace().collect::<Vec<_>>(),
        ["0", "full"],
        "{full}"
    );
    let out = lab.reset();
    assert!(out.status.success(), "reset failed:\n{}", text(&out));
    assert_eq!(
        lab.ssh_line("ls -A /var/lib/etcd | grep -c '^.breakfix-fill-' || true"),
        "0"
    );
}
