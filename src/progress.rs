//! The one progress mechanism: every bar and spinner (build, boots, bench)
//! lives in one `MultiProgress`, so that two at once (a baseline boot beside
//! the series') and the notes printed between them do not garble the
//! terminal. Hidden when stderr is not a terminal (callers then print plain
//! lines, see `is_hidden`) or with `--quiet`.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

fn multi() -> &'static MultiProgress {
    static M: OnceLock<MultiProgress> = OnceLock::new();
    M.get_or_init(MultiProgress::new)
}

/// `--quiet`: no bars at all (plain-line fallbacks are notes, which the
/// logger drops too).
pub fn set_quiet(quiet: bool) {
    if quiet {
        multi().set_draw_target(ProgressDrawTarget::hidden());
    }
}

fn add(pb: ProgressBar, template: &str) -> ProgressBar {
    let pb =
        multi().add(pb.with_style(ProgressStyle::with_template(template).expect("valid template")));
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// A spinner with the elapsed time and a message.
pub fn spinner(msg: impl Into<String>) -> ProgressBar {
    let pb = add(
        ProgressBar::new_spinner(),
        "{spinner} [{elapsed_precise}] {msg}",
    );
    pb.set_message(msg.into());
    pb
}

/// A bar of `len` steps named by `unit` ("objects", "reps").
pub fn bar(len: u64, unit: &str) -> ProgressBar {
    add(
        ProgressBar::new(len),
        &format!("{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {unit}  {{msg}}"),
    )
}

/// A counter of steps whose total is unknown.
pub fn counter(unit: &str) -> ProgressBar {
    add(
        ProgressBar::new_spinner(),
        &format!("{{spinner}} [{{elapsed_precise}}] {{pos}} {unit}  {{msg}}"),
    )
}

/// Whether bars are drawn: when not, callers print plain progress lines.
pub fn is_hidden() -> bool {
    multi().is_hidden()
}

/// Prints a line on stderr above the bars, without tearing them. A line
/// nobody can read (stderr a closed pipe) is dropped: eprintln! would
/// panic, ending a run midway and leaving its guests and tools behind.
pub fn println(line: &str) {
    let say = || {
        let _ = writeln!(std::io::stderr(), "{line}");
    };
    if is_hidden() {
        say();
    } else {
        multi().suspend(say);
    }
}
