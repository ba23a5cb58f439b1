//! Load balancer: the API servers of several control planes behind one address, kubeadm's
//! `controlPlaneEndpoint`. An HAProxy process on the host, listening on the instance's bridge
//! address, port 6443, set up as kubeadm's HA guide does it
//! (<https://github.com/kubernetes/kubeadm/blob/main/docs/ha-considerations.md>): TCP pass-through,
//! each API server health-checked on `/readyz` over TLS.
//!
//! Guarantees: the process is recorded in the sandbox's state (PID and start time) and
//! carries the sandbox's marker in its environment, so `down` ends it like a node, even when
//! the record was lost. Caveats: it is one process on the host, not keepalived's floating
//! address: losing a control plane is survived, losing the host's HAProxy is not.

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::fsutil::{self, io_err};
use super::procs::{self, MARKER_ENV};
use super::state::{ProcKind, Resource, State};
use super::NodeSpec;
use crate::error::{Error, Result};

/// The API port on the load balancer (the same as each API server's).
pub const PORT: u16 = 6443;
/// The load balancer's directory in the state directory: `haproxy.cfg`, `haproxy.log`.
pub const DIR: &str = "lb";
/// The name the load balancer's process is recorded under.
pub const NAME: &str = "load-balancer";

/// HAProxy's configuration: a TCP frontend on `listen`:6443 and one backend server per
/// control plane, checked every 2 s with `GET /readyz` over TLS (not verified: the check asks
/// whether the API server is ready, the clients verify it themselves), out after 3 failures,
/// back after 2 passes.
pub fn config(listen: Ipv4Addr, control_planes: &[&NodeSpec]) -> String {
    let servers: String = control_planes
        .iter()
        .map(|n| {
            format!(
                "    server {} {}:{PORT} check check-ssl verify none inter 2s fall 3 rise 2\n",
                n.name, n.ip
            )
        })
        .collect();
    format!(
        "# breakfix sandbox: the control planes' API servers behind {listen}:{PORT}\n\
         # (kubeadm's controlPlaneEndpoint). Written and run by `breakfix sandbox up`.\n\
         global\n\
         \x20   maxconn 4000\n\
         defaults\n\
         \x20   mode tcp\n\
         \x20   timeout connect 5s\n\
         \x20   timeout client 1h\n\
         \x20   timeout server 1h\n\
         frontend apiserver\n\
         \x20   bind {listen}:{PORT}\n\
         \x20   default_backend apiserver\n\
         backend apiserver\n\
         \x20   option httpchk\n\
         \x20   http-check send meth GET uri /readyz\n\
         \x20   http-check expect status 200\n\
         \x20   balance roundrobin\n\
         {servers}"
    )
}

/// Paths of the load balancer's configuration and log under the state directory `dir`.
pub fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    let d = dir.join(DIR);
    (d.join("haproxy.cfg"), d.join("haproxy.log"))
}

/// Writes the configuration, has HAProxy check it (`haproxy -c`), then starts HAProxy in the
/// foreground of a session of its own (`-db`), its output in `lb/haproxy.log`, and records it.
/// Waits until it listens (at most 10 s).
///
/// Errors: HAProxy missing or refusing the configuration (its message quoted), the process
/// exiting at once (the log's last lines quoted), or not listening within 10 s.
pub async fn start(st: &mut State, listen: Ipv4Addr) -> Result<i32> {
    let cps: Vec<&NodeSpec> = st.nodes.iter().filter(|n| n.is_control_plane()).collect();
    let text = config(listen, &cps);
    let (cfg, log_path) = paths(&st.dir);
    fsutil::write_file(&cfg, text.as_bytes(), 0o644)?;
    let haproxy = super::cmd::which("haproxy").ok_or_else(|| {
        Error::other(
            "haproxy is missing on the host: several control planes need it as their load balancer (apt-get install -y haproxy)",
        )
    })?;
    let check = tokio::process::Command::new(&haproxy)
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output();
    let check = tokio::time::timeout(Duration::from_secs(10), check)
        .await
        .map_err(|_| Error::other("haproxy -c did not finish within 10 s"))?
        .map_err(io_err("running haproxy -c"))?;
    if !check.status.success() {
        return Err(Error::other(format!(
            "haproxy refused {}: {}{}",
            cfg.display(),
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        )));
    }
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_err(format!("opening {}", log_path.display())))?;
    let log2 = log
        .try_clone()
        .map_err(io_err(format!("opening {}", log_path.display())))?;
    let mut command = std::process::Command::new(&haproxy);
    command
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .env(MARKER_ENV, &st.id)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2));
    // SAFETY: setsid is a raw, async-signal-safe system call: HAProxy leaves breakfix's
    // session and terminal so it outlives this process (init reaps it later).
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(io_err("starting haproxy for the control planes"))?;
    let pid = child.id() as i32;
    drop(child);
    let start_time = procs::stat(pid).map(|(s, _)| s).unwrap_or(0);
    st.record(Resource::Process {
        node: NAME.into(),
        what: ProcKind::LoadBalancer,
        pid,
        start_time,
    })?;
    let addr = std::net::SocketAddr::from((listen, PORT));
    for _ in 0..50 {
        if !procs::is_same_alive(pid, start_time) {
            let out = fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = out.lines().rev().take(10).collect();
            return Err(Error::other(format!(
                "haproxy exited right after its start; last lines of {}:\n    {}",
                log_path.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n    ")
            )));
        }
        let connect = tokio::net::TcpStream::connect(addr);
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(200), connect).await {
            return Ok(pid);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(Error::other(format!(
        "haproxy (pid {pid}) does not listen on {addr} after 10 s (log: {})",
        log_path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_checks_every_control_plane_on_readyz() {
        let nodes = super::super::plan_cluster_of(0, 4, 3).expect("plan");
        let cps: Vec<&NodeSpec> = nodes.iter().filter(|n| n.is_control_plane()).collect();
        let c = config(Ipv4Addr::new(198, 18, 0, 1), &cps);
        assert!(c.contains("    bind 198.18.0.1:6443\n"), "{c}");
        for (name, ip) in [
            ("controlplane", 11),
            ("controlplane02", 12),
            ("controlplane03", 13),
        ] {
            assert!(
                c.contains(&format!(
                    "    server {name} 198.18.0.{ip}:6443 check check-ssl verify none"
                )),
                "{c}"
            );
        }
        assert!(!c.contains("node01"));
        assert!(c.contains("http-check send meth GET uri /readyz"));
    }
}
