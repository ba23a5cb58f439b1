//! Inventory: the cluster the engine talks to, loaded from a YAML file (see docs/inventory.md).
//!
//! The engine only ever sees an [`Inventory`]; whether it was written by `breakfix sandbox up`
//! or by hand for a real kubeadm cluster makes no difference.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Default SSH port.
fn default_port() -> u16 {
    22
}

fn default_user() -> String {
    "root".to_string()
}

/// How the engine reaches a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TransportKind {
    /// One russh connection per node, host key verified against `known_hosts`.
    #[default]
    Ssh,
    /// breakfix runs on the node itself (Killercoda's case): commands run through `sh -c`.
    Local,
}

/// Where etcd runs on the control plane.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Topology {
    /// etcd is a systemd unit (`etcd.service`) on the control plane.
    #[default]
    External,
    /// etcd is a static pod (`/etc/kubernetes/manifests/etcd.yaml`), kubeadm's default.
    Stacked,
}

impl Topology {
    /// The name as written in files and flags: `external` or `stacked`.
    pub fn name(self) -> &'static str {
        match self {
            Topology::External => "external",
            Topology::Stacked => "stacked",
        }
    }
}

impl std::fmt::Display for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Host name as the cluster knows it, e.g. `controlplane`.
    pub name: String,
    /// Address the engine connects to (IP or DNS name), also the node's address in templates
    /// (`{{ node.address }}`, e.g. etcd's peer URL). On a `local` node, `auto` is replaced at
    /// load time by the host's own address ([`crate::host_address`]: the default route's
    /// interface, as kubeadm picks its advertise address): what an exported Killercoda
    /// inventory says, since the learner's node gets its address only when it starts.
    pub address: String,
    /// SSH port (default 22).
    #[serde(default = "default_port")]
    pub port: u16,
    /// SSH user (default `root`).
    #[serde(default = "default_user")]
    pub user: String,
    /// Private key file (OpenSSH format). Relative paths are relative to the inventory file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,
    /// known_hosts file holding this node's host key. Relative paths are relative to the
    /// inventory file. Required for `ssh` transport: host keys are always verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<PathBuf>,
    /// Roles the scenario's targets select on, e.g. `control-plane`, `etcd`, `worker`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// `ssh` (default) or `local`.
    #[serde(default)]
    pub transport: TransportKind,
}

/// etcd client settings shared by the cluster. Paths are paths ON THE NODE (read over the
/// transport when a probe needs them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdInfo {
    /// Client URLs as seen from the etcd node, e.g. `https://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// CA bundle that signed etcd's serving certificate.
    pub ca_file: String,
    /// Client certificate accepted by etcd (`--client-cert-auth`).
    pub cert_file: String,
    /// Key of `cert_file`.
    pub key_file: String,
}

/// Cluster-wide facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Free-form name, shown in reports.
    pub name: String,
    /// `external` or `stacked`.
    #[serde(default)]
    pub topology: Topology,
    /// etcd client endpoints and TLS file paths on the node.
    pub etcd: EtcdInfo,
    /// kubeconfig path on the control-plane node (kubeadm: `/etc/kubernetes/admin.conf`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
}

/// The whole inventory file.
///
/// ```yaml
/// apiVersion: breakfix/v1
/// kind: Inventory
/// cluster: { name: sandbox, topology: external, etcd: { endpoints: [https://127.0.0.1:2379], ca_file: ..., cert_file: ..., key_file: ... } }
/// nodes:
///   - { name: controlplane, address: 198.18.0.11, identity_file: ssh/id_ed25519, known_hosts: ssh/known_hosts, roles: [control-plane, etcd] }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Inventory {
    /// Always `breakfix/v1`.
    pub api_version: String,
    /// Always `Inventory`.
    pub kind: String,
    /// Cluster-wide facts.
    pub cluster: Cluster,
    /// Nodes, in the order reports list them.
    pub nodes: Vec<Node>,
}

impl Inventory {
    /// Reads and checks an inventory file. Relative `identity_file`/`known_hosts` paths are
    /// resolved against the file's directory.
    ///
    /// Errors: unreadable file, YAML errors (with line and column), wrong `apiVersion`/`kind`,
    /// duplicate node names, an `ssh` node without `known_hosts`, `address: auto` on an `ssh`
    /// node or on a host without a global IPv4 address.
    pub fn load(path: &Path) -> Result<Inventory> {
        Self::parse(path, &Self::read(path)?)
    }

    fn read(path: &Path) -> Result<String> {
        std::fs::read_to_string(path).map_err(|e| Error::Io {
            context: format!("reading inventory {}", path.display()),
            source: e,
        })
    }

