//! `breakfix status`: the current session and the journal, per node, from the local state
//! only (no node is contacted): pending entries (`reset` will apply them) and entries set
//! aside as stale (`reset --forget-stale` deletes them).

use clap::Args;

use super::args::Output;
use super::{Globals, EXIT_PASS};
use crate::engine::session::Session;
use crate::error::Result;
use crate::journal::{stale, Entry, Journal};

/// Arguments of `status`.
#[derive(Debug, Args)]
#[command(after_help = "\
States: `pending` (recorded by a break; `breakfix reset` undoes it on the node it names),
`set aside` (recorded on a machine that is gone or was rebuilt; never applied; `breakfix reset
--forget-stale` deletes it).

Examples:
  breakfix status
  breakfix status -o json")]
pub struct StatusArgs {
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

fn when(secs: u64) -> String {
    crate::duration::timestamp(secs)
}

fn entry_json(e: &Entry, state: &str, reason: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "id": e.id,
        "node": e.node,
        "state": state,
        "scenario": e.scenario,
        "fault": e.fault,
        "undo": e.undo.describe(),
        "recorded_at": e.recorded_at,
        "identity": e.identity,
        "reason": reason,
    })
}

/// Prints the session and the journal. Always exit 0 (unreadable files are listed).
pub async fn run(a: StatusArgs, _g: Globals) -> Result<u8> {
    let session = Session::load()?;
    let journal = Journal::open();
    let (pending, bad) = journal.local_entries();
    let (set_aside, bad_stale) = stale::list(&journal.stale_dir());
    let unreadable: Vec<String> = bad.into_iter().chain(bad_stale).collect();
    match a.output {
        Output::Json => {
            let mut entries: Vec<serde_json::Value> = pending
                .values()
                .flatten()
                .map(|e| entry_json(e, "pending", None))
                .collect();
            entries.extend(
                set_aside
                    .iter()
                    .map(|s| entry_json(&s.entry, "set_aside", Some(&s.reason))),
            );
            let v = serde_json::json!({
                "state_dir": crate::state::state_dir(),
                "session": session,
                "entries": entries,
                "unreadable": unreadable,
            });
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        Output::Human => {
            match &session {
                Some(s) => {
                    println!("session: {}", s.scenario.display());
                    println!("  inventory: {}", s.inventory.display());
                    println!("  broken at: {}", when(s.confirmed_at));
                    if let (Some(lab), Some(step)) = (&s.lab, s.step) {
                        println!("  lab:       {} step {step}", lab.display());
                    }
                }
                None => println!("session: none (no break in progress)"),
            }
            if pending.is_empty() && set_aside.is_empty() {
                println!("journal: empty");
            }
            for (node, entries) in &pending {
                println!("node {node}: {} pending (newest first)", entries.len());
                for e in entries {
                    println!(
                        "  {} {} — {} (scenario {}, {})",
                        console::style("pending  ").cyan(),
                        e.fault,
                        e.undo.describe(),
                        e.scenario,
                        when(e.recorded_at)
                    );
                }
            }
            if !set_aside.is_empty() {
                println!(
                    "set aside ({}; `breakfix reset --forget-stale` deletes them):",
                    set_aside.len()
                );
            }
            for s in &set_aside {
                let e = &s.entry;
                println!(
                    "  {} {}: {} — {} (scenario {}, recorded {}, set aside {}): {}",
                    console::style("set aside").yellow(),
                    e.node,
                    e.fault,
                    e.undo.describe(),
                    e.scenario,
                    when(e.recorded_at),
                    when(s.set_aside_at),
                    s.reason
                );
            }
            for u in &unreadable {
                println!("  {} {u}", console::style("unreadable").red());
            }
        }
    }
    Ok(EXIT_PASS)
}
