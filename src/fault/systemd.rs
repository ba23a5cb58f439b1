//! `systemd` action: stop, start, restart, mask, unmask, enable or disable a unit.
//!
//! Undo restores what `systemctl is-active` / `is-enabled` reported before the change.

use serde::{Deserialize, Serialize};

use super::{ActionCtx, FaultKind, Touches, Undo, UndoKind};
use crate::node::NodeSession;
use crate::error::{Error, Result};
use crate::template::Renderer;
use crate::transport::shell_quote;

/// What to do with the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitOp {
    /// `systemctl stop`.
    Stop,
    /// `systemctl start`.
    Start,
    /// `systemctl restart`.
    Restart,
    /// `systemctl mask --now` (stops it and keeps it from starting).
    Mask,
    /// `systemctl unmask`.
    Unmask,
    /// `systemctl enable`.
    Enable,
    /// `systemctl disable`.
    Disable,
}

impl UnitOp {
    /// The systemctl verb (plus flags).
    pub fn verb(&self) -> &'static str {
        match self {
            UnitOp::Stop => "stop",
            UnitOp::Start => "start",
            UnitOp::Restart => "restart",
            UnitOp::Mask => "mask --now",
            UnitOp::Unmask => "unmask",
            UnitOp::Enable => "enable",
            UnitOp::Disable => "disable",
        }
    }
}

crate::action_spec! {
    /// ```yaml
    /// - kind: systemd
    ///   target: controlplane
    ///   unit: etcd
    ///   action: stop
    /// ```
    pub struct SystemdAction {
        /// Unit name.
        pub unit: String,
        /// `stop`, `start`, `restart`, `mask`, `unmask`, `enable` or `disable`.
        pub action: UnitOp,
    }
}

/// A unit's state before a fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemdUndo {
    /// Unit name.
    pub unit: String,
    /// Was it active (`systemctl is-active` printed `active`)?
    pub was_active: bool,
    /// `systemctl is-enabled` output before the change (`enabled`, `disabled`, `masked`, ...).
    pub was_enabled: String,
}

impl SystemdUndo {
    /// e.g. `active, enabled`.
    pub fn describe_state(&self) -> String {
        format!(
            "{}, {}",
            if self.was_active {
                "active"
            } else {
                "inactive"
            },
            self.was_enabled
        )
    }
}

impl UndoKind for SystemdUndo {
    /// Unmask/enable/disable as before, then start or stop as before.
    async fn revert(&self, s: &NodeSession) -> Result<()> {
        let u = shell_quote(&self.unit);
        let mut cmd = String::new();
        match self.was_enabled.as_str() {
            "masked" | "masked-runtime" => cmd.push_str(&format!("systemctl mask {u}; ")),
            "enabled" => cmd.push_str(&format!("systemctl unmask {u}; systemctl enable {u}; ")),
            "disabled" => cmd.push_str(&format!("systemctl unmask {u}; systemctl disable {u}; ")),
            _ => cmd.push_str(&format!("systemctl unmask {u}; ")),
        }
        if self.was_active {
            cmd.push_str(&format!("systemctl start {u}"));
        } else {
            cmd.push_str(&format!("systemctl stop {u}"));
        }
        s.run_ok(&cmd, std::time::Duration::from_secs(60))
            .await
            .map(|_| ())
    }

    fn describe(&self) -> String {
        format!("restore unit {} ({})", self.unit, self.describe_state())
    }
}

impl FaultKind for SystemdAction {
    fn default_label(&self) -> String {
        format!("systemctl {} {}", self.action.verb(), self.unit)
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        vec![("does", self.default_label())]
    }

    fn touches(&self) -> Touches {
        Touches {
            units: vec![self.unit.clone()],
            ..Touches::default()
        }
    }

    /// Records the unit's state (faults), then runs the systemctl verb.
    async fn apply(&self, ctx: &ActionCtx<'_>, label: &str) -> Result<()> {
        let u = shell_quote(&self.unit);
        if let Some(journal) = ctx.journal {
            let out = ctx
                .session
                .exec(
                    &format!(
                        "systemctl is-active {u}; systemctl is-enabled {u} 2>/dev/null || true"
                    ),
                    ctx.timeout,
                )
                .await?;
            let mut lines = out.stdout.lines();
            let undo = SystemdUndo {
                unit: self.unit.clone(),
                was_active: lines.next().map(str::trim) == Some("active"),
                was_enabled: lines.next().unwrap_or("unknown").trim().to_string(),
            };
            journal
                .record(ctx.session, ctx.scenario, label, Undo::Systemd(undo))
                .await?;
        }
        let out = ctx
            .session
            .exec(
                &format!("systemctl {} {u}", self.action.verb()),
                ctx.timeout,
            )
            .await?;
        if !out.success() {
            return Err(Error::Fault {
                fault: label.to_string(),
                host: ctx.session.node.name.clone(),
                message: format!(
                    "systemctl {} {} failed: {}",
                    self.action.verb(),
                    self.unit,
                    out.stderr.trim()
                ),
            });
        }
        Ok(())
    }

    /// Renders `unit`.
    fn render(&self, r: &Renderer) -> Result<Self> {
        let mut a = self.clone();
        a.unit = r.text(&self.unit)?;
        Ok(a)
    }
}
