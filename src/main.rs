//! The `breakfix` binary: parses the command line and runs it (see `breakfix --help`).

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = breakfix::cli::Cli::parse();
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
