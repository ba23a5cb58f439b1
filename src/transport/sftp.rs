//! SFTP: one persistent SFTP session per SSH connection, so that `stat` and file reads on the
//! node (probes, /proc/net/tcp, TLS files) start no process each.
//!
//! The session is opened on first use over its own session channel (the `sftp` subsystem,
//! i.e. one long-lived `sftp-server` process on the node) and shared by every operation of
//! the connection; requests of concurrent operations are pipelined. A node whose sshd has no
//! `sftp` subsystem (or whose login shell garbles the stream) is remembered as such and the
//! SSH transport falls back to commands. A session that fails below the protocol level
//! (channel closed, timed out) is dropped and reopened by the next operation.
//!
//! sftp-server answers one request at a time: a request stuck in the kernel (a hung mount, a
//! FIFO without a writer) holds up the requests queued behind it until their own deadlines;
//! the first timeout replaces the session, so later operations are not held up. Slow reads
//! hold up the others the same way: /proc/net/tcp, which the kernel builds by walking its
//! whole TCP hash table on every read(2) (about 2.5 ms per read on the benchmark machine,
//! and one read per 4 KiB of output), is the slowest file the probes read.
//!
//! Errors here are messages or [`SftpError`]s; the SSH transport adds host and operation.

use std::sync::Arc;

use russh::client::Msg;
use russh::{Channel, ChannelMsg};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Status, StatusCode};

use super::FileStat;

/// Bytes asked for per read request (OpenSSH serves up to 255 KiB; most files read here are
/// far smaller, so one request plus the one that sees EOF).
const READ_CHUNK: u32 = 64 * 1024;

/// The per-request timeout of russh-sftp: long, so that only the callers' deadlines apply
/// (a request dropped at its caller's deadline is forgotten by russh-sftp).
const REQUEST_TIMEOUT_SECS: u64 = 3600;

/// The connection's SFTP session, opened lazily.
#[derive(Default)]
pub(crate) struct Slot {
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
enum State {
    /// Not opened yet, or dropped after a failure.
    #[default]
    Idle,
    /// Open and shared.
    Open(Arc<RawSftpSession>),
    /// The server has no usable `sftp` subsystem; use commands on this connection.
    Unavailable,
}

/// What [`Slot::session`] found.
pub(crate) enum Session {
    /// A live session; `fresh` when this call opened it.
    Ready {
        /// The session.
        session: Arc<RawSftpSession>,
        /// True when opened by this call (a failure is then not worth a retry).
        fresh: bool,
    },
    /// No SFTP on this connection.
    Unavailable,
}

impl Slot {
    /// The open session, or a new one over the channel `open_channel` yields (the lock is
    /// held meanwhile, so concurrent first uses share one open). The caller bounds the whole
    /// call with its deadline; a half-opened channel dropped by that is closed.
    pub(crate) async fn session<F>(&self, open_channel: F) -> Result<Session, String>
    where
        F: std::future::Future<Output = Result<Channel<Msg>, String>>,
    {
        let mut state = self.state.lock().await;
        match &*state {
            State::Open(s) => {
                return Ok(Session::Ready {
                    session: Arc::clone(s),
                    fresh: false,
                })
            }
            State::Unavailable => return Ok(Session::Unavailable),
            State::Idle => {}
        }
        let channel = open_channel.await?;
        match start(channel).await? {
            Some(s) => {
                let s = Arc::new(s);
                *state = State::Open(Arc::clone(&s));
                Ok(Session::Ready {
                    session: s,
                    fresh: true,
                })
            }
            None => {
                *state = State::Unavailable;
                Ok(Session::Unavailable)
            }
        }
    }

    /// Drops `session` (if it is still the current one) so the next operation opens a new
    /// one: it failed below the protocol level or hung.
    pub(crate) async fn forget(&self, session: &Arc<RawSftpSession>) {
        let mut state = self.state.lock().await;
        if matches!(&*state, State::Open(s) if Arc::ptr_eq(s, session)) {
            *state = State::Idle;
        }
    }
}

/// Closes the channel if it is dropped before it became the session's stream.
struct CloseOnDrop(Option<Channel<Msg>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let (Some(c), Ok(rt)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(async move {
                let _ = c.close().await;
            });
        }
    }
}

