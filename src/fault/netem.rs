//! `netem` fault: delay and/or drop a node's outgoing packets with the `netem` queueing
//! discipline (`tc qdisc replace dev IF root netem delay 200ms loss 5%`), on the whole
//! interface or only for one TCP/UDP port (a `prio` root with the port's packets filtered into
//! a netem band).
//!
//! # Guarantees
//! - Before anything is journaled or changed, breakfix checks that the kernel has netem: it
//!   adds a netem qdisc to the loopback device of a throwaway network namespace
//!   (`unshare -n`), which touches no real interface. A kernel without `sch_netem` makes the
//!   fault fail there with a message that says so.
//! - The interface's root qdisc must be the kernel's default (handle `0:`, e.g. `noqueue`,
//!   `fq_codel`, `mq`), which `tc qdisc del dev IF root` restores exactly; a custom root (a
//!   shaper, or an earlier network fault that was not reset) is refused before anything
//!   changes. `tc qdisc show dev IF` is journaled before the first change.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ActionCtx, FaultKind, Problem, Role, Touches, Undo, UndoKind};
use crate::duration::Dur;
use crate::node::NodeSession;
use crate::error::{Error, Result};
use crate::template::Renderer;
use crate::transport::{sh_program, shell_quote};

/// A loss percentage: `5`, `0.5` or `"5%"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percent(pub f64);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Percent, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(f64),
            S(String),
        }
        let v = match Raw::deserialize(d)? {
            Raw::N(n) => n,
            Raw::S(s) => s
                .trim()
                .trim_end_matches('%')
                .trim()
                .parse::<f64>()
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "`{s}` is not a percentage: expected e.g. `5`, `0.5` or `\"5%\"`"
                    ))
                })?,
        };
        if !(0.0..=100.0).contains(&v) {
            return Err(serde::de::Error::custom(format!(
                "a percentage is between 0 and 100, found {v}"
            )));
        }
        Ok(Percent(v))
    }
}

crate::action_spec! {
    /// ```yaml
    /// - kind: netem
    ///   target: controlplane
    ///   delay: 200ms
    ///   loss: 5
    ///   port: 2380
    /// ```
    pub struct NetemAction {
        /// Interface (default: the one holding the node's inventory address).
        #[serde(default)]
        pub interface: Option<String>,
        /// Added delay of every outgoing packet.
        #[serde(default)]
        pub delay: Option<Dur>,
        /// Random variation of the delay (needs `delay`).
        #[serde(default)]
        pub jitter: Option<Dur>,
        /// Percentage of outgoing packets dropped.
        #[serde(default)]
        pub loss: Option<Percent>,
        /// Only packets from or to this TCP/UDP port (default: every packet).
        #[serde(default)]
        pub port: Option<u16>,
    }
}

/// One line of `tc qdisc show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Qdisc {
    /// `noqueue`, `fq_codel`, `netem`, ...
    pub kind: String,
    /// `0:`, `8001:`, ...
    pub handle: String,
    /// `None` for the root qdisc, else the parent (`1:4`, `:1`).
    pub parent: Option<String>,
    /// The rest of the line without `refcnt N` (the qdisc's parameters as tc prints them).
    pub params: String,
}

impl Qdisc {
    /// The kernel's default root (handle `0:`): a `del root` brings it back.
    pub fn is_default(&self) -> bool {
        self.handle == "0:"
    }
}

/// Parses `tc qdisc show [dev IF]` (ingress/clsact qdiscs are left out: netem here is egress).
pub fn parse_qdiscs(show: &str) -> Vec<Qdisc> {
    let mut out = Vec::new();
    for line in show.lines() {
        let mut w = line.split_whitespace().peekable();
        if w.next() != Some("qdisc") {
            continue;
        }
        let (Some(kind), Some(handle)) = (w.next(), w.next()) else {
            continue;
        };
        if kind == "ingress" || kind == "clsact" {
            continue;
        }
        if w.peek() == Some(&"dev") {
            w.next();
            w.next();
        }
        let parent = match w.next() {
            Some("root") => None,
            Some("parent") => Some(w.next().unwrap_or("").to_string()),
            _ => continue,
        };
        let mut params = Vec::new();
        while let Some(x) = w.next() {
            if x == "refcnt" {
                w.next();
                continue;
            }
            params.push(x);
        }
        out.push(Qdisc {
            kind: kind.to_string(),
            handle: handle.to_string(),
            parent,
            params: params.join(" "),
        });
    }
    out
}

