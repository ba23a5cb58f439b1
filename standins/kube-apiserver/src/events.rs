//! Events the stand-in's controllers emit (ScalingReplicaSet, SuccessfulCreate, Scheduled,
//! NodeNotReady, ...), stored under /registry/events with a one-hour etcd lease like the
//! real --event-ttl, and logged in the real controllers' log shape.

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::controller::Ctl;
use crate::log::info;
use crate::objects::{self, name_of, namespace_of};
use crate::registry;
use crate::util::{new_uid, now_rfc3339};

/// Event lifetime in etcd (the real default --event-ttl).
const TTL_SECONDS: i64 = 3600;

/// Records an event about `obj` (a stored object with kind and apiVersion).
pub async fn record(
    ctl: &Ctl,
    obj: &Value,
    warning: bool,
    reason: &str,
    message: &str,
    component: &str,
) {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let typ = if warning { "Warning" } else { "Normal" };
    let ns = namespace_of(obj).unwrap_or("default").to_string();
    info!(
        "\"Event occurred\" object=\"{}{}\" fieldPath=\"\" kind=\"{kind}\" apiVersion=\"{}\" type=\"{typ}\" reason=\"{reason}\" message=\"{message}\"",
        namespace_of(obj).map(|n| format!("{n}/")).unwrap_or_default(),
        name_of(obj),
        obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default(),
    );
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    let now = now_rfc3339();
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": format!("{}.{:x}", name_of(obj), nanos as u64),
            "namespace": ns,
            "uid": new_uid(),
            "creationTimestamp": now,
        },
        "involvedObject": {
            "kind": kind,
            "namespace": namespace_of(obj),
            "name": name_of(obj),
            "uid": obj.pointer("/metadata/uid"),
            "apiVersion": obj.get("apiVersion"),
            "resourceVersion": obj.pointer("/metadata/resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "source": {"component": component},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "type": typ,
        "eventTime": null,
        "reportingComponent": component,
        "reportingInstance": "",
    });
    let Ok(res) = registry::by_kind("Event") else {
        return;
    };
    let key = res.key(&ctl.app.store.prefix, Some(&ns), name_of(&event));
    let deadline = Instant::now() + std::time::Duration::from_secs(3);
    // Events are best effort, as in Kubernetes.
    let _ = ctl
        .app
        .store
        .create_with_ttl(&key, objects::encode(&event), TTL_SECONDS, deadline)
        .await;
}
