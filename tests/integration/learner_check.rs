//! `breakfix check --quick` (issue 14, a learner's Check button): an unfixed cluster answers
//! after two equal attempts instead of waiting out `within`; a result that keeps changing is
//! retried until it settles or passes; without `--quick` a failing probe waits out `within`.
//! `--brief` prints what is still wrong in the probes' words; `--full-report` keeps the rest.
//! Pure tier: the node is this machine through the local transport, the probe reads a file.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::Cli;

/// A scenario whose one verify probe wants `fixed` in `marker` (within 20 s), and a local
/// inventory, in `dir`.
fn lab(dir: &Path, marker: &Path) -> Cli {
    lab_reading(dir, &format!("cat {}", marker.display()))
}

/// [`lab`] with the probe's command `run` (its stdout must be `fixed`).
fn lab_reading(dir: &Path, run: &str) -> Cli {
    let inv = dir.join("inventory.yaml");
    std::fs::write(
        &inv,
        "apiVersion: breakfix/v1\nkind: Inventory\ncluster: { name: local, topology: external, etcd: { endpoints: [https://127.0.0.1:2379], ca_file: /nonexistent/ca.crt, cert_file: /nonexistent/c.crt, key_file: /nonexistent/c.key } }\nnodes:\n  - { name: controlplane, address: 127.0.0.1, roles: [control-plane, etcd], transport: local }\n",
    )
    .expect("write inventory");
    std::fs::write(
        dir.join("scenario.yaml"),
        format!(
            "apiVersion: breakfix/v1\nkind: Scenario\nmetadata: {{ name: quick-check, title: quick check }}\n\
             targets:\n  controlplane:\n    role: control-plane\n\
             faults:\n  - kind: command\n    run: \"true\"\n    undo: \"true\"\n\
             verify:\n  probes:\n    - kind: command\n      name: marker-fixed\n      description: the marker says fixed\n      run: {run}\n      within: 20s\n      expect:\n        stdout: {{ equals: fixed }}\n"
        ),
    )
    .expect("write scenario");
    Cli::new()
        .inventory(inv)
        .state_dir(dir.join("state"))
        .current_dir(dir)
}

/// Runs `check` with `extra` args; returns (exit code, the probe's JSON verdict).
fn check(cli: &Cli, extra: &[&str]) -> (Option<i32>, Value) {
    let mut args = vec!["check", "scenario.yaml", "--output", "json"];
    args.extend_from_slice(extra);
    let o = cli.run(&args);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.code(), v["verify"][0].clone())
}

#[test]
fn a_quick_check_of_an_unchanged_failure_stops_after_two_equal_attempts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("marker");
    std::fs::write(&marker, "broken\n").expect("write");
    let cli = lab(dir.path(), &marker);
    let (code, v) = check(&cli, &["--quick"]);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["status"], "fail", "{v}");
    assert_eq!(v["attempts"], 2, "two equal results end it: {v}");
    assert_eq!(v["checks"][0]["found"], "broken", "{v}");
    // Fixed: the first attempt passes.
    std::fs::write(&marker, "fixed\n").expect("write");
    let (code, v) = check(&cli, &["--quick"]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["attempts"], 1, "{v}");
}

#[test]
fn a_quick_check_keeps_trying_while_the_result_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("marker");
    std::fs::write(&marker, "starting 0\n").expect("write");
    let cli = lab(dir.path(), &marker);
    // A fix settling: the file changes every 300 ms (faster than the probe's 1 s interval)
    // for about 3 s, then says `fixed`.
    let writer = {
        let marker = marker.clone();
        std::thread::spawn(move || {
            for i in 1..=10 {
                std::thread::sleep(Duration::from_millis(300));
                std::fs::write(&marker, format!("starting {i}\n")).expect("write");
            }
            std::fs::write(&marker, "fixed\n").expect("write");
        })
    };
    let (code, v) = check(&cli, &["--quick"]);
    writer.join().expect("writer");
    assert_eq!(code, Some(0), "retried while it changed, then passed: {v}");
    assert!(v["attempts"].as_u64().unwrap_or(0) >= 3, "{v}");
}

#[test]
fn a_check_without_quick_waits_out_within() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("marker");
    std::fs::write(&marker, "broken\n").expect("write");
    let cli = lab(dir.path(), &marker);
    let (code, v) = check(&cli, &[]);
    assert_eq!(code, Some(1), "{v}");
    // 20 s of `within` at the default 1 s interval: about 20 attempts.
    assert!(v["attempts"].as_u64().unwrap_or(0) >= 15, "{v}");
}

#[test]
fn brief_output_says_what_is_still_wrong_and_the_full_report_goes_to_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("marker");
    std::fs::write(&marker, "broken\n").expect("write");
    let cli = lab(dir.path(), &marker);
    let log = dir.path().join("log/step1-verify.log");
    let log_arg = log.display().to_string();
    let args = [
        "check",
        "scenario.yaml",
        "--quick",
        "--brief",
        "--full-report",
        log_arg.as_str(),
    ];
    let o = cli.run(&args);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert_eq!(
        out,
        format!(
            "Not yet: 1 of 1 check still fails.\n  - the marker says fixed\nDetails: {log_arg}\n"
        )
    );
    let full = std::fs::read_to_string(&log).expect("the full report, its directory created");
    assert!(full.starts_with("==> breakfix check, "), "{full}");
    assert!(
        full.contains("FAIL  marker-fixed") && full.contains("expected fixed, found broken"),
        "{full}"
    );
    assert!(!full.contains('\u{1b}'), "no colour in the file: {full:?}");

    std::fs::write(&marker, "fixed\n").expect("write");
    let o = cli.run(&args);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.starts_with("Fixed: every check passes (1 of 1)."),
        "{out}"
    );
    let full = std::fs::read_to_string(&log).expect("log");
    assert_eq!(
        full.matches("==> breakfix check, ").count(),
        2,
        "appended: {full}"
    );
}

#[test]
fn a_quick_check_does_not_retry_a_slow_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("marker");
    std::fs::write(&marker, "broken\n").expect("write");
    // Each attempt takes longer than the 1 s interval, as a request that times out does.
    let cli = lab_reading(dir.path(), &format!("sleep 1.2; cat {}", marker.display()));
    let (code, v) = check(&cli, &["--quick"]);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["attempts"], 1, "a slow failure is not tried again: {v}");
}
