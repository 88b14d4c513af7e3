//! `zcsplice bench`: one boot of the patched kernel runs vm/bench/splice-bench
//! (splice from a pipe into tmpfs, ramfs and ext4 files, with SPLICE_F_MOVE
//! and without, interleaved); here its rep lines become medians, spreads,
//! move/copy ratios against the series' goals, a table and JSON.

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::exit::Exit;
use crate::guest::boot::{self as run, Guest, TestStatus, Verdict, VmOpts};
use crate::guest::disks;

/// The guest program, vm/bench/NAME.c.
const PROGRAM: &str = "splice-bench";
/// The rows of the table, in the order they run. A row's name says what
/// it does, and the guest program reads it the same way (see `Row`).
pub const ROWS: [&str; 11] = [
    "tmpfs",
    "ramfs",
    "ext4",
    "ext4+fsync",
    "tmpfs-overwrite",
    "ramfs-overwrite",
    "ext4-overwrite",
    "tmpfs-gift",
    "ramfs-gift",
    "ext4-gift",
    "ext4-rewrite",
];

/// What a row does, from its name `FS[+fsync][-overwrite|-gift|-rewrite]`
/// as vm/bench/splice-bench.c reads it: the filesystem; whether the
/// fsync() of the file is timed too; and what the splice writes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Row<'a> {
    fs: &'a str,
    fsync: bool,
    target: Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A new file: every page goes in beyond EOF.
    Fresh,
    /// A file that is in the page cache already.
    Cached,
    /// A new file; the splicing process vmsplice()s fresh memory with
    /// SPLICE_F_GIFT and unmaps it, so that a move takes its own pages.
    Gift,
    /// A file whose blocks hold data but which is not cached.
    Evicted,
}

impl<'a> Row<'a> {
    fn parse(name: &'a str) -> Self {
        let (rest, target) = [
            ("-overwrite", Target::Cached),
            ("-gift", Target::Gift),
            ("-rewrite", Target::Evicted),
        ]
        .into_iter()
        .find_map(|(suffix, t)| Some((name.strip_suffix(suffix)?, t)))
        .unwrap_or((name, Target::Fresh));
        let (fs, fsync) = match rest.strip_suffix("+fsync") {
            Some(fs) => (fs, true),
            None => (rest, false),
        };
        Row { fs, fsync, target }
    }

    fn on_ext4(&self) -> bool {
        self.fs == "ext4"
    }

    /// Where the series copies in both modes (ext4 copies over a cached
    /// page): the move mode must move nothing, and only the no-regression
    /// goal applies.
    fn copies(&self) -> bool {
        self.target == Target::Cached && self.on_ext4()
    }

    /// Whose moves must each take a page the writer gave.
    fn takes_gifts(&self) -> bool {
        self.target == Target::Gift
    }

    /// Whose moves must each replace a cached page (tmpfs, ramfs).
    fn replaces(&self) -> bool {
        self.target == Target::Cached && !self.on_ext4()
    }

    /// Where a moved page goes into the page cache without taking the place
    /// of a placeholder folio: ext4 (delayed allocation) wherever it moves.
    fn placeholder_free(&self) -> bool {
        self.on_ext4() && !self.copies()
    }

    /// Whose timed part writes the file to disk: that I/O is the same in
    /// both modes and dwarfs the page copy a move saves, so only the
    /// no-regression goal applies.
    fn disk(&self) -> bool {
        self.fsync
    }
}

const MODES: [&str; 2] = ["move", "copy"];
const MIB: f64 = (1u64 << 20) as f64;
const GIB: f64 = (1u64 << 30) as f64;
/// The guest writes in 64 KiB steps: the size must be a multiple.
const WRITE_SIZE: u64 = 64 << 10;
/// Reps of one cell further apart than this (fastest over slowest) did
/// not run on the same machine, in effect: an emulated guest slows down
/// several-fold when other work takes the host's CPUs.
const NOISY: f64 = 1.5;
/// A page-cache-only rep that wrote back more than this share of its
/// file's pages did not measure the page cache alone.
const WRITTEN_MAX: f64 = 0.01;

/// What the series promises, move against copy.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Goals {
    /// Throughput ratio at least this.
    pub throughput_min: f64,
    /// System CPU ratio at most this.
    pub sys_cpu_max: f64,
    /// No filesystem below this throughput ratio.
    pub no_case_below: f64,
}

pub const GOALS: Goals = Goals {
    throughput_min: 1.5,
    sys_cpu_max: 0.6,
    no_case_below: 0.98,
};

pub struct BenchOpts {
    /// Bytes per rep.
    pub size: u64,
    /// Measured reps per cell (a warm-up comes first).
    pub reps: u32,
    /// The rows to measure, from `rows()`.
    pub rows: Vec<String>,
    /// Bytes per splice() call, spliced once the pipe holds them; None:
    /// as much as the pipe holds at each call.
    pub splice: Option<u64>,
    /// A fault of the series' testing patch to inject before the reps
    /// (its debugfs knob): measures what the series chose not to do.
    pub fault: Option<String>,
    pub vm: VmOpts,
}

/// The rows the user picked (`--fs`), each once, in table order; all
/// when none was picked.
pub fn rows(picked: &[String]) -> Result<Vec<String>> {
    if let Some(bad) = picked.iter().find(|p| !ROWS.contains(&p.as_str())) {
        bail!("unknown --fs {bad:?} (known: {})", ROWS.join(", "));
    }
    Ok(ROWS
        .iter()
        .filter(|r| picked.is_empty() || picked.iter().any(|p| p == *r))
        .map(|r| r.to_string())
        .collect())
}

/// The scratch disk of the ext4 rows: one file of `size` and slack for
/// the filesystem; sparse, so the host spends only what is written.
pub fn ext4_disk_bytes(size: u64) -> u64 {
    2 * size + (1 << 30)
}

/// The guest's first line: the setup it measured.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Header {
    pub kernel: String,
    pub size: u64,
    pub reps: u32,
    pub write_size: u64,
    /// Bytes per splice() call (0: as much as the pipe holds).
    #[serde(default)]
    pub splice_size: u64,
    pub pipe_size: u64,
    pub page_size: u64,
    pub cpus: u32,
    /// What the guest kernel's memcpy() of one page costs, timed in the
    /// guest with the same instructions: the work a move saves.
    pub copy_us_per_page: f64,
    /// Those instructions: "rep movsb" (FSRM) or "movq loop".
    pub copy_routine: String,
    /// The dirty limits the guest set for the ext4 rows, so that a file
    /// of `size` stays in the page cache (0: not changed, no ext4 row).
    #[serde(default)]
    pub dirty_background_bytes: u64,
    #[serde(default)]
    pub dirty_bytes: u64,
}

/// One rep of one cell, as the guest measured it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Sample {
    pub fs: String,
    pub mode: String,
    pub rep: u32,
    pub warmup: bool,
    pub seconds: f64,
    /// System CPU time of the splicer and the writer.
    pub sys_seconds: f64,
    pub user_seconds: f64,
    /// /proc/vmstat deltas over the rep: pages moved, pages taken then copied.
    pub splice_move: i64,
    pub splice_move_fallback: i64,
    /// Of the pages moved, those that replaced a cached page (0 on a
    /// kernel that does not count them).
    #[serde(default)]
    pub splice_move_replace: i64,
    /// Gifted pages taken for a move (0 on a kernel that does not count
    /// them).
    #[serde(default)]
    pub splice_move_gift: i64,
    /// Of the pages moved, those that took the place of a folio the write
    /// had prepared (0 on a kernel that does not count them).
    #[serde(default)]
    pub splice_move_placeholder: i64,
    /// /proc/vmstat nr_written delta over the timed part: pages written
    /// back, of any file (all of this one with a timed fsync, else at most
    /// a few pages of metadata).
    #[serde(default)]
    pub written: i64,
    /// After the rep, the file's pages by the order of the folio holding
    /// them: folios[k] pages in folios of order k (the last: k or more).
    #[serde(default)]
    pub folios: Vec<i64>,
}

