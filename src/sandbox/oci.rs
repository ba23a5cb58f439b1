//! OCI: container images built on this machine from local files, with no registry, written as
//! OCI image-layout tar archives that `ctr -n k8s.io images import FILE` (containerd 1.6)
//! imports under the image's full name.
//!
//! Format ([OCI image layout], [OCI image index], [OCI image manifest], [OCI image config]):
//! the archive is an uncompressed tar holding, sorted by path,
//!
//! - `blobs/sha256/<hex>`: every blob, named by the SHA-256 of its bytes:
//!   - the image manifest (`application/vnd.oci.image.manifest.v1+json`, schemaVersion 2),
//!   - the image config (`application/vnd.oci.image.config.v1+json`): architecture, os
//!     `linux`, `config` {`Entrypoint`, `Cmd`, `Env`, `WorkingDir`} without the empty ones,
//!     `rootfs` {`type`: `layers`, `diff_ids`} and `created` = `1970-01-01T00:00:00Z` so
//!     builds are reproducible,
//!   - ONE layer, an uncompressed tar (`application/vnd.oci.image.layer.v1.tar`), so its
//!     `diff_id` equals its digest;
//! - `index.json`: an image index (`application/vnd.oci.image.index.v1+json`) with one
//!   manifest descriptor carrying the platform and two annotations:
//!   `io.containerd.image.name`, the full reference (e.g.
//!   `registry.k8s.io/kube-apiserver:v1.37.2`), which containerd's importer names the image
//!   after ([containerd's image name annotation], read by [containerd's archive importer]),
//!   and `org.opencontainers.image.ref.name`, the tag (e.g. `v1.37.2`), as the layout spec
//!   defines it;
//! - `oci-layout`: `{"imageLayoutVersion":"1.0.0"}`.
//!
//! Output is deterministic: the same inputs give a byte-identical archive (tar headers with
//! mtime 0, uid/gid 0, no user or group names, entries sorted, parents created with mode 0755).
//! Source files are streamed, never loaded whole: the layer is written to a temporary file
//! next to the output while it is hashed, then copied into the archive, which is itself
//! written to a temporary file and renamed into place.
//!
//! [OCI image layout]: https://github.com/opencontainers/image-spec/blob/v1.1.0/image-layout.md
//! [OCI image index]: https://github.com/opencontainers/image-spec/blob/v1.1.0/image-index.md
//! [OCI image manifest]: https://github.com/opencontainers/image-spec/blob/v1.1.0/manifest.md
//! [OCI image config]: https://github.com/opencontainers/image-spec/blob/v1.1.0/config.md
//! [containerd's image name annotation]:
//!     https://github.com/containerd/containerd/blob/release/1.6/images/annotations.go
//! [containerd's archive importer]:
//!     https://github.com/containerd/containerd/blob/release/1.6/images/archive/importer.go

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest, Sha256};

use super::fsutil::io_err;
use crate::error::{Error, Result};

/// Media type of `index.json` (OCI image index).
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of the image manifest blob.
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of the image config blob.
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of the (uncompressed) layer blob.
pub const MEDIA_TYPE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// Annotation containerd's importer names the image after (the full reference).
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// OCI annotation holding the tag part of the reference.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The config's `created` time: the epoch, so identical inputs give identical digests.
pub const CREATED: &str = "1970-01-01T00:00:00Z";

/// Mode of the parent directories created automatically in the layer.
const PARENT_DIR_MODE: u32 = 0o755;
/// Mode of every regular file and directory of the outer archive.
const ARCHIVE_FILE_MODE: u32 = 0o644;

/// One entry of an image's single layer. Paths are absolute inside the image (e.g.
/// `/usr/local/bin/etcd`), without `.` or `..` components; modes are permission bits
/// (at most `0o7777`). Owner is always root (uid/gid 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A regular file copied from this machine; streamed, never loaded in memory.
    File {
        /// Path in the image, e.g. `/usr/local/bin/etcd`.
        path: String,
        /// Host file to copy (symlinks are followed); must be a regular file.
        source: PathBuf,
        /// Permission bits, e.g. `0o755`.
        mode: u32,
    },
    /// A regular file with the given content.
    Bytes {
        /// Path in the image, e.g. `/etc/kubernetes/config.yaml`.
        path: String,
        /// File content.
        bytes: Vec<u8>,
        /// Permission bits, e.g. `0o644`.
        mode: u32,
    },
    /// A symbolic link.
    Symlink {
        /// Path of the link in the image, e.g. `/usr/bin/etcd`.
        path: String,
        /// What it points to, absolute or relative, e.g. `/usr/local/bin/etcd`.
        target: String,
    },
    /// A directory (parents of other entries are created anyway, with mode 0755; list one
    /// only to give it another mode or to create it empty).
    Dir {
        /// Path in the image, e.g. `/var/lib/etcd`.
        path: String,
        /// Permission bits, e.g. `0o700`.
        mode: u32,
    },
}

