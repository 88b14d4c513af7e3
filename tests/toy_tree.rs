//! The harness end to end on a toy tree and a fixture series: render, apply,
//! `git am` equivalence, idempotence, refusal of a dirty tree, atomicity and
//! the errors a broken series gives.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn copy_series(dir: &Path) -> PathBuf {
    let dst = dir.join("series");
    for sub in ["patches", "templates"] {
        std::fs::create_dir_all(dst.join(sub)).unwrap();
        for e in std::fs::read_dir(fixture_series().join(sub)).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dst.join(sub).join(p.file_name().unwrap())).unwrap();
        }
    }
    dst
}

#[test]
fn probe_reports_facts_with_evidence() {
    let d = tempfile::tempdir().unwrap();
    let t = toy_tree(d.path(), true);
    let out = ok(&zcsplice(
        &["probe", "--json", "--tree", t.to_str().unwrap()],
        &fixture_series(),
        d.path(),
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], "6.12.3");
    assert_eq!(v["facts"]["write_begin_folio"]["value"], true);
    let ev = v["facts"]["write_begin_folio"]["evidence"]
        .as_str()
        .unwrap();
    assert!(
        ev.starts_with("include/linux/fs.h:2: (*write_begin)(struct file *,"),
        "{ev}"
    );
    assert_eq!(v["facts"]["iter_pipe"]["value"], false);
    assert_eq!(v["facts"]["no_such_thing"]["value"], true);
}

#[test]
fn render_apply_and_git_am_agree() {
    let d = tempfile::tempdir().unwrap();
    let t = toy_tree(d.path(), true);
    let ts = t.to_str().unwrap();
    let out = d.path().join("out");
    let base = git(&t, &["rev-parse", "HEAD"]);
    let before = repo_state(&t);
    ok(&zcsplice(
        &["render", "--tree", ts, "--out", out.to_str().unwrap()],
        &fixture_series(),
        d.path(),
    ));
    // Render only writes files: the repository is untouched.
    assert_eq!(repo_state(&t), before);

    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(
        names,
        [
            "0000-cover-letter.patch",
            "0001-mm-add-toy_helper.patch",
            "0002-mm-use-toy_helper-in-generic_perform_write-folio-API.patch",
            "probe.json"
        ]
    );
    let p1 = std::fs::read_to_string(out.join("0001-mm-add-toy_helper.patch")).unwrap();
    assert!(
        p1.contains("Subject: [PATCH 1/2] mm: add toy_helper()\n"),
        "{p1}"
    );
    assert!(
        p1.contains("It takes a folio.\n\nSigned-off-by: Test Author"),
        "{p1}"
    );
    assert!(
        p1.contains("+static int toy_helper(struct folio *folio)\n"),
        "{p1}"
    );
    assert!(p1.contains("\n---\n mm/filemap.c | 5 +++++\n"), "{p1}");
    let cover = std::fs::read_to_string(out.join("0000-cover-letter.patch")).unwrap();
    assert!(
        cover.contains("Subject: [PATCH 0/2] toy: a fixture series\n"),
        "{cover}"
    );
    assert!(cover
        .contains("Left out: \"mm: only for the page API\" (->write_begin already takes a folio)"));
    assert!(cover.contains(&format!("base-commit: {base}\n")), "{cover}");
    // Numbered as the patches go out: the third definition is patch 2 here.
    assert!(
        cover.contains("The helper is used in patch 2.\n"),
        "{cover}"
    );

    let applied = ok(&zcsplice(
        &["apply", "--tree", ts],
        &fixture_series(),
        d.path(),
    ));
    assert!(
        applied.contains("zcsplice/6.12.3: 2 patches applied"),
        "{applied}"
    );
    assert_eq!(
        git(&t, &["symbolic-ref", "HEAD"]),
        "refs/heads/zcsplice/6.12.3"
    );
    // The base is recorded where it travels with the branch, too.
    assert_eq!(
        git(&t, &["rev-parse", "refs/zcsplice/base/zcsplice/6.12.3"]),
        base
    );
    // A clone that fetched the branch and its base ref, and has no
    // zcsplice config: the base is found, so render gives the same series.
    let clone = d.path().join("clone");
    // (The clone checks out the source's HEAD: zcsplice/6.12.3.)
    git(d.path(), &["clone", "-q", ts, clone.to_str().unwrap()]);
    git(
        &clone,
        &["fetch", "-q", "origin", "refs/zcsplice/*:refs/zcsplice/*"],
    );
    assert_eq!(
        git(&clone, &["symbolic-ref", "HEAD"]),
        "refs/heads/zcsplice/6.12.3"
    );
    let again = d.path().join("out-clone");
    ok(&zcsplice(
        &[
            "render",
            "--tree",
            clone.to_str().unwrap(),
            "--out",
            again.to_str().unwrap(),
        ],
        &fixture_series(),
        d.path(),
    ));
    let cover2 = std::fs::read_to_string(again.join("0000-cover-letter.patch")).unwrap();
    assert!(
        cover2.contains(&format!("base-commit: {base}\n")),
        "{cover2}"
    );
    assert_eq!(
        git(&t, &["rev-list", "--count", &format!("{base}..HEAD")]),
        "2"
    );
    assert_eq!(
        git(&t, &["log", "-1", "--format=%an <%ae> %aI", "HEAD"]),
        "Test Author <test@example.org> 2026-11-26T12:00:00Z"
    );
    assert_eq!(git(&t, &["status", "--porcelain"]), "");
    let filemap = std::fs::read_to_string(t.join("mm/filemap.c")).unwrap();
    assert!(filemap.contains("\treturn toy_helper();\n"));

    // git am of the rendered files gives the very same tree, and the
    // same commit messages (the emails' subjects are rendered too).
    let applied_tree = git(&t, &["rev-parse", "HEAD^{tree}"]);
    let am = git_am(&t, &base, &patch_files(&out), d.path());
    assert_eq!(am.tree, applied_tree);
    assert_eq!(am.messages, messages(&t, &format!("{base}..HEAD")));

    // Again, from the branch: its recorded base is used, nothing changes.
    let state = repo_state(&t);
    let again = ok(&zcsplice(
        &["apply", "--tree", ts],
        &fixture_series(),
        d.path(),
    ));
    assert!(again.contains("is up to date"), "{again}");
    assert_eq!(repo_state(&t), state);
}

