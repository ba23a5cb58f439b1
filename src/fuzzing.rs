//! Fuzzing entry points: the bodies of the cargo-fuzz targets in `fuzz/` (libFuzzer, nightly),
//! kept here so the stable test suite replays the seed corpus and every input a fuzzer ever
//! crashed on through exactly the same code (`tests` below, `scripts/fuzz.sh`).
//!
//! # Guarantees
//! Each function returns for any input: no panic, whatever the bytes.

use std::path::Path;

/// The scenario loader with validation and diagnostics rendering (selector byte 0), the grader
/// parser (1), the lab loader (2). Input: one selector byte, then the file.
pub fn load(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 3 {
        0 => {
            let r = crate::scenario::check::check_source(
                Path::new("fuzz/scenario.yaml"),
                text.to_string(),
                Some(Path::new("tests/fixtures/graders")),
            );
            let _ = r.render(false);
            let _ = serde_json::to_string(&r.json());
        }
        1 => {
            if let Err(d) = crate::scenario::load::parse_grader("fuzz/grader.yaml", text) {
                let _ = crate::scenario::diagnostic::render_all(&[d], |_| Some(text), false);
            }
        }
        _ => {
            let _ = crate::lab::LoadedLab::parse(Path::new("labs/fuzz.yaml"), text);
        }
    }
}

/// The inventory loader (YAML, checks, path resolution).
pub fn inventory(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::inventory::Inventory::parse(Path::new("fuzz/inventory.yaml"), text);
    }
}

/// The journal decoders: a node's journal stream (as `reset` reads it from a node), one local
/// entry, one set-aside entry, the node lock file.
pub fn journal(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(entries) = crate::journal::decode_stream(&text, "controlplane") {
        for e in entries {
            let _ = e.undo.describe();
            let _ = e.undo.etcd_target();
            assert!(crate::journal::valid_id(&e.id));
            let _ = crate::duration::timestamp(e.recorded_at);
        }
    }
    if let Ok(e) = serde_json::from_slice::<crate::journal::Entry>(data) {
        let _ = e.undo.describe();
    }
    let _ = serde_json::from_slice::<crate::journal::stale::StaleEntry>(data);
    let _ = crate::journal::lock::Owner::parse(&text).describe();
}

/// Matcher parsing (YAML) and evaluation against a fact (JSON). Input: the matcher YAML, a
/// NUL byte, then the fact's JSON.
pub fn matcher(data: &[u8]) {
    let (spec, fact) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"\"x\""[..]),
    };
    let Ok(spec) = std::str::from_utf8(spec) else {
        return;
    };
    let Ok(m) = serde_saphyr::from_str::<crate::matcher::Matcher>(spec) else {
        return;
    };
    let _ = format!("{m}");
    let fact: Option<serde_json::Value> = serde_json::from_slice(fact).ok();
    let _ = m.matches(fact.as_ref());
    if let Some(v) = &fact {
        let _ = crate::matcher::to_text(v);
        let _ = crate::matcher::shown(v);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    fn files(dir: &str) -> Vec<PathBuf> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Every scenario, grader and lab of the repository and its fixtures through the `load`
    /// target (the seeds `scripts/fuzz.sh` starts from).
    #[test]
    fn the_seed_corpus_runs_through_every_target() {
        let mut n = 0;
        for (sel, dirs) in [
            (
                0u8,
                &[
                    "scenarios",
                    "tests/fixtures/valid",
                    "tests/fixtures/invalid",
                ][..],
            ),
            (1, &["graders", "tests/fixtures/graders"][..]),
            (2, &["labs"][..]),
        ] {
            for d in dirs {
                for f in files(d) {
                    let mut data = vec![sel];
                    data.extend(std::fs::read(&f).expect("read"));
                    super::load(&data);
                    n += 1;
                }
            }
        }
        assert!(n > 30, "{n} seeds");
        super::inventory(b"apiVersion: breakfix/v1\nkind: Inventory\nnodes: []\n");
        super::matcher(b"{ all: [ { gt: 1 }, { lt: 100000 } ] }\x00123");
        super::journal(b"{\"id\":\"1\",\"node\":\"controlplane\",\"scenario\":\"s\",\"fault\":\"f\",\"recorded_at\":1,\"undo\":{\"kind\":\"command\",\"run\":\"true\"}}");
    }

    /// Inputs a fuzzer crashed on, each kept as a regression test.
    #[test]
    fn inputs_that_crashed_a_fuzzer_once() {
        // journal: a lock file whose start time is past the year 9999 (the timestamp's
        // Display failed, and `format!` panicked).
        super::journal(
            b"{\"i[{\"\"+99999998h\nisnce99h\nsince=99999999999999999\n\n\x00\x00909\x009",
        );
        // journal: an entry from a node with a record time past the year 9999.
        super::journal(b"{\"id\":\"1\",\"node\":\"controlplane\",\"scenario\":\"s\",\"fault\":\"f\",\"recorded_at\":18446744073709551615,\"undo\":{\"kind\":\"command\",\"run\":\"true\"}}");
        // matcher: two `matches:` regexes of repeated classes (1.3 KB and 72 bytes), reported
        // as timeouts (over 2 s wall clock) by runs at nice 19 while builds held both cores
        // (load average 7); ~70 ms and ~16 ms on an idle core (libFuzzer's -timeout is wall
        // clock).
        for f in ["matcher-timeout-8f5969aa", "matcher-timeout-a780d8b2"] {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fuzz/");
            super::matcher(&std::fs::read(format!("{dir}{f}")).expect("fixture"));
        }
    }
}
