//! Scoring in shards with the binary's own two-pass path (no Spark): the as-of feature table
//! split into customer buckets; `score --raw` per bucket, `cuts` over the raw files, `score
//! --cuts --part` per bucket, `publish` — gives `run`'s score table exactly, every column
//! customer by customer (ties at the cut points included), and refuses parts that do not
//! cover the features exactly once or were made with other cuts.

use crate::common;

use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::{Array, BooleanArray, RecordBatch};
use churnclv::io::output::{write_parquet, ParquetOptions};
use common::{bin, read_batches, run_dir, table_file};

const AS_OF: &str = "2025-12-01";
const BUCKETS: u32 = 5;

fn one(path: &Path) -> RecordBatch {
    let batches = read_batches(path);
    let schema = batches[0].schema();
    arrow_select::concat::concat_batches(&schema, &batches).expect("concat")
}

/// `run`, then the as-of feature table split into BUCKETS files by a hash of the id (written
/// without churnclv's cutoff metadata, as an engine writes them). Returns (run out, buckets).
fn setup(dir: &Path) -> (PathBuf, Vec<PathBuf>) {
    let events = common::generate(&dir.join("events.parquet"), 2000, 11);
    let single = dir.join("single");
    bin()
        .args(["--quiet", "run", "--as-of", AS_OF, "--events"])
        .arg(&events)
        .arg("--out")
        .arg(&single)
        .assert()
        .success();
    let table = one(&table_file(&single, "features", AS_OF));
    let ids = table.column(0).as_string::<i32>();
    let bucket = |i: usize| {
        ids.value(i)
            .bytes()
            .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
            % BUCKETS
    };
    let files = (0..BUCKETS)
        .map(|k| {
            let keep =
                BooleanArray::from((0..ids.len()).map(|i| bucket(i) == k).collect::<Vec<_>>());
            let part = arrow_select::filter::filter_record_batch(&table, &keep).expect("filter");
            let path = dir.join(format!("features/bucket={k}/part-0.parquet"));
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            write_parquet(&path, part.schema(), &[part], &ParquetOptions::default())
                .expect("bucket");
            path
        })
        .collect();
    (single, files)
}

fn model(single: &Path) -> PathBuf {
    run_dir(single, AS_OF).join("model.json")
}

/// Pass 1 and the cuts: writes DIR/raw/k.parquet and DIR/cuts.json.
fn raw_and_cuts(dir: &Path, single: &Path, buckets: &[PathBuf]) -> PathBuf {
    for (k, b) in buckets.iter().enumerate() {
        bin()
            .args(["--quiet", "score", "--as-of", AS_OF, "--features"])
            .arg(b)
            .arg("--model")
            .arg(model(single))
            .arg("--raw")
            .arg(dir.join(format!("raw/{k}.parquet")))
            .assert()
            .success();
    }
    let cuts = dir.join("cuts.json");
    bin()
        .args(["--quiet", "cuts", "--raw"])
        .arg(dir.join("raw"))
        .arg("--out")
        .arg(&cuts)
        .assert()
        .success();
    cuts
}

fn part(
    dir: &Path,
    single: &Path,
    bucket: &Path,
    cuts: &Path,
    k: usize,
) -> assert_cmd::assert::Assert {
    bin()
        .args(["--quiet", "score", "--as-of", AS_OF, "--features"])
        .arg(bucket)
        .arg("--model")
        .arg(model(single))
        .arg("--cuts")
        .arg(cuts)
        .arg("--part")
        .arg(dir.join(format!("parts/{k}.parquet")))
        .assert()
}

fn publish(dir: &Path, single: &Path, out: &Path) -> assert_cmd::assert::Assert {
    bin()
        .args(["--quiet", "publish", "--as-of", AS_OF, "--features"])
        .arg(dir.join("features"))
        .arg("--scores")
        .arg(dir.join("parts"))
        .arg("--model")
        .arg(model(single))
        .arg("--out")
        .arg(out)
        .assert()
}

