//! Killercoda export: a lab (`labs/*.yaml`) as a Killercoda scenario directory.
//!
//! ```text
//! OUT/
//!   index.json            title, description, details{intro, steps, finish, assets}, backend.imageid
//!   intro.md  finish.md
//!   stepN/text.md         every step
//!   stepN/background.sh   steps with a scenario: `breakfix break --lab L --step N` (local transport)
//!   stepN/verify.sh       steps with a scenario: `breakfix check --lab L --step N`; exit code = verdict
//!   assets/               copied onto host01 (the controlplane) as `details.assets.host01` says:
//!     breakfix            the running executable            -> HOST_DIR/bin
//!     inventory.yaml      one local-transport node          -> HOST_DIR
//!     <lab, scenarios, graders>  same layout relative to each other as in the source tree
//! ```
//!
//! The index.json shape follows Killercoda's scenario examples (`killercoda/scenario-examples`:
//! `foreground-background-scripts-multi-step` for text/background/verify per step,
//! `kubernetes-dashboard` for `details.assets.host01[] = {file, target, chmod}` with the files
//! in `assets/`). Everything is validated before anything is written, and the directory is
//! built under a temporary name and renamed into place, so a failure leaves no half export.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::inventory::{Cluster, EtcdInfo, Inventory, Node, Topology, TransportKind};
use crate::lab::LoadedLab;
use crate::transport::shell_quote;

/// Killercoda's two-node kubeadm image (`controlplane` is host01, `node01` host02).
pub const DEFAULT_IMAGE: &str = "kubernetes-kubeadm-2nodes";
/// Where the assets land on the node by default.
pub const DEFAULT_HOST_DIR: &str = "/root/breakfix";
/// The Killercoda host the assets and scripts are for (the controlplane).
pub const HOST: &str = "host01";
/// Asset name of the breakfix binary.
pub const BINARY_ASSET: &str = "breakfix";
/// Asset name of the generated inventory.
pub const INVENTORY_ASSET: &str = "inventory.yaml";

/// How to export.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where etcd runs on the target image: kubeadm's static pod (`stacked`, real Killercoda)
    /// or a systemd unit (`external`). Written into the inventory; scenarios written for the
    /// other topology are refused.
    pub topology: Topology,
    /// Absolute directory on the node that receives the binary, the lab files and the inventory.
    pub host_dir: String,
    /// `backend.imageid`.
    pub image: String,
    /// The breakfix executable to ship (normally `std::env::current_exe()`).
    pub binary: PathBuf,
}

impl Options {
    /// Defaults for real Killercoda: stacked topology, `/root/breakfix`, the 2-node image.
    pub fn new(binary: PathBuf) -> Options {
        Options {
            topology: Topology::Stacked,
            host_dir: DEFAULT_HOST_DIR.to_string(),
            image: DEFAULT_IMAGE.to_string(),
            binary,
        }
    }
}

// ---- index.json ----

/// `index.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// Scenario title.
    pub title: String,
    /// One-paragraph summary shown on the scenario's card.
    pub description: String,
    /// Pages, steps and assets.
    pub details: Details,
    /// The environment.
    pub backend: Backend,
}

/// `index.json` `details`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Details {
    /// First page.
    pub intro: Page,
    /// Steps in order.
    pub steps: Vec<StepEntry>,
    /// Last page.
    pub finish: Page,
    /// Files from `assets/` to copy onto each host (key: `host01`, ...).
    pub assets: BTreeMap<String, Vec<Asset>>,
}

/// The intro or finish page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// Markdown file.
    pub text: String,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepEntry {
    /// Step title.
    pub title: String,
    /// Markdown file.
    pub text: String,
    /// Script whose exit code decides whether the learner may go on (0 = yes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<String>,
    /// Script run out of sight when the step starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<String>,
}

/// One file of `assets/` copied onto a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Asset {
    /// Name of the file inside `assets/`.
    pub file: String,
    /// Directory on the host it is copied into.
    pub target: String,
    /// Mode change applied after the copy (e.g. `+x`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chmod: Option<String>,
}

/// `index.json` `backend`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backend {
    /// Killercoda image, e.g. `kubernetes-kubeadm-2nodes`.
    pub imageid: String,
}

