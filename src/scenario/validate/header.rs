//! Header, params and targets: `apiVersion`/`kind`, the scenario's name, parameter names,
//! target definitions, and every `target:` reference (of faults, steps and probes).

use std::collections::BTreeMap;

use serde_saphyr::Spanned;

use super::{item_pos, key_pos, spanned_pos, Validator, API_VERSION};
use crate::scenario::diagnostic::{names, suggest, Code, Diagnostic};
use crate::scenario::tree::Node;
use crate::scenario::{Param, TargetSpec};

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

impl Validator<'_> {
    pub(super) fn header(
        &mut self,
        file: &str,
        api: &Spanned<String>,
        kind: &Spanned<String>,
        want_kind: &str,
    ) {
        if api.value != API_VERSION {
            self.push(
                Diagnostic::at(
                    Code::UnsupportedApiVersion,
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
                    Code::WrongFileKind,
                    file,
                    spanned_pos(kind),
                    format!("expected `kind: {want_kind}`, found `{}`", kind.value),
                )
                .with_help(help),
            );
        }
    }

    pub(super) fn scenario_header(&mut self) {
        let s = &self.l.scenario;
        let sf = self.sf.clone();
        self.header(&sf, &s.api_version, &s.kind, "Scenario");
        let name = &s.metadata.name;
        if !is_name(&name.value) {
            self.push(
                Diagnostic::at(
                    Code::InvalidScenarioName,
                    &sf,
                    spanned_pos(name),
                    format!("invalid scenario name `{}`", name.value),
                )
                .with_help("use lowercase letters, digits and dashes, e.g. `etcd-service-stopped`"),
            );
        }
    }

    pub(super) fn params(
        &mut self,
        file: &str,
        tree: Option<&Node>,
        params: &BTreeMap<String, Param>,
    ) {
        let section = tree.and_then(|t| t.get("params"));
        for name in params.keys() {
            if !is_identifier(name) {
                let suggestion = name.replace(['-', '.', ' '], "_");
                self.push(
                    Diagnostic::at(Code::InvalidParamName, file, key_pos(section, name), format!("invalid parameter name `{name}`"))
                        .with_help(format!(
                            "templates refer to parameters as `params.<name>`: use letters, digits and `_` (e.g. `{suggestion}`)"
                        )),
                );
            }
        }
    }

    pub(super) fn targets(&mut self) {
        let section = self.tree().and_then(|t| t.get("targets"));
        let sf = self.sf.clone();
        for (name, spec) in &self.l.scenario.targets {
            let TargetSpec { role, node, all } = spec;
            let at = key_pos(section, name);
            match (role, node) {
                (Some(_), Some(_)) => self.push(
                    Diagnostic::at(
                        Code::TargetRoleAndNode,
                        &sf,
                        at,
                        format!("target `{name}` sets both `role:` and `node:`"),
                    )
                    .with_help("a target selects nodes either by role or by node name; keep one"),
                ),
                (None, None) => self.push(
                    Diagnostic::at(
                        Code::TargetSelectsNothing,
                        &sf,
                        at,
                        format!("target `{name}` selects no node"),
                    )
                    .with_help(
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
                        Code::TargetAllWithNode,
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
    pub(super) fn target_ref(
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
                            Code::UndefinedTarget,
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
                            Diagnostic::at(Code::NoTargets, file, item_pos(item), format!("{what} has no `target:` and the scenario defines no `targets:`"))
                                .with_help("add e.g. `targets: { cp: { role: control-plane } }`; with one target, `target:` may be left out"),
                        );
                    }
                }
                n => self.push(
                    Diagnostic::at(
                        Code::TargetNeeded,
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
