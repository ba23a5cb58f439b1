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
//! free_mib: { gt: "{{ params.min_free_mib }}" }   # a template that renders to a number
//! flag: { same_path: /var/lib/etcd }              # /var/lib/etcd/ and /var/lib//etcd too
//! flag: { same_urls: "https://127.0.0.1:2379,https://{{ node.address }}:2379" }  # any order
//! ```
//!
//! `same_path` and `same_urls` compare meaning, not spelling, so a learner's correct fix
//! passes however it is written (docs/scenario-format.md, "Matchers").

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
    Matches(Pattern),
    /// Number strictly less than.
    Lt(Bound),
    /// Number strictly greater than.
    Gt(Bound),
    /// The same path: both sides read with [`normal_path`] (`//` and `/./` collapsed, `..`
    /// resolved by name, a trailing `/` dropped; symlinks are not followed).
    SamePath(Value),
    /// The same set of URLs: both sides read with [`url_set`] (a list, or text split at
    /// commas and whitespace; scheme and host without case, the scheme's default port made
    /// explicit, an empty path is `/`, a trailing `/` dropped; order and duplicates ignored).
    /// Text that is not a URL list matches nothing.
    SameUrls(Value),
    /// Negation.
    Not(Box<Matcher>),
    /// Every matcher holds.
    All(Vec<Matcher>),
    /// At least one matcher holds.
    Any(Vec<Matcher>),
}

/// The pattern of a `matches` matcher: its source as written and, once it holds no template
/// (or has been rendered), the compiled regular expression.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The pattern as written, or as rendered for a node.
    pub source: String,
    /// The compiled pattern; `None` while `source` holds a template (`{{ node.address }}`):
    /// such a pattern matches nothing until [`Matcher::render`] renders and compiles it.
    pub regex: Option<Regex>,
}

/// A template expression or statement inside a pattern (`{{ ... }}`, `{% ... %}`), compiled
/// once.
static TEMPLATES: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
    Regex::new(r"(?s)\{\{.*?\}\}|\{%.*?%\}").expect("a constant, valid pattern")
});

impl Pattern {
    /// Compiles `source`. A pattern with a template (`{{ ... }}`, `{% ... %}`) is compiled only
    /// after rendering; here the rest of it is checked, with each template taken as a literal.
    ///
    /// Errors: the pattern (outside its templates) is not a valid regular expression (the
    /// message quotes it).
    pub fn parse(source: String) -> std::result::Result<Pattern, String> {
        let invalid = |e: regex::Error| format!("invalid regular expression `{source}`: {e}");
        if source.contains("{{") || source.contains("{%") {
            Regex::new(&TEMPLATES.replace_all(&source, "x")).map_err(invalid)?;
            return Ok(Pattern {
                source,
                regex: None,
            });
        }
        let re = Regex::new(&source).map_err(invalid)?;
        Ok(Pattern {
            source,
            regex: Some(re),
        })
    }
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
            Matcher::Matches(p) => p.regex.as_ref().is_some_and(|re| re.is_match(&to_text(v))),
            Matcher::Lt(n) => as_number(v).zip(n.number()).is_some_and(|(x, n)| x < n),
            Matcher::Gt(n) => as_number(v).zip(n.number()).is_some_and(|(x, n)| x > n),
            Matcher::SamePath(want) => match (want, v) {
                (Value::String(w), Value::String(f)) => normal_path(w) == normal_path(f.trim()),
                _ => false,
            },
            Matcher::SameUrls(want) => match (url_set(want), url_set(v)) {
                (Some(w), Some(f)) => w == f,
                _ => false,
            },
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
            Matcher::Matches(p) => {
                let src = r.text(&p.source)?;
                let re = Regex::new(&src).map_err(|e| {
                    crate::Error::other(format!("regular expression `{src}` after rendering: {e}"))
                })?;
                Matcher::Matches(Pattern {
                    source: src,
                    regex: Some(re),
                })
            }
            Matcher::Lt(n) => Matcher::Lt(n.render(r, "lt")?),
            Matcher::Gt(n) => Matcher::Gt(n.render(r, "gt")?),
            Matcher::SamePath(v) => Matcher::SamePath(text(v)?),
            Matcher::SameUrls(v) => Matcher::SameUrls(text(v)?),
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

/// The number `lt` and `gt` compare with: written as a number, or as a template string
/// (`"{{ params.max_ms }}"`) that must render to one (checked when the scenario is rendered
/// for a node).
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    /// A number.
    Number(f64),
    /// A template, not rendered yet.
    Template(String),
}

impl Bound {
    /// The number, once rendered (`None` for a template that was not).
    pub fn number(&self) -> Option<f64> {
        match self {
            Bound::Number(n) => Some(*n),
            Bound::Template(_) => None,
        }
    }

