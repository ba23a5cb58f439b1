//! `kube` probe: asks the Kubernetes API through the kube crate, with the node's own
//! kubeconfig (kubeadm: /etc/kubernetes/admin.conf) read over the transport and the API
//! reached through a port forward to the server the kubeconfig names (as seen from the node).

use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;

use super::{Facts, ProbeCtx, ProbeKind};
use crate::error::{Error, Result};
use crate::node::kube::KubeAccess;
use crate::template::Renderer;

crate::probe_spec! {
    /// ```yaml
    /// - kind: kube
    ///   name: critical-app-ready
    ///   resource: deployments
    ///   namespace: default
    ///   object: critical-app
    ///   expect: { exists: true, ready_replicas: 3 }
    /// - kind: kube
    ///   name: api-ready
    ///   expect: { readyz: true, writable: true }
    /// ```
    pub struct KubeProbe {
        /// Resource (plural): `namespaces`, `nodes`, `pods`, `services`, `configmaps`,
        /// `secrets`, `deployments`. Needed for `exists`, `count`, `field`, `*_replicas`.
        #[serde(default)]
        pub resource: Option<String>,
        /// Namespace (default `default`; ignored for cluster-scoped resources).
        #[serde(default)]
        pub namespace: Option<String>,
        /// Object name (for `exists`, `field`, `*_replicas`).
        #[serde(default)]
        pub object: Option<String>,
        /// Label selector for `count` (e.g. `app=critical-app`).
        #[serde(default)]
        pub selector: Option<String>,
        /// Dotted path into the object for the `field` fact (e.g. `status.phase`,
        /// `spec.template.spec.containers.0.image`).
        #[serde(default)]
        pub field: Option<String>,
        /// Expectations.
        pub expect: KubeExpect,
    }
}

crate::expect_block! {
    /// Facts of a `kube` probe.
    pub struct KubeExpect {
        /// The named object exists (bool).
        exists,
        /// Number of objects listed (namespace + selector).
        count,
        /// Value at `field` in the named object.
        field,
        /// A Deployment's `status.readyReplicas` (0 when absent).
        ready_replicas,
        /// A Deployment's `status.availableReplicas` (0 when absent).
        available_replicas,
        /// A Deployment's `spec.replicas`.
        replicas,
        /// `GET /readyz` answered 200 (bool); the body is the note when it did not.
        readyz,
        /// A ConfigMap can be created and deleted in `default` (bool).
        writable,
    }
}

/// `(group, version, kind, namespaced)` of the resources the probe knows.
pub fn resource_info(plural: &str) -> Option<(&'static str, &'static str, &'static str, bool)> {
    Some(match plural {
        "namespaces" => ("", "v1", "Namespace", false),
        "nodes" => ("", "v1", "Node", false),
        "pods" => ("", "v1", "Pod", true),
        "services" => ("", "v1", "Service", true),
        "configmaps" => ("", "v1", "ConfigMap", true),
        "secrets" => ("", "v1", "Secret", true),
        "deployments" => ("apps", "v1", "Deployment", true),
        _ => return None,
    })
}

fn dig<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let mut cur = v;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        cur = match cur {
            serde_json::Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            other => other.get(part)?,
        };
    }
    Some(cur)
}

impl KubeProbe {
    fn api(&self, client: &Client) -> std::result::Result<Api<DynamicObject>, String> {
        let plural = self
            .resource
            .as_deref()
            .ok_or("this fact needs `resource:`")?;
        let (g, v, k, namespaced) =
            resource_info(plural).ok_or_else(|| format!("unknown resource `{plural}`"))?;
        let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, k), plural);
        Ok(if namespaced {
            Api::namespaced_with(
                client.clone(),
                self.namespace.as_deref().unwrap_or("default"),
                &ar,
            )
        } else {
            Api::all_with(client.clone(), &ar)
        })
    }

    async fn write_check(
        &self,
        client: &Client,
        end: Instant,
        notes: &mut Vec<String>,
        failed: &mut bool,
    ) -> bool {
        let left = || {
            end.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(200))
        };
        let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
            Api::namespaced(client.clone(), "default");
        // A create that timed out on this side may still land on a slow API server: remove
        // such leftovers of earlier checks first (best effort), so probes leave no objects.
        let _ = tokio::time::timeout(
            left().min(Duration::from_secs(2)),
            api.delete_collection(
                &DeleteParams::default(),
                &kube::api::ListParams::default().labels(WRITABLE_LABEL),
            ),
        )
        .await;
        let name = format!("{WRITABLE_NAME_PREFIX}{:08x}", rand::random::<u32>());
        let cm: k8s_openapi::api::core::v1::ConfigMap =
            match serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "labels": {
                    "app.kubernetes.io/managed-by": "breakfix",
                    "breakfix/probe": "writable"
                }},
                "data": {"probe": "breakfix"}
            })) {
                Ok(c) => c,
                Err(e) => {
                    notes.push(format!("writable: {e}"));
                    return false;
                }
            };
        match tokio::time::timeout(left(), api.create(&PostParams::default(), &cm)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                *failed |= !matches!(e, kube::Error::Api(_));
                notes.push(format!("create configmap: {}", explain(&e)));
                return false;
            }
            Err(_) => {
                notes.push("create configmap: no answer".into());
                return false;
            }
        }
        match tokio::time::timeout(left(), api.delete(&name, &DeleteParams::default())).await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                *failed |= !matches!(e, kube::Error::Api(_));
                notes.push(format!("delete configmap {name}: {}", explain(&e)));
                false
            }
            Err(_) => {
                notes.push(format!("delete configmap {name}: no answer"));
                false
            }
        }
    }
}

