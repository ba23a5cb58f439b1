//! Diagnostics: a problem in a scenario or grader file at `file:line:col`, with its stable
//! code ([`Code`], `BF120`), rendered with a caret snippet of the source (miette's graphical
//! handler; plain ASCII without colour so the text is stable for snapshots and logs).

use std::borrow::Cow;

use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, NamedSource, Report,
};
use serde::Serialize;
use serde_saphyr::MessageFormatter;

pub use super::codes::Code;
use super::tree::{Node, Pos};

/// One problem found while loading or validating a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file, as given on the command line (or the grader path derived from it).
    pub file: String,
    /// 1-based line; 0 when the problem has no position (e.g. the file cannot be read).
    pub line: u64,
    /// 1-based column, in characters; 0 when unknown.
    pub column: u64,
    /// Which rule: a stable code such as `BF120` (docs/diagnostics.md).
    pub code: Code,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// Length of the offending text in characters (0: a single position).
    #[serde(skip_serializing_if = "is_zero")]
    pub length: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Width of the rendering (fixed, so output does not depend on the terminal); messages and
/// help are not wrapped.
const WIDTH: usize = 100;

impl Diagnostic {
    /// A diagnostic `code` at `line:column` of `file`.
    pub fn new(
        code: Code,
        file: impl Into<String>,
        line: u64,
        column: u64,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            file: file.into(),
            line,
            column,
            code,
            message: message.into(),
            help: None,
            length: 0,
        }
    }

    /// A diagnostic `code` covering the text at `pos`.
    pub fn at(
        code: Code,
        file: impl Into<String>,
        pos: Pos,
        message: impl Into<String>,
    ) -> Diagnostic {
        let mut d = Diagnostic::new(code, file, pos.line, pos.column, message);
        d.length = pos.len;
        d
    }

    /// A diagnostic `code` without a position (unreadable file and the like).
    pub fn whole_file(
        code: Code,
        file: impl Into<String>,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic::new(code, file, 0, 0, message)
    }

    /// Adds a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Sets the highlighted length (characters).
    pub fn with_length(mut self, length: u64) -> Diagnostic {
        self.length = length;
        self
    }

    /// `file:line:col` (or just `file` without a position).
    pub fn location(&self) -> String {
        if self.line == 0 {
            self.file.clone()
        } else {
            format!("{}:{}:{}", self.file, self.line, self.column)
        }
    }

    /// One line: `file:line:col: [BF120] message`.
    pub fn one_line(&self) -> String {
        format!("{}: [{}] {}", self.location(), self.code, self.message)
    }

    /// From a serde-saphyr error while reading `file` (whose text is `source`): its position
    /// and a message without the crate's own snippet (we render ours), reworded for lab
    /// authors where the parser's wording is about Rust types; adds a "did you mean" help for
    /// near misses. A multi-line message keeps its first line; the rest goes to the help.
    /// The code says which kind of parse error it is (`BF0xx`).
    pub fn from_yaml(file: &str, source: &str, err: &serde_saphyr::Error) -> Diagnostic {
        let original = original_error(err);
        let mut pos = err.location().filter(|l| l.line() > 0).map(|l| Pos::of(&l));
        if let (serde_saphyr::Error::SerdeMissingField { .. }, Some(p)) = (original, pos) {
            // The parser reports a missing field where the mapping ended; point at the
            // mapping's first key instead (the item that lacks the field).
            if let Some(first) = super::tree::parse(source).ok().and_then(|t| {
                t.mapping_with_entry_at(p.line, p.column)
                    .and_then(Node::first_key_pos)
            }) {
                pos = Some(first);
            }
        }
        if let (serde_saphyr::Error::Message { msg, .. }, Some(p)) = (original, pos) {
            // Custom errors (matchers, durations, `kind` first) are raised where their
            // mapping starts; point at the value the message quotes when it follows on the
            // same line.
            if let Some(better) = last_quoted(msg).and_then(|q| find_after(source, p, q)) {
                pos = Some(better);
            }
        }
        let found = pos.and_then(|p| {
            let off = p.byte_offset?;
            source.get(off..off + p.byte_len).filter(|t| !t.is_empty())
        });
        let parser_text = serde_saphyr::DefaultMessageFormatter
            .format_message(original)
            .into_owned();
        let (message, help) = reword(original, &parser_text, found, pos, source);
        let (message, help) = split_lines(message, help);
        let code = yaml_code(original, pos, source);
        let mut d = match pos {
            Some(p) => Diagnostic::at(code, file, p, message),
            None => Diagnostic::whole_file(code, file, message),
        };
        d.help = help;
        d
    }

    /// Renders the diagnostic against `source` (the text of `self.file`): a header with the
    /// code and the message (`x [BF120] undefined target ...`), a `[file:line:col]` line and
    /// the source lines around it with carets under the offending text, then the help.
    /// `color = false` gives plain ASCII.
    pub fn render(&self, source: &str, color: bool) -> String {
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::none()
        };
        let handler = GraphicalReportHandler::new_themed(theme)
            .with_links(false)
            .with_width(WIDTH)
            .with_wrap_lines(false)
            .with_context_lines(1)
            .without_syntax_highlighting();
        let mut diag = MietteDiagnostic::new(format!("[{}] {}", self.code, self.message));
        if let Some(h) = &self.help {
            diag = diag.with_help(h.clone());
        }
        let span = if self.line > 0 {
            byte_span(source, self.line, self.column, self.length)
        } else {
            None
        };
        let mut out = String::new();
        let rendered = match span {
            Some((offset, len)) => {
                let diag = diag.with_labels(vec![LabeledSpan::new_primary_with_span(
                    None,
                    (offset, len),
                )]);
                let report = Report::new(diag)
                    .with_source_code(NamedSource::new(self.file.clone(), source.to_string()));
                handler.render_report(&mut out, report.as_ref())
            }
            None => {
                let mut diag = diag;
                diag.message = format!("[{}] {}: {}", self.code, self.location(), self.message);
                handler.render_report(&mut out, &diag)
            }
        };
        if rendered.is_err() {
            // Rendering into a String cannot fail in practice; fall back to the plain form.
            out = format!("{}\n", self.one_line());
            if let Some(h) = &self.help {
                out.push_str(&format!("  help: {h}\n"));
            }
        }
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out
    }
}

