//! The entry points the CLI and the engine use: load + validate one scenario file and get
//! either the loaded scenario or its diagnostics, each with the text of its own file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::diagnostic::Diagnostic;
use super::load::{default_graders_dir, load, load_source, Loaded};
use super::validate::validate;
use crate::error::Error;

/// The outcome of checking one scenario file.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// The scenario file, as given.
    pub path: PathBuf,
    /// Every problem, in file order (scenario first, then its graders), by line and column.
    pub diagnostics: Vec<Diagnostic>,
    /// Text of every file a diagnostic names (key: [`Diagnostic::file`]).
    pub sources: BTreeMap<String, String>,
    /// The scenario, when it parsed (even if validation found problems).
    pub loaded: Option<Loaded>,
}

/// JSON form of a [`FileReport`] (`breakfix validate --output json`).
#[derive(Debug, Clone, Serialize)]
pub struct FileReportJson<'a> {
    /// The scenario file.
    pub file: String,
    /// `true` when there are no diagnostics.
    pub ok: bool,
    /// The problems.
    pub diagnostics: &'a [Diagnostic],
}

impl FileReport {
    /// No problems.
    pub fn is_ok(&self) -> bool {
        self.diagnostics.is_empty()
    }

    /// All diagnostics rendered with snippets (each against its own file's text).
    pub fn render(&self, color: bool) -> String {
        super::diagnostic::render_all(
            &self.diagnostics,
            |f| self.sources.get(f).map(String::as_str),
            color,
        )
    }

    /// The JSON view.
    pub fn json(&self) -> FileReportJson<'_> {
        FileReportJson {
            file: self.path.display().to_string(),
            ok: self.is_ok(),
            diagnostics: &self.diagnostics,
        }
    }

    /// The loaded scenario if it is valid, else [`Error::Scenario`] with the rendered
    /// diagnostics.
    pub fn into_result(self, color: bool) -> crate::Result<Loaded> {
        if self.is_ok() {
            if let Some(l) = self.loaded {
                return Ok(l);
            }
        }
        let rendered = self.render(color);
        Err(Error::Scenario {
            count: self.diagnostics.len().max(1),
            rendered,
        })
    }
}

/// Loads and validates the scenario at `path`, with graders from `graders_dir` (default:
/// [`default_graders_dir`], i.e. `graders/` beside the scenario's directory).
pub fn check_file(path: &Path, graders_dir: Option<&Path>) -> FileReport {
    let dir = graders_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| default_graders_dir(path));
    report(path, load(path, &dir))
}

/// [`check_file`] of `source` as if read from `path` (graders are still read from disk).
pub fn check_source(path: &Path, source: String, graders_dir: Option<&Path>) -> FileReport {
    let dir = graders_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| default_graders_dir(path));
    report(path, load_source(path, source, &dir))
}

fn report(path: &Path, loaded: Result<Loaded, Vec<(String, Diagnostic)>>) -> FileReport {
    match loaded {
        Err(errs) => {
            let mut sources = BTreeMap::new();
            let mut diagnostics = Vec::new();
            for (src, d) in errs {
                sources.insert(d.file.clone(), src);
                diagnostics.push(d);
            }
            FileReport {
                path: path.to_path_buf(),
                diagnostics,
                sources,
                loaded: None,
            }
        }
        Ok(l) => {
            let diagnostics = validate(&l);
            let mut sources = BTreeMap::new();
            for d in &diagnostics {
                if let Some(s) = l.source_of(&d.file) {
                    sources
                        .entry(d.file.clone())
                        .or_insert_with(|| s.to_string());
                }
            }
            FileReport {
                path: path.to_path_buf(),
                diagnostics,
                sources,
                loaded: Some(l),
            }
        }
    }
}

/// Loads a scenario for running: `Ok` only when it has no diagnostics.
pub fn load_valid(path: &Path, graders_dir: Option<&Path>, color: bool) -> crate::Result<Loaded> {
    check_file(path, graders_dir).into_result(color)
}
