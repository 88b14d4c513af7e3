//! `zcsplice tree import`: a kernel tarball (or Debian's linux-source-X.Y)
//! becomes a git repository with one base commit, in the cache directory;
//! `zcsplice tree list`: the trees imported so far.
//!
//! Each import gets a directory of its own, named after the package version
//! (or the tarball), so a new Debian release is imported beside the older
//! ones. The base commit's message carries a `Zcsplice-Import:` line that
//! says what was imported; a directory whose root commit lacks it is never
//! taken for an import.

use anyhow::{bail, Context, Result};
use git2::{IndexAddOption, Repository, Signature};
use serde::Serialize;
use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::procs;
use crate::tree::debian::{self, debian_cmp};
use crate::tree::sanitize;

pub use crate::tree::debian::DebianSpec;

/// The trailer of an import's base commit.
const MARKER: &str = "Zcsplice-Import:";

/// Where an imported tree came from.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    Debian { package: String, version: String },
    Tarball { path: String },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Debian { package, version } => write!(f, "Debian {package} {version}"),
            Source::Tarball { path } => write!(f, "tarball {path}"),
        }
    }
}

/// A tree in `<cache>/trees`.
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    pub path: PathBuf,
    /// The kernel version of its Makefile ("6.12.118").
    pub version: String,
    pub source: Source,
    /// The newest import of its X.Y series in the cache.
    pub newest: bool,
}