/// Renders several diagnostics, each against the source of its own file (`source_of`);
/// a diagnostic whose source is unknown is rendered without a snippet.
pub fn render_all<'a>(
    diags: &[Diagnostic],
    source_of: impl Fn(&str) -> Option<&'a str>,
    color: bool,
) -> String {
    let mut out = String::new();
    for (i, d) in diags.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&d.render(source_of(&d.file).unwrap_or(""), color));
    }
    out
}

/// Byte offset and byte length of `length` characters starting at `line:column`, clamped to
/// the line (a position just past the end of the line is allowed).
fn byte_span(source: &str, line: u64, column: u64, length: u64) -> Option<(usize, usize)> {
    let line_idx = usize::try_from(line.checked_sub(1)?).ok()?;
    let mut start = 0usize;
    if line_idx > 0 {
        let (pos, _) = source.match_indices('\n').nth(line_idx - 1)?;
        start = pos + 1;
    }
    let rest = &source[start..];
    let line_text = rest.split('\n').next().unwrap_or("");
    let col = usize::try_from(column.saturating_sub(1)).ok()?;
    let mut chars = line_text.char_indices();
    let begin = match chars.clone().nth(col) {
        Some((b, _)) => b,
        None => line_text.len(),
    };
    let len_chars = usize::try_from(length).ok()?;
    let end = if len_chars == 0 {
        begin
    } else {
        chars
            .nth(col + len_chars)
            .map(|(b, _)| b)
            .unwrap_or(line_text.len())
            .max(begin)
    };
    Some((start + begin, end - begin))
}

/// The code of a parser error at `pos` of `source`.
fn yaml_code(err: &serde_saphyr::Error, pos: Option<Pos>, source: &str) -> Code {
    use serde_saphyr::Error as E;
    match err {
        E::DuplicateMappingKey { .. } => Code::DuplicateKey,
        E::SerdeUnknownField { .. } => Code::UnknownField,
        E::SerdeMissingField { .. } => Code::MissingField,
        E::SerdeUnknownVariant { .. } => {
            if pos.is_some_and(|p| key_before(source, p).as_deref() == Some("kind")) {
                Code::UnknownKind
            } else {
                Code::UnknownValue
            }
        }
        E::InvalidBooleanStrict { .. } => Code::NotABoolean,
        E::Unexpected { .. }
        | E::InvalidScalar { .. }
        | E::SerdeInvalidType { .. }
        | E::SerdeInvalidLength { .. }
        | E::NullIntoString { .. }
        | E::InvalidCharNull { .. }
        | E::InvalidCharNotSingleScalar { .. }
        | E::UnexpectedValueForUnit { .. }
        | E::ExpectedEmptyMappingForUnitStruct { .. }
        | E::ExternallyTaggedEnumExpectedScalarOrMapping { .. }
        | E::ExpectedStringKeyForExternallyTaggedEnum { .. }
        | E::UnexpectedValueForUnitEnumVariant { .. }
        | E::BytesNotSupportedMissingBinaryTag { .. }
        | E::TaggedScalarCannotDeserializeIntoString { .. } => Code::WrongType,
        E::SerdeInvalidValue { .. } | E::NonFiniteFloat { .. } => Code::InvalidValue,
        E::Message { msg, .. } => custom_code(msg),
        _ => Code::YamlSyntax,
    }
}

