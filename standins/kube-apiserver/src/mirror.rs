//! Mirror pods: the API view of the static pods the kubelet stand-in runs on this node,
//! built from its status file (`--breakfix-pods-file`) and the pods' manifests, so
//! `kubectl get pods -n kube-system` shows etcd-controlplane and its restarts.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::controller::{same, Ctl};
use crate::log::info;
use crate::nodes;
use crate::objects::{name_of, namespace_of};
use crate::status::ApiError;
use crate::util::now_rfc3339;

#[derive(Debug, Deserialize)]
struct PodsFile {
    #[serde(default)]
    node: String,
    #[serde(default)]
    updated: String,
    #[serde(default)]
    pods: Vec<StaticPod>,
}

#[derive(Debug, Deserialize)]
struct StaticPod {
    name: String,
    #[serde(default = "kube_system")]
    namespace: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    manifest: String,
    #[serde(default)]
    phase: String,
    #[serde(default)]
    containers: Vec<Ctr>,
}

fn kube_system() -> String {
    "kube-system".into()
}

#[derive(Debug, Deserialize)]
struct Ctr {
    name: String,
    #[serde(default)]
    pid: Option<i64>,
    #[serde(default)]
    state: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    exit_code: Option<i64>,
    #[serde(default)]
    restart_count: i64,
    #[serde(default)]
    started_at: String,
    #[serde(default)]
    finished_at: String,
    #[serde(default)]
    image: String,
}

/// The manifest as JSON: the field is a path (usual) or the YAML itself.
fn manifest(m: &str) -> Option<Value> {
    let text = if m.starts_with('/') && !m.contains('\n') {
        std::fs::read_to_string(m).ok()?
    } else {
        m.to_string()
    };
    serde_saphyr::from_str::<Value>(&text)
        .ok()
        .filter(Value::is_object)
}

fn container_status(c: &Ctr, spec_image: &str) -> Value {
    let image = if c.image.is_empty() {
        spec_image
    } else {
        &c.image
    };
    let running = c.state == "running";
    let state = match c.state.as_str() {
        "running" => json!({"running": {"startedAt": c.started_at}}),
        "terminated" => {
            let mut t = json!({"exitCode": c.exit_code.unwrap_or(0),
                "reason": if c.reason.is_empty() { if c.exit_code.unwrap_or(0) == 0 { "Completed" } else { "Error" } } else { c.reason.as_str() }});
            if !c.started_at.is_empty() {
                t["startedAt"] = json!(c.started_at);
            }
            if !c.finished_at.is_empty() {
                t["finishedAt"] = json!(c.finished_at);
            }
            json!({ "terminated": t })
        }
        _ => {
            let mut w = json!({"reason": if c.reason.is_empty() { "ContainerCreating" } else { c.reason.as_str() }});
            if !c.message.is_empty() {
                w["message"] = json!(c.message);
            }
            json!({ "waiting": w })
        }
    };
    let mut s = json!({
        "name": c.name,
        "image": image,
        "imageID": "",
        "ready": running,
        "started": running,
        "restartCount": c.restart_count,
        "state": state,
        "lastState": {},
    });
    if let Some(pid) = c.pid.filter(|p| *p > 0) {
        s["containerID"] = json!(format!("standin://{pid}"));
    }
    if c.restart_count > 0 && c.state != "terminated" {
        let code = c.exit_code.unwrap_or(1);
        let mut t =
            json!({"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }});
        if !c.finished_at.is_empty() {
            t["finishedAt"] = json!(c.finished_at);
        }
        s["lastState"] = json!({ "terminated": t });
    }
    s
}

fn cond(typ: &str, ok: bool, now: &str, prev: Option<&Value>) -> Value {
    let status = if ok { "True" } else { "False" };
    let old = prev
        .and_then(|p| p.pointer("/status/conditions"))
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(typ))
        })
        .filter(|c| c.get("status").and_then(Value::as_str) == Some(status))
        .and_then(|c| c.get("lastTransitionTime").cloned());
    let mut c = json!({"type": typ, "status": status, "lastProbeTime": null,
        "lastTransitionTime": old.unwrap_or(json!(now))});
    if !ok && (typ == "Ready" || typ == "ContainersReady") {
        c["reason"] = json!("ContainersNotReady");
    }
    c
}

