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
//! collected in index order and the final sort key `(time, customer, seq)` is
//! unique, so even an unstable parallel sort has exactly one possible result.
//!
//! # Memory layout
//!
//! Events are held as a compact 32-byte `Ev` with one-byte codes: the type is the
//! pipeline's own [`EventKind`] (so the names written are those the reader maps
//! back, from one definition), channel and category are `u8` indices; strings
//! only appear when the Arrow batches are built, from `&'static str` tables (no
//! per-event `String` allocation).

use std::sync::{Arc, OnceLock};

use arrow_array::builder::StringBuilder;
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{Days, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, Exp1, Gamma, LogNormal, Poisson};
use rayon::prelude::*;

use crate::events::EventKind;

/// Upper bound on `customers` (keeps the customer index within `u32`, which the
/// compact event representation relies on, with a wide margin).
pub const MAX_CUSTOMERS: usize = 50_000_000;
/// Upper bound on `days` (100 years).
pub const MAX_DAYS: u32 = 36_500;
/// Maximum number of rows in one event [`RecordBatch`].
pub const MAX_BATCH_ROWS: usize = 1 << 20;

/// Lifetimes are capped at this many days when stored as `death_time`.
/// `μ ~ Gamma(0.8, …)` puts real mass near zero, so `τ = Exp(μ)` can be
/// astronomically large (or infinite if `μ` underflows to 0) and would overflow
/// an `i64` microsecond timestamp. About 0.1% of customers hit the cap
/// (`P(τ > 10⁶ d) = (1 + 4000)^-0.8`); it never changes `alive_at_end`
/// because the cap is far beyond any allowed period.
const DEATH_CAP_DAYS: f64 = 1_000_000.0;

/// How far past the end of the period a death time can fall: the window-shopping
/// cap plus the lifetime cap.
const REACH_DAYS: u64 = WINDOW_SHOPPING_CAP_DAYS as u64 + DEATH_CAP_DAYS as u64;

/// Share of customers in the opening cohort (arrivals in the first half of the
/// period); the others arrive in a steady flow over the whole period.
const OPENING_COHORT_SHARE: f64 = 0.6;
/// Share of customers who buy on their first visit; the others window-shop first.
const BUY_ON_FIRST_VISIT: f64 = 0.5;
/// Mean length of the window-shopping period before a first purchase, in days.
const WINDOW_SHOPPING_MEAN_DAYS: f64 = 21.0;
/// Window shopping is capped (P(w > 365 d) = e^{−17}) so that birth, and with it
/// the capped death time, stays within a known reach of the period.
const WINDOW_SHOPPING_CAP_DAYS: f64 = 365.0;

const US_PER_DAY: f64 = 86_400_000_000.0;
const MINUTE: f64 = 1.0 / 1440.0;
/// Horizon of the ground-truth expectations.
const HORIZON_DAYS: f64 = 90.0;
/// Share of events that use one of the customer's favourite channels/categories.
const FAVOURITE_SHARE: f64 = 0.85;

const DEFAULT_START: NaiveDate = match NaiveDate::from_ymd_opt(2024, 1, 1) {
    Some(d) => d,
    // Evaluated at compile time: an invalid constant date fails the build.
    None => panic!("invalid default start date"),
};

/// Channel names; indices are the `u8` codes stored in `Ev`.
const CHANNELS: [&str; 5] = ["web", "app", "email", "sms", "store"];
const CH_EMAIL: u8 = 2;
const CH_SMS: u8 = 3;

/// Category names; indices are the `u8` codes stored in `Ev`.
const CATEGORIES: [&str; 12] = [
    "books",
    "music",
    "electronics",
    "home",
    "garden",
    "toys",
    "beauty",
    "sports",
    "fashion",
    "grocery",
    "health",
    "pets",
];

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

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
}

/// Schema of the event batches.
pub fn event_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("customer_id", DataType::Utf8, false),
                Field::new("event_time", utc_micros(), false),
                Field::new("event_type", DataType::Utf8, false),
                Field::new("amount", DataType::Float64, true),
                Field::new("order_id", DataType::Utf8, true),
                Field::new("quantity", DataType::Int64, true),
                Field::new("channel", DataType::Utf8, false),
                Field::new("category", DataType::Utf8, true),
            ]))
        })
        .clone()
}

/// Schema of the ground-truth batch.
pub fn truth_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("customer_id", DataType::Utf8, false),
                Field::new("birth_time", utc_micros(), false),
                Field::new("purchase_rate_per_day", DataType::Float64, false),
                Field::new("dropout_rate_per_day", DataType::Float64, false),
                Field::new("death_time", utc_micros(), false),
                Field::new("alive_at_end", DataType::Boolean, false),
                Field::new("mean_order_value", DataType::Float64, false),
                Field::new("n_purchases", DataType::Int64, false),
                Field::new("true_expected_purchases_90d", DataType::Float64, false),
                Field::new("true_expected_spend_90d", DataType::Float64, false),
            ]))
        })
        .clone()
}

/// Purchases and refunds carry amount and order_id.
fn is_order(kind: EventKind) -> bool {
    matches!(kind, EventKind::Purchase | EventKind::Refund)
}

/// One event in compact form (32 bytes): the whole log of a 10M-event run is
/// ~320 MB here instead of several GB of owned strings.
#[derive(Debug, Clone, Copy)]
struct Ev {
    /// Absolute time, microseconds since the Unix epoch (UTC).
    t: i64,
    /// Customer index (0-based).
    cust: u32,
    /// Per-customer push counter; makes the sort key unique.
    seq: u32,
    /// Amount in cents (purchase/refund only).
    cents: u32,
    /// Per-customer order index (purchase/refund only).
    order: u32,
    /// Units bought (purchase only).
    qty: u16,
    /// One byte: `EventKind` is a field-less enum; its name is written with
    /// [`EventKind::as_str`], the one definition of the event vocabulary.
    kind: EventKind,
    channel: u8,
    category: Option<u8>,
}

