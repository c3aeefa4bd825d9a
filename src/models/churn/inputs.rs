//! The churn model's inputs: the [`FEATURES`] it reads, each customer's raw and logged row, the
//! scaling learnt on a design and applied to other rows, and the [`Design`] that fits share.

use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::features::Features;

use super::ModelError;

/// How a raw feature value is compressed before standardisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Transform {
    /// sign(x)·ln(1 + |x|).
    #[serde(rename = "signed_log1p")]
    SignedLog1p,
}

impl Transform {
    fn apply(self, v: f64) -> f64 {
        match self {
            Transform::SignedLog1p => signed_log1p(v),
        }
    }
}

/// How one raw feature becomes a model input: `(transform(x) − mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureScaling {
    /// One of [`FEATURES`]: the raw column is found by this name, not by position.
    pub name: String,
    pub transform: Transform,
    pub mean: f64,
    pub std: f64,
}

/// The smallest spread a fitted scaling keeps: a column whose transformed values spread less
/// is constant, and is given std 1 (it then carries no weight). A model file with a smaller
/// std was not written by a fit.
pub const MIN_STD: f64 = 1e-12;

/// Names of the model inputs, in matrix column order.
/// RFM and BTYD summary first, then behaviour (zero, hence constant and inert, for data with
/// purchases only).
pub const FEATURES: [&str; 17] = [
    "recency_days",
    "frequency",
    "monetary_total",
    "avg_order_value",
    "tenure_days",
    "t_days",
    "n_events",
    "days_since_last_event",
    "events_30d",
    "events_90d",
    "trend_30d",
    "active_days",
    "n_sessions",
    "cart_abandonments",
    "n_support_tickets",
    "n_email_opens",
    "refund_ratio",
];

/// The raw column of a feature name in [`FEATURES`] order (`None` for a name this build does not
/// compute).
pub fn feature_column(name: &str) -> Option<usize> {
    FEATURES.iter().position(|f| *f == name)
}

/// The raw feature row of one customer (who has purchased: recency is defined).
pub fn raw_row(r: &Features) -> [f64; 17] {
    [
        r.recency_days.unwrap_or(r.tenure_days),
        r.frequency as f64,
        r.monetary_total,
        r.avg_order_value.unwrap_or(0.0),
        r.tenure_days,
        r.t_days,
        r.n_events as f64,
        r.days_since_last_event,
        r.events_30d as f64,
        r.events_90d as f64,
        r.trend_30d,
        r.active_days as f64,
        r.n_sessions as f64,
        r.cart_abandonments as f64,
        r.n_support_tickets as f64,
        r.n_email_opens as f64,
        r.refund_ratio,
    ]
}

/// [`logged_row`] of every row, in parallel: the matrix every model scores from.
pub fn logged_matrix(rows: &[&Features]) -> Array2<f64> {
    let k = FEATURES.len();
    let mut flat = vec![0.0; rows.len() * k];
    flat.par_chunks_mut(k)
        .zip(rows.par_iter())
        .for_each(|(out, r)| out.copy_from_slice(&logged_row(r)));
    // `flat` holds rows.len() rows of k values: the shape always matches.
    Array2::from_shape_vec((rows.len(), k), flat).unwrap_or_else(|_| Array2::zeros((0, k)))
}

/// The transform every fitted scaling applies (see [`FeatureScaling`]).
pub const TRANSFORM: Transform = Transform::SignedLog1p;

/// One customer's model inputs before standardisation: [`raw_row`] with [`TRANSFORM`] applied.
/// Training builds these once per table ([`crate::models::sample::Sample`]), so no fit or
/// prediction takes a logarithm again.
pub fn logged_row(r: &Features) -> [f64; 17] {
    raw_row(r).map(|v| TRANSFORM.apply(v))
}

/// Learns the scaling of the raw feature columns ([`FEATURES`] order): `signed_log1p`, then
/// standardisation (a constant column keeps std 1). Returns it and the scaled matrix.
pub fn fit_scaling(x: &Array2<f64>) -> Result<(Vec<FeatureScaling>, Array2<f64>), ModelError> {
    // The shape is checked by the logged version.
    fit_scaling_logged(x.mapv(|v| TRANSFORM.apply(v)))
}

