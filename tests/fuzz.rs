//! Random damage never crashes the job: a valid 200-customer file is mutated (bit flips,
//! overwritten bytes, truncations, spliced ranges) and `churnclv run` is run on each copy. Every
//! exit code must be 0 (the damage missed the data that matters), 2 (bad input, named) or 3
//! (a quality gate), never 1 or a panic.
//!
//! The suite runs a few hundred mutations with a fixed seed; `make fuzz` runs a longer campaign
//! (`FUZZ_CASES`, default 3000; seed from `SEED`) and keeps every failing input with its stderr
//! in `FUZZ_KEEP` (default `target/fuzz-failures`).

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// SplitMix64: a tiny deterministic generator, so a seed names the same cases on every
/// machine and every version of the `rand` crates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One kind of damage, applied to a copy of the valid file.
fn mutate(base: &[u8], rng: &mut Rng) -> (String, Vec<u8>) {
    let mut b = base.to_vec();
    let n = b.len();
    match rng.below(4) {
        0 => {
            let flips = 1 + rng.below(8);
            for _ in 0..flips {
                let at = rng.below(n);
                b[at] ^= 1 << rng.below(8);
            }
            (format!("{flips} bit flips"), b)
        }
        1 => {
            let at = rng.below(n);
            let len = (1 + rng.below(32)).min(n - at);
            for v in &mut b[at..at + len] {
                *v = rng.next() as u8;
            }
            (format!("{len} bytes overwritten at {at}"), b)
        }
        2 => {
            let keep = rng.below(n);
            b.truncate(keep);
            (format!("truncated to {keep} bytes"), b)
        }
        _ => {
            let from = rng.below(n);
            let len = (1 + rng.below(4096)).min(n - from);
            let to = rng.below(n);
            let piece = base[from..from + len].to_vec();
            let end = (to + len).min(n);
            b[to..end].copy_from_slice(&piece[..end - to]);
            (format!("{len} bytes from {from} spliced over {to}"), b)
        }
    }
}

/// What one run did.
struct Outcome {
    case: usize,
    what: String,
    code: Option<i32>,
    stderr: String,
}

impl Outcome {
    fn failed(&self) -> bool {
        !matches!(self.code, Some(0 | 2 | 3)) || self.stderr.contains("panicked")
    }
}

/// Runs `churnclv run` on one file with a generous time limit (a hang is a failure too; the
/// limit is not a performance assertion).
fn run_one(file: &Path, out: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("churnclv"))
        .args(["--quiet", "run", "--events"])
        .arg(file)
        .arg("--out")
        .arg(out)
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn churnclv");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut stderr);
            }
            return (status.code(), stderr);
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            return (None, "killed after 120 s (hang)".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Generates the valid file, runs `cases` mutations of it on `workers` threads, and returns the
/// outcomes in case order. Failing inputs are copied to `keep` with their stderr.
fn campaign(seed: u64, cases: usize, keep: Option<&Path>) -> Vec<Outcome> {
    let dir = tempfile::tempdir().expect("tempdir");
    let base_path = dir.path().join("base.parquet");
    let status = Command::new(assert_cmd::cargo::cargo_bin("churnclv"))
        .args(["--quiet", "generate", "--customers", "200", "--seed", "7"])
        .arg("--out")
        .arg(&base_path)
        .stdout(Stdio::null())
        .status()
        .expect("generate");
    assert!(status.success(), "generate failed");
    let base = std::fs::read(&base_path).expect("read base");
    let mut rng = Rng(seed);
    let mutations: Vec<(String, Vec<u8>)> = (0..cases).map(|_| mutate(&base, &mut rng)).collect();
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::with_capacity(cases));
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let case = next.fetch_add(1, Ordering::Relaxed);
                let Some((what, bytes)) = mutations.get(case) else {
                    break;
                };
                let case_dir = dir.path().join(format!("case-{case:05}"));
                std::fs::create_dir_all(&case_dir).expect("case dir");
                let file = case_dir.join("events.parquet");
                std::fs::write(&file, bytes).expect("write case");
                let (code, stderr) = run_one(&file, &case_dir.join("out"));
                let outcome = Outcome {
                    case,
                    what: what.clone(),
                    code,
                    stderr,
                };
                if outcome.failed() {
                    if let Some(keep) = keep {
                        std::fs::create_dir_all(keep).expect("keep dir");
                        let name = format!("seed{seed}-case{case:05}");
                        let _ = std::fs::write(keep.join(format!("{name}.parquet")), bytes);
                        let _ = std::fs::write(
                            keep.join(format!("{name}.txt")),
                            format!(
                                "{}\nexit {:?}\n{}",
                                outcome.what, outcome.code, outcome.stderr
                            ),
                        );
                    }
                }
                let _ = std::fs::remove_dir_all(&case_dir);
                outcomes.lock().expect("lock").push(outcome);
            });
        }
    });
    let mut all = outcomes.into_inner().expect("outcomes");
    all.sort_by_key(|o| o.case);
    all
}

