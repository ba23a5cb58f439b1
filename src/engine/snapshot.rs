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
use crate::transport::sh_program;

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
            // Only etcd going quiet is a difference: a baseline taken while etcd did not
            // answer (busy for a moment) says nothing about its keys, so an etcd that answers
            // afterwards is not one.
            (Some(_), None) => out.push("etcd: answered -> did not answer".to_string()),
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
        .chain(plan.wrong_fixes.iter().flat_map(|w| &w.steps))
        .chain(plan.alternative_fixes.iter().flat_map(|w| &w.steps));
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
        .chain(plan.alternative_fixes.iter().flat_map(|w| &w.steps))
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
        // Items for snapshot.sh (tag, value), in the order its lines come back.
        let mut items: Vec<(&str, String)> = Vec::new();
        items.extend(files.iter().map(|f| ("F", f.clone())));
        items.extend(units.iter().map(|u| ("U", u.clone())));
        items.push(("M", MANIFESTS_DIR.to_string()));
        // Processes a fault started carry its marker in their environment (see
        // `fault::slow_disk::detached`; counted where the plan starts such processes);
        // pending undo entries are the node's journal files.
        if slows_disk.contains(&node) {
            items.push(("P", crate::fault::slow_disk::MARKER_VAR.to_string()));
            items.push(("T", "-".to_string()));
        }
        // disk_fill's filler files at the top of each filesystem it may fill.
        let node_fillers = fillers.get(&node).cloned().unwrap_or_default();
        items.extend(node_fillers.iter().map(|p| ("B", p.clone())));
        if shapes_traffic.contains(&node) {
            items.push(("Q", "-".to_string()));
        }
        items.push(("J", crate::journal::remote_dir()));
        let args: Vec<&str> = items.iter().flat_map(|(t, v)| [*t, v.as_str()]).collect();
        let cmd = sh_program(SNAPSHOT_SH, "snapshot", &args);
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

/// The node program that prints a snapshot's lines, run with its items as arguments.
const SNAPSHOT_SH: &str = include_str!("sh/snapshot.sh");

/// The command that prints `T <n>`: the block-I/O limits set in the node's cgroup tree,
/// whichever cgroup holds them (a restarted etcd has a new one); snapshot.sh says what counts.
pub fn io_throttles_command() -> String {
    sh_program(SNAPSHOT_SH, "snapshot", &["T", "-"])
}

/// Key groups that churn on their own on a live cluster are left out: only objects a fault or
/// a fix can add or remove are compared. Events expire; leases are heartbeats; the API
/// server's `masterleases` and `peerserverleases` are TTL keys each API server keeps alive
/// (they lapse while it is down or restarting). `ipaddresses` are the API server's own record
/// of the Service IPs it allocated (networking.k8s.io IPAddress, Kubernetes >= 1.33): derived
/// from the Services, which are compared, and re-created or removed by the API server's repair
/// loop on its own schedule (a matrix on the external sandbox saw one missing for more than
/// 5 minutes after a reset while the API server sat in the kubelet's crash-loop back-off).
const CHURNING_PREFIXES: &[&str] = &[
    "/registry/events/",
    "/registry/leases/",
    "/registry/masterleases/",
    "/registry/peerserverleases/",
    "/registry/ipaddresses/",
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

    /// etcd going quiet after a reset is a difference; a baseline taken while etcd missed a
    /// read (None) is not one against an etcd that answers afterwards.
    #[test]
    fn only_etcd_going_quiet_is_a_difference() {
        let answered = Snapshot {
            etcd_keys: Some(BTreeMap::from([("/registry/pods/".to_string(), 4)])),
            ..Default::default()
        };
        let quiet = Snapshot::default();
        assert_eq!(answered.diff(&quiet), ["etcd: answered -> did not answer"]);
        assert!(quiet.diff(&answered).is_empty());
        assert!(quiet.diff(&quiet).is_empty());
    }

    /// snapshot.sh run here with a real `sh`: lines in item order, values never code.
    #[test]
    fn the_snapshot_program_prints_one_line_per_item_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("a $(x).yaml"), "abc").expect("write");
        std::fs::create_dir(d.join("journal")).expect("mkdir");
        std::fs::write(d.join("journal/1.json"), "{}").expect("write");
        std::fs::write(d.join("journal/2.json"), "{}").expect("write");
        let file = d.join("a $(x).yaml").display().to_string();
        let gone = d.join("gone").display().to_string();
        let top = d.display().to_string();
        let journal = d.join("journal").display().to_string();
        let run = |args: &[&str]| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(SNAPSHOT_SH)
                .arg("snapshot")
                .args(args)
                .output()
                .expect("run sh")
        };
        let o = run(&["F", &file, "F", &gone, "M", &top, "J", &journal]);
        assert!(o.status.success(), "{o:?}");
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            format!("F {abc}\nF missing\nM {file} {abc}\nJ 2\n")
        );
        let o = run(&["X", "y"]);
        assert_eq!(o.status.code(), Some(2), "an unknown item is refused");
    }
}
