//! Resource requests: path parsing (`/api/v1/namespaces/<ns>/<resource>/<name>/<sub>`) and
//! the verbs get, list, watch, create, update, patch, delete and deletecollection, plus the
//! scale and log subresources and computed componentstatuses.

use std::sync::Arc;

use hyper::Method;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::app::App;
use crate::http::{self, Ctx, Resp};
use crate::objects::{self, name_of};
use crate::patch;
use crate::protobuf;
use crate::registry::{self, Resource, RESOURCES};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{self, ApiError};
use crate::strategy;
use crate::table;
use crate::util::random_suffix;
use crate::watch;
use crate::{componentstatus, podlogs, scale, services};

/// What a resource path addresses.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resource.
    pub res: &'static Resource,
    /// Namespace from the path.
    pub ns: Option<String>,
    /// Object name, if the path names one.
    pub name: Option<String>,
    /// Subresource (`status`, `scale`, `log`).
    pub sub: Option<String>,
}

/// Parses the part after `/api/v1` or `/apis/<group>/<version>`; `None` if not served.
pub fn parse_target(group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let find = |n: &str| registry::find(group, version, n);
    let t = |res, ns: Option<&str>, name: Option<&str>, sub: Option<&str>| Target {
        res,
        ns: ns.map(String::from),
        name: name.map(String::from),
        sub: sub.map(String::from),
    };
    match rest {
        ["namespaces", ns, plural, tail @ ..] if group.is_empty() || find(plural).is_some() => {
            if let Some(res) = find(plural).filter(|r| r.namespaced) {
                return match tail {
                    [] => Some(t(res, Some(ns), None, None)),
                    [name] => Some(t(res, Some(ns), Some(name), None)),
                    [name, sub] => Some(t(res, Some(ns), Some(name), Some(sub))),
                    _ => None,
                };
            }
            // /api/v1/namespaces/<name>/<sub> (status, finalize)
            match (group, tail) {
                ("", []) => Some(t(find("namespaces")?, None, Some(ns), Some(plural))),
                _ => None,
            }
        }
        [plural] => Some(t(find(plural)?, None, None, None)),
        [plural, name] => {
            let res = find(plural)?;
            (!res.namespaced).then(|| t(res, None, Some(name), None))
        }
        [plural, name, sub] => {
            let res = find(plural)?;
            (!res.namespaced).then(|| t(res, None, Some(name), Some(sub)))
        }
        _ => None,
    }
}

/// Handles one resource request.
pub async fn handle(app: &Arc<App>, ctx: &Ctx, t: Target) -> Resp {
    match dispatch(app, ctx, &t).await {
        Ok(r) => r,
        Err(e) => http::error(&e),
    }
}

async fn dispatch(app: &Arc<App>, ctx: &Ctx, t: &Target) -> Result<Resp, ApiError> {
    let sub = t.sub.as_deref();
    if let Some(s) = sub {
        let ok = match s {
            "status" => t.res.status,
            "scale" => t.res.scale,
            "log" => t.res.name == "pods",
            "finalize" => t.res.name == "namespaces",
            _ => false,
        };
        if !ok {
            return Err(ApiError::path_not_found());
        }
    }
    if t.res.computed {
        return match (&ctx.method, &t.name) {
            (&Method::GET, None) => componentstatus::serve(app, ctx, None),
            (&Method::GET, Some(n)) => componentstatus::serve(app, ctx, Some(n)),
            _ => Err(ApiError::method_not_allowed()),
        };
    }
    if t.res.namespaced && t.ns.is_none() && ctx.method != Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    let deadline = app.store.deadline(ctx.timeout());
    match (&ctx.method, &t.name) {
        (&Method::GET, None) if ctx.query.flag("watch") => watch::serve(app, ctx, t).await,
        (&Method::GET, None) => list(app, ctx, t, deadline).await,
        (&Method::GET, Some(name)) => match sub {
            Some("scale") => scale::get(app, t, name, deadline).await,
            Some("log") => podlogs::get(app, ctx, t, name, deadline).await,
            _ => get(app, ctx, t, name, deadline).await,
        },
        (&Method::POST, None) => create(app, ctx, t, deadline).await,
        (&Method::PUT, Some(name)) => update(app, ctx, t, name, deadline).await,
        (&Method::PATCH, Some(name)) => patch_obj(app, ctx, t, name, deadline).await,
        (&Method::DELETE, Some(name)) if sub.is_none() => delete(app, ctx, t, name, deadline).await,
        (&Method::DELETE, None) => delete_collection(app, ctx, t, deadline).await,
        _ => Err(ApiError::method_not_allowed()),
    }
}

