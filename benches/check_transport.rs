//! Transport benchmark: ~30 probe-like commands run three ways in one run, against a real
//! OpenSSH server:
//!
//! - (a) one `ssh` process per command, sequential (what a shell-script grader does);
//! - (b) OpenSSH ControlMaster: one master connection, one `ssh` client per command, sequential;
//! - (c) breakfix's russh transport: one connection per node (already open: warm), all
//!   commands concurrent over channels (capped at 8 per connection).
//!
//! Also shown, not part of the targets: (d) russh, the same commands one after another.
//!
//! ```text
//! cargo bench --bench check_transport                      # real sshd on 127.0.0.1 (temp keys)
//! cargo bench --bench check_transport -- --inventory /var/lib/breakfix/sandbox/inventory.yaml
//! cargo bench --bench check_transport -- --rounds 10
//! ```
//!
//! Targets (issue 3): (c) at least 100x faster than (a) and 10x faster than (b), by median
//! round time. Without `--bench` on the command line (e.g. `cargo test --benches`) it does
//! nothing, so test runs stay fast.

#[path = "common/ssh_cli.rs"]
mod ssh_cli;
#[path = "../tests/integration/common/sshd.rs"]
mod sshd;
// The test-tier guard the sshd fixture calls (it does nothing in a benchmark).
#[path = "../tests/integration/common/tier.rs"]
mod tier;

use ssh_cli::{cpu_busy, machine, mode_a, mode_b, ms, stats, Master, Stats, Target};

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use breakfix::inventory::{Inventory, Node, TransportKind};
use breakfix::transport::Transport;

const TIMEOUT: Duration = Duration::from_secs(20);

/// Probe-like commands, read-only, the kind a grader runs. Their exit status does not
/// matter here (e.g. no etcd unit on the loopback fixture); each must finish quickly.
const PROBES: &[&str] = &[
    "systemctl is-active etcd",
    "systemctl is-enabled etcd",
    "systemctl is-active kubelet",
    "test -f /etc/kubernetes/manifests/etcd.yaml",
    "test -f /etc/kubernetes/manifests/kube-apiserver.yaml",
    "test -d /var/lib/etcd/member",
    "test -f /etc/kubernetes/pki/etcd/ca.crt",
    "test -f /etc/kubernetes/pki/etcd/server.crt",
    "test -f /etc/kubernetes/pki/apiserver-etcd-client.crt",
    "test -f /etc/kubernetes/admin.conf",
    "ss -tln",
    "ss -tlnp 'sport = :2379'",
    "ss -tln 'sport = :2380'",
    "ss -tln 'sport = :6443'",
    "cat /proc/loadavg",
    "head -n 3 /proc/meminfo",
    "cat /proc/uptime",
    "hostname",
    "df -P /var/lib",
    "ls /etc/kubernetes/manifests",
    "stat -c %a /etc/hosts",
    "cat /etc/hostname",
    "ip -o link show",
    "ip -o addr show",
    "tc qdisc show",
    "pgrep -c sshd",
    "id -u",
    "uname -r",
    "date +%s",
    "grep -c processor /proc/cpuinfo",
];

/// The (node index, command) pairs of one round: probes spread over the nodes.
fn plan(nodes: usize) -> Vec<(usize, &'static str)> {
    PROBES
        .iter()
        .enumerate()
        .map(|(i, c)| (i % nodes, *c))
        .collect()
}

async fn mode_c(transports: &[Transport], plan: &[(usize, &str)]) -> Duration {
    let start = Instant::now();
    let runs = plan
        .iter()
        .map(|(n, cmd)| transports[*n].exec(cmd, TIMEOUT));
    for r in futures::future::join_all(runs).await {
        if let Err(e) = r {
            panic!("russh exec failed: {e}");
        }
    }
    start.elapsed()
}

async fn mode_d(transports: &[Transport], plan: &[(usize, &str)]) -> Duration {
    let start = Instant::now();
    for (n, cmd) in plan {
        if let Err(e) = transports[*n].exec(cmd, TIMEOUT).await {
            panic!("russh exec failed: {e}");
        }
    }
    start.elapsed()
}

