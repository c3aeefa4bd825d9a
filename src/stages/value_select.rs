//! The value champion of a run: the supervised spend models (log1p least squares, the Poisson
//! and Tweedie GLMs) and BTYD × Gamma-Gamma predict each buyer's net spend over the next H days;
//! they compete on the **validation** window (fitted before `tv` with spend in `[tv, t0)`,
//! judged on spend in `[t0, t1)` — never on the evaluation window), the winner is refitted on
//! the latest window and feeds the CLV of the score table. Every candidate is also fitted at
//! `t0` and evaluated out of time at `t1` beside the others (metrics.json `value.challengers`).

use std::time::Instant;

use chrono::NaiveDate;
use ndarray::{Array2, Axis, Slice};
use rayon::prelude::*;
use serde::Serialize;

use crate::config::Config;
use crate::labels::Cutoffs;
use crate::models::boost::{self, BoostParams, Objective};
use crate::models::btyd::FittedTransactions;
use crate::models::churn::{standardise_logged, Design};
use crate::models::glm::SpendGlm;
use crate::models::sample::Sample;
use crate::models::spend::SpendModel;
use crate::models::spend_champion::{BoostedSpend, SpendChampion};
use crate::models::value::ValueModel;
use crate::models::ModelError;
use crate::stages::metrics::ValueScoresMetrics;

/// Tweedie power of the Tweedie GLM candidate: the middle of the compound Poisson-Gamma range
/// (zero spend with a point mass, positive spend continuous).
pub const TWEEDIE_POWER: f64 = 1.5;

/// The value models that compete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Log1pOls,
    PoissonGlm,
    TweedieGlm,
    /// Gradient-boosted trees with the Tweedie deviance ([`boost_params`]).
    BoostedTweedie,
    /// BTYD expected purchases × Gamma-Gamma expected order value.
    Btyd,
}

/// The supervised candidates, in the order they are reported.
pub const SUPERVISED: [Kind; 4] = [
    Kind::Log1pOls,
    Kind::PoissonGlm,
    Kind::TweedieGlm,
    Kind::BoostedTweedie,
];

/// The boosted spend model's settings: the booster's defaults (depth 4, leaves of at least 100
/// buyers, L2 1, 64 bins) with the Tweedie deviance at [`TWEEDIE_POWER`] (LightGBM's default
/// variance power), learning rate 0.3 and patience 10 instead of 0.1 and 20: the spend
/// booster is fitted up to three times a run (validation, out of time, final), and at 0.1 it
/// took ~50 rounds, ~2 s a fit on 150k buyers on the shared 2-core machine. The number of
/// rounds is chosen by early stopping inside the validation fit's window ([`select`]) and
/// reused by the later fits, which have no window of their own to stop on.
pub fn boost_params(rounds: Option<usize>) -> BoostParams {
    let defaults = BoostParams::default();
    BoostParams {
        objective: Objective::Tweedie {
            power: TWEEDIE_POWER,
        },
        learning_rate: 0.3,
        patience: 10,
        subsample: 0.5,
        max_rounds: rounds.unwrap_or(defaults.max_rounds).max(1),
        ..defaults
    }
}

/// Every `EARLY_STOP_EVERY`-th buyer of the validation fit's window (by position, i.e. by
/// customer id) is held out to stop the booster on: the rounds are chosen inside that window,
/// so the validation window judges the booster as it judges the others.
const EARLY_STOP_EVERY: usize = 5;

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Log1pOls => "log1p_ols",
            Kind::PoissonGlm => "poisson_glm",
            Kind::TweedieGlm => "tweedie_glm",
            Kind::BoostedTweedie => "boosted_tweedie",
            Kind::Btyd => "btyd_gamma_gamma",
        }
    }
}

