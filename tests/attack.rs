//! The input and config attack matrix: truncated, random and mislabelled files, every required
//! column missing, wrong column types, extreme amounts, timestamps at the edges of their unit,
//! null / blank / control-character ids, malformed TOML and out-of-range settings. Each case
//! asserts its exit code, its exact message (or its exact prefix where the tail is the Parquet
//! library's own words) and that nothing was published: a previous good partition stays byte
//! for byte, and no staging folder or lock is left. Row-level problems are not errors: the run
//! succeeds and each bad row is in rejects.parquet with its reason.
//!
//! Cases already in tests/bad_input.rs and tests/corpus.rs (missing path, empty folder, a CSV
//! file named .parquet, a file cut in half, event_type missing, customer_id Float64, amount and
//! event_time as text, NaN / ±inf / 5e12 amounts, null ids, churn.alpha, btyd.model, a missing
//! or unparseable config file) are not repeated here.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::Array;
use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, Date64Array, Float64Array, Int64Array, StringArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
    TimestampSecondArray,
};
use common::{bin, snapshot, ts, write};
use rand::{Rng, SeedableRng};

const AS_OF: &str = "2024-06-01";

/// An output folder holding a previous good run for [`AS_OF`].
fn previous_output(dir: &Path) -> PathBuf {
    let out = dir.join("out");
    let scores = common::table(&out, "scores", AS_OF);
    std::fs::create_dir_all(&scores).expect("mkdir");
    std::fs::write(scores.join("scores.parquet"), b"previous good scores").expect("write");
    let run = common::run_dir(&out, AS_OF);
    std::fs::create_dir_all(&run).expect("mkdir");
    std::fs::write(run.join("_SUCCESS"), b"").expect("write");
    out
}

