//! The kernel loop for real: the newest Debian series with the series
//! applied is built, booted under virtme-ng and judged; the harness's
//! selftests prove that a panic, a hang, a WARNING and a compile error
//! each give the right verdict and exit code, and the negative controls
//! that each pitfall of the series, switched back on, is caught. The
//! demo's kernel (6.12) is built and run once too: its render differs
//! from the newest one's (large folios, the kiocb `->write_begin`). Needs
//! the kernel-loop packages (tests/run.sh).

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The tests here share trees, builds and the host's CPUs: one at a time.
static LOOP: Mutex<()> = Mutex::new(());

/// The Debian series the kernel loop runs on: the newest one the series
/// supports (tests/run.sh lists them), or ZCSPLICE_TEST_KERNEL.
const NEWEST: &str = "7.3";

/// The series `demo` runs on (src/workflows: the README's main job).
const DEMO: &str = "6.12";

fn newest() -> String {
    std::env::var("ZCSPLICE_TEST_KERNEL").unwrap_or_else(|_| NEWEST.to_string())
}

fn series() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("zcsplice-loop-cache")
}

/// The tree of Debian series `name` with the series applied and checked out.
fn patched_tree(name: &str) -> PathBuf {
    let out = ok(&zcsplice(
        &["tree", "import", "--debian", &debian_spec(name)],
        &series(),
        &cache(),
    ));
    let t = PathBuf::from(out.trim());
    git(&t, &["checkout", "-q", "-f", "."]);
    let o = zcsplice(
        &["apply", "--tree", t.to_str().unwrap(), "--force"],
        &series(),
        &cache(),
    );
    ok(&o);
    t
}

/// What `zcsplice probe` says of tree `t`.
fn probed(t: &Path) -> serde_json::Value {
    let o = zcsplice(
        &["probe", "--tree", t.to_str().unwrap(), "--json"],
        &series(),
        &cache(),
    );
    ok(&o);
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The faults vm/controls.yaml lists for tree `t`, in order: `controls`
/// must run each, and leave out those whose `when:` fact is false there.
fn controls_listed(t: &Path) -> Vec<String> {
    let probed = probed(t);
    let text = std::fs::read_to_string(series().join("vm/controls.yaml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    doc["controls"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|c| {
            c["when"]
                .as_str()
                .is_none_or(|f| probed["facts"][f]["value"] == true)
        })
        .map(|c| c["fault"].as_str().unwrap().to_string())
        .collect()
}

fn run_json(t: &Path, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut args = vec!["run", "--tree", t.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let o = zcsplice(&args, &series(), &cache());
    let stdout = String::from_utf8_lossy(&o.stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}):\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.code(), v)
}

fn qemu_processes_for(image_dir: &str) -> Vec<String> {
    processes_with(image_dir)
        .into_iter()
        .filter(|cmd| cmd.contains("qemu") || cmd.contains("virtiofsd"))
        .collect()
}

/// The newest patched tree, under the lock that serializes these tests.
fn locked() -> (std::sync::MutexGuard<'static, ()>, PathBuf) {
    locked_on(&newest())
}

fn locked_on(name: &str) -> (std::sync::MutexGuard<'static, ()>, PathBuf) {
    let one = LOOP.lock().unwrap_or_else(|e| e.into_inner());
    (one, patched_tree(name))
}

#[test]
#[ignore = "kernel tier: builds a kernel (tests/run.sh runs it)"]
fn build_makes_a_bzimage_and_is_then_up_to_date() {
    let (_one, t) = locked();
    let ts = t.to_str().unwrap();
    let image = ok(&zcsplice(&["build", "--tree", ts], &series(), &cache()));
    assert!(
        Path::new(image.trim()).ends_with("arch/x86/boot/bzImage"),
        "{image}"
    );
    assert!(Path::new(image.trim()).is_file());
    let o = zcsplice(&["build", "--tree", ts], &series(), &cache());
    assert_eq!(ok(&o), image);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("kernel up to date"), "{err}");
}

