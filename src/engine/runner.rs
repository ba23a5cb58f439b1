//! Runner: evaluates planned probes on connected nodes — timeouts, `within` retries,
//! `stable_for` windows, `needs` (SKIP), concurrency by dependency level.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::engine::verdict::{Check, Status, Verdict};
use crate::inventory::Inventory;
use crate::matcher::shown;
use crate::node::NodeSession;
use crate::plan::PlannedProbe;
use crate::probe::{ProbeCtx, DEFAULT_INTERVAL, DEFAULT_TIMEOUT};

/// Which outcome the caller waits for when a probe has `within`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Verify: retry until the expectations hold.
    Pass,
    /// Confirm: retry until they stop holding (the break is visible).
    Fail,
}

/// How long a probe is retried for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// One attempt each (live polling; `within` and `stable_for` are not used).
    Once,
    /// A learner's Check (`breakfix check --quick`, the exported verify.sh): a probe that does
    /// not give the wanted outcome is retried within its `within` only while its result
    /// (status, facts found, note) changes between attempts: two equal results in a row end
    /// it, so an unfixed cluster answers after two attempts one `interval` apart (1 s by
    /// default). A failed attempt that took an `interval` or longer (it waited out a
    /// timeout) is not retried. `stable_for` still holds a wanted outcome for its whole
    /// window.
    ///
    /// Caveat: a fix that is still settling (etcd restarting, the API server reconnecting)
    /// looks unchanged between two attempts and FAILS; checking again later passes.
    WhileChanging,
    /// `within` and `stable_for` in full (confirm, grading, the self-test).
    Full,
}

/// How to evaluate.
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// Outcome to wait for.
    pub want: Want,
    /// How long to retry.
    pub patience: Patience,
}

/// Connected nodes by name.
pub type Sessions = BTreeMap<String, NodeSession>;

/// One attempt: gather facts within the probe's timeout and compare.
async fn attempt(
    p: &PlannedProbe,
    session: &NodeSession,
    inventory: &Inventory,
) -> (Status, Vec<Check>, Option<String>) {
    let timeout = p
        .probe
        .common()
        .timeout
        .map(Into::into)
        .unwrap_or(DEFAULT_TIMEOUT);
    let ctx = ProbeCtx {
        session,
        inventory,
        timeout,
    };
    let gathered =
        tokio::time::timeout(timeout + Duration::from_secs(1), p.probe.gather(&ctx)).await;
    let facts = match gathered {
        Err(_) => {
            return (
                Status::Error,
                Vec::new(),
                Some(format!(
                    "probe timed out after {}",
                    humantime::format_duration(timeout)
                )),
            )
        }
        Ok(Err(e)) => return (Status::Error, Vec::new(), Some(e.to_string())),
        Ok(Ok(f)) => f,
    };
    let mut checks = Vec::new();
    for (fact, m) in p.probe.expectations() {
        let found = facts.values.get(fact);
        let expected = m.to_string();
        checks.push(Check {
            fact: fact.to_string(),
            found: found
                .map(|v| excerpt(&shown(v), &expected))
                .unwrap_or_else(|| "<absent>".into()),
            expected,
            ok: m.matches(found),
        });
    }
    let status = if checks.iter().all(|c| c.ok) {
        Status::Pass
    } else {
        Status::Fail
    };
    (status, checks, facts.note)
}

/// Long multi-line facts (a file's contents, a command's output) are shown as the lines that
/// share the expectation's longest word, or their first lines: enough to see why it failed.
pub fn excerpt(found: &str, expected: &str) -> String {
    const MAX_LINES: usize = 4;
    let lines: Vec<&str> = found.lines().collect();
    if lines.len() <= MAX_LINES && found.len() <= 400 {
        return found.to_string();
    }
    let word = expected
        .split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .filter(|w| w.len() >= 3)
        .max_by_key(|w| w.len())
        .unwrap_or("");
    let hits: Vec<&str> = if word.is_empty() {
        Vec::new()
    } else {
        lines
            .iter()
            .copied()
            .filter(|l| l.contains(word))
            .take(MAX_LINES)
            .collect()
    };
    let shown: Vec<&str> = if hits.is_empty() {
        lines.iter().copied().take(MAX_LINES).collect()
    } else {
        hits
    };
    let body: Vec<String> = shown
        .iter()
        .map(|l| l.trim().chars().take(160).collect::<String>())
        .collect();
    format!(
        "{} [{} of {} lines]",
        body.join(" | "),
        body.len(),
        lines.len()
    )
}

