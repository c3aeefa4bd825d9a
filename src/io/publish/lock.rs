//! The output folder's lock: `DIR/.churnclv.lock` held with `flock(2)` for the life of the
//! process (the kernel releases it however the process ends), and the holder's pid for the
//! message of a run that finds it taken.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;

use super::{fault, LockError, LOCK_FILE};

/// The exclusive lock of an output folder, held until this value is dropped or the process
/// ends. Every write into the folder (recovery, staging, publishing) goes through it.
#[derive(Debug)]
pub struct RunLock {
    pub(super) dir: PathBuf,
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
