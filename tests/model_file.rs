//! `score` trusts no model file: each field of a real `model.json` (from a run on a small
//! generated history) is edited out of its domain, and `score` must exit 2 with one stderr line
//! naming the file and the field's JSON path, publish nothing, and leave an existing partition
//! for the same date untouched. Features are matched by name: a model listing them in another
//! order scores exactly the same.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{bin, snapshot};
use serde_json::{json, Value};

/// A run's model and what scoring with it unchanged publishes.
struct Fixture {
    /// Kept for the whole test binary (statics are never dropped), in target/tmp.
    _dir: tempfile::TempDir,
    events: PathBuf,
    model: Value,
    as_of: String,
    /// scores.parquet of `score` with the unedited model.
    scores: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tmp");
        let events = common::generate(&dir.path().join("events.parquet"), 300, 5);
        let out = dir.path().join("run");
        bin()
            .args(["run", "--quiet", "--events"])
            .arg(&events)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        let model_path = std::fs::read_dir(out.join("runs"))
            .expect("run output")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("model.json"))
            .find(|p| p.exists())
            .expect("model.json");
        let model: Value =
            serde_json::from_slice(&std::fs::read(&model_path).expect("read")).expect("json");
        // Every case below edits a field the run really wrote.
        assert!(model["value"]["spend"].is_object(), "Gamma-Gamma fitted");
        assert_eq!(model["value"]["transactions"]["kind"], "BgNbd");
        assert_eq!(
            model["churn"]["features"].as_array().map(Vec::len),
            Some(17)
        );
        let as_of = model["scores_as_of"].as_str().expect("as of").to_string();
        let scored = dir.path().join("scored");
        score(&events, &model_path, &scored, &as_of).success();
        let scores = std::fs::read(common::table_file(&scored, "scores", &as_of))
            .expect("scores of the unedited model");
        Fixture {
            _dir: dir,
            events,
            model,
            as_of,
            scores,
        }
    })
}

fn score(events: &Path, model: &Path, out: &Path, as_of: &str) -> assert_cmd::assert::Assert {
    bin()
        .args(["score", "--quiet", "--as-of", as_of, "--events"])
        .arg(events)
        .arg("--model")
        .arg(model)
        .arg("--out")
        .arg(out)
        .assert()
}

/// A number no real model holds, replaced in the JSON text by `token` (JSON values cannot be
/// NaN or infinite; hand-edited or Python-written files can contain such tokens).
const MARK: f64 = 123456.25;

