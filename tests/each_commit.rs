//! `zcsplice build --each-commit` on a toy tree whose `make` stands in for
//! kbuild: it "compiles" src.c into the bzImage, fails where src.c says
//! `broken`, and warns where it says `warn`.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const MAKEFILE: &str = "\
O ?= .
x86_64_defconfig olddefconfig:
\t@touch $(O)/.config
bzImage:
\t@sh ./build.sh $(O)
";

const BUILD_SH: &str = "\
echo '  CC      src.o'
if grep -q broken src.c; then echo \"$PWD/src.c:2:1: error: broken here\"; exit 2; fi
if grep -q warn src.c; then echo \"$PWD/src.c:3:1: warning: warned here\"; fi
echo \"$PWD/other.c:1:1: warning: not this commit's\"
mkdir -p \"$1/arch/x86/boot\" && cp src.c \"$1/arch/x86/boot/bzImage\"
";

/// A tree with a base commit (the toy kbuild) and a branch `series`, its
/// base recorded as `zcsplice apply` records it, with one commit per
/// src.c content; the commit ids in order.
fn series_tree(dir: &Path, contents: &[&str]) -> (PathBuf, Vec<String>) {
    let t = dir.join("tree");
    std::fs::create_dir_all(t.join("scripts/kconfig")).unwrap();
    git(&t, &["init", "-q", "-b", "master"]);
    std::fs::write(t.join("Makefile"), MAKEFILE).unwrap();
    std::fs::write(t.join("build.sh"), BUILD_SH).unwrap();
    let merge = t.join("scripts/kconfig/merge_config.sh");
    std::fs::write(&merge, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&merge, std::fs::Permissions::from_mode(0o755)).unwrap();
    git(&t, &["add", "."]);
    git(&t, &["commit", "-q", "-m", "base"]);
    let base = git(&t, &["rev-parse", "HEAD"]);
    git(&t, &["checkout", "-q", "-b", "series"]);
    git(&t, &["config", "branch.series.zcspliceBase", &base]);
    let ids = contents
        .iter()
        .enumerate()
        .map(|(i, c)| {
            std::fs::write(t.join("src.c"), c).unwrap();
            git(&t, &["add", "src.c"]);
            git(&t, &["commit", "-q", "-m", &format!("patch {}", i + 1)]);
            git(&t, &["rev-parse", "HEAD"])
        })
        .collect();
    (t, ids)
}

fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn each_commit(tree: &Path, cache: &Path) -> (Option<i32>, serde_json::Value) {
    each_commit_with(tree, cache, &[])
}

/// `build --each-commit --json` with `extra` arguments.
fn each_commit_with(tree: &Path, cache: &Path, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut args = vec![
        "build",
        "--each-commit",
        "--json",
        "--tree",
        tree.to_str().unwrap(),
    ];
    args.extend(extra);
    let o = zcsplice(&args, &project(), cache);
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.code(), v)
}

