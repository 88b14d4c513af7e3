//! `zcsplice run`: boot a built kernel under virtme-ng, run the guest tests
//! from vm/tests, and turn test results plus the console into one verdict.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::console::{self, Splat};
use crate::disks;
use crate::exit;
use crate::vm;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    /// A test failed, or the console shows a kernel report.
    Fail,
    /// The guest kernel panicked.
    Crash,
    /// The kernel started but never reached the test runner.
    BootFailed,
    /// The VM itself could not be started (qemu/vng error).
    VmFailed,
    /// The hard timeout fired; the VM was killed.
    Timeout,
}

impl Verdict {
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Pass => exit::SUCCESS,
            Verdict::Fail | Verdict::Crash | Verdict::BootFailed => exit::FAILURE,
            Verdict::VmFailed => exit::INFRA,
            Verdict::Timeout => exit::TIMEOUT,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Crash => "crash",
            Verdict::BootFailed => "boot-failed",
            Verdict::VmFailed => "vm-failed",
            Verdict::Timeout => "timeout",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub name: String,
    /// pass, fail, skip, or incomplete (the guest died or was killed first).
    pub result: String,
    pub seconds: f64,
    pub output: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    pub kernel: String,
    pub accel: String,
    pub accel_reason: String,
    pub tests: Vec<TestResult>,
    pub splats: Vec<Splat>,
    pub seconds: f64,
    pub logs: PathBuf,
    /// Processes of the VM still alive after it was stopped (should be none).
    pub leftovers: Vec<i32>,
    /// vng's exit code (None when it was killed).
    pub vm_exit_code: Option<i32>,
}

pub struct RunOpts {
    pub tests: Vec<String>,
    pub vm: VmOpts,
    /// Written to the series' fault knob before the tests (negative control).
    pub fault: Option<String>,
}

/// The guest machine and how long it may run.
pub struct VmOpts {
    pub timeout: Duration,
    pub memory: String,
    pub cpus: u32,
}

/// What a boot runs: `sh SCRIPT RWDIR ARGS...` in the guest, with `env`
/// set, and `disks` attached.
pub struct Guest<'a> {
    /// A script under the project, e.g. vm/guest/run-tests.sh.
    pub script: &'static str,
    pub args: Vec<String>,
    /// Results to collect from the rwdir: NAME.result and NAME.out.
    pub names: &'a [String],
    pub env: Vec<(&'static str, String)>,
    /// Disk images, attached as /dev/vda, /dev/vdb, ... in this order.
    pub disks: Vec<PathBuf>,
}

impl<'a> Guest<'a> {
    /// vm/guest/run-tests.sh running the guest programs `names` from `bindir`.
    pub fn tests(bindir: &Path, names: &'a [String]) -> Result<Self> {
        let mut args = vec![bindir.canonicalize()?.display().to_string()];
        args.extend(names.iter().cloned());
        Ok(Guest {
            script: "vm/guest/run-tests.sh",
            args,
            names,
            env: Vec::new(),
            disks: Vec::new(),
        })
    }
}

/// A finished boot: what the guest programs and the console said.
pub struct Booted {
    pub accel: &'static str,
    pub accel_reason: String,
    pub tests: Vec<TestResult>,
    pub splats: Vec<Splat>,
    pub verdict: Verdict,
    pub finished: vm::Finished,
    /// The rwdir the guest wrote to, with console.log.
    pub logs: PathBuf,
}

