//! `zcsplice xfstests`: runs an installed xfstests in the guest on a
//! fresh test and scratch disk, with the series kernel and, with
//! `--baseline`, the unpatched base kernel of the same config, and tells
//! regressions from failures the base kernel has too.
//!
//! zcsplice does not build xfstests: it uses an installed tree (`make
//! install` puts one in /var/lib/xfstests). The guest sees the host's root
//! filesystem, so that tree and the tools xfstests calls come from the host.

pub mod baseline;
pub mod install;
pub mod lists;
pub mod report;
pub mod results;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::guest::boot::{self as run, Verdict, VmOpts};
use crate::guest::console::Splat;
use crate::guest::disks::{self, Disk};
use baseline::{Key, Status};
use install::Install;
use results::{Case, Res};

pub use install::{host_deps, locate, select};
pub use report::{junit, table};

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

/// `zcsplice xfstests` as a value: what to build, which tests, how.
#[derive(Debug, Clone)]
pub struct Request {
    /// The series branch to build (the baseline is its recorded base).
    pub build: crate::kernel::build::BuildRequest,
    /// FSTYP; expunges from vm/xfstests/expunge/<fs>.
    pub fs: String,
    pub groups: Vec<String>,
    /// Tests by name; none and no groups: vm/xfstests/zcsplice-smoke.
    pub tests: Vec<String>,
    pub baseline: bool,
    /// The base commit, when the caller has it (the matrix, from
    /// `Applied`); else the recorded base of the branch.
    pub base: Option<git2::Oid>,
    pub retries: u32,
    /// A built xfstests tree (--xfstests), else `xfstests_env`
    /// (XFSTESTS_DIR), else /var/lib/xfstests.
    pub xfstests: Option<PathBuf>,
    pub xfstests_env: Option<PathBuf>,
    pub mkfs_options: String,
    pub mount_options: String,
    /// Hard limit for each boot.
    pub timeout: std::time::Duration,
    pub memory: String,
}

impl Default for Request {
    fn default() -> Request {
        Request {
            build: Default::default(),
            fs: "ext4".into(),
            groups: vec![],
            tests: vec![],
            baseline: false,
            base: None,
            retries: 2,
            xfstests: None,
            xfstests_env: None,
            mkfs_options: String::new(),
            mount_options: String::new(),
            timeout: std::time::Duration::from_secs(3600),
            memory: "2G".into(),
        }
    }
}

fn kernel_of(built: &crate::kernel::build::Built) -> Kernel {
    Kernel {
        image: built.image.clone(),
        config: built.outdir.join(".config"),
        release: built.release(),
    }
}

