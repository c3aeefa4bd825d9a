//! A private scratch folder beside an output file, for the intermediate files of one run
//! (`generate`'s sorted runs): created new, marked as churnclv's, removed when dropped — at
//! the end, on an error — and by the SIGTERM / SIGINT handler.
//!
//! The folder is `.<file name>.<purpose>-<pid>` in the output's folder (a numbered suffix if
//! that name is taken), made with one `mkdir` that fails on anything already there, so a run
//! never writes into or removes a folder it did not create: a folder left by a killed run
//! (SIGKILL, a power cut) is left alone and does not stop the next run, which picks another
//! name. Such a leftover carries the marker of [`super::publish`] and can be deleted by hand.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::interrupt;
use super::output::{write_synced, OutputError};
use super::publish::{discard, MARKER};

/// Names tried after the plain one before giving up (another process would have to hold
/// them all).
const MAX_SUFFIX: u32 = 1_000;

/// A scratch folder this process created; removed with its files when dropped.
#[derive(Debug)]
pub struct ScratchDir {
    dir: PathBuf,
}

impl ScratchDir {
    /// Creates a new scratch folder for `file` (the output it serves) in `file`'s folder,
    /// which must exist.
    pub fn beside(file: &Path, purpose: &str) -> Result<Self, OutputError> {
        let parent = match file.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => p,
            None => Path::new("."),
        };
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let base = format!(".{name}.{purpose}-{}", std::process::id());
        // Serialised with the signal handler: it either sees no folder, or a marked one.
        let mut state = interrupt::state();
        let dir = create_new_dir(parent, &base)?;
        let marker = serde_json::json!({
            "writer": "churnclv",
            "version": env!("CARGO_PKG_VERSION"),
            "run_id": base,
            "partition": format!("scratch of {}", file.display()),
        });
        if let Err(e) = write_synced(&dir.join(MARKER), format!("{marker}\n").as_bytes()) {
            let _ = fs::remove_file(dir.join(MARKER));
            let _ = fs::remove_dir(&dir);
            return Err(OutputError::Io {
                path: dir,
                source: e,
            });
        }
        state.register(&dir);
        Ok(ScratchDir { dir })
    }

    /// The folder's path.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

/// Makes `parent/base`, or `parent/base-1`, `-2` … when the name is taken.
fn create_new_dir(parent: &Path, base: &str) -> Result<PathBuf, OutputError> {
    let mut last = None;
    for k in 0..=MAX_SUFFIX {
        let dir = match k {
            0 => parent.join(base),
            k => parent.join(format!("{base}-{k}")),
        };
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some((dir, e)),
            Err(source) => return Err(OutputError::Io { path: dir, source }),
        }
    }
    let (path, source) = last.unwrap_or_else(|| {
        (
            parent.join(base),
            std::io::Error::from(ErrorKind::AlreadyExists),
        )
    });
    Err(OutputError::Io { path, source })
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let mut state = interrupt::state();
        let removed = discard(&self.dir);
        state.forget(&self.dir, matches!(removed, Ok(true)));
        if let Err(e) = removed {
            tracing::warn!(
                "{}: cannot remove the scratch folder ({e}); it can be deleted",
                self.dir.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each scratch folder is new (a taken name, here a leftover of a killed run with the
    /// same pid, gets a suffix and is never entered), and dropping one removes it and only it.
    #[test]
    fn new_folders_beside_the_output_removed_on_drop() {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("events.parquet");
        let leftover = dir
            .path()
            .join(format!(".events.parquet.generate-{}", std::process::id()));
        fs::create_dir(&leftover).expect("leftover");
        fs::write(leftover.join("run-00000.bin"), b"old").expect("old run");
        fs::write(dir.path().join("notes.txt"), b"mine").expect("other file");

        let a = ScratchDir::beside(&out, "generate").expect("a");
        let b = ScratchDir::beside(&out, "generate").expect("b");
        assert_ne!(a.path(), b.path());
        assert_ne!(a.path(), leftover.as_path());
        assert!(a.path().join(MARKER).is_file());
        fs::write(a.path().join("run-00000.bin"), b"new").expect("run");
        drop(a);
        drop(b);

        let mut names: Vec<String> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let leftover_name = leftover
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        assert_eq!(names, [leftover_name, "notes.txt".to_string()]);
        assert_eq!(
            fs::read(leftover.join("run-00000.bin")).expect("old"),
            b"old"
        );
    }
}
