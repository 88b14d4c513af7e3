//! The real series on Debian's real 7.3, 7.2, 6.12 and 6.1 trees: probe, render,
//! apply, `git am` equivalence, idempotence, dirty-tree refusal and
//! atomicity. The trees are imported once into target/zcsplice-test-cache
//! (`tree import` installs linux-source-X.Y when it is missing). No test
//! pins a release: Debian moves on, and the series must follow. The
//! version asserted is the one the imported tree has;
//! `ZCSPLICE_TEST_DEBIAN=6.12=6.12.117` runs the same tests on an earlier
//! release (see common::debian_spec).

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn series() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("zcsplice-test-cache")
}

/// Imports the tree and puts it back on its base commit, as a fresh import.
fn fresh_tree(series_name: &str) -> PathBuf {
    let out = ok(&zcsplice(
        &["tree", "import", "--debian", &debian_spec(series_name)],
        &series(),
        &cache(),
    ));
    let t = PathBuf::from(out.trim());
    let root = git(&t, &["rev-list", "--max-parents=0", "--all"]);
    let branch = git(
        &t,
        &[
            "for-each-ref",
            "--format=%(refname:short)",
            "--contains",
            &root,
            "refs/heads/",
        ],
    );
    let main = branch
        .lines()
        .find(|b| !b.starts_with("zcsplice/"))
        .unwrap()
        .to_string();
    git(&t, &["checkout", "-q", "-f", &main]);
    for b in branch.lines().filter(|b| b.starts_with("zcsplice/")) {
        git(&t, &["branch", "-q", "-D", b]);
    }
    git(&t, &["worktree", "prune"]);
    git(&t, &["clean", "-q", "-fd"]);
    t
}

fn facts(t: &Path) -> serde_json::Value {
    let out = ok(&zcsplice(
        &["probe", "--json", "--tree", t.to_str().unwrap()],
        &series(),
        &cache(),
    ));
    serde_json::from_str(&out).unwrap()
}

