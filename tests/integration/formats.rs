//! Output and on-disk formats pinned by snapshots (pure tier): the graded report in its human
//! form (colour stripped) and its JSON form for hand-built results, and the journal's entry
//! format (`<state>/journal/<node>/<id>.json` and the node's copy) with one entry per undo
//! kind, fixed ids, timestamps and node identities. A change to any of them shows as a
//! snapshot diff; entries written by an older breakfix must still be read by `reset`.

use std::time::Duration;

use base64::Engine as _;
use breakfix::engine::verdict::{Check, Status, Verdict};
use breakfix::fault::disk_fill::DiskFillUndo;
use breakfix::fault::etcd_keys::{EtcdKeysUndo, SavedKey};
use breakfix::fault::etcd_quota::EtcdQuotaUndo;
use breakfix::fault::file::FileUndo;
use breakfix::fault::slow_disk::{CgroupWrite, SlowDiskUndo};
use breakfix::fault::{command::CommandUndo, manifest::MoveUndo, netem::NetemUndo};
use breakfix::fault::{systemd::SystemdUndo, Undo};
use breakfix::journal::identity::NodeIdentity;
use breakfix::journal::stale::StaleEntry;
use breakfix::journal::{decode_stream, Entry};
use breakfix::node::etcd::EtcdTarget;
use breakfix::report::{Outcome, Report};

// ---- the graded report ----

/// A verdict with the fields every case shares.
fn verdict(probe: &str, kind: &str, status: Status, checks: Vec<Check>) -> Verdict {
    Verdict {
        probe: probe.into(),
        node: "controlplane".into(),
        kind: kind.into(),
        description: None,
        status,
        checks,
        note: None,
        attempts: 1,
        duration: Duration::from_millis(120),
    }
}

fn check(fact: &str, expected: &str, found: &str, ok: bool) -> Check {
    Check {
        fact: fact.into(),
        expected: expected.into(),
        found: found.into(),
        ok,
    }
}

/// A failed `run --solution`: a confirm probe that failed as intended, and verify probes that
/// pass, fail (with a note), skip, and error with node output full of terminal controls and
/// longer than a human report shows.
fn failed_run() -> Report {
    let confirm = vec![Verdict {
        description: Some("etcd answers on its client port".into()),
        ..verdict(
            "etcd-healthy",
            "etcd",
            Status::Fail,
            vec![
                check("health", "equals true", "false", false),
                check("members", "equals 1", "1", true),
            ],
        )
    }];
    let verify = vec![
        verdict(
            "etcd-unit-active",
            "systemd",
            Status::Pass,
            vec![check("active", "equals active", "active", true)],
        ),
        Verdict {
            note: Some(
                "context deadline exceeded (x509: certificate signed by unknown authority)".into(),
            ),
            attempts: 3,
            duration: Duration::from_millis(2500),
            ..verdict(
                "etcd-healthy",
                "etcd",
                Status::Fail,
                vec![check("health", "equals true", "false", false)],
            )
        },
        Verdict {
            note: Some("needs etcd-healthy, which did not pass".into()),
            duration: Duration::ZERO,
            ..verdict("apiserver-ready", "http", Status::Skip, vec![])
        },
        Verdict {
            node: "node01".into(),
            note: Some("exit 1: \u{1b}]0;pwned\u{7}timed out\r".into()),
            duration: Duration::from_secs(5),
            ..verdict(
                "kubelet-log-clean",
                "command",
                Status::Error,
                vec![check(
                    "stdout",
                    "does not contain \u{1b}[31merror",
                    &format!("\u{1b}[2J{}", "E1201 kubelet: error\n".repeat(30)),
                    false,
                )],
            )
        },
    ];
    Report {
        scenario: "etcd-service-stopped".into(),
        title: "etcd is down and the API server with it".into(),
        mode: "run".into(),
        outcome: Report::grade(&verify),
        confirm,
        verify,
        time_to_fix: Some(12.345),
        solution_applied: true,
        duration: 45.678,
    }
}