// The layout the memory figures above rely on; a field that grows `Ev` fails the build.
const _: () = assert!(std::mem::size_of::<Ev>() == 32);

/// Latent state and counts of one customer, turned into one truth row.
#[derive(Debug, Clone, Copy)]
struct TruthRow {
    birth_us: i64,
    lambda: f64,
    mu: f64,
    death_us: i64,
    alive: bool,
    mean_order_value: f64,
    n_purchases: i64,
    exp_purchases: f64,
    exp_spend: f64,
}

/// Distributions and period constants shared (read-only) by all customers.
struct Model {
    seed: u64,
    days: f64,
    start_us: i64,
    period_us: i64,
    lambda: Gamma<f64>,
    mu: Gamma<f64>,
    order_value: LogNormal<f64>,
    /// Multiplicative order noise with mean 1: `LogNormal(-0.4²/2, 0.4)`, so
    /// `m · noise ~ LogNormal(ln m − 0.08, 0.4)` has mean `m` without building a
    /// distribution per customer.
    order_noise: LogNormal<f64>,
    engagement_level: LogNormal<f64>,
    purchase_page_views: Poisson<f64>,
    browse_page_views: Poisson<f64>,
    extra_quantity: Poisson<f64>,
    /// Delay between an email being sent and opened (mean 4 hours).
    open_delay: Exp<f64>,
}

fn dist<T, E: std::fmt::Display>(r: Result<T, E>, what: &'static str) -> Result<T, GenerateError> {
    r.map_err(|e| GenerateError::Distribution {
        what,
        detail: e.to_string(),
    })
}

impl Model {
    fn new(p: &GenerateParams) -> Result<Self, GenerateError> {
        let start_us = p
            .start
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_micros();
        Ok(Self {
            seed: p.seed,
            days: f64::from(p.days),
            start_us,
            period_us: i64::from(p.days) * 86_400_000_000,
            lambda: dist(Gamma::new(0.9, 1.0 / 60.0), "purchase rate")?,
            mu: dist(Gamma::new(0.8, 1.0 / 250.0), "dropout rate")?,
            order_value: dist(LogNormal::new(45f64.ln(), 0.6), "mean order value")?,
            order_noise: dist(LogNormal::new(-0.08, 0.4), "order amount")?,
            engagement_level: dist(LogNormal::new(0.0, 0.5), "engagement level")?,
            purchase_page_views: dist(Poisson::new(1.0), "purchase page views")?,
            browse_page_views: dist(Poisson::new(1.0), "browse page views")?,
            extra_quantity: dist(Poisson::new(0.5), "quantity")?,
            open_delay: dist(Exp::new(6.0), "email open delay")?,
        })
    }
}

/// A customer's 1–3 favourite values out of `universe`, with random weights.
#[derive(Debug, Clone, Copy)]
struct Favourites {
    idx: [u8; 3],
    /// Cumulative weights.
    cum: [f64; 3],
    len: usize,
    universe: u8,
}

impl Favourites {
    fn draw(rng: &mut ChaCha8Rng, universe: u8) -> Self {
        let len = rng.gen_range(1..=3usize);
        let mut idx = [0u8; 3];
        let mut cum = [0f64; 3];
        let mut total = 0.0;
        for j in 0..len {
            // Rejection keeps the favourites distinct (universe >= 5 > 3).
            let v = loop {
                let v = rng.gen_range(0..universe);
                if !idx[..j].contains(&v) {
                    break v;
                }
            };
            idx[j] = v;
            total += 0.1 + rng.gen::<f64>();
            cum[j] = total;
        }
        Self {
            idx,
            cum,
            len,
            universe,
        }
    }

    fn pick(&self, rng: &mut ChaCha8Rng) -> u8 {
        if rng.gen::<f64>() < FAVOURITE_SHARE {
            let u = rng.gen::<f64>() * self.cum[self.len - 1];
            for j in 0..self.len {
                if u < self.cum[j] {
                    return self.idx[j];
                }
            }
            self.idx[self.len - 1]
        } else {
            rng.gen_range(0..self.universe)
        }
    }
}

/// Order fields of purchase/refund events (zero for everything else).
#[derive(Debug, Clone, Copy, Default)]
struct OrderInfo {
    cents: u32,
    index: u32,
    qty: u16,
}

/// Simulation state of one customer.
struct Sim<'a> {
    model: &'a Model,
    rng: ChaCha8Rng,
    cust: u32,
    seq: u32,
    events: Vec<Ev>,
    /// Times are in days since `start` (f64) until converted on push.
    death: f64,
    channels: Favourites,
    categories: Favourites,
    /// Reused buffer for session gap draws.
    scratch: Vec<f64>,
}

fn days_to_us(t: f64) -> i64 {
    // Saturating float->int cast; +inf lands far outside the period.
    (t * US_PER_DAY).floor() as i64
}

fn to_cents(amount: f64) -> u32 {
    // At least one cent; the float->int cast saturates for absurd values.
    (amount * 100.0).round().max(1.0) as u32
}

