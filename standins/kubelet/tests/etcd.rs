//! The REAL etcd (/usr/bin/etcd) as a static pod of the stand-in, on 127.0.0.1 and free ports:
//! a bad --listen-client-urls crash-loops with the bind error in the pod log, and a new
//! --data-dir restarts etcd on an empty store (reverting brings the data back).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn etcd_manifest(
    data_dir: &Path,
    volume_dir: &Path,
    listen_client: &str,
    client_port: u16,
    peer_port: u16,
) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/etcd.advertise-client-urls: http://127.0.0.1:{client_port}
  labels:
    component: etcd
    tier: control-plane
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --name={NODE}
    - --data-dir={data}
    - --listen-client-urls={listen_client}
    - --advertise-client-urls=http://127.0.0.1:{client_port}
    - --listen-peer-urls=http://127.0.0.1:{peer_port}
    - --initial-advertise-peer-urls=http://127.0.0.1:{peer_port}
    - --initial-cluster={NODE}=http://127.0.0.1:{peer_port}
    - --logger=zap
    image: registry.k8s.io/etcd:3.5.15-0
    imagePullPolicy: IfNotPresent
    name: etcd
    resources:
      requests:
        cpu: 100m
        memory: 100Mi
    volumeMounts:
    - mountPath: {volume}
      name: etcd-data
  hostNetwork: true
  priority: 2000001000
  priorityClassName: system-node-critical
  securityContext:
    seccompProfile:
      type: RuntimeDefault
  terminationGracePeriodSeconds: 10
  volumes:
  - hostPath:
      path: {volume}
      type: DirectoryOrCreate
    name: etcd-data
status: {{}}
"#,
        data = data_dir.display(),
        volume = volume_dir.display(),
    )
}

fn etcdctl(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=http://127.0.0.1:{port}"))
        .args(["--dial-timeout=2s", "--command-timeout=3s"])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

#[test]
fn bad_listen_client_urls_crash_loops_with_the_bind_error() {
    let k = Standin::start(&["--backoff-base", "200ms"]);
    let data = k.path("etcd");
    // 10.255.255.1 is not an address of this host: bind(2) fails locally, nothing is sent.
    k.write_manifest(
        "etcd.yaml",
        &etcd_manifest(
            &data,
            &data,
            "http://10.255.255.1:2379",
            free_port(),
            free_port(),
        ),
    );
    let c = wait_for(60, "etcd restarted twice", || {
        k.container("etcd")
            .filter(|c| c["restart_count"].as_u64() >= Some(2))
    });
    assert_eq!(c["exit_code"], 1, "{c}");
    let pod_logs = wait_for(10, "bind error in a pod log", || {
        let dir = k.log_path("etcd", "etcd", 0)?.parent()?.to_path_buf();
        let all: String = std::fs::read_dir(&dir)
            .ok()?
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect();
        all.contains("bind: cannot assign requested address")
            .then_some(all)
    });
    assert!(
        pod_logs.contains("listen tcp 10.255.255.1:2379"),
        "{pod_logs}"
    );
    let journal = k.journal();
    assert!(journal.contains("with CrashLoopBackOff: \\\"back-off 200ms restarting failed container=etcd pod=etcd-testnode_kube-system("), "{journal}");
    assert!(
        journal.contains(
            "Back-off restarting failed container etcd in pod etcd-testnode_kube-system("
        ),
        "{journal}"
    );
    assert!(
        journal.contains(r#"exitCode=1 pod="kube-system/etcd-testnode" containerName="etcd""#),
        "{journal}"
    );
    assert!(
        journal.contains(r#"image="registry.k8s.io/etcd:3.5.15-0" command="etcd""#),
        "{journal}"
    );
}

#[test]
fn changing_the_data_dir_restarts_etcd_on_an_empty_store() {
    let k = Standin::start(&[]);
    let (cport, pport) = (free_port(), free_port());
    let data = k.path("etcd");
    let client = format!("http://127.0.0.1:{cport}");
    k.write_manifest(
        "etcd.yaml",
        &etcd_manifest(&data, &data, &client, cport, pport),
    );
    let pid1 = wait_for(20, "etcd running", || k.running_pid("etcd"));
    assert!(
        cmdline(pid1).starts_with("etcd --name=testnode"),
        "{}",
        cmdline(pid1)
    );
    wait_for(30, "put works", || {
        etcdctl(cport, &["put", "/registry/configmaps/default/t", "a=b"])
    });
    assert!(
        data.join("member").is_dir(),
        "etcd wrote into the hostPath dir"
    );

    // The seed fault: --data-dir points somewhere new (the volume is unchanged).
    let new_dir = k.path("etcd-new");
    k.write_manifest(
        "etcd.yaml",
        &etcd_manifest(&new_dir, &data, &client, cport, pport),
    );
    let pid2 = wait_for(30, "etcd restarted", || {
        k.running_pid("etcd").filter(|p| *p != pid1)
    });
    assert!(!alive(pid1));
    let keys = wait_for(30, "etcd answers", || {
        etcdctl(cport, &["get", "/registry", "--prefix", "--keys-only"])
    });
    assert_eq!(keys.trim(), "", "new data dir must be an empty store");
    let log = wait_for(10, "new member log", || {
        let l = k.read_log("etcd", "etcd", 0);
        l.contains("\"member-initialized\":false").then_some(l)
    });
    assert!(log.contains(&new_dir.display().to_string()), "{log}");

    // Reverting brings the objects back.
    k.write_manifest(
        "etcd.yaml",
        &etcd_manifest(&data, &data, &client, cport, pport),
    );
    wait_for(30, "etcd restarted again", || {
        k.running_pid("etcd").filter(|p| *p != pid2)
    });
    let keys = wait_for(30, "old key back", || {
        etcdctl(cport, &["get", "/registry", "--prefix", "--keys-only"])
            .filter(|k| k.contains("/registry/configmaps/default/t"))
    });
    assert!(keys.contains("/registry/configmaps/default/t"));
    let journal = k.journal();
    assert_eq!(
        journal.matches("\"SyncLoop REMOVE\"").count(),
        2,
        "{journal}"
    );
    assert!(journal.contains("gracePeriod=10"), "{journal}");
}
