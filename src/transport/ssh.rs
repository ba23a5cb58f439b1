//! SSH transport (russh): one authenticated connection per node, a new channel per operation,
//! host keys checked against the node's known_hosts, every operation bounded by a timeout.
//!
//! # How commands run on the node
//! The SSH `exec` request goes to the user's login shell, which runs
//! `exec sh -c '<command>' bfx<connection token><operation token>`: the command always runs
//! under POSIX `sh` whatever the login shell is, and the marker in its argv lets the
//! connection's guardian (see `guardian.rs`: one long-lived shell per connection) kill its
//! process group and session the moment the client-side deadline passes, and kill every
//! command still running when the connection ends (engine killed, transport dropped, network
//! lost). SSH `signal` requests are ignored by OpenSSH for non-PTY sessions, so they are not
//! relied on. Without a guardian (it failed to start) a timed-out command is killed through
//! a separate short-lived session instead, and each command runs under
//! `timeout -s KILL <secs>` so the node still kills it if this process dies.
//!
//! # Reconnects
//! When the connection has died (node rebooted, sshd restarted, keepalives unanswered), the
//! next operation dials again, host key checked again, within its own deadline.
//!
//! # Files
//! Reads and `stat` go through the connection's one SFTP session (`sftp.rs`), opened on first
//! use: no process per file on the node. Without an `sftp` subsystem on the server they run
//! `cat` / `stat` commands instead.
//!
//! # Limits
//! At most [`MAX_CHANNELS`] session channels are open at once for commands; further
//! operations wait for a free slot (the wait counts against their timeout). Port-forward
//! channels (`direct-tcpip`) are not sessions in OpenSSH's `MaxSessions` sense and are not
//! counted.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::client;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant as TokioInstant;

use super::guardian::Guardian;
use super::known_hosts::{self, KnownHosts, Verdict};
use super::raw::{self, RawOutput};
use super::sftp;
use super::{shell_quote, FileStat, Forward, Output};
use crate::error::{Error, Result};
use crate::inventory::Node;

/// Session channels allowed open at once on one connection for commands (OpenSSH's default
/// `MaxSessions` is 10; of the other three, one is the guardian, one the SFTP session and one
/// is kept for the fallback kill session and for sshd's lag in freeing closed sessions).
pub const MAX_CHANNELS: usize = 7;

/// Keepalive interval; after [`KEEPALIVE_MAX`] unanswered keepalives the connection is
/// considered dead.
const KEEPALIVE: Duration = Duration::from_secs(15);
const KEEPALIVE_MAX: usize = 3;
/// Drop the connection when nothing at all (not even keepalive replies) arrives this long.
const INACTIVITY: Duration = Duration::from_secs(90);
/// Bound on the clean-up after a timeout (kill the remote command, remove a temp file).
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a session-channel open refused by the server is tried (about 1 s in all).
const OPEN_ATTEMPTS: u32 = 25;
/// Bound on opening a `direct-tcpip` channel for a forwarded connection.
const FORWARD_OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// An authenticated SSH connection to one node. Cheap to share by reference: every
/// operation takes `&self` and opens its own channel. Clones share the connection.
#[derive(Clone)]
pub struct SshTransport {
    inner: Arc<Inner>,
}

struct Inner {
    host: String,
    /// For reconnecting: the node and the timeout given to `connect`.
    node: Node,
    connect_timeout: Duration,
    /// The current connection; replaced when it has died (see [`live_conn`]).
    conn: std::sync::Mutex<Arc<Conn>>,
    /// One reconnect at a time.
    reconnecting: tokio::sync::Mutex<()>,
    /// Caps session channels at [`MAX_CHANNELS`].
    channels: Semaphore,
    /// Fallback kills (no guardian) one at a time, outside the main cap, so a burst of
    /// timeouts cannot exceed `MaxSessions` (8 stuck commands + 1 killer).
    killers: Semaphore,
}

/// One live SSH connection and what belongs to it.
struct Conn {
    handle: client::Handle<Client>,
    /// SHA256 fingerprint of the host key this connection verified.
    host_key: String,
    /// Prefix of the markers of this connection's commands (16 hex digits).
    token: String,
    /// Kills this connection's commands; `None` when it could not be started.
    guardian: Option<Guardian>,
    /// The connection's SFTP session (opened on first use).
    sftp: sftp::Slot,
}

/// russh callbacks: only the host-key check matters.
struct Client {
    host_port: String,
    known_hosts: KnownHosts,
    known_hosts_path: PathBuf,
    /// The SHA256 fingerprint of the host key that known_hosts trusted (set by the check).
    verified: Arc<std::sync::Mutex<Option<String>>>,
}

