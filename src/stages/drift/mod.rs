//! The drift stage: every `run` compares itself with the runs published before it, between
//! scoring and publishing, and refuses to publish a run that moved further than `[gates]`
//! allows (exit 3, nothing published, the full comparison in a side file).
//!
//! Reference = the latest published partition (`_SUCCESS`) **strictly before** this as-of
//! that carries a profile (so a backfill or a rerun never compares with a later run);
//! baseline = the last `gates.baseline_runs` of them. Each run stores its own [`Profile`]
//! in metrics.json (counts, metrics, parameters with standard errors, decile bins of every
//! model input and score), so the comparison reads two small files and the reference's score
//! table (two columns, for the tier transition matrix) — never old events. Written to
//! metrics.json `drift` (docs/schema.md) and the report; the gates and what on-call sees are
//! in docs/operations.md.

pub mod page;
pub mod profile;
pub mod reference;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::NaiveDate;
use serde::Serialize;

use crate::config::GatesConfig;
use crate::error::{Context, Error, Result};
use crate::io::output::write_bytes;

pub use profile::{Histogram, Param, Profile, RunData};
pub use reference::Skipped;

/// The folder of the side files of refused runs: `DIR/_drift/as_of=D/<run_id>.json` (the
/// leading underscore keeps it out of what Hive, Spark and pyarrow treat as data).
pub const SIDE_FOLDER: &str = "_drift";

/// Where the tier of a customer absent from one of the two runs is counted in the transition
/// matrix (row: new this run; column: gone since the reference).
pub const NO_TIER: &str = "none";

/// The outcome of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Nothing published before this as-of: nothing to compare, no gate applied.
    FirstRun,
    /// Runs were published before, but none left a profile (older build, `score` only).
    NoReference,
    /// Compared; no gate tripped.
    Passed,
    /// A gate tripped: not published (the side file holds this).
    Tripped,
    /// A gate tripped and `--accept-drift` published anyway.
    Accepted,
}

/// A published run, as the comparison names it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRef {
    pub as_of: NaiveDate,
    pub run_id: Option<String>,
}

/// A figure of the reference and of this run.
#[derive(Debug, Clone, Serialize)]
pub struct Shift {
    pub name: String,
    pub reference: Option<f64>,
    pub current: Option<f64>,
    /// current − reference.
    pub difference: Option<f64>,
    /// current / reference − 1 (absent when the reference is 0).
    pub relative: Option<f64>,
}

impl Shift {
    fn new(name: impl Into<String>, reference: Option<f64>, current: Option<f64>) -> Shift {
        let (difference, relative) = match (reference, current) {
            (Some(r), Some(c)) => (Some(c - r), (r != 0.0).then(|| c / r - 1.0)),
            _ => (None, None),
        };
        Shift {
            name: name.into(),
            reference,
            current,
            difference,
            relative,
        }
    }
}

/// A parameter of the reference fit and of this one; `z` = (current − reference) /
/// √(se_current² + se_reference²).
#[derive(Debug, Clone, Serialize)]
pub struct ParamShift {
    pub name: String,
    pub reference: Param,
    pub current: Param,
    pub z: Option<f64>,
}

/// Tier shares and the customer-level transitions from the reference's score table.
#[derive(Debug, Clone, Serialize)]
pub struct Tiers {
    pub shares: Vec<Shift>,
    /// `transitions[reference tier][current tier]` = customers; [`NO_TIER`] as the reference
    /// tier counts the customers new this run, as the current tier those gone since. The
    /// cells sum to the customers of both runs (each counted once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transitions: Option<BTreeMap<String, BTreeMap<String, u64>>>,
    /// Why the transitions are missing (the reference's score table could not be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transitions_note: Option<String>,
    pub customers_both: u64,
    pub customers_new: u64,
    pub customers_gone: u64,
    /// Customers in both runs whose tier did not change.
    pub customers_same_tier: u64,
}

/// One figure of this run against the baseline window.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineFigure {
    pub name: String,
    pub current: Option<f64>,
    pub mean: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// One gate: the worst subject it measured, and whether that passed the limit.
#[derive(Debug, Clone, Serialize)]
pub struct Gate {
    /// The `[gates]` key of the limit.
    pub gate: &'static str,
    /// What was worst, with its values (`mean_order_value 41.2 → 123.6`).
    pub subject: Option<String>,
    pub measured: Option<f64>,
    pub limit: f64,
    pub tripped: bool,
}