/// A passing `check`: no confirm section, no time to fix.
fn passed_check() -> Report {
    let verify = vec![
        verdict(
            "etcd-unit-active",
            "systemd",
            Status::Pass,
            vec![check("active", "equals active", "active", true)],
        ),
        Verdict {
            description: Some("every key is back".into()),
            ..verdict(
                "keys-restored",
                "etcd",
                Status::Pass,
                vec![check("key_count", "at least 120", "131", true)],
            )
        },
    ];
    Report {
        scenario: "etcd-keys-deleted".into(),
        title: "someone deleted the deployments".into(),
        mode: "check".into(),
        outcome: Report::grade(&verify),
        confirm: vec![],
        verify,
        time_to_fix: None,
        solution_applied: false,
        duration: 1.5,
    }
}

/// The human form as a terminal without colour shows it.
fn human(r: &Report) -> String {
    let mut out = Vec::new();
    r.print_human(&mut out).expect("print to memory");
    console::strip_ansi_codes(&String::from_utf8(out).expect("utf-8")).to_string()
}

#[test]
fn report_human_form_of_a_failed_run() {
    let r = failed_run();
    assert_eq!(r.outcome, Outcome::Fail);
    insta::assert_snapshot!("report-failed-run", human(&r));
}

#[test]
fn report_human_form_of_a_passed_check() {
    let r = passed_check();
    assert_eq!(r.outcome, Outcome::Pass);
    insta::assert_snapshot!("report-passed-check", human(&r));
}

#[test]
fn report_json_form_of_a_failed_run() {
    let json = serde_json::to_string_pretty(&failed_run()).expect("json");
    insta::assert_snapshot!("report-failed-run.json", json);
}

#[test]
fn report_json_form_of_a_passed_check() {
    let json = serde_json::to_string_pretty(&passed_check()).expect("json");
    insta::assert_snapshot!("report-passed-check.json", json);
}

// ---- the journal ----

/// 2026-01-01T00:00:00Z, the clock of every entry below.
const RECORDED_AT: u64 = 1_767_225_600;