    /// Renders a template bound. Errors: the rendered text is not a number (the error names
    /// the operator, the template and what it rendered to).
    fn render(&self, r: &crate::template::Renderer, op: &str) -> crate::Result<Bound> {
        match self {
            Bound::Number(n) => Ok(Bound::Number(*n)),
            Bound::Template(t) => {
                let out = r.text(t)?;
                out.trim().parse::<f64>().map(Bound::Number).map_err(|_| {
                    crate::Error::other(format!(
                        "`{op}: \"{t}\"` renders to `{out}`, which is not a number"
                    ))
                })
            }
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Number(n) => write!(f, "{n}"),
            Bound::Template(t) => f.write_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for Bound {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bound, D::Error> {
        d.deserialize_any(BoundVisitor)
    }
}

struct BoundVisitor;

impl<'de> Visitor<'de> for BoundVisitor {
    type Value = Bound;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, or a template that renders to one (\"{{ params.max_ms }}\")")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Bound, E> {
        Ok(Bound::Number(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Bound, E> {
        Ok(Bound::Number(v as f64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Bound, E> {
        Ok(Bound::Number(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Bound, E> {
        if let Ok(n) = v.trim().parse::<f64>() {
            return Ok(Bound::Number(n));
        }
        if v.contains("{{") {
            return Ok(Bound::Template(v.to_string()));
        }
        Err(E::custom(format!(
            "`{v}` is not a number; `lt` and `gt` take a number or a template that renders to one (\"{{{{ params.max_ms }}}}\")"
        )))
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

/// `p` with `//` and `/./` collapsed, `..` resolved by name (never above `/`) and a trailing
/// `/` dropped: `/var/lib//etcd/` and `/var/lib/x/../etcd` are `/var/lib/etcd`. Lexical only:
/// symlinks are not followed (the node's filesystem is not consulted).
pub fn normal_path(p: &str) -> String {
    let absolute = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// A URL list as a set of canonical URLs (`scheme://host:port/path?query`), or `None` when an
/// item is not a URL with a host. `v` is a list of strings, or one string of URLs separated by
/// commas and whitespace (how etcd and the API server take them: `--listen-client-urls`,
/// `--etcd-servers`). Parsed with the `url` crate (WHATWG URL rules): scheme and host
/// lowercased, the default port of `http`/`https` made explicit, the path normalized with
/// [`normal_path`] (empty = `/`).
pub fn url_set(v: &Value) -> Option<std::collections::BTreeSet<String>> {
    let items: Vec<String> = match v {
        Value::String(s) => s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string))
            .collect::<Option<_>>()?,
        _ => return None,
    };
    if items.is_empty() {
        return None;
    }
    items
        .iter()
        .map(|item| {
            let u = url::Url::parse(item.trim()).ok()?;
            let host = u.host_str()?.to_ascii_lowercase();
            let port = u
                .port_or_known_default()
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            let path = normal_path(if u.path().is_empty() { "/" } else { u.path() });
            let query = u.query().map(|q| format!("?{q}")).unwrap_or_default();
            Some(format!("{}://{host}{port}{path}{query}", u.scheme()))
        })
        .collect()
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
            Matcher::Matches(p) => write!(f, "matches /{}/", p.source),
            Matcher::Lt(n) => write!(f, "< {n}"),
            Matcher::Gt(n) => write!(f, "> {n}"),
            Matcher::SamePath(v) => write!(f, "the same path as {}", shown(v)),
            Matcher::SameUrls(v) => write!(f, "the same URLs as {}", shown(v)),
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

const OPS: &str = "equals, contains, matches, lt, gt, same_path, same_urls, not, all, any";

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
                Matcher::Matches(Pattern::parse(pattern).map_err(de::Error::custom)?)
            }
            "lt" => Matcher::Lt(map.next_value()?),
            "gt" => Matcher::Gt(map.next_value()?),
            "same_path" => Matcher::SamePath(Value::String(map.next_value()?)),
            "same_urls" => {
                let v: Value = map.next_value()?;
                if !matches!(v, Value::String(_))
                    && !v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
                {
                    return Err(de::Error::custom(
                        "`same_urls` takes a comma-separated string of URLs or a list of URLs",
                    ));
                }
                Matcher::SameUrls(v)
            }
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
    fn a_pattern_may_hold_a_template_and_is_compiled_once_rendered() {
        let mut p = std::collections::BTreeMap::new();
        p.insert("ip".to_string(), "198.18.0.11".to_string());
        let r = crate::template::Renderer::params_only(&p);
        // `{{` alone is not a valid regular expression: the template is left for rendering.
        let sans = m("{matches: 'IP Address:{{ params.ip }}(,|$)'}");
        assert_eq!(
            sans.to_string(),
            "matches /IP Address:{{ params.ip }}(,|$)/"
        );
        assert!(
            !sans.matches(Some(&json!("IP Address:198.18.0.11"))),
            "not rendered yet"
        );
        let sans = sans.render(&r).expect("renders");
        assert_eq!(sans.to_string(), "matches /IP Address:198.18.0.11(,|$)/");
        assert!(sans.matches(Some(&json!("DNS:localhost, IP Address:198.18.0.11"))));
        assert!(!sans.matches(Some(&json!("IP Address:198.18.0.12"))));
        // The rest of a templated pattern is still checked when the file is read.
        let e = serde_saphyr::from_str::<Matcher>("{matches: '({{ params.ip }}'}").unwrap_err();
        assert!(e.to_string().contains("invalid regular expression"), "{e}");
    }

    #[test]
    fn number_matchers_take_a_template_that_renders_to_a_number() {
        let mut p = std::collections::BTreeMap::new();
        p.insert("min".to_string(), "100".to_string());
        p.insert("word".to_string(), "many".to_string());
        let r = crate::template::Renderer::params_only(&p);
        let gt = m("{gt: '{{ params.min }}'}");
        assert_eq!(gt.to_string(), "> {{ params.min }}");
        // Not rendered yet: holds for nothing.
        assert!(!gt.matches(Some(&json!(500))));
        let gt = gt.render(&r).expect("renders");
        assert_eq!(gt.to_string(), "> 100");
        assert!(gt.matches(Some(&json!(500))));
        assert!(!gt.matches(Some(&json!(50))));
        // A number written as a string is a number.
        assert!(m("{lt: '2.5'}").matches(Some(&json!(2))));
        let e = m("{lt: '{{ params.word }}'}")
            .render(&r)
            .expect_err("not a number");
        assert!(
            e.to_string()
                .contains("`lt: \"{{ params.word }}\"` renders to `many`, which is not a number"),
            "{e}"
        );
        let e = serde_saphyr::from_str::<Matcher>("{gt: lots}").unwrap_err();
        assert!(
            e.to_string()
                .contains("`lots` is not a number; `lt` and `gt` take a number or a template"),
            "{e}"
        );
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

    #[test]
    fn same_path_compares_paths_not_spelling() {
        let same = m("{same_path: /var/lib/etcd}");
        for ok in [
            "/var/lib/etcd",
            "/var/lib/etcd/",
            "/var/lib//etcd",
            "/var/./lib/x/../etcd",
        ] {
            assert!(same.matches(Some(&json!(ok))), "{ok}");
        }
        for bad in [
            "/var/lib/etcd-restore",
            "/var/lib",
            "var/lib/etcd",
            "",
            "/var/lib/etcd/member",
        ] {
            assert!(!same.matches(Some(&json!(bad))), "{bad}");
        }
        assert!(!same.matches(Some(&json!(3))));
        assert_eq!(normal_path("/../a/./b/"), "/a/b");
        assert_eq!(normal_path("a/../../b"), "../b");
        assert_eq!(normal_path("/"), "/");
        assert_eq!(same.to_string(), "the same path as /var/lib/etcd");
    }

    #[test]
    fn same_urls_compares_sets_of_parsed_urls() {
        let same = m("{same_urls: 'https://127.0.0.1:2379,https://198.18.0.11:2379'}");
        for ok in [
            json!("https://127.0.0.1:2379,https://198.18.0.11:2379"),
            json!("https://198.18.0.11:2379,https://127.0.0.1:2379"),
            json!("https://198.18.0.11:2379/, HTTPS://127.0.0.1:2379"),
            json!("https://127.0.0.1:2379,https://198.18.0.11:2379,https://127.0.0.1:2379"),
            json!(["https://127.0.0.1:2379", "https://198.18.0.11:2379"]),
        ] {
            assert!(same.matches(Some(&ok)), "{ok}");
        }
        for bad in [
            json!("https://127.0.0.1:2379"),
            json!("http://127.0.0.1:2379,http://198.18.0.11:2379"),
            json!("https://127.0.0.1:2379,https://198.18.0.11:2380"),
            json!("https://127.0.0.1:2379,https://198.18.0.1:2379"),
            json!("https://127.0.0.1:2379,198.18.0.11:2379"),
            json!(""),
        ] {
            assert!(!same.matches(Some(&bad)), "{bad}");
        }
        // The scheme's default port is the same port written out.
        assert!(m("{same_urls: 'https://etcd.example'}")
            .matches(Some(&json!("https://ETCD.example:443/"))));
        let e = serde_saphyr::from_str::<Matcher>("{same_urls: {a: 1}}").unwrap_err();
        assert!(
            e.to_string().contains("comma-separated string of URLs"),
            "{e}"
        );
    }
}
