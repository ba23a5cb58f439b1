//! Scenario loading for the CLI: load + validate + render diagnostics, then build the plan.
//!
//! PROVISIONAL: a minimal loader until src/scenario/{load,validate,diagnostic}.rs land;
//! it reports serde-saphyr's own message (which carries line and column).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::inventory::Inventory;
use crate::plan::Plan;
use crate::scenario::{Grader, Scenario};

/// A loaded scenario with its graders.
pub struct Loaded {
    /// The scenario.
    pub scenario: Scenario,
    /// Included graders.
    pub graders: Vec<Grader>,
}

/// Result of checking one file.
pub struct FileReport {
    /// Messages (each with file:line:col).
    pub diagnostics: Vec<String>,
    /// The scenario when it loaded.
    pub loaded: Option<Loaded>,
}

impl FileReport {
    /// Human rendering.
    pub fn render(&self, _color: bool) -> String {
        self.diagnostics.iter().map(|d| format!("{d}\n")).collect()
    }
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! { strict_booleans: true, leading_zero_numbers_as_strings: true }
}

/// Loads a scenario file and its graders.
pub fn check_file(path: &Path, graders_dir: Option<&Path>) -> FileReport {
    let mut diags = Vec::new();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return FileReport { diagnostics: vec![format!("{}: {e}", path.display())], loaded: None },
    };
    let scenario: Scenario = match serde_saphyr::from_str_with_options(&text, options()) {
        Ok(s) => s,
        Err(e) => return FileReport { diagnostics: vec![format!("{}: {e}", path.display())], loaded: None },
    };
    let dir: PathBuf = graders_dir.map(Path::to_path_buf).unwrap_or_else(|| path.parent().unwrap_or(Path::new(".")).join("../graders"));
    let mut graders = Vec::new();
    for inc in &scenario.verify.include {
        let gp = dir.join(format!("{}.yaml", inc.value));
        match std::fs::read_to_string(&gp) {
            Ok(t) => match serde_saphyr::from_str_with_options::<Grader>(&t, options()) {
                Ok(g) => graders.push(g),
                Err(e) => diags.push(format!("{}: {e}", gp.display())),
            },
            Err(e) => diags.push(format!("{}: grader `{}`: {e}", path.display(), inc.value)),
        }
    }
    FileReport { diagnostics: diags, loaded: Some(Loaded { scenario, graders }) }
}

/// Loads and validates a scenario; any diagnostic becomes [`Error::Scenario`] with the
/// rendered snippets (nothing has touched a node at this point).
pub fn load_valid(path: &Path, graders: Option<&Path>, color: bool) -> Result<Loaded> {
    let report = check_file(path, graders);
    if !report.diagnostics.is_empty() || report.loaded.is_none() {
        return Err(Error::Scenario { count: report.diagnostics.len(), rendered: report.render(color) });
    }
    report.loaded.ok_or_else(|| Error::other("scenario did not load"))
}

/// Loads, validates and renders a scenario for `inventory`.
pub fn plan(path: &Path, graders: Option<&Path>, inventory: &Inventory, params: &[(String, String)], color: bool) -> Result<(Loaded, Plan)> {
    let loaded = load_valid(path, graders, color)?;
    let plan = crate::plan::build(&loaded.scenario, &loaded.graders, inventory, params)?;
    if let Some(top) = loaded.scenario.metadata.topologies.first() {
        if !loaded.scenario.metadata.topologies.contains(&inventory.cluster.topology) {
            return Err(Error::other(format!(
                "scenario `{}` is written for the {:?} topology; the inventory's cluster is {:?}",
                plan.name, top, inventory.cluster.topology
            )));
        }
    }
    Ok((loaded, plan))
}
