//! zcsplice: keeps the zero-copy splice-write series alive across kernels.

use zcsplice::exit::{self, infrastructure, untestable};
use zcsplice::guest::boot as guestboot;
use zcsplice::kernel::build;
use zcsplice::series::{self, apply, probe, render};
use zcsplice::suites::{bench, controls, guest_tests as run, xfstests};
use zcsplice::tree::{self, import};
use zcsplice::workflows::matrix;
use zcsplice::{deps, interrupt};

use anyhow::{anyhow, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "zcsplice", version, about, after_help = exit::HELP)]
struct Cli {
    /// Directory holding the series (patches/ and templates/).
    #[arg(long, global = true, env = "ZCSPLICE_SERIES")]
    series: Option<PathBuf>,
    /// Cache directory for imported trees and builds [default: $XDG_CACHE_HOME/zcsplice].
    #[arg(long, global = true, env = "ZCSPLICE_CACHE")]
    cache: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Manage kernel trees.
    #[command(subcommand)]
    Tree(TreeCmd),
    /// Print the kernel version and every API fact the series depends on.
    Probe {
        #[command(flatten)]
        tree: TreeArgs,
        /// Print JSON: {"version": ..., "facts": {NAME: {"value", "evidence"}}}.
        #[arg(long)]
        json: bool,
    },
    /// Render the series for a tree as git format-patch files.
    Render {
        #[command(flatten)]
        tree: TreeArgs,
        /// Output directory (0000-cover-letter.patch, NNNN-<slug>.patch).
        #[arg(long)]
        out: PathBuf,
    },
    /// Commit the rendered series as a branch of the tree and check it out.
    Apply {
        #[command(flatten)]
        tree: TreeArgs,
        /// Branch to create [default: zcsplice/<version>].
        #[arg(long)]
        branch: Option<String>,
        /// Rebuild the branch when it exists and differs.
        #[arg(long)]
        force: bool,
    },
    /// Build the kernel out of tree (O= in the cache) from vm/config fragments.
    Build(BuildArgs),
    /// Build if needed, boot under virtme-ng, run the guest tests, give a verdict.
    Run {
        #[command(flatten)]
        build: BuildArgs,
        #[command(flatten)]
        guest: GuestArgs,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Also write JUnit XML here.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Negative control: inject this fault through the series' debugfs
        /// knob (CONFIG_SPLICE_MOVE_FAULTS) before the tests; they must fail.
        #[arg(long, value_name = "NAME")]
        fault: Option<String>,
    },
    /// Negative controls: boot once per fault in vm/controls.yaml with that
    /// fault injected; each must make its tests fail. Exit 0 when every
    /// fault was caught, 1 when one was missed.
    Controls {
        #[command(flatten)]
        build: BuildArgs,
        /// Only this fault; repeatable [default: every control].
        #[arg(long = "fault", value_name = "NAME")]
        faults: Vec<String>,
        /// Hard limit for each boot, in seconds (a caught fault may leave
        /// the kernel spinning after its report).
        #[arg(long, default_value_t = 240)]
        timeout: u64,
        /// Print the outcomes as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Build if needed, boot once and measure splice(pipe -> file) into
    /// tmpfs, ramfs and ext4 with vm.splice_move on (move) and off (copy).
    ///
    /// Each rep a writer process write(2)s --size bytes into a pipe of the
    /// default size (64 KiB) in 64 KiB writes while the bench splices them
    /// into a fresh file; move and copy reps alternate, after one warm-up
    /// rep per cell. Prints medians, min-max spreads and the move/copy
    /// ratios against the goals; saves bench.json in the run's log
    /// directory. Fails on a kernel without the series or with a kernel
    /// report on the console.
    ///
    /// ext4 is made fresh (mkfs.ext4, default options) on a sparse scratch
    /// disk. Row ext4 times the page cache only: the guest raises the dirty
    /// limits above --size and stops periodic writeback, so nothing is
    /// written back while a rep is timed; the fsync(), removal and sync()
    /// after each rep are untimed, so the next rep starts clean. Row
    /// ext4+fsync also times the fsync() of the file: the disk I/O is the
    /// same in both modes and dwarfs the copy a move saves, so the
    /// throughput and system CPU goals do not apply there (n/a), only "no
    /// case below" (a move must not be slower).
    ///
    /// Under TCG emulation (2 vCPUs, debug kernel) on an otherwise idle
    /// 2-CPU host a 1G rep on tmpfs takes about 17 s and tmpfs plus ramfs
    /// at the defaults about 8 minutes; the ext4 rows add their own reps,
    /// the fsyncs and the writes. Other busy VMs on the host slow an
    /// emulated guest several-fold (such a run took 38 minutes).
    Bench {
        #[command(flatten)]
        build: BuildArgs,
        /// Rows to measure, repeatable or comma-separated: tmpfs, ramfs,
        /// ext4 (page cache only), ext4+fsync (fsync timed) [default: all].
        #[arg(
            long = "fs",
            value_name = "FS",
            value_delimiter = ',',
            value_parser = clap::builder::PossibleValuesParser::new(bench::ROWS),
            hide_possible_values = true
        )]
        fs: Vec<String>,
        /// Bytes per rep (K, M, G: binary units); a multiple of 64K.
        #[arg(long, default_value = "1G", value_parser = bench::parse_size)]
        size: u64,
        /// Measured reps per cell (filesystem x mode), after one warm-up.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
        reps: u32,
        /// Hard limit for the whole VM run, in seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
        /// Guest memory (qemu -m): must hold one file of --size in the page
        /// cache (on tmpfs or ramfs, or dirty on ext4).
        #[arg(long, default_value = "3G")]
        memory: String,
        /// Print the results as JSON (they are always saved as bench.json).
        #[arg(long)]
        json: bool,
    },
    /// Build if needed and run an installed xfstests in the guest on fresh
    /// test and scratch disks; with --baseline, also on the unpatched base
    /// kernel (same config; results cached per test) and report as
    /// regressions only tests that pass there and fail with the series
    /// (after retries). Default tests: vm/xfstests/zcsplice-smoke.
    Xfstests(XfstestsArgs),
    /// The series through every stage on several trees, one row per tree.
    ///
    /// The stages: probe, render, apply, build, run (the guest tests) and,
    /// with --until xfstests, `xfstests --baseline`; each as its own command
    /// does it. A row stops at its first failing stage (the later ones are
    /// not run) and the next tree runs all the same. Logs per tree in
    /// <cache>/runs/matrix/<time>/<n>-<tree>. Exit 0 when every row passed
    /// every stage it ran, else 1.
    Matrix(MatrixArgs),
    /// Install what the kernel loop needs (Debian packages, virtme-ng).
    Setup,
    /// The whole job on a fresh machine: install, import Debian's 6.12,
    /// apply the series, build, boot, prove.
    Demo {
        /// Debian source series to use (X.Y or X.Y=VERSION, as `tree import`).
        #[arg(long, default_value = "6.12", value_name = "X.Y[=VERSION]")]
        debian: import::DebianSpec,
        #[arg(long, default_value_t = 900)]
        timeout: u64,
    },
}

