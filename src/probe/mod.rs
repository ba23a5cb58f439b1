//! Probes: gather facts on a target node and match them against the scenario's expectations.
//!
//! One file per probe kind. Gathering facts (`gather`) is separate from judging them
//! (matchers in `expect:`), goss-style; the engine's runner adds timeouts, retries
//! (`within`/`interval`), `stable_for` windows and `needs` (dependent probes SKIP).

pub mod kind;
#[macro_use]
pub mod spec;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use serde_saphyr::Spanned;

use crate::duration::Dur;
use crate::error::Result;
use crate::inventory::Inventory;
use crate::matcher::Matcher;
use crate::node::NodeSession;
use crate::template::Renderer;
use crate::touches::Touches;
pub use kind::{ExpectBlock, ProbeKind};

/// Declares [`Probe`] (the probe kinds a scenario may write, by their `kind:` tag) and
/// dispatches it to the [`ProbeKind`] trait, and declares each kind's module. One line per
/// kind: `Variant(module::Spec) = "tag";`.
macro_rules! probe_kinds {
    ( $( $variant:ident($module:ident :: $ty:ident) = $tag:literal; )+ ) => {
        $( pub mod $module; )+

        crate::kind_first_enum! {
            /// A probe as written in a scenario (`preconditions:`, `confirm:`, `verify:`, a
            /// task's `probes:`, a grader); one variant per kind (each kind's file documents
            /// its fields and facts).
            // The etcd kind's expectations (one optional matcher per fact) make its variant
            // the largest; a scenario holds a few dozen probes, read once: boxing would buy
            // nothing.
            #[allow(clippy::large_enum_variant)]
            pub enum Probe ("a probe") {
                $( $variant($module::$ty) = $tag, )+
            }
        }

        impl Probe {
            /// The shared fields.
            pub fn common(&self) -> Common<'_> {
                match self { $( Probe::$variant(p) => p.common(), )+ }
            }

            /// `(fact, matcher)` pairs of the `expect:` block.
            pub fn expectations(&self) -> Vec<(&'static str, &Matcher)> {
                match self { $( Probe::$variant(p) => p.expect().items(), )+ }
            }

            /// Fact names this probe kind can check.
            pub fn facts(&self) -> &'static [&'static str] {
                match self { $( Probe::$variant(_) => <<$module::$ty as ProbeKind>::Expect as ExpectBlock>::FACTS, )+ }
            }

            /// What it looks at, for `breakfix plan` (see [`ProbeKind::plan_target`]).
            pub fn plan_target(&self) -> (&'static str, String) {
                match self { $( Probe::$variant(p) => p.plan_target(), )+ }
            }

            /// The kind's own complaints about its settings (see [`ProbeKind::problems`]).
            pub fn problems(&self) -> Vec<crate::problem::Problem> {
                match self { $( Probe::$variant(p) => p.problems(), )+ }
            }

            /// What the snapshots compare because this probe looks at it.
            pub fn touches(&self) -> Touches {
                match self { $( Probe::$variant(p) => p.touches(), )+ }
            }

            /// Gathers the facts the `expect:` block needs. Transport failures and timeouts
            /// are errors (the probe's verdict becomes ERROR); a service that is down is a fact.
            pub async fn gather(&self, ctx: &ProbeCtx<'_>) -> Result<Facts> {
                let wanted: Vec<&str> = self.expectations().iter().map(|(f, _)| *f).collect();
                match self { $( Probe::$variant(p) => p.gather(ctx, &wanted).await, )+ }
            }

            /// Tells `session` what this probe is about to ask, before a round starts, so
            /// that one query can serve the whole round (see [`ProbeKind::announce`]).
            pub fn announce(&self, session: &NodeSession) {
                let wanted: Vec<&str> = self.expectations().iter().map(|(f, _)| *f).collect();
                match self { $( Probe::$variant(p) => p.announce(session, &wanted), )+ }
            }

            /// Renders the probe's templated strings for one node (see [`Renderer`]).
            pub fn render(&self, r: &Renderer) -> Result<Probe> {
                Ok(match self { $( Probe::$variant(p) => Probe::$variant(p.render(r)?), )+ })
            }
        }
    };
}

// The registry: one line per kind.
probe_kinds! {
    Command(command::CommandProbe) = "command";
    Systemd(systemd::SystemdProbe) = "systemd";
    Port(port::PortProbe) = "port";
    File(file::FileProbe) = "file";
    Etcd(etcd::EtcdProbe) = "etcd";
    Kube(kube::KubeProbe) = "kube";
    StaticPod(static_pod::StaticPodProbe) = "static_pod";
    Filesystem(filesystem::FilesystemProbe) = "filesystem";
    Process(process::ProcessProbe) = "process";
}

/// The fields every probe kind has, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Common<'a> {
    /// Unique name.
    pub name: &'a str,
    /// Human description.
    pub description: Option<&'a str>,
    /// Target reference (with its YAML location).
    pub target: Option<&'a Spanned<String>>,
    /// Per-attempt timeout.
    pub timeout: Option<Dur>,
    /// Retry window.
    pub within: Option<Dur>,
    /// Pause between attempts.
    pub interval: Option<Dur>,
    /// Required continuous pass time.
    pub stable_for: Option<Dur>,
    /// Probes this one depends on.
    pub needs: &'a [Spanned<String>],
}

/// Implemented by every probe kind's spec (generated by `probe_spec!`).
pub trait HasCommon {
    /// The shared fields.
    fn common(&self) -> Common<'_>;
}

/// Default per-attempt timeout: 10 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default pause between attempts: 1 second.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// What a probe found: fact name -> value, plus an optional note (e.g. the error text that
/// explains a `healthy: false`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// Fact values (strings, numbers, bools, lists).
    pub values: BTreeMap<String, Value>,
    /// Extra context shown next to failing facts.
    pub note: Option<String>,
}

impl Facts {
    /// Adds a fact.
    pub fn set(&mut self, name: &str, v: impl Into<Value>) {
        self.values.insert(name.to_string(), v.into());
    }
}

/// Everything a probe may use while gathering facts.
pub struct ProbeCtx<'a> {
    /// The connected target node.
    pub session: &'a NodeSession,
    /// The whole inventory (cluster-wide facts such as etcd TLS paths).
    pub inventory: &'a Inventory,
    /// Timeout for this attempt.
    pub timeout: Duration,
}

impl Probe {
    /// The probe's name.
    pub fn name(&self) -> &str {
        self.common().name
    }
}
