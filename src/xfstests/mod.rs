//! `zcsplice xfstests`: runs an installed xfstests in the guest on a
//! fresh test and scratch disk, with the series kernel and, with
//! `--baseline`, the unpatched base kernel of the same config, and tells
//! regressions from failures the base kernel has too.
//!
//! zcsplice does not build xfstests: it uses an installed tree (`make
//! install` puts one in /var/lib/xfstests). The guest sees the host's root
//! filesystem, so that tree and the tools xfstests calls come from the host.

pub mod baseline;
pub mod lists;
pub mod results;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::console::Splat;
use crate::disks::{self, Disk};
use crate::run::{self, Verdict, VmOpts};
use baseline::{Key, Status};
use results::{Case, Res};

/// Where `make install` puts xfstests.
pub const DEFAULT_DIR: &str = "/var/lib/xfstests";

/// TEST_DEV (/dev/vda) and SCRATCH_DEV (/dev/vdb): sparse, new each boot.
pub const DISKS: [Disk; 2] = [
    Disk {
        name: "xfstests-test",
        bytes: 4 << 30,
    },
    Disk {
        name: "xfstests-scratch",
        bytes: 4 << 30,
    },
];

/// The curated default list (see the file for why each test is there).
pub const SMOKE: &str = "vm/xfstests/zcsplice-smoke";

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
    let missing: Vec<&str> = HOST_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !duct::cmd!("dpkg-query", "-W", "-f=${Status}", p)
                .stderr_null()
                .read()
                .map(|s| s.contains("ok installed"))
                .unwrap_or(false)
        })
        .collect();
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
                eprintln!(
                    "zcsplice: {}:{}: {} is not in this xfstests; left out",
                    SMOKE, e.line, e.test
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

/// The base commit of a zcsplice branch (recorded by `zcsplice apply`) and
/// a revision naming it for `build`: a local branch at that commit (so the
/// cache's build directory for it is reused), else the commit itself.
pub fn base_of(tree: &Path, branch: Option<&str>) -> Result<(String, String)> {
    let repo = git2::Repository::open(tree)
        .with_context(|| format!("{} is not a git tree", tree.display()))?;
    let branch = match branch {
        Some(b) => b.to_string(),
        None => {
            let head = repo.head().context("the tree has no HEAD")?;
            if !head.is_branch() {
                bail!("--baseline: HEAD is detached; pass --branch with the series branch");
            }
            head.shorthand().unwrap_or_default().to_string()
        }
    };
    let key = format!("branch.{branch}.{}", crate::tree::BASE_KEY);
    let base = repo.config()?.get_string(&key).map_err(|_| {
        anyhow!(
            "--baseline: branch {branch} has no recorded base (git config {key}, written by \
             `zcsplice apply`); build the series branch that apply made"
        )
    })?;
    let base_oid = git2::Oid::from_str(&base).with_context(|| format!("bad {key}"))?;
    let tip = repo.revparse_single(&branch)?.peel_to_commit()?.id();
    if tip == base_oid {
        bail!("--baseline: {branch} is its own base: it carries no series");
    }
    let mut names: Vec<String> = Vec::new();
    for b in repo.branches(Some(git2::BranchType::Local))? {
        let (b, _) = b?;
        if b.get().target() == Some(base_oid) {
            names.extend(b.name()?.map(str::to_string));
        }
    }
    names.sort_by_key(|n| (n != "master" && n != "main", n.clone()));
    let rev = names.into_iter().next().unwrap_or_else(|| base.clone());
    Ok((base, rev))
}

/// A built kernel to boot.
pub struct Kernel {
    pub image: PathBuf,
    /// Its .config (hashed into the baseline key).
    pub config: PathBuf,
    pub release: String,
}

pub struct Opts {
    pub fs: String,
    pub mkfs_options: String,
    pub mount_options: String,
    pub tests: Vec<String>,
    /// Runs of a test that failed with the series but passed on the
    /// baseline, after the first (in one extra boot).
    pub retries: u32,
    pub vm: VmOpts,
}

/// One boot of ./check.
#[derive(Debug, Serialize)]
pub struct Boot {
    /// baseline, series or retry.
    pub label: String,
    pub kernel: String,
    pub verdict: Verdict,
    pub accel: String,
    pub seconds: f64,
    pub logs: PathBuf,
    /// Kernel reports while no test ran (they fail the run).
    pub kernel_reports: Vec<Splat>,
    pub tests: Vec<String>,
}

/// One test, every kernel.
#[derive(Debug, Serialize)]
pub struct Row {
    pub test: String,
    pub status: Status,
    pub series: Res,
    pub seconds: f64,
    pub baseline: Option<Res>,
    /// The baseline result came from the cache.
    pub baseline_cached: bool,
    pub retries: Vec<Res>,
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub output: String,
}

#[derive(Debug, Serialize)]
pub struct BaselineInfo {
    pub commit: String,
    pub kernel: String,
    /// Results taken from the cache, and run now.
    pub cached: usize,
    pub ran: usize,
    pub results: BTreeMap<String, Res>,
}

#[derive(Debug, Serialize)]
pub struct Expunged {
    pub test: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub kernel: String,
    pub fs: String,
    pub xfstests: PathBuf,
    pub run: usize,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub regressions: Vec<String>,
    pub flaky: Vec<String>,
    pub baseline: Option<BaselineInfo>,
    pub tests: Vec<Row>,
    pub expunged: Vec<Expunged>,
    pub boots: Vec<Boot>,
    pub seconds: f64,
    pub logs: PathBuf,
}

impl Report {
    /// 0 clean; 1 a regression (with a baseline) or a failure (without),
    /// or a kernel report outside the tests, or a crash; 129 a boot
    /// of the series timed out.
    pub fn exit_code(&self) -> u8 {
        let series = self.boots.iter().filter(|b| b.label != "baseline");
        if series.clone().any(|b| b.verdict == Verdict::Timeout) {
            return 129;
        }
        let bad = if self.baseline.is_some() {
            !self.regressions.is_empty()
        } else {
            self.tests.iter().any(|r| r.status == Status::Fail)
        };
        let dirty = series
            .clone()
            .any(|b| !b.kernel_reports.is_empty() || b.verdict == Verdict::Crash);
        u8::from(bad || dirty)
    }
}

/// What a boot needs beyond its kernel.
struct Ctx<'a> {
    project: &'a Path,
    cache: &'a Path,
    inst: &'a Install,
    opts: &'a Opts,
    expunge: &'a [lists::Entry],
}

