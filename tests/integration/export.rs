//! `breakfix export killercoda` (issue 6): export the seed 000 lab, prove index.json is
//! complete for every step, then play Killercoda on the sandbox: copy the export onto the
//! controlplane with the real scp/ssh, put every asset where index.json says, run step 1's
//! background.sh (etcd must go down), and its verify.sh before the fix (non-zero, naming a
//! failing probe) and after `systemctl enable --now etcd` (exit 0).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use breakfix::inventory::Topology;

use crate::common::{breakfix, sandbox, SandboxGuard};

const LAB: &str = "labs/etcd-outage-000.yaml";
/// Where the test puts the assets on the node (removed at the end).
const HOST_DIR: &str = "/root/breakfix-export-test";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn export(out: &Path, extra: &[&str]) -> Output {
    let lab = repo().join(LAB);
    let mut args = vec![
        "export",
        "killercoda",
        lab.to_str().expect("utf-8 path"),
        "-o",
        out.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    breakfix(&args)
}

fn export_ok(out: &Path, extra: &[&str]) {
    let o = export(out, extra);
    assert!(
        o.status.success(),
        "export failed ({:?}):\n{}\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    );
}

fn index(out: &Path) -> Value {
    let raw = std::fs::read_to_string(out.join("index.json")).expect("read index.json");
    serde_json::from_str(&raw).expect("index.json is valid JSON")
}

fn s<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, found {v}"))
}

/// The scenario and grader file names the lab uses (every topology's: the lab file names them
/// all), found through the library (not through the exporter's own output).
fn lab_files() -> (Vec<String>, Vec<String>) {
    let lab = breakfix::lab::LoadedLab::load(&repo().join(LAB)).expect("load the lab");
    let (mut scenarios, mut graders) = (BTreeSet::new(), BTreeSet::new());
    for n in 1..=lab.lab.steps.len() {
        for (_, p) in lab.scenario_variants(n) {
            scenarios.insert(p.file_name().expect("name").to_string_lossy().to_string());
            let rep = breakfix::scenario::check_file(&p, None);
            assert!(rep.is_ok(), "{}", rep.render(false));
            for g in &rep.loaded.expect("loaded").graders {
                graders.insert(
                    g.path
                        .file_name()
                        .expect("name")
                        .to_string_lossy()
                        .to_string(),
                );
            }
        }
    }
    (
        scenarios.into_iter().collect(),
        graders.into_iter().collect(),
    )
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.permissions().mode() & 0o111 == 0o111)
        .unwrap_or(false)
}

