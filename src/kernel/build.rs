//! `zcsplice build`: an out-of-tree kernel build (`O=` in the cache, keyed
//! by tree and branch) from a lean base config plus fragments from vm/,
//! with ccache, a progress bar, a full log, and the first compiler error
//! when it fails.

use anyhow::{anyhow, bail, Context, Result};
use git2::{ObjectType, Oid, Repository};
use regex::Regex;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::kernel::kconfig;
use crate::procs;
use crate::tree::{dirty_files, sanitize};

/// Which checks a kernel is built with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Profile {
    /// The series' test kernel: vm/config/debug.config (lockdep, DEBUG_VM,
    /// KUnit) and vm/config/series.config (its KUnit test, its faults).
    #[default]
    Debug,
    /// vm/config/production.config instead: no debug or test options, as
    /// a distribution ships it; for numbers (`bench`), not for proofs.
    Production,
}

/// How a kernel is configured and built, whichever tree and branch.
#[derive(Debug, Clone, Default)]
pub struct KernelOpts {
    /// Extra config fragments, applied after vm/config/*.config.
    pub fragments: Vec<PathBuf>,
    pub profile: Profile,
    pub kasan: bool,
    /// Parallel make jobs; None: the number of CPUs.
    pub jobs: Option<usize>,
}

/// What to build: a tree, a branch of it (None: what is checked out), how.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    pub tree: PathBuf,
    pub branch: Option<String>,
    /// Names the worktree and build directory instead of `branch`, so that
    /// revisions built one after the other in one slot rebuild only what
    /// changed (`build --each-commit`).
    pub slot: Option<String>,
    pub kernel: KernelOpts,
}

/// Builds what `req` asks for. The tree failing to configure or compile
/// is untestable (exit 125: bisect skips the commit); any other failure
/// (a fragment that cannot be read, git, the disk) is the machinery's
/// (128: a bisect stops instead of skipping every commit).
pub fn build_kernel(env: &crate::env::Env, req: &BuildRequest) -> Result<Built> {
    let built = build(&env.series, &env.cache, &req.tree, &req.opts()).map_err(|e| {
        // The tree's own failures (configure, make) are untestable;
        // anything else is the machinery's.
        match e.downcast_ref::<crate::exit::Exit>() {
            Some(_) => e,
            None => crate::exit::infrastructure(e),
        }
    })?;
    if built.up_to_date {
        log::info!("kernel up to date: {}", built.image.display());
    } else {
        log::info!(
            "built {} in {:.0} s ({} steps); log: {}",
            built.image.display(),
            built.seconds,
            built.objects,
            built.log.display()
        );
    }
    Ok(built)
}

impl BuildRequest {
    fn opts(&self) -> BuildOpts {
        BuildOpts {
            branch: self.branch.clone(),
            slot: self.slot.clone(),
            fragments: self.kernel.fragments.clone(),
            profile: self.kernel.profile,
            kasan: self.kernel.kasan,
            jobs: self
                .kernel
                .jobs
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        }
    }
}

/// What the kernel config of `req` is made of: a hash of its fragments,
/// in order, with their names. Built from the same commit with the same
/// hash, a kernel is the same kernel.
pub fn config_hash(project: &Path, req: &BuildRequest) -> Result<String> {
    fragments_hash(&fragments(project, &req.opts()))
}

fn fragments_hash(frags: &[PathBuf]) -> Result<String> {
    let mut cfg_text = String::new();
    for f in frags {
        cfg_text.push_str(&format!("# {}\n", f.display()));
        cfg_text.push_str(
            &std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?,
        );
    }
    Ok(hash(cfg_text.as_bytes()))
}

pub struct BuildOpts {
    /// Build this branch (a worktree in the cache when it is not checked out).
    pub branch: Option<String>,
    /// See `BuildRequest::slot`.
    pub slot: Option<String>,
    pub fragments: Vec<PathBuf>,
    pub profile: Profile,
    pub kasan: bool,
    pub jobs: usize,
}

pub struct Built {
    pub image: PathBuf,
    pub outdir: PathBuf,
    pub log: PathBuf,
    /// Nothing had changed since the last successful build: make was not run.
    pub up_to_date: bool,
    pub seconds: f64,
    pub objects: usize,
}

