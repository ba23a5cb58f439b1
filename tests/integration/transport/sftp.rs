//! `stat` and reads on both transports, and the SSH transport's SFTP path against the real
//! sshd fixture: one SFTP session per connection and no command per file, /proc/net/tcp, the
//! fallback to commands on a server without the `sftp` subsystem, recovery when the
//! sftp-server dies or hangs on a request.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::time::{Duration, Instant};

use breakfix::node::NodeSession;
use breakfix::transport::Transport;
use breakfix::Error;

use super::{check_files, local, ssh, T};
use crate::common::sshd::Sshd;

/// `stat`: mode with special bits, owner ids, size, symlinks followed, directories, and the
/// three ways of "does not exist".
async fn check_stat(t: &Transport) {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let p = d.join("server.conf");
    std::fs::write(&p, "listen=127.0.0.1\n").expect("write");
    // chown first: it clears setgid.
    std::os::unix::fs::chown(&p, Some(1234), Some(2345)).expect("chown");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o2750)).expect("chmod");
    let path = p.to_str().expect("utf-8");

    let st = t.stat(path, T).await.expect("stat").expect("exists");
    assert_eq!(st.permissions(), 0o2750, "{st:?}");
    assert_eq!((st.uid, st.gid, st.size), (1234, 2345, 17), "{st:?}");
    assert!(st.is_file() && !st.is_dir(), "{st:?}");

    let link = d.join("link.conf");
    std::os::unix::fs::symlink(&p, &link).expect("symlink");
    let via_link = t
        .stat(link.to_str().expect("utf-8"), T)
        .await
        .expect("stat link")
        .expect("exists");
    assert_eq!(via_link, st, "symlinks are followed");

    let sd = t
        .stat(d.to_str().expect("utf-8"), T)
        .await
        .expect("stat dir")
        .expect("exists");
    assert!(sd.is_dir() && !sd.is_file(), "{sd:?}");

    let dangling = d.join("dangling");
    std::os::unix::fs::symlink(d.join("nowhere"), &dangling).expect("symlink");
    for missing in [
        d.join("missing"),
        dangling,
        p.join("under-a-file"),
        d.join("no/such/dir/x"),
    ] {
        let m = missing.to_str().expect("utf-8");
        assert_eq!(t.stat(m, T).await.expect("stat missing"), None, "{m}");
        assert_eq!(t.read_file(m, T).await.expect("read missing"), None, "{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs root")]
