//! `zcsplice apply`: the rendered commits become branch B, checked out.
//! Nothing the user has is lost: a dirty tree is refused, and any failure
//! puts HEAD, the branch, the index and the work tree back as they were.

use anyhow::{anyhow, bail, Context, Result};
use git2::{build::CheckoutBuilder, BranchType, Oid, Repository};

use crate::series::render::Rendered;
use crate::tree::{base_ref, dirty_files, Tree, BASE_KEY};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    UpToDate,
    Created,
    Rebuilt { old: Oid },
}

pub fn apply(tree: &Tree, rendered: &Rendered, branch: &str, force: bool) -> Result<Outcome> {
    let repo = &tree.repo;
    let tip = rendered.tip();
    let existing = match repo.find_branch(branch, BranchType::Local) {
        Ok(b) => Some(b.get().peel_to_commit()?.id()),
        Err(e) if e.code() == git2::ErrorCode::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let head_ref = repo.head().ok().and_then(|h| h.name().map(str::to_string));
    let on_branch = head_ref.as_deref() == Some(&format!("refs/heads/{branch}"));
    if existing == Some(tip) && on_branch {
        return Ok(Outcome::UpToDate);
    }
    if let Some(old) = existing {
        if old != tip && !force {
            bail!(
                "branch {branch} exists at {} and differs from the rendered series ({}); \
                 --force rebuilds it (the old tip stays in the reflog)",
                short(old),
                short(tip)
            );
        }
    }
    let dirty = dirty_files(repo)?;
    if !dirty.is_empty() {
        let shown: Vec<&str> = dirty.iter().take(10).map(String::as_str).collect();
        bail!(
            "{} has uncommitted changes ({} files: {}{}); commit or stash them first",
            tree.path.display(),
            dirty.len(),
            shown.join(", "),
            if dirty.len() > 10 { ", ..." } else { "" }
        );
    }
    let saved = Saved::take(repo, branch)?;
    match switch(repo, branch, tip, tree.base) {
        Ok(()) => Ok(match existing {
            None => Outcome::Created,
            Some(old) if old == tip => Outcome::UpToDate,
            Some(old) => Outcome::Rebuilt { old },
        }),
        Err(e) => {
            let restored = saved.restore(repo, branch);
            match restored {
                Ok(()) => Err(e.context("apply failed; the repository is as it was")),
                Err(r) => Err(e.context(format!("apply failed, and restoring failed too: {r:#}"))),
            }
        }
    }
}

fn short(id: Oid) -> String {
    id.to_string()[..12].to_string()
}

/// Points the branch at the tip, checks out what differs, moves HEAD.
fn switch(repo: &Repository, branch: &str, tip: Oid, base: Oid) -> Result<()> {
    let head_tree = repo.head()?.peel_to_tree()?;
    let target = repo.find_commit(tip)?;
    let target_tree = target.tree()?;
    // Only the paths that differ: a whole-tree checkout of a kernel is slow.
    let d = repo.diff_tree_to_tree(Some(&head_tree), Some(&target_tree), None)?;
    let mut co = CheckoutBuilder::new();
    co.safe();
    let mut any = false;
    for delta in d.deltas() {
        for f in [delta.old_file().path(), delta.new_file().path()]
            .into_iter()
            .flatten()
        {
            co.path(f);
            any = true;
        }
    }
    if any {
        repo.checkout_tree(target.as_object(), Some(&mut co))
            .context("checkout of the series failed")?;
    }
    // The ref moves after the checkout: with HEAD on this branch, moving it
    // first would make the checkout compare against the target itself.
    let refname = format!("refs/heads/{branch}");
    repo.reference(&refname, tip, true, "zcsplice apply")
        .with_context(|| format!("cannot write {refname}"))?;
    repo.config()?
        .set_str(&format!("branch.{branch}.{BASE_KEY}"), &base.to_string())?;
    repo.reference(&base_ref(branch), base, true, "zcsplice apply: base")?;
    repo.set_head(&refname)?;
    Ok(())
}

/// What `apply` may change, saved so that a failure can undo it.
struct Saved {
    head_ref: Option<String>,
    head_commit: Oid,
    branch_tip: Option<Oid>,
    base_cfg: Option<String>,
    base_ref: Option<Oid>,
}

impl Saved {
    fn take(repo: &Repository, branch: &str) -> Result<Saved> {
        let head = repo.head()?;
        let branch_tip = repo
            .find_branch(branch, BranchType::Local)
            .ok()
            .and_then(|b| b.get().target());
        let base_cfg = repo
            .config()?
            .get_string(&format!("branch.{branch}.{BASE_KEY}"))
            .ok();
        let base_ref = repo
            .find_reference(&base_ref(branch))
            .ok()
            .and_then(|r| r.target());
        Ok(Saved {
            head_ref: head
                .is_branch()
                .then(|| head.name().unwrap_or_default().to_string()),
            head_commit: head.peel_to_commit()?.id(),
            branch_tip,
            base_cfg,
            base_ref,
        })
    }

    fn restore(&self, repo: &Repository, branch: &str) -> Result<()> {
        let refname = format!("refs/heads/{branch}");
        // Work tree and index first, while HEAD still names what they should match.
        let commit = repo.find_commit(self.head_commit)?;
        let now = repo.index()?.write_tree_to(repo).ok();
        let mut co = CheckoutBuilder::new();
        co.force();
        if let Some(now_tree) = now.and_then(|t| repo.find_tree(t).ok()) {
            let d = repo.diff_tree_to_tree(Some(&commit.tree()?), Some(&now_tree), None)?;
            for delta in d.deltas() {
                for f in [delta.old_file().path(), delta.new_file().path()]
                    .into_iter()
                    .flatten()
                {
                    co.path(f);
                }
            }
            if d.deltas().len() > 0 {
                repo.checkout_tree(commit.as_object(), Some(&mut co))?;
            }
        }
        match &self.head_ref {
            Some(r) => repo.set_head(r)?,
            None => repo.set_head_detached(self.head_commit)?,
        }
        match self.branch_tip {
            Some(t) => {
                repo.reference(&refname, t, true, "zcsplice apply: rollback")?;
            }
            None => {
                if let Ok(mut r) = repo.find_reference(&refname) {
                    r.delete()?;
                }
            }
        }
        let key = format!("branch.{branch}.{BASE_KEY}");
        let mut cfg = repo.config()?;
        match &self.base_cfg {
            Some(v) => cfg.set_str(&key, v)?,
            None => {
                let _ = cfg.remove(&key);
            }
        }
        match self.base_ref {
            Some(t) => {
                repo.reference(&base_ref(branch), t, true, "zcsplice apply: rollback")?;
            }
            None => {
                if let Ok(mut r) = repo.find_reference(&base_ref(branch)) {
                    r.delete()?;
                }
            }
        }
        if repo.head()?.peel_to_commit()?.id() != self.head_commit {
            return Err(anyhow!("HEAD did not come back to {}", self.head_commit));
        }
        Ok(())
    }
}
/// What `apply` did: the typed result later stages take.
#[derive(Debug, Clone)]
pub struct Applied {
    pub branch: String,
    pub base: Oid,
    pub tip: Oid,
    /// How many patches: "12", or "12 + 1 testing".
    pub count: String,
    /// How many of the commits at the tip are testing patches.
    pub testing: usize,
    pub outcome: Outcome,
    /// The kernel version the series was probed on ("6.12.118").
    pub version: String,
}

impl std::fmt::Display for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (branch, n, tip) = (&self.branch, &self.count, self.tip);
        match self.outcome {
            Outcome::UpToDate => write!(f, "{branch} is up to date ({n} patches, {tip})"),
            Outcome::Created => write!(f, "{branch}: {n} patches applied, at {tip}"),
            Outcome::Rebuilt { old } => {
                write!(
                    f,
                    "{branch}: rebuilt with {n} patches, at {tip} (was {old})"
                )
            }
        }
    }
}

/// Whether the testing patches (series.yaml `testing`) go on top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Testing {
    With,
    /// The series alone: a testing patch that does not apply here cannot
    /// make a tree untestable for a run that does not need it.
    Without,
}

/// Renders the series for `spec` and commits it as `branch` [default:
/// zcsplice/<version>], checked out; `apply` keeps the user's work safe.
/// A series that does not render or apply here is untestable (exit 125).
pub fn apply_series(
    env: &crate::env::Env,
    spec: &crate::tree::TreeSpec,
    branch: Option<&str>,
    force: bool,
    testing: Testing,
) -> Result<Applied> {
    let mut l = crate::series::load(env, spec)?;
    if testing == Testing::Without {
        l.series.testing.clear();
    }
    let r = crate::series::render::render(&l.series, &l.tree, &l.probed)
        .map_err(crate::exit::untestable)?;
    let branch = branch.map_or_else(|| format!("zcsplice/{}", l.probed.version), str::to_string);
    let outcome = apply(&l.tree, &r, &branch, force).map_err(crate::exit::untestable)?;
    Ok(Applied {
        branch,
        base: r.base,
        tip: r.tip(),
        count: r.count(),
        testing: r.testing.len(),
        outcome,
        version: l.probed.version,
    })
}