impl Sample {
    /// Share of the file's pages in large folios (None: not counted).
    pub fn large_share(&self) -> Option<f64> {
        let pages: i64 = self.folios.iter().sum();
        (pages > 0).then(|| (pages - self.folios[0]) as f64 / pages as f64)
    }
}

/// Median and range of a set of measurements.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// One filesystem in one mode, warm-up left out.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub fs: String,
    pub mode: String,
    pub reps: usize,
    pub mib_per_s: Spread,
    pub sys_s_per_gib: Spread,
    /// Per rep, in rep order.
    pub splice_move: Vec<i64>,
    pub splice_move_fallback: Vec<i64>,
    /// Share of the file's pages that were moved, lowest rep.
    pub moved_share_min: f64,
    /// Share of the file's pages that replaced a cached page, lowest rep.
    pub replaced_share_min: f64,
    /// Share of the file's pages in large folios after a rep, lowest and
    /// highest (None: the guest did not count them).
    pub large_share: Option<Spread>,
}

/// Move against copy on one row.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub fs: String,
    /// Median MiB/s of move over median MiB/s of copy.
    pub throughput: f64,
    /// Median sys s/GiB of move over that of copy.
    pub sys_cpu: f64,
    /// The same ratios rep by rep (move rep i against copy rep i, run
    /// right next to it).
    pub throughput_paired: Spread,
    pub sys_cpu_paired: Spread,
    /// None (null) where the goal does not apply: a row that times disk
    /// I/O (ext4+fsync), or where both modes copy (ext4-overwrite), is
    /// held to the no-regression goal only.
    pub throughput_goal_met: Option<bool>,
    pub sys_cpu_goal_met: Option<bool>,
    /// The page copy a move saves, as a share of the system CPU time a
    /// copy rep spends per page: about the most a move can save.
    pub copy_share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub cells: Vec<Cell>,
    pub ratios: Vec<Ratio>,
    pub goals: Goals,
    /// Every row's throughput ratio is at least `goals.no_case_below`.
    pub no_case_below_met: bool,
    /// Things that make the numbers suspect (a move cell that did not
    /// move every page, a copy cell that moved some, reps of one cell
    /// that differ by more than NOISY, writeback in the timed part of a
    /// page-cache-only row).
    pub warnings: Vec<String>,
}

/// The host the guest ran on: other work there slows an emulated guest.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub cpus: usize,
    /// 1-minute load average before the boot and after it.
    pub load_before: f64,
    pub load_after: f64,
    /// The guest's vCPUs: busy through the bench, so in `load_after`.
    pub guest_vcpus: u32,
}

impl Host {
    fn load() -> f64 {
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(f64::NAN)
    }

    /// Other work and the guest's vCPUs together wanted more than the
    /// host's CPUs. The load after the boot counts the guest itself, so
    /// its vCPUs are taken out of it before it is compared.
    pub fn contended(&self) -> bool {
        let vcpus = f64::from(self.guest_vcpus);
        let other = self.load_before.max(self.load_after - vcpus);
        other + vcpus > self.cpus as f64 + 0.5
    }
}

#[derive(Debug, Serialize)]
pub struct Bench {
    pub kernel: String,
    pub accel: String,
    pub accel_reason: String,
    /// Debug options of the kernel's config that slow it down.
    pub debug_config: Vec<String>,
    pub memory: String,
    pub cpus: u32,
    pub host: Host,
    /// The fault injected for the whole run (--fault), if any.
    pub fault: Option<String>,
    /// Size of the ext4 rows' scratch disk (None: no ext4 row).
    pub ext4_disk_bytes: Option<u64>,
    pub setup: Header,
    #[serde(flatten)]
    pub summary: Summary,
    pub samples: Vec<Sample>,
    pub seconds: f64,
    pub logs: PathBuf,
}

/// Parses the bench's file size (see crate::size): a positive multiple of
/// the 64K write size.
pub fn parse_size(s: &str) -> Result<u64> {
    let bytes = crate::size::parse_bytes(s)?;
    if bytes == 0 || !bytes.is_multiple_of(WRITE_SIZE) {
        bail!("{s:?}: the size must be a positive multiple of 64K");
    }
    Ok(bytes)
}

/// `--splice`: whole 4K pages, at most what the default pipe (64K) holds,
/// or the guest would wait for more than the pipe can take.
pub fn parse_splice_size(s: &str) -> Result<u64> {
    let n = crate::size::parse_bytes(s)?;
    if n == 0 || !n.is_multiple_of(4096) || n > WRITE_SIZE {
        bail!("{s:?}: a splice size is whole 4K pages, 4K to 64K");
    }
    Ok(n)
}

