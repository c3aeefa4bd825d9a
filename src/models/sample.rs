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

/// One buyer's row of a [`Sample`], computed where the customer's history is and placed at
/// the buyer's position later ([`SampleBuilder::set`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRow {
    customer: u32,
    x: [f64; FEATURES.len()],
    churned: bool,
    spend: f64,
    detail: Option<DetailRow>,
}

#[derive(Debug, Clone, PartialEq)]
struct DetailRow {
    recency: f64,
    value: ValueInputs,
    purchase_days: u64,
    prior_net_spend: f64,
}

impl SampleRow {
    /// The row of customer `customer` with features `f`, if they had bought before the
    /// cutoff; `label` and `prior` (the prior window's net spend, a detail column) are only
    /// computed for a buyer, `prior` only with `detail`.
    pub fn of(
        customer: u32,
        f: &Features,
        label: impl FnOnce() -> Label,
        prior: impl FnOnce() -> f64,
        detail: bool,
    ) -> Option<SampleRow> {
        let value = ValueInputs::of(f)?;
        let l = label();
        Some(SampleRow {
            customer,
            x: logged_row(f),
            churned: l.churned,
            spend: l.spend,
            detail: detail.then(|| DetailRow {
                // A buyer's recency is defined; the fallback only guards a hand-made row.
                recency: f.recency_days.unwrap_or(0.0),
                value,
                purchase_days: l.purchase_days,
                prior_net_spend: prior(),
            }),
        })
    }
}

/// A [`Sample`] of a known number of buyers, filled by position: one allocation per column
/// at its final size (zeroed pages are only touched as rows arrive), so a sample is never
/// held twice.
#[derive(Debug)]
pub struct SampleBuilder {
    customer: Vec<u32>,
    x: Vec<f64>,
    churned: Vec<bool>,
    spend: Vec<f64>,
    detail: Option<Detail>,
}

impl SampleBuilder {
    /// Room for `n` buyers, with the [`Detail`] columns when `detail`.
    pub fn zeroed(n: usize, detail: bool) -> SampleBuilder {
        SampleBuilder {
            customer: vec![0; n],
            x: vec![0.0; n * FEATURES.len()],
            churned: vec![false; n],
            spend: vec![0.0; n],
            detail: detail.then(|| Detail {
                recency: vec![0.0; n],
                value: vec![ValueInputs::default(); n],
                purchase_days: vec![0; n],
                prior_net_spend: vec![0.0; n],
            }),
        }
    }

    /// Room for `n` buyers arriving in any order ([`SampleBuilder::push`]): memory is touched
    /// as rows arrive (a zeroed sample filled at scattered positions is resident in full from
    /// its first rows on), then [`SampleBuilder::permute`] puts them in place.
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

    /// Appends `row` (its place is given to [`SampleBuilder::permute`]).
    pub fn push(&mut self, row: SampleRow) {
        self.customer.push(row.customer);
        self.x.extend_from_slice(&row.x);
        self.churned.push(row.churned);
        self.spend.push(row.spend);
        if let Some(d) = &mut self.detail {
            let r = row.detail.unwrap_or(DetailRow {
                recency: 0.0,
                value: ValueInputs::default(),
                purchase_days: 0,
                prior_net_spend: 0.0,
            });
            d.recency.push(r.recency);
            d.value.push(r.value);
            d.purchase_days.push(r.purchase_days);
            d.prior_net_spend.push(r.prior_net_spend);
        }
    }

    /// Moves row `j` to position `dest[j]`, in place (each swap puts one row where it
    /// belongs). `dest` must be a permutation of `0..len`: otherwise an error, naming the
    /// first position found twice or out of range.
    pub fn permute(&mut self, dest: &mut [u32]) -> Result<(), String> {
        let n = self.len();
        if dest.len() != n {
            return Err(format!("{} places for {n} rows", dest.len()));
        }
        let k = FEATURES.len();
        for p in 0..n {
            while dest[p] as usize != p {
                let r = dest[p] as usize;
                if r >= n || dest[r] as usize == r {
                    return Err(format!("place {r} is out of range or taken twice"));
                }
                self.customer.swap(p, r);
                for j in 0..k {
                    self.x.swap(p * k + j, r * k + j);
                }
                self.churned.swap(p, r);
                self.spend.swap(p, r);
                if let Some(d) = &mut self.detail {
                    d.recency.swap(p, r);
                    d.value.swap(p, r);
                    d.purchase_days.swap(p, r);
                    d.prior_net_spend.swap(p, r);
                }
                dest.swap(p, r);
            }
        }
        Ok(())
    }