impl Sim<'_> {
    fn exp1(&mut self) -> f64 {
        self.rng.sample(Exp1)
    }

    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.rng.gen::<f64>()
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.gen::<f64>() < p
    }

    /// Next arrival of a homogeneous Poisson process of `rate` (> 0) after `t`.
    fn next_arrival(&mut self, t: f64, rate: f64) -> f64 {
        t + self.exp1() / rate
    }

    /// Engagement multiplier e(t).
    fn engagement(&self, t: f64) -> f64 {
        if t >= self.death {
            0.05
        } else if t < self.death - 60.0 {
            1.0
        } else {
            0.25 + 0.75 * (self.death - t) / 60.0
        }
    }

    fn pick_channel(&mut self) -> u8 {
        self.channels.pick(&mut self.rng)
    }

    fn pick_category(&mut self) -> u8 {
        self.categories.pick(&mut self.rng)
    }

    /// Records an event if it falls inside `[start, end)`; returns whether it did.
    fn push_full(
        &mut self,
        t: f64,
        kind: EventKind,
        channel: u8,
        category: Option<u8>,
        order: OrderInfo,
    ) -> bool {
        let rel = days_to_us(t);
        if !(0..self.model.period_us).contains(&rel) {
            return false;
        }
        self.events.push(Ev {
            t: self.model.start_us + rel,
            cust: self.cust,
            seq: self.seq,
            cents: order.cents,
            order: order.index,
            qty: order.qty,
            kind,
            channel,
            category,
        });
        self.seq += 1;
        true
    }

    fn push(&mut self, t: f64, kind: EventKind, channel: u8, category: Option<u8>) -> bool {
        self.push_full(t, kind, channel, category, OrderInfo::default())
    }

    /// Page views mostly stay in the session's category, sometimes wander.
    fn page_view_category(&mut self, session_category: u8) -> u8 {
        if self.chance(0.6) {
            session_category
        } else {
            self.pick_category()
        }
    }

    /// The session leading to a purchase at `p`: session_start, page views,
    /// add_to_cart and (80%) checkout_start, spread over the preceding 0–60
    /// minutes. Times are uniform order statistics (normalised exponential
    /// gaps, with one trailing gap so every event is strictly before `p`),
    /// clamped to the start of the period.
    fn purchase_session(&mut self, p: f64, channel: u8, category: u8) {
        let n_pv = 1 + self.model.purchase_page_views.sample(&mut self.rng) as usize;
        let checkout = self.chance(0.8);
        let n_pre = 2 + n_pv + usize::from(checkout);
        let len = self.uniform(0.5, 60.0) * MINUTE;
        let mut gaps = std::mem::take(&mut self.scratch);
        gaps.clear();
        for _ in 0..=n_pre {
            let gap = self.exp1();
            gaps.push(gap);
        }
        let total: f64 = gaps.iter().sum();
        let scale = if total > 0.0 { len / total } else { 0.0 };
        let mut t = p - len;
        for (j, gap) in gaps.iter().take(n_pre).enumerate() {
            t += gap * scale;
            let at = t.max(0.0);
            if j == 0 {
                self.push(at, EventKind::SessionStart, channel, None);
            } else if j <= n_pv {
                let c = self.page_view_category(category);
                self.push(at, EventKind::PageView, channel, Some(c));
            } else if j == n_pv + 1 {
                self.push(at, EventKind::AddToCart, channel, Some(category));
            } else {
                self.push(at, EventKind::CheckoutStart, channel, None);
            }
        }
        self.scratch = gaps;
    }

    /// A browsing session starting at `t` that ends without a purchase.
    fn browse_session(&mut self, t: f64) {
        let channel = self.pick_channel();
        let category = self.pick_category();
        let mut at = t;
        self.push(at, EventKind::SessionStart, channel, None);
        let n_pv = 1 + self.model.browse_page_views.sample(&mut self.rng) as usize;
        for _ in 0..n_pv {
            at += self.exp1() * 2.0 * MINUTE;
            let c = self.page_view_category(category);
            self.push(at, EventKind::PageView, channel, Some(c));
        }
        // Abandoned cart: no purchase follows it.
        if self.chance(0.3) {
            at += self.exp1() * 2.0 * MINUTE;
            self.push(at, EventKind::AddToCart, channel, Some(category));
            if self.chance(0.25) {
                at += self.exp1() * 2.0 * MINUTE;
                self.push(at, EventKind::CheckoutStart, channel, None);
            }
        }
    }
}