/// Builds what is needed and runs xfstests; saves report.json in its logs.
/// Usage errors (options, lists, a branch without a base) are found before
/// any build; no usable xfstests or a VM that cannot start is an
/// infrastructure failure.
pub fn run_request(env: &crate::env::Env, x: &Request) -> Result<Report> {
    use crate::exit::{infrastructure, usage};
    use crate::kernel::build::{build_kernel, BuildRequest};
    check_options(&x.mkfs_options, &x.mount_options).map_err(usage)?;
    let inst = locate(x.xfstests.as_deref(), x.xfstests_env.as_deref()).map_err(infrastructure)?;
    host_deps().map_err(infrastructure)?;
    let tests = select(&env.series, &inst.dir, &x.fs, &x.groups, &x.tests)?;
    // A bad expunge file is the user's to fix, before any build or boot.
    lists::expunged(&env.series, &x.fs)?;
    let b = &x.build;
    // Known before any build: a tree without a recorded base fails at once.
    let base = match (x.baseline, x.base) {
        (false, _) => None,
        (true, Some(oid)) => Some(base_rev(&git2::Repository::open(&b.tree)?, oid)?),
        (true, None) => Some(base_of(&b.tree, b.branch.as_deref())?),
    };
    let built = build_kernel(env, b)?;
    let base_built = match &base {
        Some((_, rev)) => Some(build_kernel(
            env,
            &BuildRequest {
                branch: Some(rev.clone()),
                ..b.clone()
            },
        )?),
        None => None,
    };
    let base_kernel = base_built.as_ref().map(kernel_of);
    let logs = env.run_logs(&built);
    log::info!("xfstests logs: {}", logs.display());
    let opts = Opts {
        fs: x.fs.clone(),
        mkfs_options: x.mkfs_options.clone(),
        mount_options: x.mount_options.clone(),
        tests,
        retries: x.retries,
        vm: VmOpts {
            timeout: x.timeout,
            memory: x.memory.clone(),
            cpus: 2,
            numa_nodes: 1,
        },
    };
    let report = run(
        &env.series,
        &env.cache,
        &inst,
        &kernel_of(&built),
        base_kernel
            .as_ref()
            .zip(base.as_ref())
            .map(|(k, (commit, _))| (k, commit.as_str())),
        &logs,
        &opts,
    )
    .map_err(infrastructure)?;
    std::fs::write(
        logs.join("report.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    Ok(report)
}

/// Runs `opts.tests` on a built kernel with no baseline, for a caller
/// that judges the results itself (a bisect step); report.json goes to
/// the run's logs. A VM that cannot start is an infrastructure failure.
pub fn run_built(
    env: &crate::env::Env,
    inst: &Install,
    built: &crate::kernel::build::Built,
    opts: &Opts,
) -> Result<Report> {
    let logs = env.run_logs(built);
    log::info!("xfstests logs: {}", logs.display());
    let report = run(
        &env.series,
        &env.cache,
        inst,
        &kernel_of(built),
        None,
        &logs,
        opts,
    )
    .map_err(crate::exit::infrastructure)?;
    std::fs::write(
        logs.join("report.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    Ok(report)
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
    let base_oid = crate::tree::base_of_branch(&repo, &branch)?.ok_or_else(|| {
        anyhow!(
            "--baseline: branch {branch} has no recorded base (git config \
             branch.{branch}.{}, or ref {}, written by `zcsplice apply`); \
             build the series branch that apply made",
            crate::tree::BASE_KEY,
            crate::tree::base_ref(&branch)
        )
    })?;
    let tip = repo.revparse_single(&branch)?.peel_to_commit()?.id();
    if tip == base_oid {
        bail!("--baseline: {branch} is its own base: it carries no series");
    }
    base_rev(&repo, base_oid)
}

/// The base commit and a revision naming it for `build`: a local branch
/// at that commit (so the cache's build directory for it is reused), else
/// the commit itself.
fn base_rev(repo: &git2::Repository, base_oid: git2::Oid) -> Result<(String, String)> {
    let base = base_oid.to_string();
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

#[derive(Debug, Clone)]
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
    /// How the series' splice counters (/proc/vmstat) grew over ./check:
    /// whether the tests reached the move path at all. Empty on a kernel
    /// without them.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub splice_counters: BTreeMap<String, i64>,
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
    /// A report of `rows` with its totals; the caller fills in the rest.
    pub(crate) fn counted(rows: Vec<Row>) -> Report {
        let count = |s: &[Status]| rows.iter().filter(|r| s.contains(&r.status)).count();
        let named = |s: Status| -> Vec<String> {
            rows.iter()
                .filter(|r| r.status == s)
                .map(|r| r.test.clone())
                .collect()
        };
        Report {
            kernel: String::new(),
            fs: String::new(),
            xfstests: PathBuf::new(),
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
            baseline: None,
            tests: rows,
            expunged: vec![],
            boots: vec![],
            seconds: 0.0,
            logs: PathBuf::new(),
        }
    }

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

/// Options that local.config can carry: it is sourced by sh, inside quotes.
pub fn check_options(mkfs: &str, mount: &str) -> Result<()> {
    for (what, v) in [("--mkfs-options", mkfs), ("--mount-options", mount)] {
        if v.contains(['"', '$', '`', '\\', '\n']) {
            bail!("{what} {v:?}: quotes, $, ` and \\ are not allowed");
        }
    }
    Ok(())
}

/// local.config for ./check (sourced by sh in the guest and by check).
pub fn local_config(fs: &str, results: &Path, mkfs: &str, mount: &str) -> Result<String> {
    check_options(mkfs, mount)?;
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
    let mut args: Vec<String> = Vec::new();
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
    log::info!(
        "{label}: {} on {}, {} test(s); logs {}",
        k.release,
        o.fs,
        tests.len(),
        dir.display()
    );
    let progress = Progress::start(dir.join("console.log"), label, tests.len());
    let b = run::boot(ctx.project, ctx.cache, &k.image, &dir, &guest, &o.vm);
    progress.stop();
    let b = b?;
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
    let out = std::fs::read(dir.join("check.out")).unwrap_or_default();
    let cases = results::parse_check_output(&String::from_utf8_lossy(&out), tests);
    let console = String::from_utf8_lossy(&std::fs::read(dir.join("console.log"))?).to_string();
    let (cases, loose) = results::judge(tests, cases, &console);
    let counter = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    let splice_counters =
        results::counter_growth(&counter("vmstat.before"), &counter("vmstat.after"));
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
            splice_counters,
        },
    ))
}

/// Says on stderr which test a boot is at, from xfstests' markers in the
/// console log as it grows: a run takes many minutes under TCG.
struct Progress {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(console: PathBuf, label: &str, total: usize) -> Progress {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let label = label.to_string();
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut seen = 0;
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_secs(2));
                let Ok(log) = std::fs::read(&console) else {
                    continue;
                };
                let started = results::started(&String::from_utf8_lossy(&log));
                for t in started.iter().skip(seen) {
                    seen += 1;
                    let e = t0.elapsed().as_secs();
                    log::info!("{label} [{seen}/{total}] {t} ({}:{:02})", e / 60, e % 60);
                }
            }
        });
        Progress {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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
    let (expunged, tests) = without_expunged(opts, &expunge_all)?;
    let ctx = Ctx {
        project,
        cache,
        inst,
        opts,
        expunge: &expunge_all,
    };
    let mut boots = Vec::new();

    // The baseline's results: cached ones now, the others from a boot of
    // the base kernel that runs beside the series' boot.
    let mut base_res = BaseResults::new();
    let config = base.map(|(bk, _)| config_hash(bk)).transpose()?;
    let store = baseline::Cache::new(cache);
    let key = |t: &str| -> Option<Key> {
        let (_, commit) = base?;
        Some(Key {
            base: commit.to_string(),
            config: config.clone()?,
            fs: opts.fs.clone(),
            mkfs_options: opts.mkfs_options.clone(),
            mount_options: opts.mount_options.clone(),
            xfstests: inst.version.clone(),
            test: t.to_string(),
            test_hash: install::test_hash(&inst.dir, t),
        })
    };
    let todo = match base {
        Some(_) => cached_baseline(&store, &key, &tests, &mut base_res),
        None => Vec::new(),
    };
    let cached = base_res.len();

    // Two guests at once: under TCG each keeps about one host CPU busy.
    let (base_boot, series_boot) = std::thread::scope(|s| {
        let bh = match base {
            Some((bk, _)) if !todo.is_empty() => {
                let (ctx, todo) = (&ctx, &todo);
                Some(s.spawn(move || boot(ctx, "baseline", bk, todo, &[], logs)))
            }
            _ => None,
        };
        let sr = boot(&ctx, "series", series, &tests, &[], logs);
        let br = bh.map(|h| h.join().expect("the baseline boot's thread panicked"));
        (br.transpose(), sr)
    });
    if let Some((cases, b)) = base_boot? {
        record_baseline(&store, &key, &todo, &cases, &b, &mut base_res)?;
        boots.push(b);
    }
    let base_info = base.map(|(bk, commit)| BaselineInfo {
        commit: commit.to_string(),
        kernel: bk.release.clone(),
        cached,
        ran: tests.len() - cached,
        results: base_res.iter().map(|(t, (r, _))| (t.clone(), *r)).collect(),
    });
    let (cases, b) = series_boot?;
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
    let (retried, retry_boot) = retry_failures(&ctx, series, &retry, logs)?;
    boots.extend(retry_boot);

    let rows = rows_of(&tests, &cases, &base_res, retried);
    Ok(Report {
        kernel: series.release.clone(),
        fs: opts.fs.clone(),
        xfstests: inst.dir.clone(),
        baseline: base_info,
        expunged,
        boots,
        seconds: t0.elapsed().as_secs_f64(),
        logs: logs.to_path_buf(),
        ..Report::counted(rows)
    })
}

