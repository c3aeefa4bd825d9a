//! The feature set: every column by hand, BTYD triple against CDNOW, no leakage, and the same
//! result for any number of threads.

use crate::common;

use std::path::Path;

use churnclv::batch::{value_code, Event};
use churnclv::config::Columns;
use churnclv::events::EventKind;
use churnclv::features::{histories_from_events, Features, Histories, HistoryAcc};
use churnclv::io::{open_inputs, scan, ReadOptions};
use churnclv::time::DAY_US;
use proptest::prelude::*;

const HOUR: i64 = 3_600_000_000;

fn at(day: i64, hour: i64) -> i64 {
    day * DAY_US + hour * HOUR
}

fn ev(id: &str, day: i64, hour: i64, kind: EventKind, amount: Option<f64>) -> Event<'_> {
    Event {
        customer_id: id,
        time_us: at(day, hour),
        kind,
        amount,
        channel: None,
        category: None,
    }
}

fn with<'a>(mut e: Event<'a>, channel: Option<&str>, category: Option<&str>) -> Event<'a> {
    e.channel = channel.map(value_code);
    e.category = category.map(value_code);
    e
}

/// Customer "a" (see the comments for each event) and a customer "b" who appears after the
/// first cutoff. Cutoffs: day 100 and day 200.
fn hand_events() -> Vec<Event<'static>> {
    use EventKind::*;
    vec![
        with(ev("a", 10, 12, PageView, None), Some("web"), Some("books")),
        with(ev("a", 10, 13, AddToCart, None), Some("web"), Some("books")), // bought 1 h later
        with(
            ev("a", 10, 14, Purchase, Some(20.0)),
            Some("web"),
            Some("books"),
        ),
        with(
            ev("a", 10, 18, Purchase, Some(5.0)),
            Some("app"),
            Some("music"),
        ), // same day
        with(ev("a", 40, 6, AddToCart, None), Some("app"), None), // next purchase 30 h later: abandoned
        with(ev("a", 41, 12, Purchase, Some(30.0)), None, Some("music")),
        ev("a", 45, 0, Refund, Some(5.0)),
        ev("a", 70, 12, SessionStart, None),
        ev("a", 75, 6, SupportTicket, None),
        ev("a", 80, 12, EmailOpen, None),
        ev("a", 80, 14, EmailClick, None),
        ev("a", 85, 0, SmsClick, None),
        ev("a", 90, 12, Purchase, Some(15.0)),
        ev("a", 95, 0, AddToCart, None), // the purchase after it lies beyond the cutoff: abandoned
        ev("a", 97, 0, CommunityPost, None),
        ev("a", 98, 0, Referral, None),
        ev("a", 99, 12, PageView, None),
        ev("a", 99, 23, Review, None),
        with(
            ev("a", 100, 5, Purchase, Some(50.0)),
            Some("store"),
            Some("garden"),
        ), // after cutoff 0
        ev("b", 150, 0, PageView, None),
    ]
}

