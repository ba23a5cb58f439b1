//! Quota fill benchmark (issue 5): time until etcd refuses writes with NOSPACE on a 64 MiB
//! `--quota-backend-bytes`, two ways, each against a FRESH real etcd 3.4 (new data dir, mutual
//! TLS with rcgen certificates, free ports on 127.0.0.1):
//!
//! - (a) breakfix's `etcd_quota` fault: the scenario YAML `kind: etcd_quota` parsed, rendered for
//!   the node and applied as the engine applies a fault (local transport, forward, TLS client,
//!   journal record, concurrent 1 MiB puts, alarm confirmed). Timed from `apply` to its return.
//! - (b) a shell loop of `etcdctl put KEY < value.bin` (1 MiB value, same TLS files), one
//!   etcdctl process per put, until a put fails (`database space exceeded`).
//!
//! ```text
//! cargo bench --bench quota_fill                        # 5 counted runs of each after a warm-up
//! cargo bench --bench quota_fill -- --runs 9 --quota 67108864 --concurrency 8
//! ```
//!
//! Target (issue 5): (a) at least 10x faster than (b), by median. Without `--bench` on the
//! command line (e.g. `cargo test --benches`) it does nothing.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use breakfix::engine::connect::NodeSession;
use breakfix::fault::{Action, ActionCtx};
use breakfix::inventory::{Cluster, EtcdInfo, Inventory, Node, Topology, TransportKind};
use breakfix::journal::Journal;
use breakfix::template::Renderer;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

const ETCD: &str = "/usr/bin/etcd";
const ETCDCTL: &str = "/usr/bin/etcdctl";
const VALUE_SIZE: usize = 1 << 20;

struct Opts {
    runs: usize,
    quota: u64,
    concurrency: Option<u32>,
}

fn opts() -> Opts {
    let args: Vec<String> = std::env::args().collect();
    let val = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Opts {
        runs: val("--runs").unwrap_or(5) as usize,
        quota: val("--quota").unwrap_or(64 << 20),
        concurrency: val("--concurrency").map(|c| c as u32),
    }
}

/// CA, server (127.0.0.1) and client PEM files in `dir`.
fn pki(dir: &Path) {
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
    let ca_pem = ca.self_signed(&ca_key).expect("self-sign").pem();
    let issue = |cn: &str, sans: &[&str], server: bool| {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
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
            .expect("sign");
        (cert.pem(), key.serialize_pem())
    };
    let (sc, sk) = issue("etcd-server", &["127.0.0.1"], true);
    let (cc, ck) = issue("bench-client", &[], false);
    for (n, b) in [
        ("ca.crt", ca_pem.as_str()),
        ("server.crt", &sc),
        ("server.key", &sk),
        ("client.crt", &cc),
        ("client.key", &ck),
    ] {
        std::fs::write(dir.join(n), b).expect("write PEM");
    }
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A fresh etcd (new data dir) with the quota; SIGKILLed by PID on drop.
struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    url: String,
}

impl Etcd {
    fn pid(&self) -> String {
        self.child
            .as_ref()
            .map(|c| c.id().to_string())
            .unwrap_or_default()
    }

    fn start(quota: u64) -> Etcd {
        let dir = tempfile::Builder::new()
            .prefix("breakfix-bench-etcd-")
            .tempdir()
            .expect("tempdir");
        pki(dir.path());
        let url = format!("https://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let p = |n: &str| dir.path().join(n).display().to_string();
        let child = Command::new(ETCD)
            .args(["--name", "controlplane"])
            .arg(format!("--data-dir={}", p("data")))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=controlplane={peer}"))
            .arg(format!("--cert-file={}", p("server.crt")))
            .arg(format!("--key-file={}", p("server.key")))
            .arg(format!("--trusted-ca-file={}", p("ca.crt")))
            .arg("--client-cert-auth")
            .arg(format!("--quota-backend-bytes={quota}"))
            .args(["--logger=zap", &format!("--log-outputs={}", p("etcd.log"))])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        Etcd {
            child: Some(child),
            dir,
            url,
        }
    }

    fn path(&self, n: &str) -> String {
        self.dir.path().join(n).display().to_string()
    }

    async fn client(&self) -> Client {
        let read = |n: &str| std::fs::read(self.path(n)).expect("PEM");
        let tls = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(read("ca.crt")))
            .identity(Identity::from_pem(read("client.crt"), read("client.key")));
        let o = ConnectOptions::new()
            .with_tls(tls)
            .with_timeout(Duration::from_secs(10));
        Client::connect([self.url.as_str()], Some(o))
            .await
            .expect("client")
    }

