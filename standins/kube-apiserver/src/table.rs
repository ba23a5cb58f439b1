//! Server-side printing: `meta.k8s.io/v1 Table` answers for `kubectl get`, with the real
//! columns of each kind (priority 1 columns appear with `-o wide`).

use serde_json::{json, Value};

use crate::registry::Resource;
use crate::selector::LabelSelector;
use crate::util::age;

/// A column: name, type, priority.
struct Col(&'static str, &'static str, u8);

/// The `-o wide` columns of deployments and replicasets.
const WORKLOAD_WIDE: &[&str] = &["Containers", "Images", "Selector"];

/// The columns of `res`, as kubectl's: those shown by default (of type `string` unless
/// listed as `integer`), then the `-o wide` ones (priority 1, `string`).
fn columns(res: &Resource) -> Vec<Col> {
    let (shown, integer, wide): (&[&str], &[&str], &[&str]) = match res.name {
        "pods" => (
            &["Name", "Ready", "Status", "Restarts", "Age"],
            &[],
            &["IP", "Node", "Nominated Node", "Readiness Gates"],
        ),
        "deployments" => (
            &["Name", "Ready", "Up-to-date", "Available", "Age"],
            &["Up-to-date", "Available"],
            WORKLOAD_WIDE,
        ),
        "replicasets" => (
            &["Name", "Desired", "Current", "Ready", "Age"],
            &["Desired", "Current", "Ready"],
            WORKLOAD_WIDE,
        ),
        "nodes" => (
            &["Name", "Status", "Roles", "Age", "Version"],
            &[],
            &[
                "Internal-IP",
                "External-IP",
                "OS-Image",
                "Kernel-Version",
                "Container-Runtime",
            ],
        ),
        "services" => (
            &[
                "Name",
                "Type",
                "Cluster-IP",
                "External-IP",
                "Port(s)",
                "Age",
            ],
            &[],
            &["Selector"],
        ),
        "configmaps" => (&["Name", "Data", "Age"], &[], &[]),
        "secrets" => (&["Name", "Type", "Data", "Age"], &[], &[]),
        "namespaces" => (&["Name", "Status", "Age"], &[], &[]),
        "leases" => (&["Name", "Holder", "Age"], &[], &[]),
        "events" => (
            &["Last Seen", "Type", "Reason", "Object", "Message"],
            &[],
            &[],
        ),
        "componentstatuses" => (&["Name", "Status", "Message", "Error"], &[], &[]),
        _ => (&["Name", "Age"], &[], &[]),
    };
    let typ = |n: &str| {
        if integer.contains(&n) {
            "integer"
        } else {
            "string"
        }
    };
    shown
        .iter()
        .map(|&n| Col(n, typ(n), 0))
        .chain(wide.iter().map(|&n| Col(n, "string", 1)))
        .collect()
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn i(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn or_none(x: &str) -> String {
    if x.is_empty() {
        "<none>".into()
    } else {
        x.to_string()
    }
}

fn arr<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The Age column: time since `metadata.creationTimestamp`.
fn age_of(o: &Value) -> String {
    age(o
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str))
}

/// A deployment's or replicaset's row: its first four cells, Age, then (wide) its pod
/// template's containers and images, and its selector.
fn workload_row(o: &Value, first: [Value; 4], created: Value) -> Vec<Value> {
    let cs = arr(o, "/spec/template/spec/containers");
    let names: Vec<&str> = cs.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(c, "/image")).collect();
    let sel = o
        .pointer("/spec/selector")
        .map(LabelSelector::from_object)
        .unwrap_or_default();
    let mut row = first.to_vec();
    row.extend([
        created,
        json!(names.join(",")),
        json!(images.join(",")),
        json!(sel.render()),
    ]);
    row
}