impl Built {
    /// The kernel's release string (`uname -r` in the guest).
    pub fn release(&self) -> String {
        std::fs::read_to_string(self.outdir.join("include/config/kernel.release"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }
}

/// A build that failed in the compiler or linker (not in zcsplice).
#[derive(Debug)]
pub struct BuildFailed {
    pub first_error: String,
    pub log: PathBuf,
}

impl std::fmt::Display for BuildFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kernel build failed: {}\n  full log: {}",
            self.first_error,
            self.log.display()
        )
    }
}
impl std::error::Error for BuildFailed {}

fn hash(bytes: &[u8]) -> String {
    Oid::hash_object(ObjectType::Blob, bytes)
        .expect("hashing cannot fail")
        .to_string()
}

/// Where the sources of `branch` are: the tree itself when that branch is
/// checked out there, else a detached worktree in the cache (so switching
/// between base and series never touches the tree's files or their mtimes).
pub struct Source {
    pub dir: PathBuf,
    pub commit: Oid,
    /// Names the build directory: the branch, or "HEAD".
    pub key: String,
}

/// With `checkout` false, returns None where a worktree would have to be
/// created or moved. A `slot` names the worktree instead of `branch`, and
/// is always a worktree.
pub fn source(
    tree: &Path,
    branch: Option<&str>,
    slot: Option<&str>,
    cache: &Path,
    checkout: bool,
) -> Result<Option<Source>> {
    let repo =
        Repository::open(tree).with_context(|| format!("{} is not a git tree", tree.display()))?;
    let head = repo.head().context("the tree has no HEAD")?;
    let head_commit = head.peel_to_commit()?.id();
    let Some(branch) = branch else {
        let key = head
            .shorthand()
            .filter(|_| head.is_branch())
            .unwrap_or("HEAD")
            .to_string();
        return Ok(Some(Source {
            dir: tree.to_path_buf(),
            commit: head_commit,
            key,
        }));
    };
    let commit = repo
        .revparse_single(branch)
        .and_then(|o| o.peel_to_commit())
        .with_context(|| {
            format!(
                "--branch {branch}: no such branch or commit in {}",
                tree.display()
            )
        })?
        .id();
    if slot.is_none()
        && (head.shorthand() == Some(branch)
            || (!head.is_branch() && commit == head_commit && branch == "HEAD"))
    {
        return Ok(Some(Source {
            dir: tree.to_path_buf(),
            commit,
            key: branch.to_string(),
        }));
    }
    let key = slot.unwrap_or(branch);
    let name = tree.file_name().unwrap_or_default().to_string_lossy();
    let wt = cache
        .join("worktrees")
        .join(sanitize(&name))
        .join(sanitize(key));
    let id = commit.to_string();
    let ready = wt.join(".git").exists()
        && duct::cmd!("git", "-C", &wt, "rev-parse", "HEAD")
            .read()
            .ok()
            == Some(id.clone());
    if !ready && !checkout {
        return Ok(None);
    }
    if !wt.join(".git").exists() {
        std::fs::create_dir_all(wt.parent().unwrap())?;
        log::info!("checking out {branch} in {}", wt.display());
        duct::cmd!("git", "-C", tree, "worktree", "prune").run()?;
        duct::cmd!("git", "-C", tree, "worktree", "add", "--quiet", "--detach", &wt, &id)
            .run()
            .context("git worktree add failed")?;
    } else if !ready {
        // Only files that differ are rewritten; the rest keep their mtimes.
        duct::cmd!("git", "-C", &wt, "checkout", "--quiet", "--detach", "--force", &id).run()?;
    }
    Ok(Some(Source {
        dir: wt,
        commit,
        key: key.to_string(),
    }))
}

/// No tracked file differs from the checked-out commit (a stamp is only
/// valid for committed sources).
fn is_clean(dir: &Path) -> Result<bool> {
    Ok(dirty_files(&Repository::open(dir)?)?.is_empty())
}

