//! Command line: kube-apiserver's flags as kubeadm writes them (pflag syntax), the few the
//! stand-in honours, the rest accepted and ignored, anything else rejected like the real binary.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::util::parse_go_duration;

/// The version the stand-in reports (kubectl's dispatcher picks its client by `minor`).
pub const K8S_VERSION: &str = "v1.32.4";

/// Default node list written by the sandbox.
pub const DEFAULT_NODES_FILE: &str = "/etc/kubernetes/breakfix-nodes.yaml";
/// Default status file written by the kubelet stand-in.
pub const DEFAULT_PODS_FILE: &str = "/var/lib/kubelet/standin-pods.json";

/// Settings the stand-in runs with.
#[derive(Debug, Clone)]
pub struct Flags {
    /// `--advertise-address`: the address published in /api and the `kubernetes` Service.
    pub advertise_address: Option<IpAddr>,
    /// `--secure-port` (6443).
    pub secure_port: u16,
    /// `--bind-address` (0.0.0.0).
    pub bind_address: IpAddr,
    /// `--etcd-servers`, comma separated.
    pub etcd_servers: Vec<String>,
    /// `--etcd-cafile`.
    pub etcd_cafile: Option<PathBuf>,
    /// `--etcd-certfile`.
    pub etcd_certfile: Option<PathBuf>,
    /// `--etcd-keyfile`.
    pub etcd_keyfile: Option<PathBuf>,
    /// `--etcd-prefix` (/registry).
    pub etcd_prefix: String,
    /// `--tls-cert-file`.
    pub tls_cert_file: Option<PathBuf>,
    /// `--tls-private-key-file`.
    pub tls_private_key_file: Option<PathBuf>,
    /// `--client-ca-file`.
    pub client_ca_file: Option<PathBuf>,
    /// `--anonymous-auth` (true).
    pub anonymous_auth: bool,
    /// `--service-cluster-ip-range` (first range only).
    pub service_cluster_ip_range: String,
    /// `--request-timeout` (1m0s): upper bound of any request.
    pub request_timeout: Duration,
    /// `--breakfix-nodes-file`: the sandbox's node list (stand-in only).
    pub nodes_file: PathBuf,
    /// `--breakfix-pods-file`: the kubelet stand-in's status file (stand-in only).
    pub pods_file: PathBuf,
    /// `--breakfix-pod-logs-dir`: where the kubelet stand-in writes container logs.
    pub pod_logs_dir: PathBuf,
    /// `--breakfix-node-monitor-grace-period` (40s): how long the local kubelet may be
    /// gone before its node turns NotReady (the controller-manager's default).
    pub node_monitor_grace_period: Duration,
    /// `--breakfix-kubelet-comm` (kubelet): process name of the local kubelet (tests).
    pub kubelet_comm: String,
    /// `--breakfix-storage-timeout` (10s): how long a request waits for an unreachable etcd.
    pub storage_timeout: Duration,
}