/// [`fit_scaling`] of rows already transformed ([`logged_row`]): standardised in place.
pub fn fit_scaling_logged(
    mut z: Array2<f64>,
) -> Result<(Vec<FeatureScaling>, Array2<f64>), ModelError> {
    let n = z.nrows().max(1) as f64;
    if z.ncols() != FEATURES.len() {
        return Err(ModelError::Shape {
            expected: FEATURES.len(),
            found: z.ncols(),
        });
    }
    let mut features = Vec::with_capacity(FEATURES.len());
    for (j, name) in FEATURES.iter().enumerate() {
        let col = z.column(j);
        let mean = col.sum() / n;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let std = if var.sqrt() > MIN_STD {
            var.sqrt()
        } else {
            1.0
        };
        z.column_mut(j).mapv_inplace(|v| (v - mean) / std);
        features.push(FeatureScaling {
            name: name.to_string(),
            transform: TRANSFORM,
            mean,
            std,
        });
    }
    if z.iter().any(|v| !v.is_finite()) {
        return Err(ModelError::Invalid("non-finite feature value".into()));
    }
    Ok((features, z))
}

/// Applies a learnt scaling to raw rows (columns in [`FEATURES`] order). Column `j` of the result
/// is `features[j]`, read from the raw column of that *name*: a model whose features are listed
/// in another order is applied correctly.
pub fn apply_scaling(
    features: &[FeatureScaling],
    x: &Array2<f64>,
) -> Result<Array2<f64>, ModelError> {
    // The shape is checked by the logged version.
    standardise_logged(features, &x.mapv(|v| TRANSFORM.apply(v)))
}

/// [`apply_scaling`] of rows already transformed ([`logged_row`]).
pub fn standardise_logged(
    features: &[FeatureScaling],
    logged: &Array2<f64>,
) -> Result<Array2<f64>, ModelError> {
    if logged.ncols() != FEATURES.len() {
        return Err(ModelError::Shape {
            expected: FEATURES.len(),
            found: logged.ncols(),
        });
    }
    let mut z = Array2::zeros((logged.nrows(), features.len()));
    for (j, f) in features.iter().enumerate() {
        let col =
            feature_column(&f.name).ok_or_else(|| ModelError::UnknownFeature(f.name.clone()))?;
        if f.transform != TRANSFORM {
            return Err(ModelError::Invalid(format!(
                "{}: transform {:?} is not the one training rows carry",
                f.name, f.transform
            )));
        }
        let (mean, std) = (f.mean, f.std);
        ndarray::Zip::from(z.column_mut(j))
            .and(logged.column(col))
            .for_each(|z, &v| *z = (v - mean) / std);
    }
    Ok(z)
}

fn signed_log1p(v: f64) -> f64 {
    v.signum() * v.abs().ln_1p()
}

/// Customers' raw features made model inputs once: the scaling learnt on them and the
/// standardised matrix. Fits that share the customers (the alpha grid) share one design.
#[derive(Debug, Clone)]
pub struct Design {
    pub(super) features: Vec<FeatureScaling>,
    pub(super) z: Array2<f64>,
}

impl Design {
    /// Learns the scaling of raw rows `x` (rows × [`FEATURES`]) and applies it.
    pub fn new(x: &Array2<f64>) -> Result<Design, ModelError> {
        let (features, z) = fit_scaling(x)?;
        Ok(Design { features, z })
    }

    /// The design of rows already transformed ([`logged_row`]), standardised in place.
    pub fn from_logged(logged: Array2<f64>) -> Result<Design, ModelError> {
        let (features, z) = fit_scaling_logged(logged)?;
        Ok(Design { features, z })
    }

    /// The learnt scaling.
    pub fn scaling(&self) -> &[FeatureScaling] {
        &self.features
    }

    /// The standardised rows.
    pub fn z(&self) -> &Array2<f64> {
        &self.z
    }

    /// The scaling and the standardised rows, for a fit that may consume the rows
    /// (`stages::value_select`: the boosted candidate splits them in place).
    pub fn into_parts(self) -> (Vec<FeatureScaling>, Array2<f64>) {
        (self.features, self.z)
    }

    /// Other transformed rows ([`logged_row`]) standardised with this design's scaling.
    pub fn standardise_logged(&self, logged: &Array2<f64>) -> Result<Array2<f64>, ModelError> {
        standardise_logged(&self.features, logged)
    }

    pub fn rows(&self) -> usize {
        self.z.nrows()
    }

    /// Other raw rows standardised with this design's scaling.
    pub fn standardise(&self, x: &Array2<f64>) -> Result<Array2<f64>, ModelError> {
        apply_scaling(&self.features, x)
    }
}