enum Expect<'a> {
    Exact(&'a str),
    Prefix(&'a str),
}

/// `churnclv run` with `args` (after `run --quiet --as-of AS_OF --out OUT`): exit 2, the
/// message, and OUT exactly as it was.
fn refused(dir: &Path, args: &[&str], expect: Expect) {
    let out = previous_output(dir);
    let before = snapshot(&out);
    let o = bin()
        .args(["run", "--quiet", "--as-of", AS_OF, "--out"])
        .arg(&out)
        .args(args)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    let line = stderr.trim_end_matches('\n');
    match expect {
        Expect::Exact(m) => assert_eq!(line, format!("churnclv: error: {m}"), "{args:?}"),
        Expect::Prefix(m) => assert!(
            line.starts_with(&format!("churnclv: error: {m}")),
            "{args:?}: {line}"
        ),
    }
    assert_eq!(
        snapshot(&out),
        before,
        "{args:?}: nothing published or left behind"
    );
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

fn good_bytes(dir: &Path) -> Vec<u8> {
    let f = write(&dir.join("good-source.parquet"), good_columns());
    let bytes = std::fs::read(&f).expect("read");
    std::fs::remove_file(f).expect("rm");
    bytes
}

#[test]
fn truncated_random_and_mislabelled_files() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let good = good_bytes(d);
    let n = good.len();
    let footer = u32::from_le_bytes([good[n - 8], good[n - 7], good[n - 6], good[n - 5]]) as usize;
    let footer_start = n - 8 - footer;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut random = |len: usize| -> Vec<u8> { (0..len).map(|_| rng.gen::<u8>()).collect() };

    let mut bad_length = good[..n - 8].to_vec();
    bad_length.extend_from_slice(&((n * 4) as u32).to_le_bytes());
    bad_length.extend_from_slice(b"PAR1");
    let mut scrambled_footer = good.clone();
    scrambled_footer[footer_start..n - 8].copy_from_slice(&random(footer));
    let mut scrambled_pages = good.clone();
    scrambled_pages[4..footer_start].copy_from_slice(&random(footer_start - 4));
    let mut noise = random(4096);
    noise[0] = b'X'; // not PAR1 by chance
    let mut framed = b"PAR1".to_vec();
    framed.extend(random(4096));
    framed.extend_from_slice(b"PAR1");

    let not_parquet = ": not a Parquet file (no PAR1 magic)";
    let truncated = ": truncated Parquet file (no footer at the end)";
    let corrupt = ": corrupt Parquet file: ";
    let cases: Vec<(&str, Vec<u8>, &str, bool)> = vec![
        ("empty", Vec::new(), not_parquet, true),
        ("magic-only", b"PAR1".to_vec(), truncated, true),
        ("eleven-bytes", good[..11].to_vec(), truncated, true),
        ("all-but-last-byte", good[..n - 1].to_vec(), truncated, true),
        ("footer-length-too-large", bad_length, corrupt, false),
        ("footer-scrambled", scrambled_footer, corrupt, false),
        ("random-bytes", noise, not_parquet, true),
        ("random-between-magics", framed, corrupt, false),
        (
            "data-pages-scrambled",
            scrambled_pages,
            ": row group 0: ",
            false,
        ),
    ];
    for (name, bytes, message, exact) in cases {
        let f = d.join(format!("{name}.parquet"));
        std::fs::write(&f, bytes).expect("write");
        let p = f.display().to_string();
        let m = format!("{p}{message}");
        refused(
            d,
            &["--events", &p],
            if exact {
                Expect::Exact(&m)
            } else {
                Expect::Prefix(&m)
            },
        );
    }

    // A CSV file named .parquet among good files: the whole input is refused, naming it (a
    // partial input would publish wrong scores).
    let events = d.join("mixed");
    write(&events.join("a.parquet"), good_columns());
    let csv = events.join("b.parquet");
    std::fs::write(&csv, "customer_id,event_time\na,2024-01-01\n").expect("write");
    let e = events.display().to_string();
    refused(
        d,
        &["--events", &e],
        Expect::Exact(&format!("{}{not_parquet}", csv.display())),
    );
}

#[test]
fn each_required_column_missing() {
    let dir = tempfile::tempdir().expect("tmp");
    // event_type is covered by tests/bad_input.rs.
    for (drop, found) in [
        ("customer_id", "event_time, event_type, amount"),
        ("event_time", "customer_id, event_type, amount"),
    ] {
        let cols: Vec<_> = good_columns()
            .into_iter()
            .filter(|(n, _)| *n != drop)
            .collect();
        let f = write(&dir.path().join(format!("no-{drop}.parquet")), cols);
        let p = f.display().to_string();
        refused(
            dir.path(),
            &["--events", &p],
            Expect::Exact(&format!(
                "{p}: missing required column '{drop}'; found columns: {found}"
            )),
        );
    }
}

#[test]
fn wrong_column_types_name_column_type_and_expectation() {
    let dir = tempfile::tempdir().expect("tmp");
    let text_or_int = "text (Utf8, LargeUtf8, Dictionary) or an integer";
    let text = "text (Utf8, LargeUtf8 or Dictionary)";
    let cases: Vec<(&str, ArrayRef, &str, &str)> = vec![
        (
            "customer_id",
            Arc::new(BooleanArray::from(vec![true, false])),
            "Boolean",
            text_or_int,
        ),
        (
            // Epoch numbers are not guessed: seconds, ms, µs and ns would all be plausible.
            "event_time",
            Arc::new(Int64Array::from(vec![1_704_067_200, 1_706_745_600])),
            "Int64",
            "a Timestamp (any unit, with or without time zone), Date32 or Date64",
        ),
        (
            "event_type",
            Arc::new(Int64Array::from(vec![1, 2])),
            "Int64",
            text,
        ),
        (
            "amount",
            Arc::new(BooleanArray::from(vec![true, true])),
            "Boolean",
            "a float, integer or decimal",
        ),
        (
            "order_id",
            Arc::new(Float64Array::from(vec![1.5, 2.5])),
            "Float64",
            text_or_int,
        ),
        (
            "event_id",
            Arc::new(Float64Array::from(vec![1.5, 2.5])),
            "Float64",
            text_or_int,
        ),
        (
            "channel",
            Arc::new(Int64Array::from(vec![1, 2])),
            "Int64",
            text,
        ),
        (
            "category",
            Arc::new(BooleanArray::from(vec![true, false])),
            "Boolean",
            text,
        ),
    ];
    for (column, array, found, expected) in cases {
        let mut cols = good_columns();
        match cols.iter_mut().find(|(n, _)| *n == column) {
            Some(slot) => slot.1 = array,
            None => cols.push((column, array)),
        }
        let f = write(&dir.path().join(format!("{column}.parquet")), cols);
        let p = f.display().to_string();
        refused(
            dir.path(),
            &["--events", &p],
            Expect::Exact(&format!(
                "{p}: column '{column}' has type {found}; expected {expected}"
            )),
        );
    }
}

/// A valid generated history (400 customers) in `dir/events/`.
fn base(dir: &Path) -> PathBuf {
    let events = dir.join("events");
    bin()
        .args([
            "generate",
            "--quiet",
            "--customers",
            "400",
            "--seed",
            "21",
            "--out",
        ])
        .arg(events.join("base.parquet"))
        .assert()
        .success();
    std::fs::remove_file(events.join("base.truth.parquet")).expect("truth");
    events
}

use crate::common::read_batches as read;

/// (customer_id, reason) of every row of rejects.parquet.
fn rejects(part: &Published) -> Vec<(Option<String>, String)> {
    let mut rows = Vec::new();
    for b in read(&part.file("rejects")) {
        let id = b
            .column_by_name("customer_id")
            .expect("id")
            .as_string::<i32>();
        let reason = b
            .column_by_name("reason")
            .expect("reason")
            .as_string::<i32>();
        for i in 0..b.num_rows() {
            rows.push((
                (!id.is_null(i)).then(|| id.value(i).to_string()),
                reason.value(i).to_string(),
            ));
        }
    }
    rows
}

/// A published run: its output folder and as-of.
struct Published {
    out: PathBuf,
    as_of: String,
}

impl Published {
    /// The file of a table of the run.
    fn file(&self, table: &str) -> PathBuf {
        common::table_file(&self.out, table, &self.as_of)
    }
}

/// Runs the job on `events` (expects success) and returns the run and its manifest.
fn run_ok(dir: &Path, events: &Path, extra: &[&str]) -> (Published, serde_json::Value) {
    let out = dir.join("out");
    let o = bin()
        .args(["run", "--quiet", "--events"])
        .arg(events)
        .arg("--out")
        .arg(&out)
        .args(extra)
        .output()
        .expect("run");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let runs = common::partitions(&out, "runs");
    let as_of = runs[0].strip_prefix("as_of=").expect("as_of=").to_string();
    let m = serde_json::from_slice(
        &std::fs::read(common::run_dir(&out, &as_of).join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    (Published { out, as_of }, m)
}

/// Every float of scores.parquet is finite or null.
fn scores_finite(part: &Published) {
    for b in read(&part.file("scores")) {
        for (f, c) in b.schema().fields().iter().zip(b.columns()) {
            if let Some(a) = c.as_primitive_opt::<Float64Type>() {
                assert!(
                    a.iter().flatten().all(f64::is_finite),
                    "{}: a non-finite value",
                    f.name()
                );
            }
        }
    }
}

#[test]
fn extreme_amounts_are_rejected_rows_and_the_limit_is_bounded() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = base(dir.path());
    let t = ts("2025-06-01", 0);
    let ids = [
        "big", "neg-big", "max", "min", "over-1e9", "tiny", "zero", "neg-zero",
    ];
    let amounts = [
        1e308,
        -1e308,
        f64::MAX,
        f64::MIN,
        1e9 + 1.0,
        f64::MIN_POSITIVE,
        0.0,
        -0.0,
    ];
    write(
        &events.join("extra.parquet"),
        vec![
            (
                "customer_id",
                Arc::new(StringArray::from(ids.to_vec())) as ArrayRef,
            ),
            (
                "event_time",
                Arc::new(TimestampMicrosecondArray::from(vec![t; ids.len()])),
            ),
            (
                "event_type",
                Arc::new(StringArray::from(vec!["purchase"; ids.len()])),
            ),
            ("amount", Arc::new(Float64Array::from(amounts.to_vec()))),
        ],
    );
    let (part, m) = run_ok(dir.path(), &events, &[]);
    assert_eq!(
        m["rows"]["rejected_by_reason"]["amount_out_of_range"], 5,
        "{}",
        m["rows"]
    );
    let mut got = rejects(&part);
    got.sort();
    let mut want: Vec<_> = ids[..5]
        .iter()
        .map(|i| (Some(i.to_string()), "amount_out_of_range".to_string()))
        .collect();
    want.sort();
    assert_eq!(got, want);
    scores_finite(&part);

    // The limit itself cannot be raised past what integer micro-units hold exactly.
    let toml = dir.path().join("limit.toml");
    std::fs::write(&toml, "[validation]\nmax_abs_amount = 1e13\n").expect("write");
    refused(
        dir.path(),
        &["--events", &events.display().to_string(), "--config", &toml.display().to_string()],
        Expect::Exact("validation.max_abs_amount must be a positive number up to 1e12 (money is summed in integer micro-units), got 10000000000000"),
    );
}

#[test]
fn timestamps_at_the_edges_of_their_unit() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = base(dir.path());
    let us_1900 = -25_567 * 86_400_000_000i64;
    let us_2200 = 84_006 * 86_400_000_000i64;
    let one = |unit: &str, id: &str, a: ArrayRef| {
        write(
            &events.join(format!("time-{unit}-{id}.parquet")),
            vec![
                (
                    "customer_id",
                    Arc::new(StringArray::from(vec![format!("{unit}-{id}")])) as ArrayRef,
                ),
                ("event_time", a),
                ("event_type", Arc::new(StringArray::from(vec!["purchase"]))),
                ("amount", Arc::new(Float64Array::from(vec![1.0]))),
            ],
        );
    };
    // Out of range: the extremes of every unit (i64::MIN µs is left to the ignored test
    // below), the last µs before 1900 and the first of 2200.
    one(
        "s",
        "max",
        Arc::new(TimestampSecondArray::from(vec![i64::MAX / 1000])),
    );
    one(
        "s",
        "min",
        Arc::new(TimestampSecondArray::from(vec![i64::MIN / 1000])),
    );
    one(
        "ms",
        "max",
        Arc::new(TimestampMillisecondArray::from(vec![i64::MAX])),
    );
    one(
        "ms",
        "min",
        Arc::new(TimestampMillisecondArray::from(vec![i64::MIN])),
    );
    one(
        "us",
        "max",
        Arc::new(TimestampMicrosecondArray::from(vec![i64::MAX])),
    );
    one(
        "us",
        "min+1",
        Arc::new(TimestampMicrosecondArray::from(vec![i64::MIN + 1])),
    );
    one(
        "ns",
        "max",
        Arc::new(TimestampNanosecondArray::from(vec![i64::MAX])),
    );
    one(
        "ns",
        "min",
        Arc::new(TimestampNanosecondArray::from(vec![i64::MIN])),
    );
    one("d32", "max", Arc::new(Date32Array::from(vec![i32::MAX])));
    one("d32", "min", Arc::new(Date32Array::from(vec![i32::MIN])));
    one("d64", "max", Arc::new(Date64Array::from(vec![i64::MAX])));
    one("d64", "min", Arc::new(Date64Array::from(vec![i64::MIN])));
    one(
        "us",
        "pre-1900",
        Arc::new(TimestampMicrosecondArray::from(vec![us_1900 - 1])),
    );
    one(
        "us",
        "2200",
        Arc::new(TimestampMicrosecondArray::from(vec![us_2200])),
    );
    // In range: 1900-01-01 exactly (used), the last µs before 2200 (valid, but implausibly far
    // past the wall clock: `future_event`, copied to rejects).
    one(
        "us",
        "1900",
        Arc::new(TimestampMicrosecondArray::from(vec![us_1900])),
    );
    one(
        "us",
        "last",
        Arc::new(TimestampMicrosecondArray::from(vec![us_2200 - 1])),
    );
    one(
        "ns",
        "tz",
        Arc::new(TimestampNanosecondArray::from(vec![us_1900 * 1000 + 1]).with_timezone("+14:00")),
    );

    // An explicit as-of, so the windows do not depend on which valid row is the latest.
    let (part, m) = run_ok(dir.path(), &events, &["--as-of", "2025-12-31"]);
    let reasons = &m["rows"]["rejected_by_reason"];
    assert_eq!(reasons["time_out_of_range"], 14, "{}", m["rows"]);
    assert_eq!(reasons["future_event"], 1, "{}", m["rows"]);
    assert!(reasons.get("after_as_of").is_none(), "{}", m["rows"]);
    let got: Vec<_> = rejects(&part)
        .into_iter()
        .filter(|(_, r)| r == "time_out_of_range")
        .map(|(id, _)| id.unwrap_or_default())
        .collect();
    assert_eq!(got.len(), 14);
    for id in [
        "s-max",
        "ms-min",
        "us-min+1",
        "ns-max",
        "d32-min",
        "d64-max",
        "us-pre-1900",
        "us-2200",
    ] {
        assert!(got.contains(&id.to_string()), "{id}: {got:?}");
    }
    // The two valid early rows are scored customers.
    let mut ids = Vec::new();
    for b in read(&part.file("scores")) {
        let c = b
            .column_by_name("customer_id")
            .expect("id")
            .as_string::<i32>();
        ids.extend((0..b.num_rows()).map(|i| c.value(i).to_string()));
    }
    assert!(ids.contains(&"us-1900".to_string()) && ids.contains(&"ns-tz".to_string()));
    assert!(!ids.contains(&"us-last".to_string()));

    // A file with nothing but out-of-range times: a clear error, nothing published.
    let only = dir.path().join("only-bad.parquet");
    write(
        &only,
        vec![
            (
                "customer_id",
                Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef,
            ),
            (
                "event_time",
                Arc::new(TimestampNanosecondArray::from(vec![i64::MIN, i64::MAX])),
            ),
            (
                "event_type",
                Arc::new(StringArray::from(vec!["purchase", "purchase"])),
            ),
        ],
    );
    let p = only.display().to_string();
    refused(
        dir.path(),
        &["--events", &p],
        Expect::Exact(&format!(
            "{p}: no usable rows (2 read; rejected: time_out_of_range 2)"
        )),
    );
}

#[test]
fn an_event_time_of_i64_min_microseconds_is_out_of_range_not_null() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("min.parquet");
    write(
        &f,
        vec![
            (
                "customer_id",
                Arc::new(StringArray::from(vec!["a"])) as ArrayRef,
            ),
            (
                "event_time",
                Arc::new(TimestampMicrosecondArray::from(vec![i64::MIN])),
            ),
            ("event_type", Arc::new(StringArray::from(vec!["purchase"]))),
        ],
    );
    let p = f.display().to_string();
    refused(
        dir.path(),
        &["--events", &p],
        Expect::Exact(&format!(
            "{p}: no usable rows (1 read; rejected: time_out_of_range 1)"
        )),
    );
}

