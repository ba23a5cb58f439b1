//! Faults and steps: changes made on a node. One file per kind.
//!
//! The same kinds serve as faults (`faults:`, journaled with their undo BEFORE they mutate)
//! and as plain steps (`setup:`, `solution:`, `wrong_fixes:`, not journaled).
//!
//! # Guarantees
//! - A fault computes its [`Undo`] from the node's current state and records it in the
//!   journal before the first change; if recording fails, nothing is changed.
//! - Every undo is idempotent: replaying it after a partial inject, twice, or after the
//!   learner's own fix is safe.

pub mod command;
pub mod etcd;
pub mod etcd_keys;
pub mod etcd_quota;
pub mod file;
pub mod manifest;
pub mod netem;
pub mod slow_disk;
#[macro_use]
pub mod spec;
pub mod systemd;
pub mod tls;

use serde::{Deserialize, Serialize};

use crate::engine::connect::NodeSession;
use crate::error::Result;
use crate::journal::Journal;
use crate::template::Renderer;

crate::kind_first_enum! {
    /// A change to a node, as written in `faults:`, `setup:`, `solution:` or `wrong_fixes:`.
    pub enum Action ("a fault or step") {
        /// Stop, start, restart, mask, unmask, enable or disable a systemd unit.
        Systemd(systemd::SystemdAction) = "systemd",
        /// Edit a file: set a line, replace text, set a YAML path, or replace the contents.
        File(file::FileAction) = "file",
        /// Run a command; as a fault it needs an explicit `undo` command.
        Command(command::CommandAction) = "command",
        /// Edit a static pod manifest: set/remove a flag, change a hostPath, move it out.
        Manifest(manifest::ManifestAction) = "manifest",
        /// Slow a process's disk: fsync delay (strace), cgroup I/O throttle, or fio load.
        SlowDisk(slow_disk::SlowDiskAction) = "slow_disk",
        /// Delay/drop outgoing packets with the netem qdisc.
        Netem(netem::NetemAction) = "netem",
        /// Replace a certificate with an expired or wrong-CA twin.
        Tls(tls::TlsAction) = "tls",
        /// Fill etcd until its NOSPACE alarm trips (after the scenario set a small quota).
        EtcdQuota(etcd_quota::EtcdQuotaAction) = "etcd_quota",
        /// etcd data: delete keys under a prefix, or save a snapshot on the node.
        EtcdKeys(etcd_keys::EtcdKeysAction) = "etcd_keys",
    }
}

/// How to put a node back the way it was before a fault. Stored in the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Undo {
    /// Restore a unit's activity and enablement.
    Systemd(systemd::SystemdUndo),
    /// Restore a file's bytes (or remove it when it did not exist).
    File(file::FileUndo),
    /// Run the scenario's undo command.
    Command(command::CommandUndo),
    /// Move a file back where it was.
    Move(manifest::MoveUndo),
    /// Stop the fsync delay / lift the I/O limit / stop fio.
    SlowDisk(slow_disk::SlowDiskUndo),
    /// Restore an interface's root qdisc.
    Netem(netem::NetemUndo),
    /// Recover etcd from a quota fill: delete the filler, compact, defragment, disarm.
    EtcdQuota(etcd_quota::EtcdQuotaUndo),
    /// Put deleted etcd keys back.
    EtcdKeys(etcd_keys::EtcdKeysUndo),
}

impl Undo {
    /// Reverts on the node. Idempotent.
    pub async fn revert(&self, s: &NodeSession) -> Result<()> {
        match self {
            Undo::Systemd(u) => u.revert(s).await,
            Undo::File(u) => u.revert(s).await,
            Undo::Command(u) => u.revert(s).await,
            Undo::Move(u) => u.revert(s).await,
            Undo::SlowDisk(u) => u.revert(s).await,
            Undo::Netem(u) => u.revert(s).await,
            Undo::EtcdQuota(u) => u.revert(s).await,
            Undo::EtcdKeys(u) => u.revert(s).await,
        }
    }

    /// The etcd this undo talks to, if it does (its journal entry then records etcd's
    /// cluster ID, and reset checks it).
    pub fn etcd_target(&self) -> Option<&crate::probe::etcd::EtcdTarget> {
        match self {
            Undo::EtcdQuota(u) => Some(&u.etcd),
            Undo::EtcdKeys(u) => Some(&u.etcd),
            _ => None,
        }
    }

