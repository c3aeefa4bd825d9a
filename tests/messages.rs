//! What an operator reads when a run fails: one line (text or JSON), each OS error once, the
//! same exit code for the same kind of mistake in every subcommand, control characters in
//! paths escaped, and an input column given two roles refused before any file is read.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, StringArray, TimestampMicrosecondArray};
use common::{bin, ts, write};

/// A tiny valid event file (two purchases) with an `event_id` column.
fn small(dir: &Path) -> PathBuf {
    write(
        &dir.join("small.parquet"),
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
            ("event_id", Arc::new(StringArray::from(vec!["e1", "e2"]))),
        ],
    )
}

/// A generated history of 400 customers (enough to train), its path.
fn history(dir: &Path) -> PathBuf {
    let events = dir.join("history.parquet");
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
        .arg(&events)
        .assert()
        .success();
    events
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn churnclv(args: &[&str]) -> Outcome {
    let o = bin().args(args).output().expect("run churnclv");
    Outcome {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Every stderr line parsed as a JSON object.
fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
            assert!(v.is_object(), "{l}");
            v
        })
        .collect()
}

/// The entries of a folder (names), sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn with_json_logs_every_line_is_json_the_final_error_too() {
    let dir = tempfile::tempdir().expect("tmp");
    let missing = dir.path().join("nope.parquet").display().to_string();

    // A failing run: the last line is the error, as JSON, with its exit code.
    let o = churnclv(&[
        "--log-format",
        "json",
        "run",
        "--events",
        &missing,
        "--out",
        &dir.path().join("out").display().to_string(),
    ]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    let lines = json_lines(&o.stderr);
    let last = lines.last().expect("a final line");
    assert_eq!(last["level"], "ERROR");
    assert_eq!(last["stage"], "exit");
    assert_eq!(last["exit_code"], 2);
    assert_eq!(
        last["message"],
        format!("{missing}: no such file or directory")
    );
    let ts = last["ts"].as_str().expect("ts");
    assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
    assert!(!dir.path().join("out").exists(), "nothing created");

    // A usage error clap finds, with either spelling of the flag: one JSON line, exit 2.
    for flag in [&["--log-format", "json"][..], &["--log-format=json"][..]] {
        let mut args = flag.to_vec();
        args.extend(["run", "--events", &missing]);
        let o = churnclv(&args);
        assert_eq!(o.code, 2, "{}", o.stderr);
        let lines = json_lines(&o.stderr);
        assert_eq!(lines.len(), 1, "{}", o.stderr);
        assert_eq!(lines[0]["level"], "ERROR");
        assert_eq!(lines[0]["exit_code"], 2);
        assert_eq!(
            lines[0]["message"],
            "the following required arguments were not provided: --out <DIR>; Usage: churnclv run --events <PATH> --out <DIR>"
        );
    }
    // An unknown flag after the subcommand, JSON asked for before it.
    let o = churnclv(&["--log-format", "json", "validate", "--evnts", "x"]);
    assert_eq!(o.code, 2);
    let lines = json_lines(&o.stderr);
    assert_eq!(lines.len(), 1, "{}", o.stderr);
    assert!(
        lines[0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("unexpected argument '--evnts' found")),
        "{}",
        o.stderr
    );
    // Text logs keep clap's own multi-line usage text (for people), exit 2.
    let o = churnclv(&["run", "--events", &missing]);
    assert_eq!(o.code, 2);
    assert!(o
        .stderr
        .starts_with("error: the following required arguments were not provided:"));
    // --help is not an error.
    let o = churnclv(&["--log-format", "json", "run", "--help"]);
    assert_eq!(o.code, 0);
    assert!(o.stdout.contains("--out <DIR>"));

    // A successful run: every line JSON, no error line.
    let events = history(dir.path());
    let out = dir.path().join("out");
    let o = churnclv(&[
        "--log-format",
        "json",
        "run",
        "--events",
        &events.display().to_string(),
        "--out",
        &out.display().to_string(),
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let lines = json_lines(&o.stderr);
    assert!(lines.len() >= 3, "{}", o.stderr);
    assert!(lines.iter().all(|l| l["level"] != "ERROR"), "{}", o.stderr);
}

#[test]
fn os_errors_are_printed_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = small(dir.path());
    let e = events.display().to_string();
    let config = dir.path().join("nope.toml");
    let o = churnclv(&[
        "validate",
        "--events",
        &e,
        "--config",
        &config.display().to_string(),
    ]);
    assert_eq!(o.code, 2);
    assert_eq!(
        o.stderr,
        format!(
            "churnclv: error: {}: cannot read config: No such file or directory (os error 2)\n",
            config.display()
        )
    );
    let model = dir.path().join("nope.json");
    let o = churnclv(&[
        "score",
        "--model",
        &model.display().to_string(),
        "--events",
        &e,
        "--out",
        &dir.path().join("out").display().to_string(),
    ]);
    assert_eq!(o.code, 2);
    assert_eq!(
        o.stderr,
        format!(
            "churnclv: error: {}: cannot read model: No such file or directory (os error 2)\n",
            model.display()
        )
    );
    // An OS error from deep inside: an output folder under a regular file.
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").expect("write");
    let out = file.join("out");
    let o = churnclv(&[
        "features",
        "--events",
        &e,
        "--out",
        &out.join("f.parquet").display().to_string(),
    ]);
    assert_eq!(o.code, 2);
    assert_eq!(
        o.stderr,
        format!(
            "churnclv: error: --out {}: {} is not a folder\n",
            out.join("f.parquet").display(),
            file.display()
        )
    );
}

#[test]
fn a_path_with_a_newline_stays_on_one_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let odd = dir.path().join("new\nline\tfolder");
    std::fs::create_dir(&odd).expect("a folder name with a newline");
    let shown = format!("{}/new\\nline\\tfolder", dir.path().display());

    // The final error, text: escaped, one line.
    let o = churnclv(&["run", "--events", &odd.display().to_string(), "--out", "x"]);
    assert_eq!(o.code, 2);
    assert_eq!(
        o.stderr,
        format!(
            "churnclv: error: {shown}: no Parquet files found (looked for *.parquet, recursively)\n"
        )
    );
    // JSON: one line, and the message decodes to the exact path.
    let o = churnclv(&[
        "--log-format",
        "json",
        "run",
        "--events",
        &odd.display().to_string(),
        "--out",
        "x",
    ]);
    assert_eq!(o.code, 2);
    let lines = json_lines(&o.stderr);
    assert_eq!(lines.len(), 1, "{}", o.stderr);
    assert_eq!(
        lines[0]["message"],
        format!(
            "{}: no Parquet files found (looked for *.parquet, recursively)",
            odd.display()
        )
    );
    // A text log line naming the path (generate logs what it wrote): escaped, one line.
    let file = odd.join("e.parquet");
    let o = churnclv(&[
        "generate",
        "--customers",
        "5",
        "--out",
        &file.display().to_string(),
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!(
            "wrote {shown}/e.parquet and {shown}/e.truth.parquet"
        )),
        "{}",
        o.stderr
    );
}

