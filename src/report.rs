//! Report: the graded result of a run or check, printed for people (colour) or as JSON.

use std::borrow::Cow;
use std::io::Write;

use console::style;
use serde::Serialize;

use crate::engine::verdict::{Status, Verdict};

/// Overall outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every verify probe passed.
    Pass,
    /// At least one verify probe did not pass.
    Fail,
}

/// A graded report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Scenario title.
    pub title: String,
    /// `run` or `check`.
    pub mode: String,
    /// The grade.
    pub outcome: Outcome,
    /// Confirm probes after the break (empty for `check`).
    pub confirm: Vec<Verdict>,
    /// Verify probes.
    pub verify: Vec<Verdict>,
    /// Seconds from the confirmed break to the first all-pass round (runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_fix: Option<f64>,
    /// Whether the reference solution was applied by breakfix (`run --solution`).
    pub solution_applied: bool,
    /// Total wall time in seconds.
    pub duration: f64,
}

impl Report {
    /// Grades `verify`: PASS only when every probe passed (a SKIP or ERROR is not a pass).
    pub fn grade(verify: &[Verdict]) -> Outcome {
        if !verify.is_empty() && verify.iter().all(|v| v.status == Status::Pass) {
            Outcome::Pass
        } else {
            Outcome::Fail
        }
    }

    /// Prints the human form.
    pub fn print_human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{} {} — {}",
            style("breakfix").bold(),
            style(&self.scenario).cyan(),
            self.title
        )?;
        if !self.confirm.is_empty() {
            writeln!(
                out,
                "\n  {} (each must FAIL after the break)",
                style("confirm").bold()
            )?;
            for v in &self.confirm {
                print_verdict(out, v, true)?;
            }
        }
        writeln!(out, "\n  {}", style("verify").bold())?;
        for v in &self.verify {
            print_verdict(out, v, false)?;
        }
        let passed = self
            .verify
            .iter()
            .filter(|v| v.status == Status::Pass)
            .count();
        let grade = match self.outcome {
            Outcome::Pass => style("PASS").green().bold(),
            Outcome::Fail => style("FAIL").red().bold(),
        };
        write!(
            out,
            "\n  verdict: {grade} ({passed}/{} probes passed)",
            self.verify.len()
        )?;
        if let Some(t) = self.time_to_fix {
            write!(out, ", fixed {t:.1}s after the break was confirmed")?;
        }
        if self.solution_applied {
            write!(out, " [reference solution applied by breakfix]")?;
        }
        writeln!(out, " in {:.1}s", self.duration)
    }
}

impl Report {
    /// The learner's short form (`breakfix check --brief`, the exported verify.sh): one line
    /// for the verdict, then what is still wrong in the probes' own words (their
    /// `description`, else their name), one line each; no facts, no timings. `details` names
    /// the file that holds the full report.
    ///
    /// ```text
    /// Not yet: 2 of 3 checks still fail.
    ///   - the etcd unit is active
    ///   - (not checked yet: it needs another check to pass first) etcd answers a read
    /// ```
    pub fn print_brief(
        &self,
        out: &mut dyn Write,
        details: Option<&std::path::Path>,
    ) -> std::io::Result<()> {
        let total = self.verify.len();
        // What failed first, then what could not be checked, then what waits on those.
        let mut open: Vec<&Verdict> = self
            .verify
            .iter()
            .filter(|v| v.status != Status::Pass)
            .collect();
        open.sort_by_key(|v| match v.status {
            Status::Fail => 0,
            Status::Error => 1,
            _ => 2,
        });
        match self.outcome {
            Outcome::Pass => writeln!(
                out,
                "{} every check passes ({total} of {total}).",
                style("Fixed:").green().bold()
            )?,
            Outcome::Fail if total == 0 => writeln!(
                out,
                "{} this step has no checks.",
                style("Not yet:").red().bold()
            )?,
            Outcome::Fail => {
                writeln!(
                    out,
                    "{} {} of {total} check{} still fail{}.",
                    style("Not yet:").red().bold(),
                    open.len(),
                    if total == 1 { "" } else { "s" },
                    if open.len() == 1 { "s" } else { "" },
                )?;
                for v in &open {
                    let what = v.description.as_deref().unwrap_or(&v.probe);
                    let pre = match v.status {
                        Status::Skip => "(not checked yet: it needs another check to pass first) ",
                        Status::Error => "(could not be checked) ",
                        _ => "",
                    };
                    writeln!(out, "  - {pre}{}", printable(what.trim()))?;
                }
            }
        }
        if let Some(d) = details {
            writeln!(out, "Details: {}", d.display())?;
        }
        Ok(())
    }
}

