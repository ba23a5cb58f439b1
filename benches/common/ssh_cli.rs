//! Shared by the benchmarks: the OpenSSH command-line client run the ways shell graders run
//! it (one process per command, or through a ControlMaster), and small statistics helpers.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use breakfix::inventory::Node;

/// One SSH target as the `ssh` CLI needs it.
pub struct Target {
    pub node: Node,
}

impl Target {
    pub fn key(&self) -> &Path {
        self.node
            .identity_file
            .as_deref()
            .unwrap_or(Path::new("/root/.ssh/id_ed25519"))
    }
    pub fn known_hosts(&self) -> &Path {
        self.node
            .known_hosts
            .as_deref()
            .unwrap_or(Path::new("/dev/null"))
    }
    /// Common `ssh` arguments: no user config, strict host keys from the node's file.
    pub fn ssh_args(&self) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts().display()),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "ConnectTimeout=10".into(),
            "-i".into(),
            self.key().display().to_string(),
            "-p".into(),
            self.node.port.to_string(),
            "-l".into(),
            self.node.user.clone(),
        ]
    }
}

pub fn run_ssh(args: &[String], address: &str, command: &str) {
    let status = Command::new("ssh")
        .args(args)
        .arg(address)
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(s) if s.code() == Some(255) => {
            panic!("ssh to {address} failed (exit 255) for `{command}`")
        }
        Ok(_) => {}
        Err(e) => panic!("cannot run ssh: {e}"),
    }
}

pub fn mode_a<S: AsRef<str>>(targets: &[Target], plan: &[(usize, S)]) -> Duration {
    let start = Instant::now();
    for (n, cmd) in plan {
        let t = &targets[*n];
        run_ssh(&t.ssh_args(), &t.node.address, cmd.as_ref());
    }
    start.elapsed()
}

/// A ControlMaster per target, killed by PID when dropped.
pub struct Master {
    child: Child,
    args: Vec<String>,
    address: String,
}

impl Master {
    pub fn start(t: &Target, socket: &Path) -> Master {
        let mut args = t.ssh_args();
        args.extend(["-o".into(), format!("ControlPath={}", socket.display())]);
        let child = Command::new("ssh")
            .args(&args)
            .args(["-o", "ControlMaster=yes", "-o", "ControlPersist=no", "-N"])
            .arg(&t.node.address)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ssh ControlMaster");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "ControlMaster socket {} did not appear",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        args.extend(["-o".into(), "ControlMaster=no".into()]);
        Master {
            child,
            args,
            address: t.node.address.clone(),
        }
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn mode_b<S: AsRef<str>>(masters: &[Master], plan: &[(usize, S)]) -> Duration {
    let start = Instant::now();
    for (n, cmd) in plan {
        let m = &masters[*n];
        run_ssh(&m.args, &m.address, cmd.as_ref());
    }
    start.elapsed()
}

/// Busy CPU time of the whole machine so far (all cores; /proc/stat, USER_HZ = 100).
pub fn cpu_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .enumerate()
                // user nice system idle iowait irq softirq steal: skip idle and iowait.
                .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
                .filter_map(|(_, v)| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

pub struct Stats {
    pub min: Duration,
    pub median: Duration,
    pub max: Duration,
}

pub fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2
    };
    Stats {
        min: v[0],
        median,
        max: v[v.len() - 1],
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// CPU model, core count and kernel of this machine, for the bench header.
pub fn host() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {}", kernel.trim())
}

/// [`host`] and the OpenSSH client's version.
pub fn machine() -> String {
    let ssh = Command::new("ssh")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .unwrap_or_default();
    format!("{}, {ssh}", host())
}