#[test]
fn buckets_scored_in_two_passes_equal_runs_scores_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (single, buckets) = setup(dir.path());
    let cuts = raw_and_cuts(dir.path(), &single, &buckets);
    for (k, b) in buckets.iter().enumerate() {
        part(dir.path(), &single, b, &cuts, k).success();
    }
    let out = dir.path().join("sharded");
    publish(dir.path(), &single, &out).success();

    let want = one(&table_file(&single, "scores", AS_OF));
    let got = one(&table_file(&out, "scores", AS_OF));
    assert_eq!(got.schema(), want.schema());
    assert_eq!(got.num_rows(), want.num_rows());
    for (f, (a, b)) in want
        .schema()
        .fields()
        .iter()
        .zip(want.columns().iter().zip(got.columns()))
    {
        if f.name() == "run_id" {
            continue; // the publishing run's id, checked below
        }
        // Arrays compare value for value (floats bitwise-equal or both null).
        assert_eq!(a.to_data(), b.to_data(), "column {}", f.name());
    }
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model(&single)).expect("model")).expect("json");
    let run_id = format!(
        "20251201-score-{}",
        saved["run_id"].as_str().expect("run id")
    );
    let ids = got
        .column_by_name("run_id")
        .expect("run_id")
        .as_string::<i32>();
    assert!((0..ids.len()).all(|i| ids.value(i) == run_id));
    // The features partition is the run's; the run partition is committed.
    assert_eq!(
        one(&table_file(&out, "features", AS_OF)),
        one(&table_file(&single, "features", AS_OF))
    );
    assert!(run_dir(&out, AS_OF).join("_SUCCESS").is_file());
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(run_dir(&out, AS_OF).join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    assert_eq!(manifest["command"], "publish");
    assert_eq!(
        manifest["inputs"].as_array().map(Vec::len),
        Some(BUCKETS as usize)
    );

    // The data has ties at cut points: customers with the same repeat purchases in two
    // f_score bins, and they fell identically on both paths (compared above).
    let freq = want
        .column_by_name("frequency")
        .expect("f")
        .as_primitive::<arrow_array::types::Int64Type>();
    let fs = want
        .column_by_name("f_score")
        .expect("fs")
        .as_primitive::<arrow_array::types::Int64Type>();
    let split = (0..want.num_rows()).any(|i| {
        (0..want.num_rows()).any(|j| {
            fs.is_valid(i)
                && fs.is_valid(j)
                && freq.value(i) == freq.value(j)
                && fs.value(i) != fs.value(j)
        })
    });
    assert!(
        split,
        "no tie at an f_score cut point: the test data lost its point"
    );
}

