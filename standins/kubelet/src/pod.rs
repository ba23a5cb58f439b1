//! One static pod's worker: runs its containers (see `container.rs`), checks its hostPath
//! volumes, stops it with the grace period, cleans up after a deleted pod and reports its status.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use crate::cli::Config;
use crate::container::{link_name, pod_ref, ContainerWorker};
use crate::logs;
use crate::manifest::{RestartPolicy, StaticPod};
use crate::runtime::{Instance, ShimSpec};
use crate::status::{ContainerStatus, PodStatus};
use crate::volumes;

/// What a worker needs from the kubelet besides its pod.
pub struct Ctx<'a> {
    pub cfg: &'a Config,
    /// Images already reported as "not pulled" (logged once per image).
    pub images_noted: &'a mut HashSet<String>,
}

struct Stop {
    deadline: SystemTime,
    /// The pod is gone for good (manifest removed or changed): delete its logs and state.
    remove: bool,
}

pub struct PodWorker {
    pub pod: StaticPod,
    containers: Vec<ContainerWorker>,
    stop: Option<Stop>,
    volume_error: Option<String>,
}

impl PodWorker {
    pub fn new(pod: StaticPod, cfg: &Config) -> PodWorker {
        let containers = pod
            .containers
            .iter()
            .map(|spec| ContainerWorker::new(spec.clone(), cfg))
            .collect();
        PodWorker {
            pod,
            containers,
            stop: None,
            volume_error: None,
        }
    }

    /// A worker for containers left by an earlier run whose manifest is gone: it only stops them.
    pub fn orphan(spec: &ShimSpec, cfg: &Config) -> PodWorker {
        let pod = StaticPod {
            path: spec.manifest.clone(),
            name: spec.pod_name.clone(),
            namespace: spec.namespace.clone(),
            uid: spec.pod_uid.clone(),
            grace: Duration::from_secs(30),
            restart_policy: RestartPolicy::Always,
            containers: Vec::new(),
            volumes: Vec::new(),
            unsupported: Vec::new(),
        };
        PodWorker::new(pod, cfg)
    }

    /// Takes over containers found in the state dir (oldest first) after a stand-in restart.
    pub fn adopt(&mut self, instances: Vec<Instance>, cfg: &Config) {
        for inst in instances {
            let name = inst.spec.container.name.clone();
            let idx = match self.containers.iter().position(|c| c.spec.name == name) {
                Some(i) => i,
                None => {
                    self.containers
                        .push(ContainerWorker::new(inst.spec.container.clone(), cfg));
                    self.containers.len() - 1
                }
            };
            self.containers[idx].adopt(inst, &self.pod);
        }
    }

    /// `namespace/name`, the identity two manifests may not share.
    pub fn full_name(&self) -> String {
        pod_ref(&self.pod)
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.is_some()
    }

    /// Stopping and every container has ended.
    pub fn stopped(&self) -> bool {
        self.stop.is_some() && self.containers.iter().all(ContainerWorker::ended)
    }

    /// Starts stopping the pod: SIGTERM now, SIGKILL after the grace period.
    pub fn begin_stop(&mut self, now: SystemTime, remove: bool) {
        if self.stop.is_none() {
            self.stop = Some(Stop {
                deadline: now + self.pod.grace,
                remove,
            });
        }
    }

    /// One pass: observe the containers and act. Returns when it next needs to run, if sooner
    /// than the regular sync (a back-off or grace period ending).
    pub fn sync(&mut self, ctx: &mut Ctx, now: SystemTime, may_start: bool) -> Option<SystemTime> {
        if let Some(stop) = &self.stop {
            let deadline = stop.deadline;
            let mut wake = None;
            for c in &mut self.containers {
                if let Some(w) = c.sync_stopping(&self.pod, now, deadline) {
                    wake = Some(w);
                }
            }
            return wake;
        }
        let mut wake: Option<SystemTime> = None;
        for i in 0..self.containers.len() {
            let needs_start = self.containers[i].observe(&self.pod);
            let allowed = match needs_start {
                Some(_) if may_start => self.volumes_ready(),
                _ => false,
            };
            let w = self.containers[i].act(&self.pod, ctx, now, needs_start, allowed);
            wake = match (wake, w) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        wake
    }

    fn volumes_ready(&mut self) -> bool {
        for v in &self.pod.volumes {
            if let Err(e) = volumes::set_up(v) {
                if self.volume_error.as_deref() != Some(e.as_str()) {
                    error!(
                        "MountVolume.SetUp failed for volume",
                        "volume" => v.name,
                        "pod" => pod_ref(&self.pod),
                        "podUID" => self.pod.uid,
                        "err" => e,
                    );
                    self.volume_error = Some(e);
                }
                return false;
            }
        }
        self.volume_error = None;
        true
    }

    /// After the pod stopped: forget it, and if it is gone for good delete its state and logs.
    pub fn cleanup(&self, cfg: &Config) {
        let remove = self.stop.as_ref().is_some_and(|s| s.remove);
        if !remove {
            return;
        }
        for c in &self.containers {
            for inst in c.instances() {
                logs::unlink(&cfg.container_log_link_dir, &link_name(&self.pod, inst));
                inst.remove();
            }
        }
        let dir = logs::pod_dir(
            &cfg.pod_log_dir,
            &self.pod.namespace,
            &self.pod.name,
            &self.pod.uid,
        );
        // Best effort: the kubelet's GC removes a deleted pod's logs too.
        let _ = std::fs::remove_dir_all(dir);
    }

    pub fn status(&self, now: SystemTime) -> PodStatus {
        let stopping = self.stop.is_some();
        let containers: Vec<ContainerStatus> = self
            .containers
            .iter()
            .map(|c| c.status(&self.pod, stopping, now))
            .collect();
        let never_ran = self.containers.iter().any(ContainerWorker::never_ran);
        let phase = if never_ran {
            "Pending"
        } else if self.pod.restart_policy != RestartPolicy::Always
            && containers.iter().all(|c| c.state == "terminated")
        {
            if containers.iter().all(|c| c.exit_code == 0) {
                "Succeeded"
            } else {
                "Failed"
            }
        } else {
            "Running"
        };
        PodStatus {
            name: self.pod.name.clone(),
            namespace: self.pod.namespace.clone(),
            uid: self.pod.uid.clone(),
            manifest: self.pod.path.display().to_string(),
            phase: phase.to_string(),
            containers,
        }
    }
}
