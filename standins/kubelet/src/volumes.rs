//! hostPath volume set-up, the kubelet's type checks: `DirectoryOrCreate`/`FileOrCreate` create
//! what is missing, `Directory`/`File`/`Socket`/... must already be that kind of thing.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::manifest::HostPathVolume;

/// Prepares one hostPath volume. Errors read like the kubelet's MountVolume.SetUp errors.
pub fn set_up(v: &HostPathVolume) -> Result<(), String> {
    let path = Path::new(&v.path);
    let meta = std::fs::metadata(path).ok();
    let check = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!(
                "hostPath type check failed: {} is not a {what}",
                v.path
            ))
        }
    };
    match v.kind.as_str() {
        "" => Ok(()),
        "DirectoryOrCreate" => match meta {
            Some(m) => check(m.is_dir(), "directory"),
            None => std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(path)
                .map_err(|e| format!("failed to create hostPath directory {}: {e}", v.path)),
        },
        "Directory" => check(meta.is_some_and(|m| m.is_dir()), "directory"),
        "FileOrCreate" => match meta {
            Some(m) => check(m.is_file(), "file"),
            None => {
                if let Some(parent) = path.parent() {
                    let _ = std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o755)
                        .create(parent);
                }
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o644)
                    .open(path)
                    .map(drop)
                    .map_err(|e| format!("failed to create hostPath file {}: {e}", v.path))
            }
        },
        "File" => check(meta.is_some_and(|m| m.is_file()), "file"),
        "Socket" => check(
            meta.is_some_and(|m| m.file_type().is_socket()),
            "socket file",
        ),
        "CharDevice" => check(
            meta.is_some_and(|m| m.file_type().is_char_device()),
            "character device",
        ),
        "BlockDevice" => check(
            meta.is_some_and(|m| m.file_type().is_block_device()),
            "block device",
        ),
        other => Err(format!("invalid HostPathType {other:?}")),
    }
}