/// Every check on the exported directory, exported for `topology`, that needs no cluster.
fn assert_complete(out: &Path, topology: Topology) -> Value {
    let idx = index(out);
    let hd = host_dir_of(&idx);
    let lab = breakfix::lab::LoadedLab::load(&repo().join(LAB)).expect("load the lab");
    assert_eq!(s(&idx["title"], "title"), lab.lab.metadata.title);
    assert!(!s(&idx["description"], "description").trim().is_empty());
    assert_eq!(
        s(&idx["backend"]["imageid"], "backend.imageid"),
        "kubernetes-kubeadm-2nodes"
    );
    for page in ["intro", "finish"] {
        let f = s(&idx["details"][page]["text"], page);
        let body = std::fs::read_to_string(out.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(!body.trim().is_empty(), "{f} is empty");
    }

    let steps = idx["details"]["steps"].as_array().expect("details.steps");
    assert_eq!(steps.len(), lab.lab.steps.len(), "one entry per lab step");
    assert_eq!(steps.len(), 6, "seed 000 has six tasks");
    for (i, st) in steps.iter().enumerate() {
        let n = i + 1;
        let want = &lab.lab.steps[i];
        assert_eq!(s(&st["title"], "step title"), want.title);
        let t = s(&st["text"], "step text");
        let body =
            std::fs::read_to_string(out.join(t)).unwrap_or_else(|e| panic!("step {n} {t}: {e}"));
        assert!(
            body.contains(want.title.as_str()),
            "step {n}: the page carries the step's title"
        );
        let want_text = lab.text_for(n, topology).expect("a text for the topology");
        let first_line = want_text.lines().next().unwrap_or_default();
        assert!(
            body.contains(first_line),
            "step {n}: the page carries the lab's text for {topology}"
        );
        if want.scenario.is_some() {
            let verify_sub =
                format!("check --quick --brief --full-report {hd}/log/step{n}-verify.log");
            for (key, sub) in [("background", "break"), ("verify", verify_sub.as_str())] {
                let f = s(&st[key], key);
                let p = out.join(f);
                let script =
                    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("step {n} {f}: {e}"));
                assert!(script.starts_with("#!/bin/bash\n"), "{f}: shebang");
                assert!(script.contains("\nset -u\n"), "{f}: set -u");
                assert!(is_executable(&p), "{f} is not executable");
                let want = format!(
                    "{hd}/bin/breakfix {flags}{sub} --lab {hd}/labs/etcd-outage-000.yaml --step {n} --inventory {hd}/inventory.yaml",
                    flags = if sub == "break" { "--quiet --no-color " } else { "--no-color " }
                );
                assert!(script.contains(&want), "{f} runs `{want}`:\n{script}");
            }
        } else {
            assert!(
                st.get("background").is_none(),
                "step {n}: text-only, no background"
            );
            assert!(st.get("verify").is_none(), "step {n}: text-only, no verify");
        }
    }
    assert!(
        steps[0].get("background").is_some() && steps[0].get("verify").is_some(),
        "step 1 breaks with etcd-service-stopped"
    );

    // Assets: every one exists under assets/, and the binary, the lab, its scenarios and
    // their graders are all there.
    let assets = idx["details"]["assets"]["host01"]
        .as_array()
        .expect("details.assets.host01");
    let names: Vec<&str> = assets.iter().map(|a| s(&a["file"], "asset file")).collect();
    for a in assets {
        let f = s(&a["file"], "asset file");
        assert!(out.join("assets").join(f).is_file(), "assets/{f} missing");
        assert!(
            s(&a["target"], "asset target").starts_with('/'),
            "{f}: absolute target"
        );
    }
    let (scenarios, graders) = lab_files();
    assert!(!scenarios.is_empty() && !graders.is_empty());
    for want in ["breakfix", "etcd-outage-000.yaml", "inventory.yaml"]
        .iter()
        .map(|x| x.to_string())
        .chain(scenarios)
        .chain(graders)
    {
        assert!(
            names.contains(&want.as_str()),
            "asset {want} missing: {names:?}"
        );
    }
    let bin = assets
        .iter()
        .find(|a| a["file"] == "breakfix")
        .expect("binary asset");
    assert_eq!(bin["chmod"], "+x");
    assert!(is_executable(&out.join("assets/breakfix")));
    assert_eq!(
        std::fs::metadata(out.join("assets/breakfix"))
            .expect("binary")
            .len(),
        std::fs::metadata(env!("CARGO_BIN_EXE_breakfix"))
            .expect("built binary")
            .len(),
        "the shipped binary is the running executable"
    );
    let inv = breakfix::inventory::Inventory::load(&out.join("assets/inventory.yaml"))
        .expect("the exported inventory loads");
    let cp = inv.node("controlplane").expect("controlplane node");
    assert_eq!(cp.transport, breakfix::inventory::TransportKind::Local);
    assert_eq!(
        cp.roles,
        vec!["control-plane".to_string(), "etcd".to_string()]
    );
    assert_eq!(
        inv.cluster.kubeconfig.as_deref(),
        Some("/etc/kubernetes/admin.conf")
    );
    assert_eq!(inv.cluster.etcd.ca_file, "/etc/kubernetes/pki/etcd/ca.crt");
    idx
}

