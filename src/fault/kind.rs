//! The contract of a fault/step kind: everything one kind's file provides.
//!
//! A kind is a spec struct (declared with [`crate::action_spec!`], which adds `name`,
//! `description` and `target` and implements [`ActionCommon`]) that implements [`FaultKind`],
//! and usually an undo struct that implements [`UndoKind`]. Registering it is one line in
//! `fault_kinds!` (src/fault/mod.rs); [`super::Action`] and [`super::Undo`] dispatch to these
//! traits, and validation, rendering, `breakfix plan`, the crash/self-test snapshots and the
//! engine call nothing kind-specific.
//!
//! # Guarantees
//! - [`FaultKind::problems`] runs in `breakfix validate` (and every command that loads a
//!   scenario) on the unrendered spec: what it reports never reaches a node.
//! - [`FaultKind::apply`] with a journal records its undo before its first change.

use std::future::Future;
use std::pin::Pin;

use crate::error::Result;
use crate::node::NodeSession;
use crate::template::Renderer;

use super::ActionCtx;
pub use crate::touches::Touches;

/// Where an action is written, which decides whether it is journaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `setup:` or `solution:`: a plain step, not journaled.
    Step,
    /// `faults:`: journaled with its undo before it mutates.
    Fault,
    /// A wrong fix's `steps:`: journaled like a fault so the self-test can undo it.
    WrongFix,
}

pub use crate::problem::Problem;

/// The fields every kind shares; implemented by [`crate::action_spec!`].
pub trait ActionCommon {
    /// The `name:` field.
    fn name(&self) -> Option<&str>;
    /// The `target:` reference, with its position in the file.
    fn target(&self) -> Option<&serde_saphyr::Spanned<String>>;
}

/// One fault/step kind. See the module docs.
pub trait FaultKind: ActionCommon + Clone + std::fmt::Debug + Send + Sync + Sized {
    /// The label used when `name:` is not set, e.g. `systemctl stop etcd`.
    fn default_label(&self) -> String;

    /// The kind's own rules, checked by `validate` (default: none). `role` says where the
    /// action is written.
    fn problems(&self, role: Role) -> Vec<Problem> {
        let _ = role;
        Vec::new()
    }

    /// A copy with its templated strings rendered for one node.
    ///
    /// Errors: a template error (undefined param, bad syntax).
    fn render(&self, r: &Renderer) -> Result<Self>;

    /// What `breakfix plan` shows under the label: `(field, rendered value)` pairs.
    fn details(&self) -> Vec<(&'static str, String)>;

    /// What the action may change (default: nothing the snapshot compares).
    fn touches(&self) -> Touches {
        Touches::default()
    }

    /// Applies the action on `ctx.session`'s node; with `ctx.journal` (faults, wrong fixes),
    /// records the undo first. `label` names it in errors and the journal.
    ///
    /// Errors: [`crate::Error::Fault`] naming the node, or a transport error.
    fn apply(&self, ctx: &ActionCtx<'_>, label: &str) -> impl Future<Output = Result<()>> + Send;
}

/// One journaled undo kind (stored in the journal as `{"kind": <tag>, ...}`).
pub trait UndoKind {
    /// Puts the node back. Idempotent: safe after a partial apply, twice, or after the
    /// learner's own fix.
    fn revert(&self, s: &NodeSession) -> impl Future<Output = Result<()>> + Send;

    /// One line for `breakfix reset` and `breakfix status`.
    fn describe(&self) -> String;

    /// The etcd it talks to, if any (the journal then records etcd's cluster ID).
    fn etcd_target(&self) -> Option<&crate::node::etcd::EtcdTarget> {
        None
    }
}

/// Where a fault records its undo before it mutates: the journal (`journal::Journal`
/// implements it; the engine passes it in [`ActionCtx::journal`]). Defined here so that
/// faults do not depend on the journal's storage.
pub trait UndoLog: Sync {
    /// Records `undo` for `fault` of `scenario` on the session's node (both copies, local and
    /// on the node, written before this returns).
    ///
    /// Errors: either copy could not be written; the fault must then change nothing.
    fn record<'a>(
        &'a self,
        s: &'a NodeSession,
        scenario: &'a str,
        fault: &'a str,
        undo: super::Undo,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;
}
