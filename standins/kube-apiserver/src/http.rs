//! HTTP plumbing: the parsed request handed to handlers (query, headers, body, user) and
//! response builders for JSON, text, Status errors and streamed watch bodies.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::status::ApiError;
use crate::util::parse_go_duration;

/// Response body type.
pub type Body = BoxBody<Bytes, Infallible>;
/// Response type.
pub type Resp = Response<Body>;

/// Decoded query parameters, in order.
#[derive(Debug, Default, Clone)]
pub struct Query(Vec<(String, String)>);

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 3 <= b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Query {
    /// Parses a raw query string.
    pub fn parse(q: Option<&str>) -> Query {
        Query(
            q.unwrap_or_default()
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (percent_decode(k), percent_decode(v)),
                    None => (percent_decode(p), String::new()),
                })
                .collect(),
        )
    }

    /// First value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `key` is present (`?verbose` arrives as `verbose=`).
    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    /// All values of `key`.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A boolean parameter (`watch=true`, `watch=1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | "True"))
    }
}

/// One request as handlers see it.
pub struct Ctx {
    /// Method.
    pub method: Method,
    /// Path (no query).
    pub path: String,
    /// Query parameters.
    pub query: Query,
    /// Headers.
    pub headers: HeaderMap,
    /// Whole body.
    pub body: Bytes,
    /// Authenticated user name.
    pub user: String,
}

impl Ctx {
    /// Content-Type without parameters.
    pub fn content_type(&self) -> String {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    }

    /// kubectl get asks for `application/json;as=Table;v=v1;g=meta.k8s.io`.
    pub fn wants_table(&self) -> bool {
        self.headers
            .get_all(hyper::header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("as=Table"))
    }

    /// The request's `?timeout=` parameter.
    pub fn timeout(&self) -> Option<Duration> {
        self.query.get("timeout").and_then(parse_go_duration)
    }
}

fn base(code: u16, content_type: &'static str, body: Body) -> Resp {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    r
}

/// A whole body.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

/// JSON answer.
pub fn json(code: u16, v: &Value) -> Resp {
    base(
        code,
        "application/json",
        full(serde_json::to_vec(v).unwrap_or_default()),
    )
}

/// Plain-text answer (health endpoints).
pub fn text(code: u16, body: String) -> Resp {
    let mut r = base(code, "text/plain; charset=utf-8", full(body));
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Status error answer.
pub fn error(e: &ApiError) -> Resp {
    json(e.code, &e.to_json())
}

/// A streamed JSON answer fed by `rx` (watch).
pub fn stream(rx: mpsc::Receiver<Bytes>) -> Resp {
    let s = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    base(200, "application/json", BodyExt::boxed(StreamBody::new(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = Query::parse(Some("labelSelector=app%3Dcritical-app&verbose=&limit=500"));
        assert_eq!(q.get("labelSelector"), Some("app=critical-app"));
        assert!(q.has("verbose"));
        assert_eq!(q.get("limit"), Some("500"));
    }
}
