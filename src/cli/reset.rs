//! `breakfix reset`: replay the journal on every node (newest first) and forget the session.

use clap::Args;

use super::args::{resolve_inventory, Output};
use super::{Globals, EXIT_PASS};
use crate::engine::{self, session::Session};
use crate::error::{Error, Result};
use crate::inventory::Inventory;
use crate::journal::Journal;

/// Arguments of `reset`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  breakfix reset --node controlplane")]
pub struct ResetArgs {
    /// Inventory file (default: the last break's, else the sandbox's).
    #[arg(long, short = 'i', env = "BREAKFIX_INVENTORY", value_name = "FILE")]
    pub inventory: Option<std::path::PathBuf>,
    /// Only this node (repeatable; default: every node of the inventory).
    #[arg(long = "node", value_name = "NAME")]
    pub nodes: Vec<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

/// Undoes every journaled fault; reports what was reverted.
pub async fn run(a: ResetArgs, g: Globals) -> Result<u8> {
    let quiet = g.quiet || a.output == Output::Json;
    let session = Session::load()?;
    let path = match (&a.inventory, &session) {
        (Some(p), _) => p.clone(),
        (None, Some(s)) => s.inventory.clone(),
        (None, None) => resolve_inventory(None)?,
    };
    let inv = Inventory::load(&path)?;
    let names: Vec<String> = if a.nodes.is_empty() {
        inv.nodes.iter().map(|n| n.name.clone()).collect()
    } else {
        for n in &a.nodes {
            if inv.node(n).is_none() {
                return Err(Error::other(format!(
                    "--node {n}: not in {}",
                    path.display()
                )));
            }
        }
        a.nodes.clone()
    };
    let sessions = engine::connect_nodes(&inv, &names, quiet).await?;
    let done = engine::reset(&sessions, &Journal::open(), quiet).await?;
    if a.nodes.is_empty() {
        Session::clear();
    }
    match a.output {
        Output::Json => {
            let rows: Vec<_> = done
                .iter()
                .map(|(n, w)| serde_json::json!({"node": n, "undo": w}))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&rows).unwrap_or_default()
            );
        }
        Output::Human if done.is_empty() => println!(
            "nothing to undo: the journal is empty on {}",
            names.join(", ")
        ),
        Output::Human => {
            for (n, w) in &done {
                println!("  {} {n}: {w}", console::style("undone").green());
            }
        }
    }
    Ok(EXIT_PASS)
}
