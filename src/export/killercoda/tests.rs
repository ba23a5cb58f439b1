//! Tests of the Killercoda export: the plan, the pages, the scripts, the atomic write.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::inventory::Topology;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fake_binary(dir: &Path) -> PathBuf {
    let p = dir.join("breakfix-bin");
    std::fs::write(&p, b"#!/bin/sh\nexit 0\n").expect("write fake binary");
    p
}

fn opts(dir: &Path, topology: Topology) -> Options {
    Options {
        topology,
        ..Options::new(fake_binary(dir))
    }
}

#[test]
fn seed_lab_index_json() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let e = prepare(
        &repo().join("labs/etcd-outage-000.yaml"),
        &opts(tmp.path(), Topology::External),
    )
    .expect("export plan");
    let json = serde_json::to_string_pretty(&e.index).expect("index.json");
    insta::assert_snapshot!("etcd_outage_000_index", json);
    assert_eq!(e.host_lab, "/root/breakfix/labs/etcd-outage-000.yaml");
    assert_eq!(e.host_inventory, "/root/breakfix/inventory.yaml");
    assert_eq!(e.host_binary, "/root/breakfix/bin/breakfix");
}

#[test]
fn each_topology_exports_its_own_variant_of_a_step() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let lab = repo().join("labs/etcd-outage-000.yaml");
    let scenarios = |t| -> Vec<Option<String>> {
        let e = prepare(&lab, &opts(tmp.path(), t)).expect("export plan");
        e.steps.into_iter().map(|s| s.scenario).collect()
    };
    let stacked = scenarios(Topology::Stacked);
    assert_eq!(stacked[0].as_deref(), Some("etcd-static-pod-missing"));
    assert_eq!(stacked[2].as_deref(), Some("etcd-data-dir-wrong"));
    let external = scenarios(Topology::External);
    assert_eq!(external[0].as_deref(), Some("etcd-service-stopped"));
    assert_eq!(external[2].as_deref(), Some("etcd-data-dir-wrong-systemd"));
    assert_eq!(stacked[1], None, "a teaching step is the same everywhere");
}

#[test]
fn scripts_call_break_and_check_for_their_step() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let e = prepare(
        &repo().join("labs/etcd-outage-000.yaml"),
        &opts(tmp.path(), Topology::External),
    )
    .expect("export plan");
    let text = |p: &str| -> String {
        let f = e
            .files
            .iter()
            .find(|f| f.path == Path::new(p))
            .unwrap_or_else(|| panic!("{p} missing"));
        match &f.content {
            Content::Bytes(b) => String::from_utf8(b.clone()).expect("utf-8"),
            Content::CopyOf(_) => panic!("{p} is a copy"),
        }
    };
    let bg = text("step1/background.sh");
    assert!(bg.starts_with("#!/bin/bash\n"));
    assert!(bg.contains("set -u"));
    assert!(bg.contains("/root/breakfix/bin/breakfix --quiet --no-color break --lab /root/breakfix/labs/etcd-outage-000.yaml --step 1 --inventory /root/breakfix/inventory.yaml"), "{bg}");
    let vf = text("step1/verify.sh");
    assert!(vf.contains("exec /root/breakfix/bin/breakfix --no-color check --quick --brief --full-report /root/breakfix/log/step1-verify.log --lab /root/breakfix/labs/etcd-outage-000.yaml --step 1 --inventory /root/breakfix/inventory.yaml"), "{vf}");
    let inv = text("assets/inventory.yaml");
    assert!(inv.contains("topology: external"), "{inv}");
    assert!(inv.contains("transport: local"), "{inv}");
}

#[test]
fn failure_leaves_nothing_and_success_is_complete() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let mut e = prepare(
        &repo().join("labs/etcd-outage-000.yaml"),
        &opts(tmp.path(), Topology::External),
    )
    .expect("export plan");
    // A binary that vanished between planning and writing: the write fails half way.
    let good = e.files.clone();
    for f in &mut e.files {
        if let Content::CopyOf(p) = &mut f.content {
            *p = tmp.path().join("gone");
        }
    }
    assert!(write(&e, &out, false).is_err());
    assert!(!out.exists(), "no half export");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("ls")
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().contains("breakfix-export"))
        .collect();
    assert!(leftovers.is_empty(), "temp dir removed");
    e.files = good;
    write(&e, &out, false).expect("write");
    assert!(out.join("index.json").is_file());
    assert!(
        write(&e, &out, false).is_err(),
        "refuses a non-empty directory"
    );
    write(&e, &out, true).expect("--force replaces it");
    let mode = std::fs::metadata(out.join("step1/verify.sh"))
        .expect("verify.sh")
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111);
}

#[test]
fn glibc_requirement_is_read_from_version_names() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = tmp.path().join("bin");
    std::fs::write(
        &p,
        b"\0GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_PRIVATE\0GLIBC_2.17\0",
    )
    .expect("write");
    assert_eq!(required_glibc(&p), Some((2, 34)));
    std::fs::write(&p, b"static").expect("write");
    assert_eq!(required_glibc(&p), None);
}

