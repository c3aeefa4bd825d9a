//! The real CDNOW cohort through the whole job (data/cdnow, copied from the shared reference
//! data; see data/README.md).

mod common;

use std::path::Path;

use common::bin;

fn data(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/cdnow")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn full_cohort_with_the_literature_split() {
    let dir = tempfile::tempdir().expect("tmp");
    bin()
        .args(["run", "--quiet", "--as-of", "1998-07-01", "--horizon", "273d", "--events"])
        .arg(data("cdnow_events.parquet"))
        .arg("--out")
        .arg(dir.path())
        .assert()
        .success();
    let part = dir.path().join("as_of=1998-07-01");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(part.join("metrics.json")).expect("metrics")).expect("json");
    assert_eq!(m["counts"]["rows_read"], 69_659);
    assert_eq!(m["counts"]["rows_rejected"], 0);
    assert_eq!(m["counts"]["customers_scored"], 23_570);
    // Everyone first bought in 1997-Q1, so nobody is in the population at t0 = 1997-01-01:
    // the evaluation falls back to a customer split of the calibration window.
    assert_eq!(m["evaluation"]["scheme"], "customer_split");
    assert_eq!(m["evaluation"]["eval_cutoff"], "1997-10-01");
    let churned = m["evaluation"]["eval_churn_rate"].as_f64().expect("rate");
    assert!((0.65..0.75).contains(&churned), "{churned}");
    // Published anchors for "buys again in the holdout": BG/NBD 0.763, logistic on RFM 0.769.
    let auc = m["churn"]["model"]["roc_auc"].as_f64().expect("auc");
    assert!(auc > 0.76, "churn ROC-AUC {auc}");
}

#[test]
fn sample_validates() {
    let assert = bin()
        .args(["validate", "--json", "--events"])
        .arg(data("cdnow_sample_events.parquet"))
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).expect("json");
    assert_eq!(v["rows_read"], 6_919);
    assert_eq!(v["rows_used"], 6_919);
    assert_eq!(v["customers"], 2_357);
    assert_eq!(v["first_event"], "1997-01-01T00:00:00Z");
    assert_eq!(v["last_event"], "1998-06-30T00:00:00Z");
    assert_eq!(v["event_types"]["purchase"], 6_919);
}
