//! The bisect engine on a toy history with real git bisect: each commit
//! writes its number into `n`; the testers judge by that number.

use super::*;

/// A repository with commits 0..count, commit i writing "i" into `n`;
/// their ids in order.
fn history(d: &Path, count: usize) -> Vec<String> {
    let g = |args: &[&str]| git(d, args, true).unwrap();
    g(&["init", "-q"]);
    g(&["config", "user.name", "t"]);
    g(&["config", "user.email", "t@example.org"]);
    (0..count)
        .map(|i| {
            std::fs::write(d.join("n"), i.to_string()).unwrap();
            g(&["add", "n"]);
            g(&["commit", "-q", "-m", &format!("commit {i}")]);
            g(&["rev-parse", "HEAD"]).trim().to_string()
        })
        .collect()
}

/// The number commit `c` wrote.
fn number(d: &Path, c: &str) -> usize {
    git(d, &["show", &format!("{c}:n")], true)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn step(c: &str, verdict: Verdict) -> Step {
    let mut s = Step::new(c, "");
    s.verdict = verdict;
    s.detail = format!("said {}", verdict.as_str());
    s
}

#[test]
fn the_first_bad_commit_is_found_with_both_ends_tested_first() {
    let d = tempfile::tempdir().unwrap();
    let ids = history(d.path(), 16);
    let r = bisect(d.path(), &ids[0], &ids[15], |c, _| {
        step(
            c,
            if number(d.path(), c) >= 11 {
                Verdict::Bad
            } else {
                Verdict::Good
            },
        )
    })
    .unwrap();
    match &r.found {
        Found::FirstBad { commit, subject } => {
            assert_eq!(commit, &ids[11]);
            assert_eq!(subject, "commit 11");
        }
        f => panic!("{f:?}"),
    }
    assert_eq!(r.exit_code(), exit::SUCCESS);
    assert_eq!(r.steps[0].role, Role::BadEnd);
    assert_eq!(r.steps[1].role, Role::GoodEnd);
    assert!(r.steps.len() <= 2 + 4, "{}", r.steps.len());
    assert_eq!(r.first_bad().unwrap().commit, ids[11]);
    assert!(
        r.log.contains("# first bad commit: [") && r.log.contains(&ids[11]),
        "{}",
        r.log
    );
    // --no-checkout: the work tree is as it was.
    assert_eq!(std::fs::read_to_string(d.path().join("n")).unwrap(), "15");
}

#[test]
fn untestable_commits_are_skipped_and_the_bisect_still_converges() {
    let d = tempfile::tempdir().unwrap();
    let ids = history(d.path(), 16);
    let r = bisect(d.path(), &ids[0], &ids[15], |c, _| {
        let n = number(d.path(), c);
        step(
            c,
            match n {
                7 | 8 => Verdict::Skip,
                n if n >= 10 => Verdict::Bad,
                _ => Verdict::Good,
            },
        )
    })
    .unwrap();
    assert!(
        matches!(&r.found, Found::FirstBad { commit, .. } if commit == &ids[10]),
        "{r:?}"
    );
}

#[test]
fn only_skipped_commits_left_is_exit_125_naming_them() {
    let d = tempfile::tempdir().unwrap();
    let ids = history(d.path(), 8);
    let r = bisect(d.path(), &ids[0], &ids[7], |c, _| {
        let n = number(d.path(), c);
        step(
            c,
            match n {
                0 => Verdict::Good,
                7 => Verdict::Bad,
                _ => Verdict::Skip,
            },
        )
    })
    .unwrap();
    match &r.found {
        Found::AllSkipped { candidates } => {
            assert!(candidates.contains(&ids[7]), "{candidates:?}");
            assert!(candidates.contains(&ids[3]), "{candidates:?}");
        }
        f => panic!("{f:?}"),
    }
    assert_eq!(r.exit_code(), exit::SKIP);
}

#[test]
fn a_harness_failure_stops_the_bisect_with_its_code_and_leaves_the_log() {
    let d = tempfile::tempdir().unwrap();
    let ids = history(d.path(), 16);
    let mut tested = 0;
    let r = bisect(d.path(), &ids[0], &ids[15], |c, _| {
        tested += 1;
        if tested == 3 {
            return step(c, Verdict::Stop(exit::INFRA));
        }
        step(
            c,
            if number(d.path(), c) >= 5 {
                Verdict::Bad
            } else {
                Verdict::Good
            },
        )
    })
    .unwrap();
    assert!(matches!(r.found, Found::Stopped { code: 128, .. }), "{r:?}");
    assert_eq!(r.exit_code(), exit::INFRA);
    assert_eq!(r.steps.len(), 3);
    assert!(r.log.contains("git bisect start"), "{}", r.log);
    assert!(!r.log.contains("first bad commit"), "{}", r.log);
}

#[test]
fn ends_that_do_not_bracket_a_failure_say_so() {
    let d = tempfile::tempdir().unwrap();
    let ids = history(d.path(), 4);
    let r = bisect(d.path(), &ids[0], &ids[3], |c, _| step(c, Verdict::Good)).unwrap();
    assert!(matches!(r.found, Found::NoBadCommit));
    assert_eq!((r.steps.len(), r.exit_code()), (1, exit::FAILURE));
    let r = bisect(d.path(), &ids[0], &ids[3], |c, _| step(c, Verdict::Bad)).unwrap();
    assert!(matches!(r.found, Found::GoodEndFails));
    assert_eq!((r.steps.len(), r.exit_code()), (2, exit::FAILURE));
    let r = bisect(d.path(), &ids[0], &ids[3], |c, _| step(c, Verdict::Skip)).unwrap();
    assert_eq!(r.exit_code(), exit::SKIP);
}

#[test]
fn adjacent_ends_need_no_candidate() {
    let d = tempfile::tempdir().unwrap();
    let ids = history(d.path(), 2);
    let r = bisect(d.path(), &ids[0], &ids[1], |c, _| {
        step(
            c,
            if c == ids[1] {
                Verdict::Bad
            } else {
                Verdict::Good
            },
        )
    })
    .unwrap();
    assert!(matches!(&r.found, Found::FirstBad { commit, .. } if commit == &ids[1]));
    assert_eq!(r.steps.len(), 2);
}

#[test]
fn a_step_is_bad_only_when_every_retry_fails() {
    let mut runs = 0;
    let s = with_retries(2, || {
        runs += 1;
        step(
            "c",
            if runs == 2 {
                Verdict::Good
            } else {
                Verdict::Bad
            },
        )
    });
    assert_eq!((s.verdict, s.attempts), (Verdict::Good, 2));
    assert!(
        s.detail.contains("passed on run 2 (run 1: said bad)"),
        "{}",
        s.detail
    );
    let s = with_retries(2, || step("c", Verdict::Bad));
    assert_eq!((s.verdict, s.attempts), (Verdict::Bad, 3));
    let mut runs = 0;
    let s = with_retries(5, || {
        runs += 1;
        step("c", Verdict::Good)
    });
    assert_eq!((s.verdict, s.attempts, runs), (Verdict::Good, 1, 1));
}

#[test]
fn the_table_and_junit_show_every_step() {
    let d = tempfile::tempdir().unwrap();
    let ids = history(d.path(), 8);
    let r = bisect(d.path(), &ids[0], &ids[7], |c, _| {
        let mut s = step(
            c,
            if number(d.path(), c) >= 6 {
                Verdict::Bad
            } else {
                Verdict::Good
            },
        );
        s.subject = subject(d.path(), c);
        s
    })
    .unwrap();
    let t = table(&r);
    assert!(t.lines().next().unwrap().starts_with("#  COMMIT"), "{t}");
    assert!(
        t.contains("commit 7") && t.contains("bad end") && t.contains("good end"),
        "{t}"
    );
    assert_eq!(t.lines().count(), 1 + r.steps.len());
    let x = junit(&r).unwrap();
    assert!(x.contains(&format!("tests=\"{}\"", r.steps.len())), "{x}");
    assert!(summary(&r).starts_with(&format!("first bad commit: {}", ids[6])));
}

#[test]
fn a_stage_that_errs_fails_the_commit_only_where_the_commit_is_skipped() {
    assert_eq!(Stage::errored(1.0, exit::SKIP).status, "fail");
    assert_eq!(Stage::errored(1.0, exit::INFRA).status, "error");
    assert_eq!(Stage::errored(1.0, exit::TIMEOUT).status, "error");
}
