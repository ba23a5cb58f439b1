//! Templates: every `{{ ... }}` / `{% ... %}` in a scenario or grader value parses, uses
//! only declared params and known variables, attributes and filters, and sits where it is
//! rendered.

use std::collections::BTreeMap;

use minijinja::{Environment, ErrorKind};

use super::{pos_at, Validator};
use crate::scenario::diagnostic::{closest, names, Code, Diagnostic};
use crate::scenario::tree::{Node, Pos, Step};

/// Top-level template variables besides minijinja's global functions.
pub const TEMPLATE_ROOTS: &[&str] = &["params", "node", "nodes", "cluster"];

/// Attributes of `node` (and of each item of `nodes`).
const NODE_ATTRS: &[&str] = &["name", "address", "roles"];
/// Attributes of `cluster`.
const CLUSTER_ATTRS: &[&str] = &["name", "topology", "etcd", "kubeconfig"];
/// Attributes of `cluster.etcd`.
const ETCD_ATTRS: &[&str] = &["endpoints", "endpoint", "ca_file", "cert_file", "key_file"];

impl Validator<'_> {
    pub(super) fn templates(&mut self) {
        let mut scenario_params: BTreeMap<String, String> = BTreeMap::new();
        for g in &self.l.graders {
            for (k, p) in &g.grader.params {
                scenario_params.insert(k.clone(), p.default.0.clone());
            }
        }
        for (k, p) in &self.l.scenario.params {
            scenario_params.insert(k.clone(), p.default.0.clone());
        }
        let l = self.l;
        if let Some(t) = l.tree.as_ref() {
            let sf = self.sf.clone();
            self.templates_in(
                &sf,
                &l.source,
                t,
                &scenario_params,
                "the scenario's `params:` (or an included grader's)",
            );
        }
        for g in &l.graders {
            let own: BTreeMap<String, String> = g
                .grader
                .params
                .iter()
                .map(|(k, p)| (k.clone(), p.default.0.clone()))
                .collect();
            if let Some(t) = g.tree.as_ref() {
                self.templates_in(
                    &g.path.display().to_string(),
                    &g.source,
                    t,
                    &own,
                    "the grader's `params:` (a scenario can override its default)",
                );
            }
        }
    }

    fn templates_in(
        &mut self,
        file: &str,
        source: &str,
        tree: &Node,
        params: &BTreeMap<String, String>,
        declare_where: &str,
    ) {
        // (where, node, value, is the bound of a number matcher)
        let mut scalars: Vec<(Where, &Node, &str, bool)> = Vec::new();
        tree.each_scalar(&mut |path, n, s| {
            let bound = matches!(path.last(), Some(Step::Key("lt" | "gt")));
            scalars.push((classify(path), n, s, bound))
        });
        for (place, node, value, bound) in scalars {
            let Some(off) = node.pos.byte_offset else {
                continue;
            };
            let Some(raw) = source.get(off..off + node.pos.byte_len) else {
                continue;
            };
            if !raw.contains("{{") && !raw.contains("{%") && !raw.contains("{#") {
                continue;
            }
            let ctx = TemplateCtx {
                file,
                source,
                params,
                declare_where,
            };
            match place {
                Where::Rendered => {}
                Where::AsWritten(key) => {
                    let start = ["{{", "{%", "{#"]
                        .iter()
                        .filter_map(|m| raw.find(m))
                        .min()
                        .unwrap_or(0);
                    let end = ["}}", "%}", "#}"]
                        .iter()
                        .filter_map(|m| raw[start..].find(m))
                        .min()
                        .map(|e| start + e + 2)
                        .unwrap_or(raw.len());
                    let pos = pos_at(source, off + start, end - start);
                    let help = if key == "expect" {
                        "matcher values are compared as written; check the templated value in the probe itself (e.g. in a command's `run:`) instead".to_string()
                    } else {
                        format!("`{key}` is used as written; templates are rendered in the fields probes and steps act on (commands, units, paths, ...) and in the title, description, task text and hints")
                    };
                    self.push(
                        Diagnostic::at(
                            Code::TemplateNotRendered,
                            file,
                            pos,
                            format!("template in `{key}` is not rendered"),
                        )
                        .with_help(help),
                    );
                    continue;
                }
            }
            let before = self.out.len();
            if raw.contains("{%") || raw.contains("{#") {
                // Statements (`{% for %}`, `{% set %}`) bind names: check the value as a whole.
                self.whole_template(&ctx, node, raw, value);
            } else {
                self.expressions(&ctx, off, raw);
            }
            // `lt` / `gt` compare with a number: the template must render to one.
            if bound && self.out.len() == before {
                if let Ok(out) = self.render_sample(value, params) {
                    if out.trim().parse::<f64>().is_err() {
                        let pos = pos_at(source, off, node.pos.byte_len);
                        self.push(
                            Diagnostic::at(
                                Code::BoundNotNumber,
                                file,
                                pos,
                                format!("`{value}` renders to `{out}`, which is not a number"),
                            )
                            .with_help("`lt` and `gt` compare with a number: give the param a numeric default (a learner's or instructor's `--param` must be one too)"),
                        );
                    }
                }
            }
        }
    }

    /// Every `{{ ... }}` of a scalar's source text `raw` (at byte `off`), one at a time.
    fn expressions(&mut self, ctx: &TemplateCtx<'_>, off: usize, raw: &str) {
        let quote = raw.chars().next().filter(|c| *c == '"' || *c == '\'');
        let mut from = 0;
        // One Go-template diagnostic per value is enough (`{{range}}...{{end}}` has several).
        let mut go_reported = false;
        while let Some(i) = raw[from..].find("{{").map(|i| from + i) {
            let Some(j) = raw[i + 2..].find("}}").map(|j| i + 2 + j) else {
                let pos = pos_at(ctx.source, off + i, 2);
                self.push(
                    Diagnostic::at(
                        Code::UnclosedTemplate,
                        ctx.file,
                        pos,
                        "unclosed template expression: `{{` without `}}`",
                    )
                    .with_help(LITERAL_HELP),
                );
                return;
            };
            let text = &raw[i..j + 2];
            from = j + 2;
            let expr = unquote(text, quote);
            let at = off + i;
            if looks_like_go_template(&expr) {
                if go_reported {
                    continue;
                }
                go_reported = true;
                let pos = pos_at(ctx.source, at, text.len());
                self.push(
                    Diagnostic::at(
                        Code::GoTemplate,
                        ctx.file,
                        pos,
                        format!("`{text}` looks like a Go template, not a breakfix template"),
                    )
                    .with_help(LITERAL_HELP),
                );
                continue;
            }
            match self.env.template_from_str(&expr) {
                Err(e) => {
                    let pos = pos_at(ctx.source, at, text.len());
                    self.push(Diagnostic::at(Code::TemplateSyntax, ctx.file, pos, format!("template syntax error: {}", minijinja_message(&e))).with_help(format!("template expressions look like `{{{{ params.name }}}}`; {LITERAL_HELP}")));
                }
                Ok(t) => {
                    let mut vars: Vec<String> = t.undeclared_variables(true).into_iter().collect();
                    vars.sort();
                    let problems = self.variable_problems(&vars, ctx);
                    for (var, code, message, help) in &problems {
                        let pos = locate(ctx.source, at, text, var);
                        self.push(
                            Diagnostic::at(*code, ctx.file, pos, message.clone())
                                .with_help(help.clone()),
                        );
                    }
                    if problems.is_empty() {
                        if let Some(msg) = self.dry_render(&expr, ctx.params) {
                            let pos = pos_at(ctx.source, at, text.len());
                            self.push(
                                Diagnostic::at(Code::UnknownFilter, ctx.file, pos, msg)
                                    .with_help("filters: minijinja's built-in filters and `raw`"),
                            );
                        }
                    }
                }
            }
        }
    }

    /// A scalar with `{% ... %}` statements, checked as one template.
    fn whole_template(&mut self, ctx: &TemplateCtx<'_>, node: &Node, raw: &str, value: &str) {
        let start = node.pos.byte_offset.unwrap_or(0);
        let first_line = raw.split('\n').next().unwrap_or(raw);
        match self.env.template_from_str(value) {
            Err(e) => {
                let pos = pos_at(ctx.source, start, first_line.len());
                let line = e
                    .line()
                    .map(|l| format!(" (line {l} of the value)"))
                    .unwrap_or_default();
                self.push(Diagnostic::at(
                    Code::TemplateSyntax,
                    ctx.file,
                    pos,
                    format!("template syntax error{line}: {}", minijinja_message(&e)),
                ));
            }
            Ok(t) => {
                let mut vars: Vec<String> = t.undeclared_variables(true).into_iter().collect();
                vars.sort();
                let problems = self.variable_problems(&vars, ctx);
                for (var, code, message, help) in &problems {
                    let pos = locate(ctx.source, start, raw, var);
                    self.push(
                        Diagnostic::at(*code, ctx.file, pos, message.clone())
                            .with_help(help.clone()),
                    );
                }
                if problems.is_empty() {
                    if let Some(msg) = self.dry_render(value, ctx.params) {
                        let pos = pos_at(ctx.source, start, first_line.len());
                        self.push(Diagnostic::at(Code::UnknownFilter, ctx.file, pos, msg));
                    }
                }
            }
        }
    }

    /// `(variable text to point at, code, message, help)` for each variable the template
    /// context does not have.
    fn variable_problems(
        &self,
        vars: &[String],
        ctx: &TemplateCtx<'_>,
    ) -> Vec<(String, Code, String, String)> {
        let globals: Vec<String> = self.env.globals().map(|(k, _)| k.to_string()).collect();
        let mut out = Vec::new();
        for var in vars {
            let parts: Vec<&str> = var.split('.').collect();
            let root = parts[0];
            match root {
                "params" => {
                    let Some(name) = parts.get(1) else { continue };
                    if !ctx.params.contains_key(*name) {
                        let declared: Vec<&String> = ctx.params.keys().collect();
                        let help = match closest(name, &declared) {
                            Some(c) => format!("did you mean `params.{c}`?"),
                            None => format!(
                                "declare `{name}` with a default under {}; declared: {}",
                                ctx.declare_where,
                                names(&declared)
                            ),
                        };
                        out.push((
                            format!("params.{name}"),
                            Code::UndefinedParam,
                            format!("undefined param `{name}`"),
                            help,
                        ));
                    }
                }
                "node" | "cluster" => {
                    if let Some((bad, known)) = unknown_attr(&parts) {
                        out.push((
                            bad.clone(),
                            Code::UndefinedVariable,
                            format!("undefined template variable `{bad}`"),
                            format!(
                                "`{}` has {}",
                                bad.rsplit_once('.').map(|(p, _)| p).unwrap_or(root),
                                names(known)
                            ),
                        ));
                    }
                }
                "nodes" => {}
                _ if globals.iter().any(|g| g == root) => {}
                _ => {
                    let mut roots: Vec<&str> = TEMPLATE_ROOTS.to_vec();
                    roots.extend(globals.iter().map(String::as_str));
                    let help = match closest(root, &roots) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None => "templates can use `params.<name>`, `node` (name, address, roles), `nodes` and `cluster` (name, topology, etcd, kubeconfig)".to_string(),
                    };
                    out.push((
                        root.to_string(),
                        Code::UndefinedVariable,
                        format!("undefined template variable `{root}`"),
                        help,
                    ));
                }
            }
        }
        out
    }

    /// Renders `template` with sample values to find unknown filters, tests and functions.
    fn dry_render(&self, template: &str, params: &BTreeMap<String, String>) -> Option<String> {
        match self.render_sample(template, params) {
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::UnknownFilter | ErrorKind::UnknownTest | ErrorKind::UnknownFunction
                ) =>
            {
                Some(format!("template error: {}", minijinja_message(&e)))
            }
            _ => None,
        }
    }

    /// Renders `template` with the params' defaults and a sample node and cluster (the
    /// sandbox's controlplane, external topology).
    fn render_sample(
        &self,
        template: &str,
        params: &BTreeMap<String, String>,
    ) -> std::result::Result<String, minijinja::Error> {
        let node = minijinja::context! { name => "controlplane", address => "198.18.0.11", roles => vec!["control-plane"] };
        let ctx = minijinja::context! {
            params => params.clone(),
            node => node.clone(),
            nodes => vec![node],
            cluster => minijinja::context! {
                name => "cluster",
                topology => "external",
                kubeconfig => "/etc/kubernetes/admin.conf",
                etcd => minijinja::context! {
                    endpoints => vec!["https://127.0.0.1:2379"],
                    endpoint => "https://127.0.0.1:2379",
                    ca_file => "/etc/kubernetes/pki/etcd/ca.crt",
                    cert_file => "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
                    key_file => "/etc/kubernetes/pki/etcd/healthcheck-client.key",
                },
            },
        };
        self.env.render_str(template, ctx)
    }
}

