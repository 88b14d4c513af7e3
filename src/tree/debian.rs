//! Debian's linux-source-X.Y packages: which versions the archive has, in
//! which suite, and the tarball of one of them.
//!
//! The machine's own apt sources come first: a package they carry is
//! installed as usual. Newer kernels live in suites the machine does not
//! use (trixie-backports, sid): those are read through a private apt
//! state in the cache, with its own sources list and lists directory, so
//! the machine's apt configuration never changes. apt still checks the
//! archive's signatures, with the machine's keyring.

use anyhow::{bail, Context, Result};
use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::procs;
use crate::tree::sanitize;

/// The suites the private state reads (`deb` lines: URI, suite). Every
/// Debian release a kernel developer may want, old to new.
const SUITES: &[(&str, &str)] = &[
    ("http://deb.debian.org/debian", "bookworm"),
    ("http://deb.debian.org/debian-security", "bookworm-security"),
    ("http://deb.debian.org/debian", "bookworm-backports"),
    ("http://deb.debian.org/debian", "trixie"),
    ("http://deb.debian.org/debian-security", "trixie-security"),
    ("http://deb.debian.org/debian", "trixie-backports"),
    ("http://deb.debian.org/debian", "sid"),
    ("http://deb.debian.org/debian", "experimental"),
];

/// The keyring that signs every suite above.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The private lists are read again after this long.
const STALE: Duration = Duration::from_secs(24 * 3600);

/// What `--debian` asks for: a source series ("6.12") and, optionally, an
/// exact package version ("6.12=6.12.117-1~deb12u1") or upstream release
/// ("6.12=6.12.117": its newest Debian revision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianSpec {
    pub series: String,
    pub version: Option<String>,
}

impl std::str::FromStr for DebianSpec {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let (series, version) = match s.split_once('=') {
            Some((a, b)) => (a, Some(b.to_string())),
            None => (s, None),
        };
        let ok = {
            let mut parts = series.split('.');
            let num = |p: Option<&str>| {
                p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            };
            num(parts.next()) && num(parts.next()) && parts.next().is_none()
        };
        if !ok || version.as_deref() == Some("") {
            bail!("`{s}`: expected X.Y (e.g. 6.12) or X.Y=VERSION (e.g. 6.12=6.12.117-1~deb12u1)");
        }
        Ok(DebianSpec {
            series: series.to_string(),
            version,
        })
    }
}

impl DebianSpec {
    pub fn package(&self) -> String {
        format!("linux-source-{}", self.series)
    }
}

/// One version of a package that apt can fetch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Candidate {
    pub version: String,
    /// The suite that carries it ("trixie-backports"), as apt names it.
    pub suite: String,
}

/// The versions of one series' package, newest first.
#[derive(Debug, serde::Serialize)]
pub struct Offer {
    pub series: String,
    pub versions: Vec<Candidate>,
}

/// A package's tarball, ready to import.
#[derive(Debug)]
pub struct Source {
    pub package: String,
    pub version: String,
    /// Where it came from: a suite, or "installed".
    pub suite: String,
    pub tarball: PathBuf,
}

/// Which apt: the machine's, or the private state in the cache.
enum Apt {
    System,
    Private(PathBuf),
}

impl Apt {
    /// apt's options for this state (none for the machine's own).
    fn options(&self) -> Vec<String> {
        let Apt::Private(root) = self else {
            return Vec::new();
        };
        let mut o = Vec::new();
        for (k, v) in [
            ("Dir::Etc::SourceList", root.join("sources.list")),
            ("Dir::Etc::SourceParts", PathBuf::from("/dev/null")),
            ("Dir::State::Lists", root.join("lists")),
            ("Dir::Cache", root.join("cache")),
        ] {
            o.extend(["-o".to_string(), format!("{k}={}", v.display())]);
        }
        o
    }

