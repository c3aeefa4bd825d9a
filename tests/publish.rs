//! Publishing under pressure: simultaneous runs on one output folder, recovery that touches
//! only what churnclv made, a kill or a failure at every publish step — including between the
//! swaps of a run's table partitions, where the as-of must be left without `_SUCCESS` —,
//! SIGTERM / SIGINT.
//!
//! The fault-injection tests need the binary built with `--features failpoints` (`make test`
//! does); without it they fail on their first case, saying so.

use crate::common;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use churnclv::io::RunLock;
use sha2::{Digest, Sha256};

const AS_OF: &str = "2025-12-31";
const PART: &str = "as_of=2025-12-31";
const LOCK: &str = ".churnclv.lock";
const MARKER: &str = ".churnclv-partition";
const NEEDS_FEATURE: &str =
    "the binary must be built with `--features failpoints` (make test does)";

fn exe() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin("churnclv"))
}

/// Synthetic events for `customers` customers (seed 5), written once per test folder.
fn events(dir: &Path, customers: u32) -> PathBuf {
    let path = dir.join(format!("events-{customers}.parquet"));
    let status = exe()
        .args(["generate", "--quiet", "--seed", "5", "--customers"])
        .arg(customers.to_string())
        .arg("--out")
        .arg(&path)
        .stdout(Stdio::null())
        .status()
        .expect("generate");
    assert!(status.success());
    path
}

/// `churnclv run` as of 2025-12-31 with horizon `horizon` (60d and 90d give different
/// partitions), with the fault points `fp` (FAILPOINTS syntax; "" for none).
fn job(events: &Path, out: &Path, horizon: &str, fp: &str) -> Command {
    let mut c = exe();
    c.args(["run", "--as-of", AS_OF, "--horizon", horizon, "--events"])
        .arg(events)
        .arg("--out")
        .arg(out)
        .env("FAILPOINTS", fp)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Code(i32),
    /// Ended by SIGKILL (`return(kill)` at a fault point, or the test's own kill).
    Killed,
}

fn exit_of(status: ExitStatus) -> Exit {
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(9)) => Exit::Killed,
        other => panic!("unexpected end {other:?}"),
    }
}

/// A committed run as the tests compare it: (path relative to DIR, sha256) of every output
/// its manifest lists, and its metrics.json (which tells 60d from 90d).
#[derive(Debug, Clone, PartialEq, Default)]
struct Run {
    files: Vec<(String, String)>,
    metrics: Vec<u8>,
}

/// The run of [`AS_OF`] is committed and complete (`_SUCCESS`, markers, every output of its
/// manifest with the recorded size and checksum: `common::check_run`).
fn complete(out: &Path) -> Run {
    let (files, metrics) = common::check_run(out, AS_OF)
        .unwrap_or_else(|| panic!("{} has no _SUCCESS", common::run_dir(out, AS_OF).display()));
    assert_eq!(files.len(), 6, "{files:?}");
    Run { files, metrics }
}

/// Entries of another tool (or of a person) in the output folder and in its table folders,
/// churnclv must never touch.
fn make_foreign(out: &Path) {
    let w = |rel: &str, text: &str| {
        let p = out.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    w(".tmp-x", "a plain file named like a staging folder");
    w(".tmp-foreign/data.txt", "another tool's temporary folder");
    // A marker that is not churnclv's.
    w(
        ".tmp-fake/.churnclv-partition",
        r#"{"writer":"other","run_id":"x"}"#,
    );
    w(".tmp-fake/part-0.parquet", "not ours");
    w(
        ".old.as_of=2020-01-01/part-0.parquet",
        "no marker: not ours",
    );
    w(".old.x", "a plain file named like a replaced partition");
    w(
        "as_of=1999-01-01/part-0.parquet",
        "another tool's partition",
    );
    w("notes.txt", "an operator's notes");
    // Inside the table folders: another tool's partition, its temporary and replaced folders.
    w(
        "scores/as_of=1999-01-01/part-0.parquet",
        "another tool's partition of the scores table",
    );
    w("scores/.tmp-x", "a plain file named like a staging folder");
    w(
        "features/.tmp-fake/.churnclv-partition",
        r#"{"writer":"other","run_id":"x"}"#,
    );
    w(
        "rejects/.old.as_of=2020-01-01/part-0.parquet",
        "no marker: not ours",
    );
    w("runs/README", "an operator's notes");
}

const FOREIGN: [&str; 12] = [
    ".tmp-x",
    ".tmp-foreign",
    ".tmp-fake",
    ".old.as_of=2020-01-01",
    ".old.x",
    "as_of=1999-01-01",
    "notes.txt",
    "scores/as_of=1999-01-01",
    "scores/.tmp-x",
    "features/.tmp-fake",
    "rejects/.old.as_of=2020-01-01",
    "runs/README",
];

/// The folders of a run's output: its tables, then the runs.
const FOLDERS: [&str; 4] = ["scores", "features", "rejects", "runs"];

/// Every folder (`None`) and file under `dir`, with its content.
fn snapshot_all(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    common::snapshot(dir)
}

fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none())
}