pub fn outdir(cache: &Path, tree: &Path, src: &Source, opts: &BuildOpts) -> Result<PathBuf> {
    let mut key = sanitize(&src.key);
    // kbuild records the source path in every command line: a worktree
    // and the tree itself cannot share an output directory.
    if src.dir != tree {
        key.push_str("@worktree");
    }
    if opts.profile == Profile::Production {
        key.push_str("+production");
    }
    if opts.kasan {
        key.push_str("+kasan");
    }
    if !opts.fragments.is_empty() {
        let names: Vec<String> = opts
            .fragments
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        key.push('+');
        key.push_str(&hash(names.join("\n").as_bytes())[..8]);
    }
    let name = tree.file_name().unwrap_or_default().to_string_lossy();
    Ok(cache.join("build").join(sanitize(&name)).join(key))
}

/// The fragments a build applies, in order: vm/config/base, then debug and
/// series (or production), kasan, the user's.
fn fragments(project: &Path, opts: &BuildOpts) -> Vec<PathBuf> {
    let cfg = project.join("vm/config");
    let mut v = vec![cfg.join("base.config")];
    match opts.profile {
        Profile::Debug => v.extend([cfg.join("debug.config"), cfg.join("series.config")]),
        Profile::Production => v.push(cfg.join("production.config")),
    }
    if opts.kasan {
        v.push(cfg.join("kasan.config"));
    }
    v.extend(opts.fragments.iter().cloned());
    v
}

fn make_vars(outdir: &Path, jobs: usize) -> Vec<String> {
    let mut v = vec![
        format!("O={}", outdir.display()),
        format!("-j{jobs}"),
        // Fixed build identity: same sources, same objects (ccache hits).
        "KBUILD_BUILD_TIMESTAMP=2026-01-01".into(),
        "KBUILD_BUILD_USER=zcsplice".into(),
        "KBUILD_BUILD_HOST=zcsplice".into(),
    ];
    if which("ccache") {
        v.push("CC=ccache gcc".into());
    }
    v
}

/// Is `prog` on PATH?
pub fn which(prog: &str) -> bool {
    which::which(prog).is_ok()
}

/// Runs one configuration step in `src`, its output into the build log.
/// `prog` is a &OsStr on purpose: duct runs a Path relative to `dir`
/// instead of looking it up in PATH.
fn config_step(src: &Path, prog: &OsStr, args: &[String], log: &mut std::fs::File) -> Result<()> {
    let out = duct::cmd(prog, args)
        .dir(src)
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .with_context(|| format!("cannot run {}", prog.to_string_lossy()))?;
    log.write_all(&out.stdout)?;
    if !out.status.success() {
        bail!(
            "{} {} failed:\n{}",
            prog.to_string_lossy(),
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(())
}

fn configure(src: &Path, outdir: &Path, frags: &[PathBuf], log: &mut std::fs::File) -> Result<()> {
    let o = format!("O={}", outdir.display());
    let make = OsStr::new("make");
    config_step(src, make, &[o.clone(), "x86_64_defconfig".into()], log)?;
    let mut args = vec![
        "-m".to_string(),
        "-O".into(),
        outdir.display().to_string(),
        outdir.join(".config").display().to_string(),
    ];
    args.extend(frags.iter().map(|f| f.display().to_string()));
    let merge = src.join("scripts/kconfig/merge_config.sh");
    config_step(src, merge.as_os_str(), &args, log)?;
    config_step(src, make, &[o, "olddefconfig".into()], log)?;
    let mut requested = Vec::new();
    for f in frags {
        requested.extend(kconfig::parse_fragment(f)?);
    }
    let dotconfig = outdir.join(".config");
    let text = std::fs::read_to_string(&dotconfig)
        .with_context(|| format!("cannot read {}", dotconfig.display()))?;
    let dot = kconfig::parse_dotconfig(&text);
    let (bad, unknown): (Vec<_>, Vec<_>) = kconfig::unmet(&requested, &dot)
        .into_iter()
        .partition(|(s, _)| kconfig::symbol_defined(src, &s.name));
    for (s, _) in &unknown {
        log::info!(
            "{}:{}: {} does not exist in this tree; left out",
            s.file.display(),
            s.line,
            s.name
        );
    }
    if !bad.is_empty() {
        let lines: Vec<String> = bad
            .iter()
            .map(|(s, got)| {
                format!(
                    "  {}:{}: {}={} requested, the config has {got}",
                    s.file.display(),
                    s.line,
                    s.name,
                    s.value
                )
            })
            .collect();
        bail!(
            "config fragments asked for options Kconfig did not give (missing dependencies?):\n{}",
            lines.join("\n")
        );
    }
    Ok(())
}

/// A compiler diagnostic of a build log, split into its parts.
struct Diagnostic<'a> {
    file: &'a str,
    line: &'a str,
    col: &'a str,
    /// `error` (also for `fatal error`) or `warning`.
    kind: &'a str,
    message: &'a str,
}

/// The compiler diagnostics of a build log, in order.
fn diagnostics(log: &str) -> impl Iterator<Item = Diagnostic<'_>> {
    static GCC: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
        Regex::new(r"^(.+?):(\d+):(\d+): (?:fatal )?(error|warning): (.*)$").unwrap()
    });
    log.lines().filter_map(|l| {
        let c = GCC.captures(l)?;
        let part = |i| c.get(i).map_or("", |m| m.as_str());
        Some(Diagnostic {
            file: part(1),
            line: part(2),
            col: part(3),
            kind: part(4),
            message: part(5),
        })
    })
}

