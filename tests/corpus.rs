//! The bad-input corpus: each case with its exit code and message; none panics, and a failed
//! run publishes nothing. Cases that are data-quality problems rather than errors (null ids,
//! NaN amounts, unknown types, mixed time units) succeed with their rows counted.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float64Array, StringArray, TimestampMicrosecondArray, TimestampNanosecondArray,
    TimestampSecondArray,
};
use common::{bin, ts, write};

/// A valid base history (generated, 400 customers over two years) in `dir/events/`.
fn base(dir: &Path) -> PathBuf {
    let events = dir.join("events");
    bin()
        .args(["generate", "--customers", "400", "--seed", "21", "--out"])
        .arg(events.join("base.parquet"))
        .assert()
        .success();
    std::fs::remove_file(events.join("base.truth.parquet")).expect("truth");
    events
}

fn extra(
    events: &Path,
    ids: Vec<Option<&str>>,
    times: ArrayRef,
    kinds: Vec<&str>,
    amounts: Vec<Option<f64>>,
) {
    write(
        &events.join("extra.parquet"),
        vec![
            ("customer_id", Arc::new(StringArray::from(ids)) as ArrayRef),
            ("event_time", times),
            ("event_type", Arc::new(StringArray::from(kinds))),
            ("amount", Arc::new(Float64Array::from(amounts))),
        ],
    );
}

struct Outcome {
    code: i32,
    stderr: String,
    out: PathBuf,
}

fn run(dir: &Path, events: &Path, args: &[&str]) -> Outcome {
    let out = dir.join("out");
    let o = bin()
        .args(["run", "--quiet", "--events"])
        .arg(events)
        .arg("--out")
        .arg(&out)
        .args(args)
        .output()
        .expect("run");
    let code = o.status.code().unwrap_or(-1);
    assert_ne!(
        code,
        101,
        "panicked: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Outcome {
        code,
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        out,
    }
}

fn published(o: &Outcome) -> bool {
    common::published_any(&o.out)
}

fn failed(o: &Outcome, code: i32, message: &str) {
    assert_eq!(o.code, code, "{}", o.stderr);
    assert!(
        o.stderr.starts_with("churnclv: error: ") && o.stderr.contains(message),
        "{}",
        o.stderr
    );
    assert_eq!(o.stderr.lines().count(), 1, "one line: {}", o.stderr);
    assert!(!published(o), "nothing may be published");
}

fn rejected(o: &Outcome, reason: &str, n: u64) {
    assert_eq!(o.code, 0, "{}", o.stderr);
    let runs = common::partitions(&o.out, "runs");
    let part = o.out.join("runs").join(&runs[0]);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(part.join("manifest.json")).expect("manifest"))
            .expect("json");
    assert_eq!(m["rows"]["rejected_by_reason"][reason], n, "{}", m["rows"]);
    let r = &m["rows"];
    assert_eq!(
        r["rows_read"].as_u64(),
        Some(r["rows_used"].as_u64().unwrap_or(0) + r["rows_rejected"].as_u64().unwrap_or(0))
    );
}

#[test]
fn null_ids_nan_inf_and_huge_amounts_are_rejected_rows_not_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = base(dir.path());
    let t = ts("2025-06-01", 0);
    extra(
        &events,
        vec![None, Some("x1"), Some("x2"), Some("x3"), Some("x4")],
        Arc::new(TimestampMicrosecondArray::from(vec![t; 5]).with_timezone("UTC")),
        vec!["purchase"; 5],
        vec![
            Some(1.0),
            Some(f64::NAN),
            Some(f64::INFINITY),
            Some(f64::NEG_INFINITY),
            Some(5e12),
        ],
    );
    let o = run(dir.path(), &events, &[]);
    rejected(&o, "null_customer_id", 1);
    rejected(&o, "non_finite_amount", 3);
    rejected(&o, "amount_out_of_range", 1);
}

