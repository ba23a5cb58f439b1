//! The in-process controller (it stands in for the scheduler, controller-manager and the
//! kubelets' API side): bootstraps system namespaces and the `kubernetes` Service, keeps
//! Node objects with heartbeats, mirrors static pods and runs deployments, all only while
//! etcd is healthy. No containers run anywhere.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::app::App;
use crate::log::{info, warning};
use crate::objects;
use crate::registry;
use crate::services::service_range;
use crate::status::ApiError;
use crate::util::{new_uid, now_rfc3339};
use crate::{mirror, nodes, workloads};

/// Controller helpers around the object store.
pub struct Ctl {
    /// Shared state.
    pub app: Arc<App>,
}

impl Ctl {
    /// Deadline of one controller call.
    pub fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    /// Lists all objects of a kind.
    pub async fn list(&self, kind: &str) -> Result<Vec<Value>, ApiError> {
        let res = registry::by_kind(kind)?;
        Ok(objects::list(&self.app, res, None, self.deadline())
            .await?
            .0)
    }

    /// Creates an object as given (metadata filled by the caller or here).
    pub async fn create(&self, kind: &str, mut obj: Value) -> Result<Value, ApiError> {
        let res = registry::by_kind(kind)?;
        obj["kind"] = json!(res.kind);
        obj["apiVersion"] = json!(res.api_version());
        if obj.pointer("/metadata/uid").is_none() {
            obj["metadata"]["uid"] = json!(new_uid());
        }
        if obj.pointer("/metadata/creationTimestamp").is_none() {
            obj["metadata"]["creationTimestamp"] = json!(now_rfc3339());
        }
        objects::create(&self.app, res, obj, self.deadline()).await
    }

    /// Writes `obj` over the version it was read at (its resourceVersion).
    pub async fn update(&self, kind: &str, obj: Value) -> Result<Value, ApiError> {
        let res = registry::by_kind(kind)?;
        let rev = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        objects::update(&self.app, res, obj, rev, self.deadline()).await
    }

    /// Deletes an object (ignores "already gone").
    pub async fn delete(&self, kind: &str, obj: &Value) -> Result<(), ApiError> {
        let res = registry::by_kind(kind)?;
        let ns = objects::namespace_of(obj);
        match objects::delete(
            &self.app,
            res,
            ns,
            objects::name_of(obj),
            None,
            self.deadline(),
        )
        .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Objects equal apart from resourceVersion.
pub fn same(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(Value::Object(m)) = v.get_mut("metadata") {
            m.remove("resourceVersion");
        }
        v
    };
    strip(a) == strip(b)
}

/// Creates the namespaces and the `kubernetes` Service a fresh cluster has.
async fn bootstrap(ctl: &Ctl) -> Result<(), ApiError> {
    let existing: Vec<String> = ctl
        .list("Namespace")
        .await?
        .iter()
        .map(|n| objects::name_of(n).to_string())
        .collect();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        if existing.iter().any(|e| e == ns) {
            continue;
        }
        let obj = json!({
            "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        });
        match ctl.create("Namespace", obj).await {
            Ok(_) => info!("created namespace {ns}"),
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    let svcs = ctl.list("Service").await?;
    let has_kubernetes = svcs.iter().any(|s| {
        objects::name_of(s) == "kubernetes" && objects::namespace_of(s) == Some("default")
    });
    if !has_kubernetes {
        let (net, _) = service_range(&ctl.app.flags.service_cluster_ip_range);
        let ip = std::net::Ipv4Addr::from(net + 1).to_string();
        let obj = json!({
            "metadata": {"name": "kubernetes", "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {
                "ports": [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": ctl.app.flags.secure_port}],
                "clusterIP": ip, "clusterIPs": [ip], "type": "ClusterIP", "sessionAffinity": "None",
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster",
            },
            "status": {"loadBalancer": {}},
        });
        match ctl.create("Service", obj).await {
            Ok(_) => info!("created service default/kubernetes ({ip})"),
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Logs an error unless it repeats the previous one.
struct Quiet(String);

impl Quiet {
    fn note(&mut self, what: &str, r: Result<(), ApiError>) {
        match r {
            Ok(()) => {}
            Err(e) => {
                let m = format!("{what}: {}", e.message);
                if m != self.0 {
                    warning!("controller: {m}");
                    self.0 = m;
                }
            }
        }
    }
}

/// Runs the controller forever: every 2 s (and on etcd recovery) while etcd is healthy.
pub async fn run(app: Arc<App>) {
    let ctl = Ctl { app };
    let mut health = ctl.app.store.health();
    let mut last_beat: Option<Instant> = None;
    let mut quiet = Quiet(String::new());
    let mut kubelet = nodes::KubeletWatch::default();
    loop {
        let ok = health.borrow_and_update().ok;
        if ok {
            if last_beat.is_none_or(|t| t.elapsed() >= nodes::HEARTBEAT) {
                // Like the system-namespaces and bootstrap controllers: recreate what a fresh
                // (or emptied) store lacks, on every heartbeat.
                quiet.note("bootstrap", bootstrap(&ctl).await);
                let r = nodes::sync(&ctl, &mut kubelet).await;
                if r.is_ok() {
                    last_beat = Some(Instant::now());
                }
                quiet.note("node status", r);
            }
            quiet.note("mirror pods", mirror::sync(&ctl).await);
            quiet.note("workloads", workloads::reconcile(&ctl).await);
        } else {
            // Heartbeat right away when etcd comes back.
            last_beat = None;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = health.changed() => {}
        }
    }
}
