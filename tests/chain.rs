//! `run` is exactly the chain of its stages: `features` at the four cutoffs (three labelled),
//! `train` from those files alone, `score --features` give `run`'s scores value for value; and
//! a feature table written by something else, with the documented schema, is accepted, while
//! a missing, mistyped or null column is exit 2 naming it.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, BooleanArray, Float32Array, Int32Array, RecordBatch};
use arrow_array::{Float64Array, Int64Array, StringArray};
use arrow_schema::{DataType, Field};
use chrono::NaiveDate;
use churnclv::features::table::{Expect, FeatureTable};
use common::bin;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const AS_OF: &str = "2025-12-01";

/// 3,000 generated customers over two years.
fn events(dir: &Path) -> PathBuf {
    let path = dir.join("events.parquet");
    bin()
        .args(["--quiet", "generate", "--customers", "3000", "--seed", "11"])
        .args(["--start", "2024-01-01", "--days", "730", "--out"])
        .arg(&path)
        .assert()
        .success();
    path
}

fn read(path: &Path) -> RecordBatch {
    let f = std::fs::File::open(path).expect("open");
    let b = ParquetRecordBatchReaderBuilder::try_new(f).expect("parquet");
    let schema = b.schema().clone();
    let batches: Vec<RecordBatch> = b
        .build()
        .expect("reader")
        .collect::<Result<_, _>>()
        .expect("read");
    arrow_select::concat::concat_batches(&schema, &batches).expect("concat")
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
}

fn date(days_before: i64) -> String {
    let d = NaiveDate::parse_from_str(AS_OF, "%Y-%m-%d").expect("date");
    (d - chrono::Duration::days(days_before)).to_string()
}

fn features(events: &Path, as_of: &str, label: bool, out: &Path) {
    let mut cmd = bin();
    cmd.args(["--quiet", "features", "--events"])
        .arg(events)
        .args(["--as-of", as_of, "--out"])
        .arg(out);
    if label {
        cmd.args(["--label-horizon", "90d"]);
    }
    cmd.assert().success();
}

/// `run --as-of AS_OF` on `events` into `out`; returns `out`.
fn run(events: &Path, out: &Path) -> PathBuf {
    bin()
        .args(["--quiet", "run", "--as-of", AS_OF, "--events"])
        .arg(events)
        .arg("--out")
        .arg(out)
        .assert()
        .success();
    out.to_path_buf()
}

/// Strings of a column.
fn strings(batch: &RecordBatch, name: &str) -> Vec<String> {
    let col = batch.column_by_name(name).expect(name);
    col.as_string::<i32>()
        .iter()
        .map(|s| s.unwrap_or_default().to_string())
        .collect()
}