#[test]
fn unknown_event_types_are_counted_as_other() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = base(dir.path());
    let t = ts("2025-06-01", 0);
    extra(
        &events,
        vec![Some("x1"), Some("x2")],
        Arc::new(TimestampMicrosecondArray::from(vec![t, t])),
        vec!["wishlist_add", "Wishlist_Add"],
        vec![None, None],
    );
    let o = run(dir.path(), &events, &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(common::run_dir(&o.out, "2025-12-31").join("manifest.json"))
            .expect("manifest"),
    )
    .expect("json");
    assert_eq!(m["rows"]["unknown_event_types"]["wishlist_add"], 1);
    assert_eq!(m["rows"]["unknown_event_types"]["Wishlist_Add"], 1);
}

#[test]
fn mixed_timestamp_units_across_files_are_one_timeline() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = base(dir.path());
    let t = ts("2025-06-01", 0);
    extra(
        &events,
        vec![Some("x1")],
        Arc::new(TimestampSecondArray::from(vec![t / 1_000_000])),
        vec!["purchase"],
        vec![Some(3.0)],
    );
    write(
        &events.join("nanos.parquet"),
        vec![
            (
                "customer_id",
                Arc::new(StringArray::from(vec!["x1"])) as ArrayRef,
            ),
            (
                "event_time",
                Arc::new(
                    TimestampNanosecondArray::from(vec![t * 1000 + 86_400_000_000_000])
                        .with_timezone("+05:00"),
                ),
            ),
            ("event_type", Arc::new(StringArray::from(vec!["purchase"]))),
            ("amount", Arc::new(Float64Array::from(vec![4.0]))),
        ],
    );
    let o = run(dir.path(), &events, &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let out = bin()
        .args(["features", "--as-of", "2025-07-01", "--events"])
        .arg(&events)
        .arg("--out")
        .arg(dir.path().join("f.parquet"))
        .assert()
        .success();
    // 358 of the 400 generated customers have arrived by 2025-07-01 (arrivals run until the
    // end of the period), plus x1 once: its two files, in seconds and nanoseconds, are one
    // customer on one timeline.
    assert!(String::from_utf8_lossy(&out.get_output().stdout).contains("359 customers"));
}

#[test]
fn every_row_rejected_or_after_as_of_is_an_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = dir.path().join("bad.parquet");
    let t = ts("2025-06-01", 0);
    write(
        &events,
        vec![
            (
                "customer_id",
                Arc::new(StringArray::from(vec![Some("a"), None])) as ArrayRef,
            ),
            (
                "event_time",
                Arc::new(TimestampMicrosecondArray::from(vec![t, t])),
            ),
            (
                "event_type",
                Arc::new(StringArray::from(vec!["purchase", "purchase"])),
            ),
            ("amount", Arc::new(Float64Array::from(vec![f64::NAN, 1.0]))),
        ],
    );
    let o = run(dir.path(), &events, &["--as-of", "2025-07-01"]);
    failed(
        &o,
        2,
        "no usable rows (2 read; rejected: null_customer_id 1, non_finite_amount 1)",
    );
    let o = run(dir.path(), &base(dir.path()), &["--as-of", "2023-01-01"]);
    failed(&o, 2, "no usable rows (");
    assert!(o.stderr.contains("after_as_of"), "{}", o.stderr);
}

