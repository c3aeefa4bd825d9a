//! `run` under a memory budget: the customers in hash shards, one pass over the input each,
//! gathered in id order — the same scores, metrics and row counts as one pass, bad rows
//! counted and kept once, and the budget's shard count and its refusal.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, Float64Array, StringArray, TimestampMicrosecondArray};
use churnclv::stages::shards::{
    shards_for, ShardPlan, HISTORY_BYTES_PER_ROW, LATEST_BYTES_PER_ROW, MAX_SHARDS,
    SAMPLE_BYTES_PER_ROW, SCAN_FIXED_BYTES, SCORE_BYTES_PER_ROW,
};
use common::{bin, ts};

const AS_OF: &str = "2025-12-31";

use crate::common::read_batches as read;

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
    run_at(AS_OF, dir, name, events, args)
}

/// [`run`] as of `as_of`.
fn run_at(as_of: &str, dir: &Path, name: &str, events: &Path, args: &[&str]) -> (PathBuf, String) {
    let out = dir.join(name);
    let o = bin()
        .args(["--log-format", "json", "run", "--as-of", as_of, "--events"])
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

/// The first line of a JSON log that `is` accepts.
fn log_line(log: &str, is: impl Fn(&serde_json::Value) -> bool) -> Option<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| is(v))
}