/// local.config for ./check (sourced by sh in the guest and by check).
pub fn local_config(fs: &str, results: &Path, mkfs: &str, mount: &str) -> Result<String> {
    for (what, v) in [("--mkfs-options", mkfs), ("--mount-options", mount)] {
        if v.contains(['"', '$', '`', '\\', '\n']) {
            bail!("{what} {v:?}: quotes, $, ` and \\ are not allowed");
        }
    }
    let mut s = format!(
        "# written by zcsplice xfstests\n\
         FSTYP={fs}\n\
         TEST_DEV=/dev/vda\n\
         TEST_DIR=/tmp/xfstests-test\n\
         SCRATCH_DEV=/dev/vdb\n\
         SCRATCH_MNT=/tmp/xfstests-scratch\n\
         RESULT_BASE={}\n",
        results.display()
    );
    if !mkfs.is_empty() {
        s.push_str(&format!("MKFS_OPTIONS=\"{mkfs}\"\n"));
    }
    if !mount.is_empty() {
        s.push_str(&format!("MOUNT_OPTIONS=\"{mount}\"\n"));
    }
    Ok(s)
}

/// Boots `k` once and runs ./check on `tests` (`extra`: more check options).
fn boot(
    ctx: &Ctx,
    label: &str,
    k: &Kernel,
    tests: &[String],
    extra: &[String],
    logs: &Path,
) -> Result<(Vec<Case>, Boot)> {
    let dir = logs.join(label);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let results = dir.join("results");
    let o = ctx.opts;
    std::fs::write(
        dir.join("local.config"),
        local_config(&o.fs, &results, &o.mkfs_options, &o.mount_options)?,
    )?;
    let mut args: Vec<String> = vec!["-R".into(), "xunit".into()];
    if !ctx.expunge.is_empty() {
        let x: String = ctx
            .expunge
            .iter()
            .map(|e| format!("{}\n", e.test))
            .collect();
        std::fs::write(dir.join("expunge"), x)?;
        args.extend(["-E".into(), dir.join("expunge").display().to_string()]);
    }
    args.extend(extra.iter().cloned());
    args.extend(tests.iter().cloned());
    std::fs::write(dir.join("check.args"), args.join("\n") + "\n")?;
    let images = disks::fresh(ctx.cache, &DISKS)?;
    let guest = run::Guest {
        script: "vm/guest/xfstests.sh",
        args: vec![ctx.inst.dir.display().to_string()],
        names: &[],
        env: Vec::new(),
        disks: images.iter().map(|p| p.to_path_buf()).collect(),
    };
    eprintln!(
        "zcsplice: {label}: {} on {}, {} test(s); logs {}",
        k.release,
        o.fs,
        tests.len(),
        dir.display()
    );
    let b = run::boot(ctx.project, ctx.cache, &k.image, &dir, &guest, &o.vm)?;
    drop(images);
    if b.verdict == Verdict::VmFailed {
        bail!(
            "{label}: the VM could not be started (see {})",
            dir.join("console.log").display()
        );
    }
    if let Ok(e) = std::fs::read_to_string(dir.join("setup.err")) {
        bail!(
            "{label}: guest setup failed: {} (see {})",
            e.trim(),
            dir.join("setup.log").display()
        );
    }
    let xml = results.join("result.xml");
    let cases = match std::fs::read_to_string(&xml) {
        Ok(x) => results::parse_xunit(&x).with_context(|| format!("{}", xml.display()))?,
        Err(_) => Vec::new(),
    };
    let console = String::from_utf8_lossy(&std::fs::read(dir.join("console.log"))?).to_string();
    let (cases, loose) = results::judge(tests, cases, &console);
    Ok((
        cases,
        Boot {
            label: label.to_string(),
            kernel: k.release.clone(),
            verdict: b.verdict,
            accel: b.accel.to_string(),
            seconds: b.finished.seconds,
            logs: dir,
            kernel_reports: loose,
            tests: tests.to_vec(),
        },
    ))
}

