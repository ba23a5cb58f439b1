//! Static pod manifests: reads the manifests dir like the kubelet's file source (every file not
//! starting with '.'), parses each as a k8s-openapi `Pod`, and turns it into what the stand-in runs.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A valid static pod, ready to run.
#[derive(Debug, Clone)]
pub struct StaticPod {
    pub path: PathBuf,
    /// `<metadata.name>-<node-name>`, as the kubelet names static pods.
    pub name: String,
    pub namespace: String,
    /// Stable hash of node name, manifest path and the decoded pod (comments and formatting
    /// do not change it, as with the kubelet).
    pub uid: String,
    pub grace: Duration,
    pub restart_policy: RestartPolicy,
    pub containers: Vec<ContainerSpec>,
    pub volumes: Vec<HostPathVolume>,
    /// Parts of the manifest the stand-in does not implement (logged when the pod is added).
    pub unsupported: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

/// A hostPath volume (`type` as in the manifest, "" when unset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPathVolume {
    pub name: String,
    pub path: String,
    pub kind: String,
}

/// One container, resolved to what the shim executes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// `command` + `args` with `$(VAR)` references expanded; empty if the manifest has no command.
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub mounts: Vec<Mount>,
}

/// A volumeMount of a hostPath volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub volume: String,
    pub host_path: String,
    pub container_path: String,
    pub read_only: bool,
}

/// A file that is not a valid pod; the kubelet logs it and leaves it out of the desired pods.
#[derive(Debug, Clone)]
pub struct Invalid {
    pub path: PathBuf,
    pub content_hash: String,
    pub error: String,
}

/// The result of one read of the manifests dir.
#[derive(Debug, Default)]
pub struct Scan {
    pub pods: Vec<StaticPod>,
    pub invalid: Vec<Invalid>,
}

/// Reads every manifest in `dir` (sorted by file name, like the kubelet). A missing directory
/// is an empty set (the kubelet logs and waits for it too).
pub fn scan(dir: &Path, node: &str) -> Scan {
    let mut out = Scan::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let mut names = HashSet::new();
    for path in paths {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let content_hash = hex::encode(Sha256::digest(&bytes));
        match load(&path, &bytes, node) {
            Ok(pod) => {
                let full = format!("{}/{}", pod.namespace, pod.name);
                if names.insert(full.clone()) {
                    out.pods.push(pod);
                } else {
                    out.invalid.push(Invalid {
                        path,
                        content_hash,
                        error: format!("duplicate pod name {full:?}: another manifest already defines it, ignoring this one"),
                    });
                }
            }
            Err(error) => out.invalid.push(Invalid {
                path,
                content_hash,
                error,
            }),
        }
    }
    out
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    api_version: Option<String>,
    kind: Option<String>,
}

fn decode<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| e.to_string());
    }
    let opts = serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
    };
    serde_saphyr::from_str_with_options(text, opts).map_err(|e| {
        let msg = e.without_snippet().to_string();
        match e.location() {
            Some(loc) if !msg.contains("line") => {
                format!("line {} column {}: {msg}", loc.line(), loc.column())
            }
            _ => msg,
        }
    })
}

/// Parses and validates one manifest.
pub fn load(path: &Path, bytes: &[u8], node: &str) -> Result<StaticPod, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    if text.trim().is_empty() {
        return Err("file is empty".to_string());
    }
    let meta: TypeMeta = decode(text)?;
    match (meta.api_version.as_deref(), meta.kind.as_deref()) {
        (_, None) => return Err("Object 'Kind' is missing".to_string()),
        (None, _) => return Err("Object 'apiVersion' is missing".to_string()),
        (Some("v1"), Some("Pod")) => {}
        (Some(v), Some(k)) => {
            return Err(format!(
                "invalid pod: apiVersion {v:?} kind {k:?}, want v1 Pod"
            ))
        }
    }
    let pod: Pod = decode(text)?;
    from_pod(path, &pod, node)
}

