//! Batched `systemctl` queries: the units the systemd probes of one round ask about on a node
//! are read by ONE command (`systemctl is-active -- u1 u2 ...; systemctl is-enabled -- ...`)
//! instead of one command per probe.
//!
//! Data flow: the runner announces the round's units ([`UnitStates::announce`]) before it
//! starts the round's probes; the first probe to ask ([`UnitStates::get`]) reads all announced
//! units at once, under a lock, and the others find their unit's state there. A state is only
//! handed to a probe when it was read after that probe asked, so nothing read before a change
//! (a fault, a fix) is ever reused.
//!
//! The facts are what `systemctl is-active` / `is-enabled` print. Their multi-unit forms print
//! one line per unit, except that `is-enabled` stops at the first unit it cannot find (systemd
//! 252) and `is-active` stops at a name it cannot parse; whenever a batch's line count does not
//! match, its units are asked one by one (as before batching), so lines are never misassigned.
//! Glob patterns (which can match several units) are always asked alone.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::transport::{shell_quote, Transport};

/// A unit's state, as systemctl prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    /// `systemctl is-active` (`active`, `inactive`, `failed`, ...).
    pub active: String,
    /// `systemctl is-enabled` (`enabled`, `masked`, `alias`, ...; `not-found` when it prints
    /// nothing); `None` when not asked.
    pub enabled: Option<String>,
}

/// Per node session: the units announced for the coming round and the last states read.
#[derive(Default)]
pub struct UnitStates {
    /// Unit -> whether `enabled` is wanted, for the next query.
    announced: std::sync::Mutex<BTreeMap<String, bool>>,
    /// Unit -> (when the query that read it finished, its state).
    read: tokio::sync::Mutex<BTreeMap<String, (Instant, UnitState)>>,
}

/// Separates the `is-active` lines from the `is-enabled` lines.
const SEPARATOR: &str = "::breakfix::";

impl UnitStates {
    /// Records that a probe of the coming round will ask about `unit` (and its `enabled`
    /// state when `enabled`), so that the round's first query includes it.
    pub fn announce(&self, unit: &str, enabled: bool) {
        let mut a = self
            .announced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *a.entry(unit.to_string()).or_insert(false) |= enabled;
    }

