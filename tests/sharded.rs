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

/// The least customer_id of a Parquet file (its first column).
fn least_id(path: &Path) -> String {
    one(path)
        .column(0)
        .as_string::<i32>()
        .iter()
        .flatten()
        .min()
        .expect("id")
        .to_string()
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
    let missing = least_id(&buckets[0]);
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
    cuts_refused(
        &bad,
        &dir.path().join("cuts3.json"),
        &format!(
            "--raw {}: row 1: column 'clv' is NaN; expected a finite number",
            bad.display()
        ),
    );

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
    cuts_refused(
        &dir.path().join("raw"),
        &dir.path().join("cuts2.json"),
        &format!(
            "--raw: customer '{id}' is in {} and in {}",
            dir.path().join("raw/1.parquet").display(),
            dir.path().join("raw/9.parquet").display()
        ),
    );
}

/// `churnclv cuts --raw RAW --out OUT` is exit 2 with `message` as its one line, and writes
/// nothing.
fn cuts_refused(raw: &Path, out: &Path, message: &str) {
    bin()
        .args(["--quiet", "cuts", "--raw"])
        .arg(raw)
        .arg("--out")
        .arg(out)
        .assert()
        .code(2)
        .stderr(format!("churnclv: error: {message}\n"));
    assert!(!out.exists());
}

/// The folders in DIR/scores: the partition, and no scratch left behind.
fn scores_entries(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out.join("scores"))
        .map(|d| {
            d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn bounded_cut_points_and_streamed_publish_equal_the_whole_table_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (single, buckets) = setup(dir.path());
    let cuts = raw_and_cuts(dir.path(), &single, &buckets);

    // The cut points with a tiny range budget (the tied purchase-day ranges refined again,
    // over the ids) equal the CLI's and the whole table's in memory (`Cuts::of`).
    let raw: Vec<PathBuf> = (0..BUCKETS)
        .map(|k| dir.path().join(format!("raw/{k}.parquet")))
        .collect();
    let written: churnclv::cuts::Cuts =
        serde_json::from_slice(&std::fs::read(&cuts).expect("cuts")).expect("json");
    let mut keys = Vec::new();
    for r in &raw {
        let b = one(r);
        let ids = b.column(0).as_string::<i32>();
        let real = |c: usize| {
            let a = b
                .column(c)
                .as_primitive::<arrow_array::types::Float64Type>();
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i)))
                .collect::<Vec<_>>()
        };
        let (rr, f, m, c) = (real(1), real(2), real(3), real(4));
        for i in 0..ids.len() {
            let k = churnclv::cuts::RankKeys {
                recency: rr[i],
                frequency: f[i],
                monetary: m[i],
                clv: c[i],
            };
            keys.push((Box::<str>::from(ids.value(i)), k));
        }
    }
    assert_eq!(churnclv::cuts::Cuts::of(&keys, 0.05), written);
    for (budget, scans) in [(2, 4), (50, 3)] {
        let (small, passes) =
            churnclv::stages::sharded_cuts::cuts_of_raw_with(&raw, 0.05, budget).expect("cuts");
        assert_eq!(small, written, "budget {budget}");
        // The counting pass, one refinement or more (two or more with 2), the sorting pass.
        assert!(passes.scans >= scans, "budget {budget}: {passes:?}");
        assert!(passes.held <= budget * 23, "budget {budget}: {passes:?}");
    }

    // Parts out of id order (not as `score --part` writes them) are sorted while publishing:
    // the files published are byte for byte those of the parts in order.
    for (k, b) in buckets.iter().enumerate() {
        part(dir.path(), &single, b, &cuts, k).success();
    }
    let sorted_out = dir.path().join("sorted");
    publish(dir.path(), &single, &sorted_out).success();
    let p0 = dir.path().join("parts/0.parquet");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&p0).expect("open"),
    )
    .expect("reader");
    let meta = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned();
    let batch = one(&p0);
    let reversed = arrow_array::UInt32Array::from_iter_values((0..batch.num_rows() as u32).rev());
    let batch = arrow_select::take::take_record_batch(&batch, &reversed).expect("take");
    let mut options = ParquetOptions::default();
    for kv in meta.unwrap_or_default() {
        options = options.metadata(kv.key, kv.value.unwrap_or_default());
    }
    write_parquet(&p0, batch.schema(), &[batch], &options).expect("write");
    let out = dir.path().join("reversed");
    publish(dir.path(), &single, &out).success();
    for t in ["scores", "features"] {
        assert_eq!(
            std::fs::read(table_file(&out, t, AS_OF)).expect("read"),
            std::fs::read(table_file(&sorted_out, t, AS_OF)).expect("read"),
            "{t}"
        );
    }
    // The scratch folder of the sort is gone.
    assert_eq!(scores_entries(&out), [format!("as_of={AS_OF}")]);

    // A bucket given twice: its first customer named with both files; nothing published,
    // no scratch left.
    let copy = dir.path().join("features/bucket=9/part-0.parquet");
    std::fs::create_dir_all(copy.parent().expect("parent")).expect("mkdir");
    std::fs::copy(&buckets[2], &copy).expect("copy");
    let first = least_id(&buckets[2]);
    let refused = dir.path().join("refused");
    publish(dir.path(), &single, &refused)
        .code(2)
        .stderr(format!(
            "churnclv: error: --features: customer '{first}' is in {} and in {}\n",
            buckets[2].display(),
            copy.display()
        ));
    assert!(!common::published_any(&refused));
    assert!(
        scores_entries(&refused).is_empty(),
        "{:?}",
        scores_entries(&refused)
    );

    // A raw file out of customer_id order (not as `score --raw` writes it): refused, named.
    let raw0 = one(&raw[0]);
    let n = raw0.num_rows();
    let swapped =
        arrow_array::UInt32Array::from_iter_values([1u32, 0].into_iter().chain(2..n as u32));
    let bad = arrow_select::take::take_record_batch(&raw0, &swapped).expect("take");
    let ids = bad.column(0).as_string::<i32>();
    let (a, b) = (ids.value(0).to_string(), ids.value(1).to_string());
    let out_of_order = dir.path().join("unsorted-raw/0.parquet");
    std::fs::create_dir_all(out_of_order.parent().expect("parent")).expect("mkdir");
    write_parquet(
        &out_of_order,
        bad.schema(),
        &[bad],
        &ParquetOptions::default(),
    )
    .expect("write");
    cuts_refused(
        &out_of_order,
        &dir.path().join("cuts4.json"),
        &format!(
            "--raw {}: row 1: customer_id '{b}' follows '{a}': the rows must be in customer_id order, as churnclv writes them",
            out_of_order.display()
        ),
    );
}
