//! Inputs are read once: links to folders are not followed unless asked, a file reached by two
//! paths counts once, every file read is in the manifest, and the run id does not depend on
//! how the input path is spelled.

use crate::common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::bin;

/// A generated history (`customers`, `seed`) written as `dir/name`; returns its row count.
fn generated(path: &Path, customers: u32, seed: u32) -> u64 {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    bin()
        .args(["--quiet", "generate", "--customers"])
        .arg(customers.to_string())
        .args(["--seed", &seed.to_string(), "--out"])
        .arg(path)
        .assert()
        .success();
    std::fs::remove_file(path.with_extension("truth.parquet")).expect("truth");
    let f = std::fs::File::open(path).expect("open");
    let r = parquet::file::reader::SerializedFileReader::new(f).expect("parquet");
    use parquet::file::reader::FileReader;
    r.metadata().file_metadata().num_rows() as u64
}

struct Run {
    code: i32,
    stderr: String,
    manifest: serde_json::Value,
}

/// `churnclv run` from `cwd` with `--events spec`; the manifest of the partition (Null if none).
fn run(cwd: &Path, spec: &str, out: &Path, extra: &[&str]) -> Run {
    let o = bin()
        .current_dir(cwd)
        .args(["run", "--events", spec, "--out"])
        .arg(out)
        .args(extra)
        .output()
        .expect("run");
    let manifest = std::fs::read(common::run_dir(&out, "2025-12-31").join("manifest.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    Run {
        code: o.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        manifest,
    }
}

/// (path, canonical, rows) of each input file in the manifest.
fn inputs(m: &serde_json::Value) -> Vec<(String, String, u64)> {
    m["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|i| {
            (
                i["path"].as_str().expect("path").to_string(),
                i["canonical"].as_str().expect("canonical").to_string(),
                i["rows"].as_u64().expect("rows"),
            )
        })
        .collect()
}

fn skipped(m: &serde_json::Value) -> Vec<(String, String)> {
    m["inputs_skipped"]
        .as_array()
        .expect("inputs_skipped")
        .iter()
        .map(|s| {
            (
                s["path"].as_str().expect("path").to_string(),
                s["reason"].as_str().expect("reason").to_string(),
            )
        })
        .collect()
}

fn canonical(p: &Path) -> String {
    std::fs::canonicalize(p)
        .expect("canonical")
        .display()
        .to_string()
}

/// `events/2025-12-29/part.parquet` and `events/2025-12-30/part.parquet` (different
/// customers, so no row of one duplicates a row of the other… except generated order ids,
/// which the test does not depend on); returns the folder and the two row counts.
fn dated(dir: &Path) -> (PathBuf, u64, u64) {
    let events = dir.join("events");
    let a = generated(&events.join("2025-12-29/part.parquet"), 60, 3);
    let b = generated(&events.join("2025-12-30/part.parquet"), 200, 5);
    (events, a, b)
}

const NOT_FOLLOWED: &str = "link to a folder, not followed (use --follow-links)";

#[test]
fn a_latest_link_beside_the_dated_folder_is_not_read_again() {
    let dir = tempfile::tempdir().expect("tmp");
    let (events, a, b) = dated(dir.path());
    symlink("2025-12-30", events.join("latest")).expect("link");
    let out = dir.path().join("out");
    let r = run(dir.path(), "events", &out, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        inputs(&r.manifest),
        vec![
            (
                "events/2025-12-29/part.parquet".to_string(),
                canonical(&events.join("2025-12-29/part.parquet")),
                a
            ),
            (
                "events/2025-12-30/part.parquet".to_string(),
                canonical(&events.join("2025-12-30/part.parquet")),
                b
            ),
        ]
    );
    assert_eq!(r.manifest["rows"]["rows_read"], a + b);
    assert_eq!(
        skipped(&r.manifest),
        vec![("events/latest".to_string(), NOT_FOLLOWED.to_string())]
    );
    // Logged once, at warn.
    assert_eq!(
        r.stderr
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("events/latest: skipped: link to a folder"))
            .count(),
        1,
        "{}",
        r.stderr
    );
}

#[test]
fn a_link_loop_ends_with_or_without_following() {
    let dir = tempfile::tempdir().expect("tmp");
    let (events, a, b) = dated(dir.path());
    symlink("..", events.join("2025-12-30/up")).expect("link");
    symlink(".", events.join("self")).expect("link");
    for extra in [&[][..], &["--follow-links"][..]] {
        let out = dir.path().join(format!("out{}", extra.len()));
        let r = run(dir.path(), "events", &out, extra);
        assert_eq!(r.code, 0, "{extra:?}: {}", r.stderr);
        let files = inputs(&r.manifest);
        assert_eq!(files.len(), 2, "{extra:?}: {files:?}");
        assert_eq!(r.manifest["rows"]["rows_read"], a + b, "{extra:?}");
    }
}

#[test]
fn a_file_link_to_a_listed_file_is_read_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let (events, a, b) = dated(dir.path());
    symlink("2025-12-29/part.parquet", events.join("copy-of-29.parquet")).expect("link");
    let out = dir.path().join("out");
    let r = run(dir.path(), "events", &out, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.manifest["rows"]["rows_read"], a + b);
    let paths: Vec<String> = inputs(&r.manifest).into_iter().map(|f| f.0).collect();
    assert_eq!(
        paths,
        [
            "events/2025-12-29/part.parquet",
            "events/2025-12-30/part.parquet"
        ]
    );
    assert_eq!(
        skipped(&r.manifest),
        vec![(
            "events/copy-of-29.parquet".to_string(),
            "same file as events/2025-12-29/part.parquet (read once)".to_string()
        )]
    );
}