/// Requests the `sftp` subsystem on `channel` and runs the SFTP handshake. `Ok(None)` when the
/// server refuses the subsystem or the handshake fails (no sftp-server, a login shell that
/// prints to stdout): SFTP is not usable on this connection.
async fn start(channel: Channel<Msg>) -> Result<Option<RawSftpSession>, String> {
    let mut guard = CloseOnDrop(Some(channel));
    let Some(ch) = guard.0.as_mut() else {
        return Err("no channel".into());
    };
    ch.request_subsystem(true, "sftp")
        .await
        .map_err(|e| format!("requesting the sftp subsystem: {e}"))?;
    loop {
        match ch.wait().await {
            Some(ChannelMsg::Success) => break,
            Some(ChannelMsg::Failure) => {
                tracing::info!("the server refused the sftp subsystem");
                return Ok(None);
            }
            Some(ChannelMsg::Close) | Some(ChannelMsg::Eof) | None => {
                tracing::info!("the sftp subsystem channel closed before it started");
                return Ok(None);
            }
            Some(_) => {}
        }
    }
    let Some(ch) = guard.0.take() else {
        return Err("no channel".into());
    };
    let config = russh_sftp::client::Config {
        request_timeout_secs: REQUEST_TIMEOUT_SECS,
        ..Default::default()
    };
    let session = RawSftpSession::new_with_config(ch.into_stream(), config);
    match session.init().await {
        Ok(_) => Ok(Some(session)),
        Err(e) => {
            tracing::info!("the SFTP handshake failed ({e}); using commands instead");
            Ok(None)
        }
    }
}

/// True for the status codes that mean "no such file" (OpenSSH's sftp-server also maps
/// ENOTDIR and ELOOP to it, as `[ -e ]` would say false).
fn is_missing(e: &SftpError) -> bool {
    matches!(e, SftpError::Status(s) if s.status_code == StatusCode::NoSuchFile)
}

/// `stat` (symlinks followed); `Ok(None)` when the file does not exist.
pub(crate) async fn stat(s: &RawSftpSession, path: &str) -> Result<Option<FileStat>, SftpError> {
    match s.stat(path).await {
        Ok(a) => Ok(Some(file_stat(&a.attrs))),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn file_stat(a: &FileAttributes) -> FileStat {
    FileStat {
        mode: a.permissions.unwrap_or(0),
        uid: a.uid.unwrap_or(0),
        gid: a.gid.unwrap_or(0),
        size: a.size.unwrap_or(0),
    }
}

/// Reads the whole file (until the server says EOF, so files whose size `stat` does not
/// know, like /proc's, read whole too); `Ok(None)` when it does not exist.
pub(crate) async fn read(
    s: &Arc<RawSftpSession>,
    path: &str,
) -> Result<Option<Vec<u8>>, SftpError> {
    let handle = match s.open(path, OpenFlags::READ, FileAttributes::empty()).await {
        Ok(h) => h.handle,
        Err(e) if is_missing(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    let result = loop {
        match s
            .read(handle.as_str(), bytes.len() as u64, READ_CHUNK)
            .await
        {
            Ok(d) if d.data.is_empty() => break Ok(()),
            Ok(d) => bytes.extend_from_slice(&d.data),
            Err(SftpError::Status(Status {
                status_code: StatusCode::Eof,
                ..
            })) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    // The close needs no answer: send it and let it finish on its own (one round trip less).
    let closer = Arc::clone(s);
    tokio::spawn(async move {
        let _ = closer.close(handle).await;
    });
    result.map(|()| Some(bytes))
}

/// A status or failure as text for error messages (`Permission denied`, `Failure`, ...).
pub(crate) fn describe(e: &SftpError) -> String {
    match e {
        SftpError::Status(s) => {
            let code = s.status_code.to_string();
            let msg = s.error_message.trim();
            if msg.is_empty() || msg.eq_ignore_ascii_case(&code) {
                code
            } else {
                format!("{code} ({msg})")
            }
        }
        other => other.to_string(),
    }
}

/// True when `e` is an answer of the server (a status), not a failure of the session.
pub(crate) fn is_status(e: &SftpError) -> bool {
    matches!(e, SftpError::Status(_))
}