impl Entry {
    /// The entry's path in the image.
    pub fn path(&self) -> &str {
        match self {
            Entry::File { path, .. }
            | Entry::Bytes { path, .. }
            | Entry::Symlink { path, .. }
            | Entry::Dir { path, .. } => path,
        }
    }
}

/// What to build: the image's name, its single layer's entries and its run configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageSpec {
    /// Full reference the image is imported under, `name:tag` with a registry host, e.g.
    /// `registry.k8s.io/etcd:3.6.16-0` (see [`split_reference`]).
    pub reference: String,
    /// The layer's content, in any order.
    pub entries: Vec<Entry>,
    /// Config `Entrypoint` (omitted when empty).
    pub entrypoint: Vec<String>,
    /// Config `Cmd` (omitted when empty).
    pub cmd: Vec<String>,
    /// Config `Env`, `KEY=value` each (omitted when empty).
    pub env: Vec<String>,
    /// Config `WorkingDir` (omitted when `None`).
    pub workdir: Option<String>,
}

/// What [`write_archive`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The reference the archive imports as, e.g. `registry.k8s.io/etcd:3.6.16-0`.
    pub reference: String,
    /// Digest of the image manifest, `sha256:<64 hex>` (what `ctr images ls` shows).
    pub manifest_digest: String,
    /// Size of the archive file in bytes.
    pub size: u64,
}

/// Splits a full image reference into name and tag: `registry.k8s.io/etcd:3.6.16-0` ->
/// (`registry.k8s.io/etcd`, `3.6.16-0`). A registry host with a port works
/// (`localhost:5000/x:1` -> (`localhost:5000/x`, `1`)).
///
/// The name must start with a registry host (a component with a `.` or `:`, or `localhost`)
/// because containerd stores the name exactly as given while the kubelet looks images up by
/// their full name (`etcd` means `docker.io/library/etcd`).
///
/// Errors: no tag, a digest (`@sha256:...`) instead of a tag, no registry host, an empty or
/// malformed name or tag (tags are `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, repository path
/// components lowercase `[a-z0-9._-]`).
pub fn split_reference(reference: &str) -> Result<(String, String)> {
    let bad = |why: &str| {
        Error::other(format!(
            "image reference `{reference}` {why} (expected a full name:tag such as \
             registry.k8s.io/etcd:3.6.16-0)"
        ))
    };
    if reference.is_empty() {
        return Err(bad("is empty"));
    }
    if reference
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad("contains whitespace or control characters"));
    }
    if reference.contains('@') {
        return Err(bad("has a digest; name the image by a tag instead"));
    }
    let last_start = reference.rfind('/').map_or(0, |i| i + 1);
    let Some(colon) = reference[last_start..].rfind(':').map(|i| last_start + i) else {
        return Err(bad("has no tag"));
    };
    let (name, tag) = (&reference[..colon], &reference[colon + 1..]);
    if tag.is_empty() {
        return Err(bad("has an empty tag"));
    }
    let tag_ok = tag.len() <= 128
        && tag
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_alphanumeric() || c == '_' || (i > 0 && "._-".contains(c)));
    if !tag_ok {
        return Err(bad(&format!(
            "has an invalid tag `{tag}` (tags are letters, digits, `_`, `.` and `-`, not \
             starting with `.` or `-`, at most 128 characters)"
        )));
    }
    let components: Vec<&str> = name.split('/').collect();
    if components.iter().any(|c| c.is_empty()) {
        return Err(bad("has an empty name component"));
    }
    let host = components[0];
    let has_host =
        components.len() >= 2 && (host.contains('.') || host.contains(':') || host == "localhost");
    if !has_host {
        return Err(bad(
            "has no registry host (containerd would store it under this short name, but the \
             kubelet looks it up by its full name)",
        ));
    }
    let host_ok = match host.split_once(':') {
        Some((h, port)) => {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c))
                && !port.is_empty()
                && port.chars().all(|c| c.is_ascii_digit())
        }
        None => host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c)),
    };
    if !host_ok {
        return Err(bad(&format!("has an invalid registry host `{host}`")));
    }
    for comp in &components[1..] {
        let ok = comp
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && comp.starts_with(|c: char| c.is_ascii_alphanumeric())
            && comp.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            return Err(bad(&format!(
                "has an invalid name component `{comp}` (lowercase letters, digits, `.`, `_` \
                 and `-`, starting and ending with a letter or digit)"
            )));
        }
    }
    Ok((name.to_string(), tag.to_string()))
}

