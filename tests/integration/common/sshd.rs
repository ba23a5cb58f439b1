//! A real OpenSSH server on 127.0.0.1 for the transport tests and the transport benchmark.
//!
//! `Sshd::start()` generates a temp ed25519 host key and client key (with `ssh-keygen`),
//! writes an authorized_keys file, a known_hosts file (`[127.0.0.1]:PORT key`) and an
//! sshd_config, and runs `/usr/sbin/sshd -D -e -f <config>` as the current user (root) on a
//! free loopback port. Dropping the value kills that sshd by its PID.
//!
//! Like Debian's default sshd_config (and the sandbox nodes'), it serves the `sftp` subsystem
//! (`/usr/lib/openssh/sftp-server`), which the transport uses for reads and `stat`.
//!
//! `Sshd::start_without_sftp()` leaves the subsystem out, like a hardened server.
//!
//! The sessions get `HOME=<tempdir>/home` (sshd's `SetEnv`), so the host's own rc files
//! (e.g. root's `.bashrc` loading pyenv, ~120 ms per command) do not run: the fixture
//! behaves like a freshly installed node. The login shell is still root's (`bash`).
//!
//! A system-tier fixture (`common/tier.rs`): a test that starts it carries the system-tier
//! attribute.
//!
//! Also used by `benches/check_transport.rs` through `#[path]`, so it depends on std,
//! tempfile, breakfix and a sibling module `tier` (`common/tier.rs`, which the includer
//! declares) only.
#![allow(dead_code)]

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use breakfix::inventory::{Node, TransportKind};

/// A running sshd and its files.
pub struct Sshd {
    /// Holds every file below; removed on drop.
    pub dir: tempfile::TempDir,
    /// Loopback port sshd listens on.
    pub port: u16,
    /// The host's public key line (`ssh-ed25519 AAAA... comment`).
    pub host_key_pub: String,
    /// Client private key (OpenSSH format, ed25519, no passphrase).
    pub client_key: PathBuf,
    /// known_hosts listing the host key for `[127.0.0.1]:port`.
    pub known_hosts: PathBuf,
    /// sshd's own log (`-e` output).
    pub log: PathBuf,
    child: Child,
}

fn keygen(path: &Path, comment: &str) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen runs (apt-get install openssh-client)");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

/// A fresh ed25519 key pair in `dir` named `name`; returns (private key path, public line).
pub fn new_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let p = dir.join(name);
    keygen(&p, name);
    let public = std::fs::read_to_string(p.with_extension("pub")).expect("public key written");
    (p, public.trim().to_string())
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

impl Sshd {
    /// Starts sshd and waits (up to 10 s) until it sends its banner. Panics with sshd's log
    /// when it does not come up.
    pub fn start() -> Sshd {
        Sshd::start_with(true)
    }

    /// Like [`Sshd::start`], without the `sftp` subsystem.
    pub fn start_without_sftp() -> Sshd {
        Sshd::start_with(false)
    }

    fn start_with(sftp: bool) -> Sshd {
        super::tier::require_system_tier("sshd");
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "/usr/sbin/sshd missing (apt-get install openssh-server)"
        );
        // sshd refuses to start without its privilege-separation directory.
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");

