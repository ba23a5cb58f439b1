//! The `breakfix` binary: parses the command line and runs it (see `breakfix --help`).

use clap::Parser;

/// Diagnostic logging to stderr, filtered by `BREAKFIX_LOG` (or `RUST_LOG`), e.g.
/// `BREAKFIX_LOG=breakfix=debug` or `BREAKFIX_LOG=h2=trace`; breakfix's own errors only by
/// default (not the kube client's connection retries while an API server is down), so a
/// learner's terminal shows reports, not the retries behind them.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("BREAKFIX_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("breakfix=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn main() -> std::process::ExitCode {
    let cli = breakfix::cli::Cli::parse();
    init_logging();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(breakfix::cli::EXIT_ERROR);
        }
    };
    std::process::ExitCode::from(rt.block_on(breakfix::cli::run(cli)))
}