/// Human size: 1G, 256M, 64K, or bytes.
pub fn show_size(bytes: u64) -> String {
    for (shift, unit) in [(30, "G"), (20, "M"), (10, "K")] {
        if bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// Reads the guest's output: the header line and the rep lines.
pub fn parse_lines(text: &str) -> Result<(Header, Vec<Sample>)> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().ok_or_else(|| anyhow!("no header line"))?;
    let header: Header =
        serde_json::from_str(first).with_context(|| format!("bad header line: {first}"))?;
    let samples = lines
        .map(|l| serde_json::from_str(l).with_context(|| format!("bad rep line: {l}")))
        .collect::<Result<Vec<Sample>>>()?;
    Ok((header, samples))
}

fn mib_per_s(h: &Header, s: &Sample) -> f64 {
    h.size as f64 / MIB / s.seconds
}

fn sys_per_gib(h: &Header, s: &Sample) -> f64 {
    s.sys_seconds / (h.size as f64 / GIB)
}

/// Cells, ratios and goals of `rows` from the measured reps (warm-ups
/// left out).
pub fn summarize(h: &Header, rows: &[String], samples: &[Sample]) -> Result<Summary> {
    let pages = (h.size / h.page_size) as f64;
    let measured = |fs: &str, mode: &str| -> Vec<&Sample> {
        let mut v: Vec<&Sample> = samples
            .iter()
            .filter(|s| !s.warmup && s.fs == fs && s.mode == mode)
            .collect();
        v.sort_by_key(|s| s.rep);
        v
    };
    let mut cells = Vec::new();
    let mut ratios = Vec::new();
    let mut warnings = Vec::new();
    for fs in rows.iter().map(String::as_str) {
        let row = Row::parse(fs);
        let (disk, copies) = (row.disk(), row.copies());
        for mode in MODES {
            let reps = measured(fs, mode);
            if reps.is_empty() {
                bail!("no measured rep for {fs} {mode}");
            }
            let spread = |f: &dyn Fn(&Sample) -> f64| {
                Spread::of(&reps.iter().map(|s| f(s)).collect::<Vec<_>>())
                    .ok_or_else(|| anyhow!("{fs} {mode}: no finite measurement"))
            };
            let moved: Vec<i64> = reps.iter().map(|s| s.splice_move).collect();
            let moved_share_min = moved.iter().copied().min().unwrap_or(0) as f64 / pages;
            let replaced_share_min = reps
                .iter()
                .map(|s| s.splice_move_replace)
                .min()
                .unwrap_or(0) as f64
                / pages;
            let large: Option<Vec<f64>> = reps.iter().map(|s| s.large_share()).collect();
            let large_share = large.as_deref().and_then(Spread::of);
            let fallbacks: i64 = reps.iter().map(|s| s.splice_move_fallback).sum();
            if fallbacks > 0 {
                warnings.push(format!(
                    "{fs} {mode}: {fallbacks} pages were taken from the pipe and then copied"
                ));
            }
            let placeholders: Vec<i64> = reps.iter().map(|s| s.splice_move_placeholder).collect();
            if row.placeholder_free() && placeholders.iter().any(|&p| p != 0) {
                warnings.push(format!(
                    "{fs} {mode}: pages moved through a placeholder folio ({placeholders:?})"
                ));
            }
            // A page goes where the page cache would put an order-0 folio:
            // in a file of large folios, fewer moves are the policy.
            match mode {
                "move" if copies && moved.iter().any(|&m| m != 0) => warnings.push(format!(
                    "{fs} move: pages were moved where the series copies ({moved:?})"
                )),
                "move"
                    if row.takes_gifts()
                        && reps.iter().any(|s| s.splice_move_gift < s.splice_move) =>
                {
                    warnings.push(format!(
                        "{fs} move: pages moved that were not the writer's gifts ({:?} gifts, {moved:?} moved)",
                        reps.iter().map(|s| s.splice_move_gift).collect::<Vec<_>>()
                    ))
                }
                "move" if row.replaces() && replaced_share_min < moved_share_min => {
                    warnings.push(format!(
                        "{fs} move: only {:.1}% of the pages replaced a cached page in some rep",
                        replaced_share_min * 100.0
                    ))
                }
                "move"
                    if !copies
                        && moved_share_min < 1.0
                        && large_share.is_none_or(|l| l.max == 0.0) =>
                {
                    warnings.push(format!(
                        "{fs} move: only {:.1}% of the pages were moved in some rep",
                        moved_share_min * 100.0
                    ))
                }
                "copy" if moved.iter().any(|&m| m != 0) => warnings.push(format!(
                    "{fs} copy: pages were moved without SPLICE_F_MOVE ({moved:?})"
                )),
                _ => {}
            }
            // A few pages of ext4 metadata may be written back while a rep
            // is timed (its journal at work); the file's data must not be.
            let written = reps.iter().map(|s| s.written).max().unwrap_or(0);
            if !disk && written as f64 > WRITTEN_MAX * pages {
                warnings.push(format!(
                    "{fs} {mode}: {written} pages were written back while a rep was timed \
                     ({:.1}% of the file): not the page cache alone",
                    written as f64 / pages * 100.0
                ));
            }
            let mib = spread(&|s| mib_per_s(h, s))?;
            if mib.max > NOISY * mib.min {
                warnings.push(format!(
                    "{fs} {mode}: reps ran at {:.1} to {:.1} MiB/s: the host was not steady, \
                     so the medians and ratios say little",
                    mib.min, mib.max
                ));
            }
            cells.push(Cell {
                fs: fs.into(),
                mode: mode.into(),
                reps: reps.len(),
                mib_per_s: mib,
                sys_s_per_gib: spread(&|s| sys_per_gib(h, s))?,
                splice_move: moved,
                splice_move_fallback: reps.iter().map(|s| s.splice_move_fallback).collect(),
                moved_share_min,
                replaced_share_min,
                large_share,
            });
        }
        let n = cells.len();
        let (mv, cp) = (&cells[n - 2], &cells[n - 1]);
        // Rep i of move ran right next to rep i of copy: pair them.
        let (mreps, creps) = (measured(fs, "move"), measured(fs, "copy"));
        let pairs: Vec<(&Sample, &Sample)> = mreps
            .iter()
            .flat_map(|m| creps.iter().find(|c| c.rep == m.rep).map(|c| (*m, *c)))
            .collect();
        let paired = |f: &dyn Fn(&Sample, &Sample) -> f64| {
            Spread::of(&pairs.iter().map(|(m, c)| f(m, c)).collect::<Vec<_>>())
                .ok_or_else(|| anyhow!("{fs}: no paired reps"))
        };
        let sys_us_per_page = cp.sys_s_per_gib.median * 1e6 / (GIB / h.page_size as f64);
        let throughput = mv.mib_per_s.median / cp.mib_per_s.median;
        let sys_cpu = mv.sys_s_per_gib.median / cp.sys_s_per_gib.median;
        ratios.push(Ratio {
            fs: fs.into(),
            throughput,
            sys_cpu,
            throughput_paired: paired(&|m, c| c.seconds / m.seconds)?,
            sys_cpu_paired: paired(&|m, c| m.sys_seconds / c.sys_seconds)?,
            throughput_goal_met: (!disk && !copies).then_some(throughput >= GOALS.throughput_min),
            sys_cpu_goal_met: (!disk && !copies).then_some(sys_cpu <= GOALS.sys_cpu_max),
            copy_share: h.copy_us_per_page / sys_us_per_page,
        });
    }
    let no_case_below_met = ratios.iter().all(|r| r.throughput >= GOALS.no_case_below);
    Ok(Summary {
        cells,
        ratios,
        goals: GOALS,
        no_case_below_met,
        warnings,
    })
}

/// The debug options of a kernel .config that cost time on every call.
pub fn debug_options(config: &str) -> Vec<String> {
    const SLOW: [&str; 8] = [
        "KASAN",
        "PROVE_LOCKING",
        "DEBUG_VM",
        "DEBUG_VM_PGFLAGS",
        "DEBUG_LIST",
        "DEBUG_ATOMIC_SLEEP",
        "DEBUG_PAGEALLOC",
        "KMEMLEAK",
    ];
    SLOW.iter()
        .filter(|o| config.lines().any(|l| l == format!("CONFIG_{o}=y")))
        .map(|o| o.to_string())
        .collect()
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

/// A goal that may not apply to a row.
fn met_or_na(ok: Option<bool>) -> &'static str {
    ok.map_or("n/a", met)
}

/// The table, as printed.
pub fn table(b: &Bench) -> String {
    let s = &b.summary;
    let h = &b.setup;
    let mut out = format!(
        "splice bench: kernel {} under {} ({}), {} vCPUs, {} memory\n",
        b.kernel,
        b.accel.to_uppercase(),
        b.accel_reason,
        b.cpus,
        b.memory
    );
    out += &format!(
        "{} per rep, {} reps per cell after 1 warm-up, interleaved; {} writes, {}, pipe {}, page {}\n",
        show_size(h.size),
        h.reps,
        show_size(h.write_size),
        match h.splice_size {
            0 => "splices of what the pipe holds".to_string(),
            n => format!("splices of {} once the pipe holds them", show_size(n)),
        },
        show_size(h.pipe_size),
        show_size(h.page_size)
    );
    out += &format!(
        "host: {} CPUs, load {:.1} before and {:.1} after{}\n",
        b.host.cpus,
        b.host.load_before,
        b.host.load_after,
        if b.host.contended() {
            ": contended, timings include waiting for the host"
        } else {
            ""
        }
    );
    if let Some(f) = &b.fault {
        out += &format!(
            "fault injected: {f} (the series' testing patch): move is the path the series \
             does not take\n"
        );
    }
    if !b.debug_config.is_empty() {
        out += &format!(
            "debug kernel: {} (absolute numbers are not production numbers)\n",
            b.debug_config.join(" ")
        );
    }
    if let Some(disk) = b.ext4_disk_bytes {
        out += &format!(
            "ext4: mkfs.ext4 defaults on a fresh {} virtio disk, noinit_itable; dirty limits {}/{}, \
             no periodic writeback\n\
             ext4 times the page cache only (fsync, removal and sync after it untimed); \
             ext4+fsync times the fsync() too (goals n/a but no regression)\n",
            show_size(disk),
            show_size(h.dirty_background_bytes),
            show_size(h.dirty_bytes)
        );
    }
    out += &format!("\n{}\n", cells_table(s));
    let g = &s.goals;
    out += &format!("\n{}\n", ratios_table(s));
    let lowest = s
        .ratios
        .iter()
        .min_by(|a, b| a.throughput.total_cmp(&b.throughput));
    if let Some(l) = lowest {
        out += &format!(
            "no case below {}x throughput: {} (lowest: {} {:.2}x)\n",
            g.no_case_below,
            met(s.no_case_below_met),
            l.fs,
            l.throughput
        );
    }
    for w in &s.warnings {
        out += &format!("warning: {w}\n");
    }
    out += &format!(
        "\nmoved: share of the file's pages moved (lowest rep); replaced: of those, moved over a cached page; \
         fallback: pages taken then copied (all reps)\n\
         in large folios: share of the file's pages in folios above order 0 after a rep (/proc/kpageflags)\n\
         copy share: one page copy ({:.2} us here, {}) against the system CPU a copy rep spends per page\n\
         {:.0} s in the VM; logs and bench.json: {}\n",
        h.copy_us_per_page,
        h.copy_routine,
        b.seconds,
        b.logs.display()
    );
    out
}

/// One row per cell: medians, spreads, what moved.
fn cells_table(s: &Summary) -> String {
    let mut t = crate::report::table(
        [
            "FS",
            "MODE",
            "MiB/s",
            "[min-max]",
            "sys s/GiB",
            "[min-max]",
            "moved",
            "replaced",
            "fallback",
            "in large folios",
        ],
        &[2, 3, 4, 5, 6, 7, 8, 9],
    );
    for c in &s.cells {
        let fb: i64 = c.splice_move_fallback.iter().sum();
        t.add_row([
            c.fs.clone(),
            c.mode.clone(),
            format!("{:.1}", c.mib_per_s.median),
            format!("[{:.1}-{:.1}]", c.mib_per_s.min, c.mib_per_s.max),
            format!("{:.3}", c.sys_s_per_gib.median),
            format!("[{:.3}-{:.3}]", c.sys_s_per_gib.min, c.sys_s_per_gib.max),
            format!("{:.1}%", c.moved_share_min * 100.0),
            format!("{:.1}%", c.replaced_share_min * 100.0),
            fb.to_string(),
            c.large_share.map_or("-".into(), |l| {
                if l.min == l.max {
                    format!("{:.1}%", l.min * 100.0)
                } else {
                    format!("{:.1}-{:.1}%", l.min * 100.0, l.max * 100.0)
                }
            }),
        ]);
    }
    t.trim_fmt()
}

/// One row per filesystem: move against copy, against the goals.
fn ratios_table(s: &Summary) -> String {
    let g = &s.goals;
    let mut t = crate::report::table(
        [
            "MOVE/COPY".to_string(),
            "throughput".to_string(),
            "[paired reps]".to_string(),
            format!(">={}x", g.throughput_min),
            "sys CPU".to_string(),
            "[paired reps]".to_string(),
            format!("<={}x", g.sys_cpu_max),
            "copy share".to_string(),
        ],
        &[1, 2, 3, 4, 5, 6, 7],
    );
    for r in &s.ratios {
        t.add_row([
            r.fs.clone(),
            format!("{:.2}x", r.throughput),
            format!(
                "[{:.2}-{:.2}]",
                r.throughput_paired.min, r.throughput_paired.max
            ),
            met_or_na(r.throughput_goal_met).to_string(),
            format!("{:.2}x", r.sys_cpu),
            format!("[{:.2}-{:.2}]", r.sys_cpu_paired.min, r.sys_cpu_paired.max),
            met_or_na(r.sys_cpu_goal_met).to_string(),
            format!("{:.1}%", r.copy_share * 100.0),
        ]);
    }
    t.trim_fmt()
}

/// Shows the guest's progress from its output file while the VM runs.
fn watch(out: &Path, total: u64, done: &AtomicBool) {
    let bar = crate::progress::bar(total, "reps");
    bar.set_message("booting");
    while !done.load(Ordering::Relaxed) {
        if let Ok(text) = std::fs::read_to_string(out) {
            let reps: Vec<&str> = text.lines().skip(1).collect();
            bar.set_position(reps.len() as u64);
            let last = reps
                .last()
                .and_then(|l| serde_json::from_str::<Sample>(l).ok());
            match (last, text.lines().next()) {
                (Some(s), _) => bar.set_message(format!(
                    "{} {} rep {}: {:.1} s",
                    s.fs, s.mode, s.rep, s.seconds
                )),
                (None, Some(_)) => bar.set_message("first rep"),
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bar.finish_and_clear();
}

/// Whether a boot measured anything: the guest program passed on a kernel
/// with the series, and the console is clean. The error carries the exit
/// code (the verdict's, at least 1).
pub fn judge(booted: &run::Booted, timeout: Duration) -> Result<()> {
    let (result, output) = booted
        .tests
        .iter()
        .find(|t| t.name == PROGRAM)
        .map(|t| (t.result, t.output.trim()))
        .unwrap_or((TestStatus::Incomplete, ""));
    let fail = |msg: String| -> Result<()> {
        Err(anyhow::Error::new(Exit(
            booted.verdict.exit_code().max(1),
            anyhow!("{msg}\n  logs: {}", booted.logs.display()),
        )))
    };
    if let Some(setup) = booted.tests.iter().find(|t| t.name == "setup") {
        return fail(format!(
            "the guest's setup failed (a --fault the kernel does not know?): {}",
            setup.output.trim()
        ));
    }
    if result == TestStatus::Skip {
        return fail(format!(
            "the kernel has no vm.splice_move sysctl: it was built without the series \
             (apply it, then bench its branch); guest said: {output}"
        ));
    }
    if !booted.splats.is_empty() {
        let reports: Vec<&str> = booted.splats.iter().map(|s| s.text.as_str()).collect();
        return fail(format!(
            "the console has {} kernel report(s): a benchmark of such a kernel means nothing\n{}",
            booted.splats.len(),
            reports.join("\n\n")
        ));
    }
    match booted.verdict {
        Verdict::Pass => Ok(()),
        Verdict::Timeout => fail(format!(
            "the benchmark did not finish in {} s (--timeout)",
            timeout.as_secs()
        )),
        v => fail(format!(
            "the benchmark did not complete: verdict {}, {PROGRAM} {result}: {output}",
            v.as_str()
        )),
    }
}

/// Boots `image` once and runs the benchmark; `logs` receives the
/// console, the guest's lines (bench.jsonl) and bench.json.
pub fn run(
    project: &Path,
    cache: &Path,
    image: &Path,
    config: &Path,
    logs: &Path,
    opts: &BenchOpts,
) -> Result<Bench> {
    let names = [PROGRAM.to_string()];
    let bindir = cache.join("bench-bin");
    run::compile_guest(project, "vm/bench", &names, &bindir)?;
    std::fs::create_dir_all(logs)?;
    let logs = logs.canonicalize()?;
    let lines = logs.join("bench.jsonl");
    let mut guest = Guest::tests(&bindir, &names)?;
    guest.env = vec![
        ("ZCSPLICE_BENCH_SIZE", opts.size.to_string()),
        ("ZCSPLICE_BENCH_REPS", opts.reps.to_string()),
        ("ZCSPLICE_BENCH_FS", opts.rows.join(",")),
        (
            "ZCSPLICE_BENCH_SPLICE",
            opts.splice.unwrap_or(0).to_string(),
        ),
        ("ZCSPLICE_BENCH_OUT", lines.display().to_string()),
    ];
    if let Some(f) = &opts.fault {
        guest.env.push(("ZCSPLICE_FAULT", f.clone()));
    }
    // The ext4 rows' filesystem: made by the guest on /dev/vda, the image
    // deleted when `images` is dropped, after the boot.
    let ext4_disk_bytes = opts
        .rows
        .iter()
        .any(|r| Row::parse(r).on_ext4())
        .then(|| ext4_disk_bytes(opts.size));
    let images = match ext4_disk_bytes {
        Some(bytes) => disks::fresh(
            cache,
            &[disks::Disk {
                name: "bench-ext4",
                bytes,
            }],
        )?,
        None => Vec::new(),
    };
    guest.disks = images.iter().map(|p| p.to_path_buf()).collect();
    let total = (opts.rows.len() * MODES.len()) as u64 * (u64::from(opts.reps) + 1);
    let done = AtomicBool::new(false);
    let load_before = Host::load();
    let booted = std::thread::scope(|s| {
        s.spawn(|| watch(&lines, total, &done));
        let b = run::boot(project, cache, image, &logs, &guest, &opts.vm);
        done.store(true, Ordering::Relaxed);
        b
    })
    .map_err(|e| anyhow::Error::new(Exit(Verdict::VmFailed.exit_code(), e)))?;

    let host = Host {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_before,
        load_after: Host::load(),
        guest_vcpus: opts.vm.cpus,
    };
    judge(&booted, opts.vm.timeout)?;
    let text = std::fs::read_to_string(&lines)
        .with_context(|| format!("the guest wrote no {}", lines.display()))?;
    let (setup, samples) = parse_lines(&text)?;
    let summary = summarize(&setup, &opts.rows, &samples)?;
    let bench = Bench {
        kernel: setup.kernel.clone(),
        accel: booted.accel.to_string(),
        accel_reason: booted.accel_reason,
        debug_config: debug_options(&std::fs::read_to_string(config).unwrap_or_default()),
        memory: opts.vm.memory.clone(),
        cpus: opts.vm.cpus,
        host,
        fault: opts.fault.clone(),
        ext4_disk_bytes,
        setup,
        summary,
        samples,
        seconds: booted.finished.seconds,
        logs: logs.clone(),
    };
    std::fs::write(
        logs.join("bench.json"),
        serde_json::to_string_pretty(&bench)? + "\n",
    )?;
    Ok(bench)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(size: u64, reps: u32) -> Header {
        Header {
            kernel: "6.12.117".into(),
            size,
            reps,
            write_size: 65536,
            splice_size: 0,
            pipe_size: 65536,
            page_size: 4096,
            cpus: 2,
            copy_us_per_page: 2.0,
            copy_routine: "movq loop".into(),
            dirty_background_bytes: 0,
            dirty_bytes: 0,
        }
    }

    fn names(rows: &[&str]) -> Vec<String> {
        rows.iter().map(|r| r.to_string()).collect()
    }

    /// The rows of the bench before ext4.
    fn two() -> Vec<String> {
        names(&["tmpfs", "ramfs"])
    }

    fn sample(fs: &str, mode: &str, rep: u32, seconds: f64, sys: f64, moved: i64) -> Sample {
        Sample {
            fs: fs.into(),
            mode: mode.into(),
            rep,
            warmup: rep == 0,
            seconds,
            sys_seconds: sys,
            user_seconds: 0.01,
            splice_move: moved,
            splice_move_fallback: 0,
            splice_move_replace: 0,
            splice_move_gift: 0,
            splice_move_placeholder: 0,
            written: 0,
            folios: Vec::new(),
        }
    }

    /// 1 GiB reps: move takes `m` s and `ms` sys s, copy `c` and `cs`.
    fn samples(fs: &str, reps: &[(f64, f64, f64, f64)]) -> Vec<Sample> {
        let pages = (1 << 30) / 4096;
        let mut v = Vec::new();
        for (i, &(m, ms, c, cs)) in reps.iter().enumerate() {
            v.push(sample(fs, "move", i as u32, m, ms, pages));
            v.push(sample(fs, "copy", i as u32, c, cs, 0));
        }
        v
    }

    #[test]
    fn spread_is_median_and_range() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[f64::INFINITY]), None);
    }

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("256M").unwrap(), 256 << 20);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("128k").unwrap(), 128 << 10);
        assert_eq!(parse_size("131072").unwrap(), 131072);
        assert!(parse_size("100").is_err(), "not a multiple of 64K");
        assert!(parse_size("0").is_err());
        assert!(parse_size("1T").is_err());
        assert!(parse_size("lots").is_err());
        assert_eq!(show_size(1 << 30), "1G");
        assert_eq!(show_size(96 << 20), "96M");
        assert_eq!(show_size(65536), "64K");
    }

    #[test]
    fn rows_are_picked_in_table_order_once() {
        assert_eq!(rows(&[]).unwrap(), ROWS);
        assert_eq!(
            rows(&names(&["ext4+fsync", "tmpfs", "ext4+fsync"])).unwrap(),
            ["tmpfs", "ext4+fsync"]
        );
        let e = rows(&names(&["ext3"])).unwrap_err().to_string();
        assert!(e.contains("\"ext3\"") && e.contains("ext4+fsync"), "{e}");
        // One file of --size and room to spare: 1G reps get a 3G disk.
        assert_eq!(ext4_disk_bytes(1 << 30), 3 << 30);
    }

    #[test]
    fn a_row_is_what_its_name_says() {
        let having = |class: fn(&Row<'static>) -> bool| -> Vec<&str> {
            ROWS.into_iter().filter(|r| class(&Row::parse(r))).collect()
        };
        assert_eq!(
            Row::parse("ext4+fsync"),
            Row {
                fs: "ext4",
                fsync: true,
                target: Target::Fresh
            }
        );
        assert_eq!(Row::parse("ramfs-overwrite").target, Target::Cached);
        assert_eq!(Row::parse("ext4-rewrite").target, Target::Evicted);
        assert_eq!(
            having(Row::on_ext4),
            [
                "ext4",
                "ext4+fsync",
                "ext4-overwrite",
                "ext4-gift",
                "ext4-rewrite"
            ]
        );
        assert_eq!(having(Row::copies), ["ext4-overwrite"]);
        assert_eq!(
            having(Row::replaces),
            ["tmpfs-overwrite", "ramfs-overwrite"]
        );
        assert_eq!(
            having(Row::takes_gifts),
            ["tmpfs-gift", "ramfs-gift", "ext4-gift"]
        );
        assert_eq!(
            having(Row::placeholder_free),
            ["ext4", "ext4+fsync", "ext4-gift", "ext4-rewrite"]
        );
        assert_eq!(having(Row::disk), ["ext4+fsync"]);
        assert!(ROWS
            .iter()
            .all(|r| ["tmpfs", "ramfs", "ext4"].contains(&Row::parse(r).fs)));
    }

    #[test]
    fn ext4_rows_are_summarized_and_fsync_is_held_to_no_regression_only() {
        let h = header(1 << 30, 1);
        let rows = names(&["ext4", "ext4+fsync"]);
        let mut v = samples("ext4", &[(1.0, 1.0, 1.0, 1.0), (1.0, 0.5, 2.0, 1.0)]);
        // With fsync timed the copy a move saves is a small share.
        v.extend(samples(
            "ext4+fsync",
            &[(5.0, 2.0, 5.0, 2.0), (5.0, 1.9, 5.2, 2.0)],
        ));
        let pages = (1 << 30) / 4096;
        v.iter_mut()
            .filter(|s| s.fs == "ext4+fsync")
            .for_each(|s| s.written = pages);
        let s = summarize(&h, &rows, &v).unwrap();
        let cells: Vec<String> = s
            .cells
            .iter()
            .map(|c| format!("{} {}", c.fs, c.mode))
            .collect();
        assert_eq!(
            cells,
            [
                "ext4 move",
                "ext4 copy",
                "ext4+fsync move",
                "ext4+fsync copy"
            ]
        );
        let (e, f) = (&s.ratios[0], &s.ratios[1]);
        assert_eq!(e.fs, "ext4");
        assert_eq!(
            (e.throughput_goal_met, e.sys_cpu_goal_met),
            (Some(true), Some(true))
        );
        assert_eq!(f.fs, "ext4+fsync");
        assert!((f.throughput - 1.04).abs() < 1e-9);
        assert_eq!((f.throughput_goal_met, f.sys_cpu_goal_met), (None, None));
        assert!(s.no_case_below_met);
        // A timed fsync writes the file back: no warning for that.
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);

        // ... but the fsync row still must not be slower with a move.
        v.iter_mut()
            .filter(|s| s.fs == "ext4+fsync" && s.mode == "move")
            .for_each(|s| s.seconds = 6.0);
        let s = summarize(&h, &rows, &v).unwrap();
        assert!(!s.no_case_below_met);
        assert!(s.ratios[1].throughput < 0.98);
    }

    #[test]
    fn writeback_in_a_page_cache_rep_is_warned_about() {
        let h = header(1 << 30, 1);
        let rows = names(&["ext4"]);
        let mut v = samples("ext4", &[(1.0, 1.0, 1.0, 1.0), (1.0, 0.5, 2.0, 1.0)]);
        // A few pages of metadata are no matter.
        v.iter_mut().for_each(|s| s.written = 9);
        assert!(summarize(&h, &rows, &v).unwrap().warnings.is_empty());
        v[3].written = 50_000;
        let s = summarize(&h, &rows, &v).unwrap();
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert!(
            s.warnings[0].starts_with("ext4 copy: 50000 pages were written back"),
            "{:?}",
            s.warnings
        );
        assert!(
            s.warnings[0].contains("(19.1% of the file)"),
            "{:?}",
            s.warnings
        );
    }

    #[test]
    fn ratios_use_medians_without_the_warm_up() {
        let h = header(1 << 30, 3);
        let mut v = samples(
            "tmpfs",
            &[
                // The warm-up is way off and must not count.
                (100.0, 100.0, 1.0, 1.0),
                (1.0, 0.4, 2.0, 1.0),
                (2.0, 0.5, 3.0, 1.0),
                (1.5, 0.6, 2.4, 2.0),
            ],
        );
        v.extend(samples(
            "ramfs",
            &[
                (9.0, 9.0, 9.0, 9.0),
                (2.0, 1.0, 2.0, 1.0),
                (2.0, 1.0, 2.0, 1.0),
                (2.1, 1.0, 2.0, 1.0),
            ],
        ));
        let s = summarize(&h, &two(), &v).unwrap();
        let names: Vec<(String, String)> = s
            .cells
            .iter()
            .map(|c| (c.fs.clone(), c.mode.clone()))
            .collect();
        assert_eq!(
            names,
            [
                ("tmpfs".into(), "move".into()),
                ("tmpfs".into(), "copy".into()),
                ("ramfs".into(), "move".into()),
                ("ramfs".into(), "copy".into())
            ]
        );
        let tm = &s.cells[0];
        assert_eq!(tm.reps, 3);
        // 1 GiB in 1.0, 2.0, 1.5 s: median 1.5 s = 682.7 MiB/s.
        assert!((tm.mib_per_s.median - 1024.0 / 1.5).abs() < 1e-9);
        assert!((tm.mib_per_s.min - 512.0).abs() < 1e-9);
        assert!((tm.mib_per_s.max - 1024.0).abs() < 1e-9);
        assert!((tm.sys_s_per_gib.median - 0.5).abs() < 1e-9);
        assert_eq!(tm.moved_share_min, 1.0);

        let t = &s.ratios[0];
        // Copy median 2.4 s against move 1.5 s.
        assert!((t.throughput - 2.4 / 1.5).abs() < 1e-9);
        assert!((t.sys_cpu - 0.5).abs() < 1e-9);
        assert_eq!(
            (t.throughput_goal_met, t.sys_cpu_goal_met),
            (Some(true), Some(true))
        );
        // Paired: 2/1, 3/2, 2.4/1.5.
        assert!((t.throughput_paired.min - 1.5).abs() < 1e-9);
        assert!((t.throughput_paired.max - 2.0).abs() < 1e-9);
        assert!((t.sys_cpu_paired.min - 0.3).abs() < 1e-9);
        // Copy reps: 1 s of sys per GiB = 3.815 us per page; a copy costs 2.
        assert!((t.copy_share - 2.0 / (1e6 / 262144.0)).abs() < 1e-9);

        let r = &s.ratios[1];
        assert!((r.throughput - 1.0).abs() < 1e-9);
        assert_eq!(
            (r.throughput_goal_met, r.sys_cpu_goal_met),
            (Some(false), Some(false))
        );
        assert!(s.no_case_below_met);
        // Move reps of 1 to 2 s are too far apart to be trusted.
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert!(s.warnings[0].starts_with("tmpfs move: reps ran at 512.0 to 1024.0"));
    }

    #[test]
    fn a_slower_move_misses_the_no_regression_goal() {
        let h = header(1 << 30, 1);
        let mut v = samples("tmpfs", &[(1.0, 1.0, 1.0, 1.0), (1.0, 0.5, 2.0, 1.0)]);
        v.extend(samples(
            "ramfs",
            &[(1.0, 1.0, 1.0, 1.0), (1.1, 1.0, 1.0, 1.0)],
        ));
        let s = summarize(&h, &two(), &v).unwrap();
        assert!(s.ratios[1].throughput < 0.98);
        assert!(!s.no_case_below_met);
    }

    #[test]
    fn wrong_paths_are_warned_about() {
        let h = header(1 << 30, 1);
        let mut v = samples("tmpfs", &[(1.0, 1.0, 1.0, 1.0), (1.0, 1.0, 2.0, 1.0)]);
        v.extend(samples(
            "ramfs",
            &[(1.0, 1.0, 1.0, 1.0), (1.0, 1.0, 2.0, 1.0)],
        ));
        v.iter_mut()
            .filter(|s| s.fs == "ramfs" && s.mode == "move")
            .for_each(|s| s.splice_move /= 2);
        v.iter_mut()
            .filter(|s| s.fs == "tmpfs" && s.mode == "copy")
            .for_each(|s| s.splice_move = 3);
        let s = summarize(&h, &two(), &v).unwrap();
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        assert!(s.warnings[0].starts_with("tmpfs copy"));
        assert!(s.warnings[1].contains("ramfs move: only 50.0%"));
    }

    #[test]
    fn overwrite_rows_are_held_to_what_each_filesystem_does() {
        let h = header(1 << 30, 1);
        let rows = names(&["tmpfs-overwrite", "ramfs-overwrite", "ext4-overwrite"]);
        let steady = [(1.0, 1.0, 2.0, 1.0), (1.0, 1.0, 2.0, 1.0)];
        let mut v = samples("tmpfs-overwrite", &steady);
        v.extend(samples("ramfs-overwrite", &steady));
        v.extend(samples("ext4-overwrite", &steady));
        // tmpfs replaced every page it moved; ramfs half; ext4 copies.
        for s in v.iter_mut().filter(|s| s.mode == "move") {
            match s.fs.as_str() {
                "tmpfs-overwrite" => s.splice_move_replace = s.splice_move,
                "ramfs-overwrite" => s.splice_move_replace = s.splice_move / 2,
                _ => s.splice_move = 0,
            }
        }
        let s = summarize(&h, &rows, &v).unwrap();
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert!(
            s.warnings[0].starts_with("ramfs-overwrite move: only 50.0% of the pages replaced"),
            "{:?}",
            s.warnings
        );
        assert_eq!(s.cells[0].replaced_share_min, 1.0);
        // Where both modes copy, only the no-regression goal applies.
        assert_eq!(s.ratios[0].throughput_goal_met, Some(true));
        assert_eq!(s.ratios[2].throughput_goal_met, None);
        assert_eq!(s.ratios[2].sys_cpu_goal_met, None);
        // A move where the series copies is a wrong path.
        v.iter_mut()
            .filter(|s| s.fs == "ext4-overwrite" && s.mode == "move")
            .for_each(|s| s.splice_move = 7);
        let s = summarize(&h, &rows, &v).unwrap();
        assert!(
            s.warnings
                .iter()
                .any(|w| w
                    .starts_with("ext4-overwrite move: pages were moved where the series copies")),
            "{:?}",
            s.warnings
        );
    }

    #[test]
    fn delalloc_rows_warn_when_a_move_took_a_placeholder() {
        let h = header(1 << 30, 1);
        let rows = names(&["ext4", "ext4-rewrite"]);
        let steady = [(1.0, 1.0, 2.0, 1.0), (1.0, 1.0, 2.0, 1.0)];
        let mut v = samples("ext4", &steady);
        v.extend(samples("ext4-rewrite", &steady));
        let s = summarize(&h, &rows, &v).unwrap();
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        v.iter_mut()
            .filter(|s| s.fs == "ext4-rewrite" && s.mode == "move")
            .for_each(|s| s.splice_move_placeholder = 5);
        let s = summarize(&h, &rows, &v).unwrap();
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert!(
            s.warnings[0].starts_with("ext4-rewrite move: pages moved through a placeholder"),
            "{:?}",
            s.warnings
        );
    }

    #[test]
    fn gift_rows_warn_when_a_move_took_other_pages() {
        let h = header(1 << 30, 1);
        let rows = names(&["tmpfs-gift", "ramfs-gift"]);
        let steady = [(1.0, 1.0, 2.0, 1.0), (1.0, 1.0, 2.0, 1.0)];
        let mut v = samples("tmpfs-gift", &steady);
        v.extend(samples("ramfs-gift", &steady));
        // tmpfs moved only the writer's gifts; ramfs moved 10 pages more.
        for s in v.iter_mut().filter(|s| s.mode == "move") {
            s.splice_move_gift = s.splice_move - if s.fs == "ramfs-gift" { 10 } else { 0 };
        }
        let s = summarize(&h, &rows, &v).unwrap();
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert!(
            s.warnings[0]
                .starts_with("ramfs-gift move: pages moved that were not the writer's gifts"),
            "{:?}",
            s.warnings
        );
    }

    #[test]
    fn unsteady_reps_are_warned_about() {
        let h = header(1 << 30, 2);
        let mut v = samples(
            "tmpfs",
            &[
                (1.0, 1.0, 1.0, 1.0),
                (1.0, 1.0, 1.0, 1.0),
                (1.4, 1.0, 1.0, 1.0),
            ],
        );
        v.extend(samples(
            "ramfs",
            &[
                (1.0, 1.0, 1.0, 1.0),
                (1.0, 1.0, 1.0, 1.0),
                (1.0, 1.0, 1.6, 1.0),
            ],
        ));
        let s = summarize(&h, &two(), &v).unwrap();
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert!(
            s.warnings[0].starts_with("ramfs copy: reps ran at 640.0 to 1024.0 MiB/s"),
            "{:?}",
            s.warnings
        );
    }

    #[test]
    fn few_moves_are_only_suspect_where_the_file_has_no_large_folios() {
        let h = header(1 << 30, 1);
        let pages = (1 << 30) / 4096;
        // A file of order-4 folios (ext4 with large folios): nothing moved,
        // nothing taken, as the policy says.
        let mut large = samples("ext4", &[(1.0, 1.0, 1.0, 1.0), (1.0, 1.0, 1.0, 1.0)]);
        for s in &mut large {
            s.splice_move = 0;
            s.folios = vec![0, 0, 0, 0, pages, 0, 0, 0, 0, 0];
        }
        let s = summarize(&h, &names(&["ext4"]), &large).unwrap();
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        assert_eq!(s.cells[0].large_share.unwrap().min, 1.0);

        // The same moves in a file of order-0 folios: every page could move.
        for s in &mut large {
            s.folios = vec![pages, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        }
        let s = summarize(&h, &names(&["ext4"]), &large).unwrap();
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert!(
            s.warnings[0].starts_with("ext4 move: only 0.0%"),
            "{:?}",
            s.warnings
        );

        // A page taken from the pipe and then copied is always suspect.
        large[2].splice_move_fallback = 3;
        let s = summarize(&h, &names(&["ext4"]), &large).unwrap();
        assert!(
            s.warnings
                .iter()
                .any(|w| w == "ext4 move: 3 pages were taken from the pipe and then copied"),
            "{:?}",
            s.warnings
        );
    }

    #[test]
    fn the_guests_own_load_is_no_contention() {
        let host = |before, after| Host {
            cpus: 2,
            load_before: before,
            load_after: after,
            guest_vcpus: 2,
        };
        // A quiet host: the load after the boot is the guest's two vCPUs.
        assert!(!host(0.3, 2.1).contended());
        // Something else ran beside the guest, before or during it.
        assert!(host(1.8, 1.2).contended());
        assert!(host(0.2, 3.4).contended());
    }

    #[test]
    fn splice_sizes_are_whole_pages_that_fit_the_pipe() {
        assert_eq!(parse_splice_size("4K").unwrap(), 4096);
        assert_eq!(parse_splice_size("64K").unwrap(), 65536);
        for bad in ["0", "6K", "128K", "1M"] {
            let e = parse_splice_size(bad).unwrap_err().to_string();
            assert!(e.contains("4K to 64K"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_missing_cell_is_an_error() {
        let h = header(1 << 30, 1);
        let v = samples("tmpfs", &[(1.0, 1.0, 1.0, 1.0), (1.0, 1.0, 2.0, 1.0)]);
        let e = summarize(&h, &two(), &v).unwrap_err();
        assert!(e.to_string().contains("ramfs move"), "{e}");
        // Only the rows asked for are expected.
        assert!(summarize(&h, &names(&["tmpfs"]), &v).is_ok());
        let e = summarize(&h, &names(&["tmpfs", "ext4+fsync"]), &v).unwrap_err();
        assert!(e.to_string().contains("ext4+fsync move"), "{e}");
    }

    #[test]
    fn guest_lines_parse() {
        let text =
            "{\"kernel\": \"6.12.117\", \"size\": 1048576, \"reps\": 1, \"write_size\": 65536, \
                    \"pipe_size\": 65536, \"page_size\": 4096, \"cpus\": 2, \
                    \"copy_us_per_page\": 0.5, \"copy_routine\": \"rep movsb\"}\n\
                    {\"fs\": \"tmpfs\", \"mode\": \"move\", \"rep\": 0, \"warmup\": true, \
                    \"seconds\": 0.5, \"sys_seconds\": 0.25, \"user_seconds\": 0.01, \
                    \"splice_move\": 256, \"splice_move_fallback\": 0}\n";
        let (h, s) = parse_lines(text).unwrap();
        assert_eq!(h.size, 1 << 20);
        assert_eq!(h.copy_us_per_page, 0.5);
        assert_eq!((h.dirty_bytes, h.dirty_background_bytes), (0, 0));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].splice_move, 256);
        assert_eq!(s[0].written, 0);

        // The ext4 rows: the dirty limits in the header, writeback per rep.
        let text = "{\"kernel\": \"6.12.117\", \"size\": 1048576, \"reps\": 1, \
                    \"write_size\": 65536, \"pipe_size\": 65536, \"page_size\": 4096, \
                    \"cpus\": 2, \"copy_us_per_page\": 0.5, \"copy_routine\": \"rep movsb\", \
                    \"dirty_background_bytes\": 68157440, \"dirty_bytes\": 136314880}\n\
                    {\"fs\": \"ext4+fsync\", \"mode\": \"copy\", \"rep\": 1, \
                    \"warmup\": false, \"seconds\": 0.5, \"sys_seconds\": 0.25, \
                    \"user_seconds\": 0.01, \"splice_move\": 0, \
                    \"splice_move_fallback\": 0, \"written\": 262}\n";
        let (h, s) = parse_lines(text).unwrap();
        assert_eq!(h.dirty_background_bytes, 65 << 20);
        assert_eq!(h.dirty_bytes, 130 << 20);
        assert_eq!((s[0].fs.as_str(), s[0].written), ("ext4+fsync", 262));
        assert_eq!((h.splice_size, s[0].large_share()), (0, None));

        // Splices of a set size, and the folio orders after the rep.
        let text = "{\"kernel\": \"7.3.4\", \"size\": 1048576, \"reps\": 1, \
                    \"write_size\": 65536, \"splice_size\": 4096, \"pipe_size\": 65536, \
                    \"page_size\": 4096, \"cpus\": 2, \"copy_us_per_page\": 0.5, \
                    \"copy_routine\": \"rep movsb\"}\n\
                    {\"fs\": \"ext4\", \"mode\": \"copy\", \"rep\": 1, \
                    \"warmup\": false, \"seconds\": 0.5, \"sys_seconds\": 0.25, \
                    \"user_seconds\": 0.01, \"splice_move\": 0, \
                    \"splice_move_fallback\": 0, \"written\": 0, \
                    \"folios\": [64, 0, 0, 0, 192, 0, 0, 0, 0, 0]}\n";
        let (h, s) = parse_lines(text).unwrap();
        assert_eq!(h.splice_size, 4096);
        assert_eq!(s[0].large_share(), Some(0.75));
        assert!(parse_lines("").is_err());
        assert!(parse_lines("{\"kernel\": 1}\n").is_err());
    }

    #[test]
    fn debug_options_are_read_from_the_config() {
        let cfg = "CONFIG_DEBUG_VM=y\n# CONFIG_KASAN is not set\nCONFIG_PROVE_LOCKING=y\nCONFIG_DEBUG_LIST=n\n";
        assert_eq!(debug_options(cfg), ["PROVE_LOCKING", "DEBUG_VM"]);
    }

    fn booted(result: &str, output: &str, verdict: Verdict) -> run::Booted {
        run::Booted {
            accel: "tcg",
            accel_reason: String::new(),
            tests: vec![run::TestResult {
                name: PROGRAM.into(),
                result: result.parse().unwrap(),
                seconds: 1.0,
                output: output.into(),
            }],
            splats: vec![],
            verdict,
            finished: crate::guest::vm::Finished {
                timed_out: verdict == Verdict::Timeout,
                code: Some(0),
                seconds: 1.0,
                leftovers: vec![],
            },
            logs: "/logs".into(),
        }
    }

    fn exit_code(r: Result<()>) -> (u8, String) {
        let e = r.unwrap_err();
        let code = e.downcast_ref::<Exit>().map(|x| x.0).unwrap();
        (code, format!("{e:#}"))
    }

    #[test]
    fn judge_explains_what_went_wrong() {
        let t = Duration::from_secs(60);
        assert!(judge(&booted("pass", "", Verdict::Pass), t).is_ok());

        let no_series = "kernel without the series: no /proc/sys/vm/splice_move";
        let (code, msg) = exit_code(judge(&booted("skip", no_series, Verdict::Pass), t));
        assert_eq!(code, 1);
        assert!(msg.contains("built without the series"), "{msg}");
        assert!(msg.contains(no_series), "{msg}");

        let mut b = booted("pass", "", Verdict::Fail);
        b.splats = crate::guest::console::splats(
            "WARNING: CPU: 0 PID: 7 at mm/filemap.c:1 f+0x1/0x2\n---[ end trace 0 ]---\n",
        );
        let (code, msg) = exit_code(judge(&b, t));
        assert_eq!(code, 1);
        assert!(msg.contains("1 kernel report(s)"), "{msg}");
        assert!(msg.contains("mm/filemap.c:1"), "{msg}");

        let (code, msg) = exit_code(judge(&booted("incomplete", "", Verdict::Timeout), t));
        assert_eq!(code, 129);
        assert!(msg.contains("did not finish in 60 s"), "{msg}");

        let (code, msg) = exit_code(judge(
            &booted("fail", "splice-bench: data differs at 0", Verdict::Fail),
            t,
        ));
        assert_eq!(code, 1);
        assert!(msg.contains("data differs"), "{msg}");
    }

    fn bench(h: Header, rows: &[String], v: Vec<Sample>, ext4_disk: Option<u64>) -> Bench {
        let summary = summarize(&h, rows, &v).unwrap();
        Bench {
            kernel: "6.12.117".into(),
            accel: "tcg".into(),
            accel_reason: "no /dev/kvm".into(),
            debug_config: vec!["PROVE_LOCKING".into()],
            memory: "3G".into(),
            cpus: 2,
            host: Host {
                cpus: 2,
                load_before: 3.5,
                load_after: 1.0,
                guest_vcpus: 2,
            },
            fault: None,
            ext4_disk_bytes: ext4_disk,
            setup: h,
            summary,
            samples: v,
            seconds: 60.0,
            logs: "/logs".into(),
        }
    }

    #[test]
    fn table_shows_setup_cells_ratios_and_goals() {
        let h = header(1 << 30, 1);
        let mut v = samples("tmpfs", &[(1.0, 1.0, 1.0, 1.0), (1.0, 0.5, 2.0, 1.0)]);
        // Measured rep 1: the move's pages all order 0, a quarter of the
        // copy's in order-2 folios.
        v[2].folios = vec![1 << 18, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        v[3].folios = vec![3 << 16, 0, 1 << 16, 0, 0, 0, 0, 0, 0, 0];
        v.extend(samples(
            "ramfs",
            &[(1.0, 1.0, 1.0, 1.0), (1.1, 1.0, 1.0, 1.0)],
        ));
        let b = bench(h, &two(), v, None);
        let t = table(&b);
        assert!(
            t.starts_with("splice bench: kernel 6.12.117 under TCG (no /dev/kvm)"),
            "{t}"
        );
        assert!(
            t.contains("1G per rep, 1 reps per cell after 1 warm-up"),
            "{t}"
        );
        assert!(t.contains("debug kernel: PROVE_LOCKING"), "{t}");
        assert!(
            t.contains("host: 2 CPUs, load 3.5 before and 1.0 after: contended"),
            "{t}"
        );
        assert!(!t.contains("ext4"), "{t}");
        assert!(!t.contains("fault injected"), "{t}");
        let mut faulty = bench(header(1 << 30, 1), &two(), b.samples.clone(), None);
        faulty.fault = Some("large-folio-donor".into());
        assert!(
            table(&faulty).contains(
                "fault injected: large-folio-donor (the series' testing patch): move is the path"
            ),
            "{}",
            table(&faulty)
        );
        assert!(
            t.contains(
                "\nFS     MODE   MiB/s        [min-max]  sys s/GiB      [min-max]   moved  replaced  fallback  in large folios\n\
                 tmpfs  move  1024.0  [1024.0-1024.0]      0.500  [0.500-0.500]  100.0%      0.0%         0             0.0%\n\
                 tmpfs  copy   512.0    [512.0-512.0]      1.000  [1.000-1.000]    0.0%      0.0%         0            25.0%\n\
                 ramfs  move   930.9    [930.9-930.9]      1.000  [1.000-1.000]  100.0%      0.0%         0                -\n"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "\nMOVE/COPY  throughput  [paired reps]  >=1.5x  sys CPU  [paired reps]  <=0.6x  copy share\n"
            ),
            "{t}"
        );
        assert!(t.contains("tmpfs           2.00x"), "{t}");
        assert!(t.contains("one page copy (2.00 us here, movq loop)"), "{t}");
        assert!(t.contains("ramfs           0.91x"), "{t}");
        assert!(
            t.contains("no case below 0.98x throughput: MISSED (lowest: ramfs 0.91x)"),
            "{t}"
        );
        let j = serde_json::to_value(&b).unwrap();
        assert_eq!(j["cells"].as_array().unwrap().len(), 4);
        assert_eq!(j["ratios"][0]["fs"], "tmpfs");
        assert_eq!(j["goals"]["throughput_min"], 1.5);
        assert_eq!(j["setup"]["size"], 1u64 << 30);
        assert_eq!(j["no_case_below_met"], false);
        assert_eq!(j["ratios"][0]["throughput_goal_met"], true);
        assert_eq!(j["ext4_disk_bytes"], serde_json::Value::Null);
    }

    #[test]
    fn table_shows_the_ext4_rows_and_their_setup() {
        let mut h = header(1 << 30, 1);
        h.dirty_background_bytes = (1 << 30) + (64 << 20);
        h.dirty_bytes = (2 << 30) + (128 << 20);
        let mut v = samples("ext4", &[(1.0, 1.0, 1.0, 1.0), (1.0, 0.5, 2.0, 1.0)]);
        v.extend(samples(
            "ext4+fsync",
            &[(5.0, 2.0, 5.0, 2.0), (5.0, 1.9, 5.2, 2.0)],
        ));
        let b = bench(h, &names(&["ext4", "ext4+fsync"]), v, Some(3 << 30));
        let t = table(&b);
        assert!(
            t.contains(
                "ext4: mkfs.ext4 defaults on a fresh 3G virtio disk, noinit_itable; \
                 dirty limits 1088M/2176M, no periodic writeback\n"
            ),
            "{t}"
        );
        assert!(t.contains("ext4+fsync times the fsync() too"), "{t}");
        assert!(t.contains("\next4        move  1024.0"), "{t}");
        assert!(t.contains("\next4+fsync  copy   196.9"), "{t}");
        assert!(
            t.contains("\next4             2.00x    [2.00-2.00]     met    0.50x"),
            "{t}"
        );
        assert!(
            t.contains(
                "\next4+fsync       1.04x    [1.04-1.04]     n/a    0.95x    [0.95-0.95]     n/a       26.2%\n"
            ),
            "{t}"
        );
        assert!(
            t.contains("no case below 0.98x throughput: met (lowest: ext4+fsync 1.04x)"),
            "{t}"
        );
        let j = serde_json::to_value(&b).unwrap();
        assert_eq!(j["ext4_disk_bytes"], 3u64 << 30);
        assert_eq!(j["setup"]["dirty_bytes"], (2u64 << 30) + (128 << 20));
        assert_eq!(j["ratios"][1]["fs"], "ext4+fsync");
        assert_eq!(
            j["ratios"][1]["throughput_goal_met"],
            serde_json::Value::Null
        );
        assert_eq!(j["ratios"][1]["sys_cpu_goal_met"], serde_json::Value::Null);
        assert_eq!(j["ratios"][0]["sys_cpu_goal_met"], true);
    }
}
