//! One bisect step on a kernel: check the commit out in zcsplice's clone,
//! render and apply the series onto it (its facts are probed again: they
//! change along a range), build in the one build directory the clone's
//! bisect branch has (so a step rebuilds only what changed), boot and run
//! the selection (selection.rs). Each failure maps to what git bisect
//! must hear: untestable (skip), a kernel failure (bad), or a harness
//! failure (stop).

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::selection::Ready;
use super::{git, subject, Stage, Step, Verdict};
use crate::exit;
use crate::kernel::build::{build_kernel, BuildRequest, KernelOpts};
use crate::series::apply::Testing;

/// The branch every step builds: one branch, one build directory.
pub const BRANCH: &str = "zcsplice-bisect";

/// What is built on top of each commit.
#[derive(Debug, Clone)]
pub enum Onto {
    /// The series, rendered for this commit (upstream bisect), with the
    /// testing patches when the selection needs them.
    Series(Testing),
    /// Nothing: the commit alone (`--no-series`).
    Nothing,
    /// These commits picked on top (in-series bisect: the testing
    /// patches, which the selection needs).
    Picks(Vec<String>),
}

pub struct KernelStep<'a> {
    pub env: &'a crate::env::Env,
    /// zcsplice's clone of the user's tree.
    pub clone: PathBuf,
    pub onto: Onto,
    pub kernel: KernelOpts,
    pub selection: Ready,
}

impl KernelStep<'_> {
    /// Tests `commit`: a step with its verdict, stages and times.
    pub fn test(&self, commit: &str) -> Step {
        let start = Instant::now();
        let mut s = Step::new(commit, &subject(&self.clone, commit));
        // A stage's error ends the step: untestable is a skip, anything
        // else stops the bisect with its code.
        let failed = |mut s: Step, e: &anyhow::Error| {
            s.verdict = match exit::code_of(e) {
                exit::SKIP => Verdict::Skip,
                code => Verdict::Stop(code),
            };
            s.detail = first_line(e);
            s.seconds = start.elapsed().as_secs_f64();
            s
        };
        let t = Instant::now();
        if let Err(e) = self.prepare(commit) {
            s.prepare = Stage::errored(t.elapsed().as_secs_f64(), exit::code_of(&e));
            return failed(s, &e);
        }
        s.prepare = Stage::pass(t.elapsed().as_secs_f64());
        let req = BuildRequest {
            tree: self.clone.clone(),
            branch: Some(BRANCH.to_string()),
            slot: None,
            kernel: self.kernel.clone(),
        };
        let t = Instant::now();
        let built = match build_kernel(self.env, &req) {
            Ok(b) => b,
            Err(e) => {
                s.build = Stage::errored(t.elapsed().as_secs_f64(), exit::code_of(&e));
                return failed(s, &e);
            }
        };
        s.build = Stage::pass(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let outcome = self.selection.run(self.env, &built);
        let took = t.elapsed().as_secs_f64();
        match outcome {
            Err(e) => {
                s.test = Stage::errored(took, exit::code_of(&e));
                s.verdict = Verdict::Stop(exit::code_of(&e));
                s.detail = first_line(&e);
            }
            Ok(o) => {
                s.test = match o.verdict {
                    Verdict::Good => Stage::pass(took),
                    Verdict::Stop(code) => Stage::errored(took, code),
                    _ => Stage::fail(took),
                };
                s.logs = Some(o.logs);
                s.verdict = o.verdict;
                s.detail = o.detail;
                s.excerpt = o.excerpt;
            }
        }
        s.seconds = start.elapsed().as_secs_f64();
        s
    }

    /// The clone at `commit`, with what goes on top, on BRANCH.
    fn prepare(&self, commit: &str) -> anyhow::Result<()> {
        let clone = &self.clone;
        match &self.onto {
            Onto::Series(testing) => {
                git(clone, &["checkout", "-q", "-f", "--detach", commit], true)
                    .map_err(exit::infrastructure)?;
                let spec = crate::tree::TreeSpec {
                    path: clone.clone(),
                    base: Some(commit.to_string()),
                };
                crate::series::apply::apply_series(self.env, &spec, Some(BRANCH), true, *testing)?;
            }
            Onto::Nothing => {
                git(clone, &["checkout", "-q", "-f", "-B", BRANCH, commit], true)
                    .map_err(exit::infrastructure)?;
            }
            Onto::Picks(picks) => {
                git(clone, &["checkout", "-q", "-f", "-B", BRANCH, commit], true)
                    .map_err(exit::infrastructure)?;
                for p in picks {
                    let out = git(clone, &["cherry-pick", "--allow-empty", p], false)?;
                    if git(
                        clone,
                        &["rev-parse", "-q", "--verify", "CHERRY_PICK_HEAD"],
                        false,
                    )?
                    .trim()
                    .len()
                        == 40
                    {
                        let _ = git(clone, &["cherry-pick", "--abort"], false);
                        return Err(exit::untestable(anyhow::anyhow!(
                            "{} does not apply here: {}",
                            subject(clone, p),
                            out.lines().next().unwrap_or_default()
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

fn first_line(e: &anyhow::Error) -> String {
    format!("{e:#}")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// zcsplice's clone of `tree` for bisecting: `<cache>/bisect/<name>`,
/// sharing the tree's objects (`--shared`), made once and reused so its
/// build directory is too. The user's repository is only read.
pub fn clone_of(cache: &Path, tree: &Path) -> anyhow::Result<PathBuf> {
    let name = tree
        .canonicalize()
        .unwrap_or_else(|_| tree.to_path_buf())
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    let clone = cache.join("bisect").join(crate::tree::sanitize(&name));
    if !clone.join(".git").exists() {
        std::fs::create_dir_all(clone.parent().unwrap())?;
        let (src, dst) = (tree.to_string_lossy(), clone.to_string_lossy());
        git(
            Path::new("."),
            &["clone", "-q", "--shared", "--no-checkout", &src, &dst],
            true,
        )?;
        git(&clone, &["config", "user.name", "zcsplice bisect"], true)?;
        git(
            &clone,
            &["config", "user.email", "zcsplice@localhost"],
            true,
        )?;
    }
    Ok(clone)
}
