//! `systemd` probe: a unit's state; facts `active` (`systemctl is-active`) and `enabled`
//! (`systemctl is-enabled`), read in one `systemctl` command per node and round (see
//! [`crate::node::units`]).

use super::{Facts, ProbeCtx, ProbeKind};
use crate::error::Result;
use crate::template::Renderer;

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

impl ProbeKind for SystemdProbe {
    type Expect = SystemdExpect;

    fn expect(&self) -> &SystemdExpect {
        &self.expect
    }

    fn plan_target(&self) -> (&'static str, String) {
        ("unit", self.unit.clone())
    }

    fn touches(&self) -> crate::touches::Touches {
        crate::touches::Touches {
            units: vec![self.unit.clone()],
            ..Default::default()
        }
    }

    /// Announces the unit, so one `systemctl` per node serves the round.
    fn announce(&self, session: &crate::node::NodeSession, wanted: &[&str]) {
        session.announce_unit(&self.unit, wanted.contains(&"enabled"));
    }

    /// The unit's state from the node session's batched query; `enabled` (one more
    /// `systemctl` in that command) only when the expectations check it.
    async fn gather(&self, ctx: &ProbeCtx<'_>, wanted: &[&str]) -> Result<Facts> {
        let enabled = wanted.contains(&"enabled");
        let st = ctx
            .session
            .unit_state(&self.unit, enabled, ctx.timeout)
            .await?;
        let mut f = Facts::default();
        f.set("active", st.active);
        if let Some(e) = st.enabled {
            f.set("enabled", e);
        }
        Ok(f)
    }

    /// Renders `unit`.
    fn render(&self, r: &Renderer) -> Result<Self> {
        let mut p = self.clone();
        p.expect = self.expect.render(r)?;
        p.unit = r.text(&self.unit)?;
        Ok(p)
    }
}
