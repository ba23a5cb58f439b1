//! One static pod's worker: starts its containers, restarts them under the restartPolicy with
//! the crash-loop back-off, stops them with the grace period (SIGTERM, then SIGKILL), logs each
//! step like the kubelet and reports the pod's status.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;

use crate::backoff::BackOff;
use crate::cli::Config;
use crate::clock;
use crate::logs;
use crate::manifest::{ContainerSpec, RestartPolicy, StaticPod};
use crate::runtime::{self, ExitRecord, Instance, Observed, ShimSpec};
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

struct ContainerWorker {
    spec: ContainerSpec,
    current: Option<Instance>,
    previous: Option<Instance>,
    last: Option<Observed>,
    backoff: BackOff,
    logged_start: Option<String>,
    logged_exit: Option<String>,
    logged_backoff: Option<SystemTime>,
    term_sent: Option<String>,
    kill_sent: Option<String>,
}

fn pod_ref(pod: &StaticPod) -> String {
    format!("{}/{}", pod.namespace, pod.name)
}

/// The kubelet's `format.Pod`: `name_namespace(uid)`.
fn pod_desc(pod: &StaticPod) -> String {
    format!("{}_{}({})", pod.name, pod.namespace, pod.uid)
}

fn wants_restart(policy: RestartPolicy, exit: &ExitRecord) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => exit.exit_code != 0,
        RestartPolicy::Never => false,
    }
}

impl PodWorker {
    pub fn new(pod: StaticPod, cfg: &Config) -> PodWorker {
        let containers = pod
            .containers
            .iter()
            .map(|spec| ContainerWorker {
                spec: spec.clone(),
                current: None,
                previous: None,
                last: None,
                backoff: BackOff::new(cfg.backoff_base, cfg.backoff_max),
                logged_start: None,
                logged_exit: None,
                logged_backoff: None,
                term_sent: None,
                kill_sent: None,
            })
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
                    self.containers.push(ContainerWorker {
                        spec: inst.spec.container.clone(),
                        current: None,
                        previous: None,
                        last: None,
                        backoff: BackOff::new(cfg.backoff_base, cfg.backoff_max),
                        logged_start: None,
                        logged_exit: None,
                        logged_backoff: None,
                        term_sent: None,
                        kill_sent: None,
                    });
                    self.containers.len() - 1
                }
            };
            let c = &mut self.containers[idx];
            if let Some(old) = c.previous.take() {
                old.remove();
            }
            c.previous = c.current.take();
            match (inst.process(), inst.exit_record()) {
                (Some(p), _) => info!(
                    "Adopted running container",
                    "pod" => pod_ref(&self.pod),
                    "podUID" => self.pod.uid,
                    "containerName" => name,
                    "containerID" => inst.id(),
                    "pid" => p.pid,
                    "restartCount" => inst.spec.restart_count,
                ),
                (None, Some(exit)) => info!(
                    "Found exited container",
                    "pod" => pod_ref(&self.pod),
                    "podUID" => self.pod.uid,
                    "containerName" => name,
                    "containerID" => inst.id(),
                    "exitCode" => exit.exit_code,
                    "restartCount" => inst.spec.restart_count,
                ),
                (None, None) => {}
            }
            // Already reported by the run that started it.
            if inst.started().is_some() {
                c.logged_start = Some(inst.id().to_string());
            }
            if inst.exit_record().is_some() {
                c.logged_exit = Some(inst.id().to_string());
            }
            c.current = Some(inst);
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
        self.stop.is_some()
            && self
                .containers
                .iter()
                .all(|c| matches!(c.last, None | Some(Observed::Exited(_))))
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
            for inst in c.current.iter().chain(c.previous.iter()) {
                logs::unlink(&cfg.container_log_link_dir, &link_name(&self.pod, inst));
                inst.remove();
            }
        }
        let dir = logs::pod_dir(&cfg.pod_log_dir, &self.pod.namespace, &self.pod.name, &self.pod.uid);
        // Best effort: the kubelet's GC removes a deleted pod's logs too.
        let _ = std::fs::remove_dir_all(dir);
    }

    pub fn status(&self, now: SystemTime) -> PodStatus {
        let stopping = self.stop.is_some();
        let containers: Vec<ContainerStatus> = self
            .containers
            .iter()
            .map(|c| c.status(self.pod.restart_policy, stopping, now))
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

fn link_name(pod: &StaticPod, inst: &Instance) -> String {
    logs::link_name(&pod.name, &pod.namespace, &inst.spec.container.name, inst.id())
}

fn signal_name(sig: i32) -> String {
    Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| sig.to_string())
}

