//! Engagement tiers on generated data with a known ground truth.

use crate::common;

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType};
use arrow_array::Array;

use crate::common::read_batches as read;

#[test]
fn dead_customers_are_won_back_not_rewarded_and_vips_are_the_top_clv() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = common::generate(&dir.path().join("events.parquet"), 5000, 3);
    // The stages in this process: the tiers are the point, not the command line.
    let scores = [common::in_process(&events, "2025-12-31", "90d")
        .scored
        .table];
    let truth = read(&dir.path().join("events.truth.parquet"));

    let as_of = common::ts("2025-12-31", 0);
    let mut dead: HashMap<String, bool> = HashMap::new();
    for b in &truth {
        let ids = b.column(0).as_string::<i32>();
        let death = b.column(4).as_primitive::<TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            dead.insert(ids.value(i).to_string(), death.value(i) < as_of);
        }
    }
    let (mut dead_rescue, mut dead_loyalty, mut n_dead) = (0usize, 0usize, 0usize);
    let mut clv_vip: Vec<(f64, bool)> = Vec::new();
    for b in &scores {
        let s = b.schema();
        let col = |n: &str| b.column(s.index_of(n).expect("column"));
        let ids = col("customer_id").as_string::<i32>();
        let tier = col("engagement_tier").as_string::<i32>();
        let clv = col("clv").as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            if dead.get(ids.value(i)).copied().unwrap_or(false) {
                n_dead += 1;
                match tier.value(i) {
                    "win_back" | "proactive_retention" => dead_rescue += 1,
                    "loyalty" => dead_loyalty += 1,
                    _ => {}
                }
            }
            if !clv.is_null(i) {
                clv_vip.push((clv.value(i), tier.value(i) == "vip"));
            }
        }
    }
    assert!(n_dead > 1000, "{n_dead} dead customers");
    assert!(
        dead_rescue > 10 * dead_loyalty.max(1),
        "dead customers: {dead_rescue} in win_back/proactive_retention, {dead_loyalty} in loyalty"
    );
    clv_vip.sort_by(|a, b| b.0.total_cmp(&a.0));
    let n_vip = clv_vip.iter().filter(|c| c.1).count();
    assert_eq!(n_vip, (0.05 * clv_vip.len() as f64).round() as usize);
    assert!(
        clv_vip[..n_vip].iter().all(|c| c.1),
        "the VIPs are exactly the top 5% by CLV"
    );
}