    /// The versions of `pkg` this apt can fetch, newest first. apt-cache
    /// failing is an error of its own, never "Debian has none".
    fn candidates(&self, pkg: &str) -> Result<Vec<Candidate>> {
        let mut args = self.options();
        args.extend(["madison".to_string(), pkg.to_string()]);
        let out = duct::cmd("apt-cache", &args)
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .context("cannot run apt-cache")?;
        // madison exits 0 and prints nothing for an unknown package; an
        // E: line means it could not read its lists.
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || err.lines().any(|l| l.starts_with("E:")) {
            bail!(
                "apt-cache madison {pkg} ({}) failed: {}",
                self.name(),
                err.trim()
            );
        }
        Ok(parse_madison(&String::from_utf8_lossy(&out.stdout)))
    }

    fn name(&self) -> String {
        match self {
            Apt::System => "this machine's apt".into(),
            Apt::Private(root) => format!("the private lists in {}", root.display()),
        }
    }
}

/// Each suite of the private lists and the `Date:` of the index read for
/// it (None: no index), to tell an old mirror from a missing package.
fn list_dates(root: &Path) -> Vec<(&'static str, Option<String>)> {
    SUITES
        .iter()
        .map(|(uri, suite)| {
            let host_path = uri.split_once("://").map_or(*uri, |x| x.1);
            let file = format!("{}_dists_{suite}_InRelease", host_path.replace('/', "_"));
            let date = std::fs::read_to_string(root.join("lists").join(file))
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("Date:").map(|d| d.trim().to_string()))
                });
            (*suite, date)
        })
        .collect()
}

/// Why the private lists may lack a package: the date of every index.
fn lists_read(root: &Path) -> String {
    let dates: Vec<String> = list_dates(root)
        .into_iter()
        .map(|(s, d)| format!("{s}: {}", d.unwrap_or_else(|| "no index".into())))
        .collect();
    format!(
        "the lists in {} are dated {}",
        root.join("lists").display(),
        dates.join("; ")
    )
}

/// `apt-cache madison` lines ("pkg | version | URI suite/component arch
/// Packages"): each version once, in apt's order (newest first).
fn parse_madison(out: &str) -> Vec<Candidate> {
    let mut v: Vec<Candidate> = Vec::new();
    for l in out.lines() {
        let f: Vec<&str> = l.split('|').map(str::trim).collect();
        let (Some(version), Some(origin)) = (f.get(1), f.get(2)) else {
            continue;
        };
        let suite = origin
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.split('/').next())
            .unwrap_or("?");
        if !version.is_empty() && !v.iter().any(|c| c.version == *version) {
            v.push(Candidate {
                version: version.to_string(),
                suite: suite.to_string(),
            });
        }
    }
    v
}

/// The private sources list.
fn sources_list() -> String {
    SUITES
        .iter()
        .map(|(uri, suite)| format!("deb [signed-by={KEYRING}] {uri} {suite} main\n"))
        .collect()
}

/// The private apt state, read again when older than a day (`force`:
/// whatever its age); and whether it was read now.
fn private(cache: &Path, force: bool) -> Result<(Apt, bool)> {
    // apt reads a relative Dir:: path as relative to its own directories
    // (/etc/apt, /var/lib/apt): it would find no sources and say nothing.
    let root = std::path::absolute(cache.join("apt"))?;
    let apt = Apt::Private(root.clone());
    let stamp = root.join("updated");
    let read_at = || std::fs::metadata(&stamp).and_then(|m| m.modified()).ok();
    let list = sources_list();
    let current = |at: Option<SystemTime>| {
        let fresh =
            at.is_some_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() < STALE);
        fresh && std::fs::read_to_string(root.join("sources.list")).is_ok_and(|l| l == list)
    };
    let before = read_at();
    if current(before) && !force {
        return Ok((apt, false));
    }
    for d in ["lists/partial", "cache/archives/partial"] {
        let d = root.join(d);
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    // One reader at a time (apt's own lock would fail the second); one
    // that waited finds the lists just read and takes them.
    let lock = std::fs::File::create(root.join("zcsplice.lock"))?;
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("cannot lock {}", root.display()))?;
    let after = read_at();
    if after != before && current(after) {
        return Ok((apt, true));
    }
    std::fs::write(root.join("sources.list"), &list)?;
    let names: Vec<&str> = SUITES.iter().map(|s| s.1).collect();
    log::info!(
        "reading Debian's package lists for {} into {} (the machine's apt configuration is not used)",
        names.join(", "),
        root.display()
    );
    let mut args = apt.options();
    args.extend(sandbox());
    args.extend(["update".into(), "-qq".into()]);
    let out = duct::cmd("apt-get", &args)
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .context("cannot run apt-get")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // apt-get update exits 0 on a failed fetch; its W:/E: lines say so.
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
        .collect();
    if !out.status.success() || errors.iter().any(|l| l.starts_with("E:")) {
        bail!(
            "apt-get update of the private lists in {} failed:\n{}",
            root.display(),
            if errors.is_empty() {
                text.trim().to_string()
            } else {
                errors.join("\n")
            }
        );
    }
    for w in errors {
        log::warn!("apt: {w}");
    }
    std::fs::write(&stamp, "")?;
    Ok((apt, true))
}

