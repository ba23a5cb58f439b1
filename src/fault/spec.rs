//! Fault/step spec macro: the fields every action kind shares.

/// Declares an action kind's spec struct with `name`, `description` and `target` prepended.
#[macro_export]
macro_rules! action_spec {
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
            /// Name shown in plans, reports and the journal (default: derived from the kind).
            #[serde(default)]
            pub name: Option<String>,
            /// What this does, in the lab author's words.
            #[serde(default)]
            pub description: Option<String>,
            /// Target name from the scenario's `targets:`; optional when there is one target.
            #[serde(default)]
            pub target: Option<serde_saphyr::Spanned<String>>,
            $( $(#[$fmeta])* pub $field: $ty, )*
        }
    };
}