pub(crate) fn ns_of(t: &Target) -> Option<&str> {
    if t.res.namespaced {
        t.ns.as_deref()
    } else {
        None
    }
}

/// Parses a request body by Content-Type (JSON, YAML, protobuf).
pub(crate) fn decode_body(ctx: &Ctx) -> Result<Value, ApiError> {
    let ct = ctx.content_type();
    let v: Value = match ct.as_str() {
        ""
        | "application/json"
        | "application/merge-patch+json"
        | "application/strategic-merge-patch+json"
        | "application/json-patch+json" => serde_json::from_slice(&ctx.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}")))?,
        "application/yaml" | "application/apply-patch+yaml" => {
            match serde_json::from_slice(&ctx.body) {
                Ok(v) => v,
                Err(_) => {
                    let s = String::from_utf8_lossy(&ctx.body);
                    serde_saphyr::from_str(&s)
                        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
                }
            }
        }
        protobuf::MEDIA_TYPE => protobuf::decode(&ctx.body).map_err(ApiError::bad_request)?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    Ok(v)
}

pub(crate) fn check_kind(res: &Resource, obj: &mut Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    if let Some(k) = obj
        .get("kind")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
    {
        if k != res.kind {
            return Err(ApiError::bad_request(format!(
                "the kind of the object ({k}) does not match the kind on the URL ({})",
                res.kind
            )));
        }
    }
    obj["kind"] = json!(res.kind);
    obj["apiVersion"] = json!(res.api_version());
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    Ok(())
}

fn set_namespace(res: &Resource, t: &Target, obj: &mut Value) -> Result<(), ApiError> {
    if !res.namespaced {
        if let Some(Value::Object(m)) = obj.get_mut("metadata") {
            m.remove("namespace");
        }
        return Ok(());
    }
    let ns = t.ns.clone().unwrap_or_default();
    match obj.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(b) if !b.is_empty() && b != ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            obj["metadata"]["namespace"] = json!(ns);
            Ok(())
        }
    }
}

pub(crate) fn respond_objects(res: &Resource, ctx: &Ctx, items: Vec<Value>, rv: i64) -> Resp {
    if ctx.wants_table() {
        let include = ctx.query.get("includeObject").unwrap_or("Metadata");
        return http::json(200, &table::table(res, &items, &rv.to_string(), include));
    }
    http::json(
        200,
        &json!({
            "kind": res.list_kind(),
            "apiVersion": res.api_version(),
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items,
        }),
    )
}

pub(crate) fn respond_object(res: &Resource, ctx: &Ctx, code: u16, obj: &Value) -> Resp {
    if ctx.wants_table() && code == 200 {
        let rv = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let include = ctx.query.get("includeObject").unwrap_or("Metadata");
        return http::json(
            200,
            &table::table(res, std::slice::from_ref(obj), rv, include),
        );
    }
    http::json(code, obj)
}