#[derive(Args)]
struct BuildArgs {
    /// Kernel tree: a git repository (see `tree import`).
    #[arg(long, env = "ZCSPLICE_TREE")]
    tree: PathBuf,
    /// Branch to build [default: what is checked out]; another branch is
    /// built from a worktree in the cache.
    #[arg(long)]
    branch: Option<String>,
    #[command(flatten)]
    kernel: KernelArgs,
}

/// How a kernel is configured and built, whichever tree and branch.
#[derive(Args, Clone, Default)]
struct KernelArgs {
    /// Extra config fragment, applied after vm/config/*.config; repeatable.
    #[arg(long = "config-fragment", value_name = "FILE")]
    fragments: Vec<PathBuf>,
    /// Build with KASAN (vm/config/kasan.config).
    #[arg(long)]
    kasan: bool,
    /// Parallel make jobs [default: number of CPUs].
    #[arg(long)]
    jobs: Option<usize>,
}

/// The guest tests of a boot (`run`).
#[derive(Args)]
struct GuestArgs {
    /// Guest test to run (vm/tests/NAME.c); repeatable [default: all but selftest-*].
    #[arg(long = "test", value_name = "NAME")]
    tests: Vec<String>,
    /// Hard limit for the whole VM run, in seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Guest memory (qemu -m).
    #[arg(long, default_value = "2G")]
    memory: String,
}

