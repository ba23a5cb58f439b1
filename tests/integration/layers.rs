//! The module graph follows the data flow (docs/architecture.md): each top-level module of
//! src/ has a rank, and a module may use (`crate::x`) only modules of a LOWER rank (plus
//! itself). `fault` and `probe` share a rank and may not use each other. Comment lines are
//! not code and are skipped (doc links may point anywhere).

use std::collections::BTreeMap;
use std::path::Path;

/// Rank of each top-level module, lowest first: plain data and utilities, the inventory, the
/// transport, rendering, matching, the node layer, the kinds, the journal, loading and
/// validation, the plan, the engine, reports, the front ends.
const RANKS: &[(&str, u32)] = &[
    ("error", 0),
    ("duration", 0),
    ("failpoint", 0),
    ("state", 0),
    ("kind_first", 0),
    ("touches", 0),
    ("problem", 0),
    ("host_address", 0),
    ("inventory", 1),
    ("transport", 2),
    ("template", 3),
    ("matcher", 4),
    ("node", 5),
    ("fault", 6),
    ("probe", 6),
    ("journal", 7),
    ("scenario", 8),
    ("plan", 9),
    ("engine", 10),
    ("report", 11),
    ("lab", 11),
    ("export", 12),
    ("sandbox", 12),
    ("fuzzing", 13),
    ("cli", 13),
    ("lib", 14),
    ("main", 14),
];

/// Names at the crate root (exported macros, re-exports), by the module that defines them.
const MACROS: &[(&str, &str)] = &[
    ("Error", "error"),
    ("Result", "error"),
    ("kind_first_enum", "kind_first"),
    ("action_spec", "fault"),
    ("probe_spec", "probe"),
    ("expect_block", "probe"),
];

fn rs_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `(file, used module)` for every `crate::x` in code lines of src/.
fn uses() -> Vec<(String, String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let mut out = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().to_string();
        let owner = rel.split(['/', '.']).next().unwrap_or_default().to_string();
        let text = std::fs::read_to_string(&f).unwrap();
        for line in text.lines() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            let code = code.split(" //").next().unwrap_or(code);
            for (i, _) in code.match_indices("crate::") {
                // `$crate::` inside macros is the same crate.
                let name: String = code[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let used = MACROS
                    .iter()
                    .find(|(m, _)| *m == name)
                    .map(|(_, def)| def.to_string())
                    .unwrap_or(name);
                out.push((rel.clone(), owner.clone(), used));
            }
        }
    }
    out
}

#[test]
fn no_module_uses_a_module_of_a_higher_stage() {
    let rank: BTreeMap<&str, u32> = RANKS.iter().copied().collect();
    let mut bad = Vec::new();
    let mut seen = 0;
    for (file, owner, used) in uses() {
        seen += 1;
        if owner == used {
            continue;
        }
        let (Some(a), Some(b)) = (rank.get(owner.as_str()), rank.get(used.as_str())) else {
            bad.push(format!(
                "{file}: `crate::{used}` from `{owner}`: a module without a rank (add it to RANKS)"
            ));
            continue;
        };
        if b >= a {
            bad.push(format!(
                "{file}: `{owner}` (rank {a}) uses `crate::{used}` (rank {b})"
            ));
        }
    }
    assert!(seen > 100, "found only {seen} uses: is the scan broken?");
    assert!(
        bad.is_empty(),
        "imports against the data flow:\n{}",
        bad.join("\n")
    );
}