/// As root, apt's sandbox user could not write into the cache: say so
/// for this command only.
fn sandbox() -> Vec<String> {
    if crate::deps::is_root() {
        vec!["-o".into(), "APT::Sandbox::User=root".into()]
    } else {
        Vec::new()
    }
}

/// Where the installed package keeps its tarball.
fn installed_tarball(pkg: &str) -> PathBuf {
    PathBuf::from(format!("/usr/src/{pkg}.tar.xz"))
}

fn dpkg_version(pkg: &str) -> Option<String> {
    duct::cmd!("dpkg-query", "-W", "-f=${Version}", pkg)
        .stderr_null()
        .read()
        .ok()
        .filter(|v| !v.is_empty())
}

/// Debian's version order (epochs, revisions, `~`), from dpkg itself.
pub fn debian_cmp(a: &str, b: &str) -> Ordering {
    let gt = |x: &str, y: &str| {
        duct::cmd!("dpkg", "--compare-versions", x, "gt", y)
            .stderr_null()
            .unchecked()
            .run()
            .is_ok_and(|o| o.status.success())
    };
    if a == b {
        Ordering::Equal
    } else if gt(a, b) {
        Ordering::Greater
    } else if gt(b, a) {
        Ordering::Less
    } else {
        Ordering::Equal
    }
}

/// The candidate `want` names among `have` (newest first): that package
/// version, or the newest revision of an upstream release ("6.12.117").
fn pick<'a>(want: &str, have: &'a [Candidate]) -> Option<&'a Candidate> {
    have.iter().find(|c| c.version == want).or_else(|| {
        have.iter()
            .find(|c| c.version.split_once('-').is_some_and(|(up, _)| up == want))
    })
}

/// Every candidate of `a`, then those of `b` with a version `a` lacks,
/// newest first.
fn merged(a: Vec<Candidate>, b: Vec<Candidate>) -> Vec<Candidate> {
    let mut all = a;
    for c in b {
        if !all.iter().any(|x| x.version == c.version) {
            all.push(c);
        }
    }
    all.sort_by(|x, y| debian_cmp(&y.version, &x.version));
    all
}

/// The tarball of the package version `spec` asks for: the machine's
/// installed package (installed with apt-get when its sources carry the
/// package and no version is named), else one downloaded into the cache.
pub fn fetch(spec: &DebianSpec, cache: &Path) -> Result<Source> {
    let pkg = spec.package();
    let installed = installed_tarball(&pkg);
    let system = Apt::System.candidates(&pkg)?;
    if spec.version.is_none() && !system.is_empty() {
        if !installed.exists() {
            crate::deps::apt_install(&[&pkg])?;
            if !installed.exists() {
                bail!(
                    "{pkg} is installed but {} is not there",
                    installed.display()
                );
            }
        }
        let version = dpkg_version(&pkg).unwrap_or_else(|| "unknown".into());
        return Ok(Source {
            package: pkg,
            version,
            suite: "installed".into(),
            tarball: installed,
        });
    }
    let want = spec.version.as_deref();
    let chosen = |have: &[Candidate]| -> Option<Candidate> {
        match want {
            Some(w) => pick(w, have).cloned(),
            None => have.first().cloned(),
        }
    };
    if let Some(c) = chosen(&system) {
        return download(&Apt::System, &pkg, &c, cache);
    }
    let (apt, private) = private_candidates(&pkg, cache, |h| chosen(h).is_some())?;
    if let Some(c) = chosen(&private) {
        return download(&apt, &pkg, &c, cache);
    }
    let have = merged(system, private);
    if have.is_empty() {
        bail!("{}", none_found(&pkg, cache));
    }
    let list: Vec<String> = have
        .iter()
        .map(|c| format!("{} ({})", c.version, c.suite))
        .collect();
    bail!(
        "Debian has no {pkg} {}; it has: {}",
        want.unwrap_or_default(),
        list.join(", ")
    )
}