/// The first compiler or linker error in a build log, as `file:line:col: error: ...`.
pub fn first_error(log: &str, src: &Path) -> String {
    let ld = Regex::new(r"(undefined reference to .*|multiple definition of .*)$").unwrap();
    let prefix = format!("{}/", src.display());
    if let Some(d) = diagnostics(log).find(|d| d.kind == "error") {
        let file = d.file.strip_prefix(&prefix).unwrap_or(d.file);
        return format!("{file}:{}:{}: error: {}", d.line, d.col, d.message);
    }
    if let Some(l) = log.lines().find(|l| ld.is_match(l)) {
        return l.trim().to_string();
    }
    log.lines()
        .find(|l| l.starts_with("make") && l.contains("***"))
        .unwrap_or("no error message found in the log")
        .to_string()
}

/// The compiler warnings in a build log about any of `files` (paths in the
/// tree, as a commit names them: kbuild prints them relative to `O=`), as
/// `file:line:col: warning: ...`, each once, in order.
pub fn warnings_in(log: &str, files: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    diagnostics(log)
        .filter(|d| d.kind == "warning")
        .filter_map(|d| {
            let file = files
                .iter()
                .find(|f| d.file == f.as_str() || d.file.ends_with(&format!("/{f}")))?;
            Some(format!(
                "{file}:{}:{}: warning: {}",
                d.line, d.col, d.message
            ))
        })
        .filter(|w| seen.insert(w.clone()))
        .collect()
}

/// The compiler's or linker's failure behind a build error, if it is one.
pub fn build_failure(e: &anyhow::Error) -> Option<&BuildFailed> {
    e.downcast_ref::<crate::exit::Exit>()
        .map_or(e, |x| &x.1)
        .downcast_ref::<BuildFailed>()
}

/// Objects a kbuild output line reports building (" CC  fs/splice.o").
fn step_of(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let (tool, rest) = t.split_once(char::is_whitespace)?;
    let known = [
        "CC", "AS", "LD", "AR", "HOSTCC", "HOSTLD", "OBJCOPY", "GEN", "CHK", "UPD", "SYNC", "VDSO",
        "POLICY", "LDS", "BUILD", "MKPIGGY", "ZOFFSET", "VOFFSET", "RELOCS", "XZKERN", "GZIP",
        "CPUSTR", "MKELF", "WRAP", "SYSHDR", "SYSTBL", "TOUCH", "KSYMS", "SORTTAB", "NM",
        "MODPOST", "DESCEND", "INSTALL",
    ];
    (line.starts_with("  ") && known.contains(&tool)).then_some(rest.trim())
}

/// ccache rewrites paths under its base directory relative to the build
/// directory: with the common ancestor of sources and output, two caches
/// of the same layout (or two trees at the same depth) share hits.
fn common_ancestor(a: &Path, b: &Path) -> PathBuf {
    let common: PathBuf = a
        .components()
        .zip(b.components())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect();
    if common.components().count() <= 1 {
        a.to_path_buf()
    } else {
        common
    }
}

