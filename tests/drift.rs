//! Night-over-night drift gates on real shifts: a generated history is published as of one day,
//! then the next day's run reads a broken copy of it (amounts ×3, one event type gone, half
//! the customers gone, the last week sent twice) rewritten here with arrow. Each trips its
//! gate, exits 3, publishes nothing and leaves the comparison in the side file; stable reruns
//! and next-day runs trip nothing; the reference is never a later as-of.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, BooleanArray, Float64Array, RecordBatch};
use churnclv::io::output::{write_parquet, ParquetOptions};
use common::{bin, run_dir, snapshot, table, table_file, ts};
use serde_json::Value;

/// The day the reference run scores; the shifted runs score the day after.
const DAY1: &str = "2025-12-01";
const DAY2: &str = "2025-12-02";

/// A generated history (3,000 customers, 2024-01-01 to 2025-12-30) in `dir/base.parquet`.
fn base(dir: &Path) -> PathBuf {
    let path = common::generate(&dir.join("base.parquet"), 3000, 7);
    std::fs::remove_file(dir.join("base.truth.parquet")).expect("truth");
    path
}

use crate::common::read_batches as read;

/// `base.parquet` rewritten batch by batch by `f` (one input batch may give several) as
/// `dir/<name>.parquet`.
fn rewrite(dir: &Path, name: &str, f: impl Fn(&RecordBatch) -> Vec<RecordBatch>) -> PathBuf {
    let batches: Vec<RecordBatch> = read(&dir.join("base.parquet")).iter().flat_map(f).collect();
    let path = dir.join(format!("{name}.parquet"));
    write_parquet(
        &path,
        batches[0].schema(),
        &batches,
        &ParquetOptions::default(),
    )
    .expect("write");
    path
}

fn keep(batch: &RecordBatch, rows: impl Fn(usize) -> bool) -> RecordBatch {
    let mask = BooleanArray::from((0..batch.num_rows()).map(rows).collect::<Vec<_>>());
    arrow_select::filter::filter_record_batch(batch, &mask).expect("filter")
}

fn text<'a>(batch: &'a RecordBatch, name: &str) -> &'a arrow_array::StringArray {
    batch.column_by_name(name).expect(name).as_string::<i32>()
}

fn amounts_tripled(b: &RecordBatch) -> Vec<RecordBatch> {
    let i = b.schema().index_of("amount").expect("amount");
    let tripled: Float64Array = b
        .column(i)
        .as_primitive::<Float64Type>()
        .iter()
        .map(|v| v.map(|v| v * 3.0))
        .collect();
    let mut columns: Vec<ArrayRef> = b.columns().to_vec();
    columns[i] = Arc::new(tripled);
    vec![RecordBatch::try_new(b.schema(), columns).expect("batch")]
}

fn without_email_opens(b: &RecordBatch) -> Vec<RecordBatch> {
    let t = text(b, "event_type");
    vec![keep(b, |i| t.value(i) != "email_open")]
}

/// Customers whose id's bytes sum to an odd number are gone (about half, spread evenly).
fn half_the_customers(b: &RecordBatch) -> Vec<RecordBatch> {
    let ids = text(b, "customer_id");
    vec![keep(b, |i| {
        ids.value(i).bytes().map(u64::from).sum::<u64>() % 2 == 0
    })]
}

/// The rows of the week before DAY2 appear twice.
fn last_week_twice(b: &RecordBatch) -> Vec<RecordBatch> {
    let times = b
        .column_by_name("event_time")
        .expect("event_time")
        .as_primitive::<TimestampMicrosecondType>();
    let (from, until) = (ts("2025-11-25", 0), ts(DAY2, 0));
    let week = keep(b, |i| (from..until).contains(&times.value(i)));
    vec![b.clone(), week]
}

fn run(events: &Path, out: &Path, as_of: &str, extra: &[&str]) -> std::process::Output {
    bin()
        .args(["--quiet", "run", "--events"])
        .arg(events)
        .arg("--out")
        .arg(out)
        .args(["--as-of", as_of])
        .args(extra)
        .output()
        .expect("run")
}

