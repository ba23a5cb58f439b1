//! The etcd fault kinds (`etcd_quota`, `etcd_keys`) against a REAL etcd 3.4 (Debian's
//! `/usr/bin/etcd`) started per test on 127.0.0.1 with free ports, a temp data dir, a small
//! `--quota-backend-bytes` and a mutual-TLS PKI generated with rcgen (`common::etcd`, shared
//! with `etcd_probe.rs`). The faults reach it through a `NodeSession` on the local transport,
//! as on a node; the `etcd` probe grades the result. Last, a scenario file through the CLI
//! (`run --solution`, `break` + `reset`, `test`) proves the journaled undo and reset path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use breakfix::fault::etcd_keys::{EtcdKeysUndo, SavedKey};
use breakfix::fault::etcd_quota::{EtcdQuotaUndo, DEFAULT_PREFIX};
use breakfix::fault::file::FileUndo;
use breakfix::fault::{Action, ActionCtx, Undo};
use breakfix::inventory::Inventory;
use breakfix::node::NodeSession;
use breakfix::probe::Facts;
use breakfix::template::Renderer;
use serde_json::{json, Value};

use crate::common::etcd::{
    count, fact, gather, local_inventory, local_node, probe, revision, session, Etcd, ETCDCTL,
};
use crate::common::Cli;

const QUOTA_16MIB: &str = "--quota-backend-bytes=16777216";
const T: Duration = Duration::from_secs(10);

/// A fault as a scenario writes it, rendered for the node (connection fields from the
/// inventory), as the planner does.
fn action(yaml: &str, inv: &Inventory) -> Action {
    let a: Action = serde_saphyr::from_str(yaml).expect("fault YAML");
    a.render(&Renderer::new(&BTreeMap::new(), inv, &local_node()))
        .expect("render")
}

/// Applies `a` as a step (no journal: the tests build the undo the fault would journal).
async fn apply(a: &Action, s: &NodeSession) -> breakfix::Result<()> {
    let ctx = ActionCtx {
        session: s,
        journal: None,
        scenario: "etcd-faults-test",
        timeout: Duration::from_secs(60),
    };
    a.apply(&ctx).await
}

/// Applies `a`, which must fail (`why`); the error's text.
async fn refused(a: &Action, s: &NodeSession, why: &str) -> String {
    apply(a, s).await.expect_err(why).to_string()
}

/// The undo an `etcd_quota` fault journals.
fn quota_undo(etcd: &Etcd, prefix: &str, db_size_before: i64) -> Undo {
    Undo::EtcdQuota(EtcdQuotaUndo {
        etcd: etcd.target(),
        prefix: prefix.into(),
        db_size_before,
    })
}

/// The `wanted` facts of an `etcd` probe with `extra` YAML lines.
async fn facts(s: &NodeSession, inv: &Inventory, extra: &str, wanted: &[&str]) -> Facts {
    gather(&probe(extra), s, inv, T, wanted).await
}

