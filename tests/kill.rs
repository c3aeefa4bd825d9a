//! Output safety: a run killed (SIGKILL) at any point never leaves a half partition, and the
//! next run repairs what it left. (Kills at each named publish step, and recovery's rules, are
//! in tests/publish.rs.)

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::bin;
use sha2::{Digest, Sha256};

/// The partition is complete: `_SUCCESS`, and every output listed in its manifest with the
/// recorded size and checksum.
fn assert_complete(part: &Path) {
    assert!(
        part.join("_SUCCESS").exists(),
        "{} has no _SUCCESS",
        part.display()
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(part.join("manifest.json")).expect("manifest"))
            .expect("json");
    let outputs = manifest["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 6);
    for o in outputs {
        let bytes = std::fs::read(part.join(o["file"].as_str().expect("file"))).expect("output");
        let hex: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(o["sha256"].as_str(), Some(hex.as_str()), "{}", o["file"]);
    }
}

fn visible(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    v
}

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
    let part = out.join("as_of=2025-12-31");
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
    assert_complete(&part);
    let versions = |p: &Path| std::fs::read(p.join("metrics.json")).expect("metrics");
    let first = versions(&part);

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
        assert_eq!(
            visible(&out),
            ["as_of=2025-12-31"],
            "after a kill at {ms} ms"
        );
        assert_complete(&part);
    }
    // The next run repairs leftovers (staging folders) and publishes normally; the lock file
    // stays (a kernel lock on it is what excludes other runs; the file itself is never removed).
    assert!(run("90d").status().expect("run").success());
    assert_complete(&part);
    let hidden: Vec<String> = std::fs::read_dir(&out)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert_eq!(hidden, [".churnclv.lock"], "left over");
    assert_eq!(
        versions(&part),
        first,
        "the same job gives the same metrics"
    );
}
