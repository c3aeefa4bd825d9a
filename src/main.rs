//! The `churnclv` binary: parse arguments, dispatch, map errors to exit codes
//! (0 ok, 1 internal error, 2 bad input / config / usage, 3 quality gate failed).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

mod cmd;

/// mimalloc: the per-customer accumulators make millions of small allocations; glibc's
/// allocator spent ~30% of the feature stage in malloc/free (perf, 11M events).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    cmd::init_logging(&cli.global);
    match cmd::dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line with the whole cause chain.
            eprintln!("churnclv: error: {err:#}");
            ExitCode::from(cmd::exit_code(&err))
        }
    }
}
