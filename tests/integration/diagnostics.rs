//! Scenario diagnostics: every invalid fixture under tests/fixtures/invalid renders its
//! problems at the right `file:line:col` with a caret snippet (snapshots, no colour); valid
//! fixtures and the shipped scenarios load with no diagnostics.
//!
//! Paths are relative to the crate root (cargo runs integration tests there), so the
//! snapshots name `tests/fixtures/...` exactly as `breakfix validate` would.

use std::path::{Path, PathBuf};

use breakfix::scenario::{check_file, load_valid};

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    out.sort();
    out
}

fn rendered(fixture: &str) -> String {
    let path = PathBuf::from(format!("tests/fixtures/invalid/{fixture}.yaml"));
    let report = check_file(&path, None);
    assert!(!report.is_ok(), "{} should be invalid", path.display());
    // Absolute paths (the graders directory searched) name the checkout: shown as [ROOT].
    report
        .render(false)
        .replace(env!("CARGO_MANIFEST_DIR"), "[ROOT]")
}

/// One snapshot test per fixture, named after it.
macro_rules! invalid_fixtures {
    ($($test:ident => $file:literal,)+) => {
        $(
            #[test]
            fn $test() {
                insta::assert_snapshot!($file, rendered($file));
            }
        )+

        #[test]
        fn every_invalid_fixture_has_a_snapshot_test() {
            let covered = [$($file),+];
            for p in yaml_files("tests/fixtures/invalid") {
                let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
                assert!(covered.contains(&stem.as_str()), "add `{stem}` to invalid_fixtures! in tests/integration/diagnostics.rs");
            }
        }
    };
}

invalid_fixtures! {
    syntax_error => "syntax-error",
    duplicate_key => "duplicate-key",
    unknown_field_top_level => "unknown-field-top",
    unknown_field_in_probe => "unknown-field-probe",
    unknown_fact_in_expect => "unknown-fact",
    missing_field => "missing-field",
    wrong_type => "wrong-type",
    wrong_type_list => "wrong-type-list",
    strict_boolean => "strict-boolean",
    bad_duration => "bad-duration",
    unknown_fault_kind => "unknown-fault-kind",
    unknown_probe_kind => "unknown-probe-kind",
    kind_not_first => "kind-not-first",
    bad_regex => "bad-regex",
    unknown_matcher => "unknown-matcher",
    unresolved_template_variable => "unresolved-template-variable",
    undefined_param => "undefined-param",
    template_syntax_error => "template-syntax-error",
    template_not_rendered => "template-not-rendered",
    undefined_target => "undefined-target",
    missing_target => "missing-target",
    undefined_grader => "undefined-grader",
    unknown_value => "unknown-value",
    invalid_value => "invalid-value",
    target_all_with_node => "target-all-with-node",
    no_targets => "no-targets",
    empty_probe_name => "empty-probe-name",
    bad_includes => "bad-includes",
    task_confirm_probe => "task-confirm-probe",
    task_evidence => "task-evidence",
    hint_when_unknown => "hint-when-unknown",
    empty_grader => "empty-grader",
    broken_grader => "broken-grader",
    needs_unknown_probe => "needs-unknown-probe",
    needs_cycle => "needs-cycle",
    command_fault_without_undo => "command-fault-without-undo",
    empty_verify => "empty-verify",
    semantic_errors => "semantic-errors",
    number_matcher_template => "number-matcher-template",
    undefined_param_in_hint => "undefined-param-in-hint",
    probe_kind_rules => "probe-kind-rules",
}

#[test]
fn valid_fixtures_have_no_diagnostics() {
    let files = yaml_files("tests/fixtures/valid");
    assert!(!files.is_empty());
    for path in files {
        let report = check_file(&path, None);
        assert!(
            report.is_ok(),
            "{}:\n{}",
            path.display(),
            report.render(false)
        );
        let loaded = report.loaded.expect("loaded");
        assert!(!loaded.scenario.faults.is_empty());
    }
}

#[test]
fn shipped_scenarios_have_no_diagnostics() {
    for path in yaml_files("scenarios") {
        let report = check_file(&path, None);
        assert!(
            report.is_ok(),
            "{}:\n{}",
            path.display(),
            report.render(false)
        );
    }
}