#[test]
fn null_blank_and_control_character_ids() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = base(dir.path());
    let t = ts("2025-06-01", 0);
    // Blank ids are rejected; any other text is an id, kept byte for byte (Parquet carries it
    // as is; messages and text logs escape control characters).
    let ids: Vec<Option<&str>> = vec![
        None,
        Some(""),
        Some("   "),
        Some("\t\n"),
        Some("a\nb"),
        Some("\u{1b}[31mred"),
        Some("\u{0}"),
        Some("\u{7f}del"),
        Some(" padded "),
    ];
    let n = ids.len();
    write(
        &events.join("ids.parquet"),
        vec![
            (
                "customer_id",
                Arc::new(StringArray::from(ids.clone())) as ArrayRef,
            ),
            (
                "event_time",
                Arc::new(TimestampMicrosecondArray::from(vec![t; n])),
            ),
            (
                "event_type",
                Arc::new(StringArray::from(vec!["purchase"; n])),
            ),
            ("amount", Arc::new(Float64Array::from(vec![5.0; n]))),
        ],
    );
    let (part, m) = run_ok(dir.path(), &events, &[]);
    let reasons = &m["rows"]["rejected_by_reason"];
    assert_eq!(reasons["null_customer_id"], 1, "{}", m["rows"]);
    assert_eq!(reasons["empty_customer_id"], 3, "{}", m["rows"]);
    let mut got = rejects(&part);
    got.sort();
    assert_eq!(
        got,
        vec![
            (None, "null_customer_id".to_string()),
            (Some(String::new()), "empty_customer_id".to_string()),
            (Some("\t\n".to_string()), "empty_customer_id".to_string()),
            (Some("   ".to_string()), "empty_customer_id".to_string()),
        ]
    );
    let mut scored = Vec::new();
    for b in read(&part.file("scores")) {
        let c = b
            .column_by_name("customer_id")
            .expect("id")
            .as_string::<i32>();
        scored.extend((0..b.num_rows()).map(|i| c.value(i).to_string()));
    }
    for id in ids[4..].iter().flatten() {
        assert!(scored.contains(&id.to_string()), "{id:?} scored verbatim");
    }
    scores_finite(&part);
}