impl Default for Flags {
    fn default() -> Self {
        Flags {
            advertise_address: None,
            secure_port: 6443,
            bind_address: IpAddr::from([0, 0, 0, 0]),
            etcd_servers: Vec::new(),
            etcd_cafile: None,
            etcd_certfile: None,
            etcd_keyfile: None,
            etcd_prefix: "/registry".into(),
            tls_cert_file: None,
            tls_private_key_file: None,
            client_ca_file: None,
            anonymous_auth: true,
            service_cluster_ip_range: "10.96.0.0/12".into(),
            request_timeout: Duration::from_secs(60),
            nodes_file: DEFAULT_NODES_FILE.into(),
            pods_file: DEFAULT_PODS_FILE.into(),
            pod_logs_dir: "/var/log/pods".into(),
            node_monitor_grace_period: Duration::from_secs(40),
            kubelet_comm: "kubelet".into(),
            storage_timeout: Duration::from_secs(10),
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    /// Serve with these flags.
    Run(Box<Flags>),
    /// `--help`.
    Help,
    /// `--version`.
    Version,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Value,
    Bool,
}

/// Flags the real kube-apiserver has that the stand-in accepts and ignores (kubeadm's set
/// plus a few a lab might add).
const IGNORED_VALUE: &[&str] = &[
    "authorization-mode",
    "enable-admission-plugins",
    "disable-admission-plugins",
    "kubelet-client-certificate",
    "kubelet-client-key",
    "kubelet-certificate-authority",
    "kubelet-preferred-address-types",
    "proxy-client-cert-file",
    "proxy-client-key-file",
    "requestheader-allowed-names",
    "requestheader-client-ca-file",
    "requestheader-extra-headers-prefix",
    "requestheader-group-headers",
    "requestheader-username-headers",
    "requestheader-uid-headers",
    "service-account-issuer",
    "service-account-key-file",
    "service-account-signing-key-file",
    "service-node-port-range",
    "feature-gates",
    "runtime-config",
    "audit-log-path",
    "audit-policy-file",
    "audit-log-maxage",
    "audit-log-maxbackup",
    "audit-log-maxsize",
    "etcd-compaction-interval",
    "etcd-healthcheck-timeout",
    "etcd-readiness-timeout",
    "storage-backend",
    "storage-media-type",
    "event-ttl",
    "max-requests-inflight",
    "max-mutating-requests-inflight",
    "default-not-ready-toleration-seconds",
    "default-unreachable-toleration-seconds",
    "encryption-provider-config",
    "tls-cipher-suites",
    "tls-min-version",
    "endpoint-reconciler-type",
    "apiserver-count",
    "token-auth-file",
    "v",
];

const IGNORED_BOOL: &[&str] = &[
    "allow-privileged",
    "enable-bootstrap-token-auth",
    "enable-aggregator-routing",
    "profiling",
];

const HONOURED_VALUE: &[&str] = &[
    "advertise-address",
    "secure-port",
    "bind-address",
    "etcd-servers",
    "etcd-cafile",
    "etcd-certfile",
    "etcd-keyfile",
    "etcd-prefix",
    "tls-cert-file",
    "tls-private-key-file",
    "client-ca-file",
    "service-cluster-ip-range",
    "request-timeout",
    "breakfix-nodes-file",
    "breakfix-pods-file",
    "breakfix-pod-logs-dir",
    "breakfix-node-monitor-grace-period",
    "breakfix-kubelet-comm",
    "breakfix-storage-timeout",
];

fn kind_of(name: &str) -> Option<Kind> {
    if HONOURED_VALUE.contains(&name) || IGNORED_VALUE.contains(&name) {
        Some(Kind::Value)
    } else if IGNORED_BOOL.contains(&name) || matches!(name, "anonymous-auth" | "help" | "version")
    {
        Some(Kind::Bool)
    } else {
        None
    }
}

/// Parses the arguments after the program name. `Err` carries the text to print after
/// `Error: ` (cobra's prefix), e.g. `unknown flag: --etcd-server`.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Parsed, String> {
    let mut flags = Flags::default();
    let mut help = false;
    let mut version = false;
    let mut positional = Vec::new();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        if arg == "--" {
            positional.extend(it.by_ref());
            break;
        }
        let (name, inline) = if let Some(long) = arg.strip_prefix("--") {
            match long.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (long.to_string(), None),
            }
        } else if let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            // pflag shorthands: -v (log level) and -h (help).
            let mut chars = short.chars();
            let c = chars.next().unwrap_or('-');
            let rest: String = chars.collect();
            match c {
                'h' if rest.is_empty() => ("help".to_string(), None),
                'v' => {
                    let v = rest.strip_prefix('=').unwrap_or(&rest).to_string();
                    ("v".to_string(), if v.is_empty() { None } else { Some(v) })
                }
                _ => return Err(format!("unknown shorthand flag: '{c}' in {arg}")),
            }
        } else {
            positional.push(arg);
            continue;
        };
        let Some(kind) = kind_of(&name) else {
            return Err(format!("unknown flag: --{name}"));
        };
        let value = match (kind, inline) {
            (_, Some(v)) => v,
            (Kind::Bool, None) => "true".to_string(),
            (Kind::Value, None) => match it.next() {
                Some(v) => v,
                None => return Err(format!("flag needs an argument: --{name}")),
            },
        };
        if kind == Kind::Bool {
            let b = parse_bool(&value)
                .ok_or_else(|| invalid(&value, &name, "strconv.ParseBool", "invalid syntax"))?;
            match name.as_str() {
                "help" => help = b,
                "version" => version = b,
                "anonymous-auth" => flags.anonymous_auth = b,
                _ => {}
            }
            continue;
        }
        set_value(&mut flags, &name, value)?;
    }
    if help {
        return Ok(Parsed::Help);
    }
    if version {
        return Ok(Parsed::Version);
    }
    if !positional.is_empty() {
        let quoted: Vec<String> = positional.iter().map(|p| format!("{p:?}")).collect();
        return Err(format!(
            "\"kube-apiserver\" does not take any arguments, got [{}]",
            quoted.join(" ")
        ));
    }
    Ok(Parsed::Run(Box::new(flags)))
}