        let dir = tempfile::Builder::new()
            .prefix("breakfix-sshd-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        let host_key = d.join("ssh_host_ed25519_key");
        keygen(&host_key, "breakfix-test-host");
        let host_key_pub = std::fs::read_to_string(d.join("ssh_host_ed25519_key.pub"))
            .expect("host public key")
            .trim()
            .to_string();
        let (client_key, client_pub) = new_key(d, "id_ed25519");
        std::fs::write(d.join("authorized_keys"), format!("{client_pub}\n"))
            .expect("authorized_keys");
        let home = d.join("home");
        std::fs::create_dir_all(home.join("bin")).expect("home dir");

        let log = d.join("sshd.log");
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let known_hosts = d.join("known_hosts");
            std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_key_pub}\n"))
                .expect("known_hosts");
            let config = d.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\n\
                     ListenAddress 127.0.0.1\n\
                     HostKey {hk}\n\
                     PidFile none\n\
                     AuthorizedKeysFile {ak}\n\
                     StrictModes no\n\
                     UsePAM no\n\
                     PermitRootLogin prohibit-password\n\
                     PubkeyAuthentication yes\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     AllowTcpForwarding yes\n\
                     MaxSessions 10\n\
                     MaxStartups 100:30:200\n\
                     SetEnv HOME={home} PATH={home}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
                     {subsystem}\
                     LogLevel VERBOSE\n",
                    hk = host_key.display(),
                    ak = d.join("authorized_keys").display(),
                    home = home.display(),
                    subsystem = if sftp {
                        "Subsystem sftp /usr/lib/openssh/sftp-server\n"
                    } else {
                        ""
                    },
                ),
            )
            .expect("sshd_config");
            let log_file = std::fs::File::create(&log).expect("sshd log");
            let mut child = Command::new(sshd)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("log fd"))
                .stderr(log_file)
                .spawn()
                .expect("spawn /usr/sbin/sshd");
            match wait_ready(&mut child, port, Duration::from_secs(10)) {
                Ok(()) => {
                    return Sshd {
                        dir,
                        port,
                        host_key_pub,
                        client_key,
                        known_hosts,
                        log,
                        child,
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_err = format!(
                        "{e}\n--- sshd log ---\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
        }
        panic!("sshd did not start: {last_err}");
    }

    /// sshd's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Directory first on the sessions' PATH (`<home>/bin`, empty unless a test puts
    /// programs there).
    pub fn bin_dir(&self) -> PathBuf {
        self.dir.path().join("home/bin")
    }

    /// Kills (by PID) this sshd's `sftp-server` processes; returns how many there were.
    pub fn kill_sftp_servers(&self) -> usize {
        let mut killed = 0;
        for pid in descendants(self.child.id()) {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sftp-server" {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                killed += 1;
            }
        }
        killed
    }

    /// How many command sessions (`exec` requests) sshd has started so far.
    pub fn command_sessions(&self) -> usize {
        self.log_text().matches("Starting session: command").count()
    }

    /// How many `sftp` subsystem sessions sshd has started so far.
    pub fn sftp_sessions(&self) -> usize {
        self.log_text()
            .matches("Starting session: subsystem 'sftp'")
            .count()
    }

    /// sshd's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills (by PID) every process this sshd forked for client connections, which drops
    /// all connections as a node reboot or an sshd restart would; the listener stays up.
    pub fn drop_connections(&self) {
        for pid in descendants(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// Writes an inventory file naming this fixture as node `fixture` (role control-plane;
    /// etcd TLS paths that do not exist) to `path`.
    pub fn write_inventory(&self, path: &std::path::Path) {
        let n = self.node();
        std::fs::write(
            path,
            format!(
                "apiVersion: breakfix/v1\nkind: Inventory\ncluster:\n  name: loopback\n  etcd:\n    endpoints: [https://127.0.0.1:2379]\n    ca_file: /nonexistent/ca.crt\n    cert_file: /nonexistent/c.crt\n    key_file: /nonexistent/c.key\nnodes:\n  - name: fixture\n    address: 127.0.0.1\n    port: {}\n    user: root\n    identity_file: {}\n    known_hosts: {}\n    roles: [control-plane]\n",
                n.port,
                n.identity_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                n.known_hosts.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            ),
        )
        .expect("write inventory");
    }

    /// An inventory node for this server (user root, the fixture's key and known_hosts).
    pub fn node(&self) -> Node {
        Node {
            name: "fixture".into(),
            address: "127.0.0.1".into(),
            port: self.port,
            user: "root".into(),
            identity_file: Some(self.client_key.clone()),
            known_hosts: Some(self.known_hosts.clone()),
            roles: vec!["control-plane".into()],
            transport: TransportKind::Ssh,
        }
    }

    /// `name (address:port)` as the transport names this server.
    pub fn host_label(&self) -> String {
        format!("fixture (127.0.0.1:{})", self.port)
    }

    /// The host key's `SHA256:...` fingerprint.
    pub fn host_fingerprint(&self) -> String {
        let key = breakfix_host_key(&self.host_key_pub);
        key.fingerprint(russh::keys::HashAlg::Sha256).to_string()
    }

    /// Writes `text` as a known_hosts file in the fixture dir and returns its path.
    pub fn write_known_hosts(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write known_hosts");
        p
    }
}

/// Waits until sshd (`child`) answers on 127.0.0.1:`port` with its banner.
fn wait_ready(child: &mut Child, port: u16, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while start.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("sshd exited: {status}"));
        }
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 7];
            if s.read_exact(&mut buf).is_ok() && &buf == b"SSH-2.0" {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "no SSH banner on 127.0.0.1:{port} within {limit:?}"
    ))
}

/// All descendants of `root` (from /proc), children before grandchildren.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (pid, ppid) in &parent_of {
            if *ppid == p {
                out.push(*pid);
                frontier.push(*pid);
            }
        }
    }
    out
}

fn breakfix_host_key(line: &str) -> russh::keys::PublicKey {
    russh::keys::PublicKey::from_openssh(line).expect("host public key parses")
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // By PID (std's Child::kill sends SIGKILL to exactly this process).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
