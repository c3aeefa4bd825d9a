//! The k-way merge of Parquet files sorted by `customer_id` (their first column): the rows of
//! every file in id order, one row at a time, with the checks a merge can make for free — a
//! file out of order and a customer met twice (in two files, or twice in one) stop it. The
//! Spark path's bounded-memory steps merge this way: `churnclv cuts` over the raw score files
//! ([`crate::stages::sharded_cuts`]) and `churnclv publish` over the sorted buckets
//! ([`crate::stages::sharded_publish`]). Memory: one batch of every file.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use arrow_array::cast::AsArray;
use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::ArrowError;
use parquet::arrow::arrow_reader::ParquetRecordBatchReader;

use crate::error::Error;

/// Why a merge stopped. Files are named by their position in the list given to
/// [`SortedMerge::new`]; the callers turn them into paths and their own messages.
#[derive(Debug)]
pub enum MergeError {
    /// A file could not be read.
    Read { file: usize, source: ArrowError },
    /// The caller's check refused a batch.
    Check(Error),
    /// Row `row` of `file` has id `id`, lower than the row before it (`previous`).
    NotSorted {
        file: usize,
        row: u64,
        id: String,
        previous: String,
    },
    /// Customer `id` met twice: in `first` and again in `second` (the same file when it is
    /// twice in one).
    Twice {
        id: String,
        first: usize,
        second: usize,
    },
}

/// A row of the merge: file, row of its current batch ([`SortedMerge::batch`]), and which
/// batch of the file that is (0, 1, … as read), for callers that keep batches by reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    pub file: usize,
    pub row: usize,
    pub batch: u64,
}

/// One file: its reader, current batch and row.
struct Cursor {
    reader: ParquetRecordBatchReader,
    batch: RecordBatch,
    row: usize,
    /// Rows of the file before `batch`.
    row0: u64,
    /// How many batches were read up to `batch` (0: none yet).
    seq: u64,
}

impl Cursor {
    fn id(&self) -> &str {
        self.batch.column(0).as_string::<i32>().value(self.row)
    }
}

/// Rows of sorted files in id order ([`SortedMerge::next`]). `check(file, batch, first row)`
/// sees every batch as it is read, before any of its rows is merged.
pub struct SortedMerge<C> {
    cursors: Vec<Cursor>,
    heap: BinaryHeap<Reverse<(Box<str>, usize)>>,
    /// The last id returned and its file.
    last: Option<(Box<str>, usize)>,
    /// The file of the last row returned: it moves on at the next call, so that row stays
    /// readable through [`SortedMerge::batch`] until then.
    pending: Option<usize>,
    check: C,
}

impl<C> SortedMerge<C>
where
    C: FnMut(usize, &RecordBatch, u64) -> Result<(), Error>,
{
    /// Opens the merge at every file's first row (files without rows take no part).
    pub fn new(
        readers: Vec<ParquetRecordBatchReader>,
        check: C,
    ) -> Result<SortedMerge<C>, MergeError> {
        let mut merge = SortedMerge {
            cursors: Vec::with_capacity(readers.len()),
            heap: BinaryHeap::new(),
            last: None,
            pending: None,
            check,
        };
        for (file, reader) in readers.into_iter().enumerate() {
            let schema = reader.schema();
            merge.cursors.push(Cursor {
                reader,
                batch: RecordBatch::new_empty(schema),
                row: 0,
                row0: 0,
                seq: 0,
            });
            if merge.next_batch(file)? {
                let id = merge.cursors[file].id().into();
                merge.heap.push(Reverse((id, file)));
            }
        }
        Ok(merge)
    }

    /// The current batch of `file` (the batch of the row [`SortedMerge::next`] returned).
    pub fn batch(&self, file: usize) -> &RecordBatch {
        &self.cursors[file].batch
    }

    /// The next row in id order; `None` at the end of every file.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Pick>, MergeError> {
        if let Some(file) = self.pending.take() {
            self.advance(file)?;
        }
        let Some(Reverse((id, file))) = self.heap.pop() else {
            return Ok(None);
        };
        if let Some((previous, first)) = &self.last {
            if **previous == *id {
                return Err(MergeError::Twice {
                    id: id.to_string(),
                    first: *first,
                    second: file,
                });
            }
        }
        let c = &self.cursors[file];
        let pick = Pick {
            file,
            row: c.row,
            batch: c.seq,
        };
        self.last = Some((id, file));
        self.pending = Some(file);
        Ok(Some(pick))
    }

    /// Moves `file` past the row just returned: its next row joins the heap, checked to be
    /// in order.
    fn advance(&mut self, file: usize) -> Result<(), MergeError> {
        let c = &mut self.cursors[file];
        c.row += 1;
        if c.row >= c.batch.num_rows() && !self.next_batch(file)? {
            return Ok(());
        }
        let c = &self.cursors[file];
        let next = c.id();
        if let Some((previous, _)) = &self.last {
            if next < &**previous {
                return Err(MergeError::NotSorted {
                    file,
                    row: c.row0 + c.row as u64,
                    id: next.to_string(),
                    previous: previous.to_string(),
                });
            }
        }
        self.heap.push(Reverse((next.into(), file)));
        Ok(())
    }

    /// Reads `file`'s next non-empty batch (each batch checked); false at its end.
    fn next_batch(&mut self, file: usize) -> Result<bool, MergeError> {
        let c = &mut self.cursors[file];
        loop {
            let read = c.batch.num_rows() as u64;
            let Some(batch) = c.reader.next() else {
                return Ok(false);
            };
            let batch = batch.map_err(|source| MergeError::Read { file, source })?;
            c.row0 += read;
            c.seq += 1;
            c.batch = batch;
            c.row = 0;
            (self.check)(file, &c.batch, c.row0).map_err(MergeError::Check)?;
            if c.batch.num_rows() > 0 {
                return Ok(true);
            }
        }
    }
}
