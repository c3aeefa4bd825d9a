//! `churnclv history`: the runs of an output folder side by side, one row per published
//! partition (as-of, run id, customers, churn rate, AUC, CLV total, tier sizes, BTYD
//! parameters, drift gates), plus the runs the drift gates refused (from their side files),
//! read from the files each run left — never from events. The report draws the same rows as
//! trends.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use serde::Serialize;
use serde_json::Value;

use crate::stages::drift::reference::{list, published, read_partition, Published};
use crate::stages::drift::SIDE_FOLDER;
use crate::stages::drift::{Drift, Profile};

/// One run.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub as_of: NaiveDate,
    pub run_id: Option<String>,
    /// The subcommand that wrote it (`run`, `score`); `run` for a refused run.
    pub command: Option<String>,
    /// False for a run the drift gates refused (nothing of it was published).
    pub published: bool,
    pub customers: Option<u64>,
    /// Mean churn probability of the buyers (the expected churn rate of the next horizon).
    pub predicted_churn_rate: Option<f64>,
    /// Out-of-time churn ROC-AUC.
    pub roc_auc: Option<f64>,
    pub total_clv: Option<f64>,
    /// Customers per engagement tier.
    pub tiers: BTreeMap<String, u64>,
    /// The transaction model and its parameters, then `gamma_gamma.*`, of the scoring fit.
    pub btyd_model: Option<String>,
    pub btyd_params: BTreeMap<String, f64>,
    /// `first_run`, `no_reference`, `passed`, `accepted`, `tripped` (absent: a run without
    /// drift checks).
    pub drift: Option<String>,
    pub gates_tripped: Vec<String>,
}

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_f64()
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn row(p: &Published) -> Row {
    let null = Value::Null;
    let m = p.metrics.as_ref().unwrap_or(&null);
    let model = read_json(&p.dir.join("model.json")).unwrap_or(Value::Null);
    let mut btyd_params = BTreeMap::new();
    let t = &model["value"]["transactions"];
    if let Some(params) = t["params"].as_object() {
        for (k, v) in params {
            if let Some(v) = v.as_f64() {
                btyd_params.insert(k.clone(), v);
            }
        }
    }
    for k in ["p", "q", "gamma"] {
        if let Some(v) = model["value"]["spend"][k].as_f64() {
            btyd_params.insert(format!("gamma_gamma.{k}"), v);
        }
    }
    let tiers = m["tiers"]
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v["customers"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    Row {
        as_of: p.as_of,
        run_id: p.run_id.clone(),
        command: p.command.clone(),
        published: true,
        customers: m["counts"]["customers_scored"].as_u64(),
        predicted_churn_rate: num(m, &["kpis", "run", "predicted_churn_rate"]),
        roc_auc: num(m, &["churn", "model", "roc_auc"]),
        total_clv: num(m, &["kpis", "run", "total_clv"]),
        tiers,
        btyd_model: t["kind"].as_str().map(str::to_owned),
        btyd_params,
        drift: m["drift"]["status"].as_str().map(str::to_owned),
        gates_tripped: strings(m["drift"].get("tripped")),
    }
}

/// The refused runs: `DIR/_drift/as_of=D/<run_id>.json`.
fn refused(out: &Path) -> Vec<Row> {
    let Ok(days) = std::fs::read_dir(out.join(SIDE_FOLDER)) else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    for day in days.flatten() {
        let Some(as_of) = day
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix("as_of="))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        else {
            continue;
        };
        let Ok(files) = std::fs::read_dir(day.path()) else {
            continue;
        };
        for f in files.flatten() {
            if f.path().extension().is_none_or(|e| e != "json") {
                continue;
            }
            let Some(v) = read_json(&f.path()) else {
                continue;
            };
            rows.push(Row {
                as_of,
                run_id: v["run_id"].as_str().map(str::to_owned),
                command: Some("run".into()),
                published: false,
                customers: None,
                predicted_churn_rate: None,
                roc_auc: None,
                total_clv: None,
                tiers: BTreeMap::new(),
                btyd_model: None,
                btyd_params: BTreeMap::new(),
                drift: v["drift"]["status"].as_str().map(str::to_owned),
                gates_tripped: strings(v["drift"].get("tripped")),
            });
        }
    }
    rows
}

