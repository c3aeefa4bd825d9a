//! `churnclv publish` in bounded memory: the feature buckets and score parts of a table scored
//! in shards published as one partition (one `scores.parquet`, one `features.parquet`, rows in
//! customer_id order, the layout, manifest and `_SUCCESS` of `churnclv score`) without holding
//! the table. Three steps under the output folder's lock:
//!
//! 1. **one bucket at a time**: each feature bucket read and checked as `churnclv score` reads
//!    a table (sorted by id; an engine writes buckets in any order), each part read and
//!    checked (cuts digest, model, as-of) and sorted if it is not (`score --part` writes it
//!    sorted); both written back into a scratch folder (a marked staging folder of
//!    `io::publish`: removed when done, and by the next run if this one is killed) with pages
//!    of [`READ_ROWS`] rows, so that a merge holds a small page per column of each file;
//! 2. **coverage**: the ids alone, merged — every feature customer in one bucket and scored
//!    exactly once — before anything is staged;
//! 3. **publish**: each table merged again (a k-way merge of the sorted files) and streamed
//!    into `stages::publish::publish_streamed`, the one publisher, whose row groups are those
//!    of the in-memory write (the files are byte-identical to the earlier in-memory publish).
//!
//! Memory: one bucket in step 1; then a batch and a page per column of every bucket file,
//! and one row group being encoded. Disk: a copy of the buckets in the scratch folder.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch, UInt32Array};
use arrow_schema::ArrowError;
use chrono::NaiveDate;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;

use crate::error::{Context, Error, Result};
use crate::features::features_schema;
use crate::features::table::{Expect, FeatureFile};
use crate::io::output::write_parquet_direct_from;
use crate::io::{ParquetOptions, RunLock};
use crate::models::SavedModel;
use crate::stages::publish::{self, InputEntry, Provenance};
use crate::stages::score::{model_version, scores_schema};
use crate::stages::sharded::{read_whole, score_run_id, ShardedError, CUTS_DIGEST_KEY};

/// Rows per batch read from each sorted file in a merge (one batch per file in memory).
const READ_ROWS: usize = 1024;
/// Rows per merged batch (a multiple of the Parquet writer's 1,024-row write batches).
const MERGE_ROWS: usize = 8192;

/// A sorted file in a merge, and the input it came from (for messages).
struct Run {
    path: PathBuf,
    source: usize,
}

/// A customer twice in a merge: its id and the two inputs.
struct Twice {
    id: String,
    a: usize,
    b: usize,
}

/// One file of a merge: its reader, current batch and row, and where that batch is in the
/// merge's pool.
struct Cursor {
    reader: ParquetRecordBatchReader,
    batch: RecordBatch,
    row: usize,
    pool: usize,
    source: usize,
}

/// A k-way merge of files sorted by `customer_id` (column 0): batches of [`MERGE_ROWS`] rows
/// in id order.
struct Merge {
    cursors: Vec<Cursor>,
    heap: BinaryHeap<Reverse<(Box<str>, usize)>>,
    pool: Vec<RecordBatch>,
    last: Option<(Box<str>, usize)>,
}

fn read_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("{}: cannot read back: {e}", path.display()))
}

