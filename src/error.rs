//! Error: every failure the engine reports, each naming the file, host or command involved.

use std::time::Duration;

/// The crate's error type. Messages say what was expected and where (file:line:col, host,
/// command); none of them panics or leaves a half-applied change behind.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    /// A local file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing, e.g. `reading inventory /x.yaml`.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration file (inventory, state) is malformed.
    #[error("{file}: {message}")]
    Config {
        /// File path.
        file: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A scenario failed to load or validate; the diagnostics are already rendered.
    #[error("{count} error(s) in scenario files\n{rendered}")]
    Scenario {
        /// Number of diagnostics.
        count: usize,
        /// Rendered diagnostics (file:line:col + snippet).
        rendered: String,
    },
    /// Connecting to or talking with a host failed.
    #[error("{host}: {message}")]
    Transport {
        /// `name (address:port)`.
        host: String,
        /// What failed.
        message: String,
    },
    /// A remote operation did not finish in time.
    #[error("{host}: `{command}` timed out after {}", humantime::format_duration(*.after))]
    Timeout {
        /// `name (address:port)`.
        host: String,
        /// The command or operation.
        command: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// A remote command exited non-zero where success was required.
    #[error("{host}: `{command}` failed (exit {exit}): {stderr}")]
    Command {
        /// `name (address:port)`.
        host: String,
        /// The command line.
        command: String,
        /// Exit code (-1 when killed by a signal).
        exit: i32,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// A fault could not be injected or undone.
    #[error("fault `{fault}` on {host}: {message}")]
    Fault {
        /// Fault name.
        fault: String,
        /// Node name.
        host: String,
        /// What failed.
        message: String,
    },
    /// Anything else, with a message that says what to do.
    #[error("{0}")]
    Other(String),
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Other`] from anything printable.
    pub fn other(msg: impl Into<String>) -> Error {
        Error::Other(msg.into())
    }
}
