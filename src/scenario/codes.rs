//! Diagnostic codes: one stable code per kind of problem (`BF203`), ruff-style, so a lab
//! author can look a diagnostic up (docs/diagnostics.md) and tools can match on it.
//!
//! Numbering by group: `BF0xx` the file itself (reading, YAML, parse errors), `BF1xx` header,
//! params and targets, `BF2xx` faults and steps, `BF3xx` probes and `needs:`, `BF4xx` verify,
//! includes and tasks, `BF5xx` graders, `BF6xx` templates.
//!
//! Once published, a code keeps its meaning: a new rule gets a new number, and the number of a
//! rule that goes away moves to [`RETIRED`] (never reused). Every code is listed, with its
//! meaning and an example, in docs/diagnostics.md (tests check both ways, and that every code
//! is produced somewhere).

use serde::{Serialize, Serializer};

/// Declares [`Code`]: `Variant = "BFnnn", "meaning";` (the meaning is also the variant's doc
/// and the first column of docs/diagnostics.md).
macro_rules! codes {
    ($( $variant:ident = $code:literal, $meaning:literal; )+) => {
        /// A stable diagnostic code (see the module documentation).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $( #[doc = $meaning] $variant, )+
        }

        impl Code {
            /// Every code, in numbering order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),+];

            /// The code as written in output and docs (`BF203`).
            pub fn as_str(self) -> &'static str {
                match self { $( Code::$variant => $code, )+ }
            }

            /// What the code means, in a few words.
            pub fn meaning(self) -> &'static str {
                match self { $( Code::$variant => $meaning, )+ }
            }

            /// The code written `s` (`BF203`), if there is one.
            pub fn parse(s: &str) -> Option<Code> {
                match s { $( $code => Some(Code::$variant), )+ _ => None }
            }
        }
    };
}

codes! {
    // ---- BF0xx: the file itself ----
    YamlSyntax = "BF001", "the file is not valid YAML";
    DuplicateKey = "BF002", "a key appears twice in one mapping";
    UnknownField = "BF003", "a field this place does not have";
    MissingField = "BF004", "a required field is missing";
    WrongType = "BF005", "a value of the wrong type (a list for a mapping, text for a number, ...)";
    NotABoolean = "BF006", "a boolean field holds something other than `true` or `false`";
    UnknownKind = "BF007", "an unknown fault, step or probe `kind:`";
    UnknownValue = "BF008", "a value outside the field's fixed set of choices";
    KindNotFirst = "BF009", "a fault, step or probe whose first key is not `kind`";
    InvalidDuration = "BF010", "a duration that does not parse";
    InvalidMatcher = "BF011", "an `expect:` matcher that does not parse";
    InvalidValue = "BF012", "a value of the right type that the field does not accept";
    Unreadable = "BF020", "the file cannot be read";
    NotUtf8 = "BF021", "the file is not UTF-8 text";
    EmptyFile = "BF022", "the file has no content";

    // ---- BF1xx: header, params, targets ----
    UnsupportedApiVersion = "BF101", "an `apiVersion` this version of breakfix does not read";
    WrongFileKind = "BF102", "the file's `kind:` is not the one expected here";
    InvalidScenarioName = "BF103", "a scenario name that is not lowercase letters, digits and dashes";
    InvalidParamName = "BF104", "a parameter name templates cannot refer to";
    TargetRoleAndNode = "BF110", "a target that sets both `role:` and `node:`";
    TargetSelectsNothing = "BF111", "a target with neither `role:` nor `node:`";
    TargetAllWithNode = "BF112", "`all:` on a target that names one node";
    UndefinedTarget = "BF120", "a `target:` that names no target";
    NoTargets = "BF121", "a fault, step or probe without `target:` in a scenario without `targets:`";
    TargetNeeded = "BF122", "a fault, step or probe without `target:` in a scenario with several targets";

    // ---- BF2xx: faults and steps ----
    NoFaults = "BF201", "`faults:` is empty";
    KindRule = "BF202", "a fault or step breaks a rule of its kind";

    // ---- BF3xx: probes and needs ----
    EmptyExpect = "BF301", "a probe with an empty `expect:`";
    EmptyProbeName = "BF302", "a probe whose name is empty";
    DuplicateProbeName = "BF303", "two probes of one phase with the same name";
    NeedsItself = "BF304", "a probe that lists itself in `needs:`";
    NeedsOtherPhase = "BF305", "a probe that needs a probe of another phase";
    NeedsUndefined = "BF306", "a probe that needs a probe that does not exist";
    NeedsCycle = "BF307", "probes whose `needs:` form a cycle";
    ProbeKindRule = "BF308", "a probe breaks a rule of its kind";

    // ---- BF4xx: verify, includes, tasks ----
    NoVerifyProbes = "BF401", "`verify:` has neither probes nor includes";
    InvalidIncludeName = "BF402", "an `include:` entry that is not a grader name";
    DuplicateInclude = "BF403", "a grader included twice";
    UndefinedGrader = "BF404", "an `include:` naming a grader file that does not exist";
    TaskConfirmProbe = "BF405", "a task that refers to a confirm probe";
    TaskUnknownProbe = "BF406", "a task that refers to a probe that is not a verify probe";
    TaskProbesAndEvidence = "BF407", "a task with both `probes:` and `evidence:`";
    HintUnknownProbe = "BF408", "a hint whose `when:` names a probe that is not a signal, a verify probe or evidence of its task";

    // ---- BF5xx: graders ----
    GraderNameMismatch = "BF501", "a grader whose `metadata.name` is not its file name";
    GraderWithoutProbes = "BF502", "a grader with an empty `probes:`";

    // ---- BF6xx: templates ----
    TemplateNotRendered = "BF601", "a template in a field that is used as written";
    UnclosedTemplate = "BF602", "`{{` without `}}`";
    GoTemplate = "BF603", "a Go template (kubectl, crictl) where a breakfix template is read";
    TemplateSyntax = "BF604", "a template that does not parse";
    UndefinedParam = "BF605", "a template that uses a parameter that is not declared";
    UndefinedVariable = "BF606", "a template that uses an unknown variable or attribute";
    UnknownFilter = "BF607", "a template that uses an unknown filter, test or function";
    BoundNotNumber = "BF608", "an `lt`/`gt` template that does not render to a number";
}

