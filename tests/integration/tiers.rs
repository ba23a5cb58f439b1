//! The test tiers stay apart (`common/tier.rs`): every integration test that calls a system
//! fixture directly (the sandbox, the loopback sshd, etcd) carries the system-tier attribute,
//! checked in the source; a test that reaches a fixture through a helper of its own is caught
//! when it runs, in the pure tier, by the fixture's guard ([`require_system_tier`]).

use std::path::{Path, PathBuf};

use crate::common::tier::{require_system_tier, PURE_TIER, SYSTEM_TIER_ATTRIBUTE};

/// Calls that reach a system fixture.
const FIXTURE_CALLS: &[&str] = &[
    "sandbox()",
    "sandbox_stacked()",
    "sandbox_with(",
    "Sshd::start",
    "Etcd::start",
];

/// The part of [`SYSTEM_TIER_ATTRIBUTE`] that marks a test, however rustfmt lays it out.
const MARK: &str = "not(feature = \"system-tests\")";

/// One test function of the integration tests, as written.
struct TestFn {
    /// `file:line` of its `fn` line.
    at: String,
    /// Its name.
    name: String,
    /// The attribute and doc-comment lines above its `fn` line.
    attributes: String,
    /// The function, from its `fn` line to its closing brace.
    body: String,
}

/// Every `.rs` file under `dir`, recursively.
fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for e in entries {
        let p = e.expect("directory entry").path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The `#[test]` and `#[tokio::test]` functions of `text` (rustfmt's layout: attributes
/// directly above the `fn` line, the closing brace alone at the `fn` line's indentation).
/// Panics naming the line where that layout is not found, so the check cannot pass by
/// seeing nothing.
fn test_fns(file: &Path, text: &str) -> Vec<TestFn> {
    let lines: Vec<&str> = text.lines().collect();
    let shown = file
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(file);
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if !(t.starts_with("#[test]") || t.starts_with("#[tokio::test")) {
            continue;
        }
        let at = |k: usize| format!("{}:{}", shown.display(), k + 1);
        // The attribute block starts after the previous item (or a blank line).
        let mut start = i;
        while start > 0 {
            let p = lines[start - 1].trim();
            if p.is_empty() || p == "}" || p.ends_with(';') || p.ends_with('{') {
                break;
            }
            start -= 1;
        }
        let fn_line = (i..lines.len())
            .find(|&k| {
                let p = lines[k].trim_start();
                p.starts_with("fn ") || p.starts_with("async fn ")
            })
            .unwrap_or_else(|| panic!("{}: a test attribute without a `fn` below", at(i)));
        let decl = lines[fn_line];
        let indent = &decl[..decl.len() - decl.trim_start().len()];
        let name = decl
            .split("fn ")
            .nth(1)
            .and_then(|rest| rest.split(['(', '<']).next())
            .unwrap_or_else(|| panic!("{}: no function name", at(fn_line)))
            .to_string();
        let end = (fn_line..lines.len())
            .find(|&k| lines[k].strip_prefix(indent) == Some("}"))
            .unwrap_or_else(|| panic!("{}: no closing brace for {name}", at(fn_line)));
        out.push(TestFn {
            at: at(fn_line),
            name,
            attributes: lines[start..fn_line].join("\n"),
            body: lines[fn_line..=end].join("\n"),
        });
    }
    out
}

#[test]
fn every_test_that_calls_a_system_fixture_is_in_the_system_tier() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration");
    let mut files = Vec::new();
    rs_files(&root, &mut files);
    let tests: Vec<TestFn> = files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{f:?}: {e}"));
            test_fns(f, &text)
        })
        .collect();
    assert!(
        tests
            .iter()
            .any(|t| t.name == "every_test_that_calls_a_system_fixture_is_in_the_system_tier"),
        "the scan does not see this test"
    );
    assert!(
        tests.iter().any(|t| t.attributes.contains(MARK)),
        "the scan sees no system-tier test"
    );
    let strays: Vec<String> = tests
        .iter()
        .filter(|t| !t.attributes.contains(MARK))
        .filter_map(|t| {
            let calls: Vec<&str> = FIXTURE_CALLS
                .iter()
                .copied()
                .filter(|c| t.body.contains(c))
                .collect();
            (!calls.is_empty()).then(|| format!("  {} {} calls {}", t.at, t.name, calls.join(", ")))
        })
        .collect();
    assert!(
        strays.is_empty(),
        "tests that call a system fixture (the sandbox, sshd or etcd) without \
         {SYSTEM_TIER_ATTRIBUTE}, so plain `cargo test` would run them:\n{}",
        strays.join("\n")
    );
}

#[test]
fn the_fixtures_guard_stops_them_in_the_pure_tier_only() {
    let refused = std::panic::catch_unwind(|| require_system_tier("a system fixture")).is_err();
    assert_eq!(refused, PURE_TIER);
    assert_eq!(PURE_TIER, cfg!(not(feature = "system-tests")));
}
