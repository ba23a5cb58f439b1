//! `manifest` fault: edit a kubeadm static pod manifest — set, replace or remove a flag of a
//! container's command, change a hostPath volume, or move the manifest out of the
//! manifests directory (the kubelet then stops the pod). Journaled with the file's pre-image.
//!
//! kubeadm writes one flag per list item (`- --data-dir=/var/lib/etcd`); edits are made on
//! those lines so the rest of the file keeps its bytes. A flag written as two items
//! (`- --data-dir`, `- /x`) is handled too.

use serde::{Deserialize, Serialize};

use super::file::{sha256_hex, FileUndo};
use super::{ActionCtx, FaultKind, Touches, Undo, UndoKind};
use crate::node::NodeSession;
use crate::error::{Error, Result};
use crate::template::Renderer;
use crate::node::kubeadm::{manifest_path, MANIFESTS_DIR};
use crate::transport::shell_quote;

/// The change.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ManifestEdit {
    /// Set `--name=value` (replacing the flag's current value, or adding it at the end of the
    /// container's command).
    SetFlag {
        /// Flag with dashes, e.g. `--data-dir`.
        flag: String,
        /// New value.
        value: String,
    },
    /// Remove the flag (no match is an error).
    RemoveFlag {
        /// Flag with dashes.
        flag: String,
    },
    /// Point the hostPath volume `volume` at `path`.
    HostPath {
        /// Volume name, e.g. `etcd-data`.
        volume: String,
        /// New host path.
        path: String,
    },
    /// Move the manifest out of the manifests directory to `to` (default
    /// `/etc/kubernetes/<file>.breakfix-moved`).
    MoveOut {
        /// Destination outside the manifests directory.
        #[serde(default)]
        to: Option<String>,
    },
}

crate::action_spec! {
    /// ```yaml
    /// - kind: manifest
    ///   pod: etcd
    ///   edit:
    ///     set_flag: { flag: --data-dir, value: /var/lib/etcd-wrong }
    /// ```
    pub struct ManifestAction {
        /// Static pod: a file name under /etc/kubernetes/manifests without `.yaml` (`etcd`,
        /// `kube-apiserver`) or an absolute path.
        pub pod: String,
        /// Container name (default: the first container).
        #[serde(default)]
        pub container: Option<String>,
        /// The change.
        pub edit: ManifestEdit,
    }
}

/// Undo for a moved manifest: move it back unless something is already in place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoveUndo {
    /// Original path.
    pub from: String,
    /// Where it was moved.
    pub to: String,
}

impl UndoKind for MoveUndo {
    fn describe(&self) -> String {
        format!("move {} back to {}", self.to, self.from)
    }

    /// `mv to from` when `to` exists and `from` does not; otherwise nothing (idempotent).
    async fn revert(&self, s: &NodeSession) -> Result<()> {
        let (f, t) = (shell_quote(&self.from), shell_quote(&self.to));
        s.run_ok(
            &format!("if [ -e {t} ] && [ ! -e {f} ]; then mv {t} {f}; fi"),
            std::time::Duration::from_secs(20),
        )
        .await
        .map(|_| ())
    }
}

/// Line index range `[start, end)` of the command/args list items of `container`.
fn command_lines(
    lines: &[&str],
    container: Option<&str>,
) -> std::result::Result<(usize, usize), String> {
    // Find the container's block: `- name: <c>` or `- command:` items under `containers:`.
    let start = lines
        .iter()
        .position(|l| l.trim_end() == "  containers:" || l.trim() == "containers:")
        .ok_or("no `containers:` in the manifest")?;
    let mut idx = start + 1;
    if let Some(c) = container {
        // Find the list item of that container (the item may start with `- name:` or any key).
        let mut found = None;
        let mut i = start + 1;
        while i < lines.len() {
            let t = lines[i].trim_start();
            if t == format!("name: {c}") || t == format!("- name: {c}") {
                found = Some(i);
                break;
            }
            i += 1;
        }
        let hit = found.ok_or_else(|| format!("no container named `{c}`"))?;
        // Walk back to the start of that container's list item (`- ` at the list's indent).
        let item_indent = lines
            .get(start + 1)
            .map(|l| l.len() - l.trim_start().len())
            .unwrap_or(0);
        let mut j = hit;
        while j > start
            && !(lines[j].len() - lines[j].trim_start().len() == item_indent
                && lines[j].trim_start().starts_with("- "))
        {
            j -= 1;
        }
        idx = j;
    }
    // From idx, find `command:` (or `args:`) key and its list.
    let mut i = idx;
    while i < lines.len() {
        let t = lines[i].trim_start().trim_start_matches("- ");
        if t == "command:" || t == "args:" {
            let mut end = i + 1;
            let indent = lines
                .get(end)
                .map(|l| l.len() - l.trim_start().len())
                .unwrap_or(0);
            while end < lines.len() {
                let l = lines[end];
                let ind = l.len() - l.trim_start().len();
                if l.trim().is_empty()
                    || ind < indent
                    || (ind == indent && !l.trim_start().starts_with("- "))
                {
                    break;
                }
                end += 1;
            }
            return Ok((i + 1, end));
        }
        i += 1;
    }
    Err("the container has no `command:` list".into())
}