#[test]
fn the_stages_run_apart_from_files_give_the_run_scores() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = events(dir.path());
    let out = run(&events, &dir.path().join("out"));
    let run_dir = common::run_dir(&out, AS_OF);

    // The chain: four tables, train from them alone, score the as-of table.
    let t = |name: &str| dir.path().join(format!("{name}.parquet"));
    features(&events, &date(270), true, &t("tv"));
    features(&events, &date(180), true, &t("t0"));
    features(&events, &date(90), true, &t("t1"));
    features(&events, AS_OF, false, &t("asof"));
    let model_dir = dir.path().join("model");
    bin()
        .args(["--quiet", "train", "--tune"])
        .arg(t("tv"))
        .arg("--train")
        .arg(t("t0"))
        .arg("--validate")
        .arg(t("t1"))
        .arg("--latest")
        .arg(t("asof"))
        .arg("--out")
        .arg(&model_dir)
        .assert()
        .success();
    let scored = dir.path().join("scored");
    bin()
        .args(["--quiet", "score", "--model"])
        .arg(model_dir.join("model.json"))
        .arg("--features")
        .arg(t("asof"))
        .arg("--out")
        .arg(&scored)
        .assert()
        .success();

    // Every column but the two that name the runs, value for value.
    let ran = read(&common::table_file(&out, "scores", AS_OF));
    let chained = read(&common::table_file(&scored, "scores", AS_OF));
    assert_eq!(ran.schema(), chained.schema());
    assert_eq!(ran.num_rows(), chained.num_rows());
    assert!(ran.num_rows() > 2000, "{} rows", ran.num_rows());
    for (i, field) in ran.schema().fields().iter().enumerate() {
        if ["run_id", "model_version"].contains(&field.name().as_str()) {
            continue;
        }
        assert_eq!(
            ran.column(i).to_data(),
            chained.column(i).to_data(),
            "column {}",
            field.name()
        );
    }
    // Those two in their documented forms: the run's id, and `score`'s id naming the model's.
    let model = json(&model_dir.join("model.json"));
    let train_id = model["run_id"].as_str().expect("run_id").to_string();
    let run_id = strings(&ran, "run_id")[0].clone();
    let re_id = |s: &str| {
        s.len() == 21 && s.starts_with("20251201-") && s[9..].chars().all(|c| c.is_ascii_hexdigit())
    };
    assert!(re_id(&run_id) && re_id(&train_id), "{run_id} {train_id}");
    assert!(strings(&chained, "run_id")
        .iter()
        .all(|s| *s == format!("20251201-score-{train_id}")));
    let version = env!("CARGO_PKG_VERSION");
    assert!(strings(&ran, "model_version")
        .iter()
        .all(|s| *s == format!("churnclv-{version}+{run_id}")));
    assert!(strings(&chained, "model_version")
        .iter()
        .all(|s| *s == format!("churnclv-{version}+{train_id}")));

    // The fitted models and the training metrics are the run's; the as-of table is the run's
    // features.parquet byte for byte.
    let run_model = json(&run_dir.join("model.json"));
    for key in [
        "churn",
        "value",
        "value_spend",
        "trained_on",
        "horizon_days",
        "scores_as_of",
    ] {
        assert_eq!(model[key], run_model[key], "model.json {key}");
    }
    let (m, rm) = (
        json(&model_dir.join("metrics.json")),
        json(&run_dir.join("metrics.json")),
    );
    for key in ["evaluation", "churn", "value", "as_of", "horizon_days"] {
        assert_eq!(m[key], rm[key], "metrics.json {key}");
    }
    for key in ["tiers", "kpis", "counts"] {
        assert!(m.get(key).is_none() && rm.get(key).is_some(), "{key}");
    }
    assert_eq!(
        std::fs::read(t("asof")).expect("features"),
        std::fs::read(common::table_file(&out, "features", AS_OF)).expect("features")
    );
}

#[test]
fn train_with_fewer_tables_degrades_as_run_does_and_says_so() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = events(dir.path());
    let t = |name: &str| dir.path().join(format!("{name}.parquet"));
    features(&events, &date(90), true, &t("t1"));
    features(&events, AS_OF, false, &t("asof"));
    features(&events, &date(180), true, &t("t0"));
    let train = |extra: &[&Path], out: &str| {
        let mut cmd = bin();
        cmd.args(["--quiet", "train", "--validate"])
            .arg(t("t1"))
            .arg("--latest")
            .arg(t("asof"))
            .arg("--out")
            .arg(dir.path().join(out));
        if let Some(t0) = extra.first() {
            cmd.arg("--train").arg(t0);
        }
        cmd.assert().success();
        json(&dir.path().join(out).join("metrics.json"))
    };
    // Without --tune: L2 from the config, recorded with the reason.
    let m = train(&[t("t0").as_path()], "m1");
    let sel = &m["evaluation"]["alpha_selection"];
    assert_eq!(sel["scheme"], "config");
    assert_eq!(
        sel["reason"],
        format!(
            "no labelled tables at {} and {} to choose it on",
            date(270),
            date(180)
        )
    );
    assert_eq!(m["evaluation"]["scheme"], "out_of_time");
    // Without --train either: the customer split of the t1 window.
    let m = train(&[], "m2");
    assert_eq!(m["evaluation"]["scheme"], "customer_split");
    assert_eq!(
        m["evaluation"]["fallback_reason"],
        format!("no labelled table at {}", date(180))
    );
    assert_eq!(m["evaluation"]["train_cutoff"], date(90));
}