/// Every file under the foreign entries with its content.
fn snapshot(out: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(p: &Path, into: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let meta = std::fs::symlink_metadata(p).expect("foreign entry");
        if meta.is_dir() {
            into.insert(p.to_path_buf(), Vec::new());
            for e in std::fs::read_dir(p).expect("ls") {
                walk(&e.expect("entry").path(), into);
            }
        } else {
            into.insert(p.to_path_buf(), std::fs::read(p).expect("read"));
        }
    }
    let mut all = BTreeMap::new();
    for name in FOREIGN {
        walk(&out.join(name), &mut all);
    }
    all
}

/// Entries of DIR and of its table folders that are neither foreign, nor the lock file, nor
/// the table folders, nor the partitions of [`AS_OF`]: what churnclv left.
fn leftovers(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !FOREIGN.contains(&n.as_str()) && n != LOCK && !FOLDERS.contains(&n.as_str()))
        .collect();
    for folder in FOLDERS {
        let Ok(entries) = std::fs::read_dir(out.join(folder)) else {
            continue;
        };
        v.extend(
            entries
                .map(|e| {
                    format!(
                        "{folder}/{}",
                        e.expect("entry").file_name().to_string_lossy()
                    )
                })
                .filter(|n| !FOREIGN.contains(&n.as_str()) && !n.ends_with(&format!("/{PART}"))),
        );
    }
    v.sort();
    v
}

fn wait_until(child: &mut Child, what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("the run ended ({status}) before {what}");
        }
        assert!(start.elapsed() < Duration::from_secs(120), "never {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The marked staging folders of churnclv runs in the table folders.
fn staging_dirs(out: &Path) -> Vec<PathBuf> {
    FOLDERS
        .iter()
        .filter_map(|f| std::fs::read_dir(out.join(f)).ok())
        .flatten()
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            name.starts_with(".tmp-20") && p.join(MARKER).is_file()
        })
        .collect()
}

fn signal(child: &Child, sig: rustix::process::Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_child(child), sig).expect("kill");
}

/// What the output must hold for 2025-12-31 after a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// The complete previous run (90d), committed.
    Old,
    /// The complete new run (60d), committed.
    New,
    /// No `_SUCCESS` for the as-of (a run stopped between its swaps, or none published yet);
    /// every table partition there is the complete old or the complete new one.
    Uncommitted,
    /// Uncommitted, with `scores/as_of=…` absent and its complete previous partition kept as
    /// `scores/.old.as_of=…` (the two-rename fallback killed between its renames; the next run
    /// puts it back).
    Aside,
}

struct Case {
    fp: String,
    exit: Exit,
    want: Want,
    /// No churnclv leftovers right after this run (a failure before the swap cleans up).
    tidy: bool,
}

fn case(fp: &str, exit: Exit, want: Want, tidy: bool) -> Case {
    Case {
        fp: fp.to_string(),
        exit,
        want,
        tidy,
    }
}

struct Bench {
    _dir: tempfile::TempDir,
    events: PathBuf,
    out: PathBuf,
    /// Empty when there was no previous run.
    old: Run,
    new: Run,
}

/// An output folder with foreign entries and the 90d partition published; the metrics of the
/// 60d partition from another folder.
fn bench(customers: u32, publish_old: bool) -> Bench {
    let dir = tempfile::tempdir().expect("tmp");
    let events = events(dir.path(), customers);
    let reference = dir.path().join("reference");
    let o = job(&events, &reference, "60d", "").output().expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let new = complete(&reference);
    let out = dir.path().join("out");
    make_foreign(&out);
    let old = if publish_old {
        let o = job(&events, &out, "90d", "").output().expect("run");
        assert!(o.status.success(), "{}", stderr(&o));
        complete(&out)
    } else {
        Run::default()
    };
    assert_ne!(old, new);
    Bench {
        _dir: dir,
        events,
        out,
        old,
        new,
    }
}

impl Bench {
    fn check(&self, want: Want, context: &str) {
        match want {
            Want::Old => assert!(
                complete(&self.out) == self.old,
                "{context}: not the old run"
            ),
            Want::New => assert!(
                complete(&self.out) == self.new,
                "{context}: not the new run"
            ),
            Want::Uncommitted | Want::Aside => {
                assert!(
                    common::check_run(&self.out, AS_OF).is_none(),
                    "{context}: _SUCCESS over a run that is not whole"
                );
                // Each table partition is whole: every file the old or the new run has there.
                for table in common::TABLES {
                    let part = common::table(&self.out, table, AS_OF);
                    if want == Want::Aside && table == "scores" {
                        assert!(!part.exists(), "{context}");
                        let aside = self.out.join(format!("scores/.old.{PART}"));
                        assert_eq!(
                            self.version_of(&aside, "scores"),
                            "old",
                            "{context}: aside is not the old one"
                        );
                    } else if part.exists() {
                        self.version_of(&part, table);
                    }
                }
            }
        }
    }

