//! The repair of what a killed run left in an output folder, under its lock: marked staging
//! folders removed, a partition kept aside put back or removed; nothing else touched.

use std::fs;
use std::path::Path;

use super::fs_ops::{exists, sync_dir};
use super::proof::{proof, remove_ours};
use super::{io_err, PublishError, RunLock, ASIDE_PREFIX, RUNS, STAGING_PREFIX, TABLES};

impl RunLock {
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
}
