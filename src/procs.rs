//! The process groups zcsplice starts for long work: guests (vng, qemu,
//! virtiofsd), make, tar. Each runs in a group of its own, so that a
//! timeout can kill all of it; that also shields it from the signals that
//! end zcsplice (a `kill` of zcsplice, CI's timeout), so the signal handler
//! ends them through this registry instead of leaving them orphaned.

use anyhow::Result;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What a registered group runs, for the handler's one line.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Guest,
    /// A host tool, by name ("make", "tar").
    Tool(&'static str),
}

struct Registry {
    /// Process group id -> what runs in it.
    groups: BTreeMap<i32, Kind>,
    /// Set by `stop_all`: zcsplice is ending, nothing may start.
    stopping: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    groups: BTreeMap::new(),
    stopping: false,
});

fn registry() -> MutexGuard<'static, Registry> {
    // The registry stays consistent even if a holder panicked.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps a group in the registry until its run is over.
pub struct Registered(i32);

impl Registered {
    pub fn pgid(&self) -> i32 {
        self.0
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        registry().groups.remove(&self.0);
    }
}

/// Starts a process group through `start`, which must put its process in
/// a new group (`process_group(0)`) and return its pid. Started under the
/// lock: `stop_all` either sees the group or has already forbidden it to
/// start (then this thread parks for good: the process is ending).
pub fn start<T>(
    kind: Kind,
    start: impl FnOnce() -> std::io::Result<(T, u32)>,
) -> Result<(T, Registered)> {
    let mut r = registry();
    if r.stopping {
        drop(r);
        halt();
    }
    let (value, pid) = start()?;
    let pgid = pid as i32;
    r.groups.insert(pgid, kind);
    Ok((value, Registered(pgid)))
}

/// A duct expression started in a group of its own and registered; the
/// caller waits on the handle.
pub fn start_duct(kind: Kind, expr: duct::Expression) -> Result<(duct::Handle, Registered)> {
    use std::os::unix::process::CommandExt;
    let expr = expr.before_spawn(|c| {
        c.process_group(0);
        Ok(())
    });
    start(kind, || {
        let h = expr.start()?;
        let pid = h.pids()[0];
        Ok((h, pid))
    })
}

/// True once the signal handler has taken over: a thread whose process it
/// killed must not report that as a failure, but `halt()`.
pub fn stopping() -> bool {
    registry().stopping
}

/// Blocks the calling thread for good: once the signal handler has taken
/// over, a thread whose process it killed must not go on to report that
/// as a failure, nor start another; the handler ends the process.
pub fn halt() -> ! {
    loop {
        std::thread::park();
    }
}

/// What `stop_all` did.
pub struct Stopped {
    /// Guests that were running (process groups signalled).
    pub guests: usize,
    /// Host tools that were running, by name.
    pub tools: Vec<&'static str>,
    /// Processes still alive after SIGKILL (should be none).
    pub leftovers: Vec<i32>,
}

/// For the signal handler: nothing starts from now on; every running
/// group gets SIGTERM (qemu, virtiofsd and make exit cleanly on it), then
/// SIGKILL once `grace` is over.
pub fn stop_all(grace: Duration) -> Stopped {
    let groups: Vec<(i32, Kind)> = {
        let mut r = registry();
        r.stopping = true;
        r.groups.iter().map(|(&g, &k)| (g, k)).collect()
    };
    for &(pgid, _) in &groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
    }
    let until = Instant::now() + grace;
    while Instant::now() < until && groups.iter().any(|&(g, _)| !alive(g).is_empty()) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let leftovers = groups
        .iter()
        .flat_map(|&(pgid, _)| {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            settle(pgid)
        })
        .collect();
    Stopped {
        guests: groups.iter().filter(|(_, k)| *k == Kind::Guest).count(),
        tools: groups
            .iter()
            .filter_map(|(_, k)| match k {
                Kind::Tool(name) => Some(*name),
                Kind::Guest => None,
            })
            .collect(),
        leftovers,
    }
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
pub fn settle(pgid: i32) -> Vec<i32> {
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
