//! Transport tests against a real OpenSSH server on loopback (common::sshd) and the local
//! transport. No mocks: real sshd, real processes, real files under /tmp.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use breakfix::inventory::{Node, TransportKind};
use breakfix::transport::{shell_quote, Transport};
use breakfix::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::sshd::{new_key, Sshd};

mod sftp;

const T: Duration = Duration::from_secs(20);

fn token() -> String {
    use rand::Rng;
    format!(
        "{:012x}",
        rand::thread_rng().gen::<u64>() & 0xffff_ffff_ffff
    )
}

async fn ssh(sshd: &Sshd) -> Transport {
    Transport::connect(&sshd.node(), Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("connect failed: {e}\n--- sshd log ---\n{}", sshd.log_text()))
}

async fn local() -> Transport {
    let node = Node {
        name: "here".into(),
        address: "127.0.0.1".into(),
        port: 22,
        user: "root".into(),
        identity_file: None,
        known_hosts: None,
        roles: vec![],
        transport: TransportKind::Local,
    };
    Transport::connect(&node, Duration::from_secs(1))
        .await
        .expect("local transport")
}

// ---------------------------------------------------------------------------------------
// Shared checks, run on both transports.

async fn check_exec_basics(t: &Transport) {
    let out = t
        .exec("echo out; echo err >&2; exit 3", T)
        .await
        .expect("exec runs");
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    assert_eq!(out.exit, Some(3));
    assert!(!out.success());
    let ok = t
        .exec("printf '%s' \"$((6 * 7))\"", T)
        .await
        .expect("exec runs");
    assert_eq!(ok.stdout, "42");
    assert!(ok.success());
    // Killed by a signal: no exit status.
    let sig = t.exec("kill -TERM $$", T).await.expect("exec runs");
    assert_eq!(sig.exit, None, "{sig:?}");
    // stdin is fed, and a large stdin echoed back does not stall the connection.
    // (ASCII: `Output.stdout` is lossy UTF-8.)
    let big: Vec<u8> = (0..(1usize << 20))
        .map(|i| b'a' + (i * 7 % 26) as u8)
        .collect();
    let echoed = t.exec_with_stdin("cat", &big, T).await.expect("cat runs");
    assert!(
        echoed.stdout.as_bytes() == big.as_slice(),
        "stdin echoed intact"
    );
    let counted = t
        .exec_with_stdin("wc -c", b"hello", T)
        .await
        .expect("wc runs");
    assert_eq!(counted.stdout.trim(), "5");
    // No stdin means EOF at once, not a hang.
    let eof = t.exec("cat; echo done", T).await.expect("cat runs");
    assert_eq!(eof.stdout, "done\n");
}

async fn check_hanging_command_is_killed(t: &Transport) {
    let tok = token();
    let marker = format!("marker-{tok}");
    // A unique sleep length so the sleep child can be found by its own command line too.
    let secs = format!("299.{}", u32::from_str_radix(&tok[..6], 16).unwrap_or(1));
    let cmd = format!("sleep {secs}; echo {marker}");
    let start = Instant::now();
    let err = t
        .exec(&cmd, Duration::from_secs(1))
        .await
        .expect_err("must time out");
    let took = start.elapsed();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    let msg = err.to_string();
    assert!(msg.contains(t.host()) && msg.contains(&marker), "{msg}");
    // `[m]arker` / `29[9]` match the processes but not this check's own command line.
    let check = format!(
        "pgrep -f '[m]arker-{tok}'; a=$?; pgrep -f 'sleep 29[9]{}'; b=$?; echo \"$a $b\"",
        &secs[3..]
    );
    let out = t.exec(&check, T).await.expect("pgrep runs");
    assert!(
        out.stdout.trim_end().ends_with("1 1"),
        "the timed-out command is still running: {out:?}"
    );
}

