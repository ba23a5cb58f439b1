//! Loading: read a scenario file and the graders it includes, keeping every file's text so
//! diagnostics can be rendered against it.

use std::path::{Component, Path, PathBuf};

use super::diagnostic::{Code, Diagnostic};
use super::tree::{self, Node};
use super::{Grader, Scenario};

/// Parser options for scenario and grader files: YAML 1.2 booleans only (`node: no` stays a
/// string), numbers with leading zeros kept as strings (`mode: 0644`), duplicate keys
/// rejected, no snippets inside errors (diagnostics render their own).
pub fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        with_snippet: false,
    }
}

/// A file that failed to load, with its text (empty when it could not be read).
#[derive(Debug, Clone)]
pub struct FailedFile {
    /// The file.
    pub path: PathBuf,
    /// Its text.
    pub source: String,
    /// Why it failed.
    pub diagnostic: Diagnostic,
}

/// A grader included by `verify.include`.
#[derive(Debug, Clone)]
pub struct LoadedGrader {
    /// The include name (`graders/<name>.yaml`).
    pub name: String,
    /// The grader file.
    pub path: PathBuf,
    /// Its text.
    pub source: String,
    /// The parsed grader.
    pub grader: Grader,
    /// Located tree of the file (for validation).
    pub(crate) tree: Option<Node>,
}

/// A scenario file and the graders it includes, parsed but not yet validated.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The scenario file, as given.
    pub path: PathBuf,
    /// Its text.
    pub source: String,
    /// The parsed scenario.
    pub scenario: Scenario,
    /// Where `verify.include` names are looked up.
    pub graders_dir: PathBuf,
    /// Included graders that loaded, in `include:` order (each name once).
    pub graders: Vec<LoadedGrader>,
    /// Included grader files that exist but failed to read or parse (reported by
    /// [`super::validate::validate`], against the grader file's own text).
    pub failed_graders: Vec<FailedFile>,
    /// Located tree of the scenario file (for validation).
    pub(crate) tree: Option<Node>,
}

impl Loaded {
    /// The display name of the scenario file in diagnostics.
    pub fn file(&self) -> String {
        self.path.display().to_string()
    }

    /// The text of a file diagnostics may name (the scenario or one of its graders).
    pub fn source_of(&self, file: &str) -> Option<&str> {
        if file == self.file() {
            return Some(&self.source);
        }
        self.graders
            .iter()
            .find(|g| g.path.display().to_string() == file)
            .map(|g| g.source.as_str())
            .or_else(|| {
                self.failed_graders
                    .iter()
                    .find(|g| g.path.display().to_string() == file)
                    .map(|g| g.source.as_str())
            })
    }

    /// The graders' parsed files, in include order (what [`crate::plan::build`] takes).
    pub fn grader_files(&self) -> Vec<Grader> {
        self.graders.iter().map(|g| g.grader.clone()).collect()
    }
}

/// The graders directory used when none is given: `graders/` next to the scenario's
/// directory (`scenarios/x.yaml` -> `graders/`).
pub fn default_graders_dir(scenario: &Path) -> PathBuf {
    let dir = scenario.parent().unwrap_or(Path::new(""));
    match dir.components().next_back() {
        Some(Component::Normal(_)) => dir.parent().unwrap_or(Path::new("")).join("graders"),
        None => PathBuf::from("..").join("graders"),
        Some(_) => dir.join("..").join("graders"),
    }
}

/// The file `verify.include: [name]` refers to.
pub fn grader_path(graders_dir: &Path, name: &str) -> PathBuf {
    graders_dir.join(format!("{name}.yaml"))
}

/// Is `name` usable as an include name (a plain file stem)?
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}

/// Reads and parses `path` and the graders its `verify.include` names (from `graders_dir`).
///
/// Errors: the scenario file cannot be read or does not parse (syntax errors, duplicate
/// keys, unknown fields, wrong types, bad durations, unknown kinds, bad matchers); each as
/// `(file text, diagnostic)`. A grader that is missing or broken does not fail the load: it is
/// reported by [`super::validate::validate`].
pub fn load(path: &Path, graders_dir: &Path) -> Result<Loaded, Vec<(String, Diagnostic)>> {
    let source = read(path).map_err(|d| vec![(String::new(), d)])?;
    load_source(path, source, graders_dir)
}

