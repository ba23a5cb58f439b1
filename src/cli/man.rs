//! `breakfix man [-o DIR]`: man pages generated from the clap definition. Without `-o` the
//! main page goes to stdout (`breakfix man | man -l -`); with `-o DIR` the main page
//! `breakfix.1` and one page per subcommand (`breakfix-check.1`, `breakfix-sandbox-up.1`, ...)
//! are written into DIR.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};

use super::{Globals, EXIT_PASS};
use crate::error::{Error, Result};

/// Arguments of `man`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  breakfix man | man -l -
  breakfix man -o /usr/local/share/man/man1 && mandb")]
pub struct ManArgs {
    /// Write breakfix.1 and one page per subcommand into DIR (created if missing) instead of
    /// printing the main page.
    #[arg(long = "out-dir", short = 'o', value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

/// The main page, as roff.
pub fn main_page() -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(super::Cli::command())
        .render(&mut buf)
        .map_err(io("rendering the man page".into()))?;
    Ok(buf)
}

/// Writes the main page and one page per (nested, non-hidden) subcommand into `dir`; returns
/// the files written, main page first.
pub fn write_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let mut cmd = super::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    fn walk(cmd: clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
        let subs: Vec<clap::Command> = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .cloned()
            .collect();
        let page = clap_mangen::Man::new(cmd);
        let path = dir.join(page.get_filename());
        let mut buf = Vec::new();
        page.render(&mut buf)
            .map_err(io(format!("rendering {}", path.display())))?;
        std::fs::write(&path, &buf).map_err(io(format!("writing {}", path.display())))?;
        written.push(path);
        for s in subs {
            walk(s, dir, written)?;
        }
        Ok(())
    }
    walk(cmd, dir, &mut written)?;
    Ok(written)
}

/// Prints the main page, or writes every page into `--out-dir`.
pub async fn run(a: ManArgs, g: Globals) -> Result<u8> {
    match &a.out_dir {
        None => {
            let page = main_page()?;
            let mut out = std::io::stdout().lock();
            out.write_all(&page)
                .and_then(|_| out.flush())
                .map_err(io("writing the man page to stdout".into()))?;
        }
        Some(dir) => {
            let written = write_pages(dir)?;
            if !g.quiet {
                for p in &written {
                    println!("{}", p.display());
                }
            }
        }
    }
    Ok(EXIT_PASS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn main_page_is_roff_and_lists_subcommands() {
        let page = String::from_utf8(main_page().expect("render")).expect("utf-8");
        assert!(
            page.starts_with(".ie") || page.contains(".TH breakfix"),
            "{page}"
        );
        assert!(page.contains("export"));
        assert!(page.contains("completions"));
    }

    #[test]
    fn one_page_per_subcommand() {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = write_pages(dir.path()).expect("write pages");
        let names: Vec<String> = written
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
            .collect();
        assert_eq!(names.first().map(String::as_str), Some("breakfix.1"));
        for n in [
            "breakfix-check.1",
            "breakfix-export.1",
            "breakfix-export-killercoda.1",
            "breakfix-man.1",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
        }
    }
}