/// The journaled undo: the interface, whose root qdisc was the kernel's default before the
/// fault (anything else is refused), so `tc qdisc del dev IF root` restores it exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetemUndo {
    /// Interface.
    pub interface: String,
    /// `tc qdisc show dev IF` before the fault, verbatim (for people reading the journal).
    pub show: String,
}

/// Formats a duration for tc (`200ms`, `1500us`).
pub fn tc_time(d: Duration) -> String {
    if d.as_micros() % 1000 == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}us", d.as_micros())
    }
}

/// netem parameters: `delay 200ms 20ms loss 5%`.
pub fn netem_params(
    delay: Option<Duration>,
    jitter: Option<Duration>,
    loss: Option<f64>,
) -> String {
    let mut p = Vec::new();
    if let Some(d) = delay {
        p.push(format!("delay {}", tc_time(d)));
        if let Some(j) = jitter {
            p.push(tc_time(j));
        }
    }
    if let Some(l) = loss {
        p.push(format!("loss {l}%"));
    }
    p.join(" ")
}

/// The tc commands that install the fault (joined with `&&`).
pub fn inject_commands(interface: &str, params: &str, port: Option<u16>) -> Vec<String> {
    let i = shell_quote(interface);
    match port {
        None => vec![format!("tc qdisc replace dev {i} root netem {params}")],
        Some(p) => vec![
            // Four bands: the default priomap uses bands 1-3 only, so band 4 carries just the
            // filtered packets.
            format!("tc qdisc replace dev {i} root handle 1: prio bands 4 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1"),
            format!("tc qdisc replace dev {i} parent 1:4 handle 40: netem {params}"),
            format!("tc filter add dev {i} parent 1: protocol ip prio 1 u32 match ip dport {p} 0xffff flowid 1:4"),
            format!("tc filter add dev {i} parent 1: protocol ip prio 1 u32 match ip sport {p} 0xffff flowid 1:4"),
            format!("tc filter add dev {i} parent 1: protocol ipv6 prio 2 u32 match ip6 dport {p} 0xffff flowid 1:4"),
            format!("tc filter add dev {i} parent 1: protocol ipv6 prio 2 u32 match ip6 sport {p} 0xffff flowid 1:4"),
        ],
    }
}

/// The message for a kernel without netem.
pub const NO_NETEM: &str = "this kernel lacks the netem qdisc (sch_netem), which breakfix needs for network delay/loss \
     (`tc` says `Specified qdisc kind is unknown`); load or build the sch_netem module, or run the lab on a kernel that has it";

/// The message for a kernel without the prio qdisc or the u32 classifier (needed by `port:`).
pub const NO_PRIO: &str =
    "this kernel lacks the prio qdisc (sch_prio) or the u32 classifier (cls_u32), which breakfix \
     needs to delay/drop only one port (`port:`); leave out `port:` to affect the whole interface";

/// The node-side check that netem works (src/fault/sh/netem_check.sh).
const NETEM_CHECK: &str = include_str!("sh/netem_check.sh");

/// The command that checks, in a throwaway network namespace, that netem (and with `port`, a
/// prio qdisc with a u32 port filter) can be installed; it prints `NETEM_OK`,
/// `NETEM_MISSING`, `PRIO_MISSING` or `NETEM_UNKNOWN: <why>` and exits 0.
pub fn probe_script(port: bool) -> String {
    let args: &[&str] = if port { &["port"] } else { &[] };
    sh_program(NETEM_CHECK, "netem_check", args)
}

/// The interface holding `address` in `ip -o addr` output.
pub fn interface_of(ip_o_addr: &str, address: &str) -> Option<String> {
    ip_o_addr.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        let pos = w.iter().position(|x| *x == "inet" || *x == "inet6")?;
        let addr = w.get(pos + 1)?.split('/').next()?;
        (addr == address).then(|| {
            w.get(1).map(|n| {
                n.trim_end_matches(':')
                    .split('@')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
        })?
    })
}

impl UndoKind for NetemUndo {
    fn describe(&self) -> String {
        format!("restore the root qdisc of {}", self.interface)
    }

    /// Deletes a non-default root qdisc (the kernel's default comes back). Idempotent; a
    /// vanished interface needs nothing.
    async fn revert(&self, s: &NodeSession) -> Result<()> {
        let t = Duration::from_secs(30);
        let i = shell_quote(&self.interface);
        let out = s.exec(&format!("ip link show dev {i} >/dev/null 2>&1 || {{ echo GONE; exit 0; }}; tc qdisc show dev {i}"), t).await?;
        if out.stdout.trim() == "GONE" {
            return Ok(());
        }
        let now = parse_qdiscs(&out.stdout);
        if now.iter().any(|q| q.parent.is_none() && !q.is_default()) {
            s.run_ok(&format!("tc qdisc del dev {i} root"), t).await?;
        }
        Ok(())
    }
}