fn item_value(line: &str) -> Option<&str> {
    line.trim_start()
        .strip_prefix("- ")
        .map(|v| v.trim().trim_matches(['"', '\'']))
}

impl ManifestEdit {
    /// New manifest text from the old one (not for `MoveOut`). Errors leave the file alone.
    pub fn apply(&self, old: &str, container: Option<&str>) -> std::result::Result<String, String> {
        let lines: Vec<&str> = old.lines().collect();
        let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        match self {
            ManifestEdit::SetFlag { flag, .. } | ManifestEdit::RemoveFlag { flag }
                if !flag.starts_with('-') =>
            {
                return Err(format!(
                    "flag `{flag}` must start with `-` (e.g. `--data-dir`)"
                ));
            }
            ManifestEdit::SetFlag { flag, value } => {
                let (s, e) = command_lines(&lines, container)?;
                let indent = lines
                    .get(s)
                    .map(|l| &l[..l.len() - l.trim_start().len()])
                    .unwrap_or("    ");
                let new_line = format!("{indent}- {flag}={value}");
                let mut hit = false;
                let mut i = s;
                while i < e {
                    let v = item_value(lines[i]).unwrap_or("");
                    if v.starts_with(&format!("{flag}=")) {
                        out[i] = new_line.clone();
                        hit = true;
                    } else if v == flag {
                        out[i] = new_line.clone();
                        if i + 1 < e
                            && item_value(lines[i + 1]).is_some_and(|n| !n.starts_with('-'))
                        {
                            out[i + 1] = String::from("\u{0}");
                        }
                        hit = true;
                    }
                    i += 1;
                }
                if !hit {
                    out.insert(e, new_line);
                }
            }
            ManifestEdit::RemoveFlag { flag } => {
                let (s, e) = command_lines(&lines, container)?;
                let mut hit = false;
                for i in s..e {
                    let v = item_value(lines[i]).unwrap_or("");
                    if v.starts_with(&format!("{flag}=")) {
                        out[i] = String::from("\u{0}");
                        hit = true;
                    } else if v == flag {
                        out[i] = String::from("\u{0}");
                        if i + 1 < e
                            && item_value(lines[i + 1]).is_some_and(|n| !n.starts_with('-'))
                        {
                            out[i + 1] = String::from("\u{0}");
                        }
                        hit = true;
                    }
                }
                if !hit {
                    return Err(format!("the command has no `{flag}` flag"));
                }
            }
            ManifestEdit::HostPath { volume, path } => {
                let doc: serde_json::Value =
                    serde_saphyr::from_str(old).map_err(|e| format!("not valid YAML: {e}"))?;
                let vols = doc
                    .pointer("/spec/volumes")
                    .and_then(|v| v.as_array())
                    .ok_or("no `spec.volumes`")?;
                let vol = vols
                    .iter()
                    .find(|v| v.get("name").and_then(|n| n.as_str()) == Some(volume))
                    .ok_or_else(|| format!("no volume named `{volume}`"))?;
                let old_path = vol
                    .pointer("/hostPath/path")
                    .and_then(|p| p.as_str())
                    .ok_or_else(|| format!("volume `{volume}` is not a hostPath"))?;
                let hits: Vec<usize> = lines
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| {
                        l.trim_start().trim_start_matches("- ") == format!("path: {old_path}")
                    })
                    .map(|(i, _)| i)
                    .collect();
                if hits.len() != 1 {
                    return Err(format!(
                        "cannot tell which `path: {old_path}` line belongs to volume `{volume}`"
                    ));
                }
                let i = hits[0];
                out[i] = lines[i].replace(&format!("path: {old_path}"), &format!("path: {path}"));
            }
            ManifestEdit::MoveOut { .. } => return Err("move_out is not a text edit".into()),
        }
        let mut text: String = out
            .into_iter()
            .filter(|l| l != "\u{0}")
            .collect::<Vec<_>>()
            .join("\n");
        if old.ends_with('\n') {
            text.push('\n');
        }
        // The result must still be a YAML mapping.
        serde_saphyr::from_str::<serde_json::Value>(&text)
            .map_err(|e| format!("the edit would leave invalid YAML: {e}"))?;
        Ok(text)
    }
}

