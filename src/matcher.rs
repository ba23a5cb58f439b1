//! Matchers: goss-style predicates applied to the facts a probe gathered.
//!
//! YAML forms (a bare value means `equals`):
//! ```yaml
//! active: active                 # equals
//! exit: { not: 0 }
//! stdout: { contains: healthy }
//! stderr: { matches: 'took = [0-9.]+m?s' }
//! db_size: { lt: 16777216 }
//! alarms: { equals: [] }
//! revision: { all: [ { gt: 1 }, { lt: 100000 } ] }
//! ```

use std::fmt;

use regex::Regex;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// One predicate over a fact value (a JSON value: string, number, bool, list).
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Exact equality; numbers compare numerically (`3` equals `3.0`).
    Equals(Value),
    /// Substring of a string fact, or an element of a list fact.
    Contains(Value),
    /// Regular expression (Rust `regex` syntax) searched in the string form of the fact.
    Matches(Regex),
    /// Number strictly less than.
    Lt(f64),
    /// Number strictly greater than.
    Gt(f64),
    /// Negation.
    Not(Box<Matcher>),
    /// Every matcher holds.
    All(Vec<Matcher>),
    /// At least one matcher holds.
    Any(Vec<Matcher>),
}

impl Matcher {
    /// Does `found` satisfy the matcher? `None` (fact unavailable) satisfies only `not`.
    pub fn matches(&self, found: Option<&Value>) -> bool {
        match self {
            Matcher::Not(m) => !m.matches(found),
            Matcher::All(ms) => ms.iter().all(|m| m.matches(found)),
            Matcher::Any(ms) => ms.iter().any(|m| m.matches(found)),
            _ => match found {
                None => false,
                Some(v) => self.matches_value(v),
            },
        }
    }

    fn matches_value(&self, v: &Value) -> bool {
        match self {
            Matcher::Equals(want) => values_equal(want, v),
            Matcher::Contains(want) => match (v, want) {
                (Value::String(s), Value::String(w)) => s.contains(w.as_str()),
                (Value::Array(items), w) => items.iter().any(|i| values_equal(w, i)),
                (other, Value::String(w)) => to_text(other).contains(w.as_str()),
                _ => false,
            },
            Matcher::Matches(re) => re.is_match(&to_text(v)),
            Matcher::Lt(n) => as_number(v).is_some_and(|x| x < *n),
            Matcher::Gt(n) => as_number(v).is_some_and(|x| x > *n),
            Matcher::Not(_) | Matcher::All(_) | Matcher::Any(_) => self.matches(Some(v)),
        }
    }
}

impl Matcher {
    /// Renders templated string values (`{{ params.x }}`, `{{ node.address }}`) for one node.
    /// Regular expressions are rendered, then compiled again.
    pub fn render(&self, r: &crate::template::Renderer) -> crate::Result<Matcher> {
        fn text(r: &crate::template::Renderer, v: &Value) -> crate::Result<Value> {
            Ok(match v {
                Value::String(s) => Value::String(r.text(s)?),
                Value::Array(a) => {
                    Value::Array(a.iter().map(|x| text(r, x)).collect::<crate::Result<_>>()?)
                }
                Value::Object(m) => Value::Object(
                    m.iter()
                        .map(|(k, x)| Ok((k.clone(), text(r, x)?)))
                        .collect::<crate::Result<_>>()?,
                ),
                other => other.clone(),
            })
        }
        let text = |v: &Value| text(r, v);
        Ok(match self {
            Matcher::Equals(v) => Matcher::Equals(text(v)?),
            Matcher::Contains(v) => Matcher::Contains(text(v)?),
            Matcher::Matches(re) => {
                let src = r.text(re.as_str())?;
                Matcher::Matches(Regex::new(&src).map_err(|e| {
                    crate::Error::other(format!("regular expression `{src}` after rendering: {e}"))
                })?)
            }
            Matcher::Lt(n) => Matcher::Lt(*n),
            Matcher::Gt(n) => Matcher::Gt(*n),
            Matcher::Not(m) => Matcher::Not(Box::new(m.render(r)?)),
            Matcher::All(ms) => Matcher::All(
                ms.iter()
                    .map(|m| m.render(r))
                    .collect::<crate::Result<_>>()?,
            ),
            Matcher::Any(ms) => Matcher::Any(
                ms.iter()
                    .map(|m| m.render(r))
                    .collect::<crate::Result<_>>()?,
            ),
        })
    }
}

/// Text form of a fact: strings as they are, everything else as compact JSON.
pub fn to_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// [`to_text`] for reports: an empty text shows as `""` instead of nothing.
pub fn shown(v: &Value) -> String {
    match v {
        Value::String(s) if s.is_empty() => "\"\"".to_string(),
        other => to_text(other),
    }
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn values_equal(want: &Value, found: &Value) -> bool {
    match (want, found) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(a), Value::String(b)) => a == b.trim_end_matches('\n'),
        (a, b) => a == b,
    }
}

impl fmt::Display for Matcher {
    /// Human form used in reports as "expected ...".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Equals(v) => write!(f, "{}", shown(v)),
            Matcher::Contains(v) => write!(f, "contains {}", shown(v)),
            Matcher::Matches(r) => write!(f, "matches /{}/", r.as_str()),
            Matcher::Lt(n) => write!(f, "< {n}"),
            Matcher::Gt(n) => write!(f, "> {n}"),
            Matcher::Not(m) => write!(f, "not ({m})"),
            Matcher::All(ms) => join(f, ms, " and "),
            Matcher::Any(ms) => join(f, ms, " or "),
        }
    }
}

