//! SIGINT, SIGTERM, SIGHUP: kill the running guests and tools (make, tar),
//! delete the guests' scratch disks and a half-imported tree, say so, and
//! die of the signal.
//!
//! Guests and tools run in process groups of their own (see procs.rs), so
//! neither a terminal's Ctrl-C nor a `kill` of zcsplice reaches them:
//! without this they would run on as orphans, each guest burning a host
//! CPU under TCG until its timeout, their disk images left in the cache.

use crate::guest::disks;
use crate::procs;
use crate::tree::import;
use anyhow::Result;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::io::Write;
use std::time::Duration;

/// How long guests get to exit on SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

/// Handles the signals on a thread of their own, for the rest of the run.
pub fn install() -> Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            // One signal ends the run; more while cleaning up change nothing.
            if let Some(sig) = signals.forever().next() {
                handle(sig);
            }
        })?;
    Ok(())
}

fn handle(sig: i32) -> ! {
    let stopped = procs::stop_all(GRACE);
    let removed = disks::remove_all();
    let partial = import::remove_partial();
    // Not eprintln!, which panics when stderr is gone (a closed pipe, a
    // killed CI runner): this thread would die short of the exit below,
    // and zcsplice would hang.
    let _ = writeln!(
        std::io::stderr(),
        "{}",
        summary(sig, &stopped, removed, partial)
    );
    // Die of the signal rather than exit(128 + sig): shells see the same
    // 128 + sig, and a shell loop or script running zcsplice stops on
    // Ctrl-C only if its child died of SIGINT.
    let _ = signal_hook::low_level::emulate_default_handler(sig);
    signal_hook::low_level::exit(128 + sig)
}

/// The one line that says what the handler did.
fn summary(sig: i32, stopped: &procs::Stopped, removed: usize, partial: bool) -> String {
    let name = signal_hook::low_level::signal_name(sig).unwrap_or("signal");
    let mut parts = Vec::new();
    match stopped.guests {
        0 => {}
        1 => parts.push("killed 1 running guest".to_string()),
        n => parts.push(format!("killed {n} running guests")),
    }
    parts.extend(stopped.tools.iter().map(|t| format!("stopped {t}")));
    match removed {
        0 => {}
        1 => parts.push("removed 1 scratch disk".into()),
        n => parts.push(format!("removed {n} scratch disks")),
    }
    if partial {
        parts.push("removed the half-imported tree".into());
    }
    if parts.is_empty() {
        parts.push("nothing was running".into());
    }
    let mut s = format!("zcsplice: interrupted ({name}): {}", parts.join(", "));
    if !stopped.leftovers.is_empty() {
        s.push_str(&format!(
            "; still alive after SIGKILL: pids {:?}",
            stopped.leftovers
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::{kill, killpg, Signal};
    use nix::unistd::Pid;
    use std::os::unix::process::ExitStatusExt;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::Instant;

    /// Set in the process that plays zcsplice: its scratch directory.
    const FAKE: &str = "ZCSPLICE_SIGNAL_TEST_DIR";

    /// Not a test by itself: the zcsplice that
    /// `a_signal_kills_every_running_guest_and_removes_its_disks` runs in a
    /// process of its own (the signal ends the process it is sent to).
    #[test]
    fn fake_zcsplice() {
        let Some(dir) = std::env::var_os(FAKE).map(PathBuf::from) else {
            return;
        };
        install().unwrap();
        let _images = disks::fresh(
            &dir,
            &[disks::Disk {
                name: "fake",
                bytes: 1 << 20,
            }],
        )
        .unwrap();
        // Two guests side by side, as `xfstests --baseline` runs them, each
        // with a grandchild in its group as qemu is for vng. The second
        // ignores SIGTERM, as a wedged guest may: only SIGKILL ends it.
        let scripts = [
            "echo $$ > pgid0; sleep 300 & sleep 300",
            "trap '' TERM; echo $$ > pgid1; sleep 300 & sleep 300",
        ];
        std::thread::scope(|s| {
            for (i, script) in scripts.into_iter().enumerate() {
                let dir = &dir;
                s.spawn(move || {
                    let mut cmd = Command::new("sh");
                    cmd.args(["-c", script]).current_dir(dir);
                    let log = dir.join(format!("guest{i}.log"));
                    crate::guest::vm::run_with_timeout(&mut cmd, &log, Duration::from_secs(300))
                });
            }
        });
        panic!("the guests ended before the signal ended this process");
    }

    /// The group id a fake guest wrote, once the group has both processes.
    fn running_group(file: &Path) -> Option<i32> {
        let pgid = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
        (procs::alive(pgid).len() >= 2).then_some(pgid)
    }

    /// Kills the fake guests' groups, whatever the test's outcome.
    struct Reap(Vec<i32>);

    impl Drop for Reap {
        fn drop(&mut self) {
            for &g in &self.0 {
                if !procs::alive(g).is_empty() {
                    let _ = killpg(Pid::from_raw(g), Signal::SIGKILL);
                }
            }
        }
    }

    #[test]
    fn a_signal_kills_every_running_guest_and_removes_its_disks() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let stderr = dir.join("stderr");
        let mut zcsplice = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "interrupt::tests::fake_zcsplice", "--nocapture"])
            .env(FAKE, dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut reap = Reap(vec![]);
        let until = Instant::now() + Duration::from_secs(30);
        while reap.0.len() < 2 {
            reap.0 = ["pgid0", "pgid1"]
                .iter()
                .filter_map(|f| running_group(&dir.join(f)))
                .collect();
            if Instant::now() > until {
                let _ = zcsplice.kill();
                panic!(
                    "the fake guests did not start: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(std::fs::read_dir(dir.join("disks")).unwrap().count(), 1);

        let pid = Pid::from_raw(zcsplice.id() as i32);
        kill(pid, Signal::SIGTERM).unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = zcsplice.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > until {
                let _ = zcsplice.kill();
                panic!("zcsplice did not end on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        };

        let err = std::fs::read_to_string(&stderr).unwrap();
        for &g in &reap.0 {
            assert_eq!(
                procs::alive(g),
                Vec::<i32>::new(),
                "group {g} lives on; {err}"
            );
        }
        let left = std::fs::read_dir(dir.join("disks")).unwrap().count();
        assert_eq!(left, 0, "scratch disks left behind; {err}");
        // Killed by SIGTERM itself: a shell's $? is 143.
        assert_eq!(status.signal(), Some(SIGTERM), "{status:?}; {err}");
        assert!(
            err.contains(
                "zcsplice: interrupted (SIGTERM): killed 2 running guests, removed 1 scratch disk\n"
            ),
            "{err}"
        );
    }

    #[test]
    fn the_line_says_what_was_done() {
        let none = procs::Stopped {
            guests: 0,
            tools: vec![],
            leftovers: vec![],
        };
        assert_eq!(
            summary(SIGINT, &none, 0, false),
            "zcsplice: interrupted (SIGINT): nothing was running"
        );
        let one = procs::Stopped {
            guests: 1,
            tools: vec!["make"],
            leftovers: vec![42],
        };
        assert_eq!(
            summary(SIGHUP, &one, 2, true),
            "zcsplice: interrupted (SIGHUP): killed 1 running guest, stopped make, \
             removed 2 scratch disks, removed the half-imported tree; \
             still alive after SIGKILL: pids [42]"
        );
    }
}