/// The host dir the index puts the inventory in.
fn host_dir_of(idx: &Value) -> String {
    idx["details"]["assets"]["host01"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["file"] == "inventory.yaml"))
        .map(|x| s(&x["target"], "target").to_string())
        .expect("inventory asset")
}

#[test]
fn export_is_complete_for_every_step() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("kc");
    export_ok(&out, &["--topology", "external"]);
    let idx = assert_complete(&out, Topology::External);
    assert_eq!(host_dir_of(&idx), "/root/breakfix");
    let inv = std::fs::read_to_string(out.join("assets/inventory.yaml")).expect("inventory");
    assert!(inv.contains("topology: external"), "{inv}");
}

#[test]
fn the_default_export_is_stacked_and_carries_the_stacked_variants() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("kc");
    export_ok(&out, &[]);
    let idx = assert_complete(&out, Topology::Stacked);
    let inv = std::fs::read_to_string(out.join("assets/inventory.yaml")).expect("inventory");
    assert!(inv.contains("topology: stacked"), "{inv}");
    let step1 =
        std::fs::read_to_string(out.join(s(&idx["details"]["steps"][0]["text"], "step 1 text")))
            .expect("step 1 page");
    assert!(step1.contains("crictl"), "step 1's stacked text: {step1}");
    assert!(!step1.contains("systemctl enable --now etcd"), "{step1}");
}

/// A lab whose one step has a scenario for the external topology only, in `dir/labs/`, with
/// the repository's scenarios and graders linked beside it.
fn external_only_lab(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("labs")).expect("mkdir");
    for d in ["scenarios", "graders"] {
        std::os::unix::fs::symlink(repo().join(d), dir.join(d)).expect("symlink");
    }
    let lab = dir.join("labs/external-only.yaml");
    std::fs::write(
        &lab,
        "apiVersion: breakfix/v1\nkind: Lab\nmetadata: { name: external-only, title: External only }\n\
         steps:\n  - title: etcd is down\n    text: { external: Start etcd. }\n\
         \x20   scenario: { external: ../scenarios/etcd-service-stopped.yaml }\n",
    )
    .expect("write the lab");
    lab
}

#[test]
fn a_step_without_a_variant_for_the_topology_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let lab = external_only_lab(tmp.path());
    let out = tmp.path().join("kc");
    let o = breakfix(&[
        "export",
        "killercoda",
        lab.to_str().expect("utf-8"),
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stdout));
    let err = text(&o.stderr);
    assert!(
        err.contains("external-only.yaml"),
        "names the lab file: {err}"
    );
    assert!(
        err.contains("step 1 (`etcd is down`) has a scenario for the external topology only"),
        "{err}"
    );
    assert!(err.contains("--topology external"), "{err}");
    assert!(!out.exists(), "nothing written");
    // `validate` says which topologies the lab runs on.
    let o = breakfix(&["validate", lab.to_str().expect("utf-8"), "--output", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v[0]["topologies"], serde_json::json!(["external"]), "{v}");
}

// ---- on the sandbox ----

/// The real OpenSSH tools against the controlplane, with the inventory's key and known_hosts.
struct Node {
    user_host: String,
    port: String,
    key: PathBuf,
    known_hosts: PathBuf,
}

impl Node {
    fn of(sb: &SandboxGuard) -> Node {
        let inv = sb.load();
        let n = inv
            .node("controlplane")
            .expect("controlplane in the sandbox inventory");
        Node {
            user_host: format!("{}@{}", n.user, n.address),
            port: n.port.to_string(),
            key: n.identity_file.clone().expect("identity_file"),
            known_hosts: n.known_hosts.clone().expect("known_hosts"),
        }
    }

    fn opts(&self) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            self.key.display().to_string(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "GlobalKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "ConnectTimeout=10".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ]
    }

    fn ssh(&self, command: &str) -> Output {
        Command::new("ssh")
            .args(self.opts())
            .args(["-p", &self.port, &self.user_host, command])
            .stdin(Stdio::null())
            .output()
            .expect("run ssh")
    }

