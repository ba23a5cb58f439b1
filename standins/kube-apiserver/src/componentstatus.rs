//! `componentstatuses` (`kubectl get cs`): scheduler and controller-manager (this process
//! plays both) and etcd-0 from the health probe, with the deprecation warning header.

use hyper::header::HeaderValue;
use serde_json::json;

use crate::api::{respond_object, respond_objects};
use crate::app::App;
use crate::http::{Ctx, Resp};
use crate::objects::name_of;
use crate::registry;
use crate::status::ApiError;

/// Serves `componentstatuses` (list or one): computed, never stored.
pub fn serve(app: &App, ctx: &Ctx, name: Option<&str>) -> Result<Resp, ApiError> {
    let res = registry::by_kind("ComponentStatus")?;
    let h = app.store.health().borrow().clone();
    let cs = |n: &str, ok: bool, err: &str| {
        let mut c = json!({"type": "Healthy", "status": if ok { "True" } else { "False" }, "message": if ok { "ok" } else { "" }});
        if !ok {
            c["error"] = json!(err);
        }
        json!({"kind": "ComponentStatus", "apiVersion": "v1", "metadata": {"name": n}, "conditions": [c]})
    };
    let items = vec![
        cs("controller-manager", true, ""),
        cs("scheduler", true, ""),
        cs("etcd-0", h.ok, &h.detail),
    ];
    let mut resp = match name {
        Some(n) => match items.iter().find(|i| name_of(i) == n) {
            Some(i) => respond_object(res, ctx, 200, i),
            None => return Err(ApiError::not_found(res, n)),
        },
        None => respond_objects(res, ctx, items, 0),
    };
    resp.headers_mut().insert(
        "warning",
        HeaderValue::from_static("299 - \"v1 ComponentStatus is deprecated in v1.19+\""),
    );
    Ok(resp)
}