fn etcd() -> EtcdTarget {
    EtcdTarget {
        endpoint: "https://198.18.0.10:2379".into(),
        ca_file: "/etc/kubernetes/pki/etcd/ca.crt".into(),
        cert_file: "/etc/kubernetes/pki/apiserver-etcd-client.crt".into(),
        key_file: "/etc/kubernetes/pki/apiserver-etcd-client.key".into(),
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One undo per kind (and per slow-disk mode), named as the snapshots are.
fn undos() -> Vec<(&'static str, Undo)> {
    use sha2::Digest as _;
    let conf = b"name=app\nlisten=127.0.0.1:2379\n";
    vec![
        (
            "systemd",
            Undo::Systemd(SystemdUndo {
                unit: "etcd.service".into(),
                was_active: true,
                was_enabled: "enabled".into(),
            }),
        ),
        (
            "file",
            Undo::File(FileUndo {
                path: "/etc/default/etcd".into(),
                pre_image: Some(b64(conf)),
                sha256: Some(hex::encode(sha2::Sha256::digest(conf))),
                then: Some("systemctl restart etcd".into()),
            }),
        ),
        (
            "file-absent",
            Undo::File(FileUndo {
                path: "/etc/kubernetes/manifests/rogue.yaml".into(),
                pre_image: None,
                sha256: None,
                then: None,
            }),
        ),
        (
            "command",
            Undo::Command(CommandUndo::new(
                "ip link set cni0 up".into(),
                Some(std::time::Duration::from_secs(150)),
            )),
        ),
        (
            "move",
            Undo::Move(MoveUndo {
                from: "/etc/kubernetes/manifests/etcd.yaml".into(),
                to: "/etc/kubernetes/etcd.yaml.breakfix".into(),
            }),
        ),
        (
            "slow_disk-fsync_delay",
            Undo::SlowDisk(SlowDiskUndo::FsyncDelay {
                pid_file: "/run/breakfix/slow-disk-01767225600000000000.pid".into(),
                marker: "01767225600000000000".into(),
                target_pid: 4242,
            }),
        ),
        (
            "slow_disk-throttle",
            Undo::SlowDisk(SlowDiskUndo::Throttle {
                device: "7:0".into(),
                writes: vec![CgroupWrite {
                    file: "/sys/fs/cgroup/blkio/blkio.throttle.write_iops_device".into(),
                    restore: "7:0 0".into(),
                }],
            }),
        ),
        (
            "slow_disk-fio",
            Undo::SlowDisk(SlowDiskUndo::Fio {
                pid_file: "/run/breakfix/slow-disk-fio-01767225600000000000.pid".into(),
                marker: "01767225600000000000".into(),
                job_file: "/run/breakfix/slow-disk-fio-01767225600000000000.fio".into(),
                dir: "/var/lib/etcd/.breakfix-fio-01767225600000000000".into(),
            }),
        ),
        (
            "netem",
            Undo::Netem(NetemUndo {
                interface: "host0".into(),
                show: "qdisc noqueue 0: root refcnt 2 \n".into(),
            }),
        ),
        (
            "etcd_quota",
            Undo::EtcdQuota(EtcdQuotaUndo {
                etcd: etcd(),
                prefix: "/breakfix/filler/".into(),
                db_size_before: 20_480_000,
            }),
        ),
        (
            "etcd_keys",
            Undo::EtcdKeys(EtcdKeysUndo {
                etcd: etcd(),
                deleted: "/registry/configmaps/default/".into(),
                keys: vec![SavedKey {
                    key: b64(b"/registry/configmaps/default/critical-app"),
                    value: b64(b"k8s\0\n\x0fv1\x12\tConfigMap"),
                }],
            }),
        ),
        (
            "disk_fill",
            Undo::DiskFill(DiskFillUndo {
                file: "/var/lib/etcd/.breakfix-fill-1764979200000000000".into(),
                bytes: 788_842_496,
            }),
        ),
    ]
}

/// The entry [`breakfix::journal::Journal::record`] would write for `undo` (the n-th fault
/// of the break), with a fixed clock and identity.
fn entry(n: u64, undo: Undo) -> Entry {
    Entry {
        id: format!("{:020}", RECORDED_AT * 1_000_000_000 + n),
        node: "controlplane".into(),
        scenario: "etcd-service-stopped".into(),
        fault: format!("fault {n}"),
        recorded_at: RECORDED_AT,
        identity: Some(NodeIdentity {
            machine_id: Some("5f2b0c3c8d6e4a17b2f0e1d2c3b4a596".into()),
            host_key: Some(
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJyZWFrZml4LXNuYXBzaG90LWhvc3Qta2V5".into(),
            ),
            etcd_cluster_id: undo.etcd_target().map(|_| "cdf818194e3a8c32".into()),
        }),
        undo,
    }
}

#[test]
fn journal_entry_of_every_undo_kind() {
    let mut stream = String::new();
    let mut entries = Vec::new();
    for (n, (name, undo)) in undos().into_iter().enumerate() {
        let e = entry(n as u64 + 1, undo);
        // As `Journal::record` writes it, locally and on the node.
        let json = String::from_utf8(serde_json::to_vec_pretty(&e).expect("json")).expect("utf-8");
        insta::assert_snapshot!(format!("journal-{name}"), json);
        assert_eq!(
            serde_json::from_str::<Entry>(&json).expect("read back"),
            e,
            "{name}"
        );
        // What `reset` reads from the node: the files one after another.
        stream.push_str(&json);
        stream.push('\n');
        entries.push(e);
    }
    assert_eq!(
        decode_stream(&stream, "controlplane").expect("the node's stream"),
        entries
    );
}

#[test]
fn journal_entry_without_an_identity_and_a_stale_entry() {
    // Written by a breakfix from before identities: still read (and then set aside).
    let old = Entry {
        identity: None,
        ..entry(1, undos().swap_remove(0).1)
    };
    let json = serde_json::to_string_pretty(&old).expect("json");
    insta::assert_snapshot!("journal-without-identity", json);
    assert_eq!(
        serde_json::from_str::<Entry>(&json).expect("read back"),
        old
    );

    let stale = StaleEntry {
        entry: entry(2, undos().swap_remove(1).1),
        set_aside_at: RECORDED_AT + 3600,
        reason: "another machine: machine-id was 5f2b0c3c8d6e4a17b2f0e1d2c3b4a596, the node now \
                 has 0a1b2c3d4e5f60718293a4b5c6d7e8f9"
            .into(),
    };
    let json = serde_json::to_string_pretty(&stale).expect("json");
    insta::assert_snapshot!("journal-stale", json);
    assert_eq!(
        serde_json::from_str::<StaleEntry>(&json).expect("read back"),
        stale
    );
}
