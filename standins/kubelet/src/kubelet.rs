//! The sync loop: compares the manifests dir with the pods being run (ADD / REMOVE, a changed
//! manifest is a new pod), drives every pod worker, re-adopts containers left by an earlier run,
//! and rewrites the status file when anything changed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::SystemTime;

use crate::cli::Config;
use crate::clock;
use crate::manifest::{self, StaticPod};
use crate::pod::{Ctx, PodWorker};
use crate::runtime;
use crate::status::{self, NodeStatus, PodStatus};

pub struct Kubelet {
    cfg: Config,
    /// Pods by UID, including pods being stopped.
    pods: BTreeMap<String, PodWorker>,
    /// Manifest errors already logged (path -> content hash), so each is logged once.
    invalid_logged: HashMap<PathBuf, String>,
    images_noted: HashSet<String>,
    last_status: Option<Vec<PodStatus>>,
    status_error_logged: bool,
    /// Whether the manifests dir was missing at the last scan (logged on each change).
    dir_missing: bool,
}

impl Kubelet {
    pub fn new(cfg: Config) -> Kubelet {
        Kubelet {
            cfg,
            pods: BTreeMap::new(),
            invalid_logged: HashMap::new(),
            images_noted: HashSet::new(),
            last_status: None,
            status_error_logged: false,
            dir_missing: false,
        }
    }

    /// Re-adopts containers started by an earlier stand-in (they outlive it, as containers
    /// outlive the real kubelet); containers whose pod no longer has a manifest are stopped.
    pub fn adopt(&mut self, now: SystemTime) {
        let desired: BTreeMap<String, StaticPod> = self
            .scan()
            .into_iter()
            .map(|p| (p.uid.clone(), p))
            .collect();
        let mut by_pod: BTreeMap<String, Vec<runtime::Instance>> = BTreeMap::new();
        for inst in runtime::list(&self.cfg.root_dir) {
            by_pod
                .entry(inst.spec.pod_uid.clone())
                .or_default()
                .push(inst);
        }
        for (uid, instances) in by_pod {
            let worker = match desired.get(&uid) {
                Some(pod) => {
                    info!("SyncLoop ADD", "source" => "file", "pods" => vec![format!("{}/{}", pod.namespace, pod.name)]);
                    PodWorker::new(pod.clone(), &self.cfg)
                }
                None => {
                    let Some(first) = instances.first() else {
                        continue;
                    };
                    let mut w = PodWorker::orphan(&first.spec, &self.cfg);
                    info!(
                        "Stopping containers of a pod whose manifest is gone",
                        "pod" => w.full_name(),
                        "podUID" => uid,
                    );
                    w.begin_stop(now, true);
                    w
                }
            };
            let mut worker = worker;
            worker.adopt(instances, &self.cfg);
            self.pods.insert(uid, worker);
        }
    }

    /// Reads the manifests dir; logs each invalid file once per content.
    fn scan(&mut self) -> Vec<StaticPod> {
        let missing = !self.cfg.manifest_dir.is_dir();
        if missing && !self.dir_missing {
            // Like the kubelet: no dir means no static pods (running ones are stopped).
            error!(
                "Unable to read config path",
                "err" => "path does not exist, ignoring",
                "path" => self.cfg.manifest_dir.display().to_string(),
            );
        }
        self.dir_missing = missing;
        let scan = manifest::scan(&self.cfg.manifest_dir, &self.cfg.node_name);
        let mut still_invalid = HashMap::new();
        for inv in scan.invalid {
            if self.invalid_logged.get(&inv.path) != Some(&inv.content_hash) {
                error!(
                    "Could not process manifest file",
                    "err" => format!("{}: {}", inv.path.display(), inv.error),
                    "path" => inv.path.display().to_string(),
                );
            }
            still_invalid.insert(inv.path, inv.content_hash);
        }
        self.invalid_logged = still_invalid;
        scan.pods
    }

