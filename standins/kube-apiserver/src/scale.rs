//! The `scale` subresource of deployments and replica sets (autoscaling/v1 Scale), used by
//! `kubectl scale`.

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::api::{ns_of, read_modify_write, Target};
use crate::app::App;
use crate::http::{self, Ctx, Resp};
use crate::objects;
use crate::selector::LabelSelector;
use crate::status::ApiError;

/// The autoscaling/v1 Scale of a deployment or replica set.
pub fn scale_of(obj: &Value) -> Value {
    let sel = obj
        .pointer("/spec/selector")
        .map(LabelSelector::from_object)
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj.pointer("/metadata/name"),
            "namespace": obj.pointer("/metadata/namespace"),
            "uid": obj.pointer("/metadata/uid"),
            "resourceVersion": obj.pointer("/metadata/resourceVersion"),
            "creationTimestamp": obj.pointer("/metadata/creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": sel.render(),
        },
    })
}

pub async fn get(app: &App, t: &Target, name: &str, deadline: Instant) -> Result<Resp, ApiError> {
    let (obj, _) = objects::get(app, t.res, ns_of(t), name, deadline).await?;
    Ok(http::json(200, &scale_of(&obj)))
}

pub async fn set(
    app: &App,
    ctx: &Ctx,
    t: &Target,
    name: &str,
    replicas: i64,
    deadline: Instant,
) -> Result<Resp, ApiError> {
    let main = Target {
        sub: None,
        ..t.clone()
    };
    let obj = read_modify_write(app, ctx, &main, name, deadline, |old| {
        let mut new = old.clone();
        if let Some(Value::Object(m)) = new.get_mut("metadata") {
            m.remove("resourceVersion");
        }
        new["spec"]["replicas"] = json!(replicas);
        Ok(new)
    })
    .await?;
    Ok(http::json(200, &scale_of(&obj)))
}