/// Errors out of the russh handshake: russh's own, or our host-key refusal (with its
/// message).
#[derive(Debug)]
enum ClientError {
    Ssh(russh::Error),
    HostKey(String),
}

impl From<russh::Error> for ClientError {
    fn from(e: russh::Error) -> Self {
        ClientError::Ssh(e)
    }
}

impl client::Handler for Client {
    type Error = ClientError;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, ClientError> {
        let key = match offered {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(_) => return Err(ClientError::HostKey(
                "the server presented a host certificate; breakfix only checks plain host keys \
                     against known_hosts"
                    .into(),
            )),
        };
        let alg = key.algorithm();
        let alg = alg.as_str();
        let fp = known_hosts::fingerprint(key);
        let file = self.known_hosts_path.display();
        let hp = &self.host_port;
        match self.known_hosts.check(hp, key) {
            Verdict::Trusted => {
                *self
                    .verified
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fp);
                Ok(true)
            }
            Verdict::Unknown => Err(ClientError::HostKey(format!(
                "host key {alg} {fp} is not listed for `{hp}` in {file}; refusing to connect \
                 (breakfix never trusts a host key on first use: add the node's key to that file \
                 if it is the right one)"
            ))),
            Verdict::Changed { line } => Err(ClientError::HostKey(format!(
                "HOST KEY MISMATCH: the server offered {alg} {fp}, but {file}:{line} lists a \
                 different {alg} key for `{hp}`; refusing to connect (the node was rebuilt, or \
                 someone is in the middle)"
            ))),
            Verdict::Revoked { line } => Err(ClientError::HostKey(format!(
                "host key {alg} {fp} is marked @revoked in {file}:{line}; refusing to connect"
            ))),
        }
    }
}

impl SshTransport {
    /// Opens the node's one connection: TCP connect to `address:port`, SSH handshake with
    /// the host key checked against the node's `known_hosts` (listed by `address`, or
    /// `[address]:port` when the port is not 22), then public-key authentication as
    /// `user` with `identity_file` (default: the first of `~/.ssh/id_ed25519`, `id_ecdsa`,
    /// `id_rsa` that the server accepts). All of it within `timeout`.
    ///
    /// Errors: [`Error::Timeout`] when `timeout` expires (including a server that accepts
    /// the TCP connection but never speaks); [`Error::Transport`] naming the host for a
    /// missing/unreadable known_hosts or key file, a refused or unreachable address, an
    /// unknown, changed or revoked host key (with the offered key's SHA256 fingerprint and
    /// the known_hosts file), and refused authentication.
    pub async fn connect(node: &Node, timeout: Duration) -> Result<SshTransport> {
        let host = format!("{} ({}:{})", node.name, node.address, node.port);
        let conn = establish(node, &host, timeout).await?;
        Ok(SshTransport {
            inner: Arc::new(Inner {
                host,
                node: node.clone(),
                connect_timeout: timeout,
                conn: std::sync::Mutex::new(Arc::new(conn)),
                reconnecting: tokio::sync::Mutex::new(()),
                channels: Semaphore::new(MAX_CHANNELS),
                killers: Semaphore::new(1),
            }),
        })
    }

    /// `name (address:port)`, for messages.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// The SHA256 fingerprint (`SHA256:...`, as `ssh-keygen -l` prints it) of the host key
    /// the current connection verified against known_hosts.
    pub fn host_key(&self) -> String {
        self.inner.current().host_key.clone()
    }

