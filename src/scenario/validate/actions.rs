//! Faults and steps: `faults:` is not empty, and every fault and step (setup, faults,
//! solution, wrong fixes) names a target and passes its kind's own rules ([`Action::problems`]).

use super::{item_pos, key_pos, Validator};
use crate::fault::{Action, Role};
use crate::scenario::diagnostic::{Code, Diagnostic};
use crate::scenario::tree::Step;

impl Validator<'_> {
    pub(super) fn actions(&mut self) {
        let s = &self.l.scenario;
        let tree = self.tree();
        let sf = self.sf.clone();
        let mut missing_reported = false;
        if s.faults.is_empty() {
            self.push(
                Diagnostic::at(
                    Code::NoFaults,
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
        for (j, w) in s.alternative_fixes.iter().enumerate() {
            lists.push((
                vec![
                    Step::Key("alternative_fixes"),
                    Step::Idx(j),
                    Step::Key("steps"),
                ],
                &w.steps,
                Role::Step,
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
                    let mut d = Diagnostic::at(
                        Code::KindRule,
                        &sf,
                        item_pos(item),
                        format!("{what}: {}", problem.message),
                    );
                    if let Some(h) = problem.help {
                        d = d.with_help(h);
                    }
                    self.push(d);
                }
            }
        }
        self.missing_target_reported = missing_reported;
    }
}
