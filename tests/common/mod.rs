//! Helpers shared by the integration tests: tiny Parquet fixtures written on the fly.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema};
use churnclv::io::output::{write_parquet, ParquetOptions};

/// Writes named columns as one Parquet file (all columns nullable).
pub fn write(path: &Path, columns: Vec<(&str, ArrayRef)>) -> PathBuf {
    write_rg(path, columns, 1 << 20)
}

/// Same, with a row-group size.
pub fn write_rg(path: &Path, columns: Vec<(&str, ArrayRef)>, row_group_rows: usize) -> PathBuf {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("fixture dir");
    }
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .expect("fixture batch");
    write_parquet(
        path,
        schema,
        &[batch],
        &ParquetOptions::default().row_group_rows(row_group_rows),
    )
    .expect("fixture write");
    path.to_path_buf()
}

/// Every batch of a Parquet file.
pub fn read_batches(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).expect("open");
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader")
        .collect::<Result<_, _>>()
        .expect("read")
}

/// µs timestamp of `YYYY-MM-DD` plus hours.
pub fn ts(date: &str, hours: i64) -> i64 {
    let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").expect("date");
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
    (d - epoch).num_days() * 86_400_000_000 + hours * 3_600_000_000
}

/// The path of the built binary.
pub fn bin() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("churnclv").expect("binary")
}

/// `churnclv run --quiet --as-of AS_OF --horizon 90d EXTRA… --events EVENTS --out OUT`, which
/// must succeed.
pub fn run_90d(events: &Path, out: &Path, as_of: &str, extra: &[&str]) {
    bin()
        .args(["run", "--quiet", "--as-of", as_of, "--horizon", "90d"])
        .args(extra)
        .arg("--events")
        .arg(events)
        .arg("--out")
        .arg(out)
        .assert()
        .success();
}

/// Every file and folder under `dir` (folders with `None`, files with their bytes), except the
/// output lock `.churnclv.lock`: churnclv's own bookkeeping, created on first use and never
/// removed (docs/operations.md), so not part of what a refused run may have touched.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut all = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.file_name().is_some_and(|n| n == ".churnclv.lock") {
                continue;
            }
            if p.is_dir() {
                all.insert(p.clone(), None);
                todo.push(p);
            } else {
                all.insert(p.clone(), Some(std::fs::read(&p).expect("read")));
            }
        }
    }
    all
}

/// `churnclv generate --customers N --seed S --out PATH` (ground truth beside it as
/// `*.truth.parquet`); returns PATH.
pub fn generate(path: &Path, customers: u32, seed: u64) -> PathBuf {
    bin()
        .args(["--quiet", "generate", "--customers"])
        .arg(customers.to_string())
        .arg("--seed")
        .arg(seed.to_string())
        .arg("--out")
        .arg(path)
        .assert()
        .success();
    path.to_path_buf()
}

/// The job's stages in this process, up to the score table — what `run` computes before it
/// publishes — for tests whose point is the numbers, not the command line.
pub struct InProcess {
    pub stats: churnclv::io::ScanStats,
    /// Customers with any event before as-of.
    pub customers: usize,
    pub trained: churnclv::stages::train::Trained,
    pub scored: churnclv::stages::score::Scored,
}

/// Plan, one scan for the four tables, training and scoring, as `run --events EVENTS --as-of
/// AS_OF --horizon HORIZON` does with the default config.
pub fn in_process(events: &Path, as_of: &str, horizon: &str) -> InProcess {
    use churnclv::plan::{Plan, Request, Source};
    use churnclv::stages::jobs;
    let plan = Plan::build(&Request {
        source: Source::Events(events.display().to_string()),
        as_of: Some((as_of.into(), "--as-of")),
        as_of_from_data: true,
        horizon: Some(horizon.into()),
        ..Request::default()
    })
    .expect("plan");
    let c = plan.cutoffs().expect("cutoffs");
    let inputs = jobs::model_inputs(&plan, &c).expect("scan");
    let m = jobs::model_stages(inputs, &plan, c, "test", &mut |_| {}).expect("model stages");
    let jobs::Scores::Whole(scored) = m.scored else {
        panic!("without a memory budget the score table is built whole");
    };
    InProcess {
        stats: m.stats,
        customers: m.latest.len(),
        trained: m.trained,
        scored,
    }
}

