//! Preflight: checks made before the sandbox touches anything, each failing with a message
//! that says what to do: running as root, host tools installed (with the apt-get command),
//! overlayfs available, room on disk. (The network check lives in [`super::network`].)

use std::path::Path;

use super::{cmd, fsutil, image, loopdev};
use crate::error::{Error, Result};

/// Host tools the sandbox runs, with the Debian package that provides each.
pub const TOOLS: &[(&str, &str)] = &[
    ("systemd-nspawn", "systemd-container"),
    ("debootstrap", "debootstrap"),
    ("ip", "iproute2"),
    ("losetup", "mount"),
    ("mount", "mount"),
    ("umount", "mount"),
    ("mkfs.ext4", "e2fsprogs"),
];

/// Free space needed per node for its overlay upper layer, logs and etcd data (bytes).
pub const SPACE_PER_NODE: u64 = 256 * 1024 * 1024;

/// Fails unless the effective user is root (nspawn, mounts, loop devices and the bridge all
/// need it).
///
/// Errors: not root (the message suggests sudo).
pub fn require_root() -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(Error::other(
            "the sandbox needs root (it boots containers, mounts filesystems and creates a bridge): run `sudo breakfix sandbox ...`",
        ))
    }
}

/// Host tools missing from this machine, as (tool, Debian package).
pub fn missing_tools() -> Vec<(&'static str, &'static str)> {
    TOOLS
        .iter()
        .copied()
        .filter(|(t, _)| cmd::which(t).is_none())
        .collect()
}

/// Fails when a host tool is missing, printing the apt-get command that installs them.
///
/// Errors: one or more tools missing.
pub fn require_tools() -> Result<()> {
    let missing = missing_tools();
    if missing.is_empty() {
        return Ok(());
    }
    let tools: Vec<&str> = missing.iter().map(|(t, _)| *t).collect();
    let mut pkgs: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    pkgs.sort_unstable();
    pkgs.dedup();
    Err(Error::other(format!(
        "missing host tools: {}. Install them with:\n    apt-get install -y {}",
        tools.join(", "),
        pkgs.join(" ")
    )))
}

/// Fails when the kernel has no overlay filesystem (each node boots an overlay of the image).
///
/// Errors: overlay not listed in /proc/filesystems.
pub fn require_overlayfs() -> Result<()> {
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if fs
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
    {
        Ok(())
    } else {
        Err(Error::other(
            "the kernel has no overlay filesystem (not in /proc/filesystems): load it with `modprobe overlay`",
        ))
    }
}

/// Space the sandbox needs: an image build if none is cached, plus per node.
pub fn space_needed(image_cached: bool, nodes: usize) -> u64 {
    let build = if image_cached { 0 } else { image::BUILD_SPACE };
    build + nodes as u64 * SPACE_PER_NODE + loopdev::DISK_BYTES / 8
}

/// Fails when the filesystem holding `state_dir` (and the image cache) lacks room.
///
/// Errors: not enough free space (the message gives both numbers in MiB and the paths).
pub fn require_space(
    state_dir: &Path,
    image_dir: &Path,
    image_cached: bool,
    nodes: usize,
) -> Result<()> {
    let need = space_needed(image_cached, nodes);
    let free_state = fsutil::free_bytes(state_dir)?;
    let free_img = fsutil::free_bytes(image_dir)?;
    let free = free_state.min(free_img);
    if free < need {
        return Err(Error::other(format!(
            "not enough free disk space for the sandbox: {} MiB free, {} MiB needed \
             (state in {}, image cache in {}; set {} / {} to use another filesystem)",
            free / (1024 * 1024),
            need / (1024 * 1024),
            state_dir.display(),
            image_dir.display(),
            super::ENV_SANDBOX_DIR,
            super::ENV_IMAGE_DIR,
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_grows_with_nodes_and_builds() {
        assert!(space_needed(false, 2) > space_needed(true, 2));
        assert!(space_needed(true, 3) > space_needed(true, 1));
    }

    #[test]
    fn apt_command_names_packages() {
        // Whatever is installed here, the message shape is fixed by require_tools.
        let tools = TOOLS.iter().map(|(_, p)| *p).collect::<Vec<_>>();
        assert!(tools.contains(&"systemd-container"));
        assert!(tools.contains(&"debootstrap"));
    }
}