/// The text under an email's "---": the diffstat and the summary lines.
fn stat_block(email: &str) -> &str {
    let start = email.find("\n---\n").expect("a --- line") + 5;
    let len = email[start..].find("\ndiff --git ").expect("a diff");
    &email[start..=start + len]
}

#[test]
fn diffstats_match_git_format_patch() {
    let d = tempfile::tempdir().unwrap();
    let t = toy_tree(d.path(), true);
    let ts = t.to_str().unwrap();
    let s = copy_series(d.path());
    // More changes than the 72-column graph has room for (so it is scaled),
    // beside an insertion-only file, a one-line change and a new file whose
    // name is cut to "...".
    let many: String = (0..80).map(|i| format!("int toy_{i};\n")).collect();
    std::fs::write(s.join("templates/many.c.j2"), many).unwrap();
    std::fs::write(
        s.join("patches/0004-many.yaml"),
        "subject: \"mm: add many toys\"\n\
         body: Many.\n\
         edits:\n\
         \x20 - file: mm/filemap.c\n\
         \x20   at: before\n\
         \x20   anchor: \"int generic_perform_write(void)\\n\"\n\
         \x20   fragment: many.c.j2\n\
         \x20 - file: include/linux/uio.h\n\
         \x20   at: after\n\
         \x20   anchor: \"\\tITER_UBUF,\\n\"\n\
         \x20   text: \"\\tITER_TOY,\\n\"\n\
         \x20 - file: include/linux/fs.h\n\
         \x20   at: replace\n\
         \x20   anchor: \"\\t\\t\\t\\tloff_t pos, unsigned len,\\n\"\n\
         \x20   text: \"\\t\\t\\t\\tloff_t pos, size_t len,\\n\"\n\
         \x20 - file: Documentation/filesystems/zero-copy-splice/donor-folio-insertion.rst\n\
         \x20   at: create\n\
         \x20   text: \"Donor folios\\n============\\n\"\n",
    )
    .unwrap();
    let manifest = s.join("patches/series.yaml");
    let mut m = std::fs::read_to_string(&manifest).unwrap();
    m.push_str("  - 0004-many.yaml\n");
    std::fs::write(&manifest, m).unwrap();

    let out = d.path().join("out");
    let base = git(&t, &["rev-parse", "HEAD"]);
    ok(&zcsplice(
        &["render", "--tree", ts, "--out", out.to_str().unwrap()],
        &s,
        d.path(),
    ));
    ok(&zcsplice(&["apply", "--tree", ts], &s, d.path()));
    let commits = git(&t, &["rev-list", "--reverse", &format!("{base}..HEAD")]);
    let commits: Vec<&str> = commits.lines().collect();
    let patches = patch_files(&out);
    assert_eq!(patches.len(), commits.len());
    for (p, c) in patches.iter().zip(&commits) {
        let ours = std::fs::read_to_string(p).unwrap();
        let theirs = git(&t, &["format-patch", "-1", "--stdout", c]);
        assert_eq!(stat_block(&ours), stat_block(&theirs), "{}", p.display());
    }
    // The case above is the one meant: scaled graph, cut name, create line.
    let last = std::fs::read_to_string(patches.last().unwrap()).unwrap();
    let last = stat_block(&last);
    assert!(last.contains(" .../donor-folio-insertion.rst"), "{last}");
    assert!(
        last.contains(" | 80 +++") && !last.contains("+++++ | "),
        "{last}"
    );
    assert!(last.contains("include/linux/uio.h"), "{last}");
    assert!(
        last.contains(" create mode 100644 Documentation/"),
        "{last}"
    );

    // The cover letter's is the whole series' (format-patch --cover-letter
    // prints the same `--stat=72 --summary`).
    let cover = std::fs::read_to_string(out.join("0000-cover-letter.patch")).unwrap();
    // (`git` trims the output: the first line's leading space goes too.)
    let whole = git(&t, &["diff", "--stat=72", "--summary", &base, "HEAD"]);
    assert!(cover.contains(&format!("\n {whole}\n")), "{cover}\n{whole}");
}

