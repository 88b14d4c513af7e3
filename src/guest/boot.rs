//! Booting a built kernel under virtme-ng: the guest runs a script from
//! vm/guest with statically compiled programs, on fresh scratch disks, and
//! its results plus the console become one verdict. The guest tests
//! (suites/guest_tests.rs), the bench, the controls and xfstests all boot here.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::exit;
use crate::guest::console::{self, Splat};
use crate::guest::vm;

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

/// How a guest test ended, as vm/guest/run-tests.sh writes it to
/// NAME.result (exit 0: pass, 77: skip, else fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TestStatus {
    Pass,
    Fail,
    Skip,
    /// No result: the guest died or was killed first.
    Incomplete,
}

impl TestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TestStatus::Pass => "pass",
            TestStatus::Fail => "fail",
            TestStatus::Skip => "skip",
            TestStatus::Incomplete => "incomplete",
        }
    }

    /// Failed or never finished.
    pub fn bad(self) -> bool {
        matches!(self, TestStatus::Fail | TestStatus::Incomplete)
    }
}

impl std::fmt::Display for TestStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TestStatus {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<TestStatus> {
        Ok(match s {
            "pass" => TestStatus::Pass,
            "fail" => TestStatus::Fail,
            "skip" => TestStatus::Skip,
            "incomplete" => TestStatus::Incomplete,
            _ => bail!("no test status {s:?}"),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub name: String,
    pub result: TestStatus,
    pub seconds: f64,
    pub output: String,
}

/// NUMA nodes the guest tests boot with: splice-numa needs two.
pub const TEST_NUMA_NODES: u32 = 2;

/// The guest machine and how long it may run.
#[derive(Debug, Clone)]
pub struct VmOpts {
    pub timeout: Duration,
    pub memory: String,
    pub cpus: u32,
    /// NUMA nodes sharing the memory evenly, every CPU on node 0 (1: no NUMA).
    pub numa_nodes: u32,
}

impl VmOpts {
    /// The vng arguments for memory, CPUs and NUMA nodes. vng wants the
    /// nodes' memory to add up to --memory exactly, so both are in MiB.
    fn vng_args(&self) -> Result<Vec<String>> {
        let mut args = vec!["--cpus".to_string(), self.cpus.to_string()];
        if self.numa_nodes <= 1 {
            args.extend(["--memory".to_string(), self.memory.clone()]);
            return Ok(args);
        }
        let mib = crate::size::parse_bytes(&self.memory)
            .with_context(|| format!("guest memory {:?}", self.memory))?
            >> 20;
        let per_node = mib / u64::from(self.numa_nodes);
        if per_node == 0 {
            bail!(
                "guest memory {} is too small for {} NUMA nodes",
                self.memory,
                self.numa_nodes
            );
        }
        args.extend([
            "--memory".to_string(),
            format!("{}M", per_node * u64::from(self.numa_nodes)),
        ]);
        // Every CPU on node 0, the other nodes memory only (as CXL memory
        // is): CPUs of one qemu socket spread over nodes make the guest's
        // scheduler warn about its topology at boot.
        let last = self.cpus.saturating_sub(1);
        args.extend(["--numa".to_string(), format!("{per_node}M,cpus=0-{last}")]);
        for _ in 1..self.numa_nodes {
            args.extend(["--numa".to_string(), format!("{per_node}M")]);
        }
        Ok(args)
    }
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
            result: TestStatus::Fail,
            seconds: 0.0,
            output,
        });
    setup
        .into_iter()
        .chain(names.iter().map(|n| {
            let output = std::fs::read_to_string(res.join(format!("{n}.out"))).unwrap_or_default();
            let r = std::fs::read_to_string(res.join(format!("{n}.result"))).unwrap_or_default();
            let mut it = r.split_whitespace();
            // A result the runner did not write (or garbled) is no pass.
            let result = it
                .next()
                .and_then(|r| r.parse().ok())
                .unwrap_or(TestStatus::Incomplete);
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
    } else if !splats.is_empty() || tests.iter().any(|t| t.result.bad()) {
        Verdict::Fail
    } else {
        Verdict::Pass
    }
}

/// The guest kernel's command line beyond virtme-ng's own.
///
/// Under TCG the guest also gets `tsc=unstable`. Late in boot, a kernel
/// that trusts the TSC marks sched_clock stable, and static_branch_enable()
/// patches the branch in sched_clock_cpu(), which every timer tick runs.
/// Under TCG that patching sometimes oopses ("Oops: int3" at
/// sched_clock_cpu+0x9, then a panic): 3 of about 130 TCG boots here that
/// marked sched_clock stable, all on 7.3, in no code the series touches.
/// With an unstable TSC from the start that branch is never patched. Under
/// KVM the guest keeps the default.
pub fn kernel_args(kvm: bool) -> &'static [&'static str] {
    if kvm {
        &["printk.time=1"]
    } else {
        &["printk.time=1", "tsc=unstable"]
    }
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
        log::info!("KVM not usable ({}); using TCG emulation", kvm.reason);
    }
    let runner = project.join(guest.script).canonicalize()?;
    // One shell command line for the guest, every word quoted (a path
    // with a space must not split).
    let mut words: Vec<String> = Vec::new();
    if !guest.env.is_empty() {
        words.push("env".into());
        words.extend(guest.env.iter().map(|(k, v)| format!("{k}={v}")));
    }
    words.extend([
        "sh".to_string(),
        runner.display().to_string(),
        logs.display().to_string(),
    ]);
    words.extend(guest.args.iter().cloned());
    let exec = shlex::try_join(words.iter().map(String::as_str))
        .context("a guest argument holds a NUL byte")?;
    let mut cmd = Command::new("vng");
    cmd.arg("--run")
        .arg(image)
        .arg("--verbose")
        .args(vm_opts.vng_args()?)
        .arg("--rwdir")
        .arg(&logs)
        .args(kernel_args(kvm.usable).iter().flat_map(|a| ["--append", a]))
        .args(["--exec", &exec])
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

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(memory: &str, numa_nodes: u32) -> VmOpts {
        VmOpts {
            timeout: Duration::from_secs(1),
            memory: memory.into(),
            cpus: 2,
            numa_nodes,
        }
    }

