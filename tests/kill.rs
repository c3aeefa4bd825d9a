//! Output safety: a run killed (SIGKILL) at any point never leaves a half partition, and the
//! next run repairs what it left.

mod common;

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
    // The next run repairs leftovers (staging folders, lock) and publishes normally.
    assert!(run("90d").status().expect("run").success());
    assert_complete(&part);
    let hidden: Vec<String> = std::fs::read_dir(&out)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "left over: {hidden:?}");
    assert_eq!(
        versions(&part),
        first,
        "the same job gives the same metrics"
    );
}

#[test]
fn recover_restores_a_partition_moved_aside_and_drops_staging() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path();
    // Killed between the two renames: the old partition is aside, the new one not in place.
    std::fs::create_dir_all(out.join(".old.as_of=2024-01-01")).expect("mkdir");
    std::fs::write(out.join(".old.as_of=2024-01-01/_SUCCESS"), b"").expect("write");
    // Killed after the rename: the replaced one is still aside.
    std::fs::create_dir_all(out.join("as_of=2024-02-01")).expect("mkdir");
    std::fs::create_dir_all(out.join(".old.as_of=2024-02-01")).expect("mkdir");
    // Killed while writing.
    std::fs::create_dir_all(out.join(".tmp-20240301-abc")).expect("mkdir");
    let mut done = churnclv::io::output::recover(out).expect("recover");
    done.sort();
    assert_eq!(
        done,
        [
            "removed replaced .old.as_of=2024-02-01",
            "removed unfinished .tmp-20240301-abc",
            "restored as_of=2024-01-01"
        ]
    );
    assert!(out.join("as_of=2024-01-01/_SUCCESS").exists());
    assert_eq!(visible(out), ["as_of=2024-01-01", "as_of=2024-02-01"]);
    assert!(std::fs::read_dir(out).expect("ls").all(|e| !e
        .expect("e")
        .file_name()
        .to_string_lossy()
        .starts_with('.')));
}