fn from_pod(path: &Path, pod: &Pod, node: &str) -> Result<StaticPod, String> {
    let base_name = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or("invalid pod: metadata.name: Required value")?;
    let spec = pod
        .spec
        .as_ref()
        .ok_or("invalid pod: spec: Required value")?;
    if spec.containers.is_empty() {
        return Err("invalid pod: spec.containers: Required value".to_string());
    }
    let mut seen = HashSet::new();
    for c in &spec.containers {
        if c.name.is_empty() {
            return Err("invalid pod: spec.containers[].name: Required value".to_string());
        }
        if !seen.insert(c.name.as_str()) {
            return Err(format!(
                "invalid pod: spec.containers[].name: Duplicate value: {:?}",
                c.name
            ));
        }
    }
    let name = format!("{base_name}-{node}");
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string());
    let canonical = serde_json::to_vec(pod).map_err(|e| e.to_string())?;
    let mut h = Sha256::new();
    h.update(format!("host:{node}").as_bytes());
    h.update(format!("file:{}", path.display()).as_bytes());
    h.update(&canonical);
    let uid = hex::encode(h.finalize())[..32].to_string();

    let restart_policy = match spec.restart_policy.as_deref() {
        None | Some("Always") => RestartPolicy::Always,
        Some("OnFailure") => RestartPolicy::OnFailure,
        Some("Never") => RestartPolicy::Never,
        Some(other) => {
            return Err(format!(
                "invalid pod: spec.restartPolicy: Unsupported value: {other:?}"
            ))
        }
    };
    let grace = spec.termination_grace_period_seconds.unwrap_or(30).max(0);

    let mut unsupported = Vec::new();
    let mut volumes = Vec::new();
    for v in spec.volumes.iter().flatten() {
        match &v.host_path {
            Some(hp) => volumes.push(HostPathVolume {
                name: v.name.clone(),
                path: hp.path.clone(),
                kind: hp.type_.clone().unwrap_or_default(),
            }),
            None => unsupported.push(format!("volume {:?} is not a hostPath volume", v.name)),
        }
    }
    if spec.init_containers.as_ref().is_some_and(|v| !v.is_empty()) {
        unsupported.push("initContainers are not run".to_string());
    }
    if spec.host_network != Some(true) {
        unsupported.push(
            "hostNetwork is not true: the stand-in runs every pod on the host network".to_string(),
        );
    }
    let fields = FieldValues {
        name: &name,
        namespace: &namespace,
        uid: &uid,
        node,
    };
    let containers = spec
        .containers
        .iter()
        .map(|c| container_spec(c, &volumes, &fields, &mut unsupported))
        .collect();
    Ok(StaticPod {
        path: path.to_path_buf(),
        name,
        namespace,
        uid,
        grace: Duration::from_secs(grace as u64),
        restart_policy,
        containers,
        volumes,
        unsupported,
    })
}

/// Values the downward API (`fieldRef`) can give a static pod's env.
struct FieldValues<'a> {
    name: &'a str,
    namespace: &'a str,
    uid: &'a str,
    node: &'a str,
}

fn container_spec(
    c: &Container,
    volumes: &[HostPathVolume],
    fields: &FieldValues,
    unsupported: &mut Vec<String>,
) -> ContainerSpec {
    let mut env: Vec<(String, String)> = Vec::new();
    for var in c.env.iter().flatten() {
        match env_value(var, fields, &env) {
            Some(v) => env.push((var.name.clone(), v)),
            None => unsupported.push(format!(
                "container {:?}: env {:?} uses a valueFrom source the stand-in cannot resolve",
                c.name, var.name
            )),
        }
    }
    if c.env_from.as_ref().is_some_and(|v| !v.is_empty()) {
        unsupported.push(format!("container {:?}: envFrom is ignored", c.name));
    }
    let vars: BTreeMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let argv = match &c.command {
        Some(cmd) if !cmd.is_empty() => cmd
            .iter()
            .chain(c.args.iter().flatten())
            .map(|a| expand(a, &vars))
            .collect(),
        _ => Vec::new(),
    };
    let mut mounts = Vec::new();
    for vm in c.volume_mounts.iter().flatten() {
        if vm.sub_path.as_ref().is_some_and(|s| !s.is_empty()) {
            unsupported.push(format!(
                "container {:?}: subPath of {:?} is ignored",
                c.name, vm.name
            ));
        }
        match volumes.iter().find(|v| v.name == vm.name) {
            Some(v) => mounts.push(Mount {
                volume: v.name.clone(),
                host_path: v.path.clone(),
                container_path: vm.mount_path.clone(),
                read_only: vm.read_only.unwrap_or(false),
            }),
            None => unsupported.push(format!(
                "container {:?}: volumeMount {:?} has no hostPath volume",
                c.name, vm.name
            )),
        }
    }
    ContainerSpec {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        argv,
        env,
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        mounts,
    }
}

