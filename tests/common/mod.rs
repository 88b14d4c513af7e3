//! Helpers shared by the integration tests: run the binary, run git.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

pub fn zcsplice(args: &[&str], series: &Path, cache: &Path) -> Output {
    zcsplice_cmd(args, series, cache)
        .output()
        .expect("run zcsplice")
}

/// The command `zcsplice` runs, for a test that adds to its environment.
pub fn zcsplice_cmd(args: &[&str], series: &Path, cache: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_zcsplice"));
    c.args(args)
        .env("ZCSPLICE_SERIES", series)
        .env("ZCSPLICE_CACHE", cache)
        .env_remove("ZCSPLICE_TREE");
    c
}

/// `zcsplice send` as in a fresh account: the user's own git config (a
/// developer's sendemail.* settings) and SMTP password stay out of it.
pub fn zcsplice_send(args: &[&str], series: &Path, cache: &Path, home: &Path) -> Output {
    std::fs::create_dir_all(home).unwrap();
    zcsplice_cmd(args, series, cache)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("ZCSPLICE_SMTP_PASSWORD")
        .output()
        .expect("run zcsplice")
}

pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "zcsplice failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let o = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .expect("run git");
    assert!(
        o.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Every ref, HEAD, the index and the work tree, as one comparable string.
pub fn repo_state(dir: &Path) -> String {
    let refs = git(dir, &["for-each-ref", "--format=%(refname) %(objectname)"]);
    let head = git(dir, &["rev-parse", "--symbolic-full-name", "HEAD"]);
    let head_id = git(dir, &["rev-parse", "HEAD"]);
    let index = git(dir, &["write-tree"]);
    let status = git(dir, &["status", "--porcelain", "--untracked-files=all"]);
    // Full ids: the abbreviated ones grow with the object count, which a
    // background `gc --auto` (after `git am`) may change mid-test.
    let diff = git(dir, &["diff", "--full-index"]);
    format!("{refs}\nHEAD {head} {head_id}\nindex {index}\n{status}\n{diff}")
}

/// What `git am` of some patches onto `base` made.
pub struct Am {
    pub tree: String,
    /// The commit messages, oldest first.
    pub messages: Vec<String>,
    /// The commits' authors (`Name <email>`), oldest first.
    pub authors: Vec<String>,
}

/// `git am` of `patches` onto `base`, in a worktree removed afterwards.
pub fn git_am(repo: &Path, base: &str, patches: &[PathBuf], scratch: &Path) -> Am {
    let wt = scratch.join("am-worktree");
    git(
        repo,
        &[
            "worktree",
            "add",
            "--detach",
            "-f",
            wt.to_str().unwrap(),
            base,
        ],
    );
    let mut args = vec!["-c", "gc.auto=0", "am", "--quiet"];
    let names: Vec<String> = patches.iter().map(|p| p.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    git(&wt, &args);
    let am = Am {
        tree: git(&wt, &["rev-parse", "HEAD^{tree}"]),
        messages: messages(&wt, &format!("{base}..HEAD")),
        authors: git(
            &wt,
            &[
                "log",
                "--reverse",
                "--format=%an <%ae>",
                &format!("{base}..HEAD"),
            ],
        )
        .lines()
        .map(str::to_string)
        .collect(),
    };
    git(
        repo,
        &["worktree", "remove", "--force", wt.to_str().unwrap()],
    );
    am
}

/// The commit messages of `range`, oldest first.
pub fn messages(repo: &Path, range: &str) -> Vec<String> {
    git(repo, &["log", "--reverse", "--format=%B%x00", range])
        .split('\0')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

/// The numbered patch files of a render, cover letter excluded, in order.
pub fn patch_files(out: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.ends_with(".patch") && !n.starts_with("0000-")
        })
        .collect();
    v.sort();
    v
}

/// Whether Debian, as this machine's network serves it, offers `series`:
/// tests/run.sh asks (`zcsplice tree versions`) and lists the series it
/// offers in ZCSPLICE_DEBIAN_SERIES; unset (a plain run), every one is
/// assumed. A test of a series not offered says so on stderr and checks
/// nothing; tests/run.sh has already warned and named the lists' dates.
pub fn debian_offers(series: &str) -> bool {
    match std::env::var("ZCSPLICE_DEBIAN_SERIES") {
        Ok(list) if !list.split_whitespace().any(|s| s == series) => {
            eprintln!("SKIPPED: Debian offers this machine no linux-source-{series}");
            false
        }
        _ => true,
    }
}

/// The `--debian` spec the tests import for a Debian series: the series
/// itself (the installed, newest package), unless `ZCSPLICE_TEST_DEBIAN`
/// names an exact version for it, e.g. `6.12=6.12.117,6.1=6.1.192-2`, to
/// run the same tests against an earlier release.
pub fn debian_spec(series: &str) -> String {
    std::env::var("ZCSPLICE_TEST_DEBIAN")
        .unwrap_or_default()
        .split(',')
        .find(|s| s.split_once('=').is_some_and(|(x, _)| x == series))
        .unwrap_or(series)
        .to_string()
}

/// The kernel version of a tree's Makefile at `rev`, read here rather than
/// through zcsplice: what the tests assert the tool's output against.
pub fn makefile_version(tree: &Path, rev: &str) -> String {
    let text = git(tree, &["show", &format!("{rev}:Makefile")]);
    let get = |key: &str| {
        text.lines()
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    format!(
        "{}.{}.{}{}",
        get("VERSION"),
        get("PATCHLEVEL"),
        get("SUBLEVEL"),
        get("EXTRAVERSION")
    )
}

/// The Debian package version an import's base commit records.
pub fn imported_debian_version(tree: &Path) -> String {
    let root = git(tree, &["rev-list", "--max-parents=0", "HEAD"]);
    let msg = git(tree, &["log", "-1", "--format=%B", &root]);
    msg.lines()
        .find_map(|l| l.strip_prefix("Zcsplice-Import: debian "))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no Debian import line in {root}:\n{msg}"))
        .to_string()
}

pub const FS_H_FOLIO: &str = "struct address_space_operations {\n\
\tint (*write_begin)(struct file *, struct address_space *mapping,\n\
\t\t\t\tloff_t pos, unsigned len,\n\
\t\t\t\tstruct folio **foliop, void **fsdata);\n};\n";
pub const FS_H_PAGE: &str = "struct address_space_operations {\n\
\tint (*write_begin)(struct file *, struct address_space *mapping,\n\
\t\t\t\tloff_t pos, unsigned len,\n\
\t\t\t\tstruct page **pagep, void **fsdata);\n};\n";
pub const FILEMAP: &str = "// SPDX-License-Identifier: GPL-2.0\n#include <linux/fs.h>\n\n\
int generic_perform_write(void)\n{\n\treturn 0;\n}\n";

/// A toy kernel tree, committed; `folio` picks the ->write_begin flavour.
/// The fixture series for the toy tree.
pub fn fixture_series() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/series")
}

pub fn toy_tree(dir: &Path, folio: bool) -> PathBuf {
    let t = dir.join("linux");
    let files = [
        (
            "Makefile",
            "VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 3\nEXTRAVERSION =\n",
        ),
        (
            "include/linux/fs.h",
            if folio { FS_H_FOLIO } else { FS_H_PAGE },
        ),
        (
            "include/linux/uio.h",
            "enum iter_type {\n\tITER_UBUF,\n};\n",
        ),
        ("mm/filemap.c", FILEMAP),
    ];
    for (f, c) in files {
        let p = t.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    }
    git(&t, &["init", "-q", "-b", "master"]);
    git(&t, &["add", "-A"]);
    git(&t, &["commit", "-q", "-m", "base"]);
    t
}

/// Processes whose command line mentions `needle`.
pub fn processes_with(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let pid = e.ok()?.file_name().to_str()?.parse::<u32>().ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(needle).then_some(cmd)
        })
        .collect()
}