#[test]
fn every_column_by_hand() {
    let h = histories_from_events(&[at(100, 0), at(200, 0)], &hand_events());
    let set = h.features(0);
    assert_eq!(
        set.customer_ids
            .iter()
            .map(|s| s.as_ref())
            .collect::<Vec<_>>(),
        ["a"]
    );
    let want = Features {
        n_events: 18,
        n_purchases: 4,
        purchase_days: 3, // days 10, 41, 90
        frequency: 2,
        recency_days: Some(9.5), // 100 − 90.5
        t_x_days: 80.0,          // 90 − 10
        t_days: 89.0,            // 99 (day before the cutoff) − 10
        monetary_total: 65.0,    // 20 + 5 + 30 + 15 − 5
        avg_order_value: Some(17.5),
        max_order_value: Some(30.0),
        repeat_spend_mean: Some(22.5), // day totals 25 (first, excluded), 30, 15
        tenure_days: 89.5,             // 100 − 10.5
        active_days: 13,               // 10 40 41 45 70 75 80 85 90 95 97 98 99
        n_page_views: 2,
        n_sessions: 1,
        n_add_to_cart: 3,
        cart_abandonments: 2,
        days_since_cart_abandonment: Some(5.0), // the day-95 cart
        n_checkout_starts: 0,
        n_support_tickets: 1,
        n_email_opens: 1,
        n_email_clicks: 1,
        n_sms_clicks: 1,
        n_reviews: 1,
        n_referrals: 1,
        n_community_posts: 1,
        n_refunds: 1,
        refund_amount: 5.0,
        refund_ratio: 5.0 / 70.0,
        n_categories: 2, // books, music (garden comes after the cutoff)
        n_channels: 2,   // web, app
        days_since_last_event: 1.0 / 24.0,
        ipt_mean_days: Some(40.0), // gaps 31 and 49
        ipt_std_days: Some(9.0),
        events_7d: 5,   // days 95, 97, 98, 99, 99
        events_30d: 11, // from day 70 on
        events_90d: 18,
        trend_30d: 3.0, // (11 + 1) / (3 in days 40..70 + 1)
    };
    assert_eq!(set.rows[0], want);

    // The label window after cutoff 0 holds the day-100 purchase.
    let w = h.customer(0).window(0).expect("window");
    assert_eq!(w.count(EventKind::Purchase), 1);
    assert_eq!(w.net_spend(), 50.0);

    // At cutoff 1 the day-100 purchase is history, "b" has appeared.
    let set = h.features(1);
    assert_eq!(set.rows.len(), 2);
    let a = &set.rows[0];
    assert_eq!((a.n_purchases, a.purchase_days, a.frequency), (5, 4, 3));
    assert_eq!(a.cart_abandonments, 2); // day 95 + 24 h < day 100 05:00
    assert_eq!((a.n_categories, a.n_channels), (3, 3));
    assert_eq!(a.recency_days, Some(100.0 - 5.0 / 24.0));
    assert_eq!((a.events_7d, a.events_30d, a.events_90d), (0, 0, 0)); // nothing in days 110..200
    let b = &set.rows[1];
    assert_eq!(
        (b.n_events, b.n_purchases, b.recency_days, b.avg_order_value),
        (1, 0, None, None)
    );
    assert_eq!((b.ipt_mean_days, b.t_x_days, b.t_days), (None, 0.0, 0.0));
    assert_eq!(b.trend_30d, 0.5); // (0 + 1) / (1 event 50 days back + 1)
}

#[test]
fn features_parquet_columns_are_the_contract() {
    let names: Vec<String> = churnclv::features::features_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let contract = "customer_id, n_events, n_purchases, purchase_days, frequency, recency_days, \
        t_x_days, T_days, monetary_total, avg_order_value, max_order_value, tenure_days, active_days, \
        n_page_views, n_sessions, n_add_to_cart, cart_abandonments, n_support_tickets, n_email_opens, \
        n_email_clicks, n_sms_clicks, n_refunds, refund_amount, n_categories, n_channels, \
        days_since_last_event, ipt_mean_days, ipt_std_days, events_7d, events_30d, events_90d, trend_30d";
    for c in contract.split(", ") {
        assert!(names.iter().any(|n| n == c), "missing {c}");
    }
    assert_eq!(names[0], "customer_id");
    assert_eq!(names.len(), 39);
}

