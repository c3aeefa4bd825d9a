//! Writing outputs: Parquet files and whole output partitions, published atomically.
//!
//! Nothing is ever written in place. A single file goes to `<name>.tmp-<pid>` beside its final
//! path and is renamed over it; the files of a partition are written into a staging folder and
//! published all at once by [`crate::io::publish`]. A crash therefore leaves the previous good
//! output untouched and never a half-written one.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnWriter};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::publish::fault;

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
    page_rows: Option<usize>,
    metadata: Vec<(String, String)>,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            row_group_rows: 1 << 20,
            page_rows: None,
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

    /// At most `rows` rows per data page (default: pages of up to 1 MB): a reader holds one
    /// decompressed page per column, so files merged many at a time are written with small
    /// pages.
    pub fn page_rows(mut self, rows: usize) -> Self {
        self.page_rows = Some(rows.max(1));
        self
    }

    /// Adds one key-value pair to the file footer.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    fn properties(&self, schema: &arrow_schema::Schema) -> WriterProperties {
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
        let mut b = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_key_value_metadata(kv);
        if let Some(rows) = self.page_rows {
            b = b
                .set_data_page_row_count_limit(rows)
                .set_write_batch_size(rows);
        }
        // Customer ids (one per row) and floats (scores, money, ratios: nearly one distinct
        // value per row) are written plain: a dictionary of them would be built a hash per
        // row only to be abandoned at its page size limit. Integers and labels keep theirs.
        for f in schema.fields() {
            if f.name() == "customer_id" || f.data_type() == &arrow_schema::DataType::Float64 {
                b = b.set_column_dictionary_enabled(ColumnPath::from(f.name().as_str()), false);
            }
        }
        b.build()
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
    through_temp(path, batches, |tmp, received| {
        write_row_groups(tmp, schema, received, options)
    })
}

/// [`write_parquet_stream`] for batches of any size (a merge's output): their rows are
/// gathered into row groups of exactly `options.row_group_rows` as in
/// [`write_parquet_direct_grouped`], so the file is the one a single batch of all the rows
/// makes, while only small batches are in flight.
pub fn write_parquet_stream_grouped(
    path: &Path,
    schema: SchemaRef,
    batches: impl IntoIterator<Item = Result<RecordBatch, ArrowError>>,
    options: &ParquetOptions,
) -> Result<u64, OutputError> {
    through_temp(path, batches, |tmp, received| {
        write_grouped(tmp, schema, received.into_iter().map(Ok), options)
    })
}