/// Copies directory `from` to `to`, recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            copy_dir(&p, &to.join(p.file_name().unwrap()));
        } else {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

/// What `b4 am -m MBOX` said (stderr and stdout), and the am-ready mbox
/// it wrote into `out` (its `.cover` beside it). b4 must succeed and
/// write exactly one.
pub fn b4_am(mbox: &Path, out: &Path) -> (String, PathBuf) {
    std::fs::create_dir_all(out).unwrap();
    let o = std::process::Command::new("b4")
        .args(["--offline-mode", "am", "-m"])
        .arg(mbox)
        .arg("-o")
        .arg(out)
        .current_dir(out)
        .output()
        .expect("b4 is installed");
    let said = String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{said}");
    let mbx: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "mbx"))
        .collect();
    assert_eq!(mbx.len(), 1, "{said}");
    (said, mbx[0].clone())
}

/// Feeds thread `mbox` through b4 am and git am onto `base` of tree `t`,
/// then applies the fixture series with cache `cache`: b4 must find the
/// two patches and the base, and git am must make apply's tree. Returns
/// what git am made.
pub fn b4_am_is_apply(t: &Path, base: &str, mbox: &Path, scratch: &Path, cache: &Path) -> Am {
    let (said, mbx) = b4_am(mbox, &scratch.join("b4"));
    assert!(said.contains("Total patches: 2"), "{said}");
    assert!(said.contains("[PATCH 2/2] mm: use toy_helper()"), "{said}");
    let cover = std::fs::read_to_string(mbx.with_extension("cover")).unwrap();
    assert!(cover.contains(&format!("base-commit: {base}")), "{cover}");
    let am = git_am(t, base, std::slice::from_ref(&mbx), scratch);
    ok(&zcsplice(
        &["apply", "--tree", t.to_str().unwrap()],
        &fixture_series(),
        cache,
    ));
    assert_eq!(am.tree, git(t, &["rev-parse", "HEAD^{tree}"]));
    am
}

/// The SMTP server of the send tests (tests/fixtures/smtp_sink.py, on
/// aiosmtpd), killed when dropped.
pub struct Sink {
    child: std::process::Child,
    pub port: u16,
    pub out: PathBuf,
}

impl Sink {
    pub fn start(out: &Path, drop_after: Option<u32>) -> Sink {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smtp_sink.py");
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(script).arg(out);
        if let Some(n) = drop_after {
            cmd.args(["--drop-after", &n.to_string()]);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            panic!("the SMTP sink did not start (pip install aiosmtpd): {line:?}")
        });
        Sink {
            child,
            port,
            out: out.to_path_buf(),
        }
    }

    /// The messages it accepted, in order.
    pub fn messages(&self) -> Vec<String> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        v.sort();
        v.iter()
            .map(|p| std::fs::read_to_string(p).unwrap().replace("\r\n", "\n"))
            .collect()
    }

    /// SMTP sessions opened to it.
    pub fn sessions(&self) -> u32 {
        std::fs::read_to_string(self.out.join("sessions")).map_or(0, |s| s.trim().parse().unwrap())
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
