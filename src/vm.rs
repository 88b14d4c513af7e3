//! Starting guests: whether KVM can really run one here (decided in
//! seconds, cached per host boot), and running a command under a hard
//! timeout that kills every process it started. Every guest runs through
//! `run_with_timeout`, which keeps the registry of running guests that
//! `stop_guests` (the signal handler) kills.

use anyhow::{Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KvmProbe {
    pub usable: bool,
    /// Why KVM is (not) used, in one line.
    pub reason: String,
    boot_id: String,
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Can KVM boot a stock kernel here? Boots `image` under KVM for at most
/// `limit` and looks for the kernel's first console line. A PVM-backed
/// /dev/kvm fails at once (MSR 0x10a) or never gets past decompression.
pub fn probe_kvm(image: &Path, cache: &Path, limit: Duration) -> KvmProbe {
    let cache_file = cache.join("kvm-probe.json");
    let id = boot_id();
    if let Some(p) = std::fs::read_to_string(&cache_file)
        .ok()
        .and_then(|s| serde_json::from_str::<KvmProbe>(&s).ok())
        .filter(|p| p.boot_id == id)
    {
        return p;
    }
    let (usable, reason) = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Err(e) => (false, format!("/dev/kvm: {e}")),
        Ok(_) => boot_under_kvm(image, limit),
    };
    let p = KvmProbe {
        usable,
        reason,
        boot_id: id,
    };
    let _ = std::fs::create_dir_all(cache);
    let _ = std::fs::write(&cache_file, serde_json::to_string(&p).unwrap_or_default());
    p
}

fn boot_under_kvm(image: &Path, limit: Duration) -> (bool, String) {
    let tmp = match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => return (false, format!("no temp dir for the KVM probe: {e}")),
    };
    let out = tmp.path().join("console");
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-accel",
        "kvm",
        "-cpu",
        "host",
        "-M",
        "q35",
        "-m",
        "256",
        "-nodefaults",
        "-no-reboot",
    ])
    .args([
        "-display",
        "none",
        "-serial",
        &format!("file:{}", out.display()),
    ])
    .arg("-kernel")
    .arg(image)
    .args([
        "-append",
        "console=ttyS0 earlyprintk=serial panic=-1 rdinit=/zcsplice-none",
    ]);
    let started = Instant::now();
    let run = match run_with_timeout(&mut cmd, &tmp.path().join("qemu.log"), limit) {
        Ok(r) => r,
        Err(e) => return (false, format!("qemu-system-x86_64 could not start: {e:#}")),
    };
    let console = std::fs::read_to_string(&out).unwrap_or_default();
    let secs = started.elapsed().as_secs_f64();
    if console.contains("Linux version") {
        return (true, format!("KVM booted a kernel in {secs:.1} s"));
    }
    let qemu_log = std::fs::read_to_string(tmp.path().join("qemu.log")).unwrap_or_default();
    let first = qemu_log
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    if run.timed_out {
        (
            false,
            format!(
                "KVM printed nothing in {:.0} s (nested or PVM-backed /dev/kvm?)",
                limit.as_secs_f64()
            ),
        )
    } else {
        (
            false,
            format!("qemu under KVM failed in {secs:.1} s: {first}"),
        )
    }
}

pub struct Finished {
    pub timed_out: bool,
    /// Exit code, when the command exited by itself.
    pub code: Option<i32>,
    pub seconds: f64,
    /// Processes of the group still alive after the kill (should be none).
    pub leftovers: Vec<i32>,
}

/// Process ids whose process group is `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    // Fields after the ")" of the command name: state ppid pgrp ...
                    let rest = s.rsplit_once(')')?.1;
                    rest.split_whitespace().nth(2)?.parse::<i32>().ok()
                })
                == Some(pgid)
        })
        .collect()
}

/// The guests running now. A guest has its own process group (so that a
/// timeout can kill all of it), which also shields it from the signals
/// that end zcsplice: whoever ends zcsplice must end them through here.
struct Guests {
    /// Process group ids, one per guest.
    groups: BTreeSet<i32>,
    /// Set by `stop_guests`: zcsplice is ending, no guest may start.
    stopping: bool,
}

static GUESTS: Mutex<Guests> = Mutex::new(Guests {
    groups: BTreeSet::new(),
    stopping: false,
});