    /// The state of `unit` read after this call began: from a query of another probe of the
    /// round, or by a query of every announced unit plus this one.
    pub async fn get(
        &self,
        t: &Transport,
        unit: &str,
        enabled: bool,
        timeout: Duration,
    ) -> Result<UnitState> {
        let asked = Instant::now();
        let deadline = asked + timeout;
        let mut read = self.read.lock().await;
        if let Some(s) = usable(&read, unit, enabled, asked) {
            return Ok(s);
        }
        let mut batch = std::mem::take(
            &mut *self
                .announced
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        *batch.entry(unit.to_string()).or_insert(false) |= enabled;
        let states = query(t, &batch, deadline).await?;
        let now = Instant::now();
        for (u, s) in states {
            read.insert(u, (now, s));
        }
        usable(&read, unit, enabled, asked).ok_or_else(|| Error::Transport {
            host: t.host().to_string(),
            message: format!("systemctl printed no state for unit `{unit}`"),
        })
    }
}

/// The state of `unit` if it was read after `asked` and has `enabled` when wanted.
fn usable(
    read: &BTreeMap<String, (Instant, UnitState)>,
    unit: &str,
    enabled: bool,
    asked: Instant,
) -> Option<UnitState> {
    let (at, s) = read.get(unit)?;
    (*at >= asked && (s.enabled.is_some() || !enabled)).then(|| s.clone())
}

/// True when `unit` names exactly one unit (no glob pattern) and can share a command.
fn batchable(unit: &str) -> bool {
    !unit.is_empty() && !unit.contains(['*', '?', '['])
}

/// Units to ask about, each with whether its `enabled` state is wanted.
type Asks<'a> = Vec<(&'a String, &'a bool)>;

/// Reads the states of `units` (unit -> `enabled` wanted) by `deadline`.
async fn query(
    t: &Transport,
    units: &BTreeMap<String, bool>,
    deadline: Instant,
) -> Result<BTreeMap<String, UnitState>> {
    let (together, mut alone): (Asks, Asks) = units.iter().partition(|(u, _)| batchable(u));
    let mut out = BTreeMap::new();
    if !together.is_empty() {
        let cmd = batch_command(&together);
        let res = t.exec(&cmd, left(deadline)).await?;
        match parse_batch(&together, &res.stdout) {
            Some(states) => out.extend(states),
            None => alone.extend(together),
        }
    }
    let singles = alone.iter().map(|(u, e)| async move {
        let res = t.exec(&single_command(u, **e), left(deadline)).await?;
        Ok::<_, Error>(((*u).clone(), parse_single(&res.stdout, **e)))
    });
    for r in futures::future::join_all(singles).await {
        let (u, s) = r?;
        out.insert(u, s);
    }
    Ok(out)
}

fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// `systemctl is-active -- u...`, then (when any unit wants it) a separator line and
/// `systemctl is-enabled -- u...` for those units.
fn batch_command(units: &[(&String, &bool)]) -> String {
    let all: Vec<String> = units.iter().map(|(u, _)| shell_quote(u)).collect();
    let mut cmd = format!("systemctl is-active -- {}", all.join(" "));
    let en: Vec<String> = units
        .iter()
        .filter(|(_, e)| **e)
        .map(|(u, _)| shell_quote(u))
        .collect();
    if !en.is_empty() {
        cmd.push_str(&format!(
            "; echo '{SEPARATOR}'; systemctl is-enabled -- {} 2>/dev/null",
            en.join(" ")
        ));
    }
    cmd
}

/// Maps the batch's output lines to its units; `None` when the line counts do not match
/// (a unit name systemctl rejected, an `is-enabled` that stopped at a missing unit).
fn parse_batch(units: &[(&String, &bool)], stdout: &str) -> Option<BTreeMap<String, UnitState>> {
    let mut lines = stdout.lines().map(str::trim);
    let active: Vec<&str> = lines.by_ref().take_while(|l| *l != SEPARATOR).collect();
    let enabled: Vec<&str> = lines.collect();
    let wanted = units.iter().filter(|(_, e)| **e).count();
    if active.len() != units.len() || enabled.len() != wanted {
        return None;
    }
    let mut enabled = enabled.into_iter();
    let mut out = BTreeMap::new();
    for ((u, e), a) in units.iter().zip(active) {
        let en = if **e {
            Some(enabled.next()?.to_string())
        } else {
            None
        };
        out.insert(
            (*u).clone(),
            UnitState {
                active: a.to_string(),
                enabled: en,
            },
        );
    }
    Some(out)
}

/// One unit's command, as the probe ran it before batching.
fn single_command(unit: &str, enabled: bool) -> String {
    let u = shell_quote(unit);
    if enabled {
        format!("systemctl is-active -- {u}; systemctl is-enabled -- {u} 2>/dev/null || true")
    } else {
        format!("systemctl is-active -- {u}")
    }
}

/// First line: `active` (`unknown` when none); second: `enabled` (`not-found` when none).
fn parse_single(stdout: &str, enabled: bool) -> UnitState {
    let mut lines = stdout.lines();
    let active = lines.next().unwrap_or("unknown").trim().to_string();
    UnitState {
        active,
        enabled: enabled.then(|| lines.next().unwrap_or("not-found").trim().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(list: &[(&str, bool)]) -> Vec<(String, bool)> {
        list.iter().map(|(u, e)| (u.to_string(), *e)).collect()
    }

    fn refs(v: &[(String, bool)]) -> Vec<(&String, &bool)> {
        v.iter().map(|(u, e)| (u, e)).collect()
    }

    #[test]
    fn batch_command_asks_is_enabled_only_for_units_that_want_it() {
        let v = units(&[("etcd", true), ("ssh", false), ("a b", true)]);
        assert_eq!(
            batch_command(&refs(&v)),
            "systemctl is-active -- etcd ssh 'a b'; echo '::breakfix::'; systemctl is-enabled -- etcd 'a b' 2>/dev/null"
        );
        let v = units(&[("etcd", false)]);
        assert_eq!(batch_command(&refs(&v)), "systemctl is-active -- etcd");
    }

    /// Output of the batch on a systemd 252 node: etcd active and enabled, a masked unit
    /// (`is-active` prints `inactive`, `is-enabled` prints `masked`), sshd (an alias).
    #[test]
    fn batch_output_maps_line_by_line() {
        let v = units(&[
            ("cryptdisks.service", true),
            ("etcd", true),
            ("sshd", true),
            ("systemd-journald", false),
        ]);
        let out = "inactive\nactive\nactive\nactive\n::breakfix::\nmasked\nenabled\nalias\n";
        let m = parse_batch(&refs(&v), out).expect("maps");
        let st = |a: &str, e: Option<&str>| UnitState {
            active: a.into(),
            enabled: e.map(Into::into),
        };
        assert_eq!(m["cryptdisks.service"], st("inactive", Some("masked")));
        assert_eq!(m["etcd"], st("active", Some("enabled")));
        assert_eq!(m["sshd"], st("active", Some("alias")));
        assert_eq!(m["systemd-journald"], st("active", None));
        let only_active = units(&[("etcd", false), ("ssh", false)]);
        assert!(parse_batch(&refs(&only_active), "active\nactive\n").is_some());
    }

    /// systemd 252: `is-enabled etcd nope.service ssh` prints `enabled` and stops at the
    /// missing unit; `is-active` of an unparsable name stops the whole listing.
    #[test]
    fn short_output_is_not_guessed() {
        let v = units(&[("etcd", true), ("nope.service", true), ("ssh", true)]);
        assert_eq!(
            parse_batch(
                &refs(&v),
                "active\ninactive\nactive\n::breakfix::\nenabled\n"
            ),
            None
        );
        let v = units(&[("foo@.service", false), ("etcd", false)]);
        assert_eq!(parse_batch(&refs(&v), ""), None);
        assert_eq!(parse_batch(&refs(&v), "active\n"), None);
    }

    #[test]
    fn single_output_defaults_like_before() {
        assert_eq!(
            parse_single("inactive\n", true),
            UnitState {
                active: "inactive".into(),
                enabled: Some("not-found".into())
            }
        );
        assert_eq!(
            parse_single("", false),
            UnitState {
                active: "unknown".into(),
                enabled: None
            }
        );
    }

    #[test]
    fn globs_are_asked_alone() {
        assert!(batchable("etcd.service"));
        assert!(!batchable("kube*"));
        assert!(!batchable("etcd?"));
        assert!(!batchable(""));
    }
}
