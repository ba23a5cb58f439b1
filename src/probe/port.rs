//! `port` probe: is a TCP port in LISTEN state on the node (`ss -Htln`); fact `listening`.

use super::{Facts, ProbeCtx};
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
        /// Only count listeners on this address (e.g. `127.0.0.1`); default any address.
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

/// Local addresses (`ip:port`) from `ss -Htln` output listening on `port`.
pub fn listeners(ss_output: &str, port: u16) -> Vec<String> {
    let suffix = format!(":{port}");
    ss_output
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter(|a| a.ends_with(&suffix))
        .map(str::to_string)
        .collect()
}

impl PortProbe {
    /// Lists TCP listeners once.
    pub async fn gather(&self, ctx: &ProbeCtx<'_>) -> Result<Facts> {
        let out = ctx.session.listeners(ctx.timeout).await?;
        let found = listeners(&out, self.port);
        let found: Vec<String> = match &self.address {
            None => found,
            Some(a) => found
                .into_iter()
                .filter(|l| {
                    l.trim_end_matches(&format!(":{}", self.port))
                        .trim_matches(['[', ']'])
                        == a
                })
                .collect(),
        };
        let mut f = Facts::default();
        f.set("listening", !found.is_empty());
        if !found.is_empty() {
            f.note = Some(format!("listening on {}", found.join(", ")));
        }
        Ok(f)
    }

    /// Renders `address`.
    pub fn render(&self, r: &Renderer) -> Result<Self> {
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
    #[test]
    fn parses_ss_output() {
        let ss = "LISTEN 0 4096 127.0.0.1:2379 0.0.0.0:*\nLISTEN 0 4096 198.18.0.11:2380 0.0.0.0:*\nLISTEN 0 128 [::]:22 [::]:*\n";
        assert_eq!(super::listeners(ss, 2379), vec!["127.0.0.1:2379"]);
        assert_eq!(super::listeners(ss, 22), vec!["[::]:22"]);
        assert!(super::listeners(ss, 2381).is_empty());
    }
}
