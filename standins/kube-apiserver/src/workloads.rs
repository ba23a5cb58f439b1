//! Workload reconciliation (the stand-in's deployment, replica-set and scheduler logic):
//! Deployment -> ReplicaSet (`<deploy>-<hash>`) -> Pods (`<rs>-<rand>`) placed on schedulable
//! nodes, Pending for one round then Running/Ready (no containers actually run), status on
//! every level, and garbage collection of objects whose owner is gone.

use serde_json::{json, Value};

use crate::controller::{same, Ctl};
use crate::events;
use crate::log::info;
use crate::objects::{name_of, namespace_of};
use crate::registry;
use crate::scheduler::{internal_ip, Scheduler};
use crate::status::ApiError;
use crate::strategy;
use crate::table::node_status;
use crate::util::{now_rfc3339, parse_time, random_suffix, template_hash};

fn uid(o: &Value) -> &str {
    o.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The uid of the controlling owner of `kind`.
fn owner(o: &Value, kind: &str) -> Option<String> {
    o.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("kind").and_then(Value::as_str) == Some(kind))
        .and_then(|r| r.get("uid").and_then(Value::as_str))
        .map(String::from)
}

fn owner_ref(o: &Value, kind: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": kind, "name": name_of(o), "uid": uid(o),
        "controller": true, "blockOwnerDeletion": true})
}

