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

mod compare;
mod gates;
mod refusal;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use chrono::NaiveDate;
use serde::Serialize;

use crate::config::GatesConfig;
use crate::error::{Error, Result};

use compare::{baseline_figures, compare, current_tiers};
use gates::apply_gates;
pub use profile::{Histogram, Param, Profile, RunData};
pub use reference::Skipped;
use refusal::{refusal, write_side_file};
pub use refusal::{side_file_path, SIDE_FOLDER};

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
