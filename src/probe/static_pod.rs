//! `static_pod` probe: reads a static pod manifest the way the kubelet does; facts `exists`,
//! `flag` (a flag's value in the container's command), `host_path` (where a path inside the
//! container lands on the host through the pod's hostPath volumes).
//!
//! # Why `host_path`
//! A kubelet runs the container in its own filesystem: a path inside it reaches the node's
//! disk only through a `volumeMounts` entry of a `hostPath` volume. kubeadm's etcd runs with
//! `--data-dir=/var/lib/etcd` on the mount `etcd-data` (hostPath `/var/lib/etcd`); restoring
//! into a new directory means repointing that hostPath (Kubernetes docs, "Operating etcd
//! clusters for Kubernetes", restoring an etcd cluster), or changing `--data-dir`, the
//! mountPath and the hostPath together. Changing `--data-dir` alone points etcd at the
//! container's own, empty filesystem. `host_path` is the answer to "which directory of the
//! node holds this path": the hostPath of the longest mountPath that contains it, joined with
//! the rest of the path, or `""` when no hostPath volume covers it.
//!
//! # Caveats
//! Only `hostPath` volumes are resolved (what static pods use); `subPath` is not.

use serde_json::Value;

use super::{Facts, ProbeCtx, ProbeKind};
use crate::error::Result;
use crate::node::kubeadm::manifest_path;
use crate::template::Renderer;

crate::probe_spec! {
    /// ```yaml
    /// - kind: static_pod
    ///   name: etcd-data-restored
    ///   pod: etcd
    ///   flag: --data-dir
    ///   expect: { host_path: /var/lib/etcd-from-backup }
    /// ```
    pub struct StaticPodProbe {
        /// Static pod: a file name under /etc/kubernetes/manifests without `.yaml` (`etcd`,
        /// `kube-apiserver`) or an absolute path.
        pub pod: String,
        /// Container name (default: the first container).
        #[serde(default)]
        pub container: Option<String>,
        /// Flag whose value the facts `flag` and `host_path` describe, e.g. `--data-dir`.
        #[serde(default)]
        pub flag: Option<String>,
        /// Expectations.
        pub expect: StaticPodExpect,
    }
}

crate::expect_block! {
    /// Facts of a `static_pod` probe.
    pub struct StaticPodExpect {
        /// The manifest exists (bool).
        exists,
        /// The value of `flag` in the container's command/args (`--flag=value` or `--flag
        /// value`; the last occurrence wins); `""` when the flag is absent.
        flag,
        /// Where `flag`'s value (a path inside the container) lives on the node; `""` when no
        /// hostPath volume covers it.
        host_path,
    }
}