/// metrics.json `drift` (and the side file of a refused run).
#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    pub status: Status,
    /// What a reader must know first (first run, why the reference is not the latest
    /// partition, runs at later as-ofs not compared).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub reference: Option<RunRef>,
    /// Partitions before this as-of and newer than the reference that were passed over.
    pub skipped: Vec<Skipped>,
    /// The baseline window (reference first).
    pub baseline: Vec<RunRef>,
    pub baseline_figures: Vec<BaselineFigure>,
    /// Input shifts: customers, rows, reject shares by reason, event type shares, purchases
    /// per buyer, mean order value.
    pub inputs: Vec<Shift>,
    /// PSI of every model input, `churn_probability` and `clv` (reference bins).
    pub psi: BTreeMap<String, Option<f64>>,
    pub transaction_model: Option<Shift2>,
    /// Churn coefficients and BTYD / Gamma-Gamma parameters against the reference fit.
    pub params: Vec<ParamShift>,
    /// Out-of-time metrics against the reference run.
    pub metrics: Vec<Shift>,
    pub tiers: Option<Tiers>,
    /// Every gate, in the order they are reported (the input's first: they name causes).
    pub gates: Vec<Gate>,
    pub tripped: Vec<&'static str>,
    /// The side file written for a refused run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side_file: Option<String>,
}

/// The transaction model of the reference and of this run.
#[derive(Debug, Clone, Serialize)]
pub struct Shift2 {
    pub reference: String,
    pub current: String,
    pub changed: bool,
}

/// What `run` keeps: its profile (metrics.json `profile`) and the comparison.
pub struct Governance {
    pub profile: Profile,
    pub drift: Drift,
}

/// Published runs drawn in the report's trends, besides this one.
pub const TREND_RUNS: usize = 30;

impl Governance {
    /// `page` (report.html) with the "Night over night" section: this comparison and the
    /// trends over the last [`TREND_RUNS`] published runs before `as_of` and this one.
    pub fn add_to_report(
        &self,
        page: String,
        out: &Path,
        as_of: NaiveDate,
        run_id: &str,
    ) -> Result<String> {
        let mut rows = crate::stages::history::before(out, as_of, TREND_RUNS);
        rows.push(crate::stages::history::Row::current(
            as_of,
            run_id,
            &self.profile,
            &self.drift,
        ));
        Ok(page::insert(page, &page::section(&self.drift, &rows)?))
    }

    /// One line for the console summary.
    pub fn summary_line(&self) -> String {
        let d = &self.drift;
        let against = d
            .reference
            .as_ref()
            .map(|r| format!("against as_of={}", r.as_of))
            .unwrap_or_default();
        match d.status {
            Status::FirstRun => "drift: first run in this folder, nothing to compare\n".into(),
            Status::NoReference => format!(
                "drift: no earlier run with a profile, nothing compared ({})\n",
                d.note.as_deref().unwrap_or("")
            ),
            Status::Passed => format!("drift: {} gates passed {against}\n", d.gates.len()),
            Status::Tripped | Status::Accepted => format!(
                "drift: gates tripped {against}: {} (published with --accept-drift)\n",
                d.tripped.join(", ")
            ),
        }
    }
}

/// The run being checked.
pub struct Check<'a> {
    pub out: &'a Path,
    pub as_of: NaiveDate,
    pub run_id: &'a str,
    pub gates: &'a GatesConfig,
    /// `--accept-drift`: publish even if a gate trips (recorded as [`Status::Accepted`]).
    pub accept: bool,
}