    /// Runs `command` under `sh -c` on the node, feeding `stdin` (or an immediate EOF).
    /// A non-zero exit is not an error: see [`Output::exit`] (`None` when the command was
    /// killed by a signal).
    ///
    /// Errors: [`Error::Timeout`] when the command (including waiting for a free channel)
    /// runs past `timeout`; the command's process group and session on the node are killed
    /// before this returns. [`Error::Transport`] when the connection fails.
    pub async fn exec(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Output> {
        Ok(self
            .run(command, command, stdin, timeout)
            .await?
            .into_output())
    }

    /// Reads the whole file at `path` on the node (bytes, binary-safe) through the
    /// connection's SFTP session (`cat` without one). `Ok(None)` when it does not exist
    /// (including a dangling symlink).
    ///
    /// Errors: [`Error::Transport`] naming the host and path for anything else (permission
    /// denied, a directory, ...); [`Error::Timeout`].
    pub async fn read_file(&self, path: &str, timeout: Duration) -> Result<Option<Vec<u8>>> {
        let label = format!("read {path}");
        let deadline = TokioInstant::now() + timeout;
        let via_sftp = self
            .sftp_op(&label, timeout, deadline, |s| async move {
                sftp::read(&s, path).await
            })
            .await?;
        if let Some(found) = via_sftp {
            return Ok(found);
        }
        let command = format!("LC_ALL=C exec cat -- {}", shell_quote(path));
        let left = deadline.saturating_duration_since(TokioInstant::now());
        let out = self.run(&label, &command, None, left).await?;
        if out.exit == Some(0) {
            Ok(Some(out.stdout))
        } else if raw::says_not_found(&out.stderr) {
            Ok(None)
        } else {
            Err(self.terr(format!(
                "cannot read {path}: {} ({})",
                out.stderr_text(),
                out.exit_text()
            )))
        }
    }

    /// `stat` of `path` on the node (symlinks followed) through the connection's SFTP session
    /// (`stat -L` without one). `Ok(None)` when it does not exist.
    ///
    /// Errors: [`Error::Transport`] naming the host and path (permission denied, ...);
    /// [`Error::Timeout`].
    pub async fn stat(&self, path: &str, timeout: Duration) -> Result<Option<FileStat>> {
        let label = format!("stat {path}");
        let deadline = TokioInstant::now() + timeout;
        let via_sftp = self
            .sftp_op(&label, timeout, deadline, |s| async move {
                sftp::stat(&s, path).await
            })
            .await?;
        if let Some(found) = via_sftp {
            return Ok(found);
        }
        let command = format!(
            "LC_ALL=C exec stat -L -c {} -- {}",
            raw::STAT_FORMAT,
            shell_quote(path)
        );
        let left = deadline.saturating_duration_since(TokioInstant::now());
        let out = self.run(&label, &command, None, left).await?;
        if out.exit != Some(0) {
            if raw::says_not_found(&out.stderr) {
                return Ok(None);
            }
            return Err(self.terr(format!(
                "cannot stat {path}: {} ({})",
                out.stderr_text(),
                out.exit_text()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        raw::parse_stat(&text).map(Some).ok_or_else(|| {
            self.terr(format!(
                "cannot stat {path}: unexpected `stat` output `{}`",
                text.trim()
            ))
        })
    }

    /// Runs `op` on the connection's SFTP session within `deadline`. `Ok(None)` when the
    /// server has no SFTP (the caller uses a command instead). A session that fails below the
    /// protocol level is dropped; when it was an older one, the operation is tried once more
    /// on a fresh session (it may have died since its last use).
    async fn sftp_op<T, F, Fut>(
        &self,
        label: &str,
        timeout: Duration,
        deadline: TokioInstant,
        op: F,
    ) -> Result<Option<T>>
    where
        F: Fn(Arc<russh_sftp::client::RawSftpSession>) -> Fut,
        Fut: std::future::Future<Output = Result<T, russh_sftp::client::error::Error>>,
    {
        let timed_out = || Error::Timeout {
            host: self.inner.host.clone(),
            command: label.to_string(),
            after: timeout,
        };
        for attempt in 0..2 {
            let (conn, session, fresh) = match self.sftp_session(deadline).await {
                Ok(Some((conn, sftp::Session::Ready { session, fresh }))) => (conn, session, fresh),
                Ok(Some((_, sftp::Session::Unavailable))) => return Ok(None),
                Ok(None) => return Err(timed_out()),
                Err(m) => return Err(self.terr(format!("`{label}`: cannot start SFTP: {m}"))),
            };
            match tokio::time::timeout_at(deadline, op(Arc::clone(&session))).await {
                Ok(Ok(v)) => return Ok(Some(v)),
                Ok(Err(e)) if sftp::is_status(&e) => {
                    return Err(self.terr(format!("`{label}` failed: {}", sftp::describe(&e))))
                }
                Ok(Err(e)) => {
                    conn.sftp.forget(&session).await;
                    if fresh || attempt == 1 {
                        return Err(self.terr(format!(
                            "`{label}`: SFTP session failed: {}",
                            sftp::describe(&e)
                        )));
                    }
                    tracing::debug!("{}: SFTP session failed ({e}); reopening", self.host());
                }
                Err(_) => {
                    // A stuck request (e.g. a hung mount) blocks the whole session: start over.
                    conn.sftp.forget(&session).await;
                    return Err(timed_out());
                }
            }
        }
        Err(timed_out())
    }

    /// The live connection and its SFTP session (opened now if needed). `Ok(None)` when
    /// `deadline` passes first.
    async fn sftp_session(
        &self,
        deadline: TokioInstant,
    ) -> Result<Option<(Arc<Conn>, sftp::Session)>, String> {
        let Some(conn) = live_conn(&self.inner, deadline).await? else {
            return Ok(None);
        };
        let open = async {
            match open_on(&self.inner, &conn, deadline).await? {
                Some(c) => Ok(c),
                None => Err("no channel in time".to_string()),
            }
        };
        match tokio::time::timeout_at(deadline, conn.sftp.session(open)).await {
            Ok(Ok(s)) => Ok(Some((Arc::clone(&conn), s))),
            Ok(Err(_)) if TokioInstant::now() >= deadline => Ok(None),
            Ok(Err(m)) => Err(m),
            Err(_) => Ok(None),
        }
    }

    /// Atomically replaces (or creates) `path` on the node with `contents`: the bytes are
    /// streamed to a temp file in the same directory (`.breakfix-<token>.XXXXXX`), which gets
    /// the existing file's owner and mode (a new file gets `mode`, default 0644), is synced,
    /// then renamed over `path`. A symlink to an existing file is followed (the target is
    /// replaced, the link kept). Parent directories are not created.
    ///
    /// On any failure, including a timeout, the temp file is removed and `path` is untouched.
    ///
    /// Errors: [`Error::Transport`] naming host and path; [`Error::Timeout`].
    pub async fn write_file(
        &self,
        path: &str,
        contents: &[u8],
        mode: Option<u32>,
        timeout: Duration,
    ) -> Result<()> {
        let label = format!("write {path}");
        let tok = raw::token();
        let script = write_script(path, mode.unwrap_or(0o644), &tok);
        match self.run(&label, &script, Some(contents), timeout).await {
            Ok(out) if out.exit == Some(0) => Ok(()),
            Ok(out) => Err(self.terr(format!(
                "cannot write {path}: {} ({})",
                out.stderr_text(),
                out.exit_text()
            ))),
            Err(e) => {
                if matches!(e, Error::Timeout { .. }) {
                    let cleanup = format!(
                        "f={}; if [ -L \"$f\" ] && [ -e \"$f\" ]; then f=$(readlink -f -- \"$f\"); fi; \
                         rm -f -- \"$(dirname -- \"$f\")\"/.breakfix-{tok}.*",
                        shell_quote(path)
                    );
                    if let Err(ce) = self.run(&label, &cleanup, None, CLEANUP_TIMEOUT).await {
                        tracing::warn!(
                            "{}: removing the temp file of `{label}` failed: {ce}",
                            self.host()
                        );
                    }
                }
                Err(e)
            }
        }
    }

    /// Listens on 127.0.0.1 (ephemeral port); every accepted connection gets its own
    /// `direct-tcpip` channel to `host:port` as the node sees it, with bytes copied both ways
    /// until either side closes. A connection whose channel cannot be opened (port closed on
    /// the node, forwarding disabled) is closed at once; the reason goes to the log.
    ///
    /// Errors: [`Error::Io`] when the local listener cannot be bound.
    pub async fn forward(&self, host: &str, port: u16) -> Result<Forward> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| Error::Io {
                context: format!(
                    "{}: binding a local listener to forward {host}:{port}",
                    self.host()
                ),
                source: e,
            })?;
        let local = listener.local_addr().map_err(|e| Error::Io {
            context: format!(
                "{}: local address of the forward to {host}:{port}",
                self.host()
            ),
            source: e,
        })?;
        let inner = Arc::clone(&self.inner);
        let target = host.to_string();
        let task = tokio::spawn(async move {
            loop {
                let (mut tcp, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(
                            "{}: forward {target}:{port}: accept failed: {e}",
                            inner.host
                        );
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let inner = Arc::clone(&inner);
                let target = target.clone();
                tokio::spawn(async move {
                    let deadline = TokioInstant::now() + FORWARD_OPEN_TIMEOUT;
                    let conn = match live_conn(&inner, deadline).await {
                        Ok(Some(h)) => h,
                        Ok(None) => {
                            tracing::warn!(
                                "{}: forward to {target}:{port}: no connection in time",
                                inner.host
                            );
                            return;
                        }
                        Err(e) => {
                            tracing::warn!("{}: forward to {target}:{port}: {e}", inner.host);
                            return;
                        }
                    };
                    let open = conn.handle.channel_open_direct_tcpip(
                        target.clone(),
                        u32::from(port),
                        peer.ip().to_string(),
                        u32::from(peer.port()),
                    );
                    let channel = match tokio::time::timeout_at(deadline, open).await {
                        Ok(Ok(c)) => c,
                        Ok(Err(e)) => {
                            tracing::warn!(
                                "{}: forward to {target}:{port} refused: {e}",
                                inner.host
                            );
                            return;
                        }
                        Err(_) => {
                            tracing::warn!(
                                "{}: forward to {target}:{port}: channel open timed out",
                                inner.host
                            );
                            return;
                        }
                    };
                    let mut stream = channel.into_stream();
                    if let Err(e) = tokio::io::copy_bidirectional(&mut tcp, &mut stream).await {
                        tracing::debug!("{}: forward to {target}:{port} ended: {e}", inner.host);
                    }
                });
            }
        });
        Ok(Forward { local, _task: task })
    }

    fn terr(&self, message: String) -> Error {
        Error::Transport {
            host: self.inner.host.clone(),
            message,
        }
    }

    /// Runs `command` (wrapped, see the module docs) and collects its bytes. `label` names
    /// the operation in errors.
    async fn run(
        &self,
        label: &str,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<RawOutput> {
        let deadline = TokioInstant::now() + timeout;
        let timed_out = || Error::Timeout {
            host: self.inner.host.clone(),
            command: label.to_string(),
            after: timeout,
        };
        let permit = match tokio::time::timeout_at(deadline, self.inner.channels.acquire()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(self.terr(format!("`{label}`: the connection is closed"))),
            Err(_) => return Err(timed_out()),
        };
        let (conn, channel) = match open_session(&self.inner, deadline).await {
            Ok(Some(c)) => c,
            Ok(None) => return Err(timed_out()),
            Err(e) => return Err(self.terr(format!("`{label}`: cannot open a channel: {e}"))),
        };
        let marker = format!("bfx{}{}", conn.token, raw::token());
        let backstop = match conn.guardian {
            Some(_) => None,
            None => Some(deadline.saturating_duration_since(TokioInstant::now())),
        };
        let wrapped = wrap_command(command, &marker, backstop);
        let (mut rd, wr) = channel.split();
        let start = Instant::now();
        match tokio::time::timeout_at(deadline, drive(&mut rd, &wr, wrapped, stdin)).await {
            Ok(Ok(mut out)) => {
                out.duration = start.elapsed();
                Ok(out)
            }
            Ok(Err(msg)) => Err(self.terr(format!("`{label}`: {msg}"))),
            Err(_) => {
                self.kill(&conn, &marker).await;
                let _ = tokio::time::timeout(CLEANUP_TIMEOUT, wr.close()).await;
                drop(permit);
                Err(timed_out())
            }
        }
    }

    /// Kills every process of the command tagged `marker`: its process group, and its
    /// session when it leads one (sshd starts each command in a new session). Through the
    /// connection's guardian, else through a short-lived session. Best effort, bounded by
    /// [`CLEANUP_TIMEOUT`].
    async fn kill(&self, conn: &Conn, marker: &str) {
        if let Some(g) = &conn.guardian {
            match g.kill(marker, CLEANUP_TIMEOUT).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(
                    "{}: guardian: {e}; killing through a new session",
                    self.host()
                ),
            }
        }
        // `[b]fx...` matches the marker but not this script's own command line.
        let pattern = match marker.split_at_checked(1) {
            Some((a, b)) => format!("[{a}]{b}"),
            None => return,
        };
        let script = format!(
            "p=$(pgrep -o -f {}) || exit 0; \
             g=$(ps -o pgid= -p \"$p\" | tr -d ' '); s=$(ps -o sid= -p \"$p\" | tr -d ' '); \
             if [ -n \"$g\" ] && [ \"$g\" -gt 1 ]; then kill -KILL -- \"-$g\" 2>/dev/null; fi; \
             if [ \"$s\" = \"$p\" ]; then pkill -KILL -s \"$s\"; fi; exit 0",
            shell_quote(&pattern)
        );
        let Ok(_slot) = self.inner.killers.acquire().await else {
            return;
        };
        let deadline = TokioInstant::now() + CLEANUP_TIMEOUT;
        let attempt = async {
            let (_, channel) = open_session(&self.inner, deadline)
                .await?
                .ok_or_else(|| "no channel in time".to_string())?;
            let (mut rd, wr) = channel.split();
            let r = drive(&mut rd, &wr, script, None).await;
            let _ = wr.close().await;
            r
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(_)) => {}
            Ok(Err(m)) => tracing::warn!("{}: killing timed-out command: {m}", self.host()),
            Err(_) => tracing::warn!("{}: killing timed-out command timed out", self.host()),
        }
    }
}

/// TCP connect, handshake with the host-key check, public-key authentication, all within
/// `timeout`. Reads the known_hosts and key files each time (a reconnect sees edits).
async fn dial(
    node: &Node,
    host: &str,
    timeout: Duration,
) -> Result<(client::Handle<Client>, String)> {
    let terr = |message: String| Error::Transport {
        host: host.to_string(),
        message,
    };
    let known_hosts_path = node.known_hosts.clone().ok_or_else(|| {
        terr(
            "no known_hosts file is configured for this node; host keys are always verified".into(),
        )
    })?;
    let known = KnownHosts::load(&known_hosts_path).map_err(|e| {
        terr(format!(
            "cannot read known_hosts file {}: {e}",
            known_hosts_path.display()
        ))
    })?;
    let keys = load_identities(node).map_err(&terr)?;

    let host_port = known_hosts::host_port(&node.address, node.port);
    let mut preferred = russh::Preferred::default();
    let algorithms = known.host_key_algorithms(&host_port);
    if !algorithms.is_empty() {
        preferred.key = Cow::Owned(algorithms);
    }
    let config = Arc::new(client::Config {
        nodelay: true,
        keepalive_interval: Some(KEEPALIVE),
        keepalive_max: KEEPALIVE_MAX,
        inactivity_timeout: Some(INACTIVITY),
        preferred,
        ..Default::default()
    });
    let verified = Arc::new(std::sync::Mutex::new(None));
    let handler = Client {
        host_port,
        known_hosts: known,
        known_hosts_path,
        verified: Arc::clone(&verified),
    };

    let attempt = async {
        let tcp = TcpStream::connect((node.address.as_str(), node.port))
            .await
            .map_err(|e| terr(format!("TCP connect failed: {e}")))?;
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("{host}: set_nodelay failed: {e}");
        }
        let mut handle =
            client::connect_stream(config, tcp, handler)
                .await
                .map_err(|e| match e {
                    ClientError::HostKey(m) => terr(m),
                    ClientError::Ssh(e) => terr(format!("SSH handshake failed: {e}")),
                })?;
        let mut tried = Vec::new();
        for (path, key) in keys {
            let hash = if key.algorithm().is_rsa() {
                handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(|e| terr(format!("SSH handshake failed: {e}")))?
                    .flatten()
            } else {
                None
            };
            let auth = handle
                .authenticate_publickey(
                    node.user.clone(),
                    PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                )
                .await
                .map_err(|e| terr(format!("authentication failed: {e}")))?;
            if auth.success() {
                return Ok(handle);
            }
            tried.push(path.display().to_string());
        }
        Err(terr(format!(
            "public-key authentication as `{}` refused (tried {})",
            node.user,
            tried.join(", ")
        )))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => {
            let handle = r?;
            // The handshake only succeeds after the check accepted a key.
            let fp = verified
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .unwrap_or_default();
            Ok((handle, fp))
        }
        Err(_) => Err(Error::Timeout {
            host: host.to_string(),
            command: "connect (TCP, SSH handshake, authentication)".into(),
            after: timeout,
        }),
    }
}

/// [`dial`], then start the connection's guardian (within what is left of `timeout`; a
/// guardian that does not start is logged, not fatal).
async fn establish(node: &Node, host: &str, timeout: Duration) -> Result<Conn> {
    let start = Instant::now();
    let (handle, host_key) = dial(node, host, timeout).await?;
    let token = raw::token();
    let left = timeout
        .saturating_sub(start.elapsed())
        .max(Duration::from_secs(1));
    let guardian = match tokio::time::timeout(left, handle.channel_open_session()).await {
        Ok(Ok(channel)) => match Guardian::start(channel, &token, left).await {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!("{host}: the guardian did not start ({e}); timed-out commands will be killed through extra sessions");
                None
            }
        },
        Ok(Err(e)) => {
            tracing::warn!("{host}: no channel for the guardian ({e})");
            None
        }
        Err(_) => {
            tracing::warn!("{host}: no channel for the guardian in time");
            None
        }
    };
    Ok(Conn {
        handle,
        host_key,
        token,
        guardian,
        sftp: sftp::Slot::default(),
    })
}

impl Inner {
    /// The current connection (possibly dead).
    fn current(&self) -> Arc<Conn> {
        let guard = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(&guard)
    }
}

/// The connection, re-established (host key checked again) when it has died, e.g. because
/// the node rebooted or sshd restarted. `Ok(None)` when `deadline` passes first.
async fn live_conn(inner: &Inner, deadline: TokioInstant) -> Result<Option<Arc<Conn>>, String> {
    let h = inner.current();
    if !h.handle.is_closed() {
        return Ok(Some(h));
    }
    let Ok(_one) = tokio::time::timeout_at(deadline, inner.reconnecting.lock()).await else {
        return Ok(None);
    };
    let h = inner.current();
    if !h.handle.is_closed() {
        return Ok(Some(h));
    }
    let left = deadline.saturating_duration_since(TokioInstant::now());
    match establish(&inner.node, &inner.host, left.min(inner.connect_timeout)).await {
        Ok(fresh) => {
            let fresh = Arc::new(fresh);
            *inner
                .conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::clone(&fresh);
            tracing::info!("{}: connection was lost; reconnected", inner.host);
            Ok(Some(fresh))
        }
        Err(Error::Timeout { .. }) if TokioInstant::now() >= deadline => Ok(None),
        Err(Error::Transport { message, .. }) => {
            Err(format!("connection lost, reconnecting failed: {message}"))
        }
        Err(e) => Err(format!("connection lost, reconnecting failed: {e}")),
    }
}

/// Opens a session channel by `deadline`. `Ok(None)` on timeout; a channel that is confirmed
/// after the deadline is closed in the background so it does not hold one of sshd's sessions.
///
/// sshd still counts a session for a moment after the channel is closed (until its next
/// garbage collection), so a burst of short commands can briefly meet `MaxSessions` even
/// under our cap: an open refused by the server is retried with a short back-off.
async fn open_session(
    inner: &Arc<Inner>,
    deadline: TokioInstant,
) -> Result<Option<(Arc<Conn>, Channel<client::Msg>)>, String> {
    let mut reconnected = false;
    loop {
        let Some(conn) = live_conn(inner, deadline).await? else {
            return Ok(None);
        };
        match open_on(inner, &conn, deadline).await {
            Ok(Some(c)) => return Ok(Some((conn, c))),
            Ok(None) => return Ok(None),
            // The connection died under us: the next round reconnects (once).
            Err(_) if conn.handle.is_closed() && !reconnected => reconnected = true,
            Err(e) => return Err(e),
        }
    }
}

/// Opens a session channel on `conn` by `deadline` (no reconnect), retrying opens the server
/// refuses (see [`open_session`]). `Ok(None)` on timeout.
async fn open_on(
    inner: &Inner,
    conn: &Arc<Conn>,
    deadline: TokioInstant,
) -> Result<Option<Channel<client::Msg>>, String> {
    let mut backoff = Duration::from_millis(2);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let opener = Arc::clone(conn);
        let mut task = tokio::spawn(async move { opener.handle.channel_open_session().await });
        match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(Ok(Ok(c))) => return Ok(Some(c)),
            Ok(Ok(Err(russh::Error::ChannelOpenFailure(reason)))) if attempts < OPEN_ATTEMPTS => {
                tracing::debug!(
                    "{}: channel open refused ({reason:?}), retrying",
                    inner.host
                );
                if TokioInstant::now() + backoff >= deadline {
                    return Ok(None);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
            Ok(Ok(Err(e))) => return Err(e.to_string()),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => {
                tokio::spawn(async move {
                    if let Ok(Ok(c)) = task.await {
                        let _ = c.close().await;
                    }
                });
                return Ok(None);
            }
        }
    }
}

/// Sends the exec request, streams `stdin` then EOF, and collects output until the server
/// closes the channel. Errors are messages (the caller adds host and command).
async fn drive(
    rd: &mut ChannelReadHalf,
    wr: &ChannelWriteHalf<client::Msg>,
    command: String,
    stdin: Option<&[u8]>,
) -> Result<RawOutput, String> {
    wr.exec(true, command)
        .await
        .map_err(|e| format!("exec request failed: {e}"))?;
    // Write and read at the same time: a command that echoes a large stdin would otherwise
    // fill the channel and stall the whole connection.
    let writer = async {
        if let Some(data) = stdin {
            wr.data(data).await?;
        }
        wr.eof().await
    };
    tokio::pin!(writer);
    let mut writer_done = false;
    let mut out = RawOutput::default();
    let mut finished = false;
    loop {
        tokio::select! {
            r = &mut writer, if !writer_done => {
                writer_done = true;
                if let Err(e) = r {
                    // The command may exit without reading all of stdin; its exit status says
                    // what happened.
                    tracing::debug!("writing stdin: {e}");
                }
            }
            msg = rd.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    out.dropped += raw::append_capped(&mut out.stdout, &data);
                }
                Some(ChannelMsg::ExtendedData { data, ext }) => {
                    if ext == 1 {
                        out.dropped += raw::append_capped(&mut out.stderr, &data);
                    }
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    out.exit = i32::try_from(exit_status).ok();
                    finished = true;
                }
                Some(ChannelMsg::ExitSignal { .. }) => {
                    out.exit = None;
                    finished = true;
                }
                Some(ChannelMsg::Failure) => return Err("the server refused the exec request".into()),
                Some(ChannelMsg::Close) | None => break,
                Some(_) => {}
            }
        }
    }
    if !finished {
        return Err("the channel closed without an exit status (connection lost?)".into());
    }
    Ok(out)
}

