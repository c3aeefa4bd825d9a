//! Bounded memory for `run`: when the customers' histories would not fit the memory budget
//! (`--memory-limit`, `run.memory_limit`), the customers are split into hash shards and the
//! input is scanned once per shard, each pass keeping only its customers' rows
//! ([`crate::io::Shard`]). Each shard is reduced to the models' inputs at once (its histories
//! dropped), and the shards' compact inputs are gathered in customer-id order: the same rows
//! in the same order as one unsharded scan gives, so the fits, the global cut points and the
//! scores are identical (`tests/shards.rs`). Row counts add up over the shards; the rejected
//! rows come shard after shard.

use std::collections::VecDeque;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::features::{FeatureTable, Features};
use crate::io::{InputSet, ReadOptions, ScanStats, Shard};
use crate::models::sample::{Sample, SampleBuilder};
use crate::stages::features::{check_totals, scan_shard, with_duplicates, ModelInputs, TableSpec};

/// What a scan holds beyond its histories, measured on the bench file (`make bench`: 11.5M
/// events, 200k customers): the readers' decoded row groups, the partition queues, the
/// binary — the peak of `churnclv features` less its histories.
pub const SCAN_FIXED_BYTES: u64 = 160 << 20;

/// Histories per input row during a scan of `run`'s four cutoffs (same measurement: ~175 MB
/// of histories for 11.5M rows, rounded up).
pub const HISTORY_BYTES_PER_ROW: u64 = 18;

/// The as-of table (every customer, scored and published) per input row (same measurement:
/// ~80 MB for 11.5M rows). Per customer it is ~400 bytes, so this over-estimates inputs with
/// many events per customer and under-estimates very sparse ones.
pub const LATEST_BYTES_PER_ROW: u64 = 8;

/// The training samples at the three cutoffs per input row (same measurement: ~110 MB).
pub const SAMPLE_BYTES_PER_ROW: u64 = 10;

/// Customers per slice when `run` scores under a budget: the score table is built and
/// written a slice at a time (`stages::score::score_slices`), never whole (0.55 KB a
/// customer: 1.1 GB at 2M customers). A multiple of [`SLICE_MULTIPLE`].
pub const SCORE_SLICE: usize = 1 << 16;

/// Slices are whole multiples of the Parquet writer's batch (its default write batch size):
/// it checks its page limits after each batch of a write, so slices of another size would
/// cut the pages of a large table elsewhere than the whole table written at once (same rows,
/// other bytes). `--score-slice N` is rounded up to it.
pub const SLICE_MULTIPLE: usize = 1024;

/// What scoring by slices holds per input row besides the as-of table: each customer's
/// churn probability, CLV, tier and lifecycle stage (~50 bytes), and the cut points' sorted
/// keys while they are made (~56 bytes) — ~110 bytes a customer, ~2 bytes a row at the
/// bench's 57 events per customer.
pub const SCORE_BYTES_PER_ROW: u64 = 2;

/// One slice of [`SCORE_SLICE`] customers being scored and written: the models' matrices,
/// its score rows and their encoded row group (~1.2 KB a customer, rounded up). Held when
/// the scan's buffers ([`SCAN_FIXED_BYTES`]) are freed, in their place.
pub const SCORE_SLICE_BYTES: u64 = 96 << 20;
const _: () = assert!(SCORE_SLICE_BYTES <= SCAN_FIXED_BYTES);

/// The most shards a budget may ask for: each is a pass over the whole input.
pub const MAX_SHARDS: u32 = 256;

/// The share of the budget left to one shard's histories when the samples must be cut.
const HISTORY_SHARE: u64 = 4;

/// How `run` reads its input under a budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShardPlan {
    /// Passes over the input, one per hash shard of the customers (1: one plain scan).
    pub shards: u32,
    /// Train on this deterministic share of the customers (`None`: all of them): only when
    /// even the gathered inputs of every customer would not fit.
    pub train_fraction: Option<f64>,
}

