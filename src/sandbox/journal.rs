//! The sandbox's own journal entries and session: before its nodes are removed (`down`,
//! `up --recreate`, `up` over a dead sandbox), faults still journaled for them are undone
//! while the nodes run; what cannot be undone is set aside as stale with the reason, and a
//! session that points at the sandbox's inventory is forgotten. Entries of other clusters
//! are not touched.
//!
//! The sandbox's entries are those whose recorded machine-id is one of its nodes'
//! (`<node dir>/upper/etc/machine-id`, written by `up` with a fresh random ID per node).

use std::collections::BTreeSet;
use std::time::Duration;

use super::node::NodePaths;
use super::progress::Progress;
use super::state::State;
use crate::engine::session::Session;
use crate::journal::Journal;

/// Bound on undoing the sandbox's journal before teardown.
const RESET_WITHIN: Duration = Duration::from_secs(180);

/// The machine-ids of the sandbox's nodes (those that can be read).
pub fn machine_ids(st: &State) -> BTreeSet<String> {
    st.nodes
        .iter()
        .filter_map(|n| {
            let p = NodePaths::new(&st.dir, &n.name)
                .upper
                .join("etc/machine-id");
            std::fs::read_to_string(p).ok()
        })
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn belongs(ids: &BTreeSet<String>) -> impl Fn(&crate::journal::Entry) -> bool + '_ {
    |e| {
        e.identity
            .as_ref()
            .and_then(|i| i.machine_id.as_ref())
            .is_some_and(|m| ids.contains(m))
    }
}

/// Before teardown, with the nodes still running (`running`): undoes the faults journaled
/// for the sandbox's nodes (a normal `reset` of those nodes, bounded by 3 minutes). Failures
/// are reported, never fatal: [`after_teardown`] sets aside whatever is left.
pub async fn before_teardown(st: &State, running: bool, progress: &Progress) {
    let ids = machine_ids(st);
    let journal = Journal::open();
    let ours: usize = journal
        .local_entries()
        .0
        .values()
        .flatten()
        .filter(|e| belongs(&ids)(e))
        .count();
    if ours == 0 || !running {
        return;
    }
    let step = progress.step(format!(
        "undo {ours} journaled fault(s) on the sandbox's nodes"
    ));
    let work = async {
        let inv = crate::inventory::Inventory::load(&st.dir.join("inventory.yaml"))?;
        let names: Vec<String> = inv.nodes.iter().map(|n| n.name.clone()).collect();
        let sessions = crate::engine::connect_nodes(&inv, &names, true).await?;
        let locks = crate::engine::lock(&sessions, true).await?;
        let r = crate::engine::reset(&sessions, &journal, true).await;
        locks.release().await;
        r
    };
    match tokio::time::timeout(RESET_WITHIN, work).await {
        Ok(Ok(r)) => step.done(format!(
            "{} undone{}",
            r.undone.len(),
            if r.set_aside.is_empty() {
                String::new()
            } else {
                format!(", {} set aside", r.set_aside.len())
            }
        )),
        Ok(Err(e)) => step.fail(format!("{e} (what is left is set aside below)")),
        Err(_) => step.fail(format!(
            "not done within {} s (what is left is set aside below)",
            RESET_WITHIN.as_secs()
        )),
    }
}

/// After teardown: sets aside the sandbox's journal entries that are left (their nodes are
/// gone) and forgets a session that points at the sandbox's inventory, saying so. `ids` are
/// the machine-ids read before teardown.
pub fn after_teardown(st: &State, ids: &BTreeSet<String>, progress: &Progress) {
    let journal = Journal::open();
    match journal.set_aside_local(
        belongs(ids),
        "the sandbox node was removed (`breakfix sandbox down` or `up --recreate`) before this undo ran",
    ) {
        Ok(v) if v.is_empty() => {}
        Ok(v) => progress.println(format!(
            "note: {} journal entr{} of the removed sandbox set aside (never applied to another cluster); `breakfix status` lists them, `breakfix reset --forget-stale` deletes them",
            v.len(),
            if v.len() == 1 { "y" } else { "ies" }
        )),
        Err(e) => progress.println(format!(
            "warning: could not set aside the removed sandbox's journal entries: {e}"
        )),
    }
    let inv = st.dir.join("inventory.yaml");
    if let Ok(Some(s)) = Session::load() {
        // The inventory is gone by now: compare the paths as recorded (absolute on both sides).
        if s.inventory == inv {
            Session::clear();
            progress.println(format!(
                "note: forgot the break of {} (its cluster was the sandbox)",
                s.scenario.display()
            ));
        }
    }
}