async fn check_quoted_value_never_runs(t: &Transport) {
    let victim = format!("/tmp/pwned-{}", token());
    let value = format!("$(touch {victim}); `touch {victim}`; ' \" ; touch {victim}");
    let out = t
        .exec(&format!("printf '%s' {}", shell_quote(&value)), T)
        .await
        .expect("exec runs");
    assert_eq!(out.stdout, value);
    assert!(
        !Path::new(&victim).exists(),
        "{victim} was created: the value ran"
    );
    // Paths are quoted by the file operations too. (A file name cannot hold `/`, so this
    // one would create `pwned-<token>` in the shell's working directory.)
    let name = victim.trim_start_matches("/tmp/").to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let odd = dir
        .path()
        .join(format!("a b $(touch {name}) `touch {name}` 'x'"));
    let odd = odd.to_str().expect("utf-8 path");
    t.write_file(odd, b"x", None, T)
        .await
        .expect("write odd path");
    assert_eq!(
        t.read_file(odd, T).await.expect("read odd path"),
        Some(b"x".to_vec())
    );
    let cwd = std::env::current_dir().expect("cwd");
    for place in [
        cwd.as_path(),
        Path::new("/root"),
        Path::new("/"),
        Path::new("/tmp"),
        dir.path(),
    ] {
        assert!(
            !place.join(&name).exists(),
            "{name} was created in {}",
            place.display()
        );
    }
}

async fn check_files(t: &Transport) {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let p = d.join("manifest.yaml");
    let path = p.to_str().expect("utf-8");

    // Missing file: None.
    assert_eq!(t.read_file(path, T).await.expect("read missing"), None);
    let missing_dir = d.join("no/such/file");
    assert_eq!(
        t.read_file(missing_dir.to_str().expect("utf-8"), T)
            .await
            .expect("read missing"),
        None
    );

    // New file: default mode 0644, or the given mode.
    t.write_file(path, b"first\n", None, T)
        .await
        .expect("write new");
    assert_eq!(
        std::fs::metadata(&p).expect("stat").permissions().mode() & 0o7777,
        0o644
    );
    let p2 = d.join("secret.key");
    t.write_file(p2.to_str().expect("utf-8"), b"k", Some(0o600), T)
        .await
        .expect("write new with mode");
    assert_eq!(
        std::fs::metadata(&p2).expect("stat").permissions().mode() & 0o7777,
        0o600
    );

    // Existing file: owner and mode kept (the given mode is ignored), contents replaced.
    std::os::unix::fs::chown(&p, Some(1234), Some(2345)).expect("chown");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let before_ino = std::fs::metadata(&p).expect("stat").ino();
    let binary: Vec<u8> = (0..=255u8)
        .chain([0, 0xff, 0xc3, 0x28, b'\n', 0])
        .cycle()
        .take(70_000)
        .collect();
    t.write_file(path, &binary, Some(0o600), T)
        .await
        .expect("write existing");
    let m = std::fs::metadata(&p).expect("stat");
    assert_eq!((m.uid(), m.gid()), (1234, 2345), "owner kept");
    assert_eq!(m.permissions().mode() & 0o7777, 0o640, "mode kept");
    assert_ne!(
        m.ino(),
        before_ino,
        "replaced by rename, not rewritten in place"
    );
    assert_eq!(std::fs::read(&p).expect("read back"), binary);

    // read_file is binary-safe.
    assert_eq!(
        t.read_file(path, T).await.expect("read"),
        Some(binary.clone())
    );
    assert_eq!(
        t.read_file(p2.to_str().expect("utf-8"), T)
            .await
            .expect("read"),
        Some(b"k".to_vec())
    );

    // A symlink to an existing file: the target is replaced, the link stays.
    let link = d.join("link.yaml");
    std::os::unix::fs::symlink(&p, &link).expect("symlink");
    t.write_file(link.to_str().expect("utf-8"), b"via link", None, T)
        .await
        .expect("write via link");
    assert!(std::fs::symlink_metadata(&link)
        .expect("lstat")
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&p).expect("read target"), b"via link");

    // Errors name the host and the path; nothing is left behind.
    let err = t
        .read_file(d.to_str().expect("utf-8"), T)
        .await
        .expect_err("a directory");
    let msg = err.to_string();
    assert!(
        msg.contains(t.host()) && msg.contains(d.to_str().expect("utf-8")),
        "{msg}"
    );
    let nodir = d.join("nodir/x");
    let err = t
        .write_file(nodir.to_str().expect("utf-8"), b"x", None, T)
        .await
        .expect_err("parent missing");
    assert!(err.to_string().contains("nodir"), "{err}");

    // Atomic: no temp file left in the directory.
    let leftovers: Vec<String> = std::fs::read_dir(d)
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".breakfix-"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

