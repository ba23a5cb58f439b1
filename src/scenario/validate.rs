//! Validation: every problem a parsed scenario (and the graders it includes) still has, each
//! at the offending value's `file:line:col`. All problems are collected, not just the first.
//!
//! Checked here (parse errors — syntax, duplicate keys, unknown fields, wrong types, bad
//! durations, unknown kinds, bad matchers — come from [`super::load`]):
//! - `apiVersion: breakfix/v1`, `kind: Scenario` (graders: `kind: Grader`);
//! - `metadata.name` of lowercase letters, digits and dashes; a grader's name is its file stem;
//! - parameter names are identifiers (`params.<name>` must be writable in a template);
//! - each target has exactly one of `role:`/`node:` (`all:` only with `role:`);
//! - every `target:` names a target; a missing `target:` only with exactly one target;
//! - `faults:` is not empty and each `command` fault has `undo:`;
//! - `verify:` has probes (own or included), every `include:` is a grader file;
//! - probe names are unique within confirm and within verify (with its graders); `expect:` not empty;
//! - `needs:` names a probe of the same phase, without cycles;
//! - task `probes:` name verify probes;
//! - templates (`{{ ... }}` in any value) parse, and use only `params.<declared>`, `node`,
//!   `nodes`, `cluster` (and minijinja's global functions) with known attributes and filters.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::{Environment, ErrorKind};
use serde_saphyr::Spanned;

use super::diagnostic::{closest, names, suggest, Diagnostic};
use super::load::{grader_path, is_plain_name, Loaded};
use super::tree::{Node, Pos, Step};
use super::{Param, TargetSpec};
use crate::fault::{Action, Role};
use crate::probe::Probe;

/// The format version this build reads.
pub const API_VERSION: &str = "breakfix/v1";

/// Top-level template variables besides minijinja's global functions.
pub const TEMPLATE_ROOTS: &[&str] = &["params", "node", "nodes", "cluster"];

/// Attributes of `node` (and of each item of `nodes`).
const NODE_ATTRS: &[&str] = &["name", "address", "roles"];
/// Attributes of `cluster`.
const CLUSTER_ATTRS: &[&str] = &["name", "topology", "etcd", "kubeconfig"];
/// Attributes of `cluster.etcd`.
const ETCD_ATTRS: &[&str] = &["endpoints", "endpoint", "ca_file", "cert_file", "key_file"];

/// Validates a loaded scenario and its graders. Empty means valid.
pub fn validate(l: &Loaded) -> Vec<Diagnostic> {
    let mut v = Validator {
        l,
        sf: l.file(),
        out: Vec::new(),
        env: template_env(),
        missing_target_reported: false,
        verify_incomplete: false,
    };
    v.scenario_header();
    v.params(&v.sf.clone(), l.tree.as_ref(), &l.scenario.params);
    v.verify_incomplete = l
        .scenario
        .verify
        .include
        .iter()
        .any(|i| !l.graders.iter().any(|g| g.name == i.value));
    v.targets();
    v.actions();
    let probes = v.collect_probes();
    v.probes(&probes);
    v.verify_and_includes(&probes);
    v.tasks(&probes);
    v.graders();
    v.templates();
    v.finish()
}

/// Which run a probe belongs to (`needs` stay within one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Preconditions,
    Confirm,
    Verify,
}

impl Phase {
    fn word(self) -> &'static str {
        match self {
            Phase::Preconditions => "preconditions",
            Phase::Confirm => "confirm",
            Phase::Verify => "verify",
        }
    }
}

/// A probe with where it was written.
struct ProbeAt<'a> {
    probe: &'a Probe,
    file: String,
    item: Option<&'a Node>,
    phase: Phase,
}

impl ProbeAt<'_> {
    fn name(&self) -> &str {
        self.probe.name()
    }

    fn name_pos(&self) -> Pos {
        field_pos(self.item, "name")
    }
}

struct Validator<'a> {
    l: &'a Loaded,
    sf: String,
    out: Vec<Diagnostic>,
    env: Environment<'static>,
    /// A missing `target:` with no targets defined is reported once.
    missing_target_reported: bool,
    /// Some included grader did not load: unknown verify probe names may be its own, so
    /// references to them are not reported (the include itself is).
    verify_incomplete: bool,
}

/// Position of `item.<key>`'s value, else of the item, else unknown.
fn field_pos(item: Option<&Node>, key: &str) -> Pos {
    match item {
        Some(n) => n.get(key).map(|v| v.pos).unwrap_or(n.pos),
        None => Pos::default(),
    }
}

/// Position of a mapping key, else of the node.
fn key_pos(node: Option<&Node>, key: &str) -> Pos {
    match node {
        Some(n) => n.entry(key).map(|(p, _)| p).unwrap_or(n.pos),
        None => Pos::default(),
    }
}

/// Position of the item's `kind` value (the item's first line), else of the item.
fn item_pos(item: Option<&Node>) -> Pos {
    field_pos(item, "kind")
}

