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

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{flock, renameat_with, FlockOperation, RenameFlags, CWD};
use rustix::io::Errno;

use super::interrupt;
use super::output::write_synced;

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

/// The exclusive lock of an output folder, held until this value is dropped or the process
/// ends. Every write into the folder (recovery, staging, publishing) goes through it.
#[derive(Debug)]
pub struct RunLock {
    dir: PathBuf,
    /// The open, locked lock file: closing it releases the lock.
    _file: File,
}

impl RunLock {
    /// Takes the lock of `dir` (which must exist) without waiting: if another process holds
    /// it, fails with [`LockError::Held`] naming the holder's pid.
    pub fn acquire(dir: &Path) -> Result<RunLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let lock_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        // Not truncated on open: until the winner rewrites it, the file keeps the pid a
        // loser reports.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(lock_err)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == Errno::WOULDBLOCK => {
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    pid: holder_pid(&path),
                    path,
                })
            }
            Err(e) => return Err(lock_err(e.into())),
        }
        file.set_len(0)
            .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .map_err(lock_err)?;
        tracing::info!(stage = "plan", "holding the lock {}", path.display());
        fault("lock-acquired").map_err(lock_err)?;
        Ok(RunLock {
            dir: dir.to_path_buf(),
            _file: file,
        })
    }

    /// The output folder this lock guards.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Repairs what a killed run left in the folder and in its table folders
    /// ([`TABLES`], [`RUNS`]), acting only on folders that carry churnclv's proof (no live run
    /// can be using them: this one holds the lock). `.tmp-*` folders are removed; a partition
    /// kept aside (`.old.<partition>`) is put back if its replacement never arrived, removed
    /// otherwise. Anything else (files, foreign folders, other tools' partitions) is left
    /// alone. `DIR` itself is searched too, for what a run of the one-folder layout left.
    /// Logs and returns what it did (paths relative to `DIR`).
    pub fn recover(&self) -> Result<Vec<String>, PublishError> {
        let mut done = Vec::new();
        self.recover_in(&self.dir, "", &mut done)?;
        for table in TABLES.iter().chain([&RUNS]) {
            let folder = self.dir.join(table);
            // Only a real folder: a file or a link of that name is left alone.
            if fs::symlink_metadata(&folder).is_ok_and(|m| m.is_dir()) {
                self.recover_in(&folder, &format!("{table}/"), &mut done)?;
            }
        }
        for note in &done {
            tracing::warn!(stage = "plan", "{}: {note}", self.dir.display());
        }
        Ok(done)
    }

    fn recover_in(
        &self,
        folder: &Path,
        prefix: &str,
        done: &mut Vec<String>,
    ) -> Result<(), PublishError> {
        let entries = fs::read_dir(folder).map_err(io_err(folder))?;
        for entry in entries {
            let entry = entry.map_err(io_err(folder))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let path = entry.path();
            if name.starts_with(STAGING_PREFIX) {
                let Some(run) = proof(&path) else { continue };
                remove_ours(&path).map_err(io_err(&path))?;
                done.push(format!(
                    "removed {prefix}{name}, left by an interrupted run ({run})"
                ));
            } else if let Some(partition) = name.strip_prefix(ASIDE_PREFIX) {
                if partition.is_empty() || proof(&path).is_none() {
                    continue;
                }
                let target = folder.join(partition);
                if exists(&target).map_err(io_err(&target))? {
                    remove_ours(&path).map_err(io_err(&path))?;
                    done.push(format!(
                        "removed {prefix}{name}, the partition an interrupted run had replaced"
                    ));
                } else {
                    fs::rename(&path, &target).map_err(io_err(&path))?;
                    sync_dir(folder).map_err(io_err(folder))?;
                    done.push(format!(
                        "restored {prefix}{partition} from {prefix}{name}: an interrupted run had moved it aside"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Creates the staging folder `DIR/<table>/.tmp-<run_id>/` for a partition that will
    /// become `DIR/<table>/<partition>`, with churnclv's marker written first (and the table
    /// folder, if it is new). Fails at once (before any heavy writing) if the table folder is
    /// not a folder, or `DIR/<table>/<partition>` exists and is not churnclv's.
    pub fn stage(
        &self,
        table: &str,
        partition: &str,
        run_id: &str,
    ) -> Result<Staging<'_>, PublishError> {
        let folder = self.dir.join(table);
        match fs::symlink_metadata(&folder) {
            Err(e) if e.kind() == ErrorKind::NotFound => match fs::create_dir(&folder) {
                Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(io_err(&folder)(e)),
                _ => sync_dir(&self.dir).map_err(io_err(&self.dir))?,
            },
            Err(e) => return Err(io_err(&folder)(e)),
            Ok(meta) if meta.is_dir() => {}
            // A file or a link where the table folder goes: never written through.
            Ok(_) => return Err(PublishError::NotOurs { path: folder }),
        }
        let dir = folder.join(format!("{STAGING_PREFIX}{run_id}"));
        let target = folder.join(partition);
        let partition = format!("{table}/{partition}");
        let partition = partition.as_str();
        if exists(&target).map_err(io_err(&target))? && proof(&target).is_none() {
            return Err(PublishError::NotOurs { path: target });
        }
        // Serialised with the signal handler: it either sees no folder, or a marked one.
        let mut state = interrupt::state();
        if interrupt::stopping() {
            return Err(PublishError::Stopped {
                partition: partition.to_string(),
            });
        }
        match fs::symlink_metadata(&dir) {
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&dir)(e)),
            Ok(_) if proof(&dir).is_some() => remove_ours(&dir).map_err(io_err(&dir))?,
            // What a removal cut short between the marker and the folder leaves.
            Ok(meta) if meta.is_dir() && is_empty(&dir) => {
                fs::remove_dir(&dir).map_err(io_err(&dir))?
            }
            Ok(_) => return Err(PublishError::NotOurs { path: dir }),
        }
        fs::create_dir(&dir).map_err(io_err(&dir))?;
        let marker = serde_json::json!({
            "writer": "churnclv",
            "version": env!("CARGO_PKG_VERSION"),
            "run_id": run_id,
            "partition": partition,
        });
        if let Err(e) = write_synced(&dir.join(MARKER), format!("{marker}\n").as_bytes()) {
            let _ = fs::remove_file(dir.join(MARKER));
            let _ = fs::remove_dir(&dir);
            return Err(io_err(&dir)(e));
        }
        state.register(&dir);
        drop(state);
        let staging = Staging {
            dir,
            target,
            partition: partition.to_string(),
            published: false,
            _lock: self,
        };
        fault("stage-after-marker").map_err(io_err(&staging.dir))?;
        Ok(staging)
    }
}

/// The pid written in the lock file by its holder. Read twice a little apart until both
/// reads agree on a number: a holder that has just taken the lock may not have replaced the
/// previous holder's pid yet.
fn holder_pid(path: &Path) -> String {
    let read = || {
        fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
    };
    for _ in 0..25 {
        let first = read();
        std::thread::sleep(Duration::from_millis(20));
        if first.is_some() && first == read() {
            if let Some(pid) = first {
                return pid.to_string();
            }
        }
    }
    "unknown".to_string()
}

/// A partition being assembled in `DIR/<table>/.tmp-<run_id>/` under the folder's lock;
/// [`publish_run`] puts it in place. Dropping an unpublished staging folder removes it.
#[derive(Debug)]
pub struct Staging<'lock> {
    dir: PathBuf,
    target: PathBuf,
    /// `<table>/<partition>`, for messages.
    partition: String,
    /// Set once the new partition is in place: from then on, whatever is at `dir` is the
    /// partition it replaced.
    published: bool,
    _lock: &'lock RunLock,
}

impl Staging<'_> {
    /// Path of a file inside the staging folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Final location of the partition.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Puts the folder in place: renamed when the partition is new, swapped in one step with the existing one otherwise (two renames
    /// where the filesystem cannot swap). `may_stop`: whether a SIGTERM/SIGINT that has
    /// arrived still stops it (not once an earlier partition of the run is in place). Errors
    /// after the new partition is in place (removing the old one, syncing the folder) are
    /// logged warnings, not failures: the next run tidies up.
    fn publish_locked(&mut self, may_stop: bool) -> Result<PathBuf, PublishError> {
        // The last moment to stop: the next step changes what readers see.
        if may_stop {
            self.check_stop()?;
        }
        let parent = self.target.parent().unwrap_or(Path::new(".")).to_path_buf();
        if !exists(&self.target).map_err(io_err(&self.target))? {
            fault("publish-before-rename").map_err(io_err(&self.target))?;
            rename_new(&self.dir, &self.target).map_err(io_err(&self.target))?;
            self.published = true;
            self.after_commit("publish-after-rename", fault("publish-after-rename"));
        } else {
            if proof(&self.target).is_none() {
                return Err(PublishError::NotOurs {
                    path: self.target.clone(),
                });
            }
            fault("publish-before-exchange").map_err(io_err(&self.target))?;
            match exchange(&self.dir, &self.target) {
                Ok(()) => {
                    self.published = true;
                    self.after_commit("publish-after-exchange", fault("publish-after-exchange"));
                    self.after_commit("syncing the output folder", sync_dir(&parent));
                    // The replaced partition is now at the staging name, marked as ours.
                    let removed =
                        fault("publish-before-remove-old").and_then(|()| remove_ours(&self.dir));
                    self.after_commit("removing the replaced partition", removed);
                    self.after_commit(
                        "publish-after-remove-old",
                        fault("publish-after-remove-old"),
                    );
                }
                Err(e) if unsupported(&e) => self.replace_in_two_renames(e)?,
                Err(e) => return Err(io_err(&self.target)(e)),
            }
        }
        self.after_commit("syncing the output folder", sync_dir(&parent));
        Ok(self.target.clone())
    }

    fn check_stop(&self) -> Result<(), PublishError> {
        if interrupt::stopping() {
            return Err(PublishError::Stopped {
                partition: self.partition.clone(),
            });
        }
        Ok(())
    }

    /// The fallback where the filesystem cannot swap two folders in one step (NFS, some
    /// FUSE filesystems, kernels before 3.15): the old partition is renamed aside, the new one
    /// renamed in. For that moment `DIR/<partition>` is absent; a run killed then leaves the
    /// old partition as `.old.<partition>` (marked), which the next run puts back.
    fn replace_in_two_renames(&mut self, why: std::io::Error) -> Result<(), PublishError> {
        let parent = self.target.parent().unwrap_or(Path::new(".")).to_path_buf();
        let name = self
            .target
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        let aside = parent.join(format!("{ASIDE_PREFIX}{name}"));
        tracing::warn!(
            stage = "publish",
            "{}: this filesystem cannot swap two folders in one step ({why}); replacing the partition with two renames instead: it is absent for a moment, and kept as {} until the new one is in place",
            self.target.display(),
            aside.display()
        );
        match fs::symlink_metadata(&aside) {
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&aside)(e)),
            Ok(_) if proof(&aside).is_some() => remove_ours(&aside).map_err(io_err(&aside))?,
            Ok(_) => return Err(PublishError::NotOurs { path: aside }),
        }
        fs::rename(&self.target, &aside).map_err(io_err(&self.target))?;
        let moved_in = fault("publish-fallback-after-aside")
            .and_then(|()| fs::rename(&self.dir, &self.target));
        if let Err(e) = moved_in {
            // Put the previous good partition back before reporting the failure.
            if let Err(back) = fs::rename(&aside, &self.target) {
                tracing::error!(
                    stage = "publish",
                    "{}: cannot put the previous partition back from {} ({back}); the next run restores it",
                    self.target.display(),
                    aside.display()
                );
            }
            return Err(io_err(&self.target)(e));
        }
        self.published = true;
        self.after_commit(
            "publish-fallback-after-rename",
            fault("publish-fallback-after-rename"),
        );
        self.after_commit("syncing the output folder", sync_dir(&parent));
        self.after_commit("removing the replaced partition", remove_ours(&aside));
        Ok(())
    }

    /// A step after the new partition is in place: a failure is a warning (the partition is
    /// published; the next run removes what is left over).
    fn after_commit(&self, step: &str, result: std::io::Result<()>) {
        if let Err(e) = result {
            tracing::warn!(
                stage = "publish",
                "{} is published, but {step} failed: {e}; the next run in {} tidies up",
                self.target.display(),
                self.target.parent().unwrap_or(Path::new(".")).display()
            );
        }
    }
}

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

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        let mut state = interrupt::state();
        let mut removed = false;
        if !self.published {
            match remove_ours(&self.dir) {
                Ok(()) => removed = true,
                Err(e) => tracing::warn!(
                    stage = "publish",
                    "{}: cannot remove the unfinished staging folder ({e}); the next run removes it",
                    self.dir.display()
                ),
            }
        }
        state.forget(&self.dir, removed);
    }
}

