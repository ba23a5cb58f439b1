//! A located YAML tree: every node and mapping key of a document with its line, column and
//! source span. Validation uses it to point at values the typed model does not keep spans
//! for (probe names, section keys, template text inside scalars).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

/// Where a node sits in its file: 1-based line and column (in characters), byte offset and
/// byte length of its source text (quotes included for quoted scalars).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// 1-based line (0 = unknown).
    pub line: u64,
    /// 1-based column in characters (0 = unknown).
    pub column: u64,
    /// Byte offset of the node's source text, when known.
    pub byte_offset: Option<usize>,
    /// Byte length of the node's source text (0 for containers and unknown).
    pub byte_len: usize,
    /// Length in characters of the node's source text (0 for containers).
    pub len: u64,
}

impl Pos {
    /// From a serde-saphyr location.
    pub fn of(l: &Location) -> Pos {
        let span = l.span();
        let byte_len = span
            .byte_len()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        Pos {
            line: l.line(),
            column: l.column(),
            byte_offset: span.byte_offset().and_then(|n| usize::try_from(n).ok()),
            byte_len,
            len: span.len(),
        }
    }

    /// Where a [`Spanned`] value was referenced.
    pub fn of_spanned<T>(s: &Spanned<T>) -> Pos {
        Pos::of(&s.referenced)
    }
}

/// A YAML node.
#[derive(Debug, Clone)]
pub struct Node {
    /// Where the node starts.
    pub pos: Pos,
    /// What it holds.
    pub value: Value,
}

/// A node's contents.
#[derive(Debug, Clone)]
pub enum Value {
    /// A scalar, in its decoded text form.
    Scalar(String),
    /// `~`, `null` or nothing.
    Null,
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping: `(key text, key position, value)`, in source order.
    Map(Vec<(String, Pos, Node)>),
}

impl Node {
    /// The value under `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, n)| n)
    }

    /// The key position and value under `key` of a mapping.
    pub fn entry(&self, key: &str) -> Option<(Pos, &Node)> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _, _)| k == key)
                .map(|(_, p, n)| (*p, n)),
            _ => None,
        }
    }

    /// The `i`th item of a sequence.
    pub fn idx(&self, i: usize) -> Option<&Node> {
        match &self.value {
            Value::Seq(items) => items.get(i),
            _ => None,
        }
    }

    /// Follows a path of mapping keys and sequence indexes.
    pub fn at(&self, path: &[Step<'_>]) -> Option<&Node> {
        let mut n = self;
        for s in path {
            n = match s {
                Step::Key(k) => n.get(k)?,
                Step::Idx(i) => n.idx(*i)?,
            };
        }
        Some(n)
    }

    /// The position of a mapping's first key.
    pub fn first_key_pos(&self) -> Option<Pos> {
        match &self.value {
            Value::Map(entries) => entries.first().map(|(_, p, _)| *p),
            _ => None,
        }
    }

    /// The mapping (this node or below) with a key or value starting at `line:column`.
    pub fn mapping_with_entry_at(&self, line: u64, column: u64) -> Option<&Node> {
        let here = |p: &Pos| p.line == line && p.column == column;
        match &self.value {
            Value::Map(entries) => {
                if entries.iter().any(|(_, kp, v)| {
                    here(kp) || (here(&v.pos) && !matches!(v.value, Value::Map(_) | Value::Seq(_)))
                }) {
                    return Some(self);
                }
                entries
                    .iter()
                    .find_map(|(_, _, v)| v.mapping_with_entry_at(line, column))
            }
            Value::Seq(items) => items
                .iter()
                .find_map(|n| n.mapping_with_entry_at(line, column)),
            _ => None,
        }
    }

    /// Calls `f` for every scalar value (not keys) in document order, with its path.
    pub fn each_scalar<'a>(&'a self, f: &mut dyn FnMut(&[Step<'a>], &'a Node, &'a str)) {
        let mut path = Vec::new();
        self.walk(&mut path, f);
    }

    fn walk<'a>(
        &'a self,
        path: &mut Vec<Step<'a>>,
        f: &mut dyn FnMut(&[Step<'a>], &'a Node, &'a str),
    ) {
        match &self.value {
            Value::Scalar(s) => f(path, self, s),
            Value::Null => {}
            Value::Seq(items) => {
                for (i, n) in items.iter().enumerate() {
                    path.push(Step::Idx(i));
                    n.walk(path, f);
                    path.pop();
                }
            }
            Value::Map(entries) => {
                for (k, _, n) in entries {
                    path.push(Step::Key(k));
                    n.walk(path, f);
                    path.pop();
                }
            }
        }
    }
}

/// One step of a [`Node::at`] path.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    /// A mapping key.
    Key(&'a str),
    /// A sequence index.
    Idx(usize),
}

/// Parses `source` into a located tree with the loader's options.
pub fn parse(source: &str) -> Result<Node, serde_saphyr::Error> {
    serde_saphyr::from_str_with_options::<Node>(source, super::load::options())
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        let s = Spanned::<Value>::deserialize(d)?;
        Ok(Node {
            pos: Pos::of(&s.referenced),
            value: s.value,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Scalar(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_string()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_string()))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Scalar(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Spanned<KeyText>>()? {
            let v = map.next_value::<Node>()?;
            entries.push((k.value.0, Pos::of(&k.referenced), v));
        }
        Ok(Value::Map(entries))
    }
}

/// A mapping key as text (scalar keys of any type).
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KeyText, D::Error> {
        match Value::deserialize(d)? {
            Value::Scalar(s) => Ok(KeyText(s)),
            Value::Null => Ok(KeyText(String::new())),
            _ => Ok(KeyText("<complex key>".to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions() {
        let src = "a: 1\nb:\n  - x: \"q\"\n    y: |\n      text\n";
        let t = parse(src).expect("parses");
        let (kp, a) = t.entry("a").expect("a");
        assert_eq!((kp.line, kp.column), (1, 1));
        assert_eq!((a.pos.line, a.pos.column), (1, 4));
        let x = t
            .at(&[Step::Key("b"), Step::Idx(0), Step::Key("x")])
            .expect("x");
        assert_eq!((x.pos.line, x.pos.column, x.pos.byte_len), (3, 8, 3));
        let y = t
            .at(&[Step::Key("b"), Step::Idx(0), Step::Key("y")])
            .expect("y");
        assert_eq!(y.pos.line, 5);
        let off = y.pos.byte_offset.expect("offset");
        assert!(src[off..off + y.pos.byte_len].starts_with("text"));
    }
}
