//! Probe-check benchmark (issue 3): a warm `check` of 30 probes across the sandbox's nodes,
//! versus the same checks written as shell commands (what a grader script runs) with one
//! `ssh` process per probe, and through an OpenSSH ControlMaster, measured in one run.
//!
//! - (a) one `ssh` process per probe, sequential: `systemctl is-active etcd`,
//!   `ss -Htln | grep -q ':2379 '`, `stat -c %a ...`, `etcdctl ... endpoint health`, ...
//! - (b) the same commands through one ControlMaster per node, sequential;
//! - (c) breakfix: the same facts as probes (systemd, port, file, etcd over gRPC through the
//!   SSH forward, command), evaluated by the engine's runner over one warm connection per
//!   node, concurrently (dependency levels).
//!
//! ```text
//! cargo bench --bench check_probes -- --inventory /var/lib/breakfix/sandbox/inventory.yaml [--rounds 7]
//! ```
//! Targets: (c) >= 100x faster than (a) and >= 10x faster than (b), by median round time.
//! Without `--bench` (e.g. `cargo test --benches`) it does nothing.

#[path = "common/ssh_cli.rs"]
mod ssh_cli;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use breakfix::engine::runner::{evaluate, EvalOptions, Want};
use breakfix::engine::verdict::Status;
use breakfix::inventory::Inventory;
use ssh_cli::{machine, mode_a, mode_b, ms, stats, Master, Target};

/// One probe: its YAML (for the engine) and the shell command a script grader would run
/// for the same fact.
struct Check {
    node: usize,
    yaml: String,
    shell: String,
}

fn etcdctl(inv: &Inventory, args: &str) -> String {
    let e = &inv.cluster.etcd;
    format!(
        "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert={} --cert={} --key={} --dial-timeout=3s --command-timeout=3s {args}",
        e.ca_file, e.cert_file, e.key_file
    )
}

/// 30 checks: on the control plane (index 0) its units, ports, PKI files and etcd facts; on
/// the other nodes their units, ports and files.
fn checks(inv: &Inventory) -> Vec<Check> {
    let mut v: Vec<Check> = Vec::new();
    fn add(v: &mut Vec<Check>, node: usize, name: &str, body: &str, shell: String) {
        v.push(Check {
            node,
            yaml: format!("  - kind: {body}\n    name: {name}-{node}\n    target: n{node}\n"),
            shell,
        });
    }
    let cp = 0;
    for unit in ["etcd", "ssh", "systemd-journald"] {
        add(
            &mut v,
            cp,
            &format!("unit-{unit}"),
            &format!("systemd\n    unit: {unit}\n    expect: {{ active: active }}"),
            format!("systemctl is-active {unit}"),
        );
    }
    for port in [2379, 2380, 2381, 22] {
        add(
            &mut v,
            cp,
            &format!("port-{port}"),
            &format!("port\n    port: {port}\n    expect: {{ listening: true }}"),
            format!("ss -Htln | grep -q ':{port} '"),
        );
    }
    for (f, mode) in [
        ("ca.crt", "0644"),
        ("server.crt", "0644"),
        ("server.key", "0600"),
        ("peer.crt", "0644"),
        ("peer.key", "0600"),
        ("healthcheck-client.crt", "0644"),
    ] {
        let p = format!("/etc/kubernetes/pki/etcd/{f}");
        add(
            &mut v,
            cp,
            &format!("pki-{}", f.replace('.', "-")),
            &format!("file\n    path: {p}\n    expect: {{ exists: true, mode: \"{mode}\" }}"),
            format!("stat -c %a {p}"),
        );
    }
    let etcd = [
        ("etcd-healthy", "healthy: true", "endpoint health"),
        ("etcd-leader", "leader: true", "endpoint status -w json"),
        (
            "etcd-members",
            "member_names: { contains: controlplane }",
            "member list",
        ),
        ("etcd-alarms", "alarms: []", "alarm list"),
        (
            "etcd-keys",
            "key_count: { gt: -1 }",
            "get / --prefix --count-only",
        ),
        (
            "etcd-db",
            "db_size: { lt: 2147483648 }",
            "endpoint status -w json",
        ),
        (
            "etcd-revision",
            "revision: { gt: 0 }",
            "endpoint status -w json",
        ),
    ];
    for (name, expect, args) in etcd {
        add(
            &mut v,
            cp,
            name,
            &format!("etcd\n    expect: {{ {expect} }}"),
            etcdctl(inv, args),
        );
    }
    add(
        &mut v,
        cp,
        "hosts",
        "file\n    path: /etc/hosts\n    expect: { contents: { contains: controlplane } }",
        "grep -q controlplane /etc/hosts".into(),
    );
    add(
        &mut v,
        cp,
        "kernel",
        "command\n    run: uname -r\n    expect: { exit: 0 }",
        "uname -r".into(),
    );
    let others = inv.nodes.len().max(1);
    let mut i = 0;
    while v.len() < 30 {
        let node = if others > 1 { 1 + i % (others - 1) } else { 0 };
        let what = [
            (
                "w-ssh",
                "systemd\n    unit: ssh\n    expect: { active: active }".to_string(),
                "systemctl is-active ssh".to_string(),
            ),
            (
                "w-port22",
                "port\n    port: 22\n    expect: { listening: true }".to_string(),
                "ss -Htln | grep -q ':22 '".to_string(),
            ),
            (
                "w-hosts",
                "file\n    path: /etc/hosts\n    expect: { contents: { contains: controlplane } }"
                    .to_string(),
                "grep -q controlplane /etc/hosts".to_string(),
            ),
            (
                "w-journald",
                "systemd\n    unit: systemd-journald\n    expect: { active: active }".to_string(),
                "systemctl is-active systemd-journald".to_string(),
            ),
        ];
        let (name, body, shell) = &what[i % what.len()];
        add(&mut v, node, &format!("{name}-{i}"), body, shell.clone());
        i += 1;
    }
    v
}