/// A kube error in one line, the way kubectl prints an API refusal
/// (`Error from server (NotFound): deployments.apps "x" not found`); other errors as they are.
fn explain(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!(
            "Error from server ({}): {}",
            if s.reason.is_empty() {
                "Unknown"
            } else {
                s.reason.as_str()
            },
            s.message
        ),
        other => other.to_string(),
    }
}

/// Label selector of the ConfigMaps the `writable` check creates (and deletes).
const WRITABLE_LABEL: &str = "breakfix/probe=writable";

/// Name prefix of the ConfigMaps the `writable` check creates in `default`.
const WRITABLE_NAME_PREFIX: &str = "breakfix-probe-";

/// Where the API server stores those ConfigMaps in etcd (its default `/registry` prefix).
pub const WRITABLE_KEY_PREFIX: &str = "/registry/configmaps/default/breakfix-probe-";

impl ProbeKind for KubeProbe {
    type Expect = KubeExpect;

    fn expect(&self) -> &KubeExpect {
        &self.expect
    }

    fn plan_target(&self) -> (&'static str, String) {
        let k = self;
        (
            "api",
            match (&k.resource, &k.object, &k.selector) {
                (None, _, _) => "the API server".to_string(),
                (Some(r), o, sel) => format!(
                    "{r}{}{}{}{}",
                    k.namespace
                        .as_deref()
                        .map(|n| format!(" in {n}"))
                        .unwrap_or_default(),
                    o.as_deref()
                        .map(|o| format!(" named {o}"))
                        .unwrap_or_default(),
                    sel.as_deref()
                        .map(|s| format!(" with labels {s}"))
                        .unwrap_or_default(),
                    k.field
                        .as_deref()
                        .map(|f| format!(", field {f}"))
                        .unwrap_or_default()
                ),
            },
        )
    }

