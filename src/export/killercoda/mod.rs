//! Killercoda export: a lab (`labs/*.yaml`) as a Killercoda scenario directory.
//!
//! ```text
//! OUT/
//!   index.json            title, description, details{intro, steps, finish, assets}, backend.imageid
//!   intro.md  finish.md
//!   stepN/text.md         every step
//!   stepN/background.sh   steps with a scenario: `breakfix break --lab L --step N` (local transport)
//!   stepN/verify.sh       steps with a scenario: `breakfix check --lab L --step N`; exit code = verdict
//!   assets/               copied onto host01 (the controlplane) as `details.assets.host01` says:
//!     breakfix            the running executable            -> HOST_DIR/bin
//!     inventory.yaml      one local-transport node          -> HOST_DIR
//!     <lab, scenarios, graders>  same layout relative to each other as in the source tree
//! ```
//!
//! By concern: `steps` checks each step's scenario, `assets` collects the files copied
//! onto the node and their host paths, `pages` renders the pages and scripts from the
//! minijinja templates in `templates/`, `index` builds index.json, and `write` writes the
//! directory. Everything is validated before anything is written, and the directory is built
//! under a temporary name and renamed into place, so a failure leaves no half export.

mod assets;
mod index;
mod pages;
mod steps;
#[cfg(test)]
mod tests;
mod write;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::inventory::Topology;
use crate::lab::LoadedLab;

pub use assets::{local_inventory, required_glibc};
pub use index::{Asset, Backend, Details, Index, Page, StepEntry};
pub use write::write;

/// Killercoda's two-node kubeadm image (`controlplane` is host01, `node01` host02).
pub const DEFAULT_IMAGE: &str = "kubernetes-kubeadm-2nodes";
/// Where the assets land on the node by default.
pub const DEFAULT_HOST_DIR: &str = "/root/breakfix";
/// The Killercoda host the assets and scripts are for (the controlplane).
pub const HOST: &str = "host01";
/// Asset name of the breakfix binary.
pub const BINARY_ASSET: &str = "breakfix";
/// Asset name of the generated inventory.
pub const INVENTORY_ASSET: &str = "inventory.yaml";

/// How to export.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where etcd runs on the target image: kubeadm's static pod (`stacked`, real Killercoda)
    /// or a systemd unit (`external`). Written into the inventory; scenarios written for the
    /// other topology are refused.
    pub topology: Topology,
    /// Absolute directory on the node that receives the binary, the lab files and the inventory.
    pub host_dir: String,
    /// `backend.imageid`.
    pub image: String,
    /// The breakfix executable to ship (normally `std::env::current_exe()`).
    pub binary: PathBuf,
}

impl Options {
    /// Defaults for real Killercoda: stacked topology, `/root/breakfix`, the 2-node image.
    pub fn new(binary: PathBuf) -> Options {
        Options {
            topology: Topology::Stacked,
            host_dir: DEFAULT_HOST_DIR.to_string(),
            image: DEFAULT_IMAGE.to_string(),
            binary,
        }
    }
}

// ---- the planned export ----

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub enum Content {
    /// Generated or already read.
    Bytes(Vec<u8>),
    /// Copied at write time (the binary).
    CopyOf(PathBuf),
}

/// One file of the export directory.
#[derive(Debug, Clone)]
pub struct OutFile {
    /// Path relative to the export directory.
    pub path: PathBuf,
    /// Its content.
    pub content: Content,
    /// Unix mode.
    pub mode: u32,
}

/// Per step: what the export does with it.
#[derive(Debug, Clone)]
pub struct StepSummary {
    /// 1-based.
    pub number: usize,
    /// Step title.
    pub title: String,
    /// Scenario name, for steps that break.
    pub scenario: Option<String>,
}

/// A fully validated export, not yet written.
#[derive(Debug, Clone)]
pub struct Export {
    /// Lab name.
    pub lab_name: String,
    /// The index.
    pub index: Index,
    /// Every file, index.json included.
    pub files: Vec<OutFile>,
    /// The steps.
    pub steps: Vec<StepSummary>,
    /// Lab file on the node.
    pub host_lab: String,
    /// Inventory on the node.
    pub host_inventory: String,
    /// breakfix binary on the node.
    pub host_binary: String,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

/// Validates the lab, every scenario it uses (the checks of `breakfix validate`, the topology,
/// and a full render against the exported inventory) and plans every file. Reads files;
/// writes nothing.
pub fn prepare(lab_path: &Path, opts: &Options) -> Result<Export> {
    let host_dir = assets::check_host_dir(&opts.host_dir)?;
    if opts.image.trim().is_empty() {
        return Err(Error::other("--image must not be empty"));
    }
    let lab = LoadedLab::load(lab_path)?;
    let meta = &lab.lab.metadata;
    let bin_meta = std::fs::metadata(&opts.binary).map_err(io(format!(
        "the breakfix binary to ship, {}",
        opts.binary.display()
    )))?;
    if !bin_meta.is_file() {
        return Err(Error::other(format!(
            "the breakfix binary to ship, {}, is not a file",
            opts.binary.display()
        )));
    }
    let checked = steps::check(&lab, lab_path, opts)?;
    let assets::Assets {
        mut files,
        list,
        host,
    } = assets::collect(&checked.sources, &host_dir, opts)?;

    let total = meta.time_limit.map(|d| d.0).or_else(|| {
        checked
            .budgets
            .iter()
            .copied()
            .sum::<Option<std::time::Duration>>()
    });
    let pages = pages::Pages::new()?;
    let page = |path: &str, body: String| OutFile {
        path: path.into(),
        content: Content::Bytes(body.into_bytes()),
        mode: 0o644,
    };
    files.push(page("intro.md", pages.intro(&lab, total, &host)?));
    files.push(page("finish.md", pages.finish(&lab, &host)?));
    let mut entries = Vec::new();
    for (s, budget) in checked.steps.iter().zip(&checked.budgets) {
        let text = lab.text_for(s.number, opts.topology)?;
        let (step_files, entry) = pages.step(s, text, *budget, checked.steps.len(), &host)?;
        files.extend(step_files);
        entries.push(entry);
    }

    let index = index::build(meta, entries, list, &opts.image);
    files.insert(
        0,
        OutFile {
            path: "index.json".into(),
            content: Content::Bytes(index::to_bytes(&index)?),
            mode: 0o644,
        },
    );
    Ok(Export {
        lab_name: meta.name.clone(),
        index,
        files,
        steps: checked.steps,
        host_lab: host.lab,
        host_inventory: host.inventory,
        host_binary: host.binary,
    })
}
