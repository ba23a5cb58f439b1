//! Manifests: what the stacked topology writes into the nodes. The static pods of the control
//! plane in kubeadm's shape (`/etc/kubernetes/manifests/etcd.yaml` and `kube-apiserver.yaml`),
//! the kubelet stand-in's systemd unit and KubeletConfiguration, and the node list the
//! kube-apiserver stand-in's controller reads (`/etc/kubernetes/breakfix-nodes.yaml`).
//!
//! The manifests are written as kubeadm v1.32 writes them (keys sorted, `command:` with one
//! flag per item in alphabetical order, probes, hostPath volumes), so a lab that edits
//! `etcd.yaml` on the sandbox edits the same lines as on a kubeadm node.

use std::net::Ipv4Addr;

use super::etcd_unit::{EtcdMember, CLIENT_PORT, DATA_DIR, METRICS_PORT, PKI_DIR};
use super::pki::APISERVER_PORT;
use super::NodeSpec;

/// The static pod directory (kubeadm's `staticPodPath`).
pub const MANIFESTS_DIR: &str = "/etc/kubernetes/manifests";
/// Where the kubelet stand-in is installed on every node.
pub const KUBELET_BIN: &str = "/usr/local/bin/kubelet";
/// Where the kube-apiserver stand-in is installed on the control plane.
pub const APISERVER_BIN: &str = "/usr/local/bin/kube-apiserver";
/// The node list the kube-apiserver stand-in's controller reads (its `--breakfix-nodes-file`
/// default).
pub const NODES_FILE: &str = "/etc/kubernetes/breakfix-nodes.yaml";
/// The kubelet stand-in's status file (read by the kube-apiserver stand-in).
pub const KUBELET_STATUS_FILE: &str = "/var/lib/kubelet/standin-pods.json";
/// Container logs of static pods.
pub const POD_LOG_DIR: &str = "/var/log/pods";
/// etcd's image as kubeadm v1.32 pins it (not pulled: the node's etcd binary runs).
pub const ETCD_IMAGE: &str = "registry.k8s.io/etcd:3.5.16-0";
/// kube-apiserver's image, the version the stand-in reports.
pub const APISERVER_IMAGE: &str = "registry.k8s.io/kube-apiserver:v1.32.4";
/// kubeadm's default service range.
pub const SERVICE_CIDR: &str = "10.96.0.0/12";

/// `/etc/kubernetes/manifests/etcd.yaml` for a single-member stacked etcd: kubeadm's Pod
/// around the same flags the external topology's unit uses ([`EtcdMember::flags`]).
pub fn etcd_manifest(member: &EtcdMember) -> String {
    let mut command = String::from("    - etcd\n");
    for f in member.flags() {
        command.push_str(&format!("    - {f}\n"));
    }
    format!(
        "apiVersion: v1\n\
kind: Pod\n\
metadata:\n\
\x20 annotations:\n\
\x20   kubeadm.kubernetes.io/etcd.advertise-client-urls: https://{ip}:{CLIENT_PORT}\n\
\x20 creationTimestamp: null\n\
\x20 labels:\n\
\x20   component: etcd\n\
\x20   tier: control-plane\n\
\x20 name: etcd\n\
\x20 namespace: kube-system\n\
spec:\n\
\x20 containers:\n\
\x20 - command:\n\
{command}\
\x20   image: {ETCD_IMAGE}\n\
\x20   imagePullPolicy: IfNotPresent\n\
\x20   livenessProbe:\n\
\x20     failureThreshold: 8\n\
\x20     httpGet:\n\
\x20       host: 127.0.0.1\n\
\x20       path: /health?exclude=NOSPACE&serializable=true\n\
\x20       port: {METRICS_PORT}\n\
\x20       scheme: HTTP\n\
\x20     initialDelaySeconds: 10\n\
\x20     periodSeconds: 10\n\
\x20     timeoutSeconds: 15\n\
\x20   name: etcd\n\
\x20   resources:\n\
\x20     requests:\n\
\x20       cpu: 100m\n\
\x20       memory: 100Mi\n\
\x20   startupProbe:\n\
\x20     failureThreshold: 24\n\
\x20     httpGet:\n\
\x20       host: 127.0.0.1\n\
\x20       path: /health?serializable=false\n\
\x20       port: {METRICS_PORT}\n\
\x20       scheme: HTTP\n\
\x20     initialDelaySeconds: 10\n\
\x20     periodSeconds: 10\n\
\x20     timeoutSeconds: 15\n\
\x20   volumeMounts:\n\
\x20   - mountPath: {DATA_DIR}\n\
\x20     name: etcd-data\n\
\x20   - mountPath: {PKI_DIR}\n\
\x20     name: etcd-certs\n\
\x20 hostNetwork: true\n\
\x20 priority: 2000001000\n\
\x20 priorityClassName: system-node-critical\n\
\x20 securityContext:\n\
\x20   seccompProfile:\n\
\x20     type: RuntimeDefault\n\
\x20 volumes:\n\
\x20 - hostPath:\n\
\x20     path: {PKI_DIR}\n\
\x20     type: DirectoryOrCreate\n\
\x20   name: etcd-certs\n\
\x20 - hostPath:\n\
\x20     path: {DATA_DIR}\n\
\x20     type: DirectoryOrCreate\n\
\x20   name: etcd-data\n\
status: {{}}\n",
        ip = member.ip,
    )
}