/// Simulates one customer; returns its truth row and its (unsorted) events.
fn simulate(model: &Model, index: usize) -> (TruthRow, Vec<Ev>) {
    let mut rng = ChaCha8Rng::seed_from_u64(model.seed);
    rng.set_stream(index as u64);
    let end = model.days;

    // Latent state first, always in the same draw order. Arrivals run up to the
    // last day of the period, so the data ends with new customers too.
    let arrival = if rng.gen::<f64>() < OPENING_COHORT_SHARE {
        rng.gen::<f64>() * 0.5 * end
    } else {
        rng.gen::<f64>() * end
    };
    let window = if rng.gen::<f64>() < BUY_ON_FIRST_VISIT {
        0.0
    } else {
        (rng.sample::<f64, _>(Exp1) * WINDOW_SHOPPING_MEAN_DAYS).min(WINDOW_SHOPPING_CAP_DAYS)
    };
    let birth = arrival + window;
    let lambda: f64 = model.lambda.sample(&mut rng);
    let mu: f64 = model.mu.sample(&mut rng);
    let e: f64 = rng.sample(Exp1);
    // mu can underflow to 0 for shape < 1: treat as immortal (then capped).
    let tau = if mu > 0.0 { e / mu } else { f64::INFINITY };
    let death = birth + tau.min(DEATH_CAP_DAYS);
    let mean_order_value: f64 = model.order_value.sample(&mut rng);
    let g: f64 = model.engagement_level.sample(&mut rng);
    let channels = Favourites::draw(&mut rng, CHANNELS.len() as u8);
    let categories = Favourites::draw(&mut rng, CATEGORIES.len() as u8);

    let mut sim = Sim {
        model,
        rng,
        // Validated: customers <= MAX_CUSTOMERS < u32::MAX.
        cust: index as u32,
        seq: 0,
        events: Vec::new(),
        death,
        channels,
        categories,
        scratch: Vec::new(),
    };

    // A window shopper's first visit: a browsing session at arrival, which lies
    // inside the period, so every customer has at least one event. (A customer who
    // buys at once arrives with the session of that first purchase.)
    if window > 0.0 {
        sim.browse_session(arrival);
    }

    // Purchases: birth, then Poisson(λ) while alive and inside the period. A
    // prospect's birth lies after the end: its purchase is not recorded, only the
    // part of the session before it that falls inside the period (if any).
    let horizon = death.min(end);
    let mut purchase_times = vec![birth];
    if lambda > 0.0 {
        let mut t = birth;
        loop {
            t = sim.next_arrival(t, lambda);
            if t >= horizon {
                break;
            }
            purchase_times.push(t);
        }
    }
    let mut n_purchases = 0i64;
    for (k, &p) in purchase_times.iter().enumerate() {
        let order = k as u32;
        let channel = sim.pick_channel();
        let category = sim.pick_category();
        sim.purchase_session(p, channel, category);
        let amount = mean_order_value * model.order_noise.sample(&mut sim.rng);
        let cents = to_cents(amount);
        let qty = 1 + model.extra_quantity.sample(&mut sim.rng) as u16;
        let info = OrderInfo {
            cents,
            index: order,
            qty,
        };
        if sim.push_full(p, EventKind::Purchase, channel, Some(category), info) {
            n_purchases += 1;
        }
        if sim.chance(0.05) {
            let at = p + sim.uniform(1.0, 30.0);
            // Half full refunds, half partial (30–100% of the order).
            let refund_cents = if sim.chance(0.5) {
                cents
            } else {
                let share = sim.uniform(0.3, 1.0);
                to_cents(f64::from(cents) * share / 100.0)
            };
            let info = OrderInfo {
                cents: refund_cents,
                index: order,
                qty: 0,
            };
            sim.push_full(at, EventKind::Refund, channel, Some(category), info);
        }
        if sim.chance(0.08) {
            let at = p + sim.uniform(3.0, 20.0);
            let ch = sim.pick_channel();
            sim.push(at, EventKind::Review, ch, Some(category));
        }
        if g > 1.0 && sim.chance(0.02) {
            let at = p + sim.uniform(0.0, 14.0);
            let ch = sim.pick_channel();
            sim.push(at, EventKind::Referral, ch, None);
        }
    }

    // Browsing without purchase: thinned Poisson process from arrival (window
    // shopping included) to the end of the period.
    let browse_rate = (0.6 * lambda + 0.003) * g;
    if browse_rate > 0.0 {
        let mut t = arrival;
        loop {
            t = sim.next_arrival(t, browse_rate);
            if t >= end {
                break;
            }
            let keep = sim.engagement(t);
            if sim.chance(keep) {
                sim.browse_session(t);
            }
        }
    }

    // Emails: fortnightly cadence from birth with a random phase; opens depend on
    // engagement at send time, clicks follow opens by minutes.
    let mut send = birth + sim.uniform(0.0, 14.0);
    while send < end {
        let p_open = 0.35 * (sim.engagement(send) * g).min(1.0);
        if sim.chance(p_open) {
            let open = send + model.open_delay.sample(&mut sim.rng);
            sim.push(open, EventKind::EmailOpen, CH_EMAIL, None);
            if sim.chance(0.3) {
                let click = open + sim.uniform(1.0, 30.0) * MINUTE;
                sim.push(click, EventKind::EmailClick, CH_EMAIL, None);
            }
        }
        send += 14.0;
    }

    // SMS clicks: rate 0.005·e(t)·g per day from birth, by thinning.
    let sms_rate = 0.005 * g;
    if sms_rate > 0.0 {
        let mut t = birth;
        loop {
            t = sim.next_arrival(t, sms_rate);
            if t >= end {
                break;
            }
            let keep = sim.engagement(t);
            if sim.chance(keep) {
                sim.push(t, EventKind::SmsClick, CH_SMS, None);
            }
        }
    }

    // Support tickets: superposition of three homogeneous pieces.
    for (rate, from, to) in [
        (0.003, birth, horizon),
        (0.02, (death - 60.0).max(birth), horizon),
        (0.001, death, end),
    ] {
        let mut t = from;
        loop {
            t = sim.next_arrival(t, rate);
            if t >= to {
                break;
            }
            let ch = sim.pick_channel();
            sim.push(t, EventKind::SupportTicket, ch, None);
        }
    }

    let birth_us = model.start_us + days_to_us(birth);
    let death_us = model.start_us + days_to_us(death);
    let end_us = model.start_us + model.period_us;
    let alive = death_us >= end_us;
    // Born inside the period: the same test `push_full` applies to the purchase.
    let born = birth_us < end_us;
    // Memoryless lifetime: E[purchases in a window of `len` days | alive at its
    // start] = λ·(1 − e^{−μ·len})/μ; expm1 keeps it accurate for tiny μ (limit λ·len).
    let while_alive = |len: f64| {
        if mu > 0.0 {
            lambda * -(-mu * len).exp_m1() / mu
        } else {
            lambda * len
        }
    };
    let horizon_end = end + HORIZON_DAYS;
    let exp_purchases = if !alive {
        0.0
    } else if born {
        while_alive(HORIZON_DAYS)
    } else if birth < horizon_end {
        // A prospect who buys within the horizon: the first purchase, then the
        // repeat process for the rest of the window.
        1.0 + while_alive(horizon_end - birth)
    } else {
        0.0
    };
    let truth = TruthRow {
        birth_us,
        lambda,
        mu,
        death_us,
        alive,
        mean_order_value,
        n_purchases,
        exp_purchases,
        exp_spend: exp_purchases * mean_order_value,
    };
    (truth, sim.events)
}

/// Width of the zero-padded customer number: max(7, digits of N).
fn id_width(customers: usize) -> usize {
    customers.to_string().len().max(7)
}