    /// Which run (`old` or `new`) a table partition's file comes from, by its SHA-256; panics
    /// if neither.
    fn version_of(&self, part: &Path, table: &str) -> &'static str {
        let bytes = std::fs::read(part.join(format!("{table}.parquet"))).expect("table file");
        let hex: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let rel = format!("{table}/{PART}/{table}.parquet");
        let has = |r: &Run| r.files.iter().any(|(f, h)| *f == rel && *h == hex);
        assert!(part.join(MARKER).is_file(), "{}: no marker", part.display());
        if has(&self.new) {
            "new"
        } else if has(&self.old) {
            "old"
        } else {
            panic!("{}: neither the old nor the new partition", part.display())
        }
    }

    /// Runs each case with the 60d job, checks what it left, then lets a plain run recover
    /// and publish (90d, or 60d when there was no partition before).
    fn run_cases(&self, cases: &[Case]) {
        let foreign = snapshot(&self.out);
        for c in cases {
            let ctx = format!("FAILPOINTS={}", c.fp);
            let o = job(&self.events, &self.out, "60d", &c.fp)
                .output()
                .expect("run");
            let err = stderr(&o);
            assert_eq!(exit_of(o.status), c.exit, "{ctx}: {err}\n{NEEDS_FEATURE}");
            let point = c.fp.rsplit(';').next().unwrap_or("").split('=').next();
            match c.exit {
                Exit::Code(1) => {
                    let last = err.lines().last().unwrap_or("");
                    assert!(
                        last.starts_with("churnclv: error: ")
                            && last.ends_with(&format!(
                                "injected failure at {}",
                                point.expect("point")
                            )),
                        "{ctx}: {last}"
                    );
                }
                Exit::Code(0) if !c.fp.is_empty() => assert!(
                    err.contains(&format!(
                        "{} is published, but",
                        common::table(&self.out, "scores", AS_OF).display()
                    )) || err.contains("cannot swap two folders in one step"),
                    "{ctx}: {err}"
                ),
                _ => {}
            }
            self.check(c.want, &ctx);
            assert_eq!(
                snapshot(&self.out),
                foreign,
                "{ctx}: foreign entries changed"
            );
            if c.tidy {
                assert_eq!(leftovers(&self.out), Vec::<String>::new(), "{ctx}");
            }
            if c.want == Want::Aside {
                // The next run puts the previous partition back first thing (this one stops
                // right after its recovery).
                let o = job(&self.events, &self.out, "90d", "stage-after-marker=return")
                    .output()
                    .expect("run");
                assert_eq!(exit_of(o.status), Exit::Code(1), "{}", stderr(&o));
                assert!(
                    stderr(&o).contains(&format!(
                        "restored scores/{PART} from scores/.old.{PART}: an interrupted run had moved it aside"
                    )),
                    "{}",
                    stderr(&o)
                );
                // The old tables are back, the as-of still uncommitted until a run publishes.
                self.check(Want::Uncommitted, &format!("{ctx}, then recovery"));
                assert_eq!(
                    self.version_of(&common::table(&self.out, "scores", AS_OF), "scores"),
                    "old"
                );
                assert_eq!(leftovers(&self.out), Vec::<String>::new(), "{ctx}");
            }
            // Without a previous partition the next run publishes the new one (then it is
            // removed, so that every case starts from the same state).
            let first = self.old.files.is_empty();
            let (horizon, then) = if first {
                ("60d", Want::New)
            } else {
                ("90d", Want::Old)
            };
            let o = job(&self.events, &self.out, horizon, "")
                .output()
                .expect("run");
            assert!(o.status.success(), "{ctx}, next run: {}", stderr(&o));
            self.check(then, &format!("{ctx}, next run"));
            assert_eq!(
                leftovers(&self.out),
                Vec::<String>::new(),
                "{ctx}, next run"
            );
            assert_eq!(
                snapshot(&self.out),
                foreign,
                "{ctx}, next run: foreign entries changed"
            );
            if first {
                for folder in FOLDERS {
                    std::fs::remove_dir_all(self.out.join(folder).join(PART)).expect("reset");
                }
            }
        }
    }
}

/// The seven files of a run, each written through a fault point: `N*off->ACTION` acts after
/// the N+1-th (`0*off` skips nothing).
fn after_each_file(action: &str) -> Vec<String> {
    (0..7)
        .map(|n| format!("stage-after-file={n}*off->{action}"))
        .collect()
}