/// The exec request string: run `command` under `sh -c`, tagged with `marker` (as `$0`).
/// With `backstop` (used when the connection has no guardian), the node itself kills the
/// command one second after that (rounded-up) time, through `timeout(1)` when installed.
fn wrap_command(command: &str, marker: &str, backstop: Option<Duration>) -> String {
    let q = shell_quote(command);
    match backstop {
        None => format!("exec sh -c {q} {marker}"),
        Some(left) => {
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0) + 1;
            format!(
                "if command -v timeout >/dev/null 2>&1; then exec timeout -s KILL {secs} sh -c {q} {marker}; \
                 else exec sh -c {q} {marker}; fi"
            )
        }
    }
}

/// The remote side of `write_file`; reads the new contents on stdin.
fn write_script(path: &str, mode: u32, tok: &str) -> String {
    format!(
        r#"f={path}
if [ -L "$f" ] && [ -e "$f" ]; then f=$(readlink -f -- "$f") || exit 1; fi
d=$(dirname -- "$f") || exit 1
if [ ! -d "$d" ]; then echo "directory $d does not exist" >&2; exit 1; fi
t=$(mktemp "$d/.breakfix-{tok}.XXXXXX") || exit 1
trap 'rm -f -- "$t"' EXIT
trap 'exit 1' HUP INT TERM PIPE
cat > "$t" || exit 1
if [ -e "$f" ]; then
  o=$(stat -c %u:%g -- "$f") && m=$(stat -c %a -- "$f") || exit 1
  if [ "$(stat -c %u:%g -- "$t")" != "$o" ]; then chown "$o" "$t" || exit 1; fi
  chmod "$m" "$t" || exit 1
else
  chmod {mode:o} "$t" || exit 1
fi
sync -- "$t" 2>/dev/null || sync
mv -f -- "$t" "$f" || exit 1
trap - EXIT
sync -- "$d" 2>/dev/null
exit 0
"#,
        path = shell_quote(path),
        mode = mode & 0o7777,
    )
}