/// Runs `encode` on its own thread over the batches received, into a temporary sibling of
/// `path` renamed over it at the end (removed on an error). The caller's thread makes the
/// next batch meanwhile; at most one made batch waits between the two.
fn through_temp(
    path: &Path,
    batches: impl IntoIterator<Item = Result<RecordBatch, ArrowError>>,
    encode: impl FnOnce(&Path, std::sync::mpsc::Receiver<RecordBatch>) -> Result<u64, OutputError>
        + Send,
) -> Result<u64, OutputError> {
    let tmp = temp_sibling(path);
    let written = std::thread::scope(|scope| {
        let (send, receive) = std::sync::mpsc::sync_channel::<RecordBatch>(1);
        let tmp = &tmp;
        let encoder = scope.spawn(move || encode(tmp, receive));
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

/// Writes a Parquet file without the rename step (for files inside a staging folder), the
/// columns of each row group encoded in parallel.
pub fn write_parquet_direct(
    path: &Path,
    schema: SchemaRef,
    batches: &[RecordBatch],
    options: &ParquetOptions,
) -> Result<u64, OutputError> {
    write_parquet_direct_from(path, schema, batches.iter().cloned().map(Ok), options)
}

/// [`write_parquet_direct`] of batches made one at a time (each freed once encoded).
pub fn write_parquet_direct_from(
    path: &Path,
    schema: SchemaRef,
    batches: impl IntoIterator<Item = Result<RecordBatch, ArrowError>>,
    options: &ParquetOptions,
) -> Result<u64, OutputError> {
    let mut made = Ok(());
    let rows = write_row_groups(
        path,
        schema,
        batches.into_iter().map_while(|b| match b {
            Ok(b) => Some(b),
            Err(e) => {
                made = Err(e);
                None
            }
        }),
        options,
    )?;
    made.map_err(|e| OutputError::Parquet {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    fault("stage-after-file").map_err(io_err(path))?;
    Ok(rows)
}

/// [`write_parquet_direct_from`] for a stream of batches of any size (a merge's output):
/// rows are gathered into row groups of exactly `options.row_group_rows` (the last one
/// smaller), each batch fed to the open row group's column writers as it comes (its columns
/// encoded in parallel), so only one batch and the encoded row group are in memory. The row
/// groups are the ones [`write_parquet_direct`] makes of the same rows in one batch.
pub fn write_parquet_direct_grouped(
    path: &Path,
    schema: SchemaRef,
    batches: impl IntoIterator<Item = Result<RecordBatch, ArrowError>>,
    options: &ParquetOptions,
) -> Result<u64, OutputError> {
    let rows = write_grouped(path, schema, batches, options)?;
    fault("stage-after-file").map_err(io_err(path))?;
    Ok(rows)
}

/// The row groups of [`write_parquet_direct_grouped`], written to `path` and synced.
fn write_grouped(
    path: &Path,
    schema: SchemaRef,
    batches: impl IntoIterator<Item = Result<RecordBatch, ArrowError>>,
    options: &ParquetOptions,
) -> Result<u64, OutputError> {
    let perr = parquet_error(path);
    let writer = arrow_writer(path, schema.clone(), options)?;
    let (mut file_writer, factory) = writer.into_serialized_writer().map_err(perr)?;
    let group_rows = options.row_group_rows;
    let mut open: Option<Vec<ArrowColumnWriter>> = None;
    let (mut in_group, mut index, mut rows) = (0usize, 0usize, 0u64);
    let close = |columns: Vec<ArrowColumnWriter>,
                 file_writer: &mut SerializedFileWriter<BufWriter<File>>|
     -> Result<(), OutputError> {
        let chunks = columns
            .into_par_iter()
            .map(|c| c.close())
            .collect::<Result<Vec<_>, _>>()
            .map_err(perr)?;
        let mut group = file_writer.next_row_group().map_err(perr)?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut group).map_err(perr)?;
        }
        group.close().map_err(perr)?;
        Ok(())
    };
    for whole in batches {
        let whole = whole.map_err(|e| OutputError::Parquet {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        let mut start = 0;
        while start < whole.num_rows() {
            let take = (group_rows - in_group).min(whole.num_rows() - start);
            let batch = whole.slice(start, take);
            let columns = match open.as_mut() {
                Some(c) => c,
                None => {
                    index += 1;
                    open.insert(factory.create_column_writers(index - 1).map_err(perr)?)
                }
            };
            // One writer per column: the schemas written here are flat.
            columns
                .par_iter_mut()
                .zip(batch.columns().par_iter())
                .zip(schema.fields().par_iter())
                .try_for_each(|((column, array), field)| {
                    for leaf in compute_leaves(field, array)? {
                        column.write(&leaf)?;
                    }
                    Ok::<(), parquet::errors::ParquetError>(())
                })
                .map_err(perr)?;
            start += take;
            in_group += take;
            rows += take as u64;
            if in_group == group_rows {
                if let Some(columns) = open.take() {
                    close(columns, &mut file_writer)?;
                }
                in_group = 0;
            }
        }
    }
    if let Some(columns) = open.take() {
        close(columns, &mut file_writer)?;
    }
    synced(path, file_writer.into_inner().map_err(perr)?)?;
    Ok(rows)
}

/// A Parquet writer of `schema` into a new file at `path`.
fn arrow_writer(
    path: &Path,
    schema: SchemaRef,
    options: &ParquetOptions,
) -> Result<ArrowWriter<BufWriter<File>>, OutputError> {
    let file = File::create(path).map_err(io_err(path))?;
    let properties = options.properties(&schema);
    ArrowWriter::try_new(BufWriter::new(file), schema, Some(properties))
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
    batches: impl IntoIterator<Item = RecordBatch>,
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
    write_synced(path, bytes).map_err(io_err(path))?;
    fault("stage-after-file").map_err(io_err(path))
}

/// Creates (or truncates) `path`, writes `bytes` and syncs the file.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn grouped_batches_of_any_size_write_the_bytes_of_one_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = 10_000;
        let schema = Arc::new(arrow_schema::Schema::new(vec![
            arrow_schema::Field::new("customer_id", arrow_schema::DataType::Utf8, false),
            arrow_schema::Field::new("x", arrow_schema::DataType::Float64, true),
        ]));
        let ids = StringArray::from_iter_values((0..n).map(|i| format!("c{i:06}")));
        let xs = Float64Array::from_iter((0..n).map(|i| (i % 7 != 0).then(|| i as f64 / 3.0)));
        let whole =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(xs)]).expect("b");
        // Row groups of 3,000 rows: 4 groups, the batches (1,024, 8,192, 7, …) cutting across.
        let options = ParquetOptions::default().row_group_rows(3000);
        let one = dir.path().join("one.parquet");
        write_parquet_direct(&one, schema.clone(), &[whole.clone()], &options).expect("one");
        let mut pieces = Vec::new();
        let mut start = 0;
        for size in [1024, 8192, 7, 1].into_iter().cycle() {
            if start == n {
                break;
            }
            let take = size.min(n - start);
            pieces.push(Ok(whole.slice(start, take)));
            start += take;
        }
        let grouped = dir.path().join("grouped.parquet");
        let rows =
            write_parquet_direct_grouped(&grouped, schema, pieces, &options).expect("grouped");
        assert_eq!(rows, n as u64);
        assert_eq!(
            std::fs::read(&grouped).expect("read"),
            std::fs::read(&one).expect("read")
        );
    }
}
