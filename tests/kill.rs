//! Output safety: a run killed (SIGKILL) at any point never leaves a half partition, and the
//! next run repairs what it left. (Kills at each named publish step, and recovery's rules, are
//! in tests/publish.rs.)

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::bin;

/// The run is complete (`_SUCCESS`, every output listed in its manifest with the recorded
/// size and checksum), or, killed between two table swaps, uncommitted with each table
/// partition complete. Returns the run's metrics when it is committed.
fn assert_complete(out: &Path) -> Option<Vec<u8>> {
    let run = common::check_run(out, AS_OF);
    if let Some((files, _)) = &run {
        assert_eq!(files.len(), 6, "{files:?}");
    }
    run.map(|(_, metrics)| metrics)
}

/// Only the four table folders, each with the one partition (hidden staging folders aside).
fn visible_ok(out: &Path, context: &str) {
    assert_eq!(
        common::visible(out),
        ["features", "rejects", "runs", "scores"],
        "{context}"
    );
    for t in ["features", "rejects", "runs", "scores"] {
        assert_eq!(
            common::visible(&out.join(t)),
            [format!("as_of={AS_OF}")],
            "{context}"
        );
    }
}

const AS_OF: &str = "2025-12-31";

#[test]
fn sigkill_at_any_point_leaves_the_previous_partition_or_the_new_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = dir.path().join("events.parquet");
    bin()
        .args(["generate", "--customers", "20000", "--seed", "9", "--out"])
        .arg(&events)
        .assert()
        .success();
    let out = dir.path().join("out");
    let run = |horizon: &str| {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("churnclv"));
        c.args([
            "run",
            "--quiet",
            "--as-of",
            "2025-12-31",
            "--horizon",
            horizon,
            "--events",
        ])
        .arg(&events)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        c
    };
    assert!(run("90d").status().expect("run").success());
    let first = assert_complete(&out).expect("committed");

    // Kill reruns (alternating horizons, so old and new differ) at spread-out moments.
    for (k, ms) in [30u64, 120, 250, 400, 550, 700, 850, 1000, 1300]
        .into_iter()
        .enumerate()
    {
        let mut child = run(if k % 2 == 0 { "60d" } else { "90d" })
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        visible_ok(&out, &format!("after a kill at {ms} ms"));
        assert_complete(&out);
    }
    // The next run repairs leftovers (staging folders) and publishes normally; the lock file
    // stays (a kernel lock on it is what excludes other runs; the file itself is never removed).
    assert!(run("90d").status().expect("run").success());
    let last = assert_complete(&out).expect("committed");
    let hidden: Vec<String> = std::fs::read_dir(&out)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert_eq!(hidden, [".churnclv.lock"], "left over");
    for t in ["features", "rejects", "runs", "scores"] {
        let names: Vec<_> = std::fs::read_dir(out.join(t))
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{t}: left over: {names:?}");
    }
    assert_eq!(last, first, "the same job gives the same metrics");
}
