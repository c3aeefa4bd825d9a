//! On generated data the churn model comes within 0.05 ROC-AUC of an oracle that knows every
//! customer's true purchase rate and death time (from the ground-truth sidecar).

use crate::common;

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType};
use churnclv::config::Columns;
use churnclv::evaluate::roc_auc;
use churnclv::features::{Histories, HistoryAcc};
use churnclv::io::{open_inputs, scan, ReadOptions};
use churnclv::labels::labels;
use churnclv::time::DAY_US;
use common::ts;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

#[test]
fn churn_auc_is_within_005_of_the_oracle() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = common::generate(&dir.path().join("events.parquet"), 20_000, 42);
    let out = dir.path().join("out");
    common::run_90d(&events, &out, "2025-12-31", &[]);
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(common::run_dir(&out, "2025-12-31").join("metrics.json")).expect("metrics"),
    )
    .expect("json");
    assert_eq!(m["evaluation"]["scheme"], "out_of_time");
    assert_eq!(m["evaluation"]["eval_cutoff"], "2025-10-02");
    let model_auc = m["churn"]["model"]["roc_auc"].as_f64().expect("auc");

    // The evaluation population and labels, rebuilt here: buyers before t1, churned = no
    // purchase in [t1, as_of).
    let (t1, as_of) = (ts("2025-10-02", 0), ts("2025-12-31", 0));
    let inputs = open_inputs(&events.display().to_string(), &Columns::default()).expect("open");
    let opts = ReadOptions {
        as_of_us: as_of,
        ..ReadOptions::default()
    };
    let s = scan(
        &inputs,
        &opts,
        HistoryAcc::partitions(&[t1, as_of], 3),
        HistoryAcc::update_batch,
    )
    .expect("scan");
    let h = Histories::from_parts(s.parts);
    let set = h.features(0).purchasers();
    let l = labels(&h, &set, 0);
    assert_eq!(
        m["evaluation"]["eval_customers"].as_u64(),
        Some(set.rows.len() as u64)
    );

    // Oracle P(no purchase in [t1, t1 + H)): 1 if dead before t1, else exp(−λ · time alive in
    // the window).
    let f = std::fs::File::open(dir.path().join("events.truth.parquet")).expect("truth");
    let mut truth: HashMap<String, (f64, i64)> = HashMap::new();
    for b in ParquetRecordBatchReaderBuilder::try_new(f)
        .expect("pq")
        .build()
        .expect("reader")
    {
        let b = b.expect("batch");
        let id = b.column(0).as_string::<i32>();
        let lambda = b.column(2).as_primitive::<Float64Type>();
        let death = b.column(4).as_primitive::<TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            truth.insert(id.value(i).to_string(), (lambda.value(i), death.value(i)));
        }
    }
    let h_days = 90.0;
    let oracle: Vec<f64> = set
        .customer_ids
        .iter()
        .map(|id| {
            let (lambda, death) = truth[id.as_ref()];
            let alive_days = ((death - t1) as f64 / DAY_US as f64).clamp(0.0, h_days);
            if death < t1 {
                1.0
            } else {
                (-lambda * alive_days).exp()
            }
        })
        .collect();
    let oracle_auc = roc_auc(&oracle, &l.churned).expect("two classes");
    assert!(oracle_auc > 0.9, "oracle {oracle_auc}");
    assert!(
        model_auc >= oracle_auc - 0.05,
        "model ROC-AUC {model_auc:.4} vs oracle {oracle_auc:.4}"
    );
}
