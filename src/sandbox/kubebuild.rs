//! Kubernetes build cache: kubeadm, kubelet, the control plane, kubectl, etcd/etcdctl/etcdutl,
//! crictl and pause built from their Go modules at the versions of `scripts/versions.env`
//! (by `scripts/build-kube.sh`, both embedded in breakfix), cached under
//! `<image dir>/kube-<key>/` where the key hashes those two files.
//!
//! # Guarantees
//! - A build runs in `<image dir>/.kube-build-<key>-<pid>/` and is renamed into place only when
//!   it succeeded, so the cache never holds a half build; a new pin (or build recipe) is a new
//!   key, so it rebuilds, and an unchanged one never does.
//! - [`verify`] checks every program against the cache's `SHA256SUMS` before the sandbox uses
//!   it: a corrupt or incomplete cache is an error naming the file and how to rebuild.
//!
//! # Caveats
//! - A cold build takes tens of minutes on two cores (BENCHMARKS.md); Go's module and build
//!   caches (`go env GOMODCACHE GOCACHE`) make a rebuild after a pin change faster.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::fsutil::{self, io_err};
use super::progress::Step;
use crate::error::{Error, Result};

/// `scripts/versions.env`: the pinned versions (KEY=VALUE lines, `#` comments).
pub const VERSIONS: &str = include_str!("../../scripts/versions.env");
/// `scripts/build-kube.sh`: the build recipe.
pub const BUILD_SCRIPT: &str = include_str!("../../scripts/build-kube.sh");
/// Every program the build produces, as named in `<cache>/bin/`.
pub const PROGRAMS: &[&str] = &[
    "kubeadm",
    "kubelet",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "etcd",
    "etcdctl",
    "etcdutl",
    "crictl",
    "pause",
];
/// Upper bound on one build (a cold build on two cores takes about 20 minutes).
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(90 * 60);

/// The pinned versions, parsed from [`VERSIONS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pins {
    /// Kubernetes release, e.g. `v1.37.2` (also the tag of the control plane's images).
    pub kubernetes: String,
    /// etcd release, e.g. `v3.6.16`.
    pub etcd: String,
    /// Tag of kubeadm's etcd image for that release, e.g. `3.6.16-0`.
    pub etcd_image_tag: String,
    /// cri-tools release (crictl), e.g. `v1.37.0`.
    pub cri_tools: String,
    /// Tag of the pause image kubeadm names, e.g. `3.10.2`.
    pub pause: String,
}

/// Parses `KEY=VALUE` lines (blank lines and `#` comments skipped).
///
/// Errors: a line without `=`, or a missing key (named, with the file).
pub fn parse_pins(text: &str) -> Result<Pins> {
    let mut kv = std::collections::BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(Error::other(format!(
                "scripts/versions.env:{}: expected KEY=VALUE, found `{line}`",
                i + 1
            )));
        };
        kv.insert(k.trim().to_string(), v.trim().to_string());
    }
    let get = |k: &str| {
        kv.get(k).cloned().ok_or_else(|| {
            Error::other(format!(
                "scripts/versions.env: no {k}= line (expected e.g. {k}=...)"
            ))
        })
    };
    Ok(Pins {
        kubernetes: get("KUBERNETES_VERSION")?,
        etcd: get("ETCD_VERSION")?,
        etcd_image_tag: get("ETCD_IMAGE_TAG")?,
        cri_tools: get("CRI_TOOLS_VERSION")?,
        pause: get("PAUSE_VERSION")?,
    })
}

/// The pins this breakfix was built with.
///
/// Errors: as [`parse_pins`] (only if the embedded file is broken).
pub fn pins() -> Result<Pins> {
    parse_pins(VERSIONS)
}

/// The cache key: sha256 of the pins and the build script (16 hex digits).
pub fn cache_key() -> String {
    let mut h = Sha256::new();
    h.update(VERSIONS.as_bytes());
    h.update(b"\0");
    h.update(BUILD_SCRIPT.as_bytes());
    hex::encode(h.finalize())[..16].to_string()
}

