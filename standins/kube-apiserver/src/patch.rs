//! PATCH bodies: JSON merge patch (RFC 7386), strategic merge patch (kubectl apply, edit,
//! label, scale: lists merged by their Kubernetes merge key, `$patch` directives) and JSON
//! patch (RFC 6902, `kubectl patch --type=json`).

use serde_json::{Map, Value};

/// RFC 7386 merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// The merge key of a list field, as in the Kubernetes types' `patchMergeKey` tags.
fn merge_key(field: &str, sample: &Value) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "addresses" => "type",
        "ports" => {
            if sample.get("containerPort").is_some() {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

/// Primitive lists Kubernetes merges instead of replacing.
fn merges_primitives(field: &str) -> bool {
    matches!(field, "finalizers")
}

/// Strategic merge patch of `patch` into `target`.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut m = p.clone();
            m.remove("$patch");
            *target = Value::Object(strip_directives(m));
            return;
        }
        Some("delete") => {
            *target = Value::Null;
            return;
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if k.starts_with('$') {
            if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
                if let (Some(Value::Array(cur)), Value::Array(del)) = (t.get_mut(field), v) {
                    cur.retain(|x| !del.contains(x));
                }
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match v {
            Value::Object(_) => {
                let slot = t.entry(k.clone()).or_insert(Value::Null);
                strategic_merge(slot, v);
                if slot.is_null() {
                    t.remove(k);
                }
            }
            Value::Array(items) => {
                let cur = t.get(k).and_then(Value::as_array).cloned();
                let merged = merge_list(k, cur, items);
                t.insert(k.clone(), Value::Array(merged));
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
}

fn strip_directives(m: Map<String, Value>) -> Map<String, Value> {
    m.into_iter().filter(|(k, _)| !k.starts_with('$')).collect()
}

fn merge_list(field: &str, cur: Option<Vec<Value>>, patch: &[Value]) -> Vec<Value> {
    let sample = patch
        .iter()
        .find(|v| v.is_object())
        .cloned()
        .unwrap_or(Value::Null);
    let key = merge_key(field, &sample);
    match (key, cur) {
        (Some(key), Some(mut cur)) if sample.is_object() => {
            for item in patch {
                let Some(id) = item.get(key) else {
                    continue;
                };
                let pos = cur.iter().position(|c| c.get(key) == Some(id));
                let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                match (pos, delete) {
                    (Some(i), true) => {
                        cur.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => strategic_merge(&mut cur[i], item),
                    (None, false) => {
                        let mut fresh = Value::Null;
                        strategic_merge(&mut fresh, item);
                        cur.push(fresh);
                    }
                }
            }
            cur
        }
        (None, Some(mut cur)) if merges_primitives(field) => {
            for item in patch {
                if !cur.contains(item) {
                    cur.push(item.clone());
                }
            }
            cur
        }
        _ => patch
            .iter()
            .filter(|i| i.get("$patch").and_then(Value::as_str) != Some("delete"))
            .map(|i| {
                let mut fresh = Value::Null;
                strategic_merge(&mut fresh, i);
                fresh
            })
            .collect(),
    }
}

fn unescape(seg: &str) -> String {
    seg.replace("~1", "/").replace("~0", "~")
}

/// RFC 6902 JSON patch (add, remove, replace, test, copy, move).
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("json patch must be an array of operations")?;
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or_default();
        let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "add" | "replace" => {
                let v = op.get("value").cloned().ok_or("missing value")?;
                set(target, path, v, kind == "add")?;
            }
            "remove" => {
                remove(target, path)?;
            }
            "test" => {
                if target.pointer(path) != op.get("value") {
                    return Err(format!("testing value {path} failed"));
                }
            }
            "copy" | "move" => {
                let from = op.get("from").and_then(Value::as_str).unwrap_or_default();
                let v = target
                    .pointer(from)
                    .cloned()
                    .ok_or_else(|| format!("missing value at {from}"))?;
                if kind == "move" {
                    remove(target, from)?;
                }
                set(target, path, v, true)?;
            }
            other => return Err(format!("unexpected kind of patch operation: {other:?}")),
        }
    }
    Ok(())
}

fn split(path: &str) -> Result<(String, String), String> {
    let i = path
        .rfind('/')
        .ok_or_else(|| format!("invalid path {path:?}"))?;
    Ok((path[..i].to_string(), unescape(&path[i + 1..])))
}

fn set(target: &mut Value, path: &str, v: Value, add: bool) -> Result<(), String> {
    if path.is_empty() {
        *target = v;
        return Ok(());
    }
    let (parent, last) = split(path)?;
    let p = target
        .pointer_mut(&parent)
        .ok_or_else(|| format!("add operation does not apply: doc is missing path: {parent:?}"))?;
    match p {
        Value::Object(m) => {
            if !add && !m.contains_key(&last) {
                return Err(format!(
                    "replace operation does not apply: doc is missing key: {path}"
                ));
            }
            m.insert(last, v);
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(v);
            } else {
                let i: usize = last
                    .parse()
                    .map_err(|_| format!("invalid index {last:?}"))?;
                if add && i <= a.len() {
                    a.insert(i, v);
                } else if !add && i < a.len() {
                    a[i] = v;
                } else {
                    return Err(format!("index {i} out of bounds"));
                }
            }
        }
        _ => return Err(format!("path {parent:?} is not a container")),
    }
    Ok(())
}

fn remove(target: &mut Value, path: &str) -> Result<(), String> {
    let (parent, last) = split(path)?;
    let p = target
        .pointer_mut(&parent)
        .ok_or_else(|| format!("remove operation does not apply: doc is missing path: {path:?}"))?;
    let removed = match p {
        Value::Object(m) => m.remove(&last).is_some(),
        Value::Array(a) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    };
    if removed {
        Ok(())
    } else {
        Err(format!(
            "remove operation does not apply: doc is missing path: {path:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_containers_by_name() {
        let mut t = json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [
            {"name": "app", "image": "nginx:1.21", "ports": [{"containerPort": 80}]},
            {"name": "side", "image": "busybox"}
        ]}}}});
        let p = json!({"spec": {"replicas": 5, "template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "side"}],
            "containers": [{"name": "app", "image": "nginx:1.22"}, {"name": "side", "$patch": "delete"}]
        }}}});
        strategic_merge(&mut t, &p);
        assert_eq!(
            t,
            json!({"spec": {"replicas": 5, "template": {"spec": {"containers": [
                {"name": "app", "image": "nginx:1.22", "ports": [{"containerPort": 80}]}
            ]}}}})
        );
    }

    #[test]
    fn merge_patch_nulls_delete() {
        let mut t = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        merge_patch(
            &mut t,
            &json!({"metadata": {"labels": {"a": null, "c": "3"}}}),
        );
        assert_eq!(t, json!({"metadata": {"labels": {"b": "2", "c": "3"}}}));
    }

    #[test]
    fn json_patch_ops() {
        let mut t = json!({"spec": {"replicas": 1, "list": [1, 2]}});
        let ops = json!([
            {"op": "replace", "path": "/spec/replicas", "value": 4},
            {"op": "add", "path": "/spec/list/-", "value": 3},
            {"op": "remove", "path": "/spec/list/0"}
        ]);
        assert!(json_patch(&mut t, &ops).is_ok());
        assert_eq!(t, json!({"spec": {"replicas": 4, "list": [2, 3]}}));
    }
}