/// One verdict line (plus failing checks). In confirm mode a FAIL is the intended outcome.
pub fn print_verdict(out: &mut dyn Write, v: &Verdict, confirm: bool) -> std::io::Result<()> {
    let label = match (v.status, confirm) {
        (Status::Pass, false) | (Status::Fail, true) => {
            style(format!("{:<5}", v.status.label())).green()
        }
        (Status::Skip, _) => style(format!("{:<5}", v.status.label())).yellow(),
        _ => style(format!("{:<5}", v.status.label())).red(),
    };
    let desc = v
        .description
        .as_deref()
        .map(|d| format!("  {}", style(d).dim()))
        .unwrap_or_default();
    writeln!(
        out,
        "    {label} {:<28} {:<14} {:>6.2}s{}",
        v.probe,
        v.node,
        v.duration.as_secs_f64(),
        printable(&desc)
    )?;
    for c in &v.checks {
        if !c.ok || (confirm && v.status == Status::Fail) {
            let mark = if c.ok { " " } else { "✗" };
            writeln!(
                out,
                "          {mark} {}: expected {}, found {}",
                c.fact,
                printable(&c.expected),
                style(shorten(&printable(&c.found), FOUND_SHOWN)).bold()
            )?;
        }
    }
    if let Some(n) = &v.note {
        if v.status != Status::Pass {
            writeln!(out, "            {}", style(printable(n)).dim())?;
        }
    }
    Ok(())
}
/// Characters of a fact a human report shows (JSON has it whole, up to the probe's cap).
pub const FOUND_SHOWN: usize = 400;

/// `s` cut to `max` characters, saying how much was left out.
pub fn shorten(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some((at, _)) => Cow::Owned(format!(
            "{}… ({} more bytes; `-o json` shows them)",
            &s[..at],
            s.len() - at
        )),
    }
}

/// `s` safe to print on a terminal: every control character but newline and tab (ESC of
/// ANSI escape sequences, BEL, backspace, carriage return, DEL, the C1 controls) is shown as a
/// visible `\u{..}` escape instead of being interpreted. Node output and facts are printed
/// through this: a node cannot recolour, move the cursor on, or retitle a terminal.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() && c != '\n' && c != '\t' {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// `s` safe inside an XML 1.0 document (JUnit): characters XML 1.0 does not allow even as
/// references (C0 controls but tab, newline and carriage return; U+FFFE, U+FFFF) are shown as
/// `\u{..}` escapes; the XML writer escapes `<`, `&` and quotes itself.
pub fn xml_safe(s: &str) -> Cow<'_, str> {
    let bad = |c: char| {
        (c < ' ' && c != '\t' && c != '\n' && c != '\r') || c == '\u{FFFE}' || c == '\u{FFFF}'
    };
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if bad(c) {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod escape_tests {
    use super::*;

    #[test]
    fn terminal_controls_are_shown_not_obeyed() {
        assert_eq!(printable("plain\ttext\n"), "plain\ttext\n");
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
        assert_eq!(
            printable("\u{1b}[31mred\u{7}\r"),
            "\\u{1b}[31mred\\u{7}\\u{d}"
        );
        assert_eq!(printable("\u{9b}2J"), "\\u{9b}2J", "C1 CSI");
    }

    #[test]
    fn xml_forbidden_characters_are_escaped() {
        assert_eq!(
            xml_safe("a<b & \"c\"\n"),
            "a<b & \"c\"\n",
            "the writer escapes these"
        );
        assert_eq!(
            xml_safe("\u{1b}[0m\u{0}\u{FFFF}"),
            "\\u{1b}[0m\\u{0}\\u{ffff}"
        );
    }
}

#[cfg(test)]
mod brief_tests {
    use super::*;

    fn verdict(probe: &str, description: Option<&str>, status: Status) -> Verdict {
        Verdict {
            probe: probe.into(),
            node: "controlplane".into(),
            kind: "command".into(),
            description: description.map(str::to_string),
            status,
            checks: Vec::new(),
            note: None,
            attempts: 1,
            duration: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn brief_lists_failures_first_in_the_probes_words_and_skips_last() {
        console::set_colors_enabled(false);
        let verify = vec![
            verdict("etcd-read", Some("etcd answers a read"), Status::Skip),
            verdict(
                "apiserver-ready",
                Some("the API server is ready"),
                Status::Pass,
            ),
            verdict("unit-active", None, Status::Fail),
            verdict("port", Some("etcd listens on 2379\n"), Status::Error),
        ];
        let report = Report {
            scenario: "s".into(),
            title: "t".into(),
            mode: "check".into(),
            outcome: Report::grade(&verify),
            confirm: Vec::new(),
            verify,
            time_to_fix: None,
            solution_applied: false,
            duration: 1.0,
        };
        let mut out = Vec::new();
        report.print_brief(&mut out, None).expect("print");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "Not yet: 3 of 4 checks still fail.\n  - unit-active\n  - (could not be checked) etcd listens on 2379\n  - (not checked yet: it needs another check to pass first) etcd answers a read\n"
        );
    }
}
