//! Deduplication is order-free: which of the rows sharing a key is kept depends on the rows'
//! values, not on the order of files or rows (the rule a SQL engine applies too, `churnclv
//! sql`), and the key belongs to one customer.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{ArrayRef, Float64Array, StringArray, TimestampMicrosecondArray};
use common::{bin, ts, write};

/// One file of rows (customer, hours after 2025-06-01, type, amount, order id).
fn rows(path: &Path, rows: &[(&str, i64, &str, f64, &str)]) {
    // Filler rows of customer `f`, so that the duplicates stay under the reject-share gate.
    let ids: Vec<String> = (0..10)
        .map(|i| format!("{}-pv{i}", path.display()))
        .collect();
    let rows: Vec<(&str, i64, &str, f64, &str)> = rows
        .iter()
        .copied()
        .chain(ids.iter().map(|o| ("f", 1, "page_view", 0.0, o.as_str())))
        .collect();
    let t0 = ts("2025-06-01", 0);
    let col = |k: usize| -> ArrayRef {
        Arc::new(StringArray::from(
            rows.iter().map(|r| [r.0, r.2, r.4][k]).collect::<Vec<_>>(),
        ))
    };
    write(
        path,
        vec![
            ("customer_id", col(0)),
            (
                "event_time",
                Arc::new(
                    TimestampMicrosecondArray::from(
                        rows.iter()
                            .map(|r| t0 + r.1 * 3_600_000_000)
                            .collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
            ),
            ("event_type", col(1)),
            (
                "amount",
                Arc::new(Float64Array::from(
                    rows.iter().map(|r| r.3).collect::<Vec<_>>(),
                )),
            ),
            ("order_id", col(2)),
        ],
    );
}

/// `churnclv features` of a folder: stdout, and per customer (n_purchases, monetary_total).
fn features(events: &Path, out: &Path) -> (String, Vec<(String, i64, f64)>) {
    let o = bin()
        .args(["features", "--quiet", "--as-of", "2025-07-01", "--events"])
        .arg(events)
        .arg("--out")
        .arg(out)
        .output()
        .expect("features");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let file = std::fs::File::open(out).expect("table");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("pq")
        .build()
        .expect("reader");
    let mut table = Vec::new();
    for b in reader {
        let b = b.expect("batch");
        let s = b.schema();
        let id = b
            .column(s.index_of("customer_id").expect("id"))
            .as_string::<i32>();
        let n = b
            .column(s.index_of("n_purchases").expect("n"))
            .as_primitive::<Int64Type>();
        let m = b
            .column(s.index_of("monetary_total").expect("m"))
            .as_primitive::<Float64Type>();
        for i in (0..b.num_rows()).filter(|&i| id.value(i) != "f") {
            table.push((id.value(i).to_string(), n.value(i), m.value(i)));
        }
    }
    (String::from_utf8_lossy(&o.stdout).into_owned(), table)
}

#[test]
fn the_kept_duplicate_is_the_least_by_value_whatever_the_file_order() {
    let dir = tempfile::tempdir().expect("tmp");
    // c1 bought order o1 twice: at 10:00 for 20.0 and at 09:00 for 10.0; c2 has its own o1.
    let late = ("c1", 10, "purchase", 20.0, "o1");
    let early = ("c1", 9, "purchase", 10.0, "o1");
    let other = ("c2", 9, "purchase", 5.0, "o1");
    // The same rows in two layouts: the late copy first in input order, then the early one.
    let a = dir.path().join("a");
    rows(&a.join("1.parquet"), &[late, other]);
    rows(&a.join("2.parquet"), &[early]);
    let b = dir.path().join("b");
    rows(&b.join("1.parquet"), &[early, other]);
    rows(&b.join("2.parquet"), &[late]);
    let (say_a, fa) = features(&a, &dir.path().join("a.parquet"));
    let (say_b, fb) = features(&b, &dir.path().join("b.parquet"));
    let want = vec![("c1".to_string(), 1, 10.0), ("c2".to_string(), 1, 5.0)];
    assert_eq!(fa, want, "the earlier purchase is kept; c2's o1 is its own");
    assert_eq!(fb, want);
    for say in [say_a, say_b] {
        assert!(say.contains("rejected: duplicate_key 1"), "{say}");
    }
}

#[test]
fn rows_equal_but_for_the_amount_keep_the_smaller_amount() {
    let dir = tempfile::tempdir().expect("tmp");
    let big = ("c1", 9, "purchase", 30.0, "o1");
    let small = ("c1", 9, "purchase", 12.5, "o1");
    rows(&dir.path().join("e/1.parquet"), &[big, small]);
    let (_, f) = features(&dir.path().join("e"), &dir.path().join("f.parquet"));
    assert_eq!(f, vec![("c1".to_string(), 1, 12.5)]);
}