fn spanned_pos<T>(s: &Spanned<T>) -> Pos {
    Pos::of_spanned(s)
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl<'a> Validator<'a> {
    fn push(&mut self, d: Diagnostic) {
        self.out.push(d);
    }

    fn tree(&self) -> Option<&'a Node> {
        self.l.tree.as_ref()
    }

    fn finish(mut self) -> Vec<Diagnostic> {
        let mut rank: BTreeMap<String, usize> = BTreeMap::new();
        rank.insert(self.sf.clone(), 0);
        for (i, g) in self.l.graders.iter().enumerate() {
            rank.entry(g.path.display().to_string()).or_insert(i + 1);
        }
        for (i, g) in self.l.failed_graders.iter().enumerate() {
            rank.entry(g.path.display().to_string()).or_insert(1000 + i);
        }
        self.out.sort_by_key(|d| {
            (
                rank.get(&d.file).copied().unwrap_or(usize::MAX),
                d.line,
                d.column,
            )
        });
        self.out.dedup();
        self.out
    }

    // ---- header, params, targets -------------------------------------------------------

    fn header(
        &mut self,
        file: &str,
        api: &Spanned<String>,
        kind: &Spanned<String>,
        want_kind: &str,
    ) {
        if api.value != API_VERSION {
            self.push(
                Diagnostic::at(
                    file,
                    spanned_pos(api),
                    format!("unsupported apiVersion `{}`", api.value),
                )
                .with_help(format!(
                    "this version of breakfix reads `apiVersion: {API_VERSION}`"
                )),
            );
        }
        if kind.value != want_kind {
            let help = match (want_kind, kind.value.as_str()) {
                ("Scenario", "Grader") => {
                    "this is a grader file: put it in the graders directory and list it under `verify.include`".to_string()
                }
                _ => format!("this file must start with `apiVersion: {API_VERSION}` and `kind: {want_kind}`"),
            };
            self.push(
                Diagnostic::at(
                    file,
                    spanned_pos(kind),
                    format!("expected `kind: {want_kind}`, found `{}`", kind.value),
                )
                .with_help(help),
            );
        }
    }

    fn scenario_header(&mut self) {
        let s = &self.l.scenario;
        let sf = self.sf.clone();
        self.header(&sf, &s.api_version, &s.kind, "Scenario");
        let name = &s.metadata.name;
        if !is_name(&name.value) {
            self.push(
                Diagnostic::at(
                    &sf,
                    spanned_pos(name),
                    format!("invalid scenario name `{}`", name.value),
                )
                .with_help("use lowercase letters, digits and dashes, e.g. `etcd-service-stopped`"),
            );
        }
    }

    fn params(&mut self, file: &str, tree: Option<&Node>, params: &BTreeMap<String, Param>) {
        let section = tree.and_then(|t| t.get("params"));
        for name in params.keys() {
            if !is_identifier(name) {
                let suggestion = name.replace(['-', '.', ' '], "_");
                self.push(
                    Diagnostic::at(file, key_pos(section, name), format!("invalid parameter name `{name}`"))
                        .with_help(format!(
                            "templates refer to parameters as `params.<name>`: use letters, digits and `_` (e.g. `{suggestion}`)"
                        )),
                );
            }
        }
    }

    fn targets(&mut self) {
        let section = self.tree().and_then(|t| t.get("targets"));
        let sf = self.sf.clone();
        for (name, spec) in &self.l.scenario.targets {
            let TargetSpec { role, node, all } = spec;
            let at = key_pos(section, name);
            match (role, node) {
                (Some(_), Some(_)) => self.push(
                    Diagnostic::at(
                        &sf,
                        at,
                        format!("target `{name}` sets both `role:` and `node:`"),
                    )
                    .with_help("a target selects nodes either by role or by node name; keep one"),
                ),
                (None, None) => self.push(
                    Diagnostic::at(&sf, at, format!("target `{name}` selects no node")).with_help(
                        "give it `role: <role>` (e.g. `control-plane`) or `node: <node name>`",
                    ),
                ),
                _ => {}
            }
            if *all && node.is_some() {
                let pos = section
                    .and_then(|s| s.get(name))
                    .map(|t| key_pos(Some(t), "all"))
                    .unwrap_or(at);
                self.push(
                    Diagnostic::at(
                        &sf,
                        pos,
                        format!("`all:` does not apply to target `{name}`, which names one node"),
                    )
                    .with_help("`all: true` selects every node with the target's `role:`"),
                );
            }
        }
    }

    /// Checks a `target:` reference (or its absence) written in `file`.
    fn target_ref(
        &mut self,
        file: &str,
        target: Option<&Spanned<String>>,
        item: Option<&Node>,
        what: &str,
        missing_reported: &mut bool,
    ) {
        let targets: Vec<&String> = self.l.scenario.targets.keys().collect();
        match target {
            Some(t) => {
                if !self.l.scenario.targets.contains_key(&t.value) {
                    let help = if targets.is_empty() {
                        "the scenario defines no `targets:`; add e.g. `targets: { cp: { role: control-plane } }`".to_string()
                    } else {
                        suggest(&t.value, &targets)
                            .unwrap_or_else(|| format!("defined targets: {}", names(&targets)))
                    };
                    self.push(
                        Diagnostic::at(
                            file,
                            spanned_pos(t),
                            format!("undefined target `{}`", t.value),
                        )
                        .with_help(help),
                    );
                }
            }
            None => match targets.len() {
                1 => {}
                0 => {
                    if !*missing_reported {
                        *missing_reported = true;
                        self.push(
                            Diagnostic::at(file, item_pos(item), format!("{what} has no `target:` and the scenario defines no `targets:`"))
                                .with_help("add e.g. `targets: { cp: { role: control-plane } }`; with one target, `target:` may be left out"),
                        );
                    }
                }
                n => self.push(
                    Diagnostic::at(
                        file,
                        item_pos(item),
                        format!("{what} needs `target:`: the scenario defines {n} targets"),
                    )
                    .with_help(format!(
                        "say where it runs with `target:` (one of {})",
                        names(&targets)
                    )),
                ),
            },
        }
    }

    // ---- actions -----------------------------------------------------------------------

    fn actions(&mut self) {
        let s = &self.l.scenario;
        let tree = self.tree();
        let sf = self.sf.clone();
        let mut missing_reported = false;
        if s.faults.is_empty() {
            self.push(
                Diagnostic::at(
                    &sf,
                    key_pos(tree, "faults"),
                    "`faults:` is empty: the scenario breaks nothing",
                )
                .with_help(
                    "add at least one fault, e.g. `- { kind: systemd, unit: etcd, action: stop }`",
                ),
            );
        }
        // (path, steps, section kind): faults and wrong-fix steps are journaled, so a
        // `command` there needs `undo:`.
        let mut lists: Vec<(Vec<Step<'_>>, &[Action], Role)> = vec![
            (vec![Step::Key("setup")], &s.setup, Role::Step),
            (vec![Step::Key("faults")], &s.faults, Role::Fault),
            (vec![Step::Key("solution")], &s.solution, Role::Step),
        ];
        for (j, w) in s.wrong_fixes.iter().enumerate() {
            lists.push((
                vec![Step::Key("wrong_fixes"), Step::Idx(j), Step::Key("steps")],
                &w.steps,
                Role::WrongFix,
            ));
        }
        for (path, list, role) in lists {
            let section = tree.and_then(|t| t.at(&path));
            for (i, a) in list.iter().enumerate() {
                let item = section.and_then(|n| n.idx(i));
                let what = match role {
                    Role::Fault => format!("fault `{}`", a.label()),
                    _ => format!("step `{}`", a.label()),
                };
                self.target_ref(&sf, a.target(), item, &what, &mut missing_reported);
                for problem in a.problems(role) {
                    let mut d =
                        Diagnostic::at(&sf, item_pos(item), format!("{what}: {}", problem.message));
                    if let Some(h) = problem.help {
                        d = d.with_help(h);
                    }
                    self.push(d);
                }
            }
        }
        self.missing_target_reported = missing_reported;
    }

    // ---- probes ------------------------------------------------------------------------

    fn collect_probes(&self) -> Vec<ProbeAt<'a>> {
        let s = &self.l.scenario;
        let tree = self.tree();
        let mut out = Vec::new();
        let pre = tree.and_then(|t| t.get("preconditions"));
        for (i, p) in s.preconditions.iter().enumerate() {
            out.push(ProbeAt {
                probe: p,
                file: self.sf.clone(),
                item: pre.and_then(|n| n.idx(i)),
                phase: Phase::Preconditions,
            });
        }
        let confirm = tree.and_then(|t| t.get("confirm"));
        for (i, p) in s.confirm.iter().enumerate() {
            out.push(ProbeAt {
                probe: p,
                file: self.sf.clone(),
                item: confirm.and_then(|n| n.idx(i)),
                phase: Phase::Confirm,
            });
        }
        for g in &self.l.graders {
            let list = g.tree.as_ref().and_then(|t| t.get("probes"));
            for (i, p) in g.grader.probes.iter().enumerate() {
                out.push(ProbeAt {
                    probe: p,
                    file: g.path.display().to_string(),
                    item: list.and_then(|n| n.idx(i)),
                    phase: Phase::Verify,
                });
            }
        }
        let own = tree.and_then(|t| t.at(&[Step::Key("verify"), Step::Key("probes")]));
        for (i, p) in s.verify.probes.iter().enumerate() {
            out.push(ProbeAt {
                probe: p,
                file: self.sf.clone(),
                item: own.and_then(|n| n.idx(i)),
                phase: Phase::Verify,
            });
        }
        out
    }

    fn probes(&mut self, probes: &[ProbeAt<'a>]) {
        let mut missing_reported = self.missing_target_reported;
        // Names: unique within a phase (reports and `needs` refer to them). A confirm probe
        // may share its name with the verify probe it mirrors.
        let mut first: BTreeMap<(Phase, &str), &ProbeAt<'a>> = BTreeMap::new();
        for p in probes {
            let what = format!("probe `{}`", p.name());
            self.target_ref(
                &p.file,
                p.probe.common().target,
                p.item,
                &what,
                &mut missing_reported,
            );
            if p.probe.expectations().is_empty() {
                self.push(
                    Diagnostic::at(&p.file, key_pos(p.item, "expect"), format!("probe `{}` has an empty `expect:`", p.name()))
                        .with_help(format!("name at least one fact of the `{}` probe to check; an empty `expect:` passes whatever the probe finds", p.probe.kind())),
                );
            }
            if p.name().is_empty() {
                self.push(Diagnostic::at(
                    &p.file,
                    p.name_pos(),
                    "a probe name cannot be empty",
                ));
                continue;
            }
            match first.get(&(p.phase, p.name())) {
                Some(f) => {
                    let at = f.name_pos();
                    self.push(
                        Diagnostic::at(&p.file, p.name_pos(), format!("probe name `{}` is used twice", p.name()))
                            .with_help(format!("first defined at {}:{}:{}; probe names are unique within preconditions, within confirm, and within verify and its included graders", f.file, at.line, at.column)),
                    );
                }
                None => {
                    first.insert((p.phase, p.name()), p);
                }
            }
        }
        self.needs(probes, &first);
    }

    fn needs(&mut self, probes: &[ProbeAt<'a>], first: &BTreeMap<(Phase, &str), &ProbeAt<'a>>) {
        for p in probes {
            for n in p.probe.common().needs {
                let target = n.value.as_str();
                if target == p.name() {
                    self.push(
                        Diagnostic::at(
                            &p.file,
                            spanned_pos(n),
                            format!("probe `{}` needs itself", p.name()),
                        )
                        .with_help(
                            "`needs:` lists other probes that must pass before this one runs",
                        ),
                    );
                    continue;
                }
                let other_phase = if p.phase == Phase::Confirm {
                    Phase::Verify
                } else {
                    Phase::Confirm
                };
                match first
                    .get(&(p.phase, target))
                    .or_else(|| first.get(&(other_phase, target)))
                {
                    Some(other) if other.phase == p.phase => {}
                    Some(other) => self.push(
                        Diagnostic::at(
                            &p.file,
                            spanned_pos(n),
                            format!(
                                "probe `{}` needs `{target}`, which is a {} probe",
                                p.name(),
                                other.phase.word()
                            ),
                        )
                        .with_help(format!(
                            "a {} probe can only need {} probes: they run together",
                            p.phase.word(),
                            p.phase.word()
                        )),
                    ),
                    None if p.phase == Phase::Verify && self.verify_incomplete => {}
                    None => {
                        let mut same: Vec<&str> = Vec::new();
                        for q in probes.iter().filter(|q| q.phase == p.phase) {
                            if !same.contains(&q.name()) {
                                same.push(q.name());
                            }
                        }
                        let help = suggest(target, &same).unwrap_or_else(|| {
                            format!("{} probes: {}", p.phase.word(), names(&same))
                        });
                        self.push(
                            Diagnostic::at(
                                &p.file,
                                spanned_pos(n),
                                format!(
                                    "probe `{}` needs `{target}`, which is not defined",
                                    p.name()
                                ),
                            )
                            .with_help(help),
                        );
                    }
                }
            }
        }
        // Cycles: depth-first search per phase over first definitions.
        for phase in [Phase::Confirm, Phase::Verify] {
            let group: Vec<&ProbeAt<'a>> = probes
                .iter()
                .filter(|p| {
                    p.phase == phase
                        && first
                            .get(&(phase, p.name()))
                            .is_some_and(|f| std::ptr::eq(*f, *p))
                })
                .collect();
            let index: BTreeMap<&str, usize> = group
                .iter()
                .enumerate()
                .map(|(i, p)| (p.name(), i))
                .collect();
            let mut state = vec![0u8; group.len()]; // 0 new, 1 on stack, 2 done
            let mut stack: Vec<usize> = Vec::new();
            for start in 0..group.len() {
                if state[start] == 0 {
                    self.cycle_dfs(start, &group, &index, &mut state, &mut stack);
                }
            }
        }
    }

    fn cycle_dfs(
        &mut self,
        u: usize,
        group: &[&ProbeAt<'a>],
        index: &BTreeMap<&str, usize>,
        state: &mut [u8],
        stack: &mut Vec<usize>,
    ) {
        state[u] = 1;
        stack.push(u);
        for n in group[u].probe.common().needs {
            let Some(&v) = index.get(n.value.as_str()) else {
                continue;
            };
            if v == u {
                continue;
            }
            match state[v] {
                0 => self.cycle_dfs(v, group, index, state, stack),
                1 => {
                    let from = stack.iter().position(|&x| x == v).unwrap_or(0);
                    let mut path: Vec<&str> =
                        stack[from..].iter().map(|&i| group[i].name()).collect();
                    path.push(group[v].name());
                    let p = group[u];
                    self.push(
                        Diagnostic::at(&p.file, spanned_pos(n), format!("`needs:` cycle: {}", path.join(" -> ")))
                            .with_help("a probe runs after the probes it needs; remove one of these `needs:` entries"),
                    );
                }
                _ => {}
            }
        }
        stack.pop();
        state[u] = 2;
    }

    // ---- verify, include, tasks --------------------------------------------------------

    fn verify_and_includes(&mut self, probes: &[ProbeAt<'a>]) {
        let s = &self.l.scenario;
        let sf = self.sf.clone();
        if s.verify.probes.is_empty() && s.verify.include.is_empty() {
            self.push(
                Diagnostic::at(&sf, key_pos(self.tree(), "verify"), "`verify:` has no probes: nothing would grade the fix")
                    .with_help("add probes under `verify.probes:` or include graders with `verify.include: [<grader>]`"),
            );
        }
        let _ = probes;
        let dir = self.l.graders_dir.clone();
        let mut seen = BTreeSet::new();
        for inc in &s.verify.include {
            let name = inc.value.as_str();
            let at = spanned_pos(inc);
            if !is_plain_name(name) {
                self.push(
                    Diagnostic::at(&sf, at, format!("`{name}` is not a grader name")).with_help(
                        format!(
                            "name a file of {} without `.yaml` (e.g. `etcd-health` for {})",
                            dir.display(),
                            grader_path(&dir, "etcd-health").display()
                        ),
                    ),
                );
                continue;
            }
            if !seen.insert(name) {
                self.push(Diagnostic::at(
                    &sf,
                    at,
                    format!("grader `{name}` is included twice"),
                ));
                continue;
            }
            let path = grader_path(&dir, name);
            if !path.is_file() {
                let available = available_graders(&dir);
                // The directory searched, absolute: a relative one depends on where breakfix ran.
                let searched = std::path::absolute(&dir).unwrap_or_else(|_| dir.clone());
                let help = if let Some(stem) = name
                    .strip_suffix(".yaml")
                    .filter(|s| available.iter().any(|a| a == s))
                {
                    format!("write the grader's name without `.yaml`: `{stem}`")
                } else if let Some(c) = closest(name, &available) {
                    format!(
                        "did you mean `{c}`? (graders are read from {})",
                        searched.display()
                    )
                } else {
                    format!(
                        "graders are read from {} (another directory: `--graders DIR`); available: {}",
                        searched.display(),
                        names(&available)
                    )
                };
                self.push(
                    Diagnostic::at(
                        &sf,
                        at,
                        format!(
                            "undefined grader `{name}`: {} does not exist",
                            path.display()
                        ),
                    )
                    .with_help(help),
                );
            }
        }
    }

    fn tasks(&mut self, probes: &[ProbeAt<'a>]) {
        let s = &self.l.scenario;
        let sf = self.sf.clone();
        let mut verify: Vec<&str> = Vec::new();
        for p in probes.iter().filter(|p| p.phase == Phase::Verify) {
            if !verify.contains(&p.name()) {
                verify.push(p.name());
            }
        }
        let confirm: Vec<&str> = probes
            .iter()
            .filter(|p| p.phase == Phase::Confirm)
            .map(|p| p.name())
            .collect();
        for t in &s.tasks {
            for r in &t.probes {
                let name = r.value.as_str();
                if verify.contains(&name) || (self.verify_incomplete && !confirm.contains(&name)) {
                    continue;
                }
                let (message, help) = if confirm.contains(&name) {
                    (
                        format!("task `{}` refers to `{name}`, a confirm probe", t.title),
                        "a task is done when its verify probes pass; list verify probes here"
                            .to_string(),
                    )
                } else {
                    (
                        format!(
                            "task `{}` refers to probe `{name}`, which is not a verify probe",
                            t.title
                        ),
                        suggest(name, &verify)
                            .unwrap_or_else(|| format!("verify probes: {}", names(&verify))),
                    )
                };
                self.push(Diagnostic::at(&sf, spanned_pos(r), message).with_help(help));
            }
        }
    }

    // ---- graders -----------------------------------------------------------------------

    fn graders(&mut self) {
        for f in &self.l.failed_graders {
            self.out.push(f.diagnostic.clone());
        }
        for g in &self.l.graders {
            let file = g.path.display().to_string();
            let tree = g.tree.as_ref();
            self.header(&file, &g.grader.api_version, &g.grader.kind, "Grader");
            let meta_name = &g.grader.metadata.name;
            let name_pos = tree
                .and_then(|t| t.at(&[Step::Key("metadata"), Step::Key("name")]))
                .map(|n| n.pos)
                .unwrap_or_default();
            if meta_name != &g.name {
                self.push(
                    Diagnostic::at(
                        &file,
                        name_pos,
                        format!(
                            "grader name `{meta_name}` does not match its file name `{}.yaml`",
                            g.name
                        ),
                    )
                    .with_help(format!(
                        "a grader's `metadata.name` is its file name without `.yaml`: `{}`",
                        g.name
                    )),
                );
            }
            self.params(&file, tree, &g.grader.params);
            if g.grader.probes.is_empty() {
                self.push(Diagnostic::at(
                    &file,
                    key_pos(tree, "probes"),
                    "`probes:` is empty: the grader checks nothing",
                ));
            }
        }
    }

    // ---- templates ---------------------------------------------------------------------

    fn templates(&mut self) {
        let mut scenario_params: BTreeMap<String, String> = BTreeMap::new();
        for g in &self.l.graders {
            for (k, p) in &g.grader.params {
                scenario_params.insert(k.clone(), p.default.0.clone());
            }
        }
        for (k, p) in &self.l.scenario.params {
            scenario_params.insert(k.clone(), p.default.0.clone());
        }
        let l = self.l;
        if let Some(t) = l.tree.as_ref() {
            let sf = self.sf.clone();
            self.templates_in(
                &sf,
                &l.source,
                t,
                &scenario_params,
                "the scenario's `params:` (or an included grader's)",
            );
        }
        for g in &l.graders {
            let own: BTreeMap<String, String> = g
                .grader
                .params
                .iter()
                .map(|(k, p)| (k.clone(), p.default.0.clone()))
                .collect();
            if let Some(t) = g.tree.as_ref() {
                self.templates_in(
                    &g.path.display().to_string(),
                    &g.source,
                    t,
                    &own,
                    "the grader's `params:` (a scenario can override its default)",
                );
            }
        }
    }

    fn templates_in(
        &mut self,
        file: &str,
        source: &str,
        tree: &Node,
        params: &BTreeMap<String, String>,
        declare_where: &str,
    ) {
        // (where, node, value, is the bound of a number matcher)
        let mut scalars: Vec<(Where, &Node, &str, bool)> = Vec::new();
        tree.each_scalar(&mut |path, n, s| {
            let bound = matches!(path.last(), Some(Step::Key("lt" | "gt")));
            scalars.push((classify(path), n, s, bound))
        });
        for (place, node, value, bound) in scalars {
            let Some(off) = node.pos.byte_offset else {
                continue;
            };
            let Some(raw) = source.get(off..off + node.pos.byte_len) else {
                continue;
            };
            if !raw.contains("{{") && !raw.contains("{%") && !raw.contains("{#") {
                continue;
            }
            let ctx = TemplateCtx {
                file,
                source,
                params,
                declare_where,
            };
            match place {
                Where::Rendered => {}
                Where::AsWritten(key) => {
                    let start = ["{{", "{%", "{#"]
                        .iter()
                        .filter_map(|m| raw.find(m))
                        .min()
                        .unwrap_or(0);
                    let end = ["}}", "%}", "#}"]
                        .iter()
                        .filter_map(|m| raw[start..].find(m))
                        .min()
                        .map(|e| start + e + 2)
                        .unwrap_or(raw.len());
                    let pos = pos_at(source, off + start, end - start);
                    let help = if key == "expect" {
                        "matcher values are compared as written; check the templated value in the probe itself (e.g. in a command's `run:`) instead".to_string()
                    } else {
                        format!("`{key}` is used as written; templates are rendered in the fields probes and steps act on (commands, units, paths, ...) and in the title, description, task text and hints")
                    };
                    self.push(
                        Diagnostic::at(file, pos, format!("template in `{key}` is not rendered"))
                            .with_help(help),
                    );
                    continue;
                }
            }
            let before = self.out.len();
            if raw.contains("{%") || raw.contains("{#") {
                // Statements (`{% for %}`, `{% set %}`) bind names: check the value as a whole.
                self.whole_template(&ctx, node, raw, value);
            } else {
                self.expressions(&ctx, off, raw);
            }
            // `lt` / `gt` compare with a number: the template must render to one.
            if bound && self.out.len() == before {
                if let Ok(out) = self.render_sample(value, params) {
                    if out.trim().parse::<f64>().is_err() {
                        let pos = pos_at(source, off, node.pos.byte_len);
                        self.push(
                            Diagnostic::at(
                                file,
                                pos,
                                format!("`{value}` renders to `{out}`, which is not a number"),
                            )
                            .with_help("`lt` and `gt` compare with a number: give the param a numeric default (a learner's or instructor's `--param` must be one too)"),
                        );
                    }
                }
            }
        }
    }

    /// Every `{{ ... }}` of a scalar's source text `raw` (at byte `off`), one at a time.
    fn expressions(&mut self, ctx: &TemplateCtx<'_>, off: usize, raw: &str) {
        let quote = raw.chars().next().filter(|c| *c == '"' || *c == '\'');
        let mut from = 0;
        // One Go-template diagnostic per value is enough (`{{range}}...{{end}}` has several).
        let mut go_reported = false;
        while let Some(i) = raw[from..].find("{{").map(|i| from + i) {
            let Some(j) = raw[i + 2..].find("}}").map(|j| i + 2 + j) else {
                let pos = pos_at(ctx.source, off + i, 2);
                self.push(
                    Diagnostic::at(
                        ctx.file,
                        pos,
                        "unclosed template expression: `{{` without `}}`",
                    )
                    .with_help(LITERAL_HELP),
                );
                return;
            };
            let text = &raw[i..j + 2];
            from = j + 2;
            let expr = unquote(text, quote);
            let at = off + i;
            if looks_like_go_template(&expr) {
                if go_reported {
                    continue;
                }
                go_reported = true;
                let pos = pos_at(ctx.source, at, text.len());
                self.push(
                    Diagnostic::at(
                        ctx.file,
                        pos,
                        format!("`{text}` looks like a Go template, not a breakfix template"),
                    )
                    .with_help(LITERAL_HELP),
                );
                continue;
            }
            match self.env.template_from_str(&expr) {
                Err(e) => {
                    let pos = pos_at(ctx.source, at, text.len());
                    self.push(Diagnostic::at(ctx.file, pos, format!("template syntax error: {}", minijinja_message(&e))).with_help(format!("template expressions look like `{{{{ params.name }}}}`; {LITERAL_HELP}")));
                }
                Ok(t) => {
                    let mut vars: Vec<String> = t.undeclared_variables(true).into_iter().collect();
                    vars.sort();
                    let problems = self.variable_problems(&vars, ctx);
                    for (var, message, help) in &problems {
                        let pos = locate(ctx.source, at, text, var);
                        self.push(
                            Diagnostic::at(ctx.file, pos, message.clone()).with_help(help.clone()),
                        );
                    }
                    if problems.is_empty() {
                        if let Some(msg) = self.dry_render(&expr, ctx.params) {
                            let pos = pos_at(ctx.source, at, text.len());
                            self.push(
                                Diagnostic::at(ctx.file, pos, msg)
                                    .with_help("filters: minijinja's built-in filters and `raw`"),
                            );
                        }
                    }
                }
            }
        }
    }

    /// A scalar with `{% ... %}` statements, checked as one template.
    fn whole_template(&mut self, ctx: &TemplateCtx<'_>, node: &Node, raw: &str, value: &str) {
        let start = node.pos.byte_offset.unwrap_or(0);
        let first_line = raw.split('\n').next().unwrap_or(raw);
        match self.env.template_from_str(value) {
            Err(e) => {
                let pos = pos_at(ctx.source, start, first_line.len());
                let line = e
                    .line()
                    .map(|l| format!(" (line {l} of the value)"))
                    .unwrap_or_default();
                self.push(Diagnostic::at(
                    ctx.file,
                    pos,
                    format!("template syntax error{line}: {}", minijinja_message(&e)),
                ));
            }
            Ok(t) => {
                let mut vars: Vec<String> = t.undeclared_variables(true).into_iter().collect();
                vars.sort();
                let problems = self.variable_problems(&vars, ctx);
                for (var, message, help) in &problems {
                    let pos = locate(ctx.source, start, raw, var);
                    self.push(
                        Diagnostic::at(ctx.file, pos, message.clone()).with_help(help.clone()),
                    );
                }
                if problems.is_empty() {
                    if let Some(msg) = self.dry_render(value, ctx.params) {
                        let pos = pos_at(ctx.source, start, first_line.len());
                        self.push(Diagnostic::at(ctx.file, pos, msg));
                    }
                }
            }
        }
    }

    /// `(variable text to point at, message, help)` for each variable the template context
    /// does not have.
    fn variable_problems(
        &self,
        vars: &[String],
        ctx: &TemplateCtx<'_>,
    ) -> Vec<(String, String, String)> {
        let globals: Vec<String> = self.env.globals().map(|(k, _)| k.to_string()).collect();
        let mut out = Vec::new();
        for var in vars {
            let parts: Vec<&str> = var.split('.').collect();
            let root = parts[0];
            match root {
                "params" => {
                    let Some(name) = parts.get(1) else { continue };
                    if !ctx.params.contains_key(*name) {
                        let declared: Vec<&String> = ctx.params.keys().collect();
                        let help = match closest(name, &declared) {
                            Some(c) => format!("did you mean `params.{c}`?"),
                            None => format!(
                                "declare `{name}` with a default under {}; declared: {}",
                                ctx.declare_where,
                                names(&declared)
                            ),
                        };
                        out.push((
                            format!("params.{name}"),
                            format!("undefined param `{name}`"),
                            help,
                        ));
                    }
                }
                "node" | "cluster" => {
                    if let Some((bad, known)) = unknown_attr(&parts) {
                        out.push((
                            bad.clone(),
                            format!("undefined template variable `{bad}`"),
                            format!(
                                "`{}` has {}",
                                bad.rsplit_once('.').map(|(p, _)| p).unwrap_or(root),
                                names(known)
                            ),
                        ));
                    }
                }
                "nodes" => {}
                _ if globals.iter().any(|g| g == root) => {}
                _ => {
                    let mut roots: Vec<&str> = TEMPLATE_ROOTS.to_vec();
                    roots.extend(globals.iter().map(String::as_str));
                    let help = match closest(root, &roots) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None => "templates can use `params.<name>`, `node` (name, address, roles), `nodes` and `cluster` (name, topology, etcd, kubeconfig)".to_string(),
                    };
                    out.push((
                        root.to_string(),
                        format!("undefined template variable `{root}`"),
                        help,
                    ));
                }
            }
        }
        out
    }

    /// Renders `template` with sample values to find unknown filters, tests and functions.
    fn dry_render(&self, template: &str, params: &BTreeMap<String, String>) -> Option<String> {
        match self.render_sample(template, params) {
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::UnknownFilter | ErrorKind::UnknownTest | ErrorKind::UnknownFunction
                ) =>
            {
                Some(format!("template error: {}", minijinja_message(&e)))
            }
            _ => None,
        }
    }

    /// Renders `template` with the params' defaults and a sample node and cluster (the
    /// sandbox's controlplane, external topology).
    fn render_sample(
        &self,
        template: &str,
        params: &BTreeMap<String, String>,
    ) -> std::result::Result<String, minijinja::Error> {
        let node = minijinja::context! { name => "controlplane", address => "198.18.0.11", roles => vec!["control-plane"] };
        let ctx = minijinja::context! {
            params => params.clone(),
            node => node.clone(),
            nodes => vec![node],
            cluster => minijinja::context! {
                name => "cluster",
                topology => "external",
                kubeconfig => "/etc/kubernetes/admin.conf",
                etcd => minijinja::context! {
                    endpoints => vec!["https://127.0.0.1:2379"],
                    endpoint => "https://127.0.0.1:2379",
                    ca_file => "/etc/kubernetes/pki/etcd/ca.crt",
                    cert_file => "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
                    key_file => "/etc/kubernetes/pki/etcd/healthcheck-client.key",
                },
            },
        };
        self.env.render_str(template, ctx)
    }
}

/// How to keep `{{` literal (Go templates of kubectl, crictl, docker).
const LITERAL_HELP: &str = "to keep `{{ }}` as written (a kubectl or crictl Go template), wrap it: `{% raw %}...{% endraw %}`";

/// `{{.field}}`, `{{range ...}}`, `{{end}}`: Go template syntax (kubectl, crictl, docker).
fn looks_like_go_template(expr: &str) -> bool {
    let inner = expr.trim_start_matches("{{").trim_end_matches("}}").trim();
    let first = inner.split_whitespace().next().unwrap_or("");
    inner.starts_with('.')
        || inner.starts_with('$')
        || ["end", "else"].contains(&inner)
        || (["range", "with", "define", "template", "block"].contains(&first)
            && inner.contains(" ."))
        || (first == "if" && inner.contains(" ."))
}

/// What happens to the text of a scalar.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Where {
    /// A field of a probe or step that is rendered per node (`run:`, `unit:`, `path:`, ...).
    Rendered,
    /// A field used as written (the key named): a template there would never be rendered.
    AsWritten(String),
}

/// Keys of a probe or step whose values are not rendered.
const NOT_RENDERED: &[&str] = &[
    "kind",
    "name",
    "target",
    "needs",
    "timeout",
    "within",
    "interval",
    "stable_for",
];

/// Keys whose values are text for people.
const PROSE: &[&str] = &["title", "description", "text", "why"];

/// Text for people that the plan renders (`plan::build`): the scenario's title and
/// description, each task's title and text, each hint's text, a wrong fix's `why`.
fn rendered_prose(path: &[Step<'_>]) -> bool {
    matches!(
        path,
        [Step::Key("metadata"), Step::Key("title" | "description")]
            | [
                Step::Key("tasks"),
                Step::Idx(_),
                Step::Key("title" | "text")
            ]
            | [
                Step::Key("tasks"),
                Step::Idx(_),
                Step::Key("hints"),
                Step::Idx(_),
                Step::Key("text")
            ]
            | [Step::Key("wrong_fixes"), Step::Idx(_), Step::Key("why")]
    )
}

/// Classifies a scalar by its path in a scenario or grader file.
fn classify(path: &[Step<'_>]) -> Where {
    let key = |i: usize| match path.get(i) {
        Some(Step::Key(k)) => Some(*k),
        _ => None,
    };
    let is_idx = |i: usize| matches!(path.get(i), Some(Step::Idx(_)));
    let last_key = path.iter().rev().find_map(|s| match s {
        Step::Key(k) => Some(*k),
        Step::Idx(_) => None,
    });
    if rendered_prose(path) {
        return Where::Rendered;
    }
    if key(0) == Some("metadata") || last_key.is_some_and(|k| PROSE.contains(&k)) {
        return Where::AsWritten(last_key.unwrap_or("this field").to_string());
    }
    // Where the fields of a probe or step start in `path`.
    let item_start = match key(0) {
        Some("preconditions" | "confirm" | "setup" | "faults" | "solution" | "probes")
            if is_idx(1) =>
        {
            Some(2)
        }
        Some("verify") if key(1) == Some("probes") && is_idx(2) => Some(3),
        Some("wrong_fixes") if is_idx(1) && key(2) == Some("steps") && is_idx(3) => Some(4),
        _ => None,
    };
    let Some(start) = item_start else {
        return Where::AsWritten(last_key.unwrap_or("this field").to_string());
    };
    match key(start) {
        Some(k) if NOT_RENDERED.contains(&k) => Where::AsWritten(k.to_string()),
        Some("edit") if key(start + 1) == Some("yaml_set") && key(start + 2) == Some("value") => {
            Where::AsWritten("value".into())
        }
        _ => Where::Rendered,
    }
}

/// Where a template is checked.
struct TemplateCtx<'a> {
    file: &'a str,
    source: &'a str,
    params: &'a BTreeMap<String, String>,
    declare_where: &'a str,
}

/// The environment templates are checked with: the renderer's own, so a template that
/// validates is one that renders.
fn template_env() -> Environment<'static> {
    crate::template::environment()
}

/// For `node.x` / `cluster.x.y`: the first unknown attribute path and the known names there.
fn unknown_attr(parts: &[&str]) -> Option<(String, &'static [&'static str])> {
    let (root, rest) = parts.split_first()?;
    let first = rest.first()?;
    let known: &'static [&'static str] = if *root == "node" {
        NODE_ATTRS
    } else {
        CLUSTER_ATTRS
    };
    if !known.contains(first) {
        return Some((format!("{root}.{first}"), known));
    }
    if *root == "cluster" && *first == "etcd" {
        if let Some(second) = rest.get(1) {
            if !ETCD_ATTRS.contains(second) {
                return Some((format!("cluster.etcd.{second}"), ETCD_ATTRS));
            }
        }
    }
    None
}

