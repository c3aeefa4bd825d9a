//! The churn challengers of a run (issue 14): the boosted model competes with the logistic
//! model on the validation window, every churn score is measured on the same out-of-time
//! customers, the champion scores, and `score` with the saved model reproduces the run's
//! probabilities and reasons exactly.

use crate::common;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, RecordBatch};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::OnceLock;

use common::bin;

fn json(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
}

/// (churn_probability bits, churn_reason_1..3) per row of a scores table.
fn churn_columns(batches: &[RecordBatch]) -> Vec<(Option<u64>, [Option<String>; 3])> {
    let mut out = Vec::new();
    for b in batches {
        let p = b
            .column_by_name("churn_probability")
            .expect("churn_probability")
            .as_primitive::<Float64Type>();
        let reason = |k: usize| {
            b.column_by_name(&format!("churn_reason_{k}"))
                .expect("reason")
                .as_string::<i32>()
                .clone()
        };
        let (r1, r2, r3) = (reason(1), reason(2), reason(3));
        for i in 0..b.num_rows() {
            let s = |a: &arrow_array::StringArray| a.is_valid(i).then(|| a.value(i).to_string());
            out.push((
                p.is_valid(i).then(|| p.value(i).to_bits()),
                [s(&r1), s(&r2), s(&r3)],
            ));
        }
    }
    out
}

/// One run on 8,000 generated customers (more than 5,000 validation customers) (two years: a validation window exists), shared by
/// the tests of this file.
struct Fixture {
    dir: tempfile::TempDir,
    events: PathBuf,
    out: PathBuf,
    as_of: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tmp");
        let events = common::generate(&dir.path().join("events.parquet"), 8000, 7);
        let out = dir.path().join("run");
        bin()
            .args(["run", "--quiet", "--events"])
            .arg(&events)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        let partition = common::partitions(&out, "scores")
            .pop()
            .expect("a scores partition");
        let as_of = partition.trim_start_matches("as_of=").to_string();
        Fixture {
            dir,
            events,
            out,
            as_of,
        }
    })
}

#[test]
fn boosted_champion_is_saved_readably_and_scored_exactly() {
    let f = fixture();
    let (events, out, as_of) = (&f.events, &f.out, &f.as_of);
    let dir = tempfile::tempdir_in(f.dir.path()).expect("tmp");
    let run = common::run_dir(out, as_of);
    let m = json(&run.join("metrics.json"));
    let churn = &m["churn"];

    // Every challenger measured on the same customers, with its interval to the logistic.
    let names: Vec<&str> = churn["challengers"]
        .as_array()
        .expect("challengers")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["logistic", "boosted", "btyd_buy_again"]);
    for c in churn["challengers"].as_array().expect("challengers") {
        for k in [
            "roc_auc",
            "pr_auc",
            "log_loss",
            "brier",
            "calibration_slope",
        ] {
            assert!(
                c[k].as_f64().is_some_and(f64::is_finite),
                "{} {k}",
                c["name"]
            );
        }
    }
    let logistic = &churn["challengers"][0];
    assert_eq!(logistic["roc_auc"], churn["model"]["roc_auc"]);
    assert_eq!(logistic["roc_auc_minus_logistic"], 0.0);
    let boosted = &churn["challengers"][1];
    let diff = boosted["roc_auc_minus_logistic"].as_f64().expect("diff");
    let ci = &boosted["roc_auc_minus_logistic_95"];
    let (lo, hi) = (ci[0].as_f64().expect("lo"), ci[1].as_f64().expect("hi"));
    assert!(lo <= diff && diff <= hi, "{lo} {diff} {hi}");
    // The champion is chosen on the validation window (tv → t0), never on the evaluation.
    assert_eq!(churn["booster"]["scheme"], "time_ordered");
    assert_eq!(churn["champion"]["chosen_by"], "validation_log_loss");
    let buy_again = &churn["challengers"][2];
    let (lv, bv, yv) = (
        logistic["validation_log_loss"]
            .as_f64()
            .expect("logistic validation"),
        boosted["validation_log_loss"]
            .as_f64()
            .expect("boosted validation"),
        buy_again["validation_log_loss"]
            .as_f64()
            .expect("buy-again validation"),
    );
    // The champion among three: the lowest validation log loss.
    assert!(buy_again.get("not_eligible").is_none());
    assert!(bv < lv && bv < yv, "{lv} {bv} {yv}");
    assert_eq!(
        churn["champion"]["name"], "boosted",
        "on this sample the booster wins"
    );

    // The ensemble in model.json, readable: nodes with feature, threshold, left, right.
    let model_path = run.join("model.json");
    let model = json(&model_path);
    assert_eq!(model["format_version"], 4);
    let trees = model["churn"]["boosted"]["ensemble"]["trees"]
        .as_array()
        .expect("trees");
    assert_eq!(
        trees.len() as u64,
        churn["booster"]["rounds"].as_u64().expect("rounds")
    );
    let root = &trees[0]["nodes"][0]["split"];
    for k in ["feature", "threshold", "left", "right", "cover"] {
        assert!(root[k].is_number(), "{k}: {root}");
    }

    // `score` with the saved model: the run's probabilities and reasons, bit for bit.
    let scored = dir.path().join("scored");
    bin()
        .args(["score", "--quiet", "--as-of", as_of, "--events"])
        .arg(events)
        .arg("--model")
        .arg(&model_path)
        .arg("--out")
        .arg(&scored)
        .assert()
        .success();
    let ran = churn_columns(&common::read_batches(&common::table_file(
        &out, "scores", &as_of,
    )));
    let again = churn_columns(&common::read_batches(&common::table_file(
        &scored, "scores", &as_of,
    )));
    assert_eq!(ran.len(), again.len());
    assert!(ran.iter().filter(|r| r.0.is_some()).count() > 1000);
    assert!(ran.iter().any(|r| r.1[0].is_some()), "reasons written");
    assert_eq!(ran, again);
}

#[test]
fn an_edited_ensemble_is_refused_with_its_path() {
    let f = fixture();
    let (events, as_of) = (&f.events, &f.as_of);
    let dir = tempfile::tempdir_in(f.dir.path()).expect("tmp");
    let mut model = json(&common::run_dir(&f.out, as_of).join("model.json"));
    // A child pointing back at its parent would loop forever: refused before scoring.
    model["churn"]["boosted"]["ensemble"]["trees"][0]["nodes"][0]["split"]["left"] =
        serde_json::json!(0);
    let path = dir.path().join("model.json");
    std::fs::write(&path, serde_json::to_string(&model).expect("json")).expect("write");
    let scored = dir.path().join("scored");
    let assert = bin()
        .args(["score", "--quiet", "--as-of", as_of, "--events"])
        .arg(events)
        .arg("--model")
        .arg(&path)
        .arg("--out")
        .arg(&scored)
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    let want = format!(
        "churnclv: error: {}: invalid model: churn.boosted.ensemble.trees[0].nodes[0].left: must be a later node of the tree",
        path.display()
    );
    assert!(stderr.starts_with(&want), "want {want}\ngot  {stderr}");
    assert!(!common::published_any(&scored));
}
