//! The kubelet stand-in as a lab sees it, with real processes (`/bin/sh -c ...`): start and
//! CRI logs, crash-loop back-off, manifest edit / removal, malformed manifests, hostPath
//! volumes, start errors, and containers outliving a stand-in restart.

mod common;

use std::time::Duration;

use common::*;

fn cri_line_ok(line: &str, stream: &str, text: &str) -> bool {
    // 2026-11-25T12:00:00.000000000Z stdout F <line>
    let mut parts = line.splitn(4, ' ');
    let ts = parts.next().unwrap_or("");
    ts.len() == 30
        && ts.ends_with('Z')
        && ts.as_bytes()[10] == b'T'
        && ts.as_bytes()[19] == b'.'
        && parts.next() == Some(stream)
        && parts.next() == Some("F")
        && parts.next() == Some(text)
}

#[test]
fn pod_starts_and_its_output_lands_in_the_cri_log() {
    let k = Standin::start(&[]);
    k.write_manifest(
        "web.yaml",
        &sh_pod("web", "echo hello-out; echo hello-err >&2; exec sleep 300"),
    );
    let pid = wait_for(15, "web running", || k.running_pid("web"));
    assert!(alive(pid));
    let log = wait_for(10, "both log lines", || {
        let log = k.read_log("web", "web", 0);
        (log.lines().count() >= 2).then_some(log)
    });
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines.iter().any(|l| cri_line_ok(l, "stdout", "hello-out")),
        "{log}"
    );
    assert!(
        lines.iter().any(|l| cri_line_ok(l, "stderr", "hello-err")),
        "{log}"
    );

    let pod = k.pod("web").expect("pod listed");
    assert_eq!(pod["namespace"], "kube-system");
    assert_eq!(pod["phase"], "Running");
    assert_eq!(pod["uid"].as_str().map(str::len), Some(32));
    assert!(pod["manifest"]
        .as_str()
        .is_some_and(|m| m.ends_with("manifests/web.yaml")));
    let c = &pod["containers"][0];
    assert_eq!(c["restart_count"], 0);
    assert_eq!(c["image"], "registry.k8s.io/busybox:1.36");
    assert!(c["started_at"].as_str().is_some_and(|s| s.ends_with('Z')));
    assert!(k.status()["updated"]
        .as_str()
        .is_some_and(|s| s.ends_with('Z')));
    assert_eq!(k.status()["node"], NODE);

    // /var/log/containers-style symlink to the same file.
    let links: Vec<_> = std::fs::read_dir(k.path("containers"))
        .expect("link dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        links
            .iter()
            .any(|l| l.starts_with("web-testnode_kube-system_web-") && l.ends_with(".log")),
        "{links:?}"
    );

    let journal = k.journal();
    assert!(journal.contains("kubelet STAND-IN"), "{journal}");
    assert!(
        journal.contains(r#""SyncLoop ADD" source="file" pods=["kube-system/web-testnode"]"#),
        "{journal}"
    );
    assert!(
        journal.contains(r#""Container started" pod="kube-system/web-testnode""#),
        "{journal}"
    );
    assert!(
        journal.contains("Image is not pulled by the stand-in"),
        "{journal}"
    );
    drop(k);
    assert!(
        !alive(pid),
        "container {pid} survived the test's stand-in stop"
    );
}

#[test]
fn crash_loop_restarts_with_growing_back_off() {
    let k = Standin::start(&["--backoff-base", "200ms"]);
    k.write_manifest("crash.yaml", &sh_pod("crash", "echo boom; exit 1"));
    let mut saw_backoff = false;
    wait_for(30, "restart_count >= 5", || {
        let c = k.container("crash")?;
        if c["state"] == "waiting" && c["reason"] == "CrashLoopBackOff" {
            saw_backoff = true;
            assert_eq!(c["exit_code"], 1);
            assert_eq!(c["pid"], 0);
        }
        (c["restart_count"].as_u64()? >= 5).then_some(())
    });
    assert!(saw_backoff, "status never showed CrashLoopBackOff");
    assert_eq!(
        k.pod("crash").map(|p| p["phase"].clone()),
        Some("Running".into())
    );

    let journal = k.journal();
    for b in ["200ms", "400ms", "800ms", "1.6s"] {
        let line = format!(
            "back-off {b} restarting failed container=crash pod=crash-testnode_kube-system("
        );
        assert!(journal.contains(&line), "missing {line:?} in\n{journal}");
    }
    assert!(journal
        .contains("Back-off restarting failed container crash in pod crash-testnode_kube-system("));
    assert!(
        journal.contains(
            r#"exitCode=1 pod="kube-system/crash-testnode" containerName="crash" reason="Error""#
        ),
        "{journal}"
    );

    // Gaps between starts: the first restart comes at once, then at least 200, 400, 800 ms.
    let starts: Vec<f64> = journal
        .lines()
        .filter(|l| l.contains("\"Container started\"") && l.contains("containerName=\"crash\""))
        .filter_map(started_at_seconds)
        .collect();
    assert!(starts.len() >= 5, "{journal}");
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    for (i, min) in [(1, 0.2), (2, 0.4), (3, 0.8)] {
        assert!(gaps[i] >= min, "gap {i} {gaps:?}");
    }
    assert!(gaps[3] > gaps[1], "back-off must grow: {gaps:?}");

    // One log file per run; the kubelet keeps the current and the previous one.
    let n = k
        .container("crash")
        .and_then(|c| c["restart_count"].as_u64())
        .unwrap_or(0);
    let dir = k
        .log_path("crash", "crash", 0)
        .and_then(|p| p.parent().map(|d| d.to_path_buf()));
    let dir = dir.expect("log dir");
    wait_for(10, "previous run's log", || {
        std::fs::read_to_string(dir.join(format!("{}.log", n - 1)))
            .ok()
            .filter(|l| l.contains(" stdout F boom"))
    });
    assert!(!dir.join("0.log").exists(), "old logs are pruned");
}

#[test]
fn editing_the_manifest_restarts_the_pod_and_removing_it_stops_it() {
    let k = Standin::start(&[]);
    k.write_manifest("app.yaml", &sh_pod("app", "echo v1; exec sleep 300"));
    let pid1 = wait_for(15, "app running", || k.running_pid("app"));
    let uid1 = k.pod("app").map(|p| p["uid"].clone()).expect("uid");
    let logdir1 = k.log_path("app", "app", 0).expect("log path");
    wait_for(10, "v1 log", || {
        k.read_log("app", "app", 0)
            .contains("stdout F v1")
            .then_some(())
    });

    // A comment does not change the decoded pod: no restart (same UID, same process).
    k.write_manifest(
        "app.yaml",
        &format!("# reviewed\n{}", sh_pod("app", "echo v1; exec sleep 300")),
    );
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(k.running_pid("app"), Some(pid1));

    k.write_manifest("app.yaml", &sh_pod("app", "echo v2; exec sleep 300"));
    let pid2 = wait_for(20, "app restarted", || {
        k.running_pid("app").filter(|p| *p != pid1)
    });
    assert!(!alive(pid1), "old container still running");
    assert_ne!(k.pod("app").map(|p| p["uid"].clone()), Some(uid1));
    wait_for(10, "v2 log", || {
        k.read_log("app", "app", 0)
            .contains("stdout F v2")
            .then_some(())
    });
    assert!(
        !logdir1.exists(),
        "the old pod's log dir is removed with the old pod"
    );
    let journal = k.journal();
    assert!(
        journal.contains(r#""SyncLoop REMOVE" source="file" pods=["kube-system/app-testnode"]"#),
        "{journal}"
    );
    assert!(
        journal
            .contains(r#""Killing container with a grace period" pod="kube-system/app-testnode""#),
        "{journal}"
    );
    assert!(journal.contains("gracePeriod=5"), "{journal}");
    assert!(journal.contains(r#"exitCode=143 pod="kube-system/app-testnode" containerName="app" reason="Error" signal="SIGTERM""#), "{journal}");

    // Moving the manifest out of the directory stops the pod.
    std::fs::rename(k.manifests().join("app.yaml"), k.path("app.yaml.away")).expect("move away");
    wait_for(15, "pod gone from status", || {
        k.pod("app").is_none().then_some(())
    });
    wait_for(5, "process gone", || (!alive(pid2)).then_some(()));
    // ... and moving it back starts it again.
    std::fs::rename(k.path("app.yaml.away"), k.manifests().join("app.yaml")).expect("move back");
    let pid3 = wait_for(15, "app back", || k.running_pid("app"));
    assert_ne!(pid3, pid2);
}

#[test]
fn a_malformed_manifest_is_logged_and_skipped_while_other_pods_run() {
    let k = Standin::start(&[]);
    k.write_manifest("good.yaml", &sh_pod("good", "exec sleep 300"));
    k.write_manifest(
        "broken.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: broken\nspec:\n  containers: [\n",
    );
    k.write_manifest(
        "notapod.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n",
    );
    std::fs::write(k.manifests().join(".hidden.yaml"), "not: [valid").expect("hidden file");
    let pid = wait_for(15, "good running", || k.running_pid("good"));
    let journal = wait_for(10, "parse errors logged", || {
        let j = k.journal();
        (j.contains("broken.yaml") && j.contains("notapod.yaml")).then_some(j)
    });
    let line = journal
        .lines()
        .find(|l| l.contains("Could not process manifest file") && l.contains("broken.yaml"))
        .expect("error line");
    assert!(line.starts_with('E'), "{line}");
    assert!(line.contains("line "), "error has a location: {line}");
    assert!(
        !journal.contains(".hidden.yaml"),
        "hidden files are ignored"
    );
    // Logged once, not on every scan.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        k.journal().matches("broken.yaml: ").count(),
        1,
        "{}",
        k.journal()
    );
    assert_eq!(k.running_pid("good"), Some(pid));
    assert_eq!(k.status()["pods"].as_array().map(Vec::len), Some(1));

    // Breaking a running pod's manifest stops that pod (it is no longer a valid desired pod),
    // like the kubelet; fixing it starts it again.
    k.write_manifest(
        "good.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: good\n",
    );
    wait_for(15, "good stopped", || k.pod("good").is_none().then_some(()));
    wait_for(5, "good process gone", || (!alive(pid)).then_some(()));
    k.write_manifest("good.yaml", &sh_pod("good", "exec sleep 300"));
    wait_for(15, "good running again", || k.running_pid("good"));
    let code = {
        let mut k = k;
        k.stop()
    };
    assert_eq!(code, Some(0));
}

#[test]
fn hostpath_volumes_are_mounted_at_the_container_path() {
    let k = Standin::start(&[]);
    let data = k.path("host-data");
    std::fs::create_dir_all(&data).expect("host dir");
    std::fs::write(data.join("marker-from-host"), "x").expect("marker");
    let target = k.path("in-container");
    let created = k.path("created-by-kubelet");
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: vol
  namespace: kube-system
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 5
  containers:
  - name: vol
    image: registry.k8s.io/busybox:1.36
    command: ["/bin/sh", "-c", "ls {target}; touch {target}/written-inside; exec sleep 300"]
    volumeMounts:
    - name: data
      mountPath: {target}
    - name: made
      mountPath: {created}
  volumes:
  - name: data
    hostPath:
      path: {data}
      type: Directory
  - name: made
    hostPath:
      path: {created}
      type: DirectoryOrCreate
"#,
        target = target.display(),
        data = data.display(),
        created = created.display()
    );
    k.write_manifest("vol.yaml", &manifest);
    wait_for(15, "vol running", || k.running_pid("vol"));
    wait_for(10, "ls output", || {
        k.read_log("vol", "vol", 0)
            .contains("stdout F marker-from-host")
            .then_some(())
    });
    assert!(created.is_dir(), "DirectoryOrCreate creates the host dir");
    wait_for(5, "write through the mount", || {
        data.join("written-inside").exists().then_some(())
    });
    // The mount is private to the container: the host path itself stays empty.
    assert!(!target.join("marker-from-host").exists());

    // type: Directory on a missing path keeps the pod from starting, with the kubelet's error.
    let missing = manifest.replace(
        &format!("path: {}\n", data.display()),
        "path: /nonexistent-breakfix-dir\n",
    );
    k.write_manifest("vol.yaml", &missing);
    wait_for(15, "volume error", || {
        k.journal()
            .contains("hostPath type check failed: /nonexistent-breakfix-dir is not a directory")
            .then_some(())
    });
    let c = wait_for(10, "pod waiting", || {
        k.container("vol").filter(|c| c["state"] == "waiting")
    });
    assert_eq!(c["reason"], "ContainerCreating");
    assert_eq!(
        k.pod("vol").map(|p| p["phase"].clone()),
        Some("Pending".into())
    );
}

#[test]
fn a_missing_binary_is_a_start_error_in_crash_loop() {
    let k = Standin::start(&["--backoff-base", "200ms"]);
    let manifest = sh_pod("nobin", "x").replace("/bin/sh", "no-such-binary-breakfix");
    k.write_manifest("nobin.yaml", &manifest);
    wait_for(15, "restarts", || {
        k.container("nobin")
            .filter(|c| c["restart_count"].as_u64() >= Some(2))
    });
    let c = k.container("nobin").expect("container");
    assert_eq!(c["exit_code"], 128);
    let journal = k.journal();
    assert!(journal.contains(r#"reason="StartError" message="exec: \"no-such-binary-breakfix\": executable file not found in $PATH""#), "{journal}");
}

#[test]
fn containers_outlive_a_stand_in_restart_and_are_adopted() {
    let mut k = Standin::new_dirs();
    k.spawn(false, &[]);
    k.write_manifest("keep.yaml", &sh_pod("keep", "exec sleep 300"));
    let pid = wait_for(15, "keep running", || k.running_pid("keep"));
    // Restart without --stop-pods-on-exit, as `systemctl restart kubelet` with the default unit.
    assert_eq!(k.stop(), Some(0));
    k.spawn(false, &[]);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(k.stop(), Some(0), "SIGTERM: exit 0");
    assert!(
        alive(pid),
        "the container must survive the stand-in stopping"
    );
    assert!(k.journal().contains("Static pod containers keep running"));

    k.spawn(false, &[]);
    wait_for(10, "adopted", || {
        k.journal()
            .contains("Adopted running container")
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        k.running_pid("keep"),
        Some(pid),
        "same process, not restarted"
    );
    assert_eq!(
        k.container("keep").map(|c| c["restart_count"].clone()),
        Some(0.into())
    );

    // A manifest removed while the stand-in was down: its pod is stopped on start.
    assert_eq!(k.stop(), Some(0));
    assert!(alive(pid));
    std::fs::remove_file(k.manifests().join("keep.yaml")).expect("rm manifest");
    k.spawn(true, &[]);
    wait_for(15, "orphan stopped", || (!alive(pid)).then_some(()));
    assert!(k
        .journal()
        .contains("Stopping containers of a pod whose manifest is gone"));
}

#[test]
fn help_and_version_say_stand_in() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubelet-standin"))
        .arg("--version")
        .output()
        .expect("run");
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(
        v.contains("stand-in") && v.contains("Kubernetes v1.33"),
        "{v}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubelet-standin"))
        .arg("--help")
        .output()
        .expect("run");
    let h = String::from_utf8_lossy(&out.stdout);
    assert!(h.contains("STAND-IN") && h.contains("TEST-ONLY"), "{h}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubelet-standin"))
        .arg("--no-such-flag")
        .output()
        .expect("run");
    assert!(!out.status.success());
}