/// [`load`] of `source` as if read from `path` (graders are still read from `graders_dir`).
///
/// Errors: as [`load`], but for reading the scenario file.
pub fn load_source(
    path: &Path,
    source: String,
    graders_dir: &Path,
) -> Result<Loaded, Vec<(String, Diagnostic)>> {
    let file = path.display().to_string();
    let scenario: Scenario = parse_typed(&file, &source).map_err(|d| vec![(source.clone(), d)])?;
    let tree = tree::parse(&source).ok();
    let mut graders = Vec::new();
    let mut failed_graders = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for inc in &scenario.verify.include {
        let name = inc.value.as_str();
        if !is_plain_name(name) || !seen.insert(name.to_string()) {
            continue;
        }
        let gpath = grader_path(graders_dir, name);
        if !gpath.is_file() {
            continue;
        }
        let gfile = gpath.display().to_string();
        match read(&gpath) {
            Err(diagnostic) => failed_graders.push(FailedFile {
                path: gpath,
                source: String::new(),
                diagnostic,
            }),
            Ok(gsource) => match parse_typed::<Grader>(&gfile, &gsource) {
                Ok(grader) => {
                    let tree = tree::parse(&gsource).ok();
                    graders.push(LoadedGrader {
                        name: name.to_string(),
                        path: gpath,
                        source: gsource,
                        grader,
                        tree,
                    })
                }
                Err(diagnostic) => failed_graders.push(FailedFile {
                    path: gpath,
                    source: gsource,
                    diagnostic,
                }),
            },
        }
    }
    Ok(Loaded {
        path: path.to_path_buf(),
        source,
        scenario,
        graders_dir: graders_dir.to_path_buf(),
        graders,
        failed_graders,
        tree,
    })
}

fn read(path: &Path) -> Result<String, Diagnostic> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        Diagnostic::whole_file(
            Code::Unreadable,
            &file,
            format!("cannot read the file: {e}"),
        )
    })?;
    String::from_utf8(bytes).map_err(|e| {
        Diagnostic::whole_file(
            Code::NotUtf8,
            &file,
            format!("the file is not UTF-8 text: {e}"),
        )
    })
}

/// Parses a grader file's `source` (as `load` does for each included grader).
///
/// Errors: the diagnostic of the first problem (syntax, unknown field, wrong type, ...).
pub fn parse_grader(file: &str, source: &str) -> Result<Grader, Diagnostic> {
    parse_typed(file, source)
}

fn parse_typed<T: serde::de::DeserializeOwned>(file: &str, source: &str) -> Result<T, Diagnostic> {
    let has_content = source.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#') && t != "---"
    });
    if !has_content {
        return Err(Diagnostic::whole_file(Code::EmptyFile, file, "the file is empty")
            .with_help("a scenario starts with `apiVersion: breakfix/v1` and `kind: Scenario` (a grader: `kind: Grader`)"));
    }
    serde_saphyr::from_str_with_options::<T>(source, options())
        .map_err(|e| Diagnostic::from_yaml(file, source, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_level_problems_have_their_codes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gone = dir.path().join("gone.yaml");
        let latin1 = dir.path().join("latin1.yaml");
        std::fs::write(&latin1, b"title: caf\xe9\n").expect("write");
        let empty = dir.path().join("empty.yaml");
        std::fs::write(&empty, "# nothing yet\n---\n").expect("write");
        let graders = dir.path().join("graders");
        let code = |p: &Path| {
            let errs = load(p, &graders).expect_err("fails");
            assert_eq!(errs.len(), 1);
            let d = &errs[0].1;
            assert_eq!((d.line, d.column), (0, 0));
            d.code
        };
        assert_eq!(code(&gone), Code::Unreadable);
        assert_eq!(code(&latin1), Code::NotUtf8);
        assert_eq!(code(&empty), Code::EmptyFile);
    }

    #[test]
    fn graders_dir_is_beside_the_scenarios_dir() {
        assert_eq!(
            default_graders_dir(Path::new("scenarios/a.yaml")),
            PathBuf::from("graders")
        );
        assert_eq!(
            default_graders_dir(Path::new("/x/scenarios/a.yaml")),
            PathBuf::from("/x/graders")
        );
        assert_eq!(
            default_graders_dir(Path::new("a.yaml")),
            PathBuf::from("../graders")
        );
        assert_eq!(
            default_graders_dir(Path::new("../a.yaml")),
            PathBuf::from("../../graders")
        );
    }
}
