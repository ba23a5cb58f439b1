//! Image: the node root filesystem, built once with `debootstrap` (Debian bookworm, minbase)
//! and cached under `<image dir>/<hash of the recipe>/rootfs`. It is built in a temporary
//! directory and renamed into place, so a crashed build never leaves a half image behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::fsutil::{self, io_err};
use super::progress::Step;
use super::{cmd, mirror};
use crate::error::{Error, Result};

/// Debian suite of the node image.
pub const SUITE: &str = "bookworm";
/// debootstrap variant.
pub const VARIANT: &str = "minbase";
/// Packages installed on top of minbase: a real systemd, journald, OpenSSH server, the
/// container runtime a kubelet drives (containerd, runc, the CNI plugins), what kubeadm and
/// the kubelet call (iptables, conntrack, socat, ethtool, kmod), busybox (the seed workloads'
/// image is made of it) and the tools a learner and the fault kinds use. Kubernetes and etcd
/// themselves are built from source (`kubebuild`) and overlaid, not packaged.
pub const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "containerd",
    "runc",
    "containernetworking-plugins",
    "iptables",
    "conntrack",
    "socat",
    "ethtool",
    "kmod",
    "busybox-static",
    "iproute2",
    "procps",
    "fio",
    "curl",
    "jq",
    "sudo",
    "less",
    "nano",
    "vim-tiny",
    "strace",
    "iputils-ping",
    "ca-certificates",
];
/// Bump when [`post_process`] changes, so cached images built by older code are not reused.
pub const RECIPE_VERSION: u32 = 2;
/// Upper bound on one debootstrap run.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Free space a build needs on the image directory's filesystem (bytes).
pub const BUILD_SPACE: u64 = 1536 * 1024 * 1024;

/// The cache key: sha256 of suite, variant, package list and recipe version (16 hex digits).
pub fn recipe_hash() -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "suite={SUITE}\nvariant={VARIANT}\nrecipe={RECIPE_VERSION}\n"
    ));
    let mut pkgs: Vec<&str> = PACKAGES.to_vec();
    pkgs.sort_unstable();
    h.update(format!("packages={}\n", pkgs.join(",")));
    hex::encode(h.finalize())[..16].to_string()
}

/// Directory of the cached image for the current recipe (`<image dir>/<hash>`); its `rootfs`
/// subdirectory is the node image.
pub fn cached_dir(image_dir: &Path) -> PathBuf {
    image_dir.join(recipe_hash())
}

/// The image's root filesystem if it is already built.
pub fn cached_rootfs(image_dir: &Path) -> Option<PathBuf> {
    let root = cached_dir(image_dir).join("rootfs");
    root.join("usr/bin/containerd").is_file().then_some(root)
}

/// Returns the cached image's rootfs, building it first if needed (about a minute on a
/// fresh machine; `step` shows debootstrap's progress).
///
/// Errors: no mirror in the host's apt sources, debootstrap fails (the message points to its
/// log), or the cache directory cannot be written.
pub async fn ensure(image_dir: &Path, step: &Step) -> Result<PathBuf> {
    if let Some(root) = cached_rootfs(image_dir) {
        step.set_message(format!("cached at {}", root.display()));
        return Ok(root);
    }
    fsutil::mkdir_mode(image_dir, 0o755)?;
    remove_stale_builds(image_dir).await?;
    let mirror = mirror::mirror_for(SUITE, Path::new("/etc/apt"))?;
    let hash = recipe_hash();
    let tmp = image_dir.join(format!(".build-{hash}-{}", std::process::id()));
    let rootfs = tmp.join("rootfs");
    fsutil::mkdir_mode(&rootfs, 0o755)?;
    let log = tmp.join("build.log");
    let result = debootstrap(&mirror, &rootfs, &log, step).await;
    let result = match result {
        Ok(()) => post_process(&rootfs),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        // Keep the log next to the cache for the user; remove the half-built tree.
        let kept = image_dir.join(format!("build-{hash}.failed.log"));
        let _ = std::fs::rename(&log, &kept);
        unmount_all_under(&tmp).await;
        let _ = fsutil::remove_tree(&tmp);
        return Err(Error::other(format!(
            "building the node image failed: {e}\n(debootstrap's log: {})",
            kept.display()
        )));
    }
    let mut list: Vec<&str> = PACKAGES.to_vec();
    list.sort_unstable();
    fsutil::write_file(
        &tmp.join("recipe.txt"),
        format!(
            "suite: {SUITE}\nvariant: {VARIANT}\nrecipe: {RECIPE_VERSION}\npackages: {}\n",
            list.join(" ")
        )
        .as_bytes(),
        0o644,
    )?;
    let fin = cached_dir(image_dir);
    if let Some(root) = cached_rootfs(image_dir) {
        // Another breakfix (with another state directory) finished the same image first.
        fsutil::remove_tree(&tmp)?;
        return Ok(root);
    }
    std::fs::rename(&tmp, &fin).map_err(io_err(format!(
        "moving the built image {} to {}",
        tmp.display(),
        fin.display()
    )))?;
    Ok(fin.join("rootfs"))
}

/// Removes `.build-*` directories left by builds whose process is gone (unmounting what
/// debootstrap may have left mounted inside first).
async fn remove_stale_builds(image_dir: &Path) -> Result<()> {
    let Ok(rd) = std::fs::read_dir(image_dir) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix(".build-") else {
            continue;
        };
        let pid: i32 = rest
            .rsplit('-')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if pid > 0 && super::procs::start_time(pid).is_some() && pid != std::process::id() as i32 {
            continue; // another build is running (should not happen under the sandbox lock)
        }
        unmount_all_under(&e.path()).await;
        fsutil::remove_tree(&e.path())?;
    }
    Ok(())
}

