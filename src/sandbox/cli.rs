//! CLI: the `breakfix sandbox build|up|status|down` subcommands (clap), wired by src/main.rs
//! to [`run`].

use clap::{Args, Subcommand, ValueEnum};

use super::lifecycle::{self, UpOptions};
use crate::error::{Error, Result};
use crate::inventory::Topology;

/// A real kubeadm cluster on this machine: systemd-nspawn nodes with systemd, sshd,
/// containerd and a kubelet, on the bridge bfbr0 (198.18.0.0/27), made by kubeadm from
/// Kubernetes and etcd built here from source. Needs root. Up to 8 run side by side
/// (`--instance`), each on its own bridge and /27 of 198.18.0.0/24.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  \
    breakfix sandbox build                   # build Kubernetes, etcd, crictl and the images once\n  \
    breakfix sandbox up                      # controlplane + node01, etcd as a systemd unit\n  \
    breakfix sandbox up --nodes 1            # controlplane only\n  \
    breakfix sandbox up --topology stacked   # kubeadm's default: etcd is a static pod\n  \
    breakfix sandbox status --output json\n  \
    breakfix sandbox down                    # remove everything but the cached image\n  \
    breakfix sandbox --instance 1 up --topology stacked   # a second cluster beside the first\n\n\
The inventory is written to /var/lib/breakfix/sandbox/inventory.yaml ($BREAKFIX_SANDBOX_DIR);\n\
instance K > 0 keeps its state in /var/lib/breakfix/sandbox-K ($BREAKFIX_SANDBOX_INSTANCE=K);\n\
the node image, the build and the images are cached in /var/lib/breakfix/images\n\
($BREAKFIX_IMAGE_DIR); the pinned versions are in scripts/versions.env.")]
pub struct SandboxArgs {
    /// Which sandbox (0-7): each instance is a cluster of its own, on bridge `bfbrK` with
    /// the network 198.18.0.(32K)/27, its state in /var/lib/breakfix/sandbox-K (K > 0).
    /// Default: $BREAKFIX_SANDBOX_INSTANCE, else 0.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..8))]
    pub instance: Option<u8>,
    /// What to do.
    #[command(subcommand)]
    pub command: SandboxCommand,
}

/// `sandbox` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum SandboxCommand {
    /// Build what the nodes are made of, once: Kubernetes (kubeadm, kubelet, control plane,
    /// kubectl), etcd and crictl from their Go modules at the pinned versions, the Debian
    /// node image, and the container images kubeadm names. `up` does the same when its
    /// cache is missing; this command does it ahead of time.
    #[command(
        after_help = "Examples:\n  breakfix sandbox build\n  breakfix sandbox build --rebuild   # throw the cached programs away first\n\n\
A cold build takes about 15-20 minutes on two cores (Go's own caches make later ones faster).\n\
The versions are pinned in scripts/versions.env, embedded in breakfix."
    )]
    Build {
        /// Remove the cached build of the current pins and build it again (e.g. after
        /// `verify` reported it corrupt).
        #[arg(long)]
        rebuild: bool,
    },
    /// Build what is missing (see `build`), boot the nodes, run `kubeadm init` on
    /// controlplane and `kubeadm join` on the workers, wait for every node Ready, apply seed
    /// 000's workloads, write the inventory. Does nothing but report when the sandbox is
    /// already up; refuses when it is up with the other topology.
    #[command(
        after_help = "Examples:\n  breakfix sandbox up\n  breakfix sandbox up --nodes 3 --topology external\n  \
breakfix sandbox up --topology stacked --recreate   # replace whatever sandbox is up\n  \
breakfix sandbox up --control-planes 3              # three control planes, three etcd members, node01"
    )]
    Up {
        /// Number of nodes, control planes included: `controlplane` (and `controlplane02`,
        /// `controlplane03`) plus workers `node01`, `node02`, ... (1-8). Default: the control
        /// planes plus one worker.
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=8))]
        nodes: Option<u8>,
        /// Control-plane nodes, each with an etcd member (1-3): `controlplane` runs
        /// `kubeadm init`, `controlplane02` and `controlplane03` `kubeadm join
        /// --control-plane`, behind HAProxy on the host's bridge address, port 6443
        /// (kubeadm's `controlPlaneEndpoint`; needs the host's `haproxy`). External: each
        /// runs its etcd member as `etcd.service`; stacked: kubeadm's etcd static pods.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
        control_planes: u8,
        /// Where etcd runs: `external` (systemd unit etcd.service, kubeadm's external-etcd
        /// layout) or `stacked` (kubeadm's default: etcd is a static pod).
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
    /// etcd is a static pod next to kube-apiserver (kubeadm's default).
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
    match args.instance {
        Some(k) => super::set_instance(k)?,
        None => {
            super::instance_from_env()?;
        }
    }
    match args.command {
        SandboxCommand::Build { rebuild } => {
            let built = lifecycle::build_only(rebuild).await?;
            println!("{built}");
            Ok(())
        }
        SandboxCommand::Up {
            nodes,
            control_planes,
            topology,
            recreate,
        } => {
            let report = lifecycle::up(&UpOptions {
                nodes: nodes.unwrap_or(control_planes + 1),
                control_planes,
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