impl Imported {
    /// "6.12" of "6.12.118".
    pub fn series(&self) -> String {
        self.version
            .split('.')
            .take(2)
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// What an import did.
pub struct Import {
    pub tree: Imported,
    /// False when the cache already held this import.
    pub fresh: bool,
    /// The other imports of the same series in the cache, newest first.
    pub others: Vec<Imported>,
}

/// Imports Debian's linux-source-<series>: the installed package (installed
/// with apt-get when missing), or the version the spec names, from
/// whichever Debian suite carries it.
pub fn debian(spec: &DebianSpec, cache: &Path) -> Result<Import> {
    let w = Wanted::debian(spec, cache)?;
    import(&w, cache)
}

/// Imports any kernel tarball.
pub fn tarball(tarball: &Path, cache: &Path) -> Result<Import> {
    let w = Wanted::tarball(tarball)?;
    import(&w, cache)
}

/// A source to import: its tarball, the directory a tree of its own
/// gets, and its commit's marker line and message.
struct Wanted {
    tarball: PathBuf,
    /// The name of its own tree in <cache>/trees.
    name: String,
    marker: String,
    message: String,
    /// "7.2.9-1~bpo13+1", or the tarball's name.
    label: String,
}

impl Wanted {
    fn debian(spec: &DebianSpec, cache: &Path) -> Result<Wanted> {
        let src = debian::fetch(spec, cache)?;
        let (pkg, version) = (&src.package, &src.version);
        let marker = format!("{MARKER} debian {pkg} {version}");
        Ok(Wanted {
            message: format!(
                "Import Debian {pkg} {version}\n\nUnpacked from {} ({}) by zcsplice tree import.\n\n{marker}\n",
                src.tarball.display(),
                src.suite
            ),
            name: sanitize(&format!("debian-{pkg}-{version}")),
            marker,
            label: version.clone(),
            tarball: src.tarball,
        })
    }

    fn tarball(tarball: &Path) -> Result<Wanted> {
        let tarball = tarball
            .canonicalize()
            .with_context(|| format!("cannot read {}", tarball.display()))?;
        let size = std::fs::metadata(&tarball)?.len();
        let name = tarball
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let stem = name.split(".tar").next().unwrap_or(&name);
        let marker = format!("{MARKER} tarball {} size={size}", tarball.display());
        Ok(Wanted {
            message: format!("Import {name}\n\nUnpacked by zcsplice tree import.\n\n{marker}\n"),
            name: sanitize(&format!("{stem}-{size}")),
            marker,
            label: name.clone(),
            tarball,
        })
    }
}

/// `tree import --onto TREE`: the source as the next commit of TREE's
/// import line (the branch whose tip an import made), so that several
/// releases make one linear history to bisect. TREE must be clean; its
/// checkout follows when it is on that branch. Importing a release the
/// line has already is a no-op. Returns the new (or existing) commit.
pub fn onto(
    debian: Option<&DebianSpec>,
    tarball: Option<&Path>,
    tree: &Path,
    cache: &Path,
) -> Result<String> {
    let w = match (debian, tarball) {
        (Some(d), _) => Wanted::debian(d, cache)?,
        (None, Some(t)) => Wanted::tarball(t)?,
        (None, None) => bail!("--onto needs --debian or a tarball"),
    };
    let repo = Repository::open(tree)
        .with_context(|| format!("--onto {}: not a git repository", tree.display()))?;
    let (branch, tip) = import_line(&repo).with_context(|| {
        format!(
            "--onto {}: no branch ends at a `tree import` commit",
            tree.display()
        )
    })?;
    let mut c = repo.find_commit(tip)?;
    loop {
        if marker_line(&c).as_deref() == Some(w.marker.as_str()) {
            log::info!("{} is on {branch} already: {}", w.label, c.id());
            return Ok(c.id().to_string());
        }
        match c.parent(0) {
            Ok(p) => c = p,
            Err(_) => break,
        }
    }
    let dirty = crate::tree::dirty_files(&repo)?;
    if !dirty.is_empty() {
        bail!(
            "--onto {}: {} files are modified ({}); commit or stash them first",
            tree.display(),
            dirty.len(),
            dirty.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let parent = cache.join("trees");
    std::fs::create_dir_all(&parent)?;
    sweep_partials(&parent);
    let tmp = parent.join(format!(
        ".onto-{}{}",
        w.name,
        partial_suffix(std::process::id())
    ));
    *partial() = Some(tmp.clone());
    let made =
        unpack(&w.tarball, &tmp).and_then(|()| commit_onto(tree, &tmp, &branch, tip, &w.message));
    if partial().take().is_some() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let new = made?;
    let head_on_line = repo
        .head()
        .ok()
        .and_then(|h| h.shorthand().map(str::to_string))
        == Some(branch.clone());
    if head_on_line {
        // Clean before, so nothing of the user's is lost.
        duct::cmd!("git", "-C", tree, "reset", "-q", "--hard", &new)
            .run()
            .context("cannot check out the new import")?;
    }
    log::info!(
        "{}: {} on {branch} ({} files changed)",
        w.label,
        &new[..12],
        changed(tree, tip, &new)
    );
    Ok(new)
}

/// The branch whose tip is an import commit, and that tip.
fn import_line(repo: &Repository) -> Option<(String, git2::Oid)> {
    let mut found = repo
        .branches(Some(git2::BranchType::Local))
        .ok()?
        .filter_map(|b| b.ok())
        .filter_map(|(b, _)| {
            let c = b.get().peel_to_commit().ok()?;
            marker_line(&c)?;
            Some((b.name().ok()??.to_string(), c.id()))
        });
    found.next()
}

/// How many files differ between two commits.
fn changed(tree: &Path, a: git2::Oid, b: &str) -> usize {
    duct::cmd!("git", "-C", tree, "diff", "--name-only", a.to_string(), b)
        .read()
        .map(|o| o.lines().count())
        .unwrap_or(0)
}

/// Commits the files of `dir` onto `tip` of `branch` in `tree`, through a
/// scratch index (the tree's own index and checkout are not used), and
/// moves the branch only if it is still at `tip`.
fn commit_onto(
    tree: &Path,
    dir: &Path,
    branch: &str,
    tip: git2::Oid,
    message: &str,
) -> Result<String> {
    log::info!("committing it onto {branch}");
    let git_dir = Repository::open(tree)?.path().to_path_buf();
    let index = PathBuf::from(format!("{}.index", dir.display()));
    let git = |args: &[&str]| {
        let mut all = vec![
            "--git-dir",
            git_dir.to_str().unwrap(),
            "--work-tree",
            dir.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        duct::cmd("git", &all)
            .env("GIT_INDEX_FILE", &index)
            .env("GIT_AUTHOR_NAME", "zcsplice")
            .env("GIT_AUTHOR_EMAIL", "zcsplice@localhost")
            .env("GIT_COMMITTER_NAME", "zcsplice")
            .env("GIT_COMMITTER_EMAIL", "zcsplice@localhost")
            .stderr_capture()
            .read()
    };
    let made = (|| -> Result<String> {
        // -f: the tarball's own .gitignore files must not drop shipped files.
        git(&["add", "-A", "-f"])?;
        let t = git(&["write-tree"])?;
        let c = git(&[
            "commit-tree",
            t.trim(),
            "-p",
            &tip.to_string(),
            "-m",
            message,
        ])?;
        let c = c.trim().to_string();
        git(&[
            "update-ref",
            &format!("refs/heads/{branch}"),
            &c,
            &tip.to_string(),
        ])?;
        Ok(c)
    })();
    let _ = std::fs::remove_file(&index);
    made
}

/// The `Zcsplice-Import:` line of `c`'s message: `tree import` made it.
pub fn marker_line(c: &git2::Commit) -> Option<String> {
    c.message()?
        .lines()
        .find(|l| l.starts_with(MARKER))
        .map(str::to_string)
}

/// The import marker line of the tree's root commit, if it has one.
fn marker_of(dest: &Path) -> Option<(String, String)> {
    let repo = Repository::open(dest).ok()?;
    let mut walk = repo.revwalk().ok()?;
    walk.push_glob("refs/heads/*").ok()?;
    let found = walk
        .filter_map(|id| id.ok())
        .filter_map(|id| repo.find_commit(id).ok())
        .filter(|c| c.parent_count() == 0)
        .find_map(|c| {
            let line = marker_line(&c)?;
            let makefile = c.tree().ok()?.get_path(Path::new("Makefile")).ok()?;
            let blob = makefile.to_object(&repo).ok()?.into_blob().ok()?;
            let text = String::from_utf8_lossy(blob.content()).to_string();
            Some((line, text))
        });
    found
}

fn describe(path: &Path, marker: &str, makefile: &str) -> Option<Imported> {
    let (_, version) = crate::series::probe::kernel_version(makefile).ok()?;
    let rest = marker.strip_prefix(MARKER)?.trim();
    let source = match rest.split_whitespace().collect::<Vec<_>>()[..] {
        ["debian", package, version, ..] => Source::Debian {
            package: package.into(),
            version: version.into(),
        },
        ["tarball", ..] => Source::Tarball {
            path: rest["tarball".len()..]
                .trim()
                .rsplit_once(" size=")
                .map_or(rest, |(p, _)| p)
                .to_string(),
        },
        _ => return None,
    };
    Some(Imported {
        path: path.to_path_buf(),
        version,
        source,
        newest: false,
    })
}

/// Newer first: the kernel version, then Debian's order of package versions.
fn newer_first(a: &Imported, b: &Imported) -> Ordering {
    let num = |v: &str| -> Vec<u64> {
        v.split(|c: char| !c.is_ascii_digit())
            .take(3)
            .map(|n| n.parse().unwrap_or(0))
            .collect()
    };
    num(&b.version)
        .cmp(&num(&a.version))
        .then_with(|| match (&a.source, &b.source) {
            (Source::Debian { version: va, .. }, Source::Debian { version: vb, .. }) => {
                debian_cmp(vb, va)
            }
            _ => Ordering::Equal,
        })
}

/// Every import in the cache, grouped by X.Y series (newest series first),
/// newest release first within a series, the first of each marked newest.
pub fn list(cache: &Path) -> Result<Vec<Imported>> {
    let dir = cache.join("trees");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(vec![]);
    };
    let mut trees: Vec<Imported> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .starts_with('.')
        })
        .filter_map(|p| {
            let (marker, makefile) = marker_of(&p)?;
            describe(&p, &marker, &makefile)
        })
        .collect();
    trees.sort_by(newer_first);
    let mut seen = std::collections::BTreeSet::new();
    for t in &mut trees {
        t.newest = seen.insert(t.series());
    }
    Ok(trees)
}

/// The partial directory an import is unpacking into now, for the signal
/// handler (which ends the process without running destructors).
static PARTIAL: Mutex<Option<PathBuf>> = Mutex::new(None);

fn partial() -> std::sync::MutexGuard<'static, Option<PathBuf>> {
    PARTIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// For the signal handler, once tar is dead: removes the half-imported
/// tree; true if there was one.
pub fn remove_partial() -> bool {
    match partial().take() {
        Some(p) => {
            let _ = std::fs::remove_dir_all(&p);
            true
        }
        None => false,
    }
}

/// The suffix of a partial directory made by process `pid`.
fn partial_suffix(pid: u32) -> String {
    format!(".partial-{pid}")
}

/// Removes partial directories left by imports that died without their
/// handler (SIGKILL, a crash): their process is gone.
fn sweep_partials(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for p in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let Some((_, pid)) = name.rsplit_once(".partial-") else {
            continue;
        };
        let dead = pid
            .parse::<u32>()
            .is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        if name.starts_with('.') && dead {
            log::info!("removing {} (an interrupted import)", p.display());
            let _ = std::fs::remove_dir_all(&p);
        }
    }
}

fn import(w: &Wanted, cache: &Path) -> Result<Import> {
    let (tarball, marker, message) = (&w.tarball, w.marker.as_str(), &w.message);
    let dest = cache.join("trees").join(&w.name);
    let dest = dest.as_path();
    let parent = dest.parent().expect("dest has a parent");
    sweep_partials(parent);
    let fresh = match marker_of(dest) {
        Some((m, _)) if m == marker => false,
        _ if dest.exists() => bail!(
            "{} exists but is not this import; move it away or pass another --cache",
            dest.display()
        ),
        _ => {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
            // Unpack next to the destination and rename at the end, so that an
            // interrupted import never leaves a half tree under the final name.
            let tmp = parent.join(format!(
                ".{}{}",
                dest.file_name().unwrap().to_string_lossy(),
                partial_suffix(std::process::id())
            ));
            *partial() = Some(tmp.clone());
            let result = unpack_and_commit(tarball, &tmp, message)
                .and_then(|()| Ok(std::fs::rename(&tmp, dest)?));
            if partial().take().is_some() && result.is_err() {
                let _ = std::fs::remove_dir_all(&tmp);
            }
            result?;
            true
        }
    };
    let all = list(cache)?;
    let tree = all
        .iter()
        .find(|t| t.path == dest)
        .cloned()
        .with_context(|| {
            format!(
                "{}: imported, but its Makefile has no kernel version",
                dest.display()
            )
        })?;
    let others: Vec<Imported> = all
        .into_iter()
        .filter(|t| t.path != dest && t.series() == tree.series())
        .collect();
    let what = if fresh {
        "imported"
    } else {
        "already imported"
    };
    log::info!("{what}: {} ({})", tree.source, tree.version);
    for o in &others {
        log::info!(
            "also in the cache: {} ({}){}: {}",
            o.source,
            o.version,
            if o.newest { ", the newest" } else { "" },
            o.path.display()
        );
    }
    Ok(Import {
        tree,
        fresh,
        others,
    })
}

fn unpack_and_commit(tarball: &Path, tmp: &Path, message: &str) -> Result<()> {
    unpack(tarball, tmp)?;
    log::info!("committing the base tree");
    let repo = Repository::init(tmp)?;
    let mut index = repo.index()?;
    // FORCE: the tarball's own .gitignore files must not drop shipped files.
    index.add_all(["*"], IndexAddOption::FORCE, None)?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let sig = Signature::now("zcsplice", "zcsplice@localhost")?;
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &[])?;
    Ok(())
}