/// The versions of `pkg` in the private lists, which are read again once
/// when `enough` says they lack what is wanted and were not just read.
fn private_candidates(
    pkg: &str,
    cache: &Path,
    enough: impl Fn(&[Candidate]) -> bool,
) -> Result<(Apt, Vec<Candidate>)> {
    let (apt, read_now) = private(cache, false)?;
    let have = apt.candidates(pkg)?;
    if enough(&have) || read_now {
        return Ok((apt, have));
    }
    let apt = private(cache, true)?.0;
    let have = apt.candidates(pkg)?;
    Ok((apt, have))
}

/// "Debian has none of `pkg`", with the dates of the lists it was looked
/// for in: a mirror that serves old indexes says so there.
pub fn none_found(pkg: &str, cache: &Path) -> String {
    format!(
        "Debian has no {pkg} in any of {} (nor in this machine's apt sources); {}",
        SUITES.iter().map(|s| s.1).collect::<Vec<_>>().join(", "),
        lists_read(&cache.join("apt"))
    )
}

/// Every version of linux-source-`series` that Debian offers this
/// machine (its own apt sources and the private lists), newest first;
/// none is an empty list, an error is apt's.
pub fn versions(series: &str, cache: &Path) -> Result<Vec<Candidate>> {
    let pkg = format!("linux-source-{series}");
    let system = Apt::System.candidates(&pkg)?;
    let (_, private) = private_candidates(&pkg, cache, |h| !h.is_empty())?;
    Ok(merged(system, private))
}

