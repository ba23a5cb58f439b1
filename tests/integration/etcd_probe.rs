//! The `etcd` probe against a REAL etcd 3.4 (Debian's `/usr/bin/etcd`) started per test on
//! 127.0.0.1 with free ports, a temp data dir and a mutual-TLS PKI generated with rcgen;
//! the probe reaches it through a `NodeSession` on the local transport, as on a node.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use breakfix::engine::connect::NodeSession;
use breakfix::inventory::{Cluster, EtcdInfo, Inventory, Node, Topology, TransportKind};
use breakfix::probe::etcd::EtcdProbe;
use breakfix::probe::{Facts, ProbeCtx};
use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::{json, Value};

const ETCD: &str = "/usr/bin/etcd";

/// A CA able to issue leaf certificates.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl Ca {
    fn new(cn: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
        ];
        let pem = params.self_signed(&key).expect("self-sign CA").pem();
        Ca { params, key, pem }
    }

    /// (certificate PEM, key PEM).
    fn issue(&self, cn: &str, sans: &[&str], server: bool) -> (String, String) {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("SANs");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if server {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    }
}

/// PEM files in a temp dir: the etcd CA, etcd's server pair, a client pair, and an unrelated CA.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
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

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn path_str(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

/// A free TCP port on 127.0.0.1 (bound then released).
fn free_port() -> u16 {
    let l = TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// One real etcd member with `--client-cert-auth`; SIGKILLed (by PID) on drop.
struct Etcd {
    child: Option<Child>,
    pki: Pki,
    data: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    extra: Vec<String>,
}

impl Etcd {
    async fn start(extra: &[&str]) -> Etcd {
        let mut e = Etcd {
            child: None,
            pki: Pki::new(),
            data: tempfile::tempdir().expect("data tempdir"),
            client_port: free_port(),
            peer_port: free_port(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        e.spawn();
        e.wait_ready().await;
        e
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }

    fn spawn(&mut self) {
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = self.data.path().join("etcd.log");
        let child = Command::new(ETCD)
            .args(["--name", "probe-test"])
            .arg(format!(
                "--data-dir={}",
                self.data.path().join("member-data").display()
            ))
            .arg(format!("--listen-client-urls={}", self.url()))
            .arg(format!("--advertise-client-urls={}", self.url()))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=probe-test={peer}"))
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

    /// SIGKILLs the etcd process (by its PID) and reaps it.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `sig` to the etcd process (by PID).
    fn signal(&self, sig: Signal) {
        let pid = self
            .child
            .as_ref()
            .map(|c| c.id())
            .expect("etcd is running");
        kill(
            Pid::from_raw(i32::try_from(pid).expect("pid fits i32")),
            sig,
        )
        .expect("signal etcd");
    }

    /// A direct client (no forward) for setting data up.
    async fn client(&self) -> Client {
        let read = |n: &str| std::fs::read(self.pki.path(n)).expect("read PEM");
        let tls = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(read("ca.crt")))
            .identity(Identity::from_pem(read("client.crt"), read("client.key")));
        let opts = ConnectOptions::new()
            .with_tls(tls)
            .with_timeout(Duration::from_secs(5))
            .with_connect_timeout(Duration::from_secs(5));
        Client::connect([self.url()], Some(opts))
            .await
            .expect("etcd client")
    }

    async fn wait_ready(&self) {
        let start = Instant::now();
        let mut c = self.client().await;
        loop {
            let probe = tokio::time::timeout(Duration::from_secs(2), c.get("health", None)).await;
            if matches!(probe, Ok(Ok(_))) {
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
    /// this member, with `ca` as the CA file.
    fn inventory(&self, ca: &str) -> Inventory {
        Inventory {
            api_version: "breakfix/v1".into(),
            kind: "Inventory".into(),
            cluster: Cluster {
                name: "etcd-probe-test".into(),
                topology: Topology::External,
                etcd: EtcdInfo {
                    endpoints: vec![self.url()],
                    ca_file: self.pki.path_str(ca),
                    cert_file: self.pki.path_str("client.crt"),
                    key_file: self.pki.path_str("client.key"),
                },
                kubeconfig: None,
            },
            nodes: vec![local_node()],
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn local_node() -> Node {
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

async fn session() -> NodeSession {
    NodeSession::connect(&local_node(), Duration::from_secs(5))
        .await
        .expect("local session")
}

/// An `etcd` probe as a scenario would write it (extra YAML lines go under the name).
fn probe(extra: &str) -> EtcdProbe {
    let yaml = format!("name: etcd-test\n{extra}expect: {{}}\n");
    serde_saphyr::from_str(&yaml).expect("probe YAML")
}

async fn gather(
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

fn fact<'a>(f: &'a Facts, name: &str) -> &'a Value {
    f.values
        .get(name)
        .unwrap_or_else(|| panic!("fact `{name}` missing from {f:?}"))
}

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn live_etcd_reports_health_status_and_members() {
    let etcd = Etcd::start(&[]).await;
    let inv = etcd.inventory("ca.crt");
    let s = session().await;
    let p = probe("");

    let only = gather(&p, &s, &inv, T, &["healthy"]).await;
    assert_eq!(only.values.len(), 1, "only the wanted fact: {only:?}");
    assert_eq!(fact(&only, "healthy"), &json!(true));
    assert_eq!(only.note, None);

    let all = [
        "healthy",
        "leader",
        "db_size",
        "revision",
        "alarms",
        "members",
        "member_names",
        "member_peer_urls",
    ];
    let f = gather(&p, &s, &inv, T, &all).await;
    assert_eq!(fact(&f, "healthy"), &json!(true));
    assert_eq!(fact(&f, "leader"), &json!(true));
    assert_eq!(fact(&f, "members"), &json!(1));
    assert_eq!(fact(&f, "member_names"), &json!(["probe-test"]));
    assert_eq!(
        fact(&f, "member_peer_urls"),
        &json!([format!("http://127.0.0.1:{}", etcd.peer_port)])
    );
    assert_eq!(fact(&f, "alarms"), &json!([]));
    assert!(
        fact(&f, "revision").as_i64().is_some_and(|r| r >= 1),
        "{f:?}"
    );
    assert!(fact(&f, "db_size").as_i64().is_some_and(|d| d > 0), "{f:?}");
    assert_eq!(f.note, None);

    // The revision follows writes.
    let before = fact(&f, "revision").as_i64().unwrap_or_default();
    etcd.client()
        .await
        .put("/rev/bump", "x", None)
        .await
        .expect("put");
    let f = gather(&p, &s, &inv, T, &["revision"]).await;
    assert_eq!(fact(&f, "revision"), &json!(before + 1));
}

#[tokio::test]
async fn key_count_and_writable() {
    let etcd = Etcd::start(&[]).await;
    let inv = etcd.inventory("ca.crt");
    let s = session().await;
    let mut c = etcd.client().await;
    for i in 0..7 {
        c.put(format!("/registry/configmaps/default/cm{i}"), "v", None)
            .await
            .expect("put");
    }
    c.put("/registry/secrets/default/s", "v", None)
        .await
        .expect("put");
    c.put("elsewhere", "v", None).await.expect("put");

    let f = gather(
        &probe("prefix: /registry/configmaps/\n"),
        &s,
        &inv,
        T,
        &["key_count"],
    )
    .await;
    assert_eq!(fact(&f, "key_count"), &json!(7));
    let f = gather(&probe(""), &s, &inv, T, &["key_count"]).await;
    assert_eq!(fact(&f, "key_count"), &json!(8), "default prefix `/`");
    let f = gather(&probe("prefix: \"\"\n"), &s, &inv, T, &["key_count"]).await;
    assert_eq!(fact(&f, "key_count"), &json!(9), "empty prefix: every key");

    let f = gather(&probe(""), &s, &inv, T, &["writable", "healthy"]).await;
    assert_eq!(fact(&f, "writable"), &json!(true), "{f:?}");
    assert_eq!(fact(&f, "healthy"), &json!(true));
    let left = c
        .get(
            "/breakfix/probe/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .expect("count");
    assert_eq!(left.count(), 0, "the scratch key is deleted");
}

#[tokio::test]
async fn killed_etcd_is_unhealthy_within_the_timeout_and_recovers_on_restart() {
    let mut etcd = Etcd::start(&[]).await;
    let inv = etcd.inventory("ca.crt");
    let s = session().await;
    let p = probe("");
    let timeout = Duration::from_secs(2);
    let f = gather(&p, &s, &inv, timeout, &["healthy", "alarms"]).await;
    assert_eq!(fact(&f, "healthy"), &json!(true));
    assert!(s.etcd.lock().await.is_some(), "the access is cached");

    etcd.kill();
    let start = Instant::now();
    let f = gather(&p, &s, &inv, timeout, &["healthy", "alarms"]).await;
    let first = start.elapsed();
    eprintln!(
        "etcd killed: healthy=false after {first:?} (cached client); note: {:?}",
        f.note
    );
    assert_eq!(fact(&f, "healthy"), &json!(false));
    assert!(
        !f.values.contains_key("alarms"),
        "other facts absent: {f:?}"
    );
    assert!(f.note.as_deref().is_some_and(|n| !n.is_empty()), "{f:?}");
    assert!(first <= timeout + Duration::from_secs(1), "took {first:?}");
    assert!(
        s.etcd.lock().await.is_none(),
        "the cache is dropped after a failure"
    );

    // Fresh access against a dead port (nothing listening): same verdict, also bounded.
    let start = Instant::now();
    let f = gather(&p, &s, &inv, timeout, &["healthy"]).await;
    let second = start.elapsed();
    eprintln!(
        "etcd down, fresh access: healthy=false after {second:?}; note: {:?}",
        f.note
    );
    assert_eq!(fact(&f, "healthy"), &json!(false));
    assert!(
        f.note
            .as_deref()
            .is_some_and(|n| n.contains("is etcd running")),
        "{f:?}"
    );
    assert!(
        second <= timeout + Duration::from_secs(1),
        "took {second:?}"
    );

    // Same data dir and ports: the next attempt reconnects on its own.
    etcd.spawn();
    etcd.wait_ready().await;
    let f = gather(&p, &s, &inv, timeout, &["healthy", "member_names"]).await;
    assert_eq!(fact(&f, "healthy"), &json!(true), "{f:?}");
    assert_eq!(fact(&f, "member_names"), &json!(["probe-test"]));
}

#[tokio::test]
async fn frozen_etcd_is_unhealthy_at_the_deadline() {
    let etcd = Etcd::start(&[]).await;
    let inv = etcd.inventory("ca.crt");
    let s = session().await;
    let p = probe("");
    let timeout = Duration::from_secs(2);
    let f = gather(&p, &s, &inv, timeout, &["healthy"]).await;
    assert_eq!(fact(&f, "healthy"), &json!(true));

    // SIGSTOP: the port stays open, nothing answers. Drop still SIGKILLs it.
    etcd.signal(Signal::SIGSTOP);
    let start = Instant::now();
    let f = gather(&p, &s, &inv, timeout, &["healthy", "leader"]).await;
    let took = start.elapsed();
    eprintln!(
        "etcd frozen: healthy=false after {took:?}; note: {:?}",
        f.note
    );
    assert_eq!(fact(&f, "healthy"), &json!(false));
    assert!(!f.values.contains_key("leader"));
    assert!(
        f.note
            .as_deref()
            .is_some_and(|n| n.contains("deadline exceeded")),
        "{f:?}"
    );
    assert!(
        took >= timeout && took <= timeout + Duration::from_secs(1),
        "took {took:?}"
    );

    etcd.signal(Signal::SIGCONT);
    let f = gather(&p, &s, &inv, timeout, &["healthy"]).await;
    assert_eq!(fact(&f, "healthy"), &json!(true), "{f:?}");
}

#[tokio::test]
async fn wrong_ca_is_unhealthy_with_an_x509_note() {
    let etcd = Etcd::start(&[]).await;
    let inv = etcd.inventory("other-ca.crt");
    let s = session().await;
    let timeout = Duration::from_secs(2);
    let start = Instant::now();
    let f = gather(&probe(""), &s, &inv, timeout, &["healthy", "members"]).await;
    eprintln!("wrong CA: after {:?}; note: {:?}", start.elapsed(), f.note);
    assert_eq!(fact(&f, "healthy"), &json!(false));
    assert!(!f.values.contains_key("members"));
    let note = f.note.unwrap_or_default();
    assert!(
        note.contains("x509") && note.contains("unknown authority"),
        "{note}"
    );
    assert!(start.elapsed() <= timeout + Duration::from_secs(1));
}

#[tokio::test]
async fn replaced_ca_file_on_the_node_is_seen_by_the_next_attempt() {
    let etcd = Etcd::start(&[]).await;
    // The probe's CA is a copy, so etcd's own --trusted-ca-file stays untouched.
    std::fs::copy(etcd.pki.path("ca.crt"), etcd.pki.path("probe-ca.crt")).expect("copy CA");
    let inv = etcd.inventory("probe-ca.crt");
    let s = session().await;
    let p = probe("");
    let f = gather(&p, &s, &inv, T, &["healthy"]).await;
    assert_eq!(fact(&f, "healthy"), &json!(true));

    std::fs::copy(etcd.pki.path("other-ca.crt"), etcd.pki.path("probe-ca.crt")).expect("swap CA");
    // The node's TLS files are re-read when the last read is older than 1 s.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let f = gather(&p, &s, &inv, T, &["healthy"]).await;
    assert_eq!(
        fact(&f, "healthy"),
        &json!(false),
        "cached client must not hide the new CA"
    );
    assert!(
        f.note.as_deref().is_some_and(|n| n.contains("x509")),
        "{f:?}"
    );

    std::fs::copy(etcd.pki.path("ca.crt"), etcd.pki.path("probe-ca.crt")).expect("restore CA");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let f = gather(&p, &s, &inv, T, &["healthy"]).await;
    assert_eq!(fact(&f, "healthy"), &json!(true), "{f:?}");
}

#[tokio::test]
async fn client_cert_from_another_ca_is_rejected_by_etcd() {
    let etcd = Etcd::start(&[]).await;
    let mut inv = etcd.inventory("ca.crt");
    inv.cluster.etcd.cert_file = etcd.pki.path_str("other-client.crt");
    inv.cluster.etcd.key_file = etcd.pki.path_str("other-client.key");
    let s = session().await;
    let timeout = Duration::from_secs(2);
    let start = Instant::now();
    let f = gather(&probe(""), &s, &inv, timeout, &["healthy"]).await;
    eprintln!(
        "foreign client cert: after {:?}; note: {:?}",
        start.elapsed(),
        f.note
    );
    assert_eq!(fact(&f, "healthy"), &json!(false));
    let note = f.note.unwrap_or_default();
    assert!(note.contains("client certificate"), "{note}");
    assert!(start.elapsed() <= timeout + Duration::from_secs(1));
}

#[tokio::test]
async fn missing_tls_file_is_an_error_naming_the_path() {
    let etcd = Etcd::start(&[]).await;
    let mut inv = etcd.inventory("ca.crt");
    inv.cluster.etcd.key_file = "/nonexistent/breakfix/client.key".into();
    let s = session().await;
    let ctx = ProbeCtx {
        session: &s,
        inventory: &inv,
        timeout: T,
    };
    let err = probe("")
        .gather(&ctx, &["healthy"])
        .await
        .expect_err("must be an error");
    let msg = err.to_string();
    assert!(
        msg.contains("/nonexistent/breakfix/client.key") && msg.contains("key_file"),
        "{msg}"
    );
}

#[tokio::test]
async fn nospace_alarm_while_health_stays_true() {
    let etcd = Etcd::start(&["--quota-backend-bytes=16777216"]).await;
    let inv = etcd.inventory("ca.crt");
    let s = session().await;
    let p = probe("");
    let f = gather(&p, &s, &inv, T, &["alarms", "writable"]).await;
    assert_eq!(fact(&f, "alarms"), &json!([]));
    assert_eq!(fact(&f, "writable"), &json!(true));

    let mut c = etcd.client().await;
    let value = vec![b'x'; 1024 * 1024];
    let mut tripped = None;
    for i in 0..64 {
        if let Err(e) = c.put(format!("/fill/{i}"), value.clone(), None).await {
            tripped = Some(e.to_string());
            break;
        }
    }
    let tripped = tripped.expect("the quota must trip within 64 MiB of puts");
    assert!(tripped.contains("database space exceeded"), "{tripped}");

    let f = gather(
        &p,
        &s,
        &inv,
        T,
        &["healthy", "alarms", "writable", "db_size"],
    )
    .await;
    eprintln!("NOSPACE: {f:?}");
    assert_eq!(fact(&f, "alarms"), &json!(["NOSPACE"]));
    assert_eq!(
        fact(&f, "healthy"),
        &json!(true),
        "etcd 3.4 stays healthy with NOSPACE"
    );
    assert_eq!(fact(&f, "writable"), &json!(false));
    assert!(
        f.note
            .as_deref()
            .is_some_and(|n| n.contains("database space exceeded")),
        "{f:?}"
    );
    assert!(fact(&f, "db_size")
        .as_i64()
        .is_some_and(|d| d >= 16 * 1024 * 1024 - 4 * 1024 * 1024));
}

/// Keeps the helpers honest about where things live.
#[test]
fn pki_writes_all_files() {
    let pki = Pki::new();
    for n in [
        "ca.crt",
        "other-ca.crt",
        "server.crt",
        "server.key",
        "client.crt",
        "client.key",
    ] {
        assert!(Path::new(&pki.path(n)).exists(), "{n}");
    }
}

/// Starts etcd again on the sandbox's controlplane even when an assertion failed.
struct RestartEtcd<'a>(&'a crate::common::SandboxGuard);

impl Drop for RestartEtcd<'_> {
    fn drop(&mut self) {
        let _ = self.0.ssh("controlplane", "systemctl start etcd");
    }
}

/// Over SSH against the sandbox's controlplane: the node's own kubeadm TLS files, a
/// direct-tcpip forward to its 127.0.0.1:2379, the server certificate verified against
/// 127.0.0.1; then `systemctl stop etcd` seen as `healthy: false` and a start seen again.
#[test]
fn sandbox_controlplane_over_ssh() {
    let sb = crate::common::sandbox();
    let inv = sb.load();
    let node = inv
        .node("controlplane")
        .expect("controlplane in the inventory")
        .clone();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let s = NodeSession::connect(&node, Duration::from_secs(10))
            .await
            .expect("ssh to controlplane");
        let p = probe("");
        let all = [
            "healthy",
            "leader",
            "db_size",
            "revision",
            "alarms",
            "members",
            "member_names",
            "key_count",
            "writable",
        ];
        let start = Instant::now();
        let f = gather(&p, &s, &inv, T, &all).await;
        eprintln!(
            "sandbox, all facts over ssh in {:?}: {f:?}",
            start.elapsed()
        );
        assert_eq!(fact(&f, "healthy"), &json!(true), "{f:?}");
        assert_eq!(fact(&f, "leader"), &json!(true));
        assert_eq!(fact(&f, "alarms"), &json!([]));
        assert_eq!(fact(&f, "writable"), &json!(true));
        assert!(fact(&f, "member_names")
            .as_array()
            .is_some_and(|a| a.contains(&json!("controlplane"))));
        assert!(fact(&f, "revision").as_i64().is_some_and(|r| r >= 1));

        let _restart = RestartEtcd(&sb);
        sb.ssh_ok("controlplane", "systemctl stop etcd");
        let timeout = Duration::from_secs(2);
        let start = Instant::now();
        let f = gather(&p, &s, &inv, timeout, &["healthy", "alarms"]).await;
        let took = start.elapsed();
        eprintln!(
            "sandbox, etcd stopped: healthy=false after {took:?}; note: {:?}",
            f.note
        );
        assert_eq!(fact(&f, "healthy"), &json!(false), "{f:?}");
        assert!(!f.values.contains_key("alarms"));
        assert!(f.note.as_deref().is_some_and(|n| !n.is_empty()));
        assert!(took <= timeout + Duration::from_secs(1), "took {took:?}");

        sb.ssh_ok("controlplane", "systemctl start etcd");
        let start = Instant::now();
        loop {
            let f = gather(&p, &s, &inv, timeout, &["healthy"]).await;
            if fact(&f, "healthy") == &json!(true) {
                eprintln!(
                    "sandbox, etcd started: healthy=true after {:?}",
                    start.elapsed()
                );
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "still unhealthy: {f:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
}