/// kube-apiserver's flags as kubeadm v1.32 writes them (alphabetical), every one of them
/// accepted by the stand-in.
pub fn apiserver_flags(ip: Ipv4Addr) -> Vec<String> {
    let k = "/etc/kubernetes/pki";
    vec![
        format!("--advertise-address={ip}"),
        "--allow-privileged=true".into(),
        "--authorization-mode=Node,RBAC".into(),
        format!("--client-ca-file={k}/ca.crt"),
        "--enable-admission-plugins=NodeRestriction".into(),
        "--enable-bootstrap-token-auth=true".into(),
        format!("--etcd-cafile={PKI_DIR}/ca.crt"),
        format!("--etcd-certfile={k}/apiserver-etcd-client.crt"),
        format!("--etcd-keyfile={k}/apiserver-etcd-client.key"),
        format!("--etcd-servers=https://127.0.0.1:{CLIENT_PORT}"),
        format!("--kubelet-client-certificate={k}/apiserver-kubelet-client.crt"),
        format!("--kubelet-client-key={k}/apiserver-kubelet-client.key"),
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname".into(),
        format!("--proxy-client-cert-file={k}/front-proxy-client.crt"),
        format!("--proxy-client-key-file={k}/front-proxy-client.key"),
        "--requestheader-allowed-names=front-proxy-client".into(),
        format!("--requestheader-client-ca-file={k}/front-proxy-ca.crt"),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
        "--requestheader-group-headers=X-Remote-Group".into(),
        "--requestheader-username-headers=X-Remote-User".into(),
        format!("--secure-port={APISERVER_PORT}"),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={k}/sa.pub"),
        format!("--service-account-signing-key-file={k}/sa.key"),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        format!("--tls-cert-file={k}/apiserver.crt"),
        format!("--tls-private-key-file={k}/apiserver.key"),
    ]
}