fn join(f: &mut fmt::Formatter<'_>, ms: &[Matcher], sep: &str) -> fmt::Result {
    for (i, m) in ms.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        write!(f, "({m})")?;
    }
    Ok(())
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Matcher, D::Error> {
        d.deserialize_any(MatcherVisitor)
    }
}

struct MatcherVisitor;

const OPS: &str = "equals, contains, matches, lt, gt, not, all, any";

impl<'de> Visitor<'de> for MatcherVisitor {
    type Value = Matcher;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a value to equal, or a mapping with one of {OPS}")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Matcher, E> {
        Ok(Matcher::Equals(Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Matcher, E> {
        Ok(Matcher::Equals(Value::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Matcher, E> {
        Ok(Matcher::Equals(Value::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Matcher, E> {
        Ok(Matcher::Equals(Value::from(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Matcher, E> {
        Ok(Matcher::Equals(Value::String(v.to_string())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Matcher, E> {
        Ok(Matcher::Equals(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Matcher, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Value>()? {
            items.push(v);
        }
        Ok(Matcher::Equals(Value::Array(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Matcher, A::Error> {
        let Some(op) = map.next_key::<String>()? else {
            return Err(de::Error::custom(format!(
                "empty matcher: use one of {OPS}"
            )));
        };
        let m = match op.as_str() {
            "equals" => Matcher::Equals(map.next_value()?),
            "contains" => Matcher::Contains(map.next_value()?),
            "matches" => {
                let pattern: String = map.next_value()?;
                Matcher::Matches(Regex::new(&pattern).map_err(|e| {
                    de::Error::custom(format!("invalid regular expression `{pattern}`: {e}"))
                })?)
            }
            "lt" => Matcher::Lt(map.next_value()?),
            "gt" => Matcher::Gt(map.next_value()?),
            "not" => Matcher::Not(Box::new(map.next_value()?)),
            "all" => Matcher::All(map.next_value()?),
            "any" => Matcher::Any(map.next_value()?),
            other => {
                return Err(de::Error::custom(format!(
                    "unknown matcher `{other}`, expected one of {OPS}"
                )))
            }
        };
        if let Some(extra) = map.next_key::<String>()? {
            return Err(de::Error::custom(format!(
                "a matcher has exactly one operator; found `{op}` and `{extra}` (use `all:` to combine)"
            )));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(y: &str) -> Matcher {
        serde_saphyr::from_str(y).expect("matcher parses")
    }

    #[test]
    fn scalar_means_equals() {
        assert!(m("active").matches(Some(&json!("active"))));
        assert!(!m("active").matches(Some(&json!("inactive"))));
        assert!(m("0").matches(Some(&json!(0))));
        assert!(m("true").matches(Some(&json!(true))));
    }

    #[test]
    fn operators() {
        assert!(m("{contains: healthy}").matches(Some(&json!("x is healthy: ok"))));
        assert!(m("{contains: NOSPACE}").matches(Some(&json!(["NOSPACE"]))));
        assert!(!m("{contains: NOSPACE}").matches(Some(&json!([]))));
        assert!(m("{matches: 'took = [0-9.]+'}").matches(Some(&json!("took = 1.5ms"))));
        assert!(m("{lt: 10}").matches(Some(&json!(3))));
        assert!(!m("{gt: 10}").matches(Some(&json!(3))));
        assert!(m("{not: 0}").matches(Some(&json!(1))));
        assert!(m("{all: [{gt: 1}, {lt: 5}]}").matches(Some(&json!(3))));
        assert!(!m("{any: [{gt: 10}, {lt: 2}]}").matches(Some(&json!(3))));
        assert!(m("{equals: []}").matches(Some(&json!([]))));
    }

    #[test]
    fn missing_fact_only_satisfies_not() {
        assert!(!m("1").matches(None));
        assert!(m("{not: 1}").matches(None));
    }

    #[test]
    fn bad_matchers_are_errors() {
        let e = serde_saphyr::from_str::<Matcher>("{matches: '('}").unwrap_err();
        assert!(e.to_string().contains("invalid regular expression"), "{e}");
        let e = serde_saphyr::from_str::<Matcher>("{like: x}").unwrap_err();
        assert!(e.to_string().contains("unknown matcher `like`"), "{e}");
        let e = serde_saphyr::from_str::<Matcher>("{lt: 1, gt: 0}").unwrap_err();
        assert!(e.to_string().contains("exactly one operator"), "{e}");
    }

    #[test]
    fn templates_render_inside_lists_and_maps() {
        let mut p = std::collections::BTreeMap::new();
        p.insert("ip".to_string(), "198.18.0.11".to_string());
        let r = crate::template::Renderer::params_only(&p);
        let out = m("{equals: ['https://{{ params.ip }}:2380', 3]}")
            .render(&r)
            .expect("renders");
        assert!(out.matches(Some(&json!(["https://198.18.0.11:2380", 3]))));
        assert!(!out.matches(Some(&json!(["https://{{ params.ip }}:2380", 3]))));
        let out = m("{equals: {a: '{{ params.ip }}'}}")
            .render(&r)
            .expect("renders");
        assert!(out.matches(Some(&json!({"a": "198.18.0.11"}))));
    }
}
