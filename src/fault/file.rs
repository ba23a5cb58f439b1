//! `file` action: edit a file on the node (set a line, replace text, set a YAML path, or
//! replace the whole contents). The pre-image (bytes + sha256) is journaled first.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{short, ActionCtx, FaultKind, Touches, Undo, UndoKind};
use crate::node::NodeSession;
use crate::error::{Error, Result};
use crate::template::Renderer;

/// How to change the file. Exactly one per action.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FileEdit {
    /// Replace every line matching the regex `match` with `line`. No match is an error.
    SetLine {
        /// Regular expression searched in each line.
        #[serde(rename = "match")]
        pattern: String,
        /// The new line (without newline).
        line: String,
    },
    /// Replace every occurrence of the literal `find` with `with`. Not found is an error.
    Replace {
        /// Literal text to find.
        find: String,
        /// Replacement text.
        with: String,
    },
    /// Set the value at a dotted YAML path (`spec.containers.0.image`); the file is
    /// re-serialized (comments are lost).
    YamlSet {
        /// Dotted path; numbers index lists.
        path: String,
        /// New value (any YAML).
        value: serde_json::Value,
    },
    /// Replace the whole contents.
    Content(String),
    /// No change now: only the pre-image is journaled, so `breakfix reset` puts the file back
    /// however it is changed later (by the learner, a solution or a wrong fix). `then:` runs
    /// only after the undo (there is nothing to take effect at the break). A missing file is
    /// recorded as missing: the undo removes it if it appears.
    Keep,
}

crate::action_spec! {
    /// ```yaml
    /// - kind: file
    ///   path: /etc/systemd/system/etcd.service
    ///   edit:
    ///     replace: { find: "--data-dir=/var/lib/etcd", with: "--data-dir=/var/lib/etcd-new" }
    /// ```
    pub struct FileAction {
        /// Absolute path on the node.
        pub path: String,
        /// The change.
        pub edit: FileEdit,
        /// Command run after the edit AND again after its undo, so the change takes effect
        /// both ways (e.g. `systemctl daemon-reload && systemctl restart etcd`). Its exit
        /// status is not checked: a broken config may well make it fail.
        #[serde(default)]
        pub then: Option<String>,
    }
}

/// A file's pre-image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileUndo {
    /// Absolute path.
    pub path: String,
    /// Base64 of the old bytes; `None` if the file did not exist.
    pub pre_image: Option<String>,
    /// sha256 (hex) of the old bytes.
    pub sha256: Option<String>,
    /// Command to run after restoring (the action's `then:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub then: Option<String>,
}

/// Hex sha256 of `b`.
pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

impl UndoKind for FileUndo {
    /// Writes the pre-image back (atomically), or removes a file that did not exist; then
    /// runs `then` (its exit status ignored). A file already equal to its pre-image is not
    /// rewritten (a kubelet would not see a change either).
    async fn revert(&self, s: &NodeSession) -> Result<()> {
        self.restore(s).await?;
        if let Some(then) = &self.then {
            s.exec(then, std::time::Duration::from_secs(120)).await?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        match &self.pre_image {
            Some(_) => format!("restore {} (sha256 {})", self.path, short(&self.sha256)),
            None => format!("remove {} (it did not exist)", self.path),
        }
    }
}

impl FileUndo {
    /// Restores the pre-image; returns whether the file changed.
    async fn restore(&self, s: &NodeSession) -> Result<bool> {
        use base64::Engine as _;
        let t = std::time::Duration::from_secs(30);
        let current = s.transport.read_file(&self.path, t).await?;
        let same = match (&current, &self.sha256) {
            (Some(b), Some(want)) => &sha256_hex(b) == want,
            (None, None) => true,
            _ => false,
        };
        if same {
            return Ok(false);
        }
        match &self.pre_image {
            Some(b64) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| {
                        Error::other(format!(
                            "journal pre-image of {} is corrupt: {e}",
                            self.path
                        ))
                    })?;
                if let Some(want) = &self.sha256 {
                    if &sha256_hex(&bytes) != want {
                        return Err(Error::other(format!(
                            "journal pre-image of {} fails its sha256 check",
                            self.path
                        )));
                    }
                }
                s.transport.write_file(&self.path, &bytes, None, t).await?;
            }
            None => {
                s.run_ok(
                    &format!("rm -f {}", crate::transport::shell_quote(&self.path)),
                    t,
                )
                .await?;
            }
        }
        Ok(true)
    }
}