#[test]
fn page_api_tree_gets_the_other_variant() {
    let d = tempfile::tempdir().unwrap();
    let t = toy_tree(d.path(), false);
    let out = d.path().join("out");
    ok(&zcsplice(
        &[
            "render",
            "--tree",
            t.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &fixture_series(),
        d.path(),
    ));
    assert_eq!(patch_files(&out).len(), 3);
    let p1 = std::fs::read_to_string(&patch_files(&out)[0]).unwrap();
    assert!(p1.contains("+static int toy_helper(struct page *page)\n"));
    assert!(p1.contains("Subject: [PATCH 1/3]"));
}

#[test]
fn dirty_tree_is_refused_and_left_alone() {
    let d = tempfile::tempdir().unwrap();
    let t = toy_tree(d.path(), true);
    std::fs::write(t.join("mm/filemap.c"), "local change\n").unwrap();
    let before = repo_state(&t);
    let o = zcsplice(
        &["apply", "--tree", t.to_str().unwrap()],
        &fixture_series(),
        d.path(),
    );
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("uncommitted changes (1 files: mm/filemap.c)"),
        "{err}"
    );
    assert_eq!(repo_state(&t), before);
}

#[test]
fn failed_checkout_rolls_everything_back() {
    let d = tempfile::tempdir().unwrap();
    let t = toy_tree(d.path(), true);
    // An untracked file where the series creates one: the checkout must fail
    // and the user's file must survive, with refs, HEAD and index unchanged.
    std::fs::write(t.join("mm/toy.c"), "mine\n").unwrap();
    let before = repo_state(&t);
    let o = zcsplice(
        &["apply", "--tree", t.to_str().unwrap()],
        &fixture_series(),
        d.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(125),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("the repository is as it was"), "{err}");
    assert_eq!(repo_state(&t), before);
    assert_eq!(
        std::fs::read_to_string(t.join("mm/toy.c")).unwrap(),
        "mine\n"
    );
}

#[test]
fn existing_branch_needs_force_and_keeps_old_tip_in_reflog() {
    let d = tempfile::tempdir().unwrap();
    let t = toy_tree(d.path(), true);
    let ts = t.to_str().unwrap();
    ok(&zcsplice(
        &["apply", "--tree", ts],
        &fixture_series(),
        d.path(),
    ));
    // The user adds a commit on the branch.
    std::fs::write(t.join("mm/mine.c"), "x\n").unwrap();
    git(&t, &["add", "mm/mine.c"]);
    git(&t, &["commit", "-q", "-m", "mine"]);
    let mine = git(&t, &["rev-parse", "HEAD"]);
    let o = zcsplice(&["apply", "--tree", ts], &fixture_series(), d.path());
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force rebuilds it"));
    assert_eq!(git(&t, &["rev-parse", "HEAD"]), mine);
    let forced = ok(&zcsplice(
        &["apply", "--tree", ts, "--force"],
        &fixture_series(),
        d.path(),
    ));
    assert!(forced.contains(&format!("(was {mine})")), "{forced}");
    assert!(!t.join("mm/mine.c").exists());
    assert!(git(&t, &["reflog", "show", "zcsplice/6.12.3"]).contains(&mine[..7]));
}