impl Merge {
    /// Opens every run (all columns, or the ids alone).
    fn open(runs: &[Run], ids_only: bool) -> Result<Merge> {
        let mut m = Merge {
            cursors: Vec::with_capacity(runs.len()),
            heap: BinaryHeap::new(),
            pool: Vec::new(),
            last: None,
        };
        for run in runs {
            let file = File::open(&run.path).with_context(|| run.path.display().to_string())?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| read_err(&run.path, e))?;
            let builder = if ids_only {
                let mask = ProjectionMask::roots(builder.parquet_schema(), [0]);
                builder.with_projection(mask)
            } else {
                builder
            };
            let mut reader = builder
                .with_batch_size(READ_ROWS)
                .build()
                .map_err(|e| read_err(&run.path, e))?;
            let first = next_rows(&mut reader).map_err(|e| read_err(&run.path, e))?;
            if let Some(batch) = first {
                let i = m.cursors.len();
                m.heap.push(Reverse((id_of(&batch, 0).into(), i)));
                m.pool.push(batch.clone());
                m.cursors.push(Cursor {
                    reader,
                    batch,
                    row: 0,
                    pool: m.pool.len() - 1,
                    source: run.source,
                });
            }
        }
        Ok(m)
    }

    /// The next batch in id order; `Ok(None)` at the end; a customer met twice stops it.
    fn next_batch(&mut self) -> Result<Option<std::result::Result<RecordBatch, Twice>>> {
        let mut picked: Vec<(usize, usize)> = Vec::with_capacity(MERGE_ROWS);
        while picked.len() < MERGE_ROWS {
            let Some(Reverse((id, i))) = self.heap.pop() else {
                break;
            };
            let c = &mut self.cursors[i];
            if let Some((previous, j)) = &self.last {
                if *previous == id {
                    return Ok(Some(Err(Twice {
                        id: id.to_string(),
                        a: *j,
                        b: c.source,
                    })));
                }
            }
            picked.push((c.pool, c.row));
            c.row += 1;
            if c.row == c.batch.num_rows() {
                match next_rows(&mut c.reader).map_err(|e| Error::Internal(e.to_string()))? {
                    None => {}
                    Some(batch) => {
                        self.pool.push(batch.clone());
                        c.pool = self.pool.len() - 1;
                        c.batch = batch;
                        c.row = 0;
                        self.heap.push(Reverse((id_of(&c.batch, 0).into(), i)));
                    }
                }
            } else {
                self.heap.push(Reverse((id_of(&c.batch, c.row).into(), i)));
            }
            self.last = Some((id, c.source));
        }
        if picked.is_empty() {
            return Ok(None);
        }
        let batches: Vec<&RecordBatch> = self.pool.iter().collect();
        let merged = arrow_select::interleave::interleave_record_batch(&batches, &picked)?;
        // Only the files' current batches stay in the pool.
        self.pool = self.cursors.iter().map(|c| c.batch.clone()).collect();
        for (k, c) in self.cursors.iter_mut().enumerate() {
            c.pool = k;
        }
        Ok(Some(Ok(merged)))
    }
}

/// The next non-empty batch of a reader.
fn next_rows(
    reader: &mut ParquetRecordBatchReader,
) -> std::result::Result<Option<RecordBatch>, ArrowError> {
    for batch in reader.by_ref() {
        let batch = batch?;
        if batch.num_rows() > 0 {
            return Ok(Some(batch));
        }
    }
    Ok(None)
}

fn id_of(batch: &RecordBatch, row: usize) -> &str {
    batch.column(0).as_string::<i32>().value(row)
}

/// The merged ids, one at a time.
struct Ids {
    merge: Merge,
    batch: Option<RecordBatch>,
    row: usize,
}

impl Ids {
    /// The next id; `Err(Twice)` for a customer met twice.
    fn next(&mut self) -> Result<std::result::Result<Option<String>, Twice>> {
        loop {
            if let Some(b) = &self.batch {
                if self.row < b.num_rows() {
                    self.row += 1;
                    return Ok(Ok(Some(id_of(b, self.row - 1).to_string())));
                }
            }
            match self.merge.next_batch()? {
                None => return Ok(Ok(None)),
                Some(Err(twice)) => return Ok(Err(twice)),
                Some(Ok(b)) => {
                    self.batch = Some(b);
                    self.row = 0;
                }
            }
        }
    }
}