/// A row per test: the series' result, the baseline's, the retries, and
/// what that makes the test.
fn rows_of(
    tests: &[String],
    cases: &[Case],
    base_res: &BaseResults,
    mut retried: Retried,
) -> Vec<Row> {
    let first = |t: &str| cases.iter().find(|c| c.name == t).cloned();
    tests
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
        .collect()
}

/// The baseline's results: the base kernel's result per test, and
/// whether it came from the cache.
type BaseResults = BTreeMap<String, (Res, bool)>;

/// Fills `base_res` with the cached baseline results of `tests`; returns
/// the tests the base kernel must run.
fn cached_baseline(
    store: &baseline::Cache,
    key: &dyn Fn(&str) -> Option<Key>,
    tests: &[String],
    base_res: &mut BaseResults,
) -> Vec<String> {
    let mut todo = Vec::new();
    for t in tests {
        match key(t).and_then(|k| store.get(&k)) {
            Some(e) => {
                base_res.insert(t.clone(), (e.result, true));
            }
            None => todo.push(t.clone()),
        }
    }
    if !base_res.is_empty() {
        log::info!(
            "baseline: {} result(s) cached in {}",
            base_res.len(),
            store.dir.display()
        );
    }
    todo
}

/// Takes the base kernel's boot results into `base_res`, and into the
/// cache when the boot can be trusted.
fn record_baseline(
    store: &baseline::Cache,
    key: &dyn Fn(&str) -> Option<Key>,
    todo: &[String],
    cases: &[Case],
    b: &Boot,
    base_res: &mut BaseResults,
) -> Result<()> {
    // A kernel report outside the tests may belong to any of them:
    // keep this boot's results out of the cache. After a crash or a
    // timeout, the tests that finished before it still count (the
    // unfinished ones are incomplete, which is never cached).
    let trusted = b.kernel_reports.is_empty();
    if !trusted {
        log::info!(
            "baseline: {} kernel report(s) outside the tests; \
             its results are not cached",
            b.kernel_reports.len()
        );
    }
    for t in todo {
        let first = cases.iter().find(|c| &c.name == t);
        let r = first.map_or(Res::Incomplete, |c| c.result);
        if let (true, Some(k)) = (trusted, key(t)) {
            store.put(&baseline::Entry {
                key: k,
                result: r,
                seconds: first.map_or(0.0, |c| c.seconds),
                message: first.map(|c| c.message.clone()).unwrap_or_default(),
                logs: b.logs.display().to_string(),
            })?;
        }
        base_res.insert(t.clone(), (r, false));
    }
    Ok(())
}