impl ContainerWorker {
    /// Observes the current instance and logs starts and exits once each. Returns the restart
    /// count to start with when the container should be (re)started now or after a back-off.
    fn observe(&mut self, pod: &StaticPod) -> Option<u32> {
        let Some(inst) = self.current.as_mut() else {
            self.last = None;
            return Some(0);
        };
        let obs = inst.observe();
        self.last = Some(obs.clone());
        let id = inst.id().to_string();
        if self.logged_start.as_deref() != Some(id.as_str()) {
            if let (Some(pid), Some(_)) = (inst.recorded_pid(), inst.started()) {
                info!(
                    "Container started",
                    "pod" => pod_ref(pod),
                    "podUID" => pod.uid,
                    "containerName" => self.spec.name,
                    "containerID" => id,
                    "pid" => pid,
                    "restartCount" => inst.spec.restart_count,
                );
                self.logged_start = Some(id.clone());
            }
        }
        let Observed::Exited(exit) = obs else {
            return None;
        };
        if self.logged_exit.as_deref() != Some(id.as_str()) {
            log_exit(pod, &self.spec.name, &id, &exit);
            self.logged_exit = Some(id);
        }
        wants_restart(pod.restart_policy, &exit).then_some(inst.spec.restart_count + 1)
    }

    /// Starts the container if due; returns the end of a running back-off.
    fn act(
        &mut self,
        pod: &StaticPod,
        ctx: &mut Ctx,
        now: SystemTime,
        needs_start: Option<u32>,
        allowed: bool,
    ) -> Option<SystemTime> {
        let restart_count = needs_start?;
        if !allowed {
            return None;
        }
        if let Some(Observed::Exited(exit)) = &self.last {
            let finished = exit.finished();
            if let Some(until) = self.backoff.wait_until(finished, now) {
                if self.logged_backoff != Some(until) {
                    let backoff = clock::go_duration(self.backoff.current());
                    let desc = pod_desc(pod);
                    let err = format!(
                        "failed to \"StartContainer\" for {:?} with CrashLoopBackOff: \"back-off {backoff} restarting failed container={} pod={desc}\"",
                        self.spec.name, self.spec.name
                    );
                    error!("Error syncing pod, skipping", "err" => err, "pod" => pod_ref(pod), "podUID" => pod.uid);
                    warn!(format!("Back-off restarting failed container {} in pod {desc}", self.spec.name),
                        "backoff" => backoff);
                    self.logged_backoff = Some(until);
                }
                return Some(until);
            }
            self.backoff.next(finished);
        }
        self.start(pod, ctx, restart_count);
        None
    }

    fn start(&mut self, pod: &StaticPod, ctx: &mut Ctx, restart_count: u32) {
        let cfg = ctx.cfg;
        if !self.spec.image.is_empty() && ctx.images_noted.insert(self.spec.image.clone()) {
            info!(
                "Image is not pulled by the stand-in: the binary installed on the node runs instead",
                "image" => self.spec.image,
                "command" => self.spec.argv.first().cloned().unwrap_or_default(),
            );
        }
        let log_path = logs::container_log(&cfg.pod_log_dir, &pod.namespace, &pod.name, &pod.uid, &self.spec.name, restart_count);
        let spec = ShimSpec {
            id: runtime::new_id(&pod.uid, &self.spec.name, restart_count),
            pod_uid: pod.uid.clone(),
            pod_name: pod.name.clone(),
            namespace: pod.namespace.clone(),
            manifest: pod.path.clone(),
            restart_count,
            container: self.spec.clone(),
            log_path: log_path.clone(),
            created_unix_nanos: clock::unix_nanos(SystemTime::now()),
        };
        match Instance::launch(&cfg.root_dir, spec) {
            Ok(inst) => {
                if let Some(old) = self.previous.take() {
                    logs::unlink(&cfg.container_log_link_dir, &link_name(pod, &old));
                    old.remove();
                }
                self.previous = self.current.take();
                logs::link(&cfg.container_log_link_dir, &link_name(pod, &inst), &log_path);
                if let Some(dir) = log_path.parent() {
                    logs::prune(dir, restart_count.saturating_sub(1));
                }
                self.current = Some(inst);
                self.last = Some(Observed::Starting);
            }
            Err(e) => {
                error!("Failed to start container", "pod" => pod_ref(pod), "containerName" => self.spec.name, "err" => e);
            }
        }
    }

