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
    use churnclv::stages::{features, jobs, score, train};
    let plan = Plan::build(&Request {
        source: Source::Events(events.display().to_string()),
        as_of: Some((as_of.into(), "--as-of")),
        as_of_from_data: true,
        horizon: Some(horizon.into()),
        ..Request::default()
    })
    .expect("plan");
    let c = plan.cutoffs().expect("cutoffs");
    let read = plan.read_options(churnclv::time::date_us(c.as_of));
    let scanned =
        features::scan(plan.events().expect("events"), &read, &jobs::tables(&c)).expect("scan");
    let [tv, t0, t1, buyers] = [0, 1, 2, 3].map(|i| scanned.buyers_table(i));
    let tables = train::Tables {
        tune: Some(&tv),
        train: Some(&t0),
        validate: &t1,
        latest: &buyers,
    };
    let trained = train::train(&tables, c, &plan.config, None).expect("train");
    let latest = scanned.table(3);
    let scored = score::score(
        &latest,
        &trained.churn,
        &trained.value,
        c.horizon_days,
        &plan.config.tiers,
        &score::model_version("test"),
        "test",
    )
    .expect("score");
    InProcess {
        stats: scanned.stats,
        customers: latest.len(),
        trained,
        scored,
    }
}
