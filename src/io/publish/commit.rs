//! Publishing a run: `_SUCCESS` written into the run partition, the previous run's retracted,
//! the table partitions swapped in in order, the run partition last, as one critical section
//! with the signal handler.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::io::interrupt;
use crate::io::output::write_synced;

use super::fs_ops::sync_dir;
use super::proof::{proof, remove_ours};
use super::{fault, io_err, PublishError, Staging, SUCCESS};

/// Publishes a run: writes `_SUCCESS` into the run partition's staging folder, then puts its
/// table partitions in place in the order given, then the run partition last, as one critical section with the signal handler — a SIGTERM/SIGINT
/// arriving before the first swap stops the publish (the previous run stays as it was), one
/// arriving later waits for the end.
///
/// Before the first swap, the previous run's `_SUCCESS` for this as-of (in `run`'s target) is
/// removed, so that a run stopped between two table swaps (a kill, an I/O error) leaves no
/// `_SUCCESS` vouching for a mix of old and new tables; if nothing was swapped yet when a
/// step fails, it is put back. Churnclv partitions of `obsolete` tables (a table the previous
/// run of this as-of published and this one does not) are removed after the tables are in
/// place, before the run partition. Returns the run partition's path.
pub fn publish_run(
    mut tables: Vec<Staging<'_>>,
    obsolete: &[PathBuf],
    mut run: Staging<'_>,
) -> Result<PathBuf, PublishError> {
    let mut state = interrupt::state();
    let result = publish_all(&mut tables, obsolete, &mut run);
    for s in tables.iter().chain([&run]) {
        if s.published {
            state.published(&s.target);
        }
    }
    // Released before the stagings drop: their Drop takes the state again.
    drop(state);
    result
}

fn publish_all(
    tables: &mut [Staging<'_>],
    obsolete: &[PathBuf],
    run: &mut Staging<'_>,
) -> Result<PathBuf, PublishError> {
    run.check_stop()?;
    // The run partition is complete before anything readers see changes.
    write_synced(&run.dir.join(SUCCESS), b"")
        .and_then(|()| sync_dir(&run.dir))
        .map_err(io_err(&run.dir))?;
    fault("publish-after-success").map_err(io_err(&run.dir))?;
    // The last moment to stop with the previous run untouched.
    run.check_stop()?;
    let previous = run.target.join(SUCCESS);
    let retracted = retract(&run.target).map_err(io_err(&previous))?;
    let mut swapped = 0;
    let result = (|| {
        fault("publish-after-retract").map_err(io_err(&previous))?;
        for table in tables.iter_mut() {
            let outcome = table.publish_locked(swapped == 0);
            if table.published {
                swapped += 1;
            }
            outcome?;
            fault("publish-between-tables").map_err(io_err(&table.target))?;
        }
        for path in obsolete {
            if proof(path).is_some() {
                remove_ours(path).map_err(io_err(path))?;
                tracing::info!(
                    stage = "publish",
                    "{}: removed: this run has no such table",
                    path.display()
                );
            }
        }
        run.publish_locked(swapped == 0)
    })();
    if result.is_err() && swapped == 0 && retracted {
        // Nothing of the previous run was replaced: its `_SUCCESS` still tells the truth.
        if let Err(e) = write_synced(&previous, b"").and_then(|()| sync_dir(&run.target)) {
            tracing::warn!(
                stage = "publish",
                "{}: cannot put the previous run's commit marker back ({e}); that as-of stays uncommitted until a run publishes it",
                previous.display()
            );
        }
    }
    result
}

/// Removes `_SUCCESS` from the churnclv run partition `dir`, if there is one. Returns whether
/// there was one to remove.
fn retract(dir: &Path) -> std::io::Result<bool> {
    if proof(dir).is_none() {
        return Ok(false);
    }
    match fs::remove_file(dir.join(SUCCESS)) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
        Ok(()) => {
            sync_dir(dir)?;
            Ok(true)
        }
    }
}
