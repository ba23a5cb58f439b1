//! Kube images: from a verified [`Build`], the container images kubeadm names for the pinned
//! version (kube-apiserver, kube-controller-manager, kube-scheduler, etcd, pause) and the seed
//! workloads' image (busybox from the node image), as OCI archives that each node imports;
//! and the node layer (kubeadm, kubelet, kubectl, crictl, etcd tools) the nodes' roots overlay.
//!
//! Layout under the build's cache directory (`<image dir>/kube-<key>/`):
//! `images-<recipe>/control-plane/*.tar` (control plane only), `images-<recipe>/common/*.tar`
//! (every node), `images-<recipe>/node/usr/...` (the node layer). Made in a temporary
//! directory and renamed into place when complete.

use std::path::{Path, PathBuf};

use super::fsutil::{self, io_err};
use super::kubebuild::{Build, Pins};
use super::oci::{self, Entry, ImageSpec};
use crate::error::Result;

/// Bump when the images or the node layer change shape, so caches of older code are rebuilt.
pub const RECIPE_VERSION: u32 = 1;
/// The seed workloads' image (`critical-app`, `cluster-monitor`): busybox from the node
/// image, serving `/www` with `httpd` on port 80 by default.
pub const WORKLOAD_IMAGE: &str = "localhost/breakfix/workload:1.35.0";
/// Where the node layer puts each program (as kubeadm's and cri-tools' packages and etcd's
/// release archive do).
pub const NODE_PROGRAMS: &[(&str, &str)] = &[
    ("kubeadm", "/usr/bin/kubeadm"),
    ("kubelet", "/usr/bin/kubelet"),
    ("kubectl", "/usr/bin/kubectl"),
    ("crictl", "/usr/bin/crictl"),
    ("etcd", "/usr/local/bin/etcd"),
    ("etcdctl", "/usr/local/bin/etcdctl"),
    ("etcdutl", "/usr/local/bin/etcdutl"),
];

/// The images of a build, by role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    /// `images-<recipe>/control-plane`: archives the control plane imports.
    pub control_plane: PathBuf,
    /// `images-<recipe>/common`: archives every node imports.
    pub common: PathBuf,
    /// `images-<recipe>/node`: the node layer (an overlay lower directory).
    pub node_layer: PathBuf,
}

/// Image references kubeadm names for `pins` (`kubeadm config images list` with the
/// sandbox's configuration), control-plane images first, then pause.
pub fn kubeadm_images(pins: &Pins) -> Vec<String> {
    let k = &pins.kubernetes;
    vec![
        format!("registry.k8s.io/kube-apiserver:{k}"),
        format!("registry.k8s.io/kube-controller-manager:{k}"),
        format!("registry.k8s.io/kube-scheduler:{k}"),
        format!("registry.k8s.io/etcd:{}", pins.etcd_image_tag),
        pause_image(pins),
    ]
}

/// `registry.k8s.io/pause:<tag>`.
pub fn pause_image(pins: &Pins) -> String {
    format!("registry.k8s.io/pause:{}", pins.pause)
}

fn binary(build: &Build, name: &str, at: &str) -> Entry {
    Entry::File {
        path: at.into(),
        source: build.program(name),
        mode: 0o755,
    }
}

fn single(reference: String, entries: Vec<Entry>, entrypoint: &[&str]) -> ImageSpec {
    ImageSpec {
        reference,
        entries,
        entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
        cmd: vec![],
        env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
        workdir: None,
    }
}

