//! Starting guests: whether KVM can really run one here (decided in
//! seconds, cached per host boot), and running a command under a hard
//! timeout that kills every process it started. Every guest runs through
//! `run_with_timeout`, which registers it with `procs` so that the signal
//! handler can kill it.

use anyhow::{Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::procs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
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

/// Runs `cmd` in a new process group with stdout and stderr to `log`; after
/// `limit`, kills the whole group (qemu, virtiofsd, ...) and reaps it.
/// The group is registered as a guest, so a signal to zcsplice ends it.
pub fn run_with_timeout(cmd: &mut Command, log: &Path, limit: Duration) -> Result<Finished> {
    let f =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let (mut child, registered) = procs::start(procs::Kind::Guest, || {
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()?;
        let pid = child.id();
        Ok((child, pid))
    })?;
    let pgid = registered.pgid();
    let start = Instant::now();
    let finished = loop {
        if let Some(st) = child.try_wait()? {
            // The leader is gone; take down anything it left in its group.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            break Finished {
                timed_out: false,
                code: st.code(),
                seconds: start.elapsed().as_secs_f64(),
                leftovers: procs::settle(pgid),
            };
        }
        if start.elapsed() >= limit {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            let _ = child.wait();
            break Finished {
                timed_out: true,
                code: None,
                seconds: start.elapsed().as_secs_f64(),
                leftovers: procs::settle(pgid),
            };
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if procs::stopping() {
        procs::halt();
    }
    Ok(finished)
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