/// The expunged tests among those asked for, and the tests left to run.
fn without_expunged(opts: &Opts, all: &[lists::Entry]) -> Result<(Vec<Expunged>, Vec<String>)> {
    let expunged: Vec<Expunged> = all
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
    Ok((expunged, tests))
}

/// Every retry's result, per test.
type Retried = BTreeMap<String, Vec<Res>>;

/// Runs again, in one extra boot, the tests that failed with the series
/// and passed on the baseline; returns every retry's result per test.
fn retry_failures(
    ctx: &Ctx,
    series: &Kernel,
    retry: &[String],
    logs: &Path,
) -> Result<(Retried, Option<Boot>)> {
    let mut retried = Retried::new();
    if retry.is_empty() || ctx.opts.retries == 0 {
        return Ok((retried, None));
    }
    log::info!(
        "{} test(s) failed with the series and passed on the baseline; \
         retrying up to {} more time(s): {}",
        retry.len(),
        ctx.opts.retries,
        retry.join(" ")
    );
    // check -L N: after a failure, N more runs (so a pass ends early).
    let extra: Vec<String> = if ctx.opts.retries > 1 {
        vec!["-L".into(), (ctx.opts.retries - 1).to_string()]
    } else {
        Vec::new()
    };
    let (rc, b) = boot(ctx, "retry", series, retry, &extra, logs)?;
    for c in rc {
        retried.entry(c.name).or_default().push(c.result);
    }
    Ok((retried, Some(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_config_refuses_shell_in_options() {
        let c = local_config("ext4", Path::new("/r/results"), "-b 1024", "").unwrap();
        assert!(c.contains("FSTYP=ext4\n"));
        assert!(c.contains("RESULT_BASE=/r/results\n"));
        assert!(c.contains("MKFS_OPTIONS=\"-b 1024\"\n"));
        assert!(!c.contains("MOUNT_OPTIONS"));
        assert!(local_config("ext4", Path::new("/r"), "$(reboot)", "").is_err());
    }

    /// A repository with `master` at the base and `zcsplice/1` one commit
    /// above it; returns the two commits.
    fn series_repo(dir: &Path) -> (git2::Oid, git2::Oid) {
        let repo = git2::Repository::init(dir).unwrap();
        let sig = git2::Signature::now("t", "t@t").unwrap();
        let tree = repo
            .find_tree(repo.index().unwrap().write_tree().unwrap())
            .unwrap();
        let base = repo
            .commit(Some("refs/heads/master"), &sig, &sig, "base", &tree, &[])
            .unwrap();
        let parent = repo.find_commit(base).unwrap();
        let tip = repo
            .commit(
                Some("refs/heads/zcsplice/1"),
                &sig,
                &sig,
                "patch",
                &tree,
                &[&parent],
            )
            .unwrap();
        repo.set_head("refs/heads/zcsplice/1").unwrap();
        (base, tip)
    }

    #[test]
    fn the_base_is_the_recorded_commit_named_by_a_branch_if_one_points_there() {
        let d = tempfile::tempdir().unwrap();
        let (base, _) = series_repo(d.path());
        let err = base_of(d.path(), None).unwrap_err().to_string();
        assert!(
            err.contains("branch zcsplice/1 has no recorded base"),
            "{err}"
        );
        let repo = git2::Repository::open(d.path()).unwrap();
        repo.config()
            .unwrap()
            .set_str("branch.zcsplice/1.zcspliceBase", &base.to_string())
            .unwrap();
        // master is at the base: build it there, reusing its build directory.
        assert_eq!(
            base_of(d.path(), None).unwrap(),
            (base.to_string(), "master".to_string())
        );
        assert_eq!(base_of(d.path(), Some("zcsplice/1")).unwrap().1, "master");
        // No branch at the base: the commit itself.
        repo.find_branch("master", git2::BranchType::Local)
            .unwrap()
            .delete()
            .unwrap();
        assert_eq!(
            base_of(d.path(), None).unwrap(),
            (base.to_string(), base.to_string())
        );
        // A branch that is its own base carries no series.
        repo.config()
            .unwrap()
            .set_str(
                "branch.zcsplice/1.zcspliceBase",
                &repo.head().unwrap().target().unwrap().to_string(),
            )
            .unwrap();
        let err = base_of(d.path(), None).unwrap_err().to_string();
        assert!(err.contains("is its own base"), "{err}");
    }

    #[test]
    fn without_the_config_entry_the_base_ref_is_read() {
        let d = tempfile::tempdir().unwrap();
        let (base, _) = series_repo(d.path());
        let repo = git2::Repository::open(d.path()).unwrap();
        // What a fetch of the branch and refs/zcsplice/* brings: no config.
        repo.reference("refs/zcsplice/base/zcsplice/1", base, true, "t")
            .unwrap();
        assert_eq!(
            base_of(d.path(), None).unwrap(),
            (base.to_string(), "master".to_string())
        );
    }
}
