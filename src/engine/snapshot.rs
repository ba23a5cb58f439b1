//! Snapshot: the parts of a node a scenario can change (touched files' sha256, unit states,
//! static pod manifests, etcd key count), taken before a break and after a reset so the
//! self-test can prove that `reset` restores the baseline.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::engine::runner::Sessions;
use crate::fault::manifest::{manifest_path, ManifestEdit, MANIFESTS_DIR};
use crate::fault::Action;
use crate::inventory::Inventory;
use crate::plan::Plan;
use crate::probe::{Probe, ProbeCtx};
use crate::transport::shell_quote;

/// What was observed, keyed `node:thing`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// `node:path` -> sha256 or `missing`.
    pub files: BTreeMap<String, String>,
    /// `node:unit` -> `active-state/enabled-state`.
    pub units: BTreeMap<String, String>,
    /// `node:manifest` -> sha256 for every file in /etc/kubernetes/manifests.
    pub manifests: BTreeMap<String, String>,
    /// Number of keys in etcd (`None` when etcd did not answer).
    pub etcd_keys: Option<u64>,
}

impl Snapshot {
    /// Human lines for every difference (`before -> after`).
    pub fn diff(&self, after: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (what, a, b) in [
            ("file", &self.files, &after.files),
            ("unit", &self.units, &after.units),
            ("manifest", &self.manifests, &after.manifests),
        ] {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let (x, y) = (a.get(k), b.get(k));
                if x != y {
                    out.push(format!(
                        "{what} {k}: {} -> {}",
                        x.map_or("absent", |s| s.as_str()),
                        y.map_or("absent", |s| s.as_str())
                    ));
                }
            }
        }
        if self.etcd_keys != after.etcd_keys {
            out.push(format!(
                "etcd key count: {:?} -> {:?}",
                self.etcd_keys, after.etcd_keys
            ));
        }
        out
    }
}

/// Files and units the plan may touch, per node.
fn touched(plan: &Plan) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
    let mut m: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    let actions = plan
        .setup
        .iter()
        .chain(&plan.faults)
        .chain(&plan.solution)
        .chain(plan.wrong_fixes.iter().flat_map(|w| &w.steps));
    for a in actions {
        let e = m.entry(a.node.clone()).or_default();
        match &a.action {
            Action::File(f) => e.0.push(f.path.clone()),
            Action::Manifest(x) => {
                e.0.push(manifest_path(&x.pod));
                if let ManifestEdit::MoveOut { to: Some(t) } = &x.edit {
                    e.0.push(t.clone());
                }
            }
            Action::Systemd(s) => e.1.push(s.unit.clone()),
            Action::Tls(t) => e.0.push(t.path.clone()),
            Action::Command(_) | Action::SlowDisk(_) | Action::Netem(_) => {}
            Action::EtcdQuota(_) => {}
            Action::EtcdKeys(k) => e.0.extend(k.snapshot.clone()),
        }
    }
    for p in plan.confirm.iter().chain(&plan.verify) {
        let e = m.entry(p.node.clone()).or_default();
        match &p.probe {
            Probe::File(f) => e.0.push(f.path.clone()),
            Probe::Systemd(s) => e.1.push(s.unit.clone()),
            _ => {}
        }
    }
    for (files, units) in m.values_mut() {
        files.sort();
        files.dedup();
        units.sort();
        units.dedup();
    }
    m
}

/// Takes a snapshot on every node the plan touches.
pub async fn take(
    plan: &Plan,
    sessions: &Sessions,
    inventory: &Inventory,
) -> crate::Result<Snapshot> {
    let mut snap = Snapshot::default();
    let t = Duration::from_secs(30);
    for (node, (files, units)) in touched(plan) {
        let Some(s) = sessions.get(&node) else {
            continue;
        };
        let mut cmd = String::new();
        for f in &files {
            let q = shell_quote(f);
            cmd.push_str(&format!("if [ -e {q} ]; then echo \"F $(sha256sum < {q} | cut -d' ' -f1)\"; else echo 'F missing'; fi; "));
        }
        for u in &units {
            let q = shell_quote(u);
            cmd.push_str(&format!(
                "echo \"U $(systemctl is-active {q})/$(systemctl is-enabled {q} 2>/dev/null)\"; "
            ));
        }
        cmd.push_str(&format!("for m in {MANIFESTS_DIR}/*; do [ -f \"$m\" ] && echo \"M $m $(sha256sum < \"$m\" | cut -d' ' -f1)\"; done; true"));
        let out = s.run_ok(&cmd, t).await?;
        let (mut fi, mut ui) = (files.iter(), units.iter());
        for line in out.stdout.lines() {
            if let Some(v) = line.strip_prefix("F ") {
                if let Some(f) = fi.next() {
                    snap.files
                        .insert(format!("{node}:{f}"), v.trim().to_string());
                }
            } else if let Some(v) = line.strip_prefix("U ") {
                if let Some(u) = ui.next() {
                    snap.units
                        .insert(format!("{node}:{u}"), v.trim().to_string());
                }
            } else if let Some(v) = line.strip_prefix("M ") {
                if let Some((path, sum)) = v.rsplit_once(' ') {
                    snap.manifests
                        .insert(format!("{node}:{path}"), sum.to_string());
                }
            }
        }
    }
    snap.etcd_keys = etcd_key_count(sessions, inventory).await;
    Ok(snap)
}

/// Keys that churn on their own on a live cluster (events, leases, heartbeats) are left out
/// of the count: only objects a fault or a fix can add or remove are compared.
const CHURNING_PREFIXES: &[&str] = &["/registry/events/", "/registry/leases/"];

async fn etcd_key_count(sessions: &Sessions, inventory: &Inventory) -> Option<u64> {
    let node = inventory
        .nodes_with_role("etcd")
        .chain(inventory.nodes_with_role("control-plane"))
        .find(|n| sessions.contains_key(&n.name))?;
    let session = sessions.get(&node.name)?;
    let ctx = ProbeCtx {
        session,
        inventory,
        timeout: Duration::from_secs(10),
    };
    let count = |prefix: &str| {
        let yaml = format!("kind: etcd\nname: snapshot-key-count\nprefix: \"{prefix}\"\nexpect: {{ key_count: 0 }}\n");
        let ctx = &ctx;
        async move {
            let probe: Probe = serde_saphyr::from_str(&yaml).ok()?;
            let facts = probe.gather(ctx).await.ok()?;
            facts.values.get("key_count").and_then(|v| v.as_u64())
        }
    };
    let mut total = count("/").await?;
    for p in CHURNING_PREFIXES {
        total = total.saturating_sub(count(p).await.unwrap_or(0));
    }
    Some(total)
}
