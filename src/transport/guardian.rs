//! Guardian: one long-lived shell per SSH connection that kills the connection's commands on
//! the node — on request when a command times out, and all of them when the connection ends.
//!
//! Every command of a connection carries `bfx<conn token><op token>` in its argv (as `$0` of
//! its `sh -c`). The guardian reads one marker per line on stdin, kills the process group of
//! the process carrying it and, when that process leads a session (sshd starts each command
//! in a new session), the whole session; then answers `done <marker>`. When its stdin ends
//! (the transport was dropped, the engine died, the connection broke), it kills every process
//! still carrying the connection's token. This replaces a `timeout` process per command
//! (which doubled the per-command cost on the node) and still leaves nothing behind.
//!
//! Needs `pgrep`, `pkill` and `ps` (procps) on the node; without them kills are no-ops and
//! a timed-out command runs on until it ends by itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use russh::client;
use russh::{Channel, ChannelMsg, ChannelWriteHalf};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::shell_quote;

/// The guardian's script. `$1` is the connection token.
const SCRIPT: &str = r#"trap '' PIPE HUP
killtag() {
  for p in $(pgrep -f "$1"); do
    g=$(ps -o pgid= -p "$p" | tr -d ' '); s=$(ps -o sid= -p "$p" | tr -d ' ')
    if [ -n "$g" ] && [ "$g" -gt 1 ]; then kill -KILL -- "-$g" 2>/dev/null; fi
    if [ -n "$s" ] && [ "$s" = "$p" ]; then pkill -KILL -s "$s" 2>/dev/null; fi
  done
}
echo ready
while IFS= read -r m; do
  case $m in bfx*) ;; *) continue ;; esac
  case $m in *[!a-z0-9]*) continue ;; esac
  killtag "[b]${m#b}"
  echo "done $m"
done
exec >/dev/null 2>&1
killtag "[b]fx$1"
"#;

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>;

/// The client side of a running guardian.
pub(crate) struct Guardian {
    writer: tokio::sync::Mutex<ChannelWriteHalf<client::Msg>>,
    pending: Pending,
    reader: JoinHandle<()>,
}

impl Drop for Guardian {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Guardian {
    /// Starts the guardian on `channel` (a fresh session channel) for connection `token`,
    /// waiting up to `timeout` for it to report ready.
    pub(crate) async fn start(
        channel: Channel<client::Msg>,
        token: &str,
        timeout: Duration,
    ) -> Result<Guardian, String> {
        let (mut rd, wr) = channel.split();
        // `bfg...` as $0: the guardian itself never matches a command marker.
        let command = format!("exec sh -c {} bfg{token} {token}", shell_quote(SCRIPT));
        wr.exec(false, command)
            .await
            .map_err(|e| format!("exec request failed: {e}"))?;
        let pending: Pending = Arc::default();
        let (ready_tx, ready_rx) = oneshot::channel();
        let routes = Arc::clone(&pending);
        let reader = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut buf: Vec<u8> = Vec::new();
            while let Some(msg) = rd.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        buf.extend_from_slice(&data);
                        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = buf.drain(..=pos).collect();
                            let line = String::from_utf8_lossy(&line);
                            let line = line.trim();
                            if line == "ready" {
                                if let Some(tx) = ready.take() {
                                    let _ = tx.send(());
                                }
                            } else if let Some(marker) = line.strip_prefix("done ") {
                                let waiter = routes
                                    .lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .remove(marker);
                                if let Some(tx) = waiter {
                                    let _ = tx.send(());
                                }
                            }
                        }
                    }
                    ChannelMsg::Eof | ChannelMsg::Close => break,
                    _ => {}
                }
            }
            // Gone: waiters see their sender dropped and fall back.
            routes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        });
        match tokio::time::timeout(timeout, ready_rx).await {
            Ok(Ok(())) => Ok(Guardian {
                writer: tokio::sync::Mutex::new(wr),
                pending,
                reader,
            }),
            Ok(Err(_)) => {
                reader.abort();
                Err("it exited before it was ready".into())
            }
            Err(_) => {
                reader.abort();
                Err("it did not report ready in time".into())
            }
        }
    }

    /// Kills the command tagged `marker` and waits (up to `timeout`) until the guardian says
    /// it is done.
    pub(crate) async fn kill(&self, marker: &str, timeout: Duration) -> Result<(), String> {
        if self.reader.is_finished() {
            return Err("the guardian has exited".into());
        }
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(marker.to_string(), tx);
        let line = format!("{marker}\n");
        let sent = {
            let writer = self.writer.lock().await;
            writer.data(line.as_bytes()).await
        };
        let result = match sent {
            Err(e) => Err(format!("cannot reach the guardian: {e}")),
            Ok(()) => match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err("the guardian has exited".into()),
                Err(_) => Err("the guardian did not answer in time".into()),
            },
        };
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(marker);
        result
    }
}
