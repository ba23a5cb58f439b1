//! Transport: how the engine runs commands and moves files on a node (SSH via russh, or local).
//!
//! One [`Transport`] per target node. Every operation takes a timeout; nothing here waits
//! forever.
//!
//! # Guarantees
//! - SSH host keys are checked against the inventory's known_hosts (entries by `address`, or
//!   `[address]:port` for a port other than 22; hashed entries and `@revoked` understood); a
//!   mismatch or an unknown host is refused with a message naming the host, the offered key's
//!   SHA256 fingerprint and the known_hosts file. Nothing is ever trusted on first use.
//! - One SSH connection per node; each command opens its own channel, reads and `stat` share
//!   the connection's SFTP session. Many operations may run concurrently; command channels
//!   are capped at [`ssh::MAX_CHANNELS`] (below OpenSSH's default `MaxSessions 10`) and extra
//!   commands queue (the wait counts against their timeout).
//! - A command still running at its timeout is killed on the node (its process group and
//!   session), not merely abandoned, and reported as [`crate::Error::Timeout`]. Commands
//!   still running when an SSH connection ends (transport dropped, engine killed) are killed
//!   too. A dead connection is re-established by the next operation (host key checked again).
//! - [`Transport::write_file`] is atomic: a temp file in the same directory, fsync, then
//!   rename; an existing file's mode and owner are kept. On failure no temp file is left.
//! - [`Transport::read_file`] is binary-safe and tells "does not exist" (`Ok(None)`) from
//!   other failures (an error naming host and path); so does [`Transport::stat`].
//! - Reads and `stat` start no process on the node: the SSH transport does them through one
//!   SFTP session per connection (see `sftp.rs`), falling back to `cat`/`stat` commands when
//!   the server has no `sftp` subsystem; the local transport uses std::fs.
//!
//! # Caveats
//! - SSH commands reach the node through the remote user's login shell, which runs
//!   `sh -c '<command>'` (so the shell flavour does not matter, but heavy rc files of that
//!   user still cost time per command). The local transport runs `sh -c` directly.
//! - [`Transport::host`] is `name (address:port)` for SSH and `name (local)` for local.

mod guardian;
mod known_hosts;
pub mod local;
mod raw;
mod sftp;
pub mod ssh;

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::Result;
use crate::inventory::{Node, TransportKind};

/// What a finished command produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
    /// Exit status; `None` when the command was killed by a signal.
    pub exit: Option<i32>,
    /// Wall time from start to exit.
    pub duration: Duration,
    /// Bytes the command printed beyond the per-stream cap (64 MiB, see
    /// `raw::STREAM_CAP`), read and dropped; 0 normally.
    pub dropped: u64,
}

impl Output {
    /// True when the command exited 0.
    pub fn success(&self) -> bool {
        self.exit == Some(0)
    }
}

/// What `stat(2)` says about a file, symlinks followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// `st_mode`: file type and permission bits.
    pub mode: u32,
    /// Owner's user id.
    pub uid: u32,
    /// Owner's group id.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
}

impl FileStat {
    /// Permission bits including setuid/setgid/sticky (what `stat -c %a` prints, in octal).
    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }

    /// True for a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }

    /// True for a regular file.
    pub fn is_file(&self) -> bool {
        self.mode & 0o170000 == 0o100000
    }
}

/// A local TCP listener that forwards every connection to `remote` as seen from the node.
/// Dropping it stops the listener (connections in flight finish on their own).
pub struct Forward {
    /// Where local clients connect (always on 127.0.0.1).
    pub local: SocketAddr,
    /// Kept alive for as long as the forward lives.
    pub(crate) _task: tokio::task::JoinHandle<()>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self._task.abort();
    }
}

/// A connected node. Clones share the SSH connection.
#[derive(Clone)]
pub enum Transport {
    /// russh connection.
    Ssh(ssh::SshTransport),
    /// Commands run on this machine.
    Local(local::LocalTransport),
}

impl Transport {
    /// Connects to `node` (SSH: TCP connect, host-key check, public-key auth) within `timeout`.
    ///
    /// Errors: [`crate::Error::Transport`] naming the host for refused/unreachable hosts, host
    /// key mismatches and failed auth; [`crate::Error::Timeout`] when `timeout` expires.
    pub async fn connect(node: &Node, timeout: Duration) -> Result<Transport> {
        match node.transport {
            TransportKind::Ssh => Ok(Transport::Ssh(
                ssh::SshTransport::connect(node, timeout).await?,
            )),
            TransportKind::Local => Ok(Transport::Local(local::LocalTransport::new(node))),
        }
    }