/// Codes of rules that no longer exist: never given to a new rule.
pub const RETIRED: &[&str] = &[];

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    const DOCS: &str = "docs/diagnostics.md";

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    /// Every `BF` + 3 digits in `text`, with the text after it on the same line.
    fn mentions(text: &str) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        while let Some(at) = text[i..].find("BF").map(|j| i + j) {
            i = at + 2;
            let digits = &bytes[at + 2..(at + 5).min(bytes.len())];
            let word_before = at > 0 && (bytes[at - 1].is_ascii_alphanumeric());
            let word_after = bytes.get(at + 5).is_some_and(u8::is_ascii_alphanumeric);
            if digits.len() == 3
                && digits.iter().all(u8::is_ascii_digit)
                && !word_before
                && !word_after
            {
                let rest = &text[at + 5..];
                let line = rest.split('\n').next().unwrap_or("");
                out.push((text[at..at + 5].to_string(), line));
            }
        }
        out
    }

    #[test]
    fn codes_are_unique_well_formed_and_grouped() {
        let mut seen = BTreeSet::new();
        let mut previous = "";
        for c in Code::ALL {
            let s = c.as_str();
            assert!(
                s.len() == 5 && s.starts_with("BF") && s[2..].chars().all(|d| d.is_ascii_digit()),
                "{s}"
            );
            assert!(seen.insert(s), "{s} is defined twice");
            assert!(s > previous, "{s} is out of order");
            previous = s;
            assert_eq!(Code::parse(s), Some(*c));
            assert!(!c.meaning().is_empty());
            assert!(
                !RETIRED.contains(&s),
                "{s} is retired: give the rule a new number"
            );
        }
        assert_eq!(Code::parse("BF999"), None);
    }

    /// Each code has a row `| BFnnn | meaning | example |` in docs/diagnostics.md with the
    /// meaning written here, and the docs name no code that is not defined.
    #[test]
    fn every_code_is_documented_and_every_documented_code_exists() {
        let doc = std::fs::read_to_string(root().join(DOCS)).expect(DOCS);
        let mut rows = BTreeSet::new();
        for line in doc.lines() {
            let cells: Vec<&str> = line.split(" | ").map(str::trim).collect();
            let Some(first) = cells.first() else { continue };
            let Some(code) = first
                .strip_prefix("| `")
                .and_then(|c| c.strip_suffix('`'))
                .filter(|c| mentions(c).len() == 1 && c.len() == 5)
            else {
                continue;
            };
            let c = Code::parse(code)
                .unwrap_or_else(|| panic!("{DOCS} documents {code}, which is not defined"));
            assert!(rows.insert(c), "{DOCS} documents {code} twice");
            assert_eq!(
                cells.get(1).copied(),
                Some(c.meaning()),
                "{DOCS}: the meaning of {code} differs from src/scenario/codes.rs"
            );
            assert!(
                cells.get(2).is_some_and(|e| e.len() > 3),
                "{DOCS}: {code} has no example"
            );
        }
        for (code, _) in mentions(&doc) {
            assert!(
                Code::parse(&code).is_some() || RETIRED.contains(&code.as_str()),
                "{DOCS} mentions {code}, which is not defined"
            );
        }
        for c in Code::ALL {
            assert!(
                rows.contains(c),
                "{} ({}) is not documented in {DOCS}",
                c.as_str(),
                c.meaning()
            );
        }
    }

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                rust_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// The source uses codes through [`Code`] only (no `"BF..."` string outside this file),
    /// and every code is used somewhere (a rule that goes away moves its code to [`RETIRED`]).
    #[test]
    fn every_code_is_used_and_only_through_the_enum() {
        let mut files = Vec::new();
        rust_files(&root().join("src"), &mut files);
        let this = root().join("src/scenario/codes.rs");
        let mut text = String::new();
        for f in files.iter().filter(|f| **f != this) {
            let t = std::fs::read_to_string(f).expect("source");
            // A string literal holding a code (comments may quote codes as examples).
            let literal = mentions(&t)
                .into_iter()
                .find(|(code, _)| t.contains(&format!("\"{code}")));
            if let Some((code, _)) = literal {
                panic!(
                    "{} writes {code} in a string: use {}",
                    f.display(),
                    Code::parse(&code)
                        .map(|c| format!("Code::{c:?}"))
                        .unwrap_or_else(|| "a Code".into())
                );
            }
            text.push_str(&t);
        }
        for c in Code::ALL {
            let used = format!("Code::{c:?}");
            let word_end = |i: usize| {
                !text[i + used.len()..]
                    .starts_with(|ch: char| ch.is_ascii_alphanumeric() || ch == '_')
            };
            assert!(
                text.match_indices(&used).any(|(i, _)| word_end(i)),
                "{} ({c:?}) is defined but no source file uses {used}",
                c.as_str()
            );
        }
    }
}
