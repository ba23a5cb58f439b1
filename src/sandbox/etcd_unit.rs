//! etcd unit: etcd's command line with kubeadm's flags, and the systemd unit
//! (`/etc/systemd/system/etcd.service`) that runs it in the external topology. The flag list
//! is shared with the stacked topology's static pod manifest (issue 4), which will wrap the
//! same flags in kubeadm's Pod shape.

use std::net::Ipv4Addr;

/// Where kubeadm keeps etcd's certificates on the node.
pub const PKI_DIR: &str = "/etc/kubernetes/pki/etcd";
/// etcd's data directory on the node (a loop-mounted ext4 disk in the sandbox).
pub const DATA_DIR: &str = "/var/lib/etcd";
/// Client port.
pub const CLIENT_PORT: u16 = 2379;
/// Peer port.
pub const PEER_PORT: u16 = 2380;
/// Plain-HTTP metrics/health port on 127.0.0.1.
pub const METRICS_PORT: u16 = 2381;

/// One etcd member's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdMember {
    /// Member name (the node's host name).
    pub name: String,
    /// Node address etcd listens and advertises on.
    pub ip: Ipv4Addr,
    /// Every member of the cluster as (name, address), this one included, in the order of
    /// `--initial-cluster`; empty means a single-member cluster of this member alone.
    pub cluster: Vec<(String, Ipv4Addr)>,
}

impl EtcdMember {
    /// `--initial-cluster`'s value: `name=https://ip:2380` per member, comma-separated.
    pub fn initial_cluster(&self) -> String {
        if self.cluster.is_empty() {
            return format!("{}=https://{}:{PEER_PORT}", self.name, self.ip);
        }
        self.cluster
            .iter()
            .map(|(n, ip)| format!("{n}=https://{ip}:{PEER_PORT}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// etcd's flags as kubeadm writes them (the order kubeadm uses, alphabetical). A member
    /// of a multi-member cluster also gets `--initial-cluster-state=new` and
    /// `--initial-cluster-token`, as etcd's clustering guide bootstraps a static cluster
    /// (<https://etcd.io/docs/v3.5/op-guide/clustering/#static>); a single member gets
    /// neither, like kubeadm's.
    pub fn flags(&self) -> Vec<String> {
        let ip = self.ip;
        let name = &self.name;
        let multi = self.cluster.len() > 1;
        let mut flags: Vec<String> = vec![
            format!("--advertise-client-urls=https://{ip}:{CLIENT_PORT}"),
            format!("--cert-file={PKI_DIR}/server.crt"),
            "--client-cert-auth=true".into(),
            format!("--data-dir={DATA_DIR}"),
            format!("--initial-advertise-peer-urls=https://{ip}:{PEER_PORT}"),
            format!("--initial-cluster={}", self.initial_cluster()),
            format!("--key-file={PKI_DIR}/server.key"),
            format!(
                "--listen-client-urls=https://127.0.0.1:{CLIENT_PORT},https://{ip}:{CLIENT_PORT}"
            ),
            format!("--listen-metrics-urls=http://127.0.0.1:{METRICS_PORT}"),
            format!("--listen-peer-urls=https://{ip}:{PEER_PORT}"),
            format!("--name={name}"),
            format!("--peer-cert-file={PKI_DIR}/peer.crt"),
            "--peer-client-cert-auth=true".into(),
            format!("--peer-key-file={PKI_DIR}/peer.key"),
            format!("--peer-trusted-ca-file={PKI_DIR}/ca.crt"),
            "--snapshot-count=10000".into(),
            format!("--trusted-ca-file={PKI_DIR}/ca.crt"),
        ];
        if multi {
            flags.push("--initial-cluster-state=new".into());
            flags.push("--initial-cluster-token=breakfix-sandbox".into());
            flags.sort();
        }
        flags
    }

    /// The systemd unit for the external topology: runs as root like kubeadm's static pod,
    /// `Type=notify` (etcd reports readiness), restarts after a crash like a kubelet would,
    /// but stays stopped after `systemctl stop etcd`.
    pub fn systemd_unit(&self) -> String {
        let mut exec = String::from("ExecStart=/usr/local/bin/etcd");
        for f in self.flags() {
            exec.push_str(" \\\n  ");
            exec.push_str(&f);
        }
        format!(
            "# etcd for the breakfix sandbox (external topology): kubeadm's flags, run by systemd.\n\
             # etcd is the one built from source at the pinned version (scripts/versions.env).\n\
             [Unit]\n\
             Description=etcd key-value store (control plane)\n\
             Documentation=https://etcd.io/docs/\n\
             After=network-online.target sandbox-network.service\n\
             Wants=network-online.target\n\
             \n\
             [Service]\n\
             Type=notify\n\
             User=root\n\
             {exec}\n\
             Restart=on-failure\n\
             RestartSec=5s\n\
             LimitNOFILE=65536\n\
             \n\
             [Install]\n\
             WantedBy=multi-user.target\n"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_carries_kubeadm_flags() {
        let m = EtcdMember {
            name: "controlplane".into(),
            ip: Ipv4Addr::new(198, 18, 0, 11),
            cluster: vec![],
        };
        let unit = m.systemd_unit();
        for want in [
            "--name=controlplane",
            "--data-dir=/var/lib/etcd",
            "--listen-client-urls=https://127.0.0.1:2379,https://198.18.0.11:2379",
            "--advertise-client-urls=https://198.18.0.11:2379",
            "--listen-peer-urls=https://198.18.0.11:2380",
            "--initial-advertise-peer-urls=https://198.18.0.11:2380",
            "--initial-cluster=controlplane=https://198.18.0.11:2380",
            "--listen-metrics-urls=http://127.0.0.1:2381",
            "--client-cert-auth=true",
            "--peer-client-cert-auth=true",
            "--cert-file=/etc/kubernetes/pki/etcd/server.crt",
            "--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
            "--snapshot-count=10000",
            "Type=notify",
        ] {
            assert!(unit.contains(want), "missing {want} in\n{unit}");
        }
        // Every flag line but the last ends with a continuation.
        assert!(unit.contains("ExecStart=/usr/local/bin/etcd \\\n  --advertise-client-urls"));
        assert!(!unit.contains("--initial-cluster-state"), "{unit}");
    }

    #[test]
    fn a_member_of_three_lists_every_peer_and_bootstraps_new() {
        let cluster: Vec<(String, Ipv4Addr)> = [
            ("controlplane", 11),
            ("controlplane02", 12),
            ("controlplane03", 13),
        ]
        .iter()
        .map(|(n, o)| (n.to_string(), Ipv4Addr::new(198, 18, 0, *o)))
        .collect();
        let m = EtcdMember {
            name: "controlplane02".into(),
            ip: Ipv4Addr::new(198, 18, 0, 12),
            cluster,
        };
        let flags = m.flags();
        assert!(flags.contains(&"--initial-cluster=controlplane=https://198.18.0.11:2380,controlplane02=https://198.18.0.12:2380,controlplane03=https://198.18.0.13:2380".to_string()), "{flags:?}");
        assert!(flags.contains(&"--initial-cluster-state=new".to_string()));
        assert!(flags.contains(&"--name=controlplane02".to_string()));
        assert!(flags.contains(&"--listen-peer-urls=https://198.18.0.12:2380".to_string()));
    }
}
