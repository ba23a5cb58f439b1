//! `command` probe: run a shell command on the target; facts `exit`, `stdout`, `stderr`.

use super::{Facts, ProbeCtx};
use crate::error::Result;
use crate::template::Renderer;

crate::probe_spec! {
    /// ```yaml
    /// - kind: command
    ///   name: etcd-health
    ///   run: etcdctl endpoint health
    ///   expect: { exit: 0, stderr: { contains: is healthy } }
    /// ```
    pub struct CommandProbe {
        /// Shell command (rendered; template values are shell-quoted).
        pub run: String,
        /// Expectations on `exit` (integer; -1 when killed by a signal), `stdout`, `stderr`.
        pub expect: CommandExpect,
    }
}

crate::expect_block! {
    /// Facts of a `command` probe.
    pub struct CommandExpect { exit, stdout, stderr, }
}

impl CommandProbe {
    /// Runs the command once within the attempt's timeout.
    pub async fn gather(&self, ctx: &ProbeCtx<'_>) -> Result<Facts> {
        let out = ctx.session.transport.exec(&self.run, ctx.timeout).await?;
        let mut f = Facts::default();
        f.set("exit", out.exit.unwrap_or(-1));
        f.set("stdout", out.stdout.trim_end().to_string());
        f.set("stderr", out.stderr.trim_end().to_string());
        Ok(f)
    }

    /// Renders `run` in shell context.
    pub fn render(&self, r: &Renderer) -> Result<Self> {
        let mut p = self.clone();
        p.expect = self.expect.render(r)?;
        p.run = r.shell(&self.run)?;
        Ok(p)
    }
}
