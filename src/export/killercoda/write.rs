//! The atomic write: an export is built under a temporary sibling directory, checked, then
//! renamed into place, so a failure leaves no half export and the old directory untouched.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{io, Content, Export, INVENTORY_ASSET};
use crate::error::{Error, Result};
use crate::inventory::Inventory;

/// Writes `export` into `out`: built under a temporary sibling directory, checked, then
/// renamed into place. `out` must not exist (or be empty) unless `force`, which replaces it.
/// On any error nothing is left behind.
pub fn write(export: &Export, out: &Path, force: bool) -> Result<()> {
    check_out(out, force)?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .ok_or_else(|| Error::other(format!("-o {}: not a directory name", out.display())))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io(format!("creating {}", parent.display())))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let tmp = parent.join(format!(
        ".{name}.breakfix-export-{}-{stamp}",
        std::process::id()
    ));
    std::fs::create_dir(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    let built = fill(export, &tmp).and_then(|_| {
        let inv = tmp.join("assets").join(INVENTORY_ASSET);
        Inventory::check_file(&inv)
    });
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let placed = place(&tmp, out, &parent, &name, stamp);
    if placed.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    placed
}

fn check_out(out: &Path, force: bool) -> Result<()> {
    match std::fs::symlink_metadata(out) {
        Err(_) => Ok(()),
        Ok(m) if !m.is_dir() => Err(Error::other(format!(
            "-o {}: exists and is not a directory",
            out.display()
        ))),
        Ok(_) => {
            let empty = std::fs::read_dir(out)
                .map_err(io(format!("reading {}", out.display())))?
                .next()
                .is_none();
            if empty || force {
                Ok(())
            } else {
                Err(Error::other(format!(
                    "-o {}: exists and is not empty (use --force to replace it)",
                    out.display()
                )))
            }
        }
    }
}

fn fill(export: &Export, dir: &Path) -> Result<()> {
    for f in &export.files {
        let path = dir.join(&f.path);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(io(format!("creating {}", p.display())))?;
        }
        match &f.content {
            Content::Bytes(b) => {
                let mut file = std::fs::File::create(&path)
                    .map_err(io(format!("writing {}", path.display())))?;
                file.write_all(b)
                    .map_err(io(format!("writing {}", path.display())))?;
                file.sync_all()
                    .map_err(io(format!("syncing {}", path.display())))?;
            }
            Content::CopyOf(src) => {
                std::fs::copy(src, &path).map_err(io(format!(
                    "copying {} to {}",
                    src.display(),
                    path.display()
                )))?;
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))
            .map_err(io(format!("chmod {}", path.display())))?;
    }
    Ok(())
}

fn place(tmp: &Path, out: &Path, parent: &Path, name: &str, stamp: u128) -> Result<()> {
    if std::fs::symlink_metadata(out).is_err() {
        return std::fs::rename(tmp, out).map_err(io(format!(
            "renaming {} to {}",
            tmp.display(),
            out.display()
        )));
    }
    // Replace an existing (empty, or --force) directory: move it aside, move the new one in,
    // then delete the old one; put it back if the second rename fails.
    let old = parent.join(format!(
        ".{name}.breakfix-old-{}-{stamp}",
        std::process::id()
    ));
    std::fs::rename(out, &old).map_err(io(format!("moving {} aside", out.display())))?;
    if let Err(e) = std::fs::rename(tmp, out) {
        let _ = std::fs::rename(&old, out);
        return Err(Error::Io {
            context: format!("renaming {} to {}", tmp.display(), out.display()),
            source: e,
        });
    }
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}
