//! `breakfix completions SHELL`: a completion script for SHELL on stdout, generated from the
//! clap definition of the whole command line (so it never drifts from the real flags).

use std::io::Write;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Globals, EXIT_PASS};
use crate::error::{Error, Result};

/// Arguments of `completions`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  breakfix completions bash > /etc/bash_completion.d/breakfix
  breakfix completions zsh > \"${fpath[1]}/_breakfix\"
  breakfix completions fish > ~/.config/fish/completions/breakfix.fish
  breakfix completions powershell >> $PROFILE")]
pub struct CompletionsArgs {
    /// The shell to generate a completion script for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

/// Renders the script into memory first, so a closed stdout is an error, not a panic.
pub fn render(shell: Shell) -> Vec<u8> {
    let mut cmd = super::Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "breakfix", &mut buf);
    buf
}

/// Prints the completion script.
pub async fn run(a: CompletionsArgs, _g: Globals) -> Result<u8> {
    let script = render(a.shell);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|_| out.flush())
        .map_err(|source| Error::Io {
            context: "writing the completion script to stdout".into(),
            source,
        })?;
    Ok(EXIT_PASS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_the_subcommands() {
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::Elvish,
            Shell::PowerShell,
        ] {
            let s = String::from_utf8(render(shell)).expect("utf-8 script");
            assert!(s.contains("breakfix"), "{shell}: no program name");
            for sub in ["validate", "check", "export", "completions", "man"] {
                assert!(s.contains(sub), "{shell}: `{sub}` missing");
            }
        }
    }
}