impl FaultKind for ManifestAction {
    fn default_label(&self) -> String {
        format!("edit the {} static pod", self.pod)
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        let mut d = vec![("static pod", self.pod.clone())];
        if let Some(c) = &self.container {
            d.push(("container", c.clone()));
        }
        d.push(("edit", self.edit.describe()));
        d
    }

    fn touches(&self) -> Touches {
        let mut files = vec![manifest_path(&self.pod)];
        if let ManifestEdit::MoveOut { to: Some(t) } = &self.edit {
            files.push(t.clone());
        }
        Touches {
            files,
            ..Touches::default()
        }
    }

    /// Journals the pre-image (or the move), then writes the edited manifest atomically (or
    /// moves it out).
    async fn apply(&self, ctx: &ActionCtx<'_>, label: &str) -> Result<()> {
        use base64::Engine as _;
        let path = manifest_path(&self.pod);
        let fault_err = |message: String| Error::Fault {
            fault: label.to_string(),
            host: ctx.session.node.name.clone(),
            message,
        };
        let old = ctx
            .session
            .transport
            .read_file(&path, ctx.timeout)
            .await?
            .ok_or_else(|| fault_err(format!("{path} does not exist")))?;
        if let ManifestEdit::MoveOut { to } = &self.edit {
            let file = path.rsplit('/').next().unwrap_or("pod.yaml");
            let to = to
                .clone()
                .unwrap_or_else(|| format!("/etc/kubernetes/{file}.breakfix-moved"));
            if to.starts_with(&format!("{MANIFESTS_DIR}/")) {
                return Err(fault_err(format!(
                    "move_out destination {to} is inside {MANIFESTS_DIR}"
                )));
            }
            if let Some(journal) = ctx.journal {
                journal
                    .record(
                        ctx.session,
                        ctx.scenario,
                        label,
                        Undo::Move(MoveUndo {
                            from: path.clone(),
                            to: to.clone(),
                        }),
                    )
                    .await?;
            }
            return ctx
                .session
                .run_ok(
                    &format!("mv {} {}", shell_quote(&path), shell_quote(&to)),
                    ctx.timeout,
                )
                .await
                .map(|_| ());
        }
        let old_text = String::from_utf8(old.clone())
            .map_err(|_| fault_err(format!("{path} is not UTF-8")))?;
        let new = self
            .edit
            .apply(&old_text, self.container.as_deref())
            .map_err(|m| fault_err(format!("{path}: {m}")))?;
        if let Some(journal) = ctx.journal {
            let undo = FileUndo {
                path: path.clone(),
                pre_image: Some(base64::engine::general_purpose::STANDARD.encode(&old)),
                sha256: Some(sha256_hex(&old)),
                then: None,
            };
            journal
                .record(ctx.session, ctx.scenario, label, Undo::File(undo))
                .await?;
        }
        ctx.session
            .transport
            .write_file(&path, new.as_bytes(), None, ctx.timeout)
            .await
    }