#[test]
fn globs_with_links_read_each_file_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let (events, a, b) = dated(dir.path());
    symlink("2025-12-30", events.join("latest")).expect("link");
    symlink(
        "../2025-12-30/part.parquet",
        events.join("2025-12-29/again.parquet"),
    )
    .expect("link");
    for (i, spec) in [
        "events/*",
        "events/*/*.parquet",
        "events/**/*.parquet",
        "events/**",
        "./events/2025-12-*/*.parquet",
    ]
    .iter()
    .enumerate()
    {
        for extra in [&[][..], &["--follow-links"][..]] {
            let out = dir.path().join(format!("out-{i}-{}", extra.len()));
            let r = run(dir.path(), spec, &out, extra);
            assert_eq!(r.code, 0, "{spec} {extra:?}: {}", r.stderr);
            assert_eq!(r.manifest["rows"]["rows_read"], a + b, "{spec} {extra:?}");
            assert_eq!(inputs(&r.manifest).len(), 2, "{spec} {extra:?}");
        }
    }
}

#[test]
fn follow_links_reads_a_linked_folder_elsewhere_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let (events, a, b) = dated(dir.path());
    let elsewhere = dir.path().join("archive/2025-12-28");
    let c = generated(&elsewhere.join("part.parquet"), 40, 9);
    // Two links to the same folder, one of them inside a dated folder.
    symlink(&elsewhere, events.join("2025-12-28")).expect("link");
    symlink(&elsewhere, events.join("2025-12-30/old")).expect("link");
    let out = dir.path().join("out-plain");
    let r = run(dir.path(), "events", &out, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.manifest["rows"]["rows_read"], a + b);
    assert_eq!(
        skipped(&r.manifest),
        vec![
            ("events/2025-12-28".to_string(), NOT_FOLLOWED.to_string()),
            (
                "events/2025-12-30/old".to_string(),
                NOT_FOLLOWED.to_string()
            ),
        ]
    );
    let out = dir.path().join("out-follow");
    let r = run(dir.path(), "events", &out, &["--follow-links"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.manifest["rows"]["rows_read"], a + b + c);
    let files = inputs(&r.manifest);
    assert_eq!(files.len(), 3, "{files:?}");
    assert_eq!(
        files
            .iter()
            .filter(|f| f.1 == canonical(&elsewhere.join("part.parquet")))
            .count(),
        1
    );
    assert_eq!(r.manifest["config"]["input"]["follow_links"], true);
}

#[test]
fn the_run_id_does_not_depend_on_how_the_path_is_spelled() {
    let dir = tempfile::tempdir().expect("tmp");
    let (events, _, _) = dated(dir.path());
    let file = events.join("2025-12-30/part.parquet");
    symlink(&file, dir.path().join("link.parquet")).expect("link");
    symlink(&events, dir.path().join("events-link")).expect("link");
    let abs = events.display().to_string();
    let mut ids = Vec::new();
    for (i, spec) in [
        "events",
        "./events",
        "events/",
        abs.as_str(),
        "events-link",
        "events/../events",
    ]
    .iter()
    .enumerate()
    {
        let out = dir.path().join(format!("dir-{i}"));
        let r = run(dir.path(), spec, &out, &[]);
        assert_eq!(r.code, 0, "{spec}: {}", r.stderr);
        ids.push((spec.to_string(), r.manifest["run_id"].clone()));
    }
    let first = ids[0].1.clone();
    assert!(first.as_str().is_some_and(|s| s.starts_with("20251231-")));
    for (spec, id) in &ids {
        assert_eq!(id, &first, "{spec}");
    }
    let mut file_ids = Vec::new();
    for (i, spec) in [
        "events/2025-12-30/part.parquet".to_string(),
        "./events/2025-12-30//part.parquet".to_string(),
        file.display().to_string(),
        "link.parquet".to_string(),
    ]
    .iter()
    .enumerate()
    {
        let out = dir.path().join(format!("file-{i}"));
        let r = run(dir.path(), spec, &out, &[]);
        assert_eq!(r.code, 0, "{spec}: {}", r.stderr);
        file_ids.push(r.manifest["run_id"].clone());
    }
    assert!(file_ids.iter().all(|id| *id == file_ids[0]), "{file_ids:?}");
    assert_ne!(file_ids[0], first);
}

#[test]
fn a_folder_of_links_only_says_what_was_not_followed() {
    let dir = tempfile::tempdir().expect("tmp");
    let (events, a, b) = dated(dir.path());
    let view = dir.path().join("view");
    std::fs::create_dir_all(&view).expect("view");
    symlink(events.join("2025-12-29"), view.join("2025-12-29")).expect("link");
    symlink(events.join("2025-12-30"), view.join("2025-12-30")).expect("link");
    let out = dir.path().join("out");
    let r = run(dir.path(), "view", &out, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(
        r.stderr.lines().last(),
        Some("churnclv: error: view: no Parquet files found (looked for *.parquet, recursively; links to folders not followed: view/2025-12-29, view/2025-12-30; use --follow-links to read them)")
    );
    let r = run(dir.path(), "view", &out, &["--follow-links"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.manifest["rows"]["rows_read"], a + b);
}