/// Removes a staging folder of this process when a signal stops the run (called by the
/// signal handler, holding the state). The folder is first renamed (still `.tmp-*`, still
/// marked) so that a thread still writing into it cannot add files while it is removed.
/// Returns whether there was a folder to remove.
pub(crate) fn discard(dir: &Path) -> std::io::Result<bool> {
    if proof(dir).is_none() {
        return Ok(false);
    }
    let mut stopped = dir.as_os_str().to_os_string();
    stopped.push(".stopped");
    let stopped = PathBuf::from(stopped);
    let target = match fs::rename(dir, &stopped) {
        Ok(()) => stopped,
        Err(_) => dir.to_path_buf(),
    };
    remove_ours(&target)?;
    Ok(true)
}

/// Proof that a folder is churnclv's: its marker (returns the run id it names), or, for
/// partitions published before markers existed, a `manifest.json` with churnclv's `run_id`
/// and `crate_version`. Symbolic links are never ours.
fn proof(dir: &Path) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Marker {
        writer: String,
        run_id: String,
    }
    if !fs::symlink_metadata(dir).ok()?.is_dir() {
        return None;
    }
    if let Ok(text) = fs::read(dir.join(MARKER)) {
        if let Ok(m) = serde_json::from_slice::<Marker>(&text) {
            if m.writer == "churnclv" {
                return Some(format!("run {}", m.run_id));
            }
        }
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join(MANIFEST)).ok()?).ok()?;
    let run = manifest.get("run_id")?.as_str()?;
    manifest.get("crate_version")?.as_str()?;
    Some(format!("run {run}, before markers"))
}