    async fn ready(&self) {
        let start = Instant::now();
        let mut c = self.client().await;
        while !matches!(
            tokio::time::timeout(Duration::from_secs(2), c.get("health", None)).await,
            Ok(Ok(_))
        ) {
            assert!(start.elapsed() < Duration::from_secs(20), "etcd not ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn nospace(&self) -> bool {
        let mut c = self.client().await;
        let a = c
            .alarm(
                etcd_client::AlarmAction::Get,
                etcd_client::AlarmType::None,
                None,
            )
            .await
            .expect("alarm list");
        a.alarms()
            .iter()
            .any(|m| m.alarm() == etcd_client::AlarmType::Nospace)
    }

    async fn db_size(&self) -> i64 {
        self.client()
            .await
            .status()
            .await
            .expect("status")
            .db_size()
    }

    fn inventory(&self) -> Inventory {
        Inventory {
            api_version: "breakfix/v1".into(),
            kind: "Inventory".into(),
            cluster: Cluster {
                name: "bench".into(),
                topology: Topology::External,
                etcd: EtcdInfo {
                    endpoints: vec![self.url.clone()],
                    ca_file: self.path("ca.crt"),
                    cert_file: self.path("client.crt"),
                    key_file: self.path("client.key"),
                },
                kubeconfig: None,
            },
            nodes: vec![node()],
        }
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

fn node() -> Node {
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

/// One measurement: wall time, values accepted, db size after, CPU time of etcd and of the
/// client side (this process, or the shell loop and its etcdctl processes) during it.
struct Sample {
    took: Duration,
    puts: u64,
    db: i64,
    etcd_cpu: Duration,
    client_cpu: Duration,
}

/// utime + stime of a process (`self` or a PID), from /proc (USER_HZ = 100).
fn cpu_of(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After `(comm)`: field 3 (state) first; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// CPU time of the finished children of this process (the shell loop and its etcdctl).
fn children_cpu() -> Duration {
    // SAFETY: getrusage only writes into the struct passed.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// (a) the engine's fault, journaled like a real break.
async fn engine(o: &Opts, state: &Path) -> Sample {
    let etcd = Etcd::start(o.quota);
    etcd.ready().await;
    let inv = etcd.inventory();
    let s = NodeSession::connect(&node(), Duration::from_secs(5))
        .await
        .expect("session");
    let yaml = match o.concurrency {
        Some(c) => format!("kind: etcd_quota\nconcurrency: {c}\n"),
        None => "kind: etcd_quota\n".to_string(),
    };
    let a: Action = serde_saphyr::from_str(&yaml).expect("yaml");
    let a = a
        .render(&Renderer::new(&BTreeMap::new(), &inv, &node()))
        .expect("render");
    let journal = Journal::at(state.join("journal"));
    let ctx = ActionCtx {
        session: &s,
        journal: Some(&journal),
        scenario: "bench",
        timeout: Duration::from_secs(60),
    };
    let (e0, c0) = (cpu_of(&etcd.pid()), cpu_of("self"));
    let start = Instant::now();
    a.apply(&ctx).await.expect("etcd_quota fault");
    let took = start.elapsed();
    let (etcd_cpu, client_cpu) = (cpu_of(&etcd.pid()) - e0, cpu_of("self") - c0);
    assert!(etcd.nospace().await, "NOSPACE after the fault");
    let mut c = etcd.client().await;
    let puts = c
        .get(
            "/breakfix/quota-fill/",
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_count_only(),
            ),
        )
        .await
        .expect("count")
        .count() as u64;
    Sample {
        took,
        puts,
        db: etcd.db_size().await,
        etcd_cpu,
        client_cpu,
    }
}

/// (b) one `etcdctl put` process per 1 MiB value until a put fails.
async fn etcdctl_loop(o: &Opts, value: &Path) -> Sample {
    let etcd = Etcd::start(o.quota);
    etcd.ready().await;
    let script = format!(
        "export ETCDCTL_API=3; i=0; \
         while {ETCDCTL} --endpoints={} --cacert={} --cert={} --key={} put /fill/$i < {} >/dev/null 2>{}; \
         do i=$((i+1)); done; echo $i",
        etcd.url,
        etcd.path("ca.crt"),
        etcd.path("client.crt"),
        etcd.path("client.key"),
        value.display(),
        etcd.path("put.err"),
    );
    let (e0, c0) = (cpu_of(&etcd.pid()), children_cpu());
    let start = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("sh");
    let took = start.elapsed();
    let (etcd_cpu, client_cpu) = (cpu_of(&etcd.pid()) - e0, children_cpu() - c0);
    let err = std::fs::read_to_string(etcd.path("put.err")).unwrap_or_default();
    assert!(
        err.contains("database space exceeded"),
        "the loop must end on NOSPACE: {err}"
    );
    assert!(etcd.nospace().await, "NOSPACE after the loop");
    Sample {
        took,
        puts: String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        db: etcd.db_size().await,
        etcd_cpu,
        client_cpu,
    }
}

struct Stats {
    min: Duration,
    median: Duration,
    max: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2
    };
    Stats {
        min: v[0],
        median,
        max: v[v.len() - 1],
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let etcd = Command::new(ETCD)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {}, {etcd}", kernel.trim())
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let o = opts();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let work = tempfile::Builder::new()
        .prefix("breakfix-bench-quota-")
        .tempdir()
        .expect("tempdir");
    // The journal's node copy goes to a temp dir too (set before any thread starts).
    std::env::set_var(
        "BREAKFIX_NODE_JOURNAL_DIR",
        work.path().join("node-journal"),
    );
    let value = work.path().join("value.bin");
    std::fs::write(&value, vec![b'q'; VALUE_SIZE]).expect("value file");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    println!(
        "quota fill to NOSPACE: quota {} bytes, 1 MiB values, fresh etcd per run; {}",
        o.quota,
        machine()
    );
    let (mut a, mut b) = (Vec::new(), Vec::new());
    // One warm-up of each (page cache, binaries), then interleaved counted runs.
    for run in 0..=o.runs {
        let state = work.path().join(format!("state-{run}"));
        let x = rt.block_on(engine(&o, &state));
        let y = rt.block_on(etcdctl_loop(&o, &value));
        let tag = if run == 0 { "warm-up" } else { "run" };
        println!(
            "  {tag} {run}: (a) engine {} ({} puts, db {} MiB; cpu: etcd {}, engine {})   (b) etcdctl loop {} ({} puts, db {} MiB; cpu: etcd {}, sh+etcdctl {})",
            ms(x.took),
            x.puts,
            x.db >> 20,
            ms(x.etcd_cpu),
            ms(x.client_cpu),
            ms(y.took),
            y.puts,
            y.db >> 20,
            ms(y.etcd_cpu),
            ms(y.client_cpu),
        );
        if run > 0 {
            a.push(x.took);
            b.push(y.took);
        }
    }
    let (sa, sb) = (stats(a), stats(b));
    println!();
    println!("| way | min | median | max |");
    println!("|---|---|---|---|");
    println!(
        "| (a) breakfix `etcd_quota` fault | {} | {} | {} |",
        ms(sa.min),
        ms(sa.median),
        ms(sa.max)
    );
    println!(
        "| (b) `etcdctl put` loop | {} | {} | {} |",
        ms(sb.min),
        ms(sb.median),
        ms(sb.max)
    );
    let speedup = sb.median.as_secs_f64() / sa.median.as_secs_f64();
    println!();
    println!(
        "speed-up by median: {speedup:.1}x (target >= 10x): {}",
        if speedup >= 10.0 { "MET" } else { "NOT MET" }
    );
}