#[test]
fn missing_anchor_names_patch_file_anchor_and_closest_line() {
    let d = tempfile::tempdir().unwrap();
    let t = toy_tree(d.path(), true);
    let s = copy_series(d.path());
    let p = s.join("patches/0003-use-helper.yaml");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("\treturn 0;", "\treturn 2;");
    std::fs::write(&p, text).unwrap();
    let o = zcsplice(
        &[
            "render",
            "--tree",
            t.to_str().unwrap(),
            "--out",
            d.path().join("o").to_str().unwrap(),
        ],
        &s,
        d.path(),
    );
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("patches/0003-use-helper.yaml:7: patch \"mm: use toy_helper() in generic_perform_write (folio API)\": mm/filemap.c: anchor not found; closest match at line 11"), "{err}");
    assert!(err.contains("| \treturn 2;"), "{err}");
}

#[test]
fn duplicate_anchor_lists_both_lines() {
    let d = tempfile::tempdir().unwrap();
    let t = toy_tree(d.path(), true);
    let s = copy_series(d.path());
    let p = s.join("patches/0003-use-helper.yaml");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("      \treturn 0;\n      }\n", "      }\n");
    std::fs::write(&p, text).unwrap();
    let o = zcsplice(
        &[
            "render",
            "--tree",
            t.to_str().unwrap(),
            "--out",
            d.path().join("o").to_str().unwrap(),
        ],
        &s,
        d.path(),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    // "}" closes both the helper (added by patch 1) and generic_perform_write.
    assert!(
        err.contains("mm/filemap.c: anchor found 2 times (lines 7, 12)"),
        "{err}"
    );
}

#[test]
fn unknown_template_variable_names_template_and_line() {
    let d = tempfile::tempdir().unwrap();
    let t = toy_tree(d.path(), true);
    let s = copy_series(d.path());
    std::fs::write(
        s.join("templates/helper.c.j2"),
        "\nstatic int {{ facts.nope }};\n",
    )
    .unwrap();
    let o = zcsplice(
        &[
            "render",
            "--tree",
            t.to_str().unwrap(),
            "--out",
            d.path().join("o").to_str().unwrap(),
        ],
        &s,
        d.path(),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("templates/helper.c.j2:2: undefined value"),
        "{err}"
    );
}

#[test]
fn bad_yaml_names_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let t = toy_tree(d.path(), true);
    let s = copy_series(d.path());
    std::fs::write(
        s.join("patches/0002-old-api-only.yaml"),
        "subject: x\nbody: [\n",
    )
    .unwrap();
    let o = zcsplice(&["probe", "--tree", t.to_str().unwrap()], &s, d.path());
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("patches/0002-old-api-only.yaml:2:7: body: invalid type"),
        "{err}"
    );
}

#[test]
fn probe_without_any_file_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let t = toy_tree(d.path(), true);
    let s = copy_series(d.path());
    let p = s.join("patches/probes.yaml");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("[include/linux/uio.h]", "[include/linux/gone.h]");
    std::fs::write(&p, text).unwrap();
    let o = zcsplice(&["probe", "--tree", t.to_str().unwrap()], &s, d.path());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("patches/probes.yaml:6: probe `iter_pipe`: none of its files exist"),
        "{err}"
    );
}