/// kubectl's pod STATUS column.
pub fn pod_status(pod: &Value) -> String {
    let mut reason = s(pod, "/status/phase").to_string();
    if !s(pod, "/status/reason").is_empty() {
        reason = s(pod, "/status/reason").to_string();
    }
    let mut has_running = false;
    for c in arr(pod, "/status/containerStatuses").iter().rev() {
        let waiting = s(c, "/state/waiting/reason");
        let term = c.pointer("/state/terminated");
        if !waiting.is_empty() {
            reason = waiting.to_string();
        } else if let Some(t) = term {
            let r = s(t, "/reason");
            reason = if !r.is_empty() {
                r.to_string()
            } else if i(t, "/signal") != 0 {
                format!("Signal:{}", i(t, "/signal"))
            } else {
                format!("ExitCode:{}", i(t, "/exitCode"))
            };
        } else if c.get("ready").and_then(Value::as_bool) == Some(true)
            && c.pointer("/state/running").is_some()
        {
            has_running = true;
        }
    }
    if reason == "Completed" && has_running {
        reason = "Running".into();
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        reason = "Terminating".into();
    }
    if reason.is_empty() {
        reason = "Pending".into();
    }
    reason
}

fn pod_cells(pod: &Value) -> Vec<Value> {
    let total = arr(pod, "/spec/containers").len();
    let statuses = arr(pod, "/status/containerStatuses");
    let ready = statuses
        .iter()
        .filter(|c| {
            c.get("ready").and_then(Value::as_bool) == Some(true)
                && c.pointer("/state/running").is_some()
        })
        .count();
    let restarts: i64 = statuses.iter().map(|c| i(c, "/restartCount")).sum();
    let last = statuses
        .iter()
        .filter_map(|c| {
            c.pointer("/lastState/terminated/finishedAt")
                .and_then(Value::as_str)
        })
        .max();
    let restarts = match last {
        Some(t) if restarts > 0 => format!("{restarts} ({} ago)", age(Some(t))),
        _ => restarts.to_string(),
    };
    vec![
        json!(s(pod, "/metadata/name")),
        json!(format!("{ready}/{total}")),
        json!(pod_status(pod)),
        json!(restarts),
        json!(age_of(pod)),
        json!(or_none(s(pod, "/status/podIP"))),
        json!(or_none(s(pod, "/spec/nodeName"))),
        json!("<none>"),
        json!("<none>"),
    ]
}

/// kubectl's node STATUS column.
pub fn node_status(node: &Value) -> String {
    let ready = arr(node, "/status/conditions")
        .iter()
        .find(|c| s(c, "/type") == "Ready")
        .map(|c| {
            if s(c, "/status") == "True" {
                "Ready"
            } else {
                "NotReady"
            }
        })
        .unwrap_or("Unknown");
    let mut out = ready.to_string();
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        out.push_str(",SchedulingDisabled");
    }
    out
}

