//! A kernel tree: a git repository and the base commit the series renders on.

pub mod debian;
pub mod import;

use anyhow::{anyhow, bail, Context, Result};
use git2::{Oid, Repository, StatusOptions};
use std::path::{Path, PathBuf};

/// Per-branch git config key that records the base a zcsplice branch was
/// built on, so that later commands run from that branch find it again.
pub const BASE_KEY: &str = "zcspliceBase";

/// The ref that records the same base where it travels with the branch:
/// `git push`/`fetch` can carry refs/zcsplice/*, .git/config does not.
pub fn base_ref(branch: &str) -> String {
    format!("refs/zcsplice/base/{branch}")
}

/// The recorded base of `branch`: the git config entry, else the ref
/// (a clone or fetch of the branch brings the ref only).
pub fn base_of_branch(repo: &Repository, branch: &str) -> Result<Option<Oid>> {
    let key = format!("branch.{branch}.{BASE_KEY}");
    if let Ok(s) = repo.config()?.get_string(&key) {
        return Ok(Some(
            Oid::from_str(&s).with_context(|| format!("bad {key} in git config"))?,
        ));
    }
    Ok(repo
        .find_reference(&base_ref(branch))
        .ok()
        .and_then(|r| r.target()))
}

/// Which tree, and (optionally) which commit the series renders on.
#[derive(Debug, Clone, Default)]
pub struct TreeSpec {
    pub path: PathBuf,
    /// A revision; None: the recorded base of the checked-out zcsplice
    /// branch, else HEAD.
    pub base: Option<String>,
}

pub struct Tree {
    pub path: PathBuf,
    pub repo: Repository,
    pub base: Oid,
}

impl Tree {
    /// Opens the tree. The base is `base` if given; else the recorded base
    /// of the checked-out zcsplice branch; else HEAD.
    pub fn open(path: &Path, base: Option<&str>) -> Result<Tree> {
        let repo = Repository::open(path).map_err(|e| {
            anyhow!(
                "{} is not a git repository ({}); `zcsplice tree import` makes one",
                path.display(),
                e.message()
            )
        })?;
        if repo.is_bare() {
            bail!(
                "{}: bare repositories have no work tree to build",
                path.display()
            );
        }
        let base = match base {
            Some(rev) => repo
                .revparse_single(rev)
                .and_then(|o| o.peel_to_commit())
                .with_context(|| format!("--base {rev}: no such commit in {}", path.display()))?
                .id(),
            None => recorded_base(&repo)?.map_or_else(|| head_commit(&repo), Ok)?,
        };
        Ok(Tree {
            path: path.to_path_buf(),
            repo,
            base,
        })
    }

    /// A file's content at the base commit, or None if it does not exist there.
    pub fn read(&self, file: &str) -> Result<Option<String>> {
        let tree = self.repo.find_commit(self.base)?.tree()?;
        let entry = match tree.get_path(Path::new(file)) {
            Ok(e) => e,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let blob = entry
            .to_object(&self.repo)?
            .into_blob()
            .map_err(|_| anyhow!("{file}: not a regular file at the base commit"))?;
        let text = String::from_utf8(blob.content().to_vec())
            .map_err(|_| anyhow!("{file}: not UTF-8 at the base commit"))?;
        Ok(Some(text))
    }
}

/// Modified, staged or deleted tracked files (untracked files are left alone;
/// a checkout that would overwrite one fails and is rolled back).
pub fn dirty_files(repo: &Repository) -> Result<Vec<String>> {
    let mut o = StatusOptions::new();
    o.include_untracked(false)
        .include_ignored(false)
        .exclude_submodules(true);
    let st = repo.statuses(Some(&mut o))?;
    Ok(st
        .iter()
        .filter_map(|e| e.path().map(str::to_string))
        .collect())
}

/// A path component made from a name (a branch, a package version).
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn head_commit(repo: &Repository) -> Result<Oid> {
    Ok(repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .context("the tree has no commit checked out")?
        .id())
}

fn recorded_base(repo: &Repository) -> Result<Option<Oid>> {
    let head = match repo.head() {
        Ok(h) if h.is_branch() => h,
        _ => return Ok(None),
    };
    let Some(branch) = head.shorthand() else {
        return Ok(None);
    };
    base_of_branch(repo, branch)
}
