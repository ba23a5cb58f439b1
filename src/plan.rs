//! Plan: a scenario rendered for one inventory — every action and probe bound to a node,
//! every template filled in. Nothing here touches a node.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fault::Action;
use crate::inventory::Inventory;
use crate::probe::Probe;
use crate::scenario::{Scenario, TargetSpec, Task};
use crate::template::Renderer;

/// An action bound to a node.
#[derive(Debug, Clone)]
pub struct PlannedAction {
    /// Node name.
    pub node: String,
    /// Rendered action.
    pub action: Action,
}

/// A probe bound to a node.
#[derive(Debug, Clone)]
pub struct PlannedProbe {
    /// Probe name, suffixed `@node` when the target spans several nodes.
    pub id: String,
    /// Node name.
    pub node: String,
    /// Rendered probe.
    pub probe: Probe,
    /// Ids of the probes it needs (resolved on the same node when ambiguous).
    pub needs: Vec<String>,
}

/// A wrong or alternative fix, rendered.
#[derive(Debug, Clone)]
pub struct PlannedWrongFix {
    /// Name.
    pub name: String,
    /// Why it is wrong (or, for an alternative fix, as good).
    pub why: Option<String>,
    /// Steps.
    pub steps: Vec<PlannedAction>,
}

/// The whole rendered scenario.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.title`.
    pub title: String,
    /// `metadata.description`.
    pub description: String,
    /// Total time limit in seconds (default 1800).
    pub time_limit: std::time::Duration,
    /// Effective parameter values.
    pub params: BTreeMap<String, String>,
    /// Setup steps.
    pub setup: Vec<PlannedAction>,
    /// Faults.
    pub faults: Vec<PlannedAction>,
    /// Preconditions: probes that must pass before `setup`.
    pub preconditions: Vec<PlannedProbe>,
    /// Confirm probes.
    pub confirm: Vec<PlannedProbe>,
    /// Verify probes (own + graders).
    pub verify: Vec<PlannedProbe>,
    /// Tasks, their titles, text and hints rendered (see [`build`]).
    pub tasks: Vec<Task>,
    /// Per task (same index as `tasks`): its `evidence:` probes, rendered; empty for a task
    /// graded by verify probes.
    pub evidence: Vec<Vec<PlannedProbe>>,
    /// `signals:` probes (never graded; hints' `when:` names them).
    pub signals: Vec<PlannedProbe>,
    /// Reference fix.
    pub solution: Vec<PlannedAction>,
    /// Wrong fixes.
    pub wrong_fixes: Vec<PlannedWrongFix>,
    /// Alternative (correct) fixes.
    pub alternative_fixes: Vec<PlannedWrongFix>,
}

/// Default total time limit: 30 minutes.
pub const DEFAULT_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(1800);

impl Plan {
    /// Every node the plan touches, in inventory order.
    pub fn nodes(&self, inventory: &Inventory) -> Vec<String> {
        let mut used = std::collections::BTreeSet::new();
        let actions = self.setup.iter().chain(&self.faults).chain(&self.solution);
        let fixes = self.wrong_fixes.iter().chain(&self.alternative_fixes);
        for a in actions.chain(fixes.flat_map(|w| &w.steps)) {
            used.insert(a.node.clone());
        }
        for p in self
            .preconditions
            .iter()
            .chain(&self.confirm)
            .chain(&self.verify)
        {
            used.insert(p.node.clone());
        }
        inventory
            .nodes
            .iter()
            .filter(|n| used.contains(&n.name))
            .map(|n| n.name.clone())
            .collect()
    }
}