/// Every feature customer in one bucket only and scored exactly once, nobody else.
fn check_coverage(features: &[Run], parts: &[Run], feature_paths: &[PathBuf]) -> Result<()> {
    let open = |runs| -> Result<Ids> {
        Ok(Ids {
            merge: Merge::open(runs, true)?,
            batch: None,
            row: 0,
        })
    };
    let (mut f, mut s) = (open(features)?, open(parts)?);
    let coverage = |id: String, what| -> Error { ShardedError::Coverage { id, what }.into() };
    let (mut want, mut got) = (f.next()?, s.next()?);
    loop {
        let w = match want {
            Err(t) => {
                return Err(ShardedError::Duplicate {
                    flag: "--features",
                    id: t.id,
                    first: feature_paths[t.a.min(t.b)].clone(),
                    second: feature_paths[t.a.max(t.b)].clone(),
                }
                .into())
            }
            Ok(w) => w,
        };
        let g = match got {
            Err(t) => return Err(coverage(t.id, "is scored twice")),
            Ok(g) => g,
        };
        match (w, g) {
            (None, None) => return Ok(()),
            (Some(w), Some(g)) if w == g => {
                want = f.next()?;
                got = s.next()?;
            }
            (Some(w), Some(g)) if g < w => {
                return Err(coverage(g, "is scored but in no --features file"))
            }
            (None, Some(g)) => return Err(coverage(g, "is scored but in no --features file")),
            (Some(w), _) => return Err(coverage(w, "is in --features but in no --scores part")),
        }
    }
}

/// A merge as the publisher's batch stream, its files opened at the first batch (the score
/// table is written before the feature table). A customer twice cannot happen: checked before.
fn stream(runs: &[Run]) -> publish::BatchStream<'_> {
    let mut merge: Option<Merge> = None;
    Box::new(std::iter::from_fn(move || {
        if merge.is_none() {
            match Merge::open(runs, false) {
                Ok(m) => merge = Some(m),
                Err(e) => return Some(Err(ArrowError::ExternalError(Box::new(e)))),
            }
        }
        next_of(merge.as_mut()?)
    }))
}

fn next_of(merge: &mut Merge) -> Option<std::result::Result<RecordBatch, ArrowError>> {
    match merge.next_batch() {
        Ok(None) => None,
        Ok(Some(Ok(b))) => Some(Ok(b)),
        Ok(Some(Err(t))) => Some(Err(ArrowError::InvalidArgumentError(format!(
            "customer '{}' twice in the merge",
            t.id
        )))),
        Err(e) => Some(Err(ArrowError::ExternalError(Box::new(e)))),
    }
}

