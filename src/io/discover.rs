//! Finding the input files: a file, a folder searched recursively for `*.parquet` (hive-style
//! `key=value/` folders allowed), or a glob, walked by our own walker so that links to folders
//! are followed only when asked, a link loop ends, and each real file is listed once
//! (identified by its canonical path). Opening the files is `io::input`'s.

use std::path::{Path, PathBuf};

use super::input::InputError;

/// How input files are found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiscoverOptions {
    /// Follow symbolic links to directories met while walking a folder or expanding a glob
    /// (`--follow-links`). Off by default: a `latest -> 2025-12-30/` link beside the dated
    /// folder, or a link back up the tree, would otherwise read the same files again.
    pub follow_links: bool,
}

/// Something found under the input path and left out, with why (logged at warn, listed in
/// the manifest).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// One Parquet file found under the input path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// As reached from the input path (what messages and rejects.parquet name).
    pub path: PathBuf,
    /// Absolute, with every symbolic link resolved: what identifies the file.
    pub canonical: PathBuf,
}

/// Lists the Parquet files named by `spec`: a file, a directory searched recursively for
/// `*.parquet`, or a glob (`*`, `?`, `[…]` within a name, `**` for any number of folders; a
/// folder it matches is searched recursively). Names that start with `.` or `_` are skipped
/// while searching (as Spark and Hive do) unless the pattern spells that character.
///
/// Every file is read once: files are identified by their canonical path, so a file link to a
/// listed file, two globs reaching one file or a folder reached twice add nothing. Links to
/// directories met while searching are skipped (and reported) unless
/// `options.follow_links`; when followed, each real folder is searched once, so a link
/// back up the tree ends. The path given itself (and a glob's literal folders) may be a link.
/// Files come sorted by canonical path; of several paths to one file the one without a link
/// is kept, else the first.
pub fn discover_with(
    spec: &str,
    options: DiscoverOptions,
) -> Result<(Vec<Found>, Vec<Skipped>), InputError> {
    let path = Path::new(spec);
    let mut walk = Walk {
        options,
        visited: std::collections::HashSet::new(),
        files: Vec::new(),
        skipped: Vec::new(),
    };
    if spec.contains(['*', '?', '[']) && !path.exists() {
        let (prefix, rest) = split_glob(spec)?;
        if prefix.as_os_str().is_empty() || prefix.is_dir() {
            walk.glob(&prefix, &rest)?;
        }
    } else {
        let meta = std::fs::metadata(path).map_err(|_| InputError::Missing(path.to_path_buf()))?;
        if meta.is_file() {
            walk.files.push(path.to_path_buf());
        } else {
            walk.dir(path)?;
        }
    }
    let Walk {
        files, mut skipped, ..
    } = walk;
    // One entry per real file: prefer a path without links, then the first by path.
    let mut found: Vec<(Found, bool)> = files
        .into_iter()
        .map(|p| {
            let canonical = std::fs::canonicalize(&p).map_err(|source| InputError::Io {
                path: p.clone(),
                source,
            })?;
            let linked = std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink());
            Ok((Found { path: p, canonical }, linked))
        })
        .collect::<Result<_, InputError>>()?;
    found.sort_by(|(a, al), (b, bl)| {
        a.canonical
            .cmp(&b.canonical)
            .then(al.cmp(bl))
            .then(a.path.cmp(&b.path))
    });
    let mut kept: Vec<Found> = Vec::with_capacity(found.len());
    for (f, _) in found {
        match kept.last() {
            Some(k) if k.canonical == f.canonical => {
                if k.path != f.path {
                    skipped.push(Skipped {
                        reason: format!("same file as {} (read once)", k.path.display()),
                        path: f.path,
                    });
                }
            }
            _ => kept.push(f),
        }
    }
    // `kept` is in canonical order: the order files are read in (which decides, e.g., which
    // of two duplicate rows is kept) does not depend on how the input was spelled either.
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    skipped.dedup();
    if kept.is_empty() {
        let links: Vec<String> = skipped
            .iter()
            .map(|s| s.path.display().to_string())
            .collect();
        return Err(if links.is_empty() {
            InputError::NoFiles(path.to_path_buf())
        } else {
            InputError::OnlyLinks {
                path: path.to_path_buf(),
                links: links.join(", "),
            }
        });
    }
    Ok((kept, skipped))
}

/// One part of a glob after its literal folder.
#[derive(Debug)]
enum GlobPart {
    /// `**`: any number of folders, including none.
    AnyFolders,
    /// One name: the pattern, and whether it spells a leading `.` or `_` itself.
    Name(glob::Pattern, bool),
}

