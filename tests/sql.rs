//! `churnclv sql`: the printed Spark SQL follows the column mapping and the config, and bad
//! flags are exit 2 with one line. (The query's results are checked against `churnclv
//! features` on Sail and Apache Spark by scripts/spark_parity.py, run by `make test`.)

use crate::common::bin;

fn sql(args: &[&str]) -> (i32, String, String) {
    let o = bin().arg("sql").args(args).output().expect("sql");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn features_query_reads_the_mapped_columns_of_the_view_events() {
    let (code, out, err) = sql(&[
        "features",
        "--as-of",
        "2025-07-01",
        "--label-horizon",
        "90d",
        "--map",
        "customer_id=user_id",
        "--absent",
        "channel,event_id",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("-- churnclv "), "{out}");
    assert!(out.contains("CAST(`user_id` AS STRING) AS customer_id"));
    assert!(out.contains("CAST(NULL AS STRING) AS channel"));
    assert!(out.contains("CAST(NULL AS STRING) AS event_id"));
    assert!(out.contains("CAST(`category` AS STRING) AS category"));
    assert_eq!(out.matches("FROM events").count(), 1, "one scan");
    for label in [
        "churned",
        "window_purchase_days",
        "window_net_spend",
        "prior_window_net_spend",
    ] {
        assert!(out.contains(&format!(" AS `{label}`")), "{label}");
    }
    // 2025-07-01 and 2025-09-29 (+90 d) in µs: the cutoff and the end of the used rows.
    assert!(out.contains("t < 1751328000000000 AS b"));
    assert!(out.contains("WHEN t >= 1759104000000000 THEN 'after_as_of'"));
}

#[test]
fn the_config_switches_deduplication_off_and_adds_aliases() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[validation]\ndeduplicate = false\n[event_types]\n\"Order\" = \"purchase\"\n",
    )
    .expect("config");
    let (code, out, err) = sql(&[
        "rejects",
        "--as-of",
        "2025-07-01",
        "--config",
        cfg.to_str().expect("path"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("duplicate_key"));
    assert!(out.contains("WHEN 'order' THEN 'purchase'"));
    assert!(out.contains("GROUP BY reason"));
    let (_, with_dedup, _) = sql(&["rejects", "--as-of", "2025-07-01"]);
    assert!(with_dedup.contains("THEN 'duplicate_key'"));
}

#[test]
fn the_spark_drivers_train_sample_is_validated_with_the_config() {
    // `[spark] train_sample` is read by spark/churnclv_spark.py, which runs `churnclv sql
    // rejects --config` first so that a bad share stops it before the engine runs anything.
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("c.toml");
    for (share, want) in [
        ("0.1", None),
        ("1", None),
        ("0", Some("0")),
        ("1.5", Some("1.5")),
    ] {
        std::fs::write(&cfg, format!("[spark]\ntrain_sample = {share}\n")).expect("config");
        let (code, out, err) = sql(&[
            "rejects",
            "--as-of",
            "2025-07-01",
            "--config",
            cfg.to_str().expect("path"),
        ]);
        match want {
            None => assert_eq!(code, 0, "{share}: {err}"),
            Some(v) => assert_eq!(
                (code, out.as_str(), err.as_str()),
                (
                    2,
                    "",
                    format!(
                        "churnclv: error: spark.train_sample must be a share of the customers in (0, 1], got {v}\n"
                    )
                    .as_str()
                ),
                "{share}"
            ),
        }
    }
}

#[test]
fn bad_flags_are_exit_2_with_one_line() {
    for (args, want) in [
        (
            vec!["features", "--as-of", "2025-07-01", "--absent", "customer_id"],
            "churnclv: error: --absent customer_id: the column is required (customer_id, event_time and event_type are)\n",
        ),
        (
            vec!["features", "--as-of", "2025-07-01", "--absent", "qty"],
            "churnclv: error: --absent qty: not a column of the input contract; expected one of amount, channel, category, order_id, event_id\n",
        ),
    ] {
        let (code, out, err) = sql(&args);
        assert_eq!((code, out.as_str(), err.as_str()), (2, "", want), "{args:?}");
    }
    let (code, out, err) = sql(&["rejects", "--as-of", "2025-13-01"]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(err.starts_with("churnclv: error: --as-of: "), "{err}");
    let (code, _, err) = sql(&["features"]);
    assert_eq!(code, 2);
    assert!(err.contains("--as-of <DATE>"), "{err}");
}

/// `churnclv sql features | head -1` closes the pipe before the query is written: the output
/// ends quietly with exit 0 (it was a panic, exit 101, with a backtrace on stderr).
#[test]
fn a_closed_stdout_ends_the_output_quietly() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let o = std::process::Command::new(assert_cmd::cargo::cargo_bin("churnclv"))
        .args(["sql", "features", "--as-of", "2025-07-01"])
        .stdout(writer)
        .output()
        .expect("sql");
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
}
