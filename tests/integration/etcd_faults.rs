//! The etcd fault kinds (`etcd_quota`, `etcd_keys`) against a REAL etcd 3.4 (Debian's
//! `/usr/bin/etcd`) started per test on 127.0.0.1 with free ports, a temp data dir, a small
//! `--quota-backend-bytes` and a mutual-TLS PKI generated with rcgen (the same set-up as
//! `etcd_probe.rs`). The faults reach it through a `NodeSession` on the local transport, as on
//! a node; the `etcd` probe grades the result. Last, a scenario file through the CLI
//! (`run --solution`, `break` + `reset`, `test`) proves the journaled undo and reset path.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use breakfix::engine::connect::NodeSession;
use breakfix::fault::etcd_keys::{EtcdKeysUndo, SavedKey};
use breakfix::fault::etcd_quota::{EtcdQuotaUndo, DEFAULT_PREFIX};
use breakfix::fault::file::FileUndo;
use breakfix::fault::{Action, ActionCtx, Undo};
use breakfix::inventory::{Cluster, EtcdInfo, Inventory, Node, Topology, TransportKind};
use breakfix::probe::etcd::{EtcdProbe, EtcdTarget};
use breakfix::probe::{Facts, ProbeCtx};
use breakfix::template::Renderer;
use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::{json, Value};

const ETCD: &str = "/usr/bin/etcd";
const ETCDCTL: &str = "/usr/bin/etcdctl";
const QUOTA_16MIB: &str = "--quota-backend-bytes=16777216";
const T: Duration = Duration::from_secs(10);

/// etcd CA, server pair (127.0.0.1) and client pair in a temp dir.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "etcd-ca");
        ca.distinguished_name = dn;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
        ];
        let ca_pem = ca.self_signed(&ca_key).expect("self-sign CA").pem();
        let issue = |cn: &str, sans: &[&str], server: bool| {
            let key = KeyPair::generate().expect("leaf key");
            let mut p =
                CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .expect("SANs");
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, cn);
            p.distinguished_name = dn;
            p.is_ca = IsCa::ExplicitNoCa;
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            if server {
                p.extended_key_usages
                    .push(ExtendedKeyUsagePurpose::ServerAuth);
            }
            let cert = p
                .signed_by(&key, &Issuer::from_params(&ca, &ca_key))
                .expect("sign leaf");
            (cert.pem(), key.serialize_pem())
        };
        let (sc, sk) = issue("etcd-server", &["127.0.0.1", "localhost"], true);
        let (cc, ck) = issue("breakfix-client", &[], false);
        for (name, body) in [
            ("ca.crt", ca_pem.as_str()),
            ("server.crt", &sc),
            ("server.key", &sk),
            ("client.crt", &cc),
            ("client.key", &ck),
        ] {
            std::fs::write(dir.path().join(name), body).expect("write PEM");
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

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
}

