//! `breakfix export killercoda` (issues 6 and 14): export the seed 000 lab, prove index.json
//! is complete for every step, then play Killercoda on the sandbox, on each topology: copy
//! the export onto the controlplane with the real scp/ssh, put every asset where index.json
//! says, run step 1's background.sh (etcd must go down), and its verify.sh before the fix
//! (non-zero, naming what is still wrong) and after the learner's fix (`systemctl enable
//! --now etcd`, or the static pod's manifest moved back; exit 0).

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

/// Lab `text` written to `dir/labs/<file>`, with the repository's scenarios and graders linked
/// beside it.
fn lab_in(dir: &Path, file: &str, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("labs")).expect("mkdir");
    for d in ["scenarios", "graders"] {
        std::os::unix::fs::symlink(repo().join(d), dir.join(d)).expect("symlink");
    }
    let lab = dir.join("labs").join(file);
    std::fs::write(&lab, text).expect("write the lab");
    lab
}

/// A lab whose one step has a scenario for the external topology only ([`lab_in`]).
fn external_only_lab(dir: &Path) -> PathBuf {
    lab_in(
        dir,
        "external-only.yaml",
        "apiVersion: breakfix/v1\nkind: Lab\nmetadata: { name: external-only, title: External only }\n\
         steps:\n  - title: etcd is down\n    text: { external: Start etcd. }\n\
         \x20   scenario: { external: ../scenarios/etcd-service-stopped.yaml }\n",
    )
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

#[test]
fn a_step_that_needs_three_etcd_members_is_refused_with_the_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let lab = lab_in(
        tmp.path(),
        "ha.yaml",
        "apiVersion: breakfix/v1\nkind: Lab\nmetadata: { name: ha, title: HA }\n\
         steps:\n  - title: a member is down\n    text: Bring it back.\n\
         \x20   scenario: ../scenarios/etcd-member-partitioned.yaml\n",
    );
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
        err.contains("needs 3 etcd members") && err.contains("multi-node control plane"),
        "{err}"
    );
    assert!(err.contains("--control-planes 3"), "{err}");
    assert!(!out.exists(), "nothing written");
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
/// What the Killercoda-run test of step 1 does on each topology.
struct Step1 {
    topology: Topology,
    /// `breakfix export killercoda` arguments besides the lab and `-o`.
    export_args: &'static [&'static str],
    /// The description of a verify probe that fails before the fix.
    failing: &'static str,
    /// The learner's fix.
    fix: &'static str,
    /// Run after `reset` by the cleanup, in case the test stopped half-way.
    restore: &'static str,
    /// Presses of Check (5 s apart) allowed while the fix settles.
    presses: u32,
}

const EXTERNAL_STEP1: Step1 = Step1 {
    topology: Topology::External,
    export_args: &["--topology", "external", "--host-dir", HOST_DIR],
    failing: "the etcd unit is running and starts at boot",
    // The break disabled etcd as well as stopping it.
    fix: "systemctl enable --now etcd",
    restore: "systemctl enable --now etcd",
    presses: 20,
};

const STACKED_STEP1: Step1 = Step1 {
    topology: Topology::Stacked,
    export_args: &["--host-dir", HOST_DIR],
    failing: "the etcd manifest is back in /etc/kubernetes/manifests",
    // The break moved the static pod's manifest out of the kubelet's directory.
    fix: "mv /root/etcd.yaml.maintenance /etc/kubernetes/manifests/etcd.yaml",
    restore: "test -e /etc/kubernetes/manifests/etcd.yaml || mv /root/etcd.yaml.maintenance /etc/kubernetes/manifests/etcd.yaml",
    // The kubelet's rescan, etcd's start and the API server's reconnect.
    presses: 40,
};

/// Prints `listening` when something listens on etcd's client port on the node, else
/// `closed` (the same on both topologies).
const ETCD_PORT: &str = "ss -Htln 'sport = :2379' | grep -q . && echo listening || echo closed";

struct Cleanup<'a>(&'a Node, &'static str);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let o = self.0.ssh(&format!(
            "BREAKFIX_STATE_DIR={HOST_DIR}/state {HOST_DIR}/bin/breakfix --no-color reset --inventory {HOST_DIR}/inventory.yaml; \
             {}; rm -rf {HOST_DIR}",
            self.1
        ));
        eprintln!(
            "cleanup on controlplane:\n{}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
    }
}

/// Waits up to `secs` seconds for etcd's client port to be in `state` on the node.
fn wait_port(node: &Node, state: &str, secs: u64) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if node.ssh_ok(ETCD_PORT).trim() == state {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn exported_step1_breaks_and_grades_on_the_controlplane() {
    let sb = sandbox();
    exported_step1(&sb, &EXTERNAL_STEP1);
}

/// The default export (stacked, Killercoda's kubeadm images) on a kubeadm node whose etcd is
/// a static pod. Runs on sandbox instance 4, in its matrix part's process
/// (scripts/test-all.sh).
#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn exported_step1_breaks_and_grades_on_a_stacked_controlplane() {
    let sb = crate::common::sandbox_on(4, Topology::Stacked);
    exported_step1(&sb, &STACKED_STEP1);
}

