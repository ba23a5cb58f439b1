//! Cgroups: gives each node its own cgroup (`<own cgroup>/breakfix-sandbox/<node>`) in every
//! hierarchy: cgroup2, the named `name=systemd` v1 hierarchy, and each v1 controller (cpu,
//! memory, cpuset, ...). Without a host systemd, nspawn otherwise puts every node into the
//! same `payload` cgroup of its caller, and the nodes' systemds then remove each other's unit
//! cgroups (units failing with `219/CGROUP`, halts that never finish). The v1 controllers
//! matter for the kubelet: each node sees its own directory as the root of every controller
//! (nspawn gives it a cgroup namespace), so each kubelet's `/kubepods` is its own; in one
//! shared root the kubelets would remove each other's pods as orphans.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::fsutil::io_err;
use crate::error::{Error, Result};

/// Directory under the caller's cgroup that holds the nodes' cgroups.
pub const PARENT: &str = "breakfix-sandbox";

/// Mount points of every cgroup hierarchy (cgroup2 and each v1 mount), each with this
/// process's cgroup path inside it.
pub fn hierarchies() -> Vec<(PathBuf, String)> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let own_path = |pred: &dyn Fn(&str) -> bool| -> Option<String> {
        own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let ctrl = parts.next()?;
            let path = parts.next()?;
            pred(ctrl).then(|| path.to_string())
        })
    };
    let mut out = Vec::new();
    for l in mounts.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        let (mnt, fstype, opts) = (f[1], f[2], f[3]);
        let opts: Vec<&str> = opts.split(',').collect();
        let own = if fstype == "cgroup2" {
            own_path(&|c: &str| c.is_empty())
        } else if fstype == "cgroup" {
            // /proc/self/cgroup names a v1 hierarchy by its controllers ("cpu,cpuacct",
            // "name=systemd"); the mount options list the same ones.
            own_path(&|c: &str| !c.is_empty() && c.split(',').all(|x| opts.contains(&x)))
        } else {
            None
        };
        if let Some(p) = own {
            out.push((PathBuf::from(mnt), p));
        }
    }
    out
}

/// The node's cgroup directories, one per hierarchy.
pub fn node_cgroups(node: &str) -> Vec<PathBuf> {
    hierarchies()
        .into_iter()
        .map(|(mnt, own)| {
            mnt.join(own.trim_start_matches('/'))
                .join(PARENT)
                .join(node)
        })
        .collect()
}

/// Creates the directories.
///
/// Errors: a directory cannot be created (cgroupfs read-only, no permission).
pub fn create(dirs: &[PathBuf]) -> Result<()> {
    for d in dirs {
        std::fs::create_dir_all(d).map_err(io_err(format!("creating cgroup {}", d.display())))?;
        // A new cpuset cgroup has no CPUs and no memory nodes: nothing could join it. Give
        // it its parent's, level by level.
        if d.parent()
            .map(|p| p.join("cpuset.cpus").is_file())
            .unwrap_or(false)
        {
            for level in [d.parent().unwrap_or(d), d.as_path()] {
                inherit_cpuset(level)?;
            }
        }
    }
    Ok(())
}

/// Copies `cpuset.cpus` and `cpuset.mems` from the parent of `dir` when `dir`'s are empty.
fn inherit_cpuset(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for f in ["cpuset.cpus", "cpuset.mems"] {
        let own = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        if !own.trim().is_empty() {
            continue;
        }
        let value = std::fs::read_to_string(parent.join(f))
            .map_err(io_err(format!("reading {}", parent.join(f).display())))?;
        std::fs::write(dir.join(f), value.trim())
            .map_err(io_err(format!("writing {}", dir.join(f).display())))?;
    }
    Ok(())
}

/// Paths of the `cgroup.procs` files of `dirs`, ready for [`join_self`] in a forked child.
///
/// Errors: a path contains a NUL byte (not expected).
pub fn procs_files(dirs: &[PathBuf]) -> Result<Vec<CString>> {
    dirs.iter()
        .map(|d| {
            CString::new(d.join("cgroup.procs").as_os_str().as_encoded_bytes()).map_err(|_| {
                Error::other(format!("cgroup path {} contains a NUL byte", d.display()))
            })
        })
        .collect()
}

/// Moves the calling process into each cgroup whose `cgroup.procs` path is given (writes
/// "0"). Only raw system calls: safe between fork and exec. Failures are ignored (the node
/// then shares its caller's cgroup, as without this module).
pub fn join_self(procs_files: &[CString]) {
    for p in procs_files {
        // SAFETY: a valid NUL-terminated path, a 1-byte buffer that outlives the call, and a
        // descriptor closed right after; open/write/close are async-signal-safe.
        unsafe {
            let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                let _ = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
            }
        }
    }
}

/// PIDs in `dir` and every cgroup below it.
pub fn pids_in(dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(t) = std::fs::read_to_string(d.join("cgroup.procs")) {
            out.extend(t.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(e.path());
                }
            }
        }
    }
    out
}

/// Removes `dir` and the cgroups below it, deepest first, waiting up to `timeout` for them to
/// empty (a cgroup can be removed only once its last process is gone). Then removes the
/// [`PARENT`] directory if no other node is left in it. A missing `dir` is fine.
///
/// Errors: a cgroup still could not be removed (its processes are named).
pub async fn remove(dir: &Path, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut dirs = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        stack.push(e.path());
                    }
                }
                dirs.push(d);
            }
        }
        dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        let mut failed = None;
        for d in &dirs {
            if let Err(e) = std::fs::remove_dir(d) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    failed = Some((d.clone(), e));
                }
            }
        }
        match failed {
            None => break,
            Some((d, e)) if Instant::now() >= deadline => {
                return Err(Error::other(format!(
                    "cannot remove cgroup {} ({e}); processes still in it: {:?}",
                    d.display(),
                    pids_in(dir)
                )))
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    if let Some(parent) = dir.parent() {
        if parent.file_name().map(|n| n == PARENT).unwrap_or(false) {
            let _ = std::fs::remove_dir(parent);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_cgroups_live_under_the_parent() {
        for d in node_cgroups("controlplane") {
            assert!(
                d.ends_with("breakfix-sandbox/controlplane"),
                "{}",
                d.display()
            );
        }
    }
}
