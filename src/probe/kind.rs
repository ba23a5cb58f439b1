//! The contract of a probe kind: everything one probe kind's file provides.
//!
//! A probe kind is a spec struct (declared with [`crate::probe_spec!`], which adds the common
//! probe fields and implements [`super::HasCommon`]) with an `expect:` block (declared with
//! [`crate::expect_block!`], which implements [`ExpectBlock`]) that implements [`ProbeKind`].
//! Registering it is one line in `probe_kinds!` (src/probe/mod.rs); [`super::Probe`]
//! dispatches to these traits, and validation, rendering, `breakfix plan`, the snapshots and
//! the runner call nothing kind-specific.
//!
//! # Guarantees
//! - [`ProbeKind::gather`] only reads: no probe changes its node.
//! - Gathering is bounded by `ctx.timeout`; a service that is down is a fact, not an error.

use std::future::Future;

use super::{Facts, HasCommon, ProbeCtx};
use crate::error::Result;
use crate::matcher::Matcher;
use crate::node::NodeSession;
use crate::problem::Problem;
use crate::template::Renderer;
use crate::touches::Touches;

/// A probe kind's `expect:` block: one optional matcher per fact (see [`crate::expect_block!`]).
pub trait ExpectBlock: Sized {
    /// Fact names the block can check, in declaration order.
    const FACTS: &'static [&'static str];
    /// `(fact, matcher)` for every fact it checks.
    fn items(&self) -> Vec<(&'static str, &Matcher)>;
    /// A copy with the matchers' templates rendered for one node.
    ///
    /// Errors: a template error.
    fn render(&self, r: &Renderer) -> Result<Self>;
}

/// One probe kind. See the module docs.
pub trait ProbeKind: HasCommon + Clone + std::fmt::Debug + Send + Sync + Sized {
    /// Its `expect:` block type.
    type Expect: ExpectBlock;

    /// Its `expect:` block.
    fn expect(&self) -> &Self::Expect;

    /// What it looks at, for `breakfix plan`: `(word, rendered value)`, e.g.
    /// `("unit", "etcd")` or `("path", "/etc/kubernetes/manifests/etcd.yaml")`.
    fn plan_target(&self) -> (&'static str, String);

    /// A copy with its templated strings (the `expect:` block included) rendered for one node.
    ///
    /// Errors: a template error.
    fn render(&self, r: &Renderer) -> Result<Self>;

    /// The kind's own rules, checked by `validate` (code BF308; default: none).
    fn problems(&self) -> Vec<Problem> {
        Vec::new()
    }

    /// What the snapshots compare because this probe looks at it (default: nothing).
    fn touches(&self) -> Touches {
        Touches::default()
    }

    /// Called before a round of probes starts, so that the session can batch queries
    /// (systemd units). Default: nothing. `wanted` are the facts the expectations check.
    fn announce(&self, session: &NodeSession, wanted: &[&str]) {
        let _ = (session, wanted);
    }

    /// Gathers the facts in `wanted` (the ones the expectations check; a kind may gather
    /// more). Transport failures and timeouts are errors (the verdict becomes ERROR).
    fn gather(
        &self,
        ctx: &ProbeCtx<'_>,
        wanted: &[&str],
    ) -> impl Future<Output = Result<Facts>> + Send;
}