/// Fits a supervised candidate on a standardised design and the next window's net spend
/// (`rounds`: the boosted model's, chosen by [`select`]).
pub fn fit(
    kind: Kind,
    design: &Design,
    spend: &[f64],
    rounds: Option<usize>,
) -> Result<SpendChampion, ModelError> {
    match kind {
        Kind::BoostedTweedie => {
            let y: Vec<f64> = spend.iter().map(|s| s.max(0.0)).collect();
            let names: Vec<&str> = design.scaling().iter().map(|f| f.name.as_str()).collect();
            let fitted = boost::fit(&boost_params(rounds), &names, design.z(), &y, None)
                .map_err(|e| ModelError::Invalid(format!("boosted spend model: {e}")))?;
            Ok(SpendChampion::BoostedTweedie(BoostedSpend {
                features: design.scaling().to_vec(),
                ensemble: fitted.ensemble,
            }))
        }
        Kind::Log1pOls => SpendModel::fit_design(design, spend).map(SpendChampion::Log1pOls),
        Kind::PoissonGlm => SpendGlm::fit_design(design, spend, 1.0).map(SpendChampion::PoissonGlm),
        Kind::TweedieGlm => {
            SpendGlm::fit_design(design, spend, TWEEDIE_POWER).map(SpendChampion::TweedieGlm)
        }
        Kind::Btyd => Err(ModelError::Invalid(
            "BTYD is not fitted on the churn design".into(),
        )),
    }
}

/// Mean Poisson deviance of predicted means `mu` for outcomes `y` (negative spend counts as
/// 0, a mean is floored at 1e-9): the selection criterion. A proper score for a mean, so it
/// rewards both the ranking and the scale, and unlike MAE (which a median minimises) it is
/// minimised by the expected spend CLV needs; it is also the deviance the Poisson GLM fits.
pub fn poisson_deviance(mu: &[f64], y: &[f64]) -> f64 {
    let n = mu.len().max(1) as f64;
    mu.iter()
        .zip(y)
        .map(|(&m, &y)| {
            let (m, y) = (m.max(1e-9), y.max(0.0));
            let t = if y > 0.0 { y * (y / m).ln() } else { 0.0 };
            2.0 * (t - (y - m))
        })
        .sum::<f64>()
        / n
}

/// One candidate's validation result.
#[derive(Debug, Serialize)]
pub struct Candidate {
    pub name: &'static str,
    /// Fit time on the `tv` window's buyers: logged (stage `evaluate`), not in metrics.json,
    /// which holds only what the data determine (`train` from files reproduces it exactly).
    #[serde(skip)]
    pub fit_ms: u64,
    /// Mean Poisson deviance on the validation window (the criterion).
    pub poisson_deviance: f64,
    pub mae: f64,
    pub gini: f64,
    pub predicted_total: f64,
    pub actual_total: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    kind: Kind,
}

/// How the value champion was chosen (metrics.json `value.selection`).
#[derive(Debug, Serialize)]
pub struct ValueSelection {
    /// The champion: scores CLV.
    pub chosen: &'static str,
    /// `time_ordered` (fitted at tv, judged on [t0, t1)), or `default` (no validation
    /// window: BTYD × Gamma-Gamma, as before challengers existed).
    pub scheme: &'static str,
    pub criterion: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Features before, spend in [first, second): the window the candidates were fitted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fitted_on: Option<(NaiveDate, NaiveDate)>,
    /// The window they were judged on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validated_on: Option<(NaiveDate, NaiveDate)>,
    pub candidates: Vec<Candidate>,
    /// Rounds of the boosted candidate, chosen by early stopping in the validation fit's
    /// window; the out-of-time and final fits grow that many.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boosted_rounds: Option<usize>,
    /// Set when the champion's final fit failed and BTYD × Gamma-Gamma scored instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_fit_error: Option<String>,
    #[serde(skip)]
    pub kind: Kind,
    /// The BTYD transaction model fitted on the validation customers' history before `t0`
    /// (the BTYD candidate's): the churn champion's buy-again challenger is judged with it
    /// on the same window (`models::buy_again`).
    #[serde(skip)]
    pub btyd_validation_fit: Option<FittedTransactions>,
}

impl ValueSelection {
    fn default_btyd(reason: String) -> ValueSelection {
        ValueSelection {
            chosen: Kind::Btyd.name(),
            scheme: "default",
            criterion: "mean_poisson_deviance",
            reason: Some(reason),
            fitted_on: None,
            validated_on: None,
            candidates: Vec::new(),
            final_fit_error: None,
            boosted_rounds: None,
            kind: Kind::Btyd,
            btyd_validation_fit: None,
        }
    }
}

fn candidate(kind: Kind, fit_ms: u64, predicted: &[f64], actual: &[f64]) -> Candidate {
    tracing::info!(
        stage = "evaluate",
        model = kind.name(),
        duration_ms = fit_ms,
        "value candidate {} fitted for the validation window",
        kind.name()
    );
    Candidate {
        name: kind.name(),
        fit_ms,
        poisson_deviance: poisson_deviance(predicted, actual),
        mae: crate::evaluate::mae(predicted, actual),
        gini: crate::evaluate::normalized_gini(predicted, actual),
        predicted_total: predicted.iter().sum(),
        actual_total: actual.iter().sum(),
        error: None,
        kind,
    }
}

