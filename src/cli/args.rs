//! The command line: every flag defined once, and turned into the
//! library's plain option types (`TreeSpec`, `BuildRequest`, `RunOpts`,
//! `xfstests::Request`, `matrix::Opts`) here and nowhere else.

use anyhow::{anyhow, Result};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

use zcsplice::exit;
use zcsplice::guest::boot::{VmOpts, TEST_NUMA_NODES};
use zcsplice::kernel::build::{BuildRequest, KernelOpts, Profile};
use zcsplice::suites::guest_tests::RunOpts;
use zcsplice::suites::{bench, xfstests};
use zcsplice::tree::{import, TreeSpec};
use zcsplice::workflows::bisect;
use zcsplice::workflows::bisect::selection::{Selection, XfstestsAsk};
use zcsplice::workflows::matrix;

#[derive(Parser)]
#[command(name = "zcsplice", version, about, after_help = exit::HELP)]
pub struct Cli {
    /// Directory holding the series (patches/ and templates/).
    #[arg(long, global = true, env = "ZCSPLICE_SERIES")]
    pub series: Option<PathBuf>,
    /// Cache directory for imported trees and builds [default: $XDG_CACHE_HOME/zcsplice].
    #[arg(long, global = true, env = "ZCSPLICE_CACHE")]
    pub cache: Option<PathBuf>,
    /// Print only results and errors: no notes, no progress.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
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
    /// Write the series as one mail thread (mbox): the cover letter and the
    /// patches, without the testing patches, each with a Message-Id, every
    /// patch In-Reply-To the cover letter, as b4 and git am take it.
    Format {
        #[command(flatten)]
        tree: TreeArgs,
        /// Output directory (<change-id>-v<N>.mbox).
        #[arg(long)]
        out: PathBuf,
        /// The sender, `Name <address>` [default: the series' author].
        #[arg(long)]
        from: Option<String>,
        #[command(flatten)]
        recipients: RecipientArgs,
        /// Go on although checkpatch.pl --strict is not clean; the cover
        /// letter says so, with this reason.
        #[arg(long, value_name = "REASON", conflicts_with = "no_checkpatch")]
        checkpatch_override: Option<String>,
        /// Do not run checkpatch.pl (the files only; sending always runs it).
        #[arg(long)]
        no_checkpatch: bool,
    },
    /// Send the series to LKML as revision N (patches/series.yaml
    /// `version`), as `git send-email` would: by default a dry run that
    /// writes the mbox and prints the envelope, opening no connection.
    /// With --confirm, sends through the SMTP server of the git config
    /// (sendemail.smtpServer, smtpServerPort, smtpEncryption, smtpUser;
    /// password from ZCSPLICE_SMTP_PASSWORD, sendemail.smtpPass or git
    /// credential), journals each message, and tags the revision
    /// sent/<change-id>-v<N> in the tree once all went.
    Send {
        #[command(flatten)]
        tree: TreeArgs,
        /// The sender, `Name <address>` [default: the series' author].
        #[arg(long)]
        from: Option<String>,
        #[command(flatten)]
        recipients: RecipientArgs,
        /// Go on although checkpatch.pl --strict is not clean; the cover
        /// letter says so, with this reason.
        #[arg(long, value_name = "REASON")]
        checkpatch_override: Option<String>,
        /// Really send. Without it nothing leaves the machine.
        #[arg(long)]
        confirm: bool,
        /// Finish a send that stopped half way: the same messages, with the
        /// same Message-Ids, from the first one the server did not take.
        #[arg(long, requires = "confirm", conflicts_with_all = ["from", "checkpatch_override"])]
        resume: bool,
        /// The tree's base is an upstream commit, although `tree import`
        /// made it (its content is exactly that commit's).
        #[arg(long)]
        base_is_upstream: bool,
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
    Build {
        #[command(flatten)]
        build: BuildArgs,
        /// Build every commit of the branch from its recorded base, oldest
        /// first, each in turn in one worktree of the cache, and report
        /// each (time, warnings in the files it changes); stop at the
        /// first that does not build (exit 125).
        #[arg(long)]
        each_commit: bool,
        /// With --each-commit: print the report as JSON.
        #[arg(long, requires = "each_commit")]
        json: bool,
    },
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
    /// tmpfs, ramfs and ext4 with SPLICE_F_MOVE (move) and without it (copy).
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
    Bench(BenchArgs),
    /// Build if needed and run an installed xfstests in the guest on fresh
    /// test and scratch disks; with --baseline, also on the unpatched base
    /// kernel (same config; results cached per test) and report as
    /// regressions only tests that pass there and fail with the series
    /// (after retries). Default tests: vm/xfstests/zcsplice-smoke.
    Xfstests(XfstestsArgs),
    /// Find the commit that breaks the series (or the tree), with real
    /// `git bisect`, as CI runs it.
    ///
    /// Runs in zcsplice's clone of the tree in <cache>/bisect/<tree>: the
    /// tree's checkout, branches and own bisect are never touched, and
    /// `git -C <clone> bisect log` (or visualize) works afterwards. Both
    /// ends are tested first. Each step renders and applies the series
    /// for its commit (its facts are probed again), builds it in one build
    /// directory (only what changed is rebuilt), boots and runs the
    /// selection: pass is good, a failed test, kernel report, panic or
    /// boot failure is bad; a commit the series does not render or apply
    /// on, or that does not build, is skipped; a harness failure or a
    /// timeout with no kernel report stops the bisect. Exit 0: a first bad
    /// commit was found; 1: the range has none (the bad end passes, or the
    /// good end fails too); 125: only skipped commits were left; 128/129:
    /// stopped (the log stays).
    Bisect(BisectArgs),
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

/// `zcsplice bench`.
#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub build: BuildArgs,
    /// Rows to measure, repeatable or comma-separated: tmpfs, ramfs,
    /// ext4 (page cache only), ext4+fsync (fsync timed), and
    /// tmpfs-overwrite, ramfs-overwrite, ext4-overwrite (the splice writes
    /// over a cached file; vm.splice_move_replace=1), tmpfs-gift,
    /// ramfs-gift, ext4-gift (the splicing process vmsplices fresh memory
    /// with SPLICE_F_GIFT, unmaps it and splices it), ext4-rewrite (over a
    /// file that is on disk, not cached) [default: all].
    #[arg(
        long = "fs",
        value_name = "FS",
        value_delimiter = ',',
        value_parser = clap::builder::PossibleValuesParser::new(bench::ROWS),
        hide_possible_values = true
    )]
    pub fs: Vec<String>,
    /// Bytes per rep (K, M, G: binary units); a multiple of 64K.
    #[arg(long, default_value = "1G", value_parser = bench::parse_size)]
    pub size: u64,
    /// Measured reps per cell (filesystem x mode), after one warm-up.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub reps: u32,
    /// Bytes per splice() call, each made once the pipe holds them: 4K
    /// to 64K, whole pages [default: as much as the pipe holds]. A write
    /// of less than two pages gets an order-0 folio, a 64K one a large
    /// folio where the file has them (ext4 from 6.16).
    #[arg(long, value_name = "SIZE", value_parser = bench::parse_splice_size)]
    pub splice: Option<u64>,
    /// Inject this fault of the series' testing patch for the whole run
    /// (vm/controls.yaml names them): measures the path the series does
    /// not take, e.g. large-folio-donor, order-0 donors where the page
    /// cache would put a large folio.
    #[arg(long, value_name = "NAME")]
    pub fault: Option<String>,
    /// Hard limit for the whole VM run, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
    /// Guest memory (qemu -m): must hold one file of --size in the page
    /// cache (on tmpfs or ramfs, or dirty on ext4).
    #[arg(long, default_value = "3G")]
    pub memory: String,
    /// Print the results as JSON (they are always saved as bench.json).
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    pub fn opts(&self) -> Result<bench::BenchOpts> {
        Ok(bench::BenchOpts {
            size: self.size,
            reps: self.reps,
            rows: bench::rows(&self.fs)?,
            splice: self.splice,
            fault: self.fault.clone(),
            vm: VmOpts {
                timeout: Duration::from_secs(self.timeout),
                memory: self.memory.clone(),
                cpus: 2,
                numa_nodes: 1,
            },
        })
    }
}