/// Label and field selectors of a list/watch request.
pub fn selectors(ctx: &Ctx) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let l = LabelSelector::parse(ctx.query.get("labelSelector").unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    let f = FieldSelector::parse(ctx.query.get("fieldSelector").unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    Ok((l, f))
}

async fn get(
    app: &App,
    ctx: &Ctx,
    t: &Target,
    name: &str,
    deadline: Instant,
) -> Result<Resp, ApiError> {
    let (obj, _) = objects::get(app, t.res, ns_of(t), name, deadline).await?;
    Ok(respond_object(t.res, ctx, 200, &obj))
}

async fn list(app: &App, ctx: &Ctx, t: &Target, deadline: Instant) -> Result<Resp, ApiError> {
    let (ls, fs) = selectors(ctx)?;
    let (items, rev) = objects::list(app, t.res, ns_of(t), deadline).await?;
    let items: Vec<Value> = items
        .into_iter()
        .filter(|o| ls.matches(o) && fs.matches(o))
        .collect();
    Ok(respond_objects(t.res, ctx, items, rev))
}

pub(crate) fn dry_run(ctx: &Ctx) -> bool {
    ctx.query.get("dryRun") == Some("All")
}

/// Create as the API does it: name, namespace checks, strategy, storage.
async fn create_object(
    app: &App,
    t: &Target,
    mut obj: Value,
    dry: bool,
    deadline: Instant,
) -> Result<Value, ApiError> {
    let res = t.res;
    check_kind(res, &mut obj)?;
    set_namespace(res, t, &mut obj)?;
    let mut name = name_of(&obj).to_string();
    if name.is_empty() {
        if let Some(g) = obj
            .pointer("/metadata/generateName")
            .and_then(Value::as_str)
        {
            name = format!("{g}{}", random_suffix(5));
            obj["metadata"]["name"] = json!(name);
        }
    }
    if name.is_empty() {
        return Err(ApiError::invalid(
            res,
            "",
            "metadata.name",
            "Required value: name or generateName is required",
        ));
    }
    if !strategy::valid_name(&name) {
        return Err(ApiError::invalid(
            res,
            &name,
            "metadata.name",
            &format!("Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
        ));
    }
    if let Some(ns) = ns_of(t) {
        let nsres = registry::by_kind("Namespace")?;
        match objects::get(app, nsres, None, ns, deadline).await {
            Ok(_) => {}
            Err(e) if e.code == 404 => return Err(ApiError::namespace_not_found(ns)),
            Err(e) => return Err(e),
        }
    }
    strategy::prepare_create(res, &mut obj)?;
    if res.kind == "Service" {
        services::allocate(app, &mut obj, deadline).await?;
    }
    if dry {
        return Ok(obj);
    }
    objects::create(app, res, obj, deadline).await
}

async fn create(app: &App, ctx: &Ctx, t: &Target, deadline: Instant) -> Result<Resp, ApiError> {
    let obj = decode_body(ctx)?;
    let created = create_object(app, t, obj, dry_run(ctx), deadline).await?;
    Ok(http::json(201, &created))
}

fn without_rv(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(Value::Object(m)) = v.get_mut("metadata") {
        m.remove("resourceVersion");
    }
    v
}

fn body_rv(obj: &Value) -> Option<i64> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
}

/// Reads, transforms (`f` gets the current object and returns the desired one) and writes
/// back, retrying on races; `precondition` is a resourceVersion the client insisted on.
pub(crate) async fn read_modify_write<F>(
    app: &App,
    ctx: &Ctx,
    t: &Target,
    name: &str,
    deadline: Instant,
    mut f: F,
) -> Result<Value, ApiError>
where
    F: FnMut(&Value) -> Result<Value, ApiError>,
{
    let res = t.res;
    for _ in 0..8 {
        let (old, rev) = objects::get(app, res, ns_of(t), name, deadline).await?;
        let mut new = f(&old)?;
        if let Some(want) = body_rv(&new) {
            if want != rev {
                return Err(ApiError::conflict(res, name));
            }
        }
        check_kind(res, &mut new)?;
        if name_of(&new) != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                name_of(&new)
            )));
        }
        strategy::prepare_update(res, &old, &mut new, t.sub.as_deref())?;
        if without_rv(&new) == without_rv(&old) || dry_run(ctx) {
            return Ok(if dry_run(ctx) { new } else { old });
        }
        match objects::update(app, res, new, rev, deadline).await {
            Err(e) if e.reason == "Conflict" => continue,
            other => return other,
        }
    }
    Err(ApiError::conflict(res, name))
}

async fn update(
    app: &App,
    ctx: &Ctx,
    t: &Target,
    name: &str,
    deadline: Instant,
) -> Result<Resp, ApiError> {
    let body = decode_body(ctx)?;
    if t.sub.as_deref() == Some("scale") {
        let replicas = body
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        return scale::set(app, ctx, t, name, replicas, deadline).await;
    }
    let obj = read_modify_write(app, ctx, t, name, deadline, |old| {
        let mut new = body.clone();
        if t.res.namespaced {
            new["metadata"]["namespace"] = old["metadata"]["namespace"].clone();
        }
        Ok(new)
    })
    .await?;
    Ok(http::json(200, &obj))
}

