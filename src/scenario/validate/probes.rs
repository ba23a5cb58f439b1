//! Probes: each probe's target and `expect:`, unique names per phase, and `needs:` (same
//! phase, defined, no cycles).

use std::collections::BTreeMap;

use super::{field_pos, item_pos, key_pos, spanned_pos, Validator};
use crate::probe::Probe;
use crate::scenario::diagnostic::{names, suggest, Code, Diagnostic};
use crate::scenario::tree::{Node, Pos, Step};

/// Which run a probe belongs to (`needs` stay within one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Phase {
    Preconditions,
    Confirm,
    Verify,
    /// The `evidence:` of task N (0-based).
    Evidence(usize),
    /// `signals:` (hints' `when:`).
    Signals,
}

impl Phase {
    pub(super) fn word(self) -> &'static str {
        match self {
            Phase::Preconditions => "preconditions",
            Phase::Confirm => "confirm",
            Phase::Verify => "verify",
            Phase::Evidence(_) => "task evidence",
            Phase::Signals => "signals",
        }
    }
}

/// A probe with where it was written.
pub(super) struct ProbeAt<'a> {
    pub(super) probe: &'a Probe,
    pub(super) file: String,
    pub(super) item: Option<&'a Node>,
    pub(super) phase: Phase,
}

impl ProbeAt<'_> {
    pub(super) fn name(&self) -> &str {
        self.probe.name()
    }

    fn name_pos(&self) -> Pos {
        field_pos(self.item, "name")
    }
}

impl<'a> Validator<'a> {
    pub(super) fn collect_probes(&self) -> Vec<ProbeAt<'a>> {
        let s = &self.l.scenario;
        let tree = self.tree();
        let mut out = Vec::new();
        // Each list's probes with the YAML node of the list they came from.
        let mut add = |probes: &'a [Probe], list: Option<&'a Node>, file: &str, phase: Phase| {
            for (i, p) in probes.iter().enumerate() {
                out.push(ProbeAt {
                    probe: p,
                    file: file.to_string(),
                    item: list.and_then(|n| n.idx(i)),
                    phase,
                });
            }
        };
        let sf = self.sf.as_str();
        let at = |key: &str| tree.and_then(|t| t.get(key));
        add(
            &s.preconditions,
            at("preconditions"),
            sf,
            Phase::Preconditions,
        );
        add(&s.confirm, at("confirm"), sf, Phase::Confirm);
        for g in &self.l.graders {
            let list = g.tree.as_ref().and_then(|t| t.get("probes"));
            add(
                &g.grader.probes,
                list,
                &g.path.display().to_string(),
                Phase::Verify,
            );
        }
        let own = tree.and_then(|t| t.at(&[Step::Key("verify"), Step::Key("probes")]));
        add(&s.verify.probes, own, sf, Phase::Verify);
        add(&s.signals, at("signals"), sf, Phase::Signals);
        for (i, t) in s.tasks.iter().enumerate() {
            let list = at("tasks")
                .and_then(|n| n.idx(i))
                .and_then(|n| n.get("evidence"));
            add(&t.evidence, list, sf, Phase::Evidence(i));
        }
        out
    }

    pub(super) fn probes(&mut self, probes: &[ProbeAt<'a>]) {
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
                    Diagnostic::at(Code::EmptyExpect, &p.file, key_pos(p.item, "expect"), format!("probe `{}` has an empty `expect:`", p.name()))
                        .with_help(format!("name at least one fact of the `{}` probe to check; an empty `expect:` passes whatever the probe finds", p.probe.kind())),
                );
            }
            for problem in p.probe.problems() {
                let mut d = Diagnostic::at(
                    Code::ProbeKindRule,
                    &p.file,
                    item_pos(p.item),
                    format!("{what}: {}", problem.message),
                );
                if let Some(h) = problem.help {
                    d = d.with_help(h);
                }
                self.push(d);
            }
            if p.name().is_empty() {
                self.push(Diagnostic::at(
                    Code::EmptyProbeName,
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
                        Diagnostic::at(Code::DuplicateProbeName, &p.file, p.name_pos(), format!("probe name `{}` is used twice", p.name()))
                            .with_help(format!("first defined at {}:{}:{}; probe names are unique within preconditions, within confirm, within verify and its included graders, within signals, and within each task's evidence", f.file, at.line, at.column)),
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
                            Code::NeedsItself,
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
                let other_phase = match p.phase {
                    Phase::Confirm | Phase::Evidence(_) | Phase::Signals => Phase::Verify,
                    Phase::Preconditions | Phase::Verify => Phase::Confirm,
                };
                match first
                    .get(&(p.phase, target))
                    .or_else(|| first.get(&(other_phase, target)))
                {
                    Some(other) if other.phase == p.phase => {}
                    Some(other) => self.push(
                        Diagnostic::at(
                            Code::NeedsOtherPhase,
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
                                Code::NeedsUndefined,
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
        let evidence = (0..self.l.scenario.tasks.len()).map(Phase::Evidence);
        let phases = [Phase::Confirm, Phase::Verify, Phase::Signals];
        for phase in phases.into_iter().chain(evidence) {
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
                        Diagnostic::at(Code::NeedsCycle, &p.file, spanned_pos(n), format!("`needs:` cycle: {}", path.join(" -> ")))
                            .with_help("a probe runs after the probes it needs; remove one of these `needs:` entries"),
                    );
                }
                _ => {}
            }
        }
        stack.pop();
        state[u] = 2;
    }
}