/// How `rows` input rows are read under `limit` bytes. `forced` (`run.shards`, when not 0)
/// sets the shard count. The samples are cut to a customer share only when the as-of table,
/// every customer's samples and the smallest shard of histories would not fit together; an
/// error when even the as-of table would not.
pub fn shards_for(rows: u64, limit: Option<u64>, forced: u32) -> Result<ShardPlan> {
    let plan = |shards: u64, train_fraction| ShardPlan {
        shards: shards.clamp(1, u64::from(MAX_SHARDS)) as u32,
        train_fraction,
    };
    let Some(limit) = limit else {
        return Ok(plan(u64::from(forced.max(1)), None));
    };
    let histories = rows.saturating_mul(HISTORY_BYTES_PER_ROW);
    let latest = rows.saturating_mul(LATEST_BYTES_PER_ROW);
    let samples = rows.saturating_mul(SAMPLE_BYTES_PER_ROW);
    // Scoring comes after training (the samples and the scan's buffers freed: one slice
    // takes the buffers' place): the as-of table with what scoring holds per customer must
    // fit, and whichever of the samples and scoring is larger is what is left beside it.
    let scoring = rows.saturating_mul(SCORE_BYTES_PER_ROW);
    let avail = limit.saturating_sub(SCAN_FIXED_BYTES);
    let room = avail.saturating_sub(latest + samples.max(scoring));
    let fewest = |room: u64| histories.div_ceil(room.max(1)).max(1);
    if forced == 0 && room > 0 && fewest(room) <= u64::from(MAX_SHARDS) {
        return Ok(plan(fewest(room), None));
    }
    if forced > 0 && room > histories / u64::from(forced) {
        return Ok(plan(u64::from(forced), None));
    }
    // The samples are cut: a quarter of the budget for one shard's histories, the as-of
    // table whole, the rest for the samples.
    let room = avail / HISTORY_SHARE;
    let shards = if forced > 0 {
        u64::from(forced)
    } else {
        fewest(room)
    };
    let left = avail.saturating_sub(histories.div_ceil(shards) + latest);
    let mb = |b: u64| b >> 20;
    if shards > u64::from(MAX_SHARDS) || left == 0 || latest + scoring > avail {
        return Err(Error::Usage(format!(
            "--memory-limit {} MiB is too small for {rows} input rows: the scan needs ~{} MiB \
             and the as-of table ~{} MiB besides the histories (~{} MiB, in at most \
             {MAX_SHARDS} shards), the training samples and scoring (~{} MiB)",
            mb(limit),
            mb(SCAN_FIXED_BYTES),
            mb(latest),
            mb(histories),
            mb(scoring)
        )));
    }
    let fraction = left as f64 / samples.max(1) as f64;
    Ok(plan(shards, Some(fraction.min(1.0))))
}

/// `run`'s scan reduced to the models' inputs as `plan` says.
pub fn model_inputs(
    inputs: &InputSet,
    read: &ReadOptions,
    specs: &[TableSpec],
    plan: ShardPlan,
) -> Result<ModelInputs> {
    let read = with_duplicates(inputs, read)?;
    let fraction = plan.train_fraction;
    let shards = plan.shards;
    if shards <= 1 {
        let scanned = scan_shard(inputs, &read, specs)?;
        check_totals(inputs, &scanned.stats, &read)?;
        return scanned.model_inputs(fraction);
    }
    let mut parts = Vec::with_capacity(shards as usize);
    for index in 0..shards {
        let t = Instant::now();
        let shard = ReadOptions {
            shard: Some(Shard {
                index,
                count: shards,
            }),
            ..read.clone()
        };
        let part = scan_shard(inputs, &shard, specs)?.model_inputs(fraction)?;
        tracing::info!(
            stage = "shard",
            shard = index,
            shards,
            customers = part.customers(),
            duration_ms = t.elapsed().as_millis() as u64,
            "shard {} of {shards}: {} customers",
            index + 1,
            part.customers()
        );
        parts.push(Part::of(part));
    }
    let gathered = gather(parts, fraction)?;
    check_totals(inputs, &gathered.stats, &read)?;
    Ok(gathered)
}

/// Customers per piece of a shard's as-of table.
const PIECE: usize = 16 * 1024;

/// One shard's inputs, its as-of table in pieces so that gathering frees each piece once
/// moved (the gathered table is never held twice).
struct Part {
    cutoff: chrono::NaiveDate,
    pieces: VecDeque<(std::vec::IntoIter<Features>, std::vec::IntoIter<Box<str>>)>,
    len: usize,
    samples: Vec<Sample>,
    stats: ScanStats,
    rejects: Vec<arrow_array::RecordBatch>,
}

impl Part {
    fn of(m: ModelInputs) -> Part {
        Part::in_pieces(m, PIECE)
    }

    fn in_pieces(m: ModelInputs, piece: usize) -> Part {
        let rows = match m.held {
            Some(held) => held.into_rows(),
            None => m.latest.rows,
        };
        let len = rows.len();
        let mut rows = rows.into_iter();
        let mut ids = m.latest.customer_ids.into_iter();
        let mut pieces = VecDeque::new();
        loop {
            let r: Vec<Features> = rows.by_ref().take(piece.max(1)).collect();
            if r.is_empty() {
                break;
            }
            let i: Vec<Box<str>> = ids.by_ref().take(r.len()).collect();
            pieces.push_back((r.into_iter(), i.into_iter()));
        }
        Part {
            cutoff: m.latest.cutoff,
            pieces,
            len,
            samples: m.samples,
            stats: m.stats,
            rejects: m.rejects,
        }
    }

    /// The id of the next customer to move.
    fn peek(&self) -> Option<&str> {
        self.pieces
            .front()
            .and_then(|(_, ids)| ids.as_slice().first())
            .map(|id| id.as_ref())
    }

    /// Moves the next customer out; a piece is freed as soon as its last customer is out
    /// (so that [`Part::peek`] always sees the next one).
    fn next(&mut self) -> Option<(Features, Box<str>)> {
        let (rows, ids) = self.pieces.front_mut()?;
        let next = rows.next().zip(ids.next());
        if rows.as_slice().is_empty() {
            self.pieces.pop_front();
        }
        next
    }
}

