//! `command` action: run a shell command; as a fault, `undo:` is required and journaled first.

use serde::{Deserialize, Serialize};

use super::{ActionCtx, Undo};
use crate::duration::Dur;
use crate::engine::connect::NodeSession;
use crate::error::{Error, Result};
use crate::template::Renderer;

crate::action_spec! {
    /// ```yaml
    /// - kind: command
    ///   run: touch /var/lib/etcd/.breakfix-marker
    ///   undo: rm -f /var/lib/etcd/.breakfix-marker
    /// ```
    pub struct CommandAction {
        /// Shell command (template values are shell-quoted).
        pub run: String,
        /// Command that reverts `run` (required in `faults:`; must be idempotent).
        #[serde(default)]
        pub undo: Option<String>,
        /// Timeout for `run` (default 60s).
        #[serde(default)]
        pub timeout: Option<Dur>,
    }
}

/// The journaled undo command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandUndo {
    /// Shell command to run.
    pub run: String,
}

impl CommandUndo {
    /// Runs the undo command; a non-zero exit is an error.
    pub async fn revert(&self, s: &NodeSession) -> Result<()> {
        s.run_ok(&self.run, std::time::Duration::from_secs(120))
            .await
            .map(|_| ())
    }
}

impl CommandAction {
    /// Records the undo (faults), then runs the command; non-zero exit is an error.
    pub async fn apply(&self, ctx: &ActionCtx<'_>, label: &str) -> Result<()> {
        if let Some(journal) = ctx.journal {
            let Some(undo) = &self.undo else {
                return Err(Error::Fault {
                    fault: label.to_string(),
                    host: ctx.session.node.name.clone(),
                    message: "a command fault needs `undo:`".into(),
                });
            };
            journal
                .record(
                    ctx.session,
                    ctx.scenario,
                    label,
                    Undo::Command(CommandUndo { run: undo.clone() }),
                )
                .await?;
        }
        let timeout = self
            .timeout
            .map(Into::into)
            .unwrap_or(std::time::Duration::from_secs(60));
        ctx.session.run_ok(&self.run, timeout).await.map(|_| ())
    }

    /// Renders `run` and `undo` in shell context.
    pub fn render(&self, r: &Renderer) -> Result<Self> {
        let mut a = self.clone();
        a.run = r.shell(&self.run)?;
        a.undo = self.undo.as_deref().map(|u| r.shell(u)).transpose()?;
        Ok(a)
    }
}
