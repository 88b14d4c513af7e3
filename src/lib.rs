//! zcsplice as a library: the stages that keep the zero-copy splice-write
//! series alive across kernels. The folders follow the pipeline:
//!
//! - `tree`: kernel trees (open, base, import, list);
//! - `series`: the definition, probes, templates, edits, render, apply;
//! - `kernel`: config fragments and the build;
//! - `guest`: booting a kernel (KVM detection, timeouts, disks, console);
//! - `suites`: what runs in a guest (guest tests, bench, controls, xfstests);
//! - `workflows`: stages chained over trees (matrix).
//!
//! Process-wide: `exit` (the exit-code map), `procs` and `interrupt` (child
//! process groups and the signal handler), `deps` (installing tools).
//! `size`: sizes given on the command line.
//! `report`: the one style of tables and JUnit XML that the others use.
//! The CLI (src/main.rs, src/cli/) parses, dispatches and prints; nothing
//! here imports it.

pub mod deps;
pub mod env;
pub mod exit;
pub mod guest;
pub mod interrupt;
pub mod kernel;
pub mod mail;
pub mod procs;
pub mod progress;
pub mod report;
pub mod series;
pub mod size;
pub mod suites;
pub mod tree;
pub mod workflows;
