//! The BTYD buy-again score as a churn model (issue 14, point 2): P(no purchase in the next H
//! days) from the run's BG/NBD (or MBG/NBD) fit, its validation log loss, and its reasons.
//!
//! The churn label is "no purchase event in `[c, c + H)`" (`labels::window_label`); BTYD's
//! `T` runs from the first purchase day to the last day before the cutoff `c`
//! (`features::customer`), so its forecast window `(T, T + H]` is the days `c … c + H − 1`:
//! the label's window, counted in purchase days, and "no purchase day" is "no purchase". The
//! score is therefore the label's probability itself, [`FittedTransactions::p_no_purchase`],
//! not an approximation from expected purchases.
//!
//! **Reasons** (`churn_reason_1..3` when it is champion): BG/NBD reads three inputs per
//! customer — repeat purchase days `x` (`frequency`), the days from the last purchase day to
//! the last day before the cutoff `T − t_x` (`recency_days`, BTYD's recency) and the age `T`
//! (`t_days`). Input `j`'s contribution is the exact difference
//! `logit P(churn | the customer) − logit P(churn | the customer with input j set to the
//! population's median)`, the other two kept (`t_x = T − recency`, clamped to `[0, T]`, and 0
//! when `x = 0`, as the summaries have it). The medians are those of the buyers the final BTYD
//! model was fitted on (saved in model.json, so `score` gives the same reasons). The reasons are
//! the inputs with a positive contribution, largest first: "this input makes the customer more
//! likely to churn than a typical customer would be with everything else the same". BG/NBD is
//! not additive in its inputs, so these do not sum to the margin difference (unlike the
//! logistic's or the booster's); exact one-at-a-time differences were preferred over a local
//! linearisation because the logit is far from linear in `x` and `T − t_x` (one more repeat
//! purchase changes P(alive) by a factor), and a tangent at the customer would misstate that.

use serde::{Deserialize, Serialize};

use crate::evaluate::log_loss;
use crate::models::btyd::{Customer, FittedTransactions};
use crate::models::sample::Sample;
use crate::models::saved::InvalidField;
use crate::models::value::ValueInputs;

/// The inputs a reason can name, in contribution order (names of the churn features they are).
pub const INPUTS: [&str; 3] = ["frequency", "recency_days", "t_days"];

/// The buy-again score when it is the run's churn champion (model.json `churn.btyd_buy_again`):
/// the probabilities come from the saved value model's transaction fit (`value.transactions`)
/// and the horizon; this holds what the reasons compare with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuyAgainChurn {
    /// Medians of the buyers the final BTYD model was fitted on, per input ([`INPUTS`]).
    pub reference: Reference,
}

/// The population's median of each input, in days (`frequency`: repeat purchase days).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    pub frequency: f64,
    pub recency_days: f64,
    pub t_days: f64,
}

/// `(x, T − t_x, T)` of a buyer (BTYD's summary, `T` floored as the fits floor it).
fn inputs(v: &ValueInputs) -> [f64; 3] {
    let c = v.summary();
    [c.x, (c.t - c.t_x).max(0.0), c.t]
}

/// The customer with inputs `[x, recency, T]`: `t_x = T − recency` within `[0, T]`, and 0
/// without a repeat purchase.
fn customer(i: [f64; 3]) -> Customer {
    let [x, recency, t] = i;
    let t_x = if x > 0.0 {
        (t - recency).clamp(0.0, t)
    } else {
        0.0
    };
    Customer::new(x, t_x, t)
}

/// The lower median (a value some buyer has): `frequency` stays a whole number.
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let k = (v.len() - 1) / 2;
    let (_, m, _) = v.select_nth_unstable_by(k, f64::total_cmp);
    *m
}

impl Reference {
    /// The medians of `rows` (the buyers a BTYD model was fitted on).
    pub fn of(rows: &[ValueInputs]) -> Reference {
        let col = |j: usize| median(rows.iter().map(|v| inputs(v)[j]).collect());
        Reference {
            frequency: col(0),
            recency_days: col(1),
            t_days: col(2),
        }
    }

    fn values(&self) -> [f64; 3] {
        [self.frequency, self.recency_days, self.t_days]
    }
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-15, 1.0 - 1e-15);
    (p / (1.0 - p)).ln()
}

impl BuyAgainChurn {
    /// Checks the reference (finite and ≥ 0); the field path is relative to this object.
    pub fn validate(&self) -> Result<(), InvalidField> {
        for (name, v) in INPUTS.iter().zip(self.reference.values()) {
            if !(v.is_finite() && v >= 0.0) {
                return Err(InvalidField::new(
                    format!("reference.{name}"),
                    "must be finite and >= 0",
                    v,
                ));
            }
        }
        Ok(())
    }

    /// Per-input contributions to the logit of P(churn) of buyer `v` (see the module doc),
    /// in [`INPUTS`] order; `None` for a transaction model without the closed form.
    pub fn contributions(
        &self,
        t: &FittedTransactions,
        v: &ValueInputs,
        horizon_days: f64,
    ) -> Option<[f64; 3]> {
        let own = inputs(v);
        let at = logit(t.p_no_purchase(&customer(own), horizon_days)?);
        let reference = self.reference.values();
        let mut out = [0.0; 3];
        for (j, o) in out.iter_mut().enumerate() {
            let mut moved = own;
            moved[j] = reference[j];
            *o = at - logit(t.p_no_purchase(&customer(moved), horizon_days)?);
        }
        Some(out)
    }
}

/// The buy-again churn probability of buyer `v` over `horizon_days`.
pub fn probability(t: &FittedTransactions, v: &ValueInputs, horizon_days: f64) -> Option<f64> {
    t.p_no_purchase(&v.summary(), horizon_days)
}

