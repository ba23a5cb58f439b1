//! The per-container shim (the stand-in's containerd-shim): the same binary started with
//! argv[0] `standin-shim`. It detaches into its own session, runs the container's command in
//! its own process group (with hostPath mounts where the container path differs), writes its
//! stdout/stderr to the CRI log, records pid and exit in the state dir, and outlives the kubelet.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime};

use nix::sys::signal::{killpg, signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
use nix::unistd::{fork, setsid, ForkResult, Pid};

use crate::clock;
use crate::logs::{self, CriWriter};
use crate::procfs::{self, ProcRef};
use crate::runtime::{write_json_atomic, ExitRecord, RunningRecord, ShimRecord, ShimSpec};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Entry point for argv[0] == `standin-shim`; the current dir is the container's state dir.
/// Returns the process exit code.
pub fn main() -> i32 {
    // Detach: the launcher (the kubelet's child) exits at once, the shim lives on.
    // SAFETY: nothing else runs in this process yet (no threads were started).
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => return 0,
        Ok(ForkResult::Child) => {}
        Err(e) => {
            eprintln!("standin-shim: fork: {e}");
            return 1;
        }
    }
    let _ = setsid();
    // The kubelet blocks the signals it waits for; the shim must not inherit that.
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // SAFETY: setting dispositions to SIG_IGN installs no handler code.
    unsafe {
        let _ = signal(Signal::SIGHUP, SigHandler::SigIgn);
        let _ = signal(Signal::SIGINT, SigHandler::SigIgn);
    }
    let _ = nix::sys::prctl::set_name(c"standin-shim");
    let dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    match run(&dir) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("standin-shim: {e}");
            1
        }
    }
}

fn run(dir: &Path) -> Result<(), String> {
    let me = ProcRef::of(std::process::id() as i32).ok_or("cannot read own /proc entry")?;
    write_json_atomic(
        &dir.join("shim.json"),
        &ShimRecord {
            shim: me,
            boot_id: procfs::boot_id(),
        },
    )
    .map_err(|e| format!("write shim.json: {e}"))?;
    let bytes = std::fs::read(dir.join("spec.json")).map_err(|e| format!("read spec.json: {e}"))?;
    let spec: ShimSpec =
        serde_json::from_slice(&bytes).map_err(|e| format!("parse spec.json: {e}"))?;
    let exit = match start(&spec) {
        Ok(started) => supervise(dir, started),
        Err(message) => ExitRecord {
            exit_code: 128,
            signal: None,
            reason: "StartError".to_string(),
            message,
            finished_unix_nanos: clock::unix_nanos(SystemTime::now()),
        },
    };
    write_json_atomic(&dir.join("exit.json"), &exit).map_err(|e| format!("write exit.json: {e}"))
}

struct Started {
    child: std::process::Child,
    writer: Arc<CriWriter>,
    spec_started: SystemTime,
}

/// The container's environment: a container-like default PATH/HOME/HOSTNAME plus the manifest's env.
fn environment(spec: &ShimSpec) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".to_string(), DEFAULT_PATH.to_string()),
        ("HOME".to_string(), "/root".to_string()),
    ];
    if let Ok(h) = nix::unistd::gethostname() {
        env.push(("HOSTNAME".to_string(), h.to_string_lossy().to_string()));
    }
    for (k, v) in &spec.container.env {
        env.retain(|(name, _)| name != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

/// Finds `program` in the container's PATH, as runc does.
fn lookup(program: &str, path_var: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return if is_exec(&p) {
            Ok(p)
        } else {
            Err(format!(
                "exec: {program:?}: stat {program}: no such file or directory"
            ))
        };
    }
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| is_exec(p))
        .ok_or_else(|| format!("exec: {program:?}: executable file not found in $PATH"))
}

/// A bind mount prepared before fork (no allocation happens between fork and exec).
struct BindMount {
    source: CString,
    target: CString,
    read_only: bool,
}

fn bind_mounts(spec: &ShimSpec) -> Result<Vec<BindMount>, String> {
    let mut out = Vec::new();
    for m in &spec.container.mounts {
        let host = Path::new(&m.host_path);
        let target = Path::new(&m.container_path);
        if host == target && !m.read_only {
            continue; // the host path is already where the container expects it
        }
        if host.is_dir() {
            std::fs::create_dir_all(target)
                .map_err(|e| format!("mkdir {}: {e}", target.display()))?;
        } else if host.exists() && !target.exists() {
            if let Some(parent) = target.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            std::fs::File::create(target)
                .map_err(|e| format!("create {}: {e}", target.display()))?;
        }
        let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|e| e.to_string());
        out.push(BindMount {
            source: c(host)?,
            target: c(target)?,
            read_only: m.read_only,
        });
    }
    Ok(out)
}