    #[test]
    fn only_tcg_guests_boot_with_an_unstable_tsc() {
        assert!(!kernel_args(true).contains(&"tsc=unstable"));
        assert!(kernel_args(false).contains(&"tsc=unstable"));
        assert!(kernel_args(false).contains(&"printk.time=1"));
    }

    #[test]
    fn one_node_passes_memory_as_given() {
        assert_eq!(
            vm("2G", 1).vng_args().unwrap(),
            ["--cpus", "2", "--memory", "2G"]
        );
    }

    #[test]
    fn numa_nodes_split_memory_in_mib_with_the_cpus_on_node_0() {
        assert_eq!(
            vm("3G", 2).vng_args().unwrap(),
            [
                "--cpus",
                "2",
                "--memory",
                "3072M",
                "--numa",
                "1536M,cpus=0-1",
                "--numa",
                "1536M"
            ]
        );
        // 1000M over 3 nodes: 333M each, and --memory matches their sum.
        let a = vm("1000M", 3).vng_args().unwrap();
        assert_eq!(a[3], "999M");
        assert_eq!(
            &a[4..],
            [
                "--numa",
                "333M,cpus=0-1",
                "--numa",
                "333M",
                "--numa",
                "333M"
            ]
        );
    }

    #[test]
    fn bad_memory_is_an_error_naming_it() {
        let e = vm("lots", 2).vng_args().unwrap_err();
        assert!(format!("{e:#}").contains("guest memory \"lots\""), "{e:#}");
    }

    // Real consoles captured from `zcsplice run` on Debian's 6.12 under TCG.
    const CLEAN: &str = include_str!("../../tests/fixtures/console/clean-6.12.log");
    const WARN: &str = include_str!("../../tests/fixtures/console/warn-6.12.log");
    const PANIC: &str = include_str!("../../tests/fixtures/console/panic-6.12.log");
    const HANG: &str = include_str!("../../tests/fixtures/console/hang-6.12.log");

    fn t(name: &str, result: &str) -> TestResult {
        TestResult {
            name: name.into(),
            result: result.parse().unwrap(),
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
}