#[derive(Args)]
pub struct BuildArgs {
    /// Kernel tree: a git repository (see `tree import`).
    #[arg(long, env = "ZCSPLICE_TREE")]
    pub tree: PathBuf,
    /// Branch to build [default: what is checked out]; another branch is
    /// built from a worktree in the cache.
    #[arg(long)]
    pub branch: Option<String>,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

/// How a kernel is configured and built, whichever tree and branch.
#[derive(Args, Clone, Default)]
pub struct KernelArgs {
    /// Extra config fragment, applied after vm/config/*.config; repeatable.
    #[arg(long = "config-fragment", value_name = "FILE")]
    pub fragments: Vec<PathBuf>,
    /// Kernel config: debug (vm/config/debug.config and series.config:
    /// lockdep, DEBUG_VM, the series' KUnit test and faults) or
    /// production (vm/config/production.config: none of them, for
    /// numbers a distribution kernel would give; not for proofs).
    #[arg(long = "config", value_enum, default_value_t = ConfigProfile::Debug)]
    pub profile: ConfigProfile,
    /// Build with KASAN (vm/config/kasan.config).
    #[arg(long, conflicts_with = "profile")]
    pub kasan: bool,
    /// Parallel make jobs [default: number of CPUs].
    #[arg(long)]
    pub jobs: Option<usize>,
}

/// The guest tests of a boot (`run`).
#[derive(Args)]
pub struct GuestArgs {
    /// Guest test to run (vm/tests/NAME.c); repeatable [default: all but selftest-*].
    #[arg(long = "test", value_name = "NAME")]
    pub tests: Vec<String>,
    /// Hard limit for the whole VM run, in seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
    /// Guest memory (qemu -m).
    #[arg(long, default_value = "2G")]
    pub memory: String,
    /// A shell command to run in the guest after the tests (alone when no
    /// --test is given), judged like a test named "command": exit 0
    /// passes, 77 skips, anything else fails.
    #[arg(long, value_name = "SHELL")]
    pub cmd: Option<String>,
    /// NUMA nodes of the guest, sharing its memory evenly, every CPU on
    /// node 0 (splice-numa needs two, and skips on one).
    #[arg(long, default_value_t = TEST_NUMA_NODES, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub numa_nodes: u32,
}

#[derive(Args)]
pub struct BisectArgs {
    /// Kernel tree: a git repository (only read).
    #[arg(long, env = "ZCSPLICE_TREE")]
    pub tree: PathBuf,
    /// A commit where the selection passes.
    #[arg(long, requires = "bad", required_unless_present = "in_series")]
    pub good: Option<String>,
    /// A later commit where it fails.
    #[arg(long, requires = "good")]
    pub bad: Option<String>,
    /// Bisect the tree alone, without the series (is it upstream's?).
    #[arg(long, conflicts_with = "in_series")]
    pub no_series: bool,
    /// Bisect the series' own patches on --base: which one first makes the
    /// selection fail (each prefix is built; the testing patches go on top
    /// when --fault needs their knob). The guest tests do not require
    /// pages to move here (a prefix cannot move into filesystems a later
    /// patch converts): data, safety and kernel reports decide.
    #[arg(long, conflicts_with_all = ["good", "bad"])]
    pub in_series: bool,
    /// With --in-series: the commit the series applies on [default: the
    /// tree's recorded base, else HEAD].
    #[arg(long, requires = "in_series")]
    pub base: Option<String>,
    /// Run a failing step again up to N times: a commit is bad only if
    /// every run fails; the report says which steps needed it.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub retries: u32,
    #[command(flatten)]
    pub kernel: KernelArgs,
    #[command(flatten)]
    pub guest: GuestArgs,
    /// Inject this fault through the series' debugfs knob at each step.
    #[arg(long, value_name = "NAME")]
    pub fault: Option<String>,
    /// Run this xfstests test at each step instead of guest tests
    /// (fresh disks, no baseline: the good end is the baseline); repeatable.
    #[arg(long = "xfstests-test", value_name = "TEST", conflicts_with_all = ["fault", "tests", "cmd"])]
    pub xfstests_tests: Vec<String>,
    /// Run the tests of this xfstests group at each step (e.g. quick);
    /// repeatable.
    #[arg(long = "xfstests-group", value_name = "GROUP", conflicts_with_all = ["fault", "tests", "cmd"])]
    pub xfstests_groups: Vec<String>,
    /// With --xfstests-test/-group: a built xfstests tree [default:
    /// $XFSTESTS_DIR, else /var/lib/xfstests].
    #[arg(long, value_name = "DIR")]
    pub xfstests: Option<PathBuf>,
    /// With --xfstests-test/-group: the filesystem (FSTYP).
    #[arg(long, default_value_t = xfstests::Request::default().fs)]
    pub fs: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write JUnit XML here (a test case per step).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

impl BisectArgs {
    pub fn opts(&self) -> bisect::Opts {
        let mode = match (&self.good, &self.bad) {
            (Some(good), Some(bad)) => bisect::Mode::Upstream {
                good: good.clone(),
                bad: bad.clone(),
                series: !self.no_series,
            },
            _ => bisect::Mode::InSeries {
                base: self.base.clone(),
            },
        };
        bisect::Opts {
            tree: self.tree.clone(),
            mode,
            retries: self.retries,
            kernel: self.kernel.opts(),
            selection: self.selection(),
        }
    }