fn desired(
    p: &StaticPod,
    file: &PodsFile,
    node: &Value,
    addr: &str,
    prev: Option<&Value>,
) -> Value {
    let now = now_rfc3339();
    let m = manifest(&p.manifest).unwrap_or_else(|| json!({}));
    let mut spec = m.get("spec").cloned().unwrap_or_else(|| {
        json!({"containers": p.containers.iter().map(|c| json!({"name": c.name, "image": c.image})).collect::<Vec<_>>()})
    });
    spec["nodeName"] = json!(file.node);
    let mut annotations = m
        .pointer("/metadata/annotations")
        .cloned()
        .unwrap_or(json!({}));
    annotations["kubernetes.io/config.hash"] = json!(p.uid);
    annotations["kubernetes.io/config.mirror"] = json!(p.uid);
    annotations["kubernetes.io/config.source"] = json!("file");
    let seen = prev
        .and_then(|v| {
            v.pointer("/metadata/annotations/kubernetes.io~1config.seen")
                .cloned()
        })
        .unwrap_or(json!(file.updated));
    annotations["kubernetes.io/config.seen"] = seen;
    let spec_image = |name: &str| {
        spec.get("containers")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
            })
            .and_then(|c| c.get("image").and_then(Value::as_str))
            .unwrap_or_default()
            .to_string()
    };
    let statuses: Vec<Value> = p
        .containers
        .iter()
        .map(|c| container_status(c, &spec_image(&c.name)))
        .collect();
    let all_ready = !p.containers.is_empty() && p.containers.iter().all(|c| c.state == "running");
    let requests = spec
        .get("containers")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.pointer("/resources/requests").is_some())
        });
    let start = prev
        .and_then(|v| v.pointer("/status/startTime").cloned())
        .unwrap_or(json!(p
            .containers
            .first()
            .map(|c| c.started_at.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or(now.clone())));
    let phase = if p.phase.is_empty() {
        "Pending"
    } else {
        p.phase.as_str()
    };
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": p.name,
            "namespace": p.namespace,
            "labels": m.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": file.node,
                "uid": node.pointer("/metadata/uid").cloned().unwrap_or(json!("")), "controller": true}],
        },
        "spec": spec,
        "status": {
            "phase": phase,
            "conditions": [
                cond("PodReadyToStartContainers", true, &now, prev),
                cond("Initialized", true, &now, prev),
                cond("Ready", all_ready, &now, prev),
                cond("ContainersReady", all_ready, &now, prev),
                cond("PodScheduled", true, &now, prev),
            ],
            "hostIP": addr, "hostIPs": [{"ip": addr}],
            "podIP": addr, "podIPs": [{"ip": addr}],
            "startTime": start,
            "containerStatuses": statuses,
            "qosClass": if requests { "Burstable" } else { "BestEffort" },
        },
    });
    if let Some(prev) = prev {
        for k in ["uid", "creationTimestamp", "resourceVersion"] {
            if let Some(v) = prev.pointer(&format!("/metadata/{k}")) {
                pod["metadata"][k] = v.clone();
            }
        }
    }
    pod
}

/// Creates, updates and deletes mirror pods to match the status file. Without the file
/// (no kubelet stand-in) nothing changes.
pub async fn sync(ctl: &Ctl) -> Result<(), ApiError> {
    let Ok(bytes) = std::fs::read(&ctl.app.flags.pods_file) else {
        return Ok(());
    };
    let Ok(mut file) = serde_json::from_slice::<PodsFile>(&bytes) else {
        return Ok(());
    };
    if file.node.is_empty() {
        file.node = nodes::local_name(&ctl.app);
    }
    let node_list = ctl.list("Node").await?;
    let Some(node) = node_list.iter().find(|n| name_of(n) == file.node) else {
        return Ok(()); // the node registers first
    };
    let addr = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|x| x.get("type").and_then(Value::as_str) == Some("InternalIP"))
        })
        .and_then(|x| x.get("address").and_then(Value::as_str))
        .unwrap_or_default()
        .to_string();
    let pods = ctl.list("Pod").await?;
    let mine: Vec<&Value> = pods
        .iter()
        .filter(|p| {
            p.pointer("/metadata/annotations/kubernetes.io~1config.mirror")
                .is_some()
        })
        .filter(|p| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(file.node.as_str()))
        .collect();
    for sp in &file.pods {
        let prev = mine
            .iter()
            .find(|p| name_of(p) == sp.name && namespace_of(p) == Some(sp.namespace.as_str()))
            .copied();
        let want = desired(sp, &file, node, &addr, prev);
        match prev {
            None => {
                ctl.create("Pod", want).await?;
                info!("created mirror pod {}/{}", sp.namespace, sp.name);
            }
            Some(p) if !same(p, &want) => {
                ctl.update("Pod", want).await?;
            }
            Some(_) => {}
        }
    }
    for p in mine {
        let listed = file
            .pods
            .iter()
            .any(|sp| sp.name == name_of(p) && Some(sp.namespace.as_str()) == namespace_of(p));
        if !listed {
            ctl.delete("Pod", p).await?;
            info!(
                "deleted mirror pod {}/{}",
                namespace_of(p).unwrap_or_default(),
                name_of(p)
            );
        }
    }
    Ok(())
}