/// `pkg` at `c`, downloaded with `apt-get download` into the cache (the
/// machine's packages are not changed) and taken out of the .deb; the
/// installed tarball when it is that version.
fn download(apt: &Apt, pkg: &str, c: &Candidate, cache: &Path) -> Result<Source> {
    let source = |tarball| Source {
        package: pkg.to_string(),
        version: c.version.clone(),
        suite: c.suite.clone(),
        tarball,
    };
    let installed = installed_tarball(pkg);
    if dpkg_version(pkg).as_deref() == Some(c.version.as_str()) && installed.exists() {
        return Ok(source(installed));
    }
    let dir = cache
        .join("debian")
        .join(sanitize(&format!("{pkg}-{}", c.version)));
    let tarball = dir.join(format!("{pkg}.tar.xz"));
    if tarball.exists() {
        return Ok(source(tarball));
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    log::info!(
        "downloading {pkg} {} from {} (apt-get download)",
        c.version,
        c.suite
    );
    let mut args = apt.options();
    args.extend(sandbox());
    args.extend([
        "download".to_string(),
        "-qq".into(),
        format!("{pkg}={}", c.version),
    ]);
    let get = duct::cmd("apt-get", &args).dir(&dir).stdout_to_stderr();
    let (h, _group) = procs::start_duct(procs::Kind::Tool("apt-get"), get)?;
    h.wait()
        .with_context(|| format!("apt-get download {pkg}={} failed", c.version))?;
    let deb = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download left no .deb in {}", dir.display()))?;
    let partial = dir.join(format!(".{pkg}.tar.xz.partial"));
    let member = format!("./usr/src/{pkg}.tar.xz");
    let unpack = duct::cmd!("dpkg-deb", "--fsys-tarfile", &deb)
        .pipe(duct::cmd!("tar", "-xO", &member))
        .stdout_path(&partial);
    let (h, _group) = procs::start_duct(procs::Kind::Tool("dpkg-deb"), unpack)?;
    h.wait()
        .with_context(|| format!("cannot take {member} out of {}", deb.display()))?;
    std::fs::rename(&partial, &tarball)?;
    std::fs::remove_file(&deb)?;
    Ok(source(tarball))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_specs() {
        let s: DebianSpec = "6.12".parse().unwrap();
        assert_eq!((s.series.as_str(), s.version), ("6.12", None));
        let s: DebianSpec = "6.12=6.12.117-1~deb12u1".parse().unwrap();
        assert_eq!(s.version.as_deref(), Some("6.12.117-1~deb12u1"));
        for bad in ["6", "6.12.1", "x.12", "6.12=", "", "6..1"] {
            assert!(bad.parse::<DebianSpec>().is_err(), "{bad}");
        }
    }

    fn cands(v: &[(&str, &str)]) -> Vec<Candidate> {
        v.iter()
            .map(|(v, s)| Candidate {
                version: v.to_string(),
                suite: s.to_string(),
            })
            .collect()
    }

    #[test]
    fn a_version_is_exact_or_an_upstream_release() {
        let have = cands(&[("6.1.192-3", "a"), ("6.1.192-2", "b"), ("6.1.190-1", "c")]);
        let got = |w| pick(w, &have).map(|c| c.version.as_str());
        assert_eq!(got("6.1.192-2"), Some("6.1.192-2"));
        assert_eq!(got("6.1.192"), Some("6.1.192-3"));
        assert_eq!(got("6.1.19"), None);
        assert_eq!(got("6.1.191"), None);
    }

    #[test]
    fn madison_names_each_version_once_with_its_suite() {
        let out = "\
linux-source-7.2 |   7.2.13-1 | http://deb.debian.org/debian sid/main amd64 Packages
linux-source-7.2 | 7.2.12-1~bpo13+1 | http://deb.debian.org/debian trixie-backports/main amd64 Packages
linux-source-7.2 | 7.2.12-1~bpo13+1 | http://mirror.example/debian trixie-backports/main amd64 Packages
garbage
";
        assert_eq!(
            parse_madison(out),
            cands(&[
                ("7.2.13-1", "sid"),
                ("7.2.12-1~bpo13+1", "trixie-backports")
            ])
        );
    }

    #[test]
    fn candidates_merge_newest_first() {
        let sys = cands(&[("6.12.118-1~deb12u1", "bookworm-security")]);
        let other = cands(&[
            ("6.12.120-1", "trixie-security"),
            ("6.12.118-1~deb12u1", "bookworm-security"),
        ]);
        let m = merged(sys, other);
        let v: Vec<&str> = m.iter().map(|c| c.version.as_str()).collect();
        assert_eq!(v, ["6.12.120-1", "6.12.118-1~deb12u1"]);
    }

    #[test]
    fn the_lists_are_dated_by_their_indexes() {
        let d = tempfile::tempdir().unwrap();
        let lists = d.path().join("lists");
        std::fs::create_dir_all(&lists).unwrap();
        std::fs::write(
            lists.join("deb.debian.org_debian_dists_sid_InRelease"),
            "-----BEGIN PGP SIGNED MESSAGE-----\nOrigin: Debian\nDate: Fri, 30 Oct 2026 08:08:01 UTC\n",
        )
        .unwrap();
        let dates = list_dates(d.path());
        assert_eq!(dates.len(), SUITES.len());
        let of = |s: &str| dates.iter().find(|d| d.0 == s).unwrap().1.clone();
        assert_eq!(of("sid").as_deref(), Some("Fri, 30 Oct 2026 08:08:01 UTC"));
        assert_eq!(of("trixie-backports"), None);
        let said = lists_read(d.path());
        assert!(said.contains("sid: Fri, 30 Oct 2026") && said.contains("trixie: no index"));
    }

    #[test]
    fn the_private_list_is_signed_and_names_every_suite() {
        let l = sources_list();
        assert_eq!(l.lines().count(), SUITES.len());
        assert!(l
            .lines()
            .all(|l| l.starts_with(&format!("deb [signed-by={KEYRING}] http"))));
        assert!(l.contains(" trixie-backports main\n") && l.contains(" sid main\n"));
    }
}