#[derive(Args)]
struct XfstestsArgs {
    #[command(flatten)]
    build: BuildArgs,
    /// Filesystem to test (FSTYP); expunges from vm/xfstests/expunge/<FS>.
    #[arg(long, default_value = "ext4")]
    fs: String,
    /// Tests of this xfstests group (e.g. quick, auto, ext4/quick); repeatable.
    #[arg(short = 'g', long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// Tests to run (e.g. generic/001) [default with no -g: vm/xfstests/zcsplice-smoke].
    #[arg(value_name = "TEST")]
    tests: Vec<String>,
    /// Also run the tests on the base kernel the series applies on, and
    /// report only regressions: tests that pass there and fail with it.
    #[arg(long)]
    baseline: bool,
    /// With --baseline: more runs of a test that passed on the baseline
    /// and failed with the series; one pass makes it flaky, not a regression.
    #[arg(long, default_value_t = 2)]
    retries: u32,
    /// A built xfstests tree [default: $XFSTESTS_DIR, else /var/lib/xfstests].
    #[arg(long, value_name = "DIR")]
    xfstests: Option<PathBuf>,
    /// MKFS_OPTIONS for the test and scratch filesystems.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    mkfs_options: String,
    /// MOUNT_OPTIONS for the scratch filesystem.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    mount_options: String,
    /// Hard limit for each boot, in seconds.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
    /// Guest memory (qemu -m).
    #[arg(long, default_value = "2G")]
    memory: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Also write JUnit XML here.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
}

