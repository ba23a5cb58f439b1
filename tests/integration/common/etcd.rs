//! A REAL etcd 3.4 (Debian's `/usr/bin/etcd`) on 127.0.0.1 for the etcd tests and the quota
//! benchmark: a mutual-TLS PKI generated with rcgen, a member on free ports with a temp data
//! dir, an inventory whose single node is this machine (local transport), and the `etcd`
//! probe's gather helpers.
//!
//! `Etcd::start(extra)` spawns `etcd --client-cert-auth` with `extra` flags (e.g.
//! `--quota-backend-bytes=16777216`) and waits until it answers a read; dropping the value
//! SIGKILLs that etcd by its PID.
//!
//! A system-tier fixture (`common/tier.rs`): a test that starts it carries the system-tier
//! attribute.
//!
//! Also used by `benches/quota_fill.rs` through `#[path]`, so it depends on std, the
//! package's own dependencies, breakfix, `common/pki.rs` (the CA) and a sibling module `tier`
//! (`common/tier.rs`, which the includer declares) only, not on the rest of `common`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use breakfix::inventory::{Cluster, EtcdInfo, Inventory, Node, Topology, TransportKind};
use breakfix::node::etcd::EtcdTarget;
use breakfix::node::NodeSession;
use breakfix::probe::etcd::EtcdProbe;
use breakfix::probe::{Facts, ProbeCtx, ProbeKind as _};
use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

#[path = "pki.rs"]
pub mod pki;
pub use pki::Ca;

/// The etcd binary.
pub const ETCD: &str = "/usr/bin/etcd";
/// The etcdctl binary.
pub const ETCDCTL: &str = "/usr/bin/etcdctl";
/// Member name of [`Etcd::start`] (the name of [`local_node`]).
pub const MEMBER: &str = "controlplane";

/// PEM files in a temp dir: the etcd CA (`ca.crt`), etcd's server pair (`server.*`, for
/// 127.0.0.1 and localhost), a client pair (`client.*`), and an unrelated CA
/// (`other-ca.crt`) with a client pair of its own (`other-client.*`).
pub struct Pki {
    /// The directory holding the files.
    pub dir: tempfile::TempDir,
}

