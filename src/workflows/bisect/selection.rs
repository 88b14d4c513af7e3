//! What a bisect step runs on its kernel, and what the results make the
//! commit: guest tests (with a fault or a command), or xfstests tests.
//! Pass is good; a failed test, a kernel report, a panic or a kernel that
//! does not boot is bad; a VM that could not start is the harness's
//! failure; a timeout is bad only when the console shows the kernel stuck
//! (a hung task, a lockup report), else the harness's (exit 129).

use anyhow::Result;
use std::path::PathBuf;

use super::Verdict;
use crate::exit;
use crate::guest::boot::{TestStatus, Verdict as Run, VmOpts};
use crate::guest::console::Splat;
use crate::kernel::build::Built;
use crate::suites::guest_tests::{self, RunOpts};
use crate::suites::xfstests;

/// The selection as asked: checked by `ready()` before any build.
#[derive(Debug, Clone)]
pub enum Selection {
    /// vm/tests programs, a fault through the series' knob, a command.
    Guest(RunOpts),
    /// xfstests tests on fresh disks, with no baseline: the good end is
    /// the baseline of a bisect.
    Xfstests(XfstestsAsk),
}

#[derive(Debug, Clone)]
pub struct XfstestsAsk {
    /// --xfstests, else XFSTESTS_DIR, else /var/lib/xfstests.
    pub dir: Option<PathBuf>,
    pub dir_env: Option<PathBuf>,
    pub fs: String,
    pub tests: Vec<String>,
    pub groups: Vec<String>,
    pub vm: VmOpts,
}

/// A selection that can run: tests known, xfstests found.
#[derive(Debug, Clone)]
pub enum Ready {
    Guest(RunOpts),
    Xfstests(xfstests::install::Install, xfstests::Opts),
}

impl Selection {
    /// Whether the steps need the series' testing patches (a fault's knob).
    pub fn needs_testing(&self) -> bool {
        matches!(self, Selection::Guest(r) if r.fault.is_some())
    }

    /// Unknown tests are usage errors and a missing xfstests is the
    /// harness's, both found before anything is built.
    pub fn ready(&self, project: &std::path::Path) -> Result<Ready> {
        match self {
            Selection::Guest(r) => {
                guest_tests::check_tests(project, &r.tests)?;
                Ok(Ready::Guest(r.clone()))
            }
            Selection::Xfstests(x) => {
                let inst = xfstests::locate(x.dir.as_deref(), x.dir_env.as_deref())
                    .map_err(exit::infrastructure)?;
                let tests = xfstests::select(project, &inst.dir, &x.fs, &x.groups, &x.tests)
                    .map_err(exit::usage)?;
                xfstests::lists::expunged(project, &x.fs).map_err(exit::usage)?;
                xfstests::host_deps().map_err(exit::infrastructure)?;
                let opts = xfstests::Opts {
                    fs: x.fs.clone(),
                    mkfs_options: String::new(),
                    mount_options: String::new(),
                    tests,
                    retries: 0,
                    vm: x.vm.clone(),
                };
                Ok(Ready::Xfstests(inst, opts))
            }
        }
    }
}

/// What a step's run made of its commit.
pub struct Outcome {
    pub verdict: Verdict,
    pub detail: String,
    /// The failing tests' output and the console's kernel reports.
    pub excerpt: Option<String>,
    pub logs: PathBuf,
}

impl Ready {
    /// For the steps of an in-series bisect, where only a prefix of the
    /// series is applied: a guest test must not require moves that a
    /// later patch makes possible (the filesystem under test may not take
    /// donors yet), or the first patch adding the counters would always
    /// be blamed.
    pub fn partial_series(self) -> Ready {
        match self {
            Ready::Guest(mut r) => {
                r.partial_series = true;
                Ready::Guest(r)
            }
            x => x,
        }
    }

    /// Boots `built` and runs the selection. An error is the harness's.
    pub fn run(&self, env: &crate::env::Env, built: &Built) -> Result<Outcome> {
        match self {
            Ready::Guest(opts) => {
                let r = guest_tests::run_built(env, built, opts)?;
                let mut o = judge_guest(&r);
                if r.verdict == Run::VmFailed {
                    o.detail.push_str(&why_no_vm(&r.logs.join("console.log")));
                }
                Ok(o)
            }
            Ready::Xfstests(inst, opts) => {
                let r = xfstests::run_built(env, inst, built, opts)?;
                Ok(judge_xfstests(&r))
            }
        }
    }
}

/// What qemu or vng said when the VM did not start: the console's last
/// line (": ..."), or nothing.
fn why_no_vm(console: &std::path::Path) -> String {
    let text = std::fs::read_to_string(console).unwrap_or_default();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!(": {}", l.trim()))
        .unwrap_or_default()
}