/// Profiles this run, compares it with the reference and baseline, applies the gates. A
/// tripped gate without `accept` writes the side file and returns [`Error::QualityGate`]
/// naming the gate, the measured value and the limit.
pub fn govern(check: &Check<'_>, run: RunData<'_>) -> Result<Governance> {
    let t = Instant::now();
    let profile = Profile::of(run);
    let found = reference::candidates(check.out, check.as_of, check.gates.baseline_runs);
    let later = (found.later > 0).then(|| {
        format!(
            "{} published run(s) after as_of={} not compared (the reference is always an earlier as-of)",
            found.later, check.as_of
        )
    });
    let Some((reference, ref_profile)) = found.runs.first() else {
        let (status, first) = if found.skipped.is_empty() {
            (
                Status::FirstRun,
                // No path in it: the same job writes the same metrics whatever the folder.
                format!(
                    "first run: nothing published before as_of={} in this output folder; no gate applied",
                    check.as_of
                ),
            )
        } else {
            (
                Status::NoReference,
                format!(
                    "no run published before as_of={} left a profile to compare with; no gate applied",
                    check.as_of
                ),
            )
        };
        tracing::info!(stage = "drift", "{first}");
        let note = [Some(first), later]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ");
        return Ok(Governance {
            drift: Drift::empty(status, Some(note), found.skipped),
            profile,
        });
    };
    let bins = Profile::binned_like(run, ref_profile);
    let previous = reference::tiers_of(check.out, reference.as_of);
    let current_tiers = current_tiers(run);
    let mut drift = compare(ref_profile, &profile, &bins, previous, current_tiers);
    drift.reference = Some(RunRef {
        as_of: reference.as_of,
        run_id: reference.run_id.clone(),
    });
    drift.skipped = found.skipped;
    drift.note = later;
    drift.baseline = found
        .runs
        .iter()
        .map(|(p, _)| RunRef {
            as_of: p.as_of,
            run_id: p.run_id.clone(),
        })
        .collect();
    let window: Vec<&Profile> = found.runs.iter().map(|(_, p)| p).collect();
    drift.baseline_figures = baseline_figures(&window, &profile);
    drift.gates = apply_gates(check.gates, &drift, ref_profile, &profile);
    drift.tripped = drift
        .gates
        .iter()
        .filter(|g| g.tripped)
        .map(|g| g.gate)
        .collect();
    tracing::info!(
        stage = "drift",
        reference = %reference.as_of,
        tripped = drift.tripped.len(),
        duration_ms = t.elapsed().as_millis() as u64,
        "compared with as_of={}: {} of {} gates tripped",
        reference.as_of,
        drift.tripped.len(),
        drift.gates.len()
    );
    if drift.tripped.is_empty() {
        drift.status = Status::Passed;
    } else if check.accept {
        drift.status = Status::Accepted;
        tracing::warn!(
            stage = "drift",
            "gates tripped ({}), published anyway: --accept-drift",
            drift.tripped.join(", ")
        );
    } else {
        drift.status = Status::Tripped;
        let path = side_file_path(check.out, check.as_of, check.run_id);
        drift.side_file = Some(path.display().to_string());
        // The gate decides the exit code (3): a side file that cannot be written is said in
        // the same line, not turned into another error.
        let written =
            write_side_file(&path, check, &drift).map_err(|e| crate::diag::error_chain(&e));
        return Err(Error::QualityGate(refusal(&drift, &path, written.err())));
    }
    Ok(Governance { profile, drift })
}

impl Drift {
    fn empty(status: Status, note: Option<String>, skipped: Vec<Skipped>) -> Drift {
        Drift {
            status,
            note,
            reference: None,
            skipped,
            baseline: Vec::new(),
            baseline_figures: Vec::new(),
            inputs: Vec::new(),
            psi: BTreeMap::new(),
            transaction_model: None,
            params: Vec::new(),
            metrics: Vec::new(),
            tiers: None,
            gates: Vec::new(),
            tripped: Vec::new(),
            side_file: None,
        }
    }
}

/// `DIR/_drift/as_of=D/<run_id>.json`.
pub fn side_file_path(out: &Path, as_of: NaiveDate, run_id: &str) -> PathBuf {
    out.join(SIDE_FOLDER)
        .join(format!("as_of={as_of}"))
        .join(format!("{run_id}.json"))
}

#[derive(Serialize)]
struct SideFile<'a> {
    run_id: &'a str,
    as_of: NaiveDate,
    drift: &'a Drift,
}

