//! Node objects for the sandbox's nodes, read from the node list file the sandbox writes
//! (`--breakfix-nodes-file`), with kubelet-style conditions and a heartbeat every 10 s.
//! The local node turns NotReady when its kubelet stand-in stops running.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::App;
use crate::controller::Ctl;
use crate::events;
use crate::flags::K8S_VERSION;
use crate::log::{info, warning};
use crate::objects::name_of;
use crate::status::ApiError;
use crate::util::{now_micro, now_rfc3339, parse_time};

/// Heartbeat period.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// One entry of the node list file.
#[derive(Debug, Clone, Deserialize)]
pub struct NodeSpec {
    /// Node name (`controlplane`, `node01`).
    pub name: String,
    /// InternalIP.
    #[serde(default)]
    pub address: String,
    /// Roles (`control-plane`); become `node-role.kubernetes.io/<role>` labels.
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NodesFile {
    Wrapped { nodes: Vec<NodeSpec> },
    List(Vec<NodeSpec>),
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// The name of the node this process runs on: the kubelet stand-in's status file says it;
/// otherwise the hostname.
pub fn local_name(app: &App) -> String {
    std::fs::read(&app.flags.pods_file)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("node").and_then(Value::as_str).map(String::from))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(hostname)
}

/// The node list; without a file, just this host as a control-plane node.
pub fn read(app: &App) -> Vec<NodeSpec> {
    let path = &app.flags.nodes_file;
    match std::fs::read_to_string(path) {
        Ok(text) => match serde_saphyr::from_str::<NodesFile>(&text) {
            Ok(NodesFile::Wrapped { nodes }) | Ok(NodesFile::List(nodes)) => return nodes,
            Err(e) => warning!("ignoring {}: {e}", path.display()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warning!("reading {}: {e}", path.display()),
    }
    let address = app
        .flags
        .advertise_address
        .map(|a| a.to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    vec![NodeSpec {
        name: local_name(app),
        address,
        roles: vec!["control-plane".into()],
    }]
}

/// Tracks whether the local kubelet (stand-in) runs: a process named `kubelet` on this
/// host. Only consulted when its status file exists (a node without one has no kubelet
/// stand-in to watch). The node turns NotReady when none was seen for the grace period.
#[derive(Default)]
pub struct KubeletWatch {
    last_seen: Option<std::time::Instant>,
}

fn kubelet_running(comm: &str) -> bool {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .any(|e| {
                    std::fs::read_to_string(e.path().join("comm"))
                        .is_ok_and(|c| c.trim_end() == comm)
                })
        })
        .unwrap_or(false)
}

impl KubeletWatch {
    /// Some(alive) for a node with a kubelet stand-in, None otherwise.
    fn alive(&mut self, app: &App) -> Option<bool> {
        if !app.flags.pods_file.exists() {
            return None;
        }
        let now = std::time::Instant::now();
        if kubelet_running(&app.flags.kubelet_comm) {
            self.last_seen = Some(now);
        }
        let grace = app.flags.node_monitor_grace_period;
        Some(match self.last_seen {
            Some(t) => now.duration_since(t) <= grace,
            // Not seen since this process started: give it the grace period from now.
            None => {
                self.last_seen = Some(now);
                true
            }
        })
    }
}

fn cond(typ: &str, status: &str, reason: &str, message: &str, now: &str, prev: &Value) -> Value {
    let old = prev
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(typ))
        });
    let transition = old
        .filter(|c| c.get("status").and_then(Value::as_str) == Some(status))
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or(json!(now));
    json!({
        "type": typ, "status": status, "lastHeartbeatTime": now,
        "lastTransitionTime": transition, "reason": reason, "message": message,
    })
}

