//! One container of a static pod across its runs: observes the current run, logs its start and
//! exit once, restarts it under the restartPolicy with the crash-loop back-off, stops it
//! (SIGTERM, SIGKILL after the grace period) and reports its status.

use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;

use crate::backoff::BackOff;
use crate::cli::Config;
use crate::clock;
use crate::logs;
use crate::manifest::{ContainerSpec, RestartPolicy, StaticPod};
use crate::pod::Ctx;
use crate::runtime::{self, ExitRecord, Instance, Observed, ShimSpec};
use crate::status::ContainerStatus;

/// One container of a static pod, across its runs (instances).
pub struct ContainerWorker {
    pub spec: ContainerSpec,
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

pub fn pod_ref(pod: &StaticPod) -> String {
    format!("{}/{}", pod.namespace, pod.name)
}

/// The kubelet's `format.Pod`: `name_namespace(uid)`.
pub fn pod_desc(pod: &StaticPod) -> String {
    format!("{}_{}({})", pod.name, pod.namespace, pod.uid)
}

pub fn wants_restart(policy: RestartPolicy, exit: &ExitRecord) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => exit.exit_code != 0,
        RestartPolicy::Never => false,
    }
}

pub fn link_name(pod: &StaticPod, inst: &Instance) -> String {
    logs::link_name(
        &pod.name,
        &pod.namespace,
        &inst.spec.container.name,
        inst.id(),
    )
}

fn signal_name(sig: i32) -> String {
    Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| sig.to_string())
}

impl ContainerWorker {
    pub fn new(spec: ContainerSpec, cfg: &Config) -> ContainerWorker {
        ContainerWorker {
            spec,
            current: None,
            previous: None,
            last: None,
            backoff: BackOff::new(cfg.backoff_base, cfg.backoff_max),
            logged_start: None,
            logged_exit: None,
            logged_backoff: None,
            term_sent: None,
            kill_sent: None,
        }
    }

    /// Takes over an instance found in the state dir (instances come oldest first).
    pub fn adopt(&mut self, inst: Instance, pod: &StaticPod) {
        if let Some(old) = self.previous.take() {
            old.remove();
        }
        self.previous = self.current.take();
        match (inst.process(), inst.exit_record()) {
            (Some(p), _) => info!(
                "Adopted running container",
                "pod" => pod_ref(pod),
                "podUID" => pod.uid,
                "containerName" => self.spec.name,
                "containerID" => inst.id(),
                "pid" => p.pid,
                "restartCount" => inst.spec.restart_count,
            ),
            (None, Some(exit)) => info!(
                "Found exited container",
                "pod" => pod_ref(pod),
                "podUID" => pod.uid,
                "containerName" => self.spec.name,
                "containerID" => inst.id(),
                "exitCode" => exit.exit_code,
                "restartCount" => inst.spec.restart_count,
            ),
            (None, None) => {}
        }
        // Already reported by the run that started it.
        if inst.started().is_some() {
            self.logged_start = Some(inst.id().to_string());
        }
        if inst.exit_record().is_some() {
            self.logged_exit = Some(inst.id().to_string());
        }
        self.current = Some(inst);
    }

    /// No run is in progress (none started yet, or the last one ended).
    pub fn ended(&self) -> bool {
        matches!(self.last, None | Some(Observed::Exited(_)))
    }