/// Removes a folder [`proof`] has shown to be churnclv's. The proof files go last, so a
/// removal cut short by a kill leaves a folder the next run can still prove is churnclv's and
/// finish removing.
fn remove_ours(dir: &Path) -> std::io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if name == MARKER || name == MANIFEST {
            continue;
        }
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
        fault("remove-after-entry")?;
    }
    match fs::remove_file(dir.join(MANIFEST)) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
        _ => fault("remove-before-marker")?,
    }
    // From here to the end (two system calls) a kill leaves an empty folder, which nothing
    // proves to be churnclv's any more: it is left alone (docs/operations.md).
    match fs::remove_file(dir.join(MARKER)) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    match fs::remove_dir(dir) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn exists(path: &Path) -> std::io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn is_empty(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}

/// Swaps two folders in one step (`renameat2(RENAME_EXCHANGE)`).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    // `return` at this point stands for a filesystem that refuses the swap (tests of the
    // fallback).
    if fault("publish-exchange").is_err() {
        return Err(Errno::INVAL.into());
    }
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(Into::into)
}

/// Renames a folder to a name that must not exist (`RENAME_NOREPLACE`; a plain rename where
/// the filesystem does not support the flag).
fn rename_new(from: &Path, to: &Path) -> std::io::Result<()> {
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(e) if unsupported(&e.into()) => fs::rename(from, to),
        Err(e) => Err(e.into()),
    }
}