#[tokio::test]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs etcd")]
async fn quota_fill_raises_nospace_and_the_undo_recovers_in_order() {
    let etcd = Etcd::start(&[QUOTA_16MIB]).await;
    let inv = etcd.inventory();
    let s = session().await;
    let before = facts(&s, &inv, "", &["alarms", "writable", "db_size"]).await;
    assert_eq!(fact(&before, "alarms"), &json!([]));
    let db_before = fact(&before, "db_size").as_i64().expect("db_size");

    let fill = action("kind: etcd_quota\n", &inv);
    assert_eq!(
        fill.label(),
        format!("fill etcd until NOSPACE (under {DEFAULT_PREFIX})")
    );
    let start = Instant::now();
    apply(&fill, &s).await.expect("fill to NOSPACE");
    let took = start.elapsed();
    let broken = facts(&s, &inv, "", &["healthy", "alarms", "writable", "db_size"]).await;
    eprintln!("etcd_quota: NOSPACE after {took:?}: {broken:?}");
    assert_eq!(fact(&broken, "alarms"), &json!(["NOSPACE"]));
    assert_eq!(fact(&broken, "writable"), &json!(false));
    assert_eq!(
        fact(&broken, "healthy"),
        &json!(true),
        "etcd 3.4 stays healthy"
    );
    let db_broken = fact(&broken, "db_size").as_i64().expect("db_size");
    assert!(db_broken >= 12 << 20, "{db_broken}");
    assert!(
        took < Duration::from_secs(15),
        "a 16 MiB fill took {took:?}"
    );
    let mut c = etcd.client().await;
    assert!(count(&mut c, DEFAULT_PREFIX).await >= 10);

    // A second fill on a broken etcd is refused before anything changes.
    let err = refused(&fill, &s, "already NOSPACE").await;
    assert!(
        err.contains("controlplane") && err.contains("already has a NOSPACE alarm"),
        "{err}"
    );

    // The undo the fault journals, replayed twice.
    let undo = quota_undo(&etcd, DEFAULT_PREFIX, db_before);
    eprintln!("undo: {}", undo.describe());
    let start = Instant::now();
    undo.revert(&s).await.expect("recover");
    eprintln!("etcd_quota undo took {:?}", start.elapsed());
    let after = facts(&s, &inv, "", &["alarms", "writable", "db_size"]).await;
    eprintln!("after the undo: {after:?}");
    assert_eq!(fact(&after, "alarms"), &json!([]));
    assert_eq!(fact(&after, "writable"), &json!(true));
    let db_after = fact(&after, "db_size").as_i64().expect("db_size");
    assert!(
        db_after < db_broken / 4,
        "defragmented: {db_broken} -> {db_after}"
    );
    assert_eq!(count(&mut c, DEFAULT_PREFIX).await, 0);
    c.put("/after/recovery", "ok", None)
        .await
        .expect("a put works after the undo");
    let start = Instant::now();
    undo.revert(&s).await.expect("second undo: nothing to do");
    assert!(start.elapsed() < Duration::from_secs(2));
    let out = etcd.etcdctl(&["alarm", "list"]);
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
}

#[tokio::test]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs etcd")]
async fn quota_undo_after_a_partial_recovery_still_defragments() {
    // The learner's classic half-fix: delete the filler, compact, disarm — no defrag. The
    // next put would re-raise the alarm; reset must still leave a writable etcd.
    let etcd = Etcd::start(&[QUOTA_16MIB]).await;
    let inv = etcd.inventory();
    let s = session().await;
    let db_before = fact(&facts(&s, &inv, "", &["db_size"]).await, "db_size")
        .as_i64()
        .expect("db_size");
    apply(
        &action("kind: etcd_quota\nprefix: /fill/\nconcurrency: 4\n", &inv),
        &s,
    )
    .await
    .expect("fill");
    let mut c = etcd.client().await;
    c.delete(
        "/fill/",
        Some(etcd_client::DeleteOptions::new().with_prefix()),
    )
    .await
    .expect("del");
    let rev = revision(&mut c).await;
    c.compact(rev, None).await.expect("compact");
    let out = etcd.etcdctl(&["alarm", "disarm"]);
    assert!(out.status.success(), "{out:?}");
    let half = facts(&s, &inv, "", &["alarms", "writable"]).await;
    eprintln!("after compact + disarm without defrag: {half:?}");
    assert_eq!(
        fact(&half, "writable"),
        &json!(false),
        "the next put re-raises NOSPACE"
    );

    let undo = quota_undo(&etcd, "/fill/", db_before);
    undo.revert(&s).await.expect("recover");
    let after = facts(&s, &inv, "", &["alarms", "writable"]).await;
    assert_eq!(fact(&after, "alarms"), &json!([]));
    assert_eq!(fact(&after, "writable"), &json!(true), "{after:?}");
}

