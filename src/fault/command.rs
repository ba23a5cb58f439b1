//! `command` action: run a shell command; as a fault, `undo:` is required and journaled first.

use serde::{Deserialize, Serialize};

use super::{ActionCtx, FaultKind, Problem, Role, Undo, UndoKind};
use crate::duration::Dur;
use crate::node::NodeSession;
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
        /// Timeout for `run` (default 60s); as a fault, also for `undo` when longer than the
        /// undo's own 120 s.
        #[serde(default)]
        pub timeout: Option<Dur>,
    }
}

/// The journaled undo command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandUndo {
    /// Shell command to run.
    pub run: String,
    /// Its bound in seconds: the fault's `timeout` when longer than [`UNDO_TIMEOUT`] (absent:
    /// the default, and in entries journaled before this field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// How long an undo command may run unless its fault's `timeout` is longer (seconds: 120).
pub const UNDO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

impl CommandUndo {
    /// The undo of a fault whose `run:` is bounded by `timeout`: the same bound, at least
    /// [`UNDO_TIMEOUT`].
    pub fn new(run: String, timeout: Option<std::time::Duration>) -> Self {
        let timeout_secs = timeout
            .filter(|t| *t > UNDO_TIMEOUT)
            .map(|t| t.as_secs_f64().ceil() as u64);
        CommandUndo { run, timeout_secs }
    }

    /// The bound `revert` uses.
    pub fn timeout(&self) -> std::time::Duration {
        self.timeout_secs
            .map(std::time::Duration::from_secs)
            .unwrap_or(UNDO_TIMEOUT)
    }
}

impl UndoKind for CommandUndo {
    /// Runs the undo command; a non-zero exit is an error.
    async fn revert(&self, s: &NodeSession) -> Result<()> {
        s.run_ok(&self.run, self.timeout())
            .await
            .map(|_| ())
    }

    fn describe(&self) -> String {
        format!("run `{}`", self.run)
    }
}

impl FaultKind for CommandAction {
    /// The command's first line.
    fn default_label(&self) -> String {
        self.run.lines().next().unwrap_or("").to_string()
    }

    /// Faults and wrong fixes are journaled, so they need `undo:`.
    fn problems(&self, role: Role) -> Vec<Problem> {
        if self.undo.is_some() {
            return Vec::new();
        }
        match role {
            Role::Step => Vec::new(),
            Role::Fault => vec![Problem::new("a `command` fault has no `undo:`").with_help(
                "a `command` fault needs `undo:`, a command that reverts `run:`; it is journaled before `run:` and replayed by `breakfix reset`",
            )],
            Role::WrongFix => vec![Problem::new("a `command` step of a wrong fix has no `undo:`").with_help(
                "wrong fixes are journaled like faults so `breakfix test` can undo them: add `undo:`, a command that reverts `run:`",
            )],
        }
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        let mut d = vec![("run", self.run.clone())];
        if let Some(u) = &self.undo {
            d.push(("undo", u.clone()));
        }
        if let Some(t) = self.timeout {
            d.push(("timeout", t.to_string()));
        }
        d
    }

    /// Records the undo (faults), then runs the command; non-zero exit is an error.
    async fn apply(&self, ctx: &ActionCtx<'_>, label: &str) -> Result<()> {
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
                    Undo::Command(CommandUndo::new(
                        undo.clone(),
                        self.timeout.map(Into::into),
                    )),
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
    fn render(&self, r: &Renderer) -> Result<Self> {
        let mut a = self.clone();
        a.run = r.shell(&self.run)?;
        a.undo = self.undo.as_deref().map(|u| r.shell(u)).transpose()?;
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_undo_gets_its_faults_longer_timeout_and_old_entries_the_default() {
        let u = CommandUndo::new("x".into(), Some(Duration::from_millis(150_500)));
        assert_eq!(u.timeout(), Duration::from_secs(151));
        let short = CommandUndo::new("x".into(), Some(Duration::from_secs(30)));
        assert_eq!(short.timeout(), UNDO_TIMEOUT, "never shorter than 120 s");
        assert_eq!(
            serde_json::to_string(&short).unwrap(),
            r#"{"run":"x"}"#,
            "the default is not written"
        );
        let old: CommandUndo = serde_json::from_str(r#"{"run":"y"}"#).unwrap();
        assert_eq!(old.timeout(), UNDO_TIMEOUT);
        let new: CommandUndo = serde_json::from_str(r#"{"run":"y","timeout_secs":200}"#).unwrap();
        assert_eq!(new.timeout(), Duration::from_secs(200));
    }
}