#[derive(Args)]
struct MatrixArgs {
    /// Kernel tree (a git repository); repeatable: one row each, in this order.
    #[arg(long = "tree", value_name = "PATH", required_unless_present = "debian")]
    trees: Vec<PathBuf>,
    /// Debian's linux-source-X.Y (or X.Y=VERSION), imported as `tree import
    /// --debian` does; repeatable: one row each, after the --tree rows.
    /// `--until apply --debian 6.12 --debian 6.1` asks whether the newest
    /// releases installed still take the series.
    #[arg(long = "debian", value_name = "X.Y[=VERSION]")]
    debian: Vec<import::DebianSpec>,
    /// The last stage to run; xfstests runs `zcsplice xfstests --baseline`
    /// (the default list unless --xfstests-test).
    #[arg(long, value_enum, default_value_t = matrix::Stage::Run)]
    until: matrix::Stage,
    /// Rebuild a zcsplice branch that exists and differs (as `apply --force`).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    kernel: KernelArgs,
    #[command(flatten)]
    guest: GuestArgs,
    /// With --until xfstests: a built xfstests tree [default: $XFSTESTS_DIR,
    /// else /var/lib/xfstests].
    #[arg(long, value_name = "DIR")]
    xfstests: Option<PathBuf>,
    /// With --until xfstests: this test instead of the default list; repeatable.
    #[arg(long = "xfstests-test", value_name = "TEST")]
    xfstests_tests: Vec<String>,
    /// With --until xfstests: hard limit for each xfstests boot, in seconds
    /// [default: that of `zcsplice xfstests`]. The default list takes well
    /// over an hour under TCG with the baseline kernel booted alongside.
    #[arg(long = "xfstests-timeout", value_name = "SECONDS")]
    xfstests_timeout: Option<u64>,
    /// Print the rows as JSON: [{"tree", "version", "passed", "logs",
    /// "stages": [{"name", "status", "detail", "log"}]}].
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum TreeCmd {
    /// Import a kernel tarball, or Debian's linux-source-<V>, as a git tree; prints its path.
    ///
    /// Each release gets a tree of its own: a new Debian release is imported
    /// beside the older ones, which stay (see `tree list`).
    Import {
        /// Debian source package series, e.g. 6.12 (the installed
        /// linux-source-6.12; installed if missing), or an exact version,
        /// 6.12=6.12.117-1~deb12u1 (or 6.12=6.12.117 for its newest
        /// revision), fetched with `apt-get download` into the cache.
        #[arg(long, conflicts_with = "tarball", value_name = "X.Y[=VERSION]")]
        debian: Option<import::DebianSpec>,
        /// A kernel tarball (.tar.xz, .tar.gz, ...).
        #[arg(required_unless_present = "debian")]
        tarball: Option<PathBuf>,
    },
    /// The imported trees: path, kernel version, source, and which is the
    /// newest of its X.Y series.
    List {
        /// Print JSON: [{"path", "version", "source": {"kind", ...}, "newest"}].
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct TreeArgs {
    /// Kernel tree: a git repository (see `tree import`).
    #[arg(long, env = "ZCSPLICE_TREE")]
    tree: PathBuf,
    /// Commit the series applies on [default: the recorded base of the
    /// checked-out zcsplice branch, else HEAD].
    #[arg(long)]
    base: Option<String>,
}

fn cache_dir(cli: &Cli) -> Result<PathBuf> {
    match &cli.cache {
        Some(c) => Ok(c.clone()),
        None => Ok(dirs::cache_dir()
            .ok_or_else(|| anyhow!("no cache directory; pass --cache"))?
            .join("zcsplice")),
    }
}

/// The series directory: --series, else the current directory if it holds
/// one, else the source tree zcsplice was built from.
fn series_dir(cli: &Cli) -> PathBuf {
    if let Some(s) = &cli.series {
        // Absolute: its vm/ and templates/ are read from other directories
        // too (make runs in the kernel tree).
        return std::path::absolute(s).unwrap_or_else(|_| s.clone());
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    if cwd.join("patches/series.yaml").exists() {
        return cwd;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(cli: &Cli, t: &TreeArgs) -> Result<(series::Series, tree::Tree, probe::Probed)> {
    let dir = series_dir(cli);
    let series =
        series::Series::load(&dir).with_context(|| format!("series in {}", dir.display()))?;
    let tree = tree::Tree::open(&t.tree, t.base.as_deref())?;
    let probed = probe::probe(&tree, &series.probes)?;
    Ok((series, tree, probed))
}

/// Says which tree an import used, and what else the cache holds of its series.
fn report_import(done: &import::Import) {
    let t = &done.tree;
    let what = if done.fresh {
        "imported"
    } else {
        "already imported"
    };
    eprintln!("zcsplice: {what}: {} ({})", t.source, t.version);
    for o in &done.others {
        eprintln!(
            "zcsplice: also in the cache: {} ({}){}: {}",
            o.source,
            o.version,
            if o.newest { ", the newest" } else { "" },
            o.path.display()
        );
    }
}

fn print_trees(trees: &[import::Imported]) {
    if trees.is_empty() {
        eprintln!("zcsplice: no imported trees; `zcsplice tree import --debian 6.12` makes one");
        return;
    }
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING)
        .set_header(["SERIES", "VERSION", "", "SOURCE", "PATH"]);
    for tr in trees {
        t.add_row([
            tr.series(),
            tr.version.clone(),
            if tr.newest { "newest" } else { "" }.to_string(),
            tr.source.to_string(),
            tr.path.display().to_string(),
        ]);
    }
    for c in t.column_iter_mut() {
        c.set_padding((0, 2));
    }
    println!("{}", t.trim_fmt());
}

fn print_facts(p: &probe::Probed) {
    println!("version: {}", p.version);
    let w = p.facts.keys().map(String::len).max().unwrap_or(0);
    for (name, f) in &p.facts {
        let v = match &f.value {
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        let doc = if f.doc.is_empty() {
            String::new()
        } else {
            format!("  ({})", f.doc)
        };
        println!("{name:w$}  {v}{doc}\n{:w$}  {}", "", f.evidence);
    }
}

/// Writes the emails and probe.json to `out`; returns the emails' paths.
fn write_out(out: &Path, r: &render::Rendered, p: &probe::Probed) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    // Stale patches from an earlier render would be picked up by `git am DIR/*.patch`.
    for dir in [out.to_path_buf(), out.join("testing")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let path = e?.path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            let numbered = name.len() > 5 && name[..4].bytes().all(|b| b.is_ascii_digit());
            if numbered && name[4..].starts_with('-') && name.ends_with(".patch") {
                std::fs::remove_file(&path)?;
            }
        }
    }
    if !r.testing.is_empty() {
        std::fs::create_dir_all(out.join("testing"))?;
    }
    let mut written = Vec::new();
    for (name, text) in r.files() {
        std::fs::write(out.join(&name), text)?;
        written.push(out.join(&name));
    }
    std::fs::write(
        out.join("probe.json"),
        serde_json::to_string_pretty(p)? + "\n",
    )?;
    Ok(written)
}

/// Renders into memory only (the user's object store is not touched) and
/// writes the result to `out`.
fn render_to(cli: &Cli, tree: &TreeArgs, out: &Path) -> Result<(render::Rendered, Vec<PathBuf>)> {
    let (series, t, p) = load(cli, tree)?;
    let _mempack = t.repo.odb()?.add_new_mempack_backend(1000)?;
    let r = render::render(&series, &t, &p).map_err(untestable)?;
    let written = write_out(out, &r, &p)?;
    Ok((r, written))
}

/// What `apply` did.
struct Applied {
    branch: String,
    rendered: render::Rendered,
    outcome: apply::Outcome,
}

impl std::fmt::Display for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (branch, n, tip) = (&self.branch, self.rendered.count(), self.rendered.tip());
        match self.outcome {
            apply::Outcome::UpToDate => write!(f, "{branch} is up to date ({n} patches, {tip})"),
            apply::Outcome::Created => write!(f, "{branch}: {n} patches applied, at {tip}"),
            apply::Outcome::Rebuilt { old } => {
                write!(
                    f,
                    "{branch}: rebuilt with {n} patches, at {tip} (was {old})"
                )
            }
        }
    }
}

/// Renders and commits the series as `branch` [default: zcsplice/<version>],
/// checked out; apply::apply keeps the user's work safe.
fn do_apply(cli: &Cli, tree: &TreeArgs, branch: Option<&str>, force: bool) -> Result<Applied> {
    let (series, t, p) = load(cli, tree)?;
    let r = render::render(&series, &t, &p).map_err(untestable)?;
    let branch = branch.map_or_else(|| format!("zcsplice/{}", p.version), str::to_string);
    let outcome = apply::apply(&t, &r, &branch, force).map_err(untestable)?;
    Ok(Applied {
        branch,
        rendered: r,
        outcome,
    })
}

fn build_opts(b: &BuildArgs) -> build::BuildOpts {
    build::BuildOpts {
        branch: b.branch.clone(),
        fragments: b.kernel.fragments.clone(),
        kasan: b.kernel.kasan,
        jobs: b
            .kernel
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
    }
}

/// Builds, mapping a compiler failure to exit 125 (bisect: skip).
fn do_build(cli: &Cli, b: &BuildArgs) -> Result<build::Built> {
    let cache = cache_dir(cli)?;
    let built =
        build::build(&series_dir(cli), &cache, &b.tree, &build_opts(b)).map_err(untestable)?;
    if built.up_to_date {
        eprintln!("zcsplice: kernel up to date: {}", built.image.display());
    } else {
        eprintln!(
            "zcsplice: built {} in {:.0} s ({} steps); log: {}",
            built.image.display(),
            built.seconds,
            built.objects,
            built.log.display()
        );
    }
    Ok(built)
}

/// Builds and runs; returns the verdict's exit code.
fn do_run(
    cli: &Cli,
    b: &BuildArgs,
    opts: &run::RunOpts,
    json: bool,
    junit: Option<&Path>,
) -> Result<u8> {
    check_tests(cli, &opts.tests)?;
    let report = build_and_run(cli, b, opts)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", run::table(&report));
    }
    if let Some(j) = junit {
        run::write_junit(&report, j)?;
    }
    Ok(report.verdict.exit_code())
}

/// Names a log directory by the time it was made.
fn stamp() -> String {
    chrono::Local::now().format("%Y%m%d-%H%M%S").to_string()
}

/// A new log directory for a boot of `built`: <cache>/runs/<tree>/<branch>/<time>.
fn run_logs(cache: &Path, built: &build::Built) -> PathBuf {
    let rel = built
        .outdir
        .strip_prefix(cache.join("build"))
        .unwrap_or(&built.outdir);
    cache.join("runs").join(rel).join(stamp())
}

/// Unknown guest tests are a usage error, found before any build.
fn check_tests(cli: &Cli, tests: &[String]) -> Result<()> {
    if tests.is_empty() {
        return Ok(());
    }
    let known = run::available_tests(&series_dir(cli))?;
    if let Some(t) = tests.iter().find(|t| !known.contains(t)) {
        return Err(exit::usage(anyhow!(
            "--test {t}: no such guest test (vm/tests/{t}.c); the tests are: {}",
            known.join(", ")
        )));
    }
    Ok(())
}

fn run_opts(g: &GuestArgs, fault: Option<String>) -> run::RunOpts {
    run::RunOpts {
        tests: g.tests.clone(),
        vm: guestboot::VmOpts {
            timeout: std::time::Duration::from_secs(g.timeout),
            memory: g.memory.clone(),
            cpus: 2,
        },
        fault,
    }
}

fn build_and_run(cli: &Cli, b: &BuildArgs, opts: &run::RunOpts) -> Result<run::Report> {
    let built = do_build(cli, b)?;
    run_built(cli, &built, opts)
}

/// Boots a built kernel and runs the guest tests.
fn run_built(cli: &Cli, built: &build::Built, opts: &run::RunOpts) -> Result<run::Report> {
    let cache = cache_dir(cli)?;
    let logs = run_logs(&cache, built);
    run::run(
        &series_dir(cli),
        &cache,
        &built.image,
        &built.release(),
        &logs,
        opts,
    )
    .map_err(infrastructure)
}

fn do_controls(cli: &Cli, b: &BuildArgs, only: &[String], timeout: u64, json: bool) -> Result<u8> {
    let all = controls::load(&series_dir(cli))?;
    if let Some(f) = only.iter().find(|f| !all.iter().any(|c| &c.fault == *f)) {
        let known: Vec<&str> = all.iter().map(|c| c.fault.as_str()).collect();
        return Err(exit::usage(anyhow!(
            "--fault {f}: not in vm/controls.yaml (it has: {})",
            known.join(", ")
        )));
    }
    let mut outcomes = Vec::new();
    for c in all
        .iter()
        .filter(|c| only.is_empty() || only.contains(&c.fault))
    {
        eprintln!("zcsplice: control {}: {}", c.fault, c.why);
        let opts = run::RunOpts {
            tests: c.tests.clone(),
            vm: guestboot::VmOpts {
                timeout: std::time::Duration::from_secs(timeout),
                memory: "2G".into(),
                cpus: 2,
            },
            fault: Some(c.fault.clone()),
        };
        let report = build_and_run(cli, b, &opts)?;
        if matches!(report.verdict, guestboot::Verdict::VmFailed) {
            return Err(infrastructure(anyhow!(
                "control {}: the VM could not be started (logs: {})",
                c.fault,
                report.logs.display()
            )));
        }
        outcomes.push(controls::judge(&c.fault, &report));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&outcomes)?);
    } else {
        print!("{}", controls::table(&outcomes));
    }
    Ok(u8::from(outcomes.iter().any(|o| !o.caught)))
}

