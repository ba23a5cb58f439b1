//! Probe spec macros: the fields every probe kind shares, and typed `expect:` blocks.

/// Declares a probe kind's spec struct with the common probe fields prepended
/// (name, description, target, timeout, within, interval, stable_for, needs) and
/// implements [`crate::probe::HasCommon`] for it.
#[macro_export]
macro_rules! probe_spec {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Unique name within the scenario (used by `needs:` and in reports).
            pub name: String,
            /// What the probe checks, in the learner's words (shown in reports).
            #[serde(default)]
            pub description: Option<String>,
            /// Target name from the scenario's `targets:`; optional when there is one target.
            #[serde(default)]
            pub target: Option<serde_saphyr::Spanned<String>>,
            /// Upper bound for one attempt (default 10s).
            #[serde(default)]
            pub timeout: Option<$crate::duration::Dur>,
            /// Keep retrying until the expectation holds or this much time has passed (default: one attempt).
            #[serde(default)]
            pub within: Option<$crate::duration::Dur>,
            /// Pause between attempts (default 1s).
            #[serde(default)]
            pub interval: Option<$crate::duration::Dur>,
            /// The expectation must hold continuously for this long (default: once is enough).
            #[serde(default)]
            pub stable_for: Option<$crate::duration::Dur>,
            /// Names of probes that must pass first; if one does not, this probe is SKIPPED.
            #[serde(default)]
            pub needs: Vec<serde_saphyr::Spanned<String>>,
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $crate::probe::HasCommon for $name {
            fn common(&self) -> $crate::probe::Common<'_> {
                $crate::probe::Common {
                    name: &self.name,
                    description: self.description.as_deref(),
                    target: self.target.as_ref(),
                    timeout: self.timeout,
                    within: self.within,
                    interval: self.interval,
                    stable_for: self.stable_for,
                    needs: &self.needs,
                }
            }
        }
    };
}

/// Declares an `expect:` block: one optional [`crate::matcher::Matcher`] per fact name,
/// unknown fact names rejected at their line and column.
#[macro_export]
macro_rules! expect_block {
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $( $(#[$fmeta:meta])* $field:ident, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $( $(#[$fmeta])* #[serde(default)] pub $field: Option<$crate::matcher::Matcher>, )+
        }

        impl $name {
            /// Fact names this block can check.
            pub const FACTS: &'static [&'static str] = &[$(stringify!($field)),+];

            /// Renders the matchers' templated values for one node.
            pub fn render(&self, r: &$crate::template::Renderer) -> $crate::Result<Self> {
                Ok(Self { $( $field: self.$field.as_ref().map(|m| m.render(r)).transpose()?, )+ })
            }

            /// `(fact name, matcher)` for every fact the block checks, in declaration order.
            pub fn items(&self) -> Vec<(&'static str, &$crate::matcher::Matcher)> {
                let mut v = Vec::new();
                $( if let Some(m) = &self.$field { v.push((stringify!($field), m)); } )+
                v
            }
        }

        impl $crate::probe::ExpectBlock for $name {
            const FACTS: &'static [&'static str] = $name::FACTS;

            fn items(&self) -> Vec<(&'static str, &$crate::matcher::Matcher)> {
                $name::items(self)
            }

            fn render(&self, r: &$crate::template::Renderer) -> $crate::Result<Self> {
                $name::render(self, r)
            }
        }
    };
}