/// `/etc/kubernetes/manifests/kube-apiserver.yaml`: kubeadm's Pod running `kube-apiserver`
/// (here the stand-in installed as [`APISERVER_BIN`]) with kubeadm's flags and volumes.
pub fn apiserver_manifest(ip: Ipv4Addr) -> String {
    let mut command = String::from("    - kube-apiserver\n");
    for f in apiserver_flags(ip) {
        command.push_str(&format!("    - {f}\n"));
    }
    let volumes = [
        ("ca-certs", "/etc/ssl/certs"),
        ("etc-ca-certificates", "/etc/ca-certificates"),
        ("k8s-certs", "/etc/kubernetes/pki"),
        (
            "usr-local-share-ca-certificates",
            "/usr/local/share/ca-certificates",
        ),
        ("usr-share-ca-certificates", "/usr/share/ca-certificates"),
    ];
    let mut mounts = String::new();
    let mut vols = String::new();
    for (name, path) in volumes {
        mounts.push_str(&format!(
            "    - mountPath: {path}\n      name: {name}\n      readOnly: true\n"
        ));
        vols.push_str(&format!(
            "  - hostPath:\n      path: {path}\n      type: DirectoryOrCreate\n    name: {name}\n"
        ));
    }
    let probe = |path: &str| {
        format!(
            "      httpGet:\n        host: {ip}\n        path: {path}\n        port: {APISERVER_PORT}\n        scheme: HTTPS\n"
        )
    };
    format!(
        "apiVersion: v1\n\
kind: Pod\n\
metadata:\n\
\x20 annotations:\n\
\x20   kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: {ip}:{APISERVER_PORT}\n\
\x20 creationTimestamp: null\n\
\x20 labels:\n\
\x20   component: kube-apiserver\n\
\x20   tier: control-plane\n\
\x20 name: kube-apiserver\n\
\x20 namespace: kube-system\n\
spec:\n\
\x20 containers:\n\
\x20 - command:\n\
{command}\
\x20   image: {APISERVER_IMAGE}\n\
\x20   imagePullPolicy: IfNotPresent\n\
\x20   livenessProbe:\n\
\x20     failureThreshold: 8\n\
{livez}\
\x20     initialDelaySeconds: 10\n\
\x20     periodSeconds: 10\n\
\x20     timeoutSeconds: 15\n\
\x20   name: kube-apiserver\n\
\x20   readinessProbe:\n\
\x20     failureThreshold: 3\n\
{readyz}\
\x20     periodSeconds: 1\n\
\x20     timeoutSeconds: 15\n\
\x20   resources:\n\
\x20     requests:\n\
\x20       cpu: 250m\n\
\x20   startupProbe:\n\
\x20     failureThreshold: 24\n\
{livez}\
\x20     initialDelaySeconds: 10\n\
\x20     periodSeconds: 10\n\
\x20     timeoutSeconds: 15\n\
\x20   volumeMounts:\n\
{mounts}\
\x20 hostNetwork: true\n\
\x20 priority: 2000001000\n\
\x20 priorityClassName: system-node-critical\n\
\x20 securityContext:\n\
\x20   seccompProfile:\n\
\x20     type: RuntimeDefault\n\
\x20 volumes:\n\
{vols}\
status: {{}}\n",
        livez = probe("/livez"),
        readyz = probe("/readyz"),
    )
}

/// `/etc/systemd/system/kubelet.service`: the unit docs/standins.md gives for the kubelet
/// stand-in (`KillMode=process`: containers outlive the kubelet, as on a real node).
pub const KUBELET_UNIT: &str = "\
# breakfix sandbox: the kubelet STAND-IN (not the real kubelet; see docs/standins.md).
[Unit]
Description=kubelet STAND-IN (breakfix sandbox; runs the static pods of /etc/kubernetes/manifests)
Wants=network-online.target
After=network-online.target sandbox-network.service

[Service]
ExecStart=/usr/local/bin/kubelet --config=/var/lib/kubelet/config.yaml --kubeconfig=/etc/kubernetes/kubelet.conf --pod-manifest-path=/etc/kubernetes/manifests --node-name=%H
Restart=always
RestartSec=10
# Containers outlive the kubelet, as on a real node: stop only the stand-in's own process.
KillMode=process
StartLimitInterval=0

[Install]
WantedBy=multi-user.target
";

/// `/var/lib/kubelet/config.yaml`: kubeadm's KubeletConfiguration, trimmed to what a learner
/// looks up (`staticPodPath`). The stand-in does not read it (its `--pod-manifest-path` says
/// the same).
pub const KUBELET_CONFIG: &str = "\
# breakfix sandbox: the kubelet stand-in does not read this file; --pod-manifest-path in
# /etc/systemd/system/kubelet.service sets the same directory.
apiVersion: kubelet.config.k8s.io/v1beta1
authentication:
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
cgroupDriver: systemd
clusterDNS:
- 10.96.0.10
clusterDomain: cluster.local
kind: KubeletConfiguration
staticPodPath: /etc/kubernetes/manifests
";

