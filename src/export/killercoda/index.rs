//! `index.json`: the scenario definition Killercoda reads (title, pages, steps, assets, image).
//!
//! The shape follows Killercoda's scenario examples (`killercoda/scenario-examples`:
//! `foreground-background-scripts-multi-step` for text/background/verify per step,
//! `kubernetes-dashboard` for `details.assets.host01[] = {file, target, chmod}`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::HOST;
use crate::error::{Error, Result};
use crate::lab::LabMeta;

/// `index.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// Scenario title.
    pub title: String,
    /// One-paragraph summary shown on the scenario's card.
    pub description: String,
    /// Pages, steps and assets.
    pub details: Details,
    /// The environment.
    pub backend: Backend,
}

/// `index.json` `details`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Details {
    /// First page.
    pub intro: Page,
    /// Steps in order.
    pub steps: Vec<StepEntry>,
    /// Last page.
    pub finish: Page,
    /// Files from `assets/` to copy onto each host (key: `host01`, ...).
    pub assets: BTreeMap<String, Vec<Asset>>,
}

/// The intro or finish page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// Markdown file.
    pub text: String,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepEntry {
    /// Step title.
    pub title: String,
    /// Markdown file.
    pub text: String,
    /// Script whose exit code decides whether the learner may go on (0 = yes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<String>,
    /// Script run out of sight when the step starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<String>,
}

/// One file of `assets/` copied onto a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Asset {
    /// Name of the file inside `assets/`.
    pub file: String,
    /// Directory on the host it is copied into.
    pub target: String,
    /// Mode change applied after the copy (e.g. `+x`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chmod: Option<String>,
}

/// `index.json` `backend`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backend {
    /// Killercoda image, e.g. `kubernetes-kubeadm-2nodes`.
    pub imageid: String,
}

/// The index of a lab: its title and description, the pages `intro.md` and `finish.md`,
/// `steps` in order, and `assets` for [`HOST`].
pub(super) fn build(
    meta: &LabMeta,
    steps: Vec<StepEntry>,
    assets: Vec<Asset>,
    image: &str,
) -> Index {
    // Killercoda shows the description as one paragraph on the scenario's card.
    let description = if meta.description.trim().is_empty() {
        meta.title.clone()
    } else {
        meta.description
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    Index {
        title: meta.title.clone(),
        description,
        details: Details {
            intro: Page {
                text: "intro.md".into(),
            },
            steps,
            finish: Page {
                text: "finish.md".into(),
            },
            assets: BTreeMap::from([(HOST.to_string(), assets)]),
        },
        backend: Backend {
            imageid: image.to_string(),
        },
    }
}

/// `index.json`'s bytes: pretty JSON and a final newline.
pub(super) fn to_bytes(index: &Index) -> Result<Vec<u8>> {
    let json = serde_json::to_string_pretty(index)
        .map_err(|e| Error::other(format!("serializing index.json: {e}")))?;
    Ok(format!("{json}\n").into_bytes())
}