/// Log loss of the buy-again score of `t` (fitted on `val`'s history before its cutoff) on
/// `val`'s churn labels: the same rows and labels the logistic and boosted validation log
/// losses use. `Err` says why it cannot be measured.
pub fn validation_log_loss(
    t: &FittedTransactions,
    val: &Sample,
    horizon_days: f64,
) -> Result<f64, &'static str> {
    let Some(d) = &val.detail else {
        return Err("no BTYD inputs at the validation cutoff");
    };
    let p: Option<Vec<f64>> = d
        .value
        .iter()
        .map(|v| probability(t, v, horizon_days))
        .collect();
    let p = p.ok_or("pnbd has no closed-form P(no purchase) in this build")?;
    let loss = log_loss(&p, &val.churned);
    if loss.is_finite() {
        Ok(loss)
    } else {
        Err("no finite validation log loss")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::btyd::ModelKind;

    fn buyer(x: f64, t_x: f64, t: f64) -> ValueInputs {
        ValueInputs {
            frequency: x,
            t_x_days: t_x,
            t_days: t,
            repeat_spend_mean: None,
            avg_order_value: None,
        }
    }

    #[test]
    fn reasons_are_exact_differences_to_the_median_customer() {
        let t = FittedTransactions::from_params(ModelKind::BgNbd, [0.24, 4.4, 0.79, 2.4])
            .expect("params");
        let m = BuyAgainChurn {
            reference: Reference {
                frequency: 2.0,
                recency_days: 20.0,
                t_days: 200.0,
            },
        };
        let h = 90.0;
        // Two repeat purchases, the last 150 days ago, first purchase 300 days ago.
        let v = buyer(2.0, 150.0, 300.0);
        let p = |c: Customer| logit(t.p_no_purchase(&c, h).expect("bgnbd"));
        let own = p(Customer::new(2.0, 150.0, 300.0));
        let c = m.contributions(&t, &v, h).expect("contributions");
        // frequency is at the median: no contribution.
        assert_eq!(c[0], 0.0);
        // recency 150 → 20 (t_x 280), T kept; T 300 → 200, recency 150 kept (t_x 50).
        assert_eq!(c[1], own - p(Customer::new(2.0, 280.0, 300.0)));
        assert_eq!(c[2], own - p(Customer::new(2.0, 50.0, 200.0)));
        // A long silence is what makes this customer likely to churn (+0.67 on the logit); a
        // longer history with the same silence and purchases lowers it (−0.88: the purchases
        // spread over a longer life). Only positive contributions are reasons.
        assert!(c[1] > 0.5 && c[2] < -0.5, "{c:?}");
        let names: Vec<String> = INPUTS.iter().map(|s| s.to_string()).collect();
        let reasons = crate::segment::churn_reasons(&names, &c);
        assert_eq!(reasons, [Some("recency_days"), None, None]);
        // A one-time buyer: recency is T, and moving it alone changes nothing (t_x stays 0).
        let once = m
            .contributions(&t, &buyer(0.0, 0.0, 300.0), h)
            .expect("contributions");
        assert_eq!(once[1], 0.0);
        // ... while having no repeat purchase (median 2) raises the churn probability? Under
        // BG/NBD a one-time buyer cannot have dropped out: with two repeat purchases long ago
        // they could have, so x = 0 *lowers* churn here (negative contribution, no reason).
        assert!(once[0] < 0.0, "{once:?}");
    }

    #[test]
    fn validation_log_loss_is_on_the_sample_rows_and_labels() {
        use crate::models::sample::Detail;
        let rows = [
            buyer(0.0, 0.0, 100.0),
            buyer(4.0, 90.0, 100.0),
            buyer(2.0, 10.0, 200.0),
        ];
        let churned = vec![true, false, true];
        let sample = |detail| Sample {
            customer: vec![0, 1, 2],
            x: ndarray::Array2::zeros((3, crate::models::churn::FEATURES.len())),
            churned: churned.clone(),
            spend: vec![0.0; 3],
            detail,
        };
        let with = sample(Some(Detail {
            value: rows.to_vec(),
            ..Detail::default()
        }));
        let t = FittedTransactions::from_params(ModelKind::BgNbd, [0.24, 4.4, 0.79, 2.4])
            .expect("params");
        let p: Vec<f64> = rows
            .iter()
            .map(|v| t.p_no_purchase(&v.summary(), 30.0).expect("bgnbd"))
            .collect();
        let want = log_loss(&p, &churned);
        assert_eq!(validation_log_loss(&t, &with, 30.0), Ok(want));
        assert!(want > 0.0 && want.is_finite());
        let pareto = FittedTransactions::from_params(ModelKind::ParetoNbd, [0.5, 10.0, 0.5, 10.0])
            .expect("params");
        assert_eq!(
            validation_log_loss(&pareto, &with, 30.0),
            Err("pnbd has no closed-form P(no purchase) in this build")
        );
        assert_eq!(
            validation_log_loss(&t, &sample(None), 30.0),
            Err("no BTYD inputs at the validation cutoff")
        );
    }

    #[test]
    fn lower_median_and_reference() {
        assert_eq!(median(vec![3.0, 1.0, 2.0, 10.0]), 2.0);
        assert_eq!(median(vec![5.0]), 5.0);
        let r = Reference::of(&[
            buyer(0.0, 0.0, 10.0),
            buyer(3.0, 40.0, 50.0),
            buyer(1.0, 5.0, 30.0),
        ]);
        assert_eq!(
            r,
            Reference {
                frequency: 1.0,
                recency_days: 10.0,
                t_days: 30.0
            }
        );
    }
}