/// The n-th pass (from 0) of a fault point: each swap step is passed once per partition, in
/// the order scores, features, rejects, runs (pass 3 is the run partition's).
fn nth(point: &str, n: usize, action: &str) -> String {
    format!("{point}={n}*off->{action}")
}

#[test]
fn a_kill_at_every_publish_step_leaves_the_old_or_the_new_partition() {
    use Exit::Killed;
    use Want::*;
    let b = bench(1000, true);
    let kill = "return(kill)";
    let fallback = "publish-exchange=return";
    let mut cases = vec![
        case(&format!("lock-acquired={kill}"), Killed, Old, true),
        case(&format!("stage-after-marker={kill}"), Killed, Old, false),
    ];
    for fp in after_each_file(kill) {
        cases.push(case(&fp, Killed, Old, false));
    }
    // `_SUCCESS` is in the staging folder of the run partition: nothing visible changed yet.
    cases.push(case(
        &format!("publish-after-success={kill}"),
        Killed,
        Old,
        false,
    ));
    // From the removal of the previous `_SUCCESS` until the run partition is in place, the
    // as-of is uncommitted: each table partition whole (old or new), no `_SUCCESS`.
    for point in [
        "publish-after-retract",
        "publish-before-exchange",
        "publish-exchange",
        "publish-after-exchange",
        "publish-before-remove-old",
        "publish-after-remove-old",
    ] {
        cases.push(case(&format!("{point}={kill}"), Killed, Uncommitted, false));
    }
    // Between the table swaps (after scores, after features, after rejects), and just
    // before the run partition's swap.
    for n in 0..3 {
        cases.push(case(
            &nth("publish-between-tables", n, kill),
            Killed,
            Uncommitted,
            false,
        ));
    }
    cases.push(case(
        &nth("publish-before-exchange", 3, kill),
        Killed,
        Uncommitted,
        false,
    ));
    // Once the run partition is swapped in, the new run is committed.
    for point in [
        "publish-after-exchange",
        "publish-before-remove-old",
        "publish-after-remove-old",
    ] {
        cases.push(case(&nth(point, 3, kill), Killed, New, false));
    }
    // Halfway through removing a replaced partition: after the data file of each replaced
    // table partition, after each of the three files of the replaced run partition (the
    // marker, removed last, still proves it is churnclv's).
    for n in 0..6 {
        let want = if n < 3 { Uncommitted } else { New };
        cases.push(case(
            &nth("remove-after-entry", n, kill),
            Killed,
            want,
            false,
        ));
    }
    cases.push(case(
        &format!("remove-before-marker={kill}"),
        Killed,
        Uncommitted,
        false,
    ));
    cases.push(case(
        &nth("remove-before-marker", 3, kill),
        Killed,
        New,
        false,
    ));
    // The two-rename fallback, where the filesystem cannot swap in one step.
    cases.push(case(fallback, Exit::Code(0), New, true));
    cases.push(case(
        &format!("{fallback};publish-fallback-after-aside={kill}"),
        Killed,
        Aside,
        false,
    ));
    cases.push(case(
        &format!(
            "{fallback};{}",
            nth("publish-fallback-after-aside", 3, kill)
        ),
        Killed,
        Uncommitted,
        false,
    ));
    cases.push(case(
        &format!("{fallback};publish-fallback-after-rename={kill}"),
        Killed,
        Uncommitted,
        false,
    ));
    cases.push(case(
        &format!(
            "{fallback};{}",
            nth("publish-fallback-after-rename", 3, kill)
        ),
        Killed,
        New,
        false,
    ));
    cases.push(case(
        &format!("{fallback};{}", nth("remove-after-entry", 4, kill)),
        Killed,
        New,
        false,
    ));
    b.run_cases(&cases);
}

#[test]
fn a_failure_at_every_publish_step_leaves_the_old_or_the_new_partition() {
    use Exit::Code;
    use Want::*;
    let b = bench(1000, true);
    let fallback = "publish-exchange=return";
    let mut cases = vec![case("stage-after-marker=return", Code(1), Old, true)];
    for fp in after_each_file("return") {
        cases.push(case(&fp, Code(1), Old, true));
    }
    cases.push(case("publish-after-success=return", Code(1), Old, true));
    // A failure before any table is replaced puts the previous `_SUCCESS` back.
    cases.push(case("publish-after-retract=return", Code(1), Old, true));
    cases.push(case("publish-before-exchange=return", Code(1), Old, true));
    // After the swap the partition is published: a failure is a warning, the next run tidies.
    cases.push(case("publish-after-exchange=return", Code(0), New, true));
    cases.push(case(
        "publish-before-remove-old=return",
        Code(0),
        New,
        false,
    ));
    cases.push(case("remove-after-entry=return", Code(0), New, false));
    cases.push(case("publish-after-remove-old=return", Code(0), New, true));
    // A failure once a table is replaced: the run stops uncommitted.
    for n in 0..3 {
        cases.push(case(
            &nth("publish-between-tables", n, "return"),
            Code(1),
            Uncommitted,
            true,
        ));
    }
    cases.push(case(
        &nth("publish-before-exchange", 3, "return"),
        Code(1),
        Uncommitted,
        true,
    ));
    cases.push(case(
        &format!("{fallback};publish-fallback-after-aside=return"),
        Code(1),
        Old,
        true,
    ));
    cases.push(case(
        &format!(
            "{fallback};{}",
            nth("publish-fallback-after-aside", 3, "return")
        ),
        Code(1),
        Uncommitted,
        true,
    ));
    cases.push(case(
        &format!("{fallback};publish-fallback-after-rename=return"),
        Code(0),
        New,
        true,
    ));
    b.run_cases(&cases);
}