    fn ssh_ok(&self, command: &str) -> String {
        let o = self.ssh(command);
        assert!(
            o.status.success(),
            "`{command}` failed ({:?}):\n{}\n{}",
            o.status.code(),
            text(&o.stdout),
            text(&o.stderr)
        );
        text(&o.stdout)
    }

    /// `scp -p -r local... user@host:remote_dir/`.
    fn scp(&self, local: &[PathBuf], remote_dir: &str) {
        self.ssh_ok(&format!("mkdir -p '{remote_dir}'"));
        let o = Command::new("scp")
            .args(self.opts())
            .args(["-P", &self.port, "-p", "-r", "-q"])
            .args(local)
            .arg(format!("{}:{remote_dir}/", self.user_host))
            .stdin(Stdio::null())
            .output()
            .expect("run scp");
        assert!(
            o.status.success(),
            "scp {local:?} -> {remote_dir} failed: {}",
            text(&o.stderr)
        );
    }
}

/// Leaves the node healthy and clean whatever happens: reset with the exported inventory
/// (replays the break's journal), start etcd in any case, remove the copied files.
struct Cleanup<'a>(&'a Node);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let o = self.0.ssh(&format!(
            "BREAKFIX_STATE_DIR={HOST_DIR}/state {HOST_DIR}/bin/breakfix --no-color reset --inventory {HOST_DIR}/inventory.yaml; \
             systemctl enable --now etcd; rm -rf {HOST_DIR}"
        ));
        eprintln!(
            "cleanup on controlplane:\n{}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
    }
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn exported_step1_breaks_and_grades_on_the_controlplane() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("kc");
    export_ok(&out, &["--topology", "external", "--host-dir", HOST_DIR]);
    let idx = assert_complete(&out, Topology::External);
    assert_eq!(host_dir_of(&idx), HOST_DIR);

    let sb = sandbox();
    let node = Node::of(&sb);
    assert_eq!(
        node.ssh_ok("systemctl is-active etcd").trim(),
        "active",
        "the sandbox's etcd must be healthy before the test"
    );
    let _cleanup = Cleanup(&node);

    // Killercoda's part: each asset into its target, chmod as asked.
    for a in idx["details"]["assets"]["host01"]
        .as_array()
        .expect("assets")
    {
        let (file, target) = (s(&a["file"], "file"), s(&a["target"], "target"));
        assert!(
            target.starts_with(HOST_DIR),
            "{file} -> {target} outside {HOST_DIR}"
        );
        node.scp(&[out.join("assets").join(file)], target);
        if let Some(mode) = a.get("chmod").and_then(Value::as_str) {
            node.ssh_ok(&format!("chmod {mode} '{target}/{file}'"));
        }
    }
    // The scenario directory itself (pages and scripts), without the assets copied above.
    let scenario_dir = format!("{HOST_DIR}/scenario");
    let entries: Vec<PathBuf> = std::fs::read_dir(&out)
        .expect("ls export")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n != "assets"))
        .collect();
    node.scp(&entries, &scenario_dir);

    let step1 = &idx["details"]["steps"][0];
    let background = format!("{scenario_dir}/{}", s(&step1["background"], "background"));
    let verify = format!("{scenario_dir}/{}", s(&step1["verify"], "verify"));
    // The test keeps breakfix's own state (session, history, local journal) under HOST_DIR so
    // the cleanup removes it too; Killercoda would use root's default state dir.
    let env = format!("BREAKFIX_STATE_DIR={HOST_DIR}/state");

    // 1. background.sh breaks etcd.
    let o = node.ssh(&format!("{env} bash {background}"));
    let log = node
        .ssh(&format!("cat {HOST_DIR}/log/step1-background.log"))
        .stdout;
    assert!(
        o.status.success(),
        "background.sh failed ({:?}):\n{}{}\nlog:\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr),
        text(&log)
    );
    assert!(
        o.stdout.is_empty(),
        "background.sh is quiet; its output goes to the log: {}",
        text(&o.stdout)
    );
    let state = node.ssh("systemctl is-active etcd");
    assert_ne!(
        text(&state.stdout).trim(),
        "active",
        "etcd is still active after background.sh; log:\n{}",
        text(&log)
    );

    // 2. verify.sh before the fix: non-zero and names a failing probe. Its time on the
    // node is printed (a benchmark figure for BENCHMARKS.md, not asserted: `check --quick`
    // answers after two equal attempts instead of waiting out `within`).
    let timed = |cmd: &str| {
        format!("s=$(date +%s%N); {cmd}; rc=$?; echo \"verify.sh took $((($(date +%s%N)-s)/1000000)) ms\" >&2; exit $rc")
    };
    let o = node.ssh(&timed(&format!("{env} {verify}")));
    let report = format!("{}{}", text(&o.stdout), text(&o.stderr));
    eprintln!(
        "verify.sh before the fix (exit {:?}):\n{report}",
        o.status.code()
    );
    assert_eq!(o.status.code(), Some(1), "graded FAIL expected:\n{report}");
    // The learner's terminal: the verdict and what is still wrong in the probes' words.
    assert!(report.contains("Not yet:"), "{report}");
    assert!(
        report.contains("  - the etcd unit is running and starts at boot"),
        "the failing probe's description:\n{report}"
    );
    assert!(
        !report.contains("expected"),
        "no probe dump on the learner's terminal:\n{report}"
    );
    assert!(
        report.contains(&format!("Details: {HOST_DIR}/log/step1-verify.log")),
        "{report}"
    );
    // The full report, expected vs found per probe, is in the step's verify log.
    let full = node.ssh_ok(&format!("cat {HOST_DIR}/log/step1-verify.log"));
    let failing: Vec<&str> = full
        .lines()
        .filter(|l| l.trim_start().starts_with("FAIL"))
        .collect();
    assert!(
        failing.iter().any(|l| l.contains("etcd-unit-active")),
        "the failing probes are named in the log:\n{full}"
    );
    assert!(
        full.contains("expected"),
        "expected vs found in the log:\n{full}"
    );

    // 3. The learner's fix (the break disabled etcd as well as stopping it), then verify.sh
    // passes. A quick check may catch the fix still settling (the API server reconnecting):
    // like a learner, press Check again, up to 20 times 5 s apart.
    node.ssh_ok("systemctl enable --now etcd");
    let mut presses = 0;
    let (o, report) = loop {
        presses += 1;
        let o = node.ssh(&timed(&format!("{env} {verify}")));
        let report = format!("{}{}", text(&o.stdout), text(&o.stderr));
        eprintln!(
            "verify.sh after the fix, press {presses} (exit {:?}):\n{report}",
            o.status.code()
        );
        if o.status.code() == Some(0) || presses == 20 {
            break (o, report);
        }
        std::thread::sleep(std::time::Duration::from_secs(5));
    };
    assert_eq!(o.status.code(), Some(0), "graded PASS expected:\n{report}");
    assert!(report.contains("Fixed: every check passes"), "{report}");

    // 4. reset with the exported inventory leaves the node as it was.
    let reset = node.ssh_ok(&format!(
        "{env} {HOST_DIR}/bin/breakfix --no-color reset --inventory {HOST_DIR}/inventory.yaml"
    ));
    eprintln!("reset:\n{reset}");
    assert_eq!(node.ssh_ok("systemctl is-active etcd").trim(), "active");
    drop(_cleanup);
    assert_eq!(
        node.ssh_ok(&format!("test -e {HOST_DIR} && echo left || echo gone"))
            .trim(),
        "gone"
    );
    assert_eq!(node.ssh_ok("systemctl is-active etcd").trim(), "active");
}
