//! The exit-code map: every code zcsplice ends with is named here, and every
//! failure that must not end with FAILURE carries its code in an `Exit`.
//! The README and `--help` (HELP below) document the same map.

/// Success; for `run`: every test passed and the console is clean.
pub const SUCCESS: u8 = 0;
/// A guest test failed, a kernel report or panic, a kernel that does not
/// boot; or a bad series definition (YAML, template, unknown variable).
pub const FAILURE: u8 = 1;
/// Usage error: bad flags, or names (test, fault, option) found unknown
/// before any build or boot.
pub const USAGE: u8 = 2;
/// The series does not render or apply, or the kernel does not build:
/// `git bisect run` skips such a commit.
pub const SKIP: u8 = 125;
/// The machinery failed (no vng, no qemu, no xfstests, VM start failed).
pub const INFRA: u8 = 128;
/// Timeout: the VM was killed.
pub const TIMEOUT: u8 = 129;

pub const HELP: &str = "\
Exit codes:
  0    success; for run: every test passed and the console is clean
  1    failure: a guest test failed, a kernel report (BUG, WARNING, Oops,
       KASAN, lockdep, kmemleak, hung task) or a panic, a kernel that does
       not boot; or a bad series definition (YAML, template)
  2    usage error, found before any build or boot (unknown test, fault or
       filesystem row, malformed options)
  125  the series does not render or apply, or the kernel does not build
       (git bisect run: skip)
  128  the VM could not be started, or a tool it needs is missing
  129  timeout: the VM was killed
On SIGINT (Ctrl-C), SIGTERM or SIGHUP, zcsplice kills the guests and
tools it runs, deletes their scratch disks, says so on stderr, and dies
of that signal: a shell shows 130, 143 or 129. A SIGHUP's 129 is told
from a timeout by the wait status (killed by a signal, not exited) or
that stderr line.";

/// An error that carries the exit code it must end with.
#[derive(Debug)]
pub struct Exit(pub u8, pub anyhow::Error);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.1)
    }
}
impl std::error::Error for Exit {}

/// A usage error (exit 2).
pub fn usage(e: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(Exit(USAGE, e))
}

/// The tree cannot be tested (render, apply or build failed): `git bisect
/// run` skips such a commit. A bad series definition stays a failure of
/// its own (exit 1): every commit would be skipped for it.
pub fn untestable(e: anyhow::Error) -> anyhow::Error {
    if e.downcast_ref::<crate::series::template::TemplateError>()
        .is_some()
    {
        return e;
    }
    anyhow::Error::new(Exit(SKIP, e))
}

/// A failure of the machinery (no vng, no qemu, ...), not of the kernel.
pub fn infrastructure(e: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(Exit(INFRA, e))
}

/// The code an error ends the process with.
pub fn code_of(e: &anyhow::Error) -> u8 {
    e.downcast_ref::<Exit>().map_or(FAILURE, |x| x.0)
}