#[tokio::test]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs etcd")]
async fn quota_fill_refuses_a_prefix_with_keys_and_a_registry_prefix() {
    let etcd = Etcd::start(&[QUOTA_16MIB]).await;
    let inv = etcd.inventory();
    let s = session().await;
    let mut c = etcd.client().await;
    c.put("/mine/keep", "v", None).await.expect("put");
    let err = refused(
        &action("kind: etcd_quota\nprefix: /mine/\n", &inv),
        &s,
        "keys under the prefix",
    )
    .await;
    assert!(
        err.contains("controlplane") && err.contains("already exist under `/mine/`"),
        "{err}"
    );
    let err = refused(
        &action("kind: etcd_quota\nprefix: /registry/\n", &inv),
        &s,
        "registry prefix",
    )
    .await;
    assert!(
        err.contains("would let the undo delete other keys"),
        "{err}"
    );
    let err = refused(
        &action("kind: etcd_quota\nvalue_size: 2000000\n", &inv),
        &s,
        "too large",
    )
    .await;
    assert!(err.contains("value_size 2000000"), "{err}");
    assert_eq!(count(&mut c, "/").await, 1, "nothing written");
}

#[tokio::test]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs etcd")]
async fn quota_fill_without_a_small_quota_stops_at_max_bytes() {
    let etcd = Etcd::start(&[]).await;
    let inv = etcd.inventory();
    let s = session().await;
    let err = refused(
        &action("kind: etcd_quota\nmax_bytes: 4194304\n", &inv),
        &s,
        "no NOSPACE within 4 MiB",
    )
    .await;
    assert!(
        err.contains("controlplane") && err.contains("expected NOSPACE"),
        "{err}"
    );
    let undo = quota_undo(&etcd, DEFAULT_PREFIX, 0);
    undo.revert(&s).await.expect("undo after a partial fill");
    let mut c = etcd.client().await;
    assert_eq!(count(&mut c, DEFAULT_PREFIX).await, 0);
}

#[tokio::test]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs etcd")]
async fn delete_keys_and_put_them_back() {
    let etcd = Etcd::start(&[]).await;
    let inv = etcd.inventory();
    let s = session().await;
    let mut c = etcd.client().await;
    let binary: Vec<u8> = (0u8..=255).collect();
    let keys: Vec<(&str, Vec<u8>)> = vec![
        (
            "/registry/deployments/default/critical-app",
            b"{\"kind\":\"Deployment\"}".to_vec(),
        ),
        (
            "/registry/deployments/default/critical-app-canary",
            b"canary".to_vec(),
        ),
        (
            "/registry/pods/default/critical-app-7d9f-abcde",
            binary.clone(),
        ),
        (
            "/registry/pods/default/critical-app-7d9f-fghij",
            b"pod2".to_vec(),
        ),
        ("/registry/pods/kube-system/etcd", b"other".to_vec()),
    ];
    for (k, v) in &keys {
        c.put(*k, v.clone(), None).await.expect("put");
    }

    // exact: only that key, not the canary.
    let one = action(
        "kind: etcd_keys\ndelete: /registry/deployments/default/critical-app\nexact: true\n",
        &inv,
    );
    assert_eq!(
        one.label(),
        "delete etcd key /registry/deployments/default/critical-app"
    );
    apply(&one, &s).await.expect("delete one");
    assert_eq!(count(&mut c, "/registry/deployments/").await, 1);
    // prefix: every pod of the app.
    let pods = action("kind: etcd_keys\ndelete: /registry/pods/default/\n", &inv);
    apply(&pods, &s).await.expect("delete pods");
    assert_eq!(count(&mut c, "/registry/pods/").await, 1);

    let enc = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    let saved = |list: &[&(&str, Vec<u8>)]| {
        list.iter()
            .map(|(k, v)| SavedKey {
                key: enc(k.as_bytes()),
                value: enc(v),
            })
            .collect::<Vec<_>>()
    };
    let undo_one = Undo::EtcdKeys(EtcdKeysUndo {
        etcd: etcd.target(),
        deleted: "/registry/deployments/default/critical-app".into(),
        keys: saved(&[&keys[0]]),
    });
    let undo_pods = Undo::EtcdKeys(EtcdKeysUndo {
        etcd: etcd.target(),
        deleted: "/registry/pods/default/".into(),
        keys: saved(&[&keys[2], &keys[3]]),
    });
    eprintln!("{} / {}", undo_one.describe(), undo_pods.describe());
    for u in [&undo_pods, &undo_one] {
        u.revert(&s).await.expect("put back");
    }
    let rev = revision(&mut c).await;
    for u in [&undo_pods, &undo_one] {
        u.revert(&s).await.expect("idempotent");
    }
    assert_eq!(revision(&mut c).await, rev, "a second undo writes nothing");
    for (k, v) in &keys {
        let r = c.get(*k, None).await.expect("get");
        assert_eq!(
            r.kvs().first().map(|kv| kv.value().to_vec()),
            Some(v.clone()),
            "{k}"
        );
    }

    let err = refused(
        &action("kind: etcd_keys\ndelete: /registry/nothing-here/\n", &inv),
        &s,
        "nothing to delete",
    )
    .await;
    assert!(
        err.contains("controlplane") && err.contains("expected at least one"),
        "{err}"
    );
    let err = refused(
        &action("kind: etcd_keys\ndelete: /registry/\nmax_keys: 2\n", &inv),
        &s,
        "too many",
    )
    .await;
    assert!(err.contains("more than max_keys (2)"), "{err}");
    assert_eq!(
        count(&mut c, "/registry/").await,
        5,
        "refusals change nothing"
    );
}

