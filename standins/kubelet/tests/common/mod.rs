//! Test harness: runs the real stand-in binary on temp dirs, reads its status file, journal
//! (stderr) and pod logs, and ends every process it started by PID when a test finishes.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const NODE: &str = "testnode";

pub struct Standin {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub runs: u32,
}

impl Standin {
    /// A stand-in with fresh dirs, `--sync-frequency 200ms`, `--stop-pods-on-exit`, `extra` flags.
    pub fn start(extra: &[&str]) -> Standin {
        let mut s = Standin::new_dirs();
        s.spawn(true, extra);
        s
    }

    /// Fresh dirs, no stand-in running yet (see [`Standin::spawn`]).
    pub fn new_dirs() -> Standin {
        let dir = tempfile::Builder::new()
            .prefix("kubelet-standin-test")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("manifests")).expect("manifests dir");
        Standin {
            dir,
            child: None,
            runs: 0,
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn manifests(&self) -> PathBuf {
        self.path("manifests")
    }

    /// Starts (another) stand-in process on the same dirs; its journal goes to journal-<n>.log.
    pub fn spawn(&mut self, stop_pods_on_exit: bool, extra: &[&str]) {
        self.runs += 1;
        let journal = std::fs::File::create(self.path(&format!("journal-{}.log", self.runs)))
            .expect("journal file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubelet-standin"));
        cmd.arg("--pod-manifest-path")
            .arg(self.manifests())
            .arg("--pod-log-dir")
            .arg(self.path("pods"))
            .arg("--container-log-link-dir")
            .arg(self.path("containers"))
            .arg("--root-dir")
            .arg(self.path("root"))
            .arg("--status-file")
            .arg(self.path("status.json"))
            .args(["--node-name", NODE, "--sync-frequency", "200ms"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(journal.try_clone().expect("dup"))
            .stderr(journal);
        if stop_pods_on_exit {
            cmd.arg("--stop-pods-on-exit");
        }
        self.child = Some(cmd.spawn().expect("start the stand-in"));
    }

    /// SIGTERM to the stand-in; returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        signal(child.id() as i32, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Everything the stand-in(s) logged so far.
    pub fn journal(&self) -> String {
        (1..=self.runs)
            .map(|n| {
                std::fs::read_to_string(self.path(&format!("journal-{n}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("")
    }

    pub fn write_manifest(&self, name: &str, content: &str) {
        // Atomic, as an editor or the engine would do it (hidden temp name: ignored by the kubelet).
        let tmp = self.manifests().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, content).expect("write manifest");
        std::fs::rename(&tmp, self.manifests().join(name)).expect("rename manifest");
    }

    pub fn status(&self) -> Value {
        std::fs::read(self.path("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    /// The status of pod `<name>-testnode`, if listed.
    pub fn pod(&self, name: &str) -> Option<Value> {
        let full = format!("{name}-{NODE}");
        self.status()["pods"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == full.as_str())
            .cloned()
    }

    /// The first container of pod `name`.
    pub fn container(&self, name: &str) -> Option<Value> {
        self.pod(name).map(|p| p["containers"][0].clone())
    }

    /// PID of the running first container of pod `name`.
    pub fn running_pid(&self, name: &str) -> Option<i32> {
        let c = self.container(name)?;
        (c["state"] == "running")
            .then(|| c["pid"].as_i64())
            .flatten()
            .map(|p| p as i32)
    }

    /// `<pods>/<ns>_<name>-testnode_<uid>/<container>/<n>.log` of the pod as listed now.
    pub fn log_path(&self, name: &str, container: &str, restart: u64) -> Option<PathBuf> {
        let pod = self.pod(name)?;
        Some(self.path("pods").join(format!(
            "{}_{}_{}/{container}/{restart}.log",
            pod["namespace"].as_str()?,
            pod["name"].as_str()?,
            pod["uid"].as_str()?
        )))
    }

    pub fn read_log(&self, name: &str, container: &str, restart: u64) -> String {
        self.log_path(name, container, restart)
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// (pid, start ticks) of every shim and container the state dir knows about.
    fn recorded_processes(&self) -> Vec<(i32, u64)> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.path("root/standin-containers")) else {
            return out;
        };
        for e in entries.flatten() {
            for (file, key) in [("running.json", "container"), ("shim.json", "shim")] {
                let v: Value = std::fs::read(e.path().join(file))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or(Value::Null);
                if let (Some(pid), Some(ticks)) =
                    (v[key]["pid"].as_i64(), v[key]["start_ticks"].as_u64())
                {
                    out.push((pid as i32, ticks));
                }
            }
        }
        out
    }
}

impl Drop for Standin {
    /// Stops the stand-in (which stops its pods), then kills by PID anything it left behind.
    fn drop(&mut self) {
        self.stop();
        for (pid, ticks) in self.recorded_processes() {
            if start_ticks(pid) == Some(ticks) {
                signal(pid, libc::SIGKILL);
            }
        }
    }
}

pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) with a PID this test started.
    unsafe {
        libc::kill(pid, sig);
    }
}

fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn start_ticks(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    stat_fields(pid)
        .and_then(|f| f.first().cloned())
        .is_some_and(|s| s != "Z" && s != "X")
}

pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Polls `f` every 50 ms until it returns Some, or panics with `what` after `secs`.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A static pod manifest with one `/bin/sh -c <script>` container named like the pod.
pub fn sh_pod(name: &str, script: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: kube-system
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 5
  containers:
  - name: {name}
    image: registry.k8s.io/busybox:1.36
    command:
    - /bin/sh
    - -c
    - {script:?}
"#
    )
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The `startedAt="2026-11-25T12:00:00.123456789Z"` of a "Container started" journal line, as
/// seconds of the day (the shim's record of the process start, not when it was logged).
pub fn started_at_seconds(line: &str) -> Option<f64> {
    let rest = &line[line.find("startedAt=\"")? + 11..];
    let time = rest
        .split('"')
        .next()?
        .split('T')
        .nth(1)?
        .trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}