#[test]
fn each_commit_is_built_in_order_and_the_first_broken_one_stops_the_run() {
    let d = tempfile::tempdir().unwrap();
    let (t, ids) = series_tree(d.path(), &["one\n", "two warn\n", "broken\n", "fixed\n"]);
    let before = repo_state(&t);
    let (code, v) = each_commit(&t, &d.path().join("cache"));
    assert_eq!(code, Some(125), "{v:#}");
    let steps = v["steps"].as_array().unwrap();
    let commits: Vec<&str> = steps
        .iter()
        .map(|s| s["commit"].as_str().unwrap())
        .collect();
    assert_eq!(commits, [&ids[0], &ids[1], &ids[2]]);
    let results: Vec<&str> = steps
        .iter()
        .map(|s| s["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["built", "built", "failed"]);
    assert_eq!(steps[0]["warnings"].as_array().unwrap().len(), 0);
    assert_eq!(
        steps[1]["warnings"][0].as_str().unwrap(),
        "src.c:3:1: warning: warned here"
    );
    assert_eq!(steps[2]["error"], "src.c:2:1: error: broken here");
    assert_eq!(v["not_built"], 1);
    // Built in the cache: the user's tree, its refs and HEAD are as they were.
    assert_eq!(repo_state(&t), before);
}

#[test]
fn a_series_that_builds_throughout_exits_0_and_needs_a_recorded_base() {
    let d = tempfile::tempdir().unwrap();
    let (t, ids) = series_tree(d.path(), &["one\n", "two\n"]);
    let cache = d.path().join("cache");
    let (code, v) = each_commit(&t, &cache);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["steps"].as_array().unwrap().len(), ids.len());
    assert_eq!(v["not_built"], 0);

    git(&t, &["checkout", "-q", "master"]);
    let o = zcsplice(
        &["build", "--each-commit", "--tree", t.to_str().unwrap()],
        &project(),
        &cache,
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nothing to build"), "{err}");
}

#[test]
fn a_run_again_builds_only_what_no_earlier_run_built() {
    let d = tempfile::tempdir().unwrap();
    let (t, _) = series_tree(d.path(), &["one\n", "two warn\n"]);
    let cache = d.path().join("cache");
    let field = |v: &serde_json::Value, f: &str| -> Vec<String> {
        v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s[f].to_string())
            .collect()
    };
    let (code, first) = each_commit(&t, &cache);
    assert_eq!(code, Some(0), "{first:#}");
    assert_eq!(field(&first, "recorded"), ["false", "false"]);

    // Not built again, with what they reported.
    let (code, again) = each_commit(&t, &cache);
    assert_eq!(code, Some(0), "{again:#}");
    assert_eq!(field(&again, "recorded"), ["true", "true"]);
    assert_eq!(field(&again, "warnings"), field(&first, "warnings"));

    // The series grew by a commit that does not build: only it is built,
    // and a failure is not recorded, so it is built again next time.
    std::fs::write(t.join("src.c"), "broken\n").unwrap();
    git(&t, &["commit", "-q", "-am", "patch 3"]);
    for _ in 0..2 {
        let (code, grown) = each_commit(&t, &cache);
        assert_eq!(code, Some(125), "{grown:#}");
        assert_eq!(field(&grown, "recorded"), ["true", "true", "false"]);
        assert_eq!(
            field(&grown, "result"),
            ["\"built\"", "\"built\"", "\"failed\""]
        );
    }

    // Another config is another kernel: nothing comes from the records.
    let frag = d.path().join("extra.config");
    std::fs::write(&frag, "CONFIG_EXTRA=y\n").unwrap();
    let (_, v) = each_commit_with(&t, &cache, &["--config-fragment", frag.to_str().unwrap()]);
    assert_eq!(field(&v, "recorded"), ["false", "false", "false"]);
}

/// Like kbuild, an object newer than its source is taken as built. With
/// ZCSPLICE_TOY_KILL set, the "compiler" writes half an object and then
/// kills make and itself, as the OOM killer or a CI limit would.
const INCREMENTAL_BUILD_SH: &str = "\
if [ ! \"$1/src.o\" -nt src.c ]; then
  echo '  CC      src.o'
  printf half > \"$1/src.o\"
  if [ -n \"$ZCSPLICE_TOY_KILL\" ]; then kill -KILL 0; fi
  cat src.c > \"$1/src.o\"
fi
mkdir -p \"$1/arch/x86/boot\" && cp \"$1/src.o\" \"$1/arch/x86/boot/bzImage\"
";

#[test]
fn a_build_after_make_was_killed_builds_again_what_make_was_writing() {
    let d = tempfile::tempdir().unwrap();
    let (t, _) = series_tree(d.path(), &["int whole;\n"]);
    std::fs::write(t.join("build.sh"), INCREMENTAL_BUILD_SH).unwrap();
    git(&t, &["commit", "-q", "-am", "incremental toy kbuild"]);
    let cache = d.path().join("cache");
    let ts = t.to_str().unwrap();

    let killed = zcsplice_cmd(&["build", "--tree", ts], &project(), &cache)
        .env("ZCSPLICE_TOY_KILL", "1")
        .output()
        .unwrap();
    assert!(!killed.status.success(), "make was killed, yet it built");

    let again = zcsplice(&["build", "--tree", ts], &project(), &cache);
    let image = ok(&again);
    assert_eq!(
        std::fs::read_to_string(image.trim()).unwrap(),
        "int whole;\n",
        "the half-written object was taken as built"
    );
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("make in") && stderr.contains("was killed"),
        "{stderr}"
    );
}