impl Etcd {
    async fn start(extra: &[&str]) -> Etcd {
        let pki = Pki::new();
        let data = tempfile::tempdir().expect("data tempdir");
        let client_port = free_port();
        let peer = format!("http://127.0.0.1:{}", free_port());
        let url = format!("https://127.0.0.1:{client_port}");
        let child = Command::new(ETCD)
            .args(["--name", "controlplane"])
            .arg(format!(
                "--data-dir={}",
                data.path().join("member-data").display()
            ))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=controlplane={peer}"))
            .arg(format!("--cert-file={}", pki.path("server.crt")))
            .arg(format!("--key-file={}", pki.path("server.key")))
            .arg(format!("--trusted-ca-file={}", pki.path("ca.crt")))
            .arg("--client-cert-auth")
            .args([
                "--logger=zap",
                &format!("--log-outputs={}", data.path().join("etcd.log").display()),
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start /usr/bin/etcd");
        let e = Etcd {
            child: Some(child),
            pki,
            data,
            client_port,
        };
        e.wait_ready().await;
        e
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }

    /// A direct client (no forward) for setting data up and looking at it.
    async fn client(&self) -> Client {
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

    async fn wait_ready(&self) {
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

    fn inventory(&self) -> Inventory {
        Inventory {
            api_version: "breakfix/v1".into(),
            kind: "Inventory".into(),
            cluster: Cluster {
                name: "etcd-faults-test".into(),
                topology: Topology::External,
                etcd: EtcdInfo {
                    endpoints: vec![self.url()],
                    ca_file: self.pki.path("ca.crt"),
                    cert_file: self.pki.path("client.crt"),
                    key_file: self.pki.path("client.key"),
                },
                kubeconfig: None,
            },
            nodes: vec![local_node()],
        }
    }

    fn target(&self) -> EtcdTarget {
        EtcdTarget::with_inventory_tls(&self.inventory(), &self.url())
    }

    /// `etcdctl` against this member with its client certificate.
    fn etcdctl(&self, args: &[&str]) -> Output {
        Command::new(ETCDCTL)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.url()))
            .arg(format!("--cacert={}", self.pki.path("ca.crt")))
            .arg(format!("--cert={}", self.pki.path("client.crt")))
            .arg(format!("--key={}", self.pki.path("client.key")))
            .args(args)
            .output()
            .expect("etcdctl runs")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
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

/// A fault as a scenario writes it, rendered for the node (connection fields from the
/// inventory), as the planner does.
fn action(yaml: &str, inv: &Inventory) -> Action {
    let a: Action = serde_saphyr::from_str(yaml).expect("fault YAML");
    a.render(&Renderer::new(&BTreeMap::new(), inv, &local_node()))
        .expect("render")
}

/// Applies `a` as a step (no journal: the tests build the undo the fault would journal).
async fn apply(a: &Action, s: &NodeSession) -> breakfix::Result<()> {
    let ctx = ActionCtx {
        session: s,
        journal: None,
        scenario: "etcd-faults-test",
        timeout: Duration::from_secs(60),
    };
    a.apply(&ctx).await
}

async fn facts(s: &NodeSession, inv: &Inventory, extra: &str, wanted: &[&str]) -> Facts {
    let p: EtcdProbe =
        serde_saphyr::from_str(&format!("name: t\n{extra}expect: {{}}\n")).expect("probe");
    let ctx = ProbeCtx {
        session: s,
        inventory: inv,
        timeout: T,
    };
    p.gather(&ctx, wanted).await.expect("gather")
}

fn fact<'a>(f: &'a Facts, name: &str) -> &'a Value {
    f.values
        .get(name)
        .unwrap_or_else(|| panic!("fact `{name}` missing from {f:?}"))
}

async fn count(c: &mut Client, prefix: &str) -> i64 {
    c.get(
        prefix,
        Some(GetOptions::new().with_prefix().with_count_only()),
    )
    .await
    .expect("count")
    .count()
}

#[tokio::test]
async fn quota_fill_raises_nospace_and_the_undo_recovers_in_order() {
    let etcd = Etcd::start(&[QUOTA_16MIB]).await;
    let inv = etcd.inventory();
    let s = session().await;
    let before = facts(&s, &inv, "", &["alarms", "writable", "db_size"]).await;
    assert_eq!(fact(&before, "alarms"), &json!([]));
    let db_before = fact(&before, "db_size").as_i64().expect("db_size");

    let fill = action("kind: etcd_quota\n", &inv);
    assert_eq!(
        fill.label(),
        format!("fill etcd until NOSPACE (under {DEFAULT_PREFIX})")
    );
    let start = Instant::now();
    apply(&fill, &s).await.expect("fill to NOSPACE");
    let took = start.elapsed();
    let broken = facts(&s, &inv, "", &["healthy", "alarms", "writable", "db_size"]).await;
    eprintln!("etcd_quota: NOSPACE after {took:?}: {broken:?}");
    assert_eq!(fact(&broken, "alarms"), &json!(["NOSPACE"]));
    assert_eq!(fact(&broken, "writable"), &json!(false));
    assert_eq!(
        fact(&broken, "healthy"),
        &json!(true),
        "etcd 3.4 stays healthy"
    );
    let db_broken = fact(&broken, "db_size").as_i64().expect("db_size");
    assert!(db_broken >= 12 << 20, "{db_broken}");
    assert!(
        took < Duration::from_secs(15),
        "a 16 MiB fill took {took:?}"
    );
    let mut c = etcd.client().await;
    assert!(count(&mut c, DEFAULT_PREFIX).await >= 10);

    // A second fill on a broken etcd is refused before anything changes.
    let err = apply(&fill, &s)
        .await
        .expect_err("already NOSPACE")
        .to_string();
    assert!(
        err.contains("controlplane") && err.contains("already has a NOSPACE alarm"),
        "{err}"
    );

    // The undo the fault journals, replayed twice.
    let undo = Undo::EtcdQuota(EtcdQuotaUndo {
        etcd: etcd.target(),
        prefix: DEFAULT_PREFIX.into(),
        db_size_before: db_before,
    });
    eprintln!("undo: {}", undo.describe());
    let start = Instant::now();
    undo.revert(&s).await.expect("recover");
    eprintln!("etcd_quota undo took {:?}", start.elapsed());
    let after = facts(&s, &inv, "", &["alarms", "writable", "db_size"]).await;
    eprintln!("after the undo: {after:?}");
    assert_eq!(fact(&after, "alarms"), &json!([]));
    assert_eq!(fact(&after, "writable"), &json!(true));
    let db_after = fact(&after, "db_size").as_i64().expect("db_size");
    assert!(
        db_after < db_broken / 4,
        "defragmented: {db_broken} -> {db_after}"
    );
    assert_eq!(count(&mut c, DEFAULT_PREFIX).await, 0);
    c.put("/after/recovery", "ok", None)
        .await
        .expect("a put works after the undo");
    let start = Instant::now();
    undo.revert(&s).await.expect("second undo: nothing to do");
    assert!(start.elapsed() < Duration::from_secs(2));
    let out = etcd.etcdctl(&["alarm", "list"]);
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
}

#[tokio::test]
async fn quota_undo_after_a_partial_recovery_still_defragments() {
    // The learner's classic half-fix: delete the filler, compact, disarm — no defrag. The
    // next put would re-raise the alarm; reset must still leave a writable etcd.
    let etcd = Etcd::start(&[QUOTA_16MIB]).await;
    let inv = etcd.inventory();
    let s = session().await;
    let db_before = fact(&facts(&s, &inv, "", &["db_size"]).await, "db_size")
        .as_i64()
        .expect("db_size");
    apply(
        &action("kind: etcd_quota\nprefix: /fill/\nconcurrency: 4\n", &inv),
        &s,
    )
    .await
    .expect("fill");
    let mut c = etcd.client().await;
    c.delete(
        "/fill/",
        Some(etcd_client::DeleteOptions::new().with_prefix()),
    )
    .await
    .expect("del");
    let rev = c
        .status()
        .await
        .expect("status")
        .header()
        .expect("header")
        .revision();
    c.compact(rev, None).await.expect("compact");
    let out = etcd.etcdctl(&["alarm", "disarm"]);
    assert!(out.status.success(), "{out:?}");
    let half = facts(&s, &inv, "", &["alarms", "writable"]).await;
    eprintln!("after compact + disarm without defrag: {half:?}");
    assert_eq!(
        fact(&half, "writable"),
        &json!(false),
        "the next put re-raises NOSPACE"
    );

    let undo = Undo::EtcdQuota(EtcdQuotaUndo {
        etcd: etcd.target(),
        prefix: "/fill/".into(),
        db_size_before: db_before,
    });
    undo.revert(&s).await.expect("recover");
    let after = facts(&s, &inv, "", &["alarms", "writable"]).await;
    assert_eq!(fact(&after, "alarms"), &json!([]));
    assert_eq!(fact(&after, "writable"), &json!(true), "{after:?}");
}

#[tokio::test]
async fn quota_fill_refuses_a_prefix_with_keys_and_a_registry_prefix() {
    let etcd = Etcd::start(&[QUOTA_16MIB]).await;
    let inv = etcd.inventory();
    let s = session().await;
    let mut c = etcd.client().await;
    c.put("/mine/keep", "v", None).await.expect("put");
    let err = apply(&action("kind: etcd_quota\nprefix: /mine/\n", &inv), &s)
        .await
        .expect_err("keys under the prefix")
        .to_string();
    assert!(
        err.contains("controlplane") && err.contains("already exist under `/mine/`"),
        "{err}"
    );
    let err = apply(&action("kind: etcd_quota\nprefix: /registry/\n", &inv), &s)
        .await
        .expect_err("registry prefix")
        .to_string();
    assert!(
        err.contains("would let the undo delete other keys"),
        "{err}"
    );
    let err = apply(&action("kind: etcd_quota\nvalue_size: 2000000\n", &inv), &s)
        .await
        .expect_err("too large")
        .to_string();
    assert!(err.contains("value_size 2000000"), "{err}");
    assert_eq!(count(&mut c, "/").await, 1, "nothing written");
}

#[tokio::test]
async fn quota_fill_without_a_small_quota_stops_at_max_bytes() {
    let etcd = Etcd::start(&[]).await;
    let inv = etcd.inventory();
    let s = session().await;
    let err = apply(&action("kind: etcd_quota\nmax_bytes: 4194304\n", &inv), &s)
        .await
        .expect_err("no NOSPACE within 4 MiB")
        .to_string();
    assert!(
        err.contains("controlplane") && err.contains("expected NOSPACE"),
        "{err}"
    );
    let undo = Undo::EtcdQuota(EtcdQuotaUndo {
        etcd: etcd.target(),
        prefix: DEFAULT_PREFIX.into(),
        db_size_before: 0,
    });
    undo.revert(&s).await.expect("undo after a partial fill");
    let mut c = etcd.client().await;
    assert_eq!(count(&mut c, DEFAULT_PREFIX).await, 0);
}

#[tokio::test]
async fn delete_keys_and_put_them_back() {
    let etcd = Etcd::start(&[]).await;
    let inv = etcd.inventory();
    let s = session().await;
    let mut c = etcd.client().await;
    let binary: Vec<u8> = (0u8..=255).collect();
    let keys: Vec<(&str, Vec<u8>)> = vec![
        (
            "/registry/deployments/default/critical-app",
            b"{\"kind\":\"Deployment\"}".to_vec(),
        ),
        (
            "/registry/deployments/default/critical-app-canary",
            b"canary".to_vec(),
        ),
        (
            "/registry/pods/default/critical-app-7d9f-abcde",
            binary.clone(),
        ),
        (
            "/registry/pods/default/critical-app-7d9f-fghij",
            b"pod2".to_vec(),
        ),
        ("/registry/pods/kube-system/etcd", b"other".to_vec()),
    ];
    for (k, v) in &keys {
        c.put(*k, v.clone(), None).await.expect("put");
    }

    // exact: only that key, not the canary.
    let one = action(
        "kind: etcd_keys\ndelete: /registry/deployments/default/critical-app\nexact: true\n",
        &inv,
    );
    assert_eq!(
        one.label(),
        "delete etcd key /registry/deployments/default/critical-app"
    );
    apply(&one, &s).await.expect("delete one");
    assert_eq!(count(&mut c, "/registry/deployments/").await, 1);
    // prefix: every pod of the app.
    let pods = action("kind: etcd_keys\ndelete: /registry/pods/default/\n", &inv);
    apply(&pods, &s).await.expect("delete pods");
    assert_eq!(count(&mut c, "/registry/pods/").await, 1);

    let enc = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    let saved = |list: &[&(&str, Vec<u8>)]| {
        list.iter()
            .map(|(k, v)| SavedKey {
                key: enc(k.as_bytes()),
                value: enc(v),
            })
            .collect::<Vec<_>>()
    };
    let undo_one = Undo::EtcdKeys(EtcdKeysUndo {
        etcd: etcd.target(),
        deleted: "/registry/deployments/default/critical-app".into(),
        keys: saved(&[&keys[0]]),
    });
    let undo_pods = Undo::EtcdKeys(EtcdKeysUndo {
        etcd: etcd.target(),
        deleted: "/registry/pods/default/".into(),
        keys: saved(&[&keys[2], &keys[3]]),
    });
    eprintln!("{} / {}", undo_one.describe(), undo_pods.describe());
    for u in [&undo_pods, &undo_one] {
        u.revert(&s).await.expect("put back");
    }
    let rev = c
        .status()
        .await
        .expect("status")
        .header()
        .expect("h")
        .revision();
    for u in [&undo_pods, &undo_one] {
        u.revert(&s).await.expect("idempotent");
    }
    assert_eq!(
        c.status()
            .await
            .expect("status")
            .header()
            .expect("h")
            .revision(),
        rev,
        "a second undo writes nothing"
    );
    for (k, v) in &keys {
        let r = c.get(*k, None).await.expect("get");
        assert_eq!(
            r.kvs().first().map(|kv| kv.value().to_vec()),
            Some(v.clone()),
            "{k}"
        );
    }

    let err = apply(
        &action("kind: etcd_keys\ndelete: /registry/nothing-here/\n", &inv),
        &s,
    )
    .await
    .expect_err("nothing to delete")
    .to_string();
    assert!(
        err.contains("controlplane") && err.contains("expected at least one"),
        "{err}"
    );
    let err = apply(
        &action("kind: etcd_keys\ndelete: /registry/\nmax_keys: 2\n", &inv),
        &s,
    )
    .await
    .expect_err("too many")
    .to_string();
    assert!(err.contains("more than max_keys (2)"), "{err}");
    assert_eq!(
        count(&mut c, "/registry/").await,
        5,
        "refusals change nothing"
    );
}

#[tokio::test]
async fn snapshot_saves_a_valid_file_on_the_node_and_undo_removes_it() {
    let etcd = Etcd::start(&[]).await;
    let inv = etcd.inventory();
    let s = session().await;
    let mut c = etcd.client().await;
    for i in 0..50 {
        c.put(
            format!("/registry/configmaps/default/cm{i}"),
            vec![b'x'; 2048],
            None,
        )
        .await
        .expect("put");
    }
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("backup.db");
    let snap = action(
        &format!("kind: etcd_keys\nsnapshot: {}\n", path.display()),
        &inv,
    );
    let start = Instant::now();
    apply(&snap, &s).await.expect("snapshot");
    eprintln!("snapshot saved in {:?}", start.elapsed());
    let meta = std::fs::metadata(&path).expect("the snapshot exists");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let out = Command::new(ETCDCTL)
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", "-w", "json"])
        .arg(&path)
        .output()
        .expect("etcdctl");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("etcdctl snapshot status: {text}");
    assert!(out.status.success(), "{out:?}");
    let status: Value = serde_json::from_str(text.trim()).expect("status json");
    assert!(
        status["totalKey"].as_i64().is_some_and(|n| n >= 50),
        "{status}"
    );

    // An existing path is never overwritten; a missing directory is an error.
    let err = apply(&snap, &s).await.expect_err("exists").to_string();
    assert!(err.contains("already exists on the node"), "{err}");
    let err = apply(
        &action(
            &format!(
                "kind: etcd_keys\nsnapshot: {}/no/such/dir/x.db\n",
                dir.path().display()
            ),
            &inv,
        ),
        &s,
    )
    .await
    .expect_err("no dir")
    .to_string();
    assert!(err.contains("does not exist on the node"), "{err}");

    // The undo the fault journals: remove the file (it did not exist).
    let undo = Undo::File(FileUndo {
        path: path.display().to_string(),
        pre_image: None,
        sha256: None,
        then: None,
    });
    undo.revert(&s).await.expect("remove");
    assert!(!path.exists());
    undo.revert(&s).await.expect("idempotent");
}

#[test]
fn etcd_keys_needs_exactly_one_mode() {
    let inv = Inventory {
        api_version: "breakfix/v1".into(),
        kind: "Inventory".into(),
        cluster: Cluster {
            name: "x".into(),
            topology: Topology::External,
            etcd: EtcdInfo {
                endpoints: vec!["https://127.0.0.1:2379".into()],
                ca_file: "/ca".into(),
                cert_file: "/c".into(),
                key_file: "/k".into(),
            },
            kubeconfig: None,
        },
        nodes: vec![local_node()],
    };
    let r = Renderer::new(&BTreeMap::new(), &inv, &local_node());
    for (yaml, want) in [
        ("kind: etcd_keys\n", "needs `delete:`"),
        ("kind: etcd_keys\ndelete: /a\nsnapshot: /b\n", "not both"),
        ("kind: etcd_keys\ndelete: \"\"\n", "every key"),
        ("kind: etcd_keys\nsnapshot: rel.db\n", "absolute path"),
    ] {
        let a: Action = serde_saphyr::from_str(yaml).expect("yaml");
        let err = a.render(&r).expect_err(yaml).to_string();
        assert!(err.contains(want), "{yaml}: {err}");
    }
    // Rendering fills the connection from the inventory.
    let a: Action = serde_saphyr::from_str("kind: etcd_keys\nsnapshot: /b\n").expect("yaml");
    match a.render(&r).expect("render") {
        Action::EtcdKeys(k) => {
            assert_eq!(k.endpoint.as_deref(), Some("https://127.0.0.1:2379"));
            assert_eq!(k.key_file.as_deref(), Some("/k"));
        }
        other => panic!("{other:?}"),
    }
}

// ---- through the CLI ---------------------------------------------------------------------

struct Lab {
    etcd: Etcd,
    dir: tempfile::TempDir,
}

impl Lab {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn breakfix(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_breakfix"));
        cmd.args(args);
        if args.first() != Some(&"validate") {
            cmd.arg("--inventory").arg(self.path("inventory.yaml"));
        }
        cmd.env("BREAKFIX_STATE_DIR", self.path("state"))
            .env("BREAKFIX_NODE_JOURNAL_DIR", self.path("node-journal"))
            .env("NO_COLOR", "1")
            .output()
            .expect("breakfix runs")
    }

    fn journal_files(&self) -> usize {
        let n = |p: &Path| std::fs::read_dir(p).map(|rd| rd.count()).unwrap_or(0);
        n(&self.path("node-journal")) + n(&self.path("state/journal/controlplane"))
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const CRITICAL: &str = "/registry/deployments/default/critical-app";

async fn lab() -> Lab {
    let etcd = Etcd::start(&[QUOTA_16MIB]).await;
    let dir = tempfile::Builder::new()
        .prefix("breakfix-etcd-faults-")
        .tempdir()
        .expect("tempdir");
    let inv = format!(
        "apiVersion: breakfix/v1\nkind: Inventory\ncluster:\n  name: etcd-faults\n  etcd:\n    endpoints: [{}]\n    ca_file: {}\n    cert_file: {}\n    key_file: {}\nnodes:\n  - name: controlplane\n    address: 127.0.0.1\n    roles: [control-plane, etcd]\n    transport: local\n",
        etcd.url(),
        etcd.pki.path("ca.crt"),
        etcd.pki.path("client.crt"),
        etcd.pki.path("client.key"),
    );
    std::fs::write(dir.path().join("inventory.yaml"), inv).expect("inventory");
    let etcdctl = "etcdctl --endpoints={{ cluster.etcd.endpoints[0] }} --cacert={{ cluster.etcd.ca_file }} --cert={{ cluster.etcd.cert_file }} --key={{ cluster.etcd.key_file }}";
    let scenario = format!(
        r#"apiVersion: breakfix/v1
kind: Scenario
metadata:
  name: etcd-faults-cli
  title: a backup, an accidental deletion and a full quota
  time_limit: 60s
targets:
  controlplane:
    role: control-plane
faults:
  - kind: etcd_keys
    name: back up etcd
    snapshot: "{snap}"
  - kind: etcd_keys
    name: delete critical-app
    delete: {CRITICAL}
    exact: true
  - kind: etcd_quota
    name: fill the quota
confirm:
  - kind: etcd
    name: no-alarm
    expect:
      alarms: []
verify:
  probes:
    - kind: etcd
      name: alarms-clear
      within: 10s
      expect:
        alarms: []
    - kind: etcd
      name: accepts-writes
      needs: [alarms-clear]
      expect:
        writable: true
solution:
  - kind: command
    name: delete the filler, compact, defragment, disarm
    run: |
      set -e
      export ETCDCTL_API=3
      E="{etcdctl}"
      $E del --prefix /breakfix/quota-fill/ >/dev/null
      rev=$($E endpoint status -w json | grep -o '"revision":[0-9]*' | cut -d: -f2)
      $E compact "$rev" >/dev/null
      $E defrag >/dev/null
      $E alarm disarm >/dev/null
wrong_fixes:
  - name: compact and disarm without defragmenting
    why: the freed pages stay in the database file, so the next put raises NOSPACE again
    steps:
      - kind: command
        run: |
          set -e
          export ETCDCTL_API=3
          E="{etcdctl}"
          $E del --prefix /breakfix/quota-fill/ >/dev/null
          rev=$($E endpoint status -w json | grep -o '"revision":[0-9]*' | cut -d: -f2)
          $E compact "$rev" >/dev/null
          $E alarm disarm >/dev/null
        undo: "true"
"#,
        snap = dir.path().join("backup.db").display(),
    );
    std::fs::write(dir.path().join("scenario.yaml"), scenario).expect("scenario");
    let mut c = etcd.client().await;
    c.put(CRITICAL, "critical-app-v1", None)
        .await
        .expect("seed");
    Lab { etcd, dir }
}

async fn assert_baseline(lab: &Lab) {
    let mut c = lab.etcd.client().await;
    let r = c.get(CRITICAL, None).await.expect("get");
    assert_eq!(
        r.kvs().first().map(|kv| kv.value().to_vec()),
        Some(b"critical-app-v1".to_vec()),
        "critical-app is back"
    );
    assert_eq!(count(&mut c, DEFAULT_PREFIX).await, 0, "no filler left");
    let alarms = c
        .alarm(
            etcd_client::AlarmAction::Get,
            etcd_client::AlarmType::None,
            None,
        )
        .await
        .expect("alarms");
    assert!(alarms.alarms().is_empty());
    c.put("/breakfix/test/after", "ok", None)
        .await
        .expect("writable");
    c.delete("/breakfix/test/after", None).await.expect("del");
    assert!(!lab.path("backup.db").exists(), "the snapshot is removed");
    assert_eq!(lab.journal_files(), 0, "reset empties both journal copies");
}

#[tokio::test(flavor = "multi_thread")]
async fn scenario_through_the_cli_run_break_reset_and_selftest() {
    let lab = lab().await;
    let sc = lab.path("scenario.yaml");
    let sc = sc.to_str().expect("utf-8");

    let o = lab.breakfix(&["validate", sc]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // run --solution: break (journaled), confirm, the etcdctl recovery, verify, reset.
    let start = Instant::now();
    let o = lab.breakfix(&[
        "run",
        sc,
        "--solution",
        "--output",
        "json",
        "--poll",
        "200ms",
    ]);
    eprintln!("run --solution took {:?}", start.elapsed());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).expect("json report");
    assert_eq!(r["outcome"], "pass", "{r}");
    assert_eq!(r["confirm"][0]["status"], "fail", "{r}");
    assert!(
        r["confirm"][0]["checks"][0]["found"]
            .as_str()
            .is_some_and(|f| f.contains("NOSPACE")),
        "{r}"
    );
    assert_baseline(&lab).await;

    // break, then reset without any fix: the journal alone puts everything back.
    let o = lab.breakfix(&["break", sc]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        lab.path("backup.db").exists(),
        "the snapshot exists after the break"
    );
    let mut c = lab.etcd.client().await;
    assert_eq!(count(&mut c, CRITICAL).await, 0, "critical-app deleted");
    assert_eq!(lab.journal_files(), 6, "3 undos, local and node copies");
    let o = lab.breakfix(&["reset"]);
    eprintln!("reset:\n{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_baseline(&lab).await;

    // The self-test matrix: baseline, break, solution, reset to baseline, wrong fix fails.
    let junit = lab.path("junit.xml");
    let start = Instant::now();
    let o = lab.breakfix(&[
        "test",
        sc,
        "--output",
        "json",
        "--junit",
        junit.to_str().expect("utf-8"),
    ]);
    eprintln!("breakfix test took {:?}\n{}", start.elapsed(), text(&o));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).expect("json");
    let rows = r[0]["rows"].as_array().expect("rows");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "baseline",
            "break",
            "solution",
            "reset",
            "wrong-fix: compact and disarm without defragmenting"
        ]
    );
    assert!(rows.iter().all(|r| r["status"] == "pass"), "{r}");
    assert!(std::fs::read_to_string(&junit).is_ok_and(|j| j.contains("testcase")));
    assert_baseline(&lab).await;
}
