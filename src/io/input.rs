//! Opening the input: the files `io::discover` found, each footer read once, the columns
//! resolved against the column mapping (or a hive-style `key=value/` folder) and type-checked
//! before any row is read, so a bad file fails fast with its name and column.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use arrow_schema::{DataType, Schema};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::ProjectionMask;

use super::discover::{discover_with, DiscoverOptions, Skipped};
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

    /// A deduplication key column (`order_id`, `event_id`): read by the duplicate pass only.
    pub fn is_key(self) -> bool {
        matches!(self, Field::OrderId | Field::EventId)
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

    /// Every logical column.
    pub const ALL: [Field; 8] = [
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
    /// The same without the dictionary hints: for a pass that reads customer ids only to
    /// hash them, plain strings are cheaper than a dictionary the reader must rebuild when a
    /// writer fell back from dictionary to plain pages (it hashes every row to do so).
    pub plain: ArrowReaderMetadata,
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
    let plain = metadata.clone();
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
        plain,
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
