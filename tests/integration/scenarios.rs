//! The shipped scenarios on the sandbox: issue 3's end-to-end acceptance for
//! etcd-service-stopped, and the self-test matrix over every scenario of the topology.

use std::process::{Command, Output};

use crate::common::Cli;
use crate::common::{sandbox, sandbox_on, SandboxGuard};
use breakfix::inventory::Topology;

fn bf(g: &SandboxGuard, state: &std::path::Path, args: &[&str]) -> Output {
    Cli::new()
        .inventory(&g.inventory)
        .state_dir(state)
        .in_checkout()
        .run(args)
}

use crate::common::show_output as text;

fn ssh(g: &SandboxGuard, cmd: &str) -> Output {
    let inv = breakfix::inventory::Inventory::load(&g.inventory).expect("inventory");
    let n = inv.node("controlplane").expect("controlplane");
    Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ConnectTimeout=10",
        ])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            n.known_hosts.as_ref().expect("known_hosts").display()
        ))
        .arg("-i")
        .arg(n.identity_file.as_ref().expect("key"))
        .arg(format!("root@{}", n.address))
        .arg(cmd)
        .output()
        .expect("ssh runs")
}

/// Starts etcd again if a test dies half-way.
struct EtcdBack<'a>(&'a SandboxGuard);
impl Drop for EtcdBack<'_> {
    fn drop(&mut self) {
        let _ = ssh(self.0, "systemctl start etcd");
    }
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn etcd_service_stopped_end_to_end() {
    let g = sandbox();
    let _back = EtcdBack(&g);
    let state = tempfile::tempdir().expect("state dir");
    let sc = "scenarios/etcd-service-stopped.yaml";

    let o = bf(
        &g,
        state.path(),
        &["run", sc, "--solution", "--output", "json"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["outcome"], "pass");
    assert!(
        r["confirm"]
            .as_array()
            .expect("confirm")
            .iter()
            .all(|v| v["status"] == "fail"),
        "{r}"
    );

    let o = bf(&g, state.path(), &["break", sc]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = bf(&g, state.path(), &["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("FAIL  etcd-unit-active")
            && out.contains("active: expected active, found inactive"),
        "{out}"
    );
    assert!(
        out.contains("FAIL  etcd-client-port")
            && out.contains("listening: expected true, found false"),
        "{out}"
    );
    assert!(out.contains("SKIP  etcd-endpoint-healthy"), "{out}");

    // The learner starts etcd by hand: not enough, the break disabled it too.
    let s = ssh(&g, "systemctl start etcd");
    assert!(s.status.success(), "{}", text(&s));
    let o = bf(&g, state.path(), &["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("FAIL  etcd-unit-active")
            && out.contains("enabled: expected enabled, found disabled"),
        "{out}"
    );
    let s = ssh(&g, "systemctl enable etcd");
    assert!(s.status.success(), "{}", text(&s));
    let o = bf(&g, state.path(), &["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Break again, then reset: the unit is active (its state before the break).
    let o = bf(&g, state.path(), &["break", sc]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = bf(&g, state.path(), &["reset"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("restore unit etcd (active, enabled)"),
        "{}",
        text(&o)
    );
    let s = ssh(&g, "systemctl is-active etcd; systemctl is-enabled etcd");
    assert_eq!(String::from_utf8_lossy(&s.stdout), "active\nenabled\n");
}

/// The rows of a `breakfix test` report that did not pass, each under its scenario's line, so
/// a failure message shows them first (CI logs keep only the head and tail of long output).
fn failed_rows(report: &str) -> String {
    let mut scenario = "";
    let mut rows = Vec::new();
    for line in report.lines() {
        if !line.starts_with(' ') && line.ends_with(".yaml") {
            scenario = line;
        } else if line.starts_with("  FAIL ") || line.starts_with("  ERROR ") {
            rows.push(format!("{scenario}\n{line}"));
        }
    }
    if rows.is_empty() {
        "(none in the report: see stderr)".to_string()
    } else {
        rows.join("\n")
    }
}

/// True when the scenario file `f` (`scenarios/NAME.yaml`) lists `topology`.
fn written_for(f: &str, topology: &str) -> bool {
    let body = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_string() + f)
        .expect("read");
    body.lines()
        .any(|l| l.trim() == "topologies:" || l.contains("topologies: ["))
        && body.contains(topology)
}

/// Runs `breakfix test` over part `part` (0-based) of `parts` of the scenarios written for
/// `topology`: those scenarios in name order, dealt out in turn (the 1st, 3rd, 5th... to part 0
/// of 2), so each part can run on a sandbox instance of its own at the same time as the
/// others. Asserts exit 0 and a JUnit suite per scenario of the part.
fn selftest_part(g: &SandboxGuard, topology: &str, part: usize, parts: usize) {
    let state = tempfile::tempdir().expect("state dir");
    let junit = state.path().join("junit.xml");
    let mut files: Vec<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios"))
            .expect("scenarios dir")
            .filter_map(|e| e.ok())
            .map(|e| format!("scenarios/{}", e.file_name().to_string_lossy()))
            .filter(|f| f.ends_with(".yaml"))
            .collect();
    files.sort();
    files.retain(|f| written_for(f, topology));
    let files: Vec<String> = files
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % parts == part)
        .map(|(_, f)| f)
        .collect();
    assert!(
        !files.is_empty(),
        "no {topology} scenario in part {part} of {parts}"
    );
    let mut args = vec!["test"];
    args.extend(files.iter().map(String::as_str));
    args.extend(["--junit", junit.to_str().expect("utf-8")]);
    let started = std::time::Instant::now();
    let o = bf(g, state.path(), &args);
    eprintln!(
        "self-test matrix ({topology}, part {} of {parts}, {} scenarios): {:.0}s",
        part + 1,
        files.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "rows that did not pass:\n{}\n\n{}",
        failed_rows(&String::from_utf8_lossy(&o.stdout)),
        text(&o)
    );
    let xml = std::fs::read_to_string(&junit).expect("junit");
    for f in &files {
        let name = f.trim_start_matches("scenarios/").trim_end_matches(".yaml");
        assert!(
            xml.contains(&format!("<testsuite name=\"{name}\"")),
            "{name} missing from JUnit:\n{xml}"
        );
    }
    assert!(
        xml.contains("name=\"baseline\"") && xml.contains("name=\"reset\""),
        "{xml}"
    );
}

/// One part of a topology's self-test matrix as a test of its own, on a sandbox instance of its
/// own: `matrix_part!(NAME, TOPOLOGY, INSTANCE, PART, PARTS)`. `scripts/test-all.sh` runs every
/// part at the same time (one `cargo test` process per instance), so the matrix takes about as
/// long as its longest process. Instance 0 (the external topology) and 1 (stacked) are the
/// ones the other sandbox tests use; 2, 3 and 4 run matrix parts (3: external parts 1 and 2,
/// one after the other; instance 0 runs external part 3 after its other tests, ~25 minutes of
/// their own) and 4 also the stacked export's Killercoda-run test.
macro_rules! matrix_part {
    ($name:ident, $topology:expr, $instance:expr, $part:expr, $parts:expr) => {
        #[test]
        #[cfg_attr(
            not(feature = "system-tests"),
            ignore = "system tier: needs the sandbox"
        )]
        fn $name() {
            let topology = $topology;
            let g = sandbox_on($instance, topology);
            let _back = (topology == Topology::External).then(|| EtcdBack(&g));
            let name = match topology {
                Topology::External => "external",
                Topology::Stacked => "stacked",
            };
            selftest_part(&g, name, $part, $parts);
        }
    };
}

matrix_part!(
    external_scenarios_pass_the_selftest_matrix_part_1_of_3,
    Topology::External,
    3,
    0,
    3
);
matrix_part!(
    external_scenarios_pass_the_selftest_matrix_part_2_of_3,
    Topology::External,
    3,
    1,
    3
);
matrix_part!(
    external_scenarios_pass_the_selftest_matrix_part_3_of_3,
    Topology::External,
    0,
    2,
    3
);
matrix_part!(
    stacked_scenarios_pass_the_selftest_matrix_part_1_of_3,
    Topology::Stacked,
    1,
    0,
    3
);
matrix_part!(
    stacked_scenarios_pass_the_selftest_matrix_part_2_of_3,
    Topology::Stacked,
    2,
    1,
    3
);
matrix_part!(
    stacked_scenarios_pass_the_selftest_matrix_part_3_of_3,
    Topology::Stacked,
    4,
    2,
    3
);

/// A scenario whose first task is a diagnosis graded on an answer file (`evidence:`).
const EVIDENCE_SCENARIO: &str = r#"apiVersion: breakfix/v1
kind: Scenario
metadata:
  name: drill-evidence
  title: etcd stopped; the diagnosis is graded on an answer file
  topologies: [external]
params:
  answer: { default: "true", description: a shell command the solution runs first }
targets:
  cp: { role: control-plane }
faults:
  - kind: command
    name: clear the answer file
    run: rm -f /root/answers/drill-evidence
    undo: rm -f /root/answers/drill-evidence
  - kind: systemd
    unit: etcd
    action: stop
signals:
  - kind: file
    name: answer-written
    path: /root/answers/drill-evidence
    expect: { exists: true }
tasks:
  - title: Name the unit that stopped
    evidence:
      - kind: file
        name: unit-named
        path: /root/answers/drill-evidence
        expect: { contents: { matches: '\betcd\b' } }
  - title: Start it
    hints:
      - text: "You found it: now start it."
        when: [answer-written]
        cost: 2
    probes: [etcd-active]
verify:
  probes:
    - kind: systemd
      name: etcd-active
      unit: etcd
      within: 20s
      expect: { active: active }
solution:
  - kind: command
    run: sh -c {{ params.answer }}; systemctl start etcd
"#;

/// [`EVIDENCE_SCENARIO`] written to a temporary directory (kept while the guard lives) and
/// its path.
fn evidence_scenario() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("scenario dir");
    let sc = dir.path().join("drill-evidence.yaml");
    std::fs::write(&sc, EVIDENCE_SCENARIO).expect("write scenario");
    let path = sc.to_str().expect("utf-8 path").to_string();
    (dir, path)
}

/// Diagnosis graded as diagnosis (issue 12) and evidence hints (issue 16): a drill whose fix
/// lands without the answer file passes, but its diagnosis task earns nothing and the hint
/// waiting for the answer never shows; with the answer written, the task is done and the hint
/// unlocks.
#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn a_diagnosis_task_is_done_by_its_evidence_and_an_evidence_hint_waits_for_it() {
    let g = sandbox();
    let _back = EtcdBack(&g);
    let state = tempfile::tempdir().expect("state dir");
    let (_dir, sc) = evidence_scenario();
    let sc = sc.as_str();
    let drill = |answer: &str| {
        let param = format!("answer={answer}");
        let o = bf(
            &g,
            state.path(),
            &[
                "drill",
                sc,
                "--solution-after",
                "3s",
                "--poll",
                "1s",
                "-p",
                &param,
                "-o",
                "json",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(r[0]["outcome"], "pass", "{r}");
        r[0]["tasks"].clone()
    };
    // The fix alone: verify passes, the diagnosis task is not done, and task 2's evidence
    // hint (`when:` the answer file exists) never unlocked.
    let tasks = drill("true");
    assert!(tasks[0]["done_after"].is_null(), "{tasks}");
    assert_eq!(tasks[0]["score"], 0, "{tasks}");
    assert!(tasks[1]["done_after"].is_number(), "{tasks}");
    assert_eq!(tasks[1]["hints"], 0, "{tasks}");
    assert_eq!(tasks[1]["score"], 10, "{tasks}");
    // The answer file written with the fix: both tasks done, and the evidence hint unlocked
    // on the round that saw the file (its cost taken off task 2).
    let tasks = drill("mkdir -p /root/answers && echo etcd > /root/answers/drill-evidence");
    assert!(tasks[0]["done_after"].is_number(), "{tasks}");
    assert_eq!(tasks[0]["score"], 10, "{tasks}");
    assert_eq!(tasks[1]["hints"], 1, "{tasks}");
    assert_eq!(tasks[1]["score"], 8, "{tasks}");
    // The drill's reset removed the answer with the fault's undo.
    let o = ssh(
        &g,
        "test -e /root/answers/drill-evidence && echo left || echo gone",
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "gone\n");
}

/// Live task checks (issue 16): `breakfix watch` on a learner's break shows each task turning
/// done as the node changes, and keeps the first-pass times in the session.
#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn watch_shows_tasks_turning_done_as_the_learner_works() {
    let g = sandbox();
    let _back = EtcdBack(&g);
    let state = tempfile::tempdir().expect("state dir");
    let (_dir, sc) = evidence_scenario();
    let o = bf(&g, state.path(), &["break", &sc]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let lines = |o: &Output| -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    };
    let done_events = |v: &[serde_json::Value]| -> Vec<u64> {
        v.iter()
            .filter(|l| l["event"] == "done")
            .filter_map(|l| l["task"].as_u64())
            .collect()
    };
    // Nothing done yet.
    let o = bf(&g, state.path(), &["watch", "--once", "-o", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v = lines(&o);
    assert!(done_events(&v).is_empty(), "{v:?}");
    assert_eq!(v.iter().filter(|l| l["event"] == "summary").count(), 2);
    // The learner writes the answer: task 1 turns done, task 2 is still open.
    ssh(
        &g,
        "mkdir -p /root/answers && echo etcd > /root/answers/drill-evidence",
    );
    let o = bf(&g, state.path(), &["watch", "--once", "-o", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(done_events(&lines(&o)), [1]);
    // `breakfix hint` moves on to the task the learner is on.
    let o = Cli::new()
        .state_dir(state.path())
        .in_checkout()
        .run(&["hint"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("for task 2"),
        "{}",
        text(&o)
    );
    // Then starts etcd while a watch runs: it ends once every task is done.
    ssh(&g, "systemctl start etcd");
    let o = bf(
        &g,
        state.path(),
        &[
            "watch",
            "--interval",
            "1s",
            "--timeout",
            "60s",
            "-o",
            "json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = lines(&o);
    assert_eq!(done_events(&v), [2], "task 1 stays done from before: {v:?}");
    let summary: Vec<&serde_json::Value> = v.iter().filter(|l| l["event"] == "summary").collect();
    assert!(summary.iter().all(|l| l["done_after"].is_number()), "{v:?}");
    let o = bf(&g, state.path(), &["reset"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn drill_on_the_sandbox_times_the_fix_and_scores() {
    let g = sandbox();
    let _back = EtcdBack(&g);
    let state = tempfile::tempdir().expect("state dir");
    let sc = "scenarios/etcd-service-stopped.yaml";
    // The solution lands 6 s after the clock starts; polls every 1 s.
    let o = bf(
        &g,
        state.path(),
        &[
            "drill",
            sc,
            "--solution-after",
            "6s",
            "--poll",
            "1s",
            "--output",
            "json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let ttf = r[0]["time_to_fix"].as_f64().expect("fixed");
    // etcd needs a moment to start after `systemctl start`; one poll interval (1 s) plus that.
    assert!(
        (6.0..=6.0 + 1.0 + 1.5).contains(&ttf),
        "time to fix {ttf}s for a solution applied at 6s with 1s polls: {r}"
    );
    assert_eq!(r[0]["outcome"], "pass");
    assert!(r[0]["score"].as_u64().unwrap_or(0) > 0, "{r}");

    // Without a fix the drill ends at the time limit and lists the failing probes, in JUnit.
    let o = bf(
        &g,
        state.path(),
        &[
            "drill",
            sc,
            "--time-limit",
            "8s",
            "--poll",
            "1s",
            "--output",
            "junit",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let xml = String::from_utf8_lossy(&o.stdout).to_string();
    let report = quick_junit::Report::deserialize_from_str(&xml)
        .unwrap_or_else(|e| panic!("JUnit does not parse: {e}\n{xml}"));
    assert_eq!(report.test_suites.len(), 1);
    let suite = &report.test_suites[0];
    assert_eq!(suite.name.as_str(), "etcd-service-stopped");
    assert_eq!(suite.test_cases.len(), 2, "{xml}");
    assert!(
        xml.contains("<failure") && xml.contains("etcd-unit-active"),
        "{xml}"
    );
    let s = ssh(&g, "systemctl is-active etcd");
    assert_eq!(
        String::from_utf8_lossy(&s.stdout),
        "active\n",
        "the drill resets at the end"
    );
}