fn config_hash(k: &Kernel) -> Result<String> {
    let c =
        std::fs::read(&k.config).with_context(|| format!("cannot read {}", k.config.display()))?;
    Ok(baseline::hash(&c))
}

/// Runs the tests on `series` and, with `base` (kernel, base commit), on
/// the base kernel for those its cache does not have; retries failures
/// that passed on the base.
pub fn run(
    project: &Path,
    cache: &Path,
    inst: &Install,
    series: &Kernel,
    base: Option<(&Kernel, &str)>,
    logs: &Path,
    opts: &Opts,
) -> Result<Report> {
    let t0 = Instant::now();
    let expunge_all = lists::expunged(project, &opts.fs)?;
    let expunged: Vec<Expunged> = expunge_all
        .iter()
        .filter(|e| opts.tests.contains(&e.test))
        .map(|e| Expunged {
            test: e.test.clone(),
            reason: e.reason.clone(),
        })
        .collect();
    let tests: Vec<String> = opts
        .tests
        .iter()
        .filter(|t| !expunged.iter().any(|e| &e.test == *t))
        .cloned()
        .collect();
    if tests.is_empty() {
        bail!(
            "no tests left to run (every one is expunged for {})",
            opts.fs
        );
    }
    let ctx = Ctx {
        project,
        cache,
        inst,
        opts,
        expunge: &expunge_all,
    };
    let mut boots = Vec::new();

    // The baseline first: what the series' failures are compared with.
    let mut base_res: BTreeMap<String, (Res, bool)> = BTreeMap::new();
    let mut base_info = None;
    if let Some((bk, commit)) = base {
        let store = baseline::Cache::new(cache);
        let config = config_hash(bk)?;
        let key = |t: &str| Key {
            base: commit.to_string(),
            config: config.clone(),
            fs: opts.fs.clone(),
            mkfs_options: opts.mkfs_options.clone(),
            mount_options: opts.mount_options.clone(),
            xfstests: inst.version.clone(),
            test: t.to_string(),
            test_hash: test_hash(&inst.dir, t),
        };
        let mut todo = Vec::new();
        for t in &tests {
            match store.get(&key(t)) {
                Some(e) => {
                    base_res.insert(t.clone(), (e.result, true));
                }
                None => todo.push(t.clone()),
            }
        }
        let cached = base_res.len();
        if cached > 0 {
            eprintln!(
                "zcsplice: baseline: {cached} result(s) cached in {}",
                store.dir.display()
            );
        }
        if !todo.is_empty() {
            let (cases, b) = boot(&ctx, "baseline", bk, &todo, &[], logs)?;
            // A kernel report outside the tests, a crash or a timeout:
            // keep these results out of the cache.
            let trusted =
                b.kernel_reports.is_empty() && matches!(b.verdict, Verdict::Pass | Verdict::Fail);
            if !trusted {
                eprintln!(
                    "zcsplice: baseline: {} ({} kernel report(s) outside the tests); \
                     its results are not cached",
                    b.verdict.as_str(),
                    b.kernel_reports.len()
                );
            }
            for t in &todo {
                let first = cases.iter().find(|c| &c.name == t);
                let r = first.map_or(Res::Incomplete, |c| c.result);
                if trusted {
                    store.put(&baseline::Entry {
                        key: key(t),
                        result: r,
                        seconds: first.map_or(0.0, |c| c.seconds),
                        message: first.map(|c| c.message.clone()).unwrap_or_default(),
                        logs: b.logs.display().to_string(),
                    })?;
                }
                base_res.insert(t.clone(), (r, false));
            }
            boots.push(b);
        }
        base_info = Some(BaselineInfo {
            commit: commit.to_string(),
            kernel: bk.release.clone(),
            cached,
            ran: tests.len() - cached,
            results: base_res.iter().map(|(t, (r, _))| (t.clone(), *r)).collect(),
        });
    }

    let (cases, b) = boot(&ctx, "series", series, &tests, &[], logs)?;
    boots.push(b);
    let first = |t: &str| cases.iter().find(|c| c.name == t).cloned();

    let retry: Vec<String> = tests
        .iter()
        .filter(|t| {
            let s = first(t).map_or(Res::Incomplete, |c| c.result);
            baseline::needs_retry(s, base_res.get(*t).map(|r| r.0))
        })
        .cloned()
        .collect();
    let mut retried: BTreeMap<String, Vec<Res>> = BTreeMap::new();
    if !retry.is_empty() && opts.retries > 0 {
        eprintln!(
            "zcsplice: {} test(s) failed with the series and passed on the baseline; \
             retrying up to {} more time(s): {}",
            retry.len(),
            opts.retries,
            retry.join(" ")
        );
        // check -L N: after a failure, N more runs (so a pass ends early).
        let extra: Vec<String> = if opts.retries > 1 {
            vec!["-L".into(), (opts.retries - 1).to_string()]
        } else {
            Vec::new()
        };
        let (rc, b) = boot(&ctx, "retry", series, &retry, &extra, logs)?;
        for c in rc {
            retried.entry(c.name).or_default().push(c.result);
        }
        boots.push(b);
    }

    let rows: Vec<Row> = tests
        .iter()
        .map(|t| {
            let c = first(t).expect("judge gives every wanted test a case");
            let b = base_res.get(t).copied();
            let retries = retried.remove(t).unwrap_or_default();
            Row {
                test: t.clone(),
                status: baseline::classify(c.result, b.map(|b| b.0), &retries),
                series: c.result,
                seconds: c.seconds,
                baseline: b.map(|b| b.0),
                baseline_cached: b.is_some_and(|b| b.1),
                retries,
                message: c.message,
                output: c.output,
            }
        })
        .collect();
    let count = |s: &[Status]| rows.iter().filter(|r| s.contains(&r.status)).count();
    let named = |s: Status| -> Vec<String> {
        rows.iter()
            .filter(|r| r.status == s)
            .map(|r| r.test.clone())
            .collect()
    };
    Ok(Report {
        kernel: series.release.clone(),
        fs: opts.fs.clone(),
        xfstests: inst.dir.clone(),
        run: rows.len(),
        passed: count(&[Status::Pass]),
        failed: count(&[
            Status::Fail,
            Status::KnownFail,
            Status::Regression,
            Status::Flaky,
        ]),
        skipped: count(&[Status::Skip]),
        regressions: named(Status::Regression),
        flaky: named(Status::Flaky),
        baseline: base_info,
        tests: rows,
        expunged,
        boots,
        seconds: t0.elapsed().as_secs_f64(),
        logs: logs.to_path_buf(),
    })
}