/// The whole cycle on one tree; returns the rendered patch files' names.
fn cycle(series_name: &str) -> Vec<String> {
    let t = fresh_tree(series_name);
    let ts = t.to_str().unwrap();
    let base = git(&t, &["rev-parse", "HEAD"]);
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("out");

    // The release this tree is, whichever Debian shipped today.
    let version = makefile_version(&t, &base);
    assert!(
        version.starts_with(&format!("{series_name}.")),
        "{version} is not a {series_name} release"
    );
    let package = imported_debian_version(&t);
    assert!(
        package.starts_with(&format!("{version}-")),
        "package {package} is not of {version}"
    );
    let f = facts(&t);
    assert_eq!(f["version"], version.as_str());
    for (name, fact) in f["facts"].as_object().unwrap() {
        let ev = fact["evidence"].as_str().unwrap();
        assert!(!ev.is_empty(), "{name} has no evidence");
    }

    let before = repo_state(&t);
    ok(&zcsplice(
        &["render", "--tree", ts, "--out", out.to_str().unwrap()],
        &series(),
        &cache(),
    ));
    assert_eq!(
        repo_state(&t),
        before,
        "render must not touch the repository"
    );
    let patches = patch_files(&out);
    assert!(
        patches.len() >= 5,
        "only {} patches rendered",
        patches.len()
    );
    let cover = std::fs::read_to_string(out.join("0000-cover-letter.patch")).unwrap();
    assert!(cover.contains(&format!("base-commit: {base}")));
    // Mail is read at 72 columns; checkpatch and b4 complain past 75.
    let body = cover.split_once("\n\n").unwrap().1;
    let long: Vec<&str> = body.lines().filter(|l| l.chars().count() > 75).collect();
    assert!(
        long.is_empty(),
        "cover letter lines over 75 columns:\n{}",
        long.join("\n")
    );
    // Numbered like git format-patch: 00/11 once there are ten or more.
    let n = patches.len();
    let width = n.to_string().len();
    assert!(cover.contains(&format!(" {:0width$}/{n}] ", 0)), "{cover}");

    // As mail: checkpatch.pl --strict passes every patch (format's gate),
    // the tree's get_maintainer.pl names the lists of the files the
    // series touches (mm and fsdevel, whatever else changes in
    // MAINTAINERS), every patch has a To:, and no testing patch is in it.
    let mail = scratch.path().join("mail");
    ok(&zcsplice(
        &["format", "--tree", ts, "--out", mail.to_str().unwrap()],
        &series(),
        &cache(),
    ));
    let mbox = std::fs::read_dir(&mail)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .next()
        .unwrap();
    let headers: Vec<String> = mbox
        .split("\nFrom ")
        .map(|m| m.split("\n\n").next().unwrap().replace("\n ", " "))
        .collect();
    assert_eq!(headers.len(), n + 1);
    assert!(headers.iter().all(|h| h.contains("\nTo: ")));
    assert!(!mbox.contains("DO NOT MERGE"));
    let cc = headers[0]
        .lines()
        .find(|l| l.starts_with("Cc: "))
        .unwrap_or_default();
    for list in ["linux-mm@kvack.org", "linux-fsdevel@vger.kernel.org"] {
        assert!(cc.contains(list), "the cover letter's {cc}");
    }

    // The testing patches (never sent) come after the series.
    let testing = patch_files(&out.join("testing"));
    assert!(!testing.is_empty(), "no testing patches rendered");
    let email = std::fs::read_to_string(&testing[0]).unwrap();
    assert!(email.contains("Subject: [DO NOT MERGE 1/"), "{email}");
    let subject = email
        .lines()
        .find_map(|l| l.strip_prefix("Subject: [DO NOT MERGE 1/"))
        .and_then(|l| l.split_once("] "))
        .map(|(_, s)| s.to_string())
        .unwrap();
    assert!(!cover.contains(&subject), "the cover lists {subject}");

    let applied = ok(&zcsplice(&["apply", "--tree", ts], &series(), &cache()));
    let branch = format!("zcsplice/{version}");
    let counts = format!(
        "{} + {} testing patches applied",
        patches.len(),
        testing.len()
    );
    assert!(
        applied.contains(&format!("{branch}: {counts}")),
        "{applied}"
    );
    assert_eq!(git(&t, &["symbolic-ref", "--short", "HEAD"]), branch);
    assert_eq!(git(&t, &["status", "--porcelain"]), "");
    let n = git(&t, &["rev-list", "--count", &format!("{base}..HEAD")]);
    assert_eq!(n, (patches.len() + testing.len()).to_string());

    let tree = git(&t, &["rev-parse", "HEAD^{tree}"]);
    let all: Vec<PathBuf> = patches.iter().chain(&testing).cloned().collect();
    let am = git_am(&t, &base, &all, scratch.path());
    assert_eq!(am.tree, tree, "git am differs from apply");
    assert_eq!(
        am.messages,
        messages(&t, &format!("{base}..HEAD")),
        "git am's commit messages differ from apply's"
    );

    // Idempotent: again on the up-to-date branch changes nothing.
    let state = repo_state(&t);
    let again = ok(&zcsplice(&["apply", "--tree", ts], &series(), &cache()));
    assert!(again.contains("is up to date"), "{again}");
    assert_eq!(repo_state(&t), state);

    // Dirty tree: refused, nothing touched.
    git(&t, &["checkout", "-q", &base]);
    let victim = t.join("fs/splice.c");
    let orig = std::fs::read_to_string(&victim).unwrap();
    std::fs::write(&victim, format!("{orig}/* local */\n")).unwrap();
    let dirty = repo_state(&t);
    let o = zcsplice(
        &["apply", "--tree", ts, "--branch", "zcsplice/dirty"],
        &series(),
        &cache(),
    );
    assert_eq!(o.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("uncommitted changes (1 files: fs/splice.c)")
    );
    assert_eq!(repo_state(&t), dirty);
    std::fs::write(&victim, orig).unwrap();

    // A deliberately broken last patch: apply fails and changes nothing.
    let broken = scratch.path().join("series");
    for sub in ["patches", "templates"] {
        copy_dir(&series().join(sub), &broken.join(sub));
    }
    let last = last_patch_file(&broken);
    let text = std::fs::read_to_string(&last).unwrap();
    let text = text.replacen(
        "    anchor: |",
        "    anchor: |\n      /* zcsplice: no such line */",
        1,
    );
    std::fs::write(&last, text).unwrap();
    let clean = repo_state(&t);
    let o = zcsplice(
        &["apply", "--tree", ts, "--branch", "zcsplice/broken"],
        &broken,
        &cache(),
    );
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("anchor not found"), "{err}");
    assert!(
        err.contains(last.file_name().unwrap().to_str().unwrap()),
        "{err}"
    );
    assert_eq!(repo_state(&t), clean);

    // A template with trailing whitespace: checkpatch stops the mail,
    // naming the patch and the line; an override goes on, and the cover
    // letter says why.
    let sloppy = scratch.path().join("sloppy");
    for sub in ["patches", "templates"] {
        copy_dir(&series().join(sub), &sloppy.join(sub));
    }
    let tpl = sloppy.join("templates/perform-write-donor.c.j2");
    let text = std::fs::read_to_string(&tpl).unwrap();
    let line = "/* Not taken: the pipe still owns it, copy from it. */";
    assert!(text.contains(line));
    std::fs::write(&tpl, text.replace(line, &format!("{line} "))).unwrap();
    let mail = scratch.path().join("sloppy-mail");
    let args = ["format", "--tree", ts, "--out", mail.to_str().unwrap()];
    let o = zcsplice(&args, &sloppy, &cache());
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("checkpatch.pl --strict is not clean on 1 patch(es)")
            && err.contains("mm: filemap: hand a stolen folio to ->write_begin:")
            && err.contains("ERROR: trailing whitespace"),
        "{err}"
    );
    assert!(!mail.exists(), "nothing is written past a failed gate");
    let mut args = args.to_vec();
    args.extend(["--checkpatch-override", "the whitespace is deliberate"]);
    ok(&zcsplice(&args, &sloppy, &cache()));
    let mbox = std::fs::read_dir(&mail)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .next()
        .unwrap();
    assert!(
        mbox.contains("Sent anyway: the whitespace is deliberate\nbase-commit: "),
        "{mbox}"
    );

    patches
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect()
}

