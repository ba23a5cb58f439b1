//! `kind`-tagged YAML enums that keep exact error locations.
//!
//! serde's internally tagged enums buffer the whole mapping, so errors inside an item lose
//! their line and column. Here the tag must be the FIRST key (`- kind: systemd`); the rest of
//! the mapping is then deserialized straight into the variant's struct, so an unknown field
//! or a bad value is reported at its own line and column.

/// Declares `enum $name { Variant(Type), ... }` whose YAML form is a mapping starting with
/// `kind: <snake_case variant>` followed by the fields of `Type`.
#[macro_export]
macro_rules! kind_first_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident($ty:ty) = $tag:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub enum $name {
            $( $(#[$vmeta])* $variant($ty), )+
        }

        impl $name {
            /// All accepted `kind:` values.
            pub const KINDS: &'static [&'static str] = &[$($tag),+];

            /// The `kind:` value of this item.
            pub fn kind(&self) -> &'static str {
                match self { $( $name::$variant(_) => $tag, )+ }
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                use serde::de::{self, MapAccess, Visitor};
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        write!(f, "{}: a mapping whose first key is `kind`", $what)
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$name, A::Error> {
                        let first: Option<String> = map.next_key()?;
                        match first.as_deref() {
                            Some("kind") => {}
                            Some(other) => {
                                return Err(de::Error::custom(format!(
                                    "`kind` must be the first key of {}, found `{}` first",
                                    $what, other
                                )))
                            }
                            None => {
                                return Err(de::Error::custom(format!(
                                    "{} needs `kind` (one of {})",
                                    $what,
                                    [$($tag),+].join(", ")
                                )))
                            }
                        }
                        #[derive(serde::Deserialize)]
                        enum Tag { $( #[serde(rename = $tag)] $variant, )+ }
                        let tag: Tag = map.next_value()?;
                        let rest = de::value::MapAccessDeserializer::new(map);
                        match tag {
                            $( Tag::$variant => Ok($name::$variant(<$ty as serde::Deserialize>::deserialize(rest)?)), )+
                        }
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}