fn mmss(s: f64) -> String {
    let s = s.round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

/// The human report: a table, the failures, totals, wall time, logs.
pub fn table(r: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let with_base = r.baseline.is_some();
    let w = r
        .tests
        .iter()
        .map(|t| t.test.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let base_col = |t: &Row| match t.baseline {
        Some(b) => format!("{}{}", b.as_str(), if t.baseline_cached { "*" } else { "" }),
        None => "-".into(),
    };
    if with_base {
        let _ = writeln!(
            o,
            "{:w$}  {:11}  {:10}  {:>7}  {:14}  STATUS",
            "TEST", "BASELINE", "SERIES", "SECONDS", "RETRIES"
        );
    } else {
        let _ = writeln!(o, "{:w$}  {:10}  {:>7}", "TEST", "RESULT", "SECONDS");
    }
    for t in &r.tests {
        if with_base {
            let retries: Vec<&str> = t.retries.iter().map(|r| r.as_str()).collect();
            let _ = writeln!(
                o,
                "{:w$}  {:11}  {:10}  {:>7.0}  {:14}  {}",
                t.test,
                base_col(t),
                t.series.as_str(),
                t.seconds,
                if retries.is_empty() {
                    "-".into()
                } else {
                    retries.join(",")
                },
                t.status.as_str()
            );
        } else {
            let _ = writeln!(
                o,
                "{:w$}  {:10}  {:>7.0}",
                t.test,
                t.series.as_str(),
                t.seconds
            );
        }
    }
    if r.tests.iter().any(|t| t.baseline_cached) {
        let _ = writeln!(o, "(* baseline result from the cache)");
    }
    for t in r.tests.iter().filter(|t| t.series.bad()) {
        let series = r.boots.iter().find(|b| b.label == "series");
        let files = series.map_or(String::new(), |b| {
            format!(
                " ({}.full, .out.bad, .dmesg)",
                b.logs.join("results").join(&t.test).display()
            )
        });
        let _ = writeln!(
            o,
            "\n{} {}: {}{files}",
            t.test,
            t.status.as_str(),
            t.message
        );
    }
    for b in &r.boots {
        for s in &b.kernel_reports {
            let _ = writeln!(
                o,
                "\n--- kernel report outside any test ({} boot) ---\n{}",
                b.label, s.text
            );
        }
        if !matches!(b.verdict, Verdict::Pass | Verdict::Fail) {
            let _ = writeln!(
                o,
                "\nwarning: the {} boot ended with {} (console: {})",
                b.label,
                b.verdict.as_str(),
                b.logs.join("console.log").display()
            );
        }
    }
    if !r.expunged.is_empty() {
        let _ = writeln!(o, "\nexpunged on {} (vm/xfstests/expunge/{}):", r.fs, r.fs);
        for e in &r.expunged {
            let _ = writeln!(o, "  {}  # {}", e.test, e.reason);
        }
    }
    let accel = r.boots.first().map_or("?", |b| b.accel.as_str());
    let _ = writeln!(
        o,
        "\nkernel {} on {} under {}; xfstests {}",
        r.kernel,
        r.fs,
        accel.to_uppercase(),
        r.xfstests.display()
    );
    if let Some(b) = &r.baseline {
        let _ = writeln!(
            o,
            "baseline: {} at {} ({} cached, {} run now)",
            b.kernel,
            &b.commit[..12.min(b.commit.len())],
            b.cached,
            b.ran
        );
    }
    let _ = write!(
        o,
        "run {}, passed {}, failed {}, skipped {}",
        r.run, r.passed, r.failed, r.skipped
    );
    if with_base {
        let _ = write!(
            o,
            ", regressions {}, flaky {}",
            r.regressions.len(),
            r.flaky.len()
        );
    }
    let _ = writeln!(o);
    let boots: Vec<String> = r
        .boots
        .iter()
        .map(|b| format!("{} {}", b.label, mmss(b.seconds)))
        .collect();
    let _ = writeln!(
        o,
        "wall time {} ({})\nlogs: {}",
        mmss(r.seconds),
        boots.join(", "),
        r.logs.display()
    );
    o
}

/// JUnit XML: one testcase per test. Regressions fail, and so do failures
/// when there is no baseline; failures the base kernel has too, and flaky
/// tests, pass with a note. Kernel reports outside the tests are one more
/// failing testcase, "console".
pub fn junit(r: &Report) -> Result<String> {
    use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
    let mut w = quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let fails = |t: &Row| matches!(t.status, Status::Regression | Status::Fail);
    let reports: Vec<&Splat> = r
        .boots
        .iter()
        .filter(|b| b.label != "baseline")
        .flat_map(|b| &b.kernel_reports)
        .collect();
    let failures = r.tests.iter().filter(|t| fails(t)).count() + usize::from(!reports.is_empty());
    let mut suite = BytesStart::new("testsuite");
    suite.push_attribute(("name", format!("xfstests {} {}", r.fs, r.kernel).as_str()));
    suite.push_attribute(("tests", (r.tests.len() + 1).to_string().as_str()));
    suite.push_attribute(("failures", failures.to_string().as_str()));
    suite.push_attribute(("skipped", r.skipped.to_string().as_str()));
    suite.push_attribute(("time", format!("{:.1}", r.seconds).as_str()));
    w.write_event(Event::Start(suite))?;
    let class = format!("xfstests.{}", r.fs);
    let mut case =
        |name: &str, secs: f64, fail: Option<&str>, skip: bool, out: &str| -> Result<()> {
            let mut c = BytesStart::new("testcase");
            c.push_attribute(("classname", class.as_str()));
            c.push_attribute(("name", name));
            c.push_attribute(("time", format!("{secs:.1}").as_str()));
            w.write_event(Event::Start(c))?;
            if let Some(msg) = fail {
                let mut f = BytesStart::new("failure");
                f.push_attribute(("message", msg));
                w.write_event(Event::Empty(f))?;
            }
            if skip {
                w.write_event(Event::Empty(BytesStart::new("skipped")))?;
            }
            if !out.is_empty() {
                w.write_event(Event::Start(BytesStart::new("system-out")))?;
                w.write_event(Event::Text(BytesText::new(out)))?;
                w.write_event(Event::End(BytesEnd::new("system-out")))?;
            }
            w.write_event(Event::End(BytesEnd::new("testcase")))?;
            Ok(())
        };
    for t in &r.tests {
        let note = match t.baseline {
            Some(b) => format!(
                "{}: series {}, baseline {}, retries [{}]: {}\n{}",
                t.status.as_str(),
                t.series.as_str(),
                b.as_str(),
                t.retries
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                t.message,
                t.output
            ),
            None => format!("{}\n{}", t.message, t.output),
        };
        let msg = format!("{}: {}", t.status.as_str(), t.message);
        case(
            &t.test,
            t.seconds,
            fails(t).then_some(msg.as_str()),
            t.status == Status::Skip,
            if t.series == Res::Pass {
                ""
            } else {
                note.trim()
            },
        )?;
    }
    let text: Vec<&str> = reports.iter().map(|s| s.text.as_str()).collect();
    let msg = format!("{} kernel report(s) outside the tests", reports.len());
    case(
        "console",
        0.0,
        (!reports.is_empty()).then_some(msg.as_str()),
        false,
        &text.join("\n\n"),
    )?;
    w.write_event(Event::End(BytesEnd::new("testsuite")))?;
    Ok(String::from_utf8(w.into_inner())?)
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

    #[test]
    fn local_config_refuses_shell_in_options() {
        let c = local_config("ext4", Path::new("/r/results"), "-b 1024", "").unwrap();
        assert!(c.contains("FSTYP=ext4\n"));
        assert!(c.contains("RESULT_BASE=/r/results\n"));
        assert!(c.contains("MKFS_OPTIONS=\"-b 1024\"\n"));
        assert!(!c.contains("MOUNT_OPTIONS"));
        assert!(local_config("ext4", Path::new("/r"), "$(reboot)", "").is_err());
    }
}
