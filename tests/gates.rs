//! Outliers cannot move the run: rows dated implausibly far ahead are rejected as
//! `future_event` (counted, copied to rejects.parquet, ignored by the default as-of), and a run
//! whose share of unusable rows exceeds `validation.max_reject_share` stops with exit 3.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, Float64Array, StringArray, TimestampMicrosecondArray};
use common::{bin, ts, write};

/// A generated history (200 customers, events up to 2025-12-30) in `dir/events/base.parquet`
/// and its row count.
fn base(dir: &Path) -> (PathBuf, u64) {
    let events = dir.join("events");
    let o = bin()
        .args([
            "--quiet",
            "generate",
            "--customers",
            "200",
            "--seed",
            "31",
            "--out",
        ])
        .arg(events.join("base.parquet"))
        .output()
        .expect("generate");
    assert!(o.status.success());
    std::fs::remove_file(events.join("base.truth.parquet")).expect("truth");
    let text = String::from_utf8_lossy(&o.stdout);
    let rows = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("events count");
    (events, rows)
}

/// `events/extra.parquet`: purchases of customer `c1` (or null ids) at the given times.
fn extra(events: &Path, ids: Vec<Option<&str>>, times: Vec<i64>) {
    let n = times.len();
    write(
        &events.join("extra.parquet"),
        vec![
            ("customer_id", Arc::new(StringArray::from(ids)) as ArrayRef),
            (
                "event_time",
                Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
            ),
            (
                "event_type",
                Arc::new(StringArray::from(vec!["purchase"; n])),
            ),
            ("amount", Arc::new(Float64Array::from(vec![10.0; n]))),
        ],
    );
}

struct Outcome {
    code: i32,
    stderr: String,
    stdout: String,
}

fn churnclv(args: &[&str], events: &Path, out: Option<&Path>) -> Outcome {
    let mut cmd = bin();
    cmd.arg("--quiet").arg(args[0]).arg("--events").arg(events);
    if let Some(out) = out {
        cmd.arg("--out").arg(out);
    }
    let o = cmd.args(&args[1..]).output().expect("run");
    Outcome {
        code: o.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
    }
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
}

/// (reason, event_time) of every row of rejects.parquet.
fn rejects(file: &Path) -> Vec<(String, String)> {
    let f = std::fs::File::open(file).expect("rejects");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .expect("parquet")
        .build()
        .expect("reader");
    let mut out = Vec::new();
    for b in reader {
        let b = b.expect("batch");
        let reason = b.column(2).as_string::<i32>();
        let time = b.column(4).as_string::<i32>();
        for i in 0..b.num_rows() {
            out.push((reason.value(i).to_string(), time.value(i).to_string()));
        }
    }
    out
}

/// The runs published in `out` (`as_of=…` folders of `out/runs`).
fn partitions(out: &Path) -> Vec<String> {
    common::partitions(out, "runs")
}

#[test]
fn a_row_years_ahead_is_rejected_and_does_not_move_the_default_as_of() {
    let dir = tempfile::tempdir().expect("tmp");
    let (events, rows) = base(dir.path());
    let clean = dir.path().join("clean");
    let r = churnclv(&["run"], &events, Some(&clean));
    assert_eq!(r.code, 0, "{}", r.stderr);
    extra(
        &events,
        vec![Some("c1"), Some("c2")],
        vec![ts("2100-01-01", 0), ts("2199-12-31", 23)],
    );
    let out = dir.path().join("out");
    let r = churnclv(&["run"], &events, Some(&out));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(partitions(&out), ["as_of=2025-12-31"]);
    let part = common::run_dir(&out, "2025-12-31");
    let m = json(&part.join("manifest.json"));
    assert_eq!(m["rows"]["rows_read"], rows + 2);
    assert_eq!(m["rows"]["rows_rejected"], 2);
    assert_eq!(m["rows"]["rejected_by_reason"]["future_event"], 2);
    assert_eq!(
        rejects(&common::table_file(&out, "rejects", "2025-12-31")),
        [
            (
                "future_event".to_string(),
                "2100-01-01T00:00:00Z".to_string()
            ),
            (
                "future_event".to_string(),
                "2199-12-31T23:00:00Z".to_string()
            )
        ]
    );
    // The same features as without the two rows.
    let a = std::fs::read(common::table_file(&clean, "features", "2025-12-31")).expect("clean");
    let b = std::fs::read(common::table_file(&out, "features", "2025-12-31")).expect("features");
    assert!(a == b, "features.parquet differs");
}

#[test]
fn a_backfill_counts_rows_after_as_of_and_rejects_only_implausible_ones() {
    let dir = tempfile::tempdir().expect("tmp");
    let (events, rows) = base(dir.path());
    extra(&events, vec![Some("c1")], vec![ts("2100-01-01", 0)]);
    let out = dir.path().join("out");
    let r = churnclv(&["run", "--as-of", "2025-10-01"], &events, Some(&out));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let part = common::run_dir(&out, "2025-10-01");
    let m = json(&part.join("manifest.json"));
    let by = &m["rows"]["rejected_by_reason"];
    assert_eq!(by["future_event"], 1);
    let after = by["after_as_of"].as_u64().expect("after_as_of");
    assert!(after > 100, "{by}");
    assert_eq!(m["rows"]["rows_read"], rows + 1);
    assert_eq!(
        m["rows"]["rows_used"].as_u64().expect("used") + after + 1,
        rows + 1
    );
    // Only the implausible row is copied.
    assert_eq!(
        rejects(&common::table_file(&out, "rejects", "2025-10-01")),
        [(
            "future_event".to_string(),
            "2100-01-01T00:00:00Z".to_string()
        )]
    );
}