/// Written through a temporary file renamed into place: the file on-call opens is whole.
fn write_side_file(path: &Path, check: &Check<'_>, drift: &Drift) -> Result<()> {
    let dir = path.parent().unwrap_or(check.out);
    std::fs::create_dir_all(dir).with_context(|| format!("drift side file {}", dir.display()))?;
    let mut text = serde_json::to_string_pretty(&SideFile {
        run_id: check.run_id,
        as_of: check.as_of,
        drift,
    })?;
    text.push('\n');
    let tmp = path.with_extension("json.tmp");
    write_bytes(&tmp, text.as_bytes())?;
    std::fs::rename(&tmp, path).with_context(|| format!("drift side file {}", path.display()))?;
    Ok(())
}

/// The one-line refusal: the first tripped gate with its subject, value and limit, the
/// others by name, the side file, the way out.
fn refusal(drift: &Drift, side: &Path, unwritten: Option<String>) -> String {
    let first = drift.gates.iter().find(|g| g.tripped);
    let against = drift
        .reference
        .as_ref()
        .map(|r| format!("as_of={}", r.as_of))
        .unwrap_or_default();
    let mut line = match first {
        Some(g) => format!(
            "drift gate {}: {} measured {} > limit {} (against {against})",
            g.gate,
            g.subject.as_deref().unwrap_or("?"),
            g.measured.map_or("?".into(), |m| format!("{m:.4}")),
            g.limit
        ),
        None => "drift gate".into(),
    };
    let others: Vec<&str> = drift.tripped.iter().skip(1).copied().collect();
    if !others.is_empty() {
        line.push_str(&format!("; also tripped: {}", others.join(", ")));
    }
    match unwritten {
        None => line.push_str(&format!(
            "; nothing published; full comparison in {}; --accept-drift publishes anyway",
            side.display()
        )),
        Some(e) => line.push_str(&format!(
            "; nothing published; the comparison could not be written ({e}); --accept-drift publishes anyway"
        )),
    }
    line
}

/// `customer_id → engagement_tier` of this run's scores.
fn current_tiers(run: RunData<'_>) -> Vec<(String, String)> {
    run.latest
        .customer_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.to_string(), run.scored.tier_name(i).to_owned()))
        .collect()
}

/// The comparison, gates not yet applied.
fn compare(
    r: &Profile,
    c: &Profile,
    bins: &BTreeMap<String, Histogram>,
    previous: std::result::Result<HashMap<String, String>, String>,
    current: Vec<(String, String)>,
) -> Drift {
    let mut d = Drift::empty(Status::Passed, None, Vec::new());
    let u = |v: u64| Some(v as f64);
    d.inputs
        .push(Shift::new("customers", u(r.customers), u(c.customers)));
    d.inputs
        .push(Shift::new("buyers", u(r.buyers), u(c.buyers)));
    d.inputs.push(Shift::new(
        "rows_considered",
        u(r.rows_considered),
        u(c.rows_considered),
    ));
    d.inputs
        .push(Shift::new("rows_used", u(r.rows_used), u(c.rows_used)));
    d.inputs.push(Shift::new(
        "reject_share",
        Some(r.reject_share(None)),
        Some(c.reject_share(None)),
    ));
    for reason in union(&r.rejected_by_reason, &c.rejected_by_reason) {
        d.inputs.push(Shift::new(
            format!("reject_share.{reason}"),
            Some(r.reject_share(Some(&reason))),
            Some(c.reject_share(Some(&reason))),
        ));
    }
    for kind in union(&r.event_types, &c.event_types) {
        d.inputs.push(Shift::new(
            format!("event_type_share.{kind}"),
            Some(r.event_type_share(&kind)),
            Some(c.event_type_share(&kind)),
        ));
    }
    d.inputs.push(Shift::new(
        "purchases_per_buyer",
        r.purchases_per_buyer,
        c.purchases_per_buyer,
    ));
    d.inputs.push(Shift::new(
        "mean_order_value",
        r.mean_order_value,
        c.mean_order_value,
    ));
    for (name, h) in &r.distributions {
        d.psi
            .insert(name.clone(), bins.get(name).and_then(|b| h.psi(b)));
    }
    d.transaction_model = Some(Shift2 {
        reference: r.transaction_model.clone(),
        current: c.transaction_model.clone(),
        changed: r.transaction_model != c.transaction_model,
    });
    for (name, rp) in &r.params {
        let Some(cp) = c.params.get(name) else {
            continue;
        };
        let z = match (rp.std_error, cp.std_error) {
            (Some(a), Some(b)) if (a * a + b * b) > 0.0 => {
                Some((cp.value - rp.value) / (a * a + b * b).sqrt()).filter(|z| z.is_finite())
            }
            _ => None,
        };
        d.params.push(ParamShift {
            name: name.clone(),
            reference: *rp,
            current: *cp,
            z,
        });
    }
    for (name, a, b) in [
        ("roc_auc", r.roc_auc, c.roc_auc),
        ("log_loss", r.log_loss, c.log_loss),
        ("gini", r.gini, c.gini),
        (
            "calibration_in_the_large",
            r.calibration_in_the_large,
            c.calibration_in_the_large,
        ),
        ("value_gini", r.value_gini, c.value_gini),
        (
            "predicted_churn_rate",
            r.predicted_churn_rate,
            c.predicted_churn_rate,
        ),
        ("total_clv", Some(r.total_clv), Some(c.total_clv)),
    ] {
        d.metrics.push(Shift::new(name, a, b));
    }
    d.tiers = Some(tiers(r, c, previous, current));
    d
}