#[tokio::test]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs etcd")]
async fn snapshot_saves_a_valid_file_on_the_node_and_undo_removes_it() {
    let etcd = Etcd::start(&[]).await;
    let inv = etcd.inventory();
    let s = session().await;
    let mut c = etcd.client().await;
    for i in 0..50 {
        c.put(
            format!("/registry/configmaps/default/cm{i}"),
            vec![b'x'; 2048],
            None,
        )
        .await
        .expect("put");
    }
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("backup.db");
    let snap = action(
        &format!("kind: etcd_keys\nsnapshot: {}\n", path.display()),
        &inv,
    );
    let start = Instant::now();
    apply(&snap, &s).await.expect("snapshot");
    eprintln!("snapshot saved in {:?}", start.elapsed());
    let meta = std::fs::metadata(&path).expect("the snapshot exists");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let out = Command::new(ETCDCTL)
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", "-w", "json"])
        .arg(&path)
        .output()
        .expect("etcdctl");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("etcdctl snapshot status: {text}");
    assert!(out.status.success(), "{out:?}");
    let status: Value = serde_json::from_str(text.trim()).expect("status json");
    assert!(
        status["totalKey"].as_i64().is_some_and(|n| n >= 50),
        "{status}"
    );

    // An existing path is never overwritten; a missing directory is an error.
    let err = refused(&snap, &s, "exists").await;
    assert!(err.contains("already exists on the node"), "{err}");
    let err = refused(
        &action(
            &format!(
                "kind: etcd_keys\nsnapshot: {}/no/such/dir/x.db\n",
                dir.path().display()
            ),
            &inv,
        ),
        &s,
        "no dir",
    )
    .await;
    assert!(err.contains("does not exist on the node"), "{err}");

    // The undo the fault journals: remove the file (it did not exist).
    let undo = Undo::File(FileUndo {
        path: path.display().to_string(),
        pre_image: None,
        sha256: None,
        then: None,
    });
    undo.revert(&s).await.expect("remove");
    assert!(!path.exists());
    undo.revert(&s).await.expect("idempotent");
}

#[test]
fn etcd_keys_needs_exactly_one_mode() {
    let inv = local_inventory("https://127.0.0.1:2379".into(), "/ca", "/c", "/k");
    let r = Renderer::new(&BTreeMap::new(), &inv, &local_node());
    for (yaml, want) in [
        ("kind: etcd_keys\n", "needs `delete:`"),
        ("kind: etcd_keys\ndelete: /a\nsnapshot: /b\n", "not both"),
        ("kind: etcd_keys\ndelete: \"\"\n", "every key"),
        ("kind: etcd_keys\nsnapshot: rel.db\n", "absolute path"),
    ] {
        let a: Action = serde_saphyr::from_str(yaml).expect("yaml");
        let err = a.render(&r).expect_err(yaml).to_string();
        assert!(err.contains(want), "{yaml}: {err}");
    }
    // Rendering fills the connection from the inventory.
    let a: Action = serde_saphyr::from_str("kind: etcd_keys\nsnapshot: /b\n").expect("yaml");
    match a.render(&r).expect("render") {
        Action::EtcdKeys(k) => {
            assert_eq!(k.endpoint.as_deref(), Some("https://127.0.0.1:2379"));
            assert_eq!(k.key_file.as_deref(), Some("/k"));
        }
        other => panic!("{other:?}"),
    }
}