/// The table `features` writes, rewritten the way another engine might: columns reordered,
/// an extra column, counts as Int32, one real column as Float32, rows shuffled, no metadata.
fn foreign(from: &Path, to: &Path, edit: impl Fn(&str, ArrayRef) -> Option<ArrayRef>) {
    let batch = read(from);
    let n = batch.num_rows();
    let order = Int32Array::from_iter_values((0..n as i32).rev());
    let mut cols: Vec<(String, ArrayRef)> = vec![(
        "warehouse_load_id".to_string(),
        Arc::new(Int64Array::from(vec![7; n])) as ArrayRef,
    )];
    for (i, f) in batch.schema().fields().iter().enumerate().rev() {
        let a = arrow_select::take::take(batch.column(i), &order, None).expect("take");
        let a: ArrayRef = match (f.name().as_str(), a.data_type()) {
            (_, DataType::Int64) => arrow_cast::cast(&a, &DataType::Int32).expect("cast"),
            ("tenure_days", _) => Arc::new(Float32Array::from_iter_values(
                a.as_primitive::<arrow_array::types::Float64Type>()
                    .values()
                    .iter()
                    .map(|&v| v as f32),
            )),
            _ => a,
        };
        if let Some(a) = edit(f.name(), a) {
            cols.push((f.name().clone(), a));
        }
    }
    common::write(
        to,
        cols.iter().map(|(n, a)| (n.as_str(), a.clone())).collect(),
    );
}

#[test]
fn a_feature_table_written_elsewhere_is_read_and_checked() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = events(dir.path());
    let ours = dir.path().join("ours.parquet");
    features(&events, &date(90), true, &ours);
    let theirs = dir.path().join("theirs.parquet");
    foreign(&ours, &theirs, |_, a| Some(a));
    let cutoff = NaiveDate::parse_from_str(&date(90), "%Y-%m-%d").expect("date");
    let expect = Expect {
        flag: "--validate",
        cutoff: Some((cutoff, "--as-of".into())),
        labels: Some(Some((90, "--horizon".into()))),
    };
    let a = FeatureTable::read(&ours, &expect).expect("ours");
    let b = FeatureTable::read(&theirs, &expect).expect("theirs");
    assert!(a.len() > 2000);
    // Same ids and labels; the same features except tenure_days, stored as Float32 there.
    assert_eq!(a.customer_ids, b.customer_ids);
    assert_eq!(a.labels, b.labels);
    for (x, y) in a.rows.iter().zip(&b.rows) {
        assert_eq!(x.tenure_days as f32 as f64, y.tenure_days);
        let mut y = y.clone();
        y.tenure_days = x.tenure_days;
        assert_eq!(*x, y);
    }

    // Without metadata the cutoff must come from the caller.
    let none = Expect {
        flag: "--features",
        ..Expect::default()
    };
    let err = FeatureTable::read(&theirs, &none).expect_err("no cutoff");
    assert_eq!(
        churnclv::diag::error_line(&err),
        format!(
            "--features {}: no churnclv.cutoff metadata and nothing gives it: give the table's cutoff with --as-of",
            theirs.display()
        )
    );
    // Metadata that disagrees with the flag.
    let wrong = Expect {
        flag: "--features",
        cutoff: Some((cutoff.succ_opt().expect("date"), "--as-of".into())),
        labels: None,
    };
    let err = FeatureTable::read(&ours, &wrong).expect_err("mismatch");
    assert_eq!(
        churnclv::diag::error_line(&err),
        format!(
            "--features {}: metadata churnclv.cutoff = {cutoff}, but --as-of gives {}",
            ours.display(),
            cutoff.succ_opt().expect("date")
        )
    );
    assert_eq!(churnclv::Error::from(err).exit_code(), 2);
}