#[test]
fn degenerate_populations_are_clear_errors() {
    // One customer, buying every week: nobody churns in any window.
    let dir = tempfile::tempdir().expect("tmp");
    let events = dir.path().join("one.parquet");
    let n = 100;
    write(
        &events,
        vec![
            (
                "customer_id",
                Arc::new(StringArray::from(vec!["solo"; n])) as ArrayRef,
            ),
            (
                "event_time",
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    (0..n as i64).map(|w| ts("2024-01-01", 0) + w * 7 * 86_400_000_000),
                )),
            ),
            (
                "event_type",
                Arc::new(StringArray::from(vec!["purchase"; n])),
            ),
            ("amount", Arc::new(Float64Array::from(vec![10.0; n]))),
        ],
    );
    let o = run(dir.path(), &events, &[]);
    failed(&o, 2, "cannot fit a churn model");

    // Many customers who all stop after their first week: everyone churns (one class).
    let ids: Vec<String> = (0..200).map(|i| format!("c{i}")).collect();
    write(
        &events,
        vec![
            (
                "customer_id",
                Arc::new(StringArray::from_iter_values(
                    ids.iter().map(|s| s.as_str()).chain(["late"]),
                )) as ArrayRef,
            ),
            (
                "event_time",
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    (0..200)
                        .map(|i| ts("2024-01-01", i))
                        .chain([ts("2024-12-01", 0)]),
                )),
            ),
            (
                "event_type",
                Arc::new(StringArray::from(vec!["purchase"; 201])),
            ),
            ("amount", Arc::new(Float64Array::from(vec![10.0; 201]))),
        ],
    );
    let o = run(
        dir.path(),
        &events,
        &["--as-of", "2024-12-02", "--horizon", "90d"],
    );
    failed(&o, 2, "all ");
    assert!(
        o.stderr.contains("have the same churn label (churned)"),
        "{}",
        o.stderr
    );
}

#[test]
fn config_and_flag_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = base(dir.path());
    let e = events.display().to_string();
    let missing = dir.path().join("nope.toml");
    let o = run(
        dir.path(),
        &events,
        &["--config", &missing.display().to_string()],
    );
    failed(&o, 2, &format!("{}: cannot read config", missing.display()));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[churn]\nalpha = -1.0\n").expect("write");
    let o = run(
        dir.path(),
        &events,
        &["--config", &bad.display().to_string()],
    );
    failed(&o, 2, "churn.alpha must be a finite number >= 0, got -1");
    std::fs::write(&bad, "[btyd]\nmodel = \"bgnbdd\"\n").expect("write");
    let o = run(
        dir.path(),
        &events,
        &["--config", &bad.display().to_string()],
    );
    failed(
        &o,
        2,
        "btyd.model must be one of bgnbd, mbgnbd, pnbd, got bgnbdd",
    );
    std::fs::write(&bad, "not toml [").expect("write");
    let o = run(
        dir.path(),
        &events,
        &["--config", &bad.display().to_string()],
    );
    failed(&o, 2, &format!("{}: invalid config:", bad.display()));
    let o = run(dir.path(), &events, &["--min-auc", "1.5"]);
    failed(&o, 2, "--min-auc must be between 0 and 1, got 1.5");
    let o = run(dir.path(), &events, &["--map", "customer_id"]);
    failed(&o, 2, "invalid --map 'customer_id'");
    let o = run(dir.path(), &events, &["--horizon", "0d"]);
    failed(&o, 2, "invalid horizon '0d'");
    let o = run(dir.path(), &events, &["--as-of", "yesterday"]);
    failed(&o, 2, "invalid date 'yesterday'");
    let o = run(dir.path(), &events, &["--map", "customer_id=CustomerID"]);
    failed(
        &o,
        2,
        "missing required column 'customer_id' (mapped to 'CustomerID')",
    );
    assert!(o.stderr.contains(&e), "names the file: {}", o.stderr);
}

#[test]
fn wrong_column_types_name_the_column() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = dir.path().join("types.parquet");
    write(
        &events,
        vec![
            (
                "customer_id",
                Arc::new(Float64Array::from(vec![1.5])) as ArrayRef,
            ),
            (
                "event_time",
                Arc::new(TimestampMicrosecondArray::from(vec![ts("2024-01-01", 0)])),
            ),
            ("event_type", Arc::new(StringArray::from(vec!["purchase"]))),
        ],
    );
    let o = run(dir.path(), &events, &[]);
    failed(&o, 2, "column 'customer_id' has type Float64; expected text (Utf8, LargeUtf8, Dictionary) or an integer");
    write(
        &events,
        vec![
            (
                "customer_id",
                Arc::new(StringArray::from(vec!["a"])) as ArrayRef,
            ),
            (
                "event_time",
                Arc::new(TimestampMicrosecondArray::from(vec![ts("2024-01-01", 0)])),
            ),
            ("event_type", Arc::new(StringArray::from(vec!["purchase"]))),
            ("amount", Arc::new(StringArray::from(vec!["12.50"]))),
        ],
    );
    let o = run(dir.path(), &events, &[]);
    failed(
        &o,
        2,
        "column 'amount' has type Utf8; expected a float, integer or decimal",
    );
}

