//! `zcsplice run`: the guest tests from vm/tests, in one boot, judged by
//! their results and the console; the report, its table and JUnit.

use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::guest::boot::{boot, compile_guest, Guest, TestResult, TestStatus, Verdict, VmOpts};
use crate::guest::console::Splat;
use crate::guest::disks;
use crate::kernel::build::Built;

#[derive(Debug, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    pub kernel: String,
    pub accel: String,
    pub accel_reason: String,
    pub tests: Vec<TestResult>,
    pub splats: Vec<Splat>,
    pub seconds: f64,
    pub logs: PathBuf,
    /// Processes of the VM still alive after it was stopped (should be none).
    pub leftovers: Vec<i32>,
    /// vng's exit code (None when it was killed).
    pub vm_exit_code: Option<i32>,
}

#[derive(Debug, Clone)]
pub struct RunOpts {
    pub tests: Vec<String>,
    pub vm: VmOpts,
    /// Written to the series' fault knob before the tests (negative control).
    pub fault: Option<String>,
    /// A shell command run in the guest after the tests, judged as a test
    /// named COMMAND (exit 0 pass, 77 skip, else fail).
    pub command: Option<String>,
    /// Only part of the series is applied (a step of an in-series
    /// bisect): the tests check data and that nothing moves where it must
    /// not, but do not require moves (ZCSPLICE_MOVES=optional).
    pub partial_series: bool,
}

/// The name the results give `RunOpts::command`.
pub const COMMAND: &str = "command";

