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

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch, UInt32Array};
use arrow_schema::ArrowError;
use chrono::NaiveDate;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::error::{Context, Error, Result};
use crate::features::features_schema;
use crate::features::table::{Expect, FeatureFile};
use crate::io::output::write_parquet_direct_from;
use crate::io::sorted_merge::{MergeError, SortedMerge};
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

fn read_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("{}: cannot read back: {e}", path.display()))
}

type Merge = SortedMerge<fn(usize, &RecordBatch, u64) -> Result<()>>;

/// A [`SortedMerge`] of the runs (all columns, or the ids alone).
fn open(runs: &[Run], ids_only: bool) -> Result<Merge> {
    let mut readers = Vec::with_capacity(runs.len());
    for run in runs {
        let file = File::open(&run.path).with_context(|| run.path.display().to_string())?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| read_err(&run.path, e))?;
        let builder = if ids_only {
            let mask = ProjectionMask::roots(builder.parquet_schema(), [0]);
            builder.with_projection(mask)
        } else {
            builder
        };
        readers.push(
            builder
                .with_batch_size(READ_ROWS)
                .build()
                .map_err(|e| read_err(&run.path, e))?,
        );
    }
    let unchecked: fn(usize, &RecordBatch, u64) -> Result<()> = |_, _, _| Ok(());
    SortedMerge::new(readers, unchecked).map_err(|e| merge_err(runs, e).unwrap_or_else(twice))
}

/// A merge's error, but a customer met twice, which its callers report in their own words.
fn merge_err(runs: &[Run], e: MergeError) -> std::result::Result<Error, Twice> {
    Ok(match e {
        MergeError::Read { file, source } => read_err(&runs[file].path, source),
        MergeError::Check(e) => e,
        MergeError::NotSorted { file, row, .. } => Error::Internal(format!(
            "{}: row {row} out of customer_id order (written sorted by this command)",
            runs[file].path.display()
        )),
        MergeError::Twice { id, first, second } => {
            return Err(Twice {
                id,
                a: runs[first].source,
                b: runs[second].source,
            })
        }
    })
}

fn twice(t: Twice) -> Error {
    Error::Internal(format!("customer '{}' twice in the merge", t.id))
}

/// Batches of [`MERGE_ROWS`] rows of a merge in id order, gathered from the files' batches
/// (each taken once into the pool, by reference) with `interleave`.
struct Batches<'a> {
    merge: Merge,
    runs: &'a [Run],
    pool: Vec<RecordBatch>,
    /// Per file: which of its batches is in the pool, and where.
    pooled: Vec<Option<(u64, usize)>>,
}

impl<'a> Batches<'a> {
    fn open(runs: &'a [Run]) -> Result<Batches<'a>> {
        Ok(Batches {
            merge: open(runs, false)?,
            runs,
            pool: Vec::new(),
            pooled: vec![None; runs.len()],
        })
    }

    /// The next batch in id order; `Ok(None)` at the end; a customer met twice stops it.
    fn next_batch(&mut self) -> Result<Option<std::result::Result<RecordBatch, Twice>>> {
        let mut picked: Vec<(usize, usize)> = Vec::with_capacity(MERGE_ROWS);
        while picked.len() < MERGE_ROWS {
            let pick = match self.merge.next() {
                Ok(Some(pick)) => pick,
                Ok(None) => break,
                Err(e) => return merge_err(self.runs, e).map_or_else(|t| Ok(Some(Err(t))), Err),
            };
            let slot = match self.pooled[pick.file] {
                Some((batch, slot)) if batch == pick.batch => slot,
                _ => {
                    self.pool.push(self.merge.batch(pick.file).clone());
                    self.pooled[pick.file] = Some((pick.batch, self.pool.len() - 1));
                    self.pool.len() - 1
                }
            };
            picked.push((slot, pick.row));
        }
        if picked.is_empty() {
            return Ok(None);
        }
        let batches: Vec<&RecordBatch> = self.pool.iter().collect();
        let merged = arrow_select::interleave::interleave_record_batch(&batches, &picked)?;
        self.pool.clear();
        self.pooled.fill(None);
        Ok(Some(Ok(merged)))
    }
}

/// The merged ids, one at a time.
struct Ids<'a> {
    merge: Merge,
    runs: &'a [Run],
}

impl Ids<'_> {
    /// The next id; `Err(Twice)` for a customer met twice.
    fn next(&mut self) -> Result<std::result::Result<Option<String>, Twice>> {
        match self.merge.next() {
            Ok(pick) => {
                Ok(Ok(pick.map(|p| {
                    id_of(self.merge.batch(p.file), p.row).to_string()
                })))
            }
            Err(e) => merge_err(self.runs, e).map_or_else(|t| Ok(Err(t)), Err),
        }
    }
}

fn id_of(batch: &RecordBatch, row: usize) -> &str {
    batch.column(0).as_string::<i32>().value(row)
}

/// Every feature customer in one bucket only and scored exactly once, nobody else.
fn check_coverage(features: &[Run], parts: &[Run], feature_paths: &[PathBuf]) -> Result<()> {
    let open = |runs| -> Result<Ids> {
        Ok(Ids {
            merge: open(runs, true)?,
            runs,
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
    let mut merge: Option<Batches> = None;
    Box::new(std::iter::from_fn(move || {
        if merge.is_none() {
            match Batches::open(runs) {
                Ok(m) => merge = Some(m),
                Err(e) => return Some(Err(ArrowError::ExternalError(Box::new(e)))),
            }
        }
        match merge.as_mut()?.next_batch() {
            Ok(None) => None,
            Ok(Some(Ok(b))) => Some(Ok(b)),
            Ok(Some(Err(t))) => Some(Err(ArrowError::ExternalError(Box::new(twice(t))))),
            Err(e) => Some(Err(ArrowError::ExternalError(Box::new(e)))),
        }
    }))
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
