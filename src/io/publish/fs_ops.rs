//! The filesystem calls publishing is made of: existence without following links, the
//! one-step swap (`renameat2(RENAME_EXCHANGE)`), the rename that never replaces, folder sync.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::Path;

use rustix::fs::{renameat_with, RenameFlags, CWD};
use rustix::io::Errno;

use super::fault;

pub(super) fn exists(path: &Path) -> std::io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

pub(super) fn is_empty(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}

/// Swaps two folders in one step (`renameat2(RENAME_EXCHANGE)`).
pub(super) fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    // `return` at this point stands for a filesystem that refuses the swap (tests of the
    // fallback).
    if fault("publish-exchange").is_err() {
        return Err(Errno::INVAL.into());
    }
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(Into::into)
}

/// Renames a folder to a name that must not exist (`RENAME_NOREPLACE`; a plain rename where
/// the filesystem does not support the flag).
pub(super) fn rename_new(from: &Path, to: &Path) -> std::io::Result<()> {
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(e) if unsupported(&e.into()) => fs::rename(from, to),
        Err(e) => Err(e.into()),
    }
}

/// The errors by which a filesystem or kernel refuses `renameat2` flags.
pub(super) fn unsupported(e: &std::io::Error) -> bool {
    [Errno::INVAL, Errno::NOSYS, Errno::OPNOTSUPP]
        .iter()
        .any(|errno| e.raw_os_error() == Some(errno.raw_os_error()))
}

/// Makes a folder's entries durable (renames and new files inside it).
pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
