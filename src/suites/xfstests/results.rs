//! What one boot of xfstests said: the xunit report (`./check -R xunit`,
//! RESULT_BASE/result.xml) and the console, whose kernel reports fail the
//! test that was running when they appeared.

use crate::guest::console::marker::{self, END_OF_CHECK};
use anyhow::{Context, Result};
use quick_xml::events::Event;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

use crate::guest::console::{self, Splat};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Res {
    Pass,
    Fail,
    /// xfstests did not run it ("notrun": a missing feature or tool).
    Skip,
    /// Never finished: it was running when the guest died or was killed,
    /// or the run never reached it.
    Incomplete,
}

impl Res {
    pub fn as_str(self) -> &'static str {
        match self {
            Res::Pass => "pass",
            Res::Fail => "fail",
            Res::Skip => "skip",
            Res::Incomplete => "incomplete",
        }
    }
    /// Neither passed nor skipped.
    pub fn bad(self) -> bool {
        matches!(self, Res::Fail | Res::Incomplete)
    }
}

/// One run of one test. A test run again after a failure (`check -L`)
/// has one case per run, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Case {
    pub name: String,
    pub result: Res,
    pub seconds: f64,
    /// The failure or skip message.
    pub message: String,
    /// What xfstests kept: the .full file, the diff against the golden
    /// output, dmesg; and kernel reports from the console.
    pub output: String,
}