/// Appends `n` zero-padded to `width` digits (no allocation).
fn push_padded(s: &mut String, n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    let mut v = n;
    loop {
        digits[len] = (v % 10) as u8;
        len += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for _ in len..width {
        s.push('0');
    }
    for &d in digits[..len].iter().rev() {
        s.push(char::from(b'0' + d));
    }
}

/// Customer id column: "C" + 1-based index padded to `width`.
fn customer_id_array(customers: impl ExactSizeIterator<Item = u32>, width: usize) -> StringArray {
    let n = customers.len();
    let mut b = StringBuilder::with_capacity(n, n * (width + 1));
    let mut buf = String::with_capacity(width + 1);
    for c in customers {
        buf.clear();
        buf.push('C');
        push_padded(&mut buf, u64::from(c) + 1, width);
        b.append_value(&buf);
    }
    b.finish()
}

/// Builds one event batch from a sorted slice.
fn event_batch(chunk: &[Ev], width: usize) -> Result<RecordBatch, ArrowError> {
    let n = chunk.len();
    let customer_id = customer_id_array(chunk.iter().map(|e| e.cust), width);
    let event_time =
        TimestampMicrosecondArray::from_iter_values(chunk.iter().map(|e| e.t)).with_timezone("UTC");
    let event_type = StringArray::from_iter_values(chunk.iter().map(|e| e.kind.as_str()));
    let amount: Float64Array = chunk
        .iter()
        .map(|e| is_order(e.kind).then(|| f64::from(e.cents) / 100.0))
        .collect();
    // Order ids: "O" + customer number + "-" + 1-based order number, unique
    // across the data set; refunds reuse the purchase's id.
    let n_orders = chunk.iter().filter(|e| is_order(e.kind)).count();
    let mut order_id = StringBuilder::with_capacity(n, n_orders * (width + 7));
    let mut buf = String::with_capacity(width + 16);
    for e in chunk {
        if is_order(e.kind) {
            buf.clear();
            buf.push('O');
            push_padded(&mut buf, u64::from(e.cust) + 1, width);
            buf.push('-');
            push_padded(&mut buf, u64::from(e.order) + 1, 4);
            order_id.append_value(&buf);
        } else {
            order_id.append_null();
        }
    }
    let quantity: Int64Array = chunk
        .iter()
        .map(|e| (e.kind == EventKind::Purchase).then_some(i64::from(e.qty)))
        .collect();
    let channel =
        StringArray::from_iter_values(chunk.iter().map(|e| CHANNELS[usize::from(e.channel)]));
    let category: StringArray = chunk
        .iter()
        .map(|e| e.category.map(|c| CATEGORIES[usize::from(c)]))
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(customer_id),
        Arc::new(event_time),
        Arc::new(event_type),
        Arc::new(amount),
        Arc::new(order_id.finish()),
        Arc::new(quantity),
        Arc::new(channel),
        Arc::new(category),
    ];
    RecordBatch::try_new(event_schema(), columns)
}

/// Splits sorted events into batches of at most `rows` rows, built in parallel.
fn event_batches(events: &[Ev], width: usize, rows: usize) -> Result<Vec<RecordBatch>, ArrowError> {
    events
        .par_chunks(rows.max(1))
        .map(|chunk| event_batch(chunk, width))
        .collect()
}

fn truth_batch(rows: &[TruthRow], width: usize) -> Result<RecordBatch, ArrowError> {
    let customer_id = customer_id_array(0..rows.len() as u32, width);
    let ts = |f: fn(&TruthRow) -> i64| {
        TimestampMicrosecondArray::from_iter_values(rows.iter().map(f)).with_timezone("UTC")
    };
    let f64s = |f: fn(&TruthRow) -> f64| Float64Array::from_iter_values(rows.iter().map(f));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(customer_id),
        Arc::new(ts(|r| r.birth_us)),
        Arc::new(f64s(|r| r.lambda)),
        Arc::new(f64s(|r| r.mu)),
        Arc::new(ts(|r| r.death_us)),
        Arc::new(rows.iter().map(|r| Some(r.alive)).collect::<BooleanArray>()),
        Arc::new(f64s(|r| r.mean_order_value)),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.n_purchases),
        )),
        Arc::new(f64s(|r| r.exp_purchases)),
        Arc::new(f64s(|r| r.exp_spend)),
    ];
    RecordBatch::try_new(truth_schema(), columns)
}