/// Killercoda's run of step 1, as its docs describe it: assets to their targets,
/// background.sh, verify.sh before the fix (FAIL, brief, the full report in the log), the
/// learner's fix, verify.sh pressed until it passes, reset with the exported inventory.
fn exported_step1(sb: &SandboxGuard, t: &Step1) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("kc");
    export_ok(&out, t.export_args);
    let idx = assert_complete(&out, t.topology);
    assert_eq!(host_dir_of(&idx), HOST_DIR);

    let node = Node::of(sb);
    assert!(
        wait_port(&node, "listening", 120),
        "the sandbox's etcd must be serving before the test"
    );
    let _cleanup = Cleanup(&node, t.restore);

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
    assert_eq!(
        node.ssh_ok(ETCD_PORT).trim(),
        "closed",
        "etcd still serves after background.sh; log:\n{}",
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
        report.contains(&format!("  - {}", t.failing)),
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
        !failing.is_empty(),
        "the failing probes are named in the log:\n{full}"
    );
    assert!(
        full.contains("expected"),
        "expected vs found in the log:\n{full}"
    );

    // 3. The learner's fix (the break disabled etcd as well as stopping it), then verify.sh
    // passes. A quick check may catch the fix still settling (the API server reconnecting):
    // like a learner, press Check again, up to 20 times 5 s apart.
    node.ssh_ok(t.fix);
    let mut presses = 0;
    let (o, report) = loop {
        presses += 1;
        let o = node.ssh(&timed(&format!("{env} {verify}")));
        let report = format!("{}{}", text(&o.stdout), text(&o.stderr));
        eprintln!(
            "verify.sh after the fix, press {presses} (exit {:?}):\n{report}",
            o.status.code()
        );
        if o.status.code() == Some(0) || presses == t.presses {
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
    assert!(
        wait_port(&node, "listening", 120),
        "etcd serves after reset"
    );
    drop(_cleanup);
    assert_eq!(
        node.ssh_ok(&format!("test -e {HOST_DIR} && echo left || echo gone"))
            .trim(),
        "gone"
    );
    assert!(
        wait_port(&node, "listening", 120),
        "etcd serves after the cleanup"
    );
}

/// Every markdown page of an export: no template left unrendered, and every relative link
/// points at a file of the export. Returns the number of pages looked at.
fn assert_pages_clean(out: &Path) -> usize {
    let mut pages = 0;
    let mut stack = vec![out.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("ls").flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "assets") {
                    stack.push(p);
                }
                continue;
            }
            if p.extension().is_none_or(|x| x != "md") {
                continue;
            }
            pages += 1;
            let page = std::fs::read_to_string(&p).expect("page");
            // Killercoda's own markers (click to run, click to copy) are meant to be there.
            let body = page
                .replace("{{exec}}", "")
                .replace("{{execute}}", "")
                .replace("{{copy}}", "");
            for mark in ["{{", "}}", "{%", "%}", "{#"] {
                assert!(
                    !body.contains(mark),
                    "{}: unrendered `{mark}`:\n{body}",
                    p.display()
                );
            }
            // Markdown links `[text](target)`: relative targets must exist in the export.
            for (i, _) in body.match_indices("](") {
                let rest = &body[i + 2..];
                let target = rest.split(')').next().unwrap_or_default().trim();
                assert!(!target.is_empty(), "{}: an empty link", p.display());
                if target.contains("://")
                    || target.starts_with('#')
                    || target.starts_with("mailto:")
                {
                    continue;
                }
                let path = p
                    .parent()
                    .expect("dir")
                    .join(target.split('#').next().unwrap_or(target));
                assert!(
                    path.exists(),
                    "{}: link to {target}, which the export does not have",
                    p.display()
                );
            }
        }
    }
    pages
}

/// Every lab in labs/ runs on both topologies (`validate` says so) and exports for each, with
/// clean pages (issue 14's acceptance; the refusal of a step without a variant is
/// `a_step_without_a_variant_for_the_topology_is_refused_and_nothing_is_written`). A lab
/// whose steps need three etcd members (`validate`'s `etcd_members`) is refused instead, with
/// the reason, on both topologies: Killercoda's kubeadm images have one etcd member.
#[test]
fn every_lab_exports_for_both_topologies_with_clean_pages() {
    let labs: Vec<PathBuf> = std::fs::read_dir(repo().join("labs"))
        .expect("ls labs")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    assert!(labs.len() >= 2, "{labs:?}");
    for lab in &labs {
        let name = lab.to_str().expect("utf-8");
        let o = breakfix(&["validate", name, "--output", "json"]);
        let v: Value = serde_json::from_slice(&o.stdout).expect("validate json");
        let runs_on: Vec<&str> = v[0]["topologies"]
            .as_array()
            .expect("topologies")
            .iter()
            .map(|t| t.as_str().expect("name"))
            .collect();
        assert_eq!(runs_on, ["external", "stacked"], "{name}");
        let members = v[0]["etcd_members"].as_u64().expect("etcd_members");
        for topology in ["stacked", "external"] {
            let tmp = tempfile::tempdir().expect("tempdir");
            let out = tmp.path().join("kc");
            let o = breakfix(&[
                "export",
                "killercoda",
                name,
                "-o",
                out.to_str().expect("utf-8"),
                "--topology",
                topology,
            ]);
            if members > 1 {
                let err = text(&o.stderr);
                assert_eq!(o.status.code(), Some(2), "{name} on {topology}: {err}");
                assert!(
                    err.contains(&format!("needs {members} etcd members"))
                        && err.contains("Killercoda's kubeadm images have one control plane"),
                    "{name} on {topology}: {err}"
                );
                assert!(!out.exists(), "{name} on {topology}: nothing written");
                continue;
            }
            assert!(
                o.status.success(),
                "{name} on {topology}: {}",
                text(&o.stderr)
            );
            let pages = assert_pages_clean(&out);
            assert!(pages >= 3, "{name}: intro, finish and step pages: {pages}");
        }
    }
}
