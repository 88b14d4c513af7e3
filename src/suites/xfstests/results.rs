//! What one boot of xfstests said: ./check's own output (check.out) and
//! the console, whose kernel reports fail the test that was running when
//! they appeared.
//!
//! check's output rather than its xunit report (`-R xunit`): check rebuilds
//! that report before every test with hundreds of shell subprocesses, which
//! under TCG cost over a minute per test, more than most tests take.

use crate::guest::console::marker::{self, END_OF_CHECK};
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
    /// check's own time for a pass; 0 otherwise (check prints none).
    pub seconds: f64,
    /// The failure or skip message.
    pub message: String,
    /// What check printed for the run: for a failure, the start of the
    /// diff against the golden output (results/ has all of it); and
    /// kernel reports from the console.
    pub output: String,
}

/// check's time for a pass, the last thing on the test's last line:
/// "generic/008 128s", or with a previous time "generic/008 120s ...  128s".
static PASSED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?:^|\s)(\d+)s$").unwrap());
/// check's time from an earlier run, before the outcome of this one.
static LAST_TIME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\d+s \.\.\.\s*").unwrap());

/// The finished runs in ./check's output. check prints each test's name,
/// then its outcome: its time for a pass (and only then), "[not run]" and
/// the reason for a skip, anything else for a failure (the reason, then
/// the start of the diff, indented). A run is finished once the next
/// name or check's summary follows it, or, for a pass, once its time is
/// printed; the run a dead guest cut short has no case.
pub fn parse_check_output(out: &str, wanted: &[String]) -> Vec<Case> {
    // (name, text after the name) per run, and whether a line ended it.
    let mut runs: Vec<(String, Vec<String>, bool)> = Vec::new();
    for line in out.lines() {
        let line = line.trim_end();
        let start = wanted.iter().find_map(|w| {
            let rest = line.strip_prefix(w.as_str())?;
            (rest.is_empty() || rest.starts_with([' ', '\t']))
                .then(|| (w.clone(), rest.trim().to_string()))
        });
        // `check -L`'s summary of a test's reruns ends a run, is none.
        let rerun_summary = start
            .as_ref()
            .is_some_and(|(_, rest)| rest.starts_with("aggregate results"));
        if rerun_summary || is_summary(line) {
            if let Some(last) = runs.last_mut() {
                last.2 = true;
            }
        } else if let Some((name, rest)) = start {
            if let Some(last) = runs.last_mut() {
                last.2 = true;
            }
            runs.push((name, vec![rest], false));
        } else if let Some(last) = runs.last_mut().filter(|r| !r.2) {
            last.1.push(line.to_string());
        }
    }
    runs.into_iter()
        .filter_map(|(name, lines, ended)| case_of(name, &lines, ended))
        .collect()
}

/// check's closing lines (and its header's, which come before any test).
fn is_summary(line: &str) -> bool {
    [
        "Ran:",
        "Not run:",
        "Failures:",
        "Failed ",
        "Passed all ",
        "Interrupted!",
    ]
    .iter()
    .any(|p| line.starts_with(p))
}