/// lifetimes' summary of the CDNOW sample (weeks, two decimals) against our triple × 7, and
/// the mean repeat spend against its `zbar`.
#[test]
fn btyd_triple_matches_cdnow_summary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cdnow");
    let inputs = open_inputs(
        &root
            .join("cdnow_sample_events.parquet")
            .display()
            .to_string(),
        &Columns::default(),
    )
    .expect("open");
    let cutoff =
        churnclv::time::date_us(chrono::NaiveDate::from_ymd_opt(1997, 10, 1).expect("date"));
    let opts = ReadOptions {
        as_of_us: i64::MAX,
        ..ReadOptions::default()
    };
    let s = scan(
        &inputs,
        &opts,
        HistoryAcc::partitions(&[cutoff, i64::MAX], 3),
        HistoryAcc::update_batch,
    )
    .expect("scan");
    let set = Histories::from_parts(s.parts).features(0);
    let text = std::fs::read_to_string(root.join("cdnow_customers_summary.csv")).expect("csv");
    let zbars: std::collections::HashMap<u32, f64> =
        std::fs::read_to_string(root.join("cdnow_customers_summary_with_transactions.csv"))
            .expect("csv")
            .lines()
            .skip(1)
            .map(|l| {
                let v: Vec<&str> = l.trim().split(',').collect();
                (v[0].parse().expect("id"), v[4].parse().expect("zbar"))
            })
            .collect();
    let mut checked = 0;
    for line in text.lines().skip(1) {
        let v: Vec<&str> = line.trim().split(',').collect();
        let id: u32 = v[0].parse().expect("id");
        let (freq, rec, t): (f64, f64, f64) = (
            v[1].parse().expect("f"),
            v[2].parse().expect("r"),
            v[3].parse().expect("T"),
        );
        let i = set
            .customer_ids
            .iter()
            .position(|c| c.parse::<u32>().ok() == Some(id))
            .unwrap_or_else(|| panic!("customer {id} missing"));
        let f = &set.rows[i];
        assert_eq!(f.frequency as f64, freq, "customer {id}");
        assert!(
            (f.t_x_days / 7.0 - rec).abs() <= 0.005 + 1e-9,
            "customer {id}: t_x {}",
            f.t_x_days
        );
        assert!(
            (f.t_days / 7.0 - t).abs() <= 0.005 + 1e-9,
            "customer {id}: T {}",
            f.t_days
        );
        let zbar = zbars.get(&id).copied().expect("zbar row");
        match f.repeat_spend_mean {
            Some(m) => assert!(
                (m - zbar).abs() <= 0.005 + 1e-9,
                "customer {id}: zbar {m} vs {zbar}"
            ),
            None => assert_eq!(zbar, 0.0, "customer {id}"),
        }
        checked += 1;
    }
    assert_eq!(checked, 2357);
    assert_eq!(set.rows.len(), 2357);
}

fn arb_event() -> impl Strategy<Value = (u8, i64, u8, u16)> {
    (0u8..6, 0i64..(200 * 24), 0u8..14, 0u16..500)
}

const IDS: [&str; 6] = ["c0", "c1", "c2", "c3", "c4", "c5"];

fn to_event(&(c, hour, k, amount): &(u8, i64, u8, u16)) -> Event<'static> {
    Event {
        customer_id: IDS[c as usize],
        time_us: hour * HOUR,
        kind: EventKind::ALL[k as usize],
        amount: Some(f64::from(amount) / 4.0),
        channel: Some(u64::from(k % 3)),
        category: Some(u64::from(c)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        rng_seed: proptest::test_runner::RngSeed::Fixed(20261123),
        .. ProptestConfig::default()
    })]

    /// Adding any events at or after a cutoff changes no feature of any customer at it.
    #[test]
    fn no_leakage(base in prop::collection::vec(arb_event(), 1..80), late in prop::collection::vec(arb_event(), 1..40)) {
        let cutoff = 100 * DAY_US;
        let cutoffs = [cutoff, 400 * DAY_US];
        let before: Vec<Event<'static>> = base.iter().map(to_event).filter(|e| e.time_us < cutoff).collect();
        let mut all = before.clone();
        all.extend(late.iter().map(to_event).map(|mut e| { e.time_us += cutoff; e }));
        let a = histories_from_events(&cutoffs, &before).features(0);
        let b = histories_from_events(&cutoffs, &all).features(0);
        prop_assert_eq!(a.customer_ids, b.customer_ids);
        prop_assert_eq!(a.rows, b.rows);
    }
}

#[test]
fn same_result_for_one_and_many_threads() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("events.parquet");
    common::bin()
        .args([
            "generate",
            "--customers",
            "3000",
            "--seed",
            "5",
            "--days",
            "400",
            "--out",
        ])
        .arg(&path)
        .assert()
        .success();
    let inputs = open_inputs(&path.display().to_string(), &Columns::default()).expect("open");
    let cutoffs = [
        common::ts("2024-06-01", 0),
        common::ts("2024-09-01", 0),
        common::ts("2024-12-01", 0),
    ];
    let opts = ReadOptions {
        as_of_us: cutoffs[2],
        ..ReadOptions::default()
    };
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        pool.install(|| {
            let s = scan(
                &inputs,
                &opts,
                HistoryAcc::partitions(&cutoffs, 3),
                HistoryAcc::update_batch,
            )
            .expect("scan");
            let h = Histories::from_parts(s.parts);
            (0..3).map(|k| h.features(k)).collect::<Vec<_>>()
        })
    };
    let one = run(1);
    assert!(one[2].rows.len() > 2000);
    assert_eq!(one, run(4));
}