#[test]
fn invalid_scenario_is_refused_before_writing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(tmp.path().join("labs")).expect("mkdir");
    std::fs::create_dir_all(tmp.path().join("scenarios")).expect("mkdir");
    std::fs::write(tmp.path().join("scenarios/bad.yaml"), "apiVersion: breakfix/v1\nkind: Scenario\nmetadata: {name: bad, title: t}\nfaults: []\nverify: {probes: [{kind: nosuch}]}\n").expect("write");
    std::fs::write(
        tmp.path().join("labs/l.yaml"),
        "apiVersion: breakfix/v1\nkind: Lab\nmetadata: {name: l, title: L}\nsteps:\n  - title: s\n    scenario: ../scenarios/bad.yaml\n",
    )
    .expect("write");
    let err = prepare(
        &tmp.path().join("labs/l.yaml"),
        &opts(tmp.path(), Topology::External),
    )
    .expect_err("invalid scenario");
    assert!(matches!(err, Error::Scenario { .. }), "{err}");
}

fn host(dir: &str) -> assets::HostPaths {
    assets::HostPaths {
        dir: dir.to_string(),
        bin_dir: format!("{dir}/bin"),
        binary: format!("{dir}/bin/breakfix"),
        inventory: format!("{dir}/inventory.yaml"),
        lab: format!("{dir}/labs/etcd-outage-000.yaml"),
    }
}

/// Step 1 of the seed lab as the templates render it, without reading any file.
fn incident_step(dir: &str) -> (Vec<OutFile>, StepEntry) {
    let st = StepSummary {
        number: 1,
        title: "etcd is down — bring it back without losing data".into(),
        scenario: Some("etcd-service-stopped".into()),
    };
    let text =
        "Something stopped etcd on `controlplane`:\n\n```bash\nsystemctl is-active etcd\n```\n\n";
    pages::Pages::new()
        .expect("templates load")
        .step(
            &st,
            text,
            Some(std::time::Duration::from_secs(480)),
            6,
            &host(dir),
        )
        .expect("renders")
}

fn body<'a>(files: &'a [OutFile], path: &str) -> &'a str {
    let f = files
        .iter()
        .find(|f| f.path == Path::new(path))
        .unwrap_or_else(|| panic!("{path} missing"));
    match &f.content {
        Content::Bytes(b) => std::str::from_utf8(b).expect("utf-8"),
        Content::CopyOf(_) => panic!("{path} is a copy"),
    }
}

#[test]
fn step_page_and_verify_script_render_from_the_templates() {
    let (files, entry) = incident_step("/root/breakfix");
    insta::assert_snapshot!("incident_step_text_md", body(&files, "step1/text.md"));
    insta::assert_snapshot!("incident_step_verify_sh", body(&files, "step1/verify.sh"));
    // insta ignores trailing newlines: each file ends in exactly one.
    for p in ["step1/text.md", "step1/verify.sh", "step1/background.sh"] {
        let b = body(&files, p);
        assert!(b.ends_with('\n') && !b.ends_with("\n\n"), "{p}: {b:?}");
    }
    assert_eq!(entry.verify.as_deref(), Some("step1/verify.sh"));
    assert_eq!(entry.background.as_deref(), Some("step1/background.sh"));
    let modes: Vec<u32> = files.iter().map(|f| f.mode).collect();
    assert_eq!(modes, [0o644, 0o755, 0o755]);
}

#[test]
fn scripts_quote_every_inserted_value() {
    let (files, _) = incident_step("/opt/it's $x");
    let q = r"'/opt/it'\''s $x";
    let verify = body(&files, "step1/verify.sh");
    assert!(
        verify.contains(&format!(
            "exec {q}/bin/breakfix' --no-color check --quick --brief --full-report {q}/log/step1-verify.log' --lab {q}/labs/etcd-outage-000.yaml' --step 1 --inventory {q}/inventory.yaml'\n"
        )),
        "{verify}"
    );
    let background = body(&files, "step1/background.sh");
    assert!(
        background.contains(&format!("mkdir -p {q}/log'\n")),
        "{background}"
    );
    assert!(
        background.contains(&format!(">>{q}/log/step1-background.log' 2>&1; then")),
        "{background}"
    );
}

#[test]
fn shell_templates_refuse_a_value_without_shq_and_undefined_is_an_error() {
    let mut env = pages::environment().expect("templates load");
    env.add_template("t.sh.j2", "echo {{ v }}\n")
        .expect("parses");
    env.add_template("q.sh.j2", "echo {{ v | shq }}\n")
        .expect("parses");
    env.add_template("t.md.j2", "{{ v }} {{ nope }}\n")
        .expect("parses");
    let ctx = minijinja::context! { v => "a b" };
    let err = env
        .get_template("t.sh.j2")
        .and_then(|t| t.render(&ctx))
        .expect_err("unquoted");
    assert!(err.to_string().contains("without `| shq`"), "{err}");
    let out = env
        .get_template("q.sh.j2")
        .and_then(|t| t.render(&ctx))
        .expect("quoted");
    assert_eq!(out, "echo 'a b'\n");
    let err = env
        .get_template("t.md.j2")
        .and_then(|t| t.render(&ctx))
        .expect_err("strict undefined");
    assert!(err.to_string().contains("undefined"), "{err}");
}