/// Guest test names: every vm/tests/*.c (selftests only when asked by name).
pub fn available_tests(project: &Path) -> Result<Vec<String>> {
    let dir = project.join("vm/tests");
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| {
            let p = e.ok()?.path();
            let stem = p.file_stem()?.to_string_lossy().to_string();
            (p.extension()? == "c").then_some(stem)
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Unknown guest tests are a usage error (exit 2), found before any build.
pub fn check_tests(project: &Path, tests: &[String]) -> Result<()> {
    if tests.is_empty() {
        return Ok(());
    }
    let known = available_tests(project)?;
    if let Some(t) = tests.iter().find(|t| !known.contains(t)) {
        return Err(crate::exit::usage(anyhow::anyhow!(
            "--test {t}: no such guest test (vm/tests/{t}.c); the tests are: {}",
            known.join(", ")
        )));
    }
    Ok(())
}

/// Boots a built kernel and runs the guest tests, logs in a new run
/// directory; a VM that cannot start is an infrastructure failure.
pub fn run_built(env: &crate::env::Env, built: &Built, opts: &RunOpts) -> Result<Report> {
    let logs = env.run_logs(built);
    run(
        &env.series,
        &env.cache,
        &built.image,
        &built.release(),
        &logs,
        opts,
    )
    .map_err(crate::exit::infrastructure)
}

/// What vm/guest/run-tests.sh and the tests read from their environment.
fn guest_env(opts: &RunOpts) -> Vec<(&'static str, String)> {
    let fault = opts.fault.iter().map(|f| ("ZCSPLICE_FAULT", f.clone()));
    let command = opts.command.iter().map(|c| ("ZCSPLICE_CMD", c.clone()));
    let moves = opts
        .partial_series
        .then(|| ("ZCSPLICE_MOVES", "optional".to_string()));
    fault.chain(command).chain(moves).collect()
}

/// Boots `image` and runs the tests; `logs` receives console.log and the results.
pub fn run(
    project: &Path,
    cache: &Path,
    image: &Path,
    kernel: &str,
    logs: &Path,
    opts: &RunOpts,
) -> Result<Report> {
    let names = if opts.tests.is_empty() && opts.command.is_some() {
        Vec::new()
    } else if opts.tests.is_empty() {
        available_tests(project)?
            .into_iter()
            .filter(|n| !n.starts_with("selftest-"))
            .collect()
    } else {
        opts.tests.clone()
    };
    let bindir = cache.join("guest-bin");
    compile_guest(project, "vm/tests", &names, &bindir)?;
    let mut all = names.clone();
    all.extend(opts.command.as_ref().map(|_| COMMAND.to_string()));
    let mut guest = Guest::tests(&bindir, &all)?;
    guest.env = guest_env(opts);
    let images = disks::fresh(cache, &disks::TEST_DISKS)?;
    guest.disks = images.iter().map(|p| p.to_path_buf()).collect();
    let done = AtomicBool::new(false);
    let b = std::thread::scope(|s| {
        s.spawn(|| watch_console(&logs.join("console.log"), all.len(), &done));
        let b = boot(project, cache, image, logs, &guest, &opts.vm);
        done.store(true, Ordering::Relaxed);
        b
    })?;
    let report = Report {
        verdict: b.verdict,
        kernel: kernel.to_string(),
        accel: b.accel.to_string(),
        accel_reason: b.accel_reason,
        tests: b.tests,
        splats: b.splats,
        seconds: b.finished.seconds,
        logs: b.logs.clone(),
        leftovers: b.finished.leftovers,
        vm_exit_code: b.finished.code,
    };
    std::fs::write(
        b.logs.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    Ok(report)
}

/// What the guest runner's markers (vm/guest/run-tests.sh) say it is at:
/// the test now running (1-based index, name), or None before the first.
fn guest_at(console: &str) -> Option<(usize, String)> {
    let mut at = None;
    let mut started = 0;
    for l in console.lines() {
        if let Some((_, t)) = l.split_once(crate::guest::console::marker::START) {
            started += 1;
            at = Some((started, t.trim().to_string()));
        }
    }
    at
}

/// Shows the boot's progress while it runs: elapsed time and the guest
/// test it is at, from the console's markers. On a terminal a spinner;
/// otherwise a plain line each time a test starts.
fn watch_console(console: &Path, total: usize, done: &AtomicBool) {
    let bar = crate::progress::spinner("booting");
    let mut last = None;
    while !done.load(Ordering::Relaxed) {
        let text = std::fs::read(console).unwrap_or_default();
        let at = guest_at(&String::from_utf8_lossy(&text));
        if at.is_some() && at != last {
            let (i, name) = at.clone().expect("checked");
            let msg = format!("test {i}/{total}: {name}");
            if bar.is_hidden() {
                log::info!("[{:.0} s] {msg}", bar.elapsed().as_secs_f64());
            }
            bar.set_message(msg);
            last = at;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bar.finish_and_clear();
}

/// The human report: the kernel, a table of the tests, the output of the
/// failures, the kernel reports, the verdict and the logs.
pub fn table(r: &Report) -> String {
    use std::fmt::Write;
    let mut o = format!(
        "kernel {} under {} ({})\n",
        r.kernel,
        r.accel.to_uppercase(),
        r.accel_reason
    );
    let mut t = crate::report::table(["TEST", "RESULT", "SECONDS"], &[2]);
    for x in &r.tests {
        t.add_row([
            x.name.clone(),
            x.result.to_string(),
            format!("{:.1}", x.seconds),
        ]);
    }
    let _ = writeln!(o, "{}", t.trim_fmt());
    for t in r.tests.iter().filter(|t| t.result == TestStatus::Fail) {
        let _ = writeln!(o, "\n--- output of {} ---\n{}", t.name, t.output.trim_end());
    }
    for s in &r.splats {
        let during = s
            .test
            .as_deref()
            .map(|t| format!(" (during {t})"))
            .unwrap_or_default();
        let _ = writeln!(o, "\n--- kernel report: {}{during} ---\n{}", s.kind, s.text);
    }
    if !r.leftovers.is_empty() {
        let _ = writeln!(
            o,
            "\nwarning: VM processes still alive after the run: {:?}",
            r.leftovers
        );
    }
    let why = match r.verdict {
        Verdict::Timeout => " (hard timeout: the VM and all its processes were killed)",
        Verdict::VmFailed => " (the VM did not start: see console.log)",
        Verdict::BootFailed => " (the kernel never reached the test runner)",
        _ => "",
    };
    let _ = writeln!(
        o,
        "\nverdict: {}{why} after {:.0} s\nlogs: {}",
        r.verdict.as_str(),
        r.seconds,
        r.logs.display()
    );
    o
}

/// JUnit XML, one testcase per guest test, plus one for the console that
/// fails on kernel reports.
pub fn junit(r: &Report) -> Result<String> {
    use crate::report::{Case, Outcome};
    let mut cases: Vec<Case> = r
        .tests
        .iter()
        .map(|t| Case {
            name: &t.name,
            seconds: t.seconds,
            outcome: match t.result {
                TestStatus::Fail | TestStatus::Incomplete => Outcome::Fail {
                    message: t.result.as_str(),
                    text: Some(&t.output),
                },
                TestStatus::Skip => Outcome::Skip,
                TestStatus::Pass => Outcome::Pass,
            },
            output: &t.output,
        })
        .collect();
    let text = r
        .splats
        .iter()
        .map(|s| s.text.as_str())
        .collect::<Vec<_>>()
        .join("\n\n");
    let msg = format!(
        "{} kernel report(s); verdict {}",
        r.splats.len(),
        r.verdict.as_str()
    );
    cases.push(Case {
        name: "console",
        seconds: 0.0,
        outcome: if r.splats.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail {
                message: &msg,
                text: Some(&text),
            }
        },
        output: "",
    });
    crate::report::junit(
        &format!("zcsplice {}", r.kernel),
        "zcsplice.guest",
        r.seconds,
        cases,
    )
}

/// Writes `junit(r)` to `path`.
pub fn write_junit(r: &Report, path: &Path) -> Result<()> {
    std::fs::write(path, junit(r)?).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_series_tells_the_tests_moves_are_optional() {
        let mut o = RunOpts {
            tests: vec![],
            vm: VmOpts {
                timeout: std::time::Duration::from_secs(1),
                memory: "2G".into(),
                cpus: 2,
                numa_nodes: 1,
            },
            fault: Some("stale-donor".into()),
            command: None,
            partial_series: false,
        };
        assert_eq!(guest_env(&o), [("ZCSPLICE_FAULT", "stale-donor".into())]);
        o.partial_series = true;
        assert_eq!(
            guest_env(&o),
            [
                ("ZCSPLICE_FAULT", "stale-donor".to_string()),
                ("ZCSPLICE_MOVES", "optional".to_string())
            ]
        );
    }

    fn report() -> Report {
        let test = |name: &str, result: &str, seconds: f64, output: &str| TestResult {
            name: name.into(),
            result: result.parse().unwrap(),
            seconds,
            output: output.into(),
        };
        Report {
            verdict: Verdict::Fail,
            kernel: "6.12.117".into(),
            accel: "kvm".into(),
            accel_reason: "/dev/kvm usable".into(),
            tests: vec![
                test("splice-integrity", "pass", 12.34, ""),
                test("splice-stress", "fail", 3.0, "FAIL: a < b\n"),
                test("t", "skip", 0.0, ""),
            ],
            splats: vec![Splat {
                kind: "WARNING".into(),
                title: "WARNING: at mm/filemap.c:1 f".into(),
                test: Some("splice-stress".into()),
                text: "WARNING: at mm/filemap.c:1 f".into(),
            }],
            seconds: 61.0,
            logs: "/logs/run".into(),
            leftovers: vec![],
            vm_exit_code: Some(0),
        }
    }

    #[test]
    fn the_table_lists_the_tests_then_the_failures_and_the_verdict() {
        let t = table(&report());
        assert_eq!(
            t,
            "kernel 6.12.117 under KVM (/dev/kvm usable)\n\
             TEST              RESULT  SECONDS\n\
             splice-integrity  pass       12.3\n\
             splice-stress     fail        3.0\n\
             t                 skip        0.0\n\
             \n--- output of splice-stress ---\nFAIL: a < b\n\
             \n--- kernel report: WARNING (during splice-stress) ---\n\
             WARNING: at mm/filemap.c:1 f\n\
             \nverdict: fail after 61 s\nlogs: /logs/run\n"
        );
    }

    #[test]
    fn junit_has_a_case_per_test_and_one_for_the_console() {
        let x = junit(&report()).unwrap();
        assert!(
            x.contains(
                "<testsuite name=\"zcsplice 6.12.117\" tests=\"4\" skipped=\"1\" \
                 errors=\"0\" failures=\"2\" time=\"61.000\">"
            ),
            "{x}"
        );
        assert!(
            x.contains(
                "<testcase name=\"splice-integrity\" classname=\"zcsplice.guest\" \
                 time=\"12.340\"/>"
            ),
            "{x}"
        );
        assert!(
            x.contains("<failure message=\"fail\">FAIL: a &lt; b\n</failure>"),
            "{x}"
        );
        assert!(
            x.contains("<system-out>FAIL: a &lt; b\n</system-out>"),
            "{x}"
        );
        assert!(x.contains("<skipped/>"), "{x}");
        assert!(
            x.contains(
                "<failure message=\"1 kernel report(s); verdict fail\">\
                 WARNING: at mm/filemap.c:1 f</failure>"
            ),
            "{x}"
        );
        let clean = Report {
            verdict: Verdict::Pass,
            tests: vec![],
            splats: vec![],
            ..report()
        };
        let x = junit(&clean).unwrap();
        assert!(x.contains("failures=\"0\""), "{x}");
        assert!(
            x.contains("<testcase name=\"console\" classname=\"zcsplice.guest\" time=\"0.000\"/>"),
            "{x}"
        );
        let d = tempfile::tempdir().unwrap();
        let e = write_junit(&clean, &d.path().join("no/such/dir/j.xml")).unwrap_err();
        assert!(format!("{e}").contains("no/such/dir/j.xml"), "{e}");
    }

    #[test]
    fn the_console_markers_say_which_test_runs() {
        let c = "[ 1.0] Linux version 6.12\n\
                 [ 9.0] zcsplice-guest: kernel 6.12 up, running 2\n";
        assert_eq!(guest_at(c), None);
        let c = format!("{c}[ 9.5] zcsplice-guest: start splice-integrity\n");
        assert_eq!(guest_at(&c), Some((1, "splice-integrity".into())));
        let c = format!(
            "{c}[20.0] zcsplice-guest: end splice-integrity pass\n\
             [20.1] zcsplice-guest: start splice-stress\n"
        );
        assert_eq!(guest_at(&c), Some((2, "splice-stress".into())));
    }
}