#[test]
fn duplicate_order_ids_are_rejected_after_the_first() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = base(dir.path());
    let t = ts("2025-06-01", 0);
    write(
        &events.join("dups.parquet"),
        vec![
            (
                "customer_id",
                Arc::new(StringArray::from(vec!["x1", "x1", "x1", "x1", "x2"])) as ArrayRef,
            ),
            (
                "event_time",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![t, t, t + 1, t + 2, t])
                        .with_timezone("UTC"),
                ),
            ),
            (
                "event_type",
                Arc::new(StringArray::from(vec![
                    "purchase", "purchase", "refund", "PURCHASE", "purchase",
                ])),
            ),
            (
                "amount",
                Arc::new(Float64Array::from(vec![10.0, 10.0, 10.0, 10.0, 7.0])),
            ),
            (
                "order_id",
                Arc::new(StringArray::from(vec![
                    Some("dup-1"),
                    Some("dup-1"),
                    Some("dup-1"),
                    Some("dup-1"),
                    None,
                ])),
            ),
        ],
    );
    // Row 0 is kept; rows 1 and 3 (same type and order id) are duplicates; the refund of the
    // same order (row 2) and the row without an order id (row 4) are not.
    let o = run(dir.path(), &events, &[]);
    rejected(&o, "duplicate_key", 2);
    let f = dir.path().join("f.parquet");
    bin()
        .args(["features", "--quiet", "--as-of", "2025-07-01", "--events"])
        .arg(&events)
        .arg("--out")
        .arg(&f)
        .assert()
        .success();
    let file = std::fs::File::open(&f).expect("features");
    let batches: Vec<arrow_array::RecordBatch> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("pq")
            .build()
            .expect("reader")
            .collect::<Result<_, _>>()
            .expect("read");
    use arrow_array::cast::AsArray;
    let b = &batches[0];
    let s = b.schema();
    let ids = b
        .column(s.index_of("customer_id").expect("id"))
        .as_string::<i32>();
    let n = b
        .column(s.index_of("n_purchases").expect("n"))
        .as_primitive::<arrow_array::types::Int64Type>();
    let i = (0..b.num_rows())
        .find(|&i| ids.value(i) == "x1")
        .expect("x1");
    assert_eq!(n.value(i), 1, "the duplicates are not counted");
}

#[test]
fn duplicate_keys_take_the_event_type_from_the_partition_folder() {
    // Event types given by hive folders: a purchase and the refund of the same order are two
    // keys; only the repeated purchase is a duplicate.
    let dir = tempfile::tempdir().expect("tmp");
    let events = base(dir.path());
    let t = ts("2025-06-01", 0);
    for (folder, ids) in [
        ("event_type=purchase", vec!["p1", "p1"]),
        ("event_type=refund", vec!["p1"]),
    ] {
        let n = ids.len();
        std::fs::create_dir_all(events.join(folder)).expect("mkdir");
        write(
            &events.join(folder).join("part.parquet"),
            vec![
                ("customer_id", Arc::new(StringArray::from(ids)) as ArrayRef),
                (
                    "event_time",
                    Arc::new(TimestampMicrosecondArray::from(vec![t; n]).with_timezone("UTC")),
                ),
                ("amount", Arc::new(Float64Array::from(vec![10.0; n]))),
                (
                    "order_id",
                    Arc::new(StringArray::from(vec![Some("ord-7"); n])),
                ),
            ],
        );
    }
    let o = run(dir.path(), &events, &[]);
    rejected(&o, "duplicate_key", 1);
}