#[test]
fn a_kill_or_failure_while_publishing_a_first_partition_leaves_it_absent_or_complete() {
    use Want::*;
    let b = bench(1000, false);
    b.run_cases(&[
        case(
            "publish-before-rename=return(kill)",
            Exit::Killed,
            Uncommitted,
            false,
        ),
        case(
            "publish-before-rename=return",
            Exit::Code(1),
            Uncommitted,
            true,
        ),
        case(
            "publish-after-rename=return(kill)",
            Exit::Killed,
            Uncommitted,
            false,
        ),
        case(
            &nth("publish-between-tables", 1, "return(kill)"),
            Exit::Killed,
            Uncommitted,
            false,
        ),
        case(
            &nth("publish-after-rename", 3, "return(kill)"),
            Exit::Killed,
            New,
            false,
        ),
        case("publish-after-rename=return", Exit::Code(0), New, true),
    ]);
    // Nothing of a first run is visible before its first swap.
    let o = job(&b.events, &b.out, "60d", "publish-before-rename=return")
        .output()
        .expect("run");
    assert_eq!(exit_of(o.status), Exit::Code(1), "{}", stderr(&o));
    for folder in FOLDERS {
        assert!(!b.out.join(folder).join(PART).exists(), "{folder}");
    }
}

/// The lines of a text log: (timestamp, line) of the first line containing `what`.
fn logged_at(log: &str, what: &str) -> Option<String> {
    log.lines()
        .find(|l| l.contains(what))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string)
}

#[test]
fn of_two_runs_started_together_exactly_one_holds_the_lock_at_a_time() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = events(dir.path(), 500);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let lock = out.join(LOCK);
    let me = std::process::id();
    let (mut conflicts, mut one_after_the_other) = (0, 0);
    for pair in 0..24 {
        // What a killed run, or an unrelated process, may have left in the lock file.
        match pair % 4 {
            0 => {}
            1 => {
                let mut child = Command::new("true").spawn().expect("spawn");
                let dead = child.id();
                child.wait().expect("wait");
                std::fs::write(&lock, format!("{dead}\n")).expect("lock");
            }
            // A live pid that is not a churnclv run (a reused pid): this test.
            2 => std::fs::write(&lock, format!("{me}\n")).expect("lock"),
            _ => {
                let mut holder = job(&events, &out, "90d", "lock-acquired=sleep(60000)")
                    .spawn()
                    .expect("spawn");
                let pid = holder.id().to_string();
                wait_until(&mut holder, "the lock was taken", || {
                    std::fs::read_to_string(&lock).is_ok_and(|t| t.trim() == pid)
                });
                holder.kill().expect("kill");
                assert_eq!(exit_of(holder.wait().expect("wait")), Exit::Killed);
            }
        }
        // The lock is held a little longer than usual, so that the two runs overlap.
        let start = |h: &str| {
            job(&events, &out, h, "lock-acquired=sleep(300)")
                .spawn()
                .expect("spawn")
        };
        let (a, b) = (start("90d"), start("60d"));
        let (pa, pb) = (a.id(), b.id());
        let (oa, ob) = (
            a.wait_with_output().expect("a"),
            b.wait_with_output().expect("b"),
        );
        let (ea, eb) = (stderr(&oa), stderr(&ob));
        let ctx = format!("pair {pair}:\n{ea}\n---\n{eb}");
        match (exit_of(oa.status), exit_of(ob.status)) {
            (Exit::Code(0), Exit::Code(0)) => {
                // One after the other: the second took the lock after the first published.
                one_after_the_other += 1;
                let span = |e: &str| {
                    (
                        logged_at(e, "holding the lock").expect("lock line"),
                        logged_at(e, "INFO published").expect("published line"),
                    )
                };
                let (sa, sb) = (span(&ea), span(&eb));
                assert!(sa.1 <= sb.0 || sb.1 <= sa.0, "overlapping holds, {ctx}");
            }
            (Exit::Code(0), Exit::Code(2)) | (Exit::Code(2), Exit::Code(0)) => {
                conflicts += 1;
                let (winner, loser) = if oa.status.success() {
                    (pa, &eb)
                } else {
                    (pb, &ea)
                };
                assert_eq!(
                    loser.lines().last().unwrap_or(""),
                    format!(
                        "churnclv: error: {}: another churnclv run (pid {winner}) is writing here (lock file {}); wait for it to finish: the lock is released when that process ends",
                        out.display(),
                        lock.display()
                    ),
                    "{ctx}"
                );
                assert!(logged_at(loser, "holding the lock").is_none(), "{ctx}");
            }
            other => panic!("{other:?}, {ctx}"),
        }
        complete(&out);
        assert_eq!(leftovers(&out), Vec::<String>::new(), "{ctx}");
        assert!(lock.is_file(), "the lock file stays");
    }
    eprintln!("{conflicts} pairs overlapped (one exited 2), {one_after_the_other} ran one after the other");
}