#[test]
fn publish_refuses_parts_that_miss_a_customer_or_mix_cuts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (single, buckets) = setup(dir.path());
    let cuts = raw_and_cuts(dir.path(), &single, &buckets);
    for (k, b) in buckets.iter().enumerate().skip(1) {
        part(dir.path(), &single, b, &cuts, k).success();
    }
    // Bucket 0 not scored: its first customer is named, nothing is published.
    let first = one(&buckets[0]);
    let missing = first
        .column(0)
        .as_string::<i32>()
        .iter()
        .flatten()
        .min()
        .expect("id")
        .to_string();
    let out = dir.path().join("sharded");
    publish(dir.path(), &single, &out).code(2).stderr(format!(
        "churnclv: error: --scores: customer '{missing}' is in --features but in no --scores part\n"
    ));
    assert!(!common::published_any(&out));

    // Bucket 0 scored with other cut points (same share, one customer fewer): refused.
    let other = dir.path().join("other-cuts.json");
    let mut text: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cuts).expect("cuts")).expect("json");
    text["customers"] = serde_json::json!(text["customers"].as_u64().expect("n") - 1);
    std::fs::write(&other, serde_json::to_vec_pretty(&text).expect("json")).expect("write");
    part(dir.path(), &single, &buckets[0], &other, 0).success();
    let assert = publish(dir.path(), &single, &out).code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        stderr.starts_with(&format!(
            "churnclv: error: --scores {}: the cuts.json digest is '",
            dir.path().join("parts/1.parquet").display()
        )) && stderr.ends_with("' (every part must be scored with the cuts.json of the first)\n"),
        "{stderr}"
    );
    assert!(!common::published_any(&out));

    // A score table that is not a part (no cuts digest): `run`'s own scores.parquet.
    let whole = table_file(&single, "scores", AS_OF);
    bin()
        .args(["--quiet", "publish", "--as-of", AS_OF, "--features"])
        .arg(dir.path().join("features"))
        .arg("--scores")
        .arg(&whole)
        .arg("--model")
        .arg(model(&single))
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2)
        .stderr(format!(
            "churnclv: error: --scores {}: no churnclv.cuts_sha256 metadata: not a part written by `churnclv score --cuts … --part`\n",
            whole.display()
        ));
    assert!(!common::published_any(&out));

    // Cut points made with another VIP share than the config's: refused before scoring.
    let config = dir.path().join("vip.toml");
    std::fs::write(&config, "[tiers]\nvip_top_share = 0.1\n").expect("config");
    bin()
        .args(["--quiet", "score", "--as-of", AS_OF, "--features"])
        .arg(&buckets[0])
        .arg("--model")
        .arg(model(&single))
        .arg("--config")
        .arg(&config)
        .arg("--cuts")
        .arg(&cuts)
        .arg("--part")
        .arg(dir.path().join("x.parquet"))
        .assert()
        .code(2)
        .stderr(format!(
            "churnclv: error: --cuts {}: made with tiers.vip_top_share 0.05, but the config has 0.1\n",
            cuts.display()
        ));
    assert!(!dir.path().join("x.parquet").exists());

    // A raw file with a key that is not a finite number (written by hand, not by churnclv).
    let bad = dir.path().join("bad-raw/0.parquet");
    let real = |v: Vec<Option<f64>>| -> arrow_array::ArrayRef {
        std::sync::Arc::new(arrow_array::Float64Array::from(v))
    };
    common::write(
        &bad,
        vec![
            (
                "customer_id",
                std::sync::Arc::new(arrow_array::StringArray::from(vec!["a", "b"])),
            ),
            ("recency_key", real(vec![Some(-1.0), Some(-2.0)])),
            ("frequency_key", real(vec![Some(1.0), None])),
            ("monetary_key", real(vec![Some(5.0), None])),
            ("clv", real(vec![Some(3.0), Some(f64::NAN)])),
        ],
    );
    bin()
        .args(["--quiet", "cuts", "--raw"])
        .arg(&bad)
        .arg("--out")
        .arg(dir.path().join("cuts3.json"))
        .assert()
        .code(2)
        .stderr(format!(
            "churnclv: error: --raw {}: row 1: column 'clv' is NaN; expected a finite number\n",
            bad.display()
        ));
    assert!(!dir.path().join("cuts3.json").exists());

    // A customer in two raw files: the cuts would count it twice.
    std::fs::copy(
        dir.path().join("raw/1.parquet"),
        dir.path().join("raw/9.parquet"),
    )
    .expect("copy");
    let id = one(&dir.path().join("raw/1.parquet"))
        .column(0)
        .as_string::<i32>()
        .value(0)
        .to_string();
    bin()
        .args(["--quiet", "cuts", "--raw"])
        .arg(dir.path().join("raw"))
        .arg("--out")
        .arg(dir.path().join("cuts2.json"))
        .assert()
        .code(2)
        .stderr(format!(
            "churnclv: error: --raw: customer '{id}' is in {} and in {}\n",
            dir.path().join("raw/1.parquet").display(),
            dir.path().join("raw/9.parquet").display()
        ));
}