fn union(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> Vec<String> {
    let mut keys: Vec<String> = a.keys().chain(b.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys
}

fn tiers(
    r: &Profile,
    c: &Profile,
    previous: std::result::Result<HashMap<String, String>, String>,
    current: Vec<(String, String)>,
) -> Tiers {
    let names: Vec<String> = r
        .tiers
        .keys()
        .chain(c.tiers.keys())
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let shares = names
        .iter()
        .map(|t| Shift::new(t.clone(), Some(r.tier_share(t)), Some(c.tier_share(t))))
        .collect();
    let mut out = Tiers {
        shares,
        transitions: None,
        transitions_note: None,
        customers_both: 0,
        customers_new: 0,
        customers_gone: 0,
        customers_same_tier: 0,
    };
    let mut previous = match previous {
        Ok(p) => p,
        Err(e) => {
            out.transitions_note = Some(format!("reference score table not read: {e}"));
            return out;
        }
    };
    let mut m: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (id, tier) in current {
        let from = match previous.remove(&id) {
            Some(p) => {
                out.customers_both += 1;
                if p == tier {
                    out.customers_same_tier += 1;
                }
                p
            }
            None => {
                out.customers_new += 1;
                NO_TIER.to_string()
            }
        };
        *m.entry(from).or_default().entry(tier).or_insert(0) += 1;
    }
    for (_, tier) in previous {
        out.customers_gone += 1;
        *m.entry(tier)
            .or_default()
            .entry(NO_TIER.to_string())
            .or_insert(0) += 1;
    }
    out.transitions = Some(m);
    out
}

fn baseline_figures(window: &[&Profile], c: &Profile) -> Vec<BaselineFigure> {
    let figure = |name: String, of: &dyn Fn(&Profile) -> Option<f64>| {
        let values: Vec<f64> = window.iter().filter_map(|p| of(p)).collect();
        let n = values.len() as f64;
        BaselineFigure {
            name,
            current: of(c),
            mean: (!values.is_empty()).then(|| values.iter().sum::<f64>() / n),
            min: values.iter().copied().reduce(f64::min),
            max: values.iter().copied().reduce(f64::max),
        }
    };
    let mut out = vec![
        figure("customers".into(), &|p| Some(p.customers as f64)),
        figure("roc_auc".into(), &|p| p.roc_auc),
        figure("log_loss".into(), &|p| p.log_loss),
        figure("predicted_churn_rate".into(), &|p| p.predicted_churn_rate),
        figure("total_clv".into(), &|p| Some(p.total_clv)),
        figure("mean_order_value".into(), &|p| p.mean_order_value),
        figure("purchases_per_buyer".into(), &|p| p.purchases_per_buyer),
        figure("reject_share".into(), &|p| Some(p.reject_share(None))),
    ];
    for tier in c.tiers.keys() {
        out.push(figure(format!("tier_share.{tier}"), &|p| {
            Some(p.tier_share(tier))
        }));
    }
    out
}

/// The worst of `(subject, measured)` against `limit`.
fn gate(name: &'static str, limit: f64, measured: impl IntoIterator<Item = (String, f64)>) -> Gate {
    let worst = measured
        .into_iter()
        .filter(|(_, m)| !m.is_nan())
        .max_by(|a, b| a.1.total_cmp(&b.1));
    Gate {
        gate: name,
        tripped: worst.as_ref().is_some_and(|(_, m)| *m > limit),
        subject: worst.as_ref().map(|(s, _)| s.clone()),
        measured: worst.map(|(_, m)| m),
        limit,
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("none".into(), |v| format!("{v:.4}"))
}

/// Every gate, input-side first: when several trip, the first names the likeliest cause.
fn apply_gates(g: &GatesConfig, d: &Drift, r: &Profile, c: &Profile) -> Vec<Gate> {
    let relative = |a: f64, b: f64| {
        if a == 0.0 {
            if b == 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            (b / a - 1.0).abs()
        }
    };
    let mut gates = vec![gate(
        "max_customer_change",
        g.max_customer_change,
        [(
            format!("customers {} → {}", r.customers, c.customers),
            relative(r.customers as f64, c.customers as f64),
        )],
    )];
    let floor = g.min_reject_share;
    let rejects = d
        .inputs
        .iter()
        .filter(|s| s.name.starts_with("reject_share"))
        .filter_map(|s| {
            // Either way: a reason that stops firing (a key column renamed, a check lost) is
            // as suspicious as one that starts.
            let (a, b) = (s.reference?.max(floor), s.current?.max(floor));
            Some((
                format!("{} {} → {}", s.name, fmt(s.reference), fmt(s.current)),
                a.max(b) / a.min(b),
            ))
        });
    gates.push(gate(
        "max_reject_share_ratio",
        g.max_reject_share_ratio,
        rejects,
    ));
    let types = d
        .inputs
        .iter()
        .filter(|s| s.name.starts_with("event_type_share."))
        .filter_map(|s| {
            let (a, b) = (s.reference?, s.current?);
            let larger = a.max(b);
            // Relative to the larger share: 1 = the type vanished (or appeared), 0.5 = halved
            // (or doubled); bounded, so a type new this run is measured too.
            (larger >= g.min_event_type_share).then(|| {
                (
                    format!("{} {} → {}", s.name, fmt(s.reference), fmt(s.current)),
                    (b - a).abs() / larger,
                )
            })
        });
    gates.push(gate(
        "max_event_type_share_change",
        g.max_event_type_share_change,
        types,
    ));
    let means = d
        .inputs
        .iter()
        .filter(|s| s.name == "mean_order_value" || s.name == "purchases_per_buyer")
        .filter_map(|s| {
            Some((
                format!("{} {} → {}", s.name, fmt(s.reference), fmt(s.current)),
                relative(s.reference?, s.current?),
            ))
        });
    gates.push(gate(
        "max_input_mean_change",
        g.max_input_mean_change,
        means,
    ));
    let psi = |scores: bool| {
        d.psi
            .iter()
            .filter(move |(n, _)| {
                (n.as_str() == "churn_probability" || n.as_str() == "clv") == scores
            })
            .filter_map(|(n, v)| Some((format!("PSI of {n}"), (*v)?)))
    };
    gates.push(gate("max_input_psi", g.max_input_psi, psi(false)));
    gates.push(gate("max_score_psi", g.max_score_psi, psi(true)));
    let tiers = d.tiers.iter().flat_map(|t| &t.shares).filter_map(|s| {
        Some((
            format!(
                "share of tier {} {} → {}",
                s.name,
                fmt(s.reference),
                fmt(s.current)
            ),
            s.difference?.abs(),
        ))
    });
    gates.push(gate(
        "max_tier_share_change",
        g.max_tier_share_change,
        tiers,
    ));
    let params = d.params.iter().filter_map(|p| {
        Some((
            format!(
                "{} {:.4} → {:.4} ({:+.1} se)",
                p.name, p.reference.value, p.current.value, p.z?
            ),
            p.z?.abs(),
        ))
    });
    gates.push(gate("max_param_shift_se", g.max_param_shift_se, params));
    let auc = d
        .metrics
        .iter()
        .filter(|s| s.name == "roc_auc")
        .filter_map(|s| {
            Some((
                format!(
                    "out-of-time ROC-AUC {} → {}",
                    fmt(s.reference),
                    fmt(s.current)
                ),
                -s.difference?,
            ))
        });
    gates.push(gate("max_auc_drop", g.max_auc_drop, auc));
    gates
}