    /// The current and previous runs (for clean-up).
    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.current.iter().chain(self.previous.iter())
    }
    /// Observes the current instance and logs starts and exits once each. Returns the restart
    /// count to start with when the container should be (re)started now or after a back-off.
    pub fn observe(&mut self, pod: &StaticPod) -> Option<u32> {
        let Some(inst) = self.current.as_mut() else {
            self.last = None;
            return Some(0);
        };
        let obs = inst.observe();
        self.last = Some(obs.clone());
        let id = inst.id().to_string();
        if self.logged_start.as_deref() != Some(id.as_str()) {
            if let (Some(pid), Some(started)) = (inst.recorded_pid(), inst.started()) {
                info!(
                    "Container started",
                    "pod" => pod_ref(pod),
                    "podUID" => pod.uid,
                    "containerName" => self.spec.name,
                    "containerID" => id,
                    "pid" => pid,
                    "restartCount" => inst.spec.restart_count,
                    "startedAt" => clock::rfc3339_nanos(started),
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
    pub fn act(
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

    pub fn start(&mut self, pod: &StaticPod, ctx: &mut Ctx, restart_count: u32) {
        let cfg = ctx.cfg;
        if !self.spec.image.is_empty() && ctx.images_noted.insert(self.spec.image.clone()) {
            info!(
                "Image is not pulled by the stand-in: the binary installed on the node runs instead",
                "image" => self.spec.image,
                "command" => self.spec.argv.first().cloned().unwrap_or_default(),
            );
        }
        let log_path = logs::container_log(
            &cfg.pod_log_dir,
            &pod.namespace,
            &pod.name,
            &pod.uid,
            &self.spec.name,
            restart_count,
        );
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
                logs::link(
                    &cfg.container_log_link_dir,
                    &link_name(pod, &inst),
                    &log_path,
                );
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

    pub fn sync_stopping(
        &mut self,
        pod: &StaticPod,
        now: SystemTime,
        deadline: SystemTime,
    ) -> Option<SystemTime> {
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
        Some(if now >= deadline {
            now + Duration::from_millis(100)
        } else {
            deadline
        })
    }

    /// No run of this container has started or ended yet.
    pub fn never_ran(&self) -> bool {
        match &self.current {
            None => true,
            Some(i) => {
                i.spec.restart_count == 0
                    && i.started().is_none()
                    && !matches!(self.last, Some(Observed::Exited(_)))
            }
        }
    }

    pub fn status(&self, pod: &StaticPod, stopping: bool, now: SystemTime) -> ContainerStatus {
        let restart_count = self.current.as_ref().map_or(0, |i| i.spec.restart_count);
        let started_at = self
            .current
            .as_ref()
            .and_then(Instance::started)
            .map(clock::rfc3339)
            .unwrap_or_default();
        let previous_exit = self.previous.as_ref().and_then(|p| p.exit_record());
        let (prev_code, prev_finished) = previous_exit.map_or((0, String::new()), |e| {
            (e.exit_code, clock::rfc3339(e.finished()))
        });
        let waiting = |reason: &str, message: String, exit: &ExitRecord| {
            (
                "waiting",
                reason.to_string(),
                message,
                exit.exit_code,
                clock::rfc3339(exit.finished()),
            )
        };
        let (state, reason, message, exit_code, finished_at) = match &self.last {
            None | Some(Observed::Starting) => (
                "waiting",
                "ContainerCreating".to_string(),
                String::new(),
                prev_code,
                prev_finished,
            ),
            Some(Observed::Running { .. }) => (
                "running",
                String::new(),
                String::new(),
                prev_code,
                prev_finished,
            ),
            Some(Observed::Exited(exit)) => {
                let restarting = !stopping && wants_restart(pod.restart_policy, exit);
                if restarting && self.backoff.wait_until(exit.finished(), now).is_some() {
                    let message = format!(
                        "back-off {} restarting failed container={} pod={}",
                        clock::go_duration(self.backoff.current()),
                        self.spec.name,
                        pod_desc(pod)
                    );
                    waiting("CrashLoopBackOff", message, exit)
                } else if restarting {
                    waiting("ContainerCreating", String::new(), exit)
                } else {
                    (
                        "terminated",
                        exit.reason.clone(),
                        exit.message.clone(),
                        exit.exit_code,
                        clock::rfc3339(exit.finished()),
                    )
                }
            }
        };
        let pid = match &self.last {
            Some(Observed::Running { pid }) => *pid,
            _ => 0,
        };
        ContainerStatus {
            name: self.spec.name.clone(),
            pid,
            state: state.to_string(),
            reason,
            message,
            exit_code,
            restart_count,
            started_at,
            finished_at,
            image: self.spec.image.clone(),
        }
    }
}

fn log_exit(pod: &StaticPod, container: &str, id: &str, exit: &ExitRecord) {
    let msg = "Generic (PLEG): container finished";
    match (exit.signal, exit.message.is_empty()) {
        (Some(sig), _) => {
            info!(msg, "podID" => pod.uid, "containerID" => id, "exitCode" => exit.exit_code,
            "pod" => pod_ref(pod), "containerName" => container, "reason" => exit.reason, "signal" => signal_name(sig))
        }
        (None, true) => {
            info!(msg, "podID" => pod.uid, "containerID" => id, "exitCode" => exit.exit_code,
            "pod" => pod_ref(pod), "containerName" => container, "reason" => exit.reason)
        }
        (None, false) => {
            info!(msg, "podID" => pod.uid, "containerID" => id, "exitCode" => exit.exit_code,
            "pod" => pod_ref(pod), "containerName" => container, "reason" => exit.reason, "message" => exit.message)
        }
    }
}