/// Unmounts every mount below `dir`, deepest first (lazily when busy). Best effort.
pub async fn unmount_all_under(dir: &Path) {
    if let Ok(mounts) = fsutil::mounts_under(dir) {
        for m in mounts {
            if cmd::run("umount", &[m.as_os_str()]).await.is_err() {
                let _ = cmd::run("umount", &["-l".as_ref(), m.as_os_str()]).await;
            }
        }
    }
}

async fn debootstrap(mirror: &str, rootfs: &Path, log: &Path, step: &Step) -> Result<()> {
    let include = format!("--include={}", PACKAGES.join(","));
    let args: Vec<String> = vec![
        format!("--variant={VARIANT}"),
        include,
        SUITE.into(),
        rootfs.display().to_string(),
        mirror.into(),
    ];
    let line = cmd::display("debootstrap", &args);
    let mut logf = tokio::fs::File::create(log)
        .await
        .map_err(io_err(format!("creating {}", log.display())))?;
    let _ = logf.write_all(format!("$ {line}\n").as_bytes()).await;
    let prog = cmd::which("debootstrap").unwrap_or_else(|| "debootstrap".into());
    let mut child = tokio::process::Command::new(prog)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(io_err(format!("starting `{line}`")))?;
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(Error::other("debootstrap's output pipes were not set up"));
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let tx2 = tx.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(out).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            let _ = tx.send(l);
        }
    });
    tokio::spawn(async move {
        let mut lines = BufReader::new(err).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            let _ = tx2.send(l);
        }
    });
    let mut tail: Vec<String> = Vec::new();
    let work = async {
        while let Some(l) = rx.recv().await {
            let _ = logf.write_all(l.as_bytes()).await;
            let _ = logf.write_all(b"\n").await;
            if let Some(msg) = l.strip_prefix("I: ") {
                step.set_message(msg.to_string());
            }
            tail.push(l);
            if tail.len() > 5 {
                tail.remove(0);
            }
        }
        child.wait().await
    };
    let status = match tokio::time::timeout(BUILD_TIMEOUT, work).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(Error::Io {
                context: format!("waiting for `{line}`"),
                source: e,
            })
        }
        Err(_) => {
            return Err(Error::Timeout {
                host: "localhost".into(),
                command: line,
                after: BUILD_TIMEOUT,
            })
        }
    };
    let _ = logf.flush().await;
    if !status.success() {
        return Err(Error::Command {
            host: "localhost".into(),
            command: line,
            exit: status.code().unwrap_or(-1),
            stderr: tail.join("\n"),
        });
    }
    Ok(())
}

/// Makes the freshly bootstrapped tree a neutral node image: no SSH host keys (each node gets
/// its own), no machine id (each node gets its own), etcd not enabled (the topology decides),
/// no apt timers, no DNS server (the nodes only reach 198.18.0.0/24), no downloaded .debs.
///
/// Errors: a file cannot be changed.
pub fn post_process(rootfs: &Path) -> Result<()> {
    if let Ok(rd) = std::fs::read_dir(rootfs.join("etc/ssh")) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with("ssh_host_") {
                fsutil::remove_file_if_exists(&e.path())?;
            }
        }
    }
    fsutil::write_file(&rootfs.join("etc/machine-id"), b"", 0o444)?;
    for p in [
        "etc/systemd/system/multi-user.target.wants/etcd.service",
        "etc/systemd/system/etcd2.service",
        "etc/systemd/system/timers.target.wants/apt-daily.timer",
        "etc/systemd/system/timers.target.wants/apt-daily-upgrade.timer",
    ] {
        fsutil::remove_file_if_exists(&rootfs.join(p))?;
    }
    fsutil::write_file(
        &rootfs.join("etc/resolv.conf"),
        b"# breakfix sandbox: no DNS server; node names are in /etc/hosts\n",
        0o644,
    )?;
    if let Ok(rd) = std::fs::read_dir(rootfs.join("var/cache/apt/archives")) {
        for e in rd.flatten() {
            if e.path().extension().and_then(|x| x.to_str()) == Some("deb") {
                fsutil::remove_file_if_exists(&e.path())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_short() {
        assert_eq!(recipe_hash(), recipe_hash());
        assert_eq!(recipe_hash().len(), 16);
    }

    #[test]
    fn post_process_neutralises_a_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        std::fs::create_dir_all(r.join("etc/ssh")).expect("mkdir");
        std::fs::write(r.join("etc/ssh/ssh_host_ed25519_key"), "k").expect("write");
        std::fs::write(r.join("etc/ssh/sshd_config"), "c").expect("write");
        std::fs::create_dir_all(r.join("etc/systemd/system/multi-user.target.wants"))
            .expect("mkdir");
        std::os::unix::fs::symlink(
            "/lib/systemd/system/etcd.service",
            r.join("etc/systemd/system/multi-user.target.wants/etcd.service"),
        )
        .expect("symlink");
        std::fs::write(r.join("etc/resolv.conf"), "nameserver 10.0.0.1\n").expect("write");
        post_process(r).expect("post_process");
        assert!(!r.join("etc/ssh/ssh_host_ed25519_key").exists());
        assert!(r.join("etc/ssh/sshd_config").exists());
        assert!(std::fs::symlink_metadata(
            r.join("etc/systemd/system/multi-user.target.wants/etcd.service")
        )
        .is_err());
        assert!(!std::fs::read_to_string(r.join("etc/resolv.conf"))
            .expect("read")
            .contains("nameserver"));
        assert_eq!(std::fs::read(r.join("etc/machine-id")).expect("read"), b"");
    }
}