/// Builds the image `spec` and writes it to `out` as an OCI image-layout tar archive (see the
/// module doc for the format), ready for `ctr -n k8s.io images import out`.
///
/// The layer is written to a temporary file in `out`'s directory (created if missing) while
/// it is hashed; the archive is written to another temporary file there, synced and renamed
/// onto `out` (replacing it). Both temporary files are removed, also on error. The archive
/// file gets mode 0644. Same inputs give a byte-identical archive.
///
/// Errors: an invalid reference ([`split_reference`]); an entry path that is not absolute or
/// has `.`/`..` components; a path listed twice, or under a path that is not a directory; a
/// mode beyond `0o7777`; an empty symlink target; a source file that is missing, not a
/// regular file or unreadable (the error names the source and the entry); an output that
/// cannot be written (the error names the file); a host architecture OCI has no name for.
pub fn write_archive(spec: &ImageSpec, out: &Path) -> Result<Built> {
    let reference = spec.reference.as_str();
    let (_name, tag) = split_reference(reference)?;
    let arch = oci_arch()?;
    let tree = plan_layer(spec)?;

    if out.is_dir() {
        return Err(Error::other(format!(
            "image {reference}: output {} is a directory (expected a file path such as \
             /tmp/etcd.tar)",
            out.display()
        )));
    }
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(io_err(format!(
        "image {reference}: creating output directory {}",
        dir.display()
    )))?;
    let file_name = out.file_name().map_or_else(
        || "image.tar".to_string(),
        |n| n.to_string_lossy().to_string(),
    );

    // The layer, hashed while written; then the JSON documents that describe it.
    let mut layer = temp_file(&dir, &file_name, "layer", reference)?;
    let layer_path = layer.path().to_path_buf();
    let (layer_hex, layer_size) = write_layer(reference, &tree, layer.as_file_mut(), &layer_path)?;
    let docs = Documents::new(spec, &tag, arch, &layer_hex, layer_size)?;

    // The archive, renamed into place once complete.
    let mut archive = temp_file(&dir, &file_name, "archive", reference)?;
    let archive_path = archive.path().to_path_buf();
    let write_ctx = || {
        format!(
            "image {reference}: writing archive {} (temporary file {})",
            out.display(),
            archive_path.display()
        )
    };
    let layer_blob = LayerBlob {
        file: layer.as_file_mut(),
        path: &layer_path,
        hex: &layer_hex,
        size: layer_size,
    };
    write_outer(
        reference,
        &docs,
        layer_blob,
        archive.as_file_mut(),
        &write_ctx,
    )?;
    drop(layer);
    let file = archive.as_file();
    file.set_permissions(fs::Permissions::from_mode(ARCHIVE_FILE_MODE))
        .map_err(io_err(write_ctx()))?;
    file.sync_all().map_err(io_err(write_ctx()))?;
    let size = file.metadata().map_err(io_err(write_ctx()))?.len();
    archive.persist(out).map_err(|e| Error::Io {
        context: format!(
            "image {reference}: renaming {} to {}",
            archive_path.display(),
            out.display()
        ),
        source: e.error,
    })?;
    Ok(Built {
        reference: reference.to_string(),
        manifest_digest: format!("sha256:{}", docs.manifest_hex),
        size,
    })
}

/// The JSON documents of an image: config and manifest blobs (with their hex digests) and
/// `index.json`, each compact JSON.
struct Documents {
    config: Vec<u8>,
    config_hex: String,
    manifest: Vec<u8>,
    manifest_hex: String,
    index: Vec<u8>,
}

impl Documents {
    /// The documents of `spec` (tag `tag`, OCI architecture `arch`) whose layer has digest
    /// `sha256:<layer_hex>` and `layer_size` bytes.
    fn new(
        spec: &ImageSpec,
        tag: &str,
        arch: &str,
        layer_hex: &str,
        layer_size: u64,
    ) -> Result<Documents> {
        let reference = spec.reference.as_str();
        let layer_digest = format!("sha256:{layer_hex}");
        let mut run_config = serde_json::Map::new();
        if !spec.entrypoint.is_empty() {
            run_config.insert("Entrypoint".into(), json!(spec.entrypoint));
        }
        if !spec.cmd.is_empty() {
            run_config.insert("Cmd".into(), json!(spec.cmd));
        }
        if !spec.env.is_empty() {
            run_config.insert("Env".into(), json!(spec.env));
        }
        if let Some(w) = spec.workdir.as_deref().filter(|w| !w.is_empty()) {
            run_config.insert("WorkingDir".into(), json!(w));
        }
        let config = to_json(
            reference,
            &json!({
                "created": CREATED,
                "architecture": arch,
                "os": "linux",
                "config": run_config,
                "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
            }),
        )?;
        let config_hex = sha256_hex(&config);
        let manifest = to_json(
            reference,
            &json!({
                "schemaVersion": 2,
                "mediaType": MEDIA_TYPE_MANIFEST,
                "config": {
                    "mediaType": MEDIA_TYPE_CONFIG,
                    "digest": format!("sha256:{config_hex}"),
                    "size": config.len(),
                },
                "layers": [{
                    "mediaType": MEDIA_TYPE_LAYER,
                    "digest": layer_digest,
                    "size": layer_size,
                }],
            }),
        )?;
        let manifest_hex = sha256_hex(&manifest);
        let index = to_json(
            reference,
            &json!({
                "schemaVersion": 2,
                "mediaType": MEDIA_TYPE_INDEX,
                "manifests": [{
                    "mediaType": MEDIA_TYPE_MANIFEST,
                    "digest": format!("sha256:{manifest_hex}"),
                    "size": manifest.len(),
                    "platform": { "architecture": arch, "os": "linux" },
                    "annotations": {
                        ANNOTATION_CONTAINERD_NAME: reference,
                        ANNOTATION_REF_NAME: tag,
                    },
                }],
            }),
        )?;
        Ok(Documents {
            config,
            config_hex,
            manifest,
            manifest_hex,
            index,
        })
    }
}