/// Applies a PATCH body of the request's type to `target`.
pub(crate) fn apply_patch(ct: &str, target: &mut Value, body: &Value) -> Result<(), ApiError> {
    match ct {
        "application/merge-patch+json" => patch::merge_patch(target, body),
        "application/strategic-merge-patch+json" | "application/apply-patch+yaml" => {
            patch::strategic_merge(target, body)
        }
        "application/json-patch+json" => {
            patch::json_patch(target, body).map_err(|e| ApiError::internal(&e))?
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    }
    Ok(())
}

async fn patch_obj(
    app: &App,
    ctx: &Ctx,
    t: &Target,
    name: &str,
    deadline: Instant,
) -> Result<Resp, ApiError> {
    let ct = ctx.content_type();
    let body = decode_body(ctx)?;
    if t.sub.as_deref() == Some("scale") {
        let (obj, _) = objects::get(app, t.res, ns_of(t), name, deadline).await?;
        let mut scale = scale::scale_of(&obj);
        apply_patch(&ct, &mut scale, &body)?;
        let replicas = scale
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        return scale::set(app, ctx, t, name, replicas, deadline).await;
    }
    if ct == "application/apply-patch+yaml" {
        // Server-side apply of a new object creates it.
        match objects::get(app, t.res, ns_of(t), name, deadline).await {
            Err(e) if e.code == 404 && t.sub.is_none() => {
                let mut obj = body.clone();
                obj["metadata"]["name"] = json!(name);
                let created = create_object(app, t, obj, dry_run(ctx), deadline).await?;
                return Ok(http::json(201, &created));
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
    }
    let obj = read_modify_write(app, ctx, t, name, deadline, |old| {
        let mut new = old.clone();
        if let Some(Value::Object(m)) = new.get_mut("metadata") {
            m.remove("resourceVersion");
        }
        apply_patch(&ct, &mut new, &body)?;
        Ok(new)
    })
    .await?;
    Ok(http::json(200, &obj))
}

const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

async fn delete(
    app: &App,
    ctx: &Ctx,
    t: &Target,
    name: &str,
    deadline: Instant,
) -> Result<Resp, ApiError> {
    let res = t.res;
    if res.name == "namespaces" && PROTECTED_NAMESPACES.contains(&name) {
        return Err(ApiError {
            code: 403,
            reason: "Forbidden",
            message: format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            ),
            details: json!({"name": name, "kind": "namespaces"}),
        });
    }
    let (obj, rev) = objects::get(app, res, ns_of(t), name, deadline).await?;
    if !ctx.body.is_empty() {
        if let Ok(opts) = serde_json::from_slice::<Value>(&ctx.body) {
            let want_rv = opts
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str);
            let want_uid = opts.pointer("/preconditions/uid").and_then(Value::as_str);
            let have_uid = obj.pointer("/metadata/uid").and_then(Value::as_str);
            if want_rv.is_some_and(|w| w != rev.to_string())
                || want_uid.is_some_and(|w| Some(w) != have_uid)
            {
                return Err(ApiError::conflict(res, name));
            }
        }
    }
    if dry_run(ctx) {
        return Ok(http::json(200, &obj));
    }
    if res.name == "namespaces" {
        for r in RESOURCES.iter().filter(|r| r.namespaced && !r.computed) {
            let (items, _) = objects::list(app, r, Some(name), deadline).await?;
            for it in items {
                match objects::delete(app, r, Some(name), name_of(&it), None, deadline).await {
                    Ok(_) => {}
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    let deleted = objects::delete(app, res, ns_of(t), name, Some(rev), deadline).await?;
    if matches!(res.name, "configmaps" | "secrets" | "events") {
        let uid = obj
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return Ok(http::json(200, &status::success(res, name, uid)));
    }
    Ok(http::json(200, &deleted))
}

async fn delete_collection(
    app: &App,
    ctx: &Ctx,
    t: &Target,
    deadline: Instant,
) -> Result<Resp, ApiError> {
    if t.res.name == "namespaces" {
        return Err(ApiError::method_not_allowed());
    }
    let (ls, fs) = selectors(ctx)?;
    let (items, rev) = objects::list(app, t.res, ns_of(t), deadline).await?;
    let mut deleted = Vec::new();
    for it in items.into_iter().filter(|o| ls.matches(o) && fs.matches(o)) {
        let ns = it
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(String::from);
        match objects::delete(app, t.res, ns.as_deref(), name_of(&it), None, deadline).await {
            Ok(d) => deleted.push(d),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(http::json(
        200,
        &json!({"kind": t.res.list_kind(), "apiVersion": t.res.api_version(), "metadata": {"resourceVersion": rev.to_string()}, "items": deleted}),
    ))
}
