//! Verify, includes and tasks: `verify:` grades something, every `include:` names a grader
//! file, and task `probes:` name verify probes.

use std::collections::BTreeSet;

use super::probes::{Phase, ProbeAt};
use super::{key_pos, spanned_pos, Validator};
use crate::scenario::diagnostic::{closest, names, suggest, Code, Diagnostic};
use crate::scenario::load::{grader_path, is_plain_name};

impl<'a> Validator<'a> {
    pub(super) fn verify_and_includes(&mut self, probes: &[ProbeAt<'a>]) {
        let s = &self.l.scenario;
        let sf = self.sf.clone();
        if s.verify.probes.is_empty() && s.verify.include.is_empty() {
            self.push(
                Diagnostic::at(Code::NoVerifyProbes, &sf, key_pos(self.tree(), "verify"), "`verify:` has no probes: nothing would grade the fix")
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
                    Diagnostic::at(
                        Code::InvalidIncludeName,
                        &sf,
                        at,
                        format!("`{name}` is not a grader name"),
                    )
                    .with_help(format!(
                        "name a file of {} without `.yaml` (e.g. `etcd-health` for {})",
                        dir.display(),
                        grader_path(&dir, "etcd-health").display()
                    )),
                );
                continue;
            }
            if !seen.insert(name) {
                self.push(Diagnostic::at(
                    Code::DuplicateInclude,
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
                        Code::UndefinedGrader,
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

    pub(super) fn tasks(&mut self, probes: &[ProbeAt<'a>]) {
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
        let tasks = self.tree().and_then(|t| t.get("tasks"));
        for (i, t) in s.tasks.iter().enumerate() {
            if !t.evidence.is_empty() && !t.probes.is_empty() {
                let item = tasks.and_then(|n| n.idx(i));
                self.push(
                    Diagnostic::at(
                        Code::TaskProbesAndEvidence,
                        &sf,
                        key_pos(item, "evidence"),
                        format!("task `{}` has both `probes:` and `evidence:`", t.title),
                    )
                    .with_help("a task is done either when the verify probes it names pass or when its own evidence probes pass; keep one of them"),
                );
            }
            // Hints' `when:` names a signal, a verify probe or one of this task's evidence.
            let mut known: Vec<&str> = probes
                .iter()
                .filter(|p| {
                    matches!(p.phase, Phase::Signals | Phase::Verify)
                        || p.phase == Phase::Evidence(i)
                })
                .map(|p| p.name())
                .collect();
            known.dedup();
            for h in &t.hints {
                for w in &h.when {
                    let name = w.value.as_str();
                    if known.contains(&name) || self.verify_incomplete {
                        continue;
                    }
                    self.push(
                        Diagnostic::at(
                            Code::HintUnknownProbe,
                            &sf,
                            spanned_pos(w),
                            format!(
                                "a hint of task `{}` waits for probe `{name}`, which is not a signal, a verify probe or evidence of this task",
                                t.title
                            ),
                        )
                        .with_help(suggest(name, &known).unwrap_or_else(|| {
                            format!("known here: {}", names(&known))
                        })),
                    );
                }
            }
            for r in &t.probes {
                let name = r.value.as_str();
                if verify.contains(&name) || (self.verify_incomplete && !confirm.contains(&name)) {
                    continue;
                }
                let (code, message, help) = if confirm.contains(&name) {
                    (
                        Code::TaskConfirmProbe,
                        format!("task `{}` refers to `{name}`, a confirm probe", t.title),
                        "a task is done when its verify probes pass; list verify probes here"
                            .to_string(),
                    )
                } else {
                    (
                        Code::TaskUnknownProbe,
                        format!(
                            "task `{}` refers to probe `{name}`, which is not a verify probe",
                            t.title
                        ),
                        suggest(name, &verify)
                            .unwrap_or_else(|| format!("verify probes: {}", names(&verify))),
                    )
                };
                self.push(Diagnostic::at(code, &sf, spanned_pos(r), message).with_help(help));
            }
        }
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
