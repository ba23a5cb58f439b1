//! `port` probe: is a TCP port in LISTEN state on the node (/proc/net/tcp and tcp6, see
//! [`crate::node::proc_net`]); fact `listening`.

use super::{Facts, ProbeCtx, ProbeKind};
use crate::error::Result;
use crate::template::Renderer;

crate::probe_spec! {
    /// ```yaml
    /// - kind: port
    ///   name: client-port
    ///   port: 2379
    ///   expect: { listening: true }
    /// ```
    pub struct PortProbe {
        /// TCP port number.
        pub port: u16,
        /// Only count listeners on this address (e.g. `127.0.0.1`, `::`; `*` is taken as
        /// `::`, as `ss` writes a dual-stack wildcard); default any address.
        #[serde(default)]
        pub address: Option<String>,
        /// Expectation on `listening` (bool).
        pub expect: PortExpect,
    }
}

crate::expect_block! {
    /// Facts of a `port` probe.
    pub struct PortExpect { listening, }
}

/// The listener addresses (`ip:port`) on `port`, only those on `address` when given.
pub fn matching(listeners: &[String], port: u16, address: Option<&str>) -> Vec<String> {
    let suffix = format!(":{port}");
    let address = address.map(|a| if a == "*" { "::" } else { a });
    listeners
        .iter()
        .filter_map(|l| Some((l, l.strip_suffix(&suffix)?)))
        .filter(|(_, ip)| address.is_none_or(|a| ip.trim_matches(['[', ']']) == a))
        .map(|(l, _)| l.clone())
        .collect()
}

impl ProbeKind for PortProbe {
    type Expect = PortExpect;

    fn expect(&self) -> &PortExpect {
        &self.expect
    }

    fn plan_target(&self) -> (&'static str, String) {
        (
            "port",
            match &self.address {
                Some(a) => format!("{a}:{}", self.port),
                None => self.port.to_string(),
            },
        )
    }

    /// Looks the port up in the node's listener listing (shared by a round's port probes).
    async fn gather(&self, ctx: &ProbeCtx<'_>, _wanted: &[&str]) -> Result<Facts> {
        let all = ctx.session.listeners(ctx.timeout).await?;
        let found = matching(&all, self.port, self.address.as_deref());
        let mut f = Facts::default();
        f.set("listening", !found.is_empty());
        if !found.is_empty() {
            f.note = Some(format!("listening on {}", found.join(", ")));
        }
        Ok(f)
    }

    /// Renders `address`.
    fn render(&self, r: &Renderer) -> Result<Self> {
        let mut p = self.clone();
        p.expect = self.expect.render(r)?;
        if let Some(a) = &self.address {
            p.address = Some(r.text(a)?);
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::matching;

    #[test]
    fn matches_port_and_address() {
        let all: Vec<String> = [
            "127.0.0.1:2379",
            "198.18.0.11:2380",
            "[::]:22",
            "0.0.0.0:22",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(matching(&all, 2379, None), vec!["127.0.0.1:2379"]);
        assert_eq!(matching(&all, 22, None), vec!["[::]:22", "0.0.0.0:22"]);
        assert_eq!(matching(&all, 22, Some("::")), vec!["[::]:22"]);
        assert_eq!(matching(&all, 22, Some("*")), vec!["[::]:22"]);
        assert_eq!(
            matching(&all, 2379, Some("127.0.0.1")),
            vec!["127.0.0.1:2379"]
        );
        assert!(matching(&all, 2379, Some("198.18.0.11")).is_empty());
        assert!(matching(&all, 2381, None).is_empty());
        assert!(
            matching(&all, 79, None).is_empty(),
            "2379 does not end a `:79` port"
        );
    }
}
