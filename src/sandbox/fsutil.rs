//! File helpers: writing files with a given mode (atomically), reading the host's mount
//! table, and removing a directory tree only once nothing is mounted inside it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// An [`Error::Io`] with a context line.
pub fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// Creates `dir` and its parents, then sets its mode (e.g. `0o700`).
///
/// Errors: [`Error::Io`] naming the directory.
pub fn mkdir_mode(dir: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(dir).map_err(io_err(format!("creating directory {}", dir.display())))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(io_err(format!(
        "setting mode {mode:o} on {}",
        dir.display()
    )))
}

/// Writes `bytes` to `path` with permission bits `mode` (e.g. `0o600` for keys), creating the
/// parent directories (mode 0755). The file is written to a temporary sibling, synced and
/// renamed into place, so readers never see half a file.
///
/// Errors: [`Error::Io`] naming the file.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.exists() {
            fs::create_dir_all(parent)
                .map_err(io_err(format!("creating directory {}", parent.display())))?;
        }
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let ctx = || format!("writing {}", path.display());
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_err(ctx()))?;
        f.write_all(bytes).map_err(io_err(ctx()))?;
        // The umask may have cut bits off `mode`: set it explicitly.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err(ctx()))?;
        f.sync_all().map_err(io_err(ctx()))?;
    }
    // A symlink at `path` (e.g. an image's /etc/resolv.conf) is replaced, not followed.
    fs::rename(&tmp, path).map_err(io_err(ctx()))
}

/// Creates (or replaces) the symlink `link` -> `target`, creating `link`'s parent directory.
///
/// Errors: [`Error::Io`] naming the link.
pub fn symlink(target: &str, link: &Path) -> Result<()> {
    if let Some(parent) = link.parent() {
        fs::create_dir_all(parent)
            .map_err(io_err(format!("creating directory {}", parent.display())))?;
    }
    if fs::symlink_metadata(link).is_ok() {
        fs::remove_file(link).map_err(io_err(format!("replacing {}", link.display())))?;
    }
    std::os::unix::fs::symlink(target, link)
        .map_err(io_err(format!("creating symlink {}", link.display())))
}

/// Removes a file or symlink if it exists.
///
/// Errors: [`Error::Io`] for anything but "not found".
pub fn remove_file_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io {
            context: format!("removing {}", path.display()),
            source: e,
        }),
    }
}

/// Decodes the octal escapes (`\040` for a space) the kernel uses in /proc/mounts.
fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let oct = std::str::from_utf8(oct).unwrap_or("0");
                if let Ok(v) = u8::from_str_radix(oct, 8) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

/// Mount points currently in the host's mount table (/proc/self/mounts), in table order.
///
/// Errors: /proc/self/mounts unreadable.
pub fn mount_points() -> Result<Vec<PathBuf>> {
    let text =
        fs::read_to_string("/proc/self/mounts").map_err(io_err("reading /proc/self/mounts"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|p| PathBuf::from(unescape_mount_path(p)))
        .collect())
}

/// True when `path` is a mount point in the host's mount table.
pub fn is_mounted(path: &Path) -> bool {
    mount_points()
        .map(|m| m.iter().any(|p| p == path))
        .unwrap_or(false)
}

/// Mount points at or below `dir`, deepest first (the order to unmount them in).
pub fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = mount_points()?
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    Ok(v)
}

/// Removes `dir` and everything in it, refusing while anything is still mounted inside it
/// (deleting through a live mount would delete the mounted filesystem's files). Symlinks are
/// removed, never followed. A missing `dir` is fine.
///
/// Errors: a mount remains below `dir` (named in the message); a file cannot be removed.
pub fn remove_tree(dir: &Path) -> Result<()> {
    if fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    let left = mounts_under(dir)?;
    if !left.is_empty() {
        let list: Vec<String> = left.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::other(format!(
            "refusing to delete {}: still mounted inside it: {}",
            dir.display(),
            list.join(", ")
        )));
    }
    fs::remove_dir_all(dir).map_err(io_err(format!("removing {}", dir.display())))
}

/// Free space available to root on the filesystem holding `path` (or its nearest existing
/// ancestor), in bytes.
///
/// Errors: statvfs fails.
pub fn free_bytes(path: &Path) -> Result<u64> {
    let mut p = path.to_path_buf();
    while !p.exists() {
        match p.parent() {
            Some(parent) => p = parent.to_path_buf(),
            None => break,
        }
    }
    let st = nix::sys::statvfs::statvfs(&p).map_err(|e| Error::Io {
        context: format!("checking free space at {}", p.display()),
        source: std::io::Error::from(e),
    })?;
    Ok(st.blocks_free() as u64 * st.fragment_size() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_spaces_in_mount_paths() {
        assert_eq!(unescape_mount_path("/a\\040b"), "/a b");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
        assert_eq!(unescape_mount_path("/end\\"), "/end\\");
    }

    #[test]
    fn writes_with_mode_and_replaces_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("t");
        fs::write(&target, "old").expect("write");
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        write_file(&link, b"new", 0o600).expect("write_file");
        assert_eq!(fs::read_to_string(&target).expect("read"), "old");
        assert_eq!(fs::read_to_string(&link).expect("read"), "new");
        let mode = fs::metadata(&link).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
