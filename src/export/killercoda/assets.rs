//! Assets: the files copied onto the node (binary, inventory, lab, scenarios, graders), where
//! they land (host paths), the generated inventory, and the shipped binary's glibc need.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use super::index::Asset;
use super::{io, Content, Options, OutFile, BINARY_ASSET, DEFAULT_HOST_DIR, INVENTORY_ASSET};
use crate::error::{Error, Result};
use crate::inventory::{Cluster, EtcdInfo, Inventory, Node, Topology, TransportKind};

/// The inventory the exported scripts use: the controlplane itself over the local transport,
/// kubeadm's etcd TLS files and admin kubeconfig.
pub fn local_inventory(topology: Topology) -> Inventory {
    Inventory {
        api_version: "breakfix/v1".into(),
        kind: "Inventory".into(),
        cluster: Cluster {
            name: "killercoda".into(),
            topology,
            etcd: EtcdInfo {
                endpoints: vec!["https://127.0.0.1:2379".into()],
                ca_file: "/etc/kubernetes/pki/etcd/ca.crt".into(),
                cert_file: "/etc/kubernetes/pki/etcd/server.crt".into(),
                key_file: "/etc/kubernetes/pki/etcd/server.key".into(),
            },
            kubeconfig: Some("/etc/kubernetes/admin.conf".into()),
        },
        nodes: vec![Node {
            name: "controlplane".into(),
            address: crate::host_address::AUTO.into(),
            port: 22,
            user: "root".into(),
            identity_file: None,
            known_hosts: None,
            roles: vec!["control-plane".into(), "etcd".into()],
            transport: TransportKind::Local,
        }],
    }
}

/// The newest glibc symbol version a dynamically linked binary asks for (`GLIBC_2.34` ->
/// `(2, 34)`), found by scanning it for version names; `None` for a static binary or when
/// unreadable. The image that runs the binary needs at least this glibc.
pub fn required_glibc(binary: &Path) -> Option<(u32, u32)> {
    let bytes = std::fs::read(binary).ok()?;
    let needle = b"GLIBC_";
    let mut best: Option<(u32, u32)> = None;
    let mut i = 0;
    while let Some(pos) = bytes[i..].windows(needle.len()).position(|w| w == needle) {
        let start = i + pos + needle.len();
        let tail = &bytes[start..bytes.len().min(start + 12)];
        let text: String = tail
            .iter()
            .take_while(|b| b.is_ascii_digit() || **b == b'.')
            .map(|b| *b as char)
            .collect();
        let mut parts = text.split('.').map(|p| p.parse::<u32>());
        if let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) {
            if best.is_none_or(|b| (major, minor) > b) {
                best = Some((major, minor));
            }
        }
        i = start;
    }
    best
}

/// `--host-dir` checked (absolute, no `.`/`..`, no control characters) and without a
/// trailing `/`.
pub(super) fn check_host_dir(d: &str) -> Result<String> {
    let t = d.trim_end_matches('/');
    let ok = t.starts_with('/')
        && t.len() > 1
        && !Path::new(t)
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        && !t.chars().any(|c| c.is_control());
    if ok {
        Ok(t.to_string())
    } else {
        Err(Error::other(format!(
            "--host-dir `{d}`: expected an absolute directory on the node, e.g. {DEFAULT_HOST_DIR}"
        )))
    }
}

/// `p` made absolute and with `.`/`..` resolved lexically: the same way a relative scenario
/// path in a lab is resolved against the lab's directory.
fn normalize(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).map_err(io(format!("resolving {}", p.display())))?;
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    Ok(out)
}

fn host_join(base: &str, rel: &Path) -> String {
    let mut s = base.trim_end_matches('/').to_string();
    for c in rel.components() {
        s.push('/');
        s.push_str(&c.as_os_str().to_string_lossy());
    }
    s
}

/// The source files of a lab (lab, scenarios, graders), each once, the lab first.
#[derive(Default)]
pub(super) struct LabFiles {
    /// `(path to read it from, normalized absolute path)`; the latter decides the layout.
    files: Vec<(PathBuf, PathBuf)>,
    seen: BTreeSet<PathBuf>,
}

impl LabFiles {
    /// Adds `p` unless a path to the same file was added before.
    pub(super) fn add(&mut self, p: &Path) -> Result<()> {
        let norm = normalize(p)?;
        if self.seen.insert(norm.clone()) {
            self.files.push((p.to_path_buf(), norm));
        }
        Ok(())
    }
}

