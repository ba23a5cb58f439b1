//! CLI: the `breakfix` command line (clap). One file per subcommand; this file is the registry.

pub mod args;
pub mod check;
pub mod completions;
pub mod drill;
pub mod export;
pub mod hint;
pub mod list;
pub mod load;
pub mod man;
pub mod plan;
pub mod reset;
pub mod run;
pub mod status;
pub mod test;
pub mod validate;
pub mod watch;

use clap::{Parser, Subcommand};

/// Exit code: graded pass / success.
pub const EXIT_PASS: u8 = 0;
/// Exit code: graded fail (probes did not pass).
pub const EXIT_FAIL: u8 = 1;
/// Exit code: error (bad input, unreachable node, ...).
pub const EXIT_ERROR: u8 = 2;

const EXAMPLES: &str = "\
Examples:
  breakfix sandbox up                                   # a lab cluster on this machine
  breakfix validate scenarios/*.yaml                    # check scenario files
  breakfix run scenarios/etcd-service-stopped.yaml --solution
  breakfix break scenarios/etcd-service-stopped.yaml    # break it, then fix it yourself
  breakfix check                                        # grade your fix (exit 0 pass, 1 fail, 2 error)
  breakfix reset                                        # undo every recorded fault

Exit codes: 0 pass/success, 1 graded fail, 2 error.";

/// breakfix: break/fix incident labs for Kubernetes control planes (etcd first).
#[derive(Debug, Parser)]
#[command(name = "breakfix", version, about, after_help = EXAMPLES, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Never use colour.
    #[arg(long, global = true, env = "NO_COLOR", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_color: bool,
    /// No progress spinners or step lines on stderr.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check scenario files and print diagnostics with file:line:col.
    Validate(validate::ValidateArgs),
    /// Show what a scenario would do on the inventory's nodes, rendered, without doing it.
    Plan(plan::PlanArgs),
    /// Break, confirm, wait for the fix (or apply the reference fix with --solution), grade, reset.
    Run(run::RunArgs),
    /// Break and confirm, then leave the cluster broken for the learner.
    Break(run::BreakArgs),
    /// Grade now: run the verify probes once (exit 0 pass, 1 fail, 2 error).
    Check(check::CheckArgs),
    /// Reveal the next hint of the current break (costs points).
    Hint(hint::HintArgs),
    /// Re-check the current break's tasks on an interval and show each turning done.
    Watch(watch::WatchArgs),
    /// A timed drill: break, start the clock, poll verify, score tasks, hints and time.
    Drill(drill::DrillArgs),
    /// Undo every recorded fault on every node (journal replay, newest first).
    Reset(reset::ResetArgs),
    /// Show the current session and the journal per node (pending and set-aside entries).
    Status(status::StatusArgs),
    /// List the scenarios in a directory.
    List(list::ListArgs),
    /// Self-test scenarios on a live cluster: baseline, break, solution, reset, wrong fixes.
    Test(test::TestArgs),
    /// Manage the local lab cluster (systemd-nspawn nodes with real sshd and etcd).
    Sandbox(crate::sandbox::cli::SandboxArgs),
    /// Publish a lab on another platform (Killercoda).
    Export(export::ExportArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Print the man page, or write one page per subcommand with -o DIR.
    Man(man::ManArgs),
}

/// Global flags every command sees.
#[derive(Debug, Clone, Copy)]
pub struct Globals {
    /// Colour allowed.
    pub color: bool,
    /// Spinners and step lines suppressed.
    pub quiet: bool,
}

/// Runs the parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> u8 {
    let color = !cli.no_color && console::colors_enabled_stderr();
    if !color {
        console::set_colors_enabled(false);
        console::set_colors_enabled_stderr(false);
    }
    let g = Globals {
        color,
        quiet: cli.quiet,
    };
    let mutates = matches!(
        cli.command,
        Command::Run(_)
            | Command::Break(_)
            | Command::Drill(_)
            | Command::Test(_)
            | Command::Reset(_)
    );
    let work = dispatch(cli.command, g);
    let r = tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => {
            // Dropping the command's future closes its connections; the node-side guardian
            // kills whatever was still running there. Every fault journaled its undo first.
            eprintln!(
                "{} interrupted{}",
                console::style("error:").red().bold(),
                if mutates {
                    ": every fault applied so far is in the journal; `breakfix reset` undoes them"
                } else {
                    ""
                }
            );
            return EXIT_INTERRUPTED;
        }
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{} {e}", console::style("error:").red().bold());
            EXIT_ERROR
        }
    }
}

/// Exit code after Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Runs one subcommand.
async fn dispatch(command: Command, g: Globals) -> crate::error::Result<u8> {
    match command {
        Command::Validate(a) => validate::run(a, g).await,
        Command::Plan(a) => plan::run(a, g).await,
        Command::Run(a) => run::run(a, g).await,
        Command::Break(a) => run::run_break(a, g).await,
        Command::Check(a) => check::run(a, g).await,
        Command::Reset(a) => reset::run(a, g).await,
        Command::Drill(a) => drill::run(a, g).await,
        Command::Hint(a) => hint::run(a, g).await,
        Command::Watch(a) => watch::run(a, g).await,
        Command::Status(a) => status::run(a, g).await,
        Command::List(a) => list::run(a, g).await,
        Command::Test(a) => test::run(a, g).await,
        Command::Sandbox(a) => crate::sandbox::cli::run_with(a, g.quiet)
            .await
            .map(|_| EXIT_PASS),
        Command::Export(a) => export::run(a, g).await,
        Command::Completions(a) => completions::run(a, g).await,
        Command::Man(a) => man::run(a, g).await,
    }
}