/// An echo server on 127.0.0.1 (half-close aware); returns its port.
async fn echo_server() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind echo");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    port
}

async fn check_forward(t: &Transport) {
    let port = echo_server().await;
    let fwd = t.forward("127.0.0.1", port).await.expect("forward");
    assert!(fwd.local.ip().is_loopback());
    // Two connections at once, one large payload.
    let payload: Vec<u8> = (0..(2usize << 20)).map(|i| (i % 253) as u8).collect();
    let mut handles = Vec::new();
    for n in 0..2 {
        let data = if n == 0 {
            payload.clone()
        } else {
            b"ping".to_vec()
        };
        let addr = fwd.local;
        handles.push(tokio::spawn(async move {
            let s = tokio::net::TcpStream::connect(addr)
                .await
                .expect("connect to forward");
            let (mut r, mut w) = s.into_split();
            let send = data.clone();
            let writer = tokio::spawn(async move {
                w.write_all(&send).await.expect("write");
                w.shutdown().await.expect("shutdown");
            });
            let mut back = Vec::new();
            r.read_to_end(&mut back).await.expect("read back");
            writer.await.expect("writer");
            assert_eq!(back.len(), data.len());
            assert!(back == data, "bytes differ");
        }));
    }
    for h in handles {
        tokio::time::timeout(Duration::from_secs(30), h)
            .await
            .expect("forward round trip in time")
            .expect("round trip");
    }
}