// ---- the planned export ----

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub enum Content {
    /// Generated or already read.
    Bytes(Vec<u8>),
    /// Copied at write time (the binary).
    CopyOf(PathBuf),
}

/// One file of the export directory.
#[derive(Debug, Clone)]
pub struct OutFile {
    /// Path relative to the export directory.
    pub path: PathBuf,
    /// Its content.
    pub content: Content,
    /// Unix mode.
    pub mode: u32,
}

/// Per step: what the export does with it.
#[derive(Debug, Clone)]
pub struct StepSummary {
    /// 1-based.
    pub number: usize,
    /// Step title.
    pub title: String,
    /// Scenario name, for steps that break.
    pub scenario: Option<String>,
}

/// A fully validated export, not yet written.
#[derive(Debug, Clone)]
pub struct Export {
    /// Lab name.
    pub lab_name: String,
    /// The index.
    pub index: Index,
    /// Every file, index.json included.
    pub files: Vec<OutFile>,
    /// The steps.
    pub steps: Vec<StepSummary>,
    /// Lab file on the node.
    pub host_lab: String,
    /// Inventory on the node.
    pub host_inventory: String,
    /// breakfix binary on the node.
    pub host_binary: String,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

/// `p` made absolute and with `.`/`..` resolved lexically: the same way a relative scenario
/// path in a lab is resolved against the lab's directory.
fn normalize(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).map_err(io(format!("resolving {}", p.display())))?;
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    Ok(out)
}

fn host_join(base: &str, rel: &Path) -> String {
    let mut s = base.trim_end_matches('/').to_string();
    for c in rel.components() {
        s.push('/');
        s.push_str(&c.as_os_str().to_string_lossy());
    }
    s
}

fn check_host_dir(d: &str) -> Result<String> {
    let t = d.trim_end_matches('/');
    let ok = t.starts_with('/')
        && t.len() > 1
        && !Path::new(t)
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        && !t.chars().any(|c| c.is_control());
    if ok {
        Ok(t.to_string())
    } else {
        Err(Error::other(format!(
            "--host-dir `{d}`: expected an absolute directory on the node, e.g. {DEFAULT_HOST_DIR}"
        )))
    }
}

/// The inventory the exported scripts use: the controlplane itself over the local transport,
/// kubeadm's etcd TLS files and admin kubeconfig.
pub fn local_inventory(topology: Topology) -> Inventory {
    Inventory {
        api_version: "breakfix/v1".into(),
        kind: "Inventory".into(),
        cluster: Cluster {
            name: "killercoda".into(),
            topology,
            etcd: EtcdInfo {
                endpoints: vec!["https://127.0.0.1:2379".into()],
                ca_file: "/etc/kubernetes/pki/etcd/ca.crt".into(),
                cert_file: "/etc/kubernetes/pki/etcd/server.crt".into(),
                key_file: "/etc/kubernetes/pki/etcd/server.key".into(),
            },
            kubeconfig: Some("/etc/kubernetes/admin.conf".into()),
        },
        nodes: vec![Node {
            name: "controlplane".into(),
            address: "127.0.0.1".into(),
            port: 22,
            user: "root".into(),
            identity_file: None,
            known_hosts: None,
            roles: vec!["control-plane".into(), "etcd".into()],
            transport: TransportKind::Local,
        }],
    }
}

fn topology_name(t: Topology) -> &'static str {
    match t {
        Topology::External => "external",
        Topology::Stacked => "stacked",
    }
}

/// A source file of the lab (lab, scenario or grader) and where it goes.
struct LabFile {
    /// Path to read it from.
    read: PathBuf,
    /// Normalized absolute path (decides the layout).
    norm: PathBuf,
}

fn read_text(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(io(format!("reading {}", p.display())))
}

