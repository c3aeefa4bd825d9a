//! Finding and opening the input: a file, a directory (recursive, hive-style `key=value/`
//! folders), or a glob. Each file's footer is read once, its columns are resolved against the
//! column mapping and type-checked before any row is read.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use arrow_schema::{DataType, Schema};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::ProjectionMask;

use crate::config::Columns;

/// Problems with the input itself (exit code 2). Every message names the file and the column.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{0}: no such file or directory")]
    Missing(PathBuf),
    #[error("{0}: no Parquet files found (looked for *.parquet, recursively)")]
    NoFiles(PathBuf),
    #[error("{path}: no Parquet files found (looked for *.parquet, recursively; links to folders not followed: {links}; use --follow-links to read them)")]
    OnlyLinks { path: PathBuf, links: String },
    #[error("{pattern}: invalid glob pattern: {message}")]
    Glob { pattern: String, message: String },
    #[error("{path}: cannot read")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: not a Parquet file (no PAR1 magic)")]
    NotParquet(PathBuf),
    #[error("{0}: truncated Parquet file (no footer at the end)")]
    Truncated(PathBuf),
    #[error("{path}: corrupt Parquet file: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("{path}: missing required column '{column}'{mapped}; found columns: {found}")]
    MissingColumn {
        path: PathBuf,
        column: &'static str,
        mapped: String,
        found: String,
    },
    #[error("{path}: column '{column}' has type {found}; expected {expected}")]
    WrongType {
        path: PathBuf,
        column: String,
        found: DataType,
        expected: &'static str,
    },
    #[error("{path}: row group {row_group}: {message}")]
    Read {
        path: PathBuf,
        row_group: usize,
        message: String,
    },
    #[error("{path}: no usable rows ({read} read; rejected: {reasons})")]
    NoUsableRows {
        path: String,
        read: u64,
        reasons: String,
    },
}

/// The logical columns churnclv reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    CustomerId,
    EventTime,
    EventType,
    Amount,
    Channel,
    Category,
    OrderId,
    EventId,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::CustomerId => "customer_id",
            Field::EventTime => "event_time",
            Field::EventType => "event_type",
            Field::Amount => "amount",
            Field::Channel => "channel",
            Field::Category => "category",
            Field::OrderId => "order_id",
            Field::EventId => "event_id",
        }
    }

    fn required(self) -> bool {
        matches!(
            self,
            Field::CustomerId | Field::EventTime | Field::EventType
        )
    }

    fn source_name(self, columns: &Columns) -> &str {
        match self {
            Field::CustomerId => &columns.customer_id,
            Field::EventTime => &columns.event_time,
            Field::EventType => &columns.event_type,
            Field::Amount => &columns.amount,
            Field::Channel => &columns.channel,
            Field::Category => &columns.category,
            Field::OrderId => &columns.order_id,
            Field::EventId => &columns.event_id,
        }
    }

    const ALL: [Field; 8] = [
        Field::CustomerId,
        Field::EventTime,
        Field::EventType,
        Field::Amount,
        Field::Channel,
        Field::Category,
        Field::OrderId,
        Field::EventId,
    ];
}

/// Where a logical column's values come from in one file.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A column of the file, by its name there.
    Column(String),
    /// A constant from a hive-style `key=value` folder of the file's path.
    Partition(String),
}

/// One opened input file: its footer, size and resolved columns.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// The path it was found by (named in messages and rejects.parquet).
    pub path: PathBuf,
    /// Absolute, links resolved: identifies the file (manifest, run id).
    pub canonical: PathBuf,
    pub bytes: u64,
    pub rows: u64,
    pub row_groups: usize,
    pub metadata: ArrowReaderMetadata,
    pub sources: BTreeMap<Field, Source>,
    /// First row index of each row group within the file.
    pub row_group_offsets: Vec<u64>,
}