/// The code of an error the crate's own deserializers raise ([`crate::kind_first_enum!`],
/// [`crate::duration::Dur`], [`crate::matcher::Matcher`], ...), by its wording; any other
/// is an invalid value.
fn custom_code(msg: &str) -> Code {
    let has = |s: &str| msg.contains(s);
    if has("`kind` must be the first key of") || has(" needs `kind` (one of ") {
        Code::KindNotFirst
    } else if msg.starts_with("invalid duration `") || has("a duration cannot be negative") {
        Code::InvalidDuration
    } else if msg.starts_with("unknown matcher `")
        || msg.starts_with("empty matcher:")
        || msg.starts_with("a matcher has exactly one operator")
        || msg.starts_with("invalid regular expression `")
        || has("`lt` and `gt` take a number")
    {
        Code::InvalidMatcher
    } else {
        Code::InvalidValue
    }
}

fn original_error(mut err: &serde_saphyr::Error) -> &serde_saphyr::Error {
    loop {
        match err {
            serde_saphyr::Error::WithSnippet { error, .. }
            | serde_saphyr::Error::AliasError { error, .. } => err = error,
            other => return other,
        }
    }
}

/// Message and help for a parser error. `found` is the source text at the error's position.
fn reword(
    err: &serde_saphyr::Error,
    parser_text: &str,
    found: Option<&str>,
    pos: Option<Pos>,
    source: &str,
) -> (String, Option<String>) {
    use serde_saphyr::Error as E;
    match err {
        E::SerdeUnknownField {
            field, expected, ..
        } => (
            format!("unknown field `{field}`"),
            Some(
                suggest(field, expected)
                    .unwrap_or_else(|| format!("allowed here: {}", list(expected))),
            ),
        ),
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => {
            let is_kind = pos.is_some_and(|p| key_before(source, p).as_deref() == Some("kind"));
            let what = if is_kind { "kind" } else { "value" };
            (
                format!("unknown {what} `{variant}`"),
                Some(match suggest(variant, expected) {
                    Some(s) => s,
                    None => format!("expected one of: {}", list(expected)),
                }),
            )
        }
        E::SerdeMissingField { field, .. } => (
            format!("missing field `{field}`"),
            Some(format!("add `{field}:` to this mapping")),
        ),
        E::Unexpected { expected, .. } => {
            let want = match *expected {
                "sequence start" => "a list",
                "mapping start" => "a mapping (`key: value` lines)",
                "scalar" | "string scalar" => "a single value (text or a number)",
                other => other,
            };
            let found = found.map(|f| f.lines().next().unwrap_or(f)).map(|f| {
                if f.chars().count() > 40 {
                    format!("{}...", f.chars().take(40).collect::<String>())
                } else {
                    f.to_string()
                }
            });
            (
                match found {
                    Some(f) => format!("expected {want}, found `{f}`"),
                    None => format!("expected {want}"),
                },
                None,
            )
        }
        E::DuplicateMappingKey { key, .. } => (
            match key {
                Some(k) => format!("duplicate key `{k}`"),
                None => "duplicate key".to_string(),
            },
            Some("each key may appear only once in a mapping".into()),
        ),
        E::InvalidBooleanStrict { .. } => (
            match found {
                Some(f) => format!("expected `true` or `false`, found `{f}`"),
                None => "expected `true` or `false`".into(),
            },
            Some("only `true` and `false` are booleans here (yes/no/on/off are not)".into()),
        ),
        E::InvalidScalar { ty, .. } => {
            let want = match *ty {
                "u8" | "u16" | "u32" | "u64" | "usize" => match *ty {
                    "u8" => "a whole number from 0 to 255".to_string(),
                    "u16" => "a whole number from 0 to 65535".to_string(),
                    _ => "a whole number (0 or more)".to_string(),
                },
                "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_string(),
                "f32" | "f64" => "a number".to_string(),
                "bool" => "`true` or `false`".to_string(),
                other => format!("a value of type {other}"),
            };
            (
                match found {
                    Some(f) => format!("expected {want}, found `{f}`"),
                    None => format!("expected {want}"),
                },
                None,
            )
        }
        E::ExternalMessage { .. } => (
            format!("YAML syntax error: {parser_text}"),
            Some("the cause may be on an earlier line: an unclosed `[`, `{` or quote, or a wrong indentation".into()),
        ),
        _ => (parser_text.to_string(), yaml_help(err)),
    }
}