/// The detail of a minijinja error, without its `(in <string>:1)` suffix.
fn minijinja_message(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => d.to_string(),
        None => e.kind().to_string(),
    }
}

/// Undoes YAML quoting inside an expression taken from a quoted scalar's source text.
fn unquote(text: &str, quote: Option<char>) -> String {
    match quote {
        Some('"') => text.replace("\\\"", "\"").replace("\\\\", "\\"),
        Some('\'') => text.replace("''", "'"),
        _ => text.to_string(),
    }
}

/// Position of `needle` inside `text` (which starts at byte `at` of `source`), else of `text`.
fn locate(source: &str, at: usize, text: &str, needle: &str) -> Pos {
    match find_word(text, needle) {
        Some(i) => pos_at(source, at + i, needle.len()),
        None => pos_at(source, at, text.split('\n').next().unwrap_or(text).len()),
    }
}

/// First occurrence of `needle` in `text` not inside a longer identifier.
fn find_word(text: &str, needle: &str) -> Option<usize> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(i) = text[from..].find(needle).map(|i| from + i) {
        let before = text[..i].chars().next_back();
        let after = text[i + needle.len()..].chars().next();
        if !before.is_some_and(|c| ident(c) || c == '.') && !after.is_some_and(ident) {
            return Some(i);
        }
        from = i + needle.len();
    }
    None
}

