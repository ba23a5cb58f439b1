//! `breakfix export killercoda LAB -o DIR`: publish a lab as a Killercoda scenario directory
//! (src/export/killercoda/; docs/killercoda.md).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::{Globals, EXIT_PASS};
use crate::error::{Error, Result};
use crate::export::killercoda::{self, Content, Options};
use crate::inventory::Topology;

/// Arguments of `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Target platform.
    #[command(subcommand)]
    pub target: ExportTarget,
}

/// Export targets.
#[derive(Debug, Subcommand)]
pub enum ExportTarget {
    /// Write a Killercoda scenario directory: index.json, step pages, background.sh (break) and
    /// verify.sh (check) per incident step, and the breakfix binary plus the lab's files as assets.
    Killercoda(KillercodaArgs),
}

/// Where etcd runs on the Killercoda node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TopologyArg {
    /// etcd is a kubeadm static pod (Killercoda's kubeadm images).
    Stacked,
    /// etcd is a systemd unit `etcd`.
    External,
}

impl From<TopologyArg> for Topology {
    fn from(t: TopologyArg) -> Topology {
        match t {
            TopologyArg::Stacked => Topology::Stacked,
            TopologyArg::External => Topology::External,
        }
    }
}

/// Arguments of `export killercoda`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  breakfix export killercoda labs/etcd-outage-000.yaml -o killercoda/etcd-outage-000
  breakfix export killercoda labs/etcd-outage-000.yaml -o /tmp/kc --topology external --force

The lab and every scenario it uses are validated first; nothing is written unless all pass.")]
pub struct KillercodaArgs {
    /// Lab file (labs/*.yaml).
    #[arg(value_name = "LAB")]
    pub lab: PathBuf,
    /// Output directory (must not exist or be empty, unless --force).
    #[arg(long, short = 'o', value_name = "DIR")]
    pub out: PathBuf,
    /// Where etcd runs on the target image; written into the exported inventory. Picks each
    /// step's variant for that topology (docs/lab-format.md); a step without one, or whose
    /// scenario is written only for the other topology, is refused.
    #[arg(long, value_enum, default_value = "stacked")]
    pub topology: TopologyArg,
    /// Directory on the node that receives the binary, the lab files and the inventory.
    #[arg(long, value_name = "DIR", default_value = killercoda::DEFAULT_HOST_DIR)]
    pub host_dir: String,
    /// Killercoda image (`backend.imageid`).
    #[arg(long, value_name = "ID", default_value = killercoda::DEFAULT_IMAGE)]
    pub image: String,
    /// breakfix executable to ship (default: the one running now).
    #[arg(long, value_name = "FILE")]
    pub binary: Option<PathBuf>,
    /// Replace DIR if it exists and is not empty.
    #[arg(long)]
    pub force: bool,
}

fn size(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

/// Runs the export.
pub async fn run(a: ExportArgs, g: Globals) -> Result<u8> {
    let ExportTarget::Killercoda(a) = a.target;
    let binary = match a.binary {
        Some(b) => b,
        None => std::env::current_exe().map_err(|source| Error::Io {
            context: "finding the running breakfix executable".into(),
            source,
        })?,
    };
    let opts = Options {
        topology: a.topology.into(),
        host_dir: a.host_dir,
        image: a.image,
        binary,
    };
    let export = killercoda::prepare(&a.lab, &opts)?;
    killercoda::write(&export, &a.out, a.force)?;
    if g.quiet {
        return Ok(EXIT_PASS);
    }
    let breaking = export.steps.iter().filter(|s| s.scenario.is_some()).count();
    println!(
        "{} lab `{}` -> {} ({} steps, {} with a break; image {})",
        console::style("exported").green(),
        export.lab_name,
        a.out.display(),
        export.steps.len(),
        breaking,
        export.index.backend.imageid
    );
    for s in &export.steps {
        match &s.scenario {
            Some(sc) => println!(
                "  step {}: {}  [{sc}: background.sh breaks, verify.sh checks]",
                s.number, s.title
            ),
            None => println!("  step {}: {}  [text only]", s.number, s.title),
        }
    }
    println!(
        "  assets for {} (copied by Killercoda before the scripts run):",
        killercoda::HOST
    );
    for asset in export.index.details.assets.values().flatten() {
        let bytes = export
            .files
            .iter()
            .find(|f| f.path == std::path::Path::new("assets").join(&asset.file))
            .map(|f| match &f.content {
                Content::Bytes(b) => b.len() as u64,
                Content::CopyOf(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            })
            .unwrap_or(0);
        println!(
            "    {:<28} {:>10}  -> {}",
            asset.file,
            size(bytes),
            asset.target
        );
    }
    match killercoda::required_glibc(&opts.binary) {
        Some((major, minor)) => println!(
            "  note: the shipped binary is dynamically linked and needs glibc >= {major}.{minor} on the image (docs/killercoda.md)"
        ),
        None => println!("  note: the shipped binary asks for no versioned glibc symbols (static build?)"),
    }
    Ok(EXIT_PASS)
}
