//! The status file the kube-apiserver stand-in reads to publish static (mirror) pods: JSON,
//! replaced atomically (temp + rename) whenever a pod or container changes.
//!
//! Shape (every field always present; `pid` 0 when no process runs, `exit_code` 0 and
//! `started_at`/`finished_at` "" until the container has started / exited once):
//! `{"node","updated","pods":[{"name","namespace","uid","manifest","phase",
//!   "containers":[{"name","pid","state","reason","message","exit_code","restart_count",
//!   "started_at","finished_at","image"}]}]}`

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: String,
    /// RFC 3339, when this file was written.
    pub updated: String,
    pub pods: Vec<PodStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodStatus {
    /// `<metadata.name>-<node>`
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// The manifest file the pod comes from.
    pub manifest: String,
    /// Pending | Running | Succeeded | Failed
    pub phase: String,
    pub containers: Vec<ContainerStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub name: String,
    /// Main process of the container while it runs, else 0.
    pub pid: i32,
    /// running | waiting | terminated
    pub state: String,
    /// "" (running) | ContainerCreating | CrashLoopBackOff | Error | Completed | StartError | Unknown
    pub reason: String,
    /// Detail for `reason`, e.g. "back-off 20s restarting failed container=etcd pod=..." or a
    /// start error; "" when there is none.
    pub message: String,
    /// Exit code of the last run that ended (128 + signal for a signal), 0 if none yet.
    pub exit_code: i32,
    pub restart_count: u32,
    /// RFC 3339 start of the current (or last) run, "" if it never started.
    pub started_at: String,
    /// RFC 3339 end of the last run that ended, "" if none.
    pub finished_at: String,
    pub image: String,
}

/// Writes the status file atomically; creates its directory.
pub fn write(path: &Path, status: &NodeStatus) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::runtime::write_json_atomic(path, status)
}