/// The layer as written to its temporary file.
struct LayerBlob<'a> {
    file: &'a mut File,
    path: &'a Path,
    hex: &'a str,
    size: u64,
}

/// Writes the archive to `out` (the temporary file `write_ctx` names): directories, blobs
/// sorted by digest, `index.json`, `oci-layout`; the layer is streamed from its file.
fn write_outer(
    reference: &str,
    docs: &Documents,
    layer: LayerBlob<'_>,
    out: &mut File,
    write_ctx: &dyn Fn() -> String,
) -> Result<()> {
    let mut blobs: Vec<(&str, Option<&[u8]>)> = vec![
        (&docs.config_hex, Some(&docs.config)),
        (&docs.manifest_hex, Some(&docs.manifest)),
        (layer.hex, None),
    ];
    blobs.sort_by(|a, b| a.0.cmp(b.0));

    let mut builder = tar::Builder::new(BufWriter::new(out));
    for d in ["blobs/", "blobs/sha256/"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        builder
            .append_data(&mut h, d, io::empty())
            .map_err(io_err(write_ctx()))?;
    }
    let layout: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let files = blobs
        .into_iter()
        .map(|(hex, bytes)| (format!("blobs/sha256/{hex}"), bytes))
        .chain([
            ("index.json".to_string(), Some(docs.index.as_slice())),
            ("oci-layout".to_string(), Some(layout)),
        ]);
    for (path, bytes) in files {
        if let Some(bytes) = bytes {
            let mut h = header(
                tar::EntryType::Regular,
                ARCHIVE_FILE_MODE,
                bytes.len() as u64,
            );
            builder
                .append_data(&mut h, &path, bytes)
                .map_err(io_err(write_ctx()))?;
            continue;
        }
        let read_ctx = || {
            format!(
                "image {reference}: reading back layer temporary file {}",
                layer.path.display()
            )
        };
        layer
            .file
            .seek(SeekFrom::Start(0))
            .map_err(io_err(read_ctx()))?;
        let mut reader = ExactReader::new(&mut *layer.file, layer.size);
        let mut h = header(tar::EntryType::Regular, ARCHIVE_FILE_MODE, layer.size);
        if let Err(source) = builder.append_data(&mut h, &path, &mut reader) {
            let context = if reader.failed {
                read_ctx()
            } else {
                write_ctx()
            };
            return Err(Error::Io { context, source });
        }
    }
    let buffered = builder.into_inner().map_err(io_err(write_ctx()))?;
    buffered
        .into_inner()
        .map_err(io::IntoInnerError::into_error)
        .map_err(io_err(write_ctx()))?;
    Ok(())
}

/// One node of the layer's tree, keyed by its path components.
#[derive(Debug)]
enum Node<'a> {
    Dir {
        mode: u32,
        explicit: bool,
    },
    File {
        path: &'a str,
        source: &'a Path,
        mode: u32,
    },
    Bytes {
        bytes: &'a [u8],
        mode: u32,
    },
    Symlink {
        target: &'a str,
    },
}

/// The layer's entries sorted by path components (parents before children), with parent
/// directories added. Errors: see [`write_archive`].
fn plan_layer(spec: &ImageSpec) -> Result<BTreeMap<Vec<&str>, Node<'_>>> {
    let reference = spec.reference.as_str();
    let mut tree: BTreeMap<Vec<&str>, Node<'_>> = BTreeMap::new();
    for entry in &spec.entries {
        let path = entry.path();
        let comps = entry_components(reference, path)?;
        let bad = |why: String| Error::other(format!("image {reference}: entry {path}: {why}"));
        let node = match entry {
            Entry::File { source, mode, .. } => Node::File {
                path,
                source,
                mode: check_mode(*mode).map_err(bad)?,
            },
            Entry::Bytes { bytes, mode, .. } => Node::Bytes {
                bytes,
                mode: check_mode(*mode).map_err(bad)?,
            },
            Entry::Symlink { target, .. } => {
                if target.is_empty() || target.contains('\0') {
                    return Err(bad(format!(
                        "symlink target `{target}` is empty or has a NUL byte (expected a path \
                         such as /usr/local/bin/etcd)"
                    )));
                }
                Node::Symlink { target }
            }
            Entry::Dir { mode, .. } => Node::Dir {
                mode: check_mode(*mode).map_err(bad)?,
                explicit: true,
            },
        };
        for i in 1..comps.len() {
            let parent = &comps[..i];
            match tree.get(parent) {
                None => {
                    tree.insert(
                        parent.to_vec(),
                        Node::Dir {
                            mode: PARENT_DIR_MODE,
                            explicit: false,
                        },
                    );
                }
                Some(Node::Dir { .. }) => {}
                Some(_) => {
                    return Err(bad(format!(
                        "its parent /{} is listed as a file or symlink (expected a directory)",
                        parent.join("/")
                    )))
                }
            }
        }
        match (tree.get(&comps), &node) {
            (None, _) => {}
            (
                Some(Node::Dir {
                    explicit: false, ..
                }),
                Node::Dir { .. },
            ) => {}
            (
                Some(Node::Dir {
                    explicit: false, ..
                }),
                _,
            ) => {
                return Err(bad(
                    "it is the parent directory of other entries but is listed as a file or \
                     symlink"
                        .to_string(),
                ))
            }
            (Some(Node::Dir { mode: old, .. }), Node::Dir { mode: new, .. }) if old == new => {}
            (Some(_), _) => {
                return Err(bad(
                    "listed twice (each path may appear once in an image)".to_string()
                ))
            }
        }
        tree.insert(comps, node);
    }
    Ok(tree)
}

