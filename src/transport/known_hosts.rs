//! known_hosts: reads an OpenSSH `known_hosts` file and decides whether a server's host key
//! is trusted (no trust-on-first-use, ever).
//!
//! Supported like OpenSSH: plain host lists (`a,b,c`), glob patterns (`*`, `?`), negations
//! (`!pattern`), `[host]:port` entries for non-22 ports, hashed entries (`|1|salt|hash`,
//! HMAC-SHA1 as written by `ssh-keygen -H` / `HashKnownHosts yes`), and the `@revoked`
//! marker. `@cert-authority` lines are ignored (breakfix does not ask for host certificates).
//! Lines that cannot be parsed (unknown key types, typos) are skipped, not fatal.

use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::known_hosts::{Entry, HostPatterns, Marker};
use russh::keys::{Algorithm, HashAlg, PublicKey};
use sha1::Sha1;

/// What the file says about an offered key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A line for this host lists exactly this key.
    Trusted,
    /// No line for this host lists this key, and none lists another key of the same type.
    Unknown,
    /// A line for this host lists a different key of the same type (1-based line number).
    Changed { line: usize },
    /// The key is marked `@revoked` (1-based line number).
    Revoked { line: usize },
}

/// The parsed file: `(line number, entry)` pairs.
#[derive(Debug, Default)]
pub(crate) struct KnownHosts {
    entries: Vec<(usize, Entry)>,
}

impl KnownHosts {
    /// Reads and parses `path`. Errors only when the file cannot be read.
    pub(crate) fn load(path: &Path) -> std::io::Result<KnownHosts> {
        let text = std::fs::read_to_string(path)?;
        Ok(KnownHosts::parse(&text))
    }

    /// Parses the text of a known_hosts file, skipping blank, comment and malformed lines.
    pub(crate) fn parse(text: &str) -> KnownHosts {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // ssh-key's parser splits on single spaces; OpenSSH accepts any whitespace.
            let normalised = line.split_whitespace().collect::<Vec<_>>().join(" ");
            match normalised.parse::<Entry>() {
                Ok(e) => entries.push((i + 1, e)),
                Err(e) => tracing::debug!("known_hosts line {} skipped: {e}", i + 1),
            }
        }
        KnownHosts { entries }
    }

    /// Entries (non-CA) whose host patterns match `host_port`.
    fn matching<'a>(&'a self, host_port: &'a str) -> impl Iterator<Item = &'a (usize, Entry)> + 'a {
        self.entries
            .iter()
            .filter(|(_, e)| e.marker() != Some(&Marker::CertAuthority))
            .filter(move |(_, e)| host_matches(e.host_patterns(), host_port))
    }

    /// Checks `key` offered by `host_port` (`address`, or `[address]:port` when the port
    /// is not 22).
    pub(crate) fn check(&self, host_port: &str, key: &PublicKey) -> Verdict {
        let mut changed = None;
        let mut trusted = false;
        for (line, e) in self.matching(host_port) {
            let same_key = e.public_key().key_data() == key.key_data();
            if e.marker() == Some(&Marker::Revoked) {
                if same_key {
                    return Verdict::Revoked { line: *line };
                }
                continue;
            }
            if same_key {
                trusted = true;
            } else if same_family(&e.public_key().algorithm(), &key.algorithm())
                && changed.is_none()
            {
                changed = Some(*line);
            }
        }
        match (trusted, changed) {
            (true, _) => Verdict::Trusted,
            (false, Some(line)) => Verdict::Changed { line },
            (false, None) => Verdict::Unknown,
        }
    }

    /// Host-key algorithms to offer for `host_port`, in russh's default preference order,
    /// restricted to the key types the file lists for that host (so the server presents a
    /// key we can check, as OpenSSH does). Empty when the host is not listed at all.
    pub(crate) fn host_key_algorithms(&self, host_port: &str) -> Vec<Algorithm> {
        let listed: Vec<Algorithm> = self
            .matching(host_port)
            .filter(|(_, e)| e.marker().is_none())
            .map(|(_, e)| e.public_key().algorithm())
            .collect();
        russh::Preferred::DEFAULT
            .key
            .iter()
            .filter(|a| listed.iter().any(|l| same_family(l, a)))
            .cloned()
            .collect()
    }
}