fn replicas(o: &Value) -> i64 {
    o.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn deleting(o: &Value) -> bool {
    o.pointer("/metadata/deletionTimestamp").is_some()
}

fn is_mirror(p: &Value) -> bool {
    p.pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_some()
}

fn pod_ready(p: &Value) -> bool {
    p.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

fn revision(o: &Value) -> i64 {
    o.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn same_ns(a: &Value, b: &Value) -> bool {
    namespace_of(a) == namespace_of(b)
}

/// Deployment -> ReplicaSets: the current template's RS scaled to spec.replicas, older
/// ones scaled to 0 once the new one is ready.
async fn deployments(ctl: &Ctl, deps: &[Value], rss: &[Value]) -> Result<(), ApiError> {
    for d in deps.iter().filter(|d| !deleting(d)) {
        let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let hash = template_hash(&serde_json::to_vec(&template).unwrap_or_default());
        let rs_name = format!("{}-{hash}", name_of(d));
        let owned: Vec<&Value> = rss
            .iter()
            .filter(|r| same_ns(r, d) && owner(r, "Deployment").as_deref() == Some(uid(d)))
            .collect();
        let want = replicas(d);
        let current = owned.iter().find(|r| name_of(r) == rs_name).copied();
        let rev = match current {
            Some(r) => revision(r),
            None => owned.iter().map(|r| revision(r)).max().unwrap_or(0) + 1,
        };
        match current {
            None => {
                let mut tpl = template.clone();
                tpl["metadata"]["labels"]["pod-template-hash"] = json!(hash);
                let mut selector = d.pointer("/spec/selector").cloned().unwrap_or(json!({}));
                selector["matchLabels"]["pod-template-hash"] = json!(hash);
                let rs = json!({
                    "metadata": {
                        "name": rs_name,
                        "namespace": namespace_of(d),
                        "labels": tpl.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
                        "annotations": {
                            "deployment.kubernetes.io/desired-replicas": want.to_string(),
                            "deployment.kubernetes.io/max-replicas": (want + (want + 3) / 4).to_string(),
                            "deployment.kubernetes.io/revision": rev.to_string(),
                        },
                        "ownerReferences": [owner_ref(d, "Deployment")],
                        "generation": 1,
                    },
                    "spec": {"replicas": want, "selector": selector, "template": tpl},
                    "status": {"replicas": 0},
                });
                match ctl.create("ReplicaSet", rs).await {
                    Ok(_) => {
                        events::record(
                            ctl,
                            d,
                            false,
                            "ScalingReplicaSet",
                            &format!("Scaled up replica set {rs_name} from 0 to {want}"),
                            "deployment-controller",
                        )
                        .await
                    }
                    Err(e) if e.code == 409 => {}
                    Err(e) => return Err(e),
                }
            }
            Some(r) if replicas(r) != want => {
                let mut r2 = r.clone();
                r2["spec"]["replicas"] = json!(want);
                r2["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] =
                    json!(want.to_string());
                bump_generation(&mut r2);
                ctl.update("ReplicaSet", r2).await?;
                let verb = if want > replicas(r) { "up" } else { "down" };
                events::record(
                    ctl,
                    d,
                    false,
                    "ScalingReplicaSet",
                    &format!(
                        "Scaled {verb} replica set {rs_name} from {} to {want}",
                        replicas(r)
                    ),
                    "deployment-controller",
                )
                .await;
            }
            Some(_) => {}
        }
        let new_ready = current
            .and_then(|r| r.pointer("/status/readyReplicas").and_then(Value::as_i64))
            .unwrap_or(0);
        if new_ready >= want {
            for old in owned
                .iter()
                .filter(|r| name_of(r) != rs_name && replicas(r) != 0)
            {
                let mut o2 = (*old).clone();
                o2["spec"]["replicas"] = json!(0);
                bump_generation(&mut o2);
                ctl.update("ReplicaSet", o2).await?;
                events::record(
                    ctl,
                    d,
                    false,
                    "ScalingReplicaSet",
                    &format!(
                        "Scaled down replica set {} from {} to 0",
                        name_of(old),
                        replicas(old)
                    ),
                    "deployment-controller",
                )
                .await;
            }
        }
        if revision(d) != rev {
            let mut d2 = d.clone();
            d2["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                json!(rev.to_string());
            ctl.update("Deployment", d2).await?;
        }
    }
    Ok(())
}

fn bump_generation(o: &mut Value) {
    let g = o
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    o["metadata"]["generation"] = json!(g + 1);
}

/// ReplicaSet -> Pods: create or delete pods to match spec.replicas; write RS status.
async fn replica_sets(
    ctl: &Ctl,
    rss: &[Value],
    deps: &[Value],
    pods: &[Value],
    sched: &mut Scheduler<'_>,
) -> Result<(), ApiError> {
    for rs in rss {
        if let Some(dep_uid) = owner(rs, "Deployment") {
            if !deps.iter().any(|d| uid(d) == dep_uid) {
                ctl.delete("ReplicaSet", rs).await?;
                info!(
                    "garbage collected replicaset {}/{}",
                    namespace_of(rs).unwrap_or_default(),
                    name_of(rs)
                );
                continue;
            }
        }
        let owned: Vec<&Value> = pods
            .iter()
            .filter(|p| {
                same_ns(p, rs) && owner(p, "ReplicaSet").as_deref() == Some(uid(rs)) && !deleting(p)
            })
            .collect();
        let want = replicas(rs);
        let have = owned.len() as i64;
        if have < want {
            for _ in have..want {
                let pod = new_pod(rs, sched);
                let name = name_of(&pod).to_string();
                let created = ctl.create("Pod", pod).await?;
                events::record(
                    ctl,
                    rs,
                    false,
                    "SuccessfulCreate",
                    &format!("Created pod: {name}"),
                    "replicaset-controller",
                )
                .await;
                scheduled_event(ctl, &created).await;
            }
        } else if have > want {
            let mut victims = owned.clone();
            victims.sort_by_key(|p| {
                (
                    pod_ready(p),
                    std::cmp::Reverse(
                        p.pointer("/metadata/creationTimestamp")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    ),
                )
            });
            for p in victims.into_iter().take((have - want) as usize) {
                ctl.delete("Pod", p).await?;
                events::record(
                    ctl,
                    rs,
                    false,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {}", name_of(p)),
                    "replicaset-controller",
                )
                .await;
            }
        }
        let ready = owned.iter().filter(|p| pod_ready(p)).count() as i64;
        let mut status = json!({
            "replicas": have.min(want.max(have)),
            "fullyLabeledReplicas": have,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1),
        });
        if let Value::Object(m) = &mut status {
            m.retain(|k, v| k == "replicas" || k == "observedGeneration" || v.as_i64() != Some(0));
        }
        if rs.get("status") != Some(&status) {
            let mut r2 = rs.clone();
            r2["status"] = status;
            ctl.update("ReplicaSet", r2).await?;
        }
    }
    Ok(())
}

/// The scheduler's event for a pod just bound (Scheduled) or found unschedulable.
async fn scheduled_event(ctl: &Ctl, pod: &Value) {
    match pod.pointer("/spec/nodeName").and_then(Value::as_str) {
        Some(node) if !node.is_empty() => {
            let msg = format!(
                "Successfully assigned {}/{} to {node}",
                namespace_of(pod).unwrap_or_default(),
                name_of(pod)
            );
            events::record(ctl, pod, false, "Scheduled", &msg, "default-scheduler").await
        }
        _ => {
            let msg = pod
                .pointer("/status/conditions/0/message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            events::record(
                ctl,
                pod,
                true,
                "FailedScheduling",
                &msg,
                "default-scheduler",
            )
            .await
        }
    }
}

/// A new Pending pod from a ReplicaSet's template, already bound to a node when one fits.
fn new_pod(rs: &Value, sched: &mut Scheduler<'_>) -> Value {
    let tpl = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut spec = tpl.get("spec").cloned().unwrap_or(json!({}));
    let mut pod = json!({
        "metadata": {
            "name": format!("{}-{}", name_of(rs), random_suffix(5)),
            "generateName": format!("{}-", name_of(rs)),
            "namespace": namespace_of(rs),
            "labels": tpl.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
            "ownerReferences": [owner_ref(rs, "ReplicaSet")],
        },
        "spec": spec.clone(),
    });
    if let Some(a) = tpl.pointer("/metadata/annotations") {
        pod["metadata"]["annotations"] = a.clone();
    }
    if let Ok(r) = registry::by_kind("Pod") {
        strategy::defaults(r, &mut pod);
    }
    spec = pod["spec"].clone();
    pod["status"] = match sched.pick(&spec) {
        Some(node) => {
            pod["spec"]["nodeName"] = json!(node);
            pending_status(&spec, true, "")
        }
        None => pending_status(&spec, false, &sched.unschedulable_message()),
    };
    pod
}

fn pending_status(spec: &Value, scheduled: bool, why: &str) -> Value {
    let now = now_rfc3339();
    if !scheduled {
        return json!({"phase": "Pending", "qosClass": qos(spec), "conditions": [
            {"type": "PodScheduled", "status": "False", "lastProbeTime": null, "lastTransitionTime": now,
             "reason": "Unschedulable", "message": why}]});
    }
    let waiting: Vec<Value> = containers(spec)
        .iter()
        .map(|c| json!({"name": c.get("name"), "image": c.get("image"), "imageID": "", "ready": false,
            "started": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}}))
        .collect();
    json!({"phase": "Pending", "qosClass": qos(spec), "conditions": [
        {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}],
        "containerStatuses": waiting})
}

fn containers(spec: &Value) -> Vec<Value> {
    spec.get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn qos(spec: &Value) -> &'static str {
    if containers(spec).iter().any(|c| {
        c.pointer("/resources/requests").is_some() || c.pointer("/resources/limits").is_some()
    }) {
        "Burstable"
    } else {
        "BestEffort"
    }
}

fn running_status(pod: &Value, host_ip: &str, pod_ip: &str) -> Value {
    let now = now_rfc3339();
    let spec = pod.get("spec").cloned().unwrap_or(json!({}));
    let scheduled_at = pod
        .pointer("/status/conditions/0/lastTransitionTime")
        .cloned()
        .unwrap_or(json!(now));
    let statuses: Vec<Value> = containers(&spec)
        .iter()
        .map(|c| {
            json!({"name": c.get("name"), "image": c.get("image"), "imageID": "",
            "containerID": format!("standin://{}", random_suffix(12)),
            "ready": true, "started": true, "restartCount": 0,
            "state": {"running": {"startedAt": now}}, "lastState": {}})
        })
        .collect();
    let c = |t: &str, at: &Value| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": at});
    let now_v = json!(now);
    json!({
        "phase": "Running",
        "conditions": [c("PodReadyToStartContainers", &now_v), c("Initialized", &scheduled_at),
            c("Ready", &now_v), c("ContainersReady", &now_v), c("PodScheduled", &scheduled_at)],
        "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
        "startTime": pod.pointer("/metadata/creationTimestamp").cloned().unwrap_or(json!(now)),
        "containerStatuses": statuses,
        "qosClass": qos(&spec),
    })
}

/// Binds unscheduled pods and starts Pending ones (after one round), including bare pods;
/// deletes pods whose ReplicaSet is gone.
async fn pods_round(
    ctl: &Ctl,
    pods: &[Value],
    rss: &[Value],
    sched: &mut Scheduler<'_>,
) -> Result<(), ApiError> {
    let now = time::OffsetDateTime::now_utc();
    for p in pods.iter().filter(|p| !is_mirror(p) && !deleting(p)) {
        if let Some(rs_uid) = owner(p, "ReplicaSet") {
            if !rss.iter().any(|r| uid(r) == rs_uid) {
                ctl.delete("Pod", p).await?;
                info!(
                    "garbage collected pod {}/{}",
                    namespace_of(p).unwrap_or_default(),
                    name_of(p)
                );
                continue;
            }
        }
        let phase = p
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("Pending");
        if phase != "Pending" {
            continue;
        }
        let spec = p.get("spec").cloned().unwrap_or(json!({}));
        let node = p
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if node.is_empty() {
            let mut p2 = p.clone();
            match sched.pick(&spec) {
                Some(n) => {
                    p2["spec"]["nodeName"] = json!(n);
                    p2["status"] = pending_status(&spec, true, "");
                    info!(
                        "\"Successfully bound pod to node\" pod=\"{}/{}\" node=\"{n}\"",
                        namespace_of(p).unwrap_or_default(),
                        name_of(p)
                    );
                }
                None => p2["status"] = pending_status(&spec, false, &sched.unschedulable_message()),
            }
            if !same(p, &p2) && !conditions_only_time_differs(p, &p2) {
                let updated = ctl.update("Pod", p2).await?;
                scheduled_event(ctl, &updated).await;
            }
            continue;
        }
        let age = p
            .pointer("/status/conditions/0/lastTransitionTime")
            .or_else(|| p.pointer("/metadata/creationTimestamp"))
            .and_then(Value::as_str)
            .and_then(parse_time)
            .map(|t| (now - t).whole_seconds())
            .unwrap_or(10);
        if age < 1 {
            continue;
        }
        let Some(n) = sched.nodes.iter().find(|x| name_of(x) == node) else {
            continue;
        };
        if node_status(n) != "Ready" {
            continue;
        }
        let host_ip = internal_ip(n);
        let pod_ip = if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
            host_ip.clone()
        } else {
            sched.pod_ip(&node)
        };
        let mut p2 = p.clone();
        p2["status"] = running_status(p, &host_ip, &pod_ip);
        ctl.update("Pod", p2).await?;
    }
    Ok(())
}

fn conditions_only_time_differs(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(Value::Array(cs)) = v.pointer_mut("/status/conditions") {
            for c in cs {
                if let Value::Object(m) = c {
                    m.remove("lastTransitionTime");
                }
            }
        }
        v
    };
    same(&strip(a), &strip(b))
}

fn dep_condition(
    typ: &str,
    ok: bool,
    reason: &str,
    message: &str,
    prev: &Value,
    now: &str,
) -> Value {
    let status = if ok { "True" } else { "False" };
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
    let update = old
        .filter(|c| {
            c.get("status").and_then(Value::as_str) == Some(status)
                && c.get("reason").and_then(Value::as_str) == Some(reason)
        })
        .and_then(|c| c.get("lastUpdateTime").cloned())
        .unwrap_or(json!(now));
    json!({"type": typ, "status": status, "lastUpdateTime": update, "lastTransitionTime": transition,
        "reason": reason, "message": message})
}

/// Deployment status from its ReplicaSets' pods.
async fn deployment_status(
    ctl: &Ctl,
    deps: &[Value],
    rss: &[Value],
    pods: &[Value],
) -> Result<(), ApiError> {
    let now = now_rfc3339();
    for d in deps.iter().filter(|d| !deleting(d)) {
        let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let hash = template_hash(&serde_json::to_vec(&template).unwrap_or_default());
        let rs_name = format!("{}-{hash}", name_of(d));
        let owned: Vec<&Value> = rss
            .iter()
            .filter(|r| same_ns(r, d) && owner(r, "Deployment").as_deref() == Some(uid(d)))
            .collect();
        let pods_of = |r: &Value| -> Vec<&Value> {
            pods.iter()
                .filter(|p| {
                    same_ns(p, r)
                        && owner(p, "ReplicaSet").as_deref() == Some(uid(r))
                        && !deleting(p)
                })
                .collect()
        };
        let all: Vec<&Value> = owned.iter().flat_map(|r| pods_of(r)).collect();
        let updated = owned
            .iter()
            .find(|r| name_of(r) == rs_name)
            .map(|r| pods_of(r).len())
            .unwrap_or(0) as i64;
        let ready = all.iter().filter(|p| pod_ready(p)).count() as i64;
        let want = replicas(d);
        let total = all.len() as i64;
        let available_ok = ready >= want - (want / 4);
        let progressed = updated == want && ready >= want && total == want;
        let mut status = json!({
            "observedGeneration": d.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1),
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": (want - ready).max(0),
            "conditions": [
                if available_ok {
                    dep_condition("Available", true, "MinimumReplicasAvailable", "Deployment has minimum availability.", d, &now)
                } else {
                    dep_condition("Available", false, "MinimumReplicasUnavailable", "Deployment does not have minimum availability.", d, &now)
                },
                if progressed {
                    dep_condition("Progressing", true, "NewReplicaSetAvailable", &format!("ReplicaSet \"{rs_name}\" has successfully progressed."), d, &now)
                } else {
                    dep_condition("Progressing", true, "ReplicaSetUpdated", &format!("ReplicaSet \"{rs_name}\" is progressing."), d, &now)
                },
            ],
        });
        if let Value::Object(m) = &mut status {
            m.retain(|k, v| {
                !(matches!(
                    k.as_str(),
                    "readyReplicas"
                        | "availableReplicas"
                        | "unavailableReplicas"
                        | "updatedReplicas"
                        | "replicas"
                ) && v.as_i64() == Some(0))
            });
        }
        if d.get("status") != Some(&status) {
            let mut d2 = d.clone();
            d2["status"] = status;
            ctl.update("Deployment", d2).await?;
        }
    }
    Ok(())
}

/// One reconciliation round over all namespaces.
pub async fn reconcile(ctl: &Ctl) -> Result<(), ApiError> {
    let nodes = ctl.list("Node").await?;
    let deps = ctl.list("Deployment").await?;
    let rss = ctl.list("ReplicaSet").await?;
    deployments(ctl, &deps, &rss).await?;
    let rss = ctl.list("ReplicaSet").await?;
    let pods = ctl.list("Pod").await?;
    let mut sched = Scheduler::new(&nodes, &pods);
    replica_sets(ctl, &rss, &deps, &pods, &mut sched).await?;
    let pods = ctl.list("Pod").await?;
    pods_round(ctl, &pods, &rss, &mut sched).await?;
    let deps = ctl.list("Deployment").await?;
    let rss = ctl.list("ReplicaSet").await?;
    let pods = ctl.list("Pod").await?;
    replica_sets(ctl, &rss, &deps, &pods, &mut Scheduler::new(&nodes, &pods)).await?;
    let rss = ctl.list("ReplicaSet").await?;
    deployment_status(ctl, &deps, &rss, &pods).await
}
