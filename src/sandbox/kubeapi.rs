//! Kubernetes API from the host: a kube client built from the sandbox's admin.conf (its
//! server, https://198.18.0.11:6443, is reachable from the host over the bridge), the API
//! server's `/readyz`, the Nodes' readiness, seed 000's workloads ([`WORKLOADS`]) created the
//! way `kubectl apply -f` creates them, and the wait for `critical-app` to be ready.

use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use serde_json::Value;

use crate::error::{Error, Result};

/// Seed 000's workloads (task 1): Deployment `critical-app` (3 replicas) and Service
/// `critical-app-service` in `default`, Pod `cluster-monitor` in `kube-system`.
pub const WORKLOADS: &str = include_str!("workloads.yaml");

/// The annotation `kubectl apply` keeps its last applied configuration in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A client for the API server named in `admin_conf` (kubeconfig text), with short timeouts
/// (each call of the readiness loops is bounded).
///
/// Errors: the kubeconfig does not parse or names no usable cluster/user.
pub async fn client(admin_conf: &str, timeout: Duration) -> Result<Client> {
    build(admin_conf, None, timeout).await
}

/// [`client`] for one control plane's own API server at `ip`:6443 instead of the kubeconfig's
/// server (with several control planes that is the load balancer). The API server's
/// certificate names its node's address (kubeadm's `apiserver` SANs).
///
/// Errors: as [`client`].
pub async fn client_at(
    admin_conf: &str,
    ip: std::net::Ipv4Addr,
    timeout: Duration,
) -> Result<Client> {
    build(admin_conf, Some(ip), timeout).await
}

async fn build(
    admin_conf: &str,
    server: Option<std::net::Ipv4Addr>,
    timeout: Duration,
) -> Result<Client> {
    let bad = |e: String| Error::other(format!("sandbox admin.conf: {e}"));
    let kc = kube::config::Kubeconfig::from_yaml(admin_conf).map_err(|e| bad(e.to_string()))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| bad(e.to_string()))?;
    if let Some(ip) = server {
        config.cluster_url = format!("https://{ip}:{}", super::lb::PORT)
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
    }
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    Client::try_from(config).map_err(|e| bad(e.to_string()))
}

/// One `GET /readyz?verbose`: `Ok` on 200, otherwise the server's answer (the failing checks,
/// e.g. `[-]etcd failed`) or the connection error.
///
/// Errors: as described.
pub async fn readyz(client: &Client, limit: Duration) -> Result<()> {
    let req = http::Request::get("/readyz?verbose")
        .body(Vec::new())
        .map_err(|e| Error::other(e.to_string()))?;
    match tokio::time::timeout(limit, client.request_text(req)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Error::other(format!("GET /readyz: {e}"))),
        Err(_) => Err(Error::other(format!(
            "GET /readyz: no answer within {limit:?}"
        ))),
    }
}

/// The objects of a multi-document YAML text, as JSON values (empty documents skipped).
///
/// Errors: the YAML does not parse.
pub fn documents(yaml: &str) -> Result<Vec<Value>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml)
        .map_err(|e| Error::other(format!("sandbox workloads YAML: {e}")))?;
    Ok(docs
        .into_iter()
        .filter(|d| d.is_object() && !d.as_object().is_some_and(|m| m.is_empty()))
        .collect())
}

/// The API resource of an object (`apiVersion` + `kind`) for the kinds the workloads use.
///
/// Errors: an `apiVersion`/`kind` the sandbox does not know.
pub fn api_resource(obj: &Value) -> Result<ApiResource> {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let plural = match kind {
        "Deployment" => "deployments",
        "Service" => "services",
        "Pod" => "pods",
        "ConfigMap" => "configmaps",
        "Secret" => "secrets",
        "Namespace" => "namespaces",
        _ => {
            return Err(Error::other(format!(
                "sandbox workloads: kind {kind:?} is not supported"
            )))
        }
    };
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    Ok(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind),
        plural,
    ))
}

/// `obj` with kubectl's last-applied-configuration annotation, computed as `kubectl apply`
/// does (the object without that annotation, compact JSON with sorted keys, plus a newline),
/// so a later `kubectl apply -f` of the same file finds nothing to change.
pub fn with_last_applied(obj: &Value) -> Value {
    let mut base = obj.clone();
    if let Some(meta) = base.get_mut("metadata").and_then(Value::as_object_mut) {
        let ann = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(a) = ann.as_object_mut() {
            a.remove(LAST_APPLIED);
        }
    }
    let text = format!("{}\n", sorted(&base));
    let mut out = base;
    if let Some(a) = out
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.insert(LAST_APPLIED.into(), Value::String(text));
    }
    out
}