async fn local_stat_reports_mode_owner_size_and_missing_files() {
    check_stat(&local().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn ssh_stat_reports_mode_owner_size_and_missing_files() {
    let sshd = Sshd::start();
    check_stat(&ssh(&sshd).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn ssh_reads_and_stats_share_one_sftp_session_and_start_no_command() {
    let sshd = Sshd::start();
    let t = ssh(&sshd).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let big_path = dir.path().join("big.bin");
    std::fs::write(&big_path, &big).expect("write");
    let big_path = big_path.to_str().expect("utf-8").to_string();
    // The connection's guardian is a command session; count from here.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let commands = sshd.command_sessions();

    let files = [
        "/etc/hostname",
        "/etc/passwd",
        "/proc/net/tcp",
        big_path.as_str(),
    ];
    let reads = (0..24).map(|i| {
        let (t, f) = (&t, files[i % files.len()]);
        async move { (f, t.read_file(f, T).await, t.stat(f, T).await) }
    });
    for (f, read, stat) in futures::future::join_all(reads).await {
        let bytes = read
            .unwrap_or_else(|e| panic!("read {f}: {e}\n{}", sshd.log_text()))
            .unwrap_or_else(|| panic!("{f} exists"));
        let st = stat.expect("stat").expect("exists");
        if f.starts_with("/proc/") {
            // Size 0 in stat, contents all the same (read to EOF).
            assert_eq!(st.size, 0);
            assert!(
                String::from_utf8_lossy(&bytes).contains("local_address"),
                "{f}"
            );
        } else {
            assert_eq!(bytes, std::fs::read(f).expect("local read"), "{f}");
            assert_eq!(st.size, bytes.len() as u64, "{f}");
        }
    }
    assert_eq!(
        t.read_file("/nonexistent/x", T).await.expect("missing"),
        None
    );
    assert_eq!(
        sshd.command_sessions(),
        commands,
        "reads and stats must not start commands\n{}",
        sshd.log_text()
    );
    assert_eq!(sshd.sftp_sessions(), 1, "{}", sshd.log_text());
    // Commands still work next to the SFTP session, and are counted.
    assert!(commands >= 1, "the guardian is a command session");
    assert_eq!(t.exec("echo ok", T).await.expect("exec").stdout, "ok\n");
    assert_eq!(sshd.command_sessions(), commands + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn ssh_lists_tcp_listeners_from_proc_net_without_a_command() {
    let sshd = Sshd::start();
    let s = NodeSession::connect(&sshd.node(), T)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", sshd.log_text()));
    let v6 = std::net::TcpListener::bind("[::1]:0").ok();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let commands = sshd.command_sessions();
    let found = s.listeners(T).await.expect("listeners");
    assert!(
        found.contains(&format!("127.0.0.1:{}", sshd.port)),
        "sshd's own port missing from {found:?}"
    );
    if let Some(l) = &v6 {
        let port = l.local_addr().expect("addr").port();
        assert!(found.contains(&format!("[::1]:{port}")), "{found:?}");
    }
    assert_eq!(sshd.command_sessions(), commands, "{}", sshd.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn ssh_without_the_sftp_subsystem_falls_back_to_commands() {
    let sshd = Sshd::start_without_sftp();
    let t = ssh(&sshd).await;
    check_stat(&t).await;
    check_files(&t).await;
    assert_eq!(sshd.sftp_sessions(), 0);
    // Asked once per connection, then remembered.
    assert_eq!(
        sshd.log_text()
            .matches("subsystem request for sftp")
            .count(),
        1,
        "{}",
        sshd.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn ssh_sftp_session_is_reopened_when_the_sftp_server_dies() {
    let sshd = Sshd::start();
    let t = ssh(&sshd).await;
    assert!(t
        .read_file("/etc/hostname", T)
        .await
        .expect("read")
        .is_some());
    assert_eq!(
        sshd.kill_sftp_servers(),
        1,
        "one sftp-server per connection"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The next operations notice the dead session and open a new one, without an error.
    let st = t
        .stat("/etc/hostname", T)
        .await
        .expect("stat after the kill");
    assert!(st.is_some());
    assert!(t
        .read_file("/etc/hostname", T)
        .await
        .expect("read")
        .is_some());
    assert_eq!(sshd.sftp_sessions(), 2, "{}", sshd.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn ssh_a_hung_sftp_request_times_out_and_later_reads_work() {
    // sftp-server serves one request at a time: a read stuck in the kernel (a FIFO here, a
    // hung mount in real life) must not wedge the files of later operations.
    let sshd = Sshd::start();
    let t = ssh(&sshd).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let fifo_s = fifo.to_str().expect("utf-8");
    // On the way out, even after a failed assertion: unblock the abandoned sftp-server (it
    // is opening the FIFO for reading) by opening the FIFO for writing.
    struct Unblock<'a>(&'a std::path::Path);
    impl Drop for Unblock<'_> {
        fn drop(&mut self) {
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(self.0);
        }
    }
    let _unblock = Unblock(&fifo);
    let start = Instant::now();
    let err = t
        .read_file(fifo_s, Duration::from_millis(500))
        .await
        .expect_err("a FIFO without a writer blocks");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    match &err {
        Error::Timeout { host, command, .. } => {
            assert_eq!(host, &sshd.host_label());
            assert!(command.contains(fifo_s), "{command}");
        }
        other => panic!("expected a timeout, got {other}"),
    }
    let start = Instant::now();
    assert!(t
        .read_file("/etc/hostname", T)
        .await
        .expect("read")
        .is_some());
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}
