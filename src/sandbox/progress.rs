//! Progress: indicatif spinners for the sandbox's steps on a terminal, and plain
//! `==> step` / `    ok (1.2s)` lines on stderr otherwise (CI logs, tests).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Turns step output off (spinners and plain lines alike) for the rest of the process, e.g.
/// for the CLI's global `--quiet`. Errors and the final report are still printed.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// A set of steps shown together (one spinner each on a terminal).
#[derive(Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// Spinners when stderr is a terminal, plain lines otherwise.
    pub fn new() -> Progress {
        let multi = (!quiet() && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { multi }
    }

    /// Starts a step titled `title` (e.g. `boot controlplane`).
    pub fn step(&self, title: impl Into<String>) -> Step {
        let title = title.into();
        let bar = self.multi.as_ref().map(|m| {
            let pb = m.add(ProgressBar::new_spinner());
            let style = ProgressStyle::with_template(
                "{spinner:.cyan} {prefix:.bold} {wide_msg:.dim} {elapsed:>4}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
            pb.set_style(style);
            pb.set_prefix(title.clone());
            pb.enable_steady_tick(Duration::from_millis(120));
            pb
        });
        if bar.is_none() && !quiet() {
            eprintln!("==> {title}");
        }
        Step {
            title,
            bar,
            start: Instant::now(),
        }
    }

    /// Ends the display: on a terminal, moves the cursor below the last spinner line so what
    /// is printed next starts on a line of its own.
    pub fn finish(&self) {
        if self.multi.is_some() {
            eprintln!();
        }
    }

    /// Prints a line above the spinners (or plainly).
    pub fn println(&self, line: impl AsRef<str>) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(line.as_ref());
            }
            None if !quiet() => eprintln!("{}", line.as_ref()),
            None => {}
        }
    }
}

/// One running step.
pub struct Step {
    title: String,
    bar: Option<ProgressBar>,
    start: Instant,
}

impl Step {
    /// Updates the step's detail line (not printed in plain mode, to keep logs short).
    pub fn set_message(&self, msg: impl Into<String>) {
        if let Some(b) = &self.bar {
            b.set_message(msg.into());
        }
    }

    /// Marks the step done with a short result, e.g. `ready`.
    pub fn done(&self, result: impl AsRef<str>) {
        let secs = self.start.elapsed().as_secs_f64();
        let line = format!("{} {} ({secs:.1}s)", self.title, result.as_ref());
        match &self.bar {
            Some(b) => {
                b.set_style(
                    ProgressStyle::with_template("{prefix:.green} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                b.set_prefix("✓");
                b.finish_with_message(line);
            }
            None if !quiet() => eprintln!("    ok: {line}"),
            None => {}
        }
    }

    /// Marks the step failed.
    pub fn fail(&self, why: impl AsRef<str>) {
        let secs = self.start.elapsed().as_secs_f64();
        let line = format!("{} FAILED after {secs:.1}s: {}", self.title, why.as_ref());
        match &self.bar {
            Some(b) => {
                b.set_style(
                    ProgressStyle::with_template("{prefix:.red} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                b.set_prefix("✗");
                b.abandon_with_message(line);
            }
            None if !quiet() => eprintln!("    {line}"),
            None => {}
        }
    }

    /// Seconds since the step started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            if !b.is_finished() {
                b.abandon();
            }
        }
    }
}
