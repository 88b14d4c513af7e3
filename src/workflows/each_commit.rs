//! `zcsplice build --each-commit`: every commit of a series branch built on
//! its own, oldest first, as reviewers expect of a series (a bisect may
//! land on any of them). The commits are checked out one after the other
//! in one worktree of the cache with one build directory, so each build
//! recompiles only what its commit changed. The first commit that does
//! not build ends the run; the warnings a commit's own files give are
//! reported with it.
//!
//! A commit that built is recorded in `<cache>/each-commit/`, keyed by its
//! id and the config fragments' hash: a run that is stopped (Ctrl-C, a CI
//! limit; a whole series is more than an hour of builds on two cores) or
//! run again after the series grew builds only the commits not built yet.

use anyhow::{anyhow, bail, Context, Result};
use git2::{Oid, Repository, Sort};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::exit;
use crate::kernel::build::{build_failure, build_kernel, config_hash, warnings_in, BuildRequest};
use crate::tree::{base_of_branch, Tree};

/// How one commit's build ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Outcome {
    Built,
    /// The compiler's or linker's first error.
    Failed {
        error: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub commit: String,
    pub subject: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub seconds: f64,
    /// Build steps make ran (0: nothing to do).
    pub objects: usize,
    /// Compiler warnings in files this commit changes.
    pub warnings: Vec<String>,
    /// Built by an earlier run with the same config: its record, not
    /// built again.
    pub recorded: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub base: String,
    /// Where the commits that built are recorded.
    pub records: PathBuf,
    pub steps: Vec<Step>,
    /// Commits after a failed one, not built.
    pub not_built: usize,
}

impl Report {
    pub fn failed(&self) -> Option<&Step> {
        self.steps
            .iter()
            .find(|s| matches!(s.outcome, Outcome::Failed { .. }))
    }

    /// One row per commit, then the first error in full.
    pub fn table(&self) -> String {
        let mut t = crate::report::table(
            [
                "COMMIT", "SUBJECT", "RESULT", "SECONDS", "OBJECTS", "WARNINGS",
            ],
            &[3, 4, 5],
        );
        for s in &self.steps {
            let result = match s.outcome {
                Outcome::Built if s.recorded => "built*",
                Outcome::Built => "built",
                Outcome::Failed { .. } => "FAILED",
            };
            t.add_row([
                s.commit[..12].to_string(),
                s.subject.clone(),
                result.to_string(),
                format!("{:.0}", s.seconds),
                s.objects.to_string(),
                s.warnings.len().to_string(),
            ]);
        }
        let mut out = t.trim_fmt();
        out.push('\n');
        if self.steps.iter().any(|s| s.recorded) {
            out.push_str(&format!(
                "(* built by an earlier run, same commit and config: {})\n",
                self.records.display()
            ));
        }
        for s in self.steps.iter().filter(|s| !s.warnings.is_empty()) {
            out.push_str(&format!("\n{} warnings:\n", &s.commit[..12]));
            for w in &s.warnings {
                out.push_str(&format!("  {w}\n"));
            }
        }
        if let Some(s) = self.failed() {
            if let Outcome::Failed { error } = &s.outcome {
                out.push_str(&format!("\n{} does not build: {error}\n", &s.commit[..12]));
            }
            if self.not_built > 0 {
                out.push_str(&format!("{} later commit(s) not built\n", self.not_built));
            }
        }
        out
    }
}

/// The commits from the branch's recorded base (exclusive) to its tip,
/// oldest first. `branch` None: what is checked out.
pub fn commits(repo: &Repository, tree: &Tree, branch: Option<&str>) -> Result<(Oid, Vec<Oid>)> {
    let (tip, base) = match branch {
        Some(b) => {
            let tip = repo
                .revparse_single(b)
                .and_then(|o| o.peel_to_commit())
                .with_context(|| format!("--branch {b}: no such branch or commit"))?
                .id();
            let base = base_of_branch(repo, b)?.with_context(|| {
                format!("{b} has no recorded base; `zcsplice apply` records it")
            })?;
            (tip, base)
        }
        None => (repo.head()?.peel_to_commit()?.id(), tree.base),
    };
    if tip == base {
        return Err(exit::usage(anyhow!(
            "nothing to build: {} is its own base (check out a branch `zcsplice apply` made, or pass --branch)",
            tree.path.display()
        )));
    }
    if !repo.graph_descendant_of(tip, base)? {
        bail!("{tip} does not descend from the recorded base {base}");
    }
    let mut walk = repo.revwalk()?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)?;
    walk.push(tip)?;
    walk.hide(base)?;
    Ok((base, walk.collect::<Result<Vec<_>, _>>()?))
}

