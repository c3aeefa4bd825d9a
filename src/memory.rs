//! Free memory handed back to the system where a run has just let go of a lot of it. The
//! allocator keeps the pages that frees empty for reuse, and they count in the process's
//! resident memory until it returns them: on the bench file ~50 MB through the scan (buffers
//! outgrown as the histories grow) and ~80 MB after it (the histories, freed while the
//! models' inputs are built). docs/benchmarks.md, seventh sitting, has the figures.
//!
//! The library sets no allocator: the binary, which does, registers how to return the pages
//! ([`register`]); without a registration every call here does nothing. The points:
//! - [`release_after_rows`]: a scan task, after its row group, once the calling thread has
//!   read [`ROWS_PER_RELEASE`] rows since its last release (its own heap only: no waiting);
//! - [`release_everywhere`]: after the duplicate pass (its key table), after each group of
//!   partitions of histories reduced to model inputs, and after the last (every thread's heap).

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::Instant;

/// How the allocator returns its free pages.
#[derive(Debug, Clone, Copy)]
pub struct Release {
    /// The calling thread's free pages.
    pub here: fn(),
    /// Every thread's (the rayon pool's and the calling thread's).
    pub everywhere: fn(),
}

static RELEASE: OnceLock<Release> = OnceLock::new();

/// Rows a thread reads between two releases of its own pages in a scan: after each row group
/// of the usual million rows, and no more often however small the row groups are (a release
/// walks the thread's heap).
pub const ROWS_PER_RELEASE: usize = 1_000_000;

thread_local! {
    static ROWS_SINCE: Cell<usize> = const { Cell::new(0) };
}

/// Registers how free pages are returned (once; later calls are ignored).
pub fn register(release: Release) {
    let _ = RELEASE.set(release);
}

/// Counts `rows` read by the calling thread; returns its free pages once
/// [`ROWS_PER_RELEASE`] have been read since the last time.
pub fn release_after_rows(rows: usize) {
    let Some(r) = RELEASE.get() else {
        return;
    };
    if due(rows) {
        (r.here)();
    }
}

/// Adds `rows` to the calling thread's count; true (and the count reset) when it reaches
/// [`ROWS_PER_RELEASE`].
fn due(rows: usize) -> bool {
    ROWS_SINCE.with(|n| {
        let total = n.get() + rows;
        let due = total >= ROWS_PER_RELEASE;
        n.set(if due { 0 } else { total });
        due
    })
}

/// Returns every thread's free pages; `after` names what was just dropped (logged).
pub fn release_everywhere(after: &str) {
    if let Some(r) = RELEASE.get() {
        let started = Instant::now();
        (r.everywhere)();
        tracing::debug!(
            stage = "memory",
            duration_ms = started.elapsed().as_millis() as u64,
            "free memory returned after {after}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_releases_once_per_million_rows_read() {
        // A fresh thread: its count starts at 0 whatever other tests did.
        let pattern = std::thread::spawn(|| {
            [
                1000,
                ROWS_PER_RELEASE - 1001,
                1,
                5,
                ROWS_PER_RELEASE,
                3 * ROWS_PER_RELEASE,
            ]
            .map(due)
        })
        .join()
        .unwrap();
        assert_eq!(pattern, [false, false, true, false, true, true]);
    }
}
