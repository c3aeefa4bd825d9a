//! The event reader: accepted column types, validation and rejects, discovery of files.

use crate::common;

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, Date32Array, Date64Array, Decimal128Array, DictionaryArray, Float32Array,
    Float64Array, Int32Array, Int64Array, LargeStringArray, RecordBatch, StringArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
    TimestampSecondArray, UInt16Array,
};
use churnclv::config::Columns;
use churnclv::events::EventKind;
use churnclv::io::{open_inputs, scan, ReadOptions, Reason};
use common::{ts, write, write_rg};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

type Row = (String, i64, EventKind, Option<f64>);

fn opts(as_of_us: i64) -> ReadOptions {
    ReadOptions {
        as_of_us,
        max_abs_amount: 1e9,
        ..ReadOptions::default()
    }
}

/// A scan's rows, sorted, with its counts and rejects.
struct Read {
    acc: Vec<Row>,
    stats: churnclv::io::ScanStats,
    rejects: Vec<arrow_array::RecordBatch>,
}

fn read_all(spec: &str, columns: &Columns, as_of_us: i64) -> Read {
    let inputs = open_inputs(spec, columns).expect("open");
    let parts = (0..4).map(|_| Vec::new()).collect();
    let s = scan(&inputs, &opts(as_of_us), parts, |v: &mut Vec<Row>, b| {
        v.extend(
            b.events()
                .map(|e| (e.customer_id.to_string(), e.time_us, e.kind, e.amount)),
        )
    })
    .expect("scan");
    // Every customer's rows are in exactly one part.
    for (p, part) in s.parts.iter().enumerate() {
        for r in part {
            assert_eq!(churnclv::batch::partition_of(&r.0, 4), p, "{}", r.0);
        }
    }
    let mut acc: Vec<Row> = s.parts.into_iter().flatten().collect();
    acc.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    Read {
        acc,
        stats: s.stats,
        rejects: s.rejects,
    }
}

fn base(dir: &std::path::Path, id: ArrayRef, time: ArrayRef, amount: ArrayRef) -> String {
    let path = dir.join("e.parquet");
    write(
        &path,
        vec![
            ("customer_id", id),
            ("event_time", time),
            (
                "event_type",
                Arc::new(StringArray::from(vec!["purchase", "page_view"])),
            ),
            ("amount", amount),
        ],
    );
    path.display().to_string()
}

fn amounts() -> ArrayRef {
    Arc::new(Float64Array::from(vec![Some(12.5), None]))
}

fn times() -> ArrayRef {
    Arc::new(
        TimestampMicrosecondArray::from(vec![ts("2024-03-01", 5), ts("2024-03-02", 0)])
            .with_timezone("UTC"),
    )
}

#[test]
fn customer_id_accepts_text_dictionary_and_integers() {
    let dir = tempfile::tempdir().expect("tmp");
    let ids: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["7", "9"])),
        Arc::new(LargeStringArray::from(vec!["7", "9"])),
        Arc::new(DictionaryArray::<Int32Type>::from_iter(["7", "9"])),
        Arc::new(Int64Array::from(vec![7, 9])),
        Arc::new(UInt16Array::from(vec![7, 9])),
    ];
    for id in ids {
        let dt = id.data_type().clone();
        let spec = base(dir.path(), id, times(), amounts());
        let s = read_all(&spec, &Columns::default(), i64::MAX);
        let got: Vec<&str> = s.acc.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(got, vec!["7", "9"], "{dt}");
    }
}

#[test]
fn event_time_accepts_every_unit_zone_and_dates() {
    let dir = tempfile::tempdir().expect("tmp");
    let t0 = ts("2024-03-01", 5);
    let t1 = ts("2024-03-02", 0);
    let cases: Vec<(ArrayRef, [i64; 2])> = vec![
        (
            Arc::new(TimestampSecondArray::from(vec![
                t0 / 1_000_000,
                t1 / 1_000_000,
            ])),
            [t0, t1],
        ),
        (
            Arc::new(
                TimestampMillisecondArray::from(vec![t0 / 1000, t1 / 1000]).with_timezone("+02:00"),
            ),
            [t0, t1],
        ),
        (
            Arc::new(TimestampMicrosecondArray::from(vec![t0, t1])),
            [t0, t1],
        ),
        (
            Arc::new(
                TimestampNanosecondArray::from(vec![t0 * 1000 + 999, t1 * 1000])
                    .with_timezone("UTC"),
            ),
            [t0, t1],
        ),
        (
            Arc::new(Date32Array::from(vec![19783, 19784])),
            [ts("2024-03-01", 0), ts("2024-03-02", 0)],
        ),
        (
            Arc::new(Date64Array::from(vec![t0 / 1000, t1 / 1000])),
            [t0, t1],
        ),
    ];
    for (time, want) in cases {
        let dt = time.data_type().clone();
        let spec = base(
            dir.path(),
            Arc::new(StringArray::from(vec!["a", "b"])),
            time,
            amounts(),
        );
        let s = read_all(&spec, &Columns::default(), i64::MAX);
        let got: Vec<i64> = s.acc.iter().map(|r| r.1).collect();
        assert_eq!(got, want.to_vec(), "{dt}");
    }
}

