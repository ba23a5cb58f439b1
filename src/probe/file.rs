//! `file` probe: a file on the node; facts `exists`, `contents`, `mode` (e.g. `0600`),
//! `owner` (`user:group`), `size` (bytes), `sha256`.

use super::{Facts, ProbeCtx};
use crate::error::Result;
use crate::template::Renderer;
use crate::transport::shell_quote;

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

impl FileProbe {
    /// One `stat`/`sha256sum` round trip, plus a read when `contents` is checked.
    pub async fn gather(&self, ctx: &ProbeCtx<'_>, wanted: &[&str]) -> Result<Facts> {
        let p = shell_quote(&self.path);
        let cmd = format!(
            "if [ -e {p} ]; then stat -L -c '%a %U:%G %s' {p}; sha256sum < {p} 2>/dev/null | cut -d' ' -f1; else echo missing; fi"
        );
        let out = ctx.session.transport.exec(&cmd, ctx.timeout).await?;
        let mut f = Facts::default();
        let mut lines = out.stdout.lines();
        let first = lines.next().unwrap_or("missing").trim();
        if first == "missing" {
            f.set("exists", false);
            return Ok(f);
        }
        f.set("exists", true);
        let mut parts = first.split_whitespace();
        if let Some(mode) = parts.next() {
            f.set("mode", format!("{:0>4}", mode));
        }
        if let Some(owner) = parts.next() {
            f.set("owner", owner.to_string());
        }
        if let Some(size) = parts.next().and_then(|s| s.parse::<u64>().ok()) {
            f.set("size", size);
        }
        if let Some(sum) = lines.next() {
            f.set("sha256", sum.trim().to_string());
        }
        if wanted.contains(&"contents") {
            let bytes = ctx
                .session
                .transport
                .read_file(&self.path, ctx.timeout)
                .await?;
            if let Some(b) = bytes {
                f.set("contents", String::from_utf8_lossy(&b).into_owned());
            }
        }
        Ok(f)
    }

    /// Renders `path`.
    pub fn render(&self, r: &Renderer) -> Result<Self> {
        let mut p = self.clone();
        p.expect = self.expect.render(r)?;
        p.path = r.text(&self.path)?;
        Ok(p)
    }
}
