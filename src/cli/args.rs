//! Shared CLI arguments: inventory, params, graders dir, output format.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::error::{Error, Result};
use crate::inventory::Inventory;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// Coloured text for people.
    #[default]
    Human,
    /// One JSON document on stdout.
    Json,
}

/// Where the cluster is and how to render the scenario.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Inventory file (default: the sandbox's, when `breakfix sandbox up` has run).
    #[arg(long, short = 'i', env = "BREAKFIX_INVENTORY", value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Override a scenario parameter (repeatable).
    #[arg(long = "param", short = 'p', value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Directory of grader files (default: `graders/` beside the scenario's directory).
    #[arg(long, value_name = "DIR")]
    pub graders: Option<PathBuf>,
}

fn parse_param(s: &str) -> std::result::Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected NAME=VALUE, found `{s}`"))
}

impl TargetArgs {
    /// The inventory path: `--inventory`, else the sandbox's when it exists.
    pub fn inventory_path(&self) -> Result<PathBuf> {
        resolve_inventory(self.inventory.as_deref())
    }

    /// Loads the inventory.
    pub fn load_inventory(&self) -> Result<(PathBuf, Inventory)> {
        let p = self.inventory_path()?;
        let inv = Inventory::load(&p)?;
        Ok((p, inv))
    }

    /// Loads the inventory, then validates `scenario` and plans it for that inventory with
    /// these args' graders dir and params (see [`super::load::plan`]). Returns (inventory path,
    /// inventory, plan).
    pub fn plan(
        &self,
        scenario: &std::path::Path,
        color: bool,
    ) -> Result<(PathBuf, Inventory, crate::plan::Plan)> {
        let (path, inv) = self.load_inventory()?;
        let (_, plan) =
            super::load::plan(scenario, self.graders.as_deref(), &inv, &self.params, color)?;
        Ok((path, inv, plan))
    }
}

/// `--inventory`, else the sandbox's inventory when it exists, else a clear error.
pub fn resolve_inventory(given: Option<&std::path::Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let sandbox = crate::sandbox::default_inventory_path();
    if sandbox.exists() {
        return Ok(sandbox);
    }
    Err(Error::other(format!(
        "no inventory: pass --inventory FILE (docs/inventory.md), or bring the sandbox up with `breakfix sandbox up` (it writes {})",
        sandbox.display()
    )))
}