/// Parses an xfstests xunit report. check rewrites it before every test,
/// so after a crash it still holds every test that finished.
pub fn parse_xunit(xml: &str) -> Result<Vec<Case>> {
    let mut r = quick_xml::Reader::from_str(xml);
    let mut out: Vec<Case> = Vec::new();
    let mut cur: Option<Case> = None;
    // Inside system-out, system-err or kernel-log of the current case.
    let mut capture: Option<String> = None;
    loop {
        let ev = r
            .read_event()
            .with_context(|| format!("bad xunit XML at byte {}", r.buffer_position()))?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                match e.name().as_ref() {
                    b"testcase" => {
                        let mut c = Case {
                            name: String::new(),
                            result: Res::Pass,
                            seconds: 0.0,
                            message: String::new(),
                            output: String::new(),
                        };
                        for a in e.attributes().flatten() {
                            let v = a.unescape_value()?.to_string();
                            match a.key.as_ref() {
                                b"name" => c.name = v,
                                b"time" => c.seconds = v.trim().parse().unwrap_or(0.0),
                                _ => {}
                            }
                        }
                        if empty {
                            // <testcase .../> has no children: it passed.
                            out.push(c);
                        } else {
                            cur = Some(c);
                        }
                    }
                    n @ (b"failure" | b"skipped" | b"error") => {
                        if let Some(c) = cur.as_mut() {
                            c.result = if n == b"skipped" {
                                Res::Skip
                            } else {
                                Res::Fail
                            };
                            for a in e.attributes().flatten() {
                                if a.key.as_ref() == b"message" {
                                    c.message = a.unescape_value()?.trim().to_string();
                                }
                            }
                        }
                    }
                    n @ (b"system-out" | b"system-err" | b"kernel-log") if !empty => {
                        capture = Some(format!("--- {} ---\n", String::from_utf8_lossy(n)));
                    }
                    _ => {}
                }
            }
            Event::End(e) => match e.name().as_ref() {
                b"testcase" => out.extend(cur.take()),
                b"system-out" | b"system-err" | b"kernel-log" => {
                    if let (Some(s), Some(c)) = (capture.take(), cur.as_mut()) {
                        c.output.push_str(s.trim_end());
                        c.output.push('\n');
                    }
                }
                _ => {}
            },
            Event::CData(t) => {
                if let Some(s) = capture.as_mut() {
                    s.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::Text(t) => {
                if let Some(s) = capture.as_mut() {
                    s.push_str(&t.unescape()?);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

/// xfstests' marker before each test, written to /dev/kmsg.
static RUN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"run fstests (\S+) at ").unwrap());

/// Which test each kernel report belongs to. Each "run fstests T at"
/// marker starts the n-th run of T (n counts from 1, for `check -L`
/// reruns), named `T#n` in the returned splats' `test`; a report before
/// the first marker or after the end of check belongs to no test.
pub fn splats(console_log: &str) -> Vec<Splat> {
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    let mut marked = String::with_capacity(console_log.len());
    for l in console_log.lines() {
        if let Some(c) = RUN.captures(l) {
            let n = seen.entry(c[1].to_string()).or_default();
            *n += 1;
            marked.push_str(&format!("{}{}#{n}\n", marker::START, &c[1]));
        } else if l.contains(END_OF_CHECK) {
            // A start marker, not an end one: it also ends the text of
            // a report just before it.
            marked.push_str(&format!("{}-\n", marker::START));
        } else {
            marked.push_str(l);
            marked.push('\n');
        }
    }
    let mut v = console::splats(&marked);
    for s in &mut v {
        if s.test.as_deref() == Some("-") {
            s.test = None;
        }
    }
    v
}

/// The tests whose start marker is in the console, in order of first start.
pub fn started(console_log: &str) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for c in console_log.lines().filter_map(|l| RUN.captures(l)) {
        if !v.iter().any(|t| t == &c[1]) {
            v.push(c[1].to_string());
        }
    }
    v
}

/// Folds the console into the xunit cases: a kernel report fails the run
/// of the test it appeared in (a run that never finished gets a case of
/// its own); tests that were asked for and have no case are incomplete.
/// Returns the cases, ordered as `wanted`, and the reports that belong
/// to no test.
pub fn judge(
    wanted: &[String],
    mut cases: Vec<Case>,
    console_log: &str,
) -> (Vec<Case>, Vec<Splat>) {
    let started = started(console_log);
    let mut loose = Vec::new();
    for s in splats(console_log) {
        let Some((name, n)) = s.test.as_deref().and_then(|t| t.rsplit_once('#')) else {
            loose.push(s);
            continue;
        };
        let n: usize = n.parse().unwrap_or(1);
        let idx = cases
            .iter()
            .enumerate()
            .filter(|(_, c)| c.name == name)
            .map(|(i, _)| i)
            .nth(n - 1);
        let i = match idx {
            Some(i) => i,
            None => {
                cases.push(Case {
                    name: name.to_string(),
                    result: Res::Incomplete,
                    seconds: 0.0,
                    message: "did not finish".into(),
                    output: String::new(),
                });
                cases.len() - 1
            }
        };
        let c = &mut cases[i];
        if c.result != Res::Incomplete {
            c.result = Res::Fail;
        }
        let msg = format!("kernel report: {}", s.title);
        c.message = if c.message.is_empty() || c.message == "did not finish" {
            msg
        } else {
            format!("{msg}; {}", c.message)
        };
        c.output = format!("--- kernel report ---\n{}\n{}", s.text, c.output);
    }
    for w in wanted {
        if !cases.iter().any(|c| &c.name == w) {
            let message = if started.contains(w) {
                "did not finish (the guest died or was killed while it ran)"
            } else {
                "never ran (the guest died or was killed before it)"
            };
            cases.push(Case {
                name: w.clone(),
                result: Res::Incomplete,
                seconds: 0.0,
                message: message.into(),
                output: String::new(),
            });
        }
    }
    let pos = |n: &str| wanted.iter().position(|w| w == n).unwrap_or(usize::MAX);
    cases.sort_by_key(|c| pos(&c.name)); // stable: reruns keep their order
    (cases, loose)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real report from `zcsplice xfstests --mount-options "-o ro"
    // generic/029 generic/440 generic/249` on 6.12 under TCG (the read-only
    // scratch mount fails 029; no keyctl skips 440), its diff trimmed.
    const XUNIT: &str = include_str!("../../../tests/fixtures/xfstests/result.xml");

    #[test]
    fn parses_the_real_xunit_report() {
        let c = parse_xunit(XUNIT).unwrap();
        let got: Vec<(&str, Res, f64)> = c
            .iter()
            .map(|c| (c.name.as_str(), c.result, c.seconds))
            .collect();
        assert_eq!(
            got,
            [
                ("generic/029", Res::Fail, 56.0),
                ("generic/249", Res::Pass, 42.0),
                ("generic/440", Res::Skip, 46.0),
            ]
        );
        assert!(
            c[0].message.starts_with("- output mismatch (see /root/"),
            "{}",
            c[0].message
        );
        assert!(
            c[0].output.starts_with("--- system-err ---\n"),
            "{}",
            c[0].output
        );
        assert!(c[0]
            .output
            .contains("+/tmp/xfstests-scratch/testfile: Read-only file system"));
        assert!(c[1].message.is_empty() && c[1].output.is_empty());
        assert_eq!(c[2].message, "keyctl utility required, skipped this test");
    }

    #[test]
    fn rejects_broken_xml() {
        assert!(parse_xunit("<testsuite><testcase name=\"a\"></testsuite>").is_err());
    }

    fn case(name: &str, result: Res) -> Case {
        Case {
            name: name.into(),
            result,
            seconds: 1.0,
            message: String::new(),
            output: String::new(),
        }
    }

    const CONSOLE: &str = "\
[    5.0] zcsplice-guest: kernel 6.12.117 up, running xfstests
[   40.0] run fstests generic/001 at 2026-11-26 18:00:00
[   41.0] run fstests generic/002 at 2026-11-26 18:00:10
[   42.0] ------------[ cut here ]------------
[   42.1] WARNING: CPU: 1 PID: 9 at mm/filemap.c:100 f+0x1/0x2
[   42.2] ---[ end trace 0000000000000000 ]---
[   43.0] run fstests generic/002 at 2026-11-26 18:00:20
[   44.0] run fstests generic/003 at 2026-11-26 18:00:30
[   45.0] BUG: Bad page state in process fsx
[   46.0] zcsplice-guest: end check
[   47.0] BUG: KASAN: use-after-free in g+0x1
";

    #[test]
    fn kernel_reports_fail_the_run_they_appear_in() {
        let s = splats(CONSOLE);
        let tests: Vec<Option<&str>> = s.iter().map(|s| s.test.as_deref()).collect();
        assert_eq!(tests, [Some("generic/002#1"), Some("generic/003#1"), None]);
        let wanted: Vec<String> = ["generic/001", "generic/002", "generic/003", "generic/004"]
            .map(String::from)
            .into();
        // generic/002 failed once, its rerun passed; generic/003 never finished.
        let cases = vec![
            case("generic/001", Res::Pass),
            case("generic/002", Res::Pass),
            case("generic/002", Res::Pass),
        ];
        let (c, loose) = judge(&wanted, cases, CONSOLE);
        let got: Vec<(&str, Res)> = c.iter().map(|c| (c.name.as_str(), c.result)).collect();
        assert_eq!(
            got,
            [
                ("generic/001", Res::Pass),
                ("generic/002", Res::Fail),
                ("generic/002", Res::Pass),
                ("generic/003", Res::Incomplete),
                ("generic/004", Res::Incomplete),
            ]
        );
        assert!(
            c[1].message.starts_with("kernel report: WARNING: CPU: 1"),
            "{}",
            c[1].message
        );
        assert!(c[1].output.contains("end trace"));
        assert!(c[3].message.contains("Bad page state"), "{}", c[3].message);
        assert!(c[4].message.starts_with("never ran"), "{}", c[4].message);
        assert_eq!(loose.len(), 1);
        assert_eq!(loose[0].kind, "KASAN");
    }

    #[test]
    fn a_test_cut_short_without_a_report_is_incomplete() {
        let wanted = vec!["generic/001".to_string(), "generic/003".to_string()];
        let console = "run fstests generic/001 at x\nrun fstests generic/003 at y\n";
        let (c, loose) = judge(&wanted, vec![case("generic/001", Res::Pass)], console);
        assert!(loose.is_empty());
        assert_eq!(c[1].result, Res::Incomplete);
        assert!(
            c[1].message.starts_with("did not finish"),
            "{}",
            c[1].message
        );
    }
}
