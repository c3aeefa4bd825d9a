//! Opening one row group of an input file for reading: a projection of the needed columns,
//! fixed-size batches, and every call into the Parquet decoders under [`guard::decode`] (a
//! decoder panic on a damaged page becomes an error naming the file and row group).

use std::fs::File;

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use crate::io::guard;
use crate::io::input::{Field, InputError, InputFile, InputSet};

const BATCH_ROWS: usize = 64 * 1024;

/// Every (file, row group) pair of `inputs` whose file passes `keep`, in input order: the
/// tasks of a parallel pass.
pub(super) fn row_groups(
    inputs: &InputSet,
    keep: impl Fn(&InputFile) -> bool,
) -> Vec<(usize, usize)> {
    inputs
        .files
        .iter()
        .enumerate()
        .filter(|(_, f)| keep(f))
        .flat_map(|(fi, f)| (0..f.row_groups).map(move |rg| (fi, rg)))
        .collect()
}

pub(super) fn read_error(file: &InputFile, rg: usize, message: String) -> InputError {
    InputError::Read {
        path: file.path.clone(),
        row_group: rg,
        message,
    }
}

/// A batch reader over one row group of `file`, projected to `only`, reusing the footer read
/// when the file was opened. Every call into the decoders runs under [`guard::decode`], so
/// damaged pages that make parquet-rs panic become an [`InputError::Read`] naming the file and
/// row group.
pub(super) fn open_row_group<'f>(
    file: &'f InputFile,
    rg: usize,
    only: &[Field],
) -> Result<RowGroup<'f>, InputError> {
    open_row_group_with(file, &file.metadata, rg, only)
}

/// [`open_row_group`] with the text columns as the file stores them (no dictionary hints):
/// `InputFile::plain`.
pub(super) fn open_plain_row_group<'f>(
    file: &'f InputFile,
    rg: usize,
    only: &[Field],
) -> Result<RowGroup<'f>, InputError> {
    open_row_group_with(file, &file.plain, rg, only)
}

fn open_row_group_with<'f>(
    file: &'f InputFile,
    metadata: &parquet::arrow::arrow_reader::ArrowReaderMetadata,
    rg: usize,
    only: &[Field],
) -> Result<RowGroup<'f>, InputError> {
    let handle = File::open(&file.path).map_err(|source| InputError::Io {
        path: file.path.clone(),
        source,
    })?;
    let reader = guard::decode(|| {
        ParquetRecordBatchReaderBuilder::new_with_metadata(handle, metadata.clone())
            .with_projection(file.projection(only))
            .with_row_groups(vec![rg])
            .with_batch_size(BATCH_ROWS)
            .build()
    })
    .map_err(|p| read_error(file, rg, p.to_string()))?
    .map_err(|e| read_error(file, rg, e.to_string()))?;
    Ok(RowGroup {
        reader: Some(reader),
        path: &file.path,
        rg,
    })
}

/// The record batches of one row group; stops after the first error.
pub(super) struct RowGroup<'f> {
    /// `None` once an error was returned: a decoder that panicked is not called again.
    reader: Option<ParquetRecordBatchReader>,
    path: &'f std::path::Path,
    rg: usize,
}

impl Iterator for RowGroup<'_> {
    type Item = Result<RecordBatch, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        let reader = self.reader.as_mut()?;
        let err = |message: String| InputError::Read {
            path: self.path.to_path_buf(),
            row_group: self.rg,
            message,
        };
        let item = match guard::decode(|| reader.next()) {
            Ok(None) => None,
            Ok(Some(Ok(batch))) => return Some(Ok(batch)),
            Ok(Some(Err(e))) => Some(Err(err(e.to_string()))),
            Err(panic) => Some(Err(err(panic.to_string()))),
        };
        self.reader = None;
        item
    }
}