/// Line, column and character length of `len` bytes at byte `offset` of `source`.
fn pos_at(source: &str, offset: usize, len: usize) -> Pos {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() as u64 + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = source
        .get(line_start..offset)
        .map(|s| s.chars().count())
        .unwrap_or(0) as u64
        + 1;
    let chars = source
        .get(offset..(offset + len).min(source.len()))
        .map(|s| s.chars().count())
        .unwrap_or(0) as u64;
    Pos {
        line,
        column,
        byte_offset: Some(offset),
        byte_len: len,
        len: chars,
    }
}

/// Stems of the `*.yaml` files in `dir`, sorted.
fn available_graders(dir: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".yaml"))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_from_offsets() {
        let src = "a: 1\nbé: {{ x }}\n";
        let off = src.find("{{").expect("has");
        let p = pos_at(src, off, 7);
        assert_eq!((p.line, p.column, p.len), (2, 5, 7));
    }

    #[test]
    fn words() {
        assert_eq!(
            find_word("{{ xparams.y }} {{ params.y }}", "params.y"),
            Some(19)
        );
        assert_eq!(find_word("{{ params.yy }}", "params.y"), None);
    }

    #[test]
    fn names_and_identifiers() {
        assert!(is_name("etcd-service-stopped"));
        assert!(!is_name("Etcd"));
        assert!(!is_name(""));
        assert!(is_identifier("data_dir"));
        assert!(!is_identifier("data-dir"));
        assert!(!is_identifier("1x"));
    }
}
