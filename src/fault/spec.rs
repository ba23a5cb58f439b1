//! Fault/step spec macro: the fields every action kind shares.

/// Declares an action kind's spec struct with `name`, `description` and `target` prepended.
///
/// Followed by `with etcd_connection`, it also appends the four optional fields that say which
/// etcd an etcd fault reaches (`endpoint`, `ca_file`, `cert_file`, `key_file`; see
/// [`crate::fault::etcd`]) and implements [`crate::fault::etcd::EtcdConnection`] for the struct.
#[macro_export]
macro_rules! action_spec {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty, )*
        }
        with etcd_connection
    ) => {
        $crate::action_spec! {
            $(#[$meta])*
            pub struct $name {
                $( $(#[$fmeta])* pub $field: $ty, )*
                /// etcd client URL as seen from the node (default: the inventory's first
                /// `cluster.etcd.endpoints`).
                #[serde(default)]
                pub endpoint: Option<String>,
                /// CA file on the node (default: the inventory's `cluster.etcd.ca_file`).
                #[serde(default)]
                pub ca_file: Option<String>,
                /// Client certificate on the node (default: the inventory's `cluster.etcd.cert_file`).
                #[serde(default)]
                pub cert_file: Option<String>,
                /// Client key on the node (default: the inventory's `cluster.etcd.key_file`).
                #[serde(default)]
                pub key_file: Option<String>,
            }
        }

        impl $crate::fault::etcd::EtcdConnection for $name {
            fn connection(&self) -> [&Option<String>; 4] {
                [&self.endpoint, &self.ca_file, &self.cert_file, &self.key_file]
            }

            fn connection_mut(&mut self) -> [&mut Option<String>; 4] {
                [
                    &mut self.endpoint,
                    &mut self.ca_file,
                    &mut self.cert_file,
                    &mut self.key_file,
                ]
            }
        }
    };
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

        impl $crate::fault::ActionCommon for $name {
            fn name(&self) -> Option<&str> {
                self.name.as_deref()
            }

            fn target(&self) -> Option<&serde_saphyr::Spanned<String>> {
                self.target.as_ref()
            }
        }
    };
}
