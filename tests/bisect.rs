//! `zcsplice bisect` end to end on a toy tree, up to the build (a toy tree
//! builds no kernel, so every step is untestable): the user's tree, its
//! branches and its own bisect are untouched, the bisect runs in the
//! cache's clone, and the exit codes are git bisect run's. The kernel
//! bisects (a first bad commit found by a guest test) are in the kernel
//! tier. No root, network or kernel here.

mod common;
use common::*;
use std::path::Path;

/// The toy tree with `n` more commits that leave the series' anchors be.
fn toy_history(d: &Path, n: usize) -> std::path::PathBuf {
    let t = toy_tree(d, true);
    git(&t, &["config", "user.name", "t"]);
    git(&t, &["config", "user.email", "t@example.org"]);
    for i in 1..=n {
        std::fs::write(t.join("mm/readahead.c"), format!("/* {i} */\n")).unwrap();
        git(&t, &["add", "-A"]);
        git(&t, &["commit", "-q", "-m", &format!("mm: change {i}")]);
    }
    t
}

/// The fixture series with the project's kernel config fragments, so that
/// a build gets as far as configuring the toy tree (which fails: no
/// kernel there).
fn series_with_configs(d: &Path) -> std::path::PathBuf {
    let s = d.join("series");
    copy_dir(&fixture_series(), &s);
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("vm/config"),
        &s.join("vm/config"),
    );
    s
}

#[test]
fn a_bisect_never_touches_the_users_tree_and_exits_125_when_nothing_builds() {
    let d = tempfile::tempdir().unwrap();
    let series = series_with_configs(d.path());
    let t = toy_history(d.path(), 4);
    let ts = t.to_str().unwrap();
    // The user is in the middle of a bisect of their own.
    git(&t, &["bisect", "start", "HEAD", "HEAD~3"]);
    let before = repo_state(&t);
    let cache = d.path().join("cache");
    let o = zcsplice(
        &[
            "bisect", "--tree", ts, "--good", "master~4", "--bad", "master",
        ],
        &series,
        &cache,
    );
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(125), "{out}\n{err}");
    assert!(out.contains("x86_64_defcon"), "{out}");
    assert!(out.contains("bad end") && out.contains("skip"), "{out}");
    assert!(
        out.contains("only skipped commits are left; the first bad commit is one of: "),
        "{out}"
    );
    assert_eq!(repo_state(&t), before, "the user's tree changed");
    assert!(git(&t, &["bisect", "log"]).contains("git bisect start 'HEAD' 'HEAD~3'"));
    // The clone has the bisect branch; the user's tree never had it.
    let clone = cache.join("bisect/linux");
    assert!(git(&clone, &["branch", "--list", "zcsplice-bisect"]).contains("zcsplice-bisect"));
    assert!(git(&t, &["branch", "--list", "zcsplice-bisect"]).is_empty());
    let runs: Vec<_> = std::fs::read_dir(cache.join("runs/bisect"))
        .unwrap()
        .collect();
    assert_eq!(runs.len(), 1);
    let dir = runs[0].as_ref().unwrap().path();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["found"]["kind"], "all-skipped", "{report:#}");
    assert_eq!(
        report["steps"][0]["prepare"]["status"], "pass",
        "{report:#}"
    );
    assert_eq!(report["steps"][0]["build"]["status"], "fail", "{report:#}");
    // steps.json, written after each step, survives a bisect stopped by a
    // signal; at the end it holds every step of the report.
    let steps: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("steps.json")).unwrap()).unwrap();
    assert_eq!(steps, report["steps"], "{steps:#}");
}

/// A harness failure (here: the series has no kernel config to build
/// with) stops the bisect at its first step with exit 128, naming it,
/// instead of skipping every commit; the user's tree is as it was.
#[test]
fn a_harness_failure_stops_the_bisect_with_128() {
    let d = tempfile::tempdir().unwrap();
    let t = toy_history(d.path(), 4);
    git(&t, &["checkout", "-q", "-b", "work", "master~1"]);
    let before = repo_state(&t);
    let o = zcsplice(
        &[
            "bisect",
            "--tree",
            t.to_str().unwrap(),
            "--good",
            "master~4",
            "--bad",
            "master",
        ],
        &fixture_series(),
        &d.path().join("cache"),
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(128), "{out}");
    assert!(out.contains("bisect stopped (exit 128): "), "{out}");
    assert!(out.contains("vm/config/base.config"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.contains("bad end")).count(),
        1,
        "{out}"
    );
    assert_eq!(repo_state(&t), before, "the user's tree changed");
}

