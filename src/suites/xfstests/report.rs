//! The report of `zcsplice xfstests`: a table for people, JUnit XML.

use anyhow::Result;

use super::baseline::Status;
use super::results::Res;
use super::{Report, Row};
use crate::guest::boot::Verdict;
use crate::guest::console::Splat;

fn mmss(s: f64) -> String {
    let s = s.round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

/// The human report: a table, the failures, totals, wall time, logs.
/// One row per test; with a baseline, its result beside the series'.
fn tests_table(r: &Report) -> String {
    let with_base = r.baseline.is_some();
    let base_col = |t: &Row| match t.baseline {
        Some(b) => format!("{}{}", b.as_str(), if t.baseline_cached { "*" } else { "" }),
        None => "-".into(),
    };
    let mut tab = if with_base {
        crate::report::table(
            ["TEST", "BASELINE", "SERIES", "SECONDS", "RETRIES", "STATUS"],
            &[3],
        )
    } else {
        crate::report::table(["TEST", "RESULT", "SECONDS"], &[2])
    };
    for t in &r.tests {
        let seconds = format!("{:.0}", t.seconds);
        if with_base {
            let retries: Vec<&str> = t.retries.iter().map(|r| r.as_str()).collect();
            tab.add_row([
                t.test.clone(),
                base_col(t),
                t.series.as_str().to_string(),
                seconds,
                if retries.is_empty() {
                    "-".into()
                } else {
                    retries.join(",")
                },
                t.status.as_str().to_string(),
            ]);
        } else {
            tab.add_row([t.test.clone(), t.series.as_str().to_string(), seconds]);
        }
    }
    tab.trim_fmt()
}

pub fn table(r: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let with_base = r.baseline.is_some();
    let _ = writeln!(o, "{}", tests_table(r));
    if r.tests.iter().any(|t| t.baseline_cached) {
        let _ = writeln!(o, "(* baseline result from the cache)");
    }
    for t in r.tests.iter().filter(|t| t.series.bad()) {
        let _ = writeln!(o, "\n{} {}: {}", t.test, t.status.as_str(), t.message);
        if let Some(b) = r.boots.iter().find(|b| b.label == "series") {
            let base = b.logs.join("results").join(&t.test);
            let _ = writeln!(o, "  results: {}.{{full,out.bad,dmesg}}", base.display());
        }
    }
    for b in &r.boots {
        for s in &b.kernel_reports {
            let _ = writeln!(
                o,
                "\n--- kernel report outside any test ({} boot) ---\n{}",
                b.label, s.text
            );
        }
        if !matches!(b.verdict, Verdict::Pass | Verdict::Fail) {
            let _ = writeln!(
                o,
                "\nwarning: the {} boot ended with {} (console: {})",
                b.label,
                b.verdict.as_str(),
                b.logs.join("console.log").display()
            );
        }
    }
    for b in r.boots.iter().filter(|b| !b.splice_counters.is_empty()) {
        let grew: Vec<String> = b
            .splice_counters
            .iter()
            .map(|(name, n)| format!("{name} +{n}"))
            .collect();
        let _ = writeln!(
            o,
            "\nsplice counters over the {} boot: {}",
            b.label,
            grew.join(", ")
        );
        if b.splice_counters.get("splice_move") == Some(&0) {
            let _ = writeln!(
                o,
                "  no test moved a page (`zcsplice run` tests the move path)"
            );
        }
    }
    if !r.expunged.is_empty() {
        let _ = writeln!(o, "\nexpunged on {} (vm/xfstests/expunge/{}):", r.fs, r.fs);
        for e in &r.expunged {
            let _ = writeln!(o, "  {}  # {}", e.test, e.reason);
        }
    }
    let accel = r.boots.first().map_or("?", |b| b.accel.as_str());
    let _ = writeln!(
        o,
        "\nkernel {} on {} under {}; xfstests {}",
        r.kernel,
        r.fs,
        accel.to_uppercase(),
        r.xfstests.display()
    );
    if let Some(b) = &r.baseline {
        let _ = writeln!(
            o,
            "baseline: {} at {} ({} cached, {} run now)",
            b.kernel,
            &b.commit[..12.min(b.commit.len())],
            b.cached,
            b.ran
        );
    }
    let _ = write!(
        o,
        "run {}, passed {}, failed {}, skipped {}",
        r.run, r.passed, r.failed, r.skipped
    );
    if with_base {
        let _ = write!(
            o,
            ", regressions {}, flaky {}",
            r.regressions.len(),
            r.flaky.len()
        );
    }
    let _ = writeln!(o);
    let boots: Vec<String> = r
        .boots
        .iter()
        .map(|b| format!("{} {}", b.label, mmss(b.seconds)))
        .collect();
    let _ = writeln!(
        o,
        "wall time {} ({})\nlogs: {}",
        mmss(r.seconds),
        boots.join(", "),
        r.logs.display()
    );
    o
}

/// JUnit XML: one testcase per test. Regressions fail, and so do failures
/// when there is no baseline; failures the base kernel has too, and flaky
/// tests, pass with a note. Kernel reports outside the tests are one more
/// failing testcase, "console".
pub fn junit(r: &Report) -> Result<String> {
    use crate::report::{Case, Outcome};
    let fails = |t: &Row| matches!(t.status, Status::Regression | Status::Fail);
    let reports: Vec<&Splat> = r
        .boots
        .iter()
        .filter(|b| b.label != "baseline")
        .flat_map(|b| &b.kernel_reports)
        .collect();
    // What each case says: its failure message and its system-out.
    let said: Vec<(String, String)> = r
        .tests
        .iter()
        .map(|t| {
            let note = match t.baseline {
                Some(b) => format!(
                    "{}: series {}, baseline {}, retries [{}]: {}\n{}",
                    t.status.as_str(),
                    t.series.as_str(),
                    b.as_str(),
                    t.retries
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    t.message,
                    t.output
                ),
                None => format!("{}\n{}", t.message, t.output),
            };
            let out = if t.series == Res::Pass {
                String::new()
            } else {
                note.trim().to_string()
            };
            (format!("{}: {}", t.status.as_str(), t.message), out)
        })
        .collect();
    let mut cases: Vec<Case> = r
        .tests
        .iter()
        .zip(&said)
        .map(|(t, (msg, out))| Case {
            name: &t.test,
            seconds: t.seconds,
            outcome: if fails(t) {
                Outcome::Fail {
                    message: msg,
                    text: None,
                }
            } else if t.status == Status::Skip {
                Outcome::Skip
            } else {
                Outcome::Pass
            },
            output: out,
        })
        .collect();
    let text = reports
        .iter()
        .map(|s| s.text.as_str())
        .collect::<Vec<_>>()
        .join("\n\n");
    let msg = format!("{} kernel report(s) outside the tests", reports.len());
    cases.push(Case {
        name: "console",
        seconds: 0.0,
        outcome: if reports.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail {
                message: &msg,
                text: None,
            }
        },
        output: &text,
    });
    crate::report::junit(
        &format!("xfstests {} {}", r.fs, r.kernel),
        &format!("xfstests.{}", r.fs),
        r.seconds,
        cases,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suites::xfstests::{BaselineInfo, Boot};
    use std::collections::BTreeMap;

    fn row(test: &str, status: Status, series: Res, base: Option<Res>, retries: &[Res]) -> Row {
        Row {
            test: test.into(),
            status,
            series,
            seconds: 12.0,
            baseline: base,
            baseline_cached: base.is_some(),
            retries: retries.to_vec(),
            message: if series.bad() {
                "- output mismatch".into()
            } else {
                String::new()
            },
            output: String::new(),
        }
    }

    fn report(rows: Vec<Row>, with_base: bool, verdict: Verdict) -> Report {
        let cached = rows.len();
        Report {
            kernel: "6.12.117".into(),
            fs: "ext4".into(),
            xfstests: "/var/lib/xfstests".into(),
            baseline: with_base.then(|| BaselineInfo {
                commit: "66d9a096b3bbb2f5".into(),
                kernel: "6.12.117-base".into(),
                cached,
                ran: 0,
                results: BTreeMap::new(),
            }),
            boots: vec![Boot {
                label: "series".into(),
                kernel: "6.12.117".into(),
                verdict,
                accel: "tcg".into(),
                seconds: 65.0,
                logs: "/logs/series".into(),
                kernel_reports: vec![],
                tests: vec![],
                splice_counters: BTreeMap::new(),
            }],
            seconds: 125.0,
            logs: "/logs".into(),
            ..Report::counted(rows)
        }
    }

    #[test]
    fn the_table_says_whether_the_series_boot_moved_a_page() {
        let mut r = report(vec![], true, Verdict::Pass);
        assert!(
            !table(&r).contains("splice counters"),
            "a kernel without them"
        );
        let counters = &mut r.boots[0].splice_counters;
        counters.insert("splice_move".into(), 0);
        counters.insert("splice_move_fallback".into(), 0);
        let t = table(&r);
        assert!(t.contains(
            "splice counters over the series boot: splice_move +0, splice_move_fallback +0"
        ));
        assert!(t.contains("no test moved a page"));
        r.boots[0].splice_counters.insert("splice_move".into(), 12);
        assert!(!table(&r).contains("no test moved a page"));
    }

    #[test]
    fn regressions_fail_with_a_baseline_and_failures_without() {
        use Res::*;
        let rows = || {
            vec![
                row("generic/001", Status::Pass, Pass, Some(Pass), &[]),
                row("generic/002", Status::KnownFail, Fail, Some(Fail), &[]),
                row("generic/003", Status::Flaky, Fail, Some(Pass), &[Pass]),
            ]
        };
        let r = report(rows(), true, Verdict::Fail);
        assert_eq!(
            r.exit_code(),
            0,
            "known failures and flaky tests are no regression"
        );
        let mut with_reg = rows();
        with_reg.push(row(
            "generic/004",
            Status::Regression,
            Fail,
            Some(Pass),
            &[Fail, Fail],
        ));
        let r = report(with_reg, true, Verdict::Fail);
        assert_eq!(r.exit_code(), 1);
        let t = table(&r);
        assert!(
            t.starts_with(
                "TEST         BASELINE  SERIES  SECONDS  RETRIES    STATUS\n\
                 generic/001  pass*     pass         12  -          pass\n"
            ),
            "{t}"
        );
        assert!(
            t.contains("\ngeneric/004  pass*     fail         12  fail,fail  REGRESSION\n"),
            "{t}"
        );
        assert!(
            t.contains("run 4, passed 1, failed 3, skipped 0, regressions 1, flaky 1"),
            "{t}"
        );
        assert!(t.contains("wall time 2:05 (series 1:05)"), "{t}");
        assert!(
            t.contains("results: /logs/series/results/generic/004.{full,out.bad,dmesg}"),
            "{t}"
        );
        let j = junit(&r).unwrap();
        assert_eq!(j.matches("<failure").count(), 1, "{j}");
        assert!(
            j.contains(
                "<testsuite name=\"xfstests ext4 6.12.117\" tests=\"5\" skipped=\"0\" \
                 errors=\"0\" failures=\"1\" time=\"125.000\">"
            ),
            "{j}"
        );
        assert!(
            j.contains(
                "<testcase name=\"generic/004\" classname=\"xfstests.ext4\" time=\"12.000\">\n\
                 \x20           <failure message=\"REGRESSION: - output mismatch\"/>\n"
            ),
            "{j}"
        );
        // A flaky test passes, with a note of what happened.
        assert!(
            j.contains(
                "<system-out>flaky: series fail, baseline pass, retries [pass]: \
                 - output mismatch</system-out>"
            ),
            "{j}"
        );
        assert!(
            j.contains(
                "<testcase name=\"generic/001\" classname=\"xfstests.ext4\" time=\"12.000\"/>"
            ),
            "{j}"
        );

        let plain = vec![row("generic/002", Status::Fail, Fail, None, &[])];
        assert_eq!(report(plain, false, Verdict::Fail).exit_code(), 1);
        let clean = vec![row("generic/001", Status::Pass, Pass, None, &[])];
        assert_eq!(report(clean, false, Verdict::Pass).exit_code(), 0);
    }

    #[test]
    fn a_kernel_report_outside_the_tests_or_a_timeout_fails_the_run() {
        let rows = vec![row("generic/001", Status::Pass, Res::Pass, None, &[])];
        let mut r = report(rows, false, Verdict::Fail);
        r.boots[0].kernel_reports.push(Splat {
            kind: "WARNING".into(),
            title: "WARNING: CPU: 0 PID: 1 at mm/filemap.c:1 f".into(),
            test: None,
            text: "WARNING: CPU: 0 PID: 1 at mm/filemap.c:1 f".into(),
        });
        assert_eq!(r.exit_code(), 1);
        let t = table(&r);
        assert!(
            t.starts_with(
                "TEST         RESULT  SECONDS\n\
                 generic/001  pass         12\n"
            ),
            "{t}"
        );
        assert!(t.contains("kernel report outside any test (series boot)"));
        let j = junit(&r).unwrap();
        assert!(
            j.contains("<failure message=\"1 kernel report(s) outside the tests\"/>"),
            "{j}"
        );
        assert!(
            j.contains("<system-out>WARNING: CPU: 0 PID: 1 at mm/filemap.c:1 f</system-out>"),
            "{j}"
        );
        let mut skipped = report(
            vec![row("generic/005", Status::Skip, Res::Skip, None, &[])],
            false,
            Verdict::Pass,
        );
        skipped.boots.clear();
        let j = junit(&skipped).unwrap();
        assert!(j.contains("skipped=\"1\""), "{j}");
        assert!(j.contains("<skipped/>"), "{j}");
        r.boots[0].kernel_reports.clear();
        r.boots[0].verdict = Verdict::Timeout;
        assert_eq!(r.exit_code(), 129);
    }
}