    fn sync_stopping(&mut self, pod: &StaticPod, now: SystemTime, deadline: SystemTime) -> Option<SystemTime> {
        self.observe(pod);
        let inst = self.current.as_ref()?;
        let id = inst.id().to_string();
        match &self.last {
            None | Some(Observed::Exited(_)) => return None,
            Some(Observed::Running { .. }) if self.term_sent.as_deref() != Some(id.as_str()) => {
                info!(
                    "Killing container with a grace period",
                    "pod" => pod_ref(pod),
                    "podUID" => pod.uid,
                    "containerName" => self.spec.name,
                    "containerID" => id,
                    "gracePeriod" => pod.grace.as_secs(),
                );
                inst.terminate();
                self.term_sent = Some(id.clone());
            }
            _ => {}
        }
        if now >= deadline && self.kill_sent.as_deref() != Some(id.as_str()) {
            warn!(
                "Container did not stop within its grace period, killing it",
                "pod" => pod_ref(pod),
                "containerName" => self.spec.name,
                "containerID" => id,
            );
            inst.kill();
            self.kill_sent = Some(id);
        }
        Some(if now >= deadline { now + Duration::from_millis(100) } else { deadline })
    }

    /// No run of this container has started or ended yet.
    fn never_ran(&self) -> bool {
        match &self.current {
            None => true,
            Some(i) => {
                i.spec.restart_count == 0
                    && i.started().is_none()
                    && !matches!(self.last, Some(Observed::Exited(_)))
            }
        }
    }

    fn status(&self, policy: RestartPolicy, stopping: bool, now: SystemTime) -> ContainerStatus {
        let restart_count = self.current.as_ref().map_or(0, |i| i.spec.restart_count);
        let started_at = self
            .current
            .as_ref()
            .and_then(Instance::started)
            .map(clock::rfc3339)
            .unwrap_or_default();
        let previous_exit = self
            .previous
            .as_ref()
            .and_then(|p| p.exit_record())
            .map_or(0, |e| e.exit_code);
        let (state, reason, pid, exit_code) = match &self.last {
            None | Some(Observed::Starting) => ("waiting", "ContainerCreating".to_string(), 0, previous_exit),
            Some(Observed::Running { pid, .. }) => ("running", String::new(), *pid, previous_exit),
            Some(Observed::Exited(exit)) => {
                let restarting = !stopping && wants_restart(policy, exit);
                if restarting && self.backoff.wait_until(exit.finished(), now).is_some() {
                    ("waiting", "CrashLoopBackOff".to_string(), 0, exit.exit_code)
                } else if restarting {
                    ("waiting", "ContainerCreating".to_string(), 0, exit.exit_code)
                } else {
                    ("terminated", exit.reason.clone(), 0, exit.exit_code)
                }
            }
        };
        ContainerStatus {
            name: self.spec.name.clone(),
            pid,
            state: state.to_string(),
            reason,
            exit_code,
            restart_count,
            started_at,
            image: self.spec.image.clone(),
        }
    }
}

fn log_exit(pod: &StaticPod, container: &str, id: &str, exit: &ExitRecord) {
    let msg = "Generic (PLEG): container finished";
    match (exit.signal, exit.message.is_empty()) {
        (Some(sig), _) => info!(msg, "podID" => pod.uid, "containerID" => id, "exitCode" => exit.exit_code,
            "pod" => pod_ref(pod), "containerName" => container, "reason" => exit.reason, "signal" => signal_name(sig)),
        (None, true) => info!(msg, "podID" => pod.uid, "containerID" => id, "exitCode" => exit.exit_code,
            "pod" => pod_ref(pod), "containerName" => container, "reason" => exit.reason),
        (None, false) => info!(msg, "podID" => pod.uid, "containerID" => id, "exitCode" => exit.exit_code,
            "pod" => pod_ref(pod), "containerName" => container, "reason" => exit.reason, "message" => exit.message),
    }
}
