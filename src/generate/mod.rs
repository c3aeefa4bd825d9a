//! Synthetic customer event histories with known ground truth.
//!
//! The generator produces a raw, globally time-ordered event log (the shape the
//! nightly pipeline ingests from Parquet) together with a one-row-per-customer
//! truth table holding the latent quantities that produced it, so churn and CLV
//! models can be scored against what actually drove the data.
//!
//! # Generative model
//!
//! Customers arrive until the last day of the period, so the data holds every
//! stage of a customer's life: window shoppers who have not bought yet, first-time
//! buyers, repeat and loyal buyers, lapsed and dead customers.
//!
//! * arrival (first visit) `a`: the shop opens at the start of the period; 60% of
//!   the customers are its opening cohort, `a ~ U(0, days/2)`, and 40% arrive in a
//!   steady flow over the whole period, `a ~ U(0, days)` (so the arrival rate in
//!   the second half is a quarter of the first half's and never stops);
//! * half of the customers buy on that first visit; the other half window-shop
//!   first, for `w ~ Exp(mean 21 days)` (capped at 365), with a browsing session
//!   at `a`. A customer whose first purchase would fall after the end of the
//!   period is a *prospect* in the data: events, no purchase (about 0.6% of the
//!   customers over 730 days: 40% in the flow × half window-shop × 21/730).
//!
//! Why not a uniform arrival rate: the churn model is checked against an oracle
//! that knows every customer's true purchase rate (`tests/oracle.rs`, gap at most
//! 0.05 ROC-AUC). A customer who first bought a few weeks ago has not revealed that
//! rate to anyone: on the customers whose first purchase is less than 90 days old
//! at the evaluation cutoff, the Bayes-optimal score from the purchases (Pareto/NBD
//! with the true priors) reaches ROC-AUC 0.68 against the oracle's 0.89. Their
//! share therefore sets a floor under the gap whatever the model. Measured on the
//! `make run` sample (20,000 customers, seed 42): gap 0.064 with uniform arrivals,
//! 0.047 with this opening cohort, 0.048 with the earlier rule (every birth in the
//! first 75% of the period, so no new customer at the end).
//!
//! From the first purchase on, purchases follow the Pareto/NBD ("buy till you
//! die") assumptions exactly:
//!
//! * birth (first purchase) `b = a + w` (`w = 0` for those who buy at once);
//! * purchase rate `λ ~ Gamma(shape 0.9, scale 1/60)` per day (mean 0.015: one purchase per ~67 days);
//! * dropout rate `μ ~ Gamma(shape 0.8, scale 1/250)` per day, lifetime
//!   `τ ~ Exp(μ)`, death `= b + τ` (may fall after the end of the period);
//! * one purchase at birth, then a Poisson process of rate `λ` until
//!   `min(death, end)`; never a purchase after death.
//!
//! Everything else (sessions, page views, carts, emails, SMS, support tickets,
//! refunds, reviews, referrals) is noise layered on top so that behavioural
//! features carry signal about the latent state without changing the purchase
//! process: activity is scaled by an engagement multiplier `e(t)` that is 1 while
//! the customer is healthy, declines linearly to 0.25 over the 60 days before
//! death and is 0.05 afterwards, and by a personal level `g ~ LogNormal(0, 0.5)`.
//! Browsing runs from arrival; e-mails, SMS and support tickets from birth.
//!
//! # Ground truth
//!
//! One row per customer, whether or not it has bought inside the period:
//! `birth_time` is the first purchase (after the period end for a prospect),
//! `death_time = b + τ`, `alive_at_end = death ≥ end` (true for a prospect: it has
//! not dropped out), `n_purchases` counts purchases inside the period (0 for a
//! prospect) and `true_expected_purchases_90d` is the expected number of
//! purchases in `[end, end + 90 d)` given the latent state: `λ(1 − e^{−μ·90})/μ`
//! for a customer alive at the end, `1 + λ(1 − e^{−μ·(end + 90 − b)})/μ` for a
//! prospect whose first purchase falls in that window, 0 otherwise.
//!
//! # Determinism and parallelism
//!
//! Every customer is simulated independently from its own ChaCha8 generator:
//! the key is derived from the run seed and the customer index selects the
//! ChaCha *stream* (a 64-bit nonce). Streams under one key are independent by
//! construction, so unlike XOR/multiply seed mixing no arithmetic coincidence
//! between seed and index can make two customers share a sequence. No generator is
//! ever shared, so customers are simulated with rayon in any order, and the
//! output is byte-identical whatever the thread count: per-customer results are
//! collected in index order and the sort key `(time, customer, seq)` (`Ev::key`) is
//! unique, so even an unstable parallel sort, or a merge of runs sorted
//! separately, has exactly one possible result.
//!
//! # Memory
//!
//! Events are held as a compact 32-byte `Ev` with one-byte codes: the type is the
//! pipeline's own [`EventKind`](crate::events::EventKind) (so the names written are those
//! the reader maps back, from one definition), channel and category are `u8` indices;
//! strings only appear when the Arrow batches are built, from `&'static str` tables (no
//! per-event `String` allocation).
//!
//! [`generate`] holds the whole log (fine for tests and samples: ~57 events a customer
//! on the default 730 days, 11.9 GB peak RSS for 2M customers through the files). `churnclv
//! generate` uses [`spill`] instead, whose memory does not grow with the number of
//! customers: chunks of [`CHUNK_CUSTOMERS`] customers are simulated and sorted, each spilled
//! as a sorted run (and the truth rows appended) into a scratch folder beside the output,
//! and the runs are merged into the writer batch by batch. Same rows, same files, for any
//! chunk size (tested down to one customer a run). Measured (docs/benchmarks.md, "Scale
//! run"): peak RSS 119 MiB for 200k customers, 155 MiB for 2M (11.7 GiB before).
//!
//! # Files
//!
//! `simulate.rs` is the generative model (one customer at a time), `write.rs` turns the
//! simulated events and latent states into Arrow batches (ids, order ids, the truth table),
//! `streamed.rs` is the bounded-memory path ([`spill`]: chunks, runs, merged batches) and
//! `spill.rs` its files (fixed-size records, the k-way merge); this file holds the
//! parameters and [`generate`].

