//! The command line behaves like kube-apiserver's: kubeadm's flags accepted, unknown flags
//! rejected with cobra's message, startup failures exit non-zero; help and version say
//! "stand-in".

mod common;

use std::process::Command;

use common::BIN;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run stand-in");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_flag_is_rejected() {
    let (code, _, err) = run(&["--etcd-server=https://127.0.0.1:2379"]);
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "Error: unknown flag: --etcd-server");
    let (code, _, err) = run(&["--insecure-port=8080"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown flag: --insecure-port"), "{err}");
}

#[test]
fn help_and_version_say_stand_in() {
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("Kubernetes v1.32.4"), "{out}");
    assert!(out.contains("stand-in"), "{out}");
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("STAND-IN"), "{out}");
    assert!(out.contains("--breakfix-nodes-file"), "{out}");
}

#[test]
fn startup_failures_exit_non_zero() {
    let (code, _, err) = run(&["--secure-port=6443"]);
    assert_eq!(code, 1);
    assert!(err.contains("--etcd-servers must be specified"), "{err}");
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = common::Pki::generate(dir.path());
    let (code, _, err) = run(&[
        "--etcd-servers=https://127.0.0.1:2379",
        "--etcd-cafile=/nonexistent/ca.crt",
        &format!("--tls-cert-file={}", pki.path("apiserver.crt")),
        &format!("--tls-private-key-file={}", pki.path("apiserver.key")),
        "--secure-port=0",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("must be between 1 and 65535"), "{err}");
    let (code, _, err) = run(&[
        "--etcd-servers=https://127.0.0.1:2379",
        "--etcd-cafile=/nonexistent/ca.crt",
        &format!("--tls-cert-file={}", pki.path("apiserver.crt")),
        &format!("--tls-private-key-file={}", pki.path("apiserver.key")),
        &format!("--secure-port={}", common::free_port()),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("open /nonexistent/ca.crt: No such file or directory"),
        "{err}"
    );
}
