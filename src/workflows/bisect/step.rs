//! One bisect step on a kernel: check the commit out in zcsplice's clone,
//! render and apply the series onto it (its facts are probed again: they
//! change along a range), build in the one build directory the clone's
//! bisect branch has (so a step rebuilds only what changed), boot and run
//! the selection. Each failure maps to what git bisect must hear:
//! untestable (skip), a kernel failure (bad), or a harness failure (stop).

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{git, subject, Stage, Step, Verdict};
use crate::exit;
use crate::guest::boot::Verdict as Run;
use crate::kernel::build::{build_kernel, BuildRequest, KernelOpts};
use crate::suites::guest_tests::{self, RunOpts};

/// The branch every step builds: one branch, one build directory.
pub const BRANCH: &str = "zcsplice-bisect";

/// What is built on top of each commit.
#[derive(Debug, Clone)]
pub enum Onto {
    /// The series, rendered for this commit (upstream bisect).
    Series,
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
    pub run: RunOpts,
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
            s.prepare = Stage::fail(t.elapsed().as_secs_f64());
            return failed(s, &e);
        }
        s.prepare = Stage::pass(t.elapsed().as_secs_f64());
        let req = BuildRequest {
            tree: self.clone.clone(),
            branch: Some(BRANCH.to_string()),
            kernel: self.kernel.clone(),
        };
        let t = Instant::now();
        let built = match build_kernel(self.env, &req) {
            Ok(b) => b,
            Err(e) => {
                s.build = Stage::fail(t.elapsed().as_secs_f64());
                return failed(s, &e);
            }
        };
        s.build = Stage::pass(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let report = guest_tests::run_built(self.env, &built, &self.run);
        let took = t.elapsed().as_secs_f64();
        match report {
            Err(e) => {
                s.test = Stage::fail(took);
                s.verdict = Verdict::Stop(exit::code_of(&e));
                s.detail = first_line(&e);
            }
            Ok(r) => {
                s.logs = Some(r.logs.clone());
                let (verdict, detail, excerpt) = judge(&r);
                s.test = match verdict {
                    Verdict::Good => Stage::pass(took),
                    _ => Stage::fail(took),
                };
                s.verdict = verdict;
                s.detail = detail;
                s.excerpt = excerpt;
            }
        }
        s.seconds = start.elapsed().as_secs_f64();
        s
    }

    /// The clone at `commit`, with what goes on top, on BRANCH.
    fn prepare(&self, commit: &str) -> anyhow::Result<()> {
        let clone = &self.clone;
        match &self.onto {
            Onto::Series => {
                git(clone, &["checkout", "-q", "-f", "--detach", commit], true)
                    .map_err(exit::infrastructure)?;
                let spec = crate::tree::TreeSpec {
                    path: clone.clone(),
                    base: Some(commit.to_string()),
                };
                crate::series::apply::apply_series(self.env, &spec, Some(BRANCH), true)?;
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

/// A guest run's report as a bisect verdict: pass is good; a failed test,
/// a kernel report, a panic or a kernel that does not boot is bad; a VM
/// that could not start is the harness's failure; a timeout is bad only
/// when the console shows the kernel stuck (a hung task, a lockup report),
/// else the harness's (exit 129).
fn judge(r: &guest_tests::Report) -> (Verdict, String, Option<String>) {
    let failed: Vec<&crate::guest::boot::TestResult> = r
        .tests
        .iter()
        .filter(|t| t.result == crate::guest::boot::TestStatus::Fail)
        .collect();
    let excerpt = || {
        let mut x = String::new();
        // The first FAIL lines say what broke; the last lines, how it ended.
        for t in &failed {
            x.push_str(&format!("{}:\n", t.name));
            let lines: Vec<&str> = t.output.lines().collect();
            let fails: Vec<&&str> = lines
                .iter()
                .filter(|l| l.contains("FAIL"))
                .take(8)
                .collect();
            for l in fails {
                x.push_str(&format!("{l}\n"));
            }
            x.push_str("...\n");
            for l in &lines[lines.len().saturating_sub(3)..] {
                x.push_str(&format!("{l}\n"));
            }
        }
        for sp in r.splats.iter().take(2) {
            x.push_str(&format!("console: {}\n", sp.title));
            for l in sp.text.lines().take(12) {
                x.push_str(&format!("{l}\n"));
            }
        }
        (!x.is_empty()).then(|| x.trim_end().to_string())
    };
    let names = || {
        failed
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match r.verdict {
        Run::Pass => (Verdict::Good, "every test passed".into(), None),
        Run::Fail if !failed.is_empty() => {
            (Verdict::Bad, format!("failed: {}", names()), excerpt())
        }
        Run::Fail => (
            Verdict::Bad,
            format!(
                "kernel report: {}",
                r.splats.first().map_or("", |s| s.title.as_str())
            ),
            excerpt(),
        ),
        Run::Crash => (Verdict::Bad, "the kernel panicked".into(), excerpt()),
        Run::BootFailed => (
            Verdict::Bad,
            "the kernel did not reach the tests".into(),
            excerpt(),
        ),
        Run::Timeout if !r.splats.is_empty() => (
            Verdict::Bad,
            format!("timed out with a kernel report: {}", r.splats[0].title),
            excerpt(),
        ),
        Run::Timeout => (
            Verdict::Stop(exit::TIMEOUT),
            "timed out with no kernel report: the VM was killed (raise --timeout?)".into(),
            None,
        ),
        Run::VmFailed => (
            Verdict::Stop(exit::INFRA),
            "the VM could not be started".into(),
            None,
        ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::boot::{TestResult, TestStatus};
    use crate::guest::console::Splat;

    fn report(verdict: Run, tests: Vec<TestResult>, splats: Vec<Splat>) -> guest_tests::Report {
        guest_tests::Report {
            verdict,
            kernel: "k".into(),
            accel: "tcg".into(),
            accel_reason: String::new(),
            tests,
            splats,
            seconds: 1.0,
            logs: PathBuf::from("/l"),
            leftovers: vec![],
            vm_exit_code: Some(0),
        }
    }

    fn t(name: &str, result: TestStatus, output: &str) -> TestResult {
        TestResult {
            name: name.into(),
            result,
            seconds: 1.0,
            output: output.into(),
        }
    }

    fn hung() -> Splat {
        Splat {
            kind: "hung-task".into(),
            title: "INFO: task x blocked for more than 120 seconds.".into(),
            test: None,
            text: "INFO: task x blocked\nCall Trace:".into(),
        }
    }

    #[test]
    fn kernel_failures_are_bad_and_harness_failures_stop() {
        let v = |r: &guest_tests::Report| judge(r).0;
        assert_eq!(v(&report(Run::Pass, vec![], vec![])), Verdict::Good);
        let r = report(
            Run::Fail,
            vec![
                t("a", TestStatus::Pass, ""),
                t(
                    "splice-integrity",
                    TestStatus::Fail,
                    "FAIL: byte 4096 differs",
                ),
            ],
            vec![],
        );
        let (verdict, detail, excerpt) = judge(&r);
        assert_eq!(verdict, Verdict::Bad);
        assert_eq!(detail, "failed: splice-integrity");
        let excerpt = excerpt.unwrap();
        assert!(
            excerpt.starts_with("splice-integrity:\nFAIL: byte 4096 differs\n...\n"),
            "{excerpt}"
        );
        assert_eq!(v(&report(Run::Fail, vec![], vec![hung()])), Verdict::Bad);
        assert_eq!(v(&report(Run::Crash, vec![], vec![])), Verdict::Bad);
        assert_eq!(v(&report(Run::BootFailed, vec![], vec![])), Verdict::Bad);
        assert_eq!(v(&report(Run::Timeout, vec![], vec![hung()])), Verdict::Bad);
        assert_eq!(
            v(&report(Run::Timeout, vec![], vec![])),
            Verdict::Stop(exit::TIMEOUT)
        );
        assert_eq!(
            v(&report(Run::VmFailed, vec![], vec![])),
            Verdict::Stop(exit::INFRA)
        );
    }
}
