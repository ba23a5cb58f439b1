//! `process` probe: a running process and its command line, the flags a program really runs
//! with (a unit file or manifest edited but not applied is not what runs). Facts `running`,
//! `pid`, `args` and `flag`.
//!
//! # Why
//! A fix is done when the program runs with the right flags: a unit edited without
//! `systemctl daemon-reload` and a restart, or a manifest the kubelet has not picked up yet,
//! still runs the old ones. The process is found by its unit's main PID (systemd units) or by
//! its exact name (a static pod's container, seen from the node).
//!
//! # Caveats
//! - `name:` picks the oldest process of that name; with several (e.g. an etcd of another
//!   test on the node), name the unit instead.
//! - The command line is read from `/proc/PID/cmdline`; an argument holding a newline is
//!   split in two.

use super::{Facts, ProbeCtx, ProbeKind};
use crate::error::Result;
use crate::problem::Problem;
use crate::template::Renderer;
use crate::transport::sh_program;

crate::probe_spec! {
    /// ```yaml
    /// - kind: process
    ///   name: etcd-runs-on-its-data
    ///   unit: etcd
    ///   flag: --data-dir
    ///   expect: { running: true, flag: { same_path: /var/lib/etcd } }
    /// ```
    pub struct ProcessProbe {
        /// The systemd unit whose main process to read (`etcd`); or use `process`.
        #[serde(default)]
        pub unit: Option<String>,
        /// The exact process name (`etcd`, `kube-apiserver`), for programs that are not a
        /// unit's main process (a static pod's container); the oldest such process is read.
        #[serde(default)]
        pub process: Option<String>,
        /// Flag whose value the fact `flag` holds, e.g. `--data-dir`.
        #[serde(default)]
        pub flag: Option<String>,
        /// Expectations.
        pub expect: ProcessExpect,
    }
}

crate::expect_block! {
    /// Facts of a `process` probe.
    pub struct ProcessExpect {
        /// A process was found (bool).
        running,
        /// Its PID (number; absent when not running).
        pid,
        /// Its command line, program first (list of strings).
        args,
        /// The value of `flag` in the command line, however it was spelled (`--flag=value`,
        /// `--flag value`, `-flag=value`; the last occurrence wins: [`crate::node::flags`]);
        /// `""` when the flag is absent, no fact when the process is not running.
        flag,
    }
}

/// The node program that finds the process and prints its command line.
const PROCESS_SH: &str = include_str!("sh/process.sh");

impl ProcessProbe {
    /// `(way, value)` for process.sh: `("unit", u)` or `("name", n)`.
    fn way(&self) -> (&'static str, &str) {
        match (&self.unit, &self.process) {
            (Some(u), _) => ("unit", u.as_str()),
            (None, Some(n)) => ("name", n.as_str()),
            (None, None) => ("name", ""),
        }
    }
}

impl ProbeKind for ProcessProbe {
    type Expect = ProcessExpect;

    fn expect(&self) -> &ProcessExpect {
        &self.expect
    }

    fn plan_target(&self) -> (&'static str, String) {
        let (way, what) = self.way();
        let flag = self
            .flag
            .as_deref()
            .map(|f| format!(", flag {f}"))
            .unwrap_or_default();
        let word = if way == "unit" { "main process of unit" } else { "process" };
        ("process", format!("{word} {what}{flag}"))
    }

    /// Exactly one of `unit` and `process`; `flag` looks like a flag.
    fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        match (&self.unit, &self.process) {
            (Some(_), Some(_)) => out.push(
                Problem::new("has both `unit:` and `process:`; expected one of them")
                    .with_help("`unit:` reads a systemd unit's main process, `process:` the oldest process of that exact name"),
            ),
            (None, None) => out.push(
                Problem::new("names no process; expected `unit:` (a systemd unit) or `process:` (an exact process name)"),
            ),
            (Some(x), None) | (None, Some(x)) if x.trim().is_empty() => {
                out.push(Problem::new("the unit or process name is empty"))
            }
            _ => {}
        }
        if let Some(f) = &self.flag {
            if !f.starts_with('-') || f.trim_start_matches('-').is_empty() {
                out.push(Problem::new(format!(
                    "`flag: {f}` is not a flag; expected its name with its dashes, e.g. `--data-dir`"
                )));
            }
        }
        if self.flag.is_none() && self.expect.flag.is_some() {
            out.push(Problem::new(
                "checks the fact `flag` without naming the flag; add `flag:` (e.g. `--data-dir`)",
            ));
        }
        out
    }

    /// One command: find the PID, read its command line.
    async fn gather(&self, ctx: &ProbeCtx<'_>, _wanted: &[&str]) -> Result<Facts> {
        let (way, what) = self.way();
        let out = ctx
            .session
            .run_ok(&sh_program(PROCESS_SH, "process", &[way, what]), ctx.timeout)
            .await?;
        Ok(facts(&out.stdout, self.flag.as_deref(), way, what))
    }

    /// Renders `unit`, `process` and `flag`.
    fn render(&self, r: &Renderer) -> Result<Self> {
        let mut p = self.clone();
        p.expect = self.expect.render(r)?;
        p.unit = self.unit.as_deref().map(|c| r.text(c)).transpose()?;
        p.process = self.process.as_deref().map(|c| r.text(c)).transpose()?;
        p.flag = self.flag.as_deref().map(|c| r.text(c)).transpose()?;
        Ok(p)
    }
}

