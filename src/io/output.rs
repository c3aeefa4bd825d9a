//! Writing outputs: Parquet files and whole output partitions, published atomically.
//!
//! Nothing is ever written in place. A single file goes to `<name>.tmp-<pid>` beside its final
//! path and is renamed over it; a partition (`DIR/as_of=YYYY-MM-DD/`) is assembled in
//! `DIR/.tmp-<run_id>/` and renamed into place, `_SUCCESS` written last. A crash therefore leaves
//! the previous good output untouched and never a half-written one.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};
use parquet::arrow::arrow_writer::compute_leaves;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

/// Errors raised while writing outputs.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot write Parquet")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{path}: cannot write JSON")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Settings shared by every Parquet file churnclv writes: zstd, bounded row groups, and
/// key-value metadata (for example the feature cutoff).
#[derive(Debug, Clone)]
pub struct ParquetOptions {
    row_group_rows: usize,
    metadata: Vec<(String, String)>,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            row_group_rows: 1 << 20,
            metadata: Vec::new(),
        }
    }
}

impl ParquetOptions {
    /// Maximum rows per row group (default 1,048,576).
    pub fn row_group_rows(mut self, rows: usize) -> Self {
        self.row_group_rows = rows.max(1);
        self
    }

    /// Adds one key-value pair to the file footer.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    fn properties(&self) -> WriterProperties {
        let kv = if self.metadata.is_empty() {
            None
        } else {
            Some(
                self.metadata
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
                    .collect(),
            )
        };
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_key_value_metadata(kv)
            .build()
    }
}

/// Writes `batches` (all of `schema`) to `path` through a temporary file renamed into place.
/// Returns the number of rows written.
pub fn write_parquet(
    path: &Path,
    schema: SchemaRef,
    batches: &[RecordBatch],
    options: &ParquetOptions,
) -> Result<u64, OutputError> {
    write_parquet_stream(path, schema, batches.iter().cloned().map(Ok), options)
}

