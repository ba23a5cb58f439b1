//! Sysctl: the host kernel settings a real kubelet insists on. The kubelet refuses to start
//! unless `vm.overcommit_memory`, `vm.panic_on_oom`, `kernel.panic`, `kernel.panic_on_oops`
//! and the root key quotas have its values (kubelet `setupKernelTunables`, Kubernetes
//! `pkg/kubelet/cm/container_manager_linux.go`). They are not namespaced, and a node's
//! `/proc/sys` is read-only, so the sandbox sets them on the host for as long as it is up:
//! each old value is recorded in the state BEFORE it is changed, and `down` puts it back.

use std::path::PathBuf;

use super::fsutil::io_err;
use crate::error::Result;

/// The settings and the values the kubelet requires (`sysctl` names).
pub const KUBELET_SETTINGS: &[(&str, &str)] = &[
    ("vm.overcommit_memory", "1"),
    ("vm.panic_on_oom", "0"),
    ("kernel.panic", "10"),
    ("kernel.panic_on_oops", "1"),
    ("kernel.keys.root_maxkeys", "1000000"),
    ("kernel.keys.root_maxbytes", "25000000"),
];

/// Settings the nodes need AT LEAST this much of (`sysctl` name, minimum). Every systemd,
/// journald, containerd and kubelet of every node takes inotify instances from root's one
/// host-wide quota (128 by default): four 2-node sandboxes used 130 of them, and a node past
/// the quota boots without sshd (`Failed to create inotify object: Too many open files` on
/// its console). A host with more already keeps its value.
pub const MINIMUMS: &[(&str, u64)] = &[("fs.inotify.max_user_instances", 1024)];

/// `/proc/sys/...` path of a sysctl name (`kernel.panic` -> `/proc/sys/kernel/panic`).
pub fn path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

/// The current value (trimmed).
///
/// Errors: the file cannot be read (named).
pub fn read(key: &str) -> Result<String> {
    let p = path(key);
    std::fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(io_err(format!("reading {}", p.display())))
}

/// Writes `value`.
///
/// Errors: the file cannot be written (named).
pub fn write(key: &str, value: &str) -> Result<()> {
    let p = path(key);
    std::fs::write(&p, format!("{value}\n"))
        .map_err(io_err(format!("setting {key}={value} ({})", p.display())))
}

/// The settings of [`KUBELET_SETTINGS`] whose value differs now, and those of [`MINIMUMS`]
/// below their minimum: (key, current, wanted).
///
/// Errors: one cannot be read.
pub fn to_change() -> Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for (k, want) in KUBELET_SETTINGS {
        let now = read(k)?;
        if now != *want {
            out.push((k.to_string(), now, want.to_string()));
        }
    }
    for (k, min) in MINIMUMS {
        let now = read(k)?;
        if below(&now, *min) {
            out.push((k.to_string(), now, min.to_string()));
        }
    }
    Ok(out)
}

/// True when `now` (a sysctl's text) is a number under `min`, or not a number at all.
fn below(now: &str, min: u64) -> bool {
    now.trim().parse::<u64>().map_or(true, |n| n < min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_proc_sys() {
        assert_eq!(
            path("kernel.panic"),
            PathBuf::from("/proc/sys/kernel/panic")
        );
        assert_eq!(
            path("kernel.keys.root_maxkeys"),
            PathBuf::from("/proc/sys/kernel/keys/root_maxkeys")
        );
        // Every setting exists on this kernel.
        for (k, _) in KUBELET_SETTINGS {
            read(k).expect("readable");
        }
        for (k, _) in MINIMUMS {
            read(k).expect("readable");
        }
    }

    #[test]
    fn a_minimum_raises_only_what_is_below_it() {
        assert!(below("128", 1024));
        assert!(!below("1024", 1024));
        assert!(!below("8192\n", 1024), "a larger host value is kept");
        assert!(below("junk", 1024));
    }
}
