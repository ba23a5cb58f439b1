//! Several control planes (`breakfix sandbox up --control-planes 3`, issue 13) against the
//! real thing, on both topologies: three etcd members with one leader, three Ready control
//! planes behind the host's HAProxy, the API and its writes surviving the loss of one
//! control plane's API server and etcd member, and `down` ending the load balancer.

use std::time::Duration;

use breakfix::inventory::Topology;
use breakfix::sandbox::state::{ProcKind, Resource, State};

use crate::common::{show_output, take_instance, Cli, SandboxGuard};

/// The instances these tests own (CI's matrix parts use 0-4): external on 5, stacked on 6,
/// in different `cargo test` processes of scripts/test-all.sh so that they run side by side.
const EXTERNAL_INSTANCE: u8 = 5;
const STACKED_INSTANCE: u8 = 6;

const ETCDCTL: &str = "etcdctl --endpoints=https://127.0.0.1:2379 \
    --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/server.crt \
    --key=/etc/kubernetes/pki/etcd/server.key --command-timeout=10s";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// Brings up `topology` with three control planes, checks it, takes it down.
fn three_control_planes(sb: &SandboxGuard, topology: &str) {
    let out = sb.breakfix(&[
        "sandbox",
        "up",
        "--recreate",
        "--control-planes",
        "3",
        "--topology",
        topology,
    ]);
    assert!(
        out.status.success(),
        "{topology}: sandbox up --control-planes 3 failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let inv = sb.load();
    let names: Vec<&str> = inv.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        ["controlplane", "controlplane02", "controlplane03", "node01"]
    );
    for n in &inv.nodes[..3] {
        assert_eq!(n.roles, ["control-plane", "etcd"], "{}", n.name);
    }

    // Three members, all started, exactly one leader, seen from every member.
    let status = sb.ssh_ok(
        "controlplane02",
        &format!("{ETCDCTL} endpoint status --cluster -w json"),
    );
    let v: serde_json::Value = serde_json::from_str(&status).expect("endpoint status JSON");
    let rows = v.as_array().expect("one row per member");
    assert_eq!(rows.len(), 3, "{status}");
    let leaders: Vec<u64> = rows
        .iter()
        .map(|r| r["Status"]["leader"].as_u64().expect("leader"))
        .collect();
    assert!(leaders.iter().all(|l| *l == leaders[0]), "{status}");
    let ids: Vec<u64> = rows
        .iter()
        .map(|r| r["Status"]["header"]["member_id"].as_u64().expect("id"))
        .collect();
    assert_eq!(
        ids.iter().filter(|id| **id == leaders[0]).count(),
        1,
        "{status}"
    );

    // Four Ready nodes, three of them control planes; the API is the load balancer.
    let nodes = sb.ssh_ok(
        "controlplane",
        "kubectl get nodes --no-headers -o custom-columns=N:.metadata.name,R:.status.conditions[-1].type,S:.status.conditions[-1].status",
    );
    assert_eq!(nodes.lines().count(), 4, "{nodes}");
    assert!(
        nodes
            .lines()
            .all(|l| l.split_whitespace().skip(1).eq(["Ready", "True"])),
        "{nodes}"
    );
    let server = sb.ssh_ok(
        "controlplane",
        "kubectl config view -o jsonpath='{.clusters[0].cluster.server}'",
    );
    let lb = format!(
        "https://{}:6443",
        breakfix::sandbox::host_addr_of(sb.instance)
    );
    assert_eq!(server.trim(), lb);

    // controlplane loses its API server and its etcd member: quorum (2 of 3) holds and the
    // load balancer sends the API's clients to the others, writes included.
    let stop = match topology {
        "stacked" => "mv /etc/kubernetes/manifests/kube-apiserver.yaml /etc/kubernetes/manifests/etcd.yaml /root/",
        _ => "mv /etc/kubernetes/manifests/kube-apiserver.yaml /root/ && systemctl stop etcd",
    };
    sb.ssh_ok("controlplane", stop);
    let write = "for i in $(seq 30); do kubectl create configmap ha-probe --from-literal=k=v >/dev/null 2>&1 && echo written && exit 0; sleep 1; done; exit 1";
    let w = sb.ssh("controlplane02", write);
    let restore = match topology {
        "stacked" => "mv /root/kube-apiserver.yaml /root/etcd.yaml /etc/kubernetes/manifests/",
        _ => "mv /root/kube-apiserver.yaml /etc/kubernetes/manifests/ && systemctl start etcd",
    };
    sb.ssh_ok("controlplane", restore);
    assert!(
        w.status.success(),
        "{topology}: no write through the load balancer within 30 s of controlplane's loss: {}",
        text(&w.stderr)
    );
    let health = sb.ssh(
        "controlplane03",
        &format!("for i in $(seq 30); do {ETCDCTL} endpoint health --cluster >/dev/null 2>&1 && exit 0; sleep 1; done; {ETCDCTL} endpoint health --cluster"),
    );
    assert!(
        health.status.success(),
        "{topology}: the three members are not healthy again after the restore: {}{}",
        text(&health.stdout),
        text(&health.stderr)
    );

    // The topology's three-member scenarios: their whole self-test matrices.
    let files: &[&str] = match topology {
        "stacked" => &[
            "scenarios/etcd-member-down.yaml",
            "scenarios/etcd-quorum-lost.yaml",
            "scenarios/etcd-member-disk-lost.yaml",
            "scenarios/etcd-member-partitioned.yaml",
        ],
        _ => &[
            "scenarios/etcd-member-down-systemd.yaml",
            "scenarios/etcd-quorum-lost-systemd.yaml",
            "scenarios/etcd-member-disk-lost-systemd.yaml",
            "scenarios/etcd-majority-lost-systemd.yaml",
            "scenarios/etcd-leader-flapping.yaml",
            "scenarios/etcd-member-partitioned.yaml",
        ],
    };
    for file in files {
        let state = tempfile::tempdir().expect("state dir");
        let started = std::time::Instant::now();
        let o = Cli::new()
            .inventory(&sb.inventory)
            .state_dir(state.path())
            .in_checkout()
            .run(&["test", file]);
        eprintln!("{file} matrix: {:.0}s", started.elapsed().as_secs_f64());
        assert_eq!(o.status.code(), Some(0), "{file}: {}", show_output(&o));
        // Every row ran (none SKIPped for want of members) and passed.
        let stdout = text(&o.stdout);
        let rows: Vec<&str> = stdout
            .lines()
            .map(str::trim_start)
            .filter(|l| {
                l.starts_with("PASS ")
                    || l.starts_with("SKIP ")
                    || l.starts_with("FAIL ")
                    || l.starts_with("ERROR ")
            })
            .collect();
        assert!(
            rows.len() >= 5 && rows.iter().all(|l| l.starts_with("PASS ")),
            "{file}: every row must run and pass: {stdout}"
        );
    }

    // `down` ends the load balancer with the nodes.
    let st = State::load(&sb.state_dir())
        .expect("state")
        .expect("a state record");
    let lb_pid = st
        .resources
        .iter()
        .find_map(|r| match r {
            Resource::Process {
                what: ProcKind::LoadBalancer,
                pid,
                ..
            } => Some(*pid),
            _ => None,
        })
        .expect("the load balancer is recorded");
    let out = sb.breakfix(&["sandbox", "down"]);
    assert!(out.status.success(), "down: {}", text(&out.stderr));
    std::thread::sleep(Duration::from_millis(200));
    let cmdline = std::fs::read(format!("/proc/{lb_pid}/cmdline")).unwrap_or_default();
    assert!(
        !text(&cmdline).contains("haproxy"),
        "haproxy {lb_pid} outlived `sandbox down`"
    );
}

/// Takes `instance` and runs [`three_control_planes`] on `topology`, timed.
fn on_instance(instance: u8, topology: Topology) {
    let sb = take_instance(instance, topology);
    let started = std::time::Instant::now();
    three_control_planes(&sb, topology.name());
    eprintln!(
        "three control planes, {}: {:.0}s",
        topology.name(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn three_control_planes_keep_the_api_and_etcd_through_the_loss_of_one_external() {
    on_instance(EXTERNAL_INSTANCE, Topology::External);
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn three_control_planes_keep_the_api_and_etcd_through_the_loss_of_one_stacked() {
    on_instance(STACKED_INSTANCE, Topology::Stacked);
}