/// A failed test's name and output, as the excerpt shows it: its first
/// FAIL lines say what broke, its last lines how it ended.
fn failed_excerpt(name: &str, output: &str, x: &mut String) {
    x.push_str(&format!("{name}:\n"));
    let lines: Vec<&str> = output.lines().collect();
    for l in lines.iter().filter(|l| l.contains("FAIL")).take(8) {
        x.push_str(&format!("{l}\n"));
    }
    x.push_str("...\n");
    for l in &lines[lines.len().saturating_sub(3)..] {
        x.push_str(&format!("{l}\n"));
    }
}

/// A failed xfstests test as the excerpt shows it: why xfstests failed
/// it, and the lines its output differs in from the golden output.
fn xfstests_excerpt(t: &xfstests::Row, x: &mut String) {
    x.push_str(&format!("{} {}\n", t.test, t.message));
    let changed = t.output.lines().map(str::trim_start).filter(|l| {
        let header = l.starts_with("+++") || l.starts_with("---");
        (l.starts_with('+') || l.starts_with('-')) && !header && *l != t.message
    });
    for l in changed.take(8) {
        x.push_str(&format!("{l}\n"));
    }
}

fn splat_excerpt(splats: &[Splat], x: &mut String) {
    for sp in splats.iter().take(2) {
        x.push_str(&format!("console: {}\n", sp.title));
        for l in sp.text.lines().take(12) {
            x.push_str(&format!("{l}\n"));
        }
    }
}

/// How a run ended, whatever ran in it: the verdict and why.
fn verdict_of(run: Run, failed: &[&str], splats: &[Splat]) -> (Verdict, String) {
    let report = || splats.first().map_or("", |s| s.title.as_str());
    match run {
        Run::Pass if failed.is_empty() && splats.is_empty() => {
            (Verdict::Good, "every test passed".into())
        }
        Run::Pass | Run::Fail if !failed.is_empty() => {
            (Verdict::Bad, format!("failed: {}", failed.join(", ")))
        }
        Run::Pass | Run::Fail => (Verdict::Bad, format!("kernel report: {}", report())),
        Run::Crash => (Verdict::Bad, "the kernel panicked".into()),
        Run::BootFailed => (Verdict::Bad, "the kernel did not reach the tests".into()),
        Run::Timeout if !splats.is_empty() => (
            Verdict::Bad,
            format!("timed out with a kernel report: {}", report()),
        ),
        Run::Timeout => (
            Verdict::Stop(exit::TIMEOUT),
            "timed out with no kernel report: the VM was killed (raise --timeout?)".into(),
        ),
        Run::VmFailed => (
            Verdict::Stop(exit::INFRA),
            "the VM could not be started".into(),
        ),
    }
}

fn judge_guest(r: &guest_tests::Report) -> Outcome {
    let failed: Vec<&crate::guest::boot::TestResult> = r
        .tests
        .iter()
        .filter(|t| t.result == TestStatus::Fail)
        .collect();
    let names: Vec<&str> = failed.iter().map(|t| t.name.as_str()).collect();
    let (verdict, detail) = verdict_of(r.verdict, &names, &r.splats);
    let mut x = String::new();
    if verdict != Verdict::Good && !matches!(verdict, Verdict::Stop(_)) {
        for t in &failed {
            failed_excerpt(&t.name, &t.output, &mut x);
        }
        splat_excerpt(&r.splats, &mut x);
    }
    Outcome {
        verdict,
        detail,
        excerpt: (!x.is_empty()).then(|| x.trim_end().to_string()),
        logs: r.logs.clone(),
    }
}

