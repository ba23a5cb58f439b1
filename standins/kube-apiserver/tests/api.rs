//! API behaviour through the real kubectl: Status errors (NotFound, AlreadyExists,
//! Conflict, Invalid), authentication (anonymous, untrusted certificate), protobuf
//! creates of several kinds, patches, watches that end, discovery and deletion cascades.

mod common;

use std::time::{Duration, Instant};

use common::{Kubectl, Stack};

#[test]
fn status_errors_and_optimistic_concurrency() {
    let s = Stack::start();
    let k = &s.kubectl;
    let r = k.run(&["get", "deploy", "nope"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr.trim(),
        "Error from server (NotFound): deployments.apps \"nope\" not found"
    );

    assert_eq!(
        k.run(&["create", "configmap", "c", "--from-literal=a=1"])
            .code,
        0
    );
    let r = k.run(&["create", "configmap", "c", "--from-literal=a=1"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("configmaps \"c\" already exists"),
        "{}",
        r.stderr
    );

    // Replace with a stale resourceVersion: 409 Conflict.
    let stale = k.run(&["get", "cm", "c", "-o", "json"]).stdout;
    assert_eq!(k.run(&["label", "cm", "c", "x=y"]).code, 0);
    let r = k.run_stdin(&["replace", "-f", "-"], Some(&stale));
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(
        r.stderr.contains("Error from server (Conflict)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("the object has been modified; please apply your changes to the latest version and try again"), "{}", r.stderr);

    // Invalid names and missing namespaces.
    let r = k.run(&["create", "configmap", "Bad_Name"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("is invalid: metadata.name: Invalid value: \"Bad_Name\""),
        "{}",
        r.stderr
    );
    let r = k.run(&["create", "configmap", "x", "-n", "nowhere"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("namespaces \"nowhere\" not found"),
        "{}",
        r.stderr
    );
    let r = k.run(&["delete", "namespace", "kube-system"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("Forbidden"), "{}", r.stderr);

    // Deployment selector must match the template.
    let bad = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: bad\nspec:\n  selector:\n    matchLabels: {app: a}\n  template:\n    metadata:\n      labels: {app: b}\n    spec:\n      containers: [{name: c, image: nginx}]\n";
    let r = k.run_stdin(&["apply", "-f", "-"], Some(bad));
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(
        r.stderr
            .contains("`selector` does not match template `labels`"),
        "{}",
        r.stderr
    );
}

#[test]
fn authentication_like_the_real_defaults() {
    let s = Stack::start();
    // Anonymous (no client certificate): health and version only.
    let curl = |path: &str, extra: &[&str]| {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--cacert",
                &s.pki.path("ca.crt"),
                "-w",
                "\n%{http_code}",
            ])
            .args(extra)
            .arg(format!("https://127.0.0.1:{}{path}", s.api.port))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl("/readyz", &[]), "ok\n200");
    assert!(
        curl("/version", &[]).contains("\"gitVersion\": \"v1.32.4\"")
            || curl("/version", &[]).contains("\"gitVersion\":\"v1.32.4\"")
    );
    let r = curl("/api/v1/nodes", &[]);
    assert!(r.ends_with("403"), "{r}");
    assert!(
        r.contains(
            "nodes is forbidden: User \\\"system:anonymous\\\" cannot list resource \\\"nodes\\\""
        ),
        "{r}"
    );
    // An unknown bearer token is not anonymous: 401.
    let r = curl("/api/v1/nodes", &["-H", "Authorization: Bearer abc.def"]);
    assert!(r.ends_with("401"), "{r}");

    // A certificate from an untrusted CA: 401.
    let rogue = Kubectl::new(s.path(), &s.pki, s.api.port, ("rogue.crt", "rogue.key"));
    let r = rogue.run(&["get", "nodes"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("error: You must be logged in to the server"),
        "{}",
        r.stderr
    );
}

#[test]
fn protobuf_creates_patches_watches_and_cascades() {
    let s = Stack::start();
    let k = &s.kubectl;
    let ok = |args: &[&str]| {
        let r = k.run(args);
        assert_eq!(r.code, 0, "{args:?}: {r:#?}\n{}", s.api.log_text());
        r
    };
    ok(&["create", "namespace", "lab"]);
    ok(&[
        "create",
        "secret",
        "generic",
        "pw",
        "-n",
        "lab",
        "--from-literal=password=s3cret",
    ]);
    let r = ok(&[
        "get",
        "secret",
        "pw",
        "-n",
        "lab",
        "-o",
        "jsonpath={.data.password}",
    ]);
    assert_eq!(r.stdout, "czNjcmV0");
    ok(&[
        "create",
        "deployment",
        "web",
        "-n",
        "lab",
        "--image=nginx:1.25",
        "--replicas=2",
        "--port=80",
    ]);
    ok(&["expose", "deployment", "web", "-n", "lab", "--port=80"]);
    ok(&[
        "run",
        "one",
        "-n",
        "lab",
        "--image=busybox",
        "--",
        "sleep",
        "100",
    ]);
    let r = k.eventually(
        &["get", "deploy", "web", "-n", "lab"],
        Duration::from_secs(15),
        |r| r.stdout.contains("2/2"),
    );
    assert!(r.stdout.contains("2/2"), "{r:#?}");
    let r = k.eventually(
        &["get", "pod", "one", "-n", "lab"],
        Duration::from_secs(15),
        |r| r.stdout.contains("Running"),
    );
    assert!(r.stdout.contains("1/1     Running"), "{r:#?}");

    // Strategic merge (set image), JSON patch, merge patch; a rollout creates a new RS.
    ok(&[
        "set",
        "image",
        "deployment/web",
        "-n",
        "lab",
        "nginx=nginx:1.26",
    ]);
    ok(&[
        "patch",
        "deployment",
        "web",
        "-n",
        "lab",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
    ]);
    ok(&[
        "patch",
        "deployment",
        "web",
        "-n",
        "lab",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"tier":"front"}}}"#,
    ]);
    let r = k.eventually(
        &["get", "deploy", "web", "-n", "lab", "-o", "wide"],
        Duration::from_secs(20),
        |r| r.stdout.contains("3/3"),
    );
    assert!(r.stdout.contains("nginx:1.26"), "{r:#?}");
    let r = ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        "lab",
        "--timeout=20s",
    ]);
    assert!(r.stdout.contains("successfully rolled out"), "{r:#?}");
    let r = ok(&["get", "rs", "-n", "lab"]);
    assert_eq!(r.stdout.lines().count(), 3, "{}", r.stdout);

    // A watch ends by itself (timeout), it does not hang.
    let t = Instant::now();
    let r = k.run(&["get", "pods", "-n", "lab", "-w", "--request-timeout=3s"]);
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "watch took {:?}",
        t.elapsed()
    );
    assert!(r.stdout.contains("one"), "{r:#?}");

    // Deleting a pod of a deployment: it is replaced.
    let name = ok(&[
        "get",
        "pods",
        "-n",
        "lab",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ])
    .stdout;
    ok(&["delete", "pod", "-n", "lab", &name]);
    let r = k.eventually(
        &["get", "deploy", "web", "-n", "lab"],
        Duration::from_secs(15),
        |r| r.stdout.contains("3/3"),
    );
    assert!(r.stdout.contains("3/3"), "{r:#?}");

    // Deleting the deployment removes its replica sets and pods.
    ok(&["delete", "deployment", "web", "-n", "lab"]);
    let r = k.eventually(
        &["get", "pods", "-n", "lab", "-l", "app=web"],
        Duration::from_secs(15),
        |r| r.stdout.is_empty(),
    );
    assert!(r.stdout.is_empty(), "{r:#?}");

    // Deleting the namespace removes what is in it.
    ok(&["delete", "namespace", "lab"]);
    let out = s
        .etcd
        .etcdctl(&["get", "/registry", "--prefix", "--keys-only"]);
    let keys = String::from_utf8_lossy(&out.stdout);
    assert!(
        !keys.contains("/lab/") && !keys.contains("/namespaces/lab"),
        "{keys}"
    );

    // Discovery as kubectl sees it.
    let r = ok(&["api-resources"]);
    for line in [
        "deployments",
        "deploy",
        "configmaps",
        "cm",
        "nodes",
        "no",
        "pods",
        "po",
    ] {
        assert!(r.stdout.contains(line), "{}", r.stdout);
    }
    let r = ok(&["get", "componentstatuses"]);
    assert!(r.stdout.contains("etcd-0               Healthy"), "{r:#?}");
}