/// The revision tag of the series' subjects (" v3"; none for v1), from
/// its manifest.
fn version_tag(series: &Path) -> String {
    let m: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(series.join("patches/series.yaml")).unwrap())
            .unwrap();
    match m["version"].as_u64().unwrap_or(1) {
        1 => String::new(),
        v => format!(" v{v}"),
    }
}

/// The last patch of the manifest that has an anchored edit.
fn last_patch_file(series: &Path) -> PathBuf {
    let m: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(series.join("patches/series.yaml")).unwrap())
            .unwrap();
    m["patches"]
        .as_sequence()
        .unwrap()
        .iter()
        .rev()
        .map(|p| series.join("patches").join(p.as_str().unwrap()))
        .find(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .contains("    anchor: |")
        })
        .unwrap()
}

/// Asserts the probe values a tree must have.
fn expect_facts(series_name: &str, want: &[(&str, bool)]) {
    let t = fresh_tree(series_name);
    let f = facts(&t)["facts"].clone();
    for (name, value) in want {
        assert_eq!(f[name]["value"], *value, "fact {name} on {series_name}");
    }
}

#[test]
#[ignore = "real-tree tier: imports Debian's 7.3 source (tests/run.sh runs it)"]
fn debian_7_3() {
    if !debian_offers("7.3") {
        return;
    }
    expect_facts("7.3", &NEWEST_FACTS);
    cycle("7.3");
}

#[test]
#[ignore = "real-tree tier: imports Debian's 7.2 source (tests/run.sh runs it)"]
fn debian_7_2() {
    if !debian_offers("7.2") {
        return;
    }
    expect_facts("7.2", &NEWEST_FACTS);
    cycle("7.2");
}

/// 7.x: the kiocb `->write_begin`, no prefault before it, ext4's large
/// folios, a const sysctl table.
const NEWEST_FACTS: [(&str, bool); 10] = [
    ("iter_pipe", false),
    ("write_begin_folio", true),
    ("write_begin_kiocb", true),
    ("fault_in_iov_iter_readable", true),
    ("pipe_buf_try_steal", true),
    ("filemap_add_folio", true),
    ("replace_page_cache_folio", true),
    ("perform_write_prefaults", false),
    ("ext4_large_folios", true),
    ("sysctl_table_const", true),
];

#[test]
#[ignore = "real-tree tier: imports Debian's 6.12 source (tests/run.sh runs it)"]
fn debian_6_12() {
    if !debian_offers("6.12") {
        return;
    }
    expect_facts(
        "6.12",
        &[
            ("iter_pipe", false),
            ("write_begin_folio", true),
            ("write_begin_kiocb", false),
            ("fault_in_iov_iter_readable", true),
            ("pipe_buf_try_steal", true),
            ("filemap_add_folio", true),
            ("replace_page_cache_folio", true),
            ("buffer_head_folios", true),
            ("perform_write_prefaults", true),
            ("ext4_large_folios", false),
        ],
    );
    cycle("6.12");
}