#[test]
fn recovery_removes_only_folders_churnclv_can_prove_it_made() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path();
    let w = |rel: &str, text: &str| {
        let p = out.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    let marker = |run: &str, part: &str| {
        format!(
            r#"{{"writer":"churnclv","version":"0.1.0","run_id":"{run}","partition":"{part}"}}"#
        )
    };
    // Each table folder is repaired the same way; these are in `scores/` (and one, of the
    // one-folder layout, in DIR itself).
    w(
        ".tmp-20230101-z/.churnclv-partition",
        &marker("20230101-z", "as_of=2023-01-01"),
    );
    // Killed while writing: a staging folder with some files.
    w(
        "scores/.tmp-20240301-a/.churnclv-partition",
        &marker("20240301-a", "as_of=2024-03-01"),
    );
    w("scores/.tmp-20240301-a/scores.parquet", "partial");
    // Killed right after a swap: the replaced partition sits at the staging name.
    w(
        "scores/.tmp-20240401-b/.churnclv-partition",
        &marker("20240401-a", "as_of=2024-04-01"),
    );
    w("scores/.tmp-20240401-b/_SUCCESS", "");
    w(
        "scores/as_of=2024-04-01/.churnclv-partition",
        &marker("20240401-b", "as_of=2024-04-01"),
    );
    // The fallback killed between its renames: put back.
    w(
        "scores/.old.as_of=2024-01-01/.churnclv-partition",
        &marker("20240101-a", "as_of=2024-01-01"),
    );
    w("scores/.old.as_of=2024-01-01/_SUCCESS", "");
    // ... killed after them: removed.
    w(
        "scores/.old.as_of=2024-02-01/.churnclv-partition",
        &marker("20240201-a", "as_of=2024-02-01"),
    );
    w("scores/as_of=2024-02-01/_SUCCESS", "");
    // A partition published before markers existed, moved aside: proved by its manifest.
    w(
        "scores/.old.as_of=2023-12-01/manifest.json",
        r#"{"run_id":"20231201-x","crate_version":"0.1.0"}"#,
    );
    w("scores/.old.as_of=2023-12-01/_SUCCESS", "");
    // Not churnclv's: left alone.
    make_foreign(out);
    w("scores/.tmp-nomarker/scores.parquet", "whose?");
    std::fs::create_dir_all(out.join("scores/.tmp-empty")).expect("mkdir");
    w(
        "scores/.old.as_of=2023-11-01/manifest.json",
        r#"{"run_id":"someone else's, no crate_version"}"#,
    );
    std::os::unix::fs::symlink(
        out.join("scores/as_of=2024-04-01"),
        out.join("scores/.tmp-link-to-a-partition"),
    )
    .expect("symlink");
    let foreign = snapshot(out);

    let lock = RunLock::acquire(out).expect("lock");
    let mut done = lock.recover().expect("recover");
    done.sort();
    assert_eq!(
        done,
        [
            "removed .tmp-20230101-z, left by an interrupted run (run 20230101-z)",
            "removed scores/.old.as_of=2024-02-01, the partition an interrupted run had replaced",
            "removed scores/.tmp-20240301-a, left by an interrupted run (run 20240301-a)",
            "removed scores/.tmp-20240401-b, left by an interrupted run (run 20240401-a)",
            "restored scores/as_of=2023-12-01 from scores/.old.as_of=2023-12-01: an interrupted run had moved it aside",
            "restored scores/as_of=2024-01-01 from scores/.old.as_of=2024-01-01: an interrupted run had moved it aside",
        ]
    );
    assert!(out.join("scores/as_of=2024-01-01/_SUCCESS").is_file());
    assert!(out.join("scores/as_of=2023-12-01/manifest.json").is_file());
    assert!(out
        .join("scores/as_of=2024-04-01/.churnclv-partition")
        .is_file());
    assert_eq!(snapshot(out), foreign);
    let ls = |dir: &Path| {
        let mut left: Vec<String> = std::fs::read_dir(dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        left
    };
    let top: Vec<String> = ls(out)
        .into_iter()
        .filter(|n| !FOREIGN.contains(&n.as_str()))
        .collect();
    assert_eq!(
        top,
        [".churnclv.lock", "features", "rejects", "runs", "scores"]
    );
    let left: Vec<String> = ls(&out.join("scores"))
        .into_iter()
        .filter(|n| !FOREIGN.contains(&format!("scores/{n}").as_str()))
        .collect();
    assert_eq!(
        left,
        [
            ".old.as_of=2023-11-01",
            ".tmp-empty",
            ".tmp-link-to-a-partition",
            ".tmp-nomarker",
            "as_of=2023-12-01",
            "as_of=2024-01-01",
            "as_of=2024-02-01",
            "as_of=2024-04-01",
        ]
    );
    // Nothing more to do the second time.
    assert_eq!(lock.recover().expect("recover"), Vec::<String>::new());
}

#[test]
fn a_run_leaves_foreign_entries_alone_and_never_replaces_a_partition_it_did_not_make() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = events(dir.path(), 500);
    let out = dir.path().join("out");
    make_foreign(&out);
    let foreign = snapshot(&out);
    // A plain file named `.tmp-x` used to make every run fail.
    let o = job(&events, &out, "90d", "").output().expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    complete(&out);
    assert_eq!(snapshot(&out), foreign);
    assert_eq!(leftovers(&out), Vec::<String>::new());

    // Someone else's folder at a partition's name (of a table, or of the runs): exit 2 before
    // any writing, untouched.
    for folder in FOLDERS {
        let theirs = dir.path().join(format!("theirs-{folder}"));
        let part = theirs.join(folder).join(PART);
        std::fs::create_dir_all(&part).expect("mkdir");
        std::fs::write(part.join("data.csv"), "a,b\n").expect("write");
        let before = snapshot_all(&theirs);
        let o = job(&events, &theirs, "90d", "").output().expect("run");
        assert_eq!(exit_of(o.status), Exit::Code(2), "{}", stderr(&o));
        assert_eq!(
            stderr(&o).lines().last().unwrap_or(""),
            format!(
                "churnclv: error: {} exists and was not made by churnclv (no .churnclv-partition marker, no churnclv manifest.json); churnclv never replaces or removes it: move it away or choose another --out",
                part.display()
            )
        );
        // Only the lock file and table folders (empty) of the tables staged before it.
        let after = snapshot_all(&theirs);
        for (path, content) in &before {
            assert_eq!(
                after.get(path),
                Some(content),
                "{folder}: {}",
                path.display()
            );
        }
        for (path, content) in &after {
            if !before.contains_key(path) {
                assert!(
                    path.ends_with(LOCK) || (content.is_none() && is_empty_dir(path)),
                    "{folder}: {} added",
                    path.display()
                );
            }
        }
        assert!(!common::run_dir(&theirs, AS_OF).join("_SUCCESS").exists());
    }
    // A file where a table folder goes: exit 2, never written through.
    let theirs = dir.path().join("theirs-file");
    std::fs::create_dir_all(&theirs).expect("mkdir");
    std::fs::write(theirs.join("features"), "a file").expect("write");
    let o = job(&events, &theirs, "90d", "").output().expect("run");
    assert_eq!(exit_of(o.status), Exit::Code(2), "{}", stderr(&o));
    assert!(
        stderr(&o)
            .lines()
            .last()
            .unwrap_or("")
            .starts_with(&format!(
                "churnclv: error: {} exists and was not made by churnclv",
                theirs.join("features").display()
            )),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(theirs.join("features")).expect("kept"),
        b"a file"
    );

    // A run partition published before markers existed is churnclv's (its manifest says so)
    // and is replaced as usual.
    std::fs::remove_file(common::run_dir(&out, AS_OF).join(MARKER)).expect("unmark");
    let o = job(&events, &out, "60d", "").output().expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    complete(&out);
    assert_eq!(leftovers(&out), Vec::<String>::new());
}