#[test]
#[ignore = "kernel tier: builds and boots a kernel (tests/run.sh runs it)"]
fn run_passes_every_test_with_a_clean_console() {
    let (_one, t) = locked();
    every_test_passes(&t);
}

#[test]
#[ignore = "kernel tier: builds and boots a kernel (tests/run.sh runs it)"]
fn run_passes_on_the_demo_kernel_too() {
    if newest() == DEMO {
        eprintln!("SKIPPED: the kernel loop's kernel is the demo's ({DEMO}): run_passes_every_test_with_a_clean_console ran it");
        return;
    }
    if !debian_offers(DEMO) {
        return;
    }
    let (_one, t) = locked_on(DEMO);
    every_test_passes(&t);
}

/// `--cmd`: a shell command in the guest is judged like a test named
/// "command", alone when no --test is given: exit 0 passes (here it sees
/// the series' counters), anything else fails the run with its output.
#[test]
#[ignore = "kernel tier: builds and boots a kernel (tests/run.sh runs it)"]
fn a_guest_command_is_judged_like_a_test() {
    let (_one, t) = locked();
    let (code, r) = run_json(&t, &["--cmd", "grep '^splice_move ' /proc/vmstat"]);
    assert_eq!(
        (code, &r["verdict"]),
        (Some(0), &serde_json::json!("pass")),
        "{r:#}"
    );
    let tests = r["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 1, "{r:#}");
    assert_eq!(tests[0]["name"], "command");
    assert!(
        tests[0]["output"]
            .as_str()
            .unwrap()
            .starts_with("splice_move "),
        "{r:#}"
    );
    let (code, r) = run_json(&t, &["--cmd", "echo broken; exit 3"]);
    assert_eq!(
        (code, &r["verdict"]),
        (Some(1), &serde_json::json!("fail")),
        "{r:#}"
    );
    assert_eq!(r["tests"][0]["output"], "broken\n", "{r:#}");
}

fn every_test_passes(t: &Path) {
    let (code, r) = run_json(t, &[]);
    assert_eq!(r["verdict"], "pass", "{r:#}");
    assert_eq!(code, Some(0));
    assert!(r["splats"].as_array().unwrap().is_empty());
    let tests = r["tests"].as_array().unwrap();
    assert!(!tests.is_empty());
    assert!(tests.iter().all(|t| t["result"] == "pass"), "{r:#}");
    let release = makefile_version(t, "HEAD");
    assert!(
        r["kernel"].as_str().unwrap().starts_with(&release),
        "{release}: {r:#}"
    );
}

#[test]
#[ignore = "kernel tier: builds and boots a kernel (tests/run.sh runs it)"]
fn junit_names_the_release_and_counts_no_failure() {
    let (_one, t) = locked();
    let junit = cache().join("junit.xml");
    let o = zcsplice(
        &[
            "run",
            "--tree",
            t.to_str().unwrap(),
            "--test",
            "kunit-splice-move",
            "--junit",
            junit.to_str().unwrap(),
        ],
        &series(),
        &cache(),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    let release = makefile_version(&t, "HEAD");
    assert!(
        xml.contains(&format!("<testsuite name=\"zcsplice {release}")),
        "{xml}"
    );
    assert!(xml.contains("failures=\"0\""), "{xml}");
}

#[test]
#[ignore = "kernel tier: builds and boots a kernel (tests/run.sh runs it)"]
fn selftest_warning_fails_a_run_whose_tests_passed() {
    let (_one, t) = locked();
    let (code, r) = run_json(&t, &["--test", "selftest-warn"]);
    assert_eq!(r["verdict"], "fail", "{r:#}");
    assert_eq!(code, Some(1));
    assert_eq!(r["tests"][0]["result"], "pass");
    let splats = r["splats"].as_array().unwrap();
    assert!(
        splats
            .iter()
            .any(|s| s["kind"] == "WARNING" && s["test"] == "selftest-warn"),
        "{r:#}"
    );
}

#[test]
#[ignore = "kernel tier: builds and boots a kernel (tests/run.sh runs it)"]
fn selftest_panic_is_a_crash_with_the_panic_text() {
    let (_one, t) = locked();
    let (code, r) = run_json(&t, &["--test", "selftest-panic"]);
    assert_eq!(r["verdict"], "crash", "{r:#}");
    assert_eq!(code, Some(1));
    let panic = r["splats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "panic")
        .cloned();
    assert!(
        panic.unwrap()["title"]
            .as_str()
            .unwrap()
            .contains("sysrq triggered crash"),
        "{r:#}"
    );
}

#[test]
#[ignore = "kernel tier: builds and boots a kernel (tests/run.sh runs it)"]
fn selftest_hang_is_a_timeout_and_nothing_of_the_vm_is_left() {
    let (_one, t) = locked();
    let (code, r) = run_json(&t, &["--test", "selftest-hang", "--timeout", "90"]);
    assert_eq!(r["verdict"], "timeout", "{r:#}");
    assert_eq!(code, Some(129));
    assert!(r["leftovers"].as_array().unwrap().is_empty(), "{r:#}");
    let logs = r["logs"].as_str().unwrap();
    assert!(
        qemu_processes_for(logs).is_empty(),
        "{:?}",
        qemu_processes_for(logs)
    );
}

#[test]
#[ignore = "kernel tier: builds and boots a kernel per control (tests/run.sh runs it)"]
fn controls_catch_every_listed_fault() {
    let (_one, t) = locked();
    let ts = t.to_str().unwrap();
    let o = zcsplice(&["controls", "--tree", ts, "--json"], &series(), &cache());
    let stdout = String::from_utf8_lossy(&o.stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&o.stderr)));
    let controls = v.as_array().unwrap();
    let listed: Vec<String> = controls_listed(&t);
    let ran: Vec<&str> = controls
        .iter()
        .filter_map(|c| c["fault"].as_str())
        .collect();
    assert_eq!(ran, listed, "{v:#}");
    assert!(controls.iter().all(|c| c["caught"] == true), "{v:#}");
    assert_eq!(o.status.code(), Some(0), "{v:#}");
}

#[test]
#[ignore = "kernel tier: builds a kernel (tests/run.sh runs it)"]
fn no_virtme_ng_is_an_infrastructure_failure() {
    let (_one, t) = locked();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_zcsplice"))
        .args(["run", "--tree", t.to_str().unwrap()])
        .env("ZCSPLICE_SERIES", series())
        .env("ZCSPLICE_CACHE", cache())
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(128),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("pip install virtme-ng"));
}

#[test]
#[ignore = "kernel tier: builds a kernel (tests/run.sh runs it)"]
fn a_kernel_that_does_not_compile_exits_125_with_the_first_error() {
    let (_one, t) = locked();
    let victim = t.join("fs/splice.c");
    let orig = std::fs::read_to_string(&victim).unwrap();
    std::fs::write(&victim, format!("{orig}\nint zcsplice_broken = ;\n")).unwrap();
    let o = zcsplice(
        &["build", "--tree", t.to_str().unwrap()],
        &series(),
        &cache(),
    );
    std::fs::write(&victim, &orig).unwrap();
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    let line = orig.lines().count() + 2;
    assert!(err.contains(&format!("fs/splice.c:{line}:")), "{err}");
    assert!(err.contains("error: expected expression"), "{err}");
}

/// A short bench: one boot, every cell measured (tmpfs, ramfs, ext4 on its
/// scratch disk, with and without a timed fsync, and the three of them
/// overwriting a cached file), and the counters prove that move reps
/// moved pages and copy reps none, that on tmpfs and ramfs an overwrite
/// replaces every cached page and that ext4 copies over them. Where ext4
/// has large folios, whole-pipe splices fill it with large folios, as
/// write(2) would, and move nothing (the series' policy).
#[test]
#[ignore = "kernel tier: builds and boots a kernel (tests/run.sh runs it)"]
fn bench_measures_every_cell() {
    let (_one, t) = locked();
    let ext4_large = probed(&t)["facts"]["ext4_large_folios"]["value"] == true;
    let o = zcsplice(
        &[
            "bench",
            "--tree",
            t.to_str().unwrap(),
            "--size",
            "64M",
            "--reps",
            "2",
            "--json",
        ],
        &series(),
        &cache(),
    );
    let stdout = ok(&o);
    let b: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let release = makefile_version(&t, "HEAD");
    assert!(
        b["kernel"].as_str().unwrap().starts_with(&release),
        "{release}: {b:#}"
    );
    assert!(["kvm", "tcg"].contains(&b["accel"].as_str().unwrap()));
    assert_eq!(b["setup"]["size"], 64u64 << 20);
    assert_eq!(b["setup"]["reps"], 2);
    let pages = (64u64 << 20) / b["setup"]["page_size"].as_u64().unwrap();
    assert!(
        b["setup"]["copy_us_per_page"].as_f64().unwrap() > 0.0,
        "{b:#}"
    );
    assert!(["rep movsb", "movq loop"].contains(&b["setup"]["copy_routine"].as_str().unwrap()));

    // Every cell, in order, with two measured reps and sane numbers.
    let cells = b["cells"].as_array().unwrap();
    let names: Vec<String> = cells
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["fs"].as_str().unwrap(),
                c["mode"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "tmpfs move",
            "tmpfs copy",
            "ramfs move",
            "ramfs copy",
            "ext4 move",
            "ext4 copy",
            "ext4+fsync move",
            "ext4+fsync copy",
            "tmpfs-overwrite move",
            "tmpfs-overwrite copy",
            "ramfs-overwrite move",
            "ramfs-overwrite copy",
            "ext4-overwrite move",
            "ext4-overwrite copy",
            "tmpfs-gift move",
            "tmpfs-gift copy",
            "ramfs-gift move",
            "ramfs-gift copy",
            "ext4-gift move",
            "ext4-gift copy",
            "ext4-rewrite move",
            "ext4-rewrite copy"
        ]
    );
    for c in cells {
        assert_eq!(c["reps"], 2, "{c:#}");
        for k in ["mib_per_s", "sys_s_per_gib"] {
            let s = &c[k];
            let (lo, med, hi) = (
                s["min"].as_f64().unwrap(),
                s["median"].as_f64().unwrap(),
                s["max"].as_f64().unwrap(),
            );
            assert!(0.0 < lo && lo <= med && med <= hi, "{k}: {c:#}");
        }
        let moved: Vec<u64> = c["splice_move"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_u64().unwrap())
            .collect();
        assert_eq!(moved.len(), 2);
        let fs = c["fs"].as_str().unwrap();
        if fs.ends_with("-overwrite") && c["mode"] == "move" && !fs.starts_with("ext4") {
            // Every page was cached, and every one is replaced.
            assert!(moved.iter().all(|&m| m == pages), "{c:#}");
            assert_eq!(c["replaced_share_min"], 1.0, "{c:#}");
        } else if fs.ends_with("-gift") && c["mode"] == "move" {
            // A gift faulted in on another CPU than the splice's (the
            // process migrated) waits in that CPU's LRU batch and is
            // copied: how many move depends on the scheduler (checked
            // below: every move is a gift).
            assert!(moved.iter().all(|&m| m <= pages), "{c:#}");
        } else if fs == "ext4-overwrite" {
            assert!(moved.iter().all(|&m| m == 0), "{c:#}");
        } else if ext4_large && fs.starts_with("ext4") {
            // Whole-pipe splices get large folios, as write(2) would, so
            // the move mode moves nothing (each move takes an order-0
            // folio's place: checked per rep on the samples below). The
            // page cache falls back to order 0 when it does not get a
            // large folio: a copy rep was once seen with a quarter of its
            // file in order-0 folios (one ext4 rep of thirty, TCG), so
            // one rep of each cell must be all but all large.
            assert!(c["large_share"]["max"].as_f64().unwrap() > 0.9, "{c:#}");
            if c["mode"] == "copy" {
                assert!(moved.iter().all(|&m| m == 0), "{c:#}");
            }
        } else if c["mode"] == "move" {
            assert!(moved.iter().all(|&m| m > 0 && m <= pages), "{c:#}");
        } else {
            assert!(moved.iter().all(|&m| m == 0), "{c:#}");
        }
    }
    // Warm-ups are kept in the samples, not in the cells.
    let samples = b["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 22 * 3);
    assert_eq!(samples.iter().filter(|s| s["warmup"] == true).count(), 22);
    // A timed fsync writes the whole file back; the ext4 row without it
    // stays in the page cache.
    for s in samples.iter().filter(|s| s["fs"] == "ext4+fsync") {
        assert!(s["written"].as_u64().unwrap() >= pages, "{s:#}");
    }
    // A page goes where the page cache would put an order-0 folio, and
    // stays one: no rep moved more pages than its file has in order-0
    // folios afterwards.
    for s in samples {
        let order0 = s["folios"][0].as_u64().unwrap();
        assert!(s["splice_move"].as_u64().unwrap() <= order0, "{s:#}");
    }
    // A move in a gift row takes the writer's pages, and only those.
    for s in samples
        .iter()
        .filter(|s| s["fs"].as_str().unwrap().ends_with("-gift") && s["mode"] == "move")
    {
        assert_eq!(s["splice_move_gift"], s["splice_move"], "{s:#}");
    }
    for s in samples.iter().filter(|s| {
        ["ext4", "ext4-overwrite", "ext4-gift", "ext4-rewrite"].contains(&s["fs"].as_str().unwrap())
    }) {
        assert!(s["written"].as_u64().unwrap() < pages / 100, "{s:#}");
    }
    // With delayed allocation, no move takes a placeholder folio's place:
    // beyond EOF, nor over blocks that hold data.
    for s in samples.iter().filter(|s| {
        ["ext4", "ext4+fsync", "ext4-gift", "ext4-rewrite"].contains(&s["fs"].as_str().unwrap())
    }) {
        assert_eq!(s["splice_move_placeholder"], 0, "{s:#}");
    }
    assert_eq!(b["ext4_disk_bytes"], (128u64 << 20) + (1 << 30));

    let ratios = b["ratios"].as_array().unwrap();
    assert_eq!(ratios.len(), 11);
    for r in ratios {
        assert!(r["throughput"].as_f64().unwrap() > 0.0, "{r:#}");
        assert!(r["sys_cpu"].as_f64().unwrap() > 0.0, "{r:#}");
        // Disk I/O in the timed part, or a copy both ways: held to no
        // regression only.
        if r["fs"] == "ext4+fsync" || r["fs"] == "ext4-overwrite" {
            assert!(r["throughput_goal_met"].is_null(), "{r:#}");
            assert!(r["sys_cpu_goal_met"].is_null(), "{r:#}");
        } else {
            assert!(r["throughput_goal_met"].is_boolean(), "{r:#}");
            assert!(r["sys_cpu_goal_met"].is_boolean(), "{r:#}");
        }
        assert!(r["copy_share"].as_f64().unwrap() > 0.0, "{r:#}");
    }
    assert_eq!(b["goals"]["throughput_min"], 1.5);
    assert_eq!(b["goals"]["sys_cpu_max"], 0.6);
    assert_eq!(b["goals"]["no_case_below"], 0.98);

    // The same JSON is saved in the run's log directory.
    let saved = Path::new(b["logs"].as_str().unwrap()).join("bench.json");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(saved, b);
}