fn conditions(ready: bool, now: &str, prev: &Value) -> Value {
    if ready {
        json!([
            cond(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
                now,
                prev
            ),
            cond(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
                now,
                prev
            ),
            cond(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
                now,
                prev
            ),
            cond(
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
                now,
                prev
            ),
        ])
    } else {
        let msg = "Kubelet stopped posting node status.";
        let mut cs = json!([
            cond(
                "MemoryPressure",
                "Unknown",
                "NodeStatusUnknown",
                msg,
                now,
                prev
            ),
            cond(
                "DiskPressure",
                "Unknown",
                "NodeStatusUnknown",
                msg,
                now,
                prev
            ),
            cond(
                "PIDPressure",
                "Unknown",
                "NodeStatusUnknown",
                msg,
                now,
                prev
            ),
            cond("Ready", "Unknown", "NodeStatusUnknown", msg, now, prev),
        ]);
        // The heartbeat stops with the kubelet.
        if let Value::Array(a) = &mut cs {
            for c in a {
                let typ = c.get("type").cloned();
                let last = prev
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .and_then(|p| p.iter().find(|x| x.get("type") == typ.as_ref()))
                    .and_then(|x| x.get("lastHeartbeatTime").cloned());
                if let Some(l) = last {
                    c["lastHeartbeatTime"] = l;
                }
            }
        }
        cs
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn os_image() -> String {
    read_trim("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

fn memory_ki() -> String {
    read_trim("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .map(|v| format!("{}Ki", v.trim().trim_end_matches("kB").trim()))
        .unwrap_or_else(|| "8000000Ki".into())
}

/// A fresh Node object for `spec` (index `i` picks its pod CIDR).
fn new_node(spec: &NodeSpec, i: usize) -> Value {
    let mut labels = json!({
        "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": spec.name, "kubernetes.io/os": "linux",
    });
    let mut taints = Vec::new();
    for r in &spec.roles {
        labels[format!("node-role.kubernetes.io/{r}")] = json!("");
        if r == "control-plane" {
            labels["node.kubernetes.io/exclude-from-external-load-balancers"] = json!("");
            taints.push(
                json!({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}),
            );
        }
    }
    let cidr = format!("10.244.{i}.0/24");
    let mut spec_obj = json!({"podCIDR": cidr, "podCIDRs": [cidr]});
    if !taints.is_empty() {
        spec_obj["taints"] = json!(taints);
    }
    json!({
        "metadata": {
            "name": spec.name,
            "labels": labels,
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": spec_obj,
        "status": {},
    })
}

/// The status part every heartbeat rewrites.
fn status(spec: &NodeSpec, ready: bool, prev: &Value) -> Value {
    let now = now_rfc3339();
    let cpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let capacity = json!({"cpu": cpu.to_string(), "ephemeral-storage": "20470Mi", "hugepages-2Mi": "0", "memory": memory_ki(), "pods": "110"});
    let machine = read_trim("/etc/machine-id");
    json!({
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": conditions(ready, &now, prev),
        "addresses": [
            {"type": "InternalIP", "address": spec.address},
            {"type": "Hostname", "address": spec.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": machine, "systemUUID": machine, "bootID": read_trim("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": read_trim("/proc/sys/kernel/osrelease"), "osImage": os_image(),
            "containerRuntimeVersion": "breakfix-standin://0.1.0",
            "kubeletVersion": K8S_VERSION, "kubeProxyVersion": K8S_VERSION,
            "operatingSystem": "linux", "architecture": "amd64",
        },
    })
}

fn was_ready(node: &Value) -> bool {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        })
        .and_then(|c| c.get("status").and_then(Value::as_str))
        == Some("True")
}

/// The node's Lease in kube-node-lease, renewed with each heartbeat (as the kubelet does).
async fn renew_lease(ctl: &Ctl, node: &Value, leases: &[Value]) -> Result<(), ApiError> {
    let name = name_of(node);
    let now = now_micro();
    let existing = leases.iter().find(|l| {
        name_of(l) == name
            && l.pointer("/metadata/namespace").and_then(Value::as_str) == Some("kube-node-lease")
    });
    match existing {
        Some(l) => {
            let mut l2 = l.clone();
            l2["spec"]["renewTime"] = json!(now);
            ctl.update("Lease", l2).await?;
        }
        None => {
            let lease = json!({
                "metadata": {
                    "name": name,
                    "namespace": "kube-node-lease",
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name,
                        "uid": node.pointer("/metadata/uid").cloned().unwrap_or(json!(""))}],
                },
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now},
            });
            match ctl.create("Lease", lease).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Creates missing Node objects and refreshes every node's status (the heartbeat).
pub async fn sync(ctl: &Ctl, kubelet: &mut KubeletWatch) -> Result<(), ApiError> {
    let specs = read(&ctl.app);
    let local = local_name(&ctl.app);
    let fresh = kubelet.alive(&ctl.app);
    let existing = ctl.list("Node").await?;
    let leases = ctl.list("Lease").await?;
    for (i, spec) in specs.iter().enumerate() {
        let ready = !(spec.name == local && fresh == Some(false));
        let node = match existing.iter().find(|n| name_of(n) == spec.name) {
            None => {
                let mut n = new_node(spec, i);
                n["status"] = status(spec, ready, &Value::Null);
                let created = ctl.create("Node", n).await?;
                info!("registered node {:?} ({})", spec.name, spec.address);
                let msg = format!(
                    "Node {} event: Registered Node {} in Controller",
                    spec.name, spec.name
                );
                events::record(
                    ctl,
                    &created,
                    false,
                    "RegisteredNode",
                    &msg,
                    "node-controller",
                )
                .await;
                created
            }
            Some(cur) => {
                let mut n = cur.clone();
                n["status"] = status(spec, ready, cur);
                let updated = ctl.update("Node", n).await?;
                if was_ready(cur) != ready {
                    let state = if ready { "NodeReady" } else { "NodeNotReady" };
                    let msg = format!("Node {} status is now: {state}", spec.name);
                    events::record(ctl, &updated, !ready, state, &msg, "node-controller").await;
                }
                updated
            }
        };
        if ready {
            renew_lease(ctl, &node, &leases).await?;
        }
    }
    // Nodes no longer listed stop heartbeating: after the grace period they go Unknown.
    for cur in existing
        .iter()
        .filter(|n| !specs.iter().any(|s| s.name == name_of(n)))
    {
        let stale = cur
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
            })
            .filter(|c| c.get("status").and_then(Value::as_str) == Some("True"))
            .and_then(|c| c.get("lastHeartbeatTime").and_then(Value::as_str))
            .and_then(parse_time)
            .is_some_and(|t| {
                (time::OffsetDateTime::now_utc() - t).whole_seconds()
                    > ctl.app.flags.node_monitor_grace_period.as_secs() as i64
            });
        if stale {
            let mut n = cur.clone();
            n["status"]["conditions"] = conditions(false, &now_rfc3339(), cur);
            ctl.update("Node", n).await?;
        }
    }
    Ok(())
}