fn ok(o: &std::process::Output) {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn metrics(out: &Path, as_of: &str) -> Value {
    let text = std::fs::read(run_dir(out, as_of).join("metrics.json")).expect("metrics");
    serde_json::from_slice(&text).expect("json")
}

fn gate<'a>(drift: &'a Value, name: &str) -> &'a Value {
    drift["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .find(|g| g["gate"] == name)
        .expect("gate listed")
}

/// The broken feed `shift` run as of DAY2 after a clean DAY1: exit 3 naming `gate` first,
/// nothing published (only the side file added), the side file holding the comparison; then
/// `--accept-drift` publishes and records it.
fn trips(shift: fn(&RecordBatch) -> Vec<RecordBatch>, name: &str, gate_name: &str) -> Value {
    let dir = tempfile::tempdir().expect("tmp");
    let events = base(dir.path());
    let out = dir.path().join("out");
    ok(&run(&events, &out, DAY1, &[]));
    let before = snapshot(&out);
    let shifted = rewrite(dir.path(), name, shift);
    let o = run(&shifted, &out, DAY2, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    if o.status.code() == Some(0) {
        panic!("published: {:#}", metrics(&out, DAY2)["drift"]["gates"]);
    }
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    // Shown with --nocapture: what on-call reads.
    eprintln!("{stderr}");
    let prefix = format!("churnclv: error: quality gate failed: drift gate {gate_name}: ");
    assert!(stderr.starts_with(&prefix), "{stderr}");
    assert!(
        stderr.contains(&format!("(against as_of={DAY1})")),
        "{stderr}"
    );
    assert!(
        stderr.contains("; nothing published; full comparison in "),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    // Nothing published: the folder is as it was but for the side file.
    let mut after = snapshot(&out);
    let side_dir = out.join("_drift").join(format!("as_of={DAY2}"));
    let side: Vec<PathBuf> = after
        .keys()
        .filter(|p| p.starts_with(&side_dir) && p.extension().is_some_and(|e| e == "json"))
        .cloned()
        .collect();
    assert_eq!(side.len(), 1, "{side:?}");
    assert!(stderr.contains(&side[0].display().to_string()), "{stderr}");
    after.retain(|p, _| !p.starts_with(out.join("_drift")));
    assert_eq!(after, before);
    let side: Value =
        serde_json::from_slice(&std::fs::read(&side[0]).expect("side")).expect("json");
    let drift = &side["drift"];
    assert_eq!(drift["status"], "tripped");
    assert_eq!(drift["reference"]["as_of"], DAY1);
    assert_eq!(drift["tripped"][0], gate_name);
    let g = gate(drift, gate_name);
    assert_eq!(g["tripped"], true);
    let (measured, limit) = (
        g["measured"].as_f64().expect("m"),
        g["limit"].as_f64().expect("l"),
    );
    assert!(measured > limit, "{g}");
    assert!(
        stderr.contains(&format!("measured {measured:.4} > limit {limit}")),
        "{stderr}"
    );
    // --accept-drift publishes, and says so.
    ok(&run(&shifted, &out, DAY2, &["--accept-drift"]));
    let m = metrics(&out, DAY2);
    assert_eq!(m["drift"]["status"], "accepted");
    assert_eq!(m["drift"]["tripped"][0], gate_name);
    assert!(run_dir(&out, DAY2).join("_SUCCESS").exists());
    m
}

#[test]
fn amounts_tripled_trip_the_input_mean_gate() {
    let m = trips(amounts_tripled, "tripled", "max_input_mean_change");
    let d = &m["drift"];
    let subject = gate(d, "max_input_mean_change")["subject"]
        .as_str()
        .expect("s")
        .to_string();
    assert!(subject.starts_with("mean_order_value "), "{subject}");
    // Price of every order ×3: mean order value +200%, the spend model's scale parameter with it.
    let mov = d["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .find(|s| s["name"] == "mean_order_value")
        .expect("mov");
    let rel = mov["relative"].as_f64().expect("relative");
    assert!((rel - 2.0).abs() < 0.05, "{mov}");
    let tripped: Vec<&str> = d["tripped"]
        .as_array()
        .expect("t")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(tripped.contains(&"max_input_psi"), "{tripped:?}");
    // The Gamma-Gamma scale follows the prices (×3); its standard error is wide on 3,000
    // customers, so the shift is ~3.4 se, under the 6 se limit: the mean gate is the one.
    let gamma = d["params"]
        .as_array()
        .expect("params")
        .iter()
        .find(|p| p["name"] == "gamma_gamma.gamma")
        .expect("gamma");
    let ratio = gamma["current"]["value"].as_f64().expect("c")
        / gamma["reference"]["value"].as_f64().expect("r");
    assert!((2.5..3.5).contains(&ratio), "{gamma}");
}

#[test]
fn a_missing_event_type_trips_the_event_type_gate() {
    let m = trips(
        without_email_opens,
        "no_email_opens",
        "max_event_type_share_change",
    );
    let g = gate(&m["drift"], "max_event_type_share_change");
    assert!(
        g["subject"]
            .as_str()
            .expect("s")
            .starts_with("event_type_share.email_open "),
        "{g}"
    );
    assert_eq!(g["measured"].as_f64(), Some(1.0));
}

#[test]
fn half_the_customers_gone_trips_the_customer_gate() {
    let m = trips(half_the_customers, "half", "max_customer_change");
    let g = gate(&m["drift"], "max_customer_change");
    let measured = g["measured"].as_f64().expect("m");
    assert!((0.4..0.6).contains(&measured), "{g}");
}

#[test]
fn a_week_sent_twice_trips_the_reject_gate() {
    let m = trips(last_week_twice, "week_twice", "max_reject_share_ratio");
    let g = gate(&m["drift"], "max_reject_share_ratio");
    assert!(
        g["subject"]
            .as_str()
            .expect("s")
            .starts_with("reject_share"),
        "{g}"
    );
    // The repeated orders are rejected as duplicates, counted in the published run.
    let dup = m["drift"]["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .find(|s| s["name"] == "reject_share.duplicate_key")
        .expect("dup");
    assert_eq!(dup["reference"].as_f64(), Some(0.0));
    // A week's orders out of two years of rows: 0.1%, ten times the 0.01% floor.
    let share = dup["current"].as_f64().expect("c");
    assert!(share > 0.0005, "{dup}");
    assert_eq!(g["measured"].as_f64(), Some(share / 0.0001));
}

fn status(m: &Value) -> (&str, Option<&str>, usize) {
    let d = &m["drift"];
    (
        d["status"].as_str().expect("status"),
        d["reference"]["as_of"].as_str(),
        d["tripped"].as_array().expect("tripped").len(),
    )
}

#[test]
fn reruns_and_next_day_runs_on_stable_data_trip_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = base(dir.path());
    let out = dir.path().join("out");
    ok(&run(&events, &out, DAY1, &[]));
    ok(&run(&events, &out, DAY2, &[]));
    let first = metrics(&out, DAY2);
    assert_eq!(status(&first), ("passed", Some(DAY1), 0));
    // A rerun of DAY2 compares with DAY1 again (never with the DAY2 it replaces) and measures
    // exactly the same.
    let o = run(&events, &out, DAY2, &[]);
    ok(&o);
    let again = metrics(&out, DAY2);
    assert_eq!(status(&again), ("passed", Some(DAY1), 0));
    assert_eq!(first["drift"], again["drift"]);
    assert_eq!(first["profile"], again["profile"]);
    // The next day, against the rerun.
    let o = run(&events, &out, "2025-12-03", &[]);
    ok(&o);
    let next = metrics(&out, "2025-12-03");
    assert_eq!(status(&next), ("passed", Some(DAY2), 0));
    assert_eq!(next["drift"]["baseline"].as_array().map(Vec::len), Some(2));
    assert_eq!(next["drift"]["gates"].as_array().map(Vec::len), Some(9));
    assert!(!out.join("_drift").exists());
    // The report: the comparison, the transitions and five trend charts beside the five
    // evaluation charts.
    let page =
        std::fs::read_to_string(run_dir(&out, "2025-12-03").join("report.html")).expect("report");
    assert!(page.contains("<h2>Night over night</h2>"));
    assert!(page.contains(&format!("<tr><td>reference</td><td>as_of={DAY2} (")));
    assert!(page.contains("<h3>Tier transitions (rows: reference tier, columns: this run)</h3>"));
    assert_eq!(page.matches("<svg").count(), 10);
}

fn ids(out: &Path, as_of: &str) -> BTreeSet<String> {
    read(&table_file(out, "scores", as_of))
        .iter()
        .flat_map(|b| {
            let ids = text(b, "customer_id");
            (0..ids.len())
                .map(|i| ids.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_tier_transition_matrix_sums_to_the_customers_of_both_runs() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = base(dir.path());
    let out = dir.path().join("out");
    ok(&run(&events, &out, DAY1, &[]));
    let half = rewrite(dir.path(), "half", half_the_customers);
    ok(&run(&half, &out, DAY2, &["--accept-drift"]));
    let (a, b) = (ids(&out, DAY1), ids(&out, DAY2));
    let t = &metrics(&out, DAY2)["drift"]["tiers"];
    let m: BTreeMap<String, BTreeMap<String, u64>> =
        serde_json::from_value(t["transitions"].clone()).expect("matrix");
    let total: u64 = m.values().flat_map(|r| r.values()).sum();
    assert_eq!(total as usize, a.union(&b).count());
    let previous: u64 = m
        .iter()
        .filter(|(f, _)| *f != "none")
        .flat_map(|(_, r)| r.values())
        .sum();
    let current: u64 = m
        .values()
        .flat_map(|r| r.iter().filter(|(to, _)| *to != "none").map(|(_, n)| n))
        .sum();
    assert_eq!((previous as usize, current as usize), (a.len(), b.len()));
    assert_eq!(
        t["customers_both"].as_u64(),
        Some(a.intersection(&b).count() as u64)
    );
    assert_eq!(
        t["customers_gone"].as_u64(),
        Some(a.difference(&b).count() as u64)
    );
    assert_eq!(
        t["customers_new"].as_u64(),
        Some(b.difference(&a).count() as u64)
    );
    assert!(a.difference(&b).count() > 1000);
}

#[test]
fn a_first_run_says_so_and_a_backfill_compares_with_the_partition_strictly_before_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = base(dir.path());
    let out = dir.path().join("out");
    let o = run(&events, &out, "2025-11-01", &[]);
    ok(&o);
    let first = metrics(&out, "2025-11-01");
    assert_eq!(status(&first), ("first_run", None, 0));
    assert!(first["drift"]["note"]
        .as_str()
        .expect("note")
        .starts_with("first run: nothing published before as_of=2025-11-01 in this output folder; no gate applied"));
    ok(&run(&events, &out, DAY1, &[]));
    // A backfill between the two: against 2025-11-01, not the later DAY1.
    ok(&run(&events, &out, "2025-11-15", &[]));
    let backfill = metrics(&out, "2025-11-15");
    assert_eq!(status(&backfill), ("passed", Some("2025-11-01"), 0));
    assert_eq!(
        backfill["drift"]["note"],
        "1 published run(s) after as_of=2025-11-15 not compared (the reference is always an earlier as-of)"
    );
    // Before everything: a first run again, with both later runs named in the note.
    ok(&run(&events, &out, "2025-10-01", &[]));
    let earliest = metrics(&out, "2025-10-01");
    assert_eq!(status(&earliest), ("first_run", None, 0));
    assert!(earliest["drift"]["note"]
        .as_str()
        .expect("note")
        .ends_with("; 3 published run(s) after as_of=2025-10-01 not compared (the reference is always an earlier as-of)"));
    assert!(table(&out, "scores", "2025-10-01").exists());
}

#[test]
fn history_lists_published_and_refused_runs_oldest_first() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = base(dir.path());
    let out = dir.path().join("out");
    ok(&run(&events, &out, DAY1, &[]));
    ok(&run(&events, &out, DAY2, &[]));
    let half = rewrite(dir.path(), "half", half_the_customers);
    assert_eq!(run(&half, &out, "2025-12-03", &[]).status.code(), Some(3));
    let before = snapshot(&out);
    let o = bin()
        .args(["history", "--json", "--out"])
        .arg(&out)
        .output()
        .expect("history");
    ok(&o);
    assert_eq!(snapshot(&out), before);
    let rows: Value = serde_json::from_slice(&o.stdout).expect("json");
    let rows = rows.as_array().expect("rows");
    let key = |r: &Value| {
        (
            r["as_of"].as_str().map(str::to_owned),
            r["published"].as_bool(),
            r["drift"].as_str().map(str::to_owned),
        )
    };
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        rows.iter().map(key).collect::<Vec<_>>(),
        vec![
            (s(DAY1), Some(true), s("first_run")),
            (s(DAY2), Some(true), s("passed")),
            (s("2025-12-03"), Some(false), s("tripped")),
        ]
    );
    let m = metrics(&out, DAY2);
    assert_eq!(rows[1]["run_id"], m["run_id"]);
    assert_eq!(rows[1]["customers"], m["counts"]["customers_scored"]);
    assert_eq!(rows[1]["roc_auc"], m["churn"]["model"]["roc_auc"]);
    assert_eq!(rows[1]["total_clv"], m["kpis"]["run"]["total_clv"]);
    assert_eq!(rows[1]["tiers"]["vip"], m["tiers"]["vip"]["customers"]);
    assert_eq!(rows[2]["gates_tripped"][0], "max_customer_change");
    let model: Value = serde_json::from_slice(
        &std::fs::read(run_dir(&out, DAY2).join("model.json")).expect("model"),
    )
    .expect("json");
    assert_eq!(
        rows[1]["btyd_params"]["r"],
        model["value"]["transactions"]["params"]["r"]
    );
    // The table: a header and one line per run, the refused one named so.
    let o = bin()
        .args(["history", "--out"])
        .arg(&out)
        .output()
        .expect("history");
    ok(&o);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("as_of       run_id"), "{text}");
    assert!(lines[3].starts_with("2025-12-03  "), "{text}");
    assert!(lines[3].contains("  refused  "), "{text}");
    assert!(
        lines[3].contains("  tripped: max_customer_change"),
        "{text}"
    );
    // Not a folder: a usage error.
    let o = bin()
        .args(["history", "--out"])
        .arg(dir.path().join("nowhere"))
        .output()
        .expect("history");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim_end(),
        format!(
            "churnclv: error: --out {}: not a folder (expected the output root of `churnclv run`)",
            dir.path().join("nowhere").display()
        )
    );
}

#[test]
fn a_gate_set_to_inf_is_measured_but_off_and_a_bad_limit_is_a_config_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = base(dir.path());
    let out = dir.path().join("out");
    ok(&run(&events, &out, DAY1, &[]));
    let tripled = rewrite(dir.path(), "tripled", amounts_tripled);
    // Every gate the tripled amounts trip, switched off: published, and still measured.
    let config = dir.path().join("gates.toml");
    std::fs::write(
        &config,
        "[gates]\nmax_input_mean_change = inf\nmax_input_psi = inf\nmax_score_psi = inf\n",
    )
    .expect("config");
    let cfg = config.display().to_string();
    ok(&run(&tripled, &out, DAY2, &["--config", &cfg]));
    let d = &metrics(&out, DAY2)["drift"];
    assert_eq!(d["status"], "passed");
    let g = gate(d, "max_input_mean_change");
    assert_eq!(g["tripped"], false);
    assert!(g["measured"].as_f64().expect("m") > 1.9, "{g}");
    assert!(
        g["limit"].is_null() || g["limit"].as_f64().is_some_and(f64::is_infinite),
        "{g}"
    );
    // A negative limit: exit 2 naming the key, before any work; nothing new published.
    let before = snapshot(&out);
    std::fs::write(&config, "[gates]\nmax_input_psi = -1\n").expect("config");
    let o = run(&tripled, &out, "2025-12-03", &["--config", &cfg]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim_end(),
        "churnclv: error: gates.max_input_psi must be a number >= 0 (inf switches the gate off), got -1"
    );
    assert_eq!(snapshot(&out), before);
}
