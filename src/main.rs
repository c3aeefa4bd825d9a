//! The `churnclv` binary: parse arguments, dispatch, map errors to exit codes
//! (0 ok, 1 internal error, 2 bad input / config / usage, 3 quality gate failed;
//! 130 / 143 stopped by SIGINT / SIGTERM, set by the signal handler).
#![deny(unsafe_code)] // one exception, `release_here` (src/memory.rs, docs/design.md)

use std::process::ExitCode;

use clap::Parser;

mod cmd;

/// mimalloc: the per-customer accumulators make millions of small allocations; glibc's
/// allocator spent ~30% of the feature stage in malloc/free (perf, 11M events). Built as
/// mimalloc v2 (v3 keeps freed memory ~100 MB longer on the 11M-event bench: peak RSS 345 MB
/// vs 295 MB, same speed) without transparent huge pages (with them every re-used 2 MB region
/// was zeroed again on each fault: a fifth of the feature stage in `clear_page`).
///
/// The `system-alloc` feature leaves the system allocator in place so that heap profilers
/// that hook malloc (heaptrack) see every allocation (docs/benchmarks.md, issue 12 point 3).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's free pages returned to the system: the calling thread's heap
/// (`mi_collect` walks only the heap of the thread that calls it).
#[cfg(not(feature = "system-alloc"))]
#[allow(unsafe_code)]
fn release_here() {
    // SAFETY: `mi_collect` takes no pointer and touches only the calling thread's heap and
    // the allocator's own caches, under its own locks; any thread may call it at any time.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// [`release_here`] on every rayon thread and on this one.
#[cfg(not(feature = "system-alloc"))]
fn release_everywhere() {
    rayon::broadcast(|_| release_here());
    release_here();
}

fn main() -> ExitCode {
    #[cfg(not(feature = "system-alloc"))]
    churnclv::memory::register(churnclv::memory::Release {
        here: release_here,
        everywhere: release_everywhere,
    });
    let cli = match cmd::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return cmd::finish::usage(err),
    };
    cmd::init_logging(&cli.global);
    if let Err(e) = churnclv::io::interrupt::install() {
        eprintln!("churnclv: error: cannot install the SIGTERM/SIGINT handler: {e}");
        return ExitCode::from(1);
    }
    let format = cli.global.log_format;
    let result = cmd::dispatch(cli.command);
    // A signal being handled decides the exit code (and says why); wait for it.
    churnclv::io::interrupt::settle();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // One line with the whole cause chain, as text or JSON.
        Err(err) => cmd::finish::fail(&err, format),
    }
}
