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

pub mod etcd;
pub mod kind;
#[macro_use]
pub mod spec;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::node::NodeSession;
use crate::template::Renderer;
pub use kind::{ActionCommon, FaultKind, Problem, Role, Touches, UndoKind, UndoLog};

/// Declares [`Action`] (the kinds a scenario may write, by their `kind:` tag) and [`Undo`]
/// (the undo kinds the journal stores, by their `kind:` tag), and dispatches both to the
/// [`FaultKind`]/[`UndoKind`] traits, and declares each kind's module. One line per kind:
/// `Variant(module::Spec) = "tag"`, then `, undo UndoVariant(UndoType) = "undo_tag"` when the
/// kind has an undo of its own, declared in the same module (kinds may reuse another kind's
/// undo: `tls` journals a [`file::FileUndo`]).
macro_rules! fault_kinds {
    ( $( $variant:ident($module:ident :: $ty:ident) = $tag:literal $(, undo $uv:ident($uty:ident) = $utag:literal)? ; )+ ) => {
        $( pub mod $module; )+

        crate::kind_first_enum! {
            /// A change to a node, as written in `faults:`, `setup:`, `solution:` or
            /// `wrong_fixes:`; one variant per kind (each kind's file documents its fields).
            pub enum Action ("a fault or step") {
                $( $variant($module::$ty) = $tag, )+
            }
        }

        /// How to put a node back the way it was before a fault. Stored in the journal as
        /// `{"kind": <tag>, ...fields}`; one variant per undo kind.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind")]
        pub enum Undo {
            $( $( #[serde(rename = $utag)] $uv($module::$uty), )? )+
        }

        impl Undo {
            /// Reverts on the node. Idempotent.
            pub async fn revert(&self, s: &NodeSession) -> Result<()> {
                match self { $( $( Undo::$uv(u) => u.revert(s).await, )? )+ }
            }

            /// The etcd this undo talks to, if it does (its journal entry then records etcd's
            /// cluster ID, and reset checks it).
            pub fn etcd_target(&self) -> Option<&crate::node::etcd::EtcdTarget> {
                match self { $( $( Undo::$uv(u) => u.etcd_target(), )? )+ }
            }

            /// One line for `breakfix reset` output.
            pub fn describe(&self) -> String {
                match self { $( $( Undo::$uv(u) => u.describe(), )? )+ }
            }
        }

        impl Action {
            /// The `target:` reference, if any.
            pub fn target(&self) -> Option<&serde_saphyr::Spanned<String>> {
                match self { $( Action::$variant(a) => a.target(), )+ }
            }

            /// Display name: the `name:` field or a summary of what it does.
            pub fn label(&self) -> String {
                match self {
                    $( Action::$variant(a) => a.name().map(str::to_string).unwrap_or_else(|| a.default_label()), )+
                }
            }

            /// The kind's own rules for this action written as `role` (see [`FaultKind::problems`]).
            pub fn problems(&self, role: Role) -> Vec<Problem> {
                match self { $( Action::$variant(a) => a.problems(role), )+ }
            }

            /// `(field, value)` lines `breakfix plan` shows under the label.
            pub fn details(&self) -> Vec<(&'static str, String)> {
                match self { $( Action::$variant(a) => a.details(), )+ }
            }

            /// What the action may change on its node (for snapshots).
            pub fn touches(&self) -> Touches {
                match self { $( Action::$variant(a) => a.touches(), )+ }
            }

            /// Applies the action. With a journal (faults), records the undo first.
            pub async fn apply(&self, ctx: &ActionCtx<'_>) -> Result<()> {
                let label = self.label();
                match self { $( Action::$variant(a) => a.apply(ctx, &label).await, )+ }
            }

            /// Renders templated strings for one node.
            pub fn render(&self, r: &Renderer) -> Result<Action> {
                Ok(match self { $( Action::$variant(a) => Action::$variant(a.render(r)?), )+ })
            }
        }
    };
}

// The registry: one line per kind.
fault_kinds! {
    Systemd(systemd::SystemdAction) = "systemd", undo Systemd(SystemdUndo) = "systemd";
    File(file::FileAction) = "file", undo File(FileUndo) = "file";
    Command(command::CommandAction) = "command", undo Command(CommandUndo) = "command";
    Manifest(manifest::ManifestAction) = "manifest", undo Move(MoveUndo) = "move";
    SlowDisk(slow_disk::SlowDiskAction) = "slow_disk", undo SlowDisk(SlowDiskUndo) = "slow_disk";
    Netem(netem::NetemAction) = "netem", undo Netem(NetemUndo) = "netem";
    Tls(tls::TlsAction) = "tls";
    EtcdQuota(etcd_quota::EtcdQuotaAction) = "etcd_quota", undo EtcdQuota(EtcdQuotaUndo) = "etcd_quota";
    EtcdKeys(etcd_keys::EtcdKeysAction) = "etcd_keys", undo EtcdKeys(EtcdKeysUndo) = "etcd_keys";
    DiskFill(disk_fill::DiskFillAction) = "disk_fill", undo DiskFill(DiskFillUndo) = "disk_fill";
}

/// First 12 characters of a hex digest, or `-`.
pub(crate) fn short(s: &Option<String>) -> &str {
    s.as_deref().map(|x| &x[..x.len().min(12)]).unwrap_or("-")
}

/// Where an action runs and whether it is journaled.
pub struct ActionCtx<'a> {
    /// The connected node.
    pub session: &'a NodeSession,
    /// `Some` for faults: the undo is recorded here before mutating.
    pub journal: Option<&'a dyn UndoLog>,
    /// Scenario name (recorded in the journal).
    pub scenario: &'a str,
    /// Per-command timeout.
    pub timeout: std::time::Duration,
}