// ---- through the CLI ---------------------------------------------------------------------

struct Lab {
    etcd: Etcd,
    dir: tempfile::TempDir,
}

impl Lab {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn breakfix(&self, args: &[&str]) -> Output {
        Cli::new()
            .inventory(self.path("inventory.yaml"))
            .no_inventory_for(&["validate"])
            .state_dir(self.path("state"))
            .node_journal_dir(self.path("node-journal"))
            .run(args)
    }

    fn journal_files(&self) -> usize {
        let n = |p: &Path| std::fs::read_dir(p).map(|rd| rd.count()).unwrap_or(0);
        n(&self.path("node-journal")) + n(&self.path("state/journal/controlplane"))
    }
}

use crate::common::show_output as text;

const CRITICAL: &str = "/registry/deployments/default/critical-app";

async fn lab() -> Lab {
    let etcd = Etcd::start(&[QUOTA_16MIB]).await;
    let dir = tempfile::Builder::new()
        .prefix("breakfix-etcd-faults-")
        .tempdir()
        .expect("tempdir");
    let inv = format!(
        "apiVersion: breakfix/v1\nkind: Inventory\ncluster:\n  name: etcd-faults\n  etcd:\n    endpoints: [{}]\n    ca_file: {}\n    cert_file: {}\n    key_file: {}\nnodes:\n  - name: controlplane\n    address: 127.0.0.1\n    roles: [control-plane, etcd]\n    transport: local\n",
        etcd.url(),
        etcd.pki.path_str("ca.crt"),
        etcd.pki.path_str("client.crt"),
        etcd.pki.path_str("client.key"),
    );
    std::fs::write(dir.path().join("inventory.yaml"), inv).expect("inventory");
    let etcdctl = "etcdctl --endpoints={{ cluster.etcd.endpoints[0] }} --cacert={{ cluster.etcd.ca_file }} --cert={{ cluster.etcd.cert_file }} --key={{ cluster.etcd.key_file }}";
    let scenario = format!(
        r#"apiVersion: breakfix/v1
kind: Scenario
metadata:
  name: etcd-faults-cli
  title: a backup, an accidental deletion and a full quota
  time_limit: 60s
targets:
  controlplane:
    role: control-plane
faults:
  - kind: etcd_keys
    name: back up etcd
    snapshot: "{snap}"
  - kind: etcd_keys
    name: delete critical-app
    delete: {CRITICAL}
    exact: true
  - kind: etcd_quota
    name: fill the quota
confirm:
  - kind: etcd
    name: no-alarm
    expect:
      alarms: []
verify:
  probes:
    - kind: etcd
      name: alarms-clear
      within: 10s
      expect:
        alarms: []
    - kind: etcd
      name: accepts-writes
      needs: [alarms-clear]
      expect:
        writable: true
solution:
  - kind: command
    name: delete the filler, compact, defragment, disarm
    run: |
      set -e
      export ETCDCTL_API=3
      E="{etcdctl}"
      $E del --prefix /breakfix/quota-fill/ >/dev/null
      rev=$($E endpoint status -w json | grep -o '"revision":[0-9]*' | cut -d: -f2)
      $E compact "$rev" >/dev/null
      $E defrag >/dev/null
      $E alarm disarm >/dev/null
wrong_fixes:
  - name: compact and disarm without defragmenting
    why: the freed pages stay in the database file, so the next put raises NOSPACE again
    steps:
      - kind: command
        run: |
          set -e
          export ETCDCTL_API=3
          E="{etcdctl}"
          $E del --prefix /breakfix/quota-fill/ >/dev/null
          rev=$($E endpoint status -w json | grep -o '"revision":[0-9]*' | cut -d: -f2)
          $E compact "$rev" >/dev/null
          $E alarm disarm >/dev/null
        undo: "true"
"#,
        snap = dir.path().join("backup.db").display(),
    );
    std::fs::write(dir.path().join("scenario.yaml"), scenario).expect("scenario");
    let mut c = etcd.client().await;
    c.put(CRITICAL, "critical-app-v1", None)
        .await
        .expect("seed");
    Lab { etcd, dir }
}