/// Builds the kernel, one build at a time per cache (make uses every core,
/// and two builds must not share a worktree or `O=`): a second zcsplice
/// waits on `<cache>/build.lock`, unless its kernel is built already.
pub fn build(project: &Path, cache: &Path, tree: &Path, opts: &BuildOpts) -> Result<Built> {
    std::fs::create_dir_all(cache)?;
    let path = cache.join("build.lock");
    let lock = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    if lock.try_lock().is_err() {
        if let Some(built) = build_locked(project, cache, tree, opts, false)? {
            return Ok(built);
        }
        log::info!(
            "waiting for another zcsplice build ({} is locked)",
            path.display()
        );
        lock.lock()?;
    }
    Ok(build_locked(project, cache, tree, opts, true)?.expect("a build was allowed"))
}

/// Runs `make bzImage` in its own process group, its output into `log`,
/// with a progress bar over the objects (the count of the last build);
/// returns make's status and how many objects it built.
fn run_make(
    src: &Path,
    outdir: &Path,
    jobs: usize,
    prev_objects: Option<u64>,
    log: &mut std::fs::File,
) -> Result<(std::process::ExitStatus, usize)> {
    let start = Instant::now();
    let pb = match prev_objects {
        Some(n) => crate::progress::bar(n, "objects"),
        None => crate::progress::counter("objects"),
    };
    let mut args = make_vars(outdir, jobs);
    args.push("bzImage".into());
    let make = duct::cmd("make", &args)
        .dir(src)
        .env("CCACHE_BASEDIR", common_ancestor(src, outdir))
        .stderr_to_stdout()
        .unchecked()
        .before_spawn(|c| {
            // A group of its own, which the signal handler stops.
            c.process_group(0);
            Ok(())
        });
    let (reader, _group) = procs::start(procs::Kind::Tool("make"), || {
        let r = make.reader()?;
        let pid = r.pids()[0];
        Ok((r, pid))
    })?;
    let mut lines = BufReader::new(&reader);
    let mut objects = 0usize;
    let mut buf = Vec::new();
    let mut last_report = Instant::now();
    loop {
        buf.clear();
        if lines.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        log.write_all(&buf)?;
        let line = String::from_utf8_lossy(&buf);
        if let Some(step) = step_of(&line) {
            objects += 1;
            pb.inc(1);
            pb.set_message(format!(
                "{} {step}",
                line.split_whitespace().next().unwrap_or("")
            ));
            if pb.is_hidden() && last_report.elapsed() > Duration::from_secs(60) {
                log::info!(
                    "build: {objects} objects, {:.0} s",
                    start.elapsed().as_secs_f64()
                );
                last_report = Instant::now();
            }
        }
    }
    let status = reader
        .try_wait()?
        .map(|o| o.status)
        .ok_or_else(|| anyhow!("make did not exit"))?;
    if procs::stopping() {
        // The signal handler killed make: not a build failure to report.
        procs::halt();
    }
    pb.finish_and_clear();
    Ok((status, objects))
}

/// Present in an output directory while make runs there. Found at the
/// start of a build, it means make was killed (SIGKILL, the OOM killer, a
/// CI limit, a lost machine) with no chance to delete the target it was
/// writing; kbuild takes such a half-written object as up to date, since
/// it is newer than its sources and its command line did not change (seen:
/// a vmlinux.o that objtool never finished, "incomplete ORC unwind tables").
const MAKE_RUNNING: &str = "zcsplice-make-running";

