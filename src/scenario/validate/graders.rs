//! Graders: each included grader's load error, header, name (its file stem), params and
//! probes (a grader's probes are checked with verify's, its templates with the others).

use super::{key_pos, Validator};
use crate::scenario::diagnostic::{Code, Diagnostic};
use crate::scenario::tree::Step;

impl Validator<'_> {
    pub(super) fn graders(&mut self) {
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
                        Code::GraderNameMismatch,
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
                    Code::GraderWithoutProbes,
                    &file,
                    key_pos(tree, "probes"),
                    "`probes:` is empty: the grader checks nothing",
                ));
            }
        }
    }
}