/// Counts by exit code, e.g. `{"0": 120, "2": 170, "3": 10}`.
fn counts(outcomes: &[Outcome]) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for o in outcomes {
        let key = match o.code {
            Some(c) => c.to_string(),
            None => "signal/hang".into(),
        };
        *by.entry(key).or_insert(0) += 1;
    }
    by
}

fn failures(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .filter(|o| o.failed())
        .map(|o| {
            format!(
                "case {} ({}): exit {:?}: {}",
                o.case,
                o.what,
                o.code,
                o.stderr.lines().last().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn random_damage_gives_exit_0_2_or_3_and_never_a_panic() {
    let outcomes = campaign(20_261_130, 300, None);
    assert_eq!(outcomes.len(), 300);
    let by = counts(&outcomes);
    eprintln!("exit codes: {by:?}");
    assert_eq!(failures(&outcomes), Vec::<String>::new(), "{by:?}");
    // The mutations must exercise both paths: some rejections and some clean runs.
    assert!(by.get("2").copied().unwrap_or(0) > 0, "{by:?}");
    assert!(by.get("0").copied().unwrap_or(0) > 0, "{by:?}");
}

/// The long campaign behind `make fuzz`: `FUZZ_CASES` mutations (default 3000) from seed
/// `SEED` (default 1), failing inputs kept in `FUZZ_KEEP` (default target/fuzz-failures).
#[test]
#[ignore = "long campaign: run with `make fuzz`"]
fn campaign_from_env() {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let cases = env("FUZZ_CASES").map_or(3000, |v| v.parse().expect("FUZZ_CASES"));
    let seed = env("SEED").map_or(1, |v| v.parse().expect("SEED"));
    let keep = env("FUZZ_KEEP").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures"),
        PathBuf::from,
    );
    let started = Instant::now();
    let outcomes = campaign(seed, cases, Some(&keep));
    let by = counts(&outcomes);
    let failed = failures(&outcomes);
    println!(
        "fuzz: seed {seed}, {cases} mutations in {:.0} s; exit codes {by:?}; {} failures{}",
        started.elapsed().as_secs_f64(),
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(" (inputs kept in {})", keep.display())
        }
    );
    for f in &failed {
        println!("  {f}");
    }
    assert!(failed.is_empty(), "{} failures", failed.len());
}

/// The smallest inputs found that made parquet-rs 60.1 panic (one or eleven damaged bytes in
/// a 4- or 64-row file; see docs/upstream/parquet-decoder-panics.md): each is a one-line
/// exit-2 error naming the file and the row group, for every subcommand that reads events.
#[test]
fn decoder_panics_are_exit_2_naming_the_file_and_row_group() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/decoder-panics");
    let cases = [
        (
            "vlq-too-long.parquet",
            "parquet-60.1.0/src/util/bit_util.rs:1189:13: Num of bytes exceed MAX_VLQ_BYTE_LEN (10)",
        ),
        (
            "bit-chunk-out-of-bounds.parquet",
            "arrow-buffer-60.1.0/src/util/bit_chunk_iterator.rs:235:9: offset + len out of bounds",
        ),
        (
            "byte-array-divide-by-zero.parquet",
            "parquet-60.1.0/src/arrow/array_reader/byte_array.rs:391:22: attempt to divide by zero",
        ),
        (
            "dict-decoder-not-set.parquet",
            "parquet-60.1.0/src/column/reader/decoder.rs:374:18: Decoder for dict should have been set",
        ),
        (
            "negative-column-start.parquet",
            "parquet-60.1.0/src/file/metadata/mod.rs:1043:9: column start and length should not be negative",
        ),
    ];
    let dir = tempfile::tempdir().expect("tmp");
    for (name, at) in cases {
        let file = fixtures.join(name);
        let out = dir.path().join("out");
        for args in [
            vec!["run", "--out", out.to_str().expect("utf-8")],
            vec!["validate"],
            vec!["btyd", "--cutoff", "2025-01-03"],
        ] {
            let o = Command::new(assert_cmd::cargo::cargo_bin("churnclv"))
                .args(["--quiet"])
                .args(&args[..1])
                .arg("--events")
                .arg(&file)
                .args(&args[1..])
                .env("RUST_BACKTRACE", "1")
                .output()
                .expect("run");
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{name} {args:?}: {stderr}");
            assert_eq!(
                stderr.trim_end(),
                format!(
                    "churnclv: error: {}: row group 0: corrupt data: the Parquet decoder failed at {at}",
                    file.display()
                ),
                "{name} {args:?}"
            );
        }
        assert!(
            !common::published_any(&out),
            "{name}: nothing published: {:?}",
            std::fs::read_dir(&out).map(|d| d.count())
        );
    }
}
