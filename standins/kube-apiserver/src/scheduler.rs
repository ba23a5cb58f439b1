//! Scheduling for the stand-in: picks the least loaded node that is Ready, not cordoned,
//! whose taints the pod tolerates and whose labels match its nodeSelector; hands out pod IPs
//! from the node's podCIDR.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::objects::name_of;
use crate::selector::LabelSelector;
use crate::table::node_status;

fn is_mirror(p: &Value) -> bool {
    p.pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_some()
}

/// A node a pod may run on: Ready, not cordoned, taints tolerated, nodeSelector matched.
pub fn fits(node: &Value, pod_spec: &Value) -> bool {
    if node_status(node) != "Ready" {
        return false;
    }
    let tolerations = pod_spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let tolerated = |t: &Value| {
        let key = t.get("key").and_then(Value::as_str).unwrap_or_default();
        let effect = t.get("effect").and_then(Value::as_str).unwrap_or_default();
        tolerations.iter().any(|tol| {
            let tk = tol.get("key").and_then(Value::as_str).unwrap_or_default();
            let te = tol
                .get("effect")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let op = tol
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or("Equal");
            (tk.is_empty() && op == "Exists" || tk == key) && (te.is_empty() || te == effect)
        })
    };
    let taints_ok = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .is_none_or(|ts| {
            ts.iter()
                .filter(|t| {
                    matches!(
                        t.get("effect").and_then(Value::as_str),
                        Some("NoSchedule" | "NoExecute")
                    )
                })
                .all(tolerated)
        });
    let selector_ok = pod_spec
        .get("nodeSelector")
        .map(|m| LabelSelector::from_object(&json!({ "matchLabels": m })).matches(node))
        .unwrap_or(true);
    taints_ok && selector_ok
}

pub fn internal_ip(node: &Value) -> String {
    node.pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|x| x.get("type").and_then(Value::as_str) == Some("InternalIP"))
        })
        .and_then(|x| x.get("address").and_then(Value::as_str))
        .unwrap_or_default()
        .to_string()
}

/// Picks the least loaded fitting node and a free pod IP on it.
pub struct Scheduler<'a> {
    /// The nodes, as listed this round.
    pub nodes: &'a [Value],
    load: HashMap<String, usize>,
    ips: HashMap<String, Vec<String>>,
}

impl<'a> Scheduler<'a> {
    pub fn new(nodes: &'a [Value], pods: &[Value]) -> Self {
        let mut load = HashMap::new();
        let mut ips: HashMap<String, Vec<String>> = HashMap::new();
        for p in pods.iter().filter(|p| !is_mirror(p)) {
            if let Some(n) = p.pointer("/spec/nodeName").and_then(Value::as_str) {
                *load.entry(n.to_string()).or_insert(0) += 1;
                if let Some(ip) = p.pointer("/status/podIP").and_then(Value::as_str) {
                    ips.entry(n.to_string()).or_default().push(ip.to_string());
                }
            }
        }
        Scheduler { nodes, load, ips }
    }

    pub fn pick(&mut self, spec: &Value) -> Option<String> {
        let best = self
            .nodes
            .iter()
            .filter(|n| fits(n, spec))
            .min_by_key(|n| {
                (
                    self.load.get(name_of(n)).copied().unwrap_or(0),
                    name_of(n).to_string(),
                )
            })?;
        let name = name_of(best).to_string();
        *self.load.entry(name.clone()).or_insert(0) += 1;
        Some(name)
    }

    pub fn pod_ip(&mut self, node: &str) -> String {
        let cidr = self
            .nodes
            .iter()
            .find(|n| name_of(n) == node)
            .and_then(|n| n.pointer("/spec/podCIDR").and_then(Value::as_str))
            .unwrap_or("10.244.0.0/24");
        let base = cidr.split('/').next().unwrap_or("10.244.0.0");
        let prefix = base.rsplit_once('.').map(|(p, _)| p).unwrap_or("10.244.0");
        let used = self.ips.entry(node.to_string()).or_default();
        for host in 2..255 {
            let ip = format!("{prefix}.{host}");
            if !used.contains(&ip) {
                used.push(ip.clone());
                return ip;
            }
        }
        format!("{prefix}.254")
    }

    pub fn unschedulable_message(&self) -> String {
        format!(
            "0/{} nodes are available: no node is Ready, schedulable and free of untolerated taints.",
            self.nodes.len()
        )
    }
}
