//! `systemd` probe: a unit's state; facts `active` (`systemctl is-active`) and `enabled`
//! (`systemctl is-enabled`).

use super::{Facts, ProbeCtx};
use crate::error::Result;
use crate::template::Renderer;
use crate::transport::shell_quote;

crate::probe_spec! {
    /// ```yaml
    /// - kind: systemd
    ///   name: etcd-active
    ///   unit: etcd
    ///   expect: { active: active, enabled: enabled }
    /// ```
    pub struct SystemdProbe {
        /// Unit name (`etcd` or `etcd.service`).
        pub unit: String,
        /// Expectations on `active` (`active`, `inactive`, `failed`, `activating`, ...) and
        /// `enabled` (`enabled`, `disabled`, `masked`, `static`, ...).
        pub expect: SystemdExpect,
    }
}

crate::expect_block! {
    /// Facts of a `systemd` probe.
    pub struct SystemdExpect { active, enabled, }
}

impl SystemdProbe {
    /// One command prints both states (is-active/is-enabled exit non-zero for "inactive";
    /// their output is what counts).
    pub async fn gather(&self, ctx: &ProbeCtx<'_>) -> Result<Facts> {
        let u = shell_quote(&self.unit);
        let cmd = format!("systemctl is-active {u}; systemctl is-enabled {u} 2>/dev/null || true");
        let out = ctx.session.transport.exec(&cmd, ctx.timeout).await?;
        let mut lines = out.stdout.lines();
        let mut f = Facts::default();
        f.set(
            "active",
            lines.next().unwrap_or("unknown").trim().to_string(),
        );
        f.set(
            "enabled",
            lines.next().unwrap_or("not-found").trim().to_string(),
        );
        Ok(f)
    }

    /// Renders `unit`.
    pub fn render(&self, r: &Renderer) -> Result<Self> {
        let mut p = self.clone();
        p.expect = self.expect.render(r)?;
        p.unit = r.text(&self.unit)?;
        Ok(p)
    }
}
