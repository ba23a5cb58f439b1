//! Host commands: runs the few host tools the sandbox needs (`ip`, `mount`, `losetup`,
//! `mkfs.ext4`, `debootstrap`) and turns a failure into an error that names the command and
//! quotes its stderr.

use std::ffi::OsStr;
use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

use crate::error::{Error, Result};

/// Default bound on a quick host command.
pub const QUICK: Duration = Duration::from_secs(60);

/// Renders a command line for messages.
pub fn display<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(&a.as_ref().to_string_lossy());
    }
    s
}

/// Runs `program args...` on the host with stdin closed, waits at most `timeout`, and
/// returns its output whatever the exit code.
///
/// Errors: the program cannot be started (e.g. not installed) or does not finish in time
/// (it is killed).
pub async fn output<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    timeout: Duration,
) -> Result<Output> {
    let line = display(program, args);
    let resolved = which(program).unwrap_or_else(|| program.into());
    let child = Command::new(resolved)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Io {
            context: format!("starting `{line}` on the host"),
            source: e,
        })?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(Error::Io {
            context: format!("waiting for `{line}`"),
            source: e,
        }),
        Err(_) => Err(Error::Timeout {
            host: "localhost".into(),
            command: line,
            after: timeout,
        }),
    }
}

/// Runs a host command that must succeed and returns its stdout (trimmed).
///
/// Errors: as [`output`], plus [`Error::Command`] with the trimmed stderr when it exits non-zero.
pub async fn run<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<String> {
    run_with_timeout(program, args, QUICK).await
}

/// [`run`] with an explicit bound.
pub async fn run_with_timeout<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    timeout: Duration,
) -> Result<String> {
    let out = output(program, args, timeout).await?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(failed(program, args, &out))
    }
}

/// The [`Error::Command`] for a finished command that exited non-zero.
pub fn failed<S: AsRef<OsStr>>(program: &str, args: &[S], out: &Output) -> Error {
    let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if stderr.is_empty() {
        stderr = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    Error::Command {
        host: "localhost".into(),
        command: display(program, args),
        exit: out.status.code().unwrap_or(-1),
        stderr,
    }
}

/// True when `program` is found in one of the `PATH` directories (or the sbin directories,
/// which root's PATH may lack) as an executable file.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<std::path::PathBuf> = std::env::split_paths(&path).collect();
    for extra in ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        dirs.push(extra.into());
    }
    dirs.into_iter().map(|d| d.join(program)).find(|p| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}
