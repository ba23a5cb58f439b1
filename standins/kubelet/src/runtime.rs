//! The stand-in's container runtime: starts each container through a detached shim (so
//! containers outlive a stand-in stop, like containerd's), and reads a container's state back
//! from its state dir, which is also how a restarted stand-in re-adopts running containers.
//!
//! State dir `<root-dir>/standin-containers/<id>/`: `spec.json` (written here), `shim.json`,
//! `running.json`, `exit.json` (written by the shim, each atomically), `shim.log`.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock;
use crate::manifest::ContainerSpec;
use crate::procfs::{self, ProcRef};

/// argv[0] that makes the binary act as a shim (and what `ps` shows for it).
pub const SHIM_ARGV0: &str = "standin-shim";

/// How long a shim may take to report before the start counts as failed.
const SHIM_START_TIMEOUT: Duration = Duration::from_secs(10);

/// What the shim is asked to run (`spec.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimSpec {
    pub id: String,
    pub pod_uid: String,
    pub pod_name: String,
    pub namespace: String,
    pub manifest: PathBuf,
    pub restart_count: u32,
    pub container: ContainerSpec,
    pub log_path: PathBuf,
    pub created_unix_nanos: u128,
}

/// `shim.json`: the shim process, written before it starts the container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimRecord {
    pub shim: ProcRef,
    pub boot_id: String,
}

/// `running.json`: the container's main process, written right after it was started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunningRecord {
    pub container: ProcRef,
    pub started_unix_nanos: u128,
}

/// `exit.json`: how the container ended (or why it never started).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit status, or 128 + signal number for a signal (as Kubernetes reports it).
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// Completed | Error | StartError | Unknown
    pub reason: String,
    pub message: String,
    pub finished_unix_nanos: u128,
}

impl ExitRecord {
    pub fn finished(&self) -> SystemTime {
        clock::from_unix_nanos(self.finished_unix_nanos)
    }
}

/// A container as last observed.
#[derive(Debug, Clone)]
pub enum Observed {
    Starting,
    Running { pid: i32 },
    Exited(ExitRecord),
}

/// One container instance (one run: a restart is a new instance with a new id).
#[derive(Debug)]
pub struct Instance {
    pub dir: PathBuf,
    pub spec: ShimSpec,
    shim: Option<ShimRecord>,
    running: Option<RunningRecord>,
    exit: Option<ExitRecord>,
}

pub fn containers_dir(root_dir: &Path) -> PathBuf {
    root_dir.join("standin-containers")
}

/// Writes `value` as JSON to `path` atomically (temp file in the same dir + rename).
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A container id like containerd's (64 hex digits).
pub fn new_id(pod_uid: &str, container: &str, restart_count: u32) -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "{pod_uid}/{container}/{restart_count}/{}/{}",
        clock::unix_nanos(SystemTime::now()),
        std::process::id()
    ));
    hex::encode(h.finalize())
}

impl Instance {
    /// Starts a container: writes its spec and launches a detached shim.
    pub fn launch(root_dir: &Path, spec: ShimSpec) -> Result<Instance, String> {
        let dir = containers_dir(root_dir).join(&spec.id);
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        write_json_atomic(&dir.join("spec.json"), &spec)
            .map_err(|e| format!("write {}/spec.json: {e}", dir.display()))?;
        let shim_log = std::fs::File::create(dir.join("shim.log"))
            .map_err(|e| format!("create {}/shim.log: {e}", dir.display()))?;
        let shim_err = shim_log.try_clone().map_err(|e| e.to_string())?;
        // /proc/self/exe keeps working when the binary was replaced on disk.
        let status = Command::new("/proc/self/exe")
            .arg0(SHIM_ARGV0)
            .arg("--id")
            .arg(&spec.id)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(shim_log)
            .stderr(shim_err)
            .status()
            .map_err(|e| format!("start shim: {e}"))?;
        if !status.success() {
            return Err(format!("shim launcher failed: {status}"));
        }
        Ok(Instance {
            dir,
            spec,
            shim: None,
            running: None,
            exit: None,
        })
    }

    /// Reads a container's state dir (adoption after a stand-in restart).
    pub fn load(dir: &Path) -> Option<Instance> {
        let spec: ShimSpec = read_json(&dir.join("spec.json"))?;
        let mut inst = Instance {
            dir: dir.to_path_buf(),
            spec,
            shim: None,
            running: None,
            exit: None,
        };
        inst.observe();
        Some(inst)
    }

    pub fn id(&self) -> &str {
        &self.spec.id
    }

