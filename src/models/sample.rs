//! What the models read of the customers at one labelled cutoff: the buyers (customers who had
//! bought before it, the models' population) reduced to the churn and spend models' inputs
//! ([`logged_row`]: transformed once, standardised by each fit) and labels, plus, for the
//! evaluation window only, what the evaluation reads besides ([`Detail`]) — 150 to 230 bytes
//! a buyer instead of a feature row and an id string. `run` builds these from its scan in one
//! pass over the customers and drops the histories before any fit
//! (`stages::features::Scanned::model_inputs`); `train` from feature-table files
//! ([`Sample::from_table`]).

use ndarray::Array2;

use crate::features::{FeatureTable, Features};
use crate::labels::Label;
use crate::models::churn::{logged_row, FEATURES};
use crate::models::value::ValueInputs;

/// The buyers at one cutoff, in customer-id order, with the labels of the window after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Each row's customer: its position in the id list the sample was built against (the
    /// run's as-of table; a `train` input table's own rows).
    pub customer: Vec<u32>,
    /// Model inputs before standardisation ([`logged_row`]), rows × [`FEATURES`], contiguous.
    pub x: Array2<f64>,
    /// No purchase in the window.
    pub churned: Vec<bool>,
    /// Net spend in the window.
    pub spend: Vec<f64>,
    /// What the evaluation reads besides (built for the window it evaluates on).
    pub detail: Option<Detail>,
}

/// The columns only an evaluation window is read for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Detail {
    /// Days since the last purchase: the recency baseline's churn score.
    pub recency: Vec<f64>,
    /// The BTYD and Gamma-Gamma inputs (the BTYD holdout evaluation).
    pub value: Vec<ValueInputs>,
    /// Distinct purchase days in the window (what the BTYD models predict).
    pub purchase_days: Vec<u64>,
    /// Net spend in the window of the same length before the cutoff (the "next H = last H"
    /// baseline).
    pub prior_net_spend: Vec<f64>,
}

/// A [`Sample`] being filled, one buyer at a time, in customer order.
#[derive(Debug, Default)]
pub struct SampleBuilder {
    customer: Vec<u32>,
    x: Vec<f64>,
    churned: Vec<bool>,
    spend: Vec<f64>,
    detail: Option<Detail>,
}

impl SampleBuilder {
    /// Room for `n` buyers (with the [`Detail`] columns when `detail`): filled without
    /// reallocating, so a full sample is never held twice.
    pub fn with_capacity(n: usize, detail: bool) -> SampleBuilder {
        SampleBuilder {
            customer: Vec::with_capacity(n),
            x: Vec::with_capacity(n * FEATURES.len()),
            churned: Vec::with_capacity(n),
            spend: Vec::with_capacity(n),
            detail: detail.then(|| Detail {
                recency: Vec::with_capacity(n),
                value: Vec::with_capacity(n),
                purchase_days: Vec::with_capacity(n),
                prior_net_spend: Vec::with_capacity(n),
            }),
        }
    }

    /// Adds customer `customer` with features `f` if they had bought before the cutoff;
    /// `label` and `prior` (the prior window's net spend, read with the detail columns) are
    /// only computed for a buyer.
    pub fn push(
        &mut self,
        customer: u32,
        f: &Features,
        label: impl FnOnce() -> Label,
        prior: impl FnOnce() -> f64,
    ) {
        let Some(value) = ValueInputs::of(f) else {
            return;
        };
        let l = label();
        self.customer.push(customer);
        self.x.extend(logged_row(f));
        self.churned.push(l.churned);
        self.spend.push(l.spend);
        if let Some(d) = &mut self.detail {
            // A buyer's recency is defined; the fallback only guards a hand-made row.
            d.recency.push(f.recency_days.unwrap_or(0.0));
            d.value.push(value);
            d.purchase_days.push(l.purchase_days);
            d.prior_net_spend.push(prior());
        }
    }

    /// Appends `other`'s rows (a later slice of customers).
    pub fn append(&mut self, other: SampleBuilder) {
        self.customer.extend(other.customer);
        self.x.extend(other.x);
        self.churned.extend(other.churned);
        self.spend.extend(other.spend);
        if let (Some(d), Some(o)) = (&mut self.detail, other.detail) {
            d.recency.extend(o.recency);
            d.value.extend(o.value);
            d.purchase_days.extend(o.purchase_days);
            d.prior_net_spend.extend(o.prior_net_spend);
        }
    }

    /// The sample (the feature rows become its matrix without a copy).
    pub fn finish(self) -> Sample {
        let n = self.customer.len();
        let x = Array2::from_shape_vec((n, FEATURES.len()), self.x)
            .unwrap_or_else(|_| Array2::zeros((0, FEATURES.len())));
        Sample {
            customer: self.customer,
            x,
            churned: self.churned,
            spend: self.spend,
            detail: self.detail,
        }
    }
}

impl Sample {
    /// Rows.
    pub fn len(&self) -> usize {
        self.customer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.customer.is_empty()
    }

    /// The buyers of a labelled feature table, with the detail columns (`None` when it has
    /// no label columns); each row's customer is its row in `table`.
    pub fn from_table(table: &FeatureTable) -> Option<Sample> {
        let labels = table.labels.as_ref()?;
        let w = &labels.window;
        let mut b = SampleBuilder::with_capacity(0, true);
        for (i, f) in table.rows.iter().enumerate() {
            b.push(
                i as u32,
                f,
                || Label {
                    churned: w.churned[i],
                    spend: w.spend[i],
                    purchase_days: w.purchase_days[i],
                },
                || labels.prior_net_spend[i],
            );
        }
        Some(b.finish())
    }

    /// The rows `keep` (ascending), in order.
    pub fn select(&self, keep: &[usize]) -> Sample {
        fn pick<T: Copy>(v: &[T], keep: &[usize]) -> Vec<T> {
            keep.iter().map(|&i| v[i]).collect()
        }
        Sample {
            customer: pick(&self.customer, keep),
            x: self.x.select(ndarray::Axis(0), keep),
            churned: pick(&self.churned, keep),
            spend: pick(&self.spend, keep),
            detail: self.detail.as_ref().map(|d| Detail {
                recency: pick(&d.recency, keep),
                value: pick(&d.value, keep),
                purchase_days: pick(&d.purchase_days, keep),
                prior_net_spend: pick(&d.prior_net_spend, keep),
            }),
        }
    }
}