/// Files a commit changes (against its first parent).
fn changed_files(repo: &Repository, id: Oid) -> Result<Vec<String>> {
    let commit = repo.find_commit(id)?;
    let parent = commit.parent(0)?.tree()?;
    let diff = repo.diff_tree_to_tree(Some(&parent), Some(&commit.tree()?), None)?;
    Ok(diff
        .deltas()
        .filter_map(|d| d.new_file().path().map(|p| p.display().to_string()))
        .collect())
}

/// Builds each commit of `req.branch` (or what is checked out) in turn.
pub fn run(env: &crate::env::Env, req: &BuildRequest) -> Result<Report> {
    let tree = Tree::open(&req.tree, None)?;
    let repo = &tree.repo;
    let (base, ids) = commits(repo, &tree, req.branch.as_deref())?;
    let label = req.branch.clone().unwrap_or_else(|| {
        repo.head()
            .ok()
            .and_then(|h| h.shorthand().map(str::to_string))
            .unwrap_or_else(|| "HEAD".into())
    });
    let slot = format!("{label}@each-commit");
    let records = env.cache.join("each-commit");
    std::fs::create_dir_all(&records)
        .with_context(|| format!("cannot create {}", records.display()))?;
    let config = config_hash(&env.series, req)?;
    let mut steps = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let commit = repo.find_commit(*id)?;
        let subject = commit.summary().unwrap_or_default().to_string();
        let record = records.join(format!("{id}-{}.json", &config[..16]));
        if let Some(step) = recorded(&record) {
            log::info!(
                "commit {}/{}: {} built before ({})",
                n + 1,
                ids.len(),
                &id.to_string()[..12],
                record.display()
            );
            steps.push(step);
            continue;
        }
        log::info!(
            "commit {}/{}: {} {subject}",
            n + 1,
            ids.len(),
            &id.to_string()[..12]
        );
        let step_req = BuildRequest {
            branch: Some(id.to_string()),
            slot: Some(slot.clone()),
            ..req.clone()
        };
        let start = std::time::Instant::now();
        let mut step = Step {
            commit: id.to_string(),
            subject,
            outcome: Outcome::Built,
            seconds: 0.0,
            objects: 0,
            warnings: Vec::new(),
            recorded: false,
        };
        let log = match build_kernel(env, &step_req) {
            // Up to date: its log is of the build that made it.
            Ok(built) if built.up_to_date => None,
            Ok(built) => {
                step.objects = built.objects;
                Some(built.log)
            }
            // Untestable: the commit does not configure or build. Any
            // other error is the machinery's, and ends the run.
            Err(e) if exit::code_of(&e) == exit::SKIP => {
                let failed = build_failure(&e);
                step.outcome = Outcome::Failed {
                    error: failed.map_or_else(|| format!("{e:#}"), |f| f.first_error.clone()),
                };
                failed.map(|f| f.log.clone())
            }
            Err(e) => return Err(e),
        };
        step.seconds = start.elapsed().as_secs_f64();
        if let Some(log) = log {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            step.warnings = warnings_in(&text, &changed_files(repo, *id)?);
        }
        let stop = matches!(step.outcome, Outcome::Failed { .. });
        if !stop {
            std::fs::write(&record, serde_json::to_vec_pretty(&step)?)
                .with_context(|| format!("cannot write {}", record.display()))?;
        }
        steps.push(step);
        if stop {
            break;
        }
    }
    Ok(Report {
        base: base.to_string(),
        records,
        not_built: ids.len() - steps.len(),
        steps,
    })
}

/// The step recorded for a commit that built, if any; a record that
/// cannot be read is as none (the commit is built again).
fn recorded(path: &std::path::Path) -> Option<Step> {
    let step: Step = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    matches!(step.outcome, Outcome::Built).then_some(Step {
        recorded: true,
        ..step
    })
}