/// The last `backtick-quoted` fragment of a message.
fn last_quoted(msg: &str) -> Option<&str> {
    let end = msg.rfind('`')?;
    let start = msg[..end].rfind('`')? + 1;
    Some(&msg[start..end]).filter(|q| !q.is_empty())
}

/// `needle` in `source` at or after `from`, on the same line.
fn find_after(source: &str, from: Pos, needle: &str) -> Option<Pos> {
    let off = from.byte_offset?;
    let line_end = source
        .get(off..)?
        .find('\n')
        .map(|i| off + i)
        .unwrap_or(source.len());
    let i = source.get(off..line_end)?.find(needle)? + off;
    Some(Pos {
        line: from.line,
        column: from.column + source[off..i].chars().count() as u64,
        byte_offset: Some(i),
        byte_len: needle.len(),
        len: needle.chars().count() as u64,
    })
}

/// The mapping key written before the value at `pos` on the same line (`kind: x` -> `kind`).
fn key_before(source: &str, pos: Pos) -> Option<String> {
    let off = pos.byte_offset?;
    let line_start = source.get(..off)?.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let before = source.get(line_start..off)?.trim_end();
    let before = before.strip_suffix(':')?;
    let key = before
        .rsplit(|c: char| c.is_whitespace() || c == '{' || c == ',' || c == '-')
        .next()?;
    Some(key.to_string())
}

/// Keeps a message on one line: extra lines (e.g. a regex error's own caret drawing) move
/// to the help.
fn split_lines(message: String, help: Option<String>) -> (String, Option<String>) {
    let mut lines = message.lines();
    let mut first = sanitize(lines.next().unwrap_or("").trim_end());
    let mut rest: Vec<&str> = lines.filter(|l| !l.trim().is_empty()).collect();
    // `...: regex parse error:` + drawing + `error: unclosed group`: the cause joins the
    // message, the drawing goes to the help.
    if first.ends_with(':') {
        if let Some(cause) = rest.last().and_then(|l| l.trim().strip_prefix("error: ")) {
            first = format!("{first} {}", sanitize(cause));
            rest.pop();
        }
    }
    if rest.is_empty() {
        return (first, help);
    }
    let mut extra = rest.join("\n");
    if let Some(h) = help {
        extra = format!("{h}\n{extra}");
    }
    (first, Some(extra))
}

