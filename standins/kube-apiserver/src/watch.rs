//! `?watch=true`: an etcd watch on the resource's key prefix streamed as Kubernetes watch
//! events (`{"type":"ADDED","object":{...}}` lines, Tables for `kubectl get -w`). Ends at
//! `timeoutSeconds`, when the client leaves, or when etcd goes away, so it never hangs.

use std::time::Duration;

use bytes::Bytes;
use etcd_client::EventType;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::api::{selectors, Target};
use crate::app::App;
use crate::http::{self, Ctx, Resp};
use crate::log::warning;
use crate::objects;
use crate::status::ApiError;
use crate::store::Kv;
use crate::table;

/// Longest a watch stays open without `timeoutSeconds`.
const MAX_WATCH: Duration = Duration::from_secs(30 * 60);

struct Encoder {
    table: bool,
    first: bool,
    res: &'static crate::registry::Resource,
}

impl Encoder {
    fn event(&mut self, typ: &str, obj: &Value) -> Bytes {
        let object = if self.table {
            let rv = obj
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let mut t = table::table(self.res, std::slice::from_ref(obj), rv, "Metadata");
            if !self.first {
                t["columnDefinitions"] = json!([]);
            }
            self.first = false;
            t
        } else {
            obj.clone()
        };
        let mut line =
            serde_json::to_vec(&json!({"type": typ, "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }
}

/// Serves a watch request.
pub async fn serve(app: &App, ctx: &Ctx, t: &Target) -> Result<Resp, ApiError> {
    let (ls, fs) = selectors(ctx)?;
    let res = t.res;
    let ns = if res.namespaced { t.ns.clone() } else { None };
    let limit = ctx
        .query
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(MAX_WATCH)
        .min(MAX_WATCH);
    let deadline = app.store.deadline(ctx.timeout());
    let start_rv = ctx
        .query
        .get("resourceVersion")
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|r| *r > 0);
    // Without a resourceVersion, a watch starts with ADDED events for what exists now.
    let (initial, from) = match start_rv {
        Some(rv) => (Vec::new(), rv + 1),
        None => {
            let (items, rev) = objects::list(app, res, ns.as_deref(), deadline).await?;
            (items, rev + 1)
        }
    };
    let prefix = res.list_prefix(&app.store.prefix, ns.as_deref());
    let mut stream = app
        .store
        .watch(&prefix, from, deadline)
        .await
        .map_err(|e| objects::api_error(res, "", e))?;
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let mut enc = Encoder {
        table: ctx.wants_table(),
        first: true,
        res,
    };
    let namespaced_all = res.namespaced && ns.is_none();
    tokio::spawn(async move {
        let end = Instant::now() + limit;
        for o in initial.iter().filter(|o| ls.matches(o) && fs.matches(o)) {
            if tx.send(enc.event("ADDED", o)).await.is_err() {
                return;
            }
        }
        loop {
            let msg = tokio::select! {
                m = stream.message() => m,
                _ = tokio::time::sleep_until(end) => break,
                _ = tx.closed() => break,
            };
            let resp = match msg {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    warning!("watch of {prefix} ended: {e}");
                    break;
                }
            };
            if resp.canceled() {
                if resp.compact_revision() > 0 {
                    let gone = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": format!("too old resource version: {} ({})", from - 1, resp.compact_revision()),
                        "reason": "Expired", "code": 410});
                    let mut line = serde_json::to_vec(&json!({"type": "ERROR", "object": gone}))
                        .unwrap_or_default();
                    line.push(b'\n');
                    let _ = tx.send(Bytes::from(line)).await;
                }
                break;
            }
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let rest = key.get(prefix.len()..).unwrap_or_default();
                let direct = if namespaced_all {
                    rest.matches('/').count() == 1
                } else {
                    !rest.contains('/')
                };
                if !direct {
                    continue;
                }
                let (typ, obj) = match ev.event_type() {
                    EventType::Put => {
                        let typ = if kv.create_revision() == kv.mod_revision() {
                            "ADDED"
                        } else {
                            "MODIFIED"
                        };
                        let stored = Kv {
                            key: key.clone(),
                            value: kv.value().to_vec(),
                            mod_revision: kv.mod_revision(),
                        };
                        (typ, objects::decode(&stored))
                    }
                    EventType::Delete => {
                        let prev = ev.prev_kv().map(|p| Kv {
                            key: key.clone(),
                            value: p.value().to_vec(),
                            mod_revision: kv.mod_revision(),
                        });
                        ("DELETED", prev.as_ref().and_then(objects::decode))
                    }
                };
                let Some(obj) = obj else { continue };
                if !(ls.matches(&obj) && fs.matches(&obj)) {
                    continue;
                }
                if tx.send(enc.event(typ, &obj)).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(http::stream(rx))
}