/// Column `name` (Int32) with row `row` set to `value`; any other column as it is.
fn set_i32(name: &str, a: ArrayRef, column: &str, row: usize, value: Option<i32>) -> ArrayRef {
    if name != column {
        return a;
    }
    let mut v: Vec<Option<i32>> = a
        .as_primitive::<arrow_array::types::Int32Type>()
        .iter()
        .collect();
    v[row] = value;
    Arc::new(Int32Array::from(v))
}

/// `score --features` on a broken table: exit 2, one line naming the flag, file, column (and
/// row), nothing published.
#[test]
fn a_missing_mistyped_or_null_column_is_exit_2_naming_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = events(dir.path());
    let out = run(&events, &dir.path().join("out"));
    let model = common::run_dir(&out, AS_OF).join("model.json");
    let ours = dir.path().join("ours.parquet");
    features(&events, AS_OF, false, &ours);
    let score = |table: &Path| {
        // One output folder per table: a refused table must publish nothing of its own.
        let stem = table.file_stem().map(|s| s.to_string_lossy().into_owned());
        let scored = dir.path().join("scored").join(stem.unwrap_or_default());
        let output = bin()
            .args(["--quiet", "score", "--as-of", AS_OF, "--model"])
            .arg(&model)
            .arg("--features")
            .arg(table)
            .arg("--out")
            .arg(&scored)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        let published = common::published_any(&scored);
        (output.status.code(), stderr, published)
    };
    // Accepted as it is (cutoff from --as-of): the same scores as the run's.
    let theirs = dir.path().join("theirs.parquet");
    foreign(&ours, &theirs, |_, a| Some(a));
    let (code, stderr, published) = score(&theirs);
    assert_eq!((code, published), (Some(0), true), "{stderr}");

    let cases: Vec<(&str, Box<dyn Fn(&str, ArrayRef) -> Option<ArrayRef>>, String)> = vec![
        (
            "missing",
            Box::new(|n: &str, a| (n != "n_sessions").then_some(a)),
            "missing column 'n_sessions' (a feature column; docs/features.md lists the columns of a feature table)".into(),
        ),
        (
            "mistyped",
            Box::new(|n: &str, a: ArrayRef| {
                Some(if n == "monetary_total" {
                    Arc::new(StringArray::from(vec!["1.5"; a.len()])) as ArrayRef
                } else {
                    a
                })
            }),
            "column 'monetary_total' has type Utf8; expected Float64 (or Float32)".into(),
        ),
        (
            "null",
            Box::new(|n: &str, a: ArrayRef| Some(set_i32(n, a, "frequency", 5, None))),
            "column 'frequency', row 5: null, and the column does not allow nulls".into(),
        ),
        (
            "negative",
            Box::new(|n: &str, a: ArrayRef| Some(set_i32(n, a, "n_events", 3, Some(-2)))),
            "column 'n_events', row 3: -2 is not a count (expected ≥ 0)".into(),
        ),
    ];
    for (name, edit, message) in cases {
        let path = dir.path().join(format!("{name}.parquet"));
        foreign(&ours, &path, edit);
        let (code, stderr, published) = score(&path);
        let want = format!("churnclv: error: --features {}: {message}", path.display());
        assert_eq!(
            (code, stderr.as_str(), published),
            (Some(2), want.as_str(), false),
            "{name}"
        );
    }

    // A labelled table must have its label columns: train names the first one missing.
    let t1 = dir.path().join("t1.parquet");
    features(&events, &date(90), false, &t1);
    let output = bin()
        .args(["--quiet", "train", "--validate"])
        .arg(&t1)
        .arg("--latest")
        .arg(&ours)
        .args(["--horizon", "90d", "--out"])
        .arg(dir.path().join("m"))
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        format!(
            "churnclv: error: --validate {}: missing column 'churned' (a label column: write the table with --label-horizon; docs/features.md lists the columns of a feature table)",
            t1.display()
        )
    );
    assert!(!dir.path().join("m").exists());
}

