//! `churnclv run` end to end on a hand-made history whose features and labels are known.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema};
use common::{bin, ts, write};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const DAY: i64 = 86_400_000_000;

/// Customer `c<i>` buys every `5 + i % 40` days from day `i % 30` until day `60 + (7 i) % 330`,
/// spending `10 + i % 7`; one page view the day after each purchase. Plus a browse-only
/// customer and two bad rows. Day 0 = 2023-01-01; as-of = day 400 (2024-02-05).
fn fixture(dir: &Path) -> PathBuf {
    let mut ids: Vec<Option<String>> = Vec::new();
    let mut times = Vec::new();
    let mut kinds = Vec::new();
    let mut amounts = Vec::new();
    let day0 = ts("2023-01-01", 0);
    for i in 0..300i64 {
        let period = 5 + i % 40;
        let stop = 60 + (7 * i) % 330;
        let mut d = i % 30;
        while d < stop.min(400) {
            for (kind, offset, amount) in [
                ("purchase", 10, Some((10 + i % 7) as f64)),
                ("page_view", 24 + 10, None),
            ] {
                let t = day0 + d * DAY + offset * 3_600_000_000;
                if t < day0 + 400 * DAY {
                    ids.push(Some(format!("c{i:03}")));
                    times.push(t);
                    kinds.push(kind);
                    amounts.push(amount);
                }
            }
            d += period;
        }
    }
    ids.push(Some("zz-browser".into()));
    times.push(day0 + 399 * DAY);
    kinds.push("page_view");
    amounts.push(None);
    ids.push(None);
    times.push(day0 + 10 * DAY);
    kinds.push("purchase");
    amounts.push(Some(5.0));
    ids.push(Some("c000".into()));
    times.push(day0 + 11 * DAY);
    kinds.push("purchase");
    amounts.push(Some(f64::NAN));
    let path = dir.join("events.parquet");
    write(
        &path,
        vec![
            ("customer_id", Arc::new(StringArray::from(ids)) as ArrayRef),
            (
                "event_time",
                Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
            ),
            ("event_type", Arc::new(StringArray::from(kinds))),
            ("amount", Arc::new(Float64Array::from(amounts))),
        ],
    );
    path
}

