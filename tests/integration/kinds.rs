//! Every fault and probe kind is documented and has a fixture: a section `### \`kind: K\``
//! in docs/scenario-format.md (under `faults` or `Probes`) whose YAML example parses as that
//! kind, and tests/fixtures/kinds/{fault,probe}-K.yaml, a scenario using it that validates
//! clean. Adding a kind without them fails here (docs/architecture.md, "Adding a kind").

use std::collections::BTreeMap;
use std::path::Path;

use breakfix::fault::Action;
use breakfix::probe::Probe;
use breakfix::scenario::check::check_source;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn docs() -> String {
    std::fs::read_to_string(Path::new(ROOT).join("docs/scenario-format.md")).unwrap()
}

/// The text of `docs` from the heading `from` to the heading `to`.
fn section<'a>(docs: &'a str, from: &str, to: &str) -> &'a str {
    let i = docs
        .find(from)
        .unwrap_or_else(|| panic!("docs: no `{from}`"));
    let j = docs[i..]
        .find(to)
        .unwrap_or_else(|| panic!("docs: no `{to}`"))
        + i;
    &docs[i..j]
}

/// The first ```yaml block after the kind's heading in `sec`.
fn example(sec: &str, kind: &str) -> String {
    let h = format!("### `kind: {kind}`\n");
    let i = sec
        .find(&h)
        .unwrap_or_else(|| panic!("docs/scenario-format.md has no section `### `kind: {kind}`` in its part on this kind's family"));
    let rest = &sec[i..];
    let next = rest[h.len()..]
        .find("\n### ")
        .map(|n| n + h.len())
        .unwrap_or(rest.len());
    let body = &rest[..next];
    let start = body
        .find("```yaml\n")
        .unwrap_or_else(|| panic!("the `{kind}` section has no ```yaml example"))
        + 8;
    let end = body[start..].find("```").unwrap() + start;
    body[start..end].to_string()
}

/// Validates the kind's fixture and returns its loaded scenario's kinds (faults, probes).
fn fixture(family: &str, kind: &str) -> (Vec<&'static str>, Vec<&'static str>) {
    let path = Path::new(ROOT).join(format!("tests/fixtures/kinds/{family}-{kind}.yaml"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (every kind needs a fixture)", path.display()));
    let report = check_source(&path, text, Some(&Path::new(ROOT).join("graders")));
    assert!(report.is_ok(), "{}", report.render(false));
    let s = &report.loaded.as_ref().unwrap().scenario;
    let actions = s.setup.iter().chain(&s.faults).map(Action::kind).collect();
    let probes = s
        .confirm
        .iter()
        .chain(&s.verify.probes)
        .map(Probe::kind)
        .collect();
    (actions, probes)
}

#[test]
fn every_fault_kind_has_a_docs_section_with_an_example_and_a_fixture() {
    let docs = docs();
    let sec = section(&docs, "## `faults`", "## `confirm`");
    for kind in Action::KINDS {
        let ex = example(sec, kind);
        // A list of steps, or a scenario excerpt (`setup:`/`faults:` lists).
        let items: Vec<Action> = match serde_saphyr::from_str::<Vec<Action>>(&ex) {
            Ok(v) => v,
            Err(_) => serde_saphyr::from_str::<BTreeMap<String, Vec<Action>>>(&ex)
                .unwrap_or_else(|e| panic!("the `{kind}` docs example does not parse: {e}\n{ex}"))
                .into_values()
                .flatten()
                .collect(),
        };
        assert!(
            items.iter().any(|a| a.kind() == *kind),
            "the `{kind}` docs example has no `kind: {kind}` item"
        );
        let (actions, _) = fixture("fault", kind);
        assert!(
            actions.contains(kind),
            "fixture of `{kind}` does not use it"
        );
    }
}

#[test]
fn every_probe_kind_has_a_docs_section_with_an_example_and_a_fixture() {
    let docs = docs();
    let sec = section(&docs, "## Probes", "## Matchers");
    for kind in Probe::KINDS {
        let ex = example(sec, kind);
        let items: Vec<Probe> = serde_saphyr::from_str(&ex)
            .unwrap_or_else(|e| panic!("the `{kind}` docs example does not parse: {e}\n{ex}"));
        assert!(
            items.iter().any(|p| p.kind() == *kind),
            "the `{kind}` docs example has no `kind: {kind}` item"
        );
        let (_, probes) = fixture("probe", kind);
        assert!(probes.contains(kind), "fixture of `{kind}` does not use it");
    }
}
