//! Per-kind rules applied on create and update, as the real registry strategies do:
//! defaulting, system metadata (uid, creationTimestamp, generation), status handling for
//! kinds with a status subresource, and the validations labs are likely to hit.

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::registry::Resource;
use crate::selector::LabelSelector;
use crate::status::ApiError;
use crate::util::{new_uid, now_rfc3339};

/// `v[key]` as a Value slot holding an object.
fn obj_mut_value<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    obj_mut(v, key);
    &mut v[key]
}

/// The object under `key` of `v`, created (replacing any non-object) when missing.
fn obj_mut<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    let slot = &mut v[key];
    if !slot.is_object() {
        *slot = json!({});
    }
    match slot {
        Value::Object(m) => m,
        _ => unreachable!("slot was just made an object"),
    }
}

fn default_str(m: &mut Map<String, Value>, key: &str, val: &str) {
    let set = m
        .get(key)
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    if !set {
        m.insert(key.into(), json!(val));
    }
}

fn default_val(m: &mut Map<String, Value>, key: &str, val: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.into(), val);
    }
}

fn pull_policy(image: &str) -> &'static str {
    let name = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    match name.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn probe_defaults(p: &mut Value) {
    if let Value::Object(m) = p {
        default_val(m, "timeoutSeconds", json!(1));
        default_val(m, "periodSeconds", json!(10));
        default_val(m, "successThreshold", json!(1));
        default_val(m, "failureThreshold", json!(3));
        if let Some(Value::Object(h)) = m.get_mut("httpGet") {
            default_str(h, "scheme", "HTTP");
        }
    }
}

