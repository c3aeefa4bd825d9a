//! `churnclv generate`: byte-identical files for a seed, a ground-truth sidecar, checked input,
//! and a `make run` sample that shows every engagement tier and lifecycle stage.

use crate::common;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use churnclv::segment::TIERS;
use common::bin;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn generate(dir: &std::path::Path, name: &str, seed: &str) -> (Vec<u8>, Vec<u8>) {
    let out = dir.join(format!("{name}.parquet"));
    bin()
        .args([
            "generate",
            "--customers",
            "500",
            "--days",
            "365",
            "--seed",
            seed,
            "--out",
        ])
        .arg(&out)
        .assert()
        .success();
    (
        std::fs::read(&out).expect("events"),
        std::fs::read(dir.join(format!("{name}.truth.parquet"))).expect("truth"),
    )
}

#[test]
fn same_seed_same_bytes_and_a_truth_sidecar() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = generate(dir.path(), "a", "11");
    let b = generate(dir.path(), "b", "11");
    let c = generate(dir.path(), "c", "12");
    assert!(a == b, "same seed must give byte-identical files");
    assert!(a.0 != c.0, "another seed gives other events");

    let f = std::fs::File::open(dir.path().join("a.truth.parquet")).expect("open");
    let r = ParquetRecordBatchReaderBuilder::try_new(f).expect("parquet");
    let names: Vec<String> = r
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        [
            "customer_id",
            "birth_time",
            "purchase_rate_per_day",
            "dropout_rate_per_day",
            "death_time",
            "alive_at_end",
            "mean_order_value",
            "n_purchases",
            "true_expected_purchases_90d",
            "true_expected_spend_90d"
        ]
    );
    let batches: Vec<_> = r
        .build()
        .expect("reader")
        .collect::<Result<_, _>>()
        .expect("read");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 500);
    let lambda = batches[0].column(2).as_primitive::<Float64Type>();
    assert!(lambda.values().iter().all(|v| v.is_finite() && *v > 0.0));
}

/// Customers simulated in chunks of 7 (72 sorted runs merged) write the bytes of the default
/// (one chunk for 500 customers). A scratch folder left by a killed run and a file of the
/// user's in the output folder are left as they were, and the run leaves nothing of its own
/// but the two files.
#[test]
fn any_chunk_size_writes_the_same_bytes_and_touches_nothing_else() {
    let dir = tempfile::tempdir().expect("tmp");
    let one = generate(dir.path(), "one", "5");
    let out = dir.path().join("many");
    std::fs::create_dir(&out).expect("folder");
    // What `kill -9` leaves: a marked scratch folder with a run in it.
    let killed = out.join(".e.parquet.generate-4000000");
    std::fs::create_dir(&killed).expect("leftover");
    std::fs::write(
        killed.join(".churnclv-partition"),
        "{\"writer\":\"churnclv\",\"run_id\":\"x\"}\n",
    )
    .expect("marker");
    std::fs::write(killed.join("run-00000.bin"), b"half a run").expect("run");
    std::fs::write(out.join("notes.txt"), b"mine").expect("notes");
    let before = listing(&out);
    bin()
        .args([
            "generate",
            "--customers",
            "500",
            "--days",
            "365",
            "--seed",
            "5",
            "--chunk-customers",
            "7",
            "--out",
        ])
        .arg(out.join("e.parquet"))
        .assert()
        .success();
    assert!(std::fs::read(out.join("e.parquet")).expect("events") == one.0);
    assert!(std::fs::read(out.join("e.truth.parquet")).expect("truth") == one.1);
    let mut after = before.clone();
    after.extend(["e.parquet".to_string(), "e.truth.parquet".to_string()]);
    after.sort();
    assert_eq!(listing(&out), after);
    assert_eq!(listing(&killed), [".churnclv-partition", "run-00000.bin"]);
    assert_eq!(
        std::fs::read(killed.join("run-00000.bin")).expect("run"),
        b"half a run"
    );
    assert_eq!(
        std::fs::read(out.join("notes.txt")).expect("notes"),
        b"mine"
    );
}

/// Sorted names in a folder (hidden ones included).
fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn bad_parameters_are_usage_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = bin()
        .args(["generate", "--customers", "0", "--out"])
        .arg(dir.path().join("x.parquet"))
        .assert()
        .code(2);
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stderr),
        "churnclv: error: customers must be between 1 and 50000000, got 0\n"
    );
}

