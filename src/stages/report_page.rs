//! The data of a run's `report.html` (drawn by [`crate::report`]): the out-of-time
//! evaluation, the tiers and KPIs, the counts.

use crate::error::Result;
use crate::report::{render, Ranking, ReportData};
use crate::stages::console::{fixed, pct};
use crate::stages::metrics::Counts;
use crate::stages::score::{Summary, TierStats};
use crate::stages::train::Trained;

/// The run's report page: the out-of-time evaluation of `trained`, the tiers and KPIs of
/// `scored`, the counts.
pub fn report_page(
    trained: &Trained,
    scored: &Summary,
    counts: &Counts,
    run_id: &str,
) -> Result<String> {
    let (e, b, churn) = (&trained.evaluation, &trained.btyd, &trained.churn);
    let c = &trained.cutoffs;
    let (_, recency, churned) = &e.eval_scores;
    let f = |v: f64| format!("{v:.4}");
    let mut summary = vec![
        ("as of".to_string(), c.as_of.to_string()),
        ("horizon".to_string(), format!("{} days", c.horizon_days)),
        ("run id".to_string(), run_id.to_string()),
        (
            "evaluation".to_string(),
            format!(
                "{} (train cutoff {}, evaluated on {} customers, labels [{}, {}))",
                e.scheme, e.train_cutoff, e.eval_customers, e.eval_cutoff, e.eval_labels_until
            ),
        ),
        (
            "churn ROC-AUC: model / recency baseline / BTYD".to_string(),
            format!(
                "{} / {} / {}",
                f(e.model.roc_auc),
                f(e.baseline.roc_auc),
                f(b.churn.roc_auc)
            ),
        ),
        (
            "churn PR-AUC: model / recency baseline".to_string(),
            format!("{} / {}", f(e.model.pr_auc), f(e.baseline.pr_auc)),
        ),
        (
            "lift at top decile: model / recency baseline".to_string(),
            format!(
                "{:.2} / {:.2}",
                e.model.lift_top_decile, e.baseline.lift_top_decile
            ),
        ),
        (
            "log loss / Brier".to_string(),
            format!(
                "{} / {}",
                e.model.log_loss.map_or("-".into(), f),
                e.model.brier.map_or("-".into(), f)
            ),
        ),
        (
            "BTYD holdout purchases: predicted / actual (MAE)".to_string(),
            format!(
                "{:.0} / {} ({:.3})",
                b.predicted_total_purchases, b.actual_total_purchases, b.holdout_purchases_mae
            ),
        ),
        (
            "value Gini: spend model / last-window baseline / BTYD".to_string(),
            format!(
                "{} / {} / {}",
                f(e.value_model.gini),
                f(e.value_baseline.gini),
                f(b.spend.gini)
            ),
        ),
        (
            "customers scored".to_string(),
            counts.customers_scored.to_string(),
        ),
        (
            "rows read / used / rejected".to_string(),
            format!(
                "{} / {} / {}",
                counts.rows_read, counts.rows_used, counts.rows_rejected
            ),
        ),
    ];
    let tiers: Vec<(&str, &TierStats)> = crate::segment::TIERS
        .iter()
        .filter_map(|(name, _)| scored.tiers.get(name).map(|t| (*name, t)))
        .collect();
    let k = &scored.kpis;
    let mut kpis = vec![
        ("customers".to_string(), k.customers.to_string()),
        (
            "repeat purchase rate".to_string(),
            pct(k.repeat_purchase_rate),
        ),
        (
            "average order value".to_string(),
            fixed(k.average_order_value, 2),
        ),
        (
            "cart abandonment rate".to_string(),
            pct(k.cart_abandonment_rate),
        ),
        (
            "observed churn rate, last window".to_string(),
            pct(Some(e.eval_churn_rate)),
        ),
        (
            "predicted churn rate, next window".to_string(),
            pct(k.predicted_churn_rate),
        ),
        (
            "total / mean predicted CLV".to_string(),
            format!("{:.0} / {}", k.total_clv, fixed(k.mean_clv, 2)),
        ),
    ];
    // The champion and each challenger's AUC difference to the logistic model.
    summary.push((
        "churn champion (chosen by validation log loss)".to_string(),
        trained.champion.name.to_string(),
    ));
    for ch in &e.challengers {
        let ci = ch
            .roc_auc_minus_logistic_95
            .map_or(String::new(), |(lo, hi)| format!(" [{lo:+.4}, {hi:+.4}]"));
        summary.push((
            format!(
                "churn {}: ROC-AUC / − logistic / log loss / calibration slope",
                ch.scores.name
            ),
            format!(
                "{} / {:+.4}{ci} / {} / {}",
                f(ch.scores.roc_auc),
                ch.roc_auc_minus_logistic,
                ch.scores.log_loss.map_or("-".into(), f),
                ch.calibration_slope
                    .map_or("-".into(), |s| format!("{s:.3}"))
            ),
        ));
    }
    for (stage, n) in &k.customers_by_lifecycle_stage {
        kpis.push((format!("customers: {stage}"), n.to_string()));
    }
    let data = ReportData {
        kpis,
        title: format!("churnclv run as of {}", c.as_of),
        summary,
        // Every churn challenger on one ROC and one calibration chart (same customers).
        rankings: e
            .challengers
            .iter()
            .map(|ch| Ranking {
                name: ch.scores.name,
                scores: &ch.probabilities,
                churned,
            })
            .chain([Ranking {
                name: "recency baseline",
                scores: recency,
                churned,
            }])
            .collect(),
        calibration: e
            .challengers
            .iter()
            .map(|ch| {
                (
                    ch.scores.name,
                    ch.scores.calibration.as_deref().unwrap_or(&[]),
                )
            })
            .collect(),
        value_deciles: vec![
            ("spend model", &e.value_model.deciles),
            ("BTYD", &b.spend.deciles),
        ],
        coefficients: churn
            .features
            .iter()
            .zip(&churn.coefficients)
            .map(|(f, c)| (f.name.clone(), *c))
            .collect(),
        tiers,
    };
    Ok(render(&data)?)
}
