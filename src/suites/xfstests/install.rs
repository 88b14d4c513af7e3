//! Finding an installed xfstests and choosing its tests.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

use super::{baseline, lists, SMOKE};

/// Where `make install` puts xfstests.
pub const DEFAULT_DIR: &str = "/var/lib/xfstests";

/// Host packages xfstests runs in the guest (the guest's root is the host's).
pub const HOST_PACKAGES: &[&str] = &[
    "xfsprogs",
    "e2fsprogs",
    "acl",
    "attr",
    "fio",
    "psmisc",
    "bc",
    "gawk",
    "quota",
    "uuid-runtime",
];

/// An installed, built xfstests tree.
#[derive(Debug, Clone)]
pub struct Install {
    pub dir: PathBuf,
    /// Hash of `check`, `common/` and the built programs' sizes and mtimes:
    /// part of the baseline cache key.
    pub version: String,
}

/// How to get an xfstests that zcsplice can use; `problem` says what is wrong.
pub fn not_found(problem: &str) -> String {
    format!(
        "no usable xfstests: {problem}.\n\
         zcsplice does not build xfstests; install it once:\n  \
         git clone git://git.kernel.org/pub/scm/fs/xfs/xfstests-dev.git\n  \
         apt-get install acl attr automake autoconf bc dbench dump fio gawk indent \
         libacl1-dev libaio-dev libcap-dev libgdbm-dev libgdbm-compat-dev libtool \
         libtool-bin liburing-dev lvm2 psmisc quota uuid-dev uuid-runtime xfslibs-dev \
         xfsdump sqlite3 btrfs-progs pkg-config\n  \
         cd xfstests-dev && make -j$(nproc) && make install   # installs to {DEFAULT_DIR}\n\
         or point --xfstests DIR (or XFSTESTS_DIR) at a built xfstests tree"
    )
}

/// Finds xfstests: `arg`, else `env` (XFSTESTS_DIR), else /var/lib/xfstests.
pub fn locate(arg: Option<&Path>, env: Option<&Path>) -> Result<Install> {
    let (dir, from) = match (arg, env) {
        (Some(a), _) => (a.to_path_buf(), "--xfstests"),
        (None, Some(e)) => (e.to_path_buf(), "XFSTESTS_DIR"),
        (None, None) => (PathBuf::from(DEFAULT_DIR), "the default"),
    };
    let d = dir.display();
    if !dir.is_dir() {
        bail!(not_found(&format!("{d} ({from}) does not exist")));
    }
    if !dir.join("check").is_file() {
        bail!(not_found(&format!(
            "{d} ({from}) has no `check` script: not an xfstests tree"
        )));
    }
    for built in ["ltp/fsstress", "tests/generic/group.list"] {
        if !dir.join(built).is_file() {
            bail!(not_found(&format!(
                "{d} ({from}) is not built: no {built} (run make there)"
            )));
        }
    }
    let dir = dir.canonicalize()?;
    let version = version(&dir)?;
    Ok(Install { dir, version })
}

