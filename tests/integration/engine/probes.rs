//! Probes through node sessions, gathering facts without a process per fact: `file` (stat and
//! read over SFTP, owner names from /etc/passwd) and `port` (/proc/net/tcp) against the real
//! sshd fixture, `systemd` batching (one `systemctl` per node and round) against a stand-in
//! `systemctl` on the fixture, and `systemd` facts against the sandbox's real systemd 252.
//! The facts must be exactly what the per-probe commands used before gave.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use breakfix::engine::runner::{evaluate, EvalOptions, Sessions, Want};
use breakfix::engine::verdict::Status;
use breakfix::inventory::Inventory;
use breakfix::node::NodeSession;
use breakfix::plan::PlannedProbe;
use breakfix::probe::{Facts, Probe, ProbeCtx};
use serde_json::Value;

use crate::common::sshd::Sshd;

const T: Duration = Duration::from_secs(20);

fn probe(yaml: &str) -> Probe {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("probe YAML: {e}\n{yaml}"))
}

/// An inventory with the fixture as node `fixture`.
fn inventory(dir: &Path, sshd: &Sshd) -> Inventory {
    let p = dir.join("inventory.yaml");
    sshd.write_inventory(&p);
    Inventory::load(&p).expect("inventory")
}

async fn connect(sshd: &Sshd) -> NodeSession {
    NodeSession::connect(&sshd.node(), T)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", sshd.log_text()))
}

async fn gather(p: &Probe, s: &NodeSession, inv: &Inventory) -> Facts {
    let ctx = ProbeCtx {
        session: s,
        inventory: inv,
        timeout: T,
    };
    p.gather(&ctx)
        .await
        .unwrap_or_else(|e| panic!("gather {}: {e}", p.name()))
}

/// The facts the `file` probe gathered before SFTP, with its command.
async fn file_facts_by_command(s: &NodeSession, path: &str) -> BTreeMap<String, Value> {
    let p = breakfix::transport::shell_quote(path);
    let cmd = format!(
        "if [ -e {p} ]; then stat -L -c '%a %U:%G %s' {p}; sha256sum < {p} 2>/dev/null | cut -d' ' -f1; cat {p} 2>/dev/null; else echo missing; fi"
    );
    let out = s.exec(&cmd, T).await.expect("old command");
    let mut f = BTreeMap::new();
    let mut lines = out.stdout.splitn(3, '\n');
    let first = lines.next().unwrap_or("missing");
    if first == "missing" {
        f.insert("exists".into(), Value::from(false));
        return f;
    }
    let parts: Vec<&str> = first.split_whitespace().collect();
    f.insert("exists".into(), Value::from(true));
    f.insert("mode".into(), Value::from(format!("{:0>4}", parts[0])));
    f.insert("owner".into(), Value::from(parts[1]));
    f.insert(
        "size".into(),
        Value::from(parts[2].parse::<u64>().expect("size")),
    );
    let sum = lines.next().unwrap_or("").trim();
    if !sum.is_empty() {
        f.insert("sha256".into(), Value::from(sum));
        f.insert("contents".into(), Value::from(lines.next().unwrap_or("")));
    }
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn file_facts_over_sftp_equal_the_stat_and_sha256sum_commands() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = inventory(dir.path(), &sshd);
    let s = connect(&sshd).await;
    let d = dir.path();
    let conf = d.join("etcd.conf");
    std::fs::write(&conf, "name=cp\nlisten=127.0.0.1:2379\n").expect("write");
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let daemon = d.join("daemon.key");
    std::fs::write(&daemon, b"\x00\xffbinary\n").expect("write");
    std::os::unix::fs::chown(&daemon, Some(1), Some(1)).expect("chown");
    std::fs::set_permissions(&daemon, std::fs::Permissions::from_mode(0o4600)).expect("chmod");
    let nobody_knows = d.join("orphan.txt");
    std::fs::write(&nobody_knows, "x").expect("write");
    std::os::unix::fs::chown(&nobody_knows, Some(54321), Some(54321)).expect("chown");
    let link = d.join("link.conf");
    std::os::unix::fs::symlink(&conf, &link).expect("symlink");
    let empty = d.join("empty");
    std::fs::write(&empty, "").expect("write");

    let all = "{ exists: true, mode: \"0\", owner: x, size: 0, sha256: x, contents: x }";
    tokio::time::sleep(Duration::from_millis(200)).await;
    let commands = sshd.command_sessions();
    for path in [&conf, &daemon, &link, &empty, &d.join("missing")] {
        let path = path.to_str().expect("utf-8");
        let p = probe(&format!(
            "kind: file\nname: f\npath: {path}\nexpect: {all}\n"
        ));
        let got = gather(&p, &s, &inv).await;
        assert_eq!(got.values, file_facts_by_command(&s, path).await, "{path}");
    }
    // Root and daemon are in /etc/passwd: no command was needed (the comparisons ran one
    // command each).
    assert_eq!(sshd.command_sessions(), commands + 5, "{}", sshd.log_text());

    // An owner listed nowhere: `stat` on the node says UNKNOWN, as before.
    let path = nobody_knows.to_str().expect("utf-8");
    let p = probe(&format!(
        "kind: file\nname: f\npath: {path}\nexpect: {all}\n"
    ));
    let got = gather(&p, &s, &inv).await;
    assert_eq!(got.values["owner"], "UNKNOWN:UNKNOWN");
    assert_eq!(got.values, file_facts_by_command(&s, path).await);

    // A directory: stat facts only, nothing read.
    let path = d.to_str().expect("utf-8");
    let p = probe(&format!(
        "kind: file\nname: f\npath: {path}\nexpect: {{ exists: true, contents: x }}\n"
    ));
    let got = gather(&p, &s, &inv).await;
    assert_eq!(got.values["exists"], true);
    assert!(!got.values.contains_key("contents"), "{got:?}");

    // Only what is checked: no read (hence no sha256) for a mode check.
    let path = conf.to_str().expect("utf-8");
    let p = probe(&format!(
        "kind: file\nname: f\npath: {path}\nexpect: {{ mode: \"0640\" }}\n"
    ));
    let got = gather(&p, &s, &inv).await;
    assert_eq!(got.values["mode"], "0640");
    assert!(!got.values.contains_key("sha256") && !got.values.contains_key("contents"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn port_probe_reads_proc_net_and_notes_the_listener() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = inventory(dir.path(), &sshd);
    let s = connect(&sshd).await;
    let p = probe(&format!(
        "kind: port\nname: ssh\nport: {}\naddress: 127.0.0.1\nexpect: {{ listening: true }}\n",
        sshd.port
    ));
    let f = gather(&p, &s, &inv).await;
    assert_eq!(f.values["listening"], true);
    assert_eq!(
        f.note.as_deref(),
        Some(format!("listening on 127.0.0.1:{}", sshd.port).as_str())
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    // (the listener above is closed again; wait out the shared 500 ms listing)
    tokio::time::sleep(Duration::from_millis(600)).await;
    let p = probe(&format!(
        "kind: port\nname: closed\nport: {closed}\nexpect: {{ listening: false }}\n"
    ));
    let f = gather(&p, &s, &inv).await;
    assert_eq!(f.values["listening"], false);
    assert_eq!(f.note, None);
}

/// A stand-in for systemd 252's `systemctl is-active` / `is-enabled` with several units:
/// one line per unit, `is-enabled` stopping at the first unit that does not exist. Every
/// call is logged to `$HOME/systemctl.calls`; `$HOME/<unit>.active` overrides a state.
const SYSTEMCTL: &str = r#"#!/bin/sh
echo "$*" >> "$HOME/systemctl.calls"
cmd=$1; shift
[ "$1" = "--" ] && shift
for u in "$@"; do
  if [ "$cmd" = is-active ] && [ -f "$HOME/$u.active" ]; then cat "$HOME/$u.active"; continue; fi
  case "$cmd:$u" in
    is-active:missing*|is-active:masked*) echo inactive ;;
    is-enabled:missing*) echo "Failed to get unit file state for $u.service: No such file or directory" >&2; exit 1 ;;
    is-enabled:masked*) echo masked ;;
    is-active:failing*) echo failed ;;
    is-enabled:failing*) echo disabled ;;
    is-active:*) echo active ;;
    is-enabled:*) echo enabled ;;
  esac
