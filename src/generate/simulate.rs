//! The generative model of [`super::generate`] (described in the module documentation): the
//! latent state of one customer drawn from its own ChaCha8 stream, its purchases as a
//! Pareto/NBD process, and the behaviour events layered on top, as compact [`Ev`] records
//! with the customer's [`TruthRow`].

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, Exp1, Gamma, LogNormal, Poisson};

use super::{GenerateError, GenerateParams};
use crate::events::EventKind;
use crate::time::{date_us, DAY_US, MINUTES_PER_DAY};

/// Lifetimes are capped at this many days when stored as `death_time`.
/// `μ ~ Gamma(0.8, …)` puts real mass near zero, so `τ = Exp(μ)` can be
/// astronomically large (or infinite if `μ` underflows to 0) and would overflow
/// an `i64` microsecond timestamp. About 0.1% of customers hit the cap
/// (`P(τ > 10⁶ d) = (1 + 4000)^-0.8`); it never changes `alive_at_end`
/// because the cap is far beyond any allowed period.
const DEATH_CAP_DAYS: f64 = 1_000_000.0;

/// How far past the end of the period a death time can fall: the window-shopping
/// cap plus the lifetime cap.
pub(super) const REACH_DAYS: u64 = WINDOW_SHOPPING_CAP_DAYS as u64 + DEATH_CAP_DAYS as u64;

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

/// Simulated times are days since the start of the period (`f64`); microseconds per day.
pub(super) const US_PER_DAY: f64 = DAY_US as f64;
/// A minute, in days.
const MINUTE: f64 = 1.0 / MINUTES_PER_DAY;
/// Horizon of the ground-truth expectations (the `_90d` truth columns).
const TRUTH_HORIZON_DAYS: f64 = 90.0;
/// Share of events that use one of the customer's favourite channels/categories.
const FAVOURITE_SHARE: f64 = 0.85;

/// Channel names; indices are the `u8` codes stored in `Ev`.
pub(super) const CHANNELS: [&str; 5] = ["web", "app", "email", "sms", "store"];
const CH_EMAIL: u8 = 2;
const CH_SMS: u8 = 3;

/// Category names; indices are the `u8` codes stored in `Ev`.
pub(super) const CATEGORIES: [&str; 12] = [
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

/// One event in compact form (32 bytes): the whole log of a 10M-event run is
/// ~320 MB here instead of several GB of owned strings.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ev {
    /// Absolute time, microseconds since the Unix epoch (UTC).
    pub(super) t: i64,
    /// Customer index (0-based).
    pub(super) cust: u32,
    /// Per-customer push counter; makes the sort key unique.
    pub(super) seq: u32,
    /// Amount in cents (purchase/refund only).
    pub(super) cents: u32,
    /// Per-customer order index (purchase/refund only).
    pub(super) order: u32,
    /// Units bought (purchase only).
    pub(super) qty: u16,
    /// One byte: `EventKind` is a field-less enum; its name is written with
    /// [`EventKind::as_str`], the one definition of the event vocabulary.
    pub(super) kind: EventKind,
    pub(super) channel: u8,
    pub(super) category: Option<u8>,
}

// The layout the memory figures above rely on; a field that grows `Ev` fails the build.
const _: () = assert!(std::mem::size_of::<Ev>() == 32);

impl Ev {
    /// The event log's order: time, then customer, then the customer's push counter. Unique
    /// over the data set, so every sort and merge by it has exactly one result (the file's
    /// bytes do not depend on the sort algorithm, the thread count or the chunking).
    pub(super) fn key(&self) -> (i64, u32, u32) {
        (self.t, self.cust, self.seq)
    }
}

/// Latent state and counts of one customer, turned into one truth row.
#[derive(Debug, Clone, Copy)]
pub(super) struct TruthRow {
    pub(super) birth_us: i64,
    pub(super) lambda: f64,
    pub(super) mu: f64,
    pub(super) death_us: i64,
    pub(super) alive: bool,
    pub(super) mean_order_value: f64,
    pub(super) n_purchases: i64,
    pub(super) exp_purchases: f64,
    pub(super) exp_spend: f64,
}

/// Distributions and period constants shared (read-only) by all customers.
pub(super) struct Model {
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
    pub(super) fn new(p: &GenerateParams) -> Result<Self, GenerateError> {
        let start_us = date_us(p.start);
        Ok(Self {
            seed: p.seed,
            days: f64::from(p.days),
            start_us,
            period_us: i64::from(p.days) * DAY_US,
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
pub(super) fn simulate(model: &Model, index: usize) -> (TruthRow, Vec<Ev>) {
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
    let horizon_end = end + TRUTH_HORIZON_DAYS;
    let exp_purchases = if !alive {
        0.0
    } else if born {
        while_alive(TRUTH_HORIZON_DAYS)
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