fn container_defaults(c: &mut Value) {
    let image = c
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let Value::Object(m) = c else { return };
    default_str(m, "terminationMessagePath", "/dev/termination-log");
    default_str(m, "terminationMessagePolicy", "File");
    default_str(m, "imagePullPolicy", pull_policy(&image));
    default_val(m, "resources", json!({}));
    if let Some(Value::Array(ports)) = m.get_mut("ports") {
        for p in ports {
            if let Value::Object(pm) = p {
                default_str(pm, "protocol", "TCP");
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = m.get_mut(probe) {
            probe_defaults(p);
        }
    }
}

/// PodSpec defaulting (templates and pods).
fn pod_spec_defaults(spec: &mut Value, is_pod: bool) {
    let Value::Object(m) = spec else { return };
    default_str(m, "restartPolicy", "Always");
    default_str(m, "dnsPolicy", "ClusterFirst");
    default_str(m, "schedulerName", "default-scheduler");
    default_val(m, "terminationGracePeriodSeconds", json!(30));
    default_val(m, "securityContext", json!({}));
    for key in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = m.get_mut(key) {
            cs.iter_mut().for_each(container_defaults);
        }
    }
    if is_pod {
        default_str(m, "serviceAccountName", "default");
        default_str(m, "serviceAccount", "default");
        default_val(m, "enableServiceLinks", json!(true));
        default_str(m, "preemptionPolicy", "PreemptLowerPriority");
        default_val(m, "priority", json!(0));
        if !m.contains_key("tolerations") {
            m.insert(
                "tolerations".into(),
                json!([
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
                ]),
            );
        }
    }
}

fn validate_pod_spec(
    res: &Resource,
    name: &str,
    spec: Option<&Value>,
    field: &str,
) -> Result<(), ApiError> {
    let cs = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    let Some(cs) = cs.filter(|c| !c.is_empty()) else {
        return Err(ApiError::invalid(
            res,
            name,
            &format!("{field}.containers"),
            "Required value",
        ));
    };
    for (i, c) in cs.iter().enumerate() {
        if c.get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .is_empty()
        {
            return Err(ApiError::invalid(
                res,
                name,
                &format!("{field}.containers[{i}].name"),
                "Required value",
            ));
        }
        if c.get("image")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .is_empty()
        {
            return Err(ApiError::invalid(
                res,
                name,
                &format!("{field}.containers[{i}].image"),
                "Required value",
            ));
        }
    }
    Ok(())
}

fn validate_selector(res: &Resource, name: &str, obj: &Value) -> Result<(), ApiError> {
    let Some(sel) = obj.pointer("/spec/selector").filter(|s| s.is_object()) else {
        return Err(ApiError::invalid(
            res,
            name,
            "spec.selector",
            "Required value",
        ));
    };
    let selector = LabelSelector::from_object(sel);
    if selector.is_empty() {
        return Err(ApiError::invalid(
            res,
            name,
            "spec.selector",
            "Invalid value: \"null\": empty selector is invalid for deployment",
        ));
    }
    let template = json!({"metadata": {"labels": obj.pointer("/spec/template/metadata/labels").cloned().unwrap_or(json!({}))}});
    if !selector.matches(&template) {
        let labels = obj
            .pointer("/spec/template/metadata/labels")
            .cloned()
            .unwrap_or(json!({}));
        return Err(ApiError::invalid(
            res,
            name,
            "spec.template.metadata.labels",
            &format!("Invalid value: {labels}: `selector` does not match template `labels`"),
        ));
    }
    Ok(())
}

/// RFC 1123 subdomain check for names.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// Kind-specific defaults (idempotent; run on create and update).
pub fn defaults(res: &Resource, obj: &mut Value) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match res.kind {
        "Namespace" => {
            let labels = obj_mut(obj_mut_value(obj, "metadata"), "labels");
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
            let spec = obj_mut(obj, "spec");
            default_val(spec, "finalizers", json!(["kubernetes"]));
        }
        "Pod" => {
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec_defaults(spec, true);
            }
        }
        "Deployment" | "ReplicaSet" => {
            let spec = obj_mut(obj, "spec");
            default_val(spec, "replicas", json!(1));
            if res.kind == "Deployment" {
                default_val(spec, "revisionHistoryLimit", json!(10));
                default_val(spec, "progressDeadlineSeconds", json!(600));
                let strategy = spec.entry("strategy").or_insert(json!({}));
                if let Value::Object(st) = strategy {
                    default_str(st, "type", "RollingUpdate");
                    if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                        default_val(
                            st,
                            "rollingUpdate",
                            json!({"maxUnavailable": "25%", "maxSurge": "25%"}),
                        );
                    }
                }
            }
            if let Some(Value::Object(t)) = spec.get_mut("template") {
                let meta = t.entry("metadata").or_insert(json!({}));
                if let Value::Object(mm) = meta {
                    mm.entry("creationTimestamp").or_insert(Value::Null);
                }
                if let Some(ps) = t.get_mut("spec") {
                    pod_spec_defaults(ps, false);
                }
            }
        }
        "Service" => {
            let spec = obj_mut(obj, "spec");
            default_str(spec, "type", "ClusterIP");
            default_str(spec, "sessionAffinity", "None");
            if spec.get("type").and_then(Value::as_str) != Some("ExternalName") {
                default_val(spec, "ipFamilies", json!(["IPv4"]));
                default_str(spec, "ipFamilyPolicy", "SingleStack");
                default_str(spec, "internalTrafficPolicy", "Cluster");
            }
            if let Some(Value::Array(ports)) = spec.get_mut("ports") {
                for p in ports {
                    if let Value::Object(pm) = p {
                        default_str(pm, "protocol", "TCP");
                        if pm.get("targetPort").is_none_or(Value::is_null) {
                            let port = pm.get("port").cloned().unwrap_or(Value::Null);
                            pm.insert("targetPort".into(), port);
                        }
                    }
                }
            }
        }
        "Secret" => {
            if let Value::Object(m) = obj {
                default_str(m, "type", "Opaque");
                if let Some(Value::Object(sd)) = m.remove("stringData") {
                    let data = m.entry("data").or_insert(json!({}));
                    if let Value::Object(d) = data {
                        for (k, v) in sd {
                            let s = v.as_str().unwrap_or_default();
                            d.insert(
                                k,
                                json!(base64::engine::general_purpose::STANDARD.encode(s)),
                            );
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// Validation shared by create and update.
pub fn validate(res: &Resource, obj: &Value) -> Result<(), ApiError> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match res.kind {
        "Pod" => validate_pod_spec(res, name, obj.get("spec"), "spec"),
        "Deployment" | "ReplicaSet" => {
            validate_selector(res, name, obj)?;
            validate_pod_spec(
                res,
                name,
                obj.pointer("/spec/template/spec"),
                "spec.template.spec",
            )?;
            if obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                < 0
            {
                return Err(ApiError::invalid(
                    res,
                    name,
                    "spec.replicas",
                    "Invalid value: must be greater than or equal to 0",
                ));
            }
            Ok(())
        }
        "Service" => {
            let typ = obj
                .pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
            let ports = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            if ports == 0 && typ != "ExternalName" && !headless {
                return Err(ApiError::invalid(res, name, "spec.ports", "Required value"));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Prepares a new object for storage: system metadata, status reset, defaults, validation.
pub fn prepare_create(res: &Resource, obj: &mut Value) -> Result<(), ApiError> {
    let meta = obj_mut(obj, "metadata");
    for k in [
        "resourceVersion",
        "selfLink",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
    ] {
        meta.remove(k);
    }
    meta.insert("uid".into(), json!(new_uid()));
    meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
    if matches!(res.kind, "Deployment" | "ReplicaSet") {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    match res.kind {
        "Pod" => {
            let keep_phase = obj.pointer("/status/phase").is_some()
                && obj
                    .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
                    .is_some();
            if !keep_phase {
                obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
            }
        }
        "Deployment" | "ReplicaSet" => obj["status"] = json!({}),
        "Service" => obj["status"] = json!({"loadBalancer": {}}),
        "Namespace" => obj["status"] = json!({"phase": "Active"}),
        _ => {}
    }
    defaults(res, obj);
    validate(res, obj)
}

/// Prepares an update of `old` into `new`. `sub` is the subresource (`status`) if any.
pub fn prepare_update(
    res: &Resource,
    old: &Value,
    new: &mut Value,
    sub: Option<&str>,
) -> Result<(), ApiError> {
    if sub == Some("status") {
        let status = new.get("status").cloned().unwrap_or(json!({}));
        *new = old.clone();
        new["status"] = status;
        return Ok(());
    }
    {
        let meta = obj_mut(new, "metadata");
        for k in [
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "name",
            "namespace",
        ] {
            match old.pointer(&format!("/metadata/{k}")) {
                Some(v) => {
                    meta.insert(k.into(), v.clone());
                }
                None => {
                    meta.remove(k);
                }
            }
        }
        meta.remove("resourceVersion");
        meta.remove("managedFields");
    }
    if res.status {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Value::Object(m) = new {
                    m.remove("status");
                }
            }
        }
    }
    if res.kind == "Service" {
        let old_ip = old.pointer("/spec/clusterIP").cloned();
        let new_ip = new.pointer("/spec/clusterIP").cloned();
        match (old_ip, new_ip) {
            (Some(o), None) | (Some(o), Some(Value::Null)) => {
                obj_mut(new, "spec").insert("clusterIP".into(), o.clone());
                if let Some(ips) = old.pointer("/spec/clusterIPs") {
                    obj_mut(new, "spec").insert("clusterIPs".into(), ips.clone());
                }
            }
            (Some(o), Some(n)) if o != n && n != json!("") => {
                let name = old
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                return Err(ApiError::invalid(
                    res,
                    name,
                    "spec.clusterIPs[0]",
                    &format!("Invalid value: {n}: may not change once set"),
                ));
            }
            (Some(o), Some(_)) => {
                obj_mut(new, "spec").insert("clusterIP".into(), o);
            }
            _ => {}
        }
    }
    defaults(res, new);
    validate(res, new)?;
    if matches!(res.kind, "Deployment" | "ReplicaSet") && old.get("spec") != new.get("spec") {
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        obj_mut(new, "metadata").insert("generation".into(), json!(g + 1));
    }
    Ok(())
}