fn failed(kind: Kind, error: String) -> Candidate {
    Candidate {
        name: kind.name(),
        fit_ms: 0,
        poisson_deviance: f64::NAN,
        mae: f64::NAN,
        gini: f64::NAN,
        predicted_total: f64::NAN,
        actual_total: f64::NAN,
        error: Some(error),
        kind,
    }
}

/// Chooses the value champion on the validation window: every candidate fitted on `tune`
/// (features before tv, spend in [tv, t0)) predicts the spend of `val` (features before t0,
/// spend in [t0, t1)); BTYD × Gamma-Gamma is fitted on `val`'s history before t0. The lowest
/// mean Poisson deviance wins. Without both samples (short history, `train` given fewer
/// tables), BTYD × Gamma-Gamma stays the champion and the reason is recorded.
pub fn select(
    tune: Option<&Sample>,
    val: Option<&Sample>,
    c: &Cutoffs,
    config: &Config,
) -> ValueSelection {
    let (Some(tune), Some(val)) = (tune, val) else {
        return ValueSelection::default_btyd(format!(
            "no labelled tables at {} and {} to choose it on",
            c.tv, c.t0
        ));
    };
    let Some(detail) = &val.detail else {
        return ValueSelection::default_btyd(format!(
            "the table at {} has no value inputs for BTYD",
            c.t0
        ));
    };
    if tune.len() < config.run.min_train_customers || val.is_empty() {
        return ValueSelection::default_btyd(format!(
            "{} customers bought before {} (min_train_customers {})",
            tune.len(),
            c.tv,
            config.run.min_train_customers
        ));
    }
    let design = match Design::from_logged(tune.x.clone()) {
        Ok(d) => d,
        Err(e) => return ValueSelection::default_btyd(format!("validation design failed: {e}")),
    };
    // The linear candidates share no state: fitted side by side. The boosted one comes after
    // them, on the design's own rows split in place (`boosted_with_early_stopping`), and the
    // validation rows are standardised only then: at the start of training (the run's memory
    // peak) this branch held the design, a second copy of it for the booster and the
    // standardised validation rows (3 × 24 MB on the bench file); now one at a time. The
    // branch still ends before the churn booster's beside it.
    let linear: Vec<_> = SUPERVISED[..SUPERVISED.len() - 1]
        .par_iter()
        .map(|&kind| {
            let t = Instant::now();
            let fitted = fit(kind, &design, &tune.spend, None).map(|m| (m, None));
            (kind, fitted, t.elapsed())
        })
        .collect();
    let t = Instant::now();
    let scaling = design.scaling().to_vec();
    let boosted = boosted_with_early_stopping(design, &tune.spend).map(|(m, r)| (m, Some(r)));
    let boosted = (Kind::BoostedTweedie, boosted, t.elapsed());
    let zv = match standardise_logged(&scaling, &val.x) {
        Ok(z) => z,
        Err(e) => return ValueSelection::default_btyd(format!("validation design failed: {e}")),
    };
    let fitted: Vec<_> = linear
        .into_iter()
        .chain([boosted])
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|(kind, fitted, took)| {
            let t = Instant::now();
            let predicted = fitted
                .map(|(m, r)| (m.predict_standardised(&zv), r))
                .map_err(|e| e.to_string());
            (kind, predicted, (took + t.elapsed()).as_millis() as u64)
        })
        .collect();
    let mut candidates = Vec::new();
    let mut rounds = None;
    for (kind, predicted, ms) in fitted {
        match predicted {
            Ok((predicted, r)) => {
                rounds = rounds.or(r);
                candidates.push(candidate(kind, ms, &predicted, &val.spend));
            }
            Err(e) => candidates.push(failed(kind, e)),
        }
    }
    drop(zv);
    let t = Instant::now();
    let mut btyd_validation_fit = None;
    match ValueModel::fit(&detail.value, &config.btyd) {
        Ok(model) => {
            let h = f64::from(c.horizon_days);
            let predicted: Vec<f64> = detail
                .value
                .par_iter()
                .map(|v| {
                    let s = model.score(v, h);
                    s.expected_purchases * s.expected_order_value
                })
                .collect();
            let ms = t.elapsed().as_millis() as u64;
            candidates.push(candidate(Kind::Btyd, ms, &predicted, &val.spend));
            btyd_validation_fit = Some(model.transactions);
        }
        Err(e) => candidates.push(failed(Kind::Btyd, e.to_string())),
    }
    let best = candidates
        .iter()
        .filter(|c| c.poisson_deviance.is_finite())
        .min_by(|a, b| a.poisson_deviance.total_cmp(&b.poisson_deviance))
        .map(|c| c.kind);
    let Some(kind) = best else {
        let mut s =
            ValueSelection::default_btyd("no candidate had a finite validation deviance".into());
        s.candidates = candidates;
        s.btyd_validation_fit = btyd_validation_fit;
        return s;
    };
    // As for the churn champion: on a small validation window a deviance edge is noise, and a
    // champion that switches model family between nights moves every CLV (on 3,000-customer
    // histories it tripped the score PSI drift gate). The candidates are still measured.
    let min = crate::stages::challengers::MIN_VALIDATION_CUSTOMERS;
    if kind != Kind::Btyd && val.len() < min {
        let mut s = ValueSelection::default_btyd(format!(
            "{} validation customers (< {min}): BTYD x Gamma-Gamma kept; {} had the lowest deviance",
            val.len(),
            kind.name()
        ));
        s.candidates = candidates;
        s.fitted_on = Some((c.tv, c.t0));
        s.validated_on = Some((c.t0, c.t1));
        s.boosted_rounds = rounds;
        s.btyd_validation_fit = btyd_validation_fit;
        return s;
    }
    ValueSelection {
        chosen: kind.name(),
        scheme: "time_ordered",
        criterion: "mean_poisson_deviance",
        reason: None,
        fitted_on: Some((c.tv, c.t0)),
        validated_on: Some((c.t0, c.t1)),
        candidates,
        final_fit_error: None,
        boosted_rounds: rounds,
        kind,
        btyd_validation_fit,
    }
}