use std::path::PathBuf;

use arrow_array::RecordBatch;
use arrow_schema::ArrowError;
use chrono::{Days, NaiveDate};

mod simulate;
mod spill;
mod streamed;
#[cfg(test)]
mod tests;
mod write;

use simulate::{Model, REACH_DAYS};
use streamed::simulate_sorted;
pub use streamed::{spill, EventBatches, Spilled, TruthBatches, CHUNK_CUSTOMERS};
use write::{event_batches, id_width, truth_batch};
pub use write::{event_schema, truth_schema};

/// Upper bound on `customers` (keeps the customer index within `u32`, which the
/// compact event representation relies on, with a wide margin).
pub const MAX_CUSTOMERS: usize = 50_000_000;
/// Upper bound on `days` (100 years).
pub const MAX_DAYS: u32 = 36_500;
/// Maximum number of rows in one event [`RecordBatch`].
pub const MAX_BATCH_ROWS: usize = 1 << 20;

const DEFAULT_START: NaiveDate = match NaiveDate::from_ymd_opt(2024, 1, 1) {
    Some(d) => d,
    // Evaluated at compile time: an invalid constant date fails the build.
    None => panic!("invalid default start date"),
};

/// Parameters of one synthetic data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateParams {
    /// Number of customers (`1..=50_000_000`).
    pub customers: usize,
    /// Run seed; same params give byte-identical output.
    pub seed: u64,
    /// First day of the observation period (00:00 UTC).
    pub start: NaiveDate,
    /// Length of the observation period in days (`1..=36_500`); the period is
    /// `[start, start + days)`.
    pub days: u32,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            customers: 20_000,
            seed: 42,
            start: DEFAULT_START,
            days: 730,
        }
    }
}

impl GenerateParams {
    /// Checks the parameter ranges; [`generate`] calls this first.
    pub fn validate(&self) -> Result<(), GenerateError> {
        if !(1..=MAX_CUSTOMERS).contains(&self.customers) {
            return Err(GenerateError::Customers {
                got: self.customers,
                max: MAX_CUSTOMERS,
            });
        }
        if !(1..=MAX_DAYS).contains(&self.days) {
            return Err(GenerateError::Days {
                got: self.days,
                max: MAX_DAYS,
            });
        }
        // The period end and the (capped) death times must be representable as
        // calendar dates, otherwise timestamps could not be rendered or compared.
        let reach = u64::from(self.days) + REACH_DAYS;
        if self.start.checked_add_days(Days::new(reach)).is_none() {
            return Err(GenerateError::StartOutOfRange { start: self.start });
        }
        Ok(())
    }
}

/// Errors from parameter validation or batch assembly.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// `customers` outside `1..=MAX_CUSTOMERS`.
    #[error("customers must be between 1 and {max}, got {got}")]
    Customers { got: usize, max: usize },
    /// `days` outside `1..=MAX_DAYS`.
    #[error("days must be between 1 and {max}, got {got}")]
    Days { got: u32, max: u32 },
    /// `start` too close to the end of the supported calendar.
    #[error("start date {start} is too late: the period plus {REACH_DAYS} days (the longest window shopping and lifetime) must stay within the supported calendar")]
    StartOutOfRange { start: NaiveDate },
    /// A distribution rejected its (constant) parameters.
    #[error("invalid parameters for the {what} distribution: {detail}")]
    Distribution { what: &'static str, detail: String },
    /// Arrow rejected a batch.
    #[error("building Arrow batch")]
    Arrow(#[from] ArrowError),
    /// Writing or reading a file of the scratch folder ([`spill`]).
    #[error("{path}: scratch file")]
    Scratch {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A scratch file holds a record this run cannot have written.
    #[error("{path}: invalid scratch record ({detail})")]
    ScratchRecord { path: PathBuf, detail: String },
}

/// Output of [`generate`].
#[derive(Debug, Clone)]
pub struct Generated {
    /// Event log in [`event_schema`], time ordered, batches of at most
    /// [`MAX_BATCH_ROWS`] rows.
    pub events: Vec<RecordBatch>,
    /// One row per customer in [`truth_schema`], in customer index order.
    pub truth: RecordBatch,
    /// Total number of event rows over all batches.
    pub n_events: usize,
}

/// Generates the event log and ground truth for `params`, all in memory (see [`spill`] for
/// data sets of any size).
///
/// Deterministic: the same params give identical batches regardless of the
/// rayon thread count.
pub fn generate(params: &GenerateParams) -> Result<Generated, GenerateError> {
    params.validate()?;
    let model = Model::new(params)?;
    let width = id_width(params.customers);

    let (truth, events) = simulate_sorted(&model, 0..params.customers);
    let n_events = events.len();
    let batches = event_batches(&events, width, MAX_BATCH_ROWS)?;
    drop(events);
    let truth = truth_batch(&truth, 0, width)?;
    Ok(Generated {
        events: batches,
        truth,
        n_events,
    })
}
