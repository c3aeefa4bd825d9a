//! `run` under a memory budget: the customers in hash shards, one pass over the input each,
//! gathered in id order — the same scores, metrics and row counts as one pass, bad rows
//! counted and kept once, and the budget's shard count and its refusal.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use churnclv::stages::shards::{
    shards_for, ShardPlan, HISTORY_BYTES_PER_ROW, LATEST_BYTES_PER_ROW, MAX_SHARDS,
    SAMPLE_BYTES_PER_ROW, SCAN_FIXED_BYTES,
};
use common::{bin, ts};

const AS_OF: &str = "2025-12-31";

fn read(path: &Path) -> Vec<RecordBatch> {
    let f = std::fs::File::open(path).expect("open");
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .expect("parquet")
        .build()
        .expect("reader")
        .collect::<Result<_, _>>()
        .expect("read")
}

/// A generated history plus a file of bad rows and a customer's repeated order id, in one
/// input folder.
fn input(dir: &Path) -> PathBuf {
    let events = dir.join("events");
    let generated = common::generate(&dir.join("generated.parquet"), 3000, 11);
    std::fs::create_dir_all(&events).expect("mkdir");
    std::fs::copy(generated, events.join("a.parquet")).expect("copy");
    let t = |h| ts("2025-06-01", h);
    let cols: Vec<(&str, ArrayRef)> = vec![
        (
            "customer_id",
            Arc::new(StringArray::from(vec![
                None,
                Some(""),
                Some("C0000001"),
                Some("C0000003"),
                Some("C0000003"),
                Some("Z-late"),
            ])),
        ),
        (
            "event_time",
            Arc::new(
                TimestampMicrosecondArray::from(vec![t(1), t(2), t(3), t(4), t(5), t(6)])
                    .with_timezone("UTC"),
            ),
        ),
        (
            "event_type",
            Arc::new(StringArray::from(vec!["purchase"; 6])),
        ),
        (
            "amount",
            Arc::new(Float64Array::from(vec![10.0, 10.0, 5e12, 7.0, 7.0, 3.0])),
        ),
        (
            "order_id",
            Arc::new(StringArray::from(vec![
                Some("b1"),
                Some("b2"),
                Some("b3"),
                Some("dup"),
                Some("dup"),
                Some("b6"),
            ])),
        ),
        ("channel", Arc::new(StringArray::from(vec!["web"; 6]))),
    ];
    common::write(&events.join("b.parquet"), cols);
    events
}

/// Runs `run` with `args`; returns the output folder and stderr (JSON log).
fn run(dir: &Path, name: &str, events: &Path, args: &[&str]) -> (PathBuf, String) {
    let out = dir.join(name);
    let o = bin()
        .args(["--log-format", "json", "run", "--as-of", AS_OF, "--events"])
        .arg(events)
        .arg("--out")
        .arg(&out)
        .args(args)
        .output()
        .expect("run");
    let log = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(0), "{args:?}: {log}");
    (out, log)
}

/// Every column of a table but the run's identity (`run_id`, `model_version`), which names
/// the config it ran with.
fn columns(out: &Path, table: &str) -> BTreeMap<String, Vec<String>> {
    let mut cols: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for b in read(&common::table_file(out, table, AS_OF)) {
        for (f, c) in b.schema().fields().iter().zip(b.columns()) {
            if f.name() == "run_id" || f.name() == "model_version" {
                continue;
            }
            let text =
                arrow_cast::display::ArrayFormatter::try_new(c.as_ref(), &Default::default())
                    .expect("formatter");
            let col = cols.entry(f.name().clone()).or_default();
            for i in 0..c.len() {
                col.push(text.value(i).to_string());
            }
        }
    }
    cols
}

/// (customer_id, reason) of every rejected row, sorted (shards keep them shard by shard).
fn rejects(out: &Path) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    for b in read(&common::table_file(out, "rejects", AS_OF)) {
        let id = b
            .column_by_name("customer_id")
            .expect("id")
            .as_string::<i32>();
        let reason = b
            .column_by_name("reason")
            .expect("reason")
            .as_string::<i32>();
        for i in 0..b.num_rows() {
            rows.push((id.value(i).to_string(), reason.value(i).to_string()));
        }
    }
    rows.sort();
    rows
}

fn metrics(out: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(common::run_dir(out, AS_OF).join("metrics.json")).expect("metrics");
    let mut m: serde_json::Value = serde_json::from_str(&text).expect("json");
    m["run_id"] = serde_json::Value::Null;
    m
}

/// The `shards` of the log's "model inputs" line.
fn shards_logged(log: &str) -> u64 {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["stage"] == "model inputs")
        .and_then(|v| v["shards"].as_u64())
        .expect("a model inputs line with shards")
}

