//! kubelet STAND-IN for breakfix sandbox nodes (test/demo infrastructure, not the real kubelet):
//! entry point. Runs as systemd unit `kubelet`; with argv[0] `standin-shim` the same binary is
//! the per-container shim.

#[macro_use]
mod klog;
mod backoff;
mod cli;
mod clock;
mod container;
mod kubelet;
mod logs;
mod manifest;
mod pod;
mod procfs;
mod runtime;
mod shim;
mod status;
mod volumes;

use std::time::{Duration, SystemTime};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// Waits up to `timeout` for one of the blocked signals in `set`.
fn wait_signal(set: &SigSet, timeout: Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` is a valid sigset_t, the info pointer may be null, `ts` lives across the call.
    let sig = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// Collects exited shims (they are re-parented to the stand-in, a child subreaper).
fn reap() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(st) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if st == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Waits (bounded) for the shims of stopped containers to exit, so none is left unreaped.
fn reap_remaining(limit: Duration) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let deadline = SystemTime::now() + limit;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if SystemTime::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn main() {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if argv0 == runtime::SHIM_ARGV0 {
        std::process::exit(shim::main());
    }
    let cfg = cli::parse();

    // SIGTERM/SIGINT are taken synchronously by the loop below; SIGHUP is ignored by it.
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    if let Err(e) = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None) {
        error!("Could not block signals", "err" => e.to_string());
    }

    info!(
        "Starting the kubelet STAND-IN (breakfix sandbox test/demo infrastructure, not the real kubelet)",
        "version" => cli::VERSION,
        "nodeName" => cfg.node_name,
        "podManifestPath" => cfg.manifest_dir.display().to_string(),
        "podLogDir" => cfg.pod_log_dir.display().to_string(),
        "statusFile" => cfg.status_file.display().to_string(),
        "syncFrequency" => clock::go_duration(cfg.sync_frequency),
    );
    for flag in &cfg.ignored {
        info!("Flag accepted but ignored by the stand-in", "flag" => flag);
    }
    if cfg.backoff_base != Duration::from_secs(10) || cfg.backoff_max != Duration::from_secs(300) {
        warn!(
            "TEST-ONLY back-off override in effect",
            "backoffBase" => clock::go_duration(cfg.backoff_base),
            "backoffMax" => clock::go_duration(cfg.backoff_max),
        );
    }

    // Shims detach from the stand-in; as a subreaper it still reaps the ones it started.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        warn!("Could not become a child subreaper", "err" => e.to_string());
    }

    let sync_frequency = cfg.sync_frequency;
    let stop_pods = cfg.stop_pods_on_exit;
    let mut kubelet = kubelet::Kubelet::new(cfg);
    kubelet.adopt(SystemTime::now());
    loop {
        let now = SystemTime::now();
        let next = now + sync_frequency;
        let wake = kubelet.sync(now).map_or(next, |w| w.min(next));
        reap();
        let timeout = wake
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::from_millis(1))
            .max(Duration::from_millis(1));
        match wait_signal(&set, timeout) {
            Some(s) if s == libc::SIGTERM || s == libc::SIGINT => {
                info!("Received signal, shutting down the kubelet stand-in", "signal" => s);
                break;
            }
            _ => {}
        }
    }

    if stop_pods {
        info!("Stopping all static pods (--stop-pods-on-exit)");
        kubelet.begin_shutdown(SystemTime::now());
        while !kubelet.sync_shutdown(SystemTime::now()) {
            reap();
            std::thread::sleep(Duration::from_millis(50));
        }
        reap_remaining(Duration::from_secs(2));
    } else {
        info!("Static pod containers keep running (as with the real kubelet); a restarted stand-in re-adopts them");
    }
    info!("kubelet stand-in stopped");
}