impl NetemAction {
    fn err(&self, ctx: &ActionCtx<'_>, label: &str, message: String) -> Error {
        Error::Fault {
            fault: label.to_string(),
            host: ctx.session.node.name.clone(),
            message,
        }
    }

    /// The netem parameters, or why there are none.
    pub fn params(&self) -> std::result::Result<String, String> {
        if self.delay.is_none() && self.loss.is_none() {
            return Err("give `delay`, `loss` or both".into());
        }
        if self.jitter.is_some() && self.delay.is_none() {
            return Err("`jitter` needs `delay`".into());
        }
        Ok(netem_params(
            self.delay.map(Into::into),
            self.jitter.map(Into::into),
            self.loss.map(|p| p.0),
        ))
    }

    /// Summary for plans and reports.
    pub fn summary(&self) -> String {
        let what = self.params().unwrap_or_else(|e| e);
        let on = self.interface.as_deref().unwrap_or("the node's interface");
        match self.port {
            Some(p) => format!("netem {what} on {on}, port {p}"),
            None => format!("netem {what} on {on}"),
        }
    }
}

impl FaultKind for NetemAction {
    fn default_label(&self) -> String {
        self.summary()
    }

    fn problems(&self, _role: Role) -> Vec<Problem> {
        self.params().err().map(Problem::new).into_iter().collect()
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        vec![("does", self.summary())]
    }

    fn touches(&self) -> Touches {
        Touches {
            qdisc: true,
            ..Touches::default()
        }
    }

    /// Checks netem and the interface, journals the previous root qdisc, then installs netem.
    async fn apply(&self, ctx: &ActionCtx<'_>, label: &str) -> Result<()> {
        let s = ctx.session;
        let params = self.params().map_err(|m| self.err(ctx, label, m))?;
        let probe = s
            .exec(&probe_script(self.port.is_some()), ctx.timeout)
            .await?;
        let verdict = probe.stdout.trim();
        if verdict == "NETEM_MISSING" {
            return Err(self.err(ctx, label, NO_NETEM.into()));
        }
        if verdict == "PRIO_MISSING" {
            return Err(self.err(ctx, label, NO_PRIO.into()));
        }
        if let Some(why) = verdict.strip_prefix("NETEM_UNKNOWN: ") {
            if why.contains("not installed") {
                return Err(self.err(ctx, label, why.to_string()));
            }
            // Namespaces may be forbidden here: the real command below says the same thing.
            tracing::info!("netem probe on {} inconclusive: {why}", s.node.name);
        }
        let interface = match &self.interface {
            Some(i) => i.clone(),
            None => {
                let out = s.run_ok("ip -o addr show", ctx.timeout).await?;
                interface_of(&out.stdout, &s.node.address).ok_or_else(|| {
                    self.err(ctx, label, format!("no interface holds the node's address {} (`ip -o addr`); set `interface:`", s.node.address))
                })?
            }
        };
        let i = shell_quote(&interface);
        let show = s
            .exec(&format!("tc qdisc show dev {i}"), ctx.timeout)
            .await?;
        if !show.success() {
            return Err(self.err(
                ctx,
                label,
                format!("interface `{interface}`: {}", show.stderr.trim()),
            ));
        }
        let qdiscs = parse_qdiscs(&show.stdout);
        let root = qdiscs.iter().find(|q| q.parent.is_none());
        if let Some(r) = root.filter(|r| !r.is_default()) {
            return Err(self.err(
                ctx,
                label,
                format!(
                    "`{interface}` has a custom root qdisc ({} {}), which breakfix could not restore exactly \
                     (it restores the kernel's default qdisc only); remove it first (`tc qdisc del dev {interface} root`), \
                     or reset an earlier network fault:\n{}",
                    r.kind,
                    r.handle,
                    show.stdout.trim()
                ),
            ));
        }
        let undo = NetemUndo {
            interface: interface.clone(),
            show: show.stdout.trim().to_string(),
        };
        if let Some(journal) = ctx.journal {
            journal
                .record(s, ctx.scenario, label, Undo::Netem(undo))
                .await?;
        }
        for cmd in inject_commands(&interface, &params, self.port) {
            let out = s.exec(&cmd, ctx.timeout).await?;
            if !out.success() {
                let stderr = out.stderr.trim();
                let msg = if stderr.contains("qdisc kind is unknown") {
                    NO_NETEM.to_string()
                } else {
                    format!("`{cmd}` failed: {stderr}")
                };
                return Err(self.err(ctx, label, msg));
            }
        }
        Ok(())
    }

