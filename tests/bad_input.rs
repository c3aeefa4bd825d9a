//! Bad input: one line on stderr naming the file and the column or problem, exit code 2, and
//! an existing output partition left exactly as it was.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, StringArray, TimestampMicrosecondArray};
use common::{bin, ts, write};

/// An output folder holding a previous good run for the as-of date used below.
fn previous_output(dir: &Path) -> PathBuf {
    let out = dir.join("out");
    let part = common::table(&out, "scores", "2024-06-01");
    std::fs::create_dir_all(&part).expect("mkdir");
    std::fs::write(part.join("scores.parquet"), b"previous good scores").expect("write");
    let run = common::run_dir(&out, "2024-06-01");
    std::fs::create_dir_all(&run).expect("mkdir");
    std::fs::write(run.join("_SUCCESS"), b"").expect("write");
    out
}

/// Runs `churnclv run` on `events` and checks exit code 2, the exact stderr line, and that
/// the previous output is untouched.
fn assert_rejected(dir: &Path, events: &str, message: &str) {
    let out = previous_output(dir);
    let assert = bin()
        .args([
            "run",
            "--quiet",
            "--as-of",
            "2024-06-01",
            "--events",
            events,
            "--out",
        ])
        .arg(&out)
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert_eq!(stderr, format!("churnclv: error: {message}\n"));
    assert_eq!(
        std::fs::read(common::table_file(&out, "scores", "2024-06-01")).expect("kept"),
        b"previous good scores"
    );
    // The lock file stays by design (docs/operations.md); nothing else may be left.
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".churnclv.lock")
        .collect();
    names.sort();
    assert_eq!(names, ["runs", "scores"], "no table folder added");
    for table in names {
        assert_eq!(
            common::partitions(&out, &table),
            ["as_of=2024-06-01"],
            "no temporary folder left in {table}"
        );
        assert_eq!(
            std::fs::read_dir(out.join(&table)).expect("ls").count(),
            1,
            "no temporary folder left in {table}"
        );
    }
}

fn good_columns() -> Vec<(&'static str, ArrayRef)> {
    vec![
        (
            "customer_id",
            Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef,
        ),
        (
            "event_time",
            Arc::new(TimestampMicrosecondArray::from(vec![
                ts("2024-01-01", 0),
                ts("2024-02-01", 0),
            ])),
        ),
        (
            "event_type",
            Arc::new(StringArray::from(vec!["purchase", "purchase"])),
        ),
        ("amount", Arc::new(Float64Array::from(vec![1.0, 2.0]))),
    ]
}

#[test]
fn missing_path() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("nope.parquet").display().to_string();
    assert_rejected(dir.path(), &p, &format!("{p}: no such file or directory"));
}

#[test]
fn empty_directory() {
    let dir = tempfile::tempdir().expect("tmp");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let p = empty.display().to_string();
    assert_rejected(
        dir.path(),
        &p,
        &format!("{p}: no Parquet files found (looked for *.parquet, recursively)"),
    );
}

#[test]
fn not_parquet() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("events.parquet");
    std::fs::write(&f, "customer_id,event_time\na,2024-01-01\n").expect("write");
    let p = f.display().to_string();
    assert_rejected(
        dir.path(),
        &p,
        &format!("{p}: not a Parquet file (no PAR1 magic)"),
    );
}

#[test]
fn truncated_parquet() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = write(&dir.path().join("full.parquet"), good_columns());
    let bytes = std::fs::read(&f).expect("read");
    let cut = dir.path().join("cut.parquet");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let p = cut.display().to_string();
    assert_rejected(
        dir.path(),
        &p,
        &format!("{p}: truncated Parquet file (no footer at the end)"),
    );
}

#[test]
fn missing_required_column() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cols = good_columns();
    cols.remove(2);
    let f = write(&dir.path().join("e.parquet"), cols);
    let p = f.display().to_string();
    assert_rejected(
        dir.path(),
        &p,
        &format!("{p}: missing required column 'event_type'; found columns: customer_id, event_time, amount"),
    );
}

#[test]
fn missing_mapped_column_names_the_mapping() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = write(&dir.path().join("e.parquet"), good_columns());
    let p = f.display().to_string();
    let out = previous_output(dir.path());
    let assert = bin()
        .args([
            "run",
            "--quiet",
            "--map",
            "customer_id=user_id",
            "--events",
            &p,
            "--out",
        ])
        .arg(&out)
        .assert()
        .code(2);
    assert_eq!(
        String::from_utf8_lossy(&assert.get_output().stderr),
        format!("churnclv: error: {p}: missing required column 'customer_id' (mapped to 'user_id'); found columns: customer_id, event_time, event_type, amount\n")
    );
}

#[test]
fn column_of_unusable_type() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cols = good_columns();
    cols[1] = (
        "event_time",
        Arc::new(StringArray::from(vec!["2024-01-01", "2024-02-01"])),
    );
    let f = write(&dir.path().join("e.parquet"), cols);
    let p = f.display().to_string();
    assert_rejected(
        dir.path(),
        &p,
        &format!("{p}: column 'event_time' has type Utf8; expected a Timestamp (any unit, with or without time zone), Date32 or Date64"),
    );
}

#[test]
fn zero_usable_rows() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cols = good_columns();
    cols[0] = (
        "customer_id",
        Arc::new(StringArray::from(vec![None::<&str>, None])),
    );
    let f = write(&dir.path().join("e.parquet"), cols);
    let p = f.display().to_string();
    assert_rejected(
        dir.path(),
        &p,
        &format!("{p}: no usable rows (2 read; rejected: null_customer_id 2)"),
    );
}

#[test]
fn bad_flags_are_usage_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = write(&dir.path().join("e.parquet"), good_columns());
    let p = f.display().to_string();
    let out = dir.path().join("out");
    let assert = bin()
        .args(["run", "--horizon", "3m", "--events", &p, "--out"])
        .arg(&out)
        .assert()
        .code(2);
    assert_eq!(
        String::from_utf8_lossy(&assert.get_output().stderr),
        "churnclv: error: --horizon: invalid horizon '3m': expected days like 90d, weeks like 13w, or a plain number of days (1 to 3650)\n"
    );
    let assert = bin()
        .args(["run", "--as-of", "2024-13-01", "--events", &p, "--out"])
        .arg(&out)
        .assert()
        .code(2);
    assert_eq!(
        String::from_utf8_lossy(&assert.get_output().stderr),
        "churnclv: error: --as-of: invalid date '2024-13-01': expected YYYY-MM-DD\n"
    );
    bin().args(["run", "--events"]).assert().code(2);
}