#[test]
fn amount_accepts_floats_integers_and_decimals() {
    let dir = tempfile::tempdir().expect("tmp");
    let cases: Vec<ArrayRef> = vec![
        Arc::new(Float32Array::from(vec![Some(12.5), None])),
        Arc::new(Int32Array::from(vec![Some(12), None])),
        Arc::new(
            Decimal128Array::from(vec![Some(1250), None])
                .with_precision_and_scale(10, 2)
                .expect("decimal"),
        ),
    ];
    let want = [12.5, 12.0, 12.5];
    for (amount, w) in cases.into_iter().zip(want) {
        let dt = amount.data_type().clone();
        let spec = base(
            dir.path(),
            Arc::new(StringArray::from(vec!["a", "b"])),
            times(),
            amount,
        );
        let s = read_all(&spec, &Columns::default(), i64::MAX);
        assert_eq!(s.acc[0].3, Some(w), "{dt}");
        assert_eq!(s.acc[1].3, None, "{dt}");
    }
}

#[test]
fn every_row_is_used_or_rejected_with_its_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("bad.parquet");
    let day = ts("2024-01-10", 0);
    let far = ts("2199-12-31", 0) + 86_400_000_000 * 400; // past 2200-01-01
    write_rg(
        &path,
        vec![
            (
                "customer_id",
                Arc::new(StringArray::from(vec![
                    Some("ok"),
                    None,
                    Some("  "),
                    Some("c"),
                    Some("d"),
                    Some("e"),
                    Some("f"),
                    Some("g"),
                    Some("h"),
                    Some("i"),
                    Some("late"),
                    Some("ok"),
                ])),
            ),
            (
                "event_time",
                Arc::new(TimestampMicrosecondArray::from(vec![
                    Some(day),
                    Some(day),
                    Some(day),
                    None,
                    Some(far),
                    Some(day),
                    Some(day),
                    Some(day),
                    Some(day),
                    Some(day),
                    Some(ts("2024-02-01", 0)),
                    Some(day),
                ])),
            ),
            (
                "event_type",
                Arc::new(StringArray::from(vec![
                    Some("PURCHASE"),
                    Some("purchase"),
                    Some("purchase"),
                    Some("purchase"),
                    Some("purchase"),
                    None,
                    Some("purchase"),
                    Some("purchase"),
                    Some("purchase"),
                    Some("refund"),
                    Some("purchase"),
                    Some("Wishlist"),
                ])),
            ),
            (
                "amount",
                Arc::new(Float64Array::from(vec![
                    Some(10.0),
                    Some(1.0),
                    Some(1.0),
                    Some(1.0),
                    Some(1.0),
                    Some(1.0),
                    Some(f64::NAN),
                    Some(f64::INFINITY),
                    Some(2e9),
                    Some(-3.0),
                    Some(1.0),
                    None,
                ])),
            ),
        ],
        5, // three row groups: rows are numbered across them
    );
    let s = read_all(
        &path.display().to_string(),
        &Columns::default(),
        ts("2024-02-01", 0),
    );
    let st = &s.stats;
    assert_eq!(st.rows_read, 12);
    assert_eq!(st.rows_used, 2);
    assert_eq!(st.rows_rejected, 10);
    assert_eq!(st.rows_read, st.rows_used + st.rows_rejected);
    let by: Vec<(Reason, u64)> = st
        .rejected_by_reason
        .iter()
        .map(|(r, n)| (*r, *n))
        .collect();
    assert_eq!(
        by,
        vec![
            (Reason::NullCustomerId, 1),
            (Reason::EmptyCustomerId, 1),
            (Reason::NullEventTime, 1),
            (Reason::TimeOutOfRange, 1),
            (Reason::NullEventType, 1),
            (Reason::NonFiniteAmount, 2),
            (Reason::AmountOutOfRange, 1),
            (Reason::NegativeAmount, 1),
            (Reason::AfterAsOf, 1),
        ]
    );
    assert_eq!(st.unknown_event_types.get("Wishlist"), Some(&1));
    assert_eq!(st.event_types.get(&EventKind::Other), Some(&1));
    assert_eq!(s.acc[0].2, EventKind::Purchase);
    // Rejects keep the original values, the row number in the file and the reason;
    // after_as_of rows are counted, not copied.
    let rejects: Vec<RecordBatch> = s.rejects;
    let total: usize = rejects.iter().map(|b| b.num_rows()).sum();
    assert_eq!(total, 9);
    let mut seen = Vec::new();
    for b in &rejects {
        let row = b.column(1).as_primitive::<arrow_array::types::Int64Type>();
        let reason = b.column(2).as_string::<i32>();
        let id = b.column(3).as_string::<i32>();
        let amount = b.column(6).as_string::<i32>();
        for i in 0..b.num_rows() {
            seen.push((
                row.value(i),
                reason.value(i).to_string(),
                (!id.is_null(i)).then(|| id.value(i).to_string()),
                (!amount.is_null(i)).then(|| amount.value(i).to_string()),
            ));
        }
    }
    assert_eq!(
        seen[0],
        (1, "null_customer_id".into(), None, Some("1.0".into()))
    );
    assert_eq!(
        seen[6],
        (
            7,
            "non_finite_amount".into(),
            Some("g".into()),
            Some("inf".into())
        )
    );
    assert_eq!(
        seen[8],
        (
            9,
            "negative_amount".into(),
            Some("i".into()),
            Some("-3.0".into())
        )
    );
    use arrow_array::Array;
}