#[test]
fn graders_are_loaded_with_the_scenario() {
    let l = load_valid(
        Path::new("tests/fixtures/valid/with-grader.yaml"),
        None,
        false,
    )
    .expect("valid");
    assert_eq!(l.graders.len(), 1);
    assert_eq!(
        l.graders[0].path,
        Path::new("tests/fixtures/graders/etcd-healthy.yaml")
    );
    assert_eq!(l.grader_files()[0].probes.len(), 3);
}

/// The shipped workload grader's probes need the API server grader's `apiserver-ready`
/// (a GET through an API server without etcd hangs for the probe's timeout): included
/// alone, the scenario is refused at the grader's line; with both, it is valid.
#[test]
fn the_workload_grader_needs_the_apiserver_grader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = |include: &str| {
        format!(
            "apiVersion: breakfix/v1\nkind: Scenario\nmetadata:\n  name: w\n  title: w\n  description: w\n\
             targets:\n  controlplane:\n    role: control-plane\n\
             faults:\n  - kind: command\n    run: \"true\"\n    undo: \"true\"\n\
             verify:\n  include: [{include}]\n"
        )
    };
    let path = dir.path().join("w.yaml");
    std::fs::write(&path, scenario("workload-healthy")).expect("write");
    let report = check_file(&path, Some(Path::new("graders")));
    let text = report.render(false);
    assert_eq!(report.diagnostics.len(), 2, "{text}");
    for d in &report.diagnostics {
        assert!(
            d.message
                .contains("needs `apiserver-ready`, which is not defined"),
            "{text}"
        );
    }
    assert!(text.contains("graders/workload-healthy.yaml:"), "{text}");

    std::fs::write(&path, scenario("apiserver-healthy, workload-healthy")).expect("write");
    let report = check_file(&path, Some(Path::new("graders")));
    assert!(report.diagnostics.is_empty(), "{}", report.render(false));
}

#[test]
fn graders_dir_can_be_overridden() {
    let report = check_file(
        Path::new("tests/fixtures/valid/with-grader.yaml"),
        Some(Path::new("tests/fixtures/nowhere")),
    );
    assert_eq!(report.diagnostics.len(), 1, "{}", report.render(false));
    assert!(report.diagnostics[0]
        .message
        .contains("tests/fixtures/nowhere/etcd-healthy.yaml does not exist"));
}