fn version(dir: &Path) -> Result<String> {
    let mut v: Vec<u8> = std::fs::read(dir.join("check"))?;
    let mut files: Vec<PathBuf> = Vec::new();
    for sub in ["common", "ltp", "src"] {
        if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
            files.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    files.sort();
    for f in files {
        let m = std::fs::metadata(&f)?;
        v.extend(f.strip_prefix(dir).unwrap_or(&f).to_string_lossy().bytes());
        if f.parent().is_some_and(|p| p.ends_with("common")) {
            v.extend(std::fs::read(&f)?);
        } else {
            // Built programs: a rebuild changes their mtime.
            let t = m.modified()?.duration_since(std::time::UNIX_EPOCH)?;
            v.extend(format!(" {} {}\n", m.len(), t.as_secs()).bytes());
        }
    }
    Ok(baseline::hash(&v))
}

/// Installs the host packages xfstests needs in the guest, if missing.
pub fn host_deps() -> Result<()> {
    let missing = crate::deps::missing_debs(HOST_PACKAGES);
    if missing.is_empty() {
        return Ok(());
    }
    crate::deps::apt_install(&missing)
        .context("xfstests runs these host tools in the guest (its root is the host's)")
}

/// Test directories a filesystem runs: generic and its own.
fn test_dirs(fs: &str) -> [&str; 2] {
    let own = match fs {
        "ext2" | "ext3" => "ext4",
        f => f,
    };
    ["generic", own]
}

/// Tests of `group` (e.g. `quick`, or `ext4/quick`), from the group.list
/// files `make` wrote, as check resolves them.
pub fn group_tests(inst: &Path, fs: &str, group: &str) -> Result<Vec<String>> {
    let (dirs, grp): (Vec<&str>, &str) = match group.split_once('/') {
        Some((d, g)) => (vec![d], g),
        None => (test_dirs(fs).to_vec(), group),
    };
    let mut out = Vec::new();
    for d in dirs {
        let Ok(text) = std::fs::read_to_string(inst.join("tests").join(d).join("group.list"))
        else {
            continue;
        };
        for l in text.lines() {
            let l = l.split('#').next().unwrap_or("");
            let mut w = l.split_whitespace();
            let Some(num) = w.next() else { continue };
            if w.any(|g| g == grp) {
                out.push(format!("{d}/{num}"));
            }
        }
    }
    if out.is_empty() {
        bail!(
            "group {group}: no tests in {} for {fs}",
            inst.join("tests").display()
        );
    }
    Ok(out)
}

/// The tests to run, before expunging: TEST names, -g groups, else the
/// smoke list. Names the installed xfstests does not have are errors
/// when given, and left out with a warning when from the smoke list.
pub fn select(
    project: &Path,
    inst: &Path,
    fs: &str,
    groups: &[String],
    tests: &[String],
) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for t in tests {
        if !lists::valid_name(t) {
            bail!("{t:?} is not an xfstests test name (like generic/001)");
        }
        if !inst.join("tests").join(t).is_file() {
            bail!("{t}: no such test in {}", inst.join("tests").display());
        }
        out.push(t.clone());
    }
    for g in groups {
        out.extend(group_tests(inst, fs, g)?);
    }
    if tests.is_empty() && groups.is_empty() {
        for e in lists::load(&project.join(SMOKE))? {
            if inst.join("tests").join(&e.test).is_file() {
                out.push(e.test);
            } else {
                log::info!(
                    "{}:{}: {} is not in this xfstests; left out",
                    SMOKE,
                    e.line,
                    e.test
                );
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|t| seen.insert(t.clone()));
    Ok(out)
}

/// Hash of a test's script and golden output: part of the baseline key.
pub fn test_hash(inst: &Path, test: &str) -> String {
    let t = inst.join("tests").join(test);
    let mut v = std::fs::read(&t).unwrap_or_default();
    v.extend(
        std::fs::read(
            t.with_file_name(format!("{}.out", t.file_name().unwrap().to_string_lossy())),
        )
        .unwrap_or_default(),
    );
    baseline::hash(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_install(built: bool) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("check"), "#!/bin/bash\n").unwrap();
        std::fs::create_dir_all(d.path().join("tests/generic")).unwrap();
        std::fs::create_dir_all(d.path().join("tests/ext4")).unwrap();
        std::fs::create_dir_all(d.path().join("ltp")).unwrap();
        if built {
            std::fs::write(d.path().join("ltp/fsstress"), "").unwrap();
            std::fs::write(
                d.path().join("tests/generic/group.list"),
                "# QA groups control file\n001 rw auto quick\n002 auto\n003 quick # x\n",
            )
            .unwrap();
            std::fs::write(d.path().join("tests/ext4/group.list"), "010 auto quick\n").unwrap();
            for t in ["generic/001", "generic/002", "generic/003", "ext4/010"] {
                std::fs::write(d.path().join("tests").join(t), t).unwrap();
            }
        }
        d
    }

    #[test]
    fn no_xfstests_says_how_to_install_one() {
        let err = locate(Some(Path::new("/nonexistent/xfstests")), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "no usable xfstests: /nonexistent/xfstests (--xfstests) does not exist"
            ),
            "{err}"
        );
        for needle in [
            "git clone git://git.kernel.org/pub/scm/fs/xfs/xfstests-dev.git",
            "xfslibs-dev",
            "make -j$(nproc) && make install",
            "/var/lib/xfstests",
            "--xfstests DIR (or XFSTESTS_DIR)",
        ] {
            assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
        }
        let env = locate(None, Some(Path::new("/nonexistent/env"))).unwrap_err();
        assert!(
            env.to_string().contains("/nonexistent/env (XFSTESTS_DIR)"),
            "{env}"
        );
    }

    #[test]
    fn an_unbuilt_tree_is_refused() {
        let d = fake_install(false);
        let err = locate(Some(d.path()), None).unwrap_err().to_string();
        assert!(err.contains("is not built: no ltp/fsstress"), "{err}");
        std::fs::remove_file(d.path().join("check")).unwrap();
        let err = locate(Some(d.path()), None).unwrap_err().to_string();
        assert!(err.contains("has no `check` script"), "{err}");
        let d = fake_install(true);
        let i = locate(Some(d.path()), Some(Path::new("/ignored"))).unwrap();
        assert_eq!(i.dir, d.path().canonicalize().unwrap());
        // Rebuilding a program changes the version (and so the baseline key).
        let v = i.version.clone();
        std::fs::write(d.path().join("ltp/fsstress"), "rebuilt").unwrap();
        assert_ne!(locate(Some(d.path()), None).unwrap().version, v);
    }

    #[test]
    fn groups_resolve_like_check() {
        let d = fake_install(true);
        assert_eq!(
            group_tests(d.path(), "ext4", "quick").unwrap(),
            ["generic/001", "generic/003", "ext4/010"]
        );
        assert_eq!(
            group_tests(d.path(), "ext2", "auto").unwrap(),
            ["generic/001", "generic/002", "ext4/010"]
        );
        assert_eq!(
            group_tests(d.path(), "xfs", "auto").unwrap(),
            ["generic/001", "generic/002"]
        );
        assert_eq!(
            group_tests(d.path(), "ext4", "generic/rw").unwrap(),
            ["generic/001"]
        );
        assert!(group_tests(d.path(), "ext4", "nosuch").is_err());
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let t = select(
            root,
            d.path(),
            "ext4",
            &["quick".into()],
            &["generic/002".into()],
        )
        .unwrap();
        assert_eq!(t, ["generic/002", "generic/001", "generic/003", "ext4/010"]);
        let err = select(root, d.path(), "ext4", &[], &["generic/777".into()]).unwrap_err();
        assert!(
            err.to_string().starts_with("generic/777: no such test"),
            "{err}"
        );
    }
}