#[test]
fn sigterm_and_sigint_stop_a_run_cleanly_at_any_moment() {
    use rustix::process::Signal;
    let b = bench(20000, true);
    let foreign = snapshot(&b.out);
    let staged = |file: &'static str| {
        let out = b.out.clone();
        move || staging_dirs(&out).iter().any(|d| d.join(file).is_file())
    };
    // The new scores partition is in place (the first of the run's swaps).
    let scores = common::table_file(&b.out, "scores", AS_OF);
    let new_scores = b
        .new
        .files
        .iter()
        .find(|(f, _)| f.starts_with("scores/"))
        .map(|(_, h)| h.clone())
        .expect("scores in the manifest");
    let new_in_place = move || {
        std::fs::read(&scores).is_ok_and(|bytes| {
            let hex: String = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            hex == new_scores
        })
    };
    type Moment<'a> = (&'a str, Signal, &'a str, Box<dyn Fn() -> bool + 'a>, Want);
    let moments: Vec<Moment> = vec![
        // While reading / training (a moment in time, whatever the run is doing).
        (
            "200 ms in",
            Signal::TERM,
            "",
            Box::new(sleeps(200)),
            Want::Old,
        ),
        (
            // Held in training (a fast run would otherwise have finished at 700 ms).
            "700 ms in, in training",
            Signal::INT,
            "train-start=sleep(3000)",
            Box::new(sleeps(700)),
            Want::Old,
        ),
        (
            "writing the staging folder",
            Signal::TERM,
            "stage-after-file=sleep(3000)",
            Box::new(staged("scores.parquet")),
            Want::Old,
        ),
        (
            "about to swap (_SUCCESS written)",
            Signal::INT,
            "publish-after-success=sleep(3000)",
            Box::new(staged("_SUCCESS")),
            Want::Old,
        ),
        // Once the first table is swapped in, the signal waits for the whole run.
        (
            "right after the first swap",
            Signal::TERM,
            "publish-after-exchange=sleep(3000)",
            Box::new(new_in_place.clone()),
            Want::New,
        ),
        (
            "between two table swaps",
            Signal::INT,
            "publish-between-tables=sleep(3000)",
            Box::new(new_in_place),
            Want::New,
        ),
        (
            "between the two renames of the fallback",
            Signal::TERM,
            "publish-exchange=return;publish-fallback-after-aside=sleep(3000)",
            Box::new({
                let aside = b.out.join(format!("scores/.old.{PART}"));
                move || aside.exists()
            }),
            Want::New,
        ),
    ];
    for (when, sig, fp, reached, want) in moments {
        let ctx = format!("{sig:?} {when}");
        let mut child = job(&b.events, &b.out, "60d", fp).spawn().expect("spawn");
        wait_until(&mut child, &ctx, &reached);
        signal(&child, sig);
        let o = child.wait_with_output().expect("wait");
        let err = stderr(&o);
        let (name, code) = if sig == Signal::INT {
            ("SIGINT", 130)
        } else {
            ("SIGTERM", 143)
        };
        assert_eq!(
            exit_of(o.status),
            Exit::Code(code),
            "{ctx}: {err}\n{NEEDS_FEATURE}"
        );
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("WARN {name}: stopped ("))
                    && l.contains(&format!(
                        "the output lock is released as the process exits with code {code}"
                    ))),
            "{ctx}: {err}"
        );
        assert!(!err.contains("churnclv: error"), "{ctx}: {err}");
        b.check(want, &ctx);
        assert_eq!(
            leftovers(&b.out),
            Vec::<String>::new(),
            "{ctx}: staging left"
        );
        assert_eq!(snapshot(&b.out), foreign, "{ctx}");
        // The lock was released: the next run takes it at once and publishes.
        let o = job(&b.events, &b.out, "90d", "").output().expect("run");
        assert!(o.status.success(), "{ctx}, next run: {}", stderr(&o));
        b.check(Want::Old, &ctx);
    }
}