fn set_value(flags: &mut Flags, name: &str, value: String) -> Result<(), String> {
    let path = |v: &str| Some(PathBuf::from(v)).filter(|p| !p.as_os_str().is_empty());
    match name {
        "advertise-address" => {
            flags.advertise_address = Some(
                value
                    .parse()
                    .map_err(|_| invalid(&value, name, "failed to parse IP", "invalid IP"))?,
            )
        }
        "bind-address" => {
            flags.bind_address = value
                .parse()
                .map_err(|_| invalid(&value, name, "failed to parse IP", "invalid IP"))?
        }
        "secure-port" => {
            flags.secure_port = value
                .parse()
                .map_err(|_| invalid(&value, name, "strconv.ParseInt", "invalid syntax"))?
        }
        "etcd-servers" => {
            flags.etcd_servers = value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        }
        "etcd-cafile" => flags.etcd_cafile = path(&value),
        "etcd-certfile" => flags.etcd_certfile = path(&value),
        "etcd-keyfile" => flags.etcd_keyfile = path(&value),
        "etcd-prefix" => flags.etcd_prefix = value,
        "tls-cert-file" => flags.tls_cert_file = path(&value),
        "tls-private-key-file" => flags.tls_private_key_file = path(&value),
        "client-ca-file" => flags.client_ca_file = path(&value),
        "service-cluster-ip-range" => {
            flags.service_cluster_ip_range = value
                .split(',')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        }
        "request-timeout" => {
            flags.request_timeout = parse_go_duration(&value)
                .ok_or_else(|| invalid(&value, name, "time.ParseDuration", "invalid duration"))?
        }
        "breakfix-nodes-file" => flags.nodes_file = PathBuf::from(value),
        "breakfix-pods-file" => flags.pods_file = PathBuf::from(value),
        "breakfix-pod-logs-dir" => flags.pod_logs_dir = PathBuf::from(value),
        "breakfix-kubelet-comm" => flags.kubelet_comm = value,
        "breakfix-node-monitor-grace-period" => {
            flags.node_monitor_grace_period = parse_go_duration(&value)
                .ok_or_else(|| invalid(&value, name, "time.ParseDuration", "invalid duration"))?
        }
        "breakfix-storage-timeout" => {
            flags.storage_timeout = parse_go_duration(&value)
                .ok_or_else(|| invalid(&value, name, "time.ParseDuration", "invalid duration"))?
        }
        _ => {} // accepted and ignored
    }
    Ok(())
}

