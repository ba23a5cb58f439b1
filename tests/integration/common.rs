//! Shared helpers for the integration tests.

// ---- transport helper: a real OpenSSH server on loopback (tests/integration/common/sshd.rs) ----
pub mod sshd;

// ---- etcd helper: a real etcd with a mutual-TLS PKI on loopback (tests/integration/common/etcd.rs) ----
pub mod etcd;

// ---- the test tiers: pure (`cargo test`) and system (`--features system-tests`) ----
pub mod tier;

// ---- running the binary: one builder for every test (tests/integration/common/cli.rs) ----
pub mod cli;
pub use cli::Cli;

// ---- sandbox helper: one shared lab cluster for every test that needs it ----
//
// `sandbox()` serialises its users (a process-wide mutex plus an flock on
// /tmp/breakfix-tests-sandbox.lock, so parallel test threads AND other test processes wait
// their turn), and brings the sandbox up with the built binary if it is not up. The sandbox
// is left up afterwards: the next user gets it at once. `sandbox()` is the external topology
// (2 nodes, etcd as a systemd unit) on sandbox instance 0; `sandbox_stacked()` the stacked one
// (2 nodes, etcd as a static pod) on instance 1 (its own lock, /tmp/breakfix-tests-sandbox-1.lock),
// so tests of the two topologies run at the same time on two real kubeadm clusters and none
// waits for the other's topology to be torn down and brought up. A test that takes the sandbox
// belongs to the system tier (`common/tier.rs`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

use breakfix::inventory::Topology;