    /// Gathers the wanted facts. API errors (server down, etcd failing behind it) become
    /// facts with the error as the note; only breakfix's own access problems are errors.
    ///
    /// The shared access (forward + client) is locked only to open or fetch it, so probes of
    /// one node run concurrently (holding the lock for the requests made every other kube
    /// probe wait behind one that hangs on a stalled API server, and time out as errors).
    /// All requests of one gather share one deadline, `ctx.timeout`, so a slow API server
    /// shows as failed facts before the runner gives up on the probe.
    async fn gather(&self, ctx: &ProbeCtx<'_>, wanted: &[&str]) -> Result<Facts> {
        let end = Instant::now() + ctx.timeout;
        let (client, local) = {
            let mut guard = ctx.session.kube.lock().await;
            if guard.is_none() {
                *guard = Some(KubeAccess::open(ctx.session, ctx.inventory, ctx.timeout).await?);
            }
            let Some(access) = guard.as_ref() else {
                return Err(Error::other("kube access vanished"));
            };
            (access.client.clone(), access.forward.local)
        };
        let left = || {
            end.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(200))
        };
        let mut f = Facts::default();
        let mut notes = Vec::new();
        // A request that did not reach the API server (the forward or the connection broke,
        // e.g. after a restart): open a fresh access next time. Answers and timeouts do not.
        let mut failed = false;
        let broken = |e: &kube::Error| !matches!(e, kube::Error::Api(_));
        let obj_facts = [
            "exists",
            "field",
            "ready_replicas",
            "available_replicas",
            "replicas",
        ];
        if wanted.iter().any(|w| obj_facts.contains(w)) {
            let api = self.api(&client).map_err(Error::other)?;
            let name = self.object.as_deref().ok_or_else(|| {
                Error::other(format!("probe `{}`: these facts need `object:`", self.name))
            })?;
            match tokio::time::timeout(left(), api.get_opt(name)).await {
                Ok(Ok(Some(obj))) => {
                    let v = serde_json::to_value(&obj).unwrap_or_default();
                    f.set("exists", true);
                    if let Some(path) = &self.field {
                        if let Some(x) = dig(&v, path) {
                            f.set("field", x.clone());
                        }
                    }
                    f.set(
                        "ready_replicas",
                        dig(&v, "status.readyReplicas").cloned().unwrap_or(0.into()),
                    );
                    f.set(
                        "available_replicas",
                        dig(&v, "status.availableReplicas")
                            .cloned()
                            .unwrap_or(0.into()),
                    );
                    if let Some(r) = dig(&v, "spec.replicas") {
                        f.set("replicas", r.clone());
                    }
                }
                Ok(Ok(None)) => f.set("exists", false),
                Ok(Err(e)) => {
                    failed |= broken(&e);
                    notes.push(format!("get {name}: {}", explain(&e)));
                }
                Err(_) => {
                    notes.push(format!(
                        "get {name}: no answer within {}",
                        humantime::format_duration(ctx.timeout)
                    ));
                }
            }
        }
        if wanted.contains(&"count") {
            let api = self.api(&client).map_err(Error::other)?;
            let mut lp = ListParams::default();
            if let Some(s) = &self.selector {
                lp = lp.labels(s);
            }
            match tokio::time::timeout(left(), api.list(&lp)).await {
                Ok(Ok(list)) => f.set("count", list.items.len()),
                Ok(Err(e)) => {
                    failed |= broken(&e);
                    notes.push(format!("list: {}", explain(&e)));
                }
                Err(_) => {
                    notes.push("list: no answer".into());
                }
            }
        }
        if wanted.contains(&"readyz") {
            let req = http::Request::get("/readyz?verbose")
                .body(Vec::new())
                .map_err(|e| Error::other(e.to_string()))?;
            match tokio::time::timeout(left(), client.request_text(req)).await {
                Ok(Ok(_)) => f.set("readyz", true),
                Ok(Err(e)) => {
                    failed |= broken(&e);
                    f.set("readyz", false);
                    // A failing /readyz lists every check: name the failing ones.
                    let text = e.to_string();
                    let bad: Vec<&str> = text
                        .lines()
                        .map(str::trim)
                        .filter(|l| l.starts_with("[-]"))
                        .collect();
                    if bad.is_empty() {
                        notes.push(format!("readyz: {e}"));
                    } else {
                        notes.push(format!("readyz: {}", bad.join(", ")));
                    }
                }
                Err(_) => {
                    f.set("readyz", false);
                    notes.push("readyz: no answer".into());
                }
            }
        }
        if wanted.contains(&"writable") {
            let ok = self
                .write_check(&client, end, &mut notes, &mut failed)
                .await;
            f.set("writable", ok);
        }
        if failed {
            // The cached connection may be stale (API server restarted): reconnect next time,
            // unless another probe already did.
            let mut guard = ctx.session.kube.lock().await;
            if guard.as_ref().is_some_and(|a| a.forward.local == local) {
                *guard = None;
            }
        }
        if !notes.is_empty() {
            f.note = Some(notes.join("; "));
        }
        Ok(f)
    }

    /// Renders the strings.
    fn render(&self, r: &Renderer) -> Result<Self> {
        let mut p = self.clone();
        p.expect = self.expect.render(r)?;
        let opt = |v: &Option<String>| v.as_deref().map(|s| r.text(s)).transpose();
        p.resource = opt(&self.resource)?;
        p.namespace = opt(&self.namespace)?;
        p.object = opt(&self.object)?;
        p.selector = opt(&self.selector)?;
        p.field = opt(&self.field)?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dig_walks_maps_and_lists() {
        let v = serde_json::json!({"spec": {"containers": [{"image": "nginx"}]}, "status": {"readyReplicas": 3}});
        assert_eq!(
            super::dig(&v, "status.readyReplicas"),
            Some(&serde_json::json!(3))
        );
        assert_eq!(
            super::dig(&v, "spec.containers.0.image"),
            Some(&serde_json::json!("nginx"))
        );
        assert_eq!(super::dig(&v, "spec.nope"), None);
    }

    #[test]
    fn knows_the_lab_resources() {
        assert_eq!(
            super::resource_info("deployments"),
            Some(("apps", "v1", "Deployment", true))
        );
        assert_eq!(super::resource_info("nodes").map(|r| r.3), Some(false));
        assert!(super::resource_info("widgets").is_none());
    }
}