#[test]
fn invalid_scenario_is_an_error_for_the_engine() {
    let err = load_valid(
        Path::new("tests/fixtures/invalid/undefined-target.yaml"),
        None,
        false,
    )
    .expect_err("invalid");
    match err {
        breakfix::Error::Scenario { count, rendered } => {
            assert_eq!(count, 2);
            assert!(
                rendered.contains("[tests/fixtures/invalid/undefined-target.yaml:12:13]"),
                "{rendered}"
            );
        }
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn unreadable_file_has_a_diagnostic_without_position() {
    let report = check_file(
        Path::new("tests/fixtures/invalid/does-not-exist.yaml"),
        None,
    );
    assert_eq!(report.diagnostics.len(), 1);
    let d = &report.diagnostics[0];
    assert_eq!((d.line, d.column), (0, 0));
    assert!(report
        .render(false)
        .contains("tests/fixtures/invalid/does-not-exist.yaml: cannot read the file"));
}

#[test]
fn json_form_of_a_report() {
    let report = check_file(
        Path::new("tests/fixtures/invalid/undefined-target.yaml"),
        None,
    );
    let json = serde_json::to_string_pretty(&report.json()).expect("json");
    insta::assert_snapshot!("undefined-target.json", json);
}

/// `breakfix validate` shows each diagnostic's code: first in the human message, as `"code"`
/// in JSON (also for a grader validated on its own and for a lab's steps).
#[test]
fn validate_shows_the_codes() {
    use breakfix::scenario::Code;
    let file = "tests/fixtures/invalid/undefined-target.yaml";
    let o = crate::common::breakfix(&["validate", file]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{out}");
    let header = format!(
        "x [{}] undefined target `controlplan`",
        Code::UndefinedTarget
    );
    assert!(out.contains(&header), "{out}");

    let o = crate::common::breakfix(&["validate", "--output", "json", file]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let codes: Vec<&str> = json[0]["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .map(|d| d["code"].as_str().expect("code"))
        .collect();
    let want = Code::UndefinedTarget.as_str();
    assert_eq!(codes, [want, want]);

    let o = crate::common::breakfix(&[
        "validate",
        "--output",
        "json",
        "tests/fixtures/graders/broken.yaml",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(
        json[0]["diagnostics"][0]["code"],
        Code::GraderNameMismatch.as_str()
    );
}

/// Every code the invalid fixtures produce is one docs/diagnostics.md lists (the list itself
/// is checked against src/scenario/codes.rs by a unit test).
#[test]
fn fixture_codes_are_documented() {
    let doc = std::fs::read_to_string("docs/diagnostics.md").expect("docs/diagnostics.md");
    let mut seen = std::collections::BTreeSet::new();
    for p in yaml_files("tests/fixtures/invalid") {
        for d in check_file(&p, None).diagnostics {
            seen.insert(d.code);
        }
    }
    assert!(seen.len() > 30, "only {} codes: {seen:?}", seen.len());
    for c in seen {
        assert!(
            doc.contains(&format!("| `{c}` | {} |", c.meaning())),
            "{c} is not in docs/diagnostics.md"
        );
    }
}

#[test]
fn colour_rendering_differs_only_in_style() {
    let report = check_file(
        Path::new("tests/fixtures/invalid/undefined-target.yaml"),
        None,
    );
    let coloured = report.render(true);
    assert!(
        coloured.contains("\u{1b}["),
        "colour output uses ANSI escapes"
    );
    assert!(coloured.contains("undefined-target.yaml:12:13"));
}

/// The ```yaml blocks of docs/scenario-format.md, dedented, with their line numbers.
fn doc_yaml_blocks() -> Vec<(usize, String)> {
    let doc = std::fs::read_to_string("docs/scenario-format.md").expect("docs/scenario-format.md");
    let mut blocks = Vec::new();
    let mut current: Option<(usize, usize, String)> = None;
    for (i, line) in doc.lines().enumerate() {
        match &mut current {
            None => {
                let indent = line.len() - line.trim_start().len();
                if line.trim_start() == "```yaml" {
                    current = Some((i + 1, indent, String::new()));
                }
            }
            Some((start, indent, text)) => {
                if line.trim() == "```" {
                    blocks.push((*start, std::mem::take(text)));
                    current = None;
                } else {
                    text.push_str(line.get(*indent..).unwrap_or(""));
                    text.push('\n');
                }
            }
        }
    }
    blocks
}

/// Base scenario the documentation's fragments are merged into (their top-level sections
/// replace the base's).
const DOC_BASE: &str = "apiVersion: breakfix/v1
kind: Scenario
metadata:
  name: doc-example
  title: Documentation example
targets:
  cp: { role: control-plane }
faults:
  - { kind: systemd, unit: etcd, action: stop }
verify:
  probes:
    - { kind: systemd, name: etcd-unit-active, unit: etcd, expect: { active: active } }
";

/// Top-level sections of a YAML text: `(key, text of the section)`.
fn sections(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let top = !line.starts_with([' ', '#', '-']) && !line.is_empty();
        if top {
            let key = line.split(':').next().unwrap_or("").to_string();
            out.push((key, String::new()));
        }
        if let Some((_, body)) = out.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

#[test]
fn documentation_examples_are_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let graders = dir.path().join("graders");
    std::fs::create_dir_all(&graders).expect("mkdir");
    let blocks = doc_yaml_blocks();
    assert!(blocks.len() > 20, "found only {} yaml blocks", blocks.len());
    let opts = breakfix::scenario::load::options;
    for (line, text) in blocks {
        let at = format!("docs/scenario-format.md:{line}");
        if text.starts_with("- kind:") {
            let as_probes =
                serde_saphyr::from_str_with_options::<Vec<breakfix::probe::Probe>>(&text, opts());
            let as_actions =
                serde_saphyr::from_str_with_options::<Vec<breakfix::fault::Action>>(&text, opts());
            assert!(
                as_probes.is_ok() || as_actions.is_ok(),
                "{at}: neither probes ({:?}) nor steps ({:?})",
                as_probes.err(),
                as_actions.err()
            );
        } else if text.starts_with("expect:") {
            #[derive(serde::Deserialize)]
            #[allow(dead_code)]
            struct E {
                expect: std::collections::BTreeMap<String, breakfix::matcher::Matcher>,
            }
            serde_saphyr::from_str_with_options::<E>(&text, opts())
                .unwrap_or_else(|e| panic!("{at}: {e}"));
        } else if text.contains("\nkind: Grader\n") {
            let name = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("name: "))
                .map(|n| n.split_whitespace().next().unwrap_or(n).to_string())
                .expect("grader name");
            std::fs::write(graders.join(format!("{name}.yaml")), &text).expect("write grader");
            let scenario = DOC_BASE.replace(
                "verify:\n  probes:\n",
                &format!("verify:\n  include: [{name}]\n  probes:\n"),
            );
            let path = dir.path().join("scenario-with-grader.yaml");
            std::fs::write(&path, scenario).expect("write");
            let report = check_file(&path, Some(&graders));
            assert!(report.is_ok(), "{at}:\n{}", report.render(false));
        } else {
            let (file, graders_dir) =
                if text.starts_with("apiVersion:") && text.contains("\nfaults:") {
                    (text.clone(), PathBuf::from("graders"))
                } else {
                    let fragment = sections(&text);
                    let mut merged = String::new();
                    for (key, body) in sections(DOC_BASE) {
                        if !fragment.iter().any(|(k, _)| *k == key) {
                            merged.push_str(&body);
                        }
                    }
                    for (_, body) in &fragment {
                        merged.push_str(body);
                    }
                    (merged, PathBuf::from("graders"))
                };
            let path = dir.path().join(format!("doc-line-{line}.yaml"));
            std::fs::write(&path, &file).expect("write");
            let report = check_file(&path, Some(&graders_dir));
            assert!(report.is_ok(), "{at}:\n{file}\n{}", report.render(false));
        }
    }
}

#[test]
fn labs_are_validated_with_the_scenarios_of_their_steps() {
    let o = crate::common::breakfix(&[
        "validate",
        "labs/etcd-outage-000.yaml",
        "labs/etcd-performance-004.yaml",
        "labs/etcd-dr-003.yaml",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains(
            "ok labs/etcd-performance-004.yaml (lab: 5 steps, 3 with a scenario; topologies: external, stacked)"
        ),
        "{out}"
    );
    // Seed 003's lab says that it needs a three-member etcd.
    assert!(
        out.contains(
            "ok labs/etcd-dr-003.yaml (lab: 6 steps, 4 with a scenario; topologies: external, stacked; needs 3 etcd members)"
        ),
        "{out}"
    );
    // Seed 000's steps 1 and 3 have a scenario and a text per topology.
    assert!(
        out.contains(
            "ok labs/etcd-outage-000.yaml (lab: 6 steps, 2 with a scenario; topologies: external, stacked)"
        ),
        "{out}"
    );

    // A step whose scenario has a mistake makes the lab invalid, with the scenario's
    // diagnostic (file, line, column) under the step.
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = std::fs::read_to_string("scenarios/etcd-service-stopped.yaml")
        .expect("scenario")
        .replace("  time_limit:", "  time_limmit:");
    std::fs::write(dir.path().join("broken.yaml"), bad).expect("write scenario");
    std::fs::create_dir(dir.path().join("graders")).expect("graders dir");
    for g in [
        "etcd-healthy",
        "apiserver-healthy",
        "workload-healthy",
        "no-alarms",
    ] {
        std::fs::copy(
            format!("graders/{g}.yaml"),
            dir.path().join(format!("graders/{g}.yaml")),
        )
        .expect("copy grader");
    }
    let lab = dir.path().join("lab.yaml");
    std::fs::write(
        &lab,
        "apiVersion: breakfix/v1\nkind: Lab\nmetadata:\n  name: l\n  title: l\nsteps:\n  - title: one\n    scenario: broken.yaml\n    text: hi\n",
    )
    .expect("write lab");
    let o = crate::common::breakfix(&["validate", &lab.display().to_string()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("step 1 of"), "{out}");
    assert!(out.contains("unknown field `time_limmit`"), "{out}");
    assert!(out.contains("broken.yaml:"), "{out}");

    // A step naming a scenario that does not exist.
    std::fs::write(
        &lab,
        "apiVersion: breakfix/v1\nkind: Lab\nmetadata:\n  name: l\n  title: l\nsteps:\n  - title: one\n    scenario: nowhere.yaml\n    text: hi\n",
    )
    .expect("write lab");
    let o = crate::common::breakfix(&["validate", &lab.display().to_string()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("nowhere.yaml does not exist"), "{out}");

    // A step's scenario for one topology must be written for that topology.
    let good = std::fs::read_to_string("scenarios/etcd-service-stopped.yaml").expect("scenario");
    std::fs::write(dir.path().join("external.yaml"), good).expect("write scenario");
    std::fs::write(
        &lab,
        "apiVersion: breakfix/v1\nkind: Lab\nmetadata:\n  name: l\n  title: l\nsteps:\n  - title: one\n    scenario: { stacked: external.yaml }\n    text: hi\n",
    )
    .expect("write lab");
    let o = crate::common::breakfix(&["validate", &lab.display().to_string()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(
        out.contains("step 1's scenario for stacked,")
            && out.contains("is written for the external topology"),
        "{out}"
    );

    // Per-topology scenarios need a text for each of their topologies (or one for all): the
    // lab file itself is refused, at load.
    std::fs::write(
        &lab,
        "apiVersion: breakfix/v1\nkind: Lab\nmetadata:\n  name: l\n  title: l\nsteps:\n  - title: one\n    scenario: { external: external.yaml }\n    text: { stacked: hi }\n",
    )
    .expect("write lab");
    let o = crate::common::breakfix(&["validate", &lab.display().to_string()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(
        out.contains("it has a scenario for external but no text for external"),
        "{out}"
    );
}

/// `breakfix plan` of the every-field fixture (human): each step's rendered command, each
/// probe's target, timing and `needs`, the wrong fixes' steps, multi-line values indented.
#[test]
fn plan_shows_every_step_and_probe_as_rendered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = dir.path().join("inventory.yaml");
    std::fs::write(
        &inv,
        "apiVersion: breakfix/v1\nkind: Inventory\ncluster: { name: lab, topology: external, etcd: { endpoints: [https://127.0.0.1:2379], ca_file: /etc/kubernetes/pki/etcd/ca.crt, cert_file: /etc/kubernetes/pki/apiserver-etcd-client.crt, key_file: /etc/kubernetes/pki/apiserver-etcd-client.key } }\nnodes:\n  - { name: controlplane, address: 198.18.0.11, roles: [control-plane, etcd], known_hosts: kh }\n  - { name: node01, address: 198.18.0.12, roles: [worker], known_hosts: kh }\n",
    )
    .expect("write inventory");
    let out = crate::common::Cli::new()
        .inventory(&inv)
        .run(&["plan", "tests/fixtures/valid/every-field.yaml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    insta::assert_snapshot!("plan-every-field", String::from_utf8_lossy(&out.stdout));
}

/// Every diagnostic code is shown by at least one snapshot (ruff-style: each rule has its
/// rendered example), except the few proven elsewhere, named here with where.
#[test]
fn every_code_has_a_rendered_example() {
    // BF020-BF022 (unreadable, not UTF-8, empty file): unit tests in src/scenario/load.rs.
    const ELSEWHERE: &[&str] = &["BF020", "BF021", "BF022"];
    let mut shown = std::collections::BTreeSet::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/integration/snapshots");
    for e in std::fs::read_dir(dir).expect("snapshots") {
        let text = std::fs::read_to_string(e.expect("entry").path()).unwrap_or_default();
        for (i, _) in text.match_indices("[BF") {
            shown.insert(text[i + 1..i + 6].to_string());
        }
    }
    let missing: Vec<&str> = breakfix::scenario::codes::Code::ALL
        .iter()
        .map(|c| c.as_str())
        .filter(|c| !shown.contains(*c) && !ELSEWHERE.contains(c))
        .collect();
    assert!(
        missing.is_empty(),
        "codes without a snapshot: {missing:?} (add a fixture under tests/fixtures/invalid)"
    );
}
