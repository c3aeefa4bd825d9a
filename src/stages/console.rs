//! What the commands print when they finish, built in the library (the binary only prints it):
//! the console summary of `run` and of `train`.

use std::path::Path;
use std::time::Duration;

use crate::io::ScanStats;
use crate::models::churn::FEATURES;
use crate::stages::metrics::Counts;
use crate::stages::score::Summary;
use crate::stages::train::Trained;

/// What `run` prints when it has published: where, the windows, rows, the headline metrics,
/// KPIs and tiers (`took`: the time since the process started its work).
pub fn console_summary(
    target: &Path,
    run_id: &str,
    stats: &ScanStats,
    trained: &Trained,
    scored: &Summary,
    counts: &Counts,
    took: Duration,
) -> String {
    let (e, k) = (&trained.evaluation, &scored.kpis);
    let mut out = vec![format!("published {}", target.display())];
    out.extend(window_lines(run_id, trained));
    out.extend([
        format!(
            "  rows              {} read, {} used, {} rejected ({})",
            stats.rows_read,
            stats.rows_used,
            stats.rows_rejected,
            stats.reasons_line()
        ),
        format!(
            "  customers scored  {} ({} with a churn probability)",
            counts.customers_scored, counts.customers_with_churn_probability
        ),
    ]);
    out.extend(metric_lines(trained));
    out.extend([
        format!(
            "  KPIs              repeat rate {}, AOV {}, cart abandonment {}, churn last window {:.1}% / predicted next {}, CLV total {:.0}",
            pct(k.repeat_purchase_rate),
            fixed(k.average_order_value, 2),
            pct(k.cart_abandonment_rate),
            100.0 * e.eval_churn_rate,
            pct(k.predicted_churn_rate),
            k.total_clv
        ),
        "  engagement tiers  (customers, mean CLV, mean churn probability)".to_string(),
    ]);
    for (name, _) in crate::segment::TIERS {
        let Some(t) = scored.tiers.get(name) else {
            continue;
        };
        out.push(format!(
            "    {name:<20} {:>8}  {:>10}  {:>6}",
            t.customers,
            fixed(t.mean_clv, 2),
            fixed(t.mean_churn_probability, 3)
        ));
    }
    out.push(format!("  model features    {}", FEATURES.join(", ")));
    out.push(format!("  took              {:.1} s", took.as_secs_f64()));
    lines(out)
}

/// What `train` prints when it has written the model: where, the windows and the headline
/// metrics.
pub fn training_summary(model: &Path, run_id: &str, trained: &Trained) -> String {
    let mut out = vec![format!("wrote {} and metrics.json", model.display())];
    out.extend(window_lines(run_id, trained));
    out.extend(metric_lines(trained));
    out.push(format!("  model features    {}", FEATURES.join(", ")));
    lines(out)
}

/// The run id and the windows.
fn window_lines(run_id: &str, trained: &Trained) -> [String; 2] {
    let (e, c) = (&trained.evaluation, &trained.cutoffs);
    [
        format!("  run id            {run_id}"),
        format!(
            "  windows           train features < {}, labels [{}, {}); scored as of {} for {} days",
            e.train_cutoff, e.train_cutoff, e.train_labels_until, c.as_of, c.horizon_days
        ),
    ]
}

/// The out-of-time churn and BTYD headline.
fn metric_lines(trained: &Trained) -> [String; 2] {
    let (e, b) = (&trained.evaluation, &trained.btyd);
    [
        format!(
            "  churn ROC-AUC     {:.4} {} (recency baseline {:.4}) on {} customers",
            e.model.roc_auc,
            e.scheme.replace('_', "-"),
            e.baseline.roc_auc,
            e.eval_customers
        ),
        format!(
            "  BTYD ({}) holdout {:.0} purchases predicted vs {} actual, MAE {:.3}, buy-again AUC {:.4}",
            b.model,
            b.predicted_total_purchases,
            b.actual_total_purchases,
            b.holdout_purchases_mae,
            b.buy_again_roc_auc
        ),
    ]
}

/// Lines joined, each ending in a newline.
fn lines(out: Vec<String>) -> String {
    let mut text = out.join("\n");
    text.push('\n');
    text
}

/// A share as a percentage with one decimal, `-` when undefined.
pub(super) fn pct(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v))
}

/// A number with `digits` decimals, `-` when undefined.
pub(super) fn fixed(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.digits$}"))
}
