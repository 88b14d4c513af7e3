//! The exit-code map, where it was wrong: usage errors are found before
//! any build or boot (exit 2), a bad template is a bad series definition
//! (exit 1, not the 125 that makes `git bisect run` skip every commit).
//! A toy tree and the fixture series: no kernel, no VM.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A committed toy tree; nothing of it builds.
fn toy(dir: &Path) -> PathBuf {
    toy_tree(dir, true)
}

/// Runs zcsplice with the real series; returns (code, stderr, seconds).
fn run(args: &[&str], cache: &Path) -> (Option<i32>, String, f64) {
    let start = Instant::now();
    let o = zcsplice(args, &project(), cache);
    let secs = start.elapsed().as_secs_f64();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).to_string(),
        secs,
    )
}

fn no_build_started(cache: &Path, err: &str) {
    assert!(!cache.join("build").exists(), "a build started: {err}");
    assert!(!err.contains("configuring"), "{err}");
}

#[test]
fn an_unknown_guest_test_is_a_usage_error_before_any_build() {
    let d = tempfile::tempdir().unwrap();
    let t = toy(d.path());
    let cache = d.path().join("cache");
    let (code, err, secs) = run(
        &["run", "--tree", t.to_str().unwrap(), "--test", "nosuch"],
        &cache,
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--test nosuch: no such guest test"), "{err}");
    assert!(err.contains("splice-integrity"), "lists the tests: {err}");
    assert!(secs < Duration::from_secs(1).as_secs_f64(), "{secs} s");
    no_build_started(&cache, &err);

    // The same for the matrix's --test.
    let (code, err, _) = run(
        &["matrix", "--tree", t.to_str().unwrap(), "--test", "nosuch"],
        &cache,
    );
    assert_eq!(code, Some(2), "{err}");
    no_build_started(&cache, &err);
}

#[test]
fn an_unknown_control_is_a_usage_error() {
    let d = tempfile::tempdir().unwrap();
    let t = toy(d.path());
    let cache = d.path().join("cache");
    let (code, err, _) = run(
        &[
            "controls",
            "--tree",
            t.to_str().unwrap(),
            "--fault",
            "nosuch",
        ],
        &cache,
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--fault nosuch: not in vm/controls.yaml (it has: "),
        "{err}"
    );
    no_build_started(&cache, &err);
}

#[test]
fn malformed_xfstests_options_are_a_usage_error_before_any_build() {
    let d = tempfile::tempdir().unwrap();
    let t = toy(d.path());
    let cache = d.path().join("cache");
    for flag in ["--mkfs-options", "--mount-options"] {
        let (code, err, _) = run(
            &["xfstests", "--tree", t.to_str().unwrap(), flag, "\"x"],
            &cache,
        );
        assert_eq!(code, Some(2), "{flag}: {err}");
        assert!(err.contains(&format!("{flag} \"\\\"x\"")), "{err}");
        no_build_started(&cache, &err);
    }
}

#[test]
fn a_template_error_is_a_bad_series_not_a_skip() {
    let d = tempfile::tempdir().unwrap();
    let t = toy(d.path());
    let series = d.path().join("series");
    let fixture = project().join("tests/fixtures/series");
    for sub in ["patches", "templates"] {
        std::fs::create_dir_all(series.join(sub)).unwrap();
        for e in std::fs::read_dir(fixture.join(sub)).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, series.join(sub).join(p.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(
        series.join("templates/helper.c.j2"),
        "static int {{ facts.nope }};\n",
    )
    .unwrap();
    for cmd in ["render", "apply"] {
        let mut args = vec![cmd, "--tree", t.to_str().unwrap()];
        let out = d.path().join("out");
        if cmd == "render" {
            args.extend(["--out", out.to_str().unwrap()]);
        }
        let o = zcsplice(&args, &series, &d.path().join("cache"));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {err}");
        assert!(
            err.contains("templates/helper.c.j2:1: undefined value"),
            "{err}"
        );
    }
}