    fn selection(&self) -> Selection {
        if self.xfstests_tests.is_empty() && self.xfstests_groups.is_empty() {
            return Selection::Guest(self.guest.run_opts(self.fault.clone()));
        }
        let mut vm = self.guest.run_opts(None).vm;
        // As `zcsplice xfstests` boots: one node, its disks on the guest.
        vm.numa_nodes = 1;
        Selection::Xfstests(XfstestsAsk {
            dir: self.xfstests.clone(),
            dir_env: xfstests_env(),
            fs: self.fs.clone(),
            tests: self.xfstests_tests.clone(),
            groups: self.xfstests_groups.clone(),
            vm,
        })
    }
}

#[derive(Args)]
pub struct XfstestsArgs {
    #[command(flatten)]
    pub build: BuildArgs,
    /// Filesystem to test (FSTYP); expunges from vm/xfstests/expunge/<FS>.
    #[arg(long, default_value_t = xfstests::Request::default().fs)]
    pub fs: String,
    /// Tests of this xfstests group (e.g. quick, auto, ext4/quick); repeatable.
    #[arg(short = 'g', long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Tests to run (e.g. generic/001) [default with no -g: vm/xfstests/zcsplice-smoke].
    #[arg(value_name = "TEST")]
    pub tests: Vec<String>,
    /// Also run the tests on the base kernel the series applies on, and
    /// report only regressions: tests that pass there and fail with it.
    #[arg(long)]
    pub baseline: bool,
    /// With --baseline: more runs of a test that passed on the baseline
    /// and failed with the series; one pass makes it flaky, not a regression.
    #[arg(long, default_value_t = xfstests::Request::default().retries)]
    pub retries: u32,
    /// A built xfstests tree [default: $XFSTESTS_DIR, else /var/lib/xfstests].
    #[arg(long, value_name = "DIR")]
    pub xfstests: Option<PathBuf>,
    /// MKFS_OPTIONS for the test and scratch filesystems.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub mkfs_options: String,
    /// MOUNT_OPTIONS for the scratch filesystem.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub mount_options: String,
    /// Hard limit for each boot, in seconds.
    #[arg(long, default_value_t = xfstests::Request::default().timeout.as_secs())]
    pub timeout: u64,
    /// Guest memory (qemu -m).
    #[arg(long, default_value_t = xfstests::Request::default().memory)]
    pub memory: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write JUnit XML here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

#[derive(Args)]
pub struct MatrixArgs {
    /// Kernel tree (a git repository); repeatable: one row each, in this order.
    #[arg(long = "tree", value_name = "PATH", required_unless_present = "debian")]
    pub trees: Vec<PathBuf>,
    /// Debian's linux-source-X.Y (or X.Y=VERSION), imported as `tree import
    /// --debian` does; repeatable: one row each, after the --tree rows.
    /// `--until apply --debian 6.12 --debian 6.1` asks whether the newest
    /// releases installed still take the series.
    #[arg(long = "debian", value_name = "X.Y[=VERSION]")]
    pub debian: Vec<import::DebianSpec>,
    /// The last stage to run; xfstests runs `zcsplice xfstests --baseline`
    /// (the default list unless --xfstests-test).
    #[arg(
        long,
        default_value = "run",
        value_parser = PossibleValuesParser::new(matrix::Stage::NAMES)
            .map(|s| s.parse::<matrix::Stage>().expect("a listed stage"))
    )]
    pub until: matrix::Stage,
    /// Rebuild a zcsplice branch that exists and differs (as `apply --force`).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub kernel: KernelArgs,
    #[command(flatten)]
    pub guest: GuestArgs,
    /// With --until xfstests: a built xfstests tree [default: $XFSTESTS_DIR,
    /// else /var/lib/xfstests].
    #[arg(long, value_name = "DIR")]
    pub xfstests: Option<PathBuf>,
    /// With --until xfstests: this test instead of the default list; repeatable.
    #[arg(long = "xfstests-test", value_name = "TEST")]
    pub xfstests_tests: Vec<String>,
    /// With --until xfstests: hard limit for each xfstests boot, in seconds
    /// [default: that of `zcsplice xfstests`]. The default list takes well
    /// over an hour under TCG with the baseline kernel booted alongside.
    #[arg(long = "xfstests-timeout", value_name = "SECONDS")]
    pub xfstests_timeout: Option<u64>,
    /// Print the rows as JSON: [{"tree", "version", "passed", "logs",
    /// "stages": [{"name", "status", "detail", "log"}]}].
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum TreeCmd {
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
        /// Add it to TREE instead, as the next commit of TREE's import line
        /// (the branch whose tip an import made): several releases, one
        /// after the other, make a linear history to bisect. TREE must be
        /// clean; prints the new commit.
        #[arg(long, value_name = "TREE")]
        onto: Option<PathBuf>,
    },
    /// The versions of Debian's linux-source-X.Y this machine can fetch,
    /// newest first, and the suite of each (the machine's apt sources and
    /// zcsplice's private lists of every Debian suite). Exit 1 when Debian
    /// has none of a series (the error gives the dates of the lists read),
    /// 128 when apt fails.
    Versions {
        /// Source package series, e.g. 7.3 6.12.
        #[arg(required = true, value_name = "X.Y")]
        releases: Vec<import::DebianSpec>,
        /// Print JSON: [{"series", "versions": [{"version", "suite"}]}].
        #[arg(long)]
        json: bool,
    },
    /// The imported trees: path, kernel version, source, and which is the
    /// newest of its X.Y series.
    List {
        /// Print JSON: [{"path", "version", "source": {"kind", ...}, "newest"}].
        #[arg(long)]
        json: bool,
    },
}

/// Recipients on top of the tree's scripts/get_maintainer.pl.
#[derive(Args)]
pub struct RecipientArgs {
    /// Add a To: recipient to every message (repeatable).
    #[arg(long = "to", value_name = "ADDRESS")]
    pub to: Vec<String>,
    /// Add a Cc: recipient to every message (repeatable).
    #[arg(long = "cc", value_name = "ADDRESS")]
    pub cc: Vec<String>,
    /// Drop every recipient whose name or address contains TEXT (repeatable).
    #[arg(long = "drop", value_name = "TEXT")]
    pub drop: Vec<String>,
    /// Do not ask the tree's get_maintainer.pl: only --to and --cc.
    #[arg(long)]
    pub no_maintainers: bool,
}

impl RecipientArgs {
    pub fn overrides(&self) -> zcsplice::mail::recipients::Overrides {
        zcsplice::mail::recipients::Overrides {
            to: self.to.clone(),
            cc: self.cc.clone(),
            drop: self.drop.clone(),
            no_maintainers: self.no_maintainers,
        }
    }
}

#[derive(Args)]
pub struct TreeArgs {
    /// Kernel tree: a git repository (see `tree import`).
    #[arg(long, env = "ZCSPLICE_TREE")]
    pub tree: PathBuf,
    /// Commit the series applies on [default: the recorded base of the
    /// checked-out zcsplice branch, else HEAD].
    #[arg(long)]
    pub base: Option<String>,
}

impl TreeArgs {
    pub fn spec(&self) -> TreeSpec {
        TreeSpec {
            path: self.tree.clone(),
            base: self.base.clone(),
        }
    }
}

/// `--config`: the kernel's profile (kernel::build::Profile).
#[derive(Clone, Copy, Default, clap::ValueEnum)]
pub enum ConfigProfile {
    #[default]
    Debug,
    Production,
}

impl KernelArgs {
    pub fn opts(&self) -> KernelOpts {
        KernelOpts {
            fragments: self.fragments.clone(),
            profile: match self.profile {
                ConfigProfile::Debug => Profile::Debug,
                ConfigProfile::Production => Profile::Production,
            },
            kasan: self.kasan,
            jobs: self.jobs,
        }
    }
}

impl BuildArgs {
    pub fn request(&self) -> BuildRequest {
        BuildRequest {
            tree: self.tree.clone(),
            branch: self.branch.clone(),
            slot: None,
            kernel: self.kernel.opts(),
        }
    }
}

impl GuestArgs {
    pub fn run_opts(&self, fault: Option<String>) -> RunOpts {
        RunOpts {
            tests: self.tests.clone(),
            vm: VmOpts {
                timeout: Duration::from_secs(self.timeout),
                memory: self.memory.clone(),
                cpus: 2,
                numa_nodes: self.numa_nodes,
            },
            fault,
            command: self.cmd.clone(),
            partial_series: false,
        }
    }
}

/// XFSTESTS_DIR, when set and not empty.
fn xfstests_env() -> Option<PathBuf> {
    std::env::var_os("XFSTESTS_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl XfstestsArgs {
    pub fn request(&self) -> xfstests::Request {
        xfstests::Request {
            build: self.build.request(),
            fs: self.fs.clone(),
            groups: self.groups.clone(),
            tests: self.tests.clone(),
            baseline: self.baseline,
            base: None,
            retries: self.retries,
            xfstests: self.xfstests.clone(),
            xfstests_env: xfstests_env(),
            mkfs_options: self.mkfs_options.clone(),
            mount_options: self.mount_options.clone(),
            timeout: Duration::from_secs(self.timeout),
            memory: self.memory.clone(),
        }
    }
}

impl MatrixArgs {
    /// The matrix's options; xfstests flags without `--until xfstests`
    /// are a usage error.
    pub fn opts(&self) -> Result<matrix::Opts> {
        let xfstests_flags = self.xfstests.is_some()
            || !self.xfstests_tests.is_empty()
            || self.xfstests_timeout.is_some();
        if self.until != matrix::Stage::Xfstests && xfstests_flags {
            return Err(exit::usage(anyhow!(
                "--xfstests, --xfstests-test and --xfstests-timeout need --until xfstests"
            )));
        }
        let defaults = xfstests::Request::default();
        Ok(matrix::Opts {
            trees: self.trees.clone(),
            debian: self.debian.clone(),
            until: self.until,
            force: self.force,
            kernel: self.kernel.opts(),
            run: self.guest.run_opts(None),
            xfstests: xfstests::Request {
                tests: self.xfstests_tests.clone(),
                xfstests: self.xfstests.clone(),
                xfstests_env: xfstests_env(),
                timeout: self
                    .xfstests_timeout
                    .map_or(defaults.timeout, Duration::from_secs),
                ..defaults
            },
        })
    }
}