/// Splits a glob into the longest leading folder without wildcards (followed even if it is a
/// link: the user named it) and the pattern parts after it.
fn split_glob(spec: &str) -> Result<(PathBuf, Vec<GlobPart>), InputError> {
    let bad = |e: glob::PatternError| InputError::Glob {
        pattern: spec.to_string(),
        message: e.msg.to_string(),
    };
    glob::Pattern::new(spec).map_err(bad)?;
    let mut prefix = PathBuf::new();
    let mut rest = Vec::new();
    for c in Path::new(spec).components() {
        let text = c.as_os_str().to_string_lossy();
        let wild = text.contains(['*', '?', '[']);
        if rest.is_empty() && !wild {
            prefix.push(c);
        } else if text == "**" {
            rest.push(GlobPart::AnyFolders);
        } else {
            let explicit = text.starts_with(['.', '_']);
            rest.push(GlobPart::Name(
                glob::Pattern::new(&text).map_err(bad)?,
                explicit,
            ));
        }
    }
    Ok((prefix, rest))
}

/// State of one discovery.
struct Walk {
    options: DiscoverOptions,
    /// Real folders already searched, with the glob parts they were searched for
    /// (`usize::MAX`: searched whole).
    visited: std::collections::HashSet<(PathBuf, usize)>,
    files: Vec<PathBuf>,
    skipped: Vec<Skipped>,
}

/// What a directory entry is, links resolved as the options allow.
enum Kind {
    File,
    Dir,
    /// A link to a folder, not followed.
    SkippedDir,
    Other,
}

impl Walk {
    fn io(path: &Path) -> impl Fn(std::io::Error) -> InputError + '_ {
        move |source| InputError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Marks a folder as searched for `key`; false when it already was (a link loop or a
    /// second way to the same folder).
    fn first_visit(&mut self, dir: &Path, key: usize) -> Result<bool, InputError> {
        let real = std::fs::canonicalize(dir).map_err(Self::io(dir))?;
        Ok(self.visited.insert((real, key)))
    }

    /// The entries of a folder, sorted by name, without `.`/`_` names unless `keep_special`.
    fn entries(dir: &Path) -> Result<Vec<(String, PathBuf, std::fs::FileType)>, InputError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(Self::io(dir))? {
            let entry = entry.map_err(Self::io(dir))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(Self::io(&path))?;
            out.push((entry.file_name().to_string_lossy().into_owned(), path, kind));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Classifies an entry from `read_dir` (its own type, not its target's), following a link
    /// to a folder only when the options say so. A dangling link counts as a file, so that a
    /// `*.parquet` one fails loudly when opened.
    fn kind(&mut self, path: &Path, ft: std::fs::FileType) -> Kind {
        if ft.is_symlink() {
            match std::fs::metadata(path) {
                Ok(m) if m.is_dir() => {
                    if self.options.follow_links {
                        Kind::Dir
                    } else {
                        self.skipped.push(Skipped {
                            path: path.to_path_buf(),
                            reason: "link to a folder, not followed (use --follow-links)".into(),
                        });
                        Kind::SkippedDir
                    }
                }
                Ok(m) if m.is_file() => Kind::File,
                Ok(_) => Kind::Other,
                Err(_) => Kind::File,
            }
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else {
            Kind::Other
        }
    }

    /// Every `*.parquet` under `dir`, recursively.
    fn dir(&mut self, dir: &Path) -> Result<(), InputError> {
        if !self.first_visit(dir, usize::MAX)? {
            return Ok(());
        }
        for (name, path, ft) in Self::entries(dir)? {
            if name.starts_with(['.', '_']) {
                continue;
            }
            match self.kind(&path, ft) {
                Kind::Dir => self.dir(&path)?,
                Kind::File if name.ends_with(".parquet") => self.files.push(path),
                _ => {}
            }
        }
        Ok(())
    }

    /// The matches of the glob parts `rest` under `dir`.
    fn glob(&mut self, dir: &Path, rest: &[GlobPart]) -> Result<(), InputError> {
        let here = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let Some((part, tail)) = rest.split_first() else {
            // The whole pattern matched this folder: search it.
            return self.dir(here);
        };
        if !self.first_visit(here, rest.len())? {
            return Ok(());
        }
        if let GlobPart::AnyFolders = part {
            // None of the folders…
            self.glob(dir, tail)?;
        }
        for (name, _, ft) in Self::entries(here)? {
            let path = dir.join(&name);
            match part {
                GlobPart::AnyFolders => {
                    // …or one more, then any number again.
                    if !name.starts_with(['.', '_']) {
                        if let Kind::Dir = self.kind(&path, ft) {
                            self.glob(&path, rest)?;
                        }
                    }
                }
                GlobPart::Name(pattern, explicit) => {
                    if (!explicit && name.starts_with(['.', '_'])) || !pattern.matches(&name) {
                        continue;
                    }
                    match self.kind(&path, ft) {
                        Kind::Dir => self.glob(&path, tail)?,
                        Kind::File if tail.is_empty() => self.files.push(path),
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }
}
