//! Raw command results shared by the SSH and local transports: bytes as produced, before the
//! lossy UTF-8 conversion of [`Output`].

use std::time::Duration;

use rand::Rng;

use super::{FileStat, Output};

/// Most bytes kept of one stream of one command: 64 MiB. What a node prints beyond that is
/// read and dropped (the command's timeout still bounds it), so a hostile or runaway command
/// cannot exhaust this process's memory; [`Output::dropped`] counts what was cut.
pub const STREAM_CAP: usize = 64 << 20;

/// What a command produced, as bytes.
#[derive(Debug, Default)]
pub(crate) struct RawOutput {
    /// Standard output bytes (at most [`STREAM_CAP`]).
    pub(crate) stdout: Vec<u8>,
    /// Standard error bytes (at most [`STREAM_CAP`]).
    pub(crate) stderr: Vec<u8>,
    /// Bytes read beyond [`STREAM_CAP`] and dropped (both streams).
    pub(crate) dropped: u64,
    /// Exit status; `None` when killed by a signal.
    pub(crate) exit: Option<i32>,
    /// Wall time of the command itself.
    pub(crate) duration: Duration,
}

/// Appends `data` to `buf` up to [`STREAM_CAP`]; returns how many bytes were dropped.
pub(crate) fn append_capped(buf: &mut Vec<u8>, data: &[u8]) -> u64 {
    let room = STREAM_CAP.saturating_sub(buf.len());
    let keep = room.min(data.len());
    buf.extend_from_slice(&data[..keep]);
    (data.len() - keep) as u64
}

impl RawOutput {
    /// The public, lossy-UTF-8 form.
    pub(crate) fn into_output(self) -> Output {
        Output {
            stdout: String::from_utf8_lossy(&self.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&self.stderr).into_owned(),
            exit: self.exit,
            duration: self.duration,
            dropped: self.dropped,
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

/// True when a failed `cat` or `stat` said the file does not exist, or that a component of
/// its path is not a directory (messages under `LC_ALL=C`; GNU coreutils and busybox word
/// them the same way). The same cases SFTP reports as "no such file".
pub(crate) fn says_not_found(stderr: &[u8]) -> bool {
    let text = String::from_utf8_lossy(stderr);
    text.contains("No such file or directory") || text.contains("Not a directory")
}

/// `stat -c` format (quoted for the shell) whose output [`parse_stat`] reads: raw mode in hex,
/// uid, gid, size.
pub(crate) const STAT_FORMAT: &str = "'%f %u %g %s'";

/// Reads the output of `stat -c` with [`STAT_FORMAT`]; `None` when it is not that.
pub(crate) fn parse_stat(text: &str) -> Option<FileStat> {
    match text.split_whitespace().collect::<Vec<_>>().as_slice() {
        [mode, uid, gid, size] => Some(FileStat {
            mode: u32::from_str_radix(mode, 16).ok()?,
            uid: uid.parse().ok()?,
            gid: gid.parse().ok()?,
            size: size.parse().ok()?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_output_and_not_found_messages() {
        // GNU stat on a 0640 regular file and on a directory.
        let f = parse_stat("81a0 0 42 17\n").expect("parses");
        assert_eq!((f.permissions(), f.uid, f.gid, f.size), (0o640, 0, 42, 17));
        assert!(f.is_file());
        assert!(parse_stat("41ed 0 0 4096\n").expect("parses").is_dir());
        assert_eq!(parse_stat("stat: missing operand\n"), None);
        assert!(says_not_found(
            b"stat: cannot statx '/x': No such file or directory\n"
        ));
        assert!(says_not_found(b"cat: /etc/hosts/x: Not a directory\n"));
        assert!(!says_not_found(b"cat: /root/x: Permission denied\n"));
    }
}