/// A matrix row's stages as "name:status".
fn stages(row: &serde_json::Value) -> Vec<String> {
    row["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}:{}",
                c["name"].as_str().unwrap(),
                c["status"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn matrix_goes_on_past_trees_that_fail() {
    let d = tempfile::tempdir().unwrap();
    // Render fails: the anchor of 0003 is gone.
    let bad = toy_tree(&d.path().join("bad"), true);
    std::fs::write(
        bad.join("mm/filemap.c"),
        FILEMAP.replace("return 0", "return 2"),
    )
    .unwrap();
    git(&bad, &["commit", "-qam", "no anchor"]);
    let good = toy_tree(&d.path().join("good"), false);
    // Apply fails: a dirty tree is refused and left as it was.
    let dirty = toy_tree(&d.path().join("dirty"), true);
    std::fs::write(dirty.join("mm/filemap.c"), "local change\n").unwrap();
    let dirty_before = repo_state(&dirty);
    let mut args = vec!["matrix", "--until", "apply"];
    for t in [&bad, &good, &dirty] {
        args.extend(["--tree", t.to_str().unwrap()]);
    }

    let o = zcsplice(
        &[&args[..], &["--json"]].concat(),
        &fixture_series(),
        d.path(),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{v:#}");
    assert_eq!(
        stages(&rows[0]),
        ["probe:pass", "render:fail", "apply:not-run"]
    );
    assert_eq!(rows[0]["version"], "6.12.3");
    let render = &rows[0]["stages"][1];
    let detail = render["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("patches/0003-use-helper.yaml:7: patch")
            && detail.ends_with("anchor not found; closest match at line 11"),
        "{detail}"
    );
    let full = std::fs::read_to_string(render["log"].as_str().unwrap()).unwrap();
    assert!(full.contains("  anchor:\n    | \treturn 0;\n"), "{full}");

    // The tree after the failing one still went through every stage.
    assert_eq!(
        stages(&rows[1]),
        ["probe:pass", "render:pass", "apply:pass"]
    );
    assert_eq!(rows[1]["passed"], true);
    assert_eq!(rows[1]["stages"][1]["detail"], "3 patches");
    let tip = git(&good, &["rev-parse", "HEAD"]);
    assert_eq!(
        rows[1]["stages"][2]["detail"],
        format!("zcsplice/6.12.3 at {}, created", &tip[..12])
    );
    assert_eq!(
        git(&good, &["symbolic-ref", "HEAD"]),
        "refs/heads/zcsplice/6.12.3"
    );
    let rendered = Path::new(rows[1]["stages"][1]["log"].as_str().unwrap());
    assert_eq!(patch_files(rendered).len(), 3);
    assert!(Path::new(rows[1]["logs"].as_str().unwrap()).ends_with("2-linux"));

    assert_eq!(
        stages(&rows[2]),
        ["probe:pass", "render:pass", "apply:fail"]
    );
    let detail = rows[2]["stages"][2]["detail"].as_str().unwrap();
    assert!(
        detail.contains("uncommitted changes (1 files: mm/filemap.c)"),
        "{detail}"
    );
    assert_eq!(repo_state(&dirty), dirty_before);

    // The table: the good tree is up to date now, the others fail as before.
    let o = zcsplice(&args, &fixture_series(), d.path());
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("TREE ") && lines[0].contains("  PROBE  "),
        "{out}"
    );
    assert!(lines[1].contains("  FAIL  ") && lines[1].contains("not run"));
    assert!(lines[2].contains(&format!(
        "pass zcsplice/6.12.3 at {}, up to date",
        &tip[..12]
    )));
    assert!(
        out.contains(&format!(
            "\n{}: render failed: patches/0003-use-helper.yaml:7:",
            bad.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("\n  the series does not apply to 6.12.3\n"),
        "{out}"
    );
    assert!(out.ends_with("\n1 of 3 trees passed\n"), "{out}");

    // Every row passed: exit 0.
    ok(&zcsplice(
        &[
            "matrix",
            "--until",
            "apply",
            "--tree",
            good.to_str().unwrap(),
        ],
        &fixture_series(),
        d.path(),
    ));
}

#[test]
fn matrix_xfstests_options_need_until_xfstests() {
    let d = tempfile::tempdir().unwrap();
    let t = toy_tree(d.path(), true);
    let o = zcsplice(
        &[
            "matrix",
            "--tree",
            t.to_str().unwrap(),
            "--xfstests-test",
            "generic/001",
        ],
        &fixture_series(),
        d.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("need --until xfstests"));
    let t = t.to_str().unwrap();
    let o = zcsplice(
        &["matrix", "--tree", t, "--xfstests-timeout", "7200"],
        &fixture_series(),
        d.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("need --until xfstests"));
    assert!(!d.path().join("runs").exists(), "nothing may run");
}