/// A table's partition folder: `DIR/<table>/as_of=D` (`scores`, `features`, `rejects`).
pub fn table(out: &Path, table: &str, as_of: &str) -> PathBuf {
    out.join(table).join(format!("as_of={as_of}"))
}

/// A table's file: `DIR/<table>/as_of=D/<table>.parquet`.
pub fn table_file(out: &Path, name: &str, as_of: &str) -> PathBuf {
    table(out, name, as_of).join(format!("{name}.parquet"))
}

/// The run partition: `DIR/runs/as_of=D` (manifest.json, metrics.json, model.json,
/// report.html, _SUCCESS).
pub fn run_dir(out: &Path, as_of: &str) -> PathBuf {
    out.join("runs").join(format!("as_of={as_of}"))
}

/// The partition folders (`as_of=…`) of one table folder of `out` (`runs` for the runs),
/// sorted; empty when the folder does not exist.
pub fn partitions(out: &Path, table: &str) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(out.join(table)) {
        Ok(entries) => entries
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("as_of="))
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Whether anything was published in `out`: a partition in any table folder.
pub fn published_any(out: &Path) -> bool {
    ["scores", "features", "rejects", "runs"]
        .iter()
        .any(|t| !partitions(out, t).is_empty())
}

/// The tables of a run, in the order they are swapped in.
pub const TABLES: [&str; 3] = ["scores", "features", "rejects"];

/// Checks what is published for `as_of` in `out`. With `DIR/runs/as_of=D/_SUCCESS`: the run
/// partition's marker, and every output its manifest lists (paths relative to `out`) with the
/// recorded size and SHA-256, each in a marked partition; returns the manifest's outputs as
/// (path, sha256) and the run's metrics.json. Without `_SUCCESS` (a run stopped between its
/// table swaps, or none published): returns `None` after checking that each table partition
/// present is complete — marked, its one Parquet file read to the end.
pub fn check_run(out: &Path, as_of: &str) -> Option<(Vec<(String, String)>, Vec<u8>)> {
    use sha2::{Digest, Sha256};
    let run = run_dir(out, as_of);
    if !run.join("_SUCCESS").is_file() {
        for t in TABLES {
            let part = table(out, t, as_of);
            if !part.exists() {
                continue;
            }
            assert!(
                part.join(".churnclv-partition").is_file(),
                "{} has no marker",
                part.display()
            );
            let f = std::fs::File::open(table_file(out, t, as_of)).expect("table file");
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                .expect("parquet")
                .build()
                .expect("reader");
            for b in reader {
                b.expect("a complete Parquet file");
            }
        }
        return None;
    }
    assert!(
        run.join(".churnclv-partition").is_file(),
        "{} has no marker",
        run.display()
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("manifest.json")).expect("manifest"))
            .expect("json");
    let mut files = Vec::new();
    for o in manifest["outputs"].as_array().expect("outputs") {
        let rel = o["file"].as_str().expect("file");
        let path = out.join(rel);
        let bytes = std::fs::read(&path).expect("output");
        assert_eq!(o["bytes"].as_u64(), Some(bytes.len() as u64), "{rel}");
        let hex: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(o["sha256"].as_str(), Some(hex.as_str()), "{rel}");
        assert!(
            path.parent()
                .expect("partition")
                .join(".churnclv-partition")
                .is_file(),
            "{rel}: partition not marked"
        );
        files.push((rel.to_string(), hex));
    }
    let metrics = std::fs::read(run.join("metrics.json")).expect("metrics");
    Some((files, metrics))
}

/// Names in a folder not starting with a dot, sorted.
pub fn visible(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    v
}