    /// Renders `pod`, `container` and the edit's strings.
    fn render(&self, r: &Renderer) -> Result<Self> {
        let mut a = self.clone();
        a.pod = r.text(&self.pod)?;
        a.container = self.container.as_deref().map(|c| r.text(c)).transpose()?;
        a.edit = match &self.edit {
            ManifestEdit::SetFlag { flag, value } => ManifestEdit::SetFlag {
                flag: r.text(flag)?,
                value: r.text(value)?,
            },
            ManifestEdit::RemoveFlag { flag } => ManifestEdit::RemoveFlag {
                flag: r.text(flag)?,
            },
            ManifestEdit::HostPath { volume, path } => ManifestEdit::HostPath {
                volume: r.text(volume)?,
                path: r.text(path)?,
            },
            ManifestEdit::MoveOut { to } => ManifestEdit::MoveOut {
                to: to.as_deref().map(|t| r.text(t)).transpose()?,
            },
        };
        Ok(a)
    }
}

impl ManifestEdit {
    /// What the edit does, for plans: `set --data-dir=/var/lib/etcd-restore`.
    pub fn describe(&self) -> String {
        match self {
            ManifestEdit::SetFlag { flag, value } => format!("set {flag}={value}"),
            ManifestEdit::RemoveFlag { flag } => format!("remove {flag}"),
            ManifestEdit::HostPath { volume, path } => {
                format!("point volume {volume}'s hostPath at {path}")
            }
            ManifestEdit::MoveOut { to: Some(t) } => format!("move the manifest out to {t}"),
            ManifestEdit::MoveOut { to: None } => "move the manifest out".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ManifestEdit;

    const ETCD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://198.18.0.11:2379
    - --data-dir=/var/lib/etcd
    - --listen-client-urls=https://127.0.0.1:2379,https://198.18.0.11:2379
    image: registry.k8s.io/etcd:3.5.15-0
    name: etcd
    volumeMounts:
    - mountPath: /var/lib/etcd
      name: etcd-data
  hostNetwork: true
  volumes:
  - hostPath:
      path: /etc/kubernetes/pki/etcd
      type: DirectoryOrCreate
    name: etcd-certs
  - hostPath:
      path: /var/lib/etcd
      type: DirectoryOrCreate
    name: etcd-data
";

    #[test]
    fn set_flag_replaces_in_place() {
        let e = ManifestEdit::SetFlag {
            flag: "--data-dir".into(),
            value: "/var/lib/etcd-new".into(),
        };
        let out = e.apply(ETCD, None).unwrap();
        assert!(
            out.contains("    - --data-dir=/var/lib/etcd-new\n"),
            "{out}"
        );
        assert!(!out.contains("--data-dir=/var/lib/etcd\n"));
        assert_eq!(out.lines().count(), ETCD.lines().count());
    }

    #[test]
    fn set_flag_adds_when_missing() {
        let e = ManifestEdit::SetFlag {
            flag: "--quota-backend-bytes".into(),
            value: "16777216".into(),
        };
        let out = e.apply(ETCD, Some("etcd")).unwrap();
        assert!(out.contains("    - --listen-client-urls=https://127.0.0.1:2379,https://198.18.0.11:2379\n    - --quota-backend-bytes=16777216\n    image:"), "{out}");
    }

    #[test]
    fn remove_flag() {
        let e = ManifestEdit::RemoveFlag {
            flag: "--advertise-client-urls".into(),
        };
        let out = e.apply(ETCD, None).unwrap();
        assert!(!out.contains("advertise-client-urls"));
        assert!(ManifestEdit::RemoveFlag {
            flag: "--nope".into()
        }
        .apply(ETCD, None)
        .is_err());
    }

    #[test]
    fn host_path_changes_only_the_volume() {
        let e = ManifestEdit::HostPath {
            volume: "etcd-data".into(),
            path: "/var/lib/etcd-x".into(),
        };
        let out = e.apply(ETCD, None).unwrap();
        assert!(out.contains("      path: /var/lib/etcd-x\n"), "{out}");
        assert!(
            out.contains("- mountPath: /var/lib/etcd\n"),
            "mount path untouched"
        );
        assert!(out.contains("path: /etc/kubernetes/pki/etcd"));
    }

    #[test]
    fn unknown_container_is_an_error() {
        let e = ManifestEdit::SetFlag {
            flag: "--x".into(),
            value: "1".into(),
        };
        assert!(e
            .apply(ETCD, Some("nope"))
            .unwrap_err()
            .contains("no container named"));
    }
}
