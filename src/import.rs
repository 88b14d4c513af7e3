//! `zcsplice tree import`: a kernel tarball (or Debian's linux-source-X.Y)
//! becomes a git repository with one base commit, in the cache directory.

use anyhow::{bail, Context, Result};
use git2::{IndexAddOption, Repository, Signature};
use std::path::{Path, PathBuf};

use crate::tree::sanitize;

/// Where a Debian source package puts its tarball.
fn debian_tarball(series: &str) -> PathBuf {
    PathBuf::from(format!("/usr/src/linux-source-{series}.tar.xz"))
}

fn dpkg_version(pkg: &str) -> Option<String> {
    duct::cmd!("dpkg-query", "-W", "-f=${Version}", pkg)
        .stderr_null()
        .read()
        .ok()
        .filter(|v| !v.is_empty())
}

/// Installs linux-source-<series> with apt-get when its tarball is missing.
fn ensure_debian_source(series: &str) -> Result<PathBuf> {
    let tarball = debian_tarball(series);
    if tarball.exists() {
        return Ok(tarball);
    }
    let pkg = format!("linux-source-{series}");
    crate::deps::apt_install(&[&pkg])?;
    if !tarball.exists() {
        bail!("{pkg} is installed but {} is not there", tarball.display());
    }
    Ok(tarball)
}

/// Imports Debian's linux-source-<series> and returns the tree path.
pub fn debian(series: &str, cache: &Path) -> Result<PathBuf> {
    let tarball = ensure_debian_source(series)?;
    let pkg = format!("linux-source-{series}");
    let version = dpkg_version(&pkg).unwrap_or_else(|| "unknown".into());
    let dest = cache
        .join("trees")
        .join(sanitize(&format!("debian-{pkg}-{version}")));
    let marker = format!("Zcsplice-Import: debian {pkg} {version}");
    let message = format!(
        "Import Debian {pkg} {version}\n\nUnpacked from {} by zcsplice tree import.\n\n{marker}\n",
        tarball.display()
    );
    import(&tarball, &dest, &marker, &message)
}

/// Imports any kernel tarball and returns the tree path.
pub fn tarball(tarball: &Path, cache: &Path) -> Result<PathBuf> {
    let tarball = tarball
        .canonicalize()
        .with_context(|| format!("cannot read {}", tarball.display()))?;
    let size = std::fs::metadata(&tarball)?.len();
    let name = tarball.file_name().unwrap_or_default().to_string_lossy();
    let stem = name.split(".tar").next().unwrap_or(&name);
    let dest = cache
        .join("trees")
        .join(sanitize(&format!("{stem}-{size}")));
    let marker = format!("Zcsplice-Import: tarball {} size={size}", tarball.display());
    let message = format!("Import {name}\n\nUnpacked by zcsplice tree import.\n\n{marker}\n");
    import(&tarball, &dest, &marker, &message)
}

/// True when `dest` already holds this import (its root commit carries the marker).
fn already_imported(dest: &Path, marker: &str) -> bool {
    let Ok(repo) = Repository::open(dest) else {
        return false;
    };
    let Ok(mut walk) = repo.revwalk() else {
        return false;
    };
    if walk.push_glob("refs/heads/*").is_err() {
        return false;
    }
    let found = walk
        .filter_map(|id| id.ok())
        .filter_map(|id| repo.find_commit(id).ok())
        .filter(|c| c.parent_count() == 0)
        .any(|c| c.message().is_some_and(|m| m.lines().any(|l| l == marker)));
    found
}

fn import(tarball: &Path, dest: &Path, marker: &str, message: &str) -> Result<PathBuf> {
    if already_imported(dest, marker) {
        eprintln!("zcsplice: already imported ({marker})");
        return Ok(dest.to_path_buf());
    }
    if dest.exists() {
        bail!(
            "{} exists but is not this import; move it away or pass another --cache",
            dest.display()
        );
    }
    let parent = dest.parent().expect("dest has a parent");
    std::fs::create_dir_all(parent)?;
    // Unpack next to the destination and rename at the end, so that an
    // interrupted import never leaves a half tree under the final name.
    let tmp = parent.join(format!(
        ".{}.partial-{}",
        dest.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    let result = unpack_and_commit(tarball, &tmp, message);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, dest)?;
    Ok(dest.to_path_buf())
}

fn unpack_and_commit(tarball: &Path, tmp: &Path, message: &str) -> Result<()> {
    std::fs::create_dir_all(tmp)?;
    eprintln!("zcsplice: unpacking {}", tarball.display());
    duct::cmd!("tar", "-xf", tarball, "-C", tmp, "--strip-components=1")
        .run()
        .with_context(|| format!("tar could not unpack {}", tarball.display()))?;
    if !tmp.join("Makefile").exists() || !tmp.join("include/linux").is_dir() {
        bail!(
            "{} does not look like a kernel source tarball",
            tarball.display()
        );
    }
    eprintln!("zcsplice: committing the base tree");
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