/// The private keys to try, with their paths: `identity_file`, or the usual defaults.
fn load_identities(node: &Node) -> Result<Vec<(PathBuf, PrivateKey)>, String> {
    let load = |p: &PathBuf| {
        russh::keys::load_secret_key(p, None)
            .map_err(|e| format!("cannot load identity file {}: {e}", p.display()))
    };
    if let Some(p) = &node.identity_file {
        return Ok(vec![(p.clone(), load(p)?)]);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let mut keys = Vec::new();
    for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
        let p = home.join(".ssh").join(name);
        if p.exists() {
            keys.push((p.clone(), load(&p)?));
        }
    }
    if keys.is_empty() {
        return Err(
            "no identity_file is configured and none of ~/.ssh/id_ed25519, id_ecdsa, id_rsa exists"
                .into(),
        );
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_command_quotes_and_tags() {
        let w = wrap_command("echo 'hi'; $(x)", "bfx1", None);
        assert_eq!(w, "exec sh -c 'echo '\\''hi'\\''; $(x)' bfx1");
        let w = wrap_command("true", "bfx1", Some(Duration::from_millis(1500)));
        assert!(w.contains("exec timeout -s KILL 3 sh -c true bfx1"), "{w}");
        let w = wrap_command("true", "bfx1", Some(Duration::from_secs(2)));
        assert!(w.contains("KILL 3 sh"), "{w}");
    }

    #[test]
    fn write_script_quotes_the_path_and_mode() {
        let s = write_script("/tmp/a b/$(x)", 0o600, "abc");
        assert!(s.starts_with("f='/tmp/a b/$(x)'\n"), "{s}");
        assert!(s.contains("chmod 600 \"$t\""), "{s}");
        assert!(s.contains(".breakfix-abc.XXXXXX"), "{s}");
    }
}