async fn assert_baseline(lab: &Lab) {
    let mut c = lab.etcd.client().await;
    let r = c.get(CRITICAL, None).await.expect("get");
    assert_eq!(
        r.kvs().first().map(|kv| kv.value().to_vec()),
        Some(b"critical-app-v1".to_vec()),
        "critical-app is back"
    );
    assert_eq!(count(&mut c, DEFAULT_PREFIX).await, 0, "no filler left");
    let alarms = c
        .alarm(
            etcd_client::AlarmAction::Get,
            etcd_client::AlarmType::None,
            None,
        )
        .await
        .expect("alarms");
    assert!(alarms.alarms().is_empty());
    c.put("/breakfix/test/after", "ok", None)
        .await
        .expect("writable");
    c.delete("/breakfix/test/after", None).await.expect("del");
    assert!(!lab.path("backup.db").exists(), "the snapshot is removed");
    assert_eq!(lab.journal_files(), 0, "reset empties both journal copies");
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs etcd")]
async fn scenario_through_the_cli_run_break_reset_and_selftest() {
    let lab = lab().await;
    let sc = lab.path("scenario.yaml");
    let sc = sc.to_str().expect("utf-8");

    let o = lab.breakfix(&["validate", sc]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // run --solution: break (journaled), confirm, the etcdctl recovery, verify, reset.
    let start = Instant::now();
    let o = lab.breakfix(&[
        "run",
        sc,
        "--solution",
        "--output",
        "json",
        "--poll",
        "200ms",
    ]);
    eprintln!("run --solution took {:?}", start.elapsed());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).expect("json report");
    assert_eq!(r["outcome"], "pass", "{r}");
    assert_eq!(r["confirm"][0]["status"], "fail", "{r}");
    assert!(
        r["confirm"][0]["checks"][0]["found"]
            .as_str()
            .is_some_and(|f| f.contains("NOSPACE")),
        "{r}"
    );
    assert_baseline(&lab).await;

    // break, then reset without any fix: the journal alone puts everything back.
    let o = lab.breakfix(&["break", sc]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        lab.path("backup.db").exists(),
        "the snapshot exists after the break"
    );
    let mut c = lab.etcd.client().await;
    assert_eq!(count(&mut c, CRITICAL).await, 0, "critical-app deleted");
    assert_eq!(lab.journal_files(), 6, "3 undos, local and node copies");
    let o = lab.breakfix(&["reset"]);
    eprintln!("reset:\n{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_baseline(&lab).await;

    // The self-test matrix: baseline, break, solution, reset to baseline, wrong fix fails.
    let junit = lab.path("junit.xml");
    let start = Instant::now();
    let o = lab.breakfix(&[
        "test",
        sc,
        "--output",
        "json",
        "--junit",
        junit.to_str().expect("utf-8"),
    ]);
    eprintln!("breakfix test took {:?}\n{}", start.elapsed(), text(&o));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).expect("json");
    let rows = r[0]["rows"].as_array().expect("rows");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "baseline",
            "break",
            "solution",
            "reset",
            "wrong-fix: compact and disarm without defragmenting"
        ]
    );
    assert!(rows.iter().all(|r| r["status"] == "pass"), "{r}");
    assert!(std::fs::read_to_string(&junit).is_ok_and(|j| j.contains("testcase")));
    assert_baseline(&lab).await;
}
