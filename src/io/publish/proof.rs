//! What proves a folder is churnclv's (its marker, or a churnclv `manifest.json` from before
//! markers), and the removal of such a folder with the proof files last.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use super::{fault, MANIFEST, MARKER};

/// Proof that a folder is churnclv's: its marker (returns the run id it names), or, for
/// partitions published before markers existed, a `manifest.json` with churnclv's `run_id`
/// and `crate_version`. Symbolic links are never ours.
pub(super) fn proof(dir: &Path) -> Option<String> {
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
pub(super) fn remove_ours(dir: &Path) -> std::io::Result<()> {
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
