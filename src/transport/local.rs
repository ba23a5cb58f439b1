//! Local transport: breakfix runs on the node itself (Killercoda's case); commands run under
//! `sh -c` in their own process group, files are read and written with std fs.
//!
//! Same contract as the SSH transport: every operation has a timeout; a command past its
//! timeout has its whole process group killed; writes are atomic (temp file in the same
//! directory, fsync, rename) and keep an existing file's mode and owner.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::raw::{self, RawOutput};
use super::{FileStat, Forward, Output};
use crate::error::{Error, Result};
use crate::inventory::Node;

/// How long a forwarded connection may take to reach its target.
const FORWARD_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs everything on this machine, as the user breakfix runs as.
#[derive(Clone)]
pub struct LocalTransport {
    host: String,
}

impl LocalTransport {
    /// A transport for `node`, which is this machine. Never fails (nothing to connect).
    pub fn new(node: &Node) -> LocalTransport {
        LocalTransport {
            host: format!("{} (local)", node.name),
        }
    }

    /// `name (local)`, for messages.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Runs `sh -c command` in a new process group, feeding `stdin` (or `/dev/null`).
    /// A non-zero exit is not an error: see [`Output::exit`] (`None` when killed by a signal).
    ///
    /// Errors: [`Error::Timeout`] past `timeout` (the whole process group is killed with
    /// SIGKILL first); [`Error::Io`] when `sh` cannot be started.
    pub async fn exec(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Output> {
        Ok(self.run(command, stdin, timeout).await?.into_output())
    }

    async fn run(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<RawOutput> {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let start = Instant::now();
        let mut child = cmd.spawn().map_err(|e| Error::Io {
            context: format!("{}: starting `sh -c {command}`", self.host),
            source: e,
        })?;
        let pid = child.id();
        let child_stdin = child.stdin.take();
        let child_stdout = child.stdout.take();
        let child_stderr = child.stderr.take();
        let data = stdin.map(<[u8]>::to_vec);
        let work = async move {
            let writer = async move {
                if let (Some(mut pipe), Some(data)) = (child_stdin, data) {
                    // The command may exit without reading everything; its status tells.
                    let _ = pipe.write_all(&data).await;
                }
            };
            let (_, (stdout, d1), (stderr, d2), status) = tokio::join!(
                writer,
                read_capped(child_stdout),
                read_capped(child_stderr),
                child.wait()
            );
            status.map(|s| (s, stdout, stderr, d1 + d2))
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok((status, stdout, stderr, dropped))) => Ok(RawOutput {
                stdout,
                stderr,
                dropped,
                exit: status.code(),
                duration: start.elapsed(),
            }),
            Ok(Err(e)) => Err(Error::Io {
                context: format!("{}: waiting for `{command}`", self.host),
                source: e,
            }),
            Err(_) => {
                // The child itself is killed by kill_on_drop; kill its group too so nothing
                // it started lives on.
                if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                }
                Err(Error::Timeout {
                    host: self.host.clone(),
                    command: command.to_string(),
                    after: timeout,
                })
            }
        }
    }

    /// Reads the whole file at `path`. `Ok(None)` when it does not exist (including a
    /// dangling symlink).
    ///
    /// Errors: [`Error::Io`] naming host and path (permission denied, a directory, ...);
    /// [`Error::Timeout`].
    pub async fn read_file(&self, path: &str, timeout: Duration) -> Result<Option<Vec<u8>>> {
        let p = PathBuf::from(path);
        let job = tokio::task::spawn_blocking(move || fs::read(p));
        let result = self.bounded(&format!("read {path}"), timeout, job).await?;
        match result {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(Error::Io {
                context: format!("{}: reading {path}", self.host),
                source: e,
            }),
        }
    }

    /// `stat` of `path` (symlinks followed). `Ok(None)` when it does not exist (including a
    /// dangling symlink or a path through a non-directory).
    ///
    /// Errors: [`Error::Io`] naming host and path; [`Error::Timeout`].
    pub async fn stat(&self, path: &str, timeout: Duration) -> Result<Option<FileStat>> {
        let p = PathBuf::from(path);
        let job = tokio::task::spawn_blocking(move || fs::metadata(p));
        match self.bounded(&format!("stat {path}"), timeout, job).await? {
            Ok(m) => Ok(Some(FileStat {
                mode: m.mode(),
                uid: m.uid(),
                gid: m.gid(),
                size: m.size(),
            })),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(Error::Io {
                context: format!("{}: stat {path}", self.host),
                source: e,
            }),
        }
    }