    /// [`Self::load`] of `text` as if read from `path` (relative paths resolve beside it).
    ///
    /// Errors: as [`Self::load`], but for reading the file.
    pub fn parse(path: &Path, text: &str) -> Result<Inventory> {
        let mut inv = Self::parse_unresolved(path, text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for n in &mut inv.nodes {
            if n.address == crate::host_address::AUTO {
                let ip = crate::host_address::host_ipv4().map_err(|m| Error::Config {
                    file: path.display().to_string(),
                    message: format!("node `{}`: address: auto: {m}", n.name),
                })?;
                n.address = ip.to_string();
            }
            if let Some(p) = &n.identity_file {
                n.identity_file = Some(base.join(p));
            }
            if let Some(p) = &n.known_hosts {
                n.known_hosts = Some(base.join(p));
            }
        }
        Ok(inv)
    }

    /// Reads and checks an inventory file as [`Self::load`] does, but leaves `address: auto`
    /// as written: for checking an inventory meant for another machine (the Killercoda
    /// export's) on this one, whose own address is beside the point.
    ///
    /// Errors: as [`Self::load`], but for resolving `auto`.
    pub fn check_file(path: &Path) -> Result<()> {
        Self::parse_unresolved(path, &Self::read(path)?).map(|_| ())
    }

    fn parse_unresolved(path: &Path, text: &str) -> Result<Inventory> {
        let inv: Inventory = serde_saphyr::from_str(text).map_err(|e| Error::Config {
            file: path.display().to_string(),
            message: e.to_string(),
        })?;
        inv.check(&path.display().to_string())?;
        Ok(inv)
    }

    fn check(&self, file: &str) -> Result<()> {
        let bad = |message: String| Error::Config {
            file: file.to_string(),
            message,
        };
        if self.api_version != "breakfix/v1" || self.kind != "Inventory" {
            return Err(bad(format!(
                "expected apiVersion: breakfix/v1 and kind: Inventory, found {}/{}",
                self.api_version, self.kind
            )));
        }
        if self.nodes.is_empty() {
            return Err(bad("the inventory lists no nodes".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for n in &self.nodes {
            if !seen.insert(n.name.as_str()) {
                return Err(bad(format!("node `{}` is listed twice", n.name)));
            }
            if n.transport == TransportKind::Ssh && n.address == crate::host_address::AUTO {
                return Err(bad(format!(
                    "node `{}` uses ssh and has address: auto; `auto` (this host's own address) \
                     is for `transport: local` nodes only: give the address to connect to",
                    n.name
                )));
            }
            if n.transport == TransportKind::Ssh && n.known_hosts.is_none() {
                return Err(bad(format!(
                    "node `{}` uses ssh but has no known_hosts: host keys are always verified",
                    n.name
                )));
            }
        }
        Ok(())
    }

    /// Writes the inventory as YAML (used by `breakfix sandbox up`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_saphyr::to_string(self).map_err(|e| Error::Config {
            file: path.display().to_string(),
            message: e.to_string(),
        })?;
        let header = "# breakfix inventory (docs/inventory.md)\n";
        std::fs::write(path, format!("{header}{text}")).map_err(|e| Error::Io {
            context: format!("writing inventory {}", path.display()),
            source: e,
        })
    }

    /// Nodes that carry `role`, in inventory order.
    pub fn nodes_with_role<'a>(&'a self, role: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes
            .iter()
            .filter(move |n| n.roles.iter().any(|r| r == role))
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(node: &str) -> String {
        format!(
            "apiVersion: breakfix/v1\nkind: Inventory\ncluster:\n  name: c\n  etcd:\n    endpoints: [https://127.0.0.1:2379]\n    ca_file: ca\n    cert_file: c\n    key_file: k\nnodes:\n- {node}\n"
        )
    }

    #[test]
    fn auto_on_a_local_node_becomes_this_hosts_address() {
        let text = inventory("{ name: controlplane, address: auto, transport: local }");
        match crate::host_address::host_ipv4() {
            Ok(ip) => {
                let inv = Inventory::parse(Path::new("i.yaml"), &text).expect("valid");
                assert_eq!(inv.nodes[0].address, ip.to_string());
                assert_ne!(inv.nodes[0].address, "auto");
            }
            Err(why) => {
                let err = Inventory::parse(Path::new("i.yaml"), &text).expect_err("no address");
                assert!(err.to_string().contains(&why), "{err}");
            }
        }
    }

    #[test]
    fn auto_on_an_ssh_node_is_refused_with_the_reason() {
        let text = inventory("{ name: cp, address: auto, known_hosts: kh }");
        let err = Inventory::parse(Path::new("i.yaml"), &text).expect_err("refused");
        let msg = err.to_string();
        assert!(msg.contains("i.yaml"), "{msg}");
        assert!(
            msg.contains("node `cp` uses ssh and has address: auto"),
            "{msg}"
        );
    }

    #[test]
    fn a_written_address_is_kept() {
        let text = inventory("{ name: cp, address: 198.18.0.11, transport: local }");
        let inv = Inventory::parse(Path::new("i.yaml"), &text).expect("valid");
        assert_eq!(inv.nodes[0].address, "198.18.0.11");
    }
}