/// Publishes the feature buckets (`--features`, cutoff `as_of` when given) and the parts
/// (`--scores`) as `churnclv score` publishes one table: checks as the module says (every
/// customer of the features scored exactly once, every part scored with `saved` for this as-of,
/// all with one `cuts.json`), nothing published on a failed check. Returns the run
/// partition's path and the customers published.
pub fn publish_sharded(
    out: &Path,
    features: &[PathBuf],
    scores: &[PathBuf],
    as_of: Option<NaiveDate>,
    saved: &SavedModel,
    model_path: &Path,
) -> Result<(PathBuf, u64)> {
    let lock = RunLock::acquire(out)?;
    lock.recover()?;
    let scratch = lock.stage("scores", ".sort", "publish-sort")?;
    // Pages of READ_ROWS rows: the merges hold one page per column of every file.
    let plain = ParquetOptions::default().page_rows(READ_ROWS);

    // 1. The feature buckets, one at a time, written back sorted.
    let mut cutoff = as_of;
    let mut inputs = Vec::new();
    let mut feature_runs = Vec::new();
    let mut customers = 0u64;
    for (p, path) in features.iter().enumerate() {
        let expect = Expect {
            flag: "--features",
            cutoff: cutoff.map(|d| (d, "the first --features file or --as-of".to_string())),
            labels: None,
        };
        let file = FeatureFile::open(path, expect.flag)?;
        let row_groups = file.row_groups();
        let table = file.read(&expect)?;
        cutoff = Some(table.cutoff);
        let named = || format!("--features {}", path.display());
        inputs.push(InputEntry {
            path: path.display().to_string(),
            canonical: std::fs::canonicalize(path)
                .with_context(named)?
                .display()
                .to_string(),
            bytes: std::fs::metadata(path).with_context(named)?.len(),
            rows: table.len() as u64,
            row_groups,
        });
        customers += table.len() as u64;
        let run = scratch.path(&format!("features-{p}.parquet"));
        write_parquet_direct_from(&run, features_schema(), table.features_batches(), &plain)?;
        feature_runs.push(Run {
            path: run,
            source: p,
        });
    }
    let Some(cutoff) = cutoff else {
        return Err(Error::Usage("--features: no feature file given".into()));
    };

    // The parts: one model, one as-of, one cuts.json; sorted if they are not.
    let run_id = score_run_id(cutoff, saved);
    let version = model_version(&saved.run_id);
    let mut part_runs = Vec::new();
    let mut digest: Option<String> = None;
    for (p, path) in scores.iter().enumerate() {
        let (batch, meta) = read_whole("--scores", path, &scores_schema())?;
        let mismatch = |what, found: String, expected: String, why| ShardedError::Mismatch {
            path: path.clone(),
            what,
            found,
            expected,
            why,
        };
        let d = meta
            .iter()
            .find(|(k, _)| k == CUTS_DIGEST_KEY)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| ShardedError::NotAPart { path: path.clone() })?;
        match &digest {
            None => digest = Some(d),
            Some(first) if *first != d => {
                return Err(mismatch(
                    "the cuts.json digest",
                    d,
                    first.clone(),
                    "every part must be scored with the cuts.json of the first",
                )
                .into())
            }
            Some(_) => {}
        }
        for (column, expected, why) in [
            ("model_version", &version, "scored with another --model"),
            ("run_id", &run_id, "scored for another as-of or model"),
        ] {
            let col = batch
                .column_by_name(column)
                .map(|c| c.as_string::<i32>().clone());
            if let Some(c) = col {
                if let Some(i) = (0..c.len()).find(|&i| c.is_null(i) || c.value(i) != expected) {
                    let found = if c.is_null(i) { "null" } else { c.value(i) };
                    return Err(mismatch(column, found.into(), expected.clone(), why).into());
                }
            }
        }
        let ids = batch.column(0).as_string::<i32>();
        if let Some(i) = (0..ids.len()).find(|&i| ids.is_null(i)) {
            return Err(ShardedError::Null {
                flag: "--scores",
                path: path.clone(),
                row: i,
                column: "customer_id",
            }
            .into());
        }
        // Written back sorted (as `score --part` writes them, already) with small pages.
        let sorted = (1..ids.len()).all(|i| ids.value(i - 1) <= ids.value(i));
        let batch = if sorted {
            batch
        } else {
            let mut order: Vec<u32> = (0..ids.len() as u32).collect();
            order.sort_unstable_by(|&a, &b| ids.value(a as usize).cmp(ids.value(b as usize)));
            arrow_select::take::take_record_batch(&batch, &UInt32Array::from(order))?
        };
        let run = scratch.path(&format!("scores-{p}.parquet"));
        write_parquet_direct_from(&run, scores_schema(), [Ok(batch)], &plain)?;
        part_runs.push(Run {
            path: run,
            source: p,
        });
    }

    // 2. Coverage, on the ids alone.
    check_coverage(&feature_runs, &part_runs, features)?;

    // 3. Both tables merged into the one publisher.
    let target = publish::publish_streamed(
        &lock,
        cutoff,
        Provenance {
            command: "publish",
            run_id: &run_id,
            cutoffs: None,
            model: Some((model_path.display().to_string(), &saved.run_id)),
            inputs,
            inputs_skipped: &[],
            rows: None,
            config: None,
        },
        stream(&part_runs),
        stream(&feature_runs),
        saved,
    )?;
    drop(scratch);
    Ok((target, customers))
}