/// The cache directory for the current pins: `<image dir>/kube-<key>`.
pub fn cache_dir(image_dir: &Path) -> PathBuf {
    image_dir.join(format!("kube-{}", cache_key()))
}

/// A verified build: where its programs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// The cache directory.
    pub dir: PathBuf,
    /// `<dir>/bin`: one file per [`PROGRAMS`] entry.
    pub bin: PathBuf,
}

impl Build {
    /// Path of one program.
    pub fn program(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }
}

/// Checks the build in `dir`: `SHA256SUMS` lists every program of [`PROGRAMS`] and each file
/// has that digest.
///
/// Errors: a missing list or program, or a digest mismatch, named with the path and the way
/// to rebuild (`breakfix sandbox build --rebuild`).
pub fn verify(dir: &Path) -> Result<Build> {
    let sums_path = dir.join("SHA256SUMS");
    let fix = "remove it and build again: `breakfix sandbox build --rebuild`";
    let sums = std::fs::read_to_string(&sums_path).map_err(|e| {
        Error::other(format!(
            "the build cache {} is incomplete ({}: {e}); {fix}",
            dir.display(),
            sums_path.display()
        ))
    })?;
    let mut listed = std::collections::BTreeMap::new();
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let Some((digest, name)) = line.split_once("  ") else {
            return Err(Error::other(format!(
                "{}: expected `<sha256>  <name>` lines, found `{line}`; {fix}",
                sums_path.display()
            )));
        };
        listed.insert(name.trim().to_string(), digest.trim().to_string());
    }
    let bin = dir.join("bin");
    for p in PROGRAMS {
        let Some(want) = listed.get(*p) else {
            return Err(Error::other(format!(
                "{} does not list {p}; {fix}",
                sums_path.display()
            )));
        };
        let path = bin.join(p);
        let got = sha256_file(&path).map_err(|e| {
            Error::other(format!(
                "the build cache is corrupt: {}: {e}; {fix}",
                path.display()
            ))
        })?;
        if &got != want {
            return Err(Error::other(format!(
                "the build cache is corrupt: {} has sha256 {got}, {} says {want}; {fix}",
                path.display(),
                sums_path.display()
            )));
        }
    }
    Ok(Build {
        dir: dir.to_path_buf(),
        bin,
    })
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// Returns the verified build for the current pins, building it first when the cache has
/// none (`rebuild`: remove the cached one and build anyway). `step` shows the build script's
/// step lines.
///
/// Errors: the build fails (the message names the module, the command and quotes Go's last
/// lines; the full log is kept at `<image dir>/kube-<key>.failed.log`), takes longer than
/// [`BUILD_TIMEOUT`], or the cache is corrupt (see [`verify`]).
pub async fn ensure(image_dir: &Path, rebuild: bool, step: &Step) -> Result<Build> {
    let dir = cache_dir(image_dir);
    if rebuild && dir.exists() {
        fsutil::remove_tree(&dir)?;
    }
    if dir.join("SHA256SUMS").is_file() {
        step.set_message(format!("cached at {}", dir.display()));
        return verify(&dir);
    }
    fsutil::mkdir_mode(image_dir, 0o755)?;
    let key = cache_key();
    let tmp = image_dir.join(format!(".kube-build-{key}-{}", std::process::id()));
    if tmp.exists() {
        fsutil::remove_tree(&tmp)?;
    }
    let scripts = tmp.join("scripts");
    fsutil::write_file(&scripts.join("versions.env"), VERSIONS.as_bytes(), 0o644)?;
    fsutil::write_file(
        &scripts.join("build-kube.sh"),
        BUILD_SCRIPT.as_bytes(),
        0o755,
    )?;
    let out = tmp.join("out");
    let r = run_script(&scripts.join("build-kube.sh"), &out, step).await;
    if let Err(e) = r {
        let kept = image_dir.join(format!("kube-{key}.failed.log"));
        let _ = std::fs::rename(out.join("build.log"), &kept);
        let _ = fsutil::remove_tree(&tmp);
        return Err(Error::other(format!(
            "building Kubernetes, etcd and crictl from their Go modules failed:\n{e}\n(full log: {})",
            kept.display()
        )));
    }
    verify(&out)?;
    std::fs::rename(&out, &dir).map_err(io_err(format!(
        "moving the build {} to {}",
        out.display(),
        dir.display()
    )))?;
    let _ = fsutil::remove_tree(&tmp);
    verify(&dir)
}

