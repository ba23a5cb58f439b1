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

#[test]
fn etcd_on_an_empty_data_dir_and_back() {
    let mut s = Stack::start();
    let k = &s.kubectl;
    let r = k.eventually(
        &["create", "configmap", "keep", "--from-literal=a=b"],
        Duration::from_secs(15),
        |r| r.code == 0,
    );
    assert_eq!(r.code, 0, "{r:#?}");
    let old_dir = s.etcd.data_dir.clone();

    // A new, empty data dir: the objects are gone; what the cluster recreates by itself
    // (system namespaces, the kubernetes Service, nodes) comes back.
    s.etcd.restart_with_data_dir(s.path().join("etcd-empty"));
    let k = &s.kubectl;
    let r = k.eventually(&["get", "cm", "keep"], Duration::from_secs(30), |r| {
        r.stderr.contains("NotFound")
    });
    assert!(r.stderr.contains("configmaps \"keep\" not found"), "{r:#?}");
    let r = k.eventually(&["get", "ns"], Duration::from_secs(30), |r| {
        r.stdout.contains("kube-system")
    });
    assert!(r.stdout.contains("default"), "{r:#?}");
    let r = k.eventually(&["get", "nodes"], Duration::from_secs(30), |r| {
        r.stdout.contains("node01")
    });
    assert!(r.stdout.contains("controlplane"), "{r:#?}");

    // Back on the old data dir: the objects are back.
    s.etcd.restart_with_data_dir(old_dir);
    let r = s
        .kubectl
        .eventually(&["get", "cm", "keep"], Duration::from_secs(30), |r| {
            r.code == 0
        });
    assert!(r.stdout.contains("keep"), "{r:#?}\n{}", s.api.log_text());
}

#[test]
fn etcd_out_of_space_rejects_writes_with_the_etcd_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate(&dir.path().join("pki"));
    std::fs::write(dir.path().join("nodes.yaml"), NODES_YAML).expect("nodes");
    let etcd = Etcd::start_with(dir.path(), &pki, &["--quota-backend-bytes=16777216"]);
    let port = free_port();
    let api = ApiServer::start(
        dir.path(),
        &kubeadm_flags(&pki, port, &etcd.url(), dir.path()),
    );
    let k = Kubectl::new(dir.path(), &pki, port, ("admin.crt", "admin.key"));
    let r = k.eventually(&["get", "nodes"], Duration::from_secs(15), |r| {
        r.stdout.contains("node01")
    });
    assert_eq!(r.code, 0, "{r:#?}");

    let big = vec![b'x'; 1024 * 1024];
    for i in 0..40 {
        let out = etcd.etcdctl_stdin(&["put", &format!("/fill/{i}")], &big);
        if !out.status.success() {
            assert!(String::from_utf8_lossy(&out.stderr).contains("database space exceeded"));
            break;
        }
    }
    let r = k.run(&["create", "configmap", "nospace", "--from-literal=a=b"]);
    assert_eq!(r.code, 1, "{r:#?}");
    assert_eq!(
        r.stderr.trim(),
        "error: failed to create configmap: Internal error occurred: etcdserver: mvcc: database space exceeded"
    );
    // Reads still work, as on a real cluster with a NOSPACE alarm.
    let r = k.run(&["get", "nodes"]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(api.log_text().contains("database space exceeded"));
}

fn wrong_etcd_servers(url_of: impl Fn(&Etcd) -> String) {
    wrong_etcd_setup(url_of, |_| {}, "");
}

/// Starts etcd and the stand-in with a broken etcd setting (`url_of` gives --etcd-servers,
/// `edit` changes the flags) and checks the API fails like the real one; `log_has` must
/// appear in the stand-in's log.
fn wrong_etcd_setup(
    url_of: impl Fn(&Etcd) -> String,
    edit: impl Fn(&mut Vec<String>),
    log_has: &str,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate(&dir.path().join("pki"));
    std::fs::write(dir.path().join("nodes.yaml"), NODES_YAML).expect("nodes");
    let etcd = Etcd::start(dir.path(), &pki);
    let port = free_port();
    let mut args = kubeadm_flags(&pki, port, &url_of(&etcd), dir.path());
    edit(&mut args);
    let api = ApiServer::start(dir.path(), &args);
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
    let log = api.log_text();
    assert!(log.contains(log_has), "{log_has:?} not in:\n{log}");
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

#[test]
fn etcd_cafile_of_the_wrong_ca() {
    wrong_etcd_setup(
        |e| e.url(),
        |args| {
            for a in args.iter_mut() {
                if a.starts_with("--etcd-cafile=") {
                    *a = a.replace("etcd/ca.crt", "ca.crt");
                }
            }
        },
        "x509: certificate signed by unknown authority",
    );
}