/// Where things are on the node; what the pages and scripts refer to.
#[derive(Debug, Clone, Serialize)]
pub(super) struct HostPaths {
    /// `--host-dir`, without a trailing `/`.
    pub dir: String,
    /// Directory of the binary (`DIR/bin`).
    pub bin_dir: String,
    /// The breakfix binary.
    pub binary: String,
    /// The generated inventory.
    pub inventory: String,
    /// The lab file.
    pub lab: String,
}

/// The assets of an export: their files under `assets/`, their `index.json` entries, and the
/// host paths they give.
pub(super) struct Assets {
    /// Files under `assets/`, in `list` order.
    pub files: Vec<OutFile>,
    /// `details.assets.host01`.
    pub list: Vec<Asset>,
    /// Where they land.
    pub host: HostPaths,
}

impl Assets {
    /// Adds one asset; two with the same file name are refused (Killercoda copies by name).
    fn add(
        &mut self,
        names: &mut BTreeMap<String, String>,
        name: &str,
        source: String,
        target: String,
        chmod: Option<&str>,
        content: Content,
    ) -> Result<()> {
        if let Some(other) = names.insert(name.to_string(), source.clone()) {
            return Err(Error::other(format!(
                "two files would share the asset name `{name}` ({other} and {source}): Killercoda copies assets by file name, so rename one of them"
            )));
        }
        self.files.push(OutFile {
            path: Path::new("assets").join(name),
            content,
            mode: if chmod == Some("+x") { 0o755 } else { 0o644 },
        });
        self.list.push(Asset {
            file: name.to_string(),
            target,
            chmod: chmod.map(str::to_string),
        });
        Ok(())
    }
}

/// Every asset: the binary into `DIR/bin`, the inventory into `DIR`, and the lab's files
/// under `DIR` at the same positions relative to each other as here (labs/x.yaml,
/// scenarios/y.yaml, graders/z.yaml), so `../scenarios/...` in the lab and the default
/// graders dir resolve on the node exactly as they do here. Reads the lab's files.
pub(super) fn collect(sources: &LabFiles, host_dir: &str, opts: &Options) -> Result<Assets> {
    let files = &sources.files;
    let mut root = files
        .first()
        .and_then(|(_, norm)| norm.parent())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    for (_, norm) in files {
        while !norm.starts_with(&root) {
            if !root.pop() {
                break;
            }
        }
    }

    let bin_dir = format!("{host_dir}/bin");
    let mut out = Assets {
        files: Vec::new(),
        list: Vec::new(),
        host: HostPaths {
            dir: host_dir.to_string(),
            binary: format!("{bin_dir}/{BINARY_ASSET}"),
            inventory: format!("{host_dir}/{INVENTORY_ASSET}"),
            bin_dir: bin_dir.clone(),
            lab: String::new(),
        },
    };
    let mut names = BTreeMap::new();
    out.add(
        &mut names,
        BINARY_ASSET,
        opts.binary.display().to_string(),
        bin_dir,
        Some("+x"),
        Content::CopyOf(opts.binary.clone()),
    )?;
    let inv_text = serde_saphyr::to_string(&local_inventory(opts.topology))
        .map_err(|e| Error::other(format!("serializing the inventory: {e}")))?;
    let inv_text = format!(
        "# breakfix inventory for the Killercoda node itself (docs/inventory.md, docs/killercoda.md).\n\
         # Written by `breakfix export killercoda --topology {}`.\n{inv_text}",
        opts.topology.name()
    );
    out.add(
        &mut names,
        INVENTORY_ASSET,
        "the generated inventory".into(),
        host_dir.to_string(),
        None,
        Content::Bytes(inv_text.into_bytes()),
    )?;
    for (i, (read, norm)) in files.iter().enumerate() {
        let rel = norm.strip_prefix(&root).map_err(|_| {
            Error::other(format!("{} is outside {}", norm.display(), root.display()))
        })?;
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .ok_or_else(|| Error::other(format!("{} has no file name", norm.display())))?;
        let target = host_join(host_dir, rel.parent().unwrap_or(Path::new("")));
        if i == 0 {
            out.host.lab = format!("{target}/{name}");
        }
        let bytes = std::fs::read(read).map_err(io(format!("reading {}", read.display())))?;
        out.add(
            &mut names,
            &name,
            read.display().to_string(),
            target,
            None,
            Content::Bytes(bytes),
        )?;
    }
    Ok(out)
}