/// How to keep `{{` literal (Go templates of kubectl, crictl, docker).
const LITERAL_HELP: &str = "to keep `{{ }}` as written (a kubectl or crictl Go template), wrap it: `{% raw %}...{% endraw %}`";

/// `{{.field}}`, `{{range ...}}`, `{{end}}`: Go template syntax (kubectl, crictl, docker).
fn looks_like_go_template(expr: &str) -> bool {
    let inner = expr.trim_start_matches("{{").trim_end_matches("}}").trim();
    let first = inner.split_whitespace().next().unwrap_or("");
    inner.starts_with('.')
        || inner.starts_with('$')
        || ["end", "else"].contains(&inner)
        || (["range", "with", "define", "template", "block"].contains(&first)
            && inner.contains(" ."))
        || (first == "if" && inner.contains(" ."))
}

/// What happens to the text of a scalar.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Where {
    /// A field of a probe or step that is rendered per node (`run:`, `unit:`, `path:`, ...).
    Rendered,
    /// A field used as written (the key named): a template there would never be rendered.
    AsWritten(String),
}

/// Keys of a probe or step whose values are not rendered.
const NOT_RENDERED: &[&str] = &[
    "kind",
    "name",
    "target",
    "needs",
    "timeout",
    "within",
    "interval",
    "stable_for",
];

