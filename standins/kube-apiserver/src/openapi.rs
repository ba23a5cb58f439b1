//! A minimal OpenAPI v3 index and per-group-version documents: enough for client-side
//! `kubectl apply` to find each kind's PATCH operation and hand validation to the server.

use serde_json::{json, Map, Value};

use crate::flags::K8S_VERSION;
use crate::registry::RESOURCES;

const HASH: &str = "B4A7F0C2BREAKFIXSTANDIN";

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`.
pub fn index() -> Value {
    let mut paths = Map::new();
    for r in RESOURCES {
        let p = gv_path(r.group, r.version);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={HASH}")}),
        );
    }
    json!({ "paths": paths })
}

/// `/openapi/v3/<gv path>`, if served.
pub fn document(gv: &str) -> Option<Value> {
    let mut paths = Map::new();
    for r in RESOURCES
        .iter()
        .filter(|r| gv_path(r.group, r.version) == gv)
    {
        let base = if r.namespaced {
            format!("/{gv}/namespaces/{{namespace}}/{}/{{name}}", r.name)
        } else {
            format!("/{gv}/{}/{{name}}", r.name)
        };
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let op = json!({
            "x-kubernetes-group-version-kind": gvk,
            "x-kubernetes-action": "patch",
            "parameters": [
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                {"name": "dryRun", "in": "query", "schema": {"type": "string"}}
            ],
            "responses": {"200": {"description": "OK"}},
        });
        paths.insert(base, json!({ "patch": op }));
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": K8S_VERSION},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
