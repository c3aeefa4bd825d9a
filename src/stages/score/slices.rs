//! Scoring by slices of customers (`run` under a memory budget): the whole table's summary
//! and cut points first, then its score rows a slice at a time, never the whole table.

use arrow_array::RecordBatch;

use super::{
    model_outputs, rank_key_of, reason_names, score_rows, summarise, tiers_and_stages, Models,
    Outcomes, ScoreError, Summary,
};
use crate::cuts::{Cuts, RankKeys};
use crate::features::FeatureTable;
use crate::segment::TierConfig;

/// The summary of the whole table ([`Summary`]) and its cut points, by slices of `slice`
/// customers, never holding the score table: the models' outputs of each slice (checked:
/// an unusable score fails here, before anything is written), the cut points from the CLVs
/// and rank keys, then each customer's tier. Equal to [`score_with`]'s summary (the cuts
/// give every customer the bin and tier of the whole table: `crate::cuts`).
pub fn summary_by_slices(
    set: &FeatureTable,
    models: &Models<'_>,
    tiers: &TierConfig,
    slice: usize,
) -> Result<(Summary, Cuts), ScoreError> {
    let n = set.len();
    let (ids, rows) = (&set.customer_ids, &set.rows);
    let names = reason_names(models.churn);
    let mut churn_probability = Vec::with_capacity(n);
    let mut clv = Vec::with_capacity(n);
    let mut with_probability = 0;
    for range in slices_of(n, slice) {
        let out = model_outputs(&ids[range.clone()], &rows[range], models, &names)?;
        with_probability += out.with_probability;
        churn_probability.extend(out.churn_probability);
        clv.extend(out.values.iter().map(|v| v.map(|s| s.clv)));
    }
    let cuts = Cuts::of_each(
        n,
        |i| ids[i].as_ref(),
        |i| {
            let [recency, frequency, monetary] = rank_key_of(&rows[i]);
            RankKeys {
                recency,
                frequency,
                monetary,
                clv: clv[i],
            }
        },
        tiers.vip_top_share,
    );
    let h = f64::from(models.horizon_days);
    let mut tier = Vec::with_capacity(n);
    let mut stages = Vec::with_capacity(n);
    for r in slices_of(n, slice) {
        let (p, c) = (&churn_probability[r.clone()], &clv[r.clone()]);
        let (t, s) = tiers_and_stages(&ids[r.clone()], &rows[r], p, c, Some(&cuts), h, tiers);
        tier.extend(t);
        stages.extend(s);
    }
    let summary = summarise(
        rows,
        Outcomes {
            churn_probability,
            clv,
            tier,
            stages,
            with_probability,
        },
    );
    Ok((summary, cuts))
}

/// The score table of `set` as batches of `slice` customers in row (customer_id) order,
/// each built with the whole table's `cuts` ([`summary_by_slices`]) when asked for: one
/// slice's rows in memory at a time.
pub fn score_slices<'a>(
    set: &'a FeatureTable,
    models: &'a Models<'a>,
    tiers: &'a TierConfig,
    run_id: &'a str,
    cuts: &'a Cuts,
    slice: usize,
) -> impl Iterator<Item = Result<RecordBatch, ScoreError>> + 'a {
    slices_of(set.len(), slice).map(move |range| {
        let ids = &set.customer_ids[range.clone()];
        score_rows(ids, &set.rows[range], models, tiers, run_id, Some(cuts)).map(|(table, _)| table)
    })
}

/// `0..n` in ranges of `slice` (at least 1).
fn slices_of(n: usize, slice: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let slice = slice.max(1);
    (0..n).step_by(slice).map(move |lo| lo..(lo + slice).min(n))
}