#[test]
fn sharded_runs_score_count_and_reject_exactly_as_one_pass() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = input(dir.path());
    let (one, log1) = run(dir.path(), "one", &events, &[]);
    assert_eq!(shards_logged(&log1), 1);
    let config = dir.path().join("shards.toml");
    std::fs::write(&config, "[run]\nshards = 3\n").expect("config");
    let (three, log3) = run(
        dir.path(),
        "three",
        &events,
        &["--config", config.to_str().expect("utf-8")],
    );
    assert_eq!(shards_logged(&log3), 3);
    // A budget that leaves room for a third of the histories: three shards, from the budget.
    let footer_rows: u64 = std::fs::read_dir(&events)
        .expect("dir")
        .map(|e| {
            let f = std::fs::File::open(e.expect("entry").path()).expect("open");
            parquet::file::reader::SerializedFileReader::new(f)
                .map(|r| {
                    use parquet::file::reader::FileReader;
                    r.metadata().file_metadata().num_rows() as u64
                })
                .expect("footer")
        })
        .sum();
    let limit = SCAN_FIXED_BYTES
        + footer_rows * (LATEST_BYTES_PER_ROW + SAMPLE_BYTES_PER_ROW)
        + (footer_rows * HISTORY_BYTES_PER_ROW).div_ceil(3)
        + 1;
    let (budget, log_b) = run(
        dir.path(),
        "budget",
        &events,
        &["--memory-limit", &limit.to_string()],
    );
    assert_eq!(shards_logged(&log_b), 3);
    for sharded in [&three, &budget] {
        for table in ["scores", "features"] {
            assert_eq!(columns(&one, table), columns(sharded, table), "{table}");
        }
        assert_eq!(metrics(&one), metrics(sharded));
        assert_eq!(rejects(&one), rejects(sharded));
    }
    // The bad rows are rejected once each, whichever shard their customer falls in.
    let m = metrics(&one);
    assert_eq!(m["counts"]["rows_rejected"], 4, "{}", m["counts"]);
    assert_eq!(
        rejects(&one),
        vec![
            ("".to_string(), "empty_customer_id".to_string()),
            ("".to_string(), "null_customer_id".to_string()),
            ("C0000001".to_string(), "amount_out_of_range".to_string()),
            ("C0000003".to_string(), "duplicate_key".to_string()),
        ]
    );
    assert_eq!(m["counts"]["rows_read"], footer_rows);
}

#[test]
fn the_budget_gives_the_shard_count_cuts_the_samples_or_refuses() {
    let rows = 10_000_000u64;
    let all = |shards| ShardPlan {
        shards,
        train_fraction: None,
    };
    assert_eq!(shards_for(rows, None, 0).expect("no budget"), all(1));
    assert_eq!(shards_for(rows, None, 7).expect("forced"), all(7));
    assert_eq!(
        shards_for(rows, None, 10_000).expect("capped"),
        all(MAX_SHARDS)
    );
    assert_eq!(
        shards_for(rows, Some(u64::MAX / 2), 0).expect("ample"),
        all(1)
    );
    let need = SCAN_FIXED_BYTES + rows * (LATEST_BYTES_PER_ROW + SAMPLE_BYTES_PER_ROW);
    let histories = rows * HISTORY_BYTES_PER_ROW;
    assert_eq!(
        shards_for(rows, Some(need + histories / 4), 0).expect("4"),
        all(4)
    );
    assert_eq!(
        shards_for(rows, Some(need + histories / 4 - 1), 0).expect("5"),
        all(5)
    );
    // Not even the samples of every customer fit: a quarter of the budget for one shard's
    // histories, the rest beside the as-of table for a share of the samples.
    let limit = need - 1;
    let avail = limit - SCAN_FIXED_BYTES;
    let shards = histories.div_ceil(avail / 4);
    let left = avail - histories.div_ceil(shards) - rows * LATEST_BYTES_PER_ROW;
    let cut = shards_for(rows, Some(limit), 0).expect("cut");
    assert_eq!(cut.shards as u64, shards);
    let f = cut.train_fraction.expect("a sample");
    assert!(
        (f - left as f64 / (rows * SAMPLE_BYTES_PER_ROW) as f64).abs() < 1e-12,
        "{f}"
    );
    assert!(f > 0.0 && f < 1.0, "{f}");
    let small = SCAN_FIXED_BYTES + rows * LATEST_BYTES_PER_ROW;
    let e = shards_for(rows, Some(small), 0).expect_err("no room");
    assert_eq!(
        e.to_string(),
        format!(
            "--memory-limit {} MiB is too small for 10000000 input rows: the scan needs ~160 MiB \
             and the as-of table ~{} MiB besides the histories (~{} MiB, in at most 256 shards) \
             and the training samples",
            small >> 20,
            (rows * LATEST_BYTES_PER_ROW) >> 20,
            histories >> 20
        )
    );
}

#[test]
fn a_memory_limit_that_is_not_a_size_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tmp");
    for (value, code) in [("4 parsecs", 2), ("12MB", 2), ("0.01GB", 2)] {
        let o = bin()
            .args([
                "run",
                "--events",
                "none.parquet",
                "--memory-limit",
                value,
                "--out",
            ])
            .arg(dir.path().join("out"))
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{value}: {stderr}");
        assert_eq!(
            stderr.trim_end(),
            format!(
                "churnclv: error: --memory-limit: invalid memory limit '{value}': expected bytes \
                 with a unit like 4GB, 512MB or 2GiB (at least 64MiB)"
            ),
            "{value}"
        );
    }
}