/// The label columns of `features --label-horizon`: churned, purchases and spend of the window
/// after the cutoff, spend of the window before.
#[test]
fn label_columns_are_the_windows_around_the_cutoff() {
    let dir = tempfile::tempdir().expect("tmp");
    let day = |d: &str, h: i64| common::ts(d, h);
    // a: buys before, twice (two days) in the window, refund in the window; b: buys only
    // before the prior window; c: browses only, in the window.
    let rows = [
        ("a", day("2025-08-20", 1), "purchase", Some(10.0)),
        ("a", day("2025-10-05", 1), "purchase", Some(20.0)),
        ("a", day("2025-10-05", 5), "purchase", Some(5.0)),
        ("a", day("2025-11-01", 1), "purchase", Some(7.0)),
        ("a", day("2025-11-02", 1), "refund", Some(2.0)),
        ("b", day("2025-01-10", 1), "purchase", Some(3.0)),
        ("c", day("2025-09-30", 1), "page_view", None),
        ("c", day("2025-10-20", 1), "page_view", None),
    ];
    let path = dir.path().join("e.parquet");
    common::write(
        &path,
        vec![
            (
                "customer_id",
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
            ),
            (
                "event_time",
                Arc::new(
                    arrow_array::TimestampMicrosecondArray::from_iter_values(
                        rows.iter().map(|r| r.1),
                    )
                    .with_timezone("UTC"),
                ),
            ),
            (
                "event_type",
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
            ),
            (
                "amount",
                Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.3))),
            ),
        ],
    );
    let out = dir.path().join("t.parquet");
    bin()
        .args([
            "--quiet",
            "features",
            "--as-of",
            "2025-10-01",
            "--label-horizon",
            "45",
        ])
        .arg("--events")
        .arg(&path)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let t = read(&out);
    assert_eq!(strings(&t, "customer_id"), ["a", "b", "c"]);
    let col = |n: &str| t.column_by_name(n).expect(n).clone();
    assert_eq!(
        col("churned").as_boolean(),
        &BooleanArray::from(vec![false, true, true])
    );
    assert_eq!(
        col("window_purchase_days").as_primitive::<arrow_array::types::Int64Type>(),
        &Int64Array::from(vec![2, 0, 0])
    );
    assert_eq!(
        col("window_net_spend").as_primitive::<arrow_array::types::Float64Type>(),
        &Float64Array::from(vec![30.0, 0.0, 0.0])
    );
    assert_eq!(
        col("prior_window_net_spend").as_primitive::<arrow_array::types::Float64Type>(),
        &Float64Array::from(vec![10.0, 0.0, 0.0])
    );
    // Features still use only what is before the cutoff.
    assert_eq!(
        col("n_purchases").as_primitive::<arrow_array::types::Int64Type>(),
        &Int64Array::from(vec![1, 1, 0])
    );
    let meta = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&out).expect("open"))
        .expect("parquet")
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let get = |k: &str| {
        meta.iter()
            .find(|kv| kv.key == k)
            .and_then(|kv| kv.value.clone())
    };
    assert_eq!(get("churnclv.cutoff").as_deref(), Some("2025-10-01"));
    assert_eq!(get("churnclv.label_horizon_days").as_deref(), Some("45"));
    let schema = t.schema();
    let fields: Vec<&Field> = schema.fields().iter().map(|f| f.as_ref()).collect();
    assert_eq!(
        fields[fields.len() - 4..]
            .iter()
            .map(|f| (f.name().as_str(), f.data_type().clone(), f.is_nullable()))
            .collect::<Vec<_>>(),
        vec![
            ("churned", DataType::Boolean, false),
            ("window_purchase_days", DataType::Int64, false),
            ("window_net_spend", DataType::Float64, false),
            ("prior_window_net_spend", DataType::Float64, false),
        ]
    );
}
