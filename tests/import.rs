//! `tree import` and `tree list` on toy kernel tarballs: releases side by
//! side, which one is newest, and a SIGTERM in the middle of an import.
//! No network, no root, no kernel.

mod common;
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn series() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/series")
}

/// A toy kernel tarball of release 6.12.<sublevel>, made with tar.
fn toy_tarball(dir: &Path, sublevel: u32) -> PathBuf {
    let name = format!("linux-6.12.{sublevel}");
    let src = dir.join("src").join(&name);
    std::fs::create_dir_all(src.join("include/linux")).unwrap();
    std::fs::write(
        src.join("Makefile"),
        format!("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = {sublevel}\nEXTRAVERSION =\n"),
    )
    .unwrap();
    std::fs::write(src.join("include/linux/fs.h"), "/* toy */\n").unwrap();
    let tarball = dir.join(format!("{name}.tar.gz"));
    let st = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(dir.join("src"))
        .arg(&name)
        .status()
        .unwrap();
    assert!(st.success());
    tarball
}

fn import(tarball: &Path, cache: &Path) -> std::process::Output {
    zcsplice(
        &["tree", "import", tarball.to_str().unwrap()],
        &series(),
        cache,
    )
}

fn list(cache: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(&zcsplice(
        &["tree", "list", "--json"],
        &series(),
        cache,
    )))
    .unwrap()
}

#[test]
fn a_new_release_is_imported_beside_the_old_and_listed_as_newest() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    // Toy releases the test makes itself (not Debian's): an older and a newer.
    let (old_sub, new_sub) = (3, 4);
    let (old_v, new_v) = (format!("6.12.{old_sub}"), format!("6.12.{new_sub}"));
    let old = toy_tarball(d.path(), old_sub);
    let new = toy_tarball(d.path(), new_sub);

    let old_path = ok(&import(&old, &cache)).trim().to_string();
    let o = import(&new, &cache);
    let new_path = ok(&o).trim().to_string();
    assert_ne!(old_path, new_path);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("zcsplice: imported: tarball "), "{err}");
    assert!(
        err.contains(&format!(
            "also in the cache: tarball {} ({old_v})",
            old.display()
        )),
        "{err}"
    );

    let trees = list(&cache);
    let rows: Vec<(&str, &str, bool)> = trees
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["version"].as_str().unwrap(),
                t["path"].as_str().unwrap(),
                t["newest"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (new_v.as_str(), new_path.as_str(), true),
            (old_v.as_str(), old_path.as_str(), false)
        ]
    );
    assert_eq!(trees[0]["source"]["kind"], "tarball");

    // Again: the same tree, said to be already there, the newer one named.
    let o = import(&old, &cache);
    assert_eq!(ok(&o).trim(), old_path);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("zcsplice: already imported: tarball"), "{err}");
    assert!(err.contains(&format!("({new_v}), the newest:")), "{err}");

    let table = ok(&zcsplice(&["tree", "list"], &series(), &cache));
    let newest_line = table.lines().find(|l| l.contains(&new_v)).unwrap();
    assert!(newest_line.contains("newest"), "{table}");
    let old_line = table.lines().find(|l| l.contains(&old_v)).unwrap();
    assert!(!old_line.contains("newest"), "{table}");
}