impl InputFile {
    /// Projection of the file columns that hold `only` these fields.
    pub fn projection(&self, only: &[Field]) -> ProjectionMask {
        let schema = self.metadata.schema();
        let idx: Vec<usize> = self
            .sources
            .iter()
            .filter(|(f, _)| only.contains(f))
            .filter_map(|(_, s)| match s {
                Source::Column(name) => schema.index_of(name).ok(),
                Source::Partition(_) => None,
            })
            .collect();
        ProjectionMask::roots(self.metadata.parquet_schema(), idx)
    }
}

/// All input files, sorted by canonical path.
#[derive(Debug, Clone)]
pub struct InputSet {
    pub spec: String,
    pub files: Vec<InputFile>,
    /// Links and repeated files left out while finding the files.
    pub skipped: Vec<Skipped>,
}

impl InputSet {
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }
}

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

/// Finds the files of `spec` and opens and resolves each one (directory links not followed).
pub fn open_inputs(spec: &str, columns: &Columns) -> Result<InputSet, InputError> {
    open_inputs_with(spec, columns, DiscoverOptions::default())
}

/// [`open_inputs`] with discovery options.
pub fn open_inputs_with(
    spec: &str,
    columns: &Columns,
    options: DiscoverOptions,
) -> Result<InputSet, InputError> {
    let (found, skipped) = discover_with(spec, options)?;
    for s in &skipped {
        tracing::warn!(
            stage = "plan",
            "{}: skipped: {}",
            s.path.display(),
            s.reason
        );
    }
    let files = found
        .into_iter()
        .map(|f| {
            let mut file = open_file(&f.path, columns)?;
            file.canonical = f.canonical;
            Ok(file)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(InputSet {
        spec: spec.to_string(),
        files,
        skipped,
    })
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

/// Opens one file: checks the magic bytes, reads the footer, resolves the columns.
pub fn open_file(path: &Path, columns: &Columns) -> Result<InputFile, InputError> {
    let io = |source| InputError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let bytes = file.metadata().map_err(io)?.len();
    let mut head = [0u8; 4];
    let mut tail = [0u8; 4];
    if bytes < 12 {
        return Err(
            if bytes >= 4 && read_at(&mut file, 0, &mut head).is_ok() && &head == b"PAR1" {
                InputError::Truncated(path.to_path_buf())
            } else {
                InputError::NotParquet(path.to_path_buf())
            },
        );
    }
    read_at(&mut file, 0, &mut head).map_err(io)?;
    read_at(&mut file, bytes - 4, &mut tail).map_err(io)?;
    if &head != b"PAR1" {
        return Err(InputError::NotParquet(path.to_path_buf()));
    }
    if &tail != b"PAR1" {
        return Err(InputError::Truncated(path.to_path_buf()));
    }
    // A damaged footer can make the thrift decoder panic: caught like a page (see `guard`).
    let corrupt = |message: String| InputError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let metadata =
        super::guard::decode(|| ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()))
            .map_err(|p| corrupt(p.to_string()))?
            .map_err(|e| corrupt(e.to_string()))?;
    let sources = resolve(path, metadata.schema(), columns)?;
    let metadata = with_dictionary_text(metadata, &sources);
    let pq = metadata.metadata();
    let mut offsets = Vec::with_capacity(pq.num_row_groups());
    let mut rows = 0u64;
    for rg in pq.row_groups() {
        offsets.push(rows);
        rows += rg.num_rows().max(0) as u64;
    }
    Ok(InputFile {
        path: path.to_path_buf(),
        canonical: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
        bytes,
        rows,
        row_groups: pq.num_row_groups(),
        metadata,
        sources,
        row_group_offsets: offsets,
    })
}

/// Asks the Parquet reader for customer_id, event_type, channel and category as dictionaries
/// (their pages usually are): the validator then checks or classifies each distinct value once
/// per row group instead of once per row, and accumulators resolve each distinct customer id
/// once. Falls back to the plain schema if the reader refuses the hint.
fn with_dictionary_text(
    metadata: ArrowReaderMetadata,
    sources: &BTreeMap<Field, Source>,
) -> ArrowReaderMetadata {
    let coded: Vec<&str> = [
        Field::CustomerId,
        Field::EventType,
        Field::Channel,
        Field::Category,
    ]
    .iter()
    .filter_map(|f| match sources.get(f) {
        Some(Source::Column(name)) => Some(name.as_str()),
        _ => None,
    })
    .collect();
    let schema = metadata.schema();
    let mut changed = false;
    let fields: Vec<arrow_schema::FieldRef> = schema
        .fields()
        .iter()
        .map(|f| {
            if coded.contains(&f.name().as_str()) && *f.data_type() == DataType::Utf8 {
                changed = true;
                let dt = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
                std::sync::Arc::new(f.as_ref().clone().with_data_type(dt))
            } else {
                f.clone()
            }
        })
        .collect();
    if !changed {
        return metadata;
    }
    let hinted = std::sync::Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    ArrowReaderMetadata::try_new(
        metadata.metadata().clone(),
        ArrowReaderOptions::new().with_schema(hinted),
    )
    .unwrap_or(metadata)
}

fn read_at(file: &mut File, pos: u64, buf: &mut [u8]) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(pos))?;
    file.read_exact(buf)
}