    /// Renders `interface`.
    fn render(&self, r: &Renderer) -> Result<Self> {
        let mut a = self.clone();
        a.interface = self.interface.as_deref().map(|x| r.text(x)).transpose()?;
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_default_and_custom_roots() {
        let q = parse_qdiscs("qdisc noqueue 0: root refcnt 2 \n");
        assert_eq!(
            q,
            vec![Qdisc {
                kind: "noqueue".into(),
                handle: "0:".into(),
                parent: None,
                params: String::new()
            }]
        );
        assert!(q[0].is_default());
        let q = parse_qdiscs(
            "qdisc fq_codel 0: dev eth0 root refcnt 2 limit 10240p flows 1024 quantum 1514 target 5ms interval 100ms memory_limit 32Mb ecn drop_batch 64\n\
             qdisc ingress ffff: parent ffff:fff1 ----------------\n",
        );
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].kind, "fq_codel");
        assert!(
            q[0].params.starts_with("limit 10240p flows 1024"),
            "{}",
            q[0].params
        );
        let q = parse_qdiscs("qdisc tbf 8001: root refcnt 2 rate 1Mbit burst 4Kb lat 400ms \n");
        assert!(!q[0].is_default());
        assert_eq!(q[0].params, "rate 1Mbit burst 4Kb lat 400ms");
        let q = parse_qdiscs("qdisc mq 0: root \nqdisc fq_codel 0: parent :1 limit 10240p\nqdisc fq_codel 0: parent :2 limit 10240p\n");
        assert_eq!(q.len(), 3);
        assert_eq!(q[1].parent.as_deref(), Some(":1"));
        assert!(q.iter().all(Qdisc::is_default));
        let q = parse_qdiscs("qdisc prio 1: root refcnt 2 bands 4 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1\nqdisc netem 40: parent 1:4 limit 1000 delay 200ms\n");
        assert_eq!(q[1].kind, "netem");
        assert_eq!(q[1].parent.as_deref(), Some("1:4"));
    }

    #[test]
    fn renders_commands() {
        let p = netem_params(
            Some(Duration::from_millis(200)),
            Some(Duration::from_micros(1500)),
            Some(5.0),
        );
        assert_eq!(p, "delay 200ms 1500us loss 5%");
        assert_eq!(
            inject_commands("host0", &p, None),
            vec!["tc qdisc replace dev host0 root netem delay 200ms 1500us loss 5%"]
        );
        let c = inject_commands("eth0", "loss 0.5%", Some(2380));
        assert_eq!(c[0], "tc qdisc replace dev eth0 root handle 1: prio bands 4 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1");
        assert_eq!(
            c[1],
            "tc qdisc replace dev eth0 parent 1:4 handle 40: netem loss 0.5%"
        );
        assert!(c[2].ends_with("match ip dport 2380 0xffff flowid 1:4"));
        assert!(c[3].ends_with("match ip sport 2380 0xffff flowid 1:4"));
    }

    #[test]
    fn finds_the_interface_of_an_address() {
        let out = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n\
                   2: host0    inet 198.18.0.11/24 scope global host0\\       valid_lft forever preferred_lft forever\n\
                   3: eth1@if7    inet 198.18.0.99/24 scope global eth1\n";
        assert_eq!(interface_of(out, "198.18.0.11").as_deref(), Some("host0"));
        assert_eq!(interface_of(out, "198.18.0.99").as_deref(), Some("eth1"));
        assert_eq!(interface_of(out, "198.18.0.12"), None);
    }

    #[test]
    fn parameters_need_delay_or_loss() {
        let a: NetemAction =
            serde_saphyr::from_str("delay: 100ms\nloss: \"2.5%\"\n").expect("parse");
        assert_eq!(a.params().as_deref(), Ok("delay 100ms loss 2.5%"));
        let a: NetemAction = serde_saphyr::from_str("port: 2379\n").expect("parse");
        assert!(a.params().is_err());
        let a: NetemAction = serde_saphyr::from_str("jitter: 5ms\nloss: 1\n").expect("parse");
        assert_eq!(a.params(), Err("`jitter` needs `delay`".to_string()));
        assert!(serde_saphyr::from_str::<NetemAction>("loss: 120\n").is_err());
    }
}