#[test]
fn malformed_toml_and_out_of_range_settings() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let f = write(&d.join("e.parquet"), good_columns());
    let e = f.display().to_string();
    let toml = d.join("c.toml");
    let t = toml.display().to_string();
    let cases: Vec<(&[u8], String)> = vec![
        // Malformed.
        (
            b"[run\nhorizon = \"30d\"\n",
            format!("{t}: invalid config: invalid table header expected `.`, `]`"),
        ),
        (
            b"[run]\nhorizon = 90\n",
            format!("{t}: invalid config: invalid type: integer `90`, expected a string"),
        ),
        (
            b"[run]\nhorizon = \"30d\"\nhorizon = \"60d\"\n",
            format!("{t}: invalid config: duplicate key `horizon` in table `run`"),
        ),
        (
            b"[runn]\nseed = 1\n",
            format!("{t}: invalid config: unknown field `runn`, expected one of `columns`, `input`, `event_types`, `run`, `validation`, `churn`, `btyd`, `tiers`, `gates`, `spark`"),
        ),
        (
            b"[run]\nseed = -1\n",
            format!("{t}: invalid config: invalid value: integer `-1`, expected u64"),
        ),
        (
            b"\xff\xfe[run]\n",
            format!("{t}: cannot read config: stream did not contain valid UTF-8"),
        ),
        // Out of range.
        (
            b"[run]\nhorizon = \"3651d\"\n",
            "run.horizon: invalid horizon '3651d': expected days like 90d, weeks like 13w, or a plain number of days (1 to 3650)".into(),
        ),
        (
            b"[btyd]\nmonthly_discount = 1.5\n",
            "btyd.monthly_discount must be a finite number in its documented range, got 1.5".into(),
        ),
        (
            b"[btyd]\ndays_per_month = 0\n",
            "btyd.days_per_month must be a finite number in its documented range, got 0".into(),
        ),
        (
            b"[btyd]\npenalizer = nan\n",
            "btyd.penalizer must be a finite number in its documented range, got NaN".into(),
        ),
        (
            b"[btyd]\nmax_iterations = 0\n",
            "btyd.max_iterations must be at least 1, got 0".into(),
        ),
        (
            b"[btyd]\ntimeout_seconds = 0\n",
            "btyd.timeout_seconds must be at least 1, got 0".into(),
        ),
        (
            b"[validation]\nmax_abs_amount = 0\n",
            "validation.max_abs_amount must be a positive number up to 1e12 (money is summed in integer micro-units), got 0".into(),
        ),
        (
            b"[validation]\nmax_abs_amount = inf\n",
            "validation.max_abs_amount must be a positive number up to 1e12 (money is summed in integer micro-units), got inf".into(),
        ),
        (
            b"[churn]\nmax_iterations = 0\n",
            "churn.max_iterations must be at least 1, got 0".into(),
        ),
        (
            b"[churn]\ntimeout_seconds = 0\n",
            "churn.timeout_seconds must be at least 1, got 0".into(),
        ),
        (
            b"[churn]\nalpha_grid = [1.0, -1.0]\n",
            "churn.alpha_grid must be finite numbers >= 0, got -1".into(),
        ),
        (
            b"[event_types]\norder = \"buy\"\n",
            "[event_types] 'order' maps to unknown event type 'buy'".into(),
        ),
        (
            b"[tiers]\nvip_top_share = 2.0\n",
            "tiers.vip_top_share must be between 0 and 1, got 2".into(),
        ),
        (
            b"[tiers]\nchurn_risk_high = 0.2\n",
            "tiers.churn_risk_high must be between tiers.churn_risk_medium and 1, got 0.2".into(),
        ),
        (
            b"[tiers]\ncart_window_days = -1\n",
            "tiers.cart_window_days must be a finite number >= 0, got -1".into(),
        ),
        (
            b"[columns]\ncustomer_id = \"\"\n",
            "column mapping: the required column customer_id cannot be switched off (mapped to '')".into(),
        ),
    ];
    for (text, message) in cases {
        std::fs::write(&toml, text).expect("write");
        refused(
            d,
            &["--events", &e, "--config", &t],
            Expect::Exact(&message),
        );
    }
}
