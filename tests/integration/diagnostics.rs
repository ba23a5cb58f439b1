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
    report.render(false)
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
    undefined_target => "undefined-target",
    missing_target => "missing-target",
    undefined_grader => "undefined-grader",
    broken_grader => "broken-grader",
    needs_unknown_probe => "needs-unknown-probe",
    needs_cycle => "needs-cycle",
    command_fault_without_undo => "command-fault-without-undo",
    empty_verify => "empty-verify",
    semantic_errors => "semantic-errors",
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