/// Every published run of `out` and every refused one, oldest as-of first (a refused run
/// after the published run of its as-of).
pub fn history(out: &Path) -> Vec<Row> {
    let mut rows: Vec<Row> = published(out).iter().map(row).collect();
    rows.extend(refused(out));
    rows.sort_by(|a, b| {
        (a.as_of, !a.published, &a.run_id).cmp(&(b.as_of, !b.published, &b.run_id))
    });
    rows
}

/// The published runs strictly before `as_of`, the last `n` of them, oldest first (the
/// report's trends).
pub fn before(out: &Path, as_of: NaiveDate, n: usize) -> Vec<Row> {
    let mut rows: Vec<Row> = list(out)
        .into_iter()
        .filter(|p| p.0 < as_of)
        .take(n)
        .map(|(day, dir)| row(&read_partition(day, dir)))
        .collect();
    rows.reverse();
    rows
}

impl Row {
    /// This run's row, from its profile and comparison (before it is published).
    pub fn current(as_of: NaiveDate, run_id: &str, profile: &Profile, drift: &Drift) -> Row {
        let kind = format!("{}.", profile.transaction_model);
        Row {
            as_of,
            run_id: Some(run_id.to_string()),
            command: Some("run".into()),
            published: true,
            customers: Some(profile.customers),
            predicted_churn_rate: profile.predicted_churn_rate,
            roc_auc: profile.roc_auc,
            total_clv: Some(profile.total_clv),
            tiers: profile.tiers.clone(),
            btyd_model: Some(profile.transaction_model.clone()),
            btyd_params: profile
                .params
                .iter()
                .filter_map(|(k, p)| {
                    let name = k
                        .strip_prefix(&kind)
                        .map(str::to_owned)
                        .or_else(|| k.starts_with("gamma_gamma.").then(|| k.clone()))?;
                    Some((name, p.value))
                })
                .collect(),
            drift: serde_json::to_value(drift.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned)),
            gates_tripped: drift.tripped.iter().map(|s| s.to_string()).collect(),
        }
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

/// The rows as an aligned text table (one line per run).
pub fn table(rows: &[Row]) -> String {
    let tiers: Vec<String> = {
        let mut t: Vec<String> = rows.iter().flat_map(|r| r.tiers.keys().cloned()).collect();
        t.sort();
        t.dedup();
        t
    };
    let mut head = vec![
        "as_of".to_string(),
        "run_id".into(),
        "command".into(),
        "customers".into(),
        "churn_rate".into(),
        "auc".into(),
        "clv_total".into(),
    ];
    head.extend(tiers.iter().cloned());
    head.extend(["btyd".into(), "drift".into()]);
    let mut lines = vec![head];
    for r in rows {
        let mut l = vec![
            r.as_of.to_string(),
            r.run_id.clone().unwrap_or_else(|| "-".into()),
            if r.published {
                r.command.clone().unwrap_or_else(|| "-".into())
            } else {
                "refused".into()
            },
            r.customers.map_or("-".into(), |c| c.to_string()),
            opt(r.predicted_churn_rate, 4),
            opt(r.roc_auc, 4),
            opt(r.total_clv, 0),
        ];
        l.extend(
            tiers
                .iter()
                .map(|t| r.tiers.get(t).map_or("-".into(), |n| n.to_string())),
        );
        l.push(match &r.btyd_model {
            Some(m) => format!(
                "{m} {}",
                r.btyd_params
                    .iter()
                    .map(|(k, v)| format!("{k}={v:.4}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            None => "-".into(),
        });
        l.push(match (&r.drift, r.gates_tripped.is_empty()) {
            (Some(s), true) => s.clone(),
            (Some(s), false) => format!("{s}: {}", r.gates_tripped.join(",")),
            (None, _) => "-".into(),
        });
        lines.push(l);
    }
    let cols = lines[0].len();
    // Every column padded to its widest cell but the last two (free text).
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .enumerate()
            .map(|(c, s)| {
                if c + 2 >= cols {
                    s.clone()
                } else {
                    format!("{s:<w$}", w = widths[c])
                }
            })
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}
