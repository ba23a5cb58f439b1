//! Container logs as the kubelet and containerd lay them out: CRI-format lines
//! (`<RFC3339Nano> stdout F <line>`) in `/var/log/pods/<ns>_<pod>_<uid>/<container>/<restartCount>.log`,
//! and `/var/log/containers/<pod>_<ns>_<container>-<id>.log` symlinks.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::clock;

/// containerd splits longer lines into partial (`P`) records of this size.
const MAX_RECORD: usize = 16 * 1024;

/// `<base>/<ns>_<pod>_<uid>`
pub fn pod_dir(base: &Path, namespace: &str, pod: &str, uid: &str) -> PathBuf {
    base.join(format!("{namespace}_{pod}_{uid}"))
}

/// `<base>/<ns>_<pod>_<uid>/<container>/<restartCount>.log`
pub fn container_log(
    base: &Path,
    namespace: &str,
    pod: &str,
    uid: &str,
    container: &str,
    restart: u32,
) -> PathBuf {
    pod_dir(base, namespace, pod, uid)
        .join(container)
        .join(format!("{restart}.log"))
}

/// `<pod>_<ns>_<container>-<id>.log`, the name of the /var/log/containers symlink.
pub fn link_name(pod: &str, namespace: &str, container: &str, id: &str) -> String {
    format!("{pod}_{namespace}_{container}-{id}.log")
}

/// Appends CRI-format records to one log file; shared by the stdout and stderr pumps.
pub struct CriWriter {
    file: Mutex<File>,
}

impl CriWriter {
    pub fn open(path: &Path) -> std::io::Result<CriWriter> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)?;
        Ok(CriWriter {
            file: Mutex::new(file),
        })
    }

    /// Writes one line (without its newline), split into `P` records when longer than 16 KiB.
    pub fn write_line(&self, stream: &str, line: &[u8]) -> std::io::Result<()> {
        let mut record = Vec::with_capacity(line.len().min(MAX_RECORD) + 48);
        let chunks: Vec<&[u8]> = if line.is_empty() {
            vec![line]
        } else {
            line.chunks(MAX_RECORD).collect()
        };
        let mut file = self
            .file
            .lock()
            .map_err(|_| std::io::Error::other("log writer lock poisoned"))?;
        for (i, chunk) in chunks.iter().enumerate() {
            let tag = if i + 1 == chunks.len() { "F" } else { "P" };
            record.clear();
            record.extend_from_slice(clock::rfc3339_nanos(SystemTime::now()).as_bytes());
            record.extend_from_slice(format!(" {stream} {tag} ").as_bytes());
            record.extend_from_slice(chunk);
            record.push(b'\n');
            file.write_all(&record)?;
        }
        Ok(())
    }
}

/// Copies `reader` (a container's stdout or stderr) into `writer` until EOF.
pub fn pump(reader: impl Read, stream: &str, writer: &CriWriter) {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                if writer.write_line(stream, &line).is_err() {
                    return;
                }
            }
        }
    }
}

/// Deletes `<n>.log` files of one container dir with n < `keep_from` (the kubelet keeps the
/// current and the previous run's log, like its container GC with MaxPerPodContainer=1).
pub fn prune(container_dir: &Path, keep_from: u32) {
    let Ok(entries) = std::fs::read_dir(container_dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().to_string();
        let n = name
            .strip_suffix(".log")
            .and_then(|n| n.parse::<u32>().ok());
        if n.is_some_and(|n| n < keep_from) {
            // Best effort: a file that cannot be removed is tried again at the next prune.
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Creates the /var/log/containers-style symlink to a container's log.
pub fn link(link_dir: &Path, name: &str, target: &Path) {
    if std::fs::create_dir_all(link_dir).is_ok() {
        let path = link_dir.join(name);
        let _ = std::fs::remove_file(&path);
        let _ = std::os::unix::fs::symlink(target, &path);
    }
}

/// Removes a symlink made by [`link`].
pub fn unlink(link_dir: &Path, name: &str) {
    let _ = std::fs::remove_file(link_dir.join(name));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_records() {
        let dir = std::env::temp_dir().join(format!("kubelet-standin-logs-{}", std::process::id()));
        let path = dir.join("c/0.log");
        let w = CriWriter::open(&path).ok();
        let long = vec![b'x'; MAX_RECORD + 3];
        let input: Vec<u8> = [b"hello\n".as_slice(), &long, b"\nlast"].concat();
        if let Some(w) = &w {
            pump(input.as_slice(), "stderr", w);
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].ends_with("Z stderr F hello"), "{}", lines[0]);
        assert_eq!(lines[0].split(' ').next().map(str::len), Some(30));
        assert!(lines[1].contains(" stderr P xxx"));
        assert!(lines[2].ends_with(" stderr F xxx"));
        assert!(lines[3].ends_with(" stderr F last"));
    }
}