#[test]
fn a_later_as_of_moves_the_future_limit_with_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let (events, rows) = base(dir.path());
    extra(
        &events,
        vec![Some("c1"), Some("c1")],
        vec![ts("2100-01-01", 12), ts("2100-01-03", 0)],
    );
    let validate = |extra_args: &[&str]| -> serde_json::Value {
        let mut args = vec!["validate", "--json"];
        args.extend_from_slice(extra_args);
        let r = churnclv(&args, &events, None);
        assert_eq!(r.code, 0, "{}", r.stderr);
        serde_json::from_str(&r.stdout).expect("json")
    };
    // Scoring as of 2100-01-01: the first row is after as-of (plausible, within a day), the
    // second more than a day past it.
    let v = validate(&["--as-of", "2100-01-01"]);
    assert_eq!(v["rejected_by_reason"]["after_as_of"], 1, "{v}");
    assert_eq!(v["rejected_by_reason"]["future_event"], 1, "{v}");
    assert_eq!(v["rows_used"], rows);
    // As of 2100-02-01 both are history.
    let v = validate(&["--as-of", "2100-02-01"]);
    assert_eq!(v["rows_used"], rows + 2, "{v}");
    assert_eq!(v["rows_rejected"], 0, "{v}");
    // Without an as-of the wall clock is the reference.
    let v = validate(&[]);
    assert_eq!(v["rejected_by_reason"]["future_event"], 2, "{v}");
    assert_eq!(
        v["last_event"].as_str().map(|t| &t[..10]),
        Some("2025-12-30")
    );
}

#[test]
fn too_many_unusable_rows_stop_the_run_with_exit_3() {
    let dir = tempfile::tempdir().expect("tmp");
    let (events, rows) = base(dir.path());
    // A model from the clean history, for `score`.
    let models = dir.path().join("models");
    let r = churnclv(
        &["run", "--save-model", models.to_str().expect("utf-8")],
        &events,
        Some(&dir.path().join("clean")),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let model = std::fs::read_dir(&models)
        .expect("models")
        .flatten()
        .next()
        .expect("model dir")
        .path()
        .join("model.json");
    // As many null ids as a third of the good rows, plus a few rows years ahead.
    let bad = (rows / 3) as usize;
    let mut ids = vec![None; bad];
    let mut times = vec![ts("2025-06-01", 0); bad];
    ids.extend([Some("c1"); 5]);
    times.extend([ts("2150-01-01", 0); 5]);
    extra(&events, ids, times);
    let out = dir.path().join("out");
    let share = 100.0 * (bad + 5) as f64 / (rows as usize + bad + 5) as f64;
    let expected = format!(
        "churnclv: error: quality gate failed: {share:.1}% of rows rejected ({} of {} not after as-of) exceeds validation.max_reject_share 0.2; top reasons: null_customer_id {bad}, future_event 5; nothing published",
        bad + 5,
        rows as usize + bad + 5
    );
    for cmd in [
        &["run"][..],
        &["score", "--model", model.to_str().expect("utf-8")][..],
    ] {
        let r = churnclv(cmd, &events, Some(&out));
        assert_eq!(r.code, 3, "{cmd:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim_end(), expected, "{cmd:?}");
        assert!(!common::published_any(&out), "{cmd:?}: nothing published");
    }
    let r = churnclv(&["validate"], &events, None);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(r.stderr.trim_end(), expected);
    // Raising the limit lets it through, the rows counted and copied.
    let cfg = dir.path().join("churnclv.toml");
    std::fs::write(&cfg, "[validation]\nmax_reject_share = 0.5\n").expect("config");
    let r = churnclv(
        &["run", "--config", cfg.to_str().expect("utf-8")],
        &events,
        Some(&out),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = json(&common::run_dir(&out, "2025-12-31").join("manifest.json"));
    assert_eq!(m["rows"]["rejected_by_reason"]["null_customer_id"], bad);
    assert_eq!(m["rows"]["rejected_by_reason"]["future_event"], 5);
    assert_eq!(m["config"]["validation"]["max_reject_share"], 0.5);
}

#[test]
fn bad_validation_settings_are_config_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let (events, _) = base(dir.path());
    for (toml, message) in [
        (
            "[validation]\nmax_future = \"tomorrow\"\n",
            "invalid validation.max_future 'tomorrow': expected hours like 12h, days like 1d, weeks like 1w, or a plain number of days (0 to 3650 days)",
        ),
        (
            "[validation]\nmax_reject_share = -0.1\n",
            "validation.max_reject_share must be a share between 0 and 1, got -0.1",
        ),
    ] {
        let cfg = dir.path().join("bad.toml");
        std::fs::write(&cfg, toml).expect("config");
        let r = churnclv(
            &["validate", "--config", cfg.to_str().expect("utf-8")],
            &events,
            None,
        );
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert_eq!(r.stderr.trim_end(), format!("churnclv: error: {message}"));
    }
}
