//! klog-style structured log lines on stderr, which systemd files under the `kubelet` unit:
//! `I1125 12:00:00.000000    1234 pod.rs:120] "Container started" pod="kube-system/etcd-x"`.

use std::io::Write;
use std::time::SystemTime;

/// A value in a `key=value` pair, rendered the way klog renders it.
pub trait KlogValue {
    fn render(&self) -> String;
}

impl KlogValue for str {
    fn render(&self) -> String {
        quote(self)
    }
}

impl KlogValue for String {
    fn render(&self) -> String {
        quote(self)
    }
}

impl<T: KlogValue + ?Sized> KlogValue for &T {
    fn render(&self) -> String {
        (**self).render()
    }
}

impl KlogValue for [String] {
    fn render(&self) -> String {
        let items: Vec<String> = self.iter().map(|s| quote(s)).collect();
        format!("[{}]", items.join(","))
    }
}

impl KlogValue for Vec<String> {
    fn render(&self) -> String {
        self.as_slice().render()
    }
}

macro_rules! plain_values {
    ($($t:ty),*) => {
        $(impl KlogValue for $t {
            fn render(&self) -> String {
                self.to_string()
            }
        })*
    };
}
plain_values!(i32, i64, u32, u64, usize, bool);

/// Go's `%q` for the printable ASCII and UTF-8 we produce (JSON string escaping is close enough).
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// Writes one line; `level` is `I`, `W` or `E`. Used through the `info!`/`warn!`/`error!` macros.
pub fn emit(level: char, file: &str, line: u32, msg: &str, kvs: &[(&str, &dyn KlogValue)]) {
    let base = file.rsplit('/').next().unwrap_or(file);
    let mut out = format!(
        "{level}{} {:>7} {base}:{line}] {}",
        crate::clock::klog_time(SystemTime::now()),
        std::process::id(),
        quote(msg)
    );
    for (k, v) in kvs {
        out.push(' ');
        out.push_str(k);
        out.push('=');
        out.push_str(&v.render());
    }
    out.push('\n');
    let stderr = std::io::stderr();
    let mut lock = stderr.lock();
    // Nowhere to report a failed log write; the stand-in keeps running.
    let _ = lock.write_all(out.as_bytes());
    let _ = lock.flush();
}

/// `info!("msg", "key" => value, ...)`
#[macro_export]
macro_rules! info {
    ($msg:expr $(, $k:literal => $v:expr)* $(,)?) => {
        $crate::klog::emit('I', file!(), line!(), &$msg, &[$(($k, &$v as &dyn $crate::klog::KlogValue)),*])
    };
}

/// `warn!("msg", "key" => value, ...)`
#[macro_export]
macro_rules! warn {
    ($msg:expr $(, $k:literal => $v:expr)* $(,)?) => {
        $crate::klog::emit('W', file!(), line!(), &$msg, &[$(($k, &$v as &dyn $crate::klog::KlogValue)),*])
    };
}

/// `error!("msg", "key" => value, ...)`
#[macro_export]
macro_rules! error {
    ($msg:expr $(, $k:literal => $v:expr)* $(,)?) => {
        $crate::klog::emit('E', file!(), line!(), &$msg, &[$(($k, &$v as &dyn $crate::klog::KlogValue)),*])
    };
}