/// True `ms` milliseconds after its first call (made right after the run is started).
fn sleeps(ms: u64) -> impl Fn() -> bool {
    let start = std::cell::Cell::new(None::<Instant>);
    move || {
        let t0 = start.get().unwrap_or_else(Instant::now);
        start.set(Some(t0));
        t0.elapsed() >= Duration::from_millis(ms)
    }
}

#[test]
fn a_second_signal_ends_the_run_at_once_and_the_next_run_repairs() {
    use rustix::process::Signal;
    let b = bench(1000, true);
    let mut child = job(
        &b.events,
        &b.out,
        "60d",
        "publish-after-success=sleep(20000)",
    )
    .spawn()
    .expect("spawn");
    wait_until(&mut child, "_SUCCESS was written", || {
        staging_dirs(&b.out)
            .iter()
            .any(|d| d.join("_SUCCESS").is_file())
    });
    // The first signal waits for the publish step (here held for 20 s)...
    signal(&child, Signal::TERM);
    std::thread::sleep(Duration::from_millis(300));
    // ...the second ends the process at once, leaving the staging folder to the next run.
    signal(&child, Signal::INT);
    let o = child.wait_with_output().expect("wait");
    assert_eq!(exit_of(o.status), Exit::Code(130), "{}", stderr(&o));
    assert_eq!(
        staging_dirs(&b.out).len(),
        4,
        "the staging folders (scores, features, rejects, runs) are still there"
    );
    b.check(Want::Old, "after two signals");
    let o = job(&b.events, &b.out, "90d", "").output().expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("left by an interrupted run"),
        "{}",
        stderr(&o)
    );
    assert_eq!(leftovers(&b.out), Vec::<String>::new());
    b.check(Want::Old, "next run");
}
