//! Command-line flags as the control plane's programs read them, so a probe can say what
//! value a flag has however it was spelled.
//!
//! etcd parses its flags with Go's `flag` package, the Kubernetes components with `pflag`:
//! both take `--name=value` and `--name value`, Go's `flag` takes `-name` too, and a flag given
//! twice keeps its last value (each occurrence sets it again). A bare flag followed by nothing
//! or by another flag is a boolean set to `true` (`--client-cert-auth`).
//!
//! # Caveats
//! The type of a flag is not known here: `--name value` always reads `value` as the flag's,
//! which is wrong only for a boolean followed by a positional argument (the control plane's
//! programs take none).

/// The value of `flag` (written `--name` or `-name`) among `args` (a command line without
/// or with its program name), or `None` when it is absent. See the module docs for the rules.
pub fn flag_value<S: AsRef<str>>(args: &[S], flag: &str) -> Option<String> {
    let name = flag.trim_start_matches('-');
    if name.is_empty() {
        return None;
    }
    let mut found = None;
    let mut i = 0;
    while i < args.len() {
        let item = args[i].as_ref();
        let bare = item
            .strip_prefix("--")
            .or_else(|| item.strip_prefix('-'))
            .unwrap_or("");
        if let Some(v) = bare
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
        {
            found = Some(v.to_string());
        } else if bare == name && !item.starts_with("---") {
            match args.get(i + 1).map(AsRef::as_ref) {
                Some(next) if !next.starts_with('-') || next == "-" => {
                    found = Some(next.to_string());
                    i += 1;
                }
                _ => found = Some("true".to_string()),
            }
        }
        i += 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::flag_value;

    #[test]
    fn every_spelling_a_program_accepts_reads_the_same() {
        let v = |args: &[&str]| flag_value(args, "--data-dir");
        assert_eq!(
            v(&["etcd", "--data-dir=/var/lib/etcd"]).as_deref(),
            Some("/var/lib/etcd")
        );
        assert_eq!(
            v(&["etcd", "--data-dir", "/var/lib/etcd"]).as_deref(),
            Some("/var/lib/etcd")
        );
        assert_eq!(
            v(&["etcd", "-data-dir=/var/lib/etcd"]).as_deref(),
            Some("/var/lib/etcd")
        );
        assert_eq!(v(&["etcd", "-data-dir", "/x"]).as_deref(), Some("/x"));
        assert_eq!(v(&["--data-dir=", "--name=a"]).as_deref(), Some(""));
        // The last occurrence wins, as in Go's flag package.
        assert_eq!(
            v(&["--data-dir=/a", "--data-dir", "/b"]).as_deref(),
            Some("/b")
        );
        // Other flags with the same prefix are not this one.
        assert_eq!(v(&["--data-dir-x=/a", "--data-directory", "/b"]), None);
        assert_eq!(v(&["etcd"]), None);
        // A bare flag before another flag or at the end is a boolean.
        let b = |args: &[&str]| flag_value(args, "client-cert-auth");
        assert_eq!(
            b(&["--client-cert-auth", "--name=a"]).as_deref(),
            Some("true")
        );
        assert_eq!(b(&["--client-cert-auth"]).as_deref(), Some("true"));
        assert_eq!(b(&["--client-cert-auth=false"]).as_deref(), Some("false"));
        assert_eq!(flag_value(&["--x=1"], "--"), None);
    }
}