fn read_parquet(path: &Path) -> (Arc<Schema>, Vec<RecordBatch>) {
    let f = std::fs::File::open(path).expect("open");
    let b = ParquetRecordBatchReaderBuilder::try_new(f).expect("parquet");
    let schema = b.schema().clone();
    let batches = b
        .build()
        .expect("reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("read");
    (schema, batches)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
}

fn run(events: &Path, out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    bin()
        .args([
            "run",
            "--quiet",
            "--as-of",
            "2024-02-05",
            "--horizon",
            "90d",
            "--events",
        ])
        .arg(events)
        .arg("--out")
        .arg(out)
        .args(extra)
        .assert()
}

#[test]
fn publishes_a_complete_partition_with_known_values() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = fixture(dir.path());
    let out = dir.path().join("out");
    let assert = run(&events, &out, &[]).success();
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).to_string();
    let part = common::run_dir(&out, "2024-02-05");
    assert!(
        stdout.starts_with(&format!("published {}\n", part.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains("customers scored  301 (300 with a churn probability)"),
        "{stdout}"
    );

    // Each table in its own folder, hive-partitioned by as-of; the run's files beside them.
    let ls = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("ls")
            .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        ls(&part),
        [
            ".churnclv-partition",
            "_SUCCESS",
            "manifest.json",
            "metrics.json",
            "model.json",
            "report.html",
        ]
    );
    for table in ["scores", "features", "rejects"] {
        assert_eq!(
            ls(&common::table(&out, table, "2024-02-05")),
            [
                ".churnclv-partition".to_string(),
                format!("{table}.parquet")
            ]
        );
        assert_eq!(ls(&out.join(table)), ["as_of=2024-02-05"]);
    }
    assert_eq!(ls(&out.join("runs")), ["as_of=2024-02-05"]);
    let page = std::fs::read_to_string(part.join("report.html")).expect("report");
    assert_eq!(
        page.matches("<svg").count(),
        10,
        "ROC, calibration, gains, value deciles, coefficients; five night-over-night trends"
    );
    assert!(page.contains("<td>vip</td>") && page.contains("out_of_time"));
    let mut top: Vec<String> = std::fs::read_dir(&out)
        .expect("ls")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(
        top,
        [".churnclv.lock", "features", "rejects", "runs", "scores"]
    );

    // Exact schema (`as_of` is in the path only).
    let (schema, batches) = read_parquet(&common::table_file(&out, "scores", "2024-02-05"));
    let nullable = |n: &str| {
        !matches!(
            n,
            "customer_id"
                | "frequency"
                | "monetary_total"
                | "tenure_days"
                | "lifecycle_stage"
                | "engagement_tier"
                | "next_best_action"
                | "model_version"
                | "run_id"
        )
    };
    let spec = [
        ("customer_id", DataType::Utf8),
        ("recency_days", DataType::Float64),
        ("frequency", DataType::Int64),
        ("monetary_total", DataType::Float64),
        ("avg_order_value", DataType::Float64),
        ("tenure_days", DataType::Float64),
        ("r_score", DataType::Int64),
        ("f_score", DataType::Int64),
        ("m_score", DataType::Int64),
        ("rfm_segment", DataType::Utf8),
        ("lifecycle_stage", DataType::Utf8),
        ("churn_probability", DataType::Float64),
        ("churn_risk", DataType::Utf8),
        ("p_alive", DataType::Float64),
        ("expected_purchases", DataType::Float64),
        ("expected_order_value", DataType::Float64),
        ("clv", DataType::Float64),
        ("clv_decile", DataType::Int64),
        ("engagement_tier", DataType::Utf8),
        ("next_best_action", DataType::Utf8),
        ("churn_reason_1", DataType::Utf8),
        ("churn_reason_2", DataType::Utf8),
        ("churn_reason_3", DataType::Utf8),
        ("model_version", DataType::Utf8),
        ("run_id", DataType::Utf8),
    ];
    let want = Schema::new(
        spec.iter()
            .map(|(n, t)| Field::new(*n, t.clone(), nullable(n)))
            .collect::<Vec<_>>(),
    );
    assert_eq!(schema.fields(), want.fields());
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 301);
    let b = &batches[0];
    let id = b.column(0).as_string::<i32>();
    let col = |name: &str| b.column(schema.index_of(name).expect("column"));
    let recency = col("recency_days").as_primitive::<Float64Type>();
    let freq = col("frequency").as_primitive::<Int64Type>();
    let money = col("monetary_total").as_primitive::<Float64Type>();
    let p = col("churn_probability").as_primitive::<Float64Type>();

    // c007: period 12, purchases on days 7, 19, … while < 60 + 49 = 109 → 7..103: 9 purchases,
    // last on day 103 at 10:00 → recency 400 − 103 − 10/24 days; spend 9 × (10 + 0).
    let i = (0..b.num_rows())
        .find(|&i| id.value(i) == "c007")
        .expect("c007");
    assert!(
        (recency.value(i) - (297.0 - 10.0 / 24.0)).abs() < 1e-9,
        "{}",
        recency.value(i)
    );
    assert_eq!(freq.value(i), 8);
    assert_eq!(money.value(i), 90.0);
    assert!(p.value(i) > 0.0 && p.value(i) < 1.0);
    // c000 buys every 5 days from day 0 while < 60: 12 purchase days, 12 × 10 spent. Its extra
    // NaN-amount purchase on day 11 is rejected, so it changes nothing.
    let j = (0..b.num_rows())
        .find(|&i| id.value(i) == "c000")
        .expect("c000");
    assert_eq!(freq.value(j), 11);
    assert_eq!(money.value(j), 120.0);
    // BTYD outputs: P(alive) in [0, 1], expected purchases and order values. On the
    // validation window the Tweedie spend GLM has the lowest deviance, but with fewer than
    // 5,000 validation customers BTYD × Gamma-Gamma stays the value champion (a champion
    // switching family between nights would move every CLV), so `clv` is BTYD's.
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(part.join("metrics.json")).expect("metrics"))
            .expect("json");
    let selection = &metrics["value"]["selection"];
    assert_eq!(selection["chosen"], "btyd_gamma_gamma");
    let reason = selection["reason"].as_str().expect("reason");
    assert!(
        reason.ends_with("validation customers (< 5000): BTYD x Gamma-Gamma kept; tweedie_glm had the lowest deviance"),
        "{reason}"
    );
    let alive = col("p_alive").as_primitive::<Float64Type>();
    let expected = col("expected_purchases").as_primitive::<Float64Type>();
    let aov = col("expected_order_value").as_primitive::<Float64Type>();
    let clv = col("clv").as_primitive::<Float64Type>();
    for r in 0..b.num_rows() - 1 {
        assert!(
            (0.0..=1.0).contains(&alive.value(r)),
            "p_alive {}",
            alive.value(r)
        );
        assert!(expected.value(r) >= 0.0 && aov.value(r) > 0.0);
        assert!(
            clv.value(r) > 0.0 && clv.value(r).is_finite(),
            "{}",
            clv.value(r)
        );
    }
    // The browse-only customer is scored, without a churn probability or value.
    let k = b.num_rows() - 1;
    assert_eq!(id.value(k), "zz-browser");
    assert!(recency.is_null(k) && p.is_null(k));
    assert!(alive.is_null(k) && clv.is_null(k));
    let text = |name: &str, i: usize| {
        let a = col(name).as_string::<i32>();
        (!a.is_null(i)).then(|| a.value(i).to_string())
    };
    // The browser: a prospect, first seen the day before as-of → nurture; no RFM segment.
    assert_eq!(text("lifecycle_stage", k).as_deref(), Some("prospect"));
    assert_eq!(text("engagement_tier", k).as_deref(), Some("nurture"));
    assert_eq!(
        text("next_best_action", k).as_deref(),
        Some("onboarding_series")
    );
    assert_eq!(
        (text("rfm_segment", k), text("churn_risk", k)),
        (None, None)
    );
    // c007 stopped buying on day 103 of 400: lapsed, high risk.
    assert_eq!(text("lifecycle_stage", i).as_deref(), Some("lapsed"));
    assert_eq!(text("churn_risk", i).as_deref(), Some("high"));
    assert!(matches!(
        text("engagement_tier", i).as_deref(),
        Some("win_back" | "proactive_retention" | "vip")
    ));
    // Exactly one tier per customer; the VIPs are the top 5% by CLV.
    let tiers: Vec<String> = (0..b.num_rows())
        .map(|r| text("engagement_tier", r).unwrap_or_default())
        .collect();
    let vip: Vec<usize> = (0..b.num_rows()).filter(|&r| tiers[r] == "vip").collect();
    assert_eq!(vip.len(), 15); // round(5% of 300 buyers)
    let min_vip = vip
        .iter()
        .map(|&r| clv.value(r))
        .fold(f64::INFINITY, f64::min);
    let others_above = (0..b.num_rows() - 1)
        .filter(|r| !vip.contains(r) && clv.value(*r) > min_vip)
        .count();
    assert_eq!(others_above, 0);
    let version = text("model_version", 0).unwrap_or_default();
    assert!(version.starts_with("churnclv-0.1.0+20240205-"), "{version}");
    assert_eq!(freq.value(k), 0);

    // Metrics: out of time, the model beats chance and the recency baseline is reported.
    let m = json(&part.join("metrics.json"));
    assert_eq!(m["evaluation"]["scheme"], "out_of_time");
    assert_eq!(m["evaluation"]["train_cutoff"], "2023-08-09");
    assert_eq!(m["evaluation"]["eval_cutoff"], "2023-11-07");
    let auc = m["churn"]["model"]["roc_auc"].as_f64().expect("auc");
    assert!(auc > 0.8, "auc {auc}");
    // L2 chosen by time-ordered validation: the candidate with the lowest validation log loss.
    let sel = &m["evaluation"]["alpha_selection"];
    assert_eq!(sel["scheme"], "time_ordered");
    let grid: Vec<(f64, f64)> = sel["grid"]
        .as_array()
        .expect("grid")
        .iter()
        .map(|g| {
            (
                g[0].as_f64().unwrap_or(f64::NAN),
                g[1].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    assert_eq!(
        grid.iter().map(|g| g.0).collect::<Vec<_>>(),
        [0.1, 1.0, 10.0, 100.0, 1000.0]
    );
    let best = grid
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("best");
    assert_eq!(sel["chosen"].as_f64(), Some(best.0));
    assert!(
        m["churn"]["baseline"]["roc_auc"]
            .as_f64()
            .expect("baseline")
            > 0.5
    );

    let tier_total: u64 = m["tiers"]
        .as_object()
        .expect("tiers")
        .values()
        .map(|t| t["customers"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(tier_total, 301);
    assert_eq!(m["tiers"]["vip"]["customers"], 15);
    // KPIs from the fixture's formula: customer i buys (10 + i % 7) every 5 + i % 40 days from
    // day i % 30 while before day 60 + 7i % 330.
    let (mut repeaters, mut purchases, mut spend) = (0u32, 0u32, 0.0);
    for i in 0..300u32 {
        let days: Vec<u32> = (0..)
            .map(|k| i % 30 + k * (5 + i % 40))
            .take_while(|&d| d < (60 + (7 * i) % 330).min(400))
            .collect();
        repeaters += u32::from(days.len() >= 2);
        purchases += days.len() as u32;
        spend += days.len() as f64 * f64::from(10 + i % 7);
    }
    let k = &m["kpis"]["run"];
    assert_eq!(k["customers"], 301);
    assert_eq!(k["customers_by_lifecycle_stage"]["prospect"], 1);
    let close =
        |v: &serde_json::Value, want: f64| (v.as_f64().unwrap_or(f64::NAN) - want).abs() < 1e-9;
    assert!(
        close(&k["repeat_purchase_rate"], f64::from(repeaters) / 300.0),
        "{}",
        k["repeat_purchase_rate"]
    );
    assert!(
        close(&k["average_order_value"], spend / f64::from(purchases)),
        "{}",
        k["average_order_value"]
    );
    assert!(
        k["cart_abandonment_rate"].is_null(),
        "no cart adds in the fixture"
    );
    let tiers_sum: u64 = m["kpis"]["by_tier"]
        .as_object()
        .expect("by tier")
        .values()
        .map(|t| t["customers"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(tiers_sum, 301);

    // Manifest: every row accounted for, checksums match the files.
    let man = json(&part.join("manifest.json"));
    let rows = &man["rows"];
    let read = rows["rows_read"].as_u64().expect("read");
    assert_eq!(
        read,
        rows["rows_used"].as_u64().expect("u") + rows["rows_rejected"].as_u64().expect("r")
    );
    assert_eq!(rows["rows_rejected"], 2);
    assert_eq!(rows["rejected_by_reason"]["null_customer_id"], 1);
    assert_eq!(rows["rejected_by_reason"]["non_finite_amount"], 1);
    for o in man["outputs"].as_array().expect("outputs") {
        let name = o["file"].as_str().expect("file");
        // Paths relative to DIR.
        let bytes = std::fs::read(out.join(name)).expect("output");
        assert_eq!(o["bytes"].as_u64(), Some(bytes.len() as u64), "{name}");
        assert_eq!(o["sha256"].as_str().map(str::len), Some(64));
    }
    let listed: Vec<&str> = man["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .map(|o| o["file"].as_str().expect("file"))
        .collect();
    assert_eq!(
        listed,
        [
            "scores/as_of=2024-02-05/scores.parquet",
            "features/as_of=2024-02-05/features.parquet",
            "rejects/as_of=2024-02-05/rejects.parquet",
            "runs/as_of=2024-02-05/metrics.json",
            "runs/as_of=2024-02-05/model.json",
            "runs/as_of=2024-02-05/report.html",
        ]
    );
    let tables: Vec<&String> = man["schema"].as_object().expect("schema").keys().collect();
    assert_eq!(tables, ["features", "rejects", "scores"]);
    let (_, rejects) = read_parquet(&common::table_file(&out, "rejects", "2024-02-05"));
    assert_eq!(rejects.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    let reasons: Vec<&str> = (0..2)
        .map(|i| rejects[0].column(2).as_string::<i32>().value(i))
        .collect();
    assert_eq!(reasons, ["null_customer_id", "non_finite_amount"]);
}

#[test]
fn rerun_is_byte_identical_and_quality_gate_publishes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = fixture(dir.path());
    let out = dir.path().join("out");
    run(&events, &out, &[]).success();
    let run_part = common::run_dir(&out, "2024-02-05");
    let files = [
        common::table_file(&out, "scores", "2024-02-05"),
        common::table_file(&out, "features", "2024-02-05"),
        common::table_file(&out, "rejects", "2024-02-05"),
        run_part.join("metrics.json"),
        run_part.join("model.json"),
    ];
    let first: Vec<Vec<u8>> = files
        .iter()
        .map(|p| std::fs::read(p).expect("read"))
        .collect();
    run(&events, &out, &[]).success();
    let second: Vec<Vec<u8>> = files
        .iter()
        .map(|p| std::fs::read(p).expect("read"))
        .collect();
    assert!(first == second, "rerun changed an output");

    // A gate the model cannot pass: exit 3, the previous partition stays as it was.
    let assert = run(&events, &out, &["--min-auc", "0.9999"]).code(3);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(
        stderr.starts_with("churnclv: error: quality gate failed: churn ROC-AUC 0."),
        "{stderr}"
    );
    assert!(
        stderr.ends_with(" is below --min-auc 0.9999; nothing published\n"),
        "{stderr}"
    );
    let kept: Vec<Vec<u8>> = files
        .iter()
        .map(|p| std::fs::read(p).expect("read"))
        .collect();
    assert!(kept == first, "a refused run changed an output");
    assert!(run_part.join("_SUCCESS").is_file());
    let mut top: Vec<String> = std::fs::read_dir(&out)
        .expect("ls")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(
        top,
        [".churnclv.lock", "features", "rejects", "runs", "scores"]
    );
    for t in ["features", "rejects", "runs", "scores"] {
        assert_eq!(common::visible(&out.join(t)), ["as_of=2024-02-05"]);
        assert_eq!(
            std::fs::read_dir(out.join(t)).expect("ls").count(),
            1,
            "{t}: nothing left over"
        );
    }
}

#[test]
fn validate_summarises_the_input() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = fixture(dir.path());
    let assert = bin()
        .args(["validate", "--json", "--as-of", "2024-02-05", "--events"])
        .arg(&events)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).expect("json");
    let read = v["rows_read"].as_u64().expect("read");
    assert_eq!(read, v["rows_used"].as_u64().expect("used") + 2);
    assert_eq!(v["customers"], 301);
    assert_eq!(v["rejected_by_reason"]["null_customer_id"], 1);
    assert_eq!(v["first_event"], "2023-01-01T10:00:00Z");
    assert_eq!(v["last_event"], "2024-02-04T00:00:00Z");
    assert_eq!(
        v["event_types"]["purchase"].as_u64().expect("p")
            + v["event_types"]["page_view"].as_u64().expect("v"),
        v["rows_used"].as_u64().expect("used")
    );
}

#[test]
fn score_with_the_saved_model_reproduces_the_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = fixture(dir.path());
    let out = dir.path().join("out");
    let models = dir.path().join("models");
    run(
        &events,
        &out,
        &["--save-model", &models.display().to_string()],
    )
    .success();
    let part = common::run_dir(&out, "2024-02-05");
    let model = json(&part.join("model.json"));
    let run_id = model["run_id"].as_str().expect("run id").to_string();
    assert_eq!(
        std::fs::read(models.join(&run_id).join("model.json")).expect("saved copy"),
        std::fs::read(part.join("model.json")).expect("model")
    );
    assert_eq!(model["horizon_days"], 90);
    assert_eq!(model["trained_on"]["labels_from"], "2023-11-07");
    assert_eq!(model["churn"]["features"][0]["name"], "recency_days");
    assert!(model["value"]["transactions"]["params"]["r"]
        .as_f64()
        .is_some());

    let scored = dir.path().join("scored");
    let assert = bin()
        .args(["score", "--quiet", "--as-of", "2024-02-05", "--events"])
        .arg(&events)
        .arg("--model")
        .arg(part.join("model.json"))
        .arg("--out")
        .arg(&scored)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).to_string();
    assert!(stdout.contains("301 customers scored"), "{stdout}");
    assert!(
        std::fs::read(common::table_file(&out, "features", "2024-02-05")).expect("run")
            == std::fs::read(common::table_file(&scored, "features", "2024-02-05")).expect("score"),
        "features differ between run and score"
    );
    // Every score column equal, but run_id (the scoring run's own id).
    let (schema, a) = read_parquet(&common::table_file(&out, "scores", "2024-02-05"));
    let (_, b) = read_parquet(&common::table_file(&scored, "scores", "2024-02-05"));
    for (j, f) in schema.fields().iter().enumerate() {
        if f.name() != "run_id" {
            assert_eq!(a[0].column(j), b[0].column(j), "{}", f.name());
        }
    }
    // `score` with events publishes the same tables as `run`, and its run partition.
    let again = common::run_dir(&scored, "2024-02-05");
    assert!(again.join("_SUCCESS").exists());
    assert_eq!(
        common::visible(&scored),
        ["features", "rejects", "runs", "scores"]
    );
    assert_eq!(
        common::visible(&again),
        ["_SUCCESS", "manifest.json", "model.json"]
    );

    // A file that is not a model: exit 2, one line naming it.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"hello\": 1}").expect("write");
    let assert = bin()
        .args(["score", "--events"])
        .arg(&events)
        .arg("--model")
        .arg(&bad)
        .arg("--out")
        .arg(&scored)
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(
        err.starts_with(&format!(
            "churnclv: error: {}: not a churnclv model file: missing field",
            bad.display()
        )),
        "{err}"
    );
}

#[test]
fn a_held_lock_stops_a_second_run_and_a_left_over_lock_file_does_not() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = fixture(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let lock = out.join(".churnclv.lock");

    // Held (flock) by a live process, this test, which wrote its pid: exit 2 naming it,
    // nothing published, the lock file left as it was.
    let me = std::process::id();
    std::fs::write(&lock, format!("{me}\n")).expect("lock");
    let held = std::fs::OpenOptions::new()
        .write(true)
        .open(&lock)
        .expect("open");
    rustix::fs::flock(&held, rustix::fs::FlockOperation::NonBlockingLockExclusive).expect("flock");
    let assert = run(&events, &out, &[]).code(2);
    assert_eq!(
        String::from_utf8_lossy(&assert.get_output().stderr),
        format!(
            "churnclv: error: {}: another churnclv run (pid {me}) is writing here (lock file {}); wait for it to finish: the lock is released when that process ends\n",
            out.display(),
            lock.display()
        )
    );
    assert!(!common::published_any(&out));
    assert_eq!(
        std::fs::read_to_string(&lock).expect("lock kept"),
        format!("{me}\n")
    );

    // The same file, no longer locked (its holder ended; the pid in it may even be alive,
    // here this test's): the run proceeds, and leaves the file for the next one.
    drop(held);
    run(&events, &out, &[]).success();
    assert!(common::run_dir(&out, "2024-02-05")
        .join("_SUCCESS")
        .exists());
    let pid = std::fs::read_to_string(&lock).expect("the lock file stays");
    assert!(pid.trim().parse::<u32>().is_ok_and(|p| p != me), "{pid}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = fixture(dir.path());
    let out = dir.path().join("out");
    let assert = bin()
        .args([
            "--log-format",
            "json",
            "run",
            "--as-of",
            "2024-02-05",
            "--events",
        ])
        .arg(&events)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let stages: Vec<&str> = lines.iter().filter_map(|l| l["stage"].as_str()).collect();
    for want in ["plan", "features", "evaluate", "score", "publish"] {
        assert!(stages.contains(&want), "{stages:?}");
    }
    // The stage's summary line (its duplicate pass logs a line of its own before it).
    let features = lines
        .iter()
        .find(|l| l["stage"] == "features" && l.get("rows_read").is_some())
        .expect("features line");
    assert_eq!(features["level"], "INFO");
    assert_eq!(features["rows_rejected"], 2);
    assert!(features["duration_ms"].is_u64());
    // Exactly these keys: ts, level, stage, message and the stage's own fields, flat.
    let mut keys: Vec<&str> = features
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut want = vec![
        "ts",
        "level",
        "stage",
        "message",
        "rows_read",
        "rows_used",
        "rows_rejected",
        "customers",
        "duration_ms",
    ];
    want.sort_unstable();
    assert_eq!(keys, want);
    for line in &lines {
        let ts = line["ts"]
            .as_str()
            .unwrap_or_else(|| panic!("no ts: {line}"));
        assert!(
            chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.ends_with('Z'),
            "{ts}"
        );
        assert!(line.get("timestamp").is_none(), "{line}");
        assert!(
            line["level"].is_string() && line["message"].is_string(),
            "{line}"
        );
    }
}

#[test]
fn no_progress_bar_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = fixture(dir.path());
    let out = dir.path().join("out");
    // Text logs, not --quiet (where a bar would be drawn on a terminal); stderr is a pipe here.
    let assert = bin()
        .args(["run", "--as-of", "2024-02-05", "--events"])
        .arg(&events)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(stderr.contains("published"), "{stderr}");
    assert!(
        !stderr.contains('\r') && !stderr.contains("\x1b["),
        "progress-bar control characters on a piped stderr: {stderr:?}"
    );
}