fn kernel_of(built: &build::Built) -> xfstests::Kernel {
    xfstests::Kernel {
        image: built.image.clone(),
        config: built.outdir.join(".config"),
        release: built.release(),
    }
}

fn do_xfstests(cli: &Cli, x: &XfstestsArgs) -> Result<u8> {
    let report = xfstests_report(cli, x)?;
    if x.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", xfstests::table(&report));
    }
    if let Some(j) = &x.junit {
        std::fs::write(j, xfstests::junit(&report)?)
            .with_context(|| format!("cannot write {}", j.display()))?;
    }
    Ok(report.exit_code())
}

/// The arguments of `zcsplice xfstests --baseline --tree T`, its defaults
/// from its own declaration.
fn xfstests_baseline_args(tree: &Path) -> Result<XfstestsArgs> {
    use clap::FromArgMatches;
    let cmd = XfstestsArgs::augment_args(clap::Command::new("xfstests"));
    let args = ["xfstests", "--baseline", "--tree"].map(OsStr::new);
    let m = cmd.try_get_matches_from(args.into_iter().chain([tree.as_os_str()]))?;
    Ok(XfstestsArgs::from_arg_matches(&m)?)
}

/// Builds what is needed and runs xfstests; saves report.json in its logs.
fn xfstests_report(cli: &Cli, x: &XfstestsArgs) -> Result<xfstests::Report> {
    xfstests::check_options(&x.mkfs_options, &x.mount_options).map_err(exit::usage)?;
    let project = series_dir(cli);
    let cache = cache_dir(cli)?;
    let env = std::env::var_os("XFSTESTS_DIR").filter(|v| !v.is_empty());
    let inst = xfstests::locate(x.xfstests.as_deref(), env.as_deref().map(Path::new))
        .map_err(infrastructure)?;
    xfstests::host_deps().map_err(infrastructure)?;
    let tests = xfstests::select(&project, &inst.dir, &x.fs, &x.groups, &x.tests)?;
    // A bad expunge file is the user's to fix, before any build or boot.
    xfstests::lists::expunged(&project, &x.fs)?;
    let b = &x.build;
    // Known before any build: a tree without a recorded base fails at once.
    let base = match x.baseline {
        true => Some(xfstests::base_of(&b.tree, b.branch.as_deref())?),
        false => None,
    };
    let built = do_build(cli, b)?;
    let base_built = match &base {
        Some((_, rev)) => Some(do_build(
            cli,
            &BuildArgs {
                tree: b.tree.clone(),
                branch: Some(rev.clone()),
                kernel: b.kernel.clone(),
            },
        )?),
        None => None,
    };
    let base_kernel = base_built.as_ref().map(kernel_of);
    let logs = run_logs(&cache, &built);
    eprintln!("zcsplice: xfstests logs: {}", logs.display());
    let opts = xfstests::Opts {
        fs: x.fs.clone(),
        mkfs_options: x.mkfs_options.clone(),
        mount_options: x.mount_options.clone(),
        tests,
        retries: x.retries,
        vm: guestboot::VmOpts {
            timeout: std::time::Duration::from_secs(x.timeout),
            memory: x.memory.clone(),
            cpus: 2,
        },
    };
    let report = xfstests::run(
        &project,
        &cache,
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

/// One row per tree, each stage through the function its own command uses.
fn do_matrix(cli: &Cli, m: &MatrixArgs) -> Result<u8> {
    use matrix::{Outcome, Stage};
    let xfstests_opts =
        m.xfstests.is_some() || !m.xfstests_tests.is_empty() || m.xfstests_timeout.is_some();
    if m.until != Stage::Xfstests && xfstests_opts {
        let e = anyhow!("--xfstests, --xfstests-test and --xfstests-timeout need --until xfstests");
        return Err(exit::usage(e));
    }
    check_tests(cli, &m.guest.tests)?;
    let dir = cache_dir(cli)?.join("runs/matrix").join(stamp());
    let stages = Stage::until(m.until);
    let opts = run_opts(&m.guest, None);
    let mut trees = m.trees.clone();
    for spec in &m.debian {
        let done = import::debian(spec, &cache_dir(cli)?)?;
        report_import(&done);
        trees.push(done.tree.path);
    }
    let mut rows = Vec::new();
    for (i, tree) in trees.iter().enumerate() {
        let name = tree
            .file_name()
            .unwrap_or(tree.as_os_str())
            .to_string_lossy();
        let logs = dir.join(format!("{}-{}", i + 1, tree::sanitize(&name)));
        std::fs::create_dir_all(&logs)
            .with_context(|| format!("cannot create {}", logs.display()))?;
        let targs = TreeArgs {
            tree: tree.clone(),
            base: None,
        };
        let build = |branch: String| BuildArgs {
            tree: tree.clone(),
            branch: Some(branch),
            kernel: m.kernel.clone(),
        };
        // What later stages take from earlier ones.
        let (mut branch, mut built) = (String::new(), None);
        let row = matrix::row(tree, &logs, &stages, |stage| {
            eprintln!(
                "zcsplice: matrix [{}/{}] {}: {}",
                i + 1,
                trees.len(),
                tree.display(),
                stage.as_str()
            );
            Ok(match stage {
                Stage::Probe => {
                    let (_, _, p) = load(cli, &targs)?;
                    let f = logs.join("probe.json");
                    std::fs::write(&f, serde_json::to_string_pretty(&p)? + "\n")?;
                    Outcome::pass(p.version, Some(f))
                }
                Stage::Render => {
                    let out = logs.join("render");
                    let (r, _) = render_to(cli, &targs, &out)?;
                    Outcome::pass(matrix::render_detail(&r), Some(out))
                }
                Stage::Apply => {
                    let a = do_apply(cli, &targs, None, m.force)?;
                    let done = match a.outcome {
                        apply::Outcome::UpToDate => "up to date",
                        apply::Outcome::Created => "created",
                        apply::Outcome::Rebuilt { .. } => "rebuilt",
                    };
                    let tip = a.rendered.tip().to_string();
                    branch = a.branch;
                    Outcome::pass(format!("{branch} at {}, {done}", &tip[..12]), None)
                }
                Stage::Build => {
                    let b = do_build(cli, &build(branch.clone()))?;
                    let out = Outcome::pass(b.release(), Some(b.log.clone()));
                    built = Some(b);
                    out
                }
                Stage::Run => {
                    let b = built.as_ref().expect("build runs before run");
                    matrix::run_outcome(&run_built(cli, b, &opts)?)
                }
                Stage::Xfstests => {
                    let mut x = xfstests_baseline_args(tree)?;
                    x.build = build(branch.clone());
                    x.xfstests = m.xfstests.clone();
                    x.tests = m.xfstests_tests.clone();
                    if let Some(t) = m.xfstests_timeout {
                        x.timeout = t;
                    }
                    matrix::xfstests_outcome(&xfstests_report(cli, &x)?)
                }
            })
        });
        rows.push(row);
    }
    if m.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", matrix::table(&rows));
    }
    Ok(u8::from(!rows.iter().all(|r| r.passed)))
}

fn run(cli: &Cli) -> Result<u8> {
    match &cli.cmd {
        Cmd::Tree(TreeCmd::Import { debian, tarball }) => {
            let cache = cache_dir(cli)?;
            let done = match (debian, tarball) {
                (Some(v), _) => import::debian(v, &cache)?,
                (None, Some(t)) => import::tarball(t, &cache)?,
                (None, None) => unreachable!("clap requires one"),
            };
            report_import(&done);
            println!("{}", done.tree.path.display());
        }
        Cmd::Tree(TreeCmd::List { json }) => {
            let trees = import::list(&cache_dir(cli)?)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&trees)?);
            } else {
                print_trees(&trees);
            }
        }
        Cmd::Probe { tree, json } => {
            let (_, _, p) = load(cli, tree)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                print_facts(&p);
            }
        }
        Cmd::Render { tree, out } => {
            let (r, written) = render_to(cli, tree, out)?;
            for f in written {
                println!("{}", f.display());
            }
            for x in &r.excluded {
                eprintln!("zcsplice: left out \"{}\": {}", x.subject, x.reason);
            }
        }
        Cmd::Apply {
            tree,
            branch,
            force,
        } => println!("{}", do_apply(cli, tree, branch.as_deref(), *force)?),
        Cmd::Build(b) => {
            let built = do_build(cli, b)?;
            println!("{}", built.image.display());
        }
        Cmd::Run {
            build,
            guest,
            json,
            junit,
            fault,
        } => {
            let opts = run_opts(guest, fault.clone());
            return do_run(cli, build, &opts, *json, junit.as_deref());
        }
        Cmd::Bench {
            build,
            fs,
            size,
            reps,
            timeout,
            memory,
            json,
        } => {
            let built = do_build(cli, build)?;
            let cache = cache_dir(cli)?;
            let opts = bench::BenchOpts {
                size: *size,
                reps: *reps,
                rows: bench::rows(fs)?,
                vm: guestboot::VmOpts {
                    timeout: std::time::Duration::from_secs(*timeout),
                    memory: memory.clone(),
                    cpus: 2,
                },
            };
            let b = bench::run(
                &series_dir(cli),
                &cache,
                &built.image,
                &built.outdir.join(".config"),
                &run_logs(&cache, &built),
                &opts,
            )?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&b)?);
            } else {
                print!("{}", bench::table(&b));
            }
        }
        Cmd::Controls {
            build,
            faults,
            timeout,
            json,
        } => return do_controls(cli, build, faults, *timeout, *json),
        Cmd::Xfstests(x) => return do_xfstests(cli, x),
        Cmd::Matrix(m) => return do_matrix(cli, m),
        Cmd::Setup => deps::ensure()?,
        Cmd::Demo { debian, timeout } => {
            deps::ensure()?;
            let cache = cache_dir(cli)?;
            let done = import::debian(debian, &cache)?;
            report_import(&done);
            let tree = done.tree.path;
            eprintln!("zcsplice: tree {}", tree.display());
            let targs = TreeArgs {
                tree: tree.clone(),
                base: None,
            };
            let a = do_apply(cli, &targs, None, false)?;
            eprintln!("zcsplice: {a}");
            let b = BuildArgs {
                tree,
                branch: Some(a.branch),
                kernel: KernelArgs::default(),
            };
            let guest = GuestArgs {
                tests: vec![],
                timeout: *timeout,
                memory: "2G".into(),
            };
            let opts = run_opts(&guest, None);
            return do_run(cli, &b, &opts, false, None);
        }
    }
    Ok(0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = interrupt::install() {
        eprintln!(
            "zcsplice: warning: cannot handle signals ({e:#}): a signal would leave guests running"
        );
    }
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("zcsplice: error: {e:#}");
            ExitCode::from(exit::code_of(&e))
        }
    }
}
