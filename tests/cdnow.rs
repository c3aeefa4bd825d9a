//! The real CDNOW cohort through the job's stages and the diagnostic subcommands (data/cdnow,
//! copied from the shared reference data; see data/README.md).

use crate::common;

use std::path::Path;

use common::bin;

fn data(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/cdnow")
        .join(name)
        .display()
        .to_string()
}

/// The job's stages called directly (no subprocess, nothing published: the numbers are the
/// point).
#[test]
fn full_cohort_with_the_literature_split() {
    let job = common::in_process(
        Path::new(&data("cdnow_events.parquet")),
        "1998-07-01",
        "273d",
    );
    assert_eq!(job.stats.rows_read, 69_659);
    assert_eq!(job.stats.rows_rejected, 0);
    assert_eq!(job.customers, 23_570);
    let m = serde_json::to_value(job.trained.metrics("cdnow", None)).expect("metrics");
    // Everyone first bought in 1997-Q1, so nobody is in the population at t0 = 1997-01-01:
    // the evaluation falls back to a customer split of the calibration window.
    assert_eq!(m["evaluation"]["scheme"], "customer_split");
    assert_eq!(m["evaluation"]["eval_cutoff"], "1997-10-01");
    let churned = m["evaluation"]["eval_churn_rate"].as_f64().expect("rate");
    assert!((0.65..0.75).contains(&churned), "{churned}");
    // Published anchors for "buys again in the holdout": BG/NBD 0.763, logistic on RFM 0.769.
    let auc = m["churn"]["model"]["roc_auc"].as_f64().expect("auc");
    assert!(auc > 0.76, "churn ROC-AUC {auc}");

    // BG/NBD calibrated before 1997-10-01 on all 23,570 customers, holdout of 273 days: the
    // literature's set-up (lifetimes: r 0.2516, α 33.52, a 0.7234, b 2.1611; 16,874 purchase
    // days predicted against 19,684, MAE 0.819, buy-again ROC-AUC 0.763).
    let b = &m["value"]["btyd"];
    let f = |k: &str| b[k].as_f64().unwrap_or(f64::NAN);
    assert_eq!(b["customers"], 23_570);
    assert_eq!(b["actual_total_purchases"], 19_684);
    assert!(
        (f("predicted_total_purchases") / 16_874.0 - 1.0).abs() < 0.01,
        "{}",
        f("predicted_total_purchases")
    );
    assert!(
        (f("holdout_purchases_mae") / 0.819 - 1.0).abs() < 0.01,
        "{}",
        f("holdout_purchases_mae")
    );
    // Every churn score is compared on the same customers: under the customer split, the
    // buy-again ranking on the 20% held out for the churn model (on all 23,570 it is the
    // published 0.763; on these 4,665 it is 0.767).
    let held_out = m["evaluation"]["eval_customers"]
        .as_u64()
        .expect("eval customers");
    assert_eq!(held_out, 4_665);
    // No validation window (nobody bought before t0): no challenger can be judged, the
    // logistic model scores, and the buy-again score says why it did not compete.
    assert_eq!(
        m["churn"]["champion"],
        serde_json::json!({"name": "logistic", "chosen_by": "logistic_by_default"})
    );
    let buy_again = &m["churn"]["challengers"][2];
    assert_eq!(buy_again["name"], "btyd_buy_again");
    assert_eq!(buy_again["not_eligible"], "no validation-window BTYD fit");
    assert!(buy_again["validation_log_loss"].is_null());
    assert_eq!(b["compared_customers"], held_out);
    assert!(
        (f("buy_again_roc_auc") - 0.7666).abs() < 0.0005,
        "{}",
        f("buy_again_roc_auc")
    );
    for (k, v) in [
        ("r", 0.2516),
        ("alpha", 33.52),
        ("a", 0.7234),
        ("b", 2.1611),
    ] {
        let got = b["params"][k].as_f64().unwrap_or(f64::NAN);
        assert!((got / v - 1.0).abs() < 0.005, "{k} {got}");
    }
}

#[test]
fn btyd_subcommand_reproduces_the_published_sample_fits() {
    let fit = |model: &str| -> serde_json::Value {
        let out = bin()
            .args([
                "btyd",
                "--cutoff",
                "1997-10-01",
                "--time-unit",
                "week",
                "--model",
                model,
                "--events",
            ])
            .arg(data("cdnow_sample_events.parquet"))
            .assert()
            .success();
        serde_json::from_slice(&out.get_output().stdout).expect("json")
    };
    let close = |v: &serde_json::Value, k: &str, want: f64, tol: f64| {
        let got = v["params"][k].as_f64().unwrap_or(f64::NAN);
        assert!(
            (got / want - 1.0).abs() < tol,
            "{} {k}: {got} vs {want}",
            v["model"]
        );
    };
    let bg = fit("bgnbd");
    assert_eq!(bg["customers"], 2_357);
    for (k, want) in [
        ("r", 0.24259),
        ("alpha", 4.41353),
        ("a", 0.79289),
        ("b", 2.42575),
    ] {
        close(&bg, k, want, 0.005);
    }
    assert!((bg["log_likelihood"].as_f64().unwrap_or(0.0) + 9582.43).abs() < 0.05);
    let pn = fit("pnbd");
    assert!((pn["log_likelihood"].as_f64().unwrap_or(0.0) + 9594.97).abs() < 0.05);
    let gg = fit("gg");
    assert_eq!(gg["customers"], 946);
    for (k, want) in [("p", 6.2488), ("q", 3.7446), ("gamma", 15.4478)] {
        close(&gg, k, want, 0.005);
    }
    assert!((gg["log_likelihood"].as_f64().unwrap_or(0.0) + 4055.92).abs() < 0.05);
    for key in ["std_errors", "iterations", "fit_seconds"] {
        assert!(!bg[key].is_null(), "{key}");
    }
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
