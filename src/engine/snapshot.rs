//! Snapshot: the parts of a node a scenario can change (touched files' sha256, unit states,
//! static pod manifests, etcd key count and alarms, processes a fault started, journal
//! entries left on the node), taken before a break and after a reset so the self-test and
//! the crash matrix can prove that `reset` restores the baseline.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::engine::runner::Sessions;
use crate::fault::Action;
use crate::inventory::Inventory;
use crate::node::kubeadm::MANIFESTS_DIR;
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
    /// Number of keys in etcd per group (`/registry/pods/` -> n; see the etcd probe's
    /// `key_groups`), churning groups left out (`None` when etcd did not answer).
    pub etcd_keys: Option<BTreeMap<String, u64>>,
    /// Active etcd alarms, sorted (`None` when etcd did not answer).
    pub etcd_alarms: Option<Vec<String>>,
    /// `node:what` -> a count: `node:fault-processes` (processes carrying a fault's
    /// `BREAKFIX_FAULT_ID` marker: fsync tracers, fio), `node:io-throttles` (block-I/O limits
    /// set anywhere in the node's cgroup tree: v1 `blkio.throttle.*_device` lines, v2 `io.max`
    /// lines with a number), `node:netem-qdiscs` (netem qdiscs on any interface),
    /// `node:fillers-of:<path>` (`disk_fill` filler files at the top of the filesystem holding
    /// path), `node:journal` (undo entries pending in the node's journal directory). All but
    /// the journal are taken only on nodes where the plan has an action that makes them
    /// (`slow_disk`, `netem`, `disk_fill`: see [`crate::touches::Touches`]).
    pub node: BTreeMap<String, String>,
}