/// The boosted candidate of the validation fit: trees grown on four fifths of the window's
/// buyers, stopped at the best round on the other fifth (patience 20); returns the model and
/// its rounds. Consumes the design: the fit rows are moved to the front of its own matrix
/// (in order, in place) and only the stopping rows are copied.
fn boosted_with_early_stopping(
    design: Design,
    spend: &[f64],
) -> Result<(SpendChampion, usize), ModelError> {
    let (scaling, z) = design.into_parts();
    let (fit_rows, stop_rows): (Vec<usize>, Vec<usize>) =
        (0..z.nrows()).partition(|i| i % EARLY_STOP_EVERY != 0);
    let y = |rows: &[usize]| -> Vec<f64> { rows.iter().map(|&i| spend[i].max(0.0)).collect() };
    let (zf, zs) = split_rows(z, &fit_rows, &stop_rows);
    let names: Vec<&str> = scaling.iter().map(|f| f.name.as_str()).collect();
    let fitted = boost::fit(
        &boost_params(None),
        &names,
        &zf,
        &y(&fit_rows),
        Some((&zs, &y(&stop_rows))),
    )
    .map_err(|e| ModelError::Invalid(format!("boosted spend model: {e}")))?;
    let rounds = fitted.rounds;
    Ok((
        SpendChampion::BoostedTweedie(BoostedSpend {
            features: scaling,
            ensemble: fitted.ensemble,
        }),
        rounds,
    ))
}

/// The rows `keep` and the rows `other` of `z`, as `z.select(Axis(0), keep)` and
/// `z.select(Axis(0), other)` give them; `keep` must be ascending and distinct. `keep`'s rows
/// are moved forward inside `z`'s own buffer (contiguous `z`): only `other` is copied.
fn split_rows(mut z: Array2<f64>, keep: &[usize], other: &[usize]) -> (Array2<f64>, Array2<f64>) {
    let zo = z.select(Axis(0), other);
    let k = z.ncols();
    match z.as_slice_mut() {
        Some(v) => {
            // Ascending and distinct: `from >= to`, so a move never overwrites a row that is
            // still to be moved.
            for (to, &from) in keep.iter().enumerate() {
                v.copy_within(from * k..(from + 1) * k, to * k);
            }
            z.slice_axis_inplace(Axis(0), Slice::from(..keep.len()));
            (z, zo)
        }
        None => (z.select(Axis(0), keep), zo),
    }
}

