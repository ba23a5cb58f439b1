//! Mirror: finds the Debian mirror to build the node image from, in the host's apt
//! configuration (`/etc/apt/sources.list`, `/etc/apt/sources.list.d/*.list` one-line entries
//! and deb822 `*.sources` files). No mirror is ever hard-coded.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One `deb` source: its URI and suites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Archive root, e.g. `http://mirror.example/debian`.
    pub uri: String,
    /// Suites, e.g. `bookworm`, `bookworm-updates`.
    pub suites: Vec<String>,
    /// Components, e.g. `main`.
    pub components: Vec<String>,
    /// File it came from (for messages).
    pub file: PathBuf,
}

/// Parses one-line `deb [options] uri suite component...` entries (`deb-src` and comments
/// skipped).
pub fn parse_one_line(text: &str, file: &Path) -> Vec<Source> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut rest = match line
            .strip_prefix("deb ")
            .or_else(|| line.strip_prefix("deb\t"))
        {
            Some(r) => r.trim_start(),
            None => continue,
        };
        if rest.starts_with('[') {
            match rest.find(']') {
                Some(end) => rest = rest[end + 1..].trim_start(),
                None => continue,
            }
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        out.push(Source {
            uri: uri.to_string(),
            suites: vec![suite.to_string()],
            components: words.map(str::to_string).collect(),
            file: file.to_path_buf(),
        });
    }
    out
}

/// Parses deb822 stanzas (`Types:`, `URIs:`, `Suites:`, `Components:`, `Enabled:`).
pub fn parse_deb822(text: &str, file: &Path) -> Vec<Source> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut types = Vec::new();
        let mut uris = Vec::new();
        let mut suites = Vec::new();
        let mut components = Vec::new();
        let mut enabled = true;
        let mut current: Option<String> = None;
        for raw in stanza.lines() {
            if raw.trim_start().starts_with('#') {
                continue;
            }
            // Continuation lines start with whitespace and extend the previous field.
            let (key, value) = if raw.starts_with(' ') || raw.starts_with('\t') {
                match &current {
                    Some(k) => (k.clone(), raw.trim().to_string()),
                    None => continue,
                }
            } else if let Some((k, v)) = raw.split_once(':') {
                current = Some(k.trim().to_ascii_lowercase());
                (k.trim().to_ascii_lowercase(), v.trim().to_string())
            } else {
                continue;
            };
            let words = value.split_whitespace().map(str::to_string);
            match key.as_str() {
                "types" => types.extend(words),
                "uris" => uris.extend(words),
                "suites" => suites.extend(words),
                "components" => components.extend(words),
                "enabled" => enabled = !value.eq_ignore_ascii_case("no"),
                _ => {}
            }
        }
        if !enabled || !types.iter().any(|t| t == "deb") {
            continue;
        }
        for uri in uris {
            out.push(Source {
                uri,
                suites: suites.clone(),
                components: components.clone(),
                file: file.to_path_buf(),
            });
        }
    }
    out
}

/// Every `deb` source configured under `apt_dir` (normally `/etc/apt`).
pub fn sources_in(apt_dir: &Path) -> Vec<Source> {
    let mut out = Vec::new();
    let main = apt_dir.join("sources.list");
    if let Ok(t) = std::fs::read_to_string(&main) {
        out.extend(parse_one_line(&t, &main));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(apt_dir.join("sources.list.d"))
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    for f in files {
        let Ok(t) = std::fs::read_to_string(&f) else {
            continue;
        };
        match f.extension().and_then(|e| e.to_str()) {
            Some("list") => out.extend(parse_one_line(&t, &f)),
            Some("sources") => out.extend(parse_deb822(&t, &f)),
            _ => {}
        }
    }
    out
}

/// The mirror to debootstrap `suite` from: the URI of a source that lists `suite` itself
/// (preferred), else of one that lists another main-archive suite (a name without `-`, such as
/// `trixie`: a Debian mirror serves every suite). Security and update archives are never used.
///
/// Errors: no usable source (the message names the files read and says what to add).
pub fn mirror_for(suite: &str, apt_dir: &Path) -> Result<String> {
    let sources: Vec<Source> = sources_in(apt_dir)
        .into_iter()
        .filter(|s| {
            s.uri.starts_with("http://")
                || s.uri.starts_with("https://")
                || s.uri.starts_with("file:/")
        })
        .filter(|s| !s.uri.contains("security"))
        .collect();
    if let Some(s) = sources.iter().find(|s| s.suites.iter().any(|x| x == suite)) {
        return Ok(s.uri.clone());
    }
    if let Some(s) = sources.iter().find(|s| {
        s.suites
            .iter()
            .any(|x| !x.contains('-') && !x.contains('/'))
    }) {
        return Ok(s.uri.clone());
    }
    Err(Error::other(format!(
        "no Debian mirror found in the host's apt sources ({}/sources.list, sources.list.d/*.list, *.sources); \
         the sandbox builds its node image with debootstrap from the mirror apt uses: add a `deb <mirror> {suite} main` source",
        apt_dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_deb822_and_prefers_the_exact_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("sources.list.d")).expect("mkdir");
        std::fs::write(
            dir.path().join("sources.list.d/debian.sources"),
            "Types: deb\n# comment\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
             Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\nComponents: main\n",
        )
        .expect("write");
        assert_eq!(
            mirror_for("bookworm", dir.path()).expect("mirror"),
            "http://mirror.invalid/debian"
        );
    }

    #[test]
    fn reads_one_line_entries_with_options() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("sources.list"),
            "# x\ndeb-src http://src.invalid/debian bookworm main\n\
             deb [arch=amd64 signed-by=/k.gpg] http://other.invalid/debian trixie main\n",
        )
        .expect("write");
        // No source lists bookworm itself: the main archive of another suite serves it too.
        assert_eq!(
            mirror_for("bookworm", dir.path()).expect("mirror"),
            "http://other.invalid/debian"
        );
    }

    #[test]
    fn says_what_to_add_when_nothing_is_configured() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = mirror_for("bookworm", dir.path()).expect_err("no sources");
        assert!(err.to_string().contains("deb <mirror> bookworm main"));
    }
}