fn invalid(value: &str, name: &str, func: &str, why: &str) -> String {
    format!("invalid argument {value:?} for \"--{name}\" flag: {func}: parsing {value:?}: {why}")
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

impl Flags {
    /// Checks what the server cannot run without (the real one's `Validate` errors).
    pub fn validate(&self) -> Result<(), String> {
        let mut errs = Vec::new();
        if self.etcd_servers.is_empty() {
            errs.push("--etcd-servers must be specified".to_string());
        }
        if self.secure_port == 0 {
            errs.push("--secure-port 0 must be between 1 and 65535, inclusive. It cannot be turned off with 0".to_string());
        }
        if self.tls_cert_file.is_none() || self.tls_private_key_file.is_none() {
            errs.push(
                "--tls-cert-file and --tls-private-key-file are required (this stand-in does not generate self-signed serving certificates)"
                    .to_string(),
            );
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(format!("[{}]", errs.join(", ")))
        }
    }
}

/// `--help` text.
pub fn help() -> String {
    format!(
        "kube-apiserver STAND-IN (breakfix {}): serves the subset of the Kubernetes API that breakfix labs
use (discovery, namespaces, nodes, pods, services, configmaps, secrets, deployments, replicasets),
stored as JSON in the real etcd. It is test/demo infrastructure, not the real kube-apiserver; it
reports version {K8S_VERSION} so kubectl behaves as against that release. No containers run.

Usage:
  kube-apiserver [flags]

Honoured flags:
      --advertise-address ip            address published to clients and in the kubernetes Service
      --bind-address ip                 listen address (default 0.0.0.0)
      --secure-port int                 HTTPS port (default 6443)
      --tls-cert-file string            serving certificate (PEM)
      --tls-private-key-file string     serving key (PEM)
      --client-ca-file string           CA that signs client certificates (e.g. admin.conf's)
      --anonymous-auth                  allow anonymous /livez /readyz /healthz /version (default true)
      --etcd-servers strings            etcd endpoints, comma separated (required)
      --etcd-cafile string              CA of the etcd server certificate
      --etcd-certfile string            client certificate for etcd
      --etcd-keyfile string             client key for etcd
      --etcd-prefix string              key prefix in etcd (default \"/registry\")
      --service-cluster-ip-range string range ClusterIPs come from (default 10.96.0.0/12)
      --request-timeout duration        upper bound of a request (default 1m0s)

Stand-in flags:
      --breakfix-nodes-file string      node list the controller keeps Node objects for
                                        (default {DEFAULT_NODES_FILE})
      --breakfix-pods-file string       kubelet stand-in status file for mirror pods
                                        (default {DEFAULT_PODS_FILE})
      --breakfix-pod-logs-dir string    container logs of static pods, for kubectl logs
                                        (default /var/log/pods)
      --breakfix-node-monitor-grace-period duration
                                        how long the local kubelet (a process named kubelet)
                                        may be gone before its node turns NotReady (default 40s)
      --breakfix-kubelet-comm string    process name looked for (default kubelet; for tests)
      --breakfix-storage-timeout duration
                                        how long a request waits for an unreachable etcd
                                        before answering 504 (default 10s)

Accepted and ignored (kubeadm writes them): {}
",
        env!("CARGO_PKG_VERSION"),
        IGNORED_VALUE
            .iter()
            .chain(IGNORED_BOOL)
            .map(|f| format!("--{f}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Parsed, String> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn kubeadm_flags_parse() {
        let r = p(&[
            "--advertise-address=198.18.0.10",
            "--allow-privileged=true",
            "--authorization-mode=Node,RBAC",
            "--etcd-servers=https://127.0.0.1:2379",
            "--secure-port",
            "6443",
            "--enable-bootstrap-token-auth",
            "-v=2",
        ]);
        match r {
            Ok(Parsed::Run(f)) => {
                assert_eq!(f.etcd_servers, vec!["https://127.0.0.1:2379"]);
                assert_eq!(f.secure_port, 6443);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_flags_are_rejected() {
        assert_eq!(
            p(&["--etcd-server=x"]).err().as_deref(),
            Some("unknown flag: --etcd-server")
        );
        assert_eq!(
            p(&["--insecure-port=8080"]).err().as_deref(),
            Some("unknown flag: --insecure-port")
        );
        assert_eq!(
            p(&["-etcd-servers=x"]).err().as_deref(),
            Some("unknown shorthand flag: 'e' in -etcd-servers=x")
        );
        assert_eq!(
            p(&["--secure-port"]).err().as_deref(),
            Some("flag needs an argument: --secure-port")
        );
    }
}