#[test]
#[ignore = "real-tree tier: imports Debian's 6.1 source (tests/run.sh runs it)"]
fn debian_6_1() {
    if !debian_offers("6.1") {
        return;
    }
    expect_facts(
        "6.1",
        &[
            ("iter_pipe", true),
            ("write_begin_folio", false),
            ("write_begin_kiocb", false),
            ("fault_in_iov_iter_readable", true),
            ("pipe_buf_try_steal", true),
            ("filemap_add_folio", true),
            ("replace_page_cache_folio", false),
            ("buffer_head_folios", false),
            ("perform_write_prefaults", true),
            ("ext4_large_folios", false),
        ],
    );
    cycle("6.1");
}

/// A release the archive does not have: an error that lists what it has.
#[test]
#[ignore = "real-tree tier: asks apt (tests/run.sh runs it)"]
fn an_unknown_debian_version_lists_the_known_ones() {
    if !debian_offers("6.12") {
        return;
    }
    let o = zcsplice(
        &["tree", "import", "--debian", "6.12=6.12.0"],
        &series(),
        &cache(),
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Debian has no linux-source-6.12 6.12.0; it has: 6.12."),
        "{err}"
    );
}

/// `tree versions` lists what Debian has, newest first with suites; a
/// series it never had is exit 1 with the dates of the lists looked in.
#[test]
#[ignore = "real-tree tier: asks Debian's archive (tests/run.sh runs it)"]
fn tree_versions_says_what_debian_has() {
    if !debian_offers("6.12") {
        return;
    }
    let o = zcsplice(&["tree", "versions", "6.12", "--json"], &series(), &cache());
    let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(v[0]["series"], "6.12", "{v:#}");
    let versions = v[0]["versions"].as_array().unwrap();
    assert!(
        !versions.is_empty()
            && versions.iter().all(|c| {
                c["version"].as_str().unwrap().starts_with("6.12.")
                    && !c["suite"].as_str().unwrap().is_empty()
            }),
        "{v:#}"
    );
    let o = zcsplice(&["tree", "versions", "6.12", "2.4"], &series(), &cache());
    assert_eq!(o.status.code(), Some(1));
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(out.lines().any(|l| l.starts_with("6.12 ")), "{out}");
    assert!(
        err.contains("Debian has no linux-source-2.4 in any of bookworm,")
            && err.contains("are dated bookworm: ")
            && err.contains("; sid: "),
        "{err}"
    );
}

/// A series the machine's own apt sources do not carry (7.2 and 7.3 are
/// in trixie-backports and sid, not bookworm) is found through the private
/// lists in the cache, and the machine's apt state is left as it was. The
/// cache is given as a relative path, as tests/run.sh gives it: apt once
/// read that against /var/lib/apt, found no sources, and said nothing.
#[test]
#[ignore = "real-tree tier: asks Debian's archive (tests/run.sh runs it)"]
fn other_suites_are_read_without_touching_the_machines_apt() {
    let apt_state = || {
        let mut v: Vec<String> = [
            "/etc/apt",
            "/etc/apt/sources.list.d",
            "/var/lib/apt",
            "/var/lib/apt/lists",
        ]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten())
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
        .collect();
        v.sort();
        v
    };
    let Some(x) = ["7.2", "7.3"].into_iter().find(|s| debian_offers(s)) else {
        return;
    };
    let before = apt_state();
    let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let o = zcsplice_cmd(
        &["tree", "import", "--debian", &format!("{x}={x}.0")],
        &series(),
        Path::new("relative-cache"),
    )
    .current_dir(d.path())
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    let listed = err
        .split("it has: ")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .split(", ")
        .filter(|c| c.starts_with(&format!("{x}.")) && c.ends_with(')') && c.contains(" ("))
        .count();
    assert!(
        err.contains(&format!("Debian has no linux-source-{x} {x}.0; it has: ")) && listed > 0,
        "{err}"
    );
    assert!(
        d.path()
            .join("relative-cache/apt/lists")
            .read_dir()
            .unwrap()
            .count()
            > 2
    );
    assert_eq!(apt_state(), before, "the machine's apt state changed");
}

