//! Output paths checked in the plan stage: a path the job can never write to is a usage error
//! (exit code 2) naming the flag and the path, found before any event is read — not an
//! internal error after minutes of work.
//!
//! The checks create nothing: a run that then fails on its input leaves no empty folder
//! behind. A file target's parent, when it exists, is probed with a small file created and
//! removed at once (a read-only folder or file system is only found by trying; permission bits
//! say nothing when the job runs as root).

use std::fs;
use std::path::{Path, PathBuf};

/// Why an output path cannot be used (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{flag} {path}: is a folder; expected the path of a file to write")]
    IsFolder { flag: &'static str, path: PathBuf },
    #[error("{flag} {path}: {blocker} is not a folder")]
    NotFolder {
        flag: &'static str,
        path: PathBuf,
        blocker: PathBuf,
    },
    #[error("{flag} {path}: cannot create folder")]
    CreateFolder {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{flag} {path}: cannot write in {dir}")]
    NotWritable {
        flag: &'static str,
        path: PathBuf,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `path` will be written as one file (`features --out FILE`, `generate --out FILE`): it must
/// not be a folder, its nearest existing ancestor must be a folder, and an existing parent
/// must accept a new file.
pub fn check_file(flag: &'static str, path: &Path) -> Result<(), TargetError> {
    if path.is_dir() {
        return Err(TargetError::IsFolder {
            flag,
            path: path.to_path_buf(),
        });
    }
    let parent = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => p,
        None => Path::new("."),
    };
    check_ancestors(flag, path, parent)?;
    if parent.is_dir() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let probe = parent.join(format!(".{name}.churnclv-probe-{}", std::process::id()));
        let created = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe);
        match created {
            Ok(_) => {
                let _ = fs::remove_file(&probe);
            }
            Err(source) => {
                return Err(TargetError::NotWritable {
                    flag,
                    path: path.to_path_buf(),
                    dir: parent.to_path_buf(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// `path` is an output folder (`run --out DIR`, `score --out DIR`): it is a folder or can be
/// created as one (nothing on the way is a file). Whether it accepts files is found when the
/// run takes its lock there.
pub fn check_folder(flag: &'static str, path: &Path) -> Result<(), TargetError> {
    check_ancestors(flag, path, path)
}

/// Creates the folder `dir` (and its parents) for the output `path` given by `flag`.
pub fn create_folder(flag: &'static str, path: &Path, dir: &Path) -> Result<(), TargetError> {
    fs::create_dir_all(dir).map_err(|source| TargetError::CreateFolder {
        flag,
        path: path.to_path_buf(),
        source,
    })
}

/// The nearest existing ancestor of `from` (itself included) must be a folder.
fn check_ancestors(flag: &'static str, path: &Path, from: &Path) -> Result<(), TargetError> {
    let mut at = Some(from);
    while let Some(p) = at {
        let p = if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        };
        // symlink_metadata would reject a symlinked folder; metadata follows links, as the
        // writes will.
        if let Ok(meta) = fs::metadata(p) {
            if meta.is_dir() {
                return Ok(());
            }
            return Err(TargetError::NotFolder {
                flag,
                path: path.to_path_buf(),
                blocker: p.to_path_buf(),
            });
        }
        at = p.parent();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "churnclv-target-{}-{}",
            std::process::id(),
            std::thread::current()
                .name()
                .unwrap_or("t")
                .replace("::", "-")
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("tmp");
        d
    }

    #[test]
    fn file_targets() {
        let d = tmp();
        assert!(check_file("--out", &d.join("f.parquet")).is_ok());
        assert!(check_file("--out", &d.join("new/deeper/f.parquet")).is_ok());
        assert!(!d.join("new").exists(), "a check creates nothing");
        let e = check_file("--out", &d).map_err(|e| e.to_string()).err();
        assert_eq!(
            e,
            Some(format!(
                "--out {}: is a folder; expected the path of a file to write",
                d.display()
            ))
        );
        let file = d.join("plain");
        fs::write(&file, b"x").expect("write");
        let under = file.join("sub/f.parquet");
        let e = check_file("--out", &under).map_err(|e| e.to_string()).err();
        assert_eq!(
            e,
            Some(format!(
                "--out {}: {} is not a folder",
                under.display(),
                file.display()
            ))
        );
        let names: Vec<_> = fs::read_dir(&d).expect("ls").flatten().collect();
        assert_eq!(names.len(), 1, "the probe file is removed");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn folder_targets() {
        let d = tmp();
        assert!(check_folder("--out", &d).is_ok());
        assert!(check_folder("--out", &d.join("a/b")).is_ok());
        let file = d.join("plain");
        fs::write(&file, b"x").expect("write");
        assert!(matches!(
            check_folder("--out", &file),
            Err(TargetError::NotFolder { .. })
        ));
        let e = create_folder("--out", &file.join("x"), &file.join("x"))
            .map_err(|e| e.to_string())
            .err();
        assert_eq!(
            e,
            Some(format!(
                "--out {}: cannot create folder",
                file.join("x").display()
            ))
        );
        let _ = fs::remove_dir_all(&d);
    }
}