/// One supervised candidate evaluated out of time (metrics.json `value.challengers`).
#[derive(Debug, Serialize)]
pub struct Challenger {
    #[serde(flatten)]
    pub metrics: ValueScoresMetrics,
    /// Fit time (logged, not in metrics.json: see [`Candidate::fit_ms`]).
    #[serde(skip)]
    pub fit_ms: u64,
    pub poisson_deviance: f64,
}

/// Every supervised candidate fitted on `design` (the churn fit's, with `spend` of its window)
/// and evaluated on the rows `z` (standardised with the same scaling) against `actual`. A
/// candidate that does not fit is left out with a warning.
pub fn out_of_time(
    design: &Design,
    spend: &[f64],
    z: &Array2<f64>,
    actual: &[f64],
    selection: &ValueSelection,
) -> Vec<Challenger> {
    // The challengers share no state: fitted side by side, reported in their fixed order.
    let fitted: Vec<_> = SUPERVISED
        .par_iter()
        .map(|&kind| {
            let t = Instant::now();
            let m = fit(kind, design, spend, selection.boosted_rounds);
            (kind, m, t.elapsed().as_millis() as u64)
        })
        .collect();
    let mut out = Vec::new();
    for (kind, m, fit_ms) in fitted {
        match m {
            Ok(m) => {
                tracing::info!(
                    stage = "evaluate",
                    model = kind.name(),
                    duration_ms = fit_ms,
                    "value challenger {} fitted for the out-of-time window",
                    kind.name()
                );
                let predicted = m.predict_standardised(z);
                out.push(Challenger {
                    poisson_deviance: poisson_deviance(&predicted, actual),
                    metrics: ValueScoresMetrics::new(kind.name(), &predicted, actual),
                    fit_ms,
                });
            }
            Err(e) => tracing::warn!(
                stage = "evaluate",
                "value challenger {} not evaluated: {e}",
                kind.name()
            ),
        }
    }
    out
}

/// The champion refitted on the latest labelled window (`None` when BTYD × Gamma-Gamma is the
/// champion). A failed final fit falls back to BTYD × Gamma-Gamma and is recorded.
pub fn final_fit(
    selection: &mut ValueSelection,
    design: &Design,
    spend: &[f64],
) -> Option<SpendChampion> {
    if selection.kind == Kind::Btyd {
        return None;
    }
    match fit(selection.kind, design, spend, selection.boosted_rounds) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(
                stage = "final fits",
                "value champion {} not refitted, BTYD × Gamma-Gamma scores CLV: {e}",
                selection.chosen
            );
            selection.final_fit_error = Some(e.to_string());
            selection.kind = Kind::Btyd;
            selection.chosen = Kind::Btyd.name();
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_rows_gives_what_select_gives() {
        let z = Array2::from_shape_fn((11, 3), |(i, j)| (i * 10 + j) as f64);
        let (keep, other): (Vec<usize>, Vec<usize>) = (0..11).partition(|i| i % 5 != 0);
        let (a, b) = split_rows(z.clone(), &keep, &other);
        assert_eq!(a, z.select(Axis(0), &keep));
        assert_eq!(b, z.select(Axis(0), &other));
        assert_eq!(a.dim(), (8, 3));
        // A matrix that is not contiguous row by row is split by copying, with the same result.
        let t = z
            .clone()
            .reversed_axes()
            .as_standard_layout()
            .to_owned()
            .reversed_axes();
        assert!(!t.is_standard_layout());
        let (a, b) = split_rows(t, &keep, &other);
        assert_eq!(a, z.select(Axis(0), &keep));
        assert_eq!(b, z.select(Axis(0), &other));
    }

    #[test]
    fn poisson_deviance_is_zero_at_the_outcome_and_grows_away_from_it() {
        let y = [0.0, 2.0, 10.0];
        assert!(poisson_deviance(&[1e-9, 2.0, 10.0], &y) < 1e-8);
        // 2·[10·ln(10/5) − 5] / 3 for the last row alone.
        let d = poisson_deviance(&[1e-9, 2.0, 5.0], &y);
        assert!(
            (d - 2.0 * (10.0 * 2f64.ln() - 5.0) / 3.0).abs() < 1e-8,
            "{d}"
        );
    }
}