/// A kernel tarball's files into `tmp`, its top directory stripped.
fn unpack(tarball: &Path, tmp: &Path) -> Result<()> {
    std::fs::create_dir_all(tmp)?;
    log::info!("unpacking {}", tarball.display());
    let tar = duct::cmd!("tar", "-xf", tarball, "-C", tmp, "--strip-components=1");
    let (h, _group) = procs::start_duct(procs::Kind::Tool("tar"), tar)?;
    let waited = h.wait();
    if procs::stopping() {
        procs::halt();
    }
    waited.with_context(|| format!("tar could not unpack {}", tarball.display()))?;
    if !tmp.join("Makefile").exists() || !tmp.join("include/linux").is_dir() {
        bail!(
            "{} does not look like a kernel source tarball",
            tarball.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_say_where_a_tree_came_from() {
        let mk = "VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 118\nEXTRAVERSION =\n";
        let t = describe(
            Path::new("/c/trees/x"),
            "Zcsplice-Import: debian linux-source-6.12 6.12.118-1~deb12u1",
            mk,
        )
        .unwrap();
        assert_eq!(t.version, "6.12.118");
        assert_eq!(t.series(), "6.12");
        assert_eq!(
            t.source,
            Source::Debian {
                package: "linux-source-6.12".into(),
                version: "6.12.118-1~deb12u1".into()
            }
        );
        let t = describe(
            Path::new("/c/trees/y"),
            "Zcsplice-Import: tarball /tmp/a b/linux-6.1.tar.xz size=42",
            "VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\n",
        )
        .unwrap();
        assert_eq!(
            t.source,
            Source::Tarball {
                path: "/tmp/a b/linux-6.1.tar.xz".into()
            }
        );
        assert!(describe(Path::new("/x"), "Zcsplice-Import: nonsense", mk).is_none());
    }

    #[test]
    fn releases_sort_newest_first_within_a_series() {
        let t = |v: &str, deb: &str| Imported {
            path: PathBuf::from(v),
            version: v.into(),
            source: Source::Debian {
                package: "p".into(),
                version: deb.into(),
            },
            newest: false,
        };
        let mut v = [
            t("6.12.9", "6.12.9-1"),
            t("6.12.117", "6.12.117-1"),
            t("6.1.192", "6.1.192-2"),
            t("6.12.118", "6.12.118-1"),
        ];
        v.sort_by(newer_first);
        let order: Vec<&str> = v.iter().map(|t| t.version.as_str()).collect();
        assert_eq!(order, ["6.12.118", "6.12.117", "6.12.9", "6.1.192"]);
        // Same release, later Debian revision (dpkg's order: ~ sorts first).
        let mut v = [t("6.1.192", "6.1.192-2"), t("6.1.192", "6.1.192-3")];
        v.sort_by(newer_first);
        assert_eq!(
            v[0].source,
            Source::Debian {
                package: "p".into(),
                version: "6.1.192-3".into()
            }
        );
    }

    #[test]
    fn stale_partials_of_dead_imports_are_swept() {
        let d = tempfile::tempdir().unwrap();
        // pid_max is at most 2^22: this pid never exists.
        let dead = d.path().join(".debian-x.partial-99999999");
        let live = d
            .path()
            .join(format!(".debian-y{}", partial_suffix(std::process::id())));
        let tree = d.path().join("debian-z");
        for p in [&dead, &live, &tree] {
            std::fs::create_dir_all(p).unwrap();
        }
        sweep_partials(d.path());
        assert!(!dead.exists());
        assert!(live.exists() && tree.exists());
    }
}
