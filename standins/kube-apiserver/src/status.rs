//! API errors as `Status` objects with the real reasons, codes and message shapes, so kubectl
//! prints `Error from server (NotFound): ...` exactly as against a real server.

use serde_json::{json, Value};

use crate::registry::Resource;

/// An error answer: HTTP code, Status `reason`, message and `details`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status code (also `code` in the body).
    pub code: u16,
    /// `reason` (NotFound, AlreadyExists, Conflict, ...); empty for none.
    pub reason: &'static str,
    /// Human message.
    pub message: String,
    /// `details` object.
    pub details: Value,
}

fn details(res: &Resource, name: &str) -> Value {
    let mut d = json!({ "name": name, "kind": res.name });
    if !res.group.is_empty() {
        d["group"] = json!(res.group);
    }
    d
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String, details: Value) -> ApiError {
        ApiError {
            code,
            reason,
            message,
            details,
        }
    }

    /// 404 for a named object.
    pub fn not_found(res: &Resource, name: &str) -> ApiError {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", res.qualified(), name),
            details(res, name),
        )
    }

    /// 404 for a namespace that does not exist (creating into it).
    pub fn namespace_not_found(ns: &str) -> ApiError {
        Self::new(
            404,
            "NotFound",
            format!("namespaces \"{ns}\" not found"),
            json!({"name": ns, "kind": "namespaces"}),
        )
    }

    /// 404 for a path the server does not serve.
    pub fn path_not_found() -> ApiError {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            json!({}),
        )
    }

    /// 409 AlreadyExists.
    pub fn already_exists(res: &Resource, name: &str) -> ApiError {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{}\" already exists", res.qualified(), name),
            details(res, name),
        )
    }

    /// 409 Conflict on a stale resourceVersion.
    pub fn conflict(res: &Resource, name: &str) -> ApiError {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                res.qualified(),
                name
            ),
            details(res, name),
        )
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(400, "BadRequest", message.into(), json!({}))
    }

    /// 422 Invalid with one field cause.
    pub fn invalid(res: &Resource, name: &str, field: &str, msg: &str) -> ApiError {
        let mut d = json!({
            "name": name,
            "kind": res.kind,
            "causes": [{"reason": "FieldValueInvalid", "message": msg, "field": field}],
        });
        if !res.group.is_empty() {
            d["group"] = json!(res.group);
        }
        Self::new(
            422,
            "Invalid",
            format!("{} \"{}\" is invalid: {}: {}", res.kind, name, field, msg),
            d,
        )
    }

    /// 500 InternalError carrying a storage error (e.g. `etcdserver: request timed out`).
    pub fn internal(msg: &str) -> ApiError {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {msg}"),
            json!({"causes": [{"message": msg}]}),
        )
    }

    /// 504 Timeout: storage did not answer in time.
    pub fn timeout() -> ApiError {
        Self::new(
            504,
            "Timeout",
            "Timeout: request did not complete within requested timeout - context deadline exceeded"
                .into(),
            json!({}),
        )
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> ApiError {
        Self::new(401, "Unauthorized", "Unauthorized".into(), json!({}))
    }

    /// 403 Forbidden for a non-resource path.
    pub fn forbidden_path(user: &str, verb: &str, path: &str) -> ApiError {
        Self::new(
            403,
            "Forbidden",
            format!("forbidden: User \"{user}\" cannot {verb} path \"{path}\""),
            json!({}),
        )
    }

    /// 403 Forbidden for a resource request.
    pub fn forbidden_resource(
        user: &str,
        verb: &str,
        res: &Resource,
        ns: Option<&str>,
    ) -> ApiError {
        let scope = match ns {
            Some(ns) => format!(" in the namespace \"{ns}\""),
            None => " at the cluster scope".into(),
        };
        Self::new(
            403,
            "Forbidden",
            format!(
                "{} is forbidden: User \"{user}\" cannot {verb} resource \"{}\" in API group \"{}\"{scope}",
                res.qualified(),
                res.name,
                res.group
            ),
            json!({"kind": res.name}),
        )
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed() -> ApiError {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".into(),
            json!({}),
        )
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(ct: &str) -> ApiError {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {ct:?})"),
            json!({}),
        )
    }

    /// The Status object.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        });
        if !self.reason.is_empty() {
            v["reason"] = json!(self.reason);
        }
        v["details"] = self.details.clone();
        v
    }
}

/// A `Status` of success (the answer to some deletes).
pub fn success(res: &Resource, name: &str, uid: &str) -> Value {
    let mut d = details(res, name);
    d["uid"] = json!(uid);
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": d,
    })
}