/// The `shards` of the log's "model inputs" line.
fn shards_logged(log: &str) -> u64 {
    log_line(log, |v| {
        v["stage"] == "model inputs" && v["shards"].is_u64()
    })
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

/// The `slice` of the log's "score" line (`None`: scored whole).
fn slice_logged(log: &str) -> Option<u64> {
    log_line(log, |v| v["stage"] == "score" && v["message"] == "scored").expect("a score line")
        ["slice"]
        .as_u64()
}

/// `run` scoring by slices (the score table never whole: its summary and cut points first,
/// then each slice's rows built with the cuts and streamed into the publisher) writes the
/// same bytes as scoring the whole table: scores.parquet, features.parquet, metrics.json,
/// model.json and report.html. `--score-slice 1000` is rounded up to 1,024: three slices of
/// the ~3,000 customers; a memory budget scores by slices of 65,536.
#[test]
fn runs_scored_by_slices_publish_the_bytes_of_one_score_table() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = input(dir.path());
    // (folder, flags, the slice logged): whole, forced slices of 1,000 (→ 1,024), a budget.
    let cases = [
        ("whole", &[][..], None),
        ("sliced", &["--score-slice", "1000"][..], Some(1024)),
        ("budget", &["--memory-limit", "1GB"][..], Some(65536)),
    ];
    // An earlier run in each folder: the drift check compares with it (tier transitions by
    // customer, the distributions of the scores), from the summary when scored by slices.
    for (name, args, _) in cases {
        let args = [&["--accept-drift"][..], args].concat();
        run_at("2025-11-30", dir.path(), name, &events, &args);
    }
    let outs: Vec<PathBuf> = cases
        .iter()
        .map(|(name, args, slice)| {
            let args = [&["--accept-drift"][..], args].concat();
            let (out, log) = run(dir.path(), name, &events, &args);
            assert_eq!(slice_logged(&log), *slice, "{name}");
            out
        })
        .collect();
    let [whole, sliced, budget] = [&outs[0], &outs[1], &outs[2]];
    let customers = read(&common::table_file(whole, "scores", AS_OF))
        .iter()
        .map(|b| b.num_rows())
        .sum::<usize>();
    assert!(customers > 2 * 1024, "{customers} customers: three slices");
    // Byte for byte (a short message, not the bytes, when they differ).
    let same = |a: &Path, b: &Path, what: &str| {
        let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let (x, y) = (read(a), read(b));
        assert!(
            x == y,
            "{what}: {} ({} bytes) differs from {} ({} bytes)",
            b.display(),
            y.len(),
            a.display(),
            x.len()
        );
    };
    for other in [sliced, budget] {
        for table in ["scores", "features"] {
            same(
                &common::table_file(whole, table, AS_OF),
                &common::table_file(other, table, AS_OF),
                table,
            );
        }
        for file in ["metrics.json", "model.json", "report.html"] {
            same(
                &common::run_dir(whole, AS_OF).join(file),
                &common::run_dir(other, AS_OF).join(file),
                file,
            );
        }
    }
    // The tiers the summary counts are the ones written, row by row.
    let m = metrics(sliced);
    let tiers = &columns(sliced, "scores")["engagement_tier"];
    for (name, t) in m["tiers"].as_object().expect("tiers") {
        let written = tiers.iter().filter(|x| *x == name).count() as u64;
        assert_eq!(t["customers"].as_u64(), Some(written), "{name}");
    }
    assert_eq!(
        m["counts"]["customers_scored"].as_u64(),
        Some(customers as u64)
    );
    // The drift check compared with the earlier run, tier transitions included.
    assert_eq!(
        m["drift"]["reference"]["as_of"], "2025-11-30",
        "{}",
        m["drift"]
    );
    assert!(
        m["drift"]["tiers"]["transitions"].is_object(),
        "{}",
        m["drift"]["tiers"]
    );
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
             and the as-of table ~{} MiB besides the histories (~{} MiB, in at most 256 shards), \
             the training samples and scoring (~{} MiB)",
            small >> 20,
            (rows * LATEST_BYTES_PER_ROW) >> 20,
            histories >> 20,
            (rows * SCORE_BYTES_PER_ROW) >> 20
        )
    );
    // Room for a sample beside one of 256 shards' histories, but not for what scoring holds
    // beside the as-of table (scoring comes after training: it needs no room beside the
    // samples): refused, not a run that exceeds its budget.
    let scoring = rows * SCORE_BYTES_PER_ROW;
    let latest = rows * LATEST_BYTES_PER_ROW;
    assert!(scoring > histories / u64::from(MAX_SHARDS) + 1);
    let tight = SCAN_FIXED_BYTES + latest + scoring - 1;
    let e = shards_for(rows, Some(tight), MAX_SHARDS).expect_err("no room to score");
    assert!(e.to_string().contains("scoring (~19 MiB)"), "{e}");
    assert_eq!(
        shards_for(rows, Some(tight + 1), MAX_SHARDS)
            .expect("room to score")
            .shards,
        MAX_SHARDS
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

/// Training on half the customers (the fallback of a budget too small for every customer's
/// samples) moves the churn coefficients by less than two of their standard errors, keeps the
/// final BTYD fit (on every as-of buyer) as it is, records the share, and still scores every
/// customer.
#[test]
fn a_customer_sample_trains_within_the_standard_errors_of_the_full_fit() {
    use churnclv::plan::{Plan, Request, Source};
    use churnclv::stages::{jobs, shards};
    let dir = tempfile::tempdir().expect("tmp");
    let events = common::generate(&dir.path().join("events.parquet"), 20_000, 3);
    let plan = Plan::build(&Request {
        source: Source::Events(events.display().to_string()),
        as_of: Some((AS_OF.into(), "--as-of")),
        as_of_from_data: true,
        ..Request::default()
    })
    .expect("plan");
    let c = plan.cutoffs().expect("cutoffs");
    let fit = |how: ShardPlan| {
        let read = plan.read_options(churnclv::time::date_us(c.as_of));
        let inputs = shards::model_inputs(
            plan.events().expect("events"),
            &read,
            &jobs::tables(&c),
            how,
        )
        .expect("inputs");
        jobs::model_stages(inputs, &plan, c, "t", &mut |_| {}).expect("stages")
    };
    let full = fit(ShardPlan {
        shards: 1,
        train_fraction: None,
    });
    let half = fit(ShardPlan {
        shards: 2,
        train_fraction: Some(0.5),
    });
    let sample = half
        .trained
        .evaluation
        .customer_sample
        .as_ref()
        .expect("recorded");
    assert_eq!(sample.fraction, 0.5);
    assert!(full.trained.evaluation.customer_sample.is_none());
    let (n_full, n_half) = (
        full.trained.evaluation.eval_customers as f64,
        half.trained.evaluation.eval_customers as f64,
    );
    assert!((n_half / n_full - 0.5).abs() < 0.02, "{n_half} of {n_full}");
    assert_eq!(
        full.scored.summary().tier.len(),
        half.scored.summary().tier.len()
    );
    assert_eq!(
        full.trained.value.transactions,
        half.trained.value.transactions
    );
    // Coefficients per unit of the transformed feature (each fit standardises with its own
    // spread), against the full fit's standard errors in the same unit.
    let (f, h) = (&full.trained.churn, &half.trained.churn);
    let se = f.std_errors.as_ref().expect("standard errors");
    let mut worst = 0.0f64;
    for (j, s) in f.features.iter().enumerate() {
        let k = h
            .features
            .iter()
            .position(|x| x.name == s.name)
            .expect("same features");
        let (a, b) = (
            f.coefficients[j] / s.std,
            h.coefficients[k] / h.features[k].std,
        );
        let z = (a - b).abs() / (se[&s.name] / s.std);
        assert!(z < 2.0, "{}: {a} vs {b} is {z:.2} standard errors", s.name);
        worst = worst.max(z);
    }
    assert!(worst > 0.0, "the sample changed nothing");
}
