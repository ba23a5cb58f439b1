//! CLI: the `breakfix sandbox up|status|down` subcommands (clap), wired by src/main.rs to
//! [`run`].

use clap::{Args, Subcommand, ValueEnum};

use super::lifecycle::{self, UpOptions};
use crate::error::{Error, Result};
use crate::inventory::Topology;

/// A kubeadm-shaped lab cluster on this machine: systemd-nspawn nodes with real systemd,
/// sshd and etcd, on the bridge bfbr0 (198.18.0.0/24). Needs root.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  \
    breakfix sandbox up                      # controlplane + node01, etcd as a systemd unit\n  \
    breakfix sandbox up --nodes 1            # controlplane only\n  \
    breakfix sandbox up --topology stacked   # etcd + kube-apiserver as static pods (stand-ins)\n  \
    breakfix sandbox status --output json\n  \
    breakfix sandbox down                    # remove everything but the cached image\n\n\
The inventory is written to /var/lib/breakfix/sandbox/inventory.yaml ($BREAKFIX_SANDBOX_DIR);\n\
the node image is cached in /var/lib/breakfix/images ($BREAKFIX_IMAGE_DIR).")]
pub struct SandboxArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: SandboxCommand,
}

/// `sandbox` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum SandboxCommand {
    /// Build the node image if needed, boot the nodes, wait for sshd and etcd (stacked: and
    /// the API server, then apply seed 000's workloads), write the inventory. Does nothing but
    /// report when the sandbox is already up; refuses when it is up with the other topology.
    #[command(
        after_help = "Examples:\n  breakfix sandbox up\n  breakfix sandbox up --nodes 3 --topology external\n  \
breakfix sandbox up --topology stacked --recreate   # replace whatever sandbox is up\n\n\
The stacked topology runs the kubelet and kube-apiserver STAND-INS (test/demo programs of this\n\
workspace, not the real ones): build the whole workspace first (`cargo build`), they are taken\n\
from the directory of the breakfix executable."
    )]
    Up {
        /// Number of nodes: `controlplane` plus workers `node01`, `node02`, ... (1-8).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=8))]
        nodes: u8,
        /// Where etcd runs: `external` (systemd unit etcd.service) or `stacked` (kubeadm's
        /// default: etcd and kube-apiserver are static pods run by the kubelet stand-in).
        #[arg(long, value_enum, default_value_t = TopologyArg::External)]
        topology: TopologyArg,
        /// Take down the sandbox that is up (any topology or size) and bring up a fresh one.
        #[arg(long)]
        recreate: bool,
    },
    /// Show the nodes, whether their containers run, sshd answers and etcd is healthy.
    #[command(
        after_help = "Examples:\n  breakfix sandbox status\n  breakfix sandbox status --output json | jq .nodes"
    )]
    Status {
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = OutputArg::Human)]
        output: OutputArg,
    },
    /// Power the nodes off and remove every process, mount, loop device, bridge and file of
    /// the sandbox (also after an `up` that died half-way). The image cache stays.
    #[command(after_help = "Example:\n  breakfix sandbox down")]
    Down,
}

/// `--topology` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TopologyArg {
    /// etcd is a systemd unit on the control plane.
    External,
    /// etcd and kube-apiserver are static pods (kubeadm's default), run by the kubelet
    /// stand-in.
    Stacked,
}

impl From<TopologyArg> for Topology {
    fn from(t: TopologyArg) -> Topology {
        match t {
            TopologyArg::External => Topology::External,
            TopologyArg::Stacked => Topology::Stacked,
        }
    }
}

/// `--output` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputArg {
    /// A table for people.
    Human,
    /// One JSON object (see `StatusReport`).
    Json,
}

/// [`run`] with the CLI's global `--quiet` honoured (no step lines or spinners on stderr).
///
/// Errors: as [`run`].
pub async fn run_with(args: SandboxArgs, quiet: bool) -> Result<()> {
    super::progress::set_quiet(quiet);
    run(args).await
}

/// Runs a `breakfix sandbox ...` command, printing its result on stdout.
///
/// Errors: whatever [`lifecycle::up`] / [`lifecycle::down`] report; `status` fails only when
/// the JSON cannot be encoded.
pub async fn run(args: SandboxArgs) -> Result<()> {
    match args.command {
        SandboxCommand::Up {
            nodes,
            topology,
            recreate,
        } => {
            let report = lifecycle::up(&UpOptions {
                nodes,
                topology: topology.into(),
                recreate,
            })
            .await?;
            print!("{}", report.render_human());
            Ok(())
        }
        SandboxCommand::Status { output } => {
            let report = lifecycle::status().await;
            match output {
                OutputArg::Human => print!("{}", report.render_human()),
                OutputArg::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report)
                        .map_err(|e| Error::other(format!("encoding status: {e}")))?
                ),
            }
            Ok(())
        }
        SandboxCommand::Down => {
            if lifecycle::down().await? {
                println!("sandbox: down (removed; the node image cache stays)");
            } else {
                println!("sandbox: down (there was no sandbox)");
            }
            Ok(())
        }
    }
}