#[test]
fn directories_globs_and_hive_partitions() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("events");
    for (sub, id) in [
        ("event_type=purchase/day=1", "a"),
        ("event_type=page_view/day=2", "b"),
    ] {
        write(
            &root.join(sub).join("part-0.parquet"),
            vec![
                (
                    "customer_id",
                    Arc::new(StringArray::from(vec![id])) as ArrayRef,
                ),
                (
                    "event_time",
                    Arc::new(TimestampMicrosecondArray::from(vec![ts("2024-01-01", 1)])),
                ),
                ("amount", Arc::new(Float64Array::from(vec![3.0]))),
            ],
        );
    }
    std::fs::write(root.join("_SUCCESS"), b"").expect("marker");
    std::fs::write(root.join(".hidden.parquet"), b"junk").expect("hidden");
    let s = read_all(&root.display().to_string(), &Columns::default(), i64::MAX);
    let kinds: Vec<(String, EventKind)> = s.acc.iter().map(|r| (r.0.clone(), r.2)).collect();
    assert_eq!(
        kinds,
        vec![
            ("a".to_string(), EventKind::Purchase),
            ("b".to_string(), EventKind::PageView)
        ]
    );
    let glob = format!("{}/event_type=*/day=1/*.parquet", root.display());
    let s = read_all(&glob, &Columns::default(), i64::MAX);
    assert_eq!(s.acc.len(), 1);
    assert_eq!(s.stats.rows_read, 1);
}

#[test]
fn column_mapping_renames_inputs() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("m.parquet");
    write(
        &path,
        vec![
            (
                "user_id",
                Arc::new(StringArray::from(vec!["u1"])) as ArrayRef,
            ),
            (
                "ts",
                Arc::new(TimestampMicrosecondArray::from(vec![ts("2024-01-01", 0)])),
            ),
            ("kind", Arc::new(StringArray::from(vec!["purchase"]))),
            ("revenue", Arc::new(Float64Array::from(vec![9.5]))),
        ],
    );
    let mut cols = Columns::default();
    for m in [
        "customer_id=user_id",
        "event_time=ts",
        "event_type=kind",
        "amount=revenue",
    ] {
        cols.apply_map(m).expect("map");
    }
    let s = read_all(&path.display().to_string(), &cols, i64::MAX);
    assert_eq!(
        s.acc,
        vec![(
            "u1".to_string(),
            ts("2024-01-01", 0),
            EventKind::Purchase,
            Some(9.5)
        )]
    );
}

#[test]
fn reads_one_row_group_at_a_time() {
    // Row groups of 1,000 rows: the reader asks for them one by one (the memory bound).
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("big.parquet");
    let n = 10_000;
    write_rg(
        &path,
        vec![
            (
                "customer_id",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("c{}", i % 37)),
                )) as ArrayRef,
            ),
            (
                "event_time",
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    (0..n).map(|i| ts("2024-01-01", i % 5000)),
                )),
            ),
            (
                "event_type",
                Arc::new(StringArray::from_iter_values((0..n).map(|i| {
                    if i % 3 == 0 {
                        "purchase"
                    } else {
                        "page_view"
                    }
                }))),
            ),
        ],
        1000,
    );
    let file = std::fs::File::open(&path).expect("open");
    let b = ParquetRecordBatchReaderBuilder::try_new(file).expect("footer");
    assert_eq!(b.metadata().num_row_groups(), 10);
    let s = read_all(&path.display().to_string(), &Columns::default(), i64::MAX);
    assert_eq!(s.stats.rows_read, n as u64);
    assert_eq!(s.acc.len(), n as usize);
}
