//! Bounded memory for `run`: when the customers' histories would not fit the memory budget
//! (`--memory-limit`, `run.memory_limit`), the customers are split into hash shards and the
//! input is scanned once per shard, each pass keeping only its customers' rows
//! ([`crate::io::Shard`]). Each shard is reduced to the models' inputs at once (its histories
//! dropped), and the shards' compact inputs are gathered in customer-id order: the same rows
//! in the same order as one unsharded scan gives, so the fits, the global cut points and the
//! scores are identical (`tests/shards.rs`). Row counts add up over the shards; the rejected
//! rows come shard after shard.

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

/// The gathered model inputs (samples at three cutoffs and the as-of table) per input row
/// (same measurement: ~190 MB for 11.5M rows, rounded up). Per customer it is ~1 KB, so this
/// over-estimates inputs with many events per customer and under-estimates very sparse ones.
pub const GATHERED_BYTES_PER_ROW: u64 = 18;

/// The most shards a budget may ask for: each is a pass over the whole input.
pub const MAX_SHARDS: u32 = 256;

/// How many shards `rows` input rows need under `limit` bytes (1: one scan). `forced`
/// (`run.shards`, when not 0) wins. An error when even the most shards would not fit.
pub fn shards_for(rows: u64, limit: Option<u64>, forced: u32) -> Result<u32> {
    if forced > 0 {
        return Ok(forced.min(MAX_SHARDS));
    }
    let Some(limit) = limit else {
        return Ok(1);
    };
    let gathered = rows.saturating_mul(GATHERED_BYTES_PER_ROW);
    let room = limit.saturating_sub(SCAN_FIXED_BYTES + gathered);
    let histories = rows.saturating_mul(HISTORY_BYTES_PER_ROW);
    let mb = |b: u64| b >> 20;
    if room == 0 || histories.div_ceil(room) > u64::from(MAX_SHARDS) {
        return Err(Error::Usage(format!(
            "--memory-limit {} MB is too small for {rows} input rows: the scan needs ~{} MB and \
             the models' inputs ~{} MB besides the histories (~{} MB, in at most {MAX_SHARDS} shards)",
            mb(limit),
            mb(SCAN_FIXED_BYTES),
            mb(gathered),
            mb(histories)
        )));
    }
    Ok(histories.div_ceil(room).max(1) as u32)
}

/// `run`'s scan reduced to the models' inputs, in `shards` passes (1: one plain scan).
pub fn model_inputs(
    inputs: &InputSet,
    read: &ReadOptions,
    specs: &[TableSpec],
    shards: u32,
) -> Result<ModelInputs> {
    let read = with_duplicates(inputs, read)?;
    if shards <= 1 {
        let scanned = scan_shard(inputs, &read, specs)?;
        check_totals(inputs, &scanned.stats, &read)?;
        return scanned.model_inputs();
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
        let part = scan_shard(inputs, &shard, specs)?.model_inputs()?;
        tracing::info!(
            stage = "shard",
            shard = index,
            shards,
            customers = part.latest.len(),
            duration_ms = t.elapsed().as_millis() as u64,
            "shard {} of {shards}: {} customers",
            index + 1,
            part.latest.len()
        );
        parts.push(part);
    }
    let gathered = gather(parts)?;
    check_totals(inputs, &gathered.stats, &read)?;
    Ok(gathered)
}

/// The shards' inputs as one scan's: the as-of tables merged by customer id, each sample's
/// rows merged by their customers' merged positions.
fn gather(parts: Vec<ModelInputs>) -> Result<ModelInputs> {
    let mut stats = ScanStats::default();
    let mut rejects = Vec::new();
    let mut tables: Vec<FeatureTable> = Vec::with_capacity(parts.len());
    let mut samples: Vec<Vec<Sample>> = Vec::with_capacity(parts.len());
    for p in parts {
        stats = stats.merge(p.stats);
        rejects.extend(p.rejects);
        tables.push(p.latest);
        samples.push(p.samples);
    }
    let Some(cutoff) = tables.first().map(|t| t.cutoff) else {
        return Err(Error::Internal("no shards to gather".into()));
    };
    // The merged order: (shard, row) of each customer in id order, and each shard row's
    // merged position. Shards hold disjoint customers, each table sorted by id.
    let n: usize = tables.iter().map(FeatureTable::len).sum();
    let mut position: Vec<Vec<u32>> = tables.iter().map(|t| vec![0; t.len()]).collect();
    let mut next = vec![0usize; tables.len()];
    let mut from: Vec<u32> = Vec::with_capacity(n);
    for at in 0..n {
        let shard = (0..tables.len())
            .filter(|&s| next[s] < tables[s].len())
            .min_by(|&a, &b| tables[a].customer_ids[next[a]].cmp(&tables[b].customer_ids[next[b]]))
            .ok_or_else(|| Error::Internal("shard tables ran out early".into()))?;
        position[shard][next[shard]] = at as u32;
        from.push(shard as u32);
        next[shard] += 1;
    }
    let mut rows_of: Vec<_> = tables
        .into_iter()
        .map(|t| t.rows.into_iter().zip(t.customer_ids))
        .collect();
    let mut rows: Vec<Features> = Vec::with_capacity(n);
    let mut customer_ids: Vec<Box<str>> = Vec::with_capacity(n);
    for &s in &from {
        let (r, id) = rows_of[s as usize]
            .next()
            .ok_or_else(|| Error::Internal("shard table ran out early".into()))?;
        rows.push(r);
        customer_ids.push(id);
    }
    drop(rows_of);
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