/// Keys whose values are text for people.
const PROSE: &[&str] = &["title", "description", "text", "why"];

/// Text for people that the plan renders (`plan::build`): the scenario's title and
/// description, each task's title and text, each hint's text, a wrong fix's `why`.
fn rendered_prose(path: &[Step<'_>]) -> bool {
    matches!(
        path,
        [Step::Key("metadata"), Step::Key("title" | "description")]
            | [
                Step::Key("tasks"),
                Step::Idx(_),
                Step::Key("title" | "text")
            ]
            | [
                Step::Key("tasks"),
                Step::Idx(_),
                Step::Key("hints"),
                Step::Idx(_),
                Step::Key("text")
            ]
            | [
                Step::Key("wrong_fixes" | "alternative_fixes"),
                Step::Idx(_),
                Step::Key("why")
            ]
    )
}

/// Classifies a scalar by its path in a scenario or grader file.
fn classify(path: &[Step<'_>]) -> Where {
    let key = |i: usize| match path.get(i) {
        Some(Step::Key(k)) => Some(*k),
        _ => None,
    };
    let is_idx = |i: usize| matches!(path.get(i), Some(Step::Idx(_)));
    let last_key = path.iter().rev().find_map(|s| match s {
        Step::Key(k) => Some(*k),
        Step::Idx(_) => None,
    });
    if rendered_prose(path) {
        return Where::Rendered;
    }
    if key(0) == Some("metadata") || last_key.is_some_and(|k| PROSE.contains(&k)) {
        return Where::AsWritten(last_key.unwrap_or("this field").to_string());
    }
    // Where the fields of a probe or step start in `path`.
    let item_start = match key(0) {
        Some(
            "preconditions" | "confirm" | "signals" | "setup" | "faults" | "solution" | "probes",
        ) if is_idx(1) => Some(2),
        Some("verify") if key(1) == Some("probes") && is_idx(2) => Some(3),
        Some("tasks") if is_idx(1) && key(2) == Some("evidence") && is_idx(3) => Some(4),
        Some("wrong_fixes" | "alternative_fixes")
            if is_idx(1) && key(2) == Some("steps") && is_idx(3) =>
        {
            Some(4)
        }
        _ => None,
    };
    let Some(start) = item_start else {
        return Where::AsWritten(last_key.unwrap_or("this field").to_string());
    };
    match key(start) {
        Some(k) if NOT_RENDERED.contains(&k) => Where::AsWritten(k.to_string()),
        Some("edit") if key(start + 1) == Some("yaml_set") && key(start + 2) == Some("value") => {
            Where::AsWritten("value".into())
        }
        _ => Where::Rendered,
    }
}

/// Where a template is checked.
struct TemplateCtx<'a> {
    file: &'a str,
    source: &'a str,
    params: &'a BTreeMap<String, String>,
    declare_where: &'a str,
}

/// The environment templates are checked with: the renderer's own, so a template that
/// validates is one that renders.
pub(super) fn template_env() -> Environment<'static> {
    crate::template::environment()
}

