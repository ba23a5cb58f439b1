//! `breakfix reset`: replay the journal on every node (newest first), set aside entries that
//! belong to another machine, and forget the session.

use clap::Args;

use super::args::{resolve_inventory, Output};
use super::{Globals, EXIT_PASS};
use crate::engine::{self, session::Session};
use crate::error::{Error, Result};
use crate::inventory::Inventory;
use crate::journal::Journal;

/// Arguments of `reset`.
#[derive(Debug, Args)]
#[command(after_help = "\
An entry recorded on another machine (the node was rebuilt: another machine-id or SSH host
key, or another etcd cluster) is never applied: it is set aside as stale and reported, and
`breakfix status` lists it until `--forget-stale` deletes it.

Examples:
  breakfix reset --node controlplane
  breakfix reset --forget-stale        # delete the entries set aside earlier")]
pub struct ResetArgs {
    /// Inventory file (default: the last break's, else the sandbox's).
    #[arg(long, short = 'i', env = "BREAKFIX_INVENTORY", value_name = "FILE")]
    pub inventory: Option<std::path::PathBuf>,
    /// Only this node (repeatable; default: every node of the inventory).
    #[arg(long = "node", value_name = "NAME")]
    pub nodes: Vec<String>,
    /// Also delete every stale entry (set aside earlier, locally and on these nodes) after
    /// the reset.
    #[arg(long)]
    pub forget_stale: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

/// Undoes every journaled fault; reports what was reverted and what was set aside.
/// Exit 0 also when entries were set aside (they were not this cluster's to undo).
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
    let journal = Journal::open();
    let sessions = engine::connect_nodes(&inv, &names, quiet).await?;
    let locks = engine::lock(&sessions, quiet).await?;
    let done = engine::reset(&sessions, &journal, quiet).await;
    let forgotten = match (&done, a.forget_stale) {
        (Ok(_), true) => Some(journal.forget_stale(sessions.values()).await),
        _ => None,
    };
    locks.release().await;
    let done = done?;
    let forgotten = forgotten.transpose()?;
    if a.nodes.is_empty() {
        Session::clear();
    }
    // Entries for nodes this inventory does not name are left alone, and said.
    let elsewhere: Vec<(String, usize)> = journal
        .local_entries()
        .0
        .into_iter()
        .filter(|(n, _)| inv.node(n).is_none())
        .map(|(n, e)| (n, e.len()))
        .collect();
    match a.output {
        Output::Json => {
            let rows: Vec<_> = done
                .undone
                .iter()
                .map(|(n, w)| serde_json::json!({"node": n, "undo": w}))
                .collect();
            let v = serde_json::json!({
                "undone": rows,
                "set_aside": done.set_aside,
                "stale_forgotten": forgotten,
                "other_nodes": elsewhere.iter().map(|(n, c)| serde_json::json!({"node": n, "entries": c})).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        Output::Human => {
            if done.undone.is_empty() && done.set_aside.is_empty() {
                println!(
                    "nothing to undo: the journal is empty on {}",
                    names.join(", ")
                );
            }
            for (n, w) in &done.undone {
                println!("  {} {n}: {w}", console::style("undone").green());
            }
            for st in &done.set_aside {
                let e = &st.entry;
                println!(
                    "  {} {}: {} — {} (recorded {} by scenario {}): NOT applied, {}",
                    console::style("set aside").yellow(),
                    e.node,
                    e.fault,
                    e.undo.describe(),
                    crate::duration::timestamp(e.recorded_at),
                    e.scenario,
                    st.reason
                );
            }
            if !done.set_aside.is_empty() && forgotten.is_none() {
                println!(
                    "  Set-aside entries were recorded on another machine; `breakfix status` lists them, `breakfix reset --forget-stale` deletes them."
                );
            }
            if let Some(n) = forgotten {
                println!(
                    "  {n} stale entr{} deleted",
                    if n == 1 { "y" } else { "ies" }
                );
            }
            for (n, c) in &elsewhere {
                println!(
                    "  note: the journal also holds {c} entr{} for node `{n}`, which {} does not name (`breakfix status` shows them; reset with that node's inventory)",
                    if *c == 1 { "y" } else { "ies" },
                    path.display()
                );
            }
        }
    }
    Ok(EXIT_PASS)
}