/// Validates the lab, every scenario it uses (the checks of `breakfix validate`, the topology,
/// and a full render against the exported inventory) and plans every file. Reads files;
/// writes nothing.
pub fn prepare(lab_path: &Path, opts: &Options) -> Result<Export> {
    let host_dir = check_host_dir(&opts.host_dir)?;
    if opts.image.trim().is_empty() {
        return Err(Error::other("--image must not be empty"));
    }
    let lab = LoadedLab::load(lab_path)?;
    let meta = &lab.lab.metadata;
    let inventory = local_inventory(opts.topology);
    let bin_meta = std::fs::metadata(&opts.binary).map_err(io(format!(
        "the breakfix binary to ship, {}",
        opts.binary.display()
    )))?;
    if !bin_meta.is_file() {
        return Err(Error::other(format!(
            "the breakfix binary to ship, {}, is not a file",
            opts.binary.display()
        )));
    }

    // Lab file first, then each scenario once, then each grader once.
    let mut sources: Vec<LabFile> = vec![LabFile {
        read: lab_path.to_path_buf(),
        norm: normalize(lab_path)?,
    }];
    let mut seen: BTreeSet<PathBuf> = sources.iter().map(|f| f.norm.clone()).collect();
    let mut steps = Vec::new();
    let mut budgets = Vec::new();
    for (i, step) in lab.lab.steps.iter().enumerate() {
        let n = i + 1;
        let Some(sc_path) = lab.scenario_path(n) else {
            steps.push(StepSummary {
                number: n,
                title: step.title.clone(),
                scenario: None,
            });
            budgets.push(step.time_limit.map(|d| d.0));
            continue;
        };
        let what = format!("step {n} (`{}`)", step.title);
        if step.scenario.as_ref().is_some_and(|p| p.is_absolute()) {
            return Err(Error::Config {
                file: lab_path.display().to_string(),
                message: format!(
                    "{what}: scenario path {} is absolute; the export copies the lab file as it is, so the path must be relative to the lab file to resolve on the node",
                    sc_path.display()
                ),
            });
        }
        let loaded = crate::scenario::load_valid(&sc_path, None, false)?;
        let sc = &loaded.scenario;
        let tops = &sc.metadata.topologies;
        if !tops.is_empty() && !tops.contains(&opts.topology) {
            let names: Vec<&str> = tops.iter().map(|t| topology_name(*t)).collect();
            return Err(Error::other(format!(
                "{what}: scenario `{}` ({}) is written for the {} topology, but the export targets {} (etcd {}). \
                 Export with `--topology {}` for a node where etcd runs that way, or give the step a scenario for {}.",
                sc.metadata.name.value,
                sc_path.display(),
                names.join("/"),
                topology_name(opts.topology),
                match opts.topology {
                    Topology::Stacked => "as a kubeadm static pod, as on Killercoda's kubeadm images",
                    Topology::External => "as a systemd unit",
                },
                names.first().copied().unwrap_or("external"),
                topology_name(opts.topology),
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
        let norm = normalize(&sc_path)?;
        if seen.insert(norm.clone()) {
            sources.push(LabFile {
                read: sc_path.clone(),
                norm,
            });
        }
        for g in &loaded.graders {
            let norm = normalize(&g.path)?;
            if seen.insert(norm.clone()) {
                sources.push(LabFile {
                    read: g.path.clone(),
                    norm,
                });
            }
        }
    }

    // Layout on the node: the lab files keep their positions relative to each other under
    // HOST_DIR (labs/x.yaml, scenarios/y.yaml, graders/z.yaml), so `../scenarios/...` in the
    // lab and the default graders dir resolve there exactly as they do here.
    let mut root = sources
        .first()
        .and_then(|f| f.norm.parent())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    for f in &sources {
        while !f.norm.starts_with(&root) {
            if !root.pop() {
                break;
            }
        }
    }

    let mut files: Vec<OutFile> = Vec::new();
    let mut assets: Vec<Asset> = Vec::new();
    let mut asset_names: BTreeMap<String, String> = BTreeMap::new();
    let mut add_asset = |name: &str,
                         source: String,
                         target: String,
                         chmod: Option<&str>,
                         content: Content,
                         mode: u32,
                         files: &mut Vec<OutFile>|
     -> Result<()> {
        if let Some(other) = asset_names.insert(name.to_string(), source.clone()) {
            return Err(Error::other(format!(
                "two files would share the asset name `{name}` ({other} and {source}): Killercoda copies assets by file name, so rename one of them"
            )));
        }
        files.push(OutFile {
            path: Path::new("assets").join(name),
            content,
            mode,
        });
        assets.push(Asset {
            file: name.to_string(),
            target,
            chmod: chmod.map(str::to_string),
        });
        Ok(())
    };

    let host_bin_dir = format!("{host_dir}/bin");
    let host_binary = format!("{host_bin_dir}/{BINARY_ASSET}");
    let host_inventory = format!("{host_dir}/{INVENTORY_ASSET}");
    add_asset(
        BINARY_ASSET,
        opts.binary.display().to_string(),
        host_bin_dir.clone(),
        Some("+x"),
        Content::CopyOf(opts.binary.clone()),
        0o755,
        &mut files,
    )?;
    let inv_text = serde_saphyr::to_string(&inventory)
        .map_err(|e| Error::other(format!("serializing the inventory: {e}")))?;
    let inv_text = format!(
        "# breakfix inventory for the Killercoda node itself (docs/inventory.md, docs/killercoda.md).\n\
         # Written by `breakfix export killercoda --topology {}`.\n{inv_text}",
        topology_name(opts.topology)
    );
    add_asset(
        INVENTORY_ASSET,
        "the generated inventory".into(),
        host_dir.clone(),
        None,
        Content::Bytes(inv_text.into_bytes()),
        0o644,
        &mut files,
    )?;
    let mut host_lab = String::new();
    for (i, f) in sources.iter().enumerate() {
        let rel = f.norm.strip_prefix(&root).map_err(|_| {
            Error::other(format!(
                "{} is outside {}",
                f.norm.display(),
                root.display()
            ))
        })?;
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .ok_or_else(|| Error::other(format!("{} has no file name", f.norm.display())))?;
        let target = host_join(&host_dir, rel.parent().unwrap_or(Path::new("")));
        if i == 0 {
            host_lab = format!("{target}/{name}");
        }
        add_asset(
            &name,
            f.read.display().to_string(),
            target,
            None,
            Content::Bytes(read_text(&f.read)?),
            0o644,
            &mut files,
        )?;
    }

    // Pages and scripts.
    let total = meta
        .time_limit
        .map(|d| d.0)
        .or_else(|| budgets.iter().copied().sum::<Option<std::time::Duration>>());
    let md = Markdown {
        host_binary: &host_binary,
        host_lab: &host_lab,
        host_inventory: &host_inventory,
        host_dir: &host_dir,
    };
    files.push(OutFile {
        path: "intro.md".into(),
        content: Content::Bytes(md.intro(&lab, total).into_bytes()),
        mode: 0o644,
    });
    files.push(OutFile {
        path: "finish.md".into(),
        content: Content::Bytes(md.finish(&lab).into_bytes()),
        mode: 0o644,
    });
    let mut entries = Vec::new();
    for (s, budget) in steps.iter().zip(&budgets) {
        let dir = PathBuf::from(format!("step{}", s.number));
        let text = dir.join("text.md");
        let step = lab.step(s.number)?;
        files.push(OutFile {
            path: text.clone(),
            content: Content::Bytes(md.step(s, &step.text, *budget, steps.len()).into_bytes()),
            mode: 0o644,
        });
        let (mut verify, mut background) = (None, None);
        if let Some(name) = &s.scenario {
            let bg = dir.join("background.sh");
            let vf = dir.join("verify.sh");
            files.push(OutFile {
                path: bg.clone(),
                content: Content::Bytes(md.background(s, name).into_bytes()),
                mode: 0o755,
            });
            files.push(OutFile {
                path: vf.clone(),
                content: Content::Bytes(md.verify(s, name).into_bytes()),
                mode: 0o755,
            });
            background = Some(bg.display().to_string());
            verify = Some(vf.display().to_string());
        }
        entries.push(StepEntry {
            title: s.title.clone(),
            text: text.display().to_string(),
            verify,
            background,
        });
    }

    // Killercoda shows the description as one paragraph on the scenario's card.
    let description = if meta.description.trim().is_empty() {
        meta.title.clone()
    } else {
        meta.description
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let index = Index {
        title: meta.title.clone(),
        description,
        details: Details {
            intro: Page {
                text: "intro.md".into(),
            },
            steps: entries,
            finish: Page {
                text: "finish.md".into(),
            },
            assets: BTreeMap::from([(HOST.to_string(), assets)]),
        },
        backend: Backend {
            imageid: opts.image.clone(),
        },
    };
    let json = serde_json::to_string_pretty(&index)
        .map_err(|e| Error::other(format!("serializing index.json: {e}")))?;
    files.insert(
        0,
        OutFile {
            path: "index.json".into(),
            content: Content::Bytes(format!("{json}\n").into_bytes()),
            mode: 0o644,
        },
    );
    Ok(Export {
        lab_name: meta.name.clone(),
        index,
        files,
        steps,
        host_lab,
        host_inventory,
        host_binary,
    })
}

/// Generated pages and scripts.
struct Markdown<'a> {
    host_binary: &'a str,
    host_lab: &'a str,
    host_inventory: &'a str,
    host_dir: &'a str,
}

fn fmt_dur(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

impl Markdown<'_> {
    /// `BINARY [FLAGS ]SUB --lab LAB --step N --inventory INV`, shell-quoted.
    fn invocation(&self, flags: &str, sub: &str, step: usize) -> String {
        format!(
            "{} {flags}{sub} --lab {} --step {step} --inventory {}",
            shell_quote(self.host_binary),
            shell_quote(self.host_lab),
            shell_quote(self.host_inventory)
        )
    }

    fn cmd(&self, sub: &str, step: usize) -> String {
        self.invocation("", sub, step)
    }

    fn intro(&self, lab: &LoadedLab, total: Option<std::time::Duration>) -> String {
        let m = &lab.lab.metadata;
        let mut s = format!("# {}\n\n", m.title);
        if !lab.lab.intro.trim().is_empty() {
            s.push_str(lab.lab.intro.trim_end());
            s.push_str("\n\n");
        }
        let difficulty = serde_json::to_value(m.difficulty)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        s.push_str("---\n\n");
        if let Some(t) = total {
            s.push_str(&format!("**Time budget:** {} · ", fmt_dur(t)));
        }
        s.push_str(&format!(
            "**Level:** {difficulty} · **Steps:** {}\n\n",
            lab.lab.steps.len()
        ));
        s.push_str("### How this lab works\n\n");
        s.push_str(
            "- Steps marked *incident* break the cluster on `controlplane` in the background as soon as \
             you open them. Find the fault and fix it, then press **Check**: the step is graded by \
             breakfix's probes, and the failing ones are listed with what was expected and what was found.\n",
        );
        s.push_str(
            "- The other steps have nothing to grade: read, try the commands, and move on.\n",
        );
        s.push_str(&format!(
            "- The grader is the `breakfix` tool at `{}`; the lab, its scenarios and an inventory for this \
             node are under `{}`. To type just `breakfix`:\n\n  `export PATH={}:$PATH`{{{{exec}}}}\n",
            self.host_binary,
            self.host_dir,
            shell_quote(Path::new(self.host_binary).parent().map(|p| p.display().to_string()).unwrap_or_default().as_str()),
        ));
        if let Some(src) = &m.source {
            s.push_str(&format!("\n<small>Adapted from: {src}</small>\n"));
        }
        s
    }

    fn finish(&self, lab: &LoadedLab) -> String {
        let mut s = String::from("# Done\n\n");
        if !lab.lab.finish.trim().is_empty() {
            s.push_str(lab.lab.finish.trim_end());
            s.push_str("\n\n");
        }
        s.push_str(&format!(
            "The command that puts this node back, replaying every break the lab recorded in reverse:\n\n`{} reset --inventory {}`{{{{exec}}}}\n",
            shell_quote(self.host_binary),
            shell_quote(self.host_inventory)
        ));
        s
    }

    fn step(
        &self,
        st: &StepSummary,
        text: &str,
        budget: Option<std::time::Duration>,
        of: usize,
    ) -> String {
        let kind = if st.scenario.is_some() {
            "incident"
        } else {
            "read and explore"
        };
        let mut s = format!("# Step {} of {of}: {}\n\n", st.number, st.title);
        let mut tags = vec![format!("*{kind}*")];
        if let Some(b) = budget {
            tags.push(format!("about {}", fmt_dur(b)));
        }
        s.push_str(&tags.join(" · "));
        s.push_str("\n\n");
        if !text.trim().is_empty() {
            s.push_str(text.trim_end());
            s.push_str("\n\n");
        }
        match &st.scenario {
            Some(name) => {
                s.push_str("---\n\n### Grading\n\n");
                s.push_str(&format!(
                    "This step runs breakfix's `{name}` incident. Press **Check** when you believe it is fixed: \
                     it passes only when every verify probe passes, and otherwise lists the probes that still \
                     fail. The same report, in full, from the terminal:\n\n`{}`{{{{exec}}}}\n\n",
                    self.cmd("check", st.number)
                ));
                s.push_str(&format!(
                    "Stuck? `{} hint` reveals the next hint; each one costs points.\n",
                    shell_quote(self.host_binary)
                ));
            }
            None => {
                s.push_str("---\n\nNothing to grade in this step: continue when you are ready.\n")
            }
        }
        s
    }

    fn background(&self, st: &StepSummary, scenario: &str) -> String {
        let log = shell_quote(&format!(
            "{}/log/step{}-background.log",
            self.host_dir, st.number
        ));
        format!(
            "#!/bin/bash\n\
             # Generated by `breakfix export killercoda`. Runs out of sight when step {n} opens:\n\
             # breaks the cluster with scenario `{scenario}` and confirms the break took. Output\n\
             # goes to the log below. A failed break undoes itself, so it is retried a few times\n\
             # while the cluster may still be settling after boot.\n\
             set -u\n\
             mkdir -p {logdir}\n\
             for attempt in 1 2 3; do\n\
             \x20 if {cmd} >>{log} 2>&1; then\n\
             \x20   exit 0\n\
             \x20 fi\n\
             \x20 echo \"break attempt $attempt failed\" >>{log}\n\
             \x20 sleep 5\n\
             done\n\
             exit 1\n",
            n = st.number,
            logdir = shell_quote(&format!("{}/log", self.host_dir)),
            cmd = self.invocation("--quiet --no-color ", "break", st.number),
        )
    }

    fn verify(&self, st: &StepSummary, scenario: &str) -> String {
        format!(
            "#!/bin/bash\n\
             # Generated by `breakfix export killercoda`. Killercoda's verdict for step {n}: exit 0 when\n\
             # every verify probe of scenario `{scenario}` passes; otherwise non-zero, with the\n\
             # failing probes (expected vs found) in the output.\n\
             set -u\n\
             exec {cmd}\n",
            n = st.number,
            cmd = self.invocation("--no-color ", "check", st.number),
        )
    }
}

/// The newest glibc symbol version a dynamically linked binary asks for (`GLIBC_2.34` ->
/// `(2, 34)`), found by scanning it for version names; `None` for a static binary or when
/// unreadable. The image that runs the binary needs at least this glibc.
pub fn required_glibc(binary: &Path) -> Option<(u32, u32)> {
    let bytes = std::fs::read(binary).ok()?;
    let needle = b"GLIBC_";
    let mut best: Option<(u32, u32)> = None;
    let mut i = 0;
    while let Some(pos) = bytes[i..].windows(needle.len()).position(|w| w == needle) {
        let start = i + pos + needle.len();
        let tail = &bytes[start..bytes.len().min(start + 12)];
        let text: String = tail
            .iter()
            .take_while(|b| b.is_ascii_digit() || **b == b'.')
            .map(|b| *b as char)
            .collect();
        let mut parts = text.split('.').map(|p| p.parse::<u32>());
        if let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) {
            if best.is_none_or(|b| (major, minor) > b) {
                best = Some((major, minor));
            }
        }
        i = start;
    }
    best
}

/// Writes `export` into `out`: built under a temporary sibling directory, checked, then
/// renamed into place. `out` must not exist (or be empty) unless `force`, which replaces it.
/// On any error nothing is left behind.
pub fn write(export: &Export, out: &Path, force: bool) -> Result<()> {
    check_out(out, force)?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .ok_or_else(|| Error::other(format!("-o {}: not a directory name", out.display())))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io(format!("creating {}", parent.display())))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let tmp = parent.join(format!(
        ".{name}.breakfix-export-{}-{stamp}",
        std::process::id()
    ));
    std::fs::create_dir(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    let built = fill(export, &tmp).and_then(|_| {
        let inv = tmp.join("assets").join(INVENTORY_ASSET);
        Inventory::load(&inv).map(|_| ())
    });
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let placed = place(&tmp, out, &parent, &name, stamp);
    if placed.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    placed
}

fn check_out(out: &Path, force: bool) -> Result<()> {
    match std::fs::symlink_metadata(out) {
        Err(_) => Ok(()),
        Ok(m) if !m.is_dir() => Err(Error::other(format!(
            "-o {}: exists and is not a directory",
            out.display()
        ))),
        Ok(_) => {
            let empty = std::fs::read_dir(out)
                .map_err(io(format!("reading {}", out.display())))?
                .next()
                .is_none();
            if empty || force {
                Ok(())
            } else {
                Err(Error::other(format!(
                    "-o {}: exists and is not empty (use --force to replace it)",
                    out.display()
                )))
            }
        }
    }
}

fn fill(export: &Export, dir: &Path) -> Result<()> {
    for f in &export.files {
        let path = dir.join(&f.path);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(io(format!("creating {}", p.display())))?;
        }
        match &f.content {
            Content::Bytes(b) => {
                let mut file = std::fs::File::create(&path)
                    .map_err(io(format!("writing {}", path.display())))?;
                file.write_all(b)
                    .map_err(io(format!("writing {}", path.display())))?;
                file.sync_all()
                    .map_err(io(format!("syncing {}", path.display())))?;
            }
            Content::CopyOf(src) => {
                std::fs::copy(src, &path).map_err(io(format!(
                    "copying {} to {}",
                    src.display(),
                    path.display()
                )))?;
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))
            .map_err(io(format!("chmod {}", path.display())))?;
    }
    Ok(())
}

fn place(tmp: &Path, out: &Path, parent: &Path, name: &str, stamp: u128) -> Result<()> {
    if std::fs::symlink_metadata(out).is_err() {
        return std::fs::rename(tmp, out).map_err(io(format!(
            "renaming {} to {}",
            tmp.display(),
            out.display()
        )));
    }
    // Replace an existing (empty, or --force) directory: move it aside, move the new one in,
    // then delete the old one; put it back if the second rename fails.
    let old = parent.join(format!(
        ".{name}.breakfix-old-{}-{stamp}",
        std::process::id()
    ));
    std::fs::rename(out, &old).map_err(io(format!("moving {} aside", out.display())))?;
    if let Err(e) = std::fs::rename(tmp, out) {
        let _ = std::fs::rename(&old, out);
        return Err(Error::Io {
            context: format!("renaming {} to {}", tmp.display(), out.display()),
            source: e,
        });
    }
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn fake_binary(dir: &Path) -> PathBuf {
        let p = dir.join("breakfix-bin");
        std::fs::write(&p, b"#!/bin/sh\nexit 0\n").expect("write fake binary");
        p
    }

    fn opts(dir: &Path, topology: Topology) -> Options {
        Options {
            topology,
            ..Options::new(fake_binary(dir))
        }
    }

    #[test]
    fn seed_lab_index_json() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let e = prepare(
            &repo().join("labs/etcd-outage-000.yaml"),
            &opts(tmp.path(), Topology::External),
        )
        .expect("export plan");
        let json = serde_json::to_string_pretty(&e.index).expect("index.json");
        insta::assert_snapshot!("etcd_outage_000_index", json);
        assert_eq!(e.host_lab, "/root/breakfix/labs/etcd-outage-000.yaml");
        assert_eq!(e.host_inventory, "/root/breakfix/inventory.yaml");
        assert_eq!(e.host_binary, "/root/breakfix/bin/breakfix");
    }

    #[test]
    fn stacked_refuses_an_external_only_scenario() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let err = prepare(
            &repo().join("labs/etcd-outage-000.yaml"),
            &opts(tmp.path(), Topology::Stacked),
        )
        .expect_err("etcd-service-stopped is external-only")
        .to_string();
        assert!(err.contains("--topology external"), "{err}");
        assert!(err.contains("etcd-service-stopped"), "{err}");
    }

    #[test]
    fn scripts_call_break_and_check_for_their_step() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let e = prepare(
            &repo().join("labs/etcd-outage-000.yaml"),
            &opts(tmp.path(), Topology::External),
        )
        .expect("export plan");
        let text = |p: &str| -> String {
            let f = e
                .files
                .iter()
                .find(|f| f.path == Path::new(p))
                .unwrap_or_else(|| panic!("{p} missing"));
            match &f.content {
                Content::Bytes(b) => String::from_utf8(b.clone()).expect("utf-8"),
                Content::CopyOf(_) => panic!("{p} is a copy"),
            }
        };
        let bg = text("step1/background.sh");
        assert!(bg.starts_with("#!/bin/bash\n"));
        assert!(bg.contains("set -u"));
        assert!(bg.contains("/root/breakfix/bin/breakfix --quiet --no-color break --lab /root/breakfix/labs/etcd-outage-000.yaml --step 1 --inventory /root/breakfix/inventory.yaml"), "{bg}");
        let vf = text("step1/verify.sh");
        assert!(vf.contains("exec /root/breakfix/bin/breakfix --no-color check --lab /root/breakfix/labs/etcd-outage-000.yaml --step 1 --inventory /root/breakfix/inventory.yaml"), "{vf}");
        let inv = text("assets/inventory.yaml");
        assert!(inv.contains("topology: external"), "{inv}");
        assert!(inv.contains("transport: local"), "{inv}");
    }

    #[test]
    fn failure_leaves_nothing_and_success_is_complete() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("out");
        let mut e = prepare(
            &repo().join("labs/etcd-outage-000.yaml"),
            &opts(tmp.path(), Topology::External),
        )
        .expect("export plan");
        // A binary that vanished between planning and writing: the write fails half way.
        let good = e.files.clone();
        for f in &mut e.files {
            if let Content::CopyOf(p) = &mut f.content {
                *p = tmp.path().join("gone");
            }
        }
        assert!(write(&e, &out, false).is_err());
        assert!(!out.exists(), "no half export");
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("ls")
            .flatten()
            .filter(|d| d.file_name().to_string_lossy().contains("breakfix-export"))
            .collect();
        assert!(leftovers.is_empty(), "temp dir removed");
        e.files = good;
        write(&e, &out, false).expect("write");
        assert!(out.join("index.json").is_file());
        assert!(
            write(&e, &out, false).is_err(),
            "refuses a non-empty directory"
        );
        write(&e, &out, true).expect("--force replaces it");
        let mode = std::fs::metadata(out.join("step1/verify.sh"))
            .expect("verify.sh")
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111);
    }

    #[test]
    fn glibc_requirement_is_read_from_version_names() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = tmp.path().join("bin");
        std::fs::write(
            &p,
            b"\0GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_PRIVATE\0GLIBC_2.17\0",
        )
        .expect("write");
        assert_eq!(required_glibc(&p), Some((2, 34)));
        std::fs::write(&p, b"static").expect("write");
        assert_eq!(required_glibc(&p), None);
    }

    #[test]
    fn invalid_scenario_is_refused_before_writing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(tmp.path().join("labs")).expect("mkdir");
        std::fs::create_dir_all(tmp.path().join("scenarios")).expect("mkdir");
        std::fs::write(tmp.path().join("scenarios/bad.yaml"), "apiVersion: breakfix/v1\nkind: Scenario\nmetadata: {name: bad, title: t}\nfaults: []\nverify: {probes: [{kind: nosuch}]}\n").expect("write");
        std::fs::write(
            tmp.path().join("labs/l.yaml"),
            "apiVersion: breakfix/v1\nkind: Lab\nmetadata: {name: l, title: L}\nsteps:\n  - title: s\n    scenario: ../scenarios/bad.yaml\n",
        )
        .expect("write");
        let err = prepare(
            &tmp.path().join("labs/l.yaml"),
            &opts(tmp.path(), Topology::External),
        )
        .expect_err("invalid scenario");
        assert!(matches!(err, Error::Scenario { .. }), "{err}");
    }
}
