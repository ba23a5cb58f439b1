//! Raw command results shared by the SSH and local transports: bytes as produced, before the
//! lossy UTF-8 conversion of [`Output`].

use std::time::Duration;

use rand::Rng;

use super::Output;

/// What a command produced, as bytes.
#[derive(Debug, Default)]
pub(crate) struct RawOutput {
    /// Standard output bytes.
    pub(crate) stdout: Vec<u8>,
    /// Standard error bytes.
    pub(crate) stderr: Vec<u8>,
    /// Exit status; `None` when killed by a signal.
    pub(crate) exit: Option<i32>,
    /// Wall time of the command itself.
    pub(crate) duration: Duration,
}

impl RawOutput {
    /// The public, lossy-UTF-8 form.
    pub(crate) fn into_output(self) -> Output {
        Output {
            stdout: String::from_utf8_lossy(&self.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&self.stderr).into_owned(),
            exit: self.exit,
            duration: self.duration,
        }
    }

    /// Standard error as trimmed text, for error messages.
    pub(crate) fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }

    /// `exit N` or `killed by a signal`, for error messages.
    pub(crate) fn exit_text(&self) -> String {
        match self.exit {
            Some(n) => format!("exit {n}"),
            None => "killed by a signal".to_string(),
        }
    }
}

/// A random lowercase-hex token (64 bits) used to name temp files and to find a command's
/// processes again.
pub(crate) fn token() -> String {
    format!("{:016x}", rand::thread_rng().gen::<u64>())
}

/// True when a failed `cat` said the file does not exist (messages under `LC_ALL=C`; GNU
/// coreutils and busybox word it the same way).
pub(crate) fn says_not_found(stderr: &[u8]) -> bool {
    String::from_utf8_lossy(stderr).contains("No such file or directory")
}
