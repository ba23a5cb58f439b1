//! The one way integration tests run the built `breakfix` binary: a builder that sets the
//! state directory, the node-side journal directory, the inventory and the working directory,
//! always with `NO_COLOR=1` and stdin from /dev/null.
//!
//! ```ignore
//! let cli = Cli::new().inventory(&g.inventory).state_dir(dir.path().join("state"));
//! let out = cli.run(&["break", "scenarios/etcd-service-stopped.yaml"]);
//! ```

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

/// How to run `breakfix` (cheap to clone; each `run` is a new process).
#[derive(Debug, Clone, Default)]
pub struct Cli {
    inventory: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    node_journal_dir: Option<PathBuf>,
    current_dir: Option<PathBuf>,
    no_inventory_for: Vec<&'static str>,
    env: Vec<(String, String)>,
}

impl Cli {
    /// No inventory, the caller's state directory, the test's working directory.
    pub fn new() -> Cli {
        Cli::default()
    }

    /// Passes `--inventory PATH` (after the subcommand's own arguments).
    pub fn inventory(mut self, path: impl Into<PathBuf>) -> Cli {
        self.inventory = Some(path.into());
        self
    }

    /// Subcommands that take no `--inventory` (e.g. `validate`, `hint`).
    pub fn no_inventory_for(mut self, subcommands: &[&'static str]) -> Cli {
        self.no_inventory_for.extend_from_slice(subcommands);
        self
    }

    /// `BREAKFIX_STATE_DIR`: the local session and journal.
    pub fn state_dir(mut self, path: impl Into<PathBuf>) -> Cli {
        self.state_dir = Some(path.into());
        self
    }

    /// `BREAKFIX_NODE_JOURNAL_DIR`: the node-side journal of local-transport nodes.
    pub fn node_journal_dir(mut self, path: impl Into<PathBuf>) -> Cli {
        self.node_journal_dir = Some(path.into());
        self
    }

    /// Runs from `path` (e.g. the checkout, for scenario paths relative to it).
    pub fn current_dir(mut self, path: impl Into<PathBuf>) -> Cli {
        self.current_dir = Some(path.into());
        self
    }

    /// Runs from the checkout (`CARGO_MANIFEST_DIR`).
    pub fn in_checkout(self) -> Cli {
        self.current_dir(env!("CARGO_MANIFEST_DIR"))
    }

    /// One more environment variable.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Cli {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// The configured command for `args`, to adjust further (stdio, `pre_exec`, ...).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_breakfix"));
        c.args(args);
        if let Some(inv) = &self.inventory {
            let skip = args
                .first()
                .is_some_and(|a| self.no_inventory_for.contains(a));
            if !skip {
                c.arg("--inventory").arg(inv);
            }
        }
        if let Some(d) = &self.state_dir {
            c.env("BREAKFIX_STATE_DIR", d);
        }
        if let Some(d) = &self.node_journal_dir {
            c.env("BREAKFIX_NODE_JOURNAL_DIR", d);
        }
        if let Some(d) = &self.current_dir {
            c.current_dir(d);
        }
        c.env("NO_COLOR", "1");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.stdin(Stdio::null());
        c
    }

    /// Runs `breakfix ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .expect("run the breakfix binary")
    }

    /// Starts `breakfix ARGS` in the background with stdout and stderr piped.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the breakfix binary")
    }
}