    /// Atomically replaces (or creates) `path`: temp file in the same directory, existing
    /// owner and mode copied (a new file gets `mode`, default 0644), fsync, rename, fsync of
    /// the directory. A symlink to an existing file is followed. Parent directories are not
    /// created. On failure or timeout the temp file is removed and `path` is untouched.
    ///
    /// Errors: [`Error::Io`] naming host and path; [`Error::Timeout`].
    pub async fn write_file(
        &self,
        path: &str,
        contents: &[u8],
        mode: Option<u32>,
        timeout: Duration,
    ) -> Result<()> {
        let p = PathBuf::from(path);
        let data = contents.to_vec();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cancel);
        let job = tokio::task::spawn_blocking(move || {
            write_atomic(&p, &data, mode.unwrap_or(0o644), &flag)
        });
        let result = self.bounded(&format!("write {path}"), timeout, job).await;
        if result.is_err() {
            // Timed out: the blocking job sees this before its rename and cleans up.
            cancel.store(true, Ordering::SeqCst);
        }
        result?.map_err(|e| Error::Io {
            context: format!("{}: writing {path}", self.host),
            source: e,
        })
    }

    /// Listens on 127.0.0.1 (ephemeral port) and connects each accepted connection straight
    /// to `host:port`, copying bytes both ways.
    ///
    /// Errors: [`Error::Io`] when the listener cannot be bound.
    pub async fn forward(&self, host: &str, port: u16) -> Result<Forward> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| Error::Io {
                context: format!(
                    "{}: binding a local listener to forward {host}:{port}",
                    self.host
                ),
                source: e,
            })?;
        let local = listener.local_addr().map_err(|e| Error::Io {
            context: format!(
                "{}: local address of the forward to {host}:{port}",
                self.host
            ),
            source: e,
        })?;
        let target = host.to_string();
        let name = self.host.clone();
        let task = tokio::spawn(async move {
            loop {
                let (mut inbound, _) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("{name}: forward {target}:{port}: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let target = target.clone();
                let name = name.clone();
                tokio::spawn(async move {
                    let connect = TcpStream::connect((target.as_str(), port));
                    let mut outbound = match tokio::time::timeout(FORWARD_CONNECT_TIMEOUT, connect)
                        .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::warn!("{name}: forward to {target}:{port} failed: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::warn!("{name}: forward to {target}:{port}: connect timed out");
                            return;
                        }
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    if let Err(e) = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await
                    {
                        tracing::debug!("{name}: forward to {target}:{port} ended: {e}");
                    }
                });
            }
        });
        Ok(Forward { local, _task: task })
    }

    /// Awaits a blocking job within `timeout`.
    async fn bounded<T>(
        &self,
        label: &str,
        timeout: Duration,
        job: tokio::task::JoinHandle<T>,
    ) -> Result<T> {
        match tokio::time::timeout(timeout, job).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Error::Transport {
                host: self.host.clone(),
                message: format!("`{label}`: the worker thread failed: {e}"),
            }),
            Err(_) => Err(Error::Timeout {
                host: self.host.clone(),
                command: label.to_string(),
                after: timeout,
            }),
        }
    }
}

/// "Does not exist": no such file, or a component of the path is not a directory (what
/// `[ -e ]` says false for, and SFTP reports as "no such file").
fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Removes the temp file unless the rename happened.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// The blocking half of [`LocalTransport::write_file`].
fn write_atomic(
    path: &Path,
    contents: &[u8],
    new_mode: u32,
    cancel: &AtomicBool,
) -> io::Result<()> {
    let is_link = fs::symlink_metadata(path)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false);
    let target = if is_link && path.exists() {
        fs::canonicalize(path)?
    } else {
        path.to_path_buf()
    };
    if target.file_name().is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path names no file",
        ));
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let existing = match fs::metadata(&target) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };

    let (tmp, mut file) = create_temp(&dir)?;
    let mut guard = TempGuard(Some(tmp.clone()));
    file.write_all(contents)?;
    match &existing {
        Some(m) => {
            let mine = file.metadata()?;
            if (mine.uid(), mine.gid()) != (m.uid(), m.gid()) {
                // Before chmod: chown clears setuid/setgid bits.
                std::os::unix::fs::fchown(&file, Some(m.uid()), Some(m.gid()))?;
            }
            file.set_permissions(Permissions::from_mode(m.mode() & 0o7777))?;
        }
        None => file.set_permissions(Permissions::from_mode(new_mode & 0o7777))?,
    }
    file.sync_all()?;
    drop(file);
    if cancel.load(Ordering::SeqCst) {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "timed out before the rename",
        ));
    }
    fs::rename(&tmp, &target)?;
    guard.0 = None;
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A new, empty, 0600 temp file next to the target.
fn create_temp(dir: &Path) -> io::Result<(PathBuf, File)> {
    let mut last = None;
    for _ in 0..16 {
        let tmp = dir.join(format!(".breakfix-{}.tmp", raw::token()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temp file name")))
}

/// Reads a pipe to its end, keeping at most `raw::STREAM_CAP` bytes; returns them and how
/// many were dropped.
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>) -> (Vec<u8>, u64) {
    use tokio::io::AsyncReadExt;
    let (mut buf, mut dropped) = (Vec::new(), 0u64);
    let Some(mut pipe) = pipe else {
        return (buf, dropped);
    };
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => dropped += super::raw::append_capped(&mut buf, &chunk[..n]),
        }
    }
    (buf, dropped)
}
