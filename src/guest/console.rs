//! Reading a guest console log: kernel reports (BUG, WARNING, Oops, KASAN,
//! lockdep, kmemleak, hung tasks, panics) and the test markers that tell
//! which test was running when one appeared.

use regex::Regex;
use serde::Serialize;
use std::sync::LazyLock;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Splat {
    /// What kind of report: "BUG", "WARNING", "Oops", "KASAN", "lockdep",
    /// "kmemleak", "hung-task", "panic", "UBSAN", "GPF".
    pub kind: String,
    /// The report's first line.
    pub title: String,
    /// The test running when it appeared, if any.
    pub test: Option<String>,
    /// The report, up to its end marker (or 40 lines).
    pub text: String,
}

/// Kernel log lines may start with a timestamp and a log-level prefix.
static PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:<\d+>)?(?:\[\s*\d+\.\d+\]\s?)?(?:\[\s*[TC]\d+\]\s?)?").unwrap()
});

const KINDS: &[(&str, &str)] = &[
    ("KASAN", r"^BUG: KASAN: "),
    (
        "lockdep",
        r"^WARNING: (?:possible (?:circular|recursive) locking|inconsistent lock state|suspicious RCU usage|bad unlock balance|held lock freed|lock held when returning)",
    ),
    ("lockdep", r"^INFO: possible irq lock inversion"),
    ("BUG", r"^BUG: "),
    ("WARNING", r"^WARNING: CPU: \d+ PID: \d+ at "),
    ("WARNING", r"^WARNING: "),
    ("Oops", r"^Oops: "),
    ("GPF", r"^general protection fault"),
    ("UBSAN", r"^UBSAN: "),
    ("kmemleak", r"^kmemleak: \d+ new suspected memory leaks"),
    (
        "hung-task",
        r"^INFO: task .+ blocked for more than \d+ seconds",
    ),
    ("panic", r"^Kernel panic - not syncing"),
];

static MATCHERS: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    KINDS
        .iter()
        .map(|(k, r)| (*k, Regex::new(r).unwrap()))
        .collect()
});

/// The console markers of the guest scripts (`mark` in vm/guest/*.sh),
/// written to /dev/kmsg: defined here once for every reader.
pub mod marker {
    /// Before a test (`start NAME`).
    pub const START: &str = "zcsplice-guest: start ";
    /// After a test (`end NAME RESULT`).
    pub const END: &str = "zcsplice-guest: end ";
    /// The runner is up: the kernel reached userspace.
    pub const KERNEL_UP: &str = "zcsplice-guest: kernel ";
    /// vm/guest/xfstests.sh, after ./check.
    pub const END_OF_CHECK: &str = "zcsplice-guest: end check";
}

static START: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"{}(\S+)", regex::escape(marker::START))).unwrap());
static END: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"{}(\S+)", regex::escape(marker::END))).unwrap());

fn strip(line: &str) -> &str {
    let m = PREFIX.find(line).map_or(0, |m| m.end());
    line[m..].trim_end_matches('\r')
}

/// Every kernel report in the log. A panic that follows an Oops is still
/// reported on its own: it is what made the guest die.
pub fn splats(log: &str) -> Vec<Splat> {
    let lines: Vec<&str> = log.lines().collect();
    let mut out: Vec<Splat> = Vec::new();
    let mut test: Option<String> = None;
    let mut i = 0;
    while i < lines.len() {
        let l = strip(lines[i]);
        if let Some(c) = START.captures(l) {
            test = Some(c[1].to_string());
        } else if END.is_match(l) {
            test = None;
        }
        let Some((kind, _)) = MATCHERS.iter().find(|(_, re)| re.is_match(l)) else {
            i += 1;
            continue;
        };
        let mut text = vec![l.to_string()];
        let mut j = i + 1;
        while j < lines.len() && text.len() < 40 {
            let n = strip(lines[j]);
            if MATCHERS.iter().any(|(_, re)| re.is_match(n)) || START.is_match(n) {
                break;
            }
            text.push(n.to_string());
            j += 1;
            if n.starts_with("---[ end ") {
                break;
            }
        }
        out.push(Splat {
            kind: kind.to_string(),
            title: l.to_string(),
            test: test.clone(),
            text: text.join("\n"),
        });
        i = j;
    }
    out
}

/// True when the guest kernel panicked.
pub fn panicked(log: &str) -> bool {
    log.lines()
        .any(|l| strip(l).starts_with("Kernel panic - not syncing"))
}

/// True once the guest test runner has started (the kernel booted to userspace).
pub fn booted(log: &str) -> bool {
    log.contains(marker::KERNEL_UP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_warning_with_test_and_end_marker() {
        let log = "[    1.0] zcsplice-guest: start t1\n\
                   [    1.1] ------------[ cut here ]------------\n\
                   [    1.2] WARNING: CPU: 0 PID: 77 at drivers/misc/lkdtm/bugs.c:90 lkdtm_WARNING+0x1/0x2\n\
                   [    1.3] Modules linked in:\n\
                   [    1.4] ---[ end trace 0000000000000000 ]---\n\
                   [    1.5] after\n\
                   [    1.6] zcsplice-guest: end t1 pass\n";
        let s = splats(log);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].kind, "WARNING");
        assert_eq!(s[0].test.as_deref(), Some("t1"));
        assert!(s[0].text.ends_with("---[ end trace 0000000000000000 ]---"));
        assert!(!panicked(log));
    }

    #[test]
    fn clean_log_has_no_splats() {
        let log = "[    0.0] Linux version 6.12.117\n[    0.1] Run /init as init process\n\
                   virtme-ng-init: WARNING-free line\nzcsplice-guest: kernel 6.12.117 up\n";
        assert!(splats(log).is_empty());
        assert!(booted(log));
    }

    #[test]
    fn kinds_are_told_apart() {
        let log = "BUG: KASAN: use-after-free in f+0x1\n\
                   WARNING: possible circular locking dependency detected\n\
                   BUG: Bad page state in process x\n\
                   kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)\n\
                   INFO: task kworker/0:1:12 blocked for more than 120 seconds.\n\
                   Oops: general protection fault, probably for non-canonical address\n\
                   Kernel panic - not syncing: Fatal exception\n";
        let kinds: Vec<String> = splats(log).into_iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [
                "KASAN",
                "lockdep",
                "BUG",
                "kmemleak",
                "hung-task",
                "Oops",
                "panic"
            ]
        );
        assert!(panicked(log));
    }
}
