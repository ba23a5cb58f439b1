//! Quota fill benchmark (issue 5): time until etcd refuses writes with NOSPACE on a 64 MiB
//! `--quota-backend-bytes`, two ways, each against a FRESH real etcd 3.4 (new data dir, mutual
//! TLS with rcgen certificates, free ports on 127.0.0.1; the integration tests' own set-up,
//! `tests/integration/common/etcd.rs`):
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
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use breakfix::fault::{Action, ActionCtx};
use breakfix::journal::Journal;
use breakfix::template::Renderer;

#[path = "../tests/integration/common/etcd.rs"]
mod etcd;
// The test-tier guard the etcd fixture calls (it does nothing in a benchmark).
#[path = "common/ssh_cli.rs"]
mod ssh_cli;
#[path = "../tests/integration/common/tier.rs"]
mod tier;

use etcd::{count, local_node, session, Etcd, ETCD, ETCDCTL};

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

/// A fresh etcd (new data dir) with the quota, answering reads.
async fn start(o: &Opts) -> Etcd {
    Etcd::start(&[&format!("--quota-backend-bytes={}", o.quota)]).await
}

/// The etcd process's PID for [`cpu_of`].
fn pid(etcd: &Etcd) -> String {
    etcd.pid().map(|p| p.to_string()).unwrap_or_default()
}

/// True when etcd has a NOSPACE alarm.
async fn nospace(etcd: &Etcd) -> bool {
    let mut c = etcd.client().await;
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

/// etcd's database size (bytes).
async fn db_size(etcd: &Etcd) -> i64 {
    etcd.client()
        .await
        .status()
        .await
        .expect("status")
        .db_size()
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
    let etcd = start(o).await;
    let inv = etcd.inventory();
    let s = session().await;
    let yaml = match o.concurrency {
        Some(c) => format!("kind: etcd_quota\nconcurrency: {c}\n"),
        None => "kind: etcd_quota\n".to_string(),
    };
    let a: Action = serde_saphyr::from_str(&yaml).expect("yaml");
    let a = a
        .render(&Renderer::new(&BTreeMap::new(), &inv, &local_node()))
        .expect("render");
    let journal = Journal::at(state.join("journal"));
    let ctx = ActionCtx {
        session: &s,
        journal: Some(&journal as &dyn breakfix::fault::UndoLog),
        scenario: "bench",
        timeout: Duration::from_secs(60),
    };
    let (e0, c0) = (cpu_of(&pid(&etcd)), cpu_of("self"));
    let start = Instant::now();
    a.apply(&ctx).await.expect("etcd_quota fault");
    let took = start.elapsed();
    let (etcd_cpu, client_cpu) = (cpu_of(&pid(&etcd)) - e0, cpu_of("self") - c0);
    assert!(nospace(&etcd).await, "NOSPACE after the fault");
    let puts = count(&mut etcd.client().await, "/breakfix/quota-fill/").await as u64;
    Sample {
        took,
        puts,
        db: db_size(&etcd).await,
        etcd_cpu,
        client_cpu,
    }
}

/// (b) one `etcdctl put` process per 1 MiB value until a put fails.
async fn etcdctl_loop(o: &Opts, value: &Path) -> Sample {
    let etcd = start(o).await;
    let put_err = etcd.data.path().join("put.err");
    let script = format!(
        "export ETCDCTL_API=3; i=0; \
         while {ETCDCTL} {} put /fill/$i < {} >/dev/null 2>{}; \
         do i=$((i+1)); done; echo $i",
        etcd.etcdctl_flags().join(" "),
        value.display(),
        put_err.display(),
    );
    let (e0, c0) = (cpu_of(&pid(&etcd)), children_cpu());
    let start = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("sh");
    let took = start.elapsed();
    let (etcd_cpu, client_cpu) = (cpu_of(&pid(&etcd)) - e0, children_cpu() - c0);
    let err = std::fs::read_to_string(&put_err).unwrap_or_default();
    assert!(
        err.contains("database space exceeded"),
        "the loop must end on NOSPACE: {err}"
    );
    assert!(nospace(&etcd).await, "NOSPACE after the loop");
    Sample {
        took,
        puts: String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        db: db_size(&etcd).await,
        etcd_cpu,
        client_cpu,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn machine() -> String {
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
    format!("{}, {etcd}", ssh_cli::host())
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
    let (sa, sb) = (ssh_cli::stats(a), ssh_cli::stats(b));
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