/// Control characters escaped, so a message is one line.
fn sanitize(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_debug().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn yaml_help(err: &serde_saphyr::Error) -> Option<String> {
    match err {
        serde_saphyr::Error::Eof { .. } => Some("the file ends in the middle of a value".into()),
        _ => None,
    }
}

fn list(items: &[&str]) -> String {
    if items.is_empty() {
        "nothing".into()
    } else {
        items
            .iter()
            .map(|i| format!("`{i}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `did you mean `x`?` when one candidate is close to `word`.
pub fn suggest<S: AsRef<str>>(word: &str, candidates: &[S]) -> Option<String> {
    closest(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// The candidate nearest to `word` by edit distance, if close enough to be a typo.
pub fn closest<'a, S: AsRef<str>>(word: &str, candidates: &'a [S]) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    let near = candidates
        .iter()
        .map(|c| (levenshtein(word, c.as_ref()), c.as_ref()))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c);
    // A prefix of a longer name (`stable` for `stable_for`), when it is the only one.
    near.or_else(|| {
        let mut longer = candidates
            .iter()
            .map(AsRef::as_ref)
            .filter(|c| word.len() >= 4 && c.starts_with(word));
        match (longer.next(), longer.next()) {
            (Some(c), None) => Some(c),
            _ => None,
        }
    })
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `a, b, c` with backticks, or `none`.
pub fn names<S: AsRef<str>>(items: &[S]) -> Cow<'static, str> {
    if items.is_empty() {
        Cow::Borrowed("none")
    } else {
        Cow::Owned(
            items
                .iter()
                .map(|i| format!("`{}`", i.as_ref()))
                .collect::<Vec<_>>()
                .join(", "),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_clamped_to_the_line() {
        let src = "ab\ncdé\n";
        assert_eq!(byte_span(src, 2, 3, 1), Some((5, 2)));
        assert_eq!(byte_span(src, 2, 2, 9), Some((4, 3)));
        assert_eq!(byte_span(src, 1, 3, 0), Some((2, 0)));
        assert_eq!(byte_span(src, 9, 1, 0), None);
    }

    #[test]
    fn suggestions() {
        assert_eq!(closest("tagz", &["tags", "title"]), Some("tags"));
        assert_eq!(closest("zzzz", &["tags", "title"]), None);
        assert_eq!(
            closest("stable", &["stable_for", "timeout"]),
            Some("stable_for")
        );
    }

    /// The code of the first parse error of `yaml` read as a `T`.
    fn code_of<T: serde::de::DeserializeOwned + std::fmt::Debug>(yaml: &str) -> Code {
        let err = serde_saphyr::from_str_with_options::<T>(yaml, super::super::load::options())
            .expect_err(yaml);
        Diagnostic::from_yaml("x.yaml", yaml, &err).code
    }

    /// Errors raised by the crate's own deserializers get their own codes (by wording: this
    /// catches a reworded message that would fall back to "invalid value").
    #[test]
    fn parse_errors_have_their_codes() {
        use crate::duration::Dur;
        use crate::fault::Action;
        use crate::matcher::Matcher;
        use crate::probe::Probe;
        assert_eq!(code_of::<Dur>("soon"), Code::InvalidDuration);
        assert_eq!(code_of::<Dur>("-5"), Code::InvalidDuration);
        assert_eq!(code_of::<Dur>("[1]"), Code::WrongType);
        assert_eq!(code_of::<Matcher>("{ includes: x }"), Code::InvalidMatcher);
        assert_eq!(code_of::<Matcher>("{}"), Code::InvalidMatcher);
        assert_eq!(
            code_of::<Matcher>("{ equals: 1, contains: 2 }"),
            Code::InvalidMatcher
        );
        assert_eq!(code_of::<Matcher>("{ matches: '(' }"), Code::InvalidMatcher);
        assert_eq!(code_of::<Matcher>("{ lt: many }"), Code::InvalidMatcher);
        assert_eq!(
            code_of::<Probe>("{ name: x, kind: systemd, unit: etcd }"),
            Code::KindNotFirst
        );
        assert_eq!(code_of::<Probe>("{}"), Code::KindNotFirst);
        assert_eq!(
            code_of::<Probe>("{ kind: sytemd, unit: etcd }"),
            Code::UnknownKind
        );
        assert_eq!(
            code_of::<Action>("{ kind: systemd, unit: etcd, action: halt }"),
            Code::UnknownValue
        );
        assert_eq!(
            code_of::<Action>("{ kind: systemd, unit: etcd, action: stop, runs: 1 }"),
            Code::UnknownField
        );
        assert_eq!(
            code_of::<Action>("{ kind: systemd, unit: etcd }"),
            Code::MissingField
        );
        assert_eq!(
            code_of::<Action>("{ kind: netem, interface: eth0, loss: 150% }"),
            Code::InvalidValue
        );
        assert_eq!(
            code_of::<Action>("{ kind: systemd, unit: etcd, unit: kubelet, action: stop }"),
            Code::DuplicateKey
        );
        assert_eq!(
            code_of::<Action>("{ kind: systemd, unit: etcd, action: stop, name: [1, 2] }"),
            Code::WrongType
        );
        assert_eq!(code_of::<Dur>("'soon"), Code::YamlSyntax);
    }

    #[test]
    fn json_has_the_code() {
        let d = Diagnostic::new(Code::UndefinedTarget, "x.yaml", 2, 3, "bad");
        let j = serde_json::to_value(&d).expect("json");
        assert_eq!(j["code"], Code::UndefinedTarget.as_str());
        let whole = Diagnostic::whole_file(Code::Unreadable, "x.yaml", "cannot read the file");
        assert!(whole.render("", false).contains(&format!(
            "[{}] x.yaml: cannot read the file",
            Code::Unreadable
        )));
        assert_eq!(
            whole.one_line(),
            format!("x.yaml: [{}] cannot read the file", Code::Unreadable)
        );
    }

    #[test]
    fn renders_plain() {
        let d = Diagnostic::new(Code::UnknownField, "x.yaml", 2, 3, "bad")
            .with_length(2)
            .with_help("fix it");
        let out = d.render("a: 1\nb: cd\n", false);
        assert!(
            out.contains(&format!("x [{}] bad", Code::UnknownField)),
            "{out}"
        );
        assert!(out.contains("[x.yaml:2:3]"), "{out}");
        assert!(out.contains("^^"), "{out}");
        assert!(out.contains("help: fix it"), "{out}");
    }
}
