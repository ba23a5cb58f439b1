//! Loop device: etcd's data disk. A sparse file on the host, attached to a loop device,
//! formatted ext4 and mounted, then bound into the control plane at `/var/lib/etcd`, so
//! block-I/O throttling of that device (cgroup `blkio.throttle.*` / `io.max`) slows etcd.

use std::path::{Path, PathBuf};

use super::fsutil::{self, io_err};
use super::{cmd, state::Resource, state::State};
use crate::error::{Error, Result};

/// Size of etcd's data disk (sparse: only what etcd writes takes space), bytes.
pub const DISK_BYTES: u64 = 1024 * 1024 * 1024;

/// Creates the sparse file `file` of [`DISK_BYTES`] (replacing an old one).
///
/// Errors: [`Error::Io`] naming the file.
pub fn create_sparse(file: &Path) -> Result<()> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(file)
        .map_err(io_err(format!("creating {}", file.display())))?;
    f.set_len(DISK_BYTES)
        .map_err(io_err(format!("sizing {}", file.display())))
}

/// Loop devices whose backing file is `file`, found in /sys/block/loop*/loop/backing_file.
pub fn devices_backed_by(file: &Path) -> Vec<String> {
    let want = file.display().to_string();
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(back) = std::fs::read_to_string(e.path().join("loop/backing_file")) else {
            continue;
        };
        let back = back.trim();
        let back = back.strip_suffix(" (deleted)").unwrap_or(back);
        if back == want {
            out.push(format!("/dev/{name}"));
        }
    }
    out
}

/// `MAJ:MIN` of a block device, as cgroup throttling files want it.
///
/// Errors: the device cannot be stat'ed.
pub fn major_minor(dev: &str) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dev).map_err(io_err(format!("stat {dev}")))?;
    let rdev = m.rdev();
    Ok(format!(
        "{}:{}",
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev)
    ))
}

/// Builds etcd's disk for one node: records then creates the loop device, formats it ext4
/// and mounts it at `mount_point` (mode 0700, empty: no lost+found). Returns the device.
///
/// Errors: losetup, mkfs.ext4 or mount fails (their stderr is quoted).
pub async fn setup(st: &mut State, file: &Path, mount_point: &Path) -> Result<String> {
    create_sparse(file)?;
    st.record(Resource::LoopDevice {
        file: file.to_path_buf(),
        device: None,
    })?;
    let dev = cmd::run(
        "losetup",
        &["--find".as_ref(), "--show".as_ref(), file.as_os_str()] as &[&std::ffi::OsStr],
    )
    .await?;
    if !dev.starts_with("/dev/loop") {
        return Err(Error::other(format!(
            "`losetup --find --show {}` printed `{dev}`, not a loop device",
            file.display()
        )));
    }
    st.set_loop_device(file, &dev)?;
    cmd::run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-m",
            "0",
            "-L",
            "etcd-data",
            "-E",
            "nodiscard,lazy_itable_init=0,lazy_journal_init=0",
            &dev,
        ],
    )
    .await?;
    fsutil::mkdir_mode(mount_point, 0o700)?;
    st.record(Resource::Mount {
        target: mount_point.to_path_buf(),
    })?;
    cmd::run(
        "mount",
        &[
            "-t".as_ref(),
            "ext4".as_ref(),
            dev.as_ref(),
            mount_point.as_os_str(),
        ] as &[&std::ffi::OsStr],
    )
    .await?;
    let lf = mount_point.join("lost+found");
    if lf.is_dir() {
        std::fs::remove_dir(&lf).map_err(io_err(format!("removing {}", lf.display())))?;
    }
    fsutil::mkdir_mode(mount_point, 0o700)?;
    Ok(dev)
}

/// Detaches every loop device backed by `file` (and `device`, if it still points at `file`).
/// A device still in use is marked to detach itself once free (`losetup -d` sets autoclear).
///
/// Errors: `losetup -d` fails for a device that is still attached afterwards.
pub async fn detach(file: &Path) -> Result<()> {
    let mut devs: Vec<String> = devices_backed_by(file);
    devs.dedup();
    let mut errors = Vec::new();
    for d in devs {
        if let Err(e) = cmd::run("losetup", &["-d", &d]).await {
            if devices_backed_by(file).contains(&d) {
                errors.push(e.to_string());
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::other(errors.join("; ")))
    }
}

/// Paths of one node's etcd disk: (backing file, host mount point).
pub fn paths(node_dir: &Path) -> (PathBuf, PathBuf) {
    (node_dir.join("etcd-disk.img"), node_dir.join("etcd-data"))
}