impl FileEdit {
    /// Computes the new contents from the old ones; errors leave the file untouched.
    pub fn apply(&self, old: &str) -> std::result::Result<String, String> {
        match self {
            FileEdit::SetLine { pattern, line } => {
                let re = regex::Regex::new(pattern)
                    .map_err(|e| format!("invalid regex `{pattern}`: {e}"))?;
                let mut hit = false;
                let mut out: Vec<String> = Vec::new();
                for l in old.lines() {
                    if re.is_match(l) {
                        hit = true;
                        out.push(line.clone());
                    } else {
                        out.push(l.to_string());
                    }
                }
                if !hit {
                    return Err(format!("no line matches `{pattern}`"));
                }
                let mut s = out.join("\n");
                if old.ends_with('\n') {
                    s.push('\n');
                }
                Ok(s)
            }
            FileEdit::Replace { find, with } => {
                if !old.contains(find.as_str()) {
                    return Err(format!("`{find}` not found"));
                }
                Ok(old.replace(find.as_str(), with))
            }
            FileEdit::YamlSet { path, value } => {
                let mut doc: serde_json::Value =
                    serde_saphyr::from_str(old).map_err(|e| format!("not valid YAML: {e}"))?;
                let mut cur = &mut doc;
                for part in path.split('.') {
                    cur = match cur {
                        serde_json::Value::Object(m) => {
                            m.entry(part.to_string()).or_insert(serde_json::Value::Null)
                        }
                        serde_json::Value::Array(a) => {
                            let i: usize = part.parse().map_err(|_| {
                                format!("`{part}` indexes a list: expected a number")
                            })?;
                            a.get_mut(i).ok_or_else(|| {
                                format!("index {i} is past the end of the list at `{path}`")
                            })?
                        }
                        serde_json::Value::Null => {
                            *cur = serde_json::Value::Object(Default::default());
                            match cur {
                                serde_json::Value::Object(m) => {
                                    m.entry(part.to_string()).or_insert(serde_json::Value::Null)
                                }
                                _ => return Err("unreachable".into()),
                            }
                        }
                        _ => return Err(format!("`{part}` of `{path}` is not a mapping or list")),
                    };
                }
                *cur = value.clone();
                serde_saphyr::to_string(&doc).map_err(|e| e.to_string())
            }
            FileEdit::Content(c) => Ok(c.clone()),
            FileEdit::Keep => Ok(old.to_string()),
        }
    }
}

impl FaultKind for FileAction {
    fn default_label(&self) -> String {
        format!("edit {}", self.path)
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        let mut d = vec![("path", self.path.clone()), ("edit", self.edit.describe())];
        if let Some(t) = &self.then {
            d.push(("then", t.clone()));
        }
        d
    }

    fn touches(&self) -> Touches {
        Touches {
            files: vec![self.path.clone()],
            ..Touches::default()
        }
    }