/// Generates the event log and ground truth for `params`.
///
/// Deterministic: the same params give identical batches regardless of the
/// rayon thread count.
pub fn generate(params: &GenerateParams) -> Result<Generated, GenerateError> {
    params.validate()?;
    let model = Model::new(params)?;
    let width = id_width(params.customers);

    let per_customer: Vec<(TruthRow, Vec<Ev>)> = (0..params.customers)
        .into_par_iter()
        .map(|i| simulate(&model, i))
        .collect();

    // One flat copy then a global parallel sort: simple and obviously correct.
    // Each customer's vector is freed as soon as it is copied. (A time-bucketed
    // scatter would save the copy and part of the sort, but the whole pipeline
    // already runs at ~8M events/s on 2 cores.)
    let n_events: usize = per_customer.iter().map(|(_, ev)| ev.len()).sum();
    let mut events = Vec::with_capacity(n_events);
    let mut truth = Vec::with_capacity(params.customers);
    for (row, ev) in per_customer {
        truth.push(row);
        events.extend_from_slice(&ev);
    }
    // Unique key, so the unstable sort is still deterministic.
    events.par_sort_unstable_by_key(|e| (e.t, e.cust, e.seq));

    let batches = event_batches(&events, width, MAX_BATCH_ROWS)?;
    drop(events);
    let truth = truth_batch(&truth, width)?;
    Ok(Generated {
        events: batches,
        truth,
        n_events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
    use std::collections::HashMap;

    /// Flattened copy of the event log for assertions.
    #[derive(Default)]
    struct Rows {
        customer: Vec<String>,
        time: Vec<i64>,
        kind: Vec<String>,
        amount: Vec<Option<f64>>,
        order: Vec<Option<String>>,
        quantity: Vec<Option<i64>>,
        category: Vec<Option<String>>,
    }

    fn rows(g: &Generated) -> Rows {
        let mut r = Rows::default();
        for b in &g.events {
            assert_eq!(b.schema(), event_schema());
            assert!(b.num_rows() <= MAX_BATCH_ROWS);
            let s = |i: usize| b.column(i).as_string::<i32>();
            r.customer
                .extend(s(0).iter().map(|v| v.expect("non-null").to_string()));
            r.time.extend(
                b.column(1)
                    .as_primitive::<TimestampMicrosecondType>()
                    .values()
                    .iter(),
            );
            r.kind
                .extend(s(2).iter().map(|v| v.expect("non-null").to_string()));
            r.amount
                .extend(b.column(3).as_primitive::<Float64Type>().iter());
            r.order.extend(s(4).iter().map(|v| v.map(str::to_string)));
            r.quantity
                .extend(b.column(5).as_primitive::<Int64Type>().iter());
            r.category
                .extend(s(7).iter().map(|v| v.map(str::to_string)));
        }
        assert_eq!(r.time.len(), g.n_events);
        r
    }

    fn micros(d: NaiveDate) -> i64 {
        d.and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_micros()
    }

    fn small(seed: u64) -> GenerateParams {
        GenerateParams {
            customers: 1_500,
            seed,
            start: DEFAULT_START,
            days: 400,
        }
    }

    #[test]
    fn deterministic_and_seed_sensitive() {
        let a = generate(&small(7)).expect("generate");
        let b = generate(&small(7)).expect("generate");
        assert!(a.n_events > 10_000, "only {} events", a.n_events);
        assert_eq!(a.events, b.events);
        assert_eq!(a.truth, b.truth);

        // Thread count must not matter.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool");
        let c = pool.install(|| generate(&small(7))).expect("generate");
        assert_eq!(a.events, c.events);
        assert_eq!(a.truth, c.truth);

        let d = generate(&small(8)).expect("generate");
        assert_ne!(a.truth, d.truth);
        assert_ne!(a.events, d.events);
    }

    #[test]
    fn chunking_preserves_rows() {
        let p = GenerateParams {
            customers: 300,
            ..small(3)
        };
        let width = id_width(p.customers);
        let model = Model::new(&p).expect("model");
        let mut events: Vec<Ev> = (0..p.customers)
            .flat_map(|i| simulate(&model, i).1)
            .collect();
        events.sort_unstable_by_key(|e| (e.t, e.cust, e.seq));
        let one = event_batches(&events, width, MAX_BATCH_ROWS).expect("batches");
        let many = event_batches(&events, width, 1_000).expect("batches");
        assert_eq!(one.len(), 1);
        assert_eq!(many.len(), events.len().div_ceil(1_000));
        assert!(many.iter().all(|b| b.num_rows() <= 1_000));
        for (k, b) in many.iter().enumerate() {
            assert_eq!(*b, one[0].slice(k * 1_000, b.num_rows()), "chunk {k}");
        }
    }

    #[test]
    fn sorted_in_range_and_refunds_consistent() {
        let p = small(11);
        let g = generate(&p).expect("generate");
        let r = rows(&g);
        let start = micros(p.start);
        let end = start + i64::from(p.days) * 86_400_000_000;
        for i in 0..r.time.len() {
            assert!((start..end).contains(&r.time[i]), "row {i} out of range");
            if i > 0 {
                // Fixed-width ids sort like the customer index.
                let prev = (r.time[i - 1], &r.customer[i - 1]);
                assert!(prev <= (r.time[i], &r.customer[i]), "row {i} out of order");
            }
        }
        let mut purchases: HashMap<&str, (&str, i64)> = HashMap::new();
        let (mut n_purchase, mut n_refund) = (0, 0);
        for i in 0..r.time.len() {
            let k = r.kind[i].as_str();
            let is_order = k == "purchase" || k == "refund";
            assert_eq!(r.amount[i].is_some(), is_order, "amount on {k}");
            assert_eq!(r.order[i].is_some(), is_order, "order_id on {k}");
            assert_eq!(r.quantity[i].is_some(), k == "purchase", "quantity on {k}");
            let has_cat = matches!(
                k,
                "page_view" | "add_to_cart" | "purchase" | "refund" | "review"
            );
            assert_eq!(r.category[i].is_some(), has_cat, "category on {k}");
            if is_order {
                let a = r.amount[i].expect("checked");
                assert!(a.is_finite() && a >= 0.01, "amount {a}");
                assert!(
                    ((a * 100.0).round() - a * 100.0).abs() < 1e-6,
                    "not cents: {a}"
                );
            }
            let order = r.order[i].as_deref();
            if k == "purchase" {
                n_purchase += 1;
                assert!(r.quantity[i].expect("checked") >= 1);
                let prev = purchases.insert(order.expect("checked"), (&r.customer[i], r.time[i]));
                assert!(prev.is_none(), "duplicate order id");
            } else if k == "refund" {
                n_refund += 1;
                // Sorted log: the purchase must already have been seen.
                let (cust, t) = purchases[order.expect("checked")];
                assert_eq!(cust, r.customer[i]);
                assert!(t < r.time[i]);
            }
        }
        // ~5% of purchases are refunded (minus those pushed past the end).
        let share = f64::from(n_refund) / f64::from(n_purchase);
        assert!((0.03..0.06).contains(&share), "refund share {share}");
    }

    /// Every `event_type` written is a canonical name of the pipeline's vocabulary
    /// (`EventKind::as_str`), and the generator uses all but `community_post` and
    /// `other`.
    #[test]
    fn event_types_are_the_pipeline_vocabulary() {
        let r = rows(&generate(&small(13)).expect("generate"));
        let kinds: std::collections::BTreeSet<&str> = r.kind.iter().map(String::as_str).collect();
        let map = crate::events::EventTypeMap::default();
        for k in &kinds {
            let (kind, recognised) = map.classify(k);
            assert!(recognised && kind != EventKind::Other, "{k}");
            assert_eq!(kind.as_str(), *k);
        }
        let expected: std::collections::BTreeSet<&str> = EventKind::ALL
            .into_iter()
            .filter(|k| !matches!(k, EventKind::CommunityPost | EventKind::Other))
            .map(EventKind::as_str)
            .collect();
        assert_eq!(kinds, expected);
    }

    #[test]
    fn truth_matches_events() {
        let p = small(5);
        let g = generate(&p).expect("generate");
        let r = rows(&g);
        let t = &g.truth;
        assert_eq!(t.schema(), truth_schema());
        assert_eq!(t.num_rows(), p.customers);
        let end = micros(p.start) + i64::from(p.days) * 86_400_000_000;
        let ids = t.column(0).as_string::<i32>();
        let birth = t.column(1).as_primitive::<TimestampMicrosecondType>();
        let lambda = t.column(2).as_primitive::<Float64Type>();
        let death = t.column(4).as_primitive::<TimestampMicrosecondType>();
        let alive = t.column(5).as_boolean();
        let n_purchases = t.column(7).as_primitive::<Int64Type>();
        let exp_p = t.column(8).as_primitive::<Float64Type>();
        let exp_s = t.column(9).as_primitive::<Float64Type>();
        assert_eq!(ids.value(0), "C0000001");
        assert_eq!(ids.value(p.customers - 1), "C0001500");

        let mut per_customer: HashMap<&str, (i64, i64, i64)> = HashMap::new(); // count, first, last
        let mut first_event: HashMap<&str, i64> = HashMap::new();
        for i in 0..r.time.len() {
            first_event.entry(&r.customer[i]).or_insert(r.time[i]);
            if r.kind[i] == "purchase" {
                let e = per_customer
                    .entry(&r.customer[i])
                    .or_insert((0, i64::MAX, i64::MIN));
                e.0 += 1;
                e.1 = e.1.min(r.time[i]);
                e.2 = e.2.max(r.time[i]);
            }
        }
        let mut n_dead = 0;
        let mut n_prospects = 0;
        let horizon_end = end + 90 * 86_400_000_000;
        for c in 0..t.num_rows() {
            // Every customer arrives inside the period: at least one event.
            let arrived = first_event.get(ids.value(c)).copied();
            assert!(arrived.is_some(), "customer {c} has no event");
            let Some(&(count, first, last)) = per_customer.get(ids.value(c)) else {
                // A prospect: window shopping only, its first purchase after the end.
                n_prospects += 1;
                assert_eq!(n_purchases.value(c), 0, "customer {c}");
                assert!(birth.value(c) >= end, "customer {c} born in the period");
                assert!(arrived < Some(end));
                assert!(alive.value(c) && death.value(c) > birth.value(c));
                let left = (horizon_end - birth.value(c)) as f64 / US_PER_DAY;
                if left > 0.0 {
                    // The first purchase, then the repeat process.
                    assert!(exp_p.value(c) >= 1.0, "customer {c}");
                    assert!(exp_p.value(c) <= 1.0 + lambda.value(c) * left + 1e-12);
                } else {
                    assert_eq!(exp_p.value(c), 0.0);
                }
                continue;
            };
            assert!(
                arrived <= Some(first),
                "first event after the first purchase"
            );
            assert_eq!(n_purchases.value(c), count, "customer {c}");
            assert_eq!(first, birth.value(c), "first purchase is birth");
            assert_eq!(alive.value(c), death.value(c) >= end);
            assert!(birth.value(c) < death.value(c));
            if alive.value(c) {
                assert!(exp_p.value(c) > 0.0 || lambda.value(c) == 0.0);
                assert!(exp_p.value(c) <= lambda.value(c) * 90.0 + 1e-12);
            } else {
                n_dead += 1;
                assert!(last <= death.value(c), "purchase after death, customer {c}");
                assert_eq!(exp_p.value(c), 0.0);
                assert_eq!(exp_s.value(c), 0.0);
            }
        }
        assert!(n_dead > 100 && n_dead < p.customers - 100, "dead {n_dead}");
        // 1,500 × 40% in the flow × half window-shop × 21/400: about 16 expected.
        assert!((5..=40).contains(&n_prospects), "prospects {n_prospects}");
    }

    #[test]
    fn recovers_latent_parameters() {
        let p = GenerateParams::default();
        let g = generate(&p).expect("generate");
        let t = &g.truth;
        let n = t.num_rows() as f64;
        let end = micros(p.start) + i64::from(p.days) * 86_400_000_000;
        let birth = t.column(1).as_primitive::<TimestampMicrosecondType>();
        let lambda = t.column(2).as_primitive::<Float64Type>();
        let mu = t.column(3).as_primitive::<Float64Type>();
        let death = t.column(4).as_primitive::<TimestampMicrosecondType>();
        let alive = t.column(5).as_boolean();
        let mov = t.column(6).as_primitive::<Float64Type>();
        let n_purchases = t.column(7).as_primitive::<Int64Type>();

        let mean_lambda = lambda.values().iter().sum::<f64>() / n;
        assert!(
            (mean_lambda / 0.015 - 1.0).abs() < 0.05,
            "mean λ {mean_lambda}"
        );
        let mean_mu = mu.values().iter().sum::<f64>() / n;
        assert!((mean_mu / 0.0032 - 1.0).abs() < 0.05, "mean μ {mean_mu}");

        // P(alive at end | μ, birth) = exp(−μ·(end − birth)).
        let mut expected_alive = 0.0;
        let mut exposure_purchases = 0.0;
        let mut repeat_purchases = 0.0;
        for c in 0..t.num_rows() {
            // A prospect (first purchase after the end) is alive at the end and has
            // no exposure inside the period.
            let age = ((end - birth.value(c)) as f64 / US_PER_DAY).max(0.0);
            expected_alive += (-mu.value(c) * age).exp();
            let exposure = (death.value(c).min(end) - birth.value(c)) as f64 / US_PER_DAY;
            exposure_purchases += lambda.value(c) * exposure.max(0.0);
            repeat_purchases += (n_purchases.value(c) - 1).max(0) as f64;
        }
        let observed_alive = alive.true_count() as f64 / n;
        expected_alive /= n;
        assert!(
            (observed_alive - expected_alive).abs() < 0.02,
            "alive {observed_alive} vs expected {expected_alive}"
        );
        // Repeat purchases are Poisson(λ · time alive in the period).
        assert!(
            (repeat_purchases / exposure_purchases - 1.0).abs() < 0.03,
            "repeat purchases {repeat_purchases} vs λ-exposure {exposure_purchases}"
        );

        // Order amounts have mean equal to the customer's mean order value.
        // Read the arrays directly: 5M rows is too many to copy into Strings.
        let mut ratio_sum = 0.0;
        let mut count = 0.0;
        for b in &g.events {
            let ids = b.column(0).as_string::<i32>();
            let kinds = b.column(2).as_string::<i32>();
            let amounts = b.column(3).as_primitive::<Float64Type>();
            for i in 0..b.num_rows() {
                if kinds.value(i) == "purchase" {
                    let idx: usize = ids.value(i)[1..].parse().expect("numeric id");
                    ratio_sum += amounts.value(i) / mov.value(idx - 1);
                    count += 1.0;
                }
            }
        }
        let ratio = ratio_sum / count;
        assert!(
            (ratio - 1.0).abs() < 0.03,
            "amount / mean order value {ratio}"
        );
        // ~57 events per customer with these rates (1,141,885 for the default
        // seed): ~5 purchases, each with a ~5-event funnel, ~7 browsing sessions,
        // fortnightly e-mails. `make run`'s sample is therefore about 1.1M events.
        assert!(
            (1_000_000..=1_300_000).contains(&g.n_events),
            "default run produced {} events",
            g.n_events
        );
    }

    /// Arrivals run until the last day (a steady flow on top of the opening
    /// cohort), and window shoppers at the end are prospects: the shares the
    /// `//!` header promises, on the `make run` parameters.
    #[test]
    fn arrivals_run_until_the_last_day() {
        let p = GenerateParams::default();
        let g = generate(&p).expect("generate");
        let start = micros(p.start);
        let end = start + i64::from(p.days) * 86_400_000_000;
        let n = p.customers;
        // First event per customer; the log is time ordered, so the first row seen.
        let mut first_event = vec![i64::MAX; n];
        let mut bought = vec![false; n];
        for b in &g.events {
            let ids = b.column(0).as_string::<i32>();
            let times = b.column(1).as_primitive::<TimestampMicrosecondType>();
            let kinds = b.column(2).as_string::<i32>();
            for i in 0..b.num_rows() {
                let c = ids.value(i)[1..].parse::<usize>().expect("numeric id") - 1;
                first_event[c] = first_event[c].min(times.value(i));
                bought[c] |= kinds.value(i) == "purchase";
            }
        }
        assert!(first_event.iter().all(|&t| (start..end).contains(&t)));
        let share =
            |from: i64| first_event.iter().filter(|&&t| t >= from).count() as f64 / n as f64;
        // Second half: only the flow (40%) arrives there, half of it: 0.20.
        let second_half = share(start + (end - start) / 2);
        assert!(
            (second_half - 0.20).abs() < 0.015,
            "second half {second_half}"
        );
        // Last 90 days: 0.4 × 90/730 = 0.049.
        let last_90 = share(end - 90 * 86_400_000_000);
        assert!((last_90 - 0.049).abs() < 0.008, "last 90 days {last_90}");
        // Someone still arrives on the last day (0.4 × 20,000 / 730 ≈ 11 expected).
        assert!(
            share(end - 86_400_000_000) > 0.0,
            "nobody arrived on the last day"
        );

        // Prospects: 0.4 × 0.5 × 21/730 × 20,000 ≈ 115 expected (sd ≈ 11).
        let n_purchases = g.truth.column(7).as_primitive::<Int64Type>();
        let birth = g.truth.column(1).as_primitive::<TimestampMicrosecondType>();
        let prospects: Vec<usize> = (0..n).filter(|&c| !bought[c]).collect();
        assert!(
            (70..=160).contains(&prospects.len()),
            "{} prospects",
            prospects.len()
        );
        for &c in &prospects {
            assert_eq!(n_purchases.value(c), 0);
            assert!(birth.value(c) >= end);
        }
    }

    #[test]
    fn validation_errors() {
        let zero = GenerateParams {
            customers: 0,
            ..GenerateParams::default()
        };
        assert_eq!(
            zero.validate().expect_err("invalid").to_string(),
            "customers must be between 1 and 50000000, got 0"
        );
        assert_eq!(
            generate(&zero).expect_err("invalid").to_string(),
            "customers must be between 1 and 50000000, got 0"
        );
        let too_many = GenerateParams {
            customers: 50_000_001,
            ..GenerateParams::default()
        };
        assert_eq!(
            too_many.validate().expect_err("invalid").to_string(),
            "customers must be between 1 and 50000000, got 50000001"
        );
        let no_days = GenerateParams {
            days: 0,
            ..GenerateParams::default()
        };
        assert_eq!(
            no_days.validate().expect_err("invalid").to_string(),
            "days must be between 1 and 36500, got 0"
        );
        let long = GenerateParams {
            days: 36_501,
            ..GenerateParams::default()
        };
        assert_eq!(
            long.validate().expect_err("invalid").to_string(),
            "days must be between 1 and 36500, got 36501"
        );
        let late = GenerateParams {
            start: NaiveDate::MAX,
            ..GenerateParams::default()
        };
        assert!(matches!(
            late.validate(),
            Err(GenerateError::StartOutOfRange { .. })
        ));
        assert!(GenerateParams::default().validate().is_ok());
        let one = GenerateParams {
            customers: 1,
            days: 1,
            ..GenerateParams::default()
        };
        let g = generate(&one).expect("tiny run");
        assert_eq!(g.truth.num_rows(), 1);
    }
}
