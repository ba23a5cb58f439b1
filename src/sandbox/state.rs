//! State: the sandbox's on-disk record (`<state dir>/state.json`) of what it planned and of
//! every resource it created, each written BEFORE the resource exists, so `down` can remove
//! everything even after `up` died half-way. Also the lock that serialises sandbox commands.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fsutil::{self, io_err};
use super::NodeSpec;
use crate::error::{Error, Result};
use crate::inventory::Topology;

/// File name of the state record inside the state directory.
pub const STATE_FILE: &str = "state.json";

/// Version of the state file format; a different version is refused with a clear message.
pub const STATE_VERSION: u32 = 1;

/// Where `up` got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// `up` is (or was, if it died) creating resources.
    Creating,
    /// Every node booted and passed its readiness checks; the inventory is written.
    Ready,
    /// `down` is (or was) removing resources.
    Removing,
}

/// What a recorded process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcKind {
    /// The `systemd-nspawn` process that runs a node.
    Nspawn,
    /// The node's PID 1 (its systemd) as seen from the host.
    Init,
    /// The control planes' load balancer on the host (HAProxy, `lb.rs`).
    LoadBalancer,
}

/// One thing the sandbox created on the host. Recorded before it is created; `down` undoes
/// the list in reverse order (processes first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    /// The host bridge (e.g. `bfbr0`).
    Bridge {
        /// Interface name.
        name: String,
    },
    /// A mount point on the host (a node's overlay root or etcd's data disk).
    Mount {
        /// Mount point.
        target: PathBuf,
    },
    /// A loop device backed by `file`. `device` is filled in once `losetup` chose one; `down`
    /// also finds devices by their backing file, so a crash in between leaks nothing.
    LoopDevice {
        /// Backing file.
        file: PathBuf,
        /// `/dev/loopN`, once known.
        device: Option<String>,
    },
    /// A node's cgroup directory (one per cgroup hierarchy), removed once its processes are
    /// gone.
    Cgroup {
        /// Directory in the cgroup filesystem.
        path: PathBuf,
    },
    /// A host kernel setting changed for the kubelet (see `sysctl.rs`); `down` writes `old`
    /// back.
    Sysctl {
        /// sysctl name, e.g. `kernel.panic`.
        key: String,
        /// The value before the sandbox changed it.
        old: String,
    },
    /// A process that must be ended by `down` (identified by PID and start time, so a reused
    /// PID is never signalled).
    Process {
        /// Node name.
        node: String,
        /// What the process is.
        what: ProcKind,
        /// Host PID.
        pid: i32,
        /// Start time in clock ticks since boot (field 22 of /proc/PID/stat).
        start_time: u64,
    },
}

/// The whole state record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// Random id of this sandbox; set in every node's PID 1 environment
    /// (`BREAKFIX_SANDBOX_ID`) so `down` can find a node whose nspawn died.
    pub id: String,
    /// Where `up` got to.
    pub phase: Phase,
    /// Topology of the cluster.
    pub topology: Topology,
    /// Planned nodes, control plane first.
    pub nodes: Vec<NodeSpec>,
    /// Root filesystem image the nodes overlay (read-only lower layer).
    pub image: PathBuf,
    /// The node layer of built programs, overlaid above [`State::image`].
    #[serde(default)]
    pub node_layer: Option<PathBuf>,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Resources in creation order.
    pub resources: Vec<Resource>,
    /// The state directory this record lives in (not serialised).
    #[serde(skip)]
    pub dir: PathBuf,
}

impl State {
    /// A fresh record in `dir` (not yet saved).
    pub fn new(dir: &Path, topology: Topology, nodes: Vec<NodeSpec>, image: PathBuf) -> State {
        use rand::RngCore;
        let mut id = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        State {
            version: STATE_VERSION,
            id: hex::encode(id),
            phase: Phase::Creating,
            topology,
            nodes,
            image,
            node_layer: None,
            created,
            resources: Vec::new(),
            dir: dir.to_path_buf(),
        }
    }

