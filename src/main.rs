//! zcsplice: keeps the zero-copy splice-write series alive across kernels.
//! The binary parses, resolves the environment once, dispatches to the
//! library and maps the outcome to the exit-code map (src/exit.rs).

mod cli;

use clap::Parser;
use std::process::ExitCode;

use zcsplice::env::Env;
use zcsplice::{exit, interrupt};

fn main() -> ExitCode {
    let args = cli::args::Cli::parse();
    cli::output::init(args.quiet);
    if let Err(e) = interrupt::install() {
        log::warn!("cannot handle signals ({e:#}): a signal would leave guests running");
    }
    let result = Env::resolve(args.series.as_deref(), args.cache.as_deref())
        .and_then(|env| cli::dispatch(&args, &env));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // As every note: with stderr gone, dropped rather than a panic
            // whose exit code `git bisect run` would read.
            zcsplice::progress::println(&format!("zcsplice: error: {e:#}"));
            ExitCode::from(exit::code_of(&e))
        }
    }
}