/// xfstests without a baseline: a test that fails (or does not finish)
/// is a failure, a skipped one is not; kernel reports outside the tests
/// and how each boot ended count as for guest tests.
fn judge_xfstests(r: &xfstests::Report) -> Outcome {
    let failed: Vec<&xfstests::Row> = r
        .tests
        .iter()
        .filter(|t| t.status == xfstests::baseline::Status::Fail)
        .collect();
    let names: Vec<&str> = failed.iter().map(|t| t.test.as_str()).collect();
    let splats: Vec<Splat> = r
        .boots
        .iter()
        .flat_map(|b| b.kernel_reports.iter().cloned())
        .collect();
    // The worst way a boot ended: a timeout or a crash outweighs a pass.
    let run = r
        .boots
        .iter()
        .map(|b| b.verdict)
        .max_by_key(|v| match v {
            Run::Pass => 0,
            Run::Fail => 1,
            Run::BootFailed => 2,
            Run::Crash => 3,
            Run::Timeout => 4,
            Run::VmFailed => 5,
        })
        .unwrap_or(Run::BootFailed);
    let (verdict, detail) = verdict_of(run, &names, &splats);
    let mut x = String::new();
    if verdict != Verdict::Good && !matches!(verdict, Verdict::Stop(_)) {
        for t in &failed {
            xfstests_excerpt(t, &mut x);
        }
        splat_excerpt(&splats, &mut x);
    }
    Outcome {
        verdict,
        detail,
        excerpt: (!x.is_empty()).then(|| x.trim_end().to_string()),
        logs: r.logs.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::boot::TestResult;
    use xfstests::results::Res;

    fn guest(verdict: Run, tests: Vec<TestResult>, splats: Vec<Splat>) -> guest_tests::Report {
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
    fn a_vm_that_did_not_start_says_why() {
        let d = tempfile::tempdir().unwrap();
        let console = d.path().join("console.log");
        assert_eq!(why_no_vm(&console), "");
        std::fs::write(
            &console,
            "qemu-system-x86_64: -drive file=x: Could not open 'x': No space left on device\n\n",
        )
        .unwrap();
        assert_eq!(
            why_no_vm(&console),
            ": qemu-system-x86_64: -drive file=x: Could not open 'x': No space left on device"
        );
    }

    #[test]
    fn kernel_failures_are_bad_and_harness_failures_stop() {
        let v = |r: &guest_tests::Report| judge_guest(r).verdict;
        assert_eq!(v(&guest(Run::Pass, vec![], vec![])), Verdict::Good);
        let r = guest(
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
        let o = judge_guest(&r);
        assert_eq!(o.verdict, Verdict::Bad);
        assert_eq!(o.detail, "failed: splice-integrity");
        let excerpt = o.excerpt.unwrap();
        assert!(
            excerpt.starts_with("splice-integrity:\nFAIL: byte 4096 differs\n...\n"),
            "{excerpt}"
        );
        assert_eq!(v(&guest(Run::Fail, vec![], vec![hung()])), Verdict::Bad);
        assert_eq!(v(&guest(Run::Crash, vec![], vec![])), Verdict::Bad);
        assert_eq!(v(&guest(Run::BootFailed, vec![], vec![])), Verdict::Bad);
        assert_eq!(v(&guest(Run::Timeout, vec![], vec![hung()])), Verdict::Bad);
        assert_eq!(
            v(&guest(Run::Timeout, vec![], vec![])),
            Verdict::Stop(exit::TIMEOUT)
        );
        assert_eq!(
            v(&guest(Run::VmFailed, vec![], vec![])),
            Verdict::Stop(exit::INFRA)
        );
    }

    fn row(test: &str, series: Res) -> xfstests::Row {
        xfstests::Row {
            test: test.into(),
            status: xfstests::baseline::classify(series, None, &[]),
            series,
            seconds: 1.0,
            baseline: None,
            baseline_cached: false,
            retries: vec![],
            message: format!("- output mismatch (see {test}.out.bad)"),
            output: format!(
                "- output mismatch (see {test}.out.bad)\n    --- tests/{test}.out\n    \
                 +++ {test}.out.bad\n    @@ -1,9 +1,8 @@\n     QA output created by x\n    \
                 -wrote 32768/32768 bytes at offset 0\n    +pwrite: Input/output error\n    ...\n"
            ),
        }
    }

    fn xfs(rows: Vec<xfstests::Row>, boots: Vec<(Run, Vec<Splat>)>) -> xfstests::Report {
        let boots = boots
            .into_iter()
            .map(|(verdict, kernel_reports)| xfstests::Boot {
                label: "series".into(),
                kernel: "k".into(),
                verdict,
                accel: "tcg".into(),
                seconds: 1.0,
                logs: PathBuf::from("/l"),
                kernel_reports,
                tests: vec![],
                splice_counters: Default::default(),
            })
            .collect();
        xfstests::Report {
            boots,
            logs: PathBuf::from("/l"),
            ..xfstests::Report::counted(rows)
        }
    }

    #[test]
    fn an_xfstests_failure_is_bad_and_a_skip_is_not() {
        let v = |r: &xfstests::Report| judge_xfstests(r).verdict;
        let pass = || row("generic/001", Res::Pass);
        let skip = || row("generic/002", Res::Skip);
        assert_eq!(
            v(&xfs(vec![pass(), skip()], vec![(Run::Pass, vec![])])),
            Verdict::Good
        );
        let o = judge_xfstests(&xfs(
            vec![pass(), row("generic/013", Res::Fail)],
            vec![(Run::Fail, vec![])],
        ));
        assert_eq!(o.verdict, Verdict::Bad);
        assert_eq!(o.detail, "failed: generic/013");
        assert_eq!(
            o.excerpt.unwrap(),
            "generic/013 - output mismatch (see generic/013.out.bad)\n\
             -wrote 32768/32768 bytes at offset 0\n+pwrite: Input/output error"
        );
        // A test the kernel never let finish is a failure too.
        assert_eq!(
            judge_xfstests(&xfs(
                vec![row("generic/013", Res::Incomplete)],
                vec![(Run::Crash, vec![])]
            ))
            .verdict,
            Verdict::Bad
        );
        // A kernel report outside any test fails a run whose tests passed.
        let o = judge_xfstests(&xfs(vec![pass()], vec![(Run::Fail, vec![hung()])]));
        assert_eq!(o.verdict, Verdict::Bad);
        assert!(
            o.detail.starts_with("kernel report: INFO: task x"),
            "{}",
            o.detail
        );
        assert_eq!(
            v(&xfs(
                vec![pass()],
                vec![(Run::Pass, vec![]), (Run::Timeout, vec![])]
            )),
            Verdict::Stop(exit::TIMEOUT)
        );
    }
}
