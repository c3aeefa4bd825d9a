//! The `churnclv` binary: parse arguments, dispatch, map errors to exit codes
//! (0 ok, 1 internal error, 2 bad input / config / usage, 3 quality gate failed).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

mod cmd;

/// mimalloc: the per-customer accumulators make millions of small allocations; glibc's
/// allocator spent ~30% of the feature stage in malloc/free (perf, 11M events). Built as
/// mimalloc v2 (v3 keeps freed memory ~100 MB longer on the 11M-event bench: peak RSS 345 MB
/// vs 295 MB, same speed) without transparent huge pages (with them every re-used 2 MB region
/// was zeroed again on each fault: a fifth of the feature stage in `clear_page`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match cmd::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return cmd::finish::usage(err),
    };
    cmd::init_logging(&cli.global);
    let format = cli.global.log_format;
    match cmd::dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        // One line with the whole cause chain, as text or JSON.
        Err(err) => cmd::finish::fail(&err, format),
    }
}
