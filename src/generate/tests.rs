//! Tests of the generator: determinism, batch chunking, the event log's invariants, the
//! truth table against the events, recovery of the latent parameters, arrivals.

use super::simulate::{simulate, Ev, Model, US_PER_DAY};
use super::write::{event_batches, id_width};
use super::*;
use crate::events::EventKind;
use crate::time::DAY_US;
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
    events.sort_unstable_by_key(Ev::key);
    let one = event_batches(&events, width, MAX_BATCH_ROWS).expect("batches");
    let many = event_batches(&events, width, 1_000).expect("batches");
    assert_eq!(one.len(), 1);
    assert_eq!(many.len(), events.len().div_ceil(1_000));
    assert!(many.iter().all(|b| b.num_rows() <= 1_000));
    for (k, b) in many.iter().enumerate() {
        assert_eq!(*b, one[0].slice(k * 1_000, b.num_rows()), "chunk {k}");
    }
}

/// The streamed path (customers simulated in chunks, each chunk's events sorted and spilled as
/// a run, the runs merged) gives the in-memory generator's rows, value for value, whatever the
/// chunk size: one run, a few, and chunks of one customer (1,500 runs, more than are merged at
/// once, so groups of runs are first merged into longer ones), in batches of any size.
#[test]
fn spilled_runs_merge_to_the_rows_of_one_sort() {
    let p = small(21);
    let whole = generate(&p).expect("generate");
    let schema = event_schema();
    let all_events = arrow_select::concat::concat_batches(&schema, &whole.events).expect("concat");
    for chunk in [p.customers, 500, 7, 1] {
        let dir = tempfile::tempdir().expect("tmp");
        let spilled = spill(&p, dir.path(), chunk).expect("spill");
        let runs = p.customers.div_ceil(chunk);
        assert_eq!(
            spilled.runs(),
            if runs > 256 { runs.div_ceil(256) } else { runs }
        );
        assert_eq!(spilled.n_events(), whole.n_events as u64);
        // The truth file and the runs being merged, nothing else (merged runs are removed).
        let files = std::fs::read_dir(dir.path()).expect("list").count();
        assert_eq!(files, 1 + spilled.runs(), "chunk {chunk}");

        let events: Vec<RecordBatch> = spilled
            .events(1_000)
            .expect("open runs")
            .collect::<Result<_, _>>()
            .expect("merge");
        assert_eq!(
            events.len(),
            whole.n_events.div_ceil(1_000),
            "chunk {chunk}"
        );
        let events = arrow_select::concat::concat_batches(&schema, &events).expect("concat");
        assert!(events == all_events, "chunk {chunk}: other events");

        let truth: Vec<RecordBatch> = spilled
            .truth(100)
            .expect("open truth")
            .collect::<Result<_, _>>()
            .expect("truth");
        assert_eq!(truth.len(), p.customers.div_ceil(100));
        let truth = arrow_select::concat::concat_batches(&truth_schema(), &truth).expect("concat");
        assert!(truth == whole.truth, "chunk {chunk}: another truth table");
    }
}

#[test]
fn sorted_in_range_and_refunds_consistent() {
    let p = small(11);
    let g = generate(&p).expect("generate");
    let r = rows(&g);
    let start = micros(p.start);
    let end = start + i64::from(p.days) * DAY_US;
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
    let end = micros(p.start) + i64::from(p.days) * DAY_US;
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
    let horizon_end = end + 90 * DAY_US;
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
    let end = micros(p.start) + i64::from(p.days) * DAY_US;
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
    let end = start + i64::from(p.days) * DAY_US;
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
    let share = |from: i64| first_event.iter().filter(|&&t| t >= from).count() as f64 / n as f64;
    // Second half: only the flow (40%) arrives there, half of it: 0.20.
    let second_half = share(start + (end - start) / 2);
    assert!(
        (second_half - 0.20).abs() < 0.015,
        "second half {second_half}"
    );
    // Last 90 days: 0.4 × 90/730 = 0.049.
    let last_90 = share(end - 90 * DAY_US);
    assert!((last_90 - 0.049).abs() < 0.008, "last 90 days {last_90}");
    // Someone still arrives on the last day (0.4 × 20,000 / 730 ≈ 11 expected).
    assert!(share(end - DAY_US) > 0.0, "nobody arrived on the last day");

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
