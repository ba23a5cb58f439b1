//! etcd faults as a lab sees them through kubectl: etcd killed (requests fail within a
//! bounded time, /readyz reports etcd, /livez stays ok), etcd back (both recover within
//! 30 s), and a wrong --etcd-servers (the peer port, a closed port).

mod common;

use std::time::{Duration, Instant};

use common::{free_port, kubeadm_flags, ApiServer, Etcd, Kubectl, Pki, Stack, NODES_YAML};

#[test]
fn killing_etcd_breaks_the_api_and_restarting_recovers_it() {
    let mut s = Stack::start();
    let r = s
        .kubectl
        .eventually(&["get", "nodes"], Duration::from_secs(15), |r| {
            r.stdout.contains("node01")
        });
    assert_eq!(r.code, 0, "{r:#?}");

    s.etcd.kill();
    let t = Instant::now();
    let r = s.kubectl.run(&["get", "nodes", "--request-timeout=5s"]);
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        r.stderr.contains("Timeout") || r.stderr.contains("deadline exceeded"),
        "{}",
        r.stderr
    );

    // A write fails the same way, with a Status the client understands.
    let r = s.kubectl.run(&[
        "create",
        "configmap",
        "during-outage",
        "--from-literal=a=b",
        "--request-timeout=5s",
    ]);
    assert_eq!(r.code, 1, "{r:#?}");

    let r = s
        .kubectl
        .eventually(&["get", "--raw", "/readyz"], Duration::from_secs(10), |r| {
            r.code != 0
        });
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(
        r.stderr.contains("Error from server (InternalError)"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("[-]etcd failed: reason withheld"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("readyz check failed"), "{}", r.stderr);
    let r = s.kubectl.run(&["get", "--raw", "/livez"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "ok"), "{r:#?}");
    let r = s.kubectl.run(&["get", "--raw", "/healthz"]);
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(
        r.stderr.contains("[-]etcd failed: reason withheld"),
        "{}",
        r.stderr
    );
    // The stand-in's log names the cause like the real one.
    let log = s.api.log_text();
    assert!(log.contains("connect: connection refused"), "{log}");

    s.etcd.restart();
    let t = Instant::now();
    let r = s.kubectl.eventually(
        &["get", "nodes", "--request-timeout=5s"],
        Duration::from_secs(30),
        |r| r.code == 0,
    );
    assert_eq!(r.code, 0, "{r:#?}\n{}", s.api.log_text());
    let r = s
        .kubectl
        .eventually(&["get", "--raw", "/readyz"], Duration::from_secs(30), |r| {
            r.code == 0
        });
    assert_eq!(r.stdout, "ok", "{r:#?}");
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "recovery took {:?}",
        t.elapsed()
    );
    let r = s
        .kubectl
        .run(&["create", "configmap", "after-outage", "--from-literal=a=b"]);
    assert_eq!(r.code, 0, "{r:#?}");
}

fn wrong_etcd_servers(url_of: impl Fn(&Etcd) -> String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate(&dir.path().join("pki"));
    std::fs::write(dir.path().join("nodes.yaml"), NODES_YAML).expect("nodes");
    let etcd = Etcd::start(dir.path(), &pki);
    let port = free_port();
    let api = ApiServer::start(
        dir.path(),
        &kubeadm_flags(&pki, port, &url_of(&etcd), dir.path()),
    );
    let k = Kubectl::new(dir.path(), &pki, port, ("admin.crt", "admin.key"));

    // The server starts and is alive ...
    let r = k.run(&["get", "--raw", "/livez"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "ok"), "{r:#?}");
    // ... but not ready, and storage requests fail after a bounded time.
    let r = k.eventually(
        &["get", "--raw", "/readyz?verbose"],
        Duration::from_secs(10),
        |r| r.code != 0,
    );
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(
        r.stderr.contains("[-]etcd failed: reason withheld"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("[-]etcd-readiness failed: reason withheld"),
        "{}",
        r.stderr
    );
    let t = Instant::now();
    let r = k.run(&["get", "nodes", "--request-timeout=5s"]);
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
    if std::env::var("SHOW_LOG").is_ok() {
        eprintln!("{}", api.log_text());
    }
    drop(api);
    drop(etcd);
}

#[test]
fn etcd_servers_pointing_at_the_peer_port() {
    wrong_etcd_servers(|e| format!("https://127.0.0.1:{}", e.peer_port));
}

#[test]
fn etcd_servers_pointing_at_a_closed_port() {
    wrong_etcd_servers(|_| format!("https://127.0.0.1:{}", free_port()));
}
