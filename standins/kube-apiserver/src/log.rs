//! Logging to stderr in klog's text format (`E1124 12:00:00.123456    4242 store.rs:88] msg`),
//! the shape the real kube-apiserver writes, so pod logs read like the real thing.

use std::fmt::Arguments;

/// Writes one log line; `level` is klog's severity letter (I, W, E, F).
pub fn emit(level: char, file: &str, line: u32, msg: Arguments<'_>) {
    let now = time::OffsetDateTime::now_utc();
    let base = file.rsplit('/').next().unwrap_or(file);
    eprintln!(
        "{}{:02}{:02} {:02}:{:02}:{:02}.{:06} {:>7} {}:{}] {}",
        level,
        now.month() as u8,
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.microsecond(),
        std::process::id(),
        base,
        line,
        msg
    );
}

/// Informational line.
macro_rules! info {
    ($($t:tt)*) => { $crate::log::emit('I', file!(), line!(), format_args!($($t)*)) };
}

/// Warning line.
macro_rules! warning {
    ($($t:tt)*) => { $crate::log::emit('W', file!(), line!(), format_args!($($t)*)) };
}

/// Error line.
macro_rules! error {
    ($($t:tt)*) => { $crate::log::emit('E', file!(), line!(), format_args!($($t)*)) };
}

pub(crate) use {error, info, warning};
