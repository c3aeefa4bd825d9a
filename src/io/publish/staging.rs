//! A partition being assembled: the marked staging folder `DIR/<table>/.tmp-<run_id>/`, its
//! swap into place (one step, or two renames where the filesystem cannot swap), its removal
//! when dropped unpublished or when a signal stops the run.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::io::interrupt;
use crate::io::output::write_synced;

use super::fs_ops::{exchange, exists, is_empty, rename_new, sync_dir, unsupported};
use super::proof::{proof, remove_ours};
use super::{fault, io_err, PublishError, RunLock};
use super::{ASIDE_PREFIX, MARKER, STAGING_PREFIX};

impl RunLock {
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

/// A partition being assembled in `DIR/<table>/.tmp-<run_id>/` under the folder's lock;
/// [`publish_run`] puts it in place. Dropping an unpublished staging folder removes it.
#[derive(Debug)]
pub struct Staging<'lock> {
    pub(super) dir: PathBuf,
    pub(super) target: PathBuf,
    /// `<table>/<partition>`, for messages.
    partition: String,
    /// Set once the new partition is in place: from then on, whatever is at `dir` is the
    /// partition it replaced.
    pub(super) published: bool,
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
    pub(super) fn publish_locked(&mut self, may_stop: bool) -> Result<PathBuf, PublishError> {
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

    pub(super) fn check_stop(&self) -> Result<(), PublishError> {
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