/// `/etc/kubernetes/breakfix-nodes.yaml`: every node with its address and Kubernetes roles
/// (`control-plane` for the control plane, none for workers), for the kube-apiserver
/// stand-in's Node objects.
pub fn nodes_file(all: &[NodeSpec]) -> String {
    let mut s = String::from(
        "# breakfix sandbox: the nodes the kube-apiserver STAND-IN publishes as Node objects\n\
         # (its --breakfix-nodes-file; see docs/standins.md).\nnodes:\n",
    );
    for n in all {
        let roles = if n.is_control_plane() {
            "[control-plane]"
        } else {
            "[]"
        };
        s.push_str(&format!(
            "  - name: {}\n    address: {}\n    roles: {roles}\n",
            n.name, n.ip
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    fn member() -> EtcdMember {
        EtcdMember {
            name: "controlplane".into(),
            ip: Ipv4Addr::new(198, 18, 0, 11),
        }
    }

    #[test]
    fn etcd_manifest_is_kubeadms_pod() {
        let text = etcd_manifest(&member());
        let pod: Pod = serde_saphyr::from_str(&text).expect("a v1 Pod");
        assert_eq!(pod.metadata.name.as_deref(), Some("etcd"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("kube-system"));
        let labels = pod.metadata.labels.clone().expect("labels");
        assert_eq!(labels["component"], "etcd");
        assert_eq!(labels["tier"], "control-plane");
        let ann = pod.metadata.annotations.clone().expect("annotations");
        assert_eq!(
            ann["kubeadm.kubernetes.io/etcd.advertise-client-urls"],
            "https://198.18.0.11:2379"
        );
        let spec = pod.spec.expect("spec");
        assert_eq!(spec.host_network, Some(true));
        assert_eq!(
            spec.priority_class_name.as_deref(),
            Some("system-node-critical")
        );
        let c = &spec.containers[0];
        let cmd = c.command.clone().expect("command");
        assert_eq!(cmd[0], "etcd");
        let flags = &cmd[1..];
        let mut sorted = flags.to_vec();
        sorted.sort();
        assert_eq!(flags, sorted.as_slice(), "kubeadm sorts the flags");
        assert!(flags.contains(&"--data-dir=/var/lib/etcd".to_string()));
        assert!(flags.contains(
            &"--listen-client-urls=https://127.0.0.1:2379,https://198.18.0.11:2379".to_string()
        ));
        let live = c.liveness_probe.as_ref().expect("liveness");
        assert_eq!(
            live.http_get.as_ref().expect("httpGet").path.as_deref(),
            Some("/health?exclude=NOSPACE&serializable=true")
        );
        assert!(c.startup_probe.is_some());
        let vols = spec.volumes.expect("volumes");
        let hp = |name: &str| {
            vols.iter()
                .find(|v| v.name == name)
                .and_then(|v| v.host_path.clone())
                .expect(name)
        };
        assert_eq!(hp("etcd-data").path, "/var/lib/etcd");
        assert_eq!(hp("etcd-data").type_.as_deref(), Some("DirectoryOrCreate"));
        assert_eq!(hp("etcd-certs").path, "/etc/kubernetes/pki/etcd");
        let mounts = c.volume_mounts.clone().expect("mounts");
        assert!(mounts
            .iter()
            .any(|m| m.name == "etcd-data" && m.mount_path == "/var/lib/etcd"));
    }

    #[test]
    fn apiserver_manifest_is_kubeadms_pod() {
        let text = apiserver_manifest(Ipv4Addr::new(198, 18, 0, 11));
        let pod: Pod = serde_saphyr::from_str(&text).expect("a v1 Pod");
        assert_eq!(pod.metadata.name.as_deref(), Some("kube-apiserver"));
        let spec = pod.spec.expect("spec");
        let c = &spec.containers[0];
        let cmd = c.command.clone().expect("command");
        assert_eq!(cmd[0], "kube-apiserver");
        let flags = &cmd[1..];
        let mut sorted = flags.to_vec();
        sorted.sort();
        assert_eq!(flags, sorted.as_slice(), "kubeadm sorts the flags");
        for want in [
            "--advertise-address=198.18.0.11",
            "--etcd-servers=https://127.0.0.1:2379",
            "--etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt",
            "--etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt",
            "--secure-port=6443",
            "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
            "--service-cluster-ip-range=10.96.0.0/12",
            "--authorization-mode=Node,RBAC",
        ] {
            assert!(flags.contains(&want.to_string()), "missing {want}");
        }
        let vols = spec.volumes.expect("volumes");
        let names: Vec<&str> = vols.iter().map(|v| v.name.as_str()).collect();
        for want in ["ca-certs", "etc-ca-certificates", "k8s-certs"] {
            assert!(names.contains(&want), "volume {want}");
        }
        assert!(c.readiness_probe.is_some() && c.liveness_probe.is_some());
    }

    #[test]
    fn nodes_file_lists_roles() {
        let nodes = super::super::plan_nodes(2).expect("plan");
        let text = nodes_file(&nodes);
        assert!(text.contains(
            "  - name: controlplane\n    address: 198.18.0.11\n    roles: [control-plane]\n"
        ));
        assert!(text.contains("  - name: node01\n    address: 198.18.0.12\n    roles: []\n"));
    }
}