/// For `node.x` / `cluster.x.y`: the first unknown attribute path and the known names there.
fn unknown_attr(parts: &[&str]) -> Option<(String, &'static [&'static str])> {
    let (root, rest) = parts.split_first()?;
    let first = rest.first()?;
    let known: &'static [&'static str] = if *root == "node" {
        NODE_ATTRS
    } else {
        CLUSTER_ATTRS
    };
    if !known.contains(first) {
        return Some((format!("{root}.{first}"), known));
    }
    if *root == "cluster" && *first == "etcd" {
        if let Some(second) = rest.get(1) {
            if !ETCD_ATTRS.contains(second) {
                return Some((format!("cluster.etcd.{second}"), ETCD_ATTRS));
            }
        }
    }
    None
}

/// The detail of a minijinja error, without its `(in <string>:1)` suffix.
fn minijinja_message(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => d.to_string(),
        None => e.kind().to_string(),
    }
}

/// Undoes YAML quoting inside an expression taken from a quoted scalar's source text.
fn unquote(text: &str, quote: Option<char>) -> String {
    match quote {
        Some('"') => text.replace("\\\"", "\"").replace("\\\\", "\\"),
        Some('\'') => text.replace("''", "'"),
        _ => text.to_string(),
    }
}

/// Position of `needle` inside `text` (which starts at byte `at` of `source`), else of `text`.
fn locate(source: &str, at: usize, text: &str, needle: &str) -> Pos {
    match find_word(text, needle) {
        Some(i) => pos_at(source, at + i, needle.len()),
        None => pos_at(source, at, text.split('\n').next().unwrap_or(text).len()),
    }
}

/// First occurrence of `needle` in `text` not inside a longer identifier.
fn find_word(text: &str, needle: &str) -> Option<usize> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(i) = text[from..].find(needle).map(|i| from + i) {
        let before = text[..i].chars().next_back();
        let after = text[i + needle.len()..].chars().next();
        if !before.is_some_and(|c| ident(c) || c == '.') && !after.is_some_and(ident) {
            return Some(i);
        }
        from = i + needle.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        assert_eq!(
            find_word("{{ xparams.y }} {{ params.y }}", "params.y"),
            Some(19)
        );
        assert_eq!(find_word("{{ params.yy }}", "params.y"), None);
    }
}