impl Snapshot {
    /// Human lines for every difference (`before -> after`).
    pub fn diff(&self, after: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (what, a, b) in [
            ("file", &self.files, &after.files),
            ("unit", &self.units, &after.units),
            ("manifest", &self.manifests, &after.manifests),
            ("node", &self.node, &after.node),
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
        match (&self.etcd_keys, &after.etcd_keys) {
            (Some(a), Some(b)) => {
                let groups: std::collections::BTreeSet<&String> =
                    a.keys().chain(b.keys()).collect();
                for g in groups {
                    let (x, y) = (
                        a.get(g).copied().unwrap_or(0),
                        b.get(g).copied().unwrap_or(0),
                    );
                    if x != y {
                        out.push(format!("etcd keys under {g}: {x} -> {y}"));
                    }
                }
            }
            (a, b) if a.is_some() != b.is_some() => out.push(format!(
                "etcd: {} -> {}",
                if a.is_some() {
                    "answered"
                } else {
                    "did not answer"
                },
                if b.is_some() {
                    "answered"
                } else {
                    "did not answer"
                }
            )),
            _ => {}
        }
        if let (Some(a), Some(b)) = (&self.etcd_alarms, &after.etcd_alarms) {
            if a != b {
                out.push(format!("etcd alarms: {a:?} -> {b:?}"));
            }
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
        let t = a.action.touches();
        e.0.extend(t.files);
        e.1.extend(t.units);
    }
    for p in plan
        .preconditions
        .iter()
        .chain(&plan.confirm)
        .chain(&plan.verify)
    {
        let e = m.entry(p.node.clone()).or_default();
        let t = p.probe.touches();
        e.0.extend(t.files);
        e.1.extend(t.units);
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
    let nodes_with = |f: fn(&Action) -> bool| -> std::collections::BTreeSet<String> {
        plan.faults
            .iter()
            .chain(&plan.setup)
            .chain(&plan.solution)
            .filter(|a| f(&a.action))
            .map(|a| a.node.clone())
            .collect()
    };
    let slows_disk = nodes_with(|a| a.touches().io_throttle);
    let shapes_traffic = nodes_with(|a| a.touches().qdisc);
    let mut fillers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in plan
        .faults
        .iter()
        .chain(&plan.setup)
        .chain(&plan.solution)
        .chain(plan.wrong_fixes.iter().flat_map(|w| &w.steps))
    {
        let paths = fillers.entry(a.node.clone()).or_default();
        paths.extend(a.action.touches().fillers);
        paths.sort();
        paths.dedup();
    }
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
        cmd.push_str(&format!("for m in {MANIFESTS_DIR}/*; do [ -f \"$m\" ] && echo \"M $m $(sha256sum < \"$m\" | cut -d' ' -f1)\"; done; "));
        // Processes a fault started carry its marker in their environment (see
        // `fault::slow_disk::detached`; counted where the plan starts such processes);
        // pending undo entries are the node's journal files.
        if slows_disk.contains(&node) {
            cmd.push_str(&format!(
                "echo \"P $(grep -l {}= /proc/[0-9]*/environ 2>/dev/null | wc -l)\"; ",
                crate::fault::slow_disk::MARKER_VAR
            ));
            cmd.push_str(IO_THROTTLES);
        }
        // disk_fill's filler files at the top of each filesystem it may fill.
        let node_fillers = fillers.get(&node).cloned().unwrap_or_default();
        for p in &node_fillers {
            cmd.push_str(&format!(
                "echo \"B $(ls -A \"$(df --output=target -- {} 2>/dev/null | tail -n 1)\" 2>/dev/null | grep -c '^\\.breakfix-fill-')\"; ",
                shell_quote(p)
            ));
        }
        if shapes_traffic.contains(&node) {
            cmd.push_str("echo \"Q $(tc qdisc show 2>/dev/null | grep -c ' netem ')\"; ");
        }
        cmd.push_str(&format!(
            "echo \"J $(ls {}/*.json 2>/dev/null | wc -l)\"; true",
            shell_quote(&crate::journal::remote_dir()),
        ));
        let out = s.run_ok(&cmd, t).await?;
        let (mut fi, mut ui, mut bi) = (files.iter(), units.iter(), node_fillers.iter());
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
            } else if let Some(v) = line.strip_prefix("P ") {
                snap.node
                    .insert(format!("{node}:fault-processes"), v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("T ") {
                snap.node
                    .insert(format!("{node}:io-throttles"), v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("B ") {
                if let Some(p) = bi.next() {
                    snap.node
                        .insert(format!("{node}:fillers-of:{p}"), v.trim().to_string());
                }
            } else if let Some(v) = line.strip_prefix("Q ") {
                snap.node
                    .insert(format!("{node}:netem-qdiscs"), v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("J ") {
                snap.node
                    .insert(format!("{node}:journal"), v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("M ") {
                if let Some((path, sum)) = v.rsplit_once(' ') {
                    snap.manifests
                        .insert(format!("{node}:{path}"), sum.to_string());
                }
            }
        }
    }
    (snap.etcd_keys, snap.etcd_alarms) = etcd_facts(sessions, inventory).await;
    Ok(snap)
}

/// Prints `T <n>`: the block-I/O limits set in the node's cgroup tree, whichever cgroup holds
/// them (a restarted etcd has a new one). v1 lines are `MAJ:MIN N`; v2 `io.max` lines are
/// `MAJ:MIN rbps=max wbps=max riops=max wiops=20` and count only with a number (the kernel
/// docs, admin-guide/cgroup-v1/blkio-controller and cgroup-v2 "IO Interface Files").
pub const IO_THROTTLES: &str = "echo \"T $(find /sys/fs/cgroup \\( -name 'blkio.throttle.*_device' -o -name io.max \\) 2>/dev/null | xargs -r cat 2>/dev/null | grep -cE '^[0-9]+:[0-9]+ ([0-9]+$|.*=[0-9])')\"; ";

/// Key groups that churn on their own on a live cluster are left out: only objects a fault or
/// a fix can add or remove are compared. Events expire; leases are heartbeats; the API
/// server's `masterleases` and `peerserverleases` are TTL keys each API server keeps alive
/// (they lapse while it is down or restarting).
const CHURNING_PREFIXES: &[&str] = &[
    "/registry/events/",
    "/registry/leases/",
    "/registry/masterleases/",
    "/registry/peerserverleases/",
];

/// The probe the snapshot gathers `key_groups` with (its expectation only asks for the fact).
const KEY_GROUPS_PROBE: &str =
    "kind: etcd\nname: snapshot-key-groups\nprefix: \"/\"\nexpect: { key_groups: { not: null }, alarms: { not: null } }\n";

/// The key count per group and the active alarms, from the first etcd or control-plane node
/// connected (`(None, None)` when etcd does not answer).
async fn etcd_facts(
    sessions: &Sessions,
    inventory: &Inventory,
) -> (Option<BTreeMap<String, u64>>, Option<Vec<String>>) {
    let Some(session) = inventory
        .nodes_with_role("etcd")
        .chain(inventory.nodes_with_role("control-plane"))
        .find_map(|n| sessions.get(&n.name))
    else {
        return (None, None);
    };
    let ctx = ProbeCtx {
        session,
        inventory,
        timeout: Duration::from_secs(10),
    };
    let Ok(probe) = serde_saphyr::from_str::<Probe>(KEY_GROUPS_PROBE) else {
        return (None, None);
    };
    let Ok(facts) = probe.gather(&ctx).await else {
        return (None, None);
    };
    let groups = facts
        .values
        .get("key_groups")
        .and_then(|g| g.as_object())
        .map(|groups| {
            groups
                .iter()
                .filter(|(g, _)| !CHURNING_PREFIXES.contains(&g.as_str()))
                .filter_map(|(g, n)| Some((g.clone(), n.as_u64()?)))
                .collect()
        });
    let alarms = facts
        .values
        .get("alarms")
        .and_then(|a| a.as_array())
        .map(|a| {
            let mut v: Vec<String> = a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect();
            v.sort();
            v
        });
    (groups, alarms)
}

#[cfg(test)]
mod key_group_tests {
    use super::*;

    #[test]
    fn the_key_groups_probe_parses_and_groups_by_resource() {
        let p: std::result::Result<Probe, _> = serde_saphyr::from_str(KEY_GROUPS_PROBE);
        assert!(p.is_ok(), "{p:?}");
        assert_eq!(
            crate::probe::etcd::key_group("/registry/pods/default/x"),
            "/registry/pods/"
        );
        assert_eq!(crate::probe::etcd::key_group("/a"), "/a");
        let before = Snapshot {
            etcd_keys: Some(BTreeMap::from([("/registry/pods/".to_string(), 4)])),
            ..Default::default()
        };
        let after = Snapshot {
            etcd_keys: Some(BTreeMap::from([("/registry/pods/".to_string(), 3)])),
            ..Default::default()
        };
        assert_eq!(
            before.diff(&after),
            ["etcd keys under /registry/pods/: 4 -> 3"]
        );
    }
}