/// Scores with the model after `edit` (and the text replacement of [`MARK`] by `token`), into
/// an output folder already holding a partition for the same date. Asserts exit 2, that stderr
/// is the one line `churnclv: error: {model}: {message}…`, and that the output folder is
/// exactly as before.
fn refused(edit: impl FnOnce(&mut Value), token: Option<&str>, message: &str) {
    let f = fixture();
    let dir = tempfile::tempdir().expect("tmp");
    let mut model = f.model.clone();
    edit(&mut model);
    let mut text = serde_json::to_string_pretty(&model).expect("json");
    if let Some(token) = token {
        assert!(text.contains("123456.25"), "the edit placed the mark");
        text = text.replace("123456.25", token);
    }
    let path = dir.path().join("model.json");
    std::fs::write(&path, text).expect("write model");
    let out = dir.path().join("out");
    let existing = common::table(&out, "scores", &f.as_of);
    std::fs::create_dir_all(&existing).expect("existing partition");
    std::fs::write(existing.join("scores.parquet"), b"yesterday's scores").expect("write");
    let run = common::run_dir(&out, &f.as_of);
    std::fs::create_dir_all(&run).expect("existing run");
    std::fs::write(run.join("_SUCCESS"), b"").expect("write");
    let before = snapshot(&out);

    let assert = score(&f.events, &path, &out, &f.as_of).code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    let want = format!("churnclv: error: {}: {message}", path.display());
    assert!(stderr.starts_with(&want), "want {want}\ngot  {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(snapshot(&out), before, "the output folder changed");
}

/// [`refused`] for a field: `invalid model: {field}: {problem}…`.
fn invalid(edit: impl FnOnce(&mut Value), field: &str, problem: &str) {
    refused(edit, None, &format!("invalid model: {field}: {problem}"));
}

fn churn_feature(m: &mut Value, i: usize) -> &mut Value {
    &mut m["churn"]["features"][i]
}

// ---- header -------------------------------------------------------------------------------

#[test]
fn format_version_missing() {
    refused(
        |m| {
            m.as_object_mut().map(|o| o.remove("format_version"));
        },
        None,
        "not a churnclv model file: missing field `format_version` (this build reads model files of format_version 4, written by `churnclv run` ",
    );
}

#[test]
fn format_version_newer() {
    invalid(
        |m| m["format_version"] = json!(5),
        "format_version",
        "this build reads model files of format_version 4 only; rerun `churnclv run` with this build to write one (got 5)",
    );
}

#[test]
fn format_version_not_a_number() {
    invalid(
        |m| m["format_version"] = json!("1"),
        "format_version",
        "this build reads model files of format_version 4 only; rerun `churnclv run` with this build to write one (got \"1\")",
    );
}

#[test]
fn crate_version_of_another_minor_release() {
    let v = semver::Version::parse(env!("CARGO_PKG_VERSION")).expect("own version");
    let other = format!("{}.{}.0", v.major, v.minor + 1);
    invalid(
        |m| m["crate_version"] = json!(other),
        "crate_version",
        &format!(
            "must be a churnclv version this build ({v}) reads: {}.{}.x (got \"{other}\")",
            v.major, v.minor
        ),
    );
}

#[test]
fn crate_version_not_a_version() {
    invalid(
        |m| m["crate_version"] = json!("latest"),
        "crate_version",
        "must be a churnclv version this build",
    );
}

#[test]
fn run_id_leaving_the_output_folder() {
    invalid(
        |m| m["run_id"] = json!("../../elsewhere"),
        "run_id",
        "must be 1 to 64 letters, digits, '-', '_' or '.', not starting with '.' (got \"../../elsewhere\")",
    );
}

#[test]
fn unknown_top_level_field() {
    invalid(
        |m| m["horizon"] = json!(30),
        "horizon",
        "unknown field `horizon`, expected one of",
    );
}

#[test]
fn not_json() {
    let f = fixture();
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("model.json");
    std::fs::write(&path, "model").expect("write");
    let out = dir.path().join("out");
    let assert = score(&f.events, &path, &out, &f.as_of).code(2);
    assert_eq!(
        String::from_utf8_lossy(&assert.get_output().stderr),
        format!(
            "churnclv: error: {}: not a churnclv model file: expected value at line 1 column 1\n",
            path.display()
        )
    );
    assert!(!out.exists());
}

// ---- horizon and windows ------------------------------------------------------------------

#[test]
fn horizon_zero() {
    invalid(
        |m| m["horizon_days"] = json!(0),
        "horizon_days",
        "must be 1 to 3650 days, as --horizon (got 0)",
    );
}

#[test]
fn horizon_beyond_ten_years() {
    invalid(
        |m| m["horizon_days"] = json!(3651),
        "horizon_days",
        "must be 1 to 3650 days, as --horizon (got 3651)",
    );
}

#[test]
fn horizon_other_than_the_label_window() {
    invalid(
        |m| m["horizon_days"] = json!(30),
        "horizon_days",
        "must equal the churn label window trained_on.labels_from ",
    );
}

#[test]
fn training_features_after_the_labels() {
    invalid(
        |m| m["trained_on"]["features_before"] = m["trained_on"]["labels_until"].clone(),
        "trained_on.features_before",
        "must be on or before trained_on.labels_from ",
    );
}

#[test]
fn label_window_empty() {
    invalid(
        |m| m["trained_on"]["labels_until"] = m["trained_on"]["labels_from"].clone(),
        "trained_on.labels_until",
        "must be after trained_on.labels_from ",
    );
}

#[test]
fn scores_as_of_before_the_label_window_ends() {
    invalid(
        |m| m["scores_as_of"] = m["trained_on"]["labels_from"].clone(),
        "scores_as_of",
        "must be on or after trained_on.labels_until ",
    );
}

#[test]
fn window_date_not_a_date() {
    invalid(
        |m| m["trained_on"]["labels_from"] = json!("2025-02-30"),
        "trained_on.labels_from",
        "input is out of range",
    );
}

// ---- churn model --------------------------------------------------------------------------

#[test]
fn transform_unknown() {
    invalid(
        |m| churn_feature(m, 3)["transform"] = json!("log"),
        "churn.features[3].transform",
        "unknown variant `log`, expected `signed_log1p`",
    );
}

#[test]
fn feature_name_unknown() {
    invalid(
        |m| churn_feature(m, 2)["name"] = json!("lifetime_value"),
        "churn.features[2].name",
        "must be a feature this build computes (recency_days, frequency, ",
    );
}

#[test]
fn feature_listed_twice() {
    invalid(
        |m| churn_feature(m, 5)["name"] = json!("frequency"),
        "churn.features[5].name",
        "must be listed once (also features[1].name) (got \"frequency\")",
    );
}

#[test]
fn feature_missing() {
    invalid(
        |m| {
            m["churn"]["features"].as_array_mut().map(|a| a.pop());
            m["churn"]["coefficients"].as_array_mut().map(|a| a.pop());
        },
        "churn.features",
        "must list all 17 features this build computes; \"refund_ratio\" is missing (got 16 features)",
    );
}

#[test]
fn feature_mean_nan() {
    refused(
        |m| churn_feature(m, 0)["mean"] = json!(MARK),
        Some("NaN"),
        "invalid model: churn.features[0].mean: expected value at line ",
    );
}

#[test]
fn feature_std_zero() {
    invalid(
        |m| churn_feature(m, 3)["std"] = json!(0.0),
        "churn.features[3].std",
        "must be finite and >= 1e-12 (a fit gives a constant feature std 1) (got 0)",
    );
}

#[test]
fn feature_std_negative() {
    invalid(
        |m| churn_feature(m, 7)["std"] = json!(-1.5),
        "churn.features[7].std",
        "must be finite and >= 1e-12 (a fit gives a constant feature std 1) (got -1.5)",
    );
}

#[test]
fn feature_std_below_what_a_fit_keeps() {
    invalid(
        |m| churn_feature(m, 0)["std"] = json!(1e-300),
        "churn.features[0].std",
        "must be finite and >= 1e-12 (a fit gives a constant feature std 1) (got 0.00000",
    );
}

#[test]
fn coefficient_infinite() {
    refused(
        |m| m["churn"]["coefficients"][4] = json!(MARK),
        Some("Infinity"),
        "invalid model: churn.coefficients[4]: expected value at line ",
    );
}

#[test]
fn coefficient_count_differs_from_features() {
    invalid(
        |m| {
            m["churn"]["coefficients"].as_array_mut().map(|a| a.pop());
        },
        "churn.coefficients",
        "must hold one value per feature (17) (got 16 values)",
    );
}

#[test]
fn intercept_null() {
    invalid(
        |m| m["churn"]["intercept"] = Value::Null,
        "churn.intercept",
        "invalid type: null, expected f64",
    );
}

// ---- value model --------------------------------------------------------------------------

#[test]
fn btyd_r_zero() {
    invalid(
        |m| m["value"]["transactions"]["params"]["r"] = json!(0.0),
        "value.transactions.params.r",
        "must be finite and > 0 (got 0)",
    );
}

#[test]
fn btyd_alpha_negative() {
    invalid(
        |m| m["value"]["transactions"]["params"]["alpha"] = json!(-2.0),
        "value.transactions.params.alpha",
        "must be finite and > 0 (got -2)",
    );
}

#[test]
fn btyd_b_huge_number() {
    refused(
        |m| m["value"]["transactions"]["params"]["b"] = json!(MARK),
        Some("1e999"),
        "invalid model: value.transactions.params.b: number out of range at line ",
    );
}

#[test]
fn btyd_parameters_of_another_model() {
    invalid(
        |m| m["value"]["transactions"]["kind"] = json!("ParetoNbd"),
        "value.transactions.params",
        "invalid parameters: Pareto/NBD needs parameters named r, alpha, s, beta (got r, alpha, a, b)",
    );
}

#[test]
fn btyd_kind_unknown() {
    invalid(
        |m| m["value"]["transactions"]["kind"] = json!("bgnbd"),
        "value.transactions.kind",
        "unknown variant `bgnbd`, expected one of `BgNbd`, `MbgNbd`, `ParetoNbd`",
    );
}

#[test]
fn spend_p_negative() {
    invalid(
        |m| m["value"]["spend"]["p"] = json!(-1.0),
        "value.spend.p",
        "must be finite and > 0 (got -1)",
    );
}

#[test]
fn spend_q_without_a_finite_mean() {
    invalid(
        |m| m["value"]["spend"]["q"] = json!(0.9),
        "value.spend.q",
        "must be > 1 (with q <= 1 the mean order value is infinite) (got 0.9)",
    );
}

#[test]
fn spend_gamma_zero() {
    invalid(
        |m| m["value"]["spend"]["gamma"] = json!(0.0),
        "value.spend.gamma",
        "must be finite and > 0 (got 0)",
    );
}

#[test]
fn spend_missing() {
    invalid(
        |m| {
            m["value"].as_object_mut().map(|o| o.remove("spend"));
        },
        "value",
        "missing field `spend`",
    );
}

#[test]
fn spend_misspelt() {
    invalid(
        |m| {
            let o = m["value"].as_object_mut().expect("value");
            let spend = o.remove("spend").expect("spend");
            o.insert("spnd".into(), spend);
        },
        "value.spnd",
        "unknown field `spnd`, expected one of",
    );
}

#[test]
fn monthly_discount_negative() {
    invalid(
        |m| m["value"]["monthly_discount"] = json!(-0.99),
        "value.monthly_discount",
        "must be in [0, 1) like btyd.monthly_discount (got -0.99)",
    );
}

#[test]
fn monthly_discount_one() {
    invalid(
        |m| m["value"]["monthly_discount"] = json!(1.0),
        "value.monthly_discount",
        "must be in [0, 1) like btyd.monthly_discount (got 1)",
    );
}

#[test]
fn days_per_month_zero() {
    invalid(
        |m| m["value"]["days_per_month"] = json!(0.0),
        "value.days_per_month",
        "must be in [1, 366] like btyd.days_per_month (got 0)",
    );
}

#[test]
fn days_per_month_beyond_a_year() {
    invalid(
        |m| m["value"]["days_per_month"] = json!(400.0),
        "value.days_per_month",
        "must be in [1, 366] like btyd.days_per_month (got 400)",
    );
}

// ---- what passes every check but cannot give scores --------------------------------------

#[test]
fn extreme_coefficients_give_no_nan_scores() {
    refused(
        |m| m["churn"]["coefficients"] = json!(vec![1e308; 17]),
        None,
        "the model gives unusable scores: customer \"",
    );
}

// ---- features by name ---------------------------------------------------------------------

/// The features (with their coefficients) listed in another order score exactly the same:
/// byte-identical scores.parquet, and the published model lists them in this build's order.
#[test]
fn reordered_features_score_identically() {
    let f = fixture();
    let dir = tempfile::tempdir().expect("tmp");
    let mut model = f.model.clone();
    let features = model["churn"]["features"]
        .as_array()
        .expect("features")
        .clone();
    let coefficients = model["churn"]["coefficients"]
        .as_array()
        .expect("coefficients")
        .clone();
    // A fixed shuffle: 7 is coprime with 17, so i -> 7i mod 17 is a permutation.
    let order: Vec<usize> = (0..17).map(|i| (7 * i + 3) % 17).collect();
    model["churn"]["features"] = Value::Array(order.iter().map(|&i| features[i].clone()).collect());
    model["churn"]["coefficients"] =
        Value::Array(order.iter().map(|&i| coefficients[i].clone()).collect());
    assert_ne!(model["churn"]["features"][0], features[0]);
    let path = dir.path().join("model.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&model).expect("json")).expect("write");
    let out = dir.path().join("out");
    score(&f.events, &path, &out, &f.as_of).success();
    let part = common::run_dir(&out, &f.as_of);
    assert!(
        std::fs::read(common::table_file(&out, "scores", &f.as_of)).expect("scores") == f.scores,
        "scores differ from the model in its original order"
    );
    let published: Value =
        serde_json::from_slice(&std::fs::read(part.join("model.json")).expect("model"))
            .expect("json");
    assert_eq!(published["churn"], f.model["churn"]);
}

/// Scoring a date before the model's label window ends is allowed (re-scoring the past with
/// tonight's model) but warned: those scores are not out of time. Scoring on the model's own
/// as-of warns nothing.
#[test]
fn scoring_before_the_models_labels_end_is_warned() {
    let f = fixture();
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("model.json");
    std::fs::write(&path, serde_json::to_string(&f.model).expect("json")).expect("write");
    let until = f.model["trained_on"]["labels_until"]
        .as_str()
        .expect("labels_until");
    assert_eq!(until, f.as_of);
    let earlier = chrono::NaiveDate::parse_from_str(&f.as_of, "%Y-%m-%d").expect("date")
        - chrono::Duration::days(30);
    let assert = score(
        &f.events,
        &path,
        &dir.path().join("past"),
        &earlier.to_string(),
    )
    .success();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    let warned: Vec<&str> = stderr.lines().filter(|l| l.contains(" WARN ")).collect();
    assert_eq!(warned.len(), 1, "{stderr}");
    assert!(
        warned[0].ends_with(&format!(
            "WARN scoring as of {earlier} with a model trained on labels until {until}: these scores are not out of time (a backtest needs a model whose labels end on or before {earlier}) stage=\"score\""
        )),
        "{stderr}"
    );
    let assert = score(&f.events, &path, &dir.path().join("now"), &f.as_of).success();
    assert_eq!(String::from_utf8_lossy(&assert.get_output().stderr), "");
}