#[test]
fn a_commit_the_tree_lacks_is_a_usage_error() {
    let d = tempfile::tempdir().unwrap();
    let t = toy_history(d.path(), 1);
    let o = zcsplice(
        &[
            "bisect",
            "--tree",
            t.to_str().unwrap(),
            "--good",
            "v0.0-none",
            "--bad",
            "master",
        ],
        &fixture_series(),
        &d.path().join("cache"),
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("v0.0-none: no such commit in "), "{err}");
}

/// `--in-series`: the series is applied on the base in the clone and its
/// last patch, not the testing patch after it, is the bad end; the
/// user's tree is untouched. The testing patches go on top only when a
/// fault needs their knob: one that does not apply here stops only the
/// bisects that need it.
#[test]
fn the_in_series_bisect_starts_from_the_last_patch_of_the_series() {
    let d = tempfile::tempdir().unwrap();
    let series = series_with_configs(d.path());
    std::fs::write(
        series.join("patches/0099-testing.yaml"),
        "subject: \"[DO NOT MERGE] toy: a testing knob\"\nbody: |\n  Testing only.\n\
         edits:\n  - file: mm/readahead.c\n    at: after\n    anchor: |\n      \
         not in this tree\n    text: |\n      int knob;\n",
    )
    .unwrap();
    let manifest = series.join("patches/series.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        format!("{text}testing:\n  - 0099-testing.yaml\n"),
    )
    .unwrap();
    let t = toy_history(d.path(), 2);
    let before = repo_state(&t);
    let ts = t.to_str().unwrap();
    let args = [
        "bisect",
        "--tree",
        ts,
        "--in-series",
        "--base",
        "master~2",
        "--json",
    ];
    let o = zcsplice(&args, &series, &d.path().join("cache"));
    assert_eq!(o.status.code(), Some(125));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        r["steps"][0]["subject"], "mm: use toy_helper() in generic_perform_write (folio API)",
        "{r:#}"
    );
    assert_eq!(r["steps"][0]["role"], "bad-end", "{r:#}");
    // The range ends at the series' last patch; no testing patch was needed.
    let clone = d.path().join("cache/bisect/linux");
    assert_eq!(
        git(
            &clone,
            &["log", "-1", "--format=%s", "zcsplice-bisect-series"]
        ),
        "mm: use toy_helper() in generic_perform_write (folio API)"
    );
    // A fault needs the testing patch, which does not apply here.
    let with_fault: Vec<&str> = args.iter().copied().chain(["--fault", "x"]).collect();
    let o = zcsplice(&with_fault, &series, &d.path().join("cache"));
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("patches/0099-testing.yaml:5: patch \"[DO NOT MERGE] toy"),
        "{err}"
    );
    assert_eq!(repo_state(&t), before, "the user's tree changed");
}

/// An xfstests selection is checked before anything is cloned or built:
/// no xfstests says how to get one (exit 128), a test it lacks is a
/// usage error (exit 2).
#[test]
fn an_xfstests_selection_is_checked_before_any_build() {
    let d = tempfile::tempdir().unwrap();
    let t = toy_history(d.path(), 1);
    let cache = d.path().join("cache");
    let run = |xfstests: &Path| {
        zcsplice(
            &[
                "bisect",
                "--tree",
                t.to_str().unwrap(),
                "--good",
                "master~1",
                "--bad",
                "master",
                "--xfstests-test",
                "generic/999",
                "--xfstests",
                xfstests.to_str().unwrap(),
            ],
            &fixture_series(),
            &cache,
        )
    };
    let o = run(&d.path().join("none"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(128), "{err}");
    assert!(err.contains("zcsplice does not build xfstests"), "{err}");
    assert!(!cache.join("bisect").exists());
    // xfstests is found (a fake install with the one test the fake has)
    // but not the test asked for.
    let x = d.path().join("xfstests");
    for dir in ["tests/generic", "common", "ltp", "src"] {
        std::fs::create_dir_all(x.join(dir)).unwrap();
    }
    for f in ["check", "ltp/fsstress", "tests/generic/group.list"] {
        std::fs::write(x.join(f), "").unwrap();
    }
    std::fs::write(x.join("tests/generic/001"), "").unwrap();
    let o = run(&x);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!cache.join("bisect").exists());
    assert!(
        o.status.code() == Some(2) && err.contains("generic/999: no such test in "),
        "{:?} {err}",
        o.status.code()
    );
}