    /// Reads `<dir>/state.json`; `Ok(None)` when there is no sandbox.
    ///
    /// Errors: the file exists but cannot be read or parsed, or has another version.
    pub fn load(dir: &Path) -> Result<Option<State>> {
        let path = dir.join(STATE_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::Io {
                    context: format!("reading sandbox state {}", path.display()),
                    source: e,
                })
            }
        };
        let mut st: State = serde_json::from_str(&text).map_err(|e| Error::Config {
            file: path.display().to_string(),
            message: format!("unreadable sandbox state ({e}); remove the sandbox's resources by hand (see docs/sandbox.md) and delete {}", dir.display()),
        })?;
        if st.version != STATE_VERSION {
            return Err(Error::Config {
                file: path.display().to_string(),
                message: format!(
                    "sandbox state version {} is not the supported {STATE_VERSION}; use the breakfix that created it to run `sandbox down`",
                    st.version
                ),
            });
        }
        st.dir = dir.to_path_buf();
        Ok(Some(st))
    }

    /// Writes the record atomically (temporary file + rename, synced).
    ///
    /// Errors: [`Error::Io`] naming the file.
    pub fn save(&self) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::other(format!("serialising sandbox state: {e}")))?;
        fsutil::write_file(&self.dir.join(STATE_FILE), text.as_bytes(), 0o644)
    }

    /// Appends `r` and saves, BEFORE the caller creates the resource.
    ///
    /// Errors: as [`State::save`].
    pub fn record(&mut self, r: Resource) -> Result<()> {
        if !self.resources.contains(&r) {
            self.resources.push(r);
        }
        self.save()
    }

    /// Sets the device of the recorded loop device backed by `file`, and saves.
    ///
    /// Errors: as [`State::save`].
    pub fn set_loop_device(&mut self, file: &Path, dev: &str) -> Result<()> {
        for r in &mut self.resources {
            if let Resource::LoopDevice { file: f, device } = r {
                if f == file {
                    *device = Some(dev.to_string());
                }
            }
        }
        self.save()
    }

    /// Sets the phase and saves.
    ///
    /// Errors: as [`State::save`].
    pub fn set_phase(&mut self, phase: Phase) -> Result<()> {
        self.phase = phase;
        self.save()
    }

    /// Recorded processes of `node`.
    pub fn processes_of<'a>(
        &'a self,
        node: &'a str,
    ) -> impl Iterator<Item = (ProcKind, i32, u64)> + 'a {
        self.resources.iter().filter_map(move |r| match r {
            Resource::Process {
                node: n,
                what,
                pid,
                start_time,
            } if n == node => Some((*what, *pid, *start_time)),
            _ => None,
        })
    }

    /// Directory of one node's files (`<state dir>/nodes/<name>`).
    pub fn node_dir(&self, name: &str) -> PathBuf {
        node_dir(&self.dir, name)
    }
}

/// Directory of one node's files (`<state dir>/nodes/<name>`).
pub fn node_dir(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("nodes").join(name)
}

/// An exclusive lock serialising sandbox commands on this machine, across instances: every
/// instance's state directory has the same parent (/var/lib/breakfix), and the lock is an
/// `flock` on that parent, so it leaves no file behind; it is released when dropped. One
/// lock for all keeps what instances share safe: the image cache while it is built, and the
/// kubelet's host settings (see `sysctl.rs`), which the last `down` puts back.
#[derive(Debug)]
pub struct Lock {
    _file: nix::fcntl::Flock<fs::File>,
}

impl Lock {
    /// Takes the lock, waiting (and saying so on stderr) while another `breakfix sandbox`
    /// command holds it. Creates the parent directory if needed.
    ///
    /// Errors: the directory cannot be created or opened, or flock fails.
    pub fn acquire(state_dir: &Path) -> Result<Lock> {
        let parent = state_dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("/"));
        fs::create_dir_all(parent)
            .map_err(io_err(format!("creating directory {}", parent.display())))?;
        let open = || {
            fs::File::open(parent)
                .map_err(io_err(format!("opening {} to lock it", parent.display())))
        };
        use nix::fcntl::{Flock, FlockArg};
        match Flock::lock(open()?, FlockArg::LockExclusiveNonblock) {
            Ok(l) => return Ok(Lock { _file: l }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                eprintln!(
                    "waiting for another `breakfix sandbox` command to finish (lock on {})",
                    parent.display()
                );
            }
            Err((_, e)) => {
                return Err(Error::Io {
                    context: format!("locking {}", parent.display()),
                    source: e.into(),
                })
            }
        }
        Flock::lock(open()?, FlockArg::LockExclusive)
            .map(|l| Lock { _file: l })
            .map_err(|(_, e)| Error::Io {
                context: format!("locking {}", parent.display()),
                source: e.into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_records_before_creation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = super::super::plan_nodes(2).expect("plan");
        let mut st = State::new(dir.path(), Topology::External, nodes, "/img".into());
        st.save().expect("save");
        st.record(Resource::Bridge {
            name: "bfbr0".into(),
        })
        .expect("record");
        st.record(Resource::LoopDevice {
            file: "/x/etcd.img".into(),
            device: None,
        })
        .expect("record");
        st.set_loop_device(Path::new("/x/etcd.img"), "/dev/loop3")
            .expect("set");
        let back = State::load(dir.path()).expect("load").expect("some");
        assert_eq!(back, st);
        assert_eq!(
            back.resources[1],
            Resource::LoopDevice {
                file: "/x/etcd.img".into(),
                device: Some("/dev/loop3".into())
            }
        );
        assert!(State::load(&dir.path().join("none"))
            .expect("load")
            .is_none());
    }
}
