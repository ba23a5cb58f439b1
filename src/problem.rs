//! A kind's own complaint about its settings (a fault's or a probe's), which `validate` shows
//! at the item's position with the code of its group (BF202 faults and steps, BF308 probes).

/// A kind's own complaint about its settings, shown by `validate` at the item's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong and what is expected, e.g. "`jobs` must be at least 1".
    pub message: String,
    /// How to fix it, when the message alone does not say.
    pub help: Option<String>,
}

impl Problem {
    /// A problem without help.
    pub fn new(message: impl Into<String>) -> Problem {
        Problem {
            message: message.into(),
            help: None,
        }
    }

    /// Adds help.
    pub fn with_help(mut self, help: impl Into<String>) -> Problem {
        self.help = Some(help.into());
        self
    }
}
