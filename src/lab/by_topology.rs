//! ByTopology: a lab step's value (its scenario or its text) given once for every topology, or
//! once per topology.
//!
//! ```yaml
//! scenario: ../scenarios/etcd-disk-full.yaml          # the same on every topology
//! scenario:                                           # one per topology
//!   external: ../scenarios/etcd-service-stopped.yaml
//!   stacked: ../scenarios/etcd-static-pod-missing.yaml
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::inventory::Topology;

/// A string given once (`All`) or per topology (`Each`, at least one entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ByTopology {
    /// The same value on every topology.
    All(String),
    /// One value per topology; a topology without an entry has no value.
    Each(BTreeMap<Topology, String>),
}

impl Default for ByTopology {
    fn default() -> Self {
        ByTopology::All(String::new())
    }
}

impl ByTopology {
    /// The value for topology `t`, if it has one.
    pub fn get(&self, t: Topology) -> Option<&str> {
        match self {
            ByTopology::All(s) => Some(s),
            ByTopology::Each(m) => m.get(&t).map(String::as_str),
        }
    }

    /// Every value with the topology it is for (`None`: every topology), in topology order.
    pub fn variants(&self) -> Vec<(Option<Topology>, &str)> {
        match self {
            ByTopology::All(s) => vec![(None, s.as_str())],
            ByTopology::Each(m) => m.iter().map(|(t, s)| (Some(*t), s.as_str())).collect(),
        }
    }

    /// The topologies that have a value (`None`: all of them).
    pub fn topologies(&self) -> Option<Vec<Topology>> {
        match self {
            ByTopology::All(_) => None,
            ByTopology::Each(m) => Some(m.keys().copied().collect()),
        }
    }
}

impl<'de> Deserialize<'de> for ByTopology {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ByTopology;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, or a map from topology (external, stacked) to a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByTopology, E> {
                Ok(ByTopology::All(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<ByTopology, E> {
                Ok(ByTopology::All(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ByTopology, A::Error> {
                let mut m = BTreeMap::new();
                while let Some(t) = map.next_key::<Topology>()? {
                    let v: String = map.next_value()?;
                    if m.insert(t, v).is_some() {
                        return Err(de::Error::custom(format!("topology `{t}` is given twice")));
                    }
                }
                if m.is_empty() {
                    return Err(de::Error::custom(
                        "an empty map: name at least one topology (external, stacked)",
                    ));
                }
                Ok(ByTopology::Each(m))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(y: &str) -> Result<ByTopology, String> {
        serde_saphyr::from_str::<ByTopology>(y).map_err(|e| e.to_string())
    }

    #[test]
    fn a_string_is_for_every_topology_and_a_map_for_the_topologies_it_names() {
        let all = parse("a.yaml").unwrap();
        assert_eq!(all.get(Topology::Stacked), Some("a.yaml"));
        assert_eq!(all.get(Topology::External), Some("a.yaml"));
        assert_eq!(all.topologies(), None);
        let each = parse("stacked: s.yaml").unwrap();
        assert_eq!(each.get(Topology::Stacked), Some("s.yaml"));
        assert_eq!(each.get(Topology::External), None);
        assert_eq!(each.topologies(), Some(vec![Topology::Stacked]));
        let both = parse("{stacked: s.yaml, external: e.yaml}").unwrap();
        assert_eq!(
            both.variants(),
            vec![
                (Some(Topology::External), "e.yaml"),
                (Some(Topology::Stacked), "s.yaml")
            ]
        );
    }

    #[test]
    fn an_unknown_topology_an_empty_map_and_a_list_are_refused_with_what_is_expected() {
        let e = parse("kind: a.yaml").unwrap_err();
        assert!(e.contains("external") && e.contains("stacked"), "{e}");
        let e = parse("{}").unwrap_err();
        assert!(e.contains("at least one topology"), "{e}");
        let e = parse("[a.yaml]").unwrap_err();
        assert!(e.contains("map from topology"), "{e}");
    }
}
