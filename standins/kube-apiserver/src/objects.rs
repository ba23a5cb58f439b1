//! Objects in storage: JSON encoding under the real key layout, resourceVersion from
//! mod_revision, and storage failures turned into API errors. Used by the HTTP handlers
//! and the controller alike.

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::app::App;
use crate::log::{error, warning};
use crate::registry::Resource;
use crate::status::ApiError;
use crate::store::{Kv, StoreError};

/// `metadata.name`.
pub fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `metadata.namespace` (None when empty).
pub fn namespace_of(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Turns a storage failure into the API error the real server returns.
pub fn api_error(res: &Resource, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::Unreachable(m) => {
            warning!(
                "\"Timeout or abort while handling\" resource=\"{}\" name=\"{}\" err=\"{}\"",
                res.qualified(),
                name,
                m
            );
            ApiError::timeout()
        }
        StoreError::Answered(m) => {
            error!(
                "\"Unhandled Error\" resource=\"{}\" name=\"{}\" err=\"{}\"",
                res.qualified(),
                name,
                m
            );
            ApiError::internal(&m)
        }
        StoreError::AlreadyExists => ApiError::already_exists(res, name),
        StoreError::Conflict => ApiError::conflict(res, name),
        StoreError::NotFound => ApiError::not_found(res, name),
    }
}

/// Parses a stored value and stamps its resourceVersion.
pub fn decode(kv: &Kv) -> Option<Value> {
    let mut v: Value = serde_json::from_slice(&kv.value).ok()?;
    if !v.get("metadata").is_some_and(Value::is_object) {
        v["metadata"] = json!({});
    }
    v["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
    Some(v)
}

/// Serialises an object for storage (without resourceVersion, like the real server).
pub fn encode(obj: &Value) -> Vec<u8> {
    let mut o = obj.clone();
    if let Some(Value::Object(m)) = o.get_mut("metadata") {
        m.remove("resourceVersion");
    }
    serde_json::to_vec(&o).unwrap_or_default()
}

/// Reads one object; returns it with its mod_revision.
pub async fn get(
    app: &App,
    res: &Resource,
    ns: Option<&str>,
    name: &str,
    deadline: Instant,
) -> Result<(Value, i64), ApiError> {
    let key = res.key(&app.store.prefix, ns, name);
    match app.store.get(&key, deadline).await {
        Ok(Some(kv)) => match decode(&kv) {
            Some(v) => Ok((v, kv.mod_revision)),
            None => {
                error!("stored object at {key} is not JSON");
                Err(ApiError::internal(&format!(
                    "unable to decode the object stored at {key}"
                )))
            }
        },
        Ok(None) => Err(ApiError::not_found(res, name)),
        Err(e) => Err(api_error(res, name, e)),
    }
}

/// Lists objects of one namespace (or all); returns them with the store revision.
pub async fn list(
    app: &App,
    res: &Resource,
    ns: Option<&str>,
    deadline: Instant,
) -> Result<(Vec<Value>, i64), ApiError> {
    let prefix = res.list_prefix(&app.store.prefix, ns);
    let (kvs, rev) = app
        .store
        .list(&prefix, deadline)
        .await
        .map_err(|e| api_error(res, "", e))?;
    let mut out = Vec::with_capacity(kvs.len());
    for kv in &kvs {
        // services/specs vs services/endpoints, and nested prefixes: keep direct children.
        let rest = &kv.key[prefix.len()..];
        let depth_ok = if res.namespaced && ns.is_none() {
            rest.matches('/').count() == 1
        } else {
            !rest.contains('/')
        };
        if !depth_ok {
            continue;
        }
        match decode(kv) {
            Some(v) => out.push(v),
            None => warning!("skipping {}: stored value is not JSON", kv.key),
        }
    }
    Ok((out, rev))
}

/// Stores a new object as given; returns it with its resourceVersion.
pub async fn create(
    app: &App,
    res: &Resource,
    mut obj: Value,
    deadline: Instant,
) -> Result<Value, ApiError> {
    let name = name_of(&obj).to_string();
    let key = res.key(&app.store.prefix, namespace_of(&obj), &name);
    let rev = app
        .store
        .create(&key, encode(&obj), deadline)
        .await
        .map_err(|e| api_error(res, &name, e))?;
    obj["metadata"]["resourceVersion"] = json!(rev.to_string());
    Ok(obj)
}

/// Replaces an object stored at mod_revision `rev`; returns it with its new resourceVersion.
pub async fn update(
    app: &App,
    res: &Resource,
    mut obj: Value,
    rev: i64,
    deadline: Instant,
) -> Result<Value, ApiError> {
    let name = name_of(&obj).to_string();
    let key = res.key(&app.store.prefix, namespace_of(&obj), &name);
    let new_rev = app
        .store
        .update(&key, encode(&obj), rev, deadline)
        .await
        .map_err(|e| api_error(res, &name, e))?;
    obj["metadata"]["resourceVersion"] = json!(new_rev.to_string());
    Ok(obj)
}

/// Deletes an object (at mod_revision `rev` when given); returns the deleted object.
pub async fn delete(
    app: &App,
    res: &Resource,
    ns: Option<&str>,
    name: &str,
    rev: Option<i64>,
    deadline: Instant,
) -> Result<Value, ApiError> {
    let key = res.key(&app.store.prefix, ns, name);
    let kv = app
        .store
        .delete(&key, rev, deadline)
        .await
        .map_err(|e| api_error(res, name, e))?;
    Ok(decode(&kv).unwrap_or_else(|| json!({"metadata": {"name": name}})))
}