fn scenario_yaml(inv: &Inventory, checks: &[Check]) -> String {
    let mut s = String::from("apiVersion: breakfix/v1\nkind: Scenario\nmetadata:\n  name: bench-check\n  title: bench\ntargets:\n");
    for (i, n) in inv.nodes.iter().enumerate() {
        s.push_str(&format!("  n{i}:\n    node: {}\n", n.name));
    }
    s.push_str("faults:\n  - kind: command\n    target: n0\n    run: \"true\"\n    undo: \"true\"\nverify:\n  probes:\n");
    for c in checks {
        s.push_str(&c.yaml);
    }
    s
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        eprintln!("check_probes: run with `cargo bench --bench check_probes -- --inventory FILE` (skipped)");
        return;
    }
    let mut inventory = PathBuf::from("/var/lib/breakfix/sandbox/inventory.yaml");
    let mut rounds = 7usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--inventory" => inventory = it.next().map(PathBuf::from).unwrap_or(inventory),
            "--rounds" => rounds = it.next().and_then(|s| s.parse().ok()).unwrap_or(rounds),
            _ => {}
        }
    }
    let inv = Inventory::load(&inventory)
        .unwrap_or_else(|e| panic!("{e} (bring the sandbox up: breakfix sandbox up)"));
    let checks = checks(&inv);
    let dir = tempfile::tempdir().expect("temp dir");
    let sc = dir.path().join("bench-check.yaml");
    std::fs::write(&sc, scenario_yaml(&inv, &checks)).expect("write scenario");
    let loaded = breakfix::scenario::load_valid(&sc, None, false).unwrap_or_else(|e| panic!("{e}"));
    let plan =
        breakfix::plan::build(&loaded.scenario, &[], &inv, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.verify.len(), 30);

    // (c) warm: connect, then one untimed round (opens the etcd forward and client).
    let t = Instant::now();
    let sessions = breakfix::engine::connect(&plan, &inv, true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let connect = t.elapsed();
    let opts = EvalOptions {
        want: Want::Pass,
        patience: breakfix::engine::Patience::Once,
    };
    let warm = evaluate(&plan.verify, &sessions, &inv, opts).await;
    let failing: Vec<String> = warm
        .iter()
        .filter(|v| v.status != Status::Pass)
        .map(|v| format!("{} {:?} {:?}", v.probe, v.checks, v.note))
        .collect();
    assert!(
        failing.is_empty(),
        "every probe must pass on a healthy sandbox: {failing:#?}"
    );

    let targets: Vec<Target> = inv
        .nodes
        .iter()
        .cloned()
        .map(|node| Target { node })
        .collect();
    let shell: Vec<(usize, String)> = checks.iter().map(|c| (c.node, c.shell.clone())).collect();
    let sockets = tempfile::Builder::new()
        .prefix("breakfix-cm-")
        .tempdir()
        .expect("temp dir");
    let masters: Vec<Master> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| Master::start(t, &sockets.path().join(format!("cm{i}"))))
        .collect();
    mode_b(&masters, &shell); // warm-up

    println!("# check_probes");
    println!(
        "target:  {} ({} nodes)",
        inventory.display(),
        inv.nodes.len()
    );
    println!("machine: {}", machine());
    println!(
        "probes:  {} per round ({} on the control plane), {rounds} rounds per mode\n",
        checks.len(),
        checks.iter().filter(|c| c.node == 0).count()
    );
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    // Per round of (c): the slowest probe of each kind (where the round's time goes).
    let mut slowest: Vec<BTreeMap<String, Duration>> = Vec::new();
    for r in 0..rounds {
        a.push(tokio::task::block_in_place(|| mode_a(&targets, &shell)));
        b.push(tokio::task::block_in_place(|| mode_b(&masters, &shell)));
        let t = Instant::now();
        let v = evaluate(&plan.verify, &sessions, &inv, opts).await;
        c.push(t.elapsed());
        assert!(
            v.iter().all(|v| v.status == Status::Pass),
            "a probe failed in round {r}"
        );
        let mut by_kind: BTreeMap<String, Duration> = BTreeMap::new();
        for v in &v {
            let d = by_kind.entry(v.kind.clone()).or_default();
            *d = (*d).max(v.duration);
        }
        slowest.push(by_kind);
        eprintln!(
            "round {}/{rounds}: a {} b {} c {}",
            r + 1,
            ms(a[r]),
            ms(b[r]),
            ms(c[r])
        );
    }
    drop(masters);
    let median_round = {
        let mut order: Vec<usize> = (0..c.len()).collect();
        order.sort_by_key(|&i| c[i]);
        order.get(order.len() / 2).copied().unwrap_or(0)
    };
    let (sa, sb, sc) = (stats(a), stats(b), stats(c));
    println!("| mode | min | median | max | median per probe |");
    println!("|---|---|---|---|---|");
    for (name, s) in [
        ("(a) shell checks, one `ssh` process per probe", &sa),
        ("(b) shell checks through a ControlMaster, sequential", &sb),
        (
            "(c) `breakfix check`: probes over one warm connection per node, concurrent",
            &sc,
        ),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} |",
            ms(s.min),
            ms(s.median),
            ms(s.max),
            ms(s.median / checks.len() as u32)
        );
    }
    let ra = sa.median.as_secs_f64() / sc.median.as_secs_f64();
    let rb = sb.median.as_secs_f64() / sc.median.as_secs_f64();
    if let Some(kinds) = slowest.get(median_round) {
        let parts: Vec<String> = kinds
            .iter()
            .map(|(k, d)| format!("{k} {}", ms(*d)))
            .collect();
        println!(
            "\n(c) slowest probe per kind in the median round: {}",
            parts.join(", ")
        );
    }
    println!("\nconnect (cold, all nodes): {}", ms(connect));
    println!(
        "(c) vs (a): {ra:.0}x faster (target >= 100x: {})",
        if ra >= 100.0 { "met" } else { "NOT met" }
    );
    println!(
        "(c) vs (b): {rb:.1}x faster (target >= 10x: {})",
        if rb >= 10.0 { "met" } else { "NOT met" }
    );
    let _ = Duration::ZERO;
}
