//! Scenario loading for the CLI: load + validate (src/scenario), then build the plan.

use std::path::Path;

use crate::error::{Error, Result};
use crate::inventory::Inventory;
use crate::plan::Plan;
pub use crate::scenario::{check_file, load_valid, Loaded};

/// Loads, validates and renders a scenario for `inventory`. Any diagnostic is an
/// [`Error::Scenario`] carrying the rendered snippets; nothing has touched a node yet.
pub fn plan(
    path: &Path,
    graders: Option<&Path>,
    inventory: &Inventory,
    params: &[(String, String)],
    color: bool,
) -> Result<(Loaded, Plan)> {
    let loaded = load_valid(path, graders, color)?;
    // Before the plan: a scenario for a bigger cluster names nodes this one lacks.
    if let Some((_, why)) = loaded.scenario.metadata.unmet(inventory) {
        return Err(Error::other(format!(
            "scenario `{}` {why} (inventory cluster `{}`)",
            loaded.scenario.metadata.name.value, inventory.cluster.name
        )));
    }
    let plan = crate::plan::build(&loaded.scenario, &loaded.grader_files(), inventory, params)?;
    Ok((loaded, plan))
}

/// The current break (`<state>/session.json`) and its scenario rendered for the inventory and
/// parameters it was broken with (`inventory`: another inventory file instead).
///
/// Errors: no break in progress, the inventory or the scenario no longer loads.
pub fn session_plan(
    inventory: Option<&Path>,
    color: bool,
) -> Result<(crate::engine::session::Session, Loaded, Inventory, Plan)> {
    let session = crate::engine::session::Session::load()?
        .ok_or_else(|| Error::other("no break in progress: run `breakfix break SCENARIO` first"))?;
    let inventory = Inventory::load(inventory.unwrap_or(&session.inventory))?;
    let overrides: Vec<(String, String)> = session
        .params
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (loaded, plan) = plan(
        &session.scenario,
        session.graders.as_deref(),
        &inventory,
        &overrides,
        color,
    )?;
    Ok((session, loaded, inventory, plan))
}