/// The components of an absolute entry path (`/usr//bin/` -> [usr, bin]).
///
/// Errors: the path is relative, has `.` or `..` components or a NUL byte, or is `/`.
fn entry_components<'p>(reference: &str, path: &'p str) -> Result<Vec<&'p str>> {
    let bad = |why: &str| {
        Error::other(format!(
            "image {reference}: entry path `{path}` {why} (expected an absolute path inside the \
             image such as /usr/local/bin/etcd)"
        ))
    };
    if !path.starts_with('/') {
        return Err(bad("is not absolute"));
    }
    if path.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if comps.contains(&"..") {
        return Err(bad("contains `..`"));
    }
    if comps.contains(&".") {
        return Err(bad("contains `.`"));
    }
    if comps.is_empty() {
        return Err(bad("is the root directory itself"));
    }
    Ok(comps)
}

/// `mode` if it has only permission bits (at most `0o7777`).
fn check_mode(mode: u32) -> std::result::Result<u32, String> {
    if mode & !0o7777 == 0 {
        Ok(mode)
    } else {
        Err(format!(
            "mode {mode:o} has bits beyond 7777 (expected permission bits such as 0o755)"
        ))
    }
}

/// Writes the layer tar for `tree` to `file` (the temporary file at `tmp`); returns the hex
/// SHA-256 and the size in bytes of what was written.
fn write_layer(
    reference: &str,
    tree: &BTreeMap<Vec<&str>, Node<'_>>,
    file: &mut File,
    tmp: &Path,
) -> Result<(String, u64)> {
    let write_ctx = || {
        format!(
            "image {reference}: writing layer to temporary file {}",
            tmp.display()
        )
    };
    let mut builder = tar::Builder::new(HashingWriter::new(BufWriter::new(file)));
    for (comps, node) in tree {
        let name = comps.join("/");
        match node {
            Node::Dir { mode, .. } => {
                let mut h = header(tar::EntryType::Directory, *mode, 0);
                builder
                    .append_data(&mut h, format!("{name}/"), io::empty())
                    .map_err(io_err(write_ctx()))?;
            }
            Node::Bytes { bytes, mode } => {
                let mut h = header(tar::EntryType::Regular, *mode, bytes.len() as u64);
                builder
                    .append_data(&mut h, &name, *bytes)
                    .map_err(io_err(write_ctx()))?;
            }
            Node::Symlink { target } => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                builder
                    .append_link(&mut h, &name, target)
                    .map_err(io_err(write_ctx()))?;
            }
            Node::File { path, source, mode } => {
                let read_ctx = || {
                    format!(
                        "image {reference}: reading source file {} for entry {path} (expected a \
                         regular file on this machine)",
                        source.display()
                    )
                };
                let src = File::open(source).map_err(io_err(read_ctx()))?;
                let meta = src.metadata().map_err(io_err(read_ctx()))?;
                if !meta.is_file() {
                    return Err(Error::other(format!(
                        "image {reference}: source file {} for entry {path} is not a regular \
                         file (expected a regular file on this machine)",
                        source.display()
                    )));
                }
                let mut reader = ExactReader::new(src, meta.len());
                let mut h = header(tar::EntryType::Regular, *mode, meta.len());
                if let Err(e) = builder.append_data(&mut h, &name, &mut reader) {
                    let context = if reader.failed {
                        read_ctx()
                    } else {
                        write_ctx()
                    };
                    return Err(Error::Io { context, source: e });
                }
            }
        }
    }
    let hashing = builder.into_inner().map_err(io_err(write_ctx()))?;
    let HashingWriter { inner, hasher, len } = hashing;
    let file = inner
        .into_inner()
        .map_err(io::IntoInnerError::into_error)
        .map_err(io_err(write_ctx()))?;
    file.flush().map_err(io_err(write_ctx()))?;
    Ok((hex::encode(hasher.finalize()), len))
}

/// A tar header with the fixed metadata of every entry: owner root (uid/gid 0, no names),
/// mtime 0, the given type, permission bits and size.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// A temporary file `.<name>.<what>.XXXXXX.tmp` in `dir`, removed when dropped.
fn temp_file(
    dir: &Path,
    name: &str,
    what: &str,
    reference: &str,
) -> Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(&format!(".{name}.{what}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io_err(format!(
            "image {reference}: creating a temporary file in {}",
            dir.display()
        )))
}