impl Pki {
    /// Generates every file.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::new("etcd-ca");
        let other = Ca::new("some-other-ca");
        let (sc, sk) = ca.issue("etcd-server", &["127.0.0.1", "localhost"], true);
        let (cc, ck) = ca.issue("breakfix-client", &[], false);
        let (oc, ok) = other.issue("stranger", &[], false);
        for (name, body) in [
            ("ca.crt", ca.pem.as_str()),
            ("other-ca.crt", other.pem.as_str()),
            ("server.crt", &sc),
            ("server.key", &sk),
            ("client.crt", &cc),
            ("client.key", &ck),
            ("other-client.crt", &oc),
            ("other-client.key", &ok),
        ] {
            std::fs::write(dir.path().join(name), body).expect("write PEM");
        }
        Pki { dir }
    }

    /// The file `name` in the PKI dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// [`Pki::path`] as a string.
    pub fn path_str(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// One real etcd member with `--client-cert-auth`; SIGKILLed (by PID) on drop.
pub struct Etcd {
    child: Option<Child>,
    /// Its TLS files (and the client's).
    pub pki: Pki,
    /// Its data dir (`member-data/`) and log (`etcd.log`).
    pub data: tempfile::TempDir,
    /// Client port (HTTPS).
    pub client_port: u16,
    /// Peer port (plain HTTP).
    pub peer_port: u16,
    name: String,
    extra: Vec<String>,
}

impl Etcd {
    /// A fresh member named [`MEMBER`] with `extra` flags, answering reads.
    pub async fn start(extra: &[&str]) -> Etcd {
        Etcd::start_named(MEMBER, extra).await
    }

    /// A fresh member named `name` with `extra` flags, answering reads.
    pub async fn start_named(name: &str, extra: &[&str]) -> Etcd {
        super::tier::require_system_tier("etcd");
        let mut e = Etcd {
            child: None,
            pki: Pki::new(),
            data: tempfile::tempdir().expect("data tempdir"),
            client_port: free_port(),
            peer_port: free_port(),
            name: name.to_string(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        e.spawn();
        e.wait_ready().await;
        e
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }

    /// Starts the process (same data dir, ports and flags as before); see [`Etcd::wait_ready`].
    pub fn spawn(&mut self) {
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = self.data.path().join("etcd.log");
        let child = Command::new(ETCD)
            .arg("--name")
            .arg(&self.name)
            .arg(format!(
                "--data-dir={}",
                self.data.path().join("member-data").display()
            ))
            .arg(format!("--listen-client-urls={}", self.url()))
            .arg(format!("--advertise-client-urls={}", self.url()))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={}={peer}", self.name))
            .arg(format!("--cert-file={}", self.pki.path_str("server.crt")))
            .arg(format!("--key-file={}", self.pki.path_str("server.key")))
            .arg(format!("--trusted-ca-file={}", self.pki.path_str("ca.crt")))
            .arg("--client-cert-auth")
            .args(["--logger=zap", &format!("--log-outputs={}", log.display())])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start /usr/bin/etcd");
        self.child = Some(child);
    }

    /// The running process's PID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILLs the etcd process (by its PID) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `sig` to the etcd process (by PID).
    pub fn signal(&self, sig: Signal) {
        let pid = self.pid().expect("etcd is running");
        kill(
            Pid::from_raw(i32::try_from(pid).expect("pid fits i32")),
            sig,
        )
        .expect("signal etcd");
    }

    /// A direct client (no forward) for setting data up and looking at it.
    pub async fn client(&self) -> Client {
        let read = |n: &str| std::fs::read(self.pki.path(n)).expect("read PEM");
        let tls = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(read("ca.crt")))
            .identity(Identity::from_pem(read("client.crt"), read("client.key")));
        let opts = ConnectOptions::new()
            .with_tls(tls)
            .with_timeout(Duration::from_secs(10))
            .with_connect_timeout(Duration::from_secs(5));
        Client::connect([self.url()], Some(opts))
            .await
            .expect("etcd client")
    }

    /// Waits (up to 20 s, else panics with etcd's log) until etcd answers a read.
    pub async fn wait_ready(&self) {
        let start = Instant::now();
        let mut c = self.client().await;
        loop {
            let r = tokio::time::timeout(Duration::from_secs(2), c.get("health", None)).await;
            if matches!(r, Ok(Ok(_))) {
                return;
            }
            let log =
                std::fs::read_to_string(self.data.path().join("etcd.log")).unwrap_or_default();
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "etcd did not become ready in 20 s; log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An inventory whose single node is this machine (local transport) and whose etcd is
    /// this member, with the etcd CA and the client pair.
    pub fn inventory(&self) -> Inventory {
        self.inventory_with_ca("ca.crt")
    }

    /// [`Etcd::inventory`] with the PKI file `ca` as the CA file.
    pub fn inventory_with_ca(&self, ca: &str) -> Inventory {
        local_inventory(
            self.url(),
            &self.pki.path_str(ca),
            &self.pki.path_str("client.crt"),
            &self.pki.path_str("client.key"),
        )
    }

    /// This member as the etcd faults journal it.
    pub fn target(&self) -> EtcdTarget {
        EtcdTarget::with_inventory_tls(&self.inventory(), &self.url())
    }

    /// etcdctl's flags for this member with the client certificate.
    pub fn etcdctl_flags(&self) -> [String; 4] {
        [
            format!("--endpoints={}", self.url()),
            format!("--cacert={}", self.pki.path_str("ca.crt")),
            format!("--cert={}", self.pki.path_str("client.crt")),
            format!("--key={}", self.pki.path_str("client.key")),
        ]
    }

    /// `etcdctl` against this member with its client certificate.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        Command::new(ETCDCTL)
            .env("ETCDCTL_API", "3")
            .args(self.etcdctl_flags())
            .args(args)
            .output()
            .expect("etcdctl runs")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// This machine as the inventory node `controlplane` (local transport).
pub fn local_node() -> Node {
    Node {
        name: "controlplane".into(),
        address: "127.0.0.1".into(),
        port: 22,
        user: "root".into(),
        identity_file: None,
        known_hosts: None,
        roles: vec!["control-plane".into(), "etcd".into()],
        transport: TransportKind::Local,
    }
}

/// An inventory whose single node is [`local_node`] and whose etcd is at `endpoint` with
/// these TLS files.
pub fn local_inventory(
    endpoint: String,
    ca_file: &str,
    cert_file: &str,
    key_file: &str,
) -> Inventory {
    Inventory {
        api_version: "breakfix/v1".into(),
        kind: "Inventory".into(),
        cluster: Cluster {
            name: "etcd-test".into(),
            topology: Topology::External,
            etcd: EtcdInfo {
                endpoints: vec![endpoint],
                ca_file: ca_file.into(),
                cert_file: cert_file.into(),
                key_file: key_file.into(),
            },
            kubeconfig: None,
        },
        nodes: vec![local_node()],
    }
}

/// A session on [`local_node`].
pub async fn session() -> NodeSession {
    NodeSession::connect(&local_node(), Duration::from_secs(5))
        .await
        .expect("local session")
}

/// An `etcd` probe as a scenario would write it (extra YAML lines go under the name).
pub fn probe(extra: &str) -> EtcdProbe {
    let yaml = format!("name: etcd-test\n{extra}expect: {{}}\n");
    serde_saphyr::from_str(&yaml).expect("probe YAML")
}

/// The `wanted` facts of `p` on `s`, bounded by `timeout`.
pub async fn gather(
    p: &EtcdProbe,
    s: &NodeSession,
    inv: &Inventory,
    timeout: Duration,
    wanted: &[&str],
) -> Facts {
    let ctx = ProbeCtx {
        session: s,
        inventory: inv,
        timeout,
    };
    p.gather(&ctx, wanted).await.expect("gather must not error")
}

/// The fact `name` of `f` (panics when missing).
pub fn fact<'a>(f: &'a Facts, name: &str) -> &'a Value {
    f.values
        .get(name)
        .unwrap_or_else(|| panic!("fact `{name}` missing from {f:?}"))
}

/// How many keys start with `prefix`.
pub async fn count(c: &mut Client, prefix: &str) -> i64 {
    c.get(
        prefix,
        Some(GetOptions::new().with_prefix().with_count_only()),
    )
    .await
    .expect("count")
    .count()
}

/// etcd's current revision.
pub async fn revision(c: &mut Client) -> i64 {
    c.status()
        .await
        .expect("status")
        .header()
        .expect("header")
        .revision()
}
