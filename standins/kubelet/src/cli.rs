//! Command-line flags: the kubelet flags the stand-in honours, the kubeadm ones it accepts and
//! ignores (so a kubeadm-like unit file works), and the stand-in's own (some test-only).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Command};

/// Kubelet flags a kubeadm node passes (unit drop-in, kubeadm-flags.env) that the stand-in
/// accepts and ignores with a log line. Unknown flags are an error, as with the real kubelet.
pub const IGNORED_FLAGS: &[&str] = &[
    "config",
    "kubeconfig",
    "bootstrap-kubeconfig",
    "container-runtime-endpoint",
    "image-service-endpoint",
    "container-runtime",
    "pod-infra-container-image",
    "cgroup-driver",
    "node-ip",
    "node-labels",
    "register-node",
    "register-with-taints",
    "fail-swap-on",
    "network-plugin",
    "cni-bin-dir",
    "cni-conf-dir",
    "cluster-dns",
    "cluster-domain",
    "resolv-conf",
    "rotate-certificates",
    "cert-dir",
    "runtime-cgroups",
    "kubelet-cgroups",
    "runtime-request-timeout",
    "feature-gates",
    "anonymous-auth",
    "authorization-mode",
    "client-ca-file",
    "read-only-port",
    "address",
    "port",
    "healthz-port",
    "healthz-bind-address",
    "max-pods",
    "eviction-hard",
    "serialize-image-pulls",
    "tls-cert-file",
    "tls-private-key-file",
    "provider-id",
    "cloud-provider",
    "logging-format",
    "v",
];

/// What the stand-in was asked to do.
#[derive(Debug, Clone)]
pub struct Config {
    pub manifest_dir: PathBuf,
    pub pod_log_dir: PathBuf,
    pub container_log_link_dir: PathBuf,
    pub root_dir: PathBuf,
    pub status_file: PathBuf,
    pub node_name: String,
    pub sync_frequency: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub stop_pods_on_exit: bool,
    /// Flags that were given but are ignored, with their values, for the start-up log.
    pub ignored: Vec<String>,
}

pub const ABOUT: &str =
    "kubelet STAND-IN (breakfix sandbox test/demo infrastructure, NOT the real kubelet): \
runs the static pods of --pod-manifest-path as host processes, with the kubelet's restart, \
crash-loop back-off and /var/log/pods behaviour.";

pub const VERSION: &str = concat!(
    "Kubernetes v1.33.0 (breakfix kubelet stand-in ",
    env!("CARGO_PKG_VERSION"),
    ", not the real kubelet)"
);

fn command() -> Command {
    let mut cmd = Command::new("kubelet")
        .about(ABOUT)
        .version(VERSION)
        .disable_version_flag(true)
        .arg(
            Arg::new("version")
                .long("version")
                .action(ArgAction::Version)
                .help("Print the version (says it is the stand-in) and exit"),
        )
        .arg(path_arg("pod-manifest-path", "/etc/kubernetes/manifests")
            .help("Directory of static pod manifests; every file not starting with '.' is read"))
        .arg(path_arg("pod-log-dir", "/var/log/pods")
            .help("Where container logs go: <dir>/<ns>_<pod>_<uid>/<container>/<restartCount>.log (CRI format)"))
        .arg(path_arg("container-log-link-dir", "/var/log/containers")
            .help("Stand-in: where the <pod>_<ns>_<container>-<id>.log symlinks go"))
        .arg(path_arg("root-dir", "/var/lib/kubelet")
            .help("Kubelet state; the stand-in keeps its per-container state in <root-dir>/standin-containers"))
        .arg(path_arg("status-file", "/var/lib/kubelet/standin-pods.json")
            .help("Stand-in: JSON status of the static pods, for the kube-apiserver stand-in"))
        .arg(Arg::new("node-name").long("node-name").value_name("NAME")
            .help("Node name (default: --hostname-override, else the host name)"))
        .arg(Arg::new("hostname-override").long("hostname-override").value_name("NAME")
            .help("Same as --node-name"))
        .arg(duration_arg("sync-frequency", "1s")
            .help("How often the manifests dir and containers are polled (the real kubelet uses inotify plus a 20s rescan)"))
        .arg(duration_arg("backoff-base", "10s")
            .help("TEST-ONLY: first crash-loop back-off (the kubelet's is 10s)"))
        .arg(duration_arg("backoff-max", "5m")
            .help("TEST-ONLY: back-off cap (the kubelet's is 5m)"))
        .arg(Arg::new("stop-pods-on-exit").long("stop-pods-on-exit").action(ArgAction::SetTrue)
            .help("Stand-in: on SIGTERM stop every static pod first (the real kubelet leaves them running, so does the stand-in by default)"));
    for name in IGNORED_FLAGS {
        let mut arg = Arg::new(*name)
            .long(*name)
            .num_args(0..=1)
            .action(ArgAction::Append)
            .hide(true);
        if *name == "v" {
            arg = arg.short('v');
        }
        cmd = cmd.arg(arg);
    }
    cmd.after_help(
        "Accepted and ignored (logged at start): --config, --kubeconfig, --bootstrap-kubeconfig, \
         --container-runtime-endpoint and other kubeadm kubelet flags.",
    )
}