#[test]
fn a_bad_debian_spec_is_a_usage_error() {
    let d = tempfile::tempdir().unwrap();
    let o = zcsplice(
        &["tree", "import", "--debian", "6.12.3"],
        &series(),
        d.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("expected X.Y"), "{err}");
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// `tree import tarball` started, stdout and stderr piped to this test.
fn spawn_import(tarball: &Path, cache: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_zcsplice"))
        .args(["tree", "import", tarball.to_str().unwrap()])
        .env("ZCSPLICE_SERIES", series())
        .env("ZCSPLICE_CACHE", cache)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// An import of a FIFO as the tarball, once tar is blocked on it (until a
/// signal comes) and the partial tree exists: the child, its cache, and
/// the FIFO's path, which names tar among the processes.
fn stuck_import(d: &Path) -> (std::process::Child, PathBuf, String) {
    let cache = d.join("cache");
    let fifo = d.join("linux-stuck.tar");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let child = spawn_import(&fifo, &cache);
    let trees = cache.join("trees");
    let needle = fifo.to_str().unwrap().to_string();
    let until = Instant::now() + Duration::from_secs(30);
    while !(entries(&trees).iter().any(|e| e.contains(".partial-"))
        && processes_with(&needle)
            .iter()
            .any(|c| c.starts_with("tar ")))
    {
        assert!(Instant::now() < until, "tar never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, cache, needle)
}

/// SIGTERM to `child`, and how it ended, within 5 s.
fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let sent = Instant::now();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if sent.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            panic!("zcsplice still running 5 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// After an interrupted import: no tar on the FIFO `needle`, and no
/// partial tree in `cache`.
fn assert_nothing_left(needle: &str, cache: &Path) {
    let tar_left = processes_with(needle);
    assert!(tar_left.is_empty(), "still running: {tar_left:?}");
    assert_eq!(
        entries(&cache.join("trees")),
        Vec::<String>::new(),
        "left behind"
    );
}

#[test]
fn sigterm_during_an_import_stops_tar_and_leaves_no_partial_tree() {
    let d = tempfile::tempdir().unwrap();
    let (mut child, cache, needle) = stuck_import(d.path());
    let status = terminate(&mut child);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.signal(), Some(libc_sigterm()), "{status:?}: {err}");
    assert!(
        err.contains("interrupted (SIGTERM): stopped tar, removed the half-imported tree"),
        "{err}"
    );
    assert_nothing_left(&needle, &cache);

    // The next import works, and nothing half-made is taken for a tree.
    let real = toy_tarball(d.path(), 4);
    let path = ok(&import(&real, &cache));
    assert!(Path::new(path.trim()).join("Makefile").exists());
    assert_eq!(list(&cache).as_array().unwrap().len(), 1);
}

/// With nobody left reading its stderr (a killed CI runner, a closed
/// pipe), a SIGTERM still ends zcsplice and its tools: the line it can no
/// longer say must not keep it alive.
#[test]
fn sigterm_with_stderr_gone_still_ends_the_import() {
    let d = tempfile::tempdir().unwrap();
    let (mut child, cache, needle) = stuck_import(d.path());
    drop(child.stderr.take());
    let status = terminate(&mut child);
    assert_eq!(status.signal(), Some(libc_sigterm()), "{status:?}");
    assert_nothing_left(&needle, &cache);
}

/// Notes and errors go to stderr; with nobody left reading it (a closed
/// pipe), the import still completes: a note nobody can read must not end
/// a run midway, which with guests running would leave them behind.
#[test]
fn an_import_completes_with_stderr_gone() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let mut child = spawn_import(&toy_tarball(d.path(), 4), &cache);
    drop(child.stderr.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{:?}", o.status);
    let path = String::from_utf8(o.stdout).unwrap();
    assert!(Path::new(path.trim()).join("Makefile").exists(), "{path}");

    // An error keeps its exit code (1: no such tarball), not a panic's.
    let mut child = spawn_import(&d.path().join("none.tar.gz"), &cache);
    drop(child.stderr.take());
    assert_eq!(child.wait().unwrap().code(), Some(1));
}

fn libc_sigterm() -> i32 {
    Signal::SIGTERM as i32
}

/// `--onto`: releases one after the other make one linear history, each
/// commit the release's files (a file a release dropped is gone); a tree
/// with modified files is refused; importing a release again changes
/// nothing; the checkout follows only when it is on the import line.
#[test]
fn releases_onto_a_tree_make_one_linear_history() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    // A file the first release has and the later ones dropped.
    let gone = d.path().join("src/linux-6.12.5/include/linux/gone.h");
    std::fs::create_dir_all(gone.parent().unwrap()).unwrap();
    std::fs::write(&gone, "x").unwrap();
    let first = toy_tarball(d.path(), 5);
    let tree = PathBuf::from(ok(&import(&first, &cache)).trim());
    let line = git(&tree, &["rev-parse", "--abbrev-ref", "HEAD"]);
    // Each tarball made once: gzip of a re-made one may differ in size,
    // and the size is part of a tarball import's identity.
    let tarballs: Vec<PathBuf> = (0..=7).map(|sub| toy_tarball(d.path(), sub)).collect();
    let onto = |sub: u32| {
        let t = &tarballs[sub as usize];
        zcsplice(
            &[
                "tree",
                "import",
                t.to_str().unwrap(),
                "--onto",
                tree.to_str().unwrap(),
            ],
            &series(),
            &cache,
        )
    };
    let c6 = ok(&onto(6)).trim().to_string();
    assert_eq!(
        git(&tree, &["rev-parse", "HEAD"]),
        c6,
        "the checkout follows its line"
    );
    assert!(std::fs::read_to_string(tree.join("Makefile"))
        .unwrap()
        .contains("SUBLEVEL = 6"));

    // The user works on a branch of their own: it stays where it is.
    git(&tree, &["checkout", "-q", "-b", "mine"]);
    std::fs::write(tree.join("Makefile"), "dirty\n").unwrap();
    let o = onto(7);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("1 files are modified (Makefile)"), "{err}");
    git(&tree, &["checkout", "-q", "--", "Makefile"]);
    let c7 = ok(&onto(7)).trim().to_string();
    assert_eq!(git(&tree, &["rev-parse", "HEAD"]), c6);
    assert_eq!(git(&tree, &["rev-parse", &line]), c7);
    assert_eq!(ok(&onto(7)).trim(), c7, "a release on the line already");

    let log = git(&tree, &["log", "--format=%s", &line]);
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            "Import linux-6.12.7.tar.gz",
            "Import linux-6.12.6.tar.gz",
            "Import linux-6.12.5.tar.gz"
        ]
    );
    assert_eq!(
        git(&tree, &["show", &format!("{c7}:Makefile")])
            .lines()
            .nth(2),
        Some("SUBLEVEL = 7")
    );
    let files = git(
        &tree,
        &["ls-tree", "-r", "--name-only", &format!("{line}~2")],
    );
    assert!(files.contains("include/linux/gone.h"), "{files}");
    let files = git(&tree, &["ls-tree", "-r", "--name-only", &c7]);
    assert_eq!(files, "Makefile\ninclude/linux/fs.h");
}