/// Runs the build script, showing its `step N/M: ...` lines on `step` and keeping the last
/// lines of its stderr for the error.
async fn run_script(script: &Path, out: &Path, step: &Step) -> Result<()> {
    let line = format!("bash {} {}", script.display(), out.display());
    let mut child = tokio::process::Command::new("bash")
        .arg(script)
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(io_err(format!("starting `{line}`")))?;
    let (Some(so), Some(se)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(Error::other(
            "the build script's output pipes were not set up",
        ));
    };
    let shown = async {
        let mut lines = BufReader::new(so).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            step.set_message(l);
        }
    };
    let errors = async {
        let mut lines = BufReader::new(se).lines();
        let mut all = Vec::new();
        while let Ok(Some(l)) = lines.next_line().await {
            all.push(l);
        }
        all
    };
    let work = async {
        let (_, err_lines, status) = tokio::join!(shown, errors, child.wait());
        (err_lines, status)
    };
    let (err_lines, status) = match tokio::time::timeout(BUILD_TIMEOUT, work).await {
        Ok(r) => r,
        Err(_) => {
            return Err(Error::Timeout {
                host: "localhost".into(),
                command: line,
                after: BUILD_TIMEOUT,
            })
        }
    };
    let status = status.map_err(io_err(format!("waiting for `{line}`")))?;
    if status.success() {
        return Ok(());
    }
    let tail = err_lines[err_lines.len().saturating_sub(40)..].join("\n");
    Err(Error::other(if tail.is_empty() {
        format!("`{line}` exited with {status}")
    } else {
        tail
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_pins_parse() {
        let p = pins().expect("pins");
        assert!(p.kubernetes.starts_with("v1."), "{p:?}");
        assert!(p.etcd.starts_with("v3.6."), "{p:?}");
        assert_eq!(
            p.etcd_image_tag,
            format!("{}-0", p.etcd.trim_start_matches('v'))
        );
        assert_eq!(cache_key().len(), 16);
    }

    #[test]
    fn a_missing_pin_is_named() {
        let e = parse_pins("KUBERNETES_VERSION=v1.37.2\n# c\n\nETCD_VERSION=v3.6.16\n")
            .expect_err("missing");
        assert!(e.to_string().contains("ETCD_IMAGE_TAG"), "{e}");
        let e = parse_pins("KUBERNETES_VERSION v1\n").expect_err("bad line");
        assert!(e.to_string().contains("versions.env:1"), "{e}");
    }

    #[test]
    fn verify_names_a_corrupt_program() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sums = String::new();
        for p in PROGRAMS {
            let path = dir.path().join("bin").join(p);
            fsutil::write_file(&path, p.as_bytes(), 0o755).expect("write");
            sums.push_str(&format!("{}  {p}\n", sha256_file(&path).expect("hash")));
        }
        fsutil::write_file(&dir.path().join("SHA256SUMS"), sums.as_bytes(), 0o644).expect("sums");
        verify(dir.path()).expect("intact");
        fsutil::write_file(&dir.path().join("bin/kubelet"), b"tampered", 0o755).expect("write");
        let e = verify(dir.path()).expect_err("corrupt");
        assert!(e.to_string().contains("bin/kubelet"), "{e}");
        assert!(e.to_string().contains("--rebuild"), "{e}");
        std::fs::remove_file(dir.path().join("bin/etcd")).expect("rm");
        fsutil::write_file(&dir.path().join("bin/kubelet"), b"kubelet", 0o755).expect("write");
        let e = verify(dir.path()).expect_err("missing");
        assert!(e.to_string().contains("bin/etcd"), "{e}");
    }
}