/// The shards' inputs as one scan's: the as-of tables merged by customer id, each sample's
/// rows merged by their customers' merged positions.
fn gather(mut parts: Vec<Part>, train_fraction: Option<f64>) -> Result<ModelInputs> {
    let Some(cutoff) = parts.first().map(|p| p.cutoff) else {
        return Err(Error::Internal("no shards to gather".into()));
    };
    let mut stats = ScanStats::default();
    let mut rejects = Vec::new();
    let mut samples: Vec<Vec<Sample>> = Vec::with_capacity(parts.len());
    for p in &mut parts {
        stats = stats.merge(std::mem::take(&mut p.stats));
        rejects.append(&mut p.rejects);
        samples.push(std::mem::take(&mut p.samples));
    }
    // Shards hold disjoint customers, each table sorted by id: merged by id, each shard row's
    // merged position kept for the samples.
    let n: usize = parts.iter().map(|p| p.len).sum();
    let mut position: Vec<Vec<u32>> = parts.iter().map(|p| Vec::with_capacity(p.len)).collect();
    let mut rows: Vec<Features> = Vec::with_capacity(n);
    let mut customer_ids: Vec<Box<str>> = Vec::with_capacity(n);
    for at in 0..n {
        let shard = (0..parts.len())
            .filter_map(|s| parts[s].peek().map(|id| (id, s)))
            .min()
            .map(|(_, s)| s)
            .ok_or_else(|| Error::Internal("shard tables ran out early".into()))?;
        let (r, id) = parts[shard]
            .next()
            .ok_or_else(|| Error::Internal("shard table ran out early".into()))?;
        position[shard].push(at as u32);
        rows.push(r);
        customer_ids.push(id);
    }
    drop(parts);
    // Each window's sample: the shards' rows in merged customer order.
    let windows = samples.first().map_or(0, Vec::len);
    let mut per_window: Vec<Vec<Sample>> = (0..windows).map(|_| Vec::new()).collect();
    for shard_samples in samples {
        if shard_samples.len() != windows {
            return Err(Error::Internal("shards with different windows".into()));
        }
        for (w, s) in shard_samples.into_iter().enumerate() {
            per_window[w].push(s);
        }
    }
    let merged = per_window
        .into_iter()
        .map(|shards| merge_samples(shards, &position))
        .collect::<Result<Vec<_>>>()?;
    Ok(ModelInputs {
        samples: merged,
        latest: FeatureTable {
            cutoff,
            customer_ids,
            rows,
            labels: None,
        },
        stats,
        rejects,
        train_fraction,
        held: None,
    })
}

/// One window's shard samples (shard `s`'s customers are rows of shard `s`'s table, mapped to
/// merged positions by `position[s]`) as one sample in merged order.
fn merge_samples(shards: Vec<Sample>, position: &[Vec<u32>]) -> Result<Sample> {
    let total: usize = shards.iter().map(Sample::len).sum();
    let detail = shards.iter().any(|s| s.detail.is_some());
    let global = |s: usize, r: usize| position[s][shards[s].customer[r] as usize];
    let mut out = SampleBuilder::zeroed(total, detail);
    let mut next = vec![0usize; shards.len()];
    for at in 0..total {
        let s = (0..shards.len())
            .filter(|&s| next[s] < shards[s].len())
            .min_by_key(|&s| global(s, next[s]))
            .ok_or_else(|| Error::Internal("shard samples ran out early".into()))?;
        out.set(at, shards[s].row(next[s], global(s, next[s])));
        next[s] += 1;
    }
    Ok(out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(ids: &[&str], piece: usize) -> Part {
        let rows = ids
            .iter()
            .map(|id| Features {
                n_events: id.len() as u64,
                ..Features::default()
            })
            .collect();
        Part::in_pieces(
            ModelInputs {
                samples: Vec::new(),
                latest: FeatureTable {
                    cutoff: chrono::NaiveDate::MIN,
                    customer_ids: ids.iter().map(|&id| id.into()).collect(),
                    rows,
                    labels: None,
                },
                stats: ScanStats::default(),
                rejects: Vec::new(),
                train_fraction: None,
                held: None,
            },
            piece,
        )
    }

    /// Shards longer than a piece (pieces of 2 here, 16k in a run) merge in id order.
    #[test]
    fn shard_tables_merge_in_id_order_across_pieces() {
        for piece in [1, 2, 3, 100] {
            let parts = vec![
                part(&["a", "c", "d", "g", "h"], piece),
                part(&["b", "e", "f"], piece),
                part(&[], piece),
                part(&["i"], piece),
            ];
            let m = gather(parts, None).unwrap_or_else(|e| panic!("{e}"));
            let ids: Vec<&str> = m.latest.customer_ids.iter().map(|s| s.as_ref()).collect();
            assert_eq!(
                ids,
                ["a", "b", "c", "d", "e", "f", "g", "h", "i"],
                "piece {piece}"
            );
            assert!(m.latest.rows.iter().all(|r| r.n_events == 1));
        }
    }
}