/// Floor: the same commands with no SSH at all, one after another in one local `sh` (on
/// this machine; for the loopback fixture that is the node). What running them costs.
fn floor_local(plan: &[(usize, &str)]) -> Duration {
    let script: String = plan
        .iter()
        .map(|(_, c)| format!("{{ {c} ; }} >/dev/null 2>&1 </dev/null\n"))
        .collect();
    let start = Instant::now();
    let _ = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    start.elapsed()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        eprintln!("check_transport: run with `cargo bench --bench check_transport` (skipped)");
        return;
    }
    let mut inventory: Option<PathBuf> = None;
    let mut rounds = 5usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--inventory" => inventory = it.next().map(PathBuf::from),
            "--rounds" => rounds = it.next().and_then(|s| s.parse().ok()).unwrap_or(rounds),
            _ => {}
        }
    }
    let rounds = rounds.max(1);

    // Targets: the inventory's SSH nodes, or a real sshd on loopback.
    let fixture;
    let (label, nodes): (String, Vec<Node>) = match &inventory {
        Some(p) => {
            let inv = Inventory::load(p).unwrap_or_else(|e| panic!("{e}"));
            let nodes: Vec<Node> = inv
                .nodes
                .into_iter()
                .filter(|n| n.transport == TransportKind::Ssh)
                .collect();
            assert!(!nodes.is_empty(), "{} lists no ssh nodes", p.display());
            (
                format!("inventory {} ({} nodes)", p.display(), nodes.len()),
                nodes,
            )
        }
        None => {
            fixture = sshd::Sshd::start();
            (
                "real OpenSSH sshd on 127.0.0.1 (test fixture, root, login shell bash)".into(),
                vec![fixture.node()],
            )
        }
    };
    let targets: Vec<Target> = nodes.iter().cloned().map(|node| Target { node }).collect();
    let plan = plan(targets.len());

    println!("# check_transport");
    println!("target:   {label}");
    println!("machine:  {}", machine());
    println!(
        "commands: {} per round, {} rounds per mode\n",
        plan.len(),
        rounds
    );

    // (c)/(d) warm-up: connect once (timed separately), run one round untimed.
    let mut transports = Vec::new();
    let mut connects = Vec::new();
    for n in &nodes {
        let start = Instant::now();
        let t = Transport::connect(n, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("russh connect: {e}"));
        connects.push(start.elapsed());
        transports.push(t);
    }
    mode_c(&transports, &plan).await;

    let sockets = tempfile::Builder::new()
        .prefix("breakfix-cm-")
        .tempdir()
        .expect("temp dir");
    let masters: Vec<Master> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| Master::start(t, &sockets.path().join(format!("cm{i}"))))
        .collect();
    mode_b(&masters, &plan); // warm-up

    let (mut a, mut b, mut c, mut d) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut floor = Vec::new();
    // Machine CPU (all processes: clients, sshd, the commands) spent per mode.
    let mut cpu = [Duration::ZERO; 4];
    for r in 0..rounds {
        let t0 = cpu_busy();
        a.push(tokio::task::block_in_place(|| mode_a(&targets, &plan)));
        let t1 = cpu_busy();
        b.push(tokio::task::block_in_place(|| mode_b(&masters, &plan)));
        let t2 = cpu_busy();
        c.push(mode_c(&transports, &plan).await);
        let t3 = cpu_busy();
        d.push(mode_d(&transports, &plan).await);
        let t4 = cpu_busy();
        floor.push(floor_local(&plan));
        for (i, (x, y)) in [(t0, t1), (t1, t2), (t2, t3), (t3, t4)]
            .into_iter()
            .enumerate()
        {
            cpu[i] += y.saturating_sub(x);
        }
        eprintln!(
            "round {}/{rounds}: a {} b {} c {} d {}",
            r + 1,
            ms(a[r]),
            ms(b[r]),
            ms(c[r]),
            ms(d[r])
        );
    }
    drop(masters);

    let (sa, sb, sc, sd) = (stats(a), stats(b), stats(c), stats(d));
    let sf = stats(floor);
    let n = plan.len() as u32;
    let total = n * rounds as u32;
    println!("| mode | min | median | max | median per command | machine CPU per command |");
    println!("|---|---|---|---|---|---|");
    for (i, (name, s)) in [
        ("(a) one `ssh` process per command, sequential", &sa),
        ("(b) OpenSSH ControlMaster, sequential", &sb),
        ("(c) russh, one warm connection, concurrent channels", &sc),
        ("(d) russh, one warm connection, sequential (info)", &sd),
    ]
    .into_iter()
    .enumerate()
    {
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            ms(s.min),
            ms(s.median),
            ms(s.max),
            ms(s.median / n),
            ms(cpu[i] / total)
        );
    }
    println!(
        "| floor: the same commands in one local `sh`, no SSH (info) | {} | {} | {} | {} | |",
        ms(sf.min),
        ms(sf.median),
        ms(sf.max),
        ms(sf.median / n)
    );
    let ratio = |x: &Stats, y: &Stats| x.median.as_secs_f64() / y.median.as_secs_f64();
    let (ra, rb) = (ratio(&sa, &sc), ratio(&sb, &sc));
    println!();
    println!(
        "russh connect + auth (cold): {}",
        connects
            .iter()
            .map(|d| ms(*d))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "(c) vs (a): {ra:.0}x faster (target >= 100x: {})",
        if ra >= 100.0 { "met" } else { "NOT met" }
    );
    println!(
        "(c) vs (b): {rb:.1}x faster (target >= 10x: {})",
        if rb >= 10.0 { "met" } else { "NOT met" }
    );
}