/// Guest test names: every vm/tests/*.c (selftests only when asked by name).
pub fn available_tests(project: &Path) -> Result<Vec<String>> {
    let dir = project.join("vm/tests");
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| {
            let p = e.ok()?.path();
            let stem = p.file_stem()?.to_string_lossy().to_string();
            (p.extension()? == "c").then_some(stem)
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Compiles guest programs (`<project>/<dir>/NAME.c`) statically: they run
/// on the guest's kernel with the host's root filesystem, so no library
/// version can differ. vm/tests holds the headers every guest program may
/// include (guest.h).
pub fn compile_guest(project: &Path, dir: &str, names: &[String], bindir: &Path) -> Result<()> {
    std::fs::create_dir_all(bindir)?;
    // A binary is stale when its source or any shared header is newer.
    let shared = project.join("vm/tests");
    let dir = project.join(dir);
    let mut headers = None;
    for d in [&shared, &dir] {
        for e in std::fs::read_dir(d).with_context(|| format!("cannot read {}", d.display()))? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "h") {
                let m = std::fs::metadata(&p)?.modified()?;
                headers = headers.max(Some(m));
            }
        }
    }
    for n in names {
        let src = dir.join(format!("{n}.c"));
        let bin = bindir.join(n);
        let fresh = match (std::fs::metadata(&src), std::fs::metadata(&bin)) {
            (Ok(s), Ok(b)) => {
                let b = b.modified()?;
                b >= s.modified()? && headers.is_none_or(|h| b >= h)
            }
            (Err(_), _) => bail!("no guest program {n} ({} does not exist)", src.display()),
            _ => false,
        };
        if fresh {
            continue;
        }
        let include = format!("-I{}", shared.display());
        let out =
            duct::cmd!("gcc", "-static", "-O2", "-Wall", "-Werror", &include, "-o", &bin, &src)
                .stderr_to_stdout()
                .stdout_capture()
                .unchecked()
                .run()?;
        if !out.status.success() {
            bail!(
                "guest program {n} does not compile:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
    Ok(())
}

fn read_results(res: &Path, names: &[String]) -> Vec<TestResult> {
    // The runner's own setup (child memcg, fault knob) reports as a test.
    let setup = std::fs::read_to_string(res.join("setup.err"))
        .ok()
        .map(|output| TestResult {
            name: "setup".into(),
            result: "fail".into(),
            seconds: 0.0,
            output,
        });
    setup
        .into_iter()
        .chain(names.iter().map(|n| {
            let output = std::fs::read_to_string(res.join(format!("{n}.out"))).unwrap_or_default();
            let r = std::fs::read_to_string(res.join(format!("{n}.result"))).unwrap_or_default();
            let mut it = r.split_whitespace();
            let result = it.next().unwrap_or("incomplete").to_string();
            let seconds = it.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
            TestResult {
                name: n.clone(),
                result,
                seconds,
                output,
            }
        }))
        .collect()
}

pub fn verdict(timed_out: bool, console: &str, tests: &[TestResult], splats: &[Splat]) -> Verdict {
    if timed_out {
        Verdict::Timeout
    } else if console::panicked(console) {
        Verdict::Crash
    } else if !console::booted(console) {
        if console.contains("Linux version") {
            Verdict::BootFailed
        } else {
            Verdict::VmFailed
        }
    } else if !splats.is_empty()
        || tests
            .iter()
            .any(|t| t.result != "pass" && t.result != "skip")
    {
        Verdict::Fail
    } else {
        Verdict::Pass
    }
}

/// Boots `image` and runs the tests; `logs` receives console.log and the results.
pub fn run(
    project: &Path,
    cache: &Path,
    image: &Path,
    kernel: &str,
    logs: &Path,
    opts: &RunOpts,
) -> Result<Report> {
    let names = if opts.tests.is_empty() {
        available_tests(project)?
            .into_iter()
            .filter(|n| !n.starts_with("selftest-"))
            .collect()
    } else {
        opts.tests.clone()
    };
    let bindir = cache.join("guest-bin");
    compile_guest(project, "vm/tests", &names, &bindir)?;
    let mut guest = Guest::tests(&bindir, &names)?;
    guest.env = opts
        .fault
        .iter()
        .map(|f| ("ZCSPLICE_FAULT", f.clone()))
        .collect();
    let images = disks::fresh(cache, &disks::TEST_DISKS)?;
    guest.disks = images.iter().map(|p| p.to_path_buf()).collect();
    let done = AtomicBool::new(false);
    let b = std::thread::scope(|s| {
        s.spawn(|| watch_console(&logs.join("console.log"), names.len(), &done));
        let b = boot(project, cache, image, logs, &guest, &opts.vm);
        done.store(true, Ordering::Relaxed);
        b
    })?;
    let report = Report {
        verdict: b.verdict,
        kernel: kernel.to_string(),
        accel: b.accel.to_string(),
        accel_reason: b.accel_reason,
        tests: b.tests,
        splats: b.splats,
        seconds: b.finished.seconds,
        logs: b.logs.clone(),
        leftovers: b.finished.leftovers,
        vm_exit_code: b.finished.code,
    };
    std::fs::write(
        b.logs.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    Ok(report)
}

/// What the guest runner's markers (vm/guest/run-tests.sh) say it is at:
/// the test now running (1-based index, name), or None before the first.
fn guest_at(console: &str) -> Option<(usize, String)> {
    let mut at = None;
    let mut started = 0;
    for l in console.lines() {
        let Some((_, m)) = l.split_once("zcsplice-guest: ") else {
            continue;
        };
        if let Some(t) = m.strip_prefix("start ") {
            started += 1;
            at = Some((started, t.trim().to_string()));
        }
    }
    at
}

/// Shows the boot's progress while it runs: elapsed time and the guest
/// test it is at, from the console's markers. On a terminal a spinner;
/// otherwise a plain line each time a test starts.
fn watch_console(console: &Path, total: usize, done: &AtomicBool) {
    let bar = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}").expect("valid template"),
    );
    bar.set_message("booting");
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut last = None;
    while !done.load(Ordering::Relaxed) {
        let text = std::fs::read(console).unwrap_or_default();
        let at = guest_at(&String::from_utf8_lossy(&text));
        if at.is_some() && at != last {
            let (i, name) = at.clone().expect("checked");
            let msg = format!("test {i}/{total}: {name}");
            if bar.is_hidden() {
                eprintln!("zcsplice: [{:.0} s] {msg}", bar.elapsed().as_secs_f64());
            }
            bar.set_message(msg);
            last = at;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bar.finish_and_clear();
}

/// Boots `image` under virtme-ng (KVM if a probe boot shows it works,
/// else TCG) and runs the guest programs with vm/guest/run-tests.sh; `logs`
/// is the guest's rwdir and receives console.log and the results.
pub fn boot(
    project: &Path,
    cache: &Path,
    image: &Path,
    logs: &Path,
    guest: &Guest,
    vm_opts: &VmOpts,
) -> Result<Booted> {
    std::fs::create_dir_all(logs)?;
    let logs = logs.canonicalize()?;

    let kvm = vm::probe_kvm(image, cache, Duration::from_secs(15));
    let accel = if kvm.usable { "kvm" } else { "tcg" };
    if !kvm.usable {
        eprintln!(
            "zcsplice: KVM not usable ({}); using TCG emulation",
            kvm.reason
        );
    }
    let runner = project.join(guest.script).canonicalize()?;
    let mut exec = String::new();
    if !guest.env.is_empty() {
        exec.push_str("env ");
        for (k, v) in &guest.env {
            exec.push_str(&format!("{k}={v} "));
        }
    }
    exec.push_str(&format!("sh {} {}", runner.display(), logs.display()));
    for a in &guest.args {
        exec.push(' ');
        exec.push_str(a);
    }
    let mut cmd = Command::new("vng");
    cmd.arg("--run")
        .arg(image)
        .args([
            "--verbose",
            "--cpus",
            &vm_opts.cpus.to_string(),
            "--memory",
            &vm_opts.memory,
        ])
        .arg("--rwdir")
        .arg(&logs)
        .args(["--append", "printk.time=1", "--exec", &exec])
        .args(
            guest
                .disks
                .iter()
                .flat_map(|d| [OsStr::new("--disk"), d.as_os_str()]),
        )
        .current_dir(&logs);
    if !kvm.usable {
        cmd.arg("--disable-kvm");
    }
    let console_path = logs.join("console.log");
    let finished = vm::run_with_timeout(&mut cmd, &console_path, vm_opts.timeout)
        .context("cannot start vng (is virtme-ng installed? `pip install virtme-ng`)")?;
    let console = String::from_utf8_lossy(&std::fs::read(&console_path)?).to_string();
    let tests = read_results(&logs, guest.names);
    let splats = console::splats(&console);
    let verdict = verdict(finished.timed_out, &console, &tests, &splats);
    Ok(Booted {
        accel,
        accel_reason: kvm.reason,
        tests,
        splats,
        verdict,
        finished,
        logs,
    })
}

pub fn print_table(r: &Report) {
    println!(
        "kernel {} under {} ({})",
        r.kernel,
        r.accel.to_uppercase(),
        r.accel_reason
    );
    let w = r
        .tests
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!("{:w$}  {:10}  {:>8}", "TEST", "RESULT", "SECONDS");
    for t in &r.tests {
        println!("{:w$}  {:10}  {:>8.1}", t.name, t.result, t.seconds);
    }
    for t in r.tests.iter().filter(|t| t.result == "fail") {
        println!("\n--- output of {} ---\n{}", t.name, t.output.trim_end());
    }
    for s in &r.splats {
        let during = s
            .test
            .as_deref()
            .map(|t| format!(" (during {t})"))
            .unwrap_or_default();
        println!("\n--- kernel report: {}{during} ---\n{}", s.kind, s.text);
    }
    if !r.leftovers.is_empty() {
        println!(
            "\nwarning: VM processes still alive after the run: {:?}",
            r.leftovers
        );
    }
    let why = match r.verdict {
        Verdict::Timeout => " (hard timeout: the VM and all its processes were killed)",
        Verdict::VmFailed => " (the VM did not start: see console.log)",
        Verdict::BootFailed => " (the kernel never reached the test runner)",
        _ => "",
    };
    println!(
        "\nverdict: {}{why} after {:.0} s\nlogs: {}",
        r.verdict.as_str(),
        r.seconds,
        r.logs.display()
    );
}

/// JUnit XML, one testcase per guest test, plus one for the console.
pub fn write_junit(r: &Report, path: &Path) -> Result<()> {
    use quick_xml::events::{BytesCData, BytesDecl, BytesEnd, BytesStart, BytesText, Event};
    let mut w = quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let failures = r
        .tests
        .iter()
        .filter(|t| t.result == "fail" || t.result == "incomplete")
        .count()
        + usize::from(!r.splats.is_empty());
    let skipped = r.tests.iter().filter(|t| t.result == "skip").count();
    let mut suite = BytesStart::new("testsuite");
    suite.push_attribute(("name", format!("zcsplice {}", r.kernel).as_str()));
    suite.push_attribute(("tests", (r.tests.len() + 1).to_string().as_str()));
    suite.push_attribute(("failures", failures.to_string().as_str()));
    suite.push_attribute(("skipped", skipped.to_string().as_str()));
    suite.push_attribute(("time", format!("{:.1}", r.seconds).as_str()));
    w.write_event(Event::Start(suite))?;
    let mut case = |name: &str,
                    secs: f64,
                    failure: Option<(&str, &str)>,
                    skip: bool,
                    out: &str|
     -> Result<()> {
        let mut c = BytesStart::new("testcase");
        c.push_attribute(("classname", "zcsplice.guest"));
        c.push_attribute(("name", name));
        c.push_attribute(("time", format!("{secs:.1}").as_str()));
        w.write_event(Event::Start(c))?;
        if let Some((msg, text)) = failure {
            let mut f = BytesStart::new("failure");
            f.push_attribute(("message", msg));
            w.write_event(Event::Start(f))?;
            w.write_event(Event::Text(BytesText::new(text)))?;
            w.write_event(Event::End(BytesEnd::new("failure")))?;
        }
        if skip {
            w.write_event(Event::Empty(BytesStart::new("skipped")))?;
        }
        if !out.is_empty() {
            w.write_event(Event::Start(BytesStart::new("system-out")))?;
            w.write_event(Event::CData(BytesCData::new(
                out.replace("]]>", "]]]]><![CDATA[>"),
            )))?;
            w.write_event(Event::End(BytesEnd::new("system-out")))?;
        }
        w.write_event(Event::End(BytesEnd::new("testcase")))?;
        Ok(())
    };
    for t in &r.tests {
        let fail = matches!(t.result.as_str(), "fail" | "incomplete")
            .then_some((t.result.as_str(), t.output.as_str()));
        case(&t.name, t.seconds, fail, t.result == "skip", &t.output)?;
    }
    let reports: Vec<String> = r.splats.iter().map(|s| s.text.clone()).collect();
    let text = reports.join("\n\n");
    let msg = format!(
        "{} kernel report(s); verdict {}",
        r.splats.len(),
        r.verdict.as_str()
    );
    case(
        "console",
        0.0,
        (!r.splats.is_empty()).then_some((msg.as_str(), text.as_str())),
        false,
        "",
    )?;
    w.write_event(Event::End(BytesEnd::new("testsuite")))?;
    std::fs::write(path, w.into_inner())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real consoles captured from `zcsplice run` on Debian's 6.12 under TCG.
    const CLEAN: &str = include_str!("../tests/fixtures/console/clean-6.12.log");
    const WARN: &str = include_str!("../tests/fixtures/console/warn-6.12.log");
    const PANIC: &str = include_str!("../tests/fixtures/console/panic-6.12.log");
    const HANG: &str = include_str!("../tests/fixtures/console/hang-6.12.log");

    fn t(name: &str, result: &str) -> TestResult {
        TestResult {
            name: name.into(),
            result: result.into(),
            seconds: 1.0,
            output: String::new(),
        }
    }

    #[test]
    fn clean_console_passes() {
        let s = console::splats(CLEAN);
        assert!(s.is_empty(), "{s:?}");
        assert_eq!(
            verdict(false, CLEAN, &[t("splice-basic", "pass")], &s),
            Verdict::Pass
        );
        assert_eq!(
            verdict(false, CLEAN, &[t("splice-basic", "fail")], &s),
            Verdict::Fail
        );
    }

    #[test]
    fn warning_fails_a_passing_run() {
        let s = console::splats(WARN);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].kind, "WARNING");
        assert_eq!(s[0].test.as_deref(), Some("selftest-warn"));
        assert!(s[0].title.contains("lkdtm"), "{}", s[0].title);
        assert!(s[0].text.contains("---[ end trace"));
        assert_eq!(
            verdict(false, WARN, &[t("selftest-warn", "pass")], &s),
            Verdict::Fail
        );
    }

    #[test]
    fn panic_is_a_crash() {
        let s = console::splats(PANIC);
        let p = s.iter().find(|s| s.kind == "panic").expect("panic report");
        assert_eq!(p.title, "Kernel panic - not syncing: sysrq triggered crash");
        assert_eq!(p.test.as_deref(), Some("selftest-panic"));
        assert_eq!(
            verdict(false, PANIC, &[t("selftest-panic", "incomplete")], &s),
            Verdict::Crash
        );
    }

    #[test]
    fn hang_is_a_timeout_and_not_a_crash() {
        let s = console::splats(HANG);
        assert!(s.is_empty(), "{s:?}");
        assert!(console::booted(HANG));
        assert_eq!(
            verdict(true, HANG, &[t("selftest-hang", "incomplete")], &s),
            Verdict::Timeout
        );
    }

    #[test]
    fn no_kernel_output_is_a_vm_failure_and_no_userspace_a_boot_failure() {
        assert_eq!(
            verdict(false, "qemu: could not open kernel\n", &[], &[]),
            Verdict::VmFailed
        );
        let head: String = CLEAN.lines().take(40).map(|l| format!("{l}\n")).collect();
        assert_eq!(verdict(false, &head, &[], &[]), Verdict::BootFailed);
    }

    #[test]
    fn the_console_markers_say_which_test_runs() {
        let c = "[ 1.0] Linux version 6.12\n\
                 [ 9.0] zcsplice-guest: kernel 6.12 up, running 2\n";
        assert_eq!(guest_at(c), None);
        let c = format!("{c}[ 9.5] zcsplice-guest: start splice-integrity\n");
        assert_eq!(guest_at(&c), Some((1, "splice-integrity".into())));
        let c = format!(
            "{c}[20.0] zcsplice-guest: end splice-integrity pass\n\
             [20.1] zcsplice-guest: start splice-stress\n"
        );
        assert_eq!(guest_at(&c), Some((2, "splice-stress".into())));
    }
}