/// Builds (once) the images and the node layer for `build`, taking busybox and its applet
/// list from the node image `rootfs`.
///
/// Errors: a program or busybox is missing, or an archive cannot be written (named).
pub fn ensure(build: &Build, pins: &Pins, rootfs: &Path) -> Result<Images> {
    let dir = build.dir.join(format!("images-{RECIPE_VERSION}"));
    let images = Images {
        control_plane: dir.join("control-plane"),
        common: dir.join("common"),
        node_layer: dir.join("node"),
    };
    if dir.join("complete").is_file() {
        return Ok(images);
    }
    let tmp = build
        .dir
        .join(format!(".images-{RECIPE_VERSION}-{}", std::process::id()));
    if tmp.exists() {
        fsutil::remove_tree(&tmp)?;
    }
    let k = &pins.kubernetes;
    let cp = tmp.join("control-plane");
    let common = tmp.join("common");
    for (name, prog) in [
        ("kube-apiserver", "kube-apiserver"),
        ("kube-controller-manager", "kube-controller-manager"),
        ("kube-scheduler", "kube-scheduler"),
    ] {
        let at = format!("/usr/local/bin/{prog}");
        oci::write_archive(
            &single(
                format!("registry.k8s.io/{name}:{k}"),
                vec![binary(build, prog, &at)],
                &[at.as_str()],
            ),
            &cp.join(format!("{name}.tar")),
        )?;
    }
    oci::write_archive(
        &single(
            format!("registry.k8s.io/etcd:{}", pins.etcd_image_tag),
            vec![
                binary(build, "etcd", "/usr/local/bin/etcd"),
                binary(build, "etcdctl", "/usr/local/bin/etcdctl"),
                binary(build, "etcdutl", "/usr/local/bin/etcdutl"),
                Entry::Dir {
                    path: "/var/lib/etcd".into(),
                    mode: 0o700,
                },
            ],
            &[],
        ),
        &cp.join("etcd.tar"),
    )?;
    oci::write_archive(
        &single(
            pause_image(pins),
            vec![binary(build, "pause", "/pause")],
            &["/pause"],
        ),
        &common.join("pause.tar"),
    )?;
    oci::write_archive(&workload_image(rootfs)?, &common.join("workload.tar"))?;
    let node = tmp.join("node");
    for (name, at) in NODE_PROGRAMS {
        let to = node.join(at.trim_start_matches('/'));
        if let Some(parent) = to.parent() {
            fsutil::mkdir_mode(parent, 0o755)?;
        }
        // A hard link costs no space; a copy where the filesystem refuses one.
        if std::fs::hard_link(build.program(name), &to).is_err() {
            std::fs::copy(build.program(name), &to).map_err(io_err(format!(
                "copying {} to {}",
                build.program(name).display(),
                to.display()
            )))?;
        }
    }
    fsutil::write_file(&tmp.join("complete"), b"", 0o644)?;
    if dir.exists() {
        fsutil::remove_tree(&dir)?;
    }
    std::fs::rename(&tmp, &dir).map_err(io_err(format!(
        "moving {} to {}",
        tmp.display(),
        dir.display()
    )))?;
    Ok(images)
}

/// The seed workloads' image: busybox-static with a symlink per applet in `/bin`, a page in
/// `/www`, and `httpd -f -p 80 -h /www` as its command (so a Deployment's HTTP liveness
/// probe on port 80 passes, as with the nginx the seed names).
pub fn workload_image(rootfs: &Path) -> Result<ImageSpec> {
    let busybox = rootfs.join("bin/busybox");
    if !busybox.is_file() {
        return Err(crate::Error::other(format!(
            "the node image has no {} (package busybox-static): rebuild the node image",
            busybox.display()
        )));
    }
    let mut entries = vec![Entry::File {
        path: "/bin/busybox".into(),
        source: busybox,
        mode: 0o755,
    }];
    for applet in APPLETS {
        entries.push(Entry::Symlink {
            path: format!("/bin/{applet}"),
            target: "busybox".into(),
        });
    }
    entries.push(Entry::Bytes {
        path: "/www/index.html".into(),
        bytes: b"<html><body><h1>critical-app</h1></body></html>\n".to_vec(),
        mode: 0o644,
    });
    entries.push(Entry::Bytes {
        path: "/etc/passwd".into(),
        bytes: b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
            .to_vec(),
        mode: 0o644,
    });
    entries.push(Entry::Dir {
        path: "/tmp".into(),
        mode: 0o1777,
    });
    Ok(ImageSpec {
        reference: WORKLOAD_IMAGE.into(),
        entries,
        entrypoint: vec![],
        cmd: vec![
            "httpd".into(),
            "-f".into(),
            "-p".into(),
            "80".into(),
            "-h".into(),
            "/www".into(),
        ],
        env: vec!["PATH=/bin".into()],
        workdir: None,
    })
}

/// busybox applets the workload image links (what seed commands and probes use).
pub const APPLETS: &[&str] = &[
    "sh", "ash", "cat", "date", "echo", "env", "hostname", "httpd", "id", "ip", "ls", "nc", "ps",
    "sleep", "true", "false", "wget", "nslookup", "ping", "top", "uptime", "vi", "grep", "head",
    "tail", "mkdir", "rm", "touch",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeadm_names_the_pinned_tags() {
        let p = super::super::kubebuild::pins().expect("pins");
        let list = kubeadm_images(&p);
        assert_eq!(
            list[0],
            format!("registry.k8s.io/kube-apiserver:{}", p.kubernetes)
        );
        assert!(list.contains(&format!("registry.k8s.io/etcd:{}", p.etcd_image_tag)));
        assert_eq!(
            list.last(),
            Some(&format!("registry.k8s.io/pause:{}", p.pause))
        );
    }

    #[test]
    fn the_workload_image_needs_busybox() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = workload_image(dir.path()).expect_err("no busybox");
        assert!(e.to_string().contains("busybox"), "{e}");
        fsutil::write_file(&dir.path().join("bin/busybox"), b"x", 0o755).expect("write");
        let spec = workload_image(dir.path()).expect("spec");
        assert_eq!(spec.cmd[0], "httpd");
    }
}
