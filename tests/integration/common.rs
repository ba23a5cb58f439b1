//! Shared helpers for the integration tests.

// ---- transport helper: a real OpenSSH server on loopback (tests/integration/common/sshd.rs) ----
pub mod sshd;

// ---- sandbox helper: one shared lab cluster for every test that needs it ----
//
// `sandbox()` serialises its users (a process-wide mutex plus an flock on
// /tmp/breakfix-tests-sandbox.lock, so parallel test threads AND other test processes wait
// their turn), and brings the sandbox up with the built binary if it is not up. The sandbox
// is left up afterwards: the next user gets it at once.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

/// File whose flock serialises the sandbox's users across test processes.
pub const SANDBOX_TEST_LOCK: &str = "/tmp/breakfix-tests-sandbox.lock";

static SANDBOX_MUTEX: Mutex<()> = Mutex::new(());

/// Exclusive use of the sandbox for as long as it lives.
pub struct SandboxGuard {
    _file: nix::fcntl::Flock<File>,
    _thread: MutexGuard<'static, ()>,
    /// The inventory `breakfix sandbox up` wrote.
    pub inventory: PathBuf,
}

/// Runs the built `breakfix` binary with `args` and returns its output.
pub fn breakfix(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_breakfix"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the breakfix binary")
}

/// Takes the sandbox (waiting for other users) and makes sure it is up.
pub fn sandbox() -> SandboxGuard {
    let thread = SANDBOX_MUTEX
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(SANDBOX_TEST_LOCK)
        .expect("open the sandbox test lock file");
    let file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock the sandbox test lock");
    let guard = SandboxGuard {
        _file: file,
        _thread: thread,
        inventory: breakfix::sandbox::default_inventory_path(),
    };
    guard.ensure_up();
    guard
}

impl SandboxGuard {
    /// Brings the sandbox up (default: 2 nodes, external topology) unless it is up already.
    pub fn ensure_up(&self) {
        if breakfix::sandbox::is_up() {
            return;
        }
        let out = breakfix(&["sandbox", "up"]);
        assert!(
            out.status.success(),
            "`breakfix sandbox up` failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            breakfix::sandbox::is_up(),
            "sandbox not up after `breakfix sandbox up`"
        );
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