/// Compact JSON bytes of `value`.
fn to_json(reference: &str, value: &serde_json::Value) -> Result<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|e| Error::other(format!("image {reference}: encoding JSON: {e}")))
}

/// Hex SHA-256 of `bytes`.
fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The OCI architecture name of this machine (`amd64`, `arm64`), which is the platform of
/// the host binaries the images carry.
fn oci_arch() -> Result<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => Ok("amd64"),
        "aarch64" => Ok("arm64"),
        other => Err(Error::other(format!(
            "host architecture {other} has no OCI platform name here (expected x86_64 or \
             aarch64)"
        ))),
    }
}

/// A writer that hashes (SHA-256) and counts what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that yields exactly `size` bytes of `inner` (the size already written in a tar
/// header): extra bytes are cut off, missing ones are an error. `failed` tells read errors
/// apart from the archive's write errors.
struct ExactReader<R> {
    inner: io::Take<R>,
    remaining: u64,
    failed: bool,
}

impl<R: Read> ExactReader<R> {
    fn new(inner: R, size: u64) -> Self {
        ExactReader {
            inner: inner.take(size),
            remaining: size,
            failed: false,
        }
    }
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) => {
                self.failed = true;
                return Err(e);
            }
        };
        if n == 0 && self.remaining > 0 && !buf.is_empty() {
            self.failed = true;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the file shrank while being read ({} bytes fewer than its size)",
                    self.remaining
                ),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry of a tar as read back: type, mode, link target, content.
    #[derive(Debug)]
    struct Item {
        kind: tar::EntryType,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
        link: Option<String>,
        data: Vec<u8>,
    }

    /// All entries of a tar, in archive order.
    fn read_tar(bytes: &[u8]) -> Vec<(String, Item)> {
        let mut archive = tar::Archive::new(bytes);
        let mut items = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").to_string_lossy().to_string();
            let h = entry.header().clone();
            let link = entry
                .link_name()
                .expect("link name")
                .map(|l| l.to_string_lossy().to_string());
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("read entry");
            assert_eq!(h.username().expect("uname"), Some(""), "{path}");
            assert_eq!(h.groupname().expect("gname"), Some(""), "{path}");
            items.push((
                path,
                Item {
                    kind: h.entry_type(),
                    mode: h.mode().expect("mode"),
                    uid: h.uid().expect("uid"),
                    gid: h.gid().expect("gid"),
                    mtime: h.mtime().expect("mtime"),
                    link,
                    data,
                },
            ));
        }
        items
    }

    fn sample(dir: &Path) -> ImageSpec {
        let source = dir.join("etcd-binary");
        // Not a multiple of 512, bigger than any buffer, to exercise padding and streaming.
        let content: Vec<u8> = (0..200_003u32).map(|i| (i % 251) as u8).collect();
        fs::write(&source, &content).expect("write source");
        ImageSpec {
            reference: "registry.k8s.io/etcd:3.6.16-0".into(),
            entries: vec![
                Entry::Symlink {
                    path: "/usr/bin/etcd".into(),
                    target: "/usr/local/bin/etcd".into(),
                },
                Entry::File {
                    path: "/usr/local/bin/etcd".into(),
                    source,
                    mode: 0o755,
                },
                Entry::Bytes {
                    path: "/etc/etcd/etcd.conf".into(),
                    bytes: b"name: controlplane\n".to_vec(),
                    mode: 0o640,
                },
                Entry::Dir {
                    path: "/var/lib/etcd/".into(),
                    mode: 0o700,
                },
            ],
            entrypoint: vec!["/usr/local/bin/etcd".into()],
            cmd: vec!["--help".into()],
            env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".into()],
            workdir: None,
        }
    }

    fn json_of(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).expect("json")
    }

    #[test]
    fn archive_is_a_valid_oci_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = sample(dir.path());
        let out = dir.path().join("out/etcd.tar");
        let built = write_archive(&spec, &out).expect("write archive");
        let bytes = fs::read(&out).expect("read archive");
        assert_eq!(built.size, bytes.len() as u64);
        assert_eq!(built.reference, spec.reference);
        let outer = read_tar(&bytes);
        let files: BTreeMap<&str, &Item> = outer.iter().map(|(p, i)| (p.as_str(), i)).collect();

        // Paths sorted; only the layout's files and directories.
        let paths: Vec<&str> = outer.iter().map(|(p, _)| p.as_str()).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
        assert_eq!(paths.len(), 2 + 3 + 2, "{paths:?}");

        assert_eq!(
            files["oci-layout"].data,
            br#"{"imageLayoutVersion":"1.0.0"}"#
        );

        // Every blob is named by its digest.
        for (path, item) in &outer {
            if let Some(hex) = path.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
                assert_eq!(sha256_hex(&item.data), hex, "{path}");
                assert_eq!(item.kind, tar::EntryType::Regular);
            }
            assert_eq!((item.uid, item.gid, item.mtime), (0, 0, 0), "{path}");
        }
        let blob = |digest: &str| -> &[u8] {
            let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
            &files[format!("blobs/sha256/{hex}").as_str()].data
        };

        // index.json -> manifest.
        let index = json_of(&files["index.json"].data);
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(index["mediaType"], MEDIA_TYPE_INDEX);
        let manifests = index["manifests"].as_array().expect("manifests");
        assert_eq!(manifests.len(), 1);
        let desc = &manifests[0];
        assert_eq!(desc["mediaType"], MEDIA_TYPE_MANIFEST);
        assert_eq!(desc["digest"], built.manifest_digest.as_str());
        assert_eq!(
            desc["annotations"][ANNOTATION_CONTAINERD_NAME],
            "registry.k8s.io/etcd:3.6.16-0"
        );
        assert_eq!(desc["annotations"][ANNOTATION_REF_NAME], "3.6.16-0");
        assert_eq!(desc["platform"]["os"], "linux");
        assert_eq!(desc["platform"]["architecture"], oci_arch().expect("arch"));
        let manifest_bytes = blob(&built.manifest_digest);
        assert_eq!(desc["size"], manifest_bytes.len());

        // manifest -> config and layer.
        let manifest = json_of(manifest_bytes);
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(manifest["mediaType"], MEDIA_TYPE_MANIFEST);
        assert_eq!(manifest["config"]["mediaType"], MEDIA_TYPE_CONFIG);
        let config_bytes = blob(
            manifest["config"]["digest"]
                .as_str()
                .expect("config digest"),
        );
        assert_eq!(manifest["config"]["size"], config_bytes.len());
        let layers = manifest["layers"].as_array().expect("layers");
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0]["mediaType"], MEDIA_TYPE_LAYER);
        let layer_digest = layers[0]["digest"].as_str().expect("layer digest");
        let layer_bytes = blob(layer_digest);
        assert_eq!(layers[0]["size"], layer_bytes.len());

        // config -> diff_ids (uncompressed layer: diff_id == digest).
        let config = json_of(config_bytes);
        assert_eq!(config["created"], CREATED);
        assert_eq!(config["os"], "linux");
        assert_eq!(config["architecture"], oci_arch().expect("arch"));
        assert_eq!(config["rootfs"]["type"], "layers");
        assert_eq!(config["rootfs"]["diff_ids"], json!([layer_digest]));
        assert_eq!(
            config["config"]["Entrypoint"],
            json!(["/usr/local/bin/etcd"])
        );
        assert_eq!(config["config"]["Cmd"], json!(["--help"]));
        assert_eq!(
            config["config"]["Env"],
            json!(["PATH=/usr/local/bin:/usr/bin:/bin"])
        );
        assert!(config["config"].get("WorkingDir").is_none());

        // The layer: parents first, sorted, modes, content, symlink.
        let layer = read_tar(layer_bytes);
        let names: Vec<&str> = layer.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc/",
                "etc/etcd/",
                "etc/etcd/etcd.conf",
                "usr/",
                "usr/bin/",
                "usr/bin/etcd",
                "usr/local/",
                "usr/local/bin/",
                "usr/local/bin/etcd",
                "var/",
                "var/lib/",
                "var/lib/etcd/",
            ]
        );
        let item = |p: &str| &layer.iter().find(|(n, _)| n == p).expect(p).1;
        for dir in ["etc/", "usr/", "usr/local/bin/", "var/lib/"] {
            assert_eq!(item(dir).kind, tar::EntryType::Directory, "{dir}");
            assert_eq!(item(dir).mode, 0o755, "{dir}");
        }
        assert_eq!(item("var/lib/etcd/").mode, 0o700);
        let etcd = item("usr/local/bin/etcd");
        assert_eq!(etcd.kind, tar::EntryType::Regular);
        assert_eq!(etcd.mode, 0o755);
        assert_eq!(
            etcd.data,
            fs::read(dir.path().join("etcd-binary")).expect("source")
        );
        let conf = item("etc/etcd/etcd.conf");
        assert_eq!(
            (conf.mode, conf.data.as_slice()),
            (0o640, &b"name: controlplane\n"[..])
        );
        let link = item("usr/bin/etcd");
        assert_eq!(link.kind, tar::EntryType::Symlink);
        assert_eq!(link.link.as_deref(), Some("/usr/local/bin/etcd"));
        for (path, i) in &layer {
            assert_eq!((i.uid, i.gid, i.mtime), (0, 0, 0), "{path}");
        }

        // Archive mode, and no temporary file left behind.
        let mode = fs::metadata(&out).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o644);
        let left: Vec<_> = fs::read_dir(dir.path().join("out"))
            .expect("read dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, [std::ffi::OsString::from("etcd.tar")]);
    }

    #[test]
    fn same_inputs_give_identical_archives() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = sample(dir.path());
        let a = dir.path().join("a.tar");
        let b = dir.path().join("b.tar");
        let built_a = write_archive(&spec, &a).expect("a");
        // Entry order does not matter.
        spec.entries.reverse();
        let built_b = write_archive(&spec, &b).expect("b");
        assert_eq!(built_a.manifest_digest, built_b.manifest_digest);
        assert_eq!(fs::read(&a).expect("a"), fs::read(&b).expect("b"));
        // Overwriting an existing archive works and gives the same bytes.
        write_archive(&spec, &a).expect("a again");
        assert_eq!(fs::read(&a).expect("a"), fs::read(&b).expect("b"));
    }

    #[test]
    fn missing_source_names_the_file_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("no-such-kube-apiserver");
        let spec = ImageSpec {
            reference: "registry.k8s.io/kube-apiserver:v1.37.2".into(),
            entries: vec![Entry::File {
                path: "/usr/local/bin/kube-apiserver".into(),
                source: missing.clone(),
                mode: 0o755,
            }],
            ..ImageSpec::default()
        };
        let out = dir.path().join("apiserver.tar");
        let err = write_archive(&spec, &out)
            .expect_err("missing source")
            .to_string();
        assert!(err.contains(&missing.display().to_string()), "{err}");
        assert!(err.contains("/usr/local/bin/kube-apiserver"), "{err}");
        assert_eq!(fs::read_dir(dir.path()).expect("read dir").count(), 0);

        // A directory is not a regular file.
        let spec = ImageSpec {
            entries: vec![Entry::File {
                path: "/bin/x".into(),
                source: dir.path().to_path_buf(),
                mode: 0o755,
            }],
            ..spec
        };
        let err = write_archive(&spec, &out)
            .expect_err("dir source")
            .to_string();
        assert!(err.contains("regular file"), "{err}");
        assert_eq!(fs::read_dir(dir.path()).expect("read dir").count(), 0);
    }

    #[test]
    fn refuses_bad_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("x.tar");
        let with = |entries: Vec<Entry>| ImageSpec {
            reference: "localhost:5000/x:1".into(),
            entries,
            ..ImageSpec::default()
        };
        let bytes = |path: &str| Entry::Bytes {
            path: path.into(),
            bytes: vec![],
            mode: 0o644,
        };
        let cases = [
            (vec![bytes("usr/bin/x")], "not absolute"),
            (vec![bytes("/usr/../etc/x")], "`..`"),
            (vec![bytes("/usr/./x")], "`.`"),
            (vec![bytes("/")], "root"),
            (vec![bytes("/a"), bytes("/a")], "listed twice"),
            (vec![bytes("/a"), bytes("/a/b")], "parent /a"),
            (vec![bytes("/a/b"), bytes("/a")], "parent directory"),
            (
                vec![Entry::Dir {
                    path: "/d".into(),
                    mode: 0o40755,
                }],
                "beyond 7777",
            ),
            (
                vec![Entry::Symlink {
                    path: "/l".into(),
                    target: String::new(),
                }],
                "symlink target",
            ),
        ];
        for (entries, want) in cases {
            let err = write_archive(&with(entries.clone()), &out)
                .expect_err("bad entry")
                .to_string();
            assert!(err.contains(want), "{entries:?}: {err}");
        }
        assert_eq!(fs::read_dir(dir.path()).expect("read dir").count(), 0);

        // Same directory twice with the same mode, and a directory given after its children.
        let ok = with(vec![
            bytes("/d/f"),
            Entry::Dir {
                path: "/d".into(),
                mode: 0o700,
            },
            Entry::Dir {
                path: "/d".into(),
                mode: 0o700,
            },
        ]);
        write_archive(&ok, &out).expect("valid entries");
    }

    #[test]
    fn splits_references() {
        let ok = |r: &str| split_reference(r).expect(r);
        assert_eq!(
            ok("registry.k8s.io/etcd:3.6.16-0"),
            ("registry.k8s.io/etcd".into(), "3.6.16-0".into())
        );
        assert_eq!(
            ok("registry.k8s.io/kube-apiserver:v1.37.2"),
            ("registry.k8s.io/kube-apiserver".into(), "v1.37.2".into())
        );
        assert_eq!(
            ok("localhost:5000/x:1"),
            ("localhost:5000/x".into(), "1".into())
        );
        assert_eq!(
            ok("localhost/breakfix/stand-in:latest"),
            ("localhost/breakfix/stand-in".into(), "latest".into())
        );
        for (bad, want) in [
            ("registry.k8s.io/etcd", "no tag"),
            ("localhost:5000/x", "no tag"),
            ("registry.k8s.io/etcd:", "empty tag"),
            ("etcd:3.6", "registry host"),
            ("registry.k8s.io/etcd@sha256:abcd", "digest"),
            ("registry.k8s.io/Etcd:1", "name component"),
            ("registry.k8s.io//etcd:1", "empty name component"),
            ("registry.k8s.io/etcd:-1", "invalid tag"),
            ("registry.k8s.io/etcd:1 2", "whitespace"),
            ("", "empty"),
        ] {
            let err = split_reference(bad).expect_err(bad).to_string();
            assert!(err.contains(want), "{bad}: {err}");
        }
    }
}