/// Effective params: defaults, then `overrides` (`name=value`). Unknown names are errors.
pub fn params(
    scenario: &Scenario,
    extra_defaults: &[&BTreeMap<String, crate::scenario::Param>],
    overrides: &[(String, String)],
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for defaults in extra_defaults {
        for (k, p) in defaults.iter() {
            out.insert(k.clone(), p.default.0.clone());
        }
    }
    for (k, p) in &scenario.params {
        out.insert(k.clone(), p.default.0.clone());
    }
    for (k, v) in overrides {
        if !out.contains_key(k) {
            let known: Vec<&str> = out.keys().map(String::as_str).collect();
            return Err(Error::other(format!(
                "--param {k}: the scenario has no such parameter (known: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

struct Binder<'a> {
    scenario: &'a Scenario,
    inventory: &'a Inventory,
    params: &'a BTreeMap<String, String>,
}

impl Binder<'_> {
    /// Nodes a target reference means.
    fn nodes(
        &self,
        target: Option<&serde_saphyr::Spanned<String>>,
        what: &str,
    ) -> Result<Vec<String>> {
        let (name, spec): (String, &TargetSpec) = match target {
            Some(t) => {
                let spec = self.scenario.targets.get(&t.value).ok_or_else(|| {
                    Error::other(format!(
                        "{what}: target `{}` is not defined in `targets:`",
                        t.value
                    ))
                })?;
                (t.value.clone(), spec)
            }
            None => {
                let mut it = self.scenario.targets.iter();
                match (it.next(), it.next()) {
                    (Some((n, s)), None) => (n.clone(), s),
                    (None, _) => {
                        return Err(Error::other(format!("{what}: no `targets:` defined")))
                    }
                    _ => {
                        return Err(Error::other(format!(
                            "{what}: several targets are defined; say which with `target:`"
                        )))
                    }
                }
            }
        };
        let nodes: Vec<String> = if let Some(n) = &spec.node {
            self.inventory
                .node(n)
                .map(|n| vec![n.name.clone()])
                .unwrap_or_default()
        } else if let Some(role) = &spec.role {
            let all: Vec<String> = self
                .inventory
                .nodes_with_role(role)
                .map(|n| n.name.clone())
                .collect();
            if spec.all {
                all
            } else {
                all.into_iter().take(1).collect()
            }
        } else {
            Vec::new()
        };
        if nodes.is_empty() {
            return Err(Error::other(format!(
                "{what}: target `{name}` matches no node of the inventory (cluster `{}`)",
                self.inventory.cluster.name
            )));
        }
        Ok(nodes)
    }

    fn renderer(&self, node: &str) -> Result<Renderer> {
        let n = self
            .inventory
            .node(node)
            .ok_or_else(|| Error::other(format!("node `{node}` vanished")))?;
        Ok(Renderer::new(self.params, self.inventory, n))
    }

    /// The renderer for text people read (title, description, tasks, hints, a wrong fix's
    /// `why`): `node` there is the first node of the first fault's target (the node the break
    /// is on), or the inventory's first node.
    fn prose_renderer(&self) -> Result<Renderer> {
        let node = match self.scenario.faults.first() {
            Some(f) => self.nodes(f.target(), "faults[0]")?.into_iter().next(),
            None => self.inventory.nodes.first().map(|n| n.name.clone()),
        };
        match node {
            Some(n) => self.renderer(&n),
            None => Ok(Renderer::params_only(self.params)),
        }
    }

    fn actions(&self, list: &[Action], section: &str) -> Result<Vec<PlannedAction>> {
        let mut out = Vec::new();
        for (i, a) in list.iter().enumerate() {
            let what = format!("{section}[{i}] ({})", a.label());
            for node in self.nodes(a.target(), &what)? {
                let action = a
                    .render(&self.renderer(&node)?)
                    .map_err(|e| Error::other(format!("{what}: {e}")))?;
                out.push(PlannedAction { node, action });
            }
        }
        Ok(out)
    }

    fn probes(&self, list: &[&Probe]) -> Result<Vec<PlannedProbe>> {
        let mut out = Vec::new();
        for p in list {
            let c = p.common();
            let what = format!("probe `{}`", c.name);
            let nodes = self.nodes(c.target, &what)?;
            let many = nodes.len() > 1;
            for node in nodes {
                let probe = p
                    .render(&self.renderer(&node)?)
                    .map_err(|e| Error::other(format!("{what}: {e}")))?;
                let id = if many {
                    format!("{}@{node}", c.name)
                } else {
                    c.name.to_string()
                };
                let needs = c.needs.iter().map(|n| n.value.clone()).collect();
                out.push(PlannedProbe {
                    id,
                    node,
                    probe,
                    needs,
                });
            }
        }
        // `needs` that name a probe expanded over several nodes bind to the same node.
        let ids: std::collections::BTreeSet<String> = out.iter().map(|p| p.id.clone()).collect();
        for p in &mut out {
            let node = p.node.clone();
            for n in &mut p.needs {
                if !ids.contains(n.as_str()) && ids.contains(&format!("{n}@{node}")) {
                    *n = format!("{n}@{node}");
                }
            }
        }
        Ok(out)
    }
}

/// Renders `scenario` (with its included graders' probes) for `inventory`.
///
/// Errors: a target that matches no node, an ambiguous missing target, a template that does
/// not render (undefined variable), an unknown `--param`.
pub fn build(
    scenario: &Scenario,
    graders: &[crate::scenario::Grader],
    inventory: &Inventory,
    overrides: &[(String, String)],
) -> Result<Plan> {
    let grader_params: Vec<&BTreeMap<String, crate::scenario::Param>> =
        graders.iter().map(|g| &g.params).collect();
    let params = params(scenario, &grader_params, overrides)?;
    let b = Binder {
        scenario,
        inventory,
        params: &params,
    };
    let mut verify_src: Vec<&Probe> = graders.iter().flat_map(|g| g.probes.iter()).collect();
    verify_src.extend(scenario.verify.probes.iter());
    let confirm_src: Vec<&Probe> = scenario.confirm.iter().collect();
    let pre_src: Vec<&Probe> = scenario.preconditions.iter().collect();
    let prose = b.prose_renderer()?;
    let text = |what: &str, t: &str| {
        prose
            .text(t)
            .map_err(|e| Error::other(format!("{what}: {e}")))
    };
    let mut tasks = scenario.tasks.clone();
    for (i, t) in tasks.iter_mut().enumerate() {
        t.title = text(&format!("tasks[{i}].title"), &t.title)?;
        t.text = text(&format!("tasks[{i}].text"), &t.text)?;
        for (j, h) in t.hints.iter_mut().enumerate() {
            h.text = text(&format!("tasks[{i}].hints[{j}].text"), &h.text)?;
        }
    }
    let fixes = |list: &[crate::scenario::WrongFix], section: &str| {
        list.iter()
            .map(|w| {
                Ok(PlannedWrongFix {
                    name: w.name.clone(),
                    why: w
                        .why
                        .as_deref()
                        .map(|y| text(&format!("{section} `{}`.why", w.name), y))
                        .transpose()?,
                    steps: b.actions(&w.steps, &format!("{section} `{}`", w.name))?,
                })
            })
            .collect::<Result<Vec<_>>>()
    };
    Ok(Plan {
        name: scenario.metadata.name.value.clone(),
        title: text("metadata.title", &scenario.metadata.title)?,
        description: text("metadata.description", &scenario.metadata.description)?,
        time_limit: scenario
            .metadata
            .time_limit
            .map(Into::into)
            .unwrap_or(DEFAULT_TIME_LIMIT),
        setup: b.actions(&scenario.setup, "setup")?,
        faults: b.actions(&scenario.faults, "faults")?,
        preconditions: b.probes(&pre_src)?,
        confirm: b.probes(&confirm_src)?,
        verify: b.probes(&verify_src)?,
        evidence: scenario
            .tasks
            .iter()
            .map(|t| b.probes(&t.evidence.iter().collect::<Vec<_>>()))
            .collect::<Result<Vec<_>>>()?,
        signals: b.probes(&scenario.signals.iter().collect::<Vec<_>>())?,
        tasks,
        solution: b.actions(&scenario.solution, "solution")?,
        wrong_fixes: fixes(&scenario.wrong_fixes, "wrong_fixes")?,
        alternative_fixes: fixes(&scenario.alternative_fixes, "alternative_fixes")?,
        params,
    })
}

/// JSON view of a plan for `breakfix plan --output json`.
#[derive(Debug, Serialize)]
pub struct PlanView {
    /// Scenario name.
    pub name: String,
    /// Parameters.
    pub params: BTreeMap<String, String>,
    /// `(node, description)` per phase.
    pub phases: BTreeMap<String, Vec<(String, String)>>,
}

impl Plan {
    /// A printable summary of every step and probe.
    pub fn view(&self) -> PlanView {
        let acts = |v: &[PlannedAction]| {
            v.iter()
                .map(|a| (a.node.clone(), describe_action(&a.action)))
                .collect::<Vec<_>>()
        };
        let probes = |v: &[PlannedProbe]| {
            v.iter()
                .map(|p| (p.node.clone(), describe_probe(p)))
                .collect::<Vec<_>>()
        };
        let mut phases = BTreeMap::new();
        phases.insert("0-preconditions".into(), probes(&self.preconditions));
        phases.insert("1-setup".into(), acts(&self.setup));
        phases.insert("2-break".into(), acts(&self.faults));
        phases.insert("3-confirm".into(), probes(&self.confirm));
        phases.insert("4-verify".into(), probes(&self.verify));
        if !self.signals.is_empty() {
            phases.insert("4-signals".into(), probes(&self.signals));
        }
        for (i, e) in self
            .evidence
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.is_empty())
        {
            phases.insert(format!("4-task {} evidence", i + 1), probes(e));
        }
        phases.insert("5-solution".into(), acts(&self.solution));
        for w in &self.wrong_fixes {
            phases.insert(format!("6-wrong fix: {}", w.name), acts(&w.steps));
        }
        for w in &self.alternative_fixes {
            phases.insert(format!("7-alternative fix: {}", w.name), acts(&w.steps));
        }
        PlanView {
            name: self.name.clone(),
            params: self.params.clone(),
            phases,
        }
    }
}

/// An action for plans: its label, then what it does as rendered (commands in full,
/// multi-line scripts indented under their first line).
pub fn describe_action(a: &Action) -> String {
    let mut out = a.label();
    for (k, v) in a.details() {
        out.push_str(&field(k, &v));
    }
    out
}

/// `\n  key: value`, a multi-line value's further lines indented under its first.
fn field(key: &str, value: &str) -> String {
    let pad = " ".repeat(key.len() + 4);
    let mut lines = value.trim_end().lines();
    let mut s = format!("\n  {key}: {}", lines.next().unwrap_or(""));
    for l in lines {
        s.push_str(&format!("\n{pad}{l}"));
    }
    s
}

/// A probe for plans: its id and kind, what it looks at, its timing (`timeout`, `within`,
/// `interval`, `stable_for`) and `needs`, and its expectations.
pub fn describe_probe(p: &PlannedProbe) -> String {
    let exp: Vec<String> = p
        .probe
        .expectations()
        .iter()
        .map(|(f, m)| format!("{f} {m}"))
        .collect();
    let c = p.probe.common();
    let mut out = format!("{} [{}]", p.id, p.probe.kind());
    let (what, target) = p.probe.plan_target();
    out.push_str(&field(what, &target));
    let mut timing = Vec::new();
    for (k, v) in [
        ("timeout", c.timeout),
        ("within", c.within),
        ("interval", c.interval),
        ("stable_for", c.stable_for),
    ] {
        if let Some(v) = v {
            timing.push(format!("{k} {v}"));
        }
    }
    if !p.needs.is_empty() {
        timing.push(format!("needs {}", p.needs.join(", ")));
    }
    if !timing.is_empty() {
        out.push_str(&field("when", &timing.join(", ")));
    }
    out.push_str(&field("expect", &exp.join(", ")));
    out
}

/// The plan of tests/fixtures/valid/every-field.yaml on a two-node external inventory, for
/// unit tests here and in the engine.
#[cfg(test)]
pub(crate) fn every_field_plan(overrides: &[(String, String)]) -> Plan {
    const INVENTORY: &str = "apiVersion: breakfix/v1\nkind: Inventory\ncluster: { name: lab, topology: external, etcd: { endpoints: [https://127.0.0.1:2379], ca_file: /etc/kubernetes/pki/etcd/ca.crt, cert_file: /etc/kubernetes/pki/apiserver-etcd-client.crt, key_file: /etc/kubernetes/pki/apiserver-etcd-client.key } }\nnodes:\n  - { name: controlplane, address: 198.18.0.11, roles: [control-plane, etcd], known_hosts: ssh/known_hosts }\n  - { name: node01, address: 198.18.0.12, roles: [worker], known_hosts: ssh/known_hosts }\n";
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let loaded = crate::scenario::load_valid(
        &root.join("tests/fixtures/valid/every-field.yaml"),
        None,
        false,
    )
    .expect("the fixture loads");
    let inv =
        Inventory::parse(std::path::Path::new("inventory.yaml"), INVENTORY).expect("inventory");
    build(&loaded.scenario, &loaded.grader_files(), &inv, overrides).expect("plans")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_text_and_hints_are_rendered_for_the_node_of_the_break() {
        let plan = every_field_plan(&[("unit".to_string(), "etcd-main".to_string())]);
        assert_eq!(
            plan.tasks[0].hints[0].text,
            "`systemctl cat etcd-main` on controlplane"
        );
        // Text without a template is kept as written.
        assert_eq!(plan.tasks[0].hints[1].text, "`ls -la /var/lib/etcd*`");
        // Evidence: per task, rendered, with its own `needs`; never part of verify.
        assert!(plan.evidence[0].is_empty());
        let ids: Vec<&str> = plan.evidence[1].iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["data-dir-named", "answer-is-private"]);
        assert_eq!(plan.evidence[1][1].needs, ["data-dir-named"]);
        assert_eq!(plan.evidence[1][0].node, "controlplane");
        assert!(!plan.verify.iter().any(|p| p.id == "data-dir-named"));
    }
}
