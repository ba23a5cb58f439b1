//! Acceptance with the real kubectl against the stand-in and a real etcd: nodes, pods,
//! `apply -f` of seed 000's workloads, the deployment reaching 3/3, configmaps, /readyz,
//! and the keys in etcd.

mod common;

use std::time::Duration;

use common::{Run, Stack, SEED_MONITOR, SEED_WORKLOADS};

fn ok(s: &Stack, r: &Run, what: &str) {
    assert_eq!(
        r.code,
        0,
        "{what}: {r:#?}\n--- stand-in log ---\n{}",
        s.api.log_text()
    );
}

#[test]
fn seed_workloads_configmaps_readyz_and_etcd_keys() {
    let s = Stack::start();
    let k = &s.kubectl;

    // Nodes from the node list, Ready, with roles and the reported version.
    let r = k.eventually(&["get", "nodes"], Duration::from_secs(15), |r| {
        r.code == 0 && r.stdout.contains("node01") && r.stdout.contains("controlplane")
    });
    ok(&s, &r, "get nodes");
    assert!(
        r.stdout
            .starts_with("NAME           STATUS   ROLES           AGE   VERSION"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("controlplane   Ready    control-plane"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("v1.32.4"), "{}", r.stdout);

    let r = k.run(&["get", "pods", "-A"]);
    ok(&s, &r, "get pods -A (empty)");

    // Seed 000, task 1.
    let r = k.run_stdin(
        &["apply", "-f", "-"],
        Some(&format!("{SEED_WORKLOADS}---\n{SEED_MONITOR}")),
    );
    ok(&s, &r, "apply -f seed");
    for line in [
        "deployment.apps/critical-app created",
        "service/critical-app-service created",
        "pod/cluster-monitor created",
    ] {
        assert!(r.stdout.contains(line), "{}", r.stdout);
    }

    let r = k.eventually(
        &["get", "deploy", "critical-app"],
        Duration::from_secs(15),
        |r| r.stdout.contains("3/3"),
    );
    ok(&s, &r, "get deploy critical-app");
    assert!(
        r.stdout
            .contains("NAME           READY   UP-TO-DATE   AVAILABLE   AGE"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("critical-app   3/3     3            3"),
        "{}",
        r.stdout
    );

    let r = k.run(&[
        "get",
        "deploy",
        "critical-app",
        "-o",
        "jsonpath={.status.readyReplicas}",
    ]);
    ok(&s, &r, "jsonpath");
    assert_eq!(r.stdout, "3");

    let r = k.eventually(&["get", "pods", "-A"], Duration::from_secs(10), |r| {
        r.stdout.matches("Running").count() >= 4
    });
    ok(&s, &r, "get pods -A");
    assert!(r.stdout.contains("NAMESPACE     NAME"), "{}", r.stdout);
    assert!(
        r.stdout.contains("kube-system   cluster-monitor"),
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stdout.matches("default       critical-app-").count(),
        3,
        "{}",
        r.stdout
    );

    let r = k.run(&["get", "pods", "-l", "app=critical-app", "-o", "wide"]);
    ok(&s, &r, "get pods -l");
    assert_eq!(r.stdout.lines().count(), 4, "{}", r.stdout);
    // The control plane is tainted: workloads land on the worker.
    assert_eq!(r.stdout.matches("node01").count(), 3, "{}", r.stdout);

    let r = k.run(&["get", "service", "critical-app-service"]);
    ok(&s, &r, "get service");
    assert!(r.stdout.contains("ClusterIP   10."), "{}", r.stdout);
    assert!(r.stdout.contains("80/TCP"), "{}", r.stdout);

    // Applying again changes nothing.
    let r = k.run_stdin(&["apply", "-f", "-"], Some(SEED_WORKLOADS));
    ok(&s, &r, "re-apply");
    assert!(
        r.stdout.contains("deployment.apps/critical-app unchanged"),
        "{}",
        r.stdout
    );

    // ConfigMaps: protobuf create, YAML get, delete.
    let r = k.run(&["create", "configmap", "t", "--from-literal=a=b"]);
    ok(&s, &r, "create configmap");
    assert_eq!(r.stdout.trim(), "configmap/t created");
    let r = k.run(&["get", "cm", "t", "-o", "yaml"]);
    ok(&s, &r, "get cm -o yaml");
    assert!(r.stdout.contains("data:\n  a: b\n"), "{}", r.stdout);
    assert!(
        r.stdout.contains("  name: t\n  namespace: default\n"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("resourceVersion: \""), "{}", r.stdout);
    assert!(r.stdout.contains("uid: "), "{}", r.stdout);
    let r = k.run(&["delete", "cm", "t"]);
    ok(&s, &r, "delete cm");
    assert_eq!(r.stdout.trim(), "configmap \"t\" deleted");
    let r = k.run(&["get", "cm", "t"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("Error from server (NotFound): configmaps \"t\" not found"),
        "{}",
        r.stderr
    );

    // Health.
    let r = k.run(&["get", "--raw", "/readyz"]);
    ok(&s, &r, "readyz");
    assert_eq!(r.stdout, "ok");
    let r = k.run(&["get", "--raw", "/readyz?verbose"]);
    ok(&s, &r, "readyz?verbose");
    assert!(
        r.stdout.starts_with("[+]ping ok\n[+]log ok\n[+]etcd ok\n"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.ends_with("readyz check passed\n"), "{}", r.stdout);

    // etcd holds the objects under the real key layout.
    let out = s
        .etcd
        .etcdctl(&["get", "/registry", "--prefix", "--keys-only"]);
    let keys = String::from_utf8_lossy(&out.stdout);
    for key in [
        "/registry/deployments/default/critical-app",
        "/registry/services/specs/default/critical-app-service",
        "/registry/services/specs/default/kubernetes",
        "/registry/pods/kube-system/cluster-monitor",
        "/registry/minions/controlplane",
        "/registry/minions/node01",
        "/registry/namespaces/kube-system",
    ] {
        assert!(keys.lines().any(|l| l == key), "{key} missing in:\n{keys}");
    }
    assert!(
        keys.contains("/registry/replicasets/default/critical-app-"),
        "{keys}"
    );
    assert!(!keys.contains("/registry/configmaps/default/t"), "{keys}");
    let out = s.etcd.etcdctl(&[
        "get",
        "/registry/deployments/default/critical-app",
        "--print-value-only",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON in etcd");
    assert_eq!(v["spec"]["replicas"], 3);

    // Client-side apply of a changed image: a strategic merge patch, then a rollout.
    let newer = SEED_WORKLOADS.replace("nginx:1.21", "nginx:1.22");
    let r = k.run_stdin(&["apply", "-f", "-"], Some(&newer));
    ok(&s, &r, "apply changed image");
    assert!(
        r.stdout.contains("deployment.apps/critical-app configured"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("service/critical-app-service unchanged"),
        "{}",
        r.stdout
    );
    let r = k.eventually(&["get", "rs"], Duration::from_secs(20), |r| {
        r.stdout
            .lines()
            .filter(|l| l.contains("critical-app-"))
            .count()
            == 2
            && r.stdout
                .lines()
                .any(|l| l.contains("   0         0         0"))
    });
    ok(&s, &r, "rollout to a new replica set");
    let r = k.run(&["get", "deploy", "critical-app", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.metadata.annotations.deployment\\.kubernetes\\.io/revision}"]);
    assert_eq!(r.stdout, "nginx:1.22 2", "{r:#?}");
    let r = k.run(&["get", "events"]);
    ok(&s, &r, "get events");
    assert!(r.stdout.contains("ScalingReplicaSet"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("Successfully assigned default/critical-app-"),
        "{}",
        r.stdout
    );
    let out = s
        .etcd
        .etcdctl(&["get", "/registry", "--prefix", "--keys-only"]);
    let keys = String::from_utf8_lossy(&out.stdout);
    assert!(
        keys.contains("/registry/leases/kube-node-lease/node01"),
        "{keys}"
    );
    assert!(
        keys.contains("/registry/events/default/critical-app."),
        "{keys}"
    );

    // Server-side apply of a change, then scale.
    let changed = newer.replace("replicas: 3", "replicas: 4");
    let r = k.run_stdin(&["apply", "--server-side", "-f", "-"], Some(&changed));
    ok(&s, &r, "apply --server-side");
    assert!(
        r.stdout
            .contains("deployment.apps/critical-app serverside-applied"),
        "{}",
        r.stdout
    );
    let r = k.eventually(
        &["get", "deploy", "critical-app"],
        Duration::from_secs(15),
        |r| r.stdout.contains("4/4"),
    );
    ok(&s, &r, "4/4");
    let r = k.run(&["scale", "deploy", "critical-app", "--replicas=2"]);
    ok(&s, &r, "scale");
    let r = k.eventually(
        &["get", "deploy", "critical-app"],
        Duration::from_secs(15),
        |r| r.stdout.contains("2/2"),
    );
    ok(&s, &r, "2/2");
}

#[test]
fn mirror_pods_follow_the_kubelet_status_file() {
    // A stand-in "kubelet" process under a unique name, and a short grace period.
    let comm = format!("kubelet{}", std::process::id() % 100_000);
    let s = Stack::start_with(&[
        format!("--breakfix-kubelet-comm={comm}"),
        "--breakfix-node-monitor-grace-period=3s".to_string(),
    ]);
    let fake = s.path().join(&comm);
    std::fs::copy("/bin/sleep", &fake).expect("copy sleep");
    let kubelet = common::Process::spawn(std::process::Command::new(&fake).arg("600"));
    let k = &s.kubectl;
    let manifest = s.path().join("etcd.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n  namespace: kube-system\n  labels:\n    component: etcd\n    tier: control-plane\nspec:\n  hostNetwork: true\n  containers:\n  - name: etcd\n    image: registry.k8s.io/etcd:3.5.16-0\n    command: [etcd, --data-dir=/var/lib/etcd]\n    resources:\n      requests:\n        cpu: 100m\n",
    )
    .expect("manifest");
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    let status = |state: &str, reason: &str, restarts: u32| {
        format!(
            r#"{{"node":"controlplane","updated":"{now}","pods":[
              {{"name":"etcd-controlplane","namespace":"kube-system","uid":"0a1b2c3d","manifest":"{}","phase":"Running",
                "containers":[{{"name":"etcd","pid":4242,"state":"{state}","reason":"{reason}","exit_code":1,"restart_count":{restarts},"started_at":"{now}","image":"registry.k8s.io/etcd:3.5.16-0"}}]}},
              {{"name":"kube-apiserver-controlplane","namespace":"kube-system","uid":"9f8e7d6c","manifest":"","phase":"Running",
                "containers":[{{"name":"kube-apiserver","pid":4343,"state":"running","reason":"","restart_count":0,"started_at":"{now}","image":"registry.k8s.io/kube-apiserver:v1.32.4"}}]}}]}}"#,
            manifest.display()
        )
    };
    std::fs::write(s.path().join("standin-pods.json"), status("running", "", 0))
        .expect("status file");
    let r = k.eventually(
        &["get", "pods", "-n", "kube-system"],
        Duration::from_secs(15),
        |r| {
            r.stdout.contains("etcd-controlplane")
                && r.stdout.contains("kube-apiserver-controlplane")
        },
    );
    assert_eq!(r.code, 0, "{r:#?}\n{}", s.api.log_text());
    assert!(
        r.stdout
            .contains("etcd-controlplane             1/1     Running"),
        "{}",
        r.stdout
    );
    let r = k.run(&[
        "get",
        "pod",
        "-n",
        "kube-system",
        "etcd-controlplane",
        "-o",
        "jsonpath={.metadata.labels.component} {.spec.nodeName} {.status.podIP}",
    ]);
    assert_eq!(r.stdout, "etcd controlplane 198.18.0.10", "{r:#?}");

    std::fs::write(
        s.path().join("standin-pods.json"),
        status("waiting", "CrashLoopBackOff", 3),
    )
    .expect("status file");
    let r = k.eventually(
        &["get", "pods", "-n", "kube-system"],
        Duration::from_secs(15),
        |r| r.stdout.contains("CrashLoopBackOff"),
    );
    assert!(
        r.stdout
            .contains("etcd-controlplane             0/1     CrashLoopBackOff   3"),
        "{}",
        r.stdout
    );

    std::fs::write(
        s.path().join("standin-pods.json"),
        format!(r#"{{"node":"controlplane","updated":"{now}","pods":[]}}"#),
    )
    .expect("status file");
    let r = k.eventually(
        &["get", "pods", "-n", "kube-system"],
        Duration::from_secs(15),
        |r| !r.stdout.contains("etcd-controlplane"),
    );
    assert!(!r.stdout.contains("kube-apiserver-controlplane"), "{r:#?}");

    // The kubelet process goes away: after the grace period the node is NotReady.
    let r = k.run(&["get", "nodes"]);
    assert!(r.stdout.contains("controlplane   Ready"), "{r:#?}");
    drop(kubelet);
    let r = k.eventually(&["get", "nodes"], Duration::from_secs(30), |r| {
        r.stdout.contains("controlplane   NotReady")
    });
    assert!(
        r.stdout.contains("controlplane   NotReady"),
        "{r:#?}\n{}",
        s.api.log_text()
    );
    assert!(r.stdout.contains("node01         Ready"), "{r:#?}");
    let r = k.run(&["get", "events", "-A"]);
    assert!(r.stdout.contains("NodeNotReady"), "{r:#?}");
}
