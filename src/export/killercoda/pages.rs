//! Pages and scripts: intro.md, finish.md and each step's text.md, background.sh and
//! verify.sh, rendered from the minijinja templates in `templates/` with contexts built here.
//!
//! The templates are compiled into the binary (`include_str!`). Whitespace: a block tag
//! (`{% if %}`, `{% endif %}`, ...) on a line of its own leaves no trace (trim and lstrip
//! blocks), `+%}` keeps the newline after a tag, and a template's final newline is kept.
//! Undefined variables are errors. `| shq` shell-quotes a value
//! ([`crate::transport::shell_quote`]); in the `.sh` templates every inserted value must go
//! through it, and rendering refuses one that does not.

use std::path::PathBuf;
use std::time::Duration;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::ValueKind;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};
use serde::Serialize;

use super::assets::HostPaths;
use super::index::StepEntry;
use super::{Content, OutFile, StepSummary};
use crate::error::{Error, Result};
use crate::lab::LoadedLab;
use crate::transport::shell_quote;

/// Names of the shell-script templates end in this.
const SHELL_SUFFIX: &str = ".sh.j2";

/// Every template, by name.
const TEMPLATES: &[(&str, &str)] = &[
    ("intro.md.j2", include_str!("templates/intro.md.j2")),
    ("finish.md.j2", include_str!("templates/finish.md.j2")),
    ("step.md.j2", include_str!("templates/step.md.j2")),
    (
        "background.sh.j2",
        include_str!("templates/background.sh.j2"),
    ),
    ("verify.sh.j2", include_str!("templates/verify.sh.j2")),
];

/// Killercoda's click-to-run marker after a code span, as the `exec` global.
const EXEC_MARKER: &str = "{{exec}}";

/// `intro.md.j2`.
#[derive(Serialize)]
struct Intro<'a> {
    title: &'a str,
    intro: &'a str,
    time_budget: Option<String>,
    level: String,
    steps: usize,
    source: Option<&'a str>,
    host: &'a HostPaths,
}

/// `finish.md.j2`.
#[derive(Serialize)]
struct Finish<'a> {
    finish: &'a str,
    host: &'a HostPaths,
}

/// `step.md.j2`, `background.sh.j2` and `verify.sh.j2`.
#[derive(Serialize)]
struct Step<'a> {
    number: usize,
    steps: usize,
    title: &'a str,
    text: &'a str,
    budget: Option<String>,
    scenario: Option<&'a str>,
    log_dir: String,
    log: String,
    host: &'a HostPaths,
}

fn fmt_dur(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// `| shq`: a string or number as one literal shell word, marked safe.
fn shq(v: Value) -> std::result::Result<Value, minijinja::Error> {
    match v.kind() {
        ValueKind::String | ValueKind::Number => {
            Ok(Value::from_safe_string(shell_quote(&v.to_string())))
        }
        other => Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("shq: expected a string or a number, found {other}"),
        )),
    }
}

/// The environment with every template loaded.
pub(super) fn environment() -> std::result::Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()?,
    );
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_formatter(|out, state, value| {
        if state.name().ends_with(SHELL_SUFFIX) && !value.is_safe() {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("`{value}` is inserted into a shell script without `| shq`"),
            ));
        }
        minijinja::escape_formatter(out, state, value)
    });
    env.add_filter("shq", shq);
    env.add_global("exec", EXEC_MARKER);
    for (name, source) in TEMPLATES {
        env.add_template(name, source)?;
    }
    Ok(env)
}

/// The loaded templates.
pub(super) struct Pages {
    env: Environment<'static>,
}

impl Pages {
    /// Loads the templates (a syntax error in one is reported here).
    pub(super) fn new() -> Result<Pages> {
        let env = environment()
            .map_err(|e| Error::other(format!("loading the Killercoda templates: {e:#}")))?;
        Ok(Pages { env })
    }

    fn render<S: Serialize>(&self, name: &str, ctx: &S) -> Result<String> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(minijinja::value::Serde(ctx)))
            .map_err(|e| {
                Error::other(format!(
                    "rendering the Killercoda template {name} (src/export/killercoda/templates): {e:#}"
                ))
            })
    }

    /// `intro.md`; `total` is the lab's time budget.
    pub(super) fn intro(
        &self,
        lab: &LoadedLab,
        total: Option<Duration>,
        host: &HostPaths,
    ) -> Result<String> {
        let m = &lab.lab.metadata;
        let level = serde_json::to_value(m.difficulty)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        self.render(
            "intro.md.j2",
            &Intro {
                title: &m.title,
                intro: lab.lab.intro.trim_end(),
                time_budget: total.map(fmt_dur),
                level,
                steps: lab.lab.steps.len(),
                source: m.source.as_deref(),
                host,
            },
        )
    }

    /// `finish.md`.
    pub(super) fn finish(&self, lab: &LoadedLab, host: &HostPaths) -> Result<String> {
        self.render(
            "finish.md.j2",
            &Finish {
                finish: lab.lab.finish.trim_end(),
                host,
            },
        )
    }

    /// `stepN/text.md`, `stepN/background.sh` and `stepN/verify.sh` (the scripts for steps
    /// with a scenario), as files, with the step's `index.json` entry.
    pub(super) fn step(
        &self,
        st: &StepSummary,
        text: &str,
        budget: Option<Duration>,
        of: usize,
        host: &HostPaths,
    ) -> Result<(Vec<OutFile>, StepEntry)> {
        let ctx = Step {
            number: st.number,
            steps: of,
            title: &st.title,
            text: text.trim_end(),
            budget: budget.map(fmt_dur),
            scenario: st.scenario.as_deref(),
            log_dir: format!("{}/log", host.dir),
            log: format!("{}/log/step{}-background.log", host.dir, st.number),
            host,
        };
        let dir = PathBuf::from(format!("step{}", st.number));
        let file = |name: &str, body: String, mode: u32| OutFile {
            path: dir.join(name),
            content: Content::Bytes(body.into_bytes()),
            mode,
        };
        let mut files = vec![file("text.md", self.render("step.md.j2", &ctx)?, 0o644)];
        let mut entry = StepEntry {
            title: st.title.clone(),
            text: dir.join("text.md").display().to_string(),
            verify: None,
            background: None,
        };
        if st.scenario.is_some() {
            files.push(file(
                "background.sh",
                self.render("background.sh.j2", &ctx)?,
                0o755,
            ));
            files.push(file("verify.sh", self.render("verify.sh.j2", &ctx)?, 0o755));
            entry.background = Some(dir.join("background.sh").display().to_string());
            entry.verify = Some(dir.join("verify.sh").display().to_string());
        }
        Ok((files, entry))
    }
}