/// In the forked child: a fresh signal state, as a container's first process gets (no blocked
/// signals, default dispositions; the shim ignores SIGHUP/SIGINT and Rust ignores SIGPIPE).
fn reset_signals() {
    // SAFETY: sigemptyset/sigprocmask/signal are async-signal-safe and get valid arguments.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }
}

/// In the forked child: a private mount namespace with the container's bind mounts.
fn apply_mounts(mounts: &[BindMount]) -> std::io::Result<()> {
    if mounts.is_empty() {
        return Ok(());
    }
    let err = std::io::Error::last_os_error;
    // SAFETY: plain syscalls on pointers to CStrings that outlive the calls.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(err());
        }
        let none = std::ptr::null();
        if libc::mount(
            none,
            c"/".as_ptr(),
            none,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(err());
        }
        for m in mounts {
            let flags = libc::MS_BIND | libc::MS_REC;
            if libc::mount(
                m.source.as_ptr(),
                m.target.as_ptr(),
                none,
                flags,
                std::ptr::null(),
            ) != 0
            {
                return Err(err());
            }
            if m.read_only {
                let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
                if libc::mount(
                    m.source.as_ptr(),
                    m.target.as_ptr(),
                    none,
                    flags,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(err());
                }
            }
        }
    }
    Ok(())
}

fn start(spec: &ShimSpec) -> Result<Started, String> {
    let c = &spec.container;
    let writer = Arc::new(
        CriWriter::open(&spec.log_path)
            .map_err(|e| format!("open log {}: {e}", spec.log_path.display()))?,
    );
    let program = c.argv.first().ok_or(
        "no command: the stand-in cannot run an image's entrypoint, the container needs `command:`",
    )?;
    let env = environment(spec);
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or(DEFAULT_PATH);
    let exe = lookup(program, path_var)?;
    let cwd = PathBuf::from(c.working_dir.as_deref().unwrap_or("/"));
    std::fs::create_dir_all(&cwd).map_err(|e| format!("chdir to cwd ({}): {e}", cwd.display()))?;
    let mounts = bind_mounts(spec)?;
    let mut cmd = Command::new(&exe);
    cmd.arg0(program)
        .args(&c.argv[1..])
        .env_clear()
        .envs(env)
        .current_dir(&cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: reset_signals and apply_mounts only make syscalls on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            reset_signals();
            apply_mounts(&mounts)
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("failed to start container process: {e}"))?;
    Ok(Started {
        child,
        writer,
        spec_started: SystemTime::now(),
    })
}

fn supervise(dir: &Path, mut s: Started) -> ExitRecord {
    let pid = s.child.id() as i32;
    if let Some(container) = ProcRef::of_child(pid) {
        let _ = write_json_atomic(
            &dir.join("running.json"),
            &RunningRecord {
                container,
                started_unix_nanos: clock::unix_nanos(s.spec_started),
            },
        );
    }
    let (done_tx, done_rx) = mpsc::channel();
    let mut pumps = 0;
    if let Some(out) = s.child.stdout.take() {
        let (w, tx) = (s.writer.clone(), done_tx.clone());
        std::thread::spawn(move || {
            logs::pump(out, "stdout", &w);
            let _ = tx.send(());
        });
        pumps += 1;
    }
    if let Some(err) = s.child.stderr.take() {
        let (w, tx) = (s.writer.clone(), done_tx.clone());
        std::thread::spawn(move || {
            logs::pump(err, "stderr", &w);
            let _ = tx.send(());
        });
        pumps += 1;
    }
    let status = s.child.wait();
    // The container's main process is gone: its remaining processes go with it, as when a
    // runtime tears down a container's cgroup.
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    let deadline = SystemTime::now() + Duration::from_secs(2);
    for _ in 0..pumps {
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    let finished_unix_nanos = clock::unix_nanos(SystemTime::now());
    match status {
        Ok(st) => {
            let (exit_code, signal) = match (st.code(), st.signal()) {
                (Some(code), _) => (code, None),
                (None, Some(sig)) => (128 + sig, Some(sig)),
                (None, None) => (255, None),
            };
            ExitRecord {
                exit_code,
                signal,
                reason: if exit_code == 0 { "Completed" } else { "Error" }.to_string(),
                message: String::new(),
                finished_unix_nanos,
            }
        }
        Err(e) => ExitRecord {
            exit_code: 255,
            signal: None,
            reason: "Unknown".to_string(),
            message: format!("wait: {e}"),
            finished_unix_nanos,
        },
    }
}