/// The errors by which a filesystem or kernel refuses `renameat2` flags.
fn unsupported(e: &std::io::Error) -> bool {
    [Errno::INVAL, Errno::NOSYS, Errno::OPNOTSUPP]
        .iter()
        .any(|errno| e.raw_os_error() == Some(errno.raw_os_error()))
}

/// Makes a folder's entries durable (renames and new files inside it).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Test-only fault injection at a named step (cargo feature `failpoints`; in normal builds
/// this does nothing). Points are set by the `FAILPOINTS` environment variable with the `fail`
/// crate's syntax (`name=action;name=action`), read once: `return(kill)` kills the process on
/// the spot with SIGKILL (no destructors, no clean-up), `return` makes the step fail with an
/// I/O error, `sleep(ms)` holds it, `N*off->…` skips the first N passes.
pub(crate) fn fault(point: &'static str) -> std::io::Result<()> {
    #[cfg(feature = "failpoints")]
    {
        static SETUP: std::sync::Once = std::sync::Once::new();
        // The scenario holds the crate's global lock for the life of the process.
        SETUP.call_once(|| std::mem::forget(fail::FailScenario::setup()));
        fail::fail_point!(point, |arg: Option<String>| {
            if arg.as_deref() == Some("kill") {
                let _ = rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::KILL,
                );
            }
            Err(std::io::Error::other(format!(
                "injected failure at {point}"
            )))
        });
    }
    let _ = point;
    Ok(())
}
