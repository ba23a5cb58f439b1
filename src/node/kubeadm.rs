//! kubeadm's paths on a node, named by faults, probes and snapshots alike (kubeadm docs,
//! "Implementation details": static Pod manifests in /etc/kubernetes/manifests).

/// Directory the kubelet watches for static Pod manifests (kubeadm's default).
pub const MANIFESTS_DIR: &str = "/etc/kubernetes/manifests";

/// Path of the manifest for `pod`: `/etc/kubernetes/manifests/<pod>.yaml`, or `pod` itself
/// when it is an absolute path.
pub fn manifest_path(pod: &str) -> String {
    if pod.starts_with('/') {
        pod.to_string()
    } else {
        format!("{MANIFESTS_DIR}/{pod}.yaml")
    }
}