fn node_cells(node: &Value) -> Vec<Value> {
    let mut roles: Vec<String> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|l| {
            l.keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    let addr = |t: &str| {
        arr(node, "/status/addresses")
            .iter()
            .find(|a| s(a, "/type") == t)
            .map(|a| s(a, "/address").to_string())
            .unwrap_or_default()
    };
    vec![
        json!(s(node, "/metadata/name")),
        json!(node_status(node)),
        json!(or_none(&roles.join(","))),
        json!(age_of(node)),
        json!(s(node, "/status/nodeInfo/kubeletVersion")),
        json!(or_none(&addr("InternalIP"))),
        json!(or_none(&addr("ExternalIP"))),
        json!(or_none(s(node, "/status/nodeInfo/osImage"))),
        json!(or_none(s(node, "/status/nodeInfo/kernelVersion"))),
        json!(or_none(s(node, "/status/nodeInfo/containerRuntimeVersion"))),
    ]
}

fn service_cells(svc: &Value) -> Vec<Value> {
    let ports: Vec<String> = arr(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let proto = match s(p, "/protocol") {
                "" => "TCP",
                x => x,
            };
            match i(p, "/nodePort") {
                0 => format!("{}/{}", i(p, "/port"), proto),
                np => format!("{}:{}/{}", i(p, "/port"), np, proto),
            }
        })
        .collect();
    let external: Vec<&str> = arr(svc, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let sel = svc
        .pointer("/spec/selector")
        .map(|m| LabelSelector::from_object(&json!({ "matchLabels": m })).render())
        .unwrap_or_default();
    let typ = match s(svc, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    };
    let external = if typ == "ExternalName" {
        s(svc, "/spec/externalName").to_string()
    } else if typ == "LoadBalancer" && external.is_empty() {
        "<pending>".into()
    } else {
        or_none(&external.join(","))
    };
    vec![
        json!(s(svc, "/metadata/name")),
        json!(typ),
        json!(or_none(s(svc, "/spec/clusterIP"))),
        json!(external),
        json!(or_none(&ports.join(","))),
        json!(age_of(svc)),
        json!(or_none(&sel)),
    ]
}

fn map_len(v: &Value, ptr: &str) -> usize {
    v.pointer(ptr)
        .and_then(Value::as_object)
        .map(|m| m.len())
        .unwrap_or(0)
}

/// The cells of one object's row.
pub fn cells(res: &Resource, o: &Value) -> Vec<Value> {
    let name = json!(s(o, "/metadata/name"));
    let created = json!(age_of(o));
    match res.name {
        "pods" => pod_cells(o),
        "nodes" => node_cells(o),
        "services" => service_cells(o),
        "deployments" => workload_row(
            o,
            [
                name,
                json!(format!(
                    "{}/{}",
                    i(o, "/status/readyReplicas"),
                    i(o, "/spec/replicas")
                )),
                json!(i(o, "/status/updatedReplicas")),
                json!(i(o, "/status/availableReplicas")),
            ],
            created,
        ),
        "replicasets" => workload_row(
            o,
            [
                name,
                json!(i(o, "/spec/replicas")),
                json!(i(o, "/status/replicas")),
                json!(i(o, "/status/readyReplicas")),
            ],
            created,
        ),
        "configmaps" => vec![
            name,
            json!(map_len(o, "/data") + map_len(o, "/binaryData")),
            created,
        ],
        "secrets" => vec![
            name,
            json!(s(o, "/type")),
            json!(map_len(o, "/data")),
            created,
        ],
        "namespaces" => vec![name, json!(s(o, "/status/phase")), created],
        "leases" => vec![name, json!(s(o, "/spec/holderIdentity")), created],
        "events" => {
            let last = o
                .get("lastTimestamp")
                .and_then(Value::as_str)
                .or_else(|| o.get("eventTime").and_then(Value::as_str));
            vec![
                json!(age(last)),
                json!(s(o, "/type")),
                json!(s(o, "/reason")),
                json!(format!(
                    "{}/{}",
                    s(o, "/involvedObject/kind").to_lowercase(),
                    s(o, "/involvedObject/name")
                )),
                json!(s(o, "/message")),
            ]
        }
        "componentstatuses" => {
            let c = arr(o, "/conditions")
                .first()
                .cloned()
                .unwrap_or(Value::Null);
            let status = if s(&c, "/status") == "True" {
                "Healthy"
            } else {
                "Unhealthy"
            };
            vec![
                name,
                json!(status),
                json!(s(&c, "/message")),
                json!(s(&c, "/error")),
            ]
        }
        _ => vec![name, created],
    }
}

/// Builds the Table for `items`. `include` is the `includeObject` parameter (Metadata by
/// default, None or Object).
pub fn table(res: &Resource, items: &[Value], resource_version: &str, include: &str) -> Value {
    let defs: Vec<Value> = columns(res)
        .into_iter()
        .map(|Col(name, typ, prio)| {
            json!({
                "name": name,
                "type": typ,
                "format": if name == "Name" { "name" } else { "" },
                "description": "",
                "priority": prio,
            })
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let object = match include {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
                }),
            };
            json!({"cells": cells(res, o), "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": defs,
        "rows": rows,
    })
}