fn case_of(name: String, lines: &[String], ended: bool) -> Option<Case> {
    let text = lines.join("\n").trim().to_string();
    let last = lines.iter().rev().find(|l| !l.trim().is_empty());
    // A diff line ("    +...") is never check's time.
    let time = last
        .filter(|l| !l.starts_with("    "))
        .and_then(|l| PASSED.captures(l.trim()))
        .and_then(|c| c[1].parse::<f64>().ok());
    let first = LAST_TIME.replace(lines.first().map_or("", |l| l.as_str()), "");
    let (result, seconds, message, output) = if let Some(s) = first.strip_prefix("[not run]") {
        (Res::Skip, 0.0, s.trim().to_string(), String::new())
    } else if let Some(secs) = time {
        (Res::Pass, secs, String::new(), String::new())
    } else if ended {
        (Res::Fail, 0.0, first.trim().to_string(), text)
    } else {
        return None;
    };
    Some(Case {
        name,
        result,
        seconds,
        message,
        output,
    })
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

/// How each counter of `before` grew by `after` (both `name value`
/// lines, as the guest copies them out of /proc/vmstat). A counter
/// missing from either side, or a line that is not a name and a number,
/// is left out.
pub fn counter_growth(before: &str, after: &str) -> BTreeMap<String, i64> {
    fn parse(s: &str) -> BTreeMap<&str, i64> {
        s.lines()
            .filter_map(|l| {
                let (name, value) = l.split_once(' ')?;
                Some((name, value.trim().parse().ok()?))
            })
            .collect()
    }
    let before = parse(before);
    parse(after)
        .into_iter()
        .filter_map(|(name, a)| Some((name.to_string(), a - before.get(name)?)))
        .collect()
}

/// Folds the console into check's cases: a kernel report fails the run
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

    #[test]
    fn counter_growth_is_after_minus_before_of_counters_on_both_sides() {
        let before = "splice_move 10\nsplice_move_fallback 2\nsplice_move_gift 0\n";
        let after = "splice_move 14\nsplice_move_fallback 2\nsplice_move_replace 3\nbad\n";
        let g = counter_growth(before, after);
        assert_eq!(
            g.into_iter().collect::<Vec<_>>(),
            [
                ("splice_move".into(), 4),
                ("splice_move_fallback".into(), 0)
            ]
        );
        // A kernel without the counters: the guest's files are empty.
        assert!(counter_growth("", "").is_empty());
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// (name, result, seconds) of each case.
    fn outcomes(c: &[Case]) -> Vec<(&str, Res, f64)> {
        c.iter()
            .map(|c| (c.name.as_str(), c.result, c.seconds))
            .collect()
    }

    #[test]
    fn reads_passes_from_a_real_check_output() {
        // The start of a real smoke run on 6.12 under TCG, cut short
        // while generic/249 ran.
        let out = "\
FSTYP         -- ext4
PLATFORM      -- Linux/x86_64 virtme-ng 6.12.118-g141be6b71a11 #7 SMP PREEMPT_DYNAMIC 2026-01-01
MKFS_OPTIONS  -- -F /dev/vdb
MOUNT_OPTIONS -- -o acl,user_xattr /dev/vdb /tmp/xfstests-scratch

generic/008         128s
generic/012         116s
generic/249        ";
        let c = parse_check_output(out, &names(&["generic/008", "generic/012", "generic/249"]));
        let got = outcomes(&c);
        assert_eq!(
            got,
            [
                ("generic/008", Res::Pass, 128.0),
                ("generic/012", Res::Pass, 116.0)
            ]
        );
    }

    #[test]
    fn reads_failures_skips_and_reruns() {
        let out = "\
generic/029        56s ... - output mismatch (see /r/results/generic/029.out.bad)
    --- tests/generic/029.out	2026-11-26 17:53:05.303036583 +0000
    +++ /r/results/generic/029.out.bad	2026-11-26 19:00:09.000000000 +0000
    @@ -1,3 +1,2 @@
     QA output created by 029
    -wrote 5120/5120 bytes at offset 0
    +/tmp/xfstests-scratch/testfile: Read-only file system 10s
generic/440        [not run] keyctl utility required, skipped this test
generic/249        40s ...  42s
generic/249        [failed, exit status 1]- output mismatch (see /r/results/generic/249.out.bad)
generic/249        42s ...  43s
generic/249 aggregate results across 2 runs: pass=1 (50.0%), fail=1 (50.0%)
generic/300        _check_dmesg: something found (see /r/results/generic/300.dmesg)
Ran: generic/029 generic/440 generic/249 generic/300
Not run: generic/440
Failures: generic/029 generic/249 generic/300
Failed 3 of 4 tests
";
        let wanted = names(&["generic/029", "generic/440", "generic/249", "generic/300"]);
        let c = parse_check_output(out, &wanted);
        let got = outcomes(&c);
        assert_eq!(
            got,
            [
                ("generic/029", Res::Fail, 0.0),
                ("generic/440", Res::Skip, 0.0),
                ("generic/249", Res::Pass, 42.0),
                ("generic/249", Res::Fail, 0.0),
                ("generic/249", Res::Pass, 43.0),
                ("generic/300", Res::Fail, 0.0),
            ]
        );
        // A diff line that ends like a time is still a failure's diff.
        assert_eq!(
            c[0].message,
            "- output mismatch (see /r/results/generic/029.out.bad)"
        );
        assert!(c[0].output.contains("+/tmp/xfstests-scratch/testfile"));
        assert_eq!(c[1].message, "keyctl utility required, skipped this test");
        assert!(c[2].message.is_empty() && c[2].output.is_empty());
        assert!(c[5].message.starts_with("_check_dmesg: something found"));
    }

    #[test]
    fn reads_a_real_failure_and_skip() {
        // check.out of a 6.1 guest under TCG, scratch mounted `-o ro`:
        // check printed no time for the failure (its first run).
        let out = include_str!("../../../tests/fixtures/xfstests/check-ro-6.1.out");
        let wanted = names(&["generic/029", "generic/249", "generic/440"]);
        let c = parse_check_output(out, &wanted);
        let got = outcomes(&c);
        assert_eq!(
            got,
            [
                ("generic/029", Res::Fail, 0.0),
                ("generic/249", Res::Pass, 37.0),
                ("generic/440", Res::Skip, 0.0),
            ]
        );
        assert!(c[0].message.starts_with("- output mismatch (see "));
        assert!(c[0].output.contains("Read-only file system"));
        assert!(c[0].output.contains("to see the entire diff"));
        assert_eq!(c[2].message, "Require symlinks support");
    }

    #[test]
    fn a_failure_is_known_only_once_something_follows_it() {
        let wanted = names(&["generic/029"]);
        let out = "generic/029        - output mismatch (see /r/029.out.bad)\n    -a\n";
        assert!(parse_check_output(out, &wanted).is_empty());
        let done = format!("{out}Ran: generic/029\nFailures: generic/029\n");
        assert_eq!(parse_check_output(&done, &wanted)[0].result, Res::Fail);
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
