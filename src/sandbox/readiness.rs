//! Readiness: waits for a booted node to be usable: its sshd answering with an SSH banner on
//! port 22, and (control plane) etcd answering a status request over mutual TLS on the node
//! address with the healthcheck-client certificate, as kubeadm's health check does.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// Bound on waiting for sshd after the container started.
pub const SSH_TIMEOUT: Duration = Duration::from_secs(90);
/// Bound on waiting for etcd after sshd answered.
pub const ETCD_TIMEOUT: Duration = Duration::from_secs(60);

/// One check of sshd: connects to `ip:22` and reads the `SSH-2.0-...` banner, within `limit`.
/// Returns the banner line.
///
/// Errors: no connection, no banner, or not an SSH banner.
pub async fn ssh_banner(ip: Ipv4Addr, limit: Duration) -> Result<String> {
    let addr = SocketAddr::from((ip, 22));
    let host = format!("{ip}:22");
    let fut = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| Error::Transport {
                host: host.clone(),
                message: e.to_string(),
            })?;
        let mut buf = vec![0u8; 256];
        let mut got = 0;
        while got < buf.len() {
            let n = s
                .read(&mut buf[got..])
                .await
                .map_err(|e| Error::Transport {
                    host: host.clone(),
                    message: e.to_string(),
                })?;
            if n == 0 {
                break;
            }
            got += n;
            if buf[..got].contains(&b'\n') {
                break;
            }
        }
        let line = String::from_utf8_lossy(&buf[..got])
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        if line.starts_with("SSH-2.0-") {
            // Answer with our own identification before closing, so sshd logs a plain
            // "Connection closed ... [preauth]" rather than a key-exchange error.
            let _ = s.write_all(b"SSH-2.0-breakfix_readiness\r\n").await;
            let _ = s.shutdown().await;
            Ok(line)
        } else {
            Err(Error::Transport {
                host: host.clone(),
                message: format!("no SSH banner (got {line:?})"),
            })
        }
    };
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(Error::Transport {
            host,
            message: format!("no SSH banner within {limit:?}"),
        }),
    }
}

/// One check of etcd: a `status` request to `https://ip:2379` with the CA and client
/// certificate found in `pki_dir` (the host copy of `/etc/kubernetes/pki`), within `limit`.
/// Returns etcd's version.
///
/// Errors: certificates unreadable, connection or TLS failure, or no answer in time.
pub async fn etcd_status(ip: Ipv4Addr, pki_dir: &Path, limit: Duration) -> Result<String> {
    let read = |rel: &str| {
        let p = pki_dir.join(rel);
        std::fs::read(&p).map_err(|e| Error::Io {
            context: format!("reading {}", p.display()),
            source: e,
        })
    };
    let ca = read("etcd/ca.crt")?;
    let cert = read("etcd/healthcheck-client.crt")?;
    let key = read("etcd/healthcheck-client.key")?;
    let url = format!("https://{ip}:{}", super::etcd_unit::CLIENT_PORT);
    let tls = etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(ca))
        .identity(etcd_client::Identity::from_pem(cert, key));
    let opts = etcd_client::ConnectOptions::new()
        .with_tls(tls)
        .with_connect_timeout(limit)
        .with_timeout(limit);
    let fut = async {
        let mut c = etcd_client::Client::connect([url.as_str()], Some(opts)).await?;
        c.status().await
    };
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(st)) => Ok(st.version().to_string()),
        Ok(Err(e)) => Err(Error::Transport {
            host: url,
            message: format!("etcd status: {e}"),
        }),
        Err(_) => Err(Error::Transport {
            host: url,
            message: format!("etcd status: no answer within {limit:?}"),
        }),
    }
}

/// Retries `check` every 250 ms until it succeeds, `alive` turns false (the node's container
/// died), or `timeout` passes. Returns the check's value.
///
/// Errors: the last check's error, prefixed with what was awaited and why waiting stopped.
pub async fn wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    alive: impl Fn() -> bool,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let err = match check().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !alive() {
            return Err(Error::other(format!(
                "{what}: the node's container exited (last check: {err})"
            )));
        }
        if Instant::now() >= deadline {
            return Err(Error::other(format!(
                "{what}: not ready within {}s (last check: {err})",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