    fn created(&self) -> SystemTime {
        clock::from_unix_nanos(self.spec.created_unix_nanos)
    }

    fn shim_alive(&self) -> bool {
        self.shim
            .as_ref()
            .is_some_and(|s| s.boot_id == procfs::boot_id() && s.shim.alive())
    }

    /// When the container's process started (None if it never did).
    pub fn started(&self) -> Option<SystemTime> {
        self.running
            .as_ref()
            .map(|r| clock::from_unix_nanos(r.started_unix_nanos))
    }

    /// How the container ended, if it did (as last observed).
    pub fn exit_record(&self) -> Option<&ExitRecord> {
        self.exit.as_ref()
    }

    /// The container's main process id as recorded (even after it exited).
    pub fn recorded_pid(&self) -> Option<i32> {
        self.running.as_ref().map(|r| r.container.pid)
    }

    /// The container's main process while it runs.
    pub fn process(&self) -> Option<ProcRef> {
        match (&self.exit, &self.running) {
            (None, Some(r)) if r.container.alive() => Some(r.container),
            _ => None,
        }
    }

    /// Looks at the state files (and the processes they name).
    pub fn observe(&mut self) -> Observed {
        if let Some(exit) = &self.exit {
            return Observed::Exited(exit.clone());
        }
        let exit = read_json::<ExitRecord>(&self.dir.join("exit.json"));
        if self.running.is_none() {
            self.running = read_json(&self.dir.join("running.json"));
        }
        if let Some(exit) = exit {
            self.exit = Some(exit.clone());
            return Observed::Exited(exit);
        }
        if self.shim.is_none() {
            self.shim = read_json(&self.dir.join("shim.json"));
        }
        if self.shim_alive() {
            return match &self.running {
                Some(r) => Observed::Running {
                    pid: r.container.pid,
                },
                None => Observed::Starting,
            };
        }
        // The shim may have written exit.json and gone in between.
        if let Some(exit) = read_json::<ExitRecord>(&self.dir.join("exit.json")) {
            self.exit = Some(exit.clone());
            return Observed::Exited(exit);
        }
        let elapsed = SystemTime::now()
            .duration_since(self.created())
            .unwrap_or_default();
        if self.shim.is_none() && elapsed < SHIM_START_TIMEOUT {
            return Observed::Starting;
        }
        // The shim is gone without a record: node rebooted, shim killed, or it never started.
        if let Some(r) = &self.running {
            r.container.signal_group(Signal::SIGKILL);
        }
        let (reason, message) = match (&self.shim, &self.running) {
            (None, _) => (
                "StartError",
                "the container shim did not start (see shim.log)",
            ),
            _ => (
                "Unknown",
                "the container shim is gone (node restarted or shim killed)",
            ),
        };
        let exit = ExitRecord {
            exit_code: 255,
            signal: None,
            reason: reason.to_string(),
            message: message.to_string(),
            finished_unix_nanos: clock::unix_nanos(SystemTime::now()),
        };
        // Best effort: keeps the verdict for a later stand-in; the in-memory copy decides now.
        let _ = write_json_atomic(&self.dir.join("exit.json"), &exit);
        self.exit = Some(exit.clone());
        Observed::Exited(exit)
    }

    /// Asks the container to stop (SIGTERM to its main process, like the runtime's StopContainer).
    pub fn terminate(&self) {
        if let Some(p) = self.process() {
            p.signal(Signal::SIGTERM);
        }
    }

    /// Kills every process of the container (SIGKILL to its process group).
    pub fn kill(&self) {
        match self.process() {
            Some(p) => {
                p.signal_group(Signal::SIGKILL);
            }
            None if self.exit.is_none() && self.shim_alive() => {
                if let Some(s) = &self.shim {
                    s.shim.signal(Signal::SIGKILL);
                }
            }
            None => {}
        }
    }

    /// Deletes the state dir (the container is gone for good).
    pub fn remove(&self) {
        // Best effort: a leftover dir is re-read and removed again on the next pass.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every container state dir under `root_dir` (for adoption at start-up).
pub fn list(root_dir: &Path) -> Vec<Instance> {
    let Ok(entries) = std::fs::read_dir(containers_dir(root_dir)) else {
        return Vec::new();
    };
    let mut out: Vec<Instance> = entries
        .filter_map(Result::ok)
        .filter_map(|e| Instance::load(&e.path()))
        .collect();
    out.sort_by_key(|i| {
        (
            i.spec.pod_uid.clone(),
            i.spec.container.name.clone(),
            i.spec.restart_count,
        )
    });
    out
}