/// Evaluates one probe with its retry/stability semantics.
pub async fn evaluate_one(
    p: &PlannedProbe,
    sessions: &Sessions,
    inventory: &Inventory,
    opts: EvalOptions,
) -> Verdict {
    let c = p.probe.common();
    let started = Instant::now();
    let mut v = Verdict {
        probe: p.id.clone(),
        node: p.node.clone(),
        kind: p.probe.kind().to_string(),
        description: c.description.map(str::to_string),
        status: Status::Error,
        checks: Vec::new(),
        note: None,
        attempts: 0,
        duration: Duration::ZERO,
    };
    let Some(session) = sessions.get(&p.node) else {
        v.note = Some(format!("node `{}` is not connected", p.node));
        return v;
    };
    let patient = opts.patience != Patience::Once;
    let within: Duration = if patient {
        c.within.map(Into::into).unwrap_or_default()
    } else {
        Duration::ZERO
    };
    let stable: Duration = if patient {
        c.stable_for.map(Into::into).unwrap_or_default()
    } else {
        Duration::ZERO
    };
    let interval: Duration = c.interval.map(Into::into).unwrap_or(DEFAULT_INTERVAL);
    let deadline = started + within + stable;
    let wanted = match opts.want {
        Want::Pass => Status::Pass,
        Want::Fail => Status::Fail,
    };
    let mut good_since: Option<Instant> = None;
    let mut previous: Option<(Status, Vec<Check>, Option<String>)> = None;
    loop {
        let attempt_started = Instant::now();
        let result = attempt(p, session, inventory).await;
        // A learner's Check stops at a failure that is unchanged since the last attempt, or
        // that was slow (the attempt took an interval or more: it waited for an answer that
        // did not come; trying again would only double the wait).
        let quick = opts.patience == Patience::WhileChanging && result.0 != wanted;
        let settled =
            quick && (attempt_started.elapsed() >= interval || previous.as_ref() == Some(&result));
        if quick {
            previous = Some(result.clone());
        }
        v.attempts += 1;
        (v.status, v.checks, v.note) = result;
        if settled {
            break;
        }
        let now = Instant::now();
        if v.status == wanted {
            let since = *good_since.get_or_insert(now);
            if now.duration_since(since) >= stable {
                break;
            }
        } else {
            good_since = None;
        }
        if now >= deadline {
            break;
        }
        tokio::time::sleep(
            interval
                .min(deadline.saturating_duration_since(now))
                .max(Duration::from_millis(50)),
        )
        .await;
    }
    if patient && stable > Duration::ZERO && v.status == wanted {
        let held = good_since
            .map(|s| Instant::now().duration_since(s))
            .unwrap_or_default();
        if held < stable {
            v.note = Some(format!(
                "held for {} of the required {}",
                humantime::format_duration(Duration::from_secs(held.as_secs())),
                humantime::format_duration(stable)
            ));
            v.status = if wanted == Status::Pass {
                Status::Fail
            } else {
                Status::Pass
            };
        }
    }
    v.duration = started.elapsed();
    v
}

/// Evaluates every probe: those whose `needs` are met run concurrently, level by level
/// (each level announced to the node sessions first, see [`crate::probe::Probe::announce`]);
/// a probe whose needed probe did not PASS is SKIPPED. Results come back in plan order.
pub async fn evaluate(
    probes: &[PlannedProbe],
    sessions: &Sessions,
    inventory: &Inventory,
    opts: EvalOptions,
) -> Vec<Verdict> {
    let mut done: BTreeMap<String, Verdict> = BTreeMap::new();
    let mut pending: Vec<&PlannedProbe> = probes.iter().collect();
    while !pending.is_empty() {
        let (ready, rest): (Vec<&PlannedProbe>, Vec<&PlannedProbe>) =
            pending.into_iter().partition(|p| {
                p.needs
                    .iter()
                    .all(|n| done.contains_key(n) || !probes.iter().any(|q| &q.id == n))
            });
        if ready.is_empty() {
            // A cycle (validation rejects these); report instead of looping.
            for p in rest {
                done.insert(p.id.clone(), skipped(p, "its `needs` form a cycle".into()));
            }
            break;
        }
        let mut to_run = Vec::new();
        for p in ready {
            let blocker = p
                .needs
                .iter()
                .find(|n| done.get(*n).is_some_and(|v| v.status != Status::Pass));
            match blocker {
                Some(b) => {
                    done.insert(
                        p.id.clone(),
                        skipped(p, format!("needs `{b}`, which did not pass")),
                    );
                }
                None => to_run.push(p),
            }
        }
        // Announce the round first: each node then reads all of its units in one query.
        for p in &to_run {
            if let Some(s) = sessions.get(&p.node) {
                p.probe.announce(s);
            }
        }
        let results = futures::future::join_all(
            to_run
                .iter()
                .map(|p| evaluate_one(p, sessions, inventory, opts)),
        )
        .await;
        for v in results {
            done.insert(v.probe.clone(), v);
        }
        pending = rest;
    }
    probes.iter().filter_map(|p| done.remove(&p.id)).collect()
}

fn skipped(p: &PlannedProbe, why: String) -> Verdict {
    Verdict {
        probe: p.id.clone(),
        node: p.node.clone(),
        kind: p.probe.kind().to_string(),
        description: p.probe.common().description.map(str::to_string),
        status: Status::Skip,
        checks: Vec::new(),
        note: Some(why),
        attempts: 0,
        duration: Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn excerpt_shows_the_relevant_lines() {
        let unit = "[Service]\nExecStart=/usr/bin/etcd \\\n  --cert-file=/x \\\n  --data-dir=/var/lib/etcd-restore \\\n  --name=cp \\\n  --logger=zap\n";
        let e = super::excerpt(unit, "matches /--data-dir=/var/lib/etcd$/");
        assert_eq!(e, "--data-dir=/var/lib/etcd-restore \\ [1 of 6 lines]");
        assert_eq!(super::excerpt("short", "x"), "short");
        let e = super::excerpt("a\nb\nc\nd\ne\nf", "contains zzz");
        assert_eq!(e, "a | b | c | d [4 of 6 lines]");
    }
}