/// The facts from process.sh's output (PID line, then one argument per line).
fn facts(stdout: &str, flag: Option<&str>, way: &str, what: &str) -> Facts {
    let mut f = Facts::default();
    let mut lines = stdout.lines();
    let Some(pid) = lines.next().and_then(|l| l.trim().parse::<u64>().ok()) else {
        f.set("running", false);
        f.note = Some(match way {
            "unit" => format!("unit {what} has no main process"),
            _ => format!("no process named {what}"),
        });
        return f;
    };
    let args: Vec<String> = lines.map(str::to_string).collect();
    f.set("running", true);
    f.set("pid", pid);
    if let Some(flag) = flag {
        f.set(
            "flag",
            crate::node::flags::flag_value(&args, flag).unwrap_or_default(),
        );
    }
    f.set("args", args);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(y: &str) -> ProcessProbe {
        serde_saphyr::from_str(y).expect("probe parses")
    }

    #[test]
    fn facts_from_the_program_output() {
        let f = facts(
            "4242\netcd\n--data-dir\n/var/lib/etcd/\n--name=cp\n",
            Some("--data-dir"),
            "unit",
            "etcd",
        );
        assert_eq!(f.values["running"], serde_json::json!(true));
        assert_eq!(f.values["pid"], serde_json::json!(4242));
        assert_eq!(f.values["flag"], serde_json::json!("/var/lib/etcd/"));
        assert_eq!(f.values["args"].as_array().map(Vec::len), Some(4));
        let f = facts("", Some("--data-dir"), "unit", "etcd");
        assert_eq!(f.values["running"], serde_json::json!(false));
        assert!(!f.values.contains_key("flag"));
        assert_eq!(f.note.as_deref(), Some("unit etcd has no main process"));
    }

    #[test]
    fn the_program_reads_a_real_process_by_name() {
        // A real process with a name of its own (a copy of sh) and flags after its script.
        let dir = tempfile::tempdir().expect("tempdir");
        let name = format!("bfp{}", std::process::id());
        let exe = dir.path().join(&name);
        std::fs::copy("/bin/sh", &exe).expect("copy sh");
        let mut child = std::process::Command::new(&exe)
            .args(["-c", "sleep 30; :", "x", "--data-dir", "/x"])
            .spawn()
            .expect("spawn");
        let run = |way: &str, what: &str| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(PROCESS_SH)
                .args(["process", way, what])
                .output()
                .expect("run sh")
        };
        let o = run("name", &name);
        let _ = child.kill();
        let _ = child.wait();
        assert!(o.status.success(), "{o:?}");
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let f = facts(&out, Some("--data-dir"), "name", &name);
        assert_eq!(f.values["pid"], serde_json::json!(child.id()), "{out}");
        assert_eq!(f.values["flag"], serde_json::json!("/x"), "{out}");
        // Gone now: nothing printed, so `running: false`.
        let o = run("name", &name);
        assert!(o.status.success() && o.stdout.is_empty(), "{o:?}");
        assert_eq!(run("how", "x").status.code(), Some(2));
    }

    #[test]
    fn one_way_to_find_the_process_and_a_real_flag() {
        let ok = probe("{name: p, unit: etcd, flag: --data-dir, expect: {flag: /var/lib/etcd}}");
        assert!(ok.problems().is_empty(), "{:?}", ok.problems());
        let both = probe("{name: p, unit: etcd, process: etcd, expect: {running: true}}");
        assert!(both.problems()[0].message.contains("both `unit:` and `process:`"));
        let none = probe("{name: p, expect: {running: true}}");
        assert!(none.problems()[0].message.contains("names no process"));
        let bad = probe("{name: p, unit: etcd, flag: data-dir, expect: {flag: x}}");
        assert!(bad.problems()[0].message.contains("is not a flag"));
        let unnamed = probe("{name: p, unit: etcd, expect: {flag: x}}");
        assert!(unnamed.problems()[0].message.contains("without naming the flag"));
    }
}