/// A finished command for an assertion message: its exit code, stdout and stderr.
pub fn show_output(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// File whose flock serialises instance 0's users across test processes (instance K > 0:
/// `/tmp/breakfix-tests-sandbox-K.lock`).
pub const SANDBOX_TEST_LOCK: &str = "/tmp/breakfix-tests-sandbox.lock";

/// The sandbox instance the tests of a topology use: external 0, stacked 1.
pub fn instance_for(topology: Topology) -> u8 {
    match topology {
        Topology::External => 0,
        Topology::Stacked => 1,
    }
}

static SANDBOX_MUTEX: [Mutex<()>; 8] = [const { Mutex::new(()) }; 8];

/// Exclusive use of the sandbox for as long as it lives.
pub struct SandboxGuard {
    _file: nix::fcntl::Flock<File>,
    _thread: MutexGuard<'static, ()>,
    /// The inventory `breakfix sandbox up` wrote.
    pub inventory: PathBuf,
    /// The topology this user asked for (what [`SandboxGuard::ensure_up`] brings up).
    pub topology: Topology,
    /// The sandbox instance (`breakfix sandbox --instance`): 0 external, 1 stacked; 2, 3 and 4
    /// run parts of the self-test matrix.
    pub instance: u8,
}

/// Runs the built `breakfix` binary with `args` and returns its output.
pub fn breakfix(args: &[&str]) -> Output {
    Cli::new().run(args)
}

/// Takes the sandbox (waiting for other users) and makes sure it is up with the external
/// topology (2 nodes).
pub fn sandbox() -> SandboxGuard {
    sandbox_with(Topology::External)
}

/// Takes the sandbox (waiting for other users) and makes sure it is up with the stacked
/// topology (2 nodes).
pub fn sandbox_stacked() -> SandboxGuard {
    sandbox_with(Topology::Stacked)
}

/// Takes the sandbox (waiting for other users) and makes sure it is up with `topology`
/// (2 nodes), replacing a sandbox of the other topology.
pub fn sandbox_with(topology: Topology) -> SandboxGuard {
    sandbox_on(instance_for(topology), topology)
}

/// Takes sandbox instance `instance` (waiting for its other users, in this process and in
/// others: `/tmp/breakfix-tests-sandbox[-K].lock`) and makes sure it is up with `topology`
/// (2 nodes). Instances 2, 3 and 4 take parts of the self-test matrix (`scenarios.rs`:
/// stacked, both external parts, stacked), so the parts run side by side.
pub fn sandbox_on(instance: u8, topology: Topology) -> SandboxGuard {
    let guard = take_instance(instance, topology);
    guard.ensure_up();
    guard
}

/// Exclusive use of sandbox instance `instance` (waiting for other users), whatever is up
/// there or not: for a test that brings up a sandbox of another shape itself.
pub fn take_instance(instance: u8, topology: Topology) -> SandboxGuard {
    tier::require_system_tier("the sandbox");
    let thread = SANDBOX_MUTEX[usize::from(instance)]
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let lock = match instance {
        0 => SANDBOX_TEST_LOCK.to_string(),
        k => format!("/tmp/breakfix-tests-sandbox-{k}.lock"),
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .expect("open the sandbox test lock file");
    let file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock the sandbox test lock");
    SandboxGuard {
        _file: file,
        _thread: thread,
        inventory: breakfix::sandbox::state_dir_of(instance).join("inventory.yaml"),
        topology,
        instance,
    }
}

/// The topology of instance `k`'s sandbox if it is up.
pub fn topology_up(k: u8) -> Option<Topology> {
    if !breakfix::sandbox::is_up_of(k) {
        return None;
    }
    breakfix::sandbox::state::State::load(&breakfix::sandbox::state_dir_of(k))
        .ok()
        .flatten()
        .map(|st| st.topology)
}

impl SandboxGuard {
    /// Runs the built `breakfix` binary on this guard's sandbox instance
    /// (`BREAKFIX_SANDBOX_INSTANCE`).
    pub fn breakfix(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_breakfix"))
            .args(args)
            .env(breakfix::sandbox::ENV_INSTANCE, self.instance.to_string())
            .env_remove(breakfix::sandbox::ENV_SANDBOX_DIR)
            .stdin(Stdio::null())
            .output()
            .expect("run the breakfix binary")
    }

    /// The instance's state directory.
    pub fn state_dir(&self) -> PathBuf {
        breakfix::sandbox::state_dir_of(self.instance)
    }

    /// True when the instance's sandbox is up (see `breakfix::sandbox::is_up`).
    pub fn is_up(&self) -> bool {
        breakfix::sandbox::is_up_of(self.instance)
    }

    /// The instance's host bridge (`bfbr0`, `bfbr1`).
    pub fn bridge(&self) -> String {
        breakfix::sandbox::bridge_of(self.instance)
    }

    /// Brings the sandbox up (2 nodes, the guard's topology) unless it is up already with
    /// that topology; a sandbox of the other topology is taken down first.
    pub fn ensure_up(&self) {
        let topo = match self.topology {
            Topology::External => "external",
            Topology::Stacked => "stacked",
        };
        match topology_up(self.instance) {
            Some(t) if t == self.topology && self.api_ok() => return,
            Some(_) => {
                let out = self.breakfix(&["sandbox", "down"]);
                assert!(
                    out.status.success(),
                    "`breakfix sandbox down` (to switch to the {topo} topology) failed:\n{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => {}
        }
        let out = self.breakfix(&["sandbox", "up", "--topology", topo]);
        assert!(
            out.status.success(),
            "`breakfix sandbox up` failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(self.is_up(), "sandbox not up after `breakfix sandbox up`");
    }

    /// The API server's /readyz answers 200 (waiting up to 30 s, e.g. while a previous test's
    /// repair settles); a sandbox whose API stays broken is replaced.
    fn api_ok(&self) -> bool {
        self.api_ready_within(std::time::Duration::from_secs(30))
    }

    /// Polls `breakfix sandbox status` until the control plane's API server is ready or
    /// `patience` is over; true when it is ready.
    pub fn api_ready_within(&self, patience: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + patience;
        loop {
            let out = self.breakfix(&["sandbox", "status", "--output", "json"]);
            let ready = serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .map(|v| v["nodes"][0]["apiserver"] == serde_json::Value::Bool(true))
                .unwrap_or(false);
            if ready {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                eprintln!("the sandbox's API server is not ready after {patience:?}");
                return false;
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }

    /// The inventory, loaded.
    pub fn load(&self) -> breakfix::inventory::Inventory {
        breakfix::inventory::Inventory::load(&self.inventory).expect("load the sandbox inventory")
    }

    /// Runs `command` on node `name` with the REAL OpenSSH client, the inventory's key and its
    /// known_hosts (strict host key checking, no agent, no user config).
    pub fn ssh(&self, name: &str, command: &str) -> Output {
        let inv = self.load();
        let node = inv
            .node(name)
            .unwrap_or_else(|| panic!("no node {name} in the inventory"));
        let known_hosts = node
            .known_hosts
            .clone()
            .expect("known_hosts in the inventory");
        ssh_with(node, &known_hosts, command)
    }

    /// Like [`SandboxGuard::ssh`] but requires exit 0 and returns stdout.
    pub fn ssh_ok(&self, name: &str, command: &str) -> String {
        let out = self.ssh(name, command);
        assert!(
            out.status.success(),
            "`{command}` on {name} failed ({:?}):\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

/// The kubectl built at the pinned version (`breakfix sandbox build`), the same program the
/// nodes have.
pub fn kubectl_path() -> PathBuf {
    breakfix::sandbox::kubebuild::cache_dir(&breakfix::sandbox::image_dir()).join("bin/kubectl")
}

/// Runs `command` on `node` with the OpenSSH client, verifying the host key against
/// `known_hosts` only.
pub fn ssh_with(node: &breakfix::inventory::Node, known_hosts: &Path, command: &str) -> Output {
    let key = node
        .identity_file
        .clone()
        .expect("identity_file in the inventory");
    Command::new("ssh")
        .arg("-F")
        .arg("/dev/null")
        .arg("-i")
        .arg(&key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
            "-p",
        ])
        .arg(node.port.to_string())
        .arg(format!("{}@{}", node.user, node.address))
        .arg(command)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh (apt-get install openssh-client)")
}
