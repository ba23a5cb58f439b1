//! The stacked topology (`breakfix sandbox up --topology stacked`): a kubeadm control plane
//! (etcd, kube-apiserver, kube-controller-manager, kube-scheduler as static pods of the real
//! kubelet, in containerd) inside systemd-nspawn nodes, driven with the kubectl built at the
//! pinned version (a copy of the node's admin.conf, an empty `--cache-dir` per test), the
//! real OpenSSH client for the faults, and the engine's `kube` probe through
//! `breakfix check --output json`.
//!
//! Every test that breaks something restores it in a drop guard (also when an assertion
//! fails) and waits for the API to be healthy again, so the next test gets a working cluster.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use breakfix::inventory::Topology;
use breakfix::sandbox::state::{ProcKind, Resource, State};

use crate::common::Cli;
use crate::common::{sandbox_stacked, SandboxGuard};

const MANIFEST: &str = "/etc/kubernetes/manifests/etcd.yaml";
/// Backup of the pristine etcd manifest, outside the manifests dir (the kubelet would run a
/// copy inside it as a second pod).
const BACKUP: &str = "/root/etcd.yaml.breakfix-test";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

/// kubectl with a copy of the node's /etc/kubernetes/admin.conf and its own cold cache.
struct Kubectl {
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    fn new(sb: &SandboxGuard) -> Kubectl {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("admin.conf");
        let conf = sb.ssh_ok("controlplane", "cat /etc/kubernetes/admin.conf");
        let address = sb
            .load()
            .node("controlplane")
            .map(|n| n.address.clone())
            .expect("controlplane in the inventory");
        assert!(
            conf.contains(&format!("server: https://{address}:6443")),
            "{conf}"
        );
        std::fs::write(&kubeconfig, conf).expect("write kubeconfig");
        let cache = dir.path().join("cache");
        Kubectl {
            _dir: dir,
            kubeconfig,
            cache,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(crate::common::kubectl_path())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run the built kubectl (breakfix sandbox build)")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "kubectl {args:?}: {}", show(&o));
        text(&o.stdout)
    }

    /// Retries `kubectl args` until `cond(output)` holds, at most `limit`. Returns the last
    /// output and whether it held.
    fn until(
        &self,
        args: &[&str],
        limit: Duration,
        cond: impl Fn(&Output) -> bool,
    ) -> (Output, bool) {
        let start = Instant::now();
        loop {
            let o = self.run(args);
            if cond(&o) {
                return (o, true);
            }
            if start.elapsed() >= limit {
                return (o, false);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits until the API answers and critical-app is 3/3 again.
    fn wait_healthy(&self, limit: Duration) -> bool {
        self.until(
            &[
                "get",
                "deploy",
                "critical-app",
                "--request-timeout=5s",
                "-o",
                "jsonpath={.status.readyReplicas}",
            ],
            limit,
            |o| o.status.success() && text(&o.stdout).trim() == "3",
        )
        .1
    }
}

/// Removes the API server's container; the kubelet starts a fresh one, which rebuilds its
/// caches (RBAC among them) from the store etcd serves now.
const RESTART_APISERVER: &str = "crictl rm -f $(crictl ps -q --name '^kube-apiserver$') >/dev/null";

/// Puts the pristine etcd manifest back when dropped (also after a failed assertion) and
/// waits for the cluster to be healthy again.
struct RestoreEtcd<'a> {
    sb: &'a SandboxGuard,
    kubectl: &'a Kubectl,
}

impl<'a> RestoreEtcd<'a> {
    /// Saves the manifest first.
    fn new(sb: &'a SandboxGuard, kubectl: &'a Kubectl) -> RestoreEtcd<'a> {
        sb.ssh_ok("controlplane", &format!("cp -p {MANIFEST} {BACKUP}"));
        RestoreEtcd { sb, kubectl }
    }
}

impl Drop for RestoreEtcd<'_> {
    fn drop(&mut self) {
        let _ = self.sb.ssh(
            "controlplane",
            &format!("cmp -s {BACKUP} {MANIFEST} || cp -p {BACKUP} {MANIFEST}; rm -f {BACKUP}"),
        );
        if self.kubectl.wait_healthy(Duration::from_secs(120)) {
            return;
        }
        // An API server that watched another store meanwhile (a test's empty data dir) keeps
        // stale caches, RBAC among them (`Forbidden` for kubernetes-admin), until it restarts,
        // as after any etcd restore: restart it, so the next test starts healthy.
        let _ = self.sb.ssh("controlplane", RESTART_APISERVER);
        if !self.kubectl.wait_healthy(Duration::from_secs(180)) {
            eprintln!(
                "warning: the stacked sandbox did not become healthy after restoring etcd.yaml and restarting the API server"
            );
        }
    }
}

/// What `breakfix check` found for one probe.
#[derive(Debug)]
struct ProbeResult {
    status: String,
    note: String,
    facts: Vec<(String, String)>,
}

impl ProbeResult {
    fn found(&self, fact: &str) -> &str {
        self.facts
            .iter()
            .find(|(f, _)| f == fact)
            .map(|(_, v)| v.as_str())
            .unwrap_or("<not checked>")
    }
}

/// A scenario whose verify probes are `kube` probes on the control plane: the deployment
/// ready (and its absence, as a separate probe), the monitor pod Running, the node count, the
/// API's readyz and writability.
const KUBE_SCENARIO: &str = r#"apiVersion: breakfix/v1
kind: Scenario
metadata:
  name: stacked-kube-probes
  title: "kube probes against the stacked sandbox (integration test)"
  description: the engine's kube probe against each state of the control plane
  difficulty: beginner
  time_limit: 5m
  topologies: [stacked]
targets:
  controlplane:
    role: control-plane
faults:
  - kind: command
    name: nothing
    run: "true"
    undo: "true"
tasks:
  - title: nothing to do
    text: the test breaks the cluster itself
verify:
  probes:
    - kind: kube
      name: app-ready
      resource: deployments
      namespace: default
      object: critical-app
      timeout: 6s
      expect: { exists: true, ready_replicas: 3, replicas: 3 }
    - kind: kube
      name: app-absent
      resource: deployments
      object: critical-app
      timeout: 6s
      expect: { exists: false }
    - kind: kube
      name: monitor-running
      resource: pods
      namespace: kube-system
      object: cluster-monitor
      field: status.phase
      timeout: 6s
      expect: { field: Running }
    - kind: kube
      name: two-nodes
      resource: nodes
      timeout: 6s
      expect: { count: 2 }
    - kind: kube
      name: api
      timeout: 6s
      expect: { readyz: true, writable: true }
"#;

/// Runs `breakfix check` of [`KUBE_SCENARIO`] with the sandbox's inventory; returns the
/// results by probe name.
fn kube_probes(sb: &SandboxGuard) -> std::collections::BTreeMap<String, ProbeResult> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("kube.yaml");
    std::fs::write(&file, KUBE_SCENARIO).expect("write scenario");
    let o = Cli::new()
        .inventory(&sb.inventory)
        .state_dir(dir.path().join("state"))
        .run(&["check", file.to_str().expect("utf-8"), "--output", "json"]);
    assert!(
        matches!(o.status.code(), Some(0) | Some(1)),
        "check must pass or fail, not error: {}",
        show(&o)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("check JSON ({e}): {}", show(&o)));
    let mut out = std::collections::BTreeMap::new();
    for p in v["verify"].as_array().expect("verify results") {
        let facts = p["checks"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        (
                            c["fact"].as_str().unwrap_or("").to_string(),
                            c["found"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.insert(
            p["probe"].as_str().unwrap_or("").to_string(),
            ProbeResult {
                status: p["status"].as_str().unwrap_or("").to_string(),
                note: p["note"].as_str().unwrap_or("").to_string(),
                facts,
            },
        );
    }
    out
}

/// Runs [`kube_probes`] every 2 s until `done` holds or `limit` has passed; returns the last
/// results. A real API server's latency after an etcd change varies (its caches and
/// informers catch up on their own schedule), so a single round may be too early.
fn kube_probes_until(
    sb: &SandboxGuard,
    limit: Duration,
    done: impl Fn(&std::collections::BTreeMap<String, ProbeResult>) -> bool,
) -> std::collections::BTreeMap<String, ProbeResult> {
    let end = Instant::now() + limit;
    loop {
        let r = kube_probes(sb);
        if done(&r) || Instant::now() >= end {
            return r;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Asserts the probes of a healthy cluster: everything passes but `app-absent` (polled for
/// up to 60 s).
fn assert_probes_healthy(sb: &SandboxGuard) {
    const HEALTHY: [&str; 4] = ["app-ready", "monitor-running", "two-nodes", "api"];
    let r = kube_probes_until(sb, Duration::from_secs(60), |r| {
        HEALTHY.iter().all(|n| r[*n].status == "pass")
    });
    for name in HEALTHY {
        assert_eq!(r[name].status, "pass", "{name}: {:?}", r[name]);
    }
    assert_eq!(r["app-absent"].status, "fail", "{:?}", r["app-absent"]);
    assert_eq!(r["app-absent"].found("exists"), "true");
}

/// Asserts the probes while etcd is gone: every probe FAILS (not errors), readyz names etcd.
fn assert_probes_etcd_down(sb: &SandboxGuard) {
    let r = kube_probes(sb);
    for (name, p) in &r {
        assert_eq!(
            p.status, "fail",
            "{name} must fail while etcd is down: {p:?}"
        );
    }
    assert_eq!(r["api"].found("readyz"), "false", "{:?}", r["api"]);
    assert_eq!(r["api"].found("writable"), "false", "{:?}", r["api"]);
    assert!(
        r["api"].note.contains("[-]etcd failed"),
        "readyz note: {:?}",
        r["api"]
    );
    // The object facts are unknown (the API cannot answer), not "absent".
    assert_eq!(
        r["app-absent"].found("exists"),
        "<absent>",
        "{:?}",
        r["app-absent"]
    );
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn stacked_control_plane_serves_kubectl() {
    let sb = sandbox_stacked();
    let k = Kubectl::new(&sb);

    // The inventory: the engine cannot tell it from a kubeadm cluster's.
    let inv = sb.load();
    assert_eq!(inv.cluster.topology, Topology::Stacked);
    assert_eq!(
        inv.cluster.kubeconfig.as_deref(),
        Some("/etc/kubernetes/admin.conf")
    );

    let nodes = k.ok(&["get", "nodes"]);
    for n in ["controlplane", "node01"] {
        let line = nodes
            .lines()
            .find(|l| l.starts_with(n))
            .unwrap_or_else(|| panic!("{n} missing:\n{nodes}"));
        assert!(line.contains(" Ready "), "{n} not Ready:\n{nodes}");
    }
    assert!(
        nodes
            .lines()
            .any(|l| l.starts_with("controlplane") && l.contains("control-plane")),
        "{nodes}"
    );

    // Static pods turn Ready once their probes pass: wait for that, as a learner would.
    let (o, settled) = k.until(&["get", "pods", "-A"], Duration::from_secs(90), |o| {
        let t = text(&o.stdout);
        o.status.success()
            && t.lines()
                .filter(|l| l.starts_with("kube-system"))
                .all(|l| l.contains("1/1") && l.contains("Running"))
    });
    let pods = text(&o.stdout);
    assert!(settled, "kube-system pods not all 1/1 Running:\n{pods}");
    for want in [
        "kube-system   etcd-controlplane ",
        "kube-system   kube-apiserver-controlplane ",
        "kube-system   kube-controller-manager-controlplane ",
        "kube-system   kube-scheduler-controlplane ",
        "kube-system   cluster-monitor ",
    ] {
        assert!(pods.contains(want), "{want:?} missing:\n{pods}");
    }
    let app: Vec<&str> = pods
        .lines()
        .filter(|l| l.starts_with("default") && l.contains("critical-app-"))
        .collect();
    assert_eq!(app.len(), 3, "{pods}");
    assert!(app.iter().all(|l| l.contains("Running")), "{pods}");

    let deploy = k.ok(&["get", "deploy", "critical-app"]);
    let line = deploy.lines().nth(1).unwrap_or("");
    assert!(
        line.starts_with("critical-app") && line.contains(" 3/3 "),
        "{deploy}"
    );

    let created = k.ok(&["create", "configmap", "t", "--from-literal=a=b"]);
    assert_eq!(created.trim(), "configmap/t created");
    let yaml = k.ok(&["get", "cm", "t", "-o", "yaml"]);
    assert!(
        yaml.contains("data:\n  a: b\n") && yaml.contains("name: t\n"),
        "{yaml}"
    );
    assert_eq!(
        k.ok(&["delete", "cm", "t"]).trim(),
        "configmap \"t\" deleted from default namespace"
    );
    let gone = k.run(&["get", "cm", "t"]);
    assert!(
        !gone.status.success() && text(&gone.stderr).contains("NotFound"),
        "{}",
        show(&gone)
    );

    // The seed's own file, applied again by the learner: nothing to change.
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = dir.path().join("seed-000.yaml");
    std::fs::write(&seed, breakfix::sandbox::kubeapi::WORKLOADS).expect("write");
    let applied = k.ok(&["apply", "-f", seed.to_str().expect("utf-8")]);
    for want in [
        "deployment.apps/critical-app",
        "service/critical-app-service",
        "pod/cluster-monitor",
    ] {
        let line = applied
            .lines()
            .find(|l| l.starts_with(want))
            .unwrap_or_else(|| panic!("{want} missing:\n{applied}"));
        assert!(
            line.ends_with(" unchanged") || line.ends_with(" configured"),
            "{line}"
        );
    }

    let (o, ready) = k.until(&["get", "--raw", "/readyz"], Duration::from_secs(15), |o| {
        o.status.success() && text(&o.stdout).trim() == "ok"
    });
    assert!(ready, "{}", show(&o));
    let verbose = k.ok(&["get", "--raw", "/readyz?verbose"]);
    assert!(
        verbose.contains("[+]etcd ok") && verbose.contains("readyz check passed"),
        "{verbose}"
    );

    // The node is a kubeadm control plane: the kubelet unit, kubeadm's four static pods run
    // as containers (crictl), the pinned versions, no etcd unit.
    let pins = breakfix::sandbox::kubebuild::pins().expect("pins");
    assert_eq!(
        sb.ssh_ok("controlplane", "systemctl is-active kubelet")
            .trim(),
        "active"
    );
    assert!(
        !sb.ssh("controlplane", "systemctl is-enabled etcd")
            .status
            .success(),
        "no etcd unit on a stacked control plane"
    );
    let ls = sb.ssh_ok("controlplane", "ls /etc/kubernetes/manifests");
    assert_eq!(
        ls,
        "etcd.yaml\nkube-apiserver.yaml\nkube-controller-manager.yaml\nkube-scheduler.yaml\n"
    );
    let crictl = sb.ssh_ok("controlplane", "crictl ps");
    for c in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        assert!(
            crictl
                .lines()
                .any(|l| l.contains(&format!(" {c} ")) && l.contains("Running")),
            "{c} not running:\n{crictl}"
        );
    }
    let versions = sb.ssh_ok(
        "controlplane",
        "kubelet --version; crictl exec $(crictl ps -q --name kube-apiserver) kube-apiserver --version; \
         etcd --version | head -1; crictl logs $(crictl ps -a -q --name kube-apiserver) 2>&1 | head -3 | wc -l",
    );
    let want = format!(
        "Kubernetes {k}\nKubernetes {k}\netcd Version: {e}\n3\n",
        k = pins.kubernetes,
        e = pins.etcd.trim_start_matches('v')
    );
    assert_eq!(versions, want);
    let ps = sb.ssh_ok("controlplane", "ps -eo comm,args");
    assert!(
        ps.lines()
            .any(|l| l.starts_with("etcd ") && l.contains("--data-dir=/var/lib/etcd")),
        "{ps}"
    );
    assert!(ps.lines().any(|l| l.starts_with("kube-apiserver ")), "{ps}");
    let pki = sb.ssh_ok(
        "controlplane",
        "cd /etc/kubernetes/pki && ls apiserver.crt apiserver.key apiserver-kubelet-client.crt \
         front-proxy-ca.crt front-proxy-client.crt sa.key sa.pub && stat -c '%a' sa.key apiserver.key",
    );
    assert!(pki.ends_with("600\n600\n"), "{pki}");
    assert_eq!(
        sb.ssh_ok("node01", "systemctl is-active kubelet").trim(),
        "active"
    );

    // The same sandbox asked for with the other topology: refused, saying how to switch.
    let o = sb.breakfix(&["sandbox", "up"]);
    assert!(!o.status.success(), "{}", show(&o));
    assert!(
        text(&o.stderr).contains("stacked topology is already up")
            && text(&o.stderr).contains("--recreate"),
        "{}",
        show(&o)
    );

    assert_probes_healthy(&sb);
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn moving_the_etcd_manifest_out_stops_the_api_and_back_brings_it_back() {
    let sb = sandbox_stacked();
    let k = Kubectl::new(&sb);
    assert!(k.wait_healthy(Duration::from_secs(120)), "healthy before");
    let _restore = RestoreEtcd::new(&sb, &k);

    sb.ssh_ok(
        "controlplane",
        &format!("mv {MANIFEST} /root/etcd.yaml.moved"),
    );
    // The kubelet notices the manifest is gone and stops etcd's pod.
    let (o, failed) = k.until(
        &["get", "nodes", "--request-timeout=5s"],
        Duration::from_secs(30),
        |o| !o.status.success(),
    );
    assert!(failed, "get nodes must fail without etcd: {}", show(&o));
    let err = text(&o.stderr);
    assert!(
        err.contains("Timeout") || err.contains("deadline exceeded"),
        "{err}"
    );
    // /readyz names etcd among its failed checks: `etcd` (its health check runs on an interval,
    // so it may still say ok for a while) or `etcd-readiness` (seen first on v1.37.2).
    let (r, named) = k.until(&["get", "--raw", "/readyz"], Duration::from_secs(60), |o| {
        let e = text(&o.stderr);
        !o.status.success()
            && (e.contains("[-]etcd failed") || e.contains("[-]etcd-readiness failed"))
    });
    assert!(named, "/readyz must name etcd as failed: {}", show(&r));
    let etcd_gone = sb.ssh("controlplane", "ss -tlnH 'sport = :2379' | grep -q .");
    assert!(!etcd_gone.status.success(), "etcd must not listen any more");
    assert_probes_etcd_down(&sb);

    sb.ssh_ok(
        "controlplane",
        &format!("mv /root/etcd.yaml.moved {MANIFEST}"),
    );
    let back = Instant::now();
    let (o, ok) = k.until(
        &["get", "nodes", "--request-timeout=5s"],
        Duration::from_secs(300),
        |o| o.status.success(),
    );
    // The real API server may have been restarted by its liveness probe while etcd was gone
    // (the kubelet's back-off grows to minutes), so this is bounded generously.
    assert!(ok, "get nodes must work again within 300 s: {}", show(&o));
    let (o, ok) = k.until(
        &["get", "--raw", "/readyz"],
        Duration::from_secs(300).saturating_sub(back.elapsed()),
        |o| o.status.success(),
    );
    assert!(ok, "/readyz must pass again within 120 s: {}", show(&o));
    eprintln!("API back {:?} after the manifest returned", back.elapsed());
    assert!(k.wait_healthy(Duration::from_secs(120)));
    assert_probes_healthy(&sb);
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn a_new_data_dir_gives_an_empty_store_and_reverting_brings_the_objects_back() {
    let sb = sandbox_stacked();
    let k = Kubectl::new(&sb);
    assert!(k.wait_healthy(Duration::from_secs(120)), "healthy before");
    let _restore = RestoreEtcd::new(&sb, &k);

    sb.ssh_ok(
        "controlplane",
        &format!(
            "sed -i 's#--data-dir=/var/lib/etcd$#--data-dir=/var/lib/etcd-breakfix-test#' {MANIFEST} \
             && grep -q -- '--data-dir=/var/lib/etcd-breakfix-test$' {MANIFEST}"
        ),
    );
    // etcd now serves an empty store. (A real API server keeps answering lists from its watch
    // cache, so kubectl may still show the old objects until it restarts: the store itself is
    // checked.)
    let etcdctl =
        "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt \
        --cert=/etc/kubernetes/pki/etcd/server.crt --key=/etc/kubernetes/pki/etcd/server.key \
        --dial-timeout=2s --command-timeout=3s";
    let deadline = Instant::now() + Duration::from_secs(120);
    let count = loop {
        let o = sb.ssh(
            "controlplane",
            &format!("{etcdctl} get --prefix --keys-only /registry/deployments/default/critical-app | grep -c . ; {etcdctl} endpoint status -w json"),
        );
        let out = text(&o.stdout);
        let fresh = out.lines().next().map(str::trim) == Some("0") && out.contains("\"revision\"");
        if fresh || Instant::now() >= deadline {
            break out;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(
        count.lines().next().map(str::trim) == Some("0"),
        "the new data dir holds no critical-app: {count}"
    );
    let ps = sb.ssh_ok("controlplane", "ps -eo args");
    assert!(
        ps.contains("--data-dir=/var/lib/etcd-breakfix-test"),
        "{ps}"
    );
    // The API itself works (on an empty store). /readyz follows the API server's etcd
    // health checks, so it may report the restart for a moment after the first successful
    // read: poll it. (The Node objects are gone too: the kubelets registered them in the old
    // store, so the node count is not asserted here.)
    let (o, ready) = k.until(
        &["get", "--raw", "/readyz"],
        Duration::from_secs(120),
        |o| o.status.success() && text(&o.stdout).trim() == "ok",
    );
    assert!(ready, "/readyz must come back: {}", show(&o));
    // Writes may still time out for a while (CI saw one 6 s create time out right after
    // /readyz passed): poll. A write is either accepted (the API server still authorizes from
    // the RBAC it cached from the old store) or refused as Forbidden: the empty store has the
    // default policy but not kubeadm's `kubeadm:cluster-admins` binding that admin.conf's user
    // relies on, which an API server restarted meanwhile (crash-looping while etcd was
    // replaced) has read. Either way the API server answers from the new store.
    let answered = |r: &std::collections::BTreeMap<String, ProbeResult>| {
        r["api"].status == "pass" || r["api"].note.contains("Forbidden")
    };
    let r = kube_probes_until(&sb, Duration::from_secs(120), answered);
    assert!(answered(&r), "{:?}", r["api"]);

    // Revert: the old store, with every object, is back. The API server watched the empty
    // store meanwhile and keeps stale caches (RBAC among them) until it restarts, as after
    // any etcd restore: restart it once etcd serves the old data again.
    sb.ssh_ok("controlplane", &format!("cp -p {BACKUP} {MANIFEST}"));
    let (o, back) = k.until(
        &["get", "deploy", "critical-app", "--request-timeout=5s"],
        Duration::from_secs(60),
        |o| o.status.success(),
    );
    assert!(
        back,
        "critical-app must be back in the old store: {}",
        show(&o)
    );
    sb.ssh_ok("controlplane", RESTART_APISERVER);
    assert!(
        k.wait_healthy(Duration::from_secs(90)),
        "critical-app must be back 3/3 after reverting the data dir"
    );
    let pods = k.ok(&["get", "pods", "-n", "kube-system"]);
    assert!(pods.contains("cluster-monitor"), "{pods}");
    sb.ssh_ok("controlplane", "rm -rf /var/lib/etcd-breakfix-test");
    // The restarted API server serves reads before its post-start hooks finish
    // (`[-]poststarthook/rbac/bootstrap-roles` in /readyz for a few seconds): wait for /readyz.
    let (o, ready) = k.until(&["get", "--raw", "/readyz"], Duration::from_secs(60), |o| {
        o.status.success() && text(&o.stdout).trim() == "ok"
    });
    assert!(ready, "/readyz after the restart: {}", show(&o));
    assert_probes_healthy(&sb);
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn a_bad_listen_client_url_crash_loops_etcd_with_the_bind_error() {
    let sb = sandbox_stacked();
    let k = Kubectl::new(&sb);
    assert!(k.wait_healthy(Duration::from_secs(120)), "healthy before");
    let _restore = RestoreEtcd::new(&sb, &k);

    // An address of the sandbox network that no node has: bind fails locally.
    sb.ssh_ok(
        "controlplane",
        &format!(
            "sed -i 's#--listen-client-urls=.*#--listen-client-urls=https://198.18.0.250:2379#' {MANIFEST}"
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let (log, journal) = loop {
        let log = text(
            &sb.ssh(
                "controlplane",
                "cat /var/log/pods/kube-system_etcd-controlplane_*/etcd/*.log 2>/dev/null; \
                 for c in $(crictl ps -a -q --name '^etcd$'); do crictl logs $c 2>&1; done",
            )
            .stdout,
        );
        let journal = sb.ssh_ok(
            "controlplane",
            "journalctl -u kubelet --no-pager -o cat --since '-2min'",
        );
        let bind =
            log.contains("listen tcp 198.18.0.250:2379: bind: cannot assign requested address");
        if bind || Instant::now() >= deadline {
            break (log, journal);
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(
        log.contains("bind: cannot assign requested address"),
        "the bind error in the pod log:\n{log}"
    );
    // The kubelet's journal tells the story (etcd's pod, its restarts); its wording changes
    // between versions, so only that it talks about the etcd pod is checked.
    assert!(
        journal.contains("etcd-controlplane"),
        "`journalctl -u kubelet` mentions the etcd pod:\n{journal}"
    );
    // crictl shows the exited attempts of the etcd container, as on any kubeadm node.
    let deadline = Instant::now() + Duration::from_secs(40);
    let exited = loop {
        let n: usize = sb
            .ssh_ok(
                "controlplane",
                "crictl ps -a --name '^etcd$' --state exited -q | wc -l",
            )
            .trim()
            .parse()
            .unwrap_or(0);
        if n >= 1 || Instant::now() >= deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(exited >= 1, "crictl must list an exited etcd container");
    let o = k.run(&["get", "nodes", "--request-timeout=5s"]);
    assert!(!o.status.success(), "{}", show(&o));
    assert_probes_etcd_down(&sb);

    sb.ssh_ok("controlplane", &format!("cp -p {BACKUP} {MANIFEST}"));
    let (o, ok) = k.until(
        &["get", "--raw", "/readyz"],
        Duration::from_secs(120),
        |o| o.status.success(),
    );
    assert!(ok, "/readyz must pass again within 120 s: {}", show(&o));
    assert!(k.wait_healthy(Duration::from_secs(120)));
    assert_probes_healthy(&sb);
}

/// nspawn and node PID 1 processes recorded in the state, and its loop device files.
fn recorded(sb: &SandboxGuard, kind: Option<ProcKind>) -> (Vec<(i32, u64)>, Vec<PathBuf>) {
    let st = State::load(&sb.state_dir())
        .expect("state")
        .expect("a sandbox");
    let mut pids = Vec::new();
    let mut loops = Vec::new();
    for r in &st.resources {
        match r {
            Resource::Process {
                what,
                pid,
                start_time,
                ..
            } if kind.is_none_or(|k| k == *what) => pids.push((*pid, *start_time)),
            Resource::LoopDevice { file, .. } => loops.push(file.clone()),
            _ => {}
        }
    }
    (pids, loops)
}

fn alive(pid: i32, start: u64) -> bool {
    breakfix::sandbox::procs::is_same_alive(pid, start)
}

fn count_in(haystack: &str, needle: &str) -> usize {
    haystack.lines().filter(|l| l.contains(needle)).count()
}

/// The host holds exactly one of each of the sandbox's resources (no stale duplicates).
fn assert_one_of_each(sb: &SandboxGuard, loops: &[PathBuf]) {
    let dir = sb.state_dir().display().to_string();
    let links = text(
        &Command::new("ip")
            .args(["-br", "link"])
            .output()
            .expect("ip")
            .stdout,
    );
    assert_eq!(count_in(&links, &format!("{} ", sb.bridge())), 1, "{links}");
    let losetup = text(
        &Command::new("losetup")
            .arg("-a")
            .output()
            .expect("losetup")
            .stdout,
    );
    for f in loops {
        assert_eq!(
            count_in(&losetup, &f.display().to_string()),
            1,
            "one loop device for {}:\n{losetup}",
            f.display()
        );
    }
    let mounts = std::fs::read_to_string("/proc/mounts").expect("/proc/mounts");
    for n in ["controlplane", "node01"] {
        let root = format!("{dir}/nodes/{n}/root ");
        assert_eq!(count_in(&mounts, &root), 1, "{root}:\n{mounts}");
    }
}

/// Kills `procs` with SIGKILL (by PID, checked against the start time) and waits for them.
fn kill_all(procs: &[(i32, u64)]) {
    for &(pid, start) in procs {
        if alive(pid, start) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while procs.iter().any(|&(p, s)| alive(p, s)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        procs.iter().all(|&(p, s)| !alive(p, s)),
        "killed processes still alive: {procs:?}"
    );
}

/// What CI meets after a session ended: every process was killed WITHOUT `sandbox down`, so
/// the bridge, overlay mounts, loop devices and state directory are still there. `up` must
/// notice the dead nodes, remove the leftovers and boot a fresh sandbox.
#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn up_recovers_after_the_nodes_were_killed_without_down() {
    let sb = sandbox_stacked();
    let inventory = sb.inventory.clone();

    // 1. The nspawn processes only (their nodes' systemds survive, orphaned).
    let (nspawns, loops) = recorded(&sb, Some(ProcKind::Nspawn));
    let (everything, _) = recorded(&sb, None);
    assert_eq!(nspawns.len(), 2, "{nspawns:?}");
    kill_all(&nspawns);
    assert!(!sb.is_up());
    assert!(sb.state_dir().join("state.json").is_file());
    let o = sb.breakfix(&["sandbox", "up", "--topology", "stacked"]);
    assert!(o.status.success(), "up after killed nspawns: {}", show(&o));
    assert!(
        text(&o.stderr).contains("no longer run"),
        "up says what it found: {}",
        show(&o)
    );
    for &(p, s) in &everything {
        assert!(
            !alive(p, s),
            "old sandbox process {p} survived the recovery"
        );
    }
    assert!(sb.is_up());
    assert_one_of_each(&sb, &loops);
    let k = Kubectl::new(&sb);
    assert!(
        k.wait_healthy(Duration::from_secs(10)),
        "fresh stacked sandbox"
    );

    // 2. Every recorded process (nspawn and node PID 1s), as when a session's processes are
    //    all killed.
    let (everything, loops) = recorded(&sb, None);
    assert!(everything.len() >= 4, "{everything:?}");
    kill_all(&everything);
    assert!(!sb.is_up());
    let start = Instant::now();
    let o = sb.breakfix(&["sandbox", "up", "--topology", "stacked"]);
    assert!(o.status.success(), "up after killed nodes: {}", show(&o));
    eprintln!("recovery up took {:?}", start.elapsed());
    assert!(sb.is_up());
    assert_one_of_each(&sb, &loops);
    assert_eq!(sb.inventory, inventory);
    let k = Kubectl::new(&sb);
    assert!(
        k.wait_healthy(Duration::from_secs(10)),
        "fresh stacked sandbox"
    );
    assert_probes_healthy(&sb);
}

/// `status` reports the API server of a stacked sandbox; the host copy of admin.conf works.
#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn status_reports_the_api_server() {
    let sb = sandbox_stacked();
    let o = sb.breakfix(&["sandbox", "status", "--output", "json"]);
    assert!(o.status.success(), "{}", show(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status JSON");
    assert_eq!(v["state"], "up");
    assert_eq!(v["topology"], "stacked");
    assert_eq!(v["nodes"][0]["apiserver"], true, "{v}");
    let pins = breakfix::sandbox::kubebuild::pins().expect("pins");
    assert_eq!(v["nodes"][0]["etcd"], pins.etcd.trim_start_matches('v'));
    assert!(v["nodes"][1]["apiserver"].is_null(), "{v}");
    let human = text(&sb.breakfix(&["sandbox", "status"]).stdout);
    assert!(human.contains("kubectl --kubeconfig"), "{human}");
    let conf = sb.state_dir().join("admin.conf");
    assert!(Path::new(&conf).is_file());
    let cache = tempfile::tempdir().expect("tempdir");
    let o = Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(&conf)
        .arg("--cache-dir")
        .arg(cache.path())
        .args(["get", "--raw", "/livez"])
        .output()
        .expect("kubectl");
    assert_eq!(text(&o.stdout).trim(), "ok", "{}", show(&o));
}
