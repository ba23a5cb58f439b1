//! `file` probe: a file on the node; facts `exists`, `contents`, `mode` (e.g. `0600`),
//! `owner` (`user:group`), `size` (bytes), `sha256`. Gathered with `stat` and a read through
//! the transport (SFTP on SSH nodes: no process on the node), symlinks followed.

use std::time::Instant;

use sha2::{Digest, Sha256};

use super::{Facts, ProbeCtx, ProbeKind};
use crate::error::Result;
use crate::template::Renderer;

crate::probe_spec! {
    /// ```yaml
    /// - kind: file
    ///   name: manifest-points-at-var-lib-etcd
    ///   path: /etc/kubernetes/manifests/etcd.yaml
    ///   expect: { exists: true, contents: { contains: "--data-dir=/var/lib/etcd" } }
    /// ```
    pub struct FileProbe {
        /// Absolute path on the node.
        pub path: String,
        /// Expectations.
        pub expect: FileExpect,
    }
}

crate::expect_block! {
    /// Facts of a `file` probe.
    pub struct FileExpect { exists, contents, mode, owner, size, sha256, }
}

impl ProbeKind for FileProbe {
    type Expect = FileExpect;

    fn expect(&self) -> &FileExpect {
        &self.expect
    }

    fn plan_target(&self) -> (&'static str, String) {
        ("path", self.path.clone())
    }

    fn touches(&self) -> crate::touches::Touches {
        crate::touches::Touches {
            files: vec![self.path.clone()],
            ..Default::default()
        }
    }

    /// One `stat` (`exists`, `mode`, `size`); the owner's names when `owner` is checked
    /// (cached per node session); one read, hashed here, when `contents` or `sha256` is
    /// checked (regular files only: a directory or a FIFO has neither).
    async fn gather(&self, ctx: &ProbeCtx<'_>, wanted: &[&str]) -> Result<Facts> {
        let deadline = Instant::now() + ctx.timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        let t = &ctx.session.transport;
        let mut f = Facts::default();
        let Some(st) = t.stat(&self.path, ctx.timeout).await? else {
            f.set("exists", false);
            return Ok(f);
        };
        f.set("exists", true);
        f.set("mode", format!("{:04o}", st.permissions()));
        f.set("size", st.size);
        if wanted.contains(&"owner") {
            let owner = ctx
                .session
                .owner(&self.path, st.uid, st.gid, left())
                .await?;
            f.set("owner", owner);
        }
        let read = wanted.contains(&"contents") || wanted.contains(&"sha256");
        if read && st.is_file() {
            match t.read_file(&self.path, left()).await? {
                Some(b) => {
                    f.set("sha256", hex::encode(Sha256::digest(&b)));
                    if wanted.contains(&"contents") {
                        f.set("contents", String::from_utf8_lossy(&b).into_owned());
                    }
                }
                // Removed between the stat and the read.
                None => {
                    f.values.clear();
                    f.set("exists", false);
                }
            }
        }
        Ok(f)
    }

    /// Renders `path`.
    fn render(&self, r: &Renderer) -> Result<Self> {
        let mut p = self.clone();
        p.expect = self.expect.render(r)?;
        p.path = r.text(&self.path)?;
        Ok(p)
    }
}