fn guests() -> MutexGuard<'static, Guests> {
    // The registry stays consistent even if a holder panicked.
    GUESTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps a guest's group in the registry until its run is over.
struct Registered(i32);

impl Drop for Registered {
    fn drop(&mut self) {
        guests().groups.remove(&self.0);
    }
}

/// Blocks the calling thread for good: once the signal handler has taken
/// over, a thread whose guest it killed must not go on to report that
/// guest as failed, nor start another; the handler ends the process.
pub fn halt() -> ! {
    loop {
        std::thread::park();
    }
}

/// What `stop_guests` did.
pub struct Stopped {
    /// Guests that were running (process groups signalled).
    pub guests: usize,
    /// Processes still alive after SIGKILL (should be none).
    pub leftovers: Vec<i32>,
}

/// For the signal handler: no guest starts from now on; every running
/// guest's group gets SIGTERM (qemu and virtiofsd exit cleanly on it),
/// then SIGKILL once `grace` is over.
pub fn stop_guests(grace: Duration) -> Stopped {
    let groups: Vec<i32> = {
        let mut g = guests();
        g.stopping = true;
        g.groups.iter().copied().collect()
    };
    for &pgid in &groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
    }
    let until = Instant::now() + grace;
    while Instant::now() < until && groups.iter().any(|&g| !alive(g).is_empty()) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let leftovers = groups
        .iter()
        .flat_map(|&pgid| {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            settle(pgid)
        })
        .collect();
    Stopped {
        guests: groups.len(),
        leftovers,
    }
}

/// Runs `cmd` in a new process group with stdout and stderr to `log`; after
/// `limit`, kills the whole group (qemu, virtiofsd, ...) and reaps it.
pub fn run_with_timeout(cmd: &mut Command, log: &Path, limit: Duration) -> Result<Finished> {
    let f =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let (mut child, registered) = {
        // Spawned under the lock: `stop_guests` either sees this group or
        // has already forbidden it to start.
        let mut g = guests();
        if g.stopping {
            drop(g);
            halt();
        }
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()?;
        let pgid = child.id() as i32;
        g.groups.insert(pgid);
        (child, Registered(pgid))
    };
    let pgid = registered.0;
    let start = Instant::now();
    let finished = loop {
        if let Some(st) = child.try_wait()? {
            // The leader is gone; take down anything it left in its group.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            break Finished {
                timed_out: false,
                code: st.code(),
                seconds: start.elapsed().as_secs_f64(),
                leftovers: settle(pgid),
            };
        }
        if start.elapsed() >= limit {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            let _ = child.wait();
            break Finished {
                timed_out: true,
                code: None,
                seconds: start.elapsed().as_secs_f64(),
                leftovers: settle(pgid),
            };
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if guests().stopping {
        halt();
    }
    Ok(finished)
}

/// Members of the group that are still running; zombies waiting for a
/// reaper are gone for our purpose.
pub fn alive(pgid: i32) -> Vec<i32> {
    group_members(pgid)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| {
                    s.rsplit_once(')')
                        .map(|(_, r)| !r.trim_start().starts_with('Z'))
                        .unwrap_or(false)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Waits up to 5 s for the group to be gone; returns who is left.
fn settle(pgid: i32) -> Vec<i32> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let left = alive(pgid);
        if left.is_empty() || Instant::now() >= until {
            return left;
        }
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_kills_the_whole_group() {
        let d = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sh");
        // A grandchild in the same group, as qemu is for vng.
        cmd.args(["-c", "sleep 300 & sleep 300; echo never"]);
        let r =
            run_with_timeout(&mut cmd, &d.path().join("log"), Duration::from_millis(500)).unwrap();
        assert!(r.timed_out);
        assert!(r.leftovers.is_empty(), "left: {:?}", r.leftovers);
    }

    #[test]
    fn exit_code_is_reported() {
        let d = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo hi; exit 3"]);
        let r = run_with_timeout(&mut cmd, &d.path().join("log"), Duration::from_secs(10)).unwrap();
        assert_eq!((r.timed_out, r.code), (false, Some(3)));
        assert_eq!(
            std::fs::read_to_string(d.path().join("log")).unwrap(),
            "hi\n"
        );
    }
}
