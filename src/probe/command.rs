//! `command` probe: run a shell command on the target; facts `exit`, `stdout`, `stderr`.

use super::{Facts, ProbeCtx, ProbeKind};
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

/// Most bytes of `stdout` / `stderr` a command probe keeps as its fact: 1 MiB each. Beyond
/// it the fact is cut (at a character boundary) and the verdict's note says so.
pub const FACT_CAP: usize = 1 << 20;

/// `text` cut to at most [`FACT_CAP`] bytes at a character boundary, and how many bytes were
/// cut.
pub fn cap(text: &str) -> (&str, usize) {
    if text.len() <= FACT_CAP {
        return (text, 0);
    }
    let mut end = FACT_CAP;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], text.len() - end)
}

crate::expect_block! {
    /// Facts of a `command` probe.
    pub struct CommandExpect { exit, stdout, stderr, }
}

impl ProbeKind for CommandProbe {
    type Expect = CommandExpect;

    fn expect(&self) -> &CommandExpect {
        &self.expect
    }

    fn plan_target(&self) -> (&'static str, String) {
        ("run", self.run.clone())
    }

    /// Runs the command once within the attempt's timeout.
    async fn gather(&self, ctx: &ProbeCtx<'_>, _wanted: &[&str]) -> Result<Facts> {
        let out = ctx.session.transport.exec(&self.run, ctx.timeout).await?;
        let mut f = Facts::default();
        f.set("exit", out.exit.unwrap_or(-1));
        let mut notes = Vec::new();
        for (name, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            let (kept, cut) = cap(text.trim_end());
            if cut > 0 {
                notes.push(format!(
                    "{name} cut at {} KiB ({cut} more bytes not kept)",
                    FACT_CAP >> 10
                ));
            }
            f.set(name, kept.to_string());
        }
        if out.dropped > 0 {
            notes.push(format!(
                "the command printed {} bytes beyond the transport's 64 MiB cap",
                out.dropped
            ));
        }
        if !notes.is_empty() {
            f.note = Some(notes.join("; "));
        }
        Ok(f)
    }

    /// Renders `run` in shell context.
    fn render(&self, r: &Renderer) -> Result<Self> {
        let mut p = self.clone();
        p.expect = self.expect.render(r)?;
        p.run = r.shell(&self.run)?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_output_is_cut_at_a_character_boundary() {
        assert_eq!(cap("short"), ("short", 0));
        let big = "é".repeat(FACT_CAP); // 2 bytes each
        let (kept, cut) = cap(&big);
        assert!(kept.len() <= FACT_CAP && kept.len() > FACT_CAP - 2);
        assert_eq!(kept.len() + cut, big.len());
        assert!(kept.chars().all(|c| c == 'é'));
    }
}
