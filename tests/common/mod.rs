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
