//! The kube crate (what the engine's `kube` probes use) against the stand-in: typed
//! k8s-openapi objects parse, deployment ready replicas, configmap create/delete, /readyz.

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Node, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use common::{Stack, SEED_MONITOR, SEED_WORKLOADS};

async fn client(s: &Stack) -> Client {
    let kc = Kubeconfig::read_from(&s.kubectl.kubeconfig).expect("kubeconfig");
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(cfg).expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_objects_parse_and_probes_work() {
    let s = Stack::start();
    let r = s.kubectl.run_stdin(
        &["apply", "-f", "-"],
        Some(&format!("{SEED_WORKLOADS}---\n{SEED_MONITOR}")),
    );
    assert_eq!(r.code, 0, "{r:#?}");
    let c = client(&s).await;
    // A mirror pod in crash-loop, to parse its status too.
    let now = "2025-11-24T12:00:00Z";
    std::fs::write(
        s.path().join("standin-pods.json"),
        format!(
            r#"{{"node":"controlplane","updated":"{now}","pods":[{{"name":"etcd-controlplane","namespace":"kube-system","uid":"0a1b","manifest":"","phase":"Running","containers":[{{"name":"etcd","pid":0,"state":"waiting","reason":"CrashLoopBackOff","message":"back-off 20s restarting failed container","exit_code":1,"restart_count":2,"started_at":"{now}","finished_at":"{now}","image":"registry.k8s.io/etcd:3.5.16-0"}}]}}]}}"#
        ),
    )
    .expect("status file");

    let deploys: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let mut ready = None;
    for _ in 0..40 {
        let d = deploys.get("critical-app").await.expect("get deployment");
        ready = d.status.and_then(|st| st.ready_replicas);
        if ready == Some(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(ready, Some(3));

    let lp = ListParams::default();
    let nodes = Api::<Node>::all(c.clone()).list(&lp).await.expect("nodes");
    assert_eq!(nodes.items.len(), 2);
    let mut pods = Api::<Pod>::all(c.clone()).list(&lp).await.expect("pods");
    for _ in 0..20 {
        if pods.items.len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        pods = Api::<Pod>::all(c.clone()).list(&lp).await.expect("pods");
    }
    let mirror = pods
        .items
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("etcd-controlplane"))
        .expect("mirror pod");
    let cs = &mirror
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default()[0];
    assert_eq!(cs.restart_count, 2);
    assert_eq!(
        cs.state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.as_deref()),
        Some("CrashLoopBackOff")
    );
    let with_label = Api::<Pod>::namespaced(c.clone(), "default")
        .list(&ListParams::default().labels("app=critical-app"))
        .await
        .expect("pods by label");
    assert_eq!(with_label.items.len(), 3);
    Api::<ReplicaSet>::all(c.clone())
        .list(&lp)
        .await
        .expect("replicasets");
    Api::<Service>::all(c.clone())
        .list(&lp)
        .await
        .expect("services");
    Api::<Namespace>::all(c.clone())
        .list(&lp)
        .await
        .expect("namespaces");
    Api::<Event>::all(c.clone())
        .list(&lp)
        .await
        .expect("events");
    Api::<Lease>::all(c.clone())
        .list(&lp)
        .await
        .expect("leases");

    // API writable: create and delete a configmap.
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "probe"}, "data": {"k": "v"}
    }))
    .expect("configmap");
    let created = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect("create");
    assert!(created.metadata.resource_version.is_some());
    let err = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect_err("exists");
    assert!(err.to_string().contains("already exists"), "{err}");
    cms.delete("probe", &DeleteParams::default())
        .await
        .expect("delete");
    let err = cms.get("probe").await.expect_err("gone");
    assert!(err.to_string().contains("not found"), "{err}");

    let req = hyper::Request::get("/readyz")
        .body(Vec::new())
        .expect("request");
    assert_eq!(c.request_text(req).await.expect("readyz"), "ok");
}