fn env_value(var: &EnvVar, fields: &FieldValues, earlier: &[(String, String)]) -> Option<String> {
    if let Some(src) = &var.value_from {
        let path = src.field_ref.as_ref()?.field_path.as_str();
        return match path {
            "metadata.name" => Some(fields.name.to_string()),
            "metadata.namespace" => Some(fields.namespace.to_string()),
            "metadata.uid" => Some(fields.uid.to_string()),
            "spec.nodeName" => Some(fields.node.to_string()),
            _ => None,
        };
    }
    let vars: BTreeMap<&str, &str> = earlier
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    Some(expand(var.value.as_deref().unwrap_or(""), &vars))
}

/// Kubernetes' `$(VAR)` expansion: known variables are replaced, unknown references are kept
/// as written, `$$` is an escaped `$`.
pub fn expand(input: &str, vars: &BTreeMap<&str, &str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETCD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
  annotations:
    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://198.18.0.10:2379
spec:
  hostNetwork: true
  containers:
  - name: etcd
    image: registry.k8s.io/etcd:3.5.15-0
    command:
    - etcd
    - --data-dir=/var/lib/etcd
    - --name=$(NODE)
    env:
    - name: NODE
      valueFrom:
        fieldRef:
          fieldPath: spec.nodeName
    volumeMounts:
    - mountPath: /var/lib/etcd
      name: etcd-data
  volumes:
  - hostPath:
      path: /var/lib/etcd
      type: DirectoryOrCreate
    name: etcd-data
"#;

    #[test]
    fn kubeadm_like_manifest() -> Result<(), String> {
        let pod = load(Path::new("/m/etcd.yaml"), ETCD.as_bytes(), "controlplane")?;
        assert_eq!(pod.name, "etcd-controlplane");
        assert_eq!(pod.namespace, "kube-system");
        assert_eq!(pod.uid.len(), 32);
        assert_eq!(pod.grace, Duration::from_secs(30));
        assert_eq!(
            pod.containers[0].argv,
            ["etcd", "--data-dir=/var/lib/etcd", "--name=controlplane"]
        );
        assert_eq!(pod.containers[0].mounts[0].host_path, "/var/lib/etcd");
        assert_eq!(pod.volumes[0].kind, "DirectoryOrCreate");
        assert!(pod.unsupported.is_empty(), "{:?}", pod.unsupported);
        Ok(())
    }

    #[test]
    fn uid_ignores_comments_but_not_content_or_path() {
        let a = load(Path::new("/m/etcd.yaml"), ETCD.as_bytes(), "cp").map(|p| p.uid);
        let commented = format!("# edited\n{ETCD}");
        let b = load(Path::new("/m/etcd.yaml"), commented.as_bytes(), "cp").map(|p| p.uid);
        let changed = ETCD.replace(
            "/var/lib/etcd\n    - --name",
            "/var/lib/etcd-new\n    - --name",
        );
        let c = load(Path::new("/m/etcd.yaml"), changed.as_bytes(), "cp").map(|p| p.uid);
        let d = load(Path::new("/m/etcd.yaml.bak"), ETCD.as_bytes(), "cp").map(|p| p.uid);
        assert!(a.is_ok());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn errors_have_a_location() {
        let bad = ETCD.replace("  containers:", "  containers: [");
        let err = load(Path::new("/m/etcd.yaml"), bad.as_bytes(), "cp").err();
        assert!(
            err.as_deref().is_some_and(|e| e.contains("line")),
            "{err:?}"
        );
        let no_kind = ETCD.replace("kind: Pod\n", "");
        let err = load(Path::new("/m/etcd.yaml"), no_kind.as_bytes(), "cp").err();
        assert_eq!(err.as_deref(), Some("Object 'Kind' is missing"));
    }

    #[test]
    fn expansion() {
        let vars = BTreeMap::from([("A", "1")]);
        assert_eq!(expand("x=$(A) y=$(B) $$(A) $", &vars), "x=1 y=$(B) $(A) $");
    }
}
