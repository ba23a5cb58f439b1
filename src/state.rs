//! Local state: where breakfix keeps its journal and sessions on the machine it runs on.
//!
//! `BREAKFIX_STATE_DIR` if set, else `$XDG_STATE_HOME/breakfix`, else `~/.local/state/breakfix`.

use std::path::PathBuf;

/// The state directory (not created here).
pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BREAKFIX_STATE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(d).join("breakfix");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".local/state/breakfix")
}
