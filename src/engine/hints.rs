//! Hint unlocking: when a hint unlocks by itself during a drill — by time (`after`) or on
//! evidence (`when:`, probes that all PASS).
//!
//! Guarantees:
//! - Hints of a task unlock in their order: a hint is considered only once every hint before it
//!   is revealed (the drill keeps that count).
//! - A `when:` probe counts as passing when at least one verdict carries its name (or its
//!   per-node id `name@node`) and every such verdict is PASS; a probe not evaluated this round
//!   does not count.
//!
//! Caveats:
//! - `breakfix hint` (a learner asking) reveals the next hint whatever its `when:` says: a
//!   request is always answered.

use std::time::Duration;

use crate::engine::verdict::{Status, Verdict};
use crate::scenario::Hint;

/// Does probe `name` pass among `verdicts` (verify, evidence and signal verdicts of a round)?
pub fn passing(name: &str, verdicts: &[&[Verdict]]) -> bool {
    let per_node = format!("{name}@");
    let mut seen = false;
    for v in verdicts
        .iter()
        .flat_map(|l| l.iter())
        .filter(|v| v.probe == name || v.probe.starts_with(&per_node))
    {
        if v.status != Status::Pass {
            return false;
        }
        seen = true;
    }
    seen
}

/// Is hint `h` unlocked `elapsed` after the clock started, given this round's `verdicts`?
/// True once `after` has passed, or once every probe of a non-empty `when:` passes.
pub fn unlocked(h: &Hint, elapsed: Duration, verdicts: &[&[Verdict]]) -> bool {
    h.after.is_some_and(|d| elapsed >= d.0)
        || (!h.when.is_empty() && h.when.iter().all(|w| passing(&w.value, verdicts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(probe: &str, status: Status) -> Verdict {
        Verdict::sample(probe, "port", status)
    }

    fn hint(yaml: &str) -> Hint {
        serde_saphyr::from_str(yaml).expect("hint parses")
    }

    #[test]
    fn a_when_hint_unlocks_only_once_its_evidence_passes() {
        let h = hint("text: look at the port\nwhen: [etcd-runs, port-closed]\n");
        let runs = [verdict("etcd-runs", Status::Pass)];
        let closed = [verdict("port-closed@controlplane", Status::Pass)];
        let open = [verdict("port-closed@controlplane", Status::Fail)];
        let long = Duration::from_secs(3600);
        assert!(!unlocked(&h, long, &[]), "no time unlocks a when-only hint");
        assert!(
            !unlocked(&h, long, &[&runs]),
            "one of two probes is not enough"
        );
        assert!(!unlocked(&h, long, &[&runs, &open]));
        assert!(unlocked(&h, Duration::ZERO, &[&runs, &closed]));
        let skipped = [verdict("etcd-runs", Status::Skip)];
        assert!(!unlocked(&h, long, &[&skipped, &closed]));
    }

    #[test]
    fn after_and_when_unlock_whichever_comes_first() {
        let h = hint("text: t\nafter: 2m\nwhen: [port-closed]\n");
        let closed = [verdict("port-closed", Status::Pass)];
        assert!(!unlocked(&h, Duration::from_secs(60), &[]));
        assert!(unlocked(&h, Duration::from_secs(60), &[&closed]));
        assert!(unlocked(&h, Duration::from_secs(120), &[]));
        let plain = hint("text: on request only\n");
        assert!(!unlocked(&plain, Duration::from_secs(3600), &[&closed]));
    }
}