/// [`write_parquet`] for batches made one at a time, each written as its own row group(s):
/// the caller's thread makes the next batch while another thread encodes the last one (its
/// columns in parallel), and only those two are in memory. An error making a batch abandons
/// the file.
pub fn write_parquet_stream(
    path: &Path,
    schema: SchemaRef,
    batches: impl IntoIterator<Item = Result<RecordBatch, ArrowError>>,
    options: &ParquetOptions,
) -> Result<u64, OutputError> {
    let tmp = temp_sibling(path);
    let written = std::thread::scope(|scope| {
        let (send, receive) = std::sync::mpsc::sync_channel::<RecordBatch>(1);
        let tmp = &tmp;
        let encoder = scope.spawn(move || write_row_groups(tmp, schema, receive, options));
        let mut made = Ok(());
        for batch in batches {
            match batch {
                // A closed channel means the encoder stopped on an error: it is reported below.
                Ok(b) => {
                    if send.send(b).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    made = Err(e);
                    break;
                }
            }
        }
        drop(send);
        let encoded = match encoder.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        match made {
            Err(e) => Err(OutputError::Parquet {
                path: path.to_path_buf(),
                source: e.into(),
            }),
            Ok(()) => encoded,
        }
    });
    let result =
        written.and_then(|rows| fs::rename(&tmp, path).map(|_| rows).map_err(io_err(path)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes a Parquet file without the rename step (for files inside a staging folder).
pub fn write_parquet_direct(
    path: &Path,
    schema: SchemaRef,
    batches: &[RecordBatch],
    options: &ParquetOptions,
) -> Result<u64, OutputError> {
    let perr = parquet_error(path);
    let mut writer = arrow_writer(path, schema, options)?;
    let mut rows = 0u64;
    for batch in batches {
        writer.write(batch).map_err(perr)?;
        rows += batch.num_rows() as u64;
    }
    synced(path, writer.into_inner().map_err(perr)?)?;
    Ok(rows)
}

/// A Parquet writer of `schema` into a new file at `path`.
fn arrow_writer(
    path: &Path,
    schema: SchemaRef,
    options: &ParquetOptions,
) -> Result<ArrowWriter<BufWriter<File>>, OutputError> {
    let file = File::create(path).map_err(io_err(path))?;
    ArrowWriter::try_new(BufWriter::new(file), schema, Some(options.properties()))
        .map_err(parquet_error(path))
}

fn parquet_error(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> OutputError + Copy + '_ {
    move |source| OutputError::Parquet {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes the batches received, each as row groups of at most `options.row_group_rows` rows,
/// the columns of a row group encoded in parallel.
fn write_row_groups(
    path: &Path,
    schema: SchemaRef,
    batches: std::sync::mpsc::Receiver<RecordBatch>,
    options: &ParquetOptions,
) -> Result<u64, OutputError> {
    let perr = parquet_error(path);
    let writer = arrow_writer(path, schema.clone(), options)?;
    let (mut file_writer, factory) = writer.into_serialized_writer().map_err(perr)?;
    let mut rows = 0u64;
    let mut index = 0;
    for whole in batches {
        for start in (0..whole.num_rows()).step_by(options.row_group_rows) {
            let batch = whole.slice(start, options.row_group_rows.min(whole.num_rows() - start));
            let columns = factory.create_column_writers(index).map_err(perr)?;
            index += 1;
            // One writer per column: the schemas written here are flat.
            let chunks = columns
                .into_par_iter()
                .zip(batch.columns().par_iter())
                .zip(schema.fields().par_iter())
                .map(|((mut column, array), field)| {
                    for leaf in compute_leaves(field, array)? {
                        column.write(&leaf)?;
                    }
                    column.close()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(perr)?;
            let mut group = file_writer.next_row_group().map_err(perr)?;
            for chunk in chunks {
                chunk.append_to_row_group(&mut group).map_err(perr)?;
            }
            group.close().map_err(perr)?;
            rows += batch.num_rows() as u64;
        }
    }
    synced(path, file_writer.into_inner().map_err(perr)?)?;
    Ok(rows)
}

/// Flushes a Parquet writer's buffer and syncs the file to disk.
fn synced(path: &Path, buffered: BufWriter<File>) -> Result<(), OutputError> {
    let file = buffered.into_inner().map_err(|e| OutputError::Io {
        path: path.to_path_buf(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io_err(path))
}

/// Serialises `value` as pretty JSON (with a final newline) to `path`.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), OutputError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|source| OutputError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    text.push('\n');
    write_bytes(path, text.as_bytes())
}

/// Writes bytes to `path` and syncs them.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let mut file = File::create(path).map_err(io_err(path))?;
    file.write_all(bytes).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

/// Hex SHA-256 and size in bytes of a file.
pub fn file_digest(path: &Path) -> Result<(String, u64), OutputError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    Ok((hex, size))
}

fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".to_string());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// A partition being assembled in `DIR/.tmp-<run_id>/`; [`Staging::publish`] renames it to its
/// final name. Dropping an unpublished staging folder removes it.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    target: PathBuf,
    published: bool,
}

impl Staging {
    /// Creates `out/.tmp-<run_id>/` for a partition that will become `out/<partition>`.
    pub fn create(out: &Path, partition: &str, run_id: &str) -> Result<Staging, OutputError> {
        fs::create_dir_all(out).map_err(io_err(out))?;
        let dir = out.join(format!(".tmp-{run_id}"));
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        }
        fs::create_dir(&dir).map_err(io_err(&dir))?;
        Ok(Staging {
            dir,
            target: out.join(partition),
            published: false,
        })
    }

    /// Path of a file inside the staging folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Final location of the partition.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Writes `_SUCCESS`, then moves the folder into place. An existing partition is first
    /// moved aside to `.old.<partition>` and deleted only after the new one is in place (a
    /// crash in between is repaired by [`recover`] on the next run).
    pub fn publish(mut self) -> Result<PathBuf, OutputError> {
        write_bytes(&self.dir.join("_SUCCESS"), b"")?;
        let parent = self.target.parent().unwrap_or(Path::new("."));
        let aside = parent.join(format!(
            ".old.{}",
            self.target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        let had_old = self.target.exists();
        if had_old {
            if aside.exists() {
                fs::remove_dir_all(&aside).map_err(io_err(&aside))?;
            }
            fs::rename(&self.target, &aside).map_err(io_err(&self.target))?;
        }
        if let Err(source) = fs::rename(&self.dir, &self.target) {
            if had_old {
                // Put the previous good partition back before reporting the failure.
                let _ = fs::rename(&aside, &self.target);
            }
            return Err(OutputError::Io {
                path: self.target.clone(),
                source,
            });
        }
        self.published = true;
        if had_old {
            fs::remove_dir_all(&aside).map_err(io_err(&aside))?;
        }
        if let Ok(dirf) = File::open(parent) {
            let _ = dirf.sync_all();
        }
        Ok(self.target.clone())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A run holds `DIR/.churnclv.lock` (its pid inside) while it writes to DIR, so two runs never
/// publish into one output folder at once. A lock left by a process that no longer exists
/// (killed, machine rebooted) is stale and taken over. Liveness is checked in `/proc` (Linux).
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

/// Why a lock could not be taken (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{dir}: another churnclv run (pid {pid}) is writing here (lock file {path}); wait for it, or delete the lock file if that process is not churnclv")]
    Held {
        dir: PathBuf,
        path: PathBuf,
        pid: u32,
    },
    #[error("{path}: cannot create lock file")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Name of the lock file inside an output folder.
pub const LOCK_FILE: &str = ".churnclv.lock";

impl RunLock {
    /// Takes the lock of `out` (which must exist).
    pub fn acquire(out: &Path) -> Result<RunLock, LockError> {
        let path = out.join(LOCK_FILE);
        for _ in 0..2 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    let me = std::process::id();
                    f.write_all(format!("{me}\n").as_bytes())
                        .and_then(|_| f.sync_all())
                        .map_err(|source| LockError::Io {
                            path: path.clone(),
                            source,
                        })?;
                    return Ok(RunLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = fs::read_to_string(&path)
                        .ok()
                        .and_then(|t| t.trim().parse::<u32>().ok());
                    match holder {
                        Some(pid) if process_alive(pid) => {
                            return Err(LockError::Held {
                                dir: out.to_path_buf(),
                                path,
                                pid,
                            })
                        }
                        _ => {
                            tracing::warn!(
                                stage = "lock",
                                "removing stale lock {}",
                                path.display()
                            );
                            let _ = fs::remove_file(&path);
                        }
                    }
                }
                Err(source) => return Err(LockError::Io { path, source }),
            }
        }
        let pid = fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            .unwrap_or(0);
        Err(LockError::Held {
            dir: out.to_path_buf(),
            path,
            pid,
        })
    }
}

/// Repairs what a killed run can leave in an output folder; call it holding the [`RunLock`].
/// Staging folders (`.tmp-*`) are deleted; a previous partition moved aside (`.old.<name>`)
/// is put back if its replacement never arrived, deleted otherwise. Returns what it did.
pub fn recover(out: &Path) -> Result<Vec<String>, OutputError> {
    let mut done = Vec::new();
    let entries = match fs::read_dir(out) {
        Ok(e) => e,
        Err(_) => return Ok(done),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with(".tmp-") {
            fs::remove_dir_all(&path).map_err(io_err(&path))?;
            done.push(format!("removed unfinished {name}"));
        } else if let Some(partition) = name.strip_prefix(".old.") {
            let target = out.join(partition);
            if target.exists() {
                fs::remove_dir_all(&path).map_err(io_err(&path))?;
                done.push(format!("removed replaced {name}"));
            } else {
                fs::rename(&path, &target).map_err(io_err(&path))?;
                done.push(format!("restored {partition}"));
            }
        }
    }
    Ok(done)
}

fn process_alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