/// The value of `flag` in a container's command followed by its args, however it is spelled
/// (see [`crate::node::flags`]: `--flag=value`, `--flag value`, the last occurrence wins).
pub fn flag_value(container: &Value, flag: &str) -> Option<String> {
    let items: Vec<&str> = ["command", "args"]
        .iter()
        .filter_map(|k| container.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    crate::node::flags::flag_value(&items, flag)
}

/// The host directory holding `path` (a path inside `container` of `pod`): see the module docs.
pub fn host_path(pod: &Value, container: &Value, path: &str) -> String {
    let volumes = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mounts = container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let path = path.trim_end_matches('/');
    let mut best: Option<(usize, String)> = None;
    for m in mounts {
        let (Some(mp), Some(name)) = (
            m.get("mountPath").and_then(Value::as_str),
            m.get("name").and_then(Value::as_str),
        ) else {
            continue;
        };
        let mp = mp.trim_end_matches('/');
        let rest = if path == mp {
            ""
        } else if let Some(r) = path.strip_prefix(mp).filter(|r| r.starts_with('/')) {
            r
        } else {
            continue;
        };
        let host = volumes
            .iter()
            .find(|v| v.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|v| v.pointer("/hostPath/path"))
            .and_then(Value::as_str);
        if let Some(h) = host {
            if best.as_ref().is_none_or(|(len, _)| mp.len() > *len) {
                best = Some((mp.len(), format!("{}{rest}", h.trim_end_matches('/'))));
            }
        }
    }
    best.map(|(_, h)| h).unwrap_or_default()
}

impl ProbeKind for StaticPodProbe {
    type Expect = StaticPodExpect;

    fn expect(&self) -> &StaticPodExpect {
        &self.expect
    }

    fn plan_target(&self) -> (&'static str, String) {
        let x = self;
        (
            "static pod",
            format!(
                "{}{}{}",
                x.pod,
                x.container
                    .as_deref()
                    .map(|c| format!(", container {c}"))
                    .unwrap_or_default(),
                x.flag
                    .as_deref()
                    .map(|f| format!(", flag {f}"))
                    .unwrap_or_default()
            ),
        )
    }

    /// Reads and parses the manifest once.
    async fn gather(&self, ctx: &ProbeCtx<'_>, _wanted: &[&str]) -> Result<Facts> {
        let path = manifest_path(&self.pod);
        let mut f = Facts::default();
        let Some(bytes) = ctx.session.transport.read_file(&path, ctx.timeout).await? else {
            f.set("exists", false);
            f.note = Some(format!("{path} does not exist"));
            return Ok(f);
        };
        f.set("exists", true);
        let text = String::from_utf8_lossy(&bytes);
        let pod: Value = match serde_saphyr::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                f.note = Some(format!("{path} is not valid YAML: {e}"));
                return Ok(f);
            }
        };
        let containers = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let container = match &self.container {
            None => containers.first(),
            Some(n) => containers
                .iter()
                .find(|c| c.get("name").and_then(Value::as_str) == Some(n.as_str())),
        };
        let Some(container) = container else {
            f.note = Some(format!(
                "{path}: no container {}",
                self.container.as_deref().unwrap_or("at all")
            ));
            return Ok(f);
        };
        if let Some(flag) = &self.flag {
            let value = flag_value(container, flag).unwrap_or_default();
            f.set("host_path", host_path(&pod, container, &value));
            f.set("flag", value);
        }
        Ok(f)
    }

    /// Renders `pod`, `container` and `flag`.
    fn render(&self, r: &Renderer) -> Result<Self> {
        let mut p = self.clone();
        p.expect = self.expect.render(r)?;
        p.pod = r.text(&self.pod)?;
        p.container = self.container.as_deref().map(|c| r.text(c)).transpose()?;
        p.flag = self.flag.as_deref().map(|c| r.text(c)).transpose()?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::{flag_value, host_path};
    use serde_json::Value;

    const ETCD: &str = r#"
apiVersion: v1
kind: Pod
metadata: { name: etcd, namespace: kube-system }
spec:
  containers:
  - name: etcd
    command:
    - etcd
    - --data-dir=/var/lib/etcd
    - --name
    - controlplane
    volumeMounts:
    - mountPath: /var/lib/etcd
      name: etcd-data
    - mountPath: /etc/kubernetes/pki/etcd
      name: etcd-certs
  volumes:
  - hostPath: { path: /var/lib/etcd-from-backup, type: DirectoryOrCreate }
    name: etcd-data
  - hostPath: { path: /etc/kubernetes/pki/etcd, type: DirectoryOrCreate }
    name: etcd-certs
"#;

    fn pod() -> (Value, Value) {
        let pod: Value = serde_saphyr::from_str(ETCD).expect("yaml");
        let c = pod
            .pointer("/spec/containers/0")
            .cloned()
            .expect("container");
        (pod, c)
    }

    #[test]
    fn flag_values_in_both_spellings() {
        let (_, c) = pod();
        assert_eq!(
            flag_value(&c, "--data-dir").as_deref(),
            Some("/var/lib/etcd")
        );
        assert_eq!(flag_value(&c, "--name").as_deref(), Some("controlplane"));
        assert_eq!(flag_value(&c, "--data"), None);
    }

    #[test]
    fn container_paths_resolve_through_host_path_volumes() {
        let (p, c) = pod();
        assert_eq!(
            host_path(&p, &c, "/var/lib/etcd"),
            "/var/lib/etcd-from-backup"
        );
        assert_eq!(
            host_path(&p, &c, "/var/lib/etcd/member"),
            "/var/lib/etcd-from-backup/member"
        );
        assert_eq!(
            host_path(&p, &c, "/etc/kubernetes/pki/etcd/ca.crt"),
            "/etc/kubernetes/pki/etcd/ca.crt"
        );
        // Not under a mount: the container's own filesystem.
        assert_eq!(host_path(&p, &c, "/var/lib/etcd-from-backup"), "");
        assert_eq!(host_path(&p, &c, "/var/lib/etcdx"), "");
    }
}
