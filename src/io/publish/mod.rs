//! Publishing output partitions: the output folder's lock, staging folders that carry
//! churnclv's marker, the one-step swap that replaces a partition, the order in which a run's
//! partitions (one per table, then the run's own) are swapped in, and the repair of what a
//! killed run left behind.
//!
//! A run publishes one partition per table, each in the table's own folder
//! (`DIR/scores/as_of=D/`, `DIR/features/…`, `DIR/rejects/…`), then the run partition
//! `DIR/runs/as_of=D/` holding the manifest and `_SUCCESS`, the run's commit marker
//! ([`publish_run`]).
//!
//! The guarantees (docs/operations.md names the test that proves each):
//! - **One run per output folder.** `DIR/.churnclv.lock` is locked with `flock(2)` for the life
//!   of the process. The kernel releases it when the process ends, however it ends, so there is
//!   no stale lock to detect and no pid to check. The file is never deleted: deleting it while
//!   it is held would let a third run lock a new file of the same name and run alongside.
//! - **churnclv only removes or renames what it can prove it made.** A staging folder
//!   (`DIR/<table>/.tmp-<run_id>/`) gets the marker file [`MARKER`] before anything else, and keeps it
//!   when it becomes the published partition; recovery and clean-up act only on `.tmp-*` /
//!   `.old.*` folders that hold it (or, for partitions published before markers existed, a
//!   churnclv `manifest.json`). Everything else in DIR is never touched.
//! - **A partition is always the complete old one or the complete new one.** An existing
//!   `DIR/<table>/as_of=D/` is swapped with the staging folder in one step (`renameat2` with
//!   `RENAME_EXCHANGE`), then the old one, now under the staging name, is removed. Where the
//!   filesystem refuses the swap, two renames with the old partition kept aside as
//!   `.old.as_of=D/` (marked) until the new one is in place, and a logged warning.
//! - **`DIR/runs/as_of=D/_SUCCESS` vouches only for a whole run.** Before the first table is
//!   swapped, the previous run's `_SUCCESS` for that as-of is removed; the run partition, with
//!   the new `_SUCCESS` inside, is swapped in last. A run killed between two table swaps leaves
//!   each table partition complete (old or new) and the as-of without `_SUCCESS` until a
//!   rerun: never a `_SUCCESS` over a mix of runs.
//!
//! Every step that writes or renames is a named fault-injection point ([`fault`]) in builds
//! with the `failpoints` feature, so tests can kill or fail the process at each of them.
//!
//! One file per concern: `lock.rs` (the folder's lock), `recover.rs` (the repair of what a
//! killed run left), `staging.rs` (marked staging folders and the swap of one partition),
//! `commit.rs` (a run's partitions swapped in order, `_SUCCESS` last), `proof.rs` (what proves
//! a folder is churnclv's, and removing such a folder), `fs_ops.rs` (the filesystem calls:
//! one-step swap, no-replace rename, folder sync) and `fault.rs` (the fault-injection points).

mod commit;
mod fault;
mod fs_ops;
mod lock;
mod proof;
mod recover;
mod staging;

use std::path::{Path, PathBuf};

pub use commit::publish_run;
pub(crate) use fault::fault;
pub use lock::RunLock;
pub(crate) use staging::discard;
pub use staging::Staging;

/// Name of the lock file inside an output folder. It stays after the run (see the module notes).
pub const LOCK_FILE: &str = ".churnclv.lock";
/// Marker file of every folder churnclv stages and publishes: one JSON line naming the writer,
/// the run and the partition. The leading dot makes loaders skip it (docs/schema.md).
pub const MARKER: &str = ".churnclv-partition";
/// The table folders of a run's output, in the order their partitions are swapped in.
pub const TABLES: [&str; 3] = ["scores", "features", "rejects"];
/// The folder of the run partitions (manifest, metrics, model, report, `_SUCCESS`), swapped in
/// after the tables.
pub const RUNS: &str = "runs";
/// Prefix of staging folders: `DIR/<table>/.tmp-<run_id>/`.
pub const STAGING_PREFIX: &str = ".tmp-";
/// Prefix of a replaced partition kept aside by the two-rename fallback: `DIR/.old.<partition>/`.
pub const ASIDE_PREFIX: &str = ".old.";
const MANIFEST: &str = "manifest.json";
/// The run's commit marker, in the run partition only.
pub const SUCCESS: &str = "_SUCCESS";

/// Why a partition could not be staged or published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Something churnclv cannot prove it made sits where it has to write (exit code 2).
    #[error("{path} exists and was not made by churnclv (no {MARKER} marker, no churnclv manifest.json); churnclv never replaces or removes it: move it away or choose another --out")]
    NotOurs { path: PathBuf },
    /// A SIGTERM / SIGINT arrived: no new publish step starts (the signal handler reports it
    /// and sets the exit code).
    #[error("{partition}: not published: the run is being stopped by a signal")]
    Stopped { partition: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PublishError + '_ {
    move |source| PublishError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Why the output folder's lock could not be taken (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{dir}: another churnclv run (pid {pid}) is writing here (lock file {path}); wait for it to finish: the lock is released when that process ends")]
    Held {
        dir: PathBuf,
        path: PathBuf,
        /// The pid the holder wrote into the lock file (`unknown` if it could not be read).
        pid: String,
    },
    #[error("{path}: cannot open or lock the lock file")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