/// The `key=value` folders of a path, innermost last.
fn partition_values(path: &Path) -> BTreeMap<String, String> {
    path.parent()
        .into_iter()
        .flat_map(|p| p.components())
        .filter_map(|c| {
            let s = c.as_os_str().to_string_lossy();
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

fn resolve(
    path: &Path,
    schema: &Schema,
    columns: &Columns,
) -> Result<BTreeMap<Field, Source>, InputError> {
    let partitions = partition_values(path);
    let mut sources = BTreeMap::new();
    for field in Field::ALL {
        let name = field.source_name(columns);
        match schema.field_with_name(name) {
            Ok(f) => {
                check_type(path, name, field, f.data_type())?;
                sources.insert(field, Source::Column(name.to_string()));
            }
            Err(_) => {
                if let Some(v) = partitions.get(name).filter(|_| field != Field::EventTime) {
                    if field == Field::Amount {
                        continue;
                    }
                    sources.insert(field, Source::Partition(v.clone()));
                } else if field.required() {
                    let found = schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(InputError::MissingColumn {
                        path: path.to_path_buf(),
                        column: field.name(),
                        mapped: if name == field.name() {
                            String::new()
                        } else {
                            format!(" (mapped to '{name}')")
                        },
                        found,
                    });
                }
            }
        }
    }
    Ok(sources)
}

fn is_text(dt: &DataType) -> bool {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

fn check_type(path: &Path, name: &str, field: Field, dt: &DataType) -> Result<(), InputError> {
    let (ok, expected) = match field {
        Field::CustomerId => (
            is_text(dt) || dt.is_integer(),
            "text (Utf8, LargeUtf8, Dictionary) or an integer",
        ),
        Field::EventTime => (
            matches!(
                dt,
                DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64
            ),
            "a Timestamp (any unit, with or without time zone), Date32 or Date64",
        ),
        Field::OrderId | Field::EventId => (
            is_text(dt) || dt.is_integer(),
            "text (Utf8, LargeUtf8, Dictionary) or an integer",
        ),
        Field::EventType | Field::Channel | Field::Category => {
            (is_text(dt), "text (Utf8, LargeUtf8 or Dictionary)")
        }
        Field::Amount => (
            dt.is_floating()
                || dt.is_integer()
                || matches!(dt, DataType::Decimal128(_, _) | DataType::Decimal256(_, _)),
            "a float, integer or decimal",
        ),
    };
    if ok {
        Ok(())
    } else {
        Err(InputError::WrongType {
            path: path.to_path_buf(),
            column: name.to_string(),
            found: dt.clone(),
            expected,
        })
    }
}