    /// Rows it was made for.
    pub fn len(&self) -> usize {
        self.customer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.customer.is_empty()
    }

    /// Places `row` as buyer number `pos` (`pos` < the `n` it was made for).
    pub fn set(&mut self, pos: usize, row: SampleRow) {
        let k = FEATURES.len();
        self.customer[pos] = row.customer;
        self.x[pos * k..(pos + 1) * k].copy_from_slice(&row.x);
        self.churned[pos] = row.churned;
        self.spend[pos] = row.spend;
        if let (Some(d), Some(r)) = (&mut self.detail, row.detail) {
            d.recency[pos] = r.recency;
            d.value[pos] = r.value;
            d.purchase_days[pos] = r.purchase_days;
            d.prior_net_spend[pos] = r.prior_net_spend;
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
        let rows: Vec<SampleRow> = (table.rows.iter().enumerate())
            .filter_map(|(i, f)| {
                let label = || Label {
                    churned: w.churned[i],
                    spend: w.spend[i],
                    purchase_days: w.purchase_days[i],
                };
                SampleRow::of(i as u32, f, label, || labels.prior_net_spend[i], true)
            })
            .collect();
        let mut b = SampleBuilder::zeroed(rows.len(), true);
        for (pos, row) in rows.into_iter().enumerate() {
            b.set(pos, row);
        }
        Some(b.finish())
    }

    /// Row `r` as a [`SampleRow`] of customer `customer` (to place it in another sample).
    pub fn row(&self, r: usize, customer: u32) -> SampleRow {
        let mut x = [0.0; FEATURES.len()];
        for (v, &z) in x.iter_mut().zip(self.x.row(r)) {
            *v = z;
        }
        SampleRow {
            customer,
            x,
            churned: self.churned[r],
            spend: self.spend[r],
            detail: self.detail.as_ref().map(|d| DetailRow {
                recency: d.recency[r],
                value: d.value[r],
                purchase_days: d.purchase_days[r],
                prior_net_spend: d.prior_net_spend[r],
            }),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(c: u32) -> SampleRow {
        SampleRow {
            customer: c,
            x: [f64::from(c); FEATURES.len()],
            churned: c % 2 == 0,
            spend: f64::from(c) * 10.0,
            detail: Some(DetailRow {
                recency: f64::from(c),
                value: ValueInputs::default(),
                purchase_days: u64::from(c),
                prior_net_spend: -f64::from(c),
            }),
        }
    }

    #[test]
    fn rows_pushed_in_any_order_are_put_in_place() {
        let arrival = [3u32, 0, 4, 1, 2];
        let mut b = SampleBuilder::with_capacity(arrival.len(), true);
        for &c in &arrival {
            b.push(row(c));
        }
        let mut places = arrival.to_vec();
        b.permute(&mut places).expect("a permutation");
        let s = b.finish();
        assert_eq!(s.customer, vec![0, 1, 2, 3, 4]);
        assert_eq!(s.x.column(5).to_vec(), vec![0.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.churned, vec![true, false, true, false, true]);
        assert_eq!(s.spend, vec![0.0, 10.0, 20.0, 30.0, 40.0]);
        let d = s.detail.expect("detail");
        assert_eq!(d.purchase_days, vec![0, 1, 2, 3, 4]);
        assert_eq!(d.prior_net_spend, vec![0.0, -1.0, -2.0, -3.0, -4.0]);
    }

    #[test]
    fn places_that_are_not_a_permutation_are_refused() {
        let mut b = SampleBuilder::with_capacity(3, false);
        for c in 0..3 {
            b.push(row(c));
        }
        assert_eq!(
            b.permute(&mut [1, 1, 0]),
            Err("place 1 is out of range or taken twice".to_string())
        );
        assert_eq!(
            b.permute(&mut [0, 1]),
            Err("2 places for 3 rows".to_string())
        );
        assert_eq!(
            b.permute(&mut [0, 1, 7]),
            Err("place 7 is out of range or taken twice".to_string())
        );
    }
}