    /// One line for `breakfix reset` output.
    pub fn describe(&self) -> String {
        match self {
            Undo::Systemd(u) => format!("restore unit {} ({})", u.unit, u.describe_state()),
            Undo::File(u) => match &u.pre_image {
                Some(_) => format!("restore {} (sha256 {})", u.path, short(&u.sha256)),
                None => format!("remove {} (it did not exist)", u.path),
            },
            Undo::Command(u) => format!("run `{}`", u.run),
            Undo::Move(u) => format!("move {} back to {}", u.to, u.from),
            Undo::SlowDisk(u) => u.describe(),
            Undo::Netem(u) => format!("restore the root qdisc of {}", u.interface),
            Undo::EtcdQuota(u) => u.describe(),
            Undo::EtcdKeys(u) => u.describe(),
        }
    }
}

fn short(s: &Option<String>) -> &str {
    s.as_deref().map(|x| &x[..x.len().min(12)]).unwrap_or("-")
}

/// Where an action runs and whether it is journaled.
pub struct ActionCtx<'a> {
    /// The connected node.
    pub session: &'a NodeSession,
    /// `Some` for faults: the undo is recorded here before mutating.
    pub journal: Option<&'a Journal>,
    /// Scenario name (recorded in the journal).
    pub scenario: &'a str,
    /// Per-command timeout.
    pub timeout: std::time::Duration,
}

impl Action {
    /// The `target:` reference, if any.
    pub fn target(&self) -> Option<&serde_saphyr::Spanned<String>> {
        match self {
            Action::Systemd(a) => a.target.as_ref(),
            Action::File(a) => a.target.as_ref(),
            Action::Command(a) => a.target.as_ref(),
            Action::Manifest(a) => a.target.as_ref(),
            Action::SlowDisk(a) => a.target.as_ref(),
            Action::Netem(a) => a.target.as_ref(),
            Action::Tls(a) => a.target.as_ref(),
            Action::EtcdQuota(a) => a.target.as_ref(),
            Action::EtcdKeys(a) => a.target.as_ref(),
        }
    }

    /// Display name: the `name:` field or a summary of what it does.
    pub fn label(&self) -> String {
        match self {
            Action::Systemd(a) => a
                .name
                .clone()
                .unwrap_or_else(|| format!("systemctl {} {}", a.action.verb(), a.unit)),
            Action::File(a) => a.name.clone().unwrap_or_else(|| format!("edit {}", a.path)),
            Action::Command(a) => a
                .name
                .clone()
                .unwrap_or_else(|| a.run.lines().next().unwrap_or("").to_string()),
            Action::Manifest(a) => a
                .name
                .clone()
                .unwrap_or_else(|| format!("edit the {} static pod", a.pod)),
            Action::SlowDisk(a) => a.name.clone().unwrap_or_else(|| a.summary()),
            Action::Netem(a) => a.name.clone().unwrap_or_else(|| a.summary()),
            Action::Tls(a) => a.name.clone().unwrap_or_else(|| a.summary()),
            Action::EtcdQuota(a) => a.name.clone().unwrap_or_else(|| a.default_label()),
            Action::EtcdKeys(a) => a.name.clone().unwrap_or_else(|| a.default_label()),
        }
    }

    /// Applies the action. With a journal (faults), records the undo first.
    pub async fn apply(&self, ctx: &ActionCtx<'_>) -> Result<()> {
        match self {
            Action::Systemd(a) => a.apply(ctx, &self.label()).await,
            Action::File(a) => a.apply(ctx, &self.label()).await,
            Action::Command(a) => a.apply(ctx, &self.label()).await,
            Action::Manifest(a) => a.apply(ctx, &self.label()).await,
            Action::SlowDisk(a) => a.apply(ctx, &self.label()).await,
            Action::Netem(a) => a.apply(ctx, &self.label()).await,
            Action::Tls(a) => a.apply(ctx, &self.label()).await,
            Action::EtcdQuota(a) => a.apply(ctx, &self.label()).await,
            Action::EtcdKeys(a) => a.apply(ctx, &self.label()).await,
        }
    }

    /// Renders templated strings for one node.
    pub fn render(&self, r: &Renderer) -> Result<Action> {
        Ok(match self {
            Action::Systemd(a) => Action::Systemd(a.render(r)?),
            Action::File(a) => Action::File(a.render(r)?),
            Action::Command(a) => Action::Command(a.render(r)?),
            Action::Manifest(a) => Action::Manifest(a.render(r)?),
            Action::SlowDisk(a) => Action::SlowDisk(a.render(r)?),
            Action::Netem(a) => Action::Netem(a.render(r)?),
            Action::Tls(a) => Action::Tls(a.render(r)?),
            Action::EtcdQuota(a) => Action::EtcdQuota(a.render(r)?),
            Action::EtcdKeys(a) => Action::EtcdKeys(a.render(r)?),
        })
    }
}
