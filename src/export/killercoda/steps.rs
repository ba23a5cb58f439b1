//! Steps: each step's scenario checked for the export (the checks of `breakfix validate`, the
//! topology, a full render against the exported inventory), its time budget, and the lab
//! files (scenario, graders) it brings along.

use std::path::Path;
use std::time::Duration;

use super::assets::{local_inventory, LabFiles};
use super::{Options, StepSummary};
use crate::error::{Error, Result};
use crate::inventory::Topology;
use crate::lab::LoadedLab;

/// The lab's steps, checked.
pub(super) struct Steps {
    /// Per step, in order.
    pub steps: Vec<StepSummary>,
    /// Per step: its time budget (the step's, else its scenario's).
    pub budgets: Vec<Option<Duration>>,
    /// The lab file first, then each scenario once, then each grader once.
    pub sources: LabFiles,
}

/// Checks every step of `lab` (loaded from `lab_path`) for an export with `opts`.
pub(super) fn check(lab: &LoadedLab, lab_path: &Path, opts: &Options) -> Result<Steps> {
    let inventory = local_inventory(opts.topology);
    let mut sources = LabFiles::default();
    sources.add(lab_path)?;
    let mut steps = Vec::new();
    let mut budgets = Vec::new();
    for (i, step) in lab.lab.steps.iter().enumerate() {
        let n = i + 1;
        let what = format!("step {n} (`{}`)", step.title);
        for (_, p) in step
            .scenario
            .iter()
            .flat_map(crate::lab::ByTopology::variants)
        {
            if std::path::Path::new(p).is_absolute() {
                return Err(Error::Config {
                    file: lab_path.display().to_string(),
                    message: format!(
                        "{what}: scenario path {p} is absolute; the export copies the lab file as it is, so the path must be relative to the lab file to resolve on the node"
                    ),
                });
            }
        }
        let Some(sc_path) = lab.scenario_for(n, opts.topology)? else {
            steps.push(StepSummary {
                number: n,
                title: step.title.clone(),
                scenario: None,
            });
            budgets.push(step.time_limit.map(|d| d.0));
            continue;
        };
        let loaded = crate::scenario::load_valid(&sc_path, None, false)?;
        let sc = &loaded.scenario;
        let tops = &sc.metadata.topologies;
        if !tops.is_empty() && !tops.contains(&opts.topology) {
            let names: Vec<&str> = tops.iter().map(|t| t.name()).collect();
            return Err(Error::other(format!(
                "{what}: scenario `{}` ({}) is written for the {} topology, but the export targets {} (etcd {}). \
                 Export with `--topology {}` for a node where etcd runs that way, or give the step a scenario for {}.",
                sc.metadata.name.value,
                sc_path.display(),
                names.join("/"),
                opts.topology.name(),
                match opts.topology {
                    Topology::Stacked => "as a kubeadm static pod, as on Killercoda's kubeadm images",
                    Topology::External => "as a systemd unit",
                },
                names.first().copied().unwrap_or("external"),
                opts.topology.name(),
            )));
        }
        if let Some(n) = sc.metadata.requires.etcd_members.filter(|n| *n > 1) {
            return Err(Error::other(format!(
                "{what}: scenario `{}` ({}) needs {n} etcd members (metadata.requires.etcd_members), \
                 a multi-node control plane; Killercoda's kubeadm images have one control plane \
                 with one etcd member. Run this step on `breakfix sandbox up --control-planes {n}` \
                 (or another cluster with {n} members), or give the lab a one-member scenario here.",
                sc.metadata.name.value,
                sc_path.display(),
            )));
        }
        crate::plan::build(sc, &loaded.grader_files(), &inventory, &[]).map_err(|e| {
            Error::other(format!(
                "{what}: scenario `{}` does not render for the exported inventory: {e}",
                sc.metadata.name.value
            ))
        })?;
        budgets.push(step.time_limit.or(sc.metadata.time_limit).map(|d| d.0));
        steps.push(StepSummary {
            number: n,
            title: step.title.clone(),
            scenario: Some(sc.metadata.name.value.clone()),
        });
        sources.add(&sc_path)?;
        for g in &loaded.graders {
            sources.add(&g.path)?;
        }
        // The lab file names every topology's scenario, and must load on the node: the other
        // topologies' scenario files (and their graders) are copied too, unused.
        for (t, other) in lab.scenario_variants(n) {
            if t.is_some_and(|t| t != opts.topology) {
                sources.add(&other)?;
                for g in crate::scenario::load_valid(&other, None, false)?.graders {
                    sources.add(&g.path)?;
                }
            }
        }
    }
    Ok(Steps {
        steps,
        budgets,
        sources,
    })
}