/// Runs `args`, expects exit 2 and exactly `churnclv: error: {message}`, and that `out` (if
/// any) holds what it held before.
fn refused(args: &[&str], message: &str, out: Option<&Path>) {
    let before = out.map(listing);
    let o = churnclv(args);
    assert_eq!(o.code, 2, "{args:?}: {}", o.stderr);
    assert_eq!(
        o.stderr,
        format!("churnclv: error: {message}\n"),
        "{args:?}"
    );
    if let Some(out) = out {
        assert_eq!(Some(listing(out)), before, "{args:?}: output untouched");
    }
}

#[test]
fn exit_codes_agree_across_subcommands() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let events = history(d).display().to_string();
    // A model to score with, from a real run.
    let models = d.join("models");
    let o = churnclv(&[
        "--quiet",
        "run",
        "--events",
        &events,
        "--out",
        &d.join("first").display().to_string(),
        "--save-model",
        &models.display().to_string(),
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let model = std::fs::read_dir(&models)
        .expect("models")
        .flatten()
        .next()
        .expect("one model")
        .path()
        .join("model.json")
        .display()
        .to_string();
    let missing = d.join("nope.parquet").display().to_string();
    let bad_config = d.join("bad.toml");
    std::fs::write(&bad_config, "[churn]\nclass_weight = \"heavy\"\n").expect("write");
    let bad_config = bad_config.display().to_string();
    let plain = d.join("plain");
    std::fs::write(&plain, b"x").expect("write");
    let under_file = plain.join("out").display().to_string();
    let folder = d.join("a-folder");
    std::fs::create_dir(&folder).expect("mkdir");
    let folder_s = folder.display().to_string();
    let out = d.join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let out_s = out.display().to_string();
    let f_out = out.join("f.parquet").display().to_string();
    let g_out = out.join("g.parquet").display().to_string();

    // (subcommand, the arguments it needs besides --events)
    let commands: Vec<(&str, Vec<&str>)> = vec![
        ("run", vec!["--out", &out_s]),
        ("score", vec!["--model", &model, "--out", &out_s]),
        ("features", vec!["--out", &f_out]),
        ("validate", vec![]),
        ("btyd", vec!["--cutoff", "2025-06-01"]),
    ];
    for (cmd, rest) in &commands {
        // Missing input.
        let mut a = vec![*cmd, "--events", &missing];
        a.extend(rest);
        refused(
            &a,
            &format!("{missing}: no such file or directory"),
            Some(&out),
        );
        // A config value out of range.
        let mut a = vec![*cmd, "--events", &events, "--config", &bad_config];
        a.extend(rest);
        refused(
            &a,
            "churn.class_weight must be none or balanced, got heavy",
            Some(&out),
        );
        // One input column given two roles.
        let mut a = vec![*cmd, "--events", &events, "--map", "amount=customer_id"];
        a.extend(rest);
        refused(
            &a,
            "column mapping gives input column 'customer_id' two roles, customer_id and amount; map one of them to another column (an optional role is switched off with --map amount= or amount = \"\" under [columns])",
            Some(&out),
        );
        // A flag clap refuses.
        let mut a = vec![*cmd, "--events", &events, "--no-such-flag"];
        a.extend(rest);
        let o = churnclv(&a);
        assert_eq!(o.code, 2, "{cmd}: {}", o.stderr);
    }
    // Dates.
    for (cmd, flag) in [
        ("run", "--as-of"),
        ("score", "--as-of"),
        ("features", "--as-of"),
        ("validate", "--as-of"),
        ("btyd", "--cutoff"),
    ] {
        let rest = &commands.iter().find(|(c, _)| *c == cmd).expect("cmd").1;
        let mut a = vec![cmd, "--events", &events, flag, "2025-02-30"];
        a.extend(
            rest.iter()
                .filter(|r| **r != "2025-06-01" && **r != "--cutoff"),
        );
        refused(
            &a,
            &format!("{flag}: invalid date '2025-02-30': expected YYYY-MM-DD"),
            Some(&out),
        );
    }
    // Output paths that can never be written: a folder where a file goes, a path under a
    // regular file. Usage errors (2) naming the flag and the path, in every writing command.
    refused(
        &["features", "--events", &events, "--out", &folder_s],
        &format!("--out {folder_s}: is a folder; expected the path of a file to write"),
        Some(&folder),
    );
    refused(
        &["generate", "--customers", "5", "--out", &folder_s],
        &format!("--out {folder_s}: is a folder; expected the path of a file to write"),
        Some(&folder),
    );
    for args in [
        vec!["run", "--events", &events, "--out", &under_file],
        vec![
            "score",
            "--model",
            &model,
            "--events",
            &events,
            "--out",
            &under_file,
        ],
    ] {
        refused(
            &args,
            &format!("--out {under_file}: {} is not a folder", plain.display()),
            None,
        );
    }
    refused(
        &[
            "features",
            "--events",
            &events,
            "--out",
            &format!("{under_file}/f.parquet"),
        ],
        &format!(
            "--out {under_file}/f.parquet: {} is not a folder",
            plain.display()
        ),
        None,
    );
    refused(
        &["generate", "--out", &format!("{under_file}/g.parquet")],
        &format!(
            "--out {under_file}/g.parquet: {} is not a folder",
            plain.display()
        ),
        None,
    );
    // score and run with --out a regular file.
    let plain_s = plain.display().to_string();
    for args in [
        vec!["run", "--events", &events, "--out", &plain_s],
        vec![
            "score", "--model", &model, "--events", &events, "--out", &plain_s,
        ],
    ] {
        refused(
            &args,
            &format!("--out {plain_s}: {plain_s} is not a folder"),
            None,
        );
    }
    // --save-model under a regular file: refused before the run, not after publishing.
    refused(
        &[
            "run",
            "--events",
            &events,
            "--out",
            &out_s,
            "--save-model",
            &under_file,
        ],
        &format!(
            "--save-model {under_file}: {} is not a folder",
            plain.display()
        ),
        Some(&out),
    );
    assert_eq!(std::fs::read(&plain).expect("plain"), b"x", "untouched");
    assert_eq!(listing(&out), Vec::<String>::new(), "nothing written");
    // generate: a usage error of its own.
    refused(
        &["generate", "--customers", "0", "--out", &g_out],
        "customers must be between 1 and 50000000, got 0",
        Some(&out),
    );
}

#[test]
fn a_column_with_two_roles_is_refused_and_an_optional_role_can_be_switched_off() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = small(dir.path()).display().to_string();
    let f = dir.path().join("f.parquet").display().to_string();
    // Two explicit mappings onto one column.
    refused(
        &[
            "features", "--events", &events, "--out", &f, "--map", "customer_id=x", "--map",
            "order_id=x",
        ],
        "column mapping gives input column 'x' two roles, customer_id and order_id; map one of them to another column (an optional role is switched off with --map order_id= or order_id = \"\" under [columns])",
        Some(dir.path()),
    );
    // A mapping onto the default name of another role, present in the file.
    refused(
        &["features", "--events", &events, "--out", &f, "--map", "order_id=event_id"],
        "column mapping gives input column 'event_id' two roles, order_id and event_id; map one of them to another column (an optional role is switched off with --map event_id= or event_id = \"\" under [columns])",
        Some(dir.path()),
    );
    // The same in a config file.
    let toml = dir.path().join("c.toml");
    std::fs::write(&toml, "[columns]\norder_id = \"event_id\"\n").expect("write");
    refused(
        &[
            "features",
            "--events",
            &events,
            "--out",
            &f,
            "--config",
            &toml.display().to_string(),
        ],
        "column mapping gives input column 'event_id' two roles, order_id and event_id; map one of them to another column (an optional role is switched off with --map event_id= or event_id = \"\" under [columns])",
        None,
    );
    // Switching the other role off resolves it.
    let o = churnclv(&[
        "features",
        "--quiet",
        "--events",
        &events,
        "--out",
        &f,
        "--as-of",
        "2024-03-01",
        "--map",
        "order_id=event_id",
        "--map",
        "event_id=",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout
            .starts_with("2 customers, features before 2024-03-01"),
        "{}",
        o.stdout
    );
    // A required role cannot be switched off.
    refused(
        &[
            "features",
            "--events",
            &events,
            "--out",
            &f,
            "--map",
            "customer_id=",
        ],
        "column mapping: the required column customer_id cannot be switched off (mapped to '')",
        None,
    );
}
