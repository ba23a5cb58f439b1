//! Stand-in binaries: the kubelet stand-in (`kubelet-standin`) and the kube-apiserver
//! stand-in (`kube-apiserver-standin`), workspace members built by cargo into the same
//! `target/<profile>/` directory as `breakfix` itself. `up --topology stacked` finds them next
//! to the running executable and copies them into the node roots (they are built on this
//! Debian bookworm host, like the node image).

use std::path::{Path, PathBuf};

use super::fsutil::io_err;
use crate::error::{Error, Result};

/// File name of the kubelet stand-in as cargo builds it.
pub const KUBELET_STANDIN: &str = "kubelet-standin";
/// File name of the kube-apiserver stand-in as cargo builds it.
pub const APISERVER_STANDIN: &str = "kube-apiserver-standin";

/// Where the stand-ins were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandIns {
    /// The kubelet stand-in (installed as /usr/local/bin/kubelet on every node).
    pub kubelet: PathBuf,
    /// The kube-apiserver stand-in (installed as /usr/local/bin/kube-apiserver on the
    /// control plane).
    pub apiserver: PathBuf,
}

/// Finds both stand-ins in `dir`.
///
/// Errors: one is missing (the message says how to build them).
pub fn find_in(dir: &Path) -> Result<StandIns> {
    let kubelet = dir.join(KUBELET_STANDIN);
    let apiserver = dir.join(APISERVER_STANDIN);
    let missing: Vec<String> = [&kubelet, &apiserver]
        .iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if !missing.is_empty() {
        return Err(Error::other(format!(
            "the stacked topology needs the kubelet and kube-apiserver stand-ins next to breakfix, \
             missing: {}\n  build the whole workspace: `cargo build` (or `cargo build --release` \
             for a release breakfix), then run `breakfix sandbox up --topology stacked` again",
            missing.join(", ")
        )));
    }
    Ok(StandIns { kubelet, apiserver })
}

/// Finds both stand-ins next to the running executable (`std::env::current_exe()`).
///
/// Errors: the executable's path is unknown, or a stand-in is missing.
pub fn find() -> Result<StandIns> {
    let exe = std::env::current_exe().map_err(io_err("locating the breakfix executable"))?;
    let dir = exe
        .parent()
        .ok_or_else(|| Error::other(format!("{} has no directory", exe.display())))?;
    find_in(dir)
}

/// Copies `src` to `dest` (mode 0755, replacing an existing file; through a temporary file
/// so a node never sees half a binary).
///
/// Errors: [`Error::Io`] naming the files.
pub fn install(src: &Path, dest: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)
            .map_err(io_err(format!("creating directory {}", parent.display())))?;
    }
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dest.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let ctx = || format!("copying {} to {}", src.display(), dest.display());
    std::fs::copy(src, &tmp).map_err(io_err(ctx()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .map_err(io_err(ctx()))?;
    std::fs::rename(&tmp, dest).map_err(io_err(ctx()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_stand_ins_say_how_to_build_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = find_in(dir.path()).expect_err("missing").to_string();
        assert!(err.contains("kubelet-standin"), "{err}");
        assert!(err.contains("kube-apiserver-standin"), "{err}");
        assert!(err.contains("cargo build"), "{err}");
        std::fs::write(dir.path().join(KUBELET_STANDIN), b"x").expect("write");
        std::fs::write(dir.path().join(APISERVER_STANDIN), b"y").expect("write");
        let found = find_in(dir.path()).expect("found");
        let dest = dir.path().join("root/usr/local/bin/kubelet");
        install(&found.kubelet, &dest).expect("install");
        assert_eq!(std::fs::read(&dest).expect("read"), b"x");
    }
}