done
"#;

fn planned(id: &str, yaml: &str) -> PlannedProbe {
    PlannedProbe {
        id: id.into(),
        node: "fixture".into(),
        probe: probe(&format!("{yaml}name: {id}\n")),
        needs: vec![],
    }
}

/// id -> (active, enabled) as checked, from the verdicts' found values.
async fn round(
    probes: &[PlannedProbe],
    sessions: &Sessions,
    inv: &Inventory,
) -> BTreeMap<String, Vec<String>> {
    let opts = EvalOptions {
        want: Want::Pass,
        patience: breakfix::engine::Patience::Once,
    };
    let verdicts = evaluate(probes, sessions, inv, opts).await;
    verdicts
        .into_iter()
        .map(|v| {
            assert_eq!(v.status, Status::Pass, "{v:?}");
            (v.probe, v.checks.into_iter().map(|c| c.found).collect())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs sshd")]
async fn systemd_probes_of_a_round_share_one_systemctl_command() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = inventory(dir.path(), &sshd);
    let stub = sshd.bin_dir().join("systemctl");
    std::fs::write(&stub, SYSTEMCTL).expect("write stub");
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let home = sshd.dir.path().join("home");
    let calls = || std::fs::read_to_string(home.join("systemctl.calls")).unwrap_or_default();
    let mut sessions = Sessions::new();
    sessions.insert("fixture".into(), connect(&sshd).await);

    let probes = vec![
        planned(
            "etcd",
            "kind: systemd\nunit: etcd\nexpect: { active: active, enabled: enabled }\n",
        ),
        planned("ssh", "kind: systemd\nunit: ssh\nexpect: { active: active }\n"),
        planned(
            "masked",
            "kind: systemd\nunit: masked-x.service\nexpect: { active: inactive, enabled: masked }\n",
        ),
        planned(
            "failing",
            "kind: systemd\nunit: failing-y\nexpect: { active: failed }\n",
        ),
        planned(
            "port",
            &format!("kind: port\nport: {}\nexpect: {{ listening: true }}\n", sshd.port),
        ),
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let commands = sshd.command_sessions();
    let found = round(&probes, &sessions, &inv).await;
    assert_eq!(found["etcd"], ["active", "enabled"]);
    assert_eq!(found["masked"], ["inactive", "masked"]);
    assert_eq!(found["failing"], ["failed"]);
    // One command for the four units: is-active for all, is-enabled for those checking it.
    assert_eq!(
        calls(),
        "is-active -- etcd failing-y masked-x.service ssh\nis-enabled -- etcd masked-x.service\n"
    );
    assert_eq!(sshd.command_sessions(), commands + 1, "{}", sshd.log_text());

    // The next round sees a change made right after the last one: nothing is reused.
    std::fs::write(home.join("etcd.active"), "activating\n").expect("write");
    let p = vec![planned(
        "etcd",
        "kind: systemd\nunit: etcd\nexpect: { active: activating }\n",
    )];
    assert_eq!(round(&p, &sessions, &inv).await["etcd"], ["activating"]);

    // A missing unit stops `is-enabled` early: the batch is not guessed, its units are
    // asked one by one, and the facts are right.
    std::fs::remove_file(home.join("systemctl.calls")).expect("rm");
    let probes = vec![
        planned(
            "missing",
            "kind: systemd\nunit: missing-z\nexpect: { active: inactive, enabled: not-found }\n",
        ),
        planned(
            "ssh",
            "kind: systemd\nunit: ssh\nexpect: { active: active, enabled: enabled }\n",
        ),
    ];
    let found = round(&probes, &sessions, &inv).await;
    assert_eq!(found["missing"], ["inactive", "not-found"]);
    assert_eq!(found["ssh"], ["active", "enabled"]);
    assert_eq!(calls().lines().count(), 2 + 4, "{}", calls());
}

/// What the `systemd` probe gathered before batching: one command per unit.
async fn unit_facts_by_command(s: &NodeSession, unit: &str) -> (String, String) {
    let u = breakfix::transport::shell_quote(unit);
    let out = s
        .exec(
            &format!("systemctl is-active {u}; systemctl is-enabled {u} 2>/dev/null || true"),
            T,
        )
        .await
        .expect("systemctl");
    let mut lines = out.stdout.lines();
    (
        lines.next().unwrap_or("unknown").trim().to_string(),
        lines.next().unwrap_or("not-found").trim().to_string(),
    )
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "system tier: needs the sandbox"
)]
fn systemd_facts_on_the_sandbox_equal_systemctl_per_unit() {
    let g = crate::common::sandbox();
    let inv = Inventory::load(&g.inventory).expect("inventory");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let node = inv.node("controlplane").expect("controlplane");
        let s = NodeSession::connect(node, T).await.expect("connect");
        let masked = "breakfix-test-masked.service";
        s.exec(&format!("systemctl mask {masked}"), T)
            .await
            .expect("mask");
        // One round of units that exist (one batched command: etcd enabled, ssh's alias
        // sshd, journald static, a masked unit), then one of units that make systemctl stop
        // early (a missing unit, an unparsable name) and a glob: asked one by one.
        let rounds: [&[&str]; 2] = [
            &["etcd", "ssh", "sshd", "systemd-journald", masked],
            &["breakfix-no-such-unit", "etcd", "foo@.service", "systemd-journal*"],
        ];
        let mut found = Vec::new();
        let mut expected = Vec::new();
        for units in rounds {
            let probes: Vec<Probe> = units
                .iter()
                .map(|u| {
                    probe(&format!(
                        "kind: systemd\nname: u\nunit: \"{u}\"\nexpect: {{ active: x, enabled: x }}\n"
                    ))
                })
                .collect();
            for p in &probes {
                p.announce(&s);
            }
            let gathered =
                futures::future::join_all(probes.iter().map(|p| gather(p, &s, &inv))).await;
            for (u, f) in units.iter().zip(gathered) {
                let text =
                    |k: &str| f.values.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
                found.push((u.to_string(), text("active"), text("enabled")));
                let (a, e) = unit_facts_by_command(&s, u).await;
                expected.push((u.to_string(), a, e));
            }
        }
        s.exec(&format!("systemctl unmask {masked}"), T)
            .await
            .expect("unmask");
        assert_eq!(found, expected);
        let facts = |u: &str| {
            let f = found.iter().find(|f| f.0 == u).expect("unit");
            (f.1.clone(), f.2.clone())
        };
        assert_eq!(facts("etcd"), ("active".into(), "enabled".into()));
        assert_eq!(facts(masked), ("inactive".into(), "masked".into()));
        assert_eq!(facts("sshd").1, "alias", "sshd is an alias of ssh");
        assert_eq!(facts("systemd-journald").1, "static");
        assert_eq!(facts("breakfix-no-such-unit").1, "not-found");
    });
}
