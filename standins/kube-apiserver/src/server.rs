//! The HTTPS server: TLS accept loop (rustls, HTTP/1.1 and HTTP/2), client identification,
//! the real defaults for anonymous access, and routing to version, health, discovery,
//! OpenAPI and resource handlers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::api;
use crate::app::App;
use crate::discovery;
use crate::flags::K8S_VERSION;
use crate::health;
use crate::http::{self, Ctx, Query, Resp};
use crate::log::{info, warning};
use crate::openapi;
use crate::status::ApiError;
use crate::tls::{self, Identity, Tls};

/// Largest request body accepted (the real limit is 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// Accepts connections forever.
pub async fn serve(app: Arc<App>, tls: Tls, listener: TcpListener) {
    let acceptor = TlsAcceptor::from(tls.config.clone());
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warning!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move { connection(app, acceptor, tcp, peer).await });
    }
}

async fn connection(
    app: Arc<App>,
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let why = match e.kind() {
                std::io::ErrorKind::UnexpectedEof => "EOF".to_string(),
                _ => e.to_string(),
            };
            info!("http: TLS handshake error from {peer}: {why}");
            return;
        }
        Err(_) => {
            info!("http: TLS handshake error from {peer}: timeout");
            return;
        }
    };
    let identity = tls::identify(
        app.verifier.as_ref(),
        stream.get_ref().1.peer_certificates(),
    );
    if let Identity::Invalid(why) = &identity {
        info!("Unable to authenticate the request from {peer}: {why}");
    }
    let svc = service_fn(move |req| {
        let app = app.clone();
        let identity = identity.clone();
        async move { Ok::<_, Infallible>(handle(app, identity, req).await) }
    });
    let _ = Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

fn is_public(path: &str) -> bool {
    ["/livez", "/readyz", "/healthz", "/version"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

fn verb_of(method: &Method) -> &'static str {
    match *method {
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "get",
    }
}

async fn handle(app: Arc<App>, identity: Identity, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return http::error(&ApiError {
                code: 413,
                reason: "RequestEntityTooLarge",
                message: "the request body is too large".into(),
                details: json!({}),
            })
        }
    };
    let path = parts.uri.path().to_string();
    let user = match &identity {
        Identity::Invalid(_) => return http::error(&ApiError::unauthorized()),
        // No token authenticator here: any bearer token is invalid (401), as on a real
        // server that does not know it.
        Identity::Anonymous
            if !app.flags.anonymous_auth
                || parts.headers.contains_key(hyper::header::AUTHORIZATION) =>
        {
            return http::error(&ApiError::unauthorized())
        }
        Identity::Anonymous => "system:anonymous".to_string(),
        Identity::User { name } => name.clone(),
    };
    let ctx = Ctx {
        method: parts.method.clone(),
        path: path.clone(),
        query: Query::parse(parts.uri.query()),
        headers: parts.headers,
        body,
        user,
    };
    let anonymous = matches!(identity, Identity::Anonymous);
    route(&app, &ctx, anonymous).await
}

async fn route(app: &Arc<App>, ctx: &Ctx, anonymous: bool) -> Resp {
    let segs: Vec<&str> = ctx.path.split('/').filter(|s| !s.is_empty()).collect();
    if anonymous && !is_public(&ctx.path) {
        let verb = verb_of(&ctx.method);
        let forbidden = match resource_target(&segs) {
            Some(t) => ApiError::forbidden_resource(
                &ctx.user,
                if t.name.is_none() && verb == "get" {
                    "list"
                } else {
                    verb
                },
                t.res,
                t.ns.as_deref(),
            ),
            None => ApiError::forbidden_path(&ctx.user, verb, &ctx.path),
        };
        return http::error(&forbidden);
    }
    match segs.as_slice() {
        [] => http::json(200, &discovery::root_paths()),
        ["version"] => http::json(200, &version()),
        [kind, rest @ ..] if health::Kind::from_segment(kind).is_some() && rest.len() <= 2 => {
            let Some(kind) = health::Kind::from_segment(kind) else {
                return http::error(&ApiError::path_not_found());
            };
            let check = if rest.is_empty() {
                None
            } else {
                Some(rest.join("/"))
            };
            let h = app.store.health().borrow().clone();
            let excluded = ctx.query.all("exclude");
            let (code, body) = health::answer(
                kind,
                check.as_deref(),
                ctx.query.has("verbose"),
                &excluded,
                &h,
            );
            http::text(code, body)
        }
        ["api"] => http::json(200, &discovery::api_versions(&app.server_address())),
        ["apis"] => http::json(200, &discovery::api_groups()),
        ["api", "v1"] => opt(discovery::resource_list("", "v1")),
        ["apis", g] => opt(discovery::api_group(g)),
        ["apis", g, v] => opt(discovery::resource_list(g, v)),
        ["openapi", "v3"] => http::json(200, &openapi::index()),
        ["openapi", "v3", rest @ ..] => opt(openapi::document(&rest.join("/"))),
        _ => match resource_target(&segs) {
            Some(t) => api::handle(app, ctx, t).await,
            None => http::error(&ApiError::path_not_found()),
        },
    }
}

fn resource_target(segs: &[&str]) -> Option<api::Target> {
    match segs {
        ["api", "v1", rest @ ..] if !rest.is_empty() => api::parse_target("", "v1", rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => api::parse_target(g, v, rest),
        _ => None,
    }
}

fn opt(v: Option<serde_json::Value>) -> Resp {
    match v {
        Some(v) => http::json(200, &v),
        None => http::error(&ApiError::path_not_found()),
    }
}

/// `/version`: a real-looking v1.32.4 (kubectl's dispatcher picks its client by `minor`).
pub fn version() -> serde_json::Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": K8S_VERSION,
        "gitCommit": "59526cd4867447956156ae3a602fcbac10a2c335",
        "gitTreeState": "clean",
        "buildDate": "2025-04-22T16:02:27Z",
        "goVersion": "go1.23.6",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}