/// After a killed make, removes every file it wrote (anything newer than
/// the marker but .config and zcsplice's own files), so that make builds
/// them again.
fn forget_killed_make(outdir: &Path) -> Result<()> {
    let marker = outdir.join(MAKE_RUNNING);
    let Ok(since) = std::fs::metadata(&marker).and_then(|m| m.modified()) else {
        return Ok(());
    };
    let mut removed = 0usize;
    for entry in walkdir::WalkDir::new(outdir) {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy();
        if !entry.file_type().is_file() || name == ".config" || name.starts_with("zcsplice-") {
            continue;
        }
        if entry.metadata()?.modified()? >= since {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    log::info!(
        "the last make in {} was killed; removed the {removed} files it wrote, \
         so that none of them is taken as built half-written",
        outdir.display()
    );
    std::fs::remove_file(&marker)?;
    Ok(())
}

/// The build itself; with `may_build` false, only says whether the kernel
/// is up to date (Some) without touching anything (None otherwise).
fn build_locked(
    project: &Path,
    cache: &Path,
    tree: &Path,
    opts: &BuildOpts,
    may_build: bool,
) -> Result<Option<Built>> {
    let start = Instant::now();
    let Some(src) = source(
        tree,
        opts.branch.as_deref(),
        opts.slot.as_deref(),
        cache,
        may_build,
    )?
    else {
        return Ok(None);
    };
    let outdir = outdir(cache, tree, &src, opts)?;
    let image = outdir.join("arch/x86/boot/bzImage");
    let log_path = outdir.join("zcsplice-build.log");
    let frags = fragments(project, opts);

    let cfg_hash = fragments_hash(&frags)?;
    let stamp = hash(format!("{}\n{cfg_hash}\n{:?}", src.commit, make_vars(&outdir, 0)).as_bytes());
    let stamp_path = outdir.join("zcsplice-stamp");
    let objcount_path = outdir.join("zcsplice-objects");
    let prev_objects: Option<u64> = std::fs::read_to_string(&objcount_path)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    if image.exists()
        && std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str())
        && is_clean(&src.dir)?
    {
        return Ok(Some(Built {
            image,
            outdir,
            log: log_path,
            up_to_date: true,
            seconds: start.elapsed().as_secs_f64(),
            objects: 0,
        }));
    }
    if !may_build {
        return Ok(None);
    }
    std::fs::create_dir_all(&outdir)?;
    let _ = std::fs::remove_file(&stamp_path);
    forget_killed_make(&outdir)?;

    let mut log = std::fs::File::create(&log_path)?;
    // The fragments are applied again when they or the sources change: a
    // commit may add a Kconfig symbol a fragment asks for (the series' own
    // test option), which kbuild's silent syncconfig would leave at its
    // default.
    let cfg_key = hash(format!("{}\n{cfg_hash}", src.commit).as_bytes());
    let cfg_stamp = outdir.join("zcsplice-config-hash");
    if std::fs::read_to_string(&cfg_stamp).ok().as_deref() != Some(cfg_key.as_str())
        || !outdir.join(".config").exists()
    {
        log::info!("configuring {} (O={})", src.dir.display(), outdir.display());
        configure(&src.dir, &outdir, &frags, &mut log).map_err(crate::exit::untestable)?;
        std::fs::write(&cfg_stamp, &cfg_key)?;
    }

    let running = outdir.join(MAKE_RUNNING);
    std::fs::write(&running, "")?;
    let (status, objects) = run_make(&src.dir, &outdir, opts.jobs, prev_objects, &mut log)?;
    drop(log);
    if status.code().is_some() {
        // make exited by itself and deleted what it had not finished.
        std::fs::remove_file(&running)?;
    }
    if !status.success() || !image.exists() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        return Err(crate::exit::untestable(
            BuildFailed {
                first_error: first_error(&text, &src.dir),
                log: log_path,
            }
            .into(),
        ));
    }
    if prev_objects.is_none() || objects as u64 > prev_objects.unwrap_or(0) {
        std::fs::write(&objcount_path, objects.to_string())?;
    }
    if is_clean(&src.dir)? {
        std::fs::write(&stamp_path, &stamp)?;
    }
    Ok(Some(Built {
        image,
        outdir,
        log: log_path,
        up_to_date: false,
        seconds: start.elapsed().as_secs_f64(),
        objects,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_production_kernel_has_no_debug_fragment_and_a_build_of_its_own() {
        let project = Path::new("/p");
        let opts = |profile, kasan| BuildOpts {
            branch: None,
            slot: None,
            fragments: vec![],
            profile,
            kasan,
            jobs: 2,
        };
        let names = |o: &BuildOpts| -> Vec<String> {
            fragments(project, o)
                .iter()
                .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            names(&opts(Profile::Debug, true)),
            [
                "base.config",
                "debug.config",
                "series.config",
                "kasan.config"
            ]
        );
        assert_eq!(
            names(&opts(Profile::Production, false)),
            ["base.config", "production.config"]
        );
        let src = Source {
            dir: "/t".into(),
            commit: Oid::zero(),
            key: "zcsplice/7.3.4".into(),
        };
        let dir = |o| outdir(Path::new("/c"), Path::new("/t"), &src, &o).unwrap();
        assert_ne!(
            dir(opts(Profile::Debug, false)),
            dir(opts(Profile::Production, false))
        );
        assert!(dir(opts(Profile::Production, false))
            .to_string_lossy()
            .ends_with("+production"));
    }

    #[test]
    fn a_killed_make_leaves_nothing_it_wrote_behind() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path();
        let at = |secs| std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let file = |name: &str, secs| {
            let p = out.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let f = std::fs::File::create(&p).unwrap();
            f.set_modified(at(secs)).unwrap();
        };
        file("fs/old.o", 1000);
        file("fs/half.o", 3000);
        file("vmlinux.o", 3000);
        file(".config", 3000);
        file("zcsplice-build.log", 3000);
        file(MAKE_RUNNING, 2000);

        forget_killed_make(out).unwrap();
        let left: Vec<String> = walkdir::WalkDir::new(out)
            .sort_by_file_name()
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| e.path().strip_prefix(out).unwrap().display().to_string())
            .collect();
        assert_eq!(left, [".config", "fs/old.o", "zcsplice-build.log"]);

        // No marker: make was not killed, nothing is removed.
        file("fs/new.o", 5000);
        forget_killed_make(out).unwrap();
        assert!(out.join("fs/new.o").exists());
    }

    #[test]
    fn first_error_finds_the_compiler_error() {
        let log = "  CC      fs/pipe.o\n/k/src/fs/splice.c: In function 'f':\n\
                   /k/src/fs/splice.c:42:9: error: 'x' undeclared (first use in this function)\n\
                   /k/src/fs/splice.c:50:1: error: second\nmake[3]: *** [x] Error 1\n";
        assert_eq!(
            first_error(log, Path::new("/k/src")),
            "fs/splice.c:42:9: error: 'x' undeclared (first use in this function)"
        );
    }

    #[test]
    fn warnings_are_those_of_the_files_named_once_each() {
        let log = "\
  CC      fs/splice.o
../../../trees/t/fs/splice.c:10:5: warning: unused variable 'x' [-Wunused-variable]
../../../trees/t/fs/splice.c:10:5: warning: unused variable 'x' [-Wunused-variable]
../../../trees/t/mm/filemap.c:3:1: warning: not ours
../../../trees/t/fs/notsplice.c:1:1: warning: a suffix, not the file
../../../trees/t/include/linux/splice.h:7:2: warning: in a header
";
        let files = ["fs/splice.c".to_string(), "include/linux/splice.h".into()];
        assert_eq!(
            warnings_in(log, &files),
            [
                "fs/splice.c:10:5: warning: unused variable 'x' [-Wunused-variable]",
                "include/linux/splice.h:7:2: warning: in a header",
            ]
        );
    }

    #[test]
    fn first_error_falls_back_to_linker_then_make() {
        let log = "  LD      vmlinux.o\nld: mm/filemap.o: in function `f':\nfilemap.c:(.text+0x1): undefined reference to `g'\nmake[2]: *** [vmlinux] Error 1\n";
        assert_eq!(
            first_error(log, Path::new("/x")),
            "filemap.c:(.text+0x1): undefined reference to `g'"
        );
        assert_eq!(
            first_error("make[1]: *** [all] Error 2\n", Path::new("/x")),
            "make[1]: *** [all] Error 2"
        );
    }

    #[test]
    fn ccache_base_is_the_common_ancestor() {
        let c = Path::new("/root/.cache/zcsplice");
        assert_eq!(common_ancestor(&c.join("trees/t"), &c.join("build/t/b")), c);
        assert_eq!(
            common_ancestor(Path::new("/src/linux"), Path::new("/tmp/o")),
            Path::new("/src/linux")
        );
    }

    #[test]
    fn steps_are_recognised() {
        assert_eq!(step_of("  CC      fs/splice.o\n"), Some("fs/splice.o"));
        assert_eq!(step_of("fs/splice.c:1: warning: x"), None);
    }
}