    /// `name (address:port)` for messages.
    pub fn host(&self) -> &str {
        match self {
            Transport::Ssh(t) => t.host(),
            Transport::Local(t) => t.host(),
        }
    }

    /// The SHA256 fingerprint of the host key the SSH connection verified (`SHA256:...`);
    /// `None` for the local transport (no host key is involved).
    pub fn host_key(&self) -> Option<String> {
        match self {
            Transport::Ssh(t) => Some(t.host_key()),
            Transport::Local(_) => None,
        }
    }

    /// Runs `command` through the shell. A non-zero exit is NOT an error (look at
    /// [`Output::exit`]); a command still running at `timeout` is killed on the node and
    /// reported as [`crate::Error::Timeout`].
    pub async fn exec(&self, command: &str, timeout: Duration) -> Result<Output> {
        match self {
            Transport::Ssh(t) => t.exec(command, None, timeout).await,
            Transport::Local(t) => t.exec(command, None, timeout).await,
        }
    }

    /// Like [`Transport::exec`] with `stdin` fed to the command.
    pub async fn exec_with_stdin(
        &self,
        command: &str,
        stdin: &[u8],
        timeout: Duration,
    ) -> Result<Output> {
        match self {
            Transport::Ssh(t) => t.exec(command, Some(stdin), timeout).await,
            Transport::Local(t) => t.exec(command, Some(stdin), timeout).await,
        }
    }

    /// Reads a whole file; `Ok(None)` when it does not exist.
    pub async fn read_file(&self, path: &str, timeout: Duration) -> Result<Option<Vec<u8>>> {
        match self {
            Transport::Ssh(t) => t.read_file(path, timeout).await,
            Transport::Local(t) => t.read_file(path, timeout).await,
        }
    }

    /// `stat` of `path` (symlinks followed); `Ok(None)` when it does not exist (including a
    /// dangling symlink or a path through a non-directory).
    pub async fn stat(&self, path: &str, timeout: Duration) -> Result<Option<FileStat>> {
        match self {
            Transport::Ssh(t) => t.stat(path, timeout).await,
            Transport::Local(t) => t.stat(path, timeout).await,
        }
    }

    /// Atomically replaces (or creates) `path` with `contents`: temp file in the same
    /// directory, fsync, rename. Keeps an existing file's mode and owner; a new file gets
    /// `mode` (default 0644). Parent directories are NOT created.
    pub async fn write_file(
        &self,
        path: &str,
        contents: &[u8],
        mode: Option<u32>,
        timeout: Duration,
    ) -> Result<()> {
        match self {
            Transport::Ssh(t) => t.write_file(path, contents, mode, timeout).await,
            Transport::Local(t) => t.write_file(path, contents, mode, timeout).await,
        }
    }

    /// Opens a local listener on 127.0.0.1 (ephemeral port) forwarding to `host:port` as
    /// seen from the node (SSH direct-tcpip; the local transport connects directly).
    pub async fn forward(&self, host: &str, port: u16) -> Result<Forward> {
        match self {
            Transport::Ssh(t) => t.forward(host, port).await,
            Transport::Local(t) => t.forward(host, port).await,
        }
    }
}

/// The command line that runs a shell program (a `.sh` file's text, usually `include_str!`ed)
/// with `args` as its positional parameters: `sh -c '<program>' <name> <args...>`, each
/// quoted with [`shell_quote`]. `name` becomes `$0` (shown in the program's error messages).
/// Values never become shell code: they reach the program as `$1`, `$2`, ...
pub fn sh_program(program: &str, name: &str, args: &[&str]) -> String {
    let mut cmd = format!("sh -c {} {}", shell_quote(program), shell_quote(name));
    for a in args {
        cmd.push(' ');
        cmd.push_str(&shell_quote(a));
    }
    cmd
}

/// `s` as one literal word for a POSIX shell: as it is when non-empty and made only of ASCII
/// letters, digits and `-_./=:,@%+` (characters the shell reads literally), otherwise in
/// single quotes with each `'` written as `'\''` (the rule docs/scenario-format.md states).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}