/// `v` with every map's keys in sorted order (Go's `json.Marshal` of a map), whatever
/// serde_json's map type preserves.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys {
                out.insert(k.clone(), sorted(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Creates every object of `yaml` like `kubectl apply -f` would on a fresh cluster (POST with
/// the last-applied annotation); an object that already exists is left as it is. Returns
/// `kind/name` of each object.
///
/// Errors: the YAML is not understood, or the API refuses an object.
pub async fn apply(client: &Client, yaml: &str, limit: Duration) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for doc in documents(yaml)? {
        let ar = api_resource(&doc)?;
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ns = doc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        let api: Api<DynamicObject> = if ar.plural == "namespaces" {
            Api::all_with(client.clone(), &ar)
        } else {
            Api::namespaced_with(client.clone(), &ns, &ar)
        };
        let obj: DynamicObject = serde_json::from_value(with_last_applied(&doc))
            .map_err(|e| Error::other(format!("sandbox workloads: {}/{name}: {e}", ar.kind)))?;
        let what = format!("{}/{name}", ar.kind.to_lowercase());
        match tokio::time::timeout(limit, api.create(&PostParams::default(), &obj)).await {
            Ok(Ok(_)) => {}
            Ok(Err(kube::Error::Api(s))) if s.code == 409 => {}
            Ok(Err(e)) => return Err(Error::other(format!("creating {what}: {e}"))),
            Err(_) => {
                return Err(Error::other(format!(
                    "creating {what}: no answer within {limit:?}"
                )))
            }
        }
        done.push(what);
    }
    Ok(done)
}

/// Names of the Nodes registered with the API and whether each is `Ready` (condition
/// `Ready=True`), sorted by name.
///
/// Errors: the API does not answer within `limit`.
pub async fn nodes_ready(client: &Client, limit: Duration) -> Result<Vec<(String, bool)>> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Node"), "nodes");
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let list = match tokio::time::timeout(limit, api.list(&Default::default())).await {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => return Err(Error::other(format!("listing nodes: {e}"))),
        Err(_) => {
            return Err(Error::other(format!(
                "listing nodes: no answer within {limit:?}"
            )))
        }
    };
    let mut out: Vec<(String, bool)> = list
        .items
        .iter()
        .map(|n| {
            let ready = n
                .data
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .map(|cs| {
                    cs.iter().any(|c| {
                        c.get("type").and_then(Value::as_str) == Some("Ready")
                            && c.get("status").and_then(Value::as_str) == Some("True")
                    })
                })
                .unwrap_or(false);
            (n.metadata.name.clone().unwrap_or_default(), ready)
        })
        .collect();
    out.sort();
    Ok(out)
}

/// `status.readyReplicas` of Deployment `namespace/name` (0 when absent).
///
/// Errors: the API does not answer or the deployment does not exist.
pub async fn ready_replicas(
    client: &Client,
    namespace: &str,
    name: &str,
    limit: Duration,
) -> Result<i64> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apps", "v1", "Deployment"),
        "deployments",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
    match tokio::time::timeout(limit, api.get(name)).await {
        Ok(Ok(d)) => Ok(d
            .data
            .pointer("/status/readyReplicas")
            .and_then(Value::as_i64)
            .unwrap_or(0)),
        Ok(Err(e)) => Err(Error::other(format!("deployment {namespace}/{name}: {e}"))),
        Err(_) => Err(Error::other(format!(
            "deployment {namespace}/{name}: no answer within {limit:?}"
        ))),
    }
}

/// Polls `check` every 250 ms until it returns `Ok(true)`, at most `timeout`.
///
/// Errors: `timeout` passed; the message has `what` and the last check's error or state.
pub async fn poll<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => String::from("not yet"),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(Error::other(format!(
                "{what}: not ready within {}s (last check: {last})",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_workloads_are_seed_000s() {
        let docs = documents(WORKLOADS).expect("parse");
        let kinds: Vec<(&str, &str)> = docs
            .iter()
            .map(|d| {
                (
                    d["kind"].as_str().unwrap_or(""),
                    d["metadata"]["name"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("Deployment", "critical-app"),
                ("Service", "critical-app-service"),
                ("Pod", "cluster-monitor")
            ]
        );
        assert_eq!(docs[0]["spec"]["replicas"], 3);
        assert_eq!(docs[2]["metadata"]["namespace"], "kube-system");
        for d in &docs {
            let ar = api_resource(d).expect("known kind");
            assert!(!ar.plural.is_empty());
        }
        assert_eq!(api_resource(&docs[0]).expect("ar").group, "apps");
    }

    #[test]
    fn last_applied_is_kubectls_shape() {
        let obj = serde_json::json!({"kind": "Service", "apiVersion": "v1",
            "metadata": {"name": "s", "namespace": "default"}, "spec": {"type": "ClusterIP"}});
        let out = with_last_applied(&obj);
        let ann = out["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .expect("annotation");
        assert_eq!(
            ann,
            "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"annotations\":{},\"name\":\"s\",\"namespace\":\"default\"},\"spec\":{\"type\":\"ClusterIP\"}}\n"
        );
    }
}