    /// Reads the file, computes the edit, journals the pre-image (faults), writes atomically.
    async fn apply(&self, ctx: &ActionCtx<'_>, label: &str) -> Result<()> {
        use base64::Engine as _;
        let fault_err = |message: String| Error::Fault {
            fault: label.to_string(),
            host: ctx.session.node.name.clone(),
            message,
        };
        let old = ctx
            .session
            .transport
            .read_file(&self.path, ctx.timeout)
            .await?;
        let old_text = match &old {
            Some(b) => String::from_utf8(b.clone())
                .map_err(|_| fault_err(format!("{} is not UTF-8 text", self.path)))?,
            None if matches!(self.edit, FileEdit::Content(_) | FileEdit::Keep) => String::new(),
            None => return Err(fault_err(format!("{} does not exist", self.path))),
        };
        let new = self
            .edit
            .apply(&old_text)
            .map_err(|m| fault_err(format!("{}: {m}", self.path)))?;
        if let Some(journal) = ctx.journal {
            let undo = FileUndo {
                path: self.path.clone(),
                pre_image: old
                    .as_ref()
                    .map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
                sha256: old.as_ref().map(|b| sha256_hex(b)),
                then: self.then.clone(),
            };
            journal
                .record(ctx.session, ctx.scenario, label, Undo::File(undo))
                .await?;
        }
        if matches!(self.edit, FileEdit::Keep) {
            return Ok(());
        }
        ctx.session
            .transport
            .write_file(&self.path, new.as_bytes(), None, ctx.timeout)
            .await?;
        crate::failpoint::hit("file: written");
        if let Some(then) = &self.then {
            ctx.session
                .exec(then, std::time::Duration::from_secs(120))
                .await?;
        }
        Ok(())
    }

    /// Renders `path` and the edit's strings.
    fn render(&self, r: &Renderer) -> Result<Self> {
        let mut a = self.clone();
        a.path = r.text(&self.path)?;
        a.then = self.then.as_deref().map(|t| r.shell(t)).transpose()?;
        a.edit = match &self.edit {
            FileEdit::SetLine { pattern, line } => FileEdit::SetLine {
                pattern: r.text(pattern)?,
                line: r.text(line)?,
            },
            FileEdit::Replace { find, with } => FileEdit::Replace {
                find: r.text(find)?,
                with: r.text(with)?,
            },
            FileEdit::YamlSet { path, value } => FileEdit::YamlSet {
                path: r.text(path)?,
                value: value.clone(),
            },
            FileEdit::Content(c) => FileEdit::Content(r.text(c)?),
            FileEdit::Keep => FileEdit::Keep,
        };
        Ok(a)
    }
}

impl FileEdit {
    /// What the edit does, for plans: `set the line matching /^listen=/ to "listen=..."`.
    pub fn describe(&self) -> String {
        match self {
            FileEdit::SetLine { pattern, line } => {
                format!("set the line matching /{pattern}/ to {line:?}")
            }
            FileEdit::Replace { find, with } => format!("replace {find:?} with {with:?}"),
            FileEdit::YamlSet { path, value } => format!("set YAML {path} to {value}"),
            FileEdit::Content(c) => format!("write {} byte(s)", c.len()),
            FileEdit::Keep => "keep its pre-image for reset (no change)".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FileEdit;

    #[test]
    fn set_line_replaces_matching_lines_and_keeps_trailing_newline() {
        let e = FileEdit::SetLine {
            pattern: "^--data-dir".into(),
            line: "--data-dir=/x".into(),
        };
        assert_eq!(
            e.apply("a\n--data-dir=/var/lib/etcd\n").unwrap(),
            "a\n--data-dir=/x\n"
        );
        assert!(e.apply("a\n").unwrap_err().contains("no line matches"));
    }

    #[test]
    fn replace_requires_a_hit() {
        let e = FileEdit::Replace {
            find: "2379".into(),
            with: "2380".into(),
        };
        assert_eq!(e.apply("port 2379").unwrap(), "port 2380");
        assert!(e.apply("port 1").is_err());
    }

    #[test]
    fn yaml_set_walks_maps_and_lists() {
        let e = FileEdit::YamlSet {
            path: "spec.containers.0.image".into(),
            value: serde_json::json!("etcd:bad"),
        };
        let out = e
            .apply("spec:\n  containers:\n  - name: etcd\n    image: etcd:3.5\n")
            .unwrap();
        assert!(out.contains("etcd:bad"), "{out}");
        assert!(out.contains("name: etcd"), "{out}");
    }
}
