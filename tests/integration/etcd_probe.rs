//! The `etcd` probe against a REAL etcd 3.4 (Debian's `/usr/bin/etcd`) started per test on
//! 127.0.0.1 with free ports, a temp data dir and a mutual-TLS PKI generated with rcgen (all
//! in `common::etcd`); the probe reaches it through a `NodeSession` on the local transport, as
//! on a node.

use std::path::Path;
use std::time::{Duration, Instant};

use breakfix::node::NodeSession;
use breakfix::probe::{ProbeCtx, ProbeKind as _};
use etcd_client::GetOptions;
use nix::sys::signal::Signal;
use serde_json::json;

use crate::common::etcd::{fact, gather, probe, session, Etcd, Pki};

/// The member name these tests' etcd runs under.
const MEMBER: &str = "probe-test";

const T: Duration = Duration::from_secs(5);

/// The status facts every etcd has (the tests add the ones they need more).
const STATUS_FACTS: [&str; 7] = [
    "healthy",
    "leader",
    "db_size",
    "revision",
    "alarms",
    "members",
    "member_names",
];

#[tokio::test]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs etcd")]
async fn live_etcd_reports_health_status_and_members() {
    let etcd = Etcd::start_named(MEMBER, &[]).await;
    let inv = etcd.inventory();
    let s = session().await;
    let p = probe("");

    let only = gather(&p, &s, &inv, T, &["healthy"]).await;
    assert_eq!(only.values.len(), 1, "only the wanted fact: {only:?}");
    assert_eq!(fact(&only, "healthy"), &json!(true));
    assert_eq!(only.note, None);

    let all = [STATUS_FACTS.as_slice(), &["member_peer_urls"]].concat();
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

    // Raft's term and index (a single member elected itself at least once; the index counts
    // every entry, writes among them), and the members' KV hashes, compared at one revision
    // (one member agrees with itself: this proves the two HashKV rounds).
    let f = gather(
        &p,
        &s,
        &inv,
        T,
        &["raft_term", "raft_index", "hashes_agree"],
    )
    .await;
    assert!(
        fact(&f, "raft_term").as_u64().is_some_and(|t| t >= 1),
        "{f:?}"
    );
    let index = fact(&f, "raft_index").as_u64().unwrap_or_default();
    assert!(index >= 2, "{f:?}");
    assert_eq!(fact(&f, "hashes_agree"), &json!(true));
    assert_eq!(f.note, None);
    etcd.client()
        .await
        .put("/rev/bump", "y", None)
        .await
        .expect("put");
    let f = gather(&p, &s, &inv, T, &["raft_index"]).await;
    assert!(
        fact(&f, "raft_index").as_u64().is_some_and(|i| i > index),
        "a write moves the raft index past {index}: {f:?}"
    );
}

#[tokio::test]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs etcd")]
async fn key_count_and_writable() {
    let etcd = Etcd::start_named(MEMBER, &[]).await;
    let inv = etcd.inventory();
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

    // key_groups counts the cluster's keys: a leftover of a cut-short `writable` check (etcd's
    // scratch key, the kube probe's ConfigMap) is not one of them.
    c.put("/breakfix/probe/leftover", "v", None)
        .await
        .expect("put");
    c.put(
        "/registry/configmaps/default/breakfix-probe-0badf00d",
        "v",
        None,
    )
    .await
    .expect("put");
    let f = gather(&probe(""), &s, &inv, T, &["key_groups"]).await;
    assert_eq!(
        fact(&f, "key_groups"),
        &json!({"/registry/configmaps/": 7, "/registry/secrets/": 1}),
        "{f:?}"
    );
}

#[tokio::test]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs etcd")]
async fn killed_etcd_is_unhealthy_within_the_timeout_and_recovers_on_restart() {
    let mut etcd = Etcd::start_named(MEMBER, &[]).await;
    let inv = etcd.inventory();
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
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs etcd")]
async fn frozen_etcd_is_unhealthy_at_the_deadline() {
    let etcd = Etcd::start_named(MEMBER, &[]).await;
    let inv = etcd.inventory();
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
    // The deadline holds: not before it, and not hanging past it. The slack is for a loaded
    // machine (the suite runs two sandbox clusters beside this test), not for the probe.
    assert!(
        took >= timeout && took <= timeout + Duration::from_secs(5),
        "took {took:?}"
    );

    etcd.signal(Signal::SIGCONT);
    let f = gather(&p, &s, &inv, timeout, &["healthy"]).await;
    assert_eq!(fact(&f, "healthy"), &json!(true), "{f:?}");
}

#[tokio::test]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs etcd")]
async fn wrong_ca_is_unhealthy_with_an_x509_note() {
    let etcd = Etcd::start_named(MEMBER, &[]).await;
    let inv = etcd.inventory_with_ca("other-ca.crt");
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
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs etcd")]
async fn replaced_ca_file_on_the_node_is_seen_by_the_next_attempt() {
    let etcd = Etcd::start_named(MEMBER, &[]).await;
    // The probe's CA is a copy, so etcd's own --trusted-ca-file stays untouched.
    std::fs::copy(etcd.pki.path("ca.crt"), etcd.pki.path("probe-ca.crt")).expect("copy CA");
    let inv = etcd.inventory_with_ca("probe-ca.crt");
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
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs etcd")]
async fn client_cert_from_another_ca_is_rejected_by_etcd() {
    let etcd = Etcd::start_named(MEMBER, &[]).await;
    let mut inv = etcd.inventory();
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
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs etcd")]
async fn missing_tls_file_is_an_error_naming_the_path() {
    let etcd = Etcd::start_named(MEMBER, &[]).await;
    let mut inv = etcd.inventory();
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
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs etcd")]
async fn nospace_alarm_while_health_stays_true() {
    let etcd = Etcd::start_named(MEMBER, &["--quota-backend-bytes=16777216"]).await;
    let inv = etcd.inventory();
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
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
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
        let all = [STATUS_FACTS.as_slice(), &["key_count", "writable"]].concat();
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