/// Key types compare by family: an `ssh-rsa` line also covers `rsa-sha2-256/512`.
fn same_family(a: &Algorithm, b: &Algorithm) -> bool {
    match (a, b) {
        (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
        _ => a == b,
    }
}

/// The host string OpenSSH looks up: `address` on port 22, else `[address]:port`.
pub(crate) fn host_port(address: &str, port: u16) -> String {
    if port == 22 {
        address.to_string()
    } else {
        format!("[{address}]:{port}")
    }
}

fn host_matches(patterns: &HostPatterns, host_port: &str) -> bool {
    let host = host_port.to_ascii_lowercase();
    match patterns {
        HostPatterns::HashedName { salt, hash } => match Hmac::<Sha1>::new_from_slice(salt) {
            Ok(mac) => mac.chain_update(host.as_bytes()).verify_slice(hash).is_ok(),
            Err(_) => false,
        },
        HostPatterns::Patterns(list) => {
            let mut positive = false;
            for p in list {
                let p = p.to_ascii_lowercase();
                if let Some(neg) = p.strip_prefix('!') {
                    if glob(neg.as_bytes(), host.as_bytes()) {
                        return false;
                    }
                } else if glob(p.as_bytes(), host.as_bytes()) {
                    positive = true;
                }
            }
            positive
        }
    }
}

/// `*` and `?` glob, as OpenSSH's match_pattern.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

/// `SHA256:...` fingerprint, as `ssh-keygen -l` prints it.
pub(crate) fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIK/k7gtnA3sWRLKGDgiTWub3yvMxuoEhkwpI3ea758ry";
    const ED_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAID1THpAUxSpF/ZQJXGtoW8lvf3kmu8FWbmuLUkz7jSqo";

    fn key(b64: &str) -> PublicKey {
        PublicKey::from_openssh(&format!("ssh-ed25519 {b64}")).expect("test key parses")
    }

    #[test]
    fn glob_matches_like_openssh() {
        assert!(glob(b"*.example.org", b"a.example.org"));
        assert!(glob(b"198.18.0.?", b"198.18.0.7"));
        assert!(!glob(b"198.18.0.?", b"198.18.0.17"));
        assert!(glob(b"*", b""));
        assert!(!glob(b"a", b"ab"));
    }

    #[test]
    fn verdicts() {
        let kh = KnownHosts::parse(&format!(
            "# comment\n\n198.18.0.11  ssh-ed25519\t{ED_A} c\n[127.0.0.1]:2222 ssh-ed25519 {ED_B}\n\
             garbage line\n*.lab,!bad.lab ssh-ed25519 {ED_A}\n@revoked * ssh-ed25519 {ED_B}\n"
        ));
        assert_eq!(kh.check("198.18.0.11", &key(ED_A)), Verdict::Trusted);
        assert_eq!(
            kh.check("198.18.0.11", &key(ED_B)),
            Verdict::Revoked { line: 7 }
        );
        assert_eq!(kh.check("198.18.0.12", &key(ED_A)), Verdict::Unknown);
        assert_eq!(kh.check("x.lab", &key(ED_A)), Verdict::Trusted);
        assert_eq!(kh.check("bad.lab", &key(ED_A)), Verdict::Unknown);
        assert_eq!(kh.check("127.0.0.1", &key(ED_A)), Verdict::Unknown);
        assert_eq!(
            kh.host_key_algorithms("198.18.0.11"),
            vec![Algorithm::Ed25519]
        );
        assert!(kh.host_key_algorithms("198.18.0.99").is_empty());
    }

    #[test]
    fn changed_key_is_reported_with_its_line() {
        let kh = KnownHosts::parse(&format!("198.18.0.11 ssh-ed25519 {ED_B}\n"));
        assert_eq!(
            kh.check("198.18.0.11", &key(ED_A)),
            Verdict::Changed { line: 1 }
        );
    }

    #[test]
    fn hashed_entries_match() {
        // `|1|salt|hash` for "198.18.0.11", salt = 20 zero bytes.
        let salt = [0u8; 20];
        let mac = Hmac::<Sha1>::new_from_slice(&salt)
            .expect("hmac accepts any key length")
            .chain_update(b"198.18.0.11")
            .finalize()
            .into_bytes();
        let b64 = |b: &[u8]| {
            use russh::keys::ssh_encoding::base64::{Base64, Encoding};
            Base64::encode_string(b)
        };
        let line = format!("|1|{}|{} ssh-ed25519 {ED_A}\n", b64(&salt), b64(&mac));
        let kh = KnownHosts::parse(&line);
        assert_eq!(kh.check("198.18.0.11", &key(ED_A)), Verdict::Trusted);
        assert_eq!(kh.check("198.18.0.12", &key(ED_A)), Verdict::Unknown);
    }
}