// ---------------------------------------------------------------------------------------
// SSH transport.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn ssh_exec_returns_stdout_stderr_and_exit() {
    let sshd = Sshd::start();
    let t = ssh(&sshd).await;
    assert_eq!(t.host(), sshd.host_label());
    check_exec_basics(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn transports_are_shareable_across_tasks() {
    // The engine runs probes as spawned tasks over one shared transport per node.
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Transport>();
    let sshd = Sshd::start();
    let t = std::sync::Arc::new(ssh(&sshd).await);
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let t = std::sync::Arc::clone(&t);
            tokio::spawn(async move { t.exec(&format!("echo {i}"), T).await })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let out = task.await.expect("task").expect("exec");
        assert_eq!(out.stdout, format!("{i}\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn ssh_30_concurrent_execs_on_one_connection_queue_and_succeed() {
    let sshd = Sshd::start();
    let t = ssh(&sshd).await;
    let start = Instant::now();
    let runs = (0..30).map(|i| {
        let t = &t;
        async move { (i, t.exec(&format!("sleep 0.3; echo {i}"), T).await) }
    });
    let results = futures::future::join_all(runs).await;
    let took = start.elapsed();
    for (i, r) in results {
        let out = r.unwrap_or_else(|e| panic!("exec {i} failed: {e}\n{}", sshd.log_text()));
        assert_eq!(out.stdout.trim(), i.to_string());
        assert!(out.success());
    }
    // 30 x 0.3 s with at most 7 at a time: at least 4 rounds.
    assert!(
        took >= Duration::from_millis(1100),
        "not capped? took {took:?}"
    );
    // sshd may still log "no more sessions" now and then: it frees a closed session a moment
    // after the close, and the transport retries such refused opens. What matters is above:
    // every command succeeded.
    // A burst of very short commands (channels turn over faster than sshd frees sessions).
    let burst = (0..60).map(|i| t.exec(if i % 2 == 0 { "true" } else { "echo x" }, T));
    for r in futures::future::join_all(burst).await {
        let out = r.unwrap_or_else(|e| panic!("burst exec failed: {e}\n{}", sshd.log_text()));
        assert!(out.success());
    }
    // One connection: sshd logged exactly one accepted publickey login.
    assert_eq!(
        sshd.log_text().matches("Accepted publickey").count(),
        1,
        "{}",
        sshd.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn ssh_wrong_host_key_is_refused_naming_host_and_fingerprint() {
    let sshd = Sshd::start();
    let (_, other) = new_key(sshd.dir.path(), "impostor");
    let kh = sshd.write_known_hosts("kh-wrong", &format!("[127.0.0.1]:{} {other}\n", sshd.port));
    let mut node = sshd.node();
    node.known_hosts = Some(kh.clone());
    let err = Transport::connect(&node, Duration::from_secs(10))
        .await
        .err()
        .expect("a changed host key must be refused");
    let msg = err.to_string();
    assert!(matches!(err, Error::Transport { .. }), "{msg}");
    assert!(msg.contains(&sshd.host_label()), "names the host: {msg}");
    assert!(
        msg.contains(&sshd.host_fingerprint()),
        "names the fingerprint: {msg}"
    );
    assert!(
        msg.contains(kh.to_str().expect("utf-8")),
        "names the file: {msg}"
    );
    assert!(msg.contains("MISMATCH"), "{msg}");
    assert!(
        !sshd.log_text().contains("Accepted publickey"),
        "must not authenticate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn ssh_unknown_host_is_refused() {
    let sshd = Sshd::start();
    // The right key, but listed for port 22 only: [127.0.0.1]:PORT is unknown.
    for (name, text) in [
        ("kh-port22", format!("127.0.0.1 {}\n", sshd.host_key_pub)),
        ("kh-empty", String::new()),
    ] {
        let kh = sshd.write_known_hosts(name, &text);
        let mut node = sshd.node();
        node.known_hosts = Some(kh);
        let err = Transport::connect(&node, Duration::from_secs(10))
            .await
            .err()
            .expect("an unknown host must be refused");
        let msg = err.to_string();
        assert!(matches!(err, Error::Transport { .. }), "{msg}");
        assert!(
            msg.contains(&sshd.host_label()) && msg.contains(&sshd.host_fingerprint()),
            "{msg}"
        );
        assert!(msg.contains("not listed"), "{msg}");
    }
    // A missing known_hosts file is refused too.
    let mut node = sshd.node();
    node.known_hosts = Some(sshd.dir.path().join("does-not-exist"));
    let err = Transport::connect(&node, Duration::from_secs(10))
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("does-not-exist"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn ssh_hashed_known_hosts_entry_is_accepted() {
    let sshd = Sshd::start();
    let kh = sshd.write_known_hosts(
        "kh-hashed",
        &std::fs::read_to_string(&sshd.known_hosts).expect("kh"),
    );
    let status = std::process::Command::new("ssh-keygen")
        .arg("-q")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("ssh-keygen -H");
    assert!(status.success());
    let text = std::fs::read_to_string(&kh).expect("hashed kh");
    assert!(text.starts_with("|1|"), "{text}");
    let mut node = sshd.node();
    node.known_hosts = Some(kh);
    let t = Transport::connect(&node, Duration::from_secs(10))
        .await
        .expect("hashed entry trusted");
    assert!(t.exec("true", T).await.expect("exec").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn ssh_wrong_client_key_is_refused() {
    let sshd = Sshd::start();
    let (key, _) = new_key(sshd.dir.path(), "stranger");
    let mut node = sshd.node();
    node.identity_file = Some(key);
    let err = Transport::connect(&node, Duration::from_secs(10))
        .await
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Transport { .. }) && msg.contains("refused"),
        "{msg}"
    );
    assert!(msg.contains(&sshd.host_label()), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn ssh_connect_to_silent_server_times_out() {
    // Accepts TCP connections and never says a word.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    let keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let sshd = Sshd::start(); // only for its key files
    let mut node = sshd.node();
    node.port = port;
    let start = Instant::now();
    let err = Transport::connect(&node, Duration::from_secs(1))
        .await
        .err()
        .expect("must time out");
    let took = start.elapsed();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    keep.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn ssh_connect_to_closed_port_fails_fast() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let sshd = Sshd::start();
    let mut node = sshd.node();
    node.port = port;
    let start = Instant::now();
    let err = Transport::connect(&node, Duration::from_secs(10))
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, Error::Transport { .. }), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn ssh_hanging_command_is_cut_and_killed_on_the_node() {
    let sshd = Sshd::start();
    let t = ssh(&sshd).await;
    check_hanging_command_is_killed(&t).await;
    // The connection is still usable, and 10 timeouts in a row do not exhaust MaxSessions.
    let runs = (0..10).map(|_| t.exec("sleep 30", Duration::from_millis(300)));
    for r in futures::future::join_all(runs).await {
        assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    }
    assert!(t.exec("true", T).await.expect("still usable").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn ssh_reconnects_after_the_connection_is_lost() {
    let sshd = Sshd::start();
    let t = ssh(&sshd).await;
    assert!(t.exec("true", T).await.expect("first exec").success());
    sshd.drop_connections();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = t.exec("echo again", T).await.expect("exec after reconnect");
    assert_eq!(out.stdout, "again\n");
    assert_eq!(
        sshd.log_text().matches("Accepted publickey").count(),
        2,
        "{}",
        sshd.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn ssh_commands_die_with_the_transport() {
    // Dropping the transport (as when the engine exits or is killed) must not leave its
    // running commands behind on the node.
    let sshd = Sshd::start();
    let tok = token();
    let secs = format!("298.{}", u32::from_str_radix(&tok[..6], 16).unwrap_or(1));
    let t = std::sync::Arc::new(ssh(&sshd).await);
    let runner = std::sync::Arc::clone(&t);
    let cmd = format!("sleep {secs}; echo marker-{tok}");
    let task = tokio::spawn(async move { runner.exec(&cmd, Duration::from_secs(600)).await });
    let pattern = format!("sleep 29[8]{}", &secs[3..]);
    let running = || {
        std::process::Command::new("pgrep")
            .arg("-f")
            .arg(&pattern)
            .stdout(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let start = Instant::now();
    while !running() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the command never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
    let _ = task.await;
    drop(t);
    let start = Instant::now();
    while running() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the command outlived its transport"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn ssh_shell_quoted_value_never_executes() {
    let sshd = Sshd::start();
    let t = ssh(&sshd).await;
    check_quoted_value_never_runs(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn ssh_files_atomic_keep_mode_owner_and_round_trip_bytes() {
    let sshd = Sshd::start();
    let t = ssh(&sshd).await;
    check_files(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn ssh_forward_round_trips_bytes() {
    let sshd = Sshd::start();
    let t = ssh(&sshd).await;
    check_forward(&t).await;
    // A closed port on the node: the local connection is closed, nothing hangs.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let fwd = t.forward("127.0.0.1", closed).await.expect("forward");
    let mut s = tokio::net::TcpStream::connect(fwd.local)
        .await
        .expect("connect");
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "the connection to a closed port must end");
}

// ---------------------------------------------------------------------------------------
// Local transport.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_exec_returns_stdout_stderr_and_exit() {
    let t = local().await;
    assert_eq!(t.host(), "here (local)");
    check_exec_basics(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_hanging_command_is_cut_and_killed() {
    let t = local().await;
    check_hanging_command_is_killed(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_shell_quoted_value_never_executes() {
    let t = local().await;
    check_quoted_value_never_runs(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs root")]
async fn local_files_atomic_keep_mode_owner_and_round_trip_bytes() {
    let t = local().await;
    check_files(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_forward_round_trips_bytes() {
    let t = local().await;
    check_forward(&t).await;
}