/// The real series sent through a real SMTP server that goes away after
/// five messages: `--resume` completes the thread with every Message-Id
/// once, and b4 am and git am of what the servers got give the tree that
/// `apply` commits without its testing patches. Works on a shared clone
/// (the imported tree is the other tests'), with its own cache.
#[test]
#[ignore = "real-tree tier: needs Debian's 6.12, aiosmtpd and b4 (tests/run.sh)"]
fn the_real_series_survives_a_server_that_drops_after_five() {
    if !debian_offers("6.12") {
        return;
    }
    let imported = PathBuf::from(
        ok(&zcsplice(
            &["tree", "import", "--debian", &debian_spec("6.12")],
            &series(),
            &cache(),
        ))
        .trim(),
    );
    let d = tempfile::tempdir().unwrap();
    let t = d.path().join("linux");
    let root = git(&imported, &["rev-list", "--max-parents=0", "HEAD"]);
    git(
        d.path(),
        &[
            "clone",
            "-q",
            "--shared",
            "--no-checkout",
            imported.to_str().unwrap(),
            t.to_str().unwrap(),
        ],
    );
    git(&t, &["checkout", "-q", &root]);
    git(&t, &["config", "sendemail.smtpServer", "127.0.0.1"]);
    let own_cache = d.path().join("cache");
    let send = |port: u16, extra: &[&str]| {
        git(
            &t,
            &["config", "sendemail.smtpServerPort", &port.to_string()],
        );
        let mut args = vec!["send", "--tree", t.to_str().unwrap(), "--confirm"];
        args.extend_from_slice(extra);
        zcsplice_send(&args, &series(), &own_cache, &d.path().join("home"))
    };

    // The series as this tree takes it: its patches, and the cover letter.
    let rendered = d.path().join("rendered");
    ok(&zcsplice(
        &[
            "render",
            "--tree",
            t.to_str().unwrap(),
            "--out",
            rendered.to_str().unwrap(),
        ],
        &series(),
        &own_cache,
    ));
    let patches = patch_files(&rendered).len();
    let messages = patches + 1;

    let first = Sink::start(&d.path().join("first"), Some(5));
    let o = send(first.port, &["--base-is-upstream"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(128), "{err}");
    assert!(
        err.contains(&format!(
            "5 of the {messages} messages were: `zcsplice send --resume`"
        )),
        "{err}"
    );
    let second = Sink::start(&d.path().join("second"), None);
    let out = ok(&send(second.port, &["--resume"]));
    assert!(
        out.contains(&format!("sent {} of {messages} messages", messages - 5)),
        "{out}"
    );

    let mut all = first.messages();
    all.extend(second.messages());
    let mut ids: Vec<&str> = all
        .iter()
        .map(|m| m.lines().find(|l| l.starts_with("Message-ID: ")).unwrap())
        .collect();
    assert_eq!(ids.len(), messages);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), messages, "a Message-Id went twice");

    let mbox = d.path().join("captured.mbox");
    let text: String = all
        .iter()
        .map(|m| format!("From mboxrd@z Thu Jan  1 00:00:00 1970\n{m}\n"))
        .collect();
    std::fs::write(&mbox, text).unwrap();
    let (said, mbx) = b4_am(&mbox, &d.path().join("b4"));
    assert!(
        said.contains(&format!("Total patches: {patches}")),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "[PATCH RFC{} {patches}/{patches}]",
            version_tag(&series())
        )),
        "{said}"
    );
    let cover = std::fs::read_to_string(mbx.with_extension("cover")).unwrap();
    assert!(cover.contains(&format!("base-commit: {root}")), "{cover}");
    let am = git_am(&t, &root, std::slice::from_ref(&mbx), d.path());
    ok(&zcsplice(
        &[
            "apply",
            "--tree",
            t.to_str().unwrap(),
            "--branch",
            "applied",
        ],
        &series(),
        &own_cache,
    ));
    let manifest: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(series().join("patches/series.yaml")).unwrap(),
    )
    .unwrap();
    let testing = manifest["testing"].as_sequence().map_or(0, Vec::len);
    let sent_tip = format!("applied~{testing}^{{tree}}");
    assert_eq!(am.tree, git(&t, &["rev-parse", &sent_tip]));
}