    /// One pass. Returns when the next pass is due at the latest (back-off / grace deadlines).
    pub fn sync(&mut self, now: SystemTime) -> Option<SystemTime> {
        let desired = self.scan();
        let desired_uids: HashSet<&str> = desired.iter().map(|p| p.uid.as_str()).collect();
        let removed: Vec<String> = self
            .pods
            .iter()
            .filter(|(uid, w)| !w.is_stopping() && !desired_uids.contains(uid.as_str()))
            .map(|(uid, _)| uid.clone())
            .collect();
        if !removed.is_empty() {
            let names: Vec<String> = removed
                .iter()
                .filter_map(|u| self.pods.get(u).map(PodWorker::full_name))
                .collect();
            info!("SyncLoop REMOVE", "source" => "file", "pods" => names);
        }
        for uid in removed {
            if let Some(w) = self.pods.get_mut(&uid) {
                w.begin_stop(now, true);
            }
        }
        let added: Vec<StaticPod> = desired
            .into_iter()
            .filter(|p| !self.pods.contains_key(&p.uid))
            .collect();
        if !added.is_empty() {
            let names: Vec<String> = added
                .iter()
                .map(|p| format!("{}/{}", p.namespace, p.name))
                .collect();
            info!("SyncLoop ADD", "source" => "file", "pods" => names);
        }
        for pod in added {
            for note in &pod.unsupported {
                warn!("Static pod uses something the stand-in does not implement", "pod" => format!("{}/{}", pod.namespace, pod.name), "note" => note);
            }
            self.pods
                .insert(pod.uid.clone(), PodWorker::new(pod, &self.cfg));
        }
        self.drive(now)
    }

    /// Runs every worker once, then forgets pods that finished stopping.
    fn drive(&mut self, now: SystemTime) -> Option<SystemTime> {
        // A static pod may not start while an older instance with the same name still stops.
        let stopping_names: HashSet<String> = self
            .pods
            .values()
            .filter(|w| w.is_stopping() && !w.stopped())
            .map(PodWorker::full_name)
            .collect();
        let mut ctx = Ctx {
            cfg: &self.cfg,
            images_noted: &mut self.images_noted,
        };
        let mut wake: Option<SystemTime> = None;
        for w in self.pods.values_mut() {
            let may_start = !stopping_names.contains(&w.full_name());
            if let Some(t) = w.sync(&mut ctx, now, may_start) {
                wake = Some(wake.map_or(t, |x| x.min(t)));
            }
        }
        let done: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, w)| w.stopped())
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in done {
            if let Some(w) = self.pods.remove(&uid) {
                info!("Pod stopped", "pod" => w.full_name(), "podUID" => uid);
                w.cleanup(&self.cfg);
            }
        }
        self.write_status(now);
        wake
    }

    /// Stops every pod (SIGTERM, grace period, SIGKILL); used on exit with --stop-pods-on-exit.
    pub fn begin_shutdown(&mut self, now: SystemTime) {
        for w in self.pods.values_mut() {
            w.begin_stop(now, false);
        }
    }

    /// One pass while shutting down (no manifest scan). True once every pod has stopped.
    pub fn sync_shutdown(&mut self, now: SystemTime) -> bool {
        self.drive(now);
        self.pods.is_empty()
    }

    fn write_status(&mut self, now: SystemTime) {
        let mut pods: Vec<PodStatus> = self.pods.values().map(|w| w.status(now)).collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name, &a.uid).cmp(&(&b.namespace, &b.name, &b.uid)));
        if self.last_status.as_ref() == Some(&pods) {
            return;
        }
        let st = NodeStatus {
            node: self.cfg.node_name.clone(),
            updated: clock::rfc3339(now),
            pods: pods.clone(),
        };
        match status::write(&self.cfg.status_file, &st) {
            Ok(()) => {
                self.last_status = Some(pods);
                self.status_error_logged = false;
            }
            Err(e) if !self.status_error_logged => {
                error!("Could not write the status file", "path" => self.cfg.status_file.display().to_string(), "err" => e.to_string());
                self.status_error_logged = true;
            }
            Err(_) => {}
        }
    }
}
