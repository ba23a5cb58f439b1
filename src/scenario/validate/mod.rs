//! Validation: every problem a parsed scenario (and the graders it includes) still has, each
//! at the offending value's `file:line:col`. All problems are collected, not just the first.
//!
//! Parse errors (syntax, duplicate keys, unknown fields, wrong types, bad durations, unknown
//! kinds, bad matchers) come from [`super::load`](mod@super::load). Every diagnostic carries
//! the code of its rule ([`super::Code`]; docs/diagnostics.md). The checks here, one file per
//! group, each group with its own range of codes:
//! - `header.rs` (BF1xx): `apiVersion: breakfix/v1`, `kind: Scenario` (graders:
//!   `kind: Grader`); `metadata.name` of lowercase letters, digits and dashes; parameter names
//!   are identifiers (`params.<name>` must be writable in a template); each target has exactly
//!   one of `role:`/`node:` (`all:` only with `role:`); every `target:` names a target, and a
//!   missing `target:` is allowed only with exactly one target;
//! - `actions.rs` (BF2xx): `faults:` is not empty; each fault and step passes its kind's own
//!   rules (e.g. a `command` fault has `undo:`);
//! - `probes.rs` (BF3xx): probe names are unique within preconditions, within confirm and
//!   within verify (with its graders); `expect:` is not empty; `needs:` names a probe of the
//!   same phase, without cycles;
//! - `verify.rs` (BF4xx): `verify:` has probes (own or included), every `include:` is a grader
//!   file; task `probes:` name verify probes;
//! - `graders.rs` (BF5xx): each included grader's name (its file stem) and probes; its header
//!   and params are checked as the scenario's are;
//! - `templates.rs` (BF6xx): templates (`{{ ... }}` in any value) parse, and use only
//!   `params.<declared>`, `node`, `nodes`, `cluster` (and minijinja's global functions) with
//!   known attributes and filters; no template where nothing renders it.
//!
//! This file holds the entry point ([`validate`]), the `Validator` every group adds to, and
//! the position helpers they share.

mod actions;
mod graders;
mod header;
mod probes;
mod templates;
mod verify;

use std::collections::BTreeMap;

use minijinja::Environment;
use serde_saphyr::Spanned;

use super::diagnostic::Diagnostic;
use super::load::Loaded;
use super::tree::{Node, Pos};

use templates::template_env;
pub use templates::TEMPLATE_ROOTS;

/// The format version this build reads.
pub const API_VERSION: &str = "breakfix/v1";

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

/// The state of one validation: the loaded files, the diagnostics found so far, and what
/// one group of checks tells a later one.
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
}