#[test]
fn config_file_maps_columns_and_event_types() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("e.parquet");
    common::write(
        &path,
        vec![
            (
                "uid",
                Arc::new(arrow_array::Int64Array::from(vec![1, 2, 2])) as arrow_array::ArrayRef,
            ),
            (
                "ts",
                Arc::new(arrow_array::Date32Array::from(vec![19000, 19001, 19002])),
            ),
            (
                "what",
                Arc::new(arrow_array::StringArray::from(vec![
                    "ORDER", "order", "wishlist",
                ])),
            ),
        ],
    );
    let cfg = dir.path().join("churnclv.toml");
    std::fs::write(
        &cfg,
        "[columns]\ncustomer_id = \"uid\"\nevent_time = \"ts\"\nevent_type = \"what\"\n\n[event_types]\norder = \"purchase\"\n",
    )
    .expect("config");
    let out = bin()
        .args(["validate", "--json", "--config"])
        .arg(&cfg)
        .arg("--events")
        .arg(&path)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).expect("json");
    assert_eq!(v["customers"], 2);
    assert_eq!(v["event_types"]["purchase"], 2);
    assert_eq!(v["event_types"]["other"], 1);
    assert_eq!(v["unknown_event_types"]["wishlist"], 1);

    std::fs::write(&cfg, "[colums]\ncustomer_id = \"uid\"\n").expect("config");
    let out = bin()
        .args(["validate", "--config"])
        .arg(&cfg)
        .arg("--events")
        .arg(&path)
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        err.starts_with(&format!(
            "churnclv: error: {}: invalid config: unknown field `colums`",
            cfg.display()
        )),
        "{err}"
    );
}

/// The `make run` sample (20,000 customers, seed 42, the job with its defaults) shows every
/// path: all 7 engagement tiers and all 5 lifecycle stages have customers, every generated
/// customer is scored, and `nurture` holds only first-time buyers and prospects.
#[test]
fn the_make_run_sample_fills_every_tier_and_lifecycle_stage() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().expect("tmp");
    let events = dir.path().join("events.parquet");
    bin()
        .args(["generate", "--customers", "20000", "--seed", "42", "--out"])
        .arg(&events)
        .assert()
        .success();
    let out = dir.path().join("out");
    bin()
        .args(["run", "--quiet", "--events"])
        .arg(&events)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    // Default as-of: the day after the last event, the end of the generated period.
    let f = std::fs::File::open(common::table_file(&out, "scores", "2025-12-31")).expect("scores");
    let mut tiers: BTreeMap<String, usize> = BTreeMap::new();
    let mut stages: BTreeMap<String, usize> = BTreeMap::new();
    let mut nurture_stages: BTreeMap<String, usize> = BTreeMap::new();
    let mut rows = 0;
    for b in ParquetRecordBatchReaderBuilder::try_new(f)
        .expect("parquet")
        .build()
        .expect("reader")
    {
        let b = b.expect("batch");
        let s = b.schema();
        let col = |n: &str| b.column(s.index_of(n).expect("column")).as_string::<i32>();
        let (tier, stage) = (col("engagement_tier"), col("lifecycle_stage"));
        for i in 0..b.num_rows() {
            *tiers.entry(tier.value(i).to_string()).or_default() += 1;
            *stages.entry(stage.value(i).to_string()).or_default() += 1;
            if tier.value(i) == "nurture" {
                *nurture_stages
                    .entry(stage.value(i).to_string())
                    .or_default() += 1;
            }
        }
        rows += b.num_rows();
    }
    assert_eq!(
        rows, 20_000,
        "every generated customer has an event, so a score"
    );
    let mut expected_tiers: Vec<&str> = TIERS.iter().map(|t| t.0).collect();
    expected_tiers.sort();
    assert_eq!(
        tiers.keys().map(String::as_str).collect::<Vec<_>>(),
        expected_tiers,
        "tiers {tiers:?}"
    );
    assert_eq!(
        stages.keys().map(String::as_str).collect::<Vec<_>>(),
        ["first_time_buyer", "lapsed", "loyal", "prospect", "repeat"],
        "stages {stages:?}"
    );
    assert!(tiers.values().chain(stages.values()).all(|&n| n > 0));
    // Nurture is first-time buyers and new prospects (374 of 20,000 for this seed): a real
    // share, not everyone, and nobody from another stage.
    let nurture = tiers["nurture"];
    assert!(
        (200..=1_000).contains(&nurture),
        "nurture {nurture} of 20,000"
    );
    assert!(
        nurture_stages
            .keys()
            .all(|s| s == "first_time_buyer" || s == "prospect"),
        "nurture by stage {nurture_stages:?}"
    );
    assert!(nurture <= stages["first_time_buyer"] + stages["prospect"]);
}