fn path_arg(name: &'static str, default: &'static str) -> Arg {
    Arg::new(name)
        .long(name)
        .value_name("PATH")
        .default_value(default)
        .value_parser(clap::value_parser!(PathBuf))
}

fn duration_arg(name: &'static str, default: &'static str) -> Arg {
    Arg::new(name)
        .long(name)
        .value_name("DURATION")
        .default_value(default)
        .value_parser(parse_duration)
}

/// Go-style durations (`1s`, `200ms`, `1m30s`); a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Parses the process arguments; clap prints help/version/errors and exits itself.
pub fn parse() -> Config {
    from_matches(&command().get_matches())
}

fn from_matches(m: &ArgMatches) -> Config {
    let path = |name: &str| m.get_one::<PathBuf>(name).cloned().unwrap_or_default();
    let dur = |name: &str| m.get_one::<Duration>(name).copied().unwrap_or_default();
    let mut ignored = Vec::new();
    for name in IGNORED_FLAGS {
        if m.contains_id(name) && m.value_source(name).is_some() {
            let values: Vec<String> = m
                .get_many::<String>(name)
                .map(|v| v.cloned().collect())
                .unwrap_or_default();
            if values.is_empty() {
                ignored.push(format!("--{name}"));
            } else {
                for v in values {
                    ignored.push(format!("--{name}={v}"));
                }
            }
        }
    }
    let node_name = m
        .get_one::<String>("node-name")
        .or_else(|| m.get_one::<String>("hostname-override"))
        .cloned()
        .unwrap_or_else(host_name)
        .to_lowercase();
    Config {
        manifest_dir: path("pod-manifest-path"),
        pod_log_dir: path("pod-log-dir"),
        container_log_link_dir: path("container-log-link-dir"),
        root_dir: path("root-dir"),
        status_file: path("status-file"),
        node_name,
        sync_frequency: dur("sync-frequency").max(Duration::from_millis(10)),
        backoff_base: dur("backoff-base"),
        backoff_max: dur("backoff-max"),
        stop_pods_on_exit: m.get_flag("stop-pods-on-exit"),
        ignored,
    }
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Result<Config, String> {
        let m = command()
            .try_get_matches_from(args)
            .map_err(|e| e.to_string())?;
        Ok(from_matches(&m))
    }

    #[test]
    fn kubeadm_flags_are_accepted_and_ignored() -> Result<(), String> {
        let c = parse_args(&[
            "kubelet",
            "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
            "--kubeconfig",
            "/etc/kubernetes/kubelet.conf",
            "--config=/var/lib/kubelet/config.yaml",
            "--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock",
            "--fail-swap-on=false",
            "--v=2",
            "--node-name=ControlPlane",
            "--sync-frequency=200ms",
        ])?;
        assert_eq!(c.node_name, "controlplane");
        assert_eq!(c.sync_frequency, Duration::from_millis(200));
        assert_eq!(c.manifest_dir, PathBuf::from("/etc/kubernetes/manifests"));
        assert_eq!(c.backoff_base, Duration::from_secs(10));
        assert_eq!(c.backoff_max, Duration::from_secs(300));
        assert!(c
            .ignored
            .contains(&"--kubeconfig=/etc/kubernetes/kubelet.conf".to_string()));
        assert!(c.ignored.contains(&"--v=2".to_string()));
        assert_eq!(c.ignored.len(), 6);
        Ok(())
    }

    #[test]
    fn unknown_flags_fail_like_the_real_kubelet() {
        assert!(command()
            .try_get_matches_from(["kubelet", "--no-such-flag=1"])
            .is_err());
    }
}
