"""`make bench`, the whole job side by side in one run: (a) `churnclv run` on the bench file,
(b) DuckDB's aggregation of the same file (bench/agg_duckdb.py), (c) the same job as a Python
stack (bench/python_stack.py), and (d) churnclv's feature stage alone (`churnclv features`, the
memory reference). Alternated `--repeats` times; prints median wall, CPU, peak RSS (each child's
own, from os.wait4) and the ratios the issue sets targets for, with the load average."""
import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time


def measure(cmd):
    """Runs `cmd`; returns (exit code, wall s, cpu s, peak RSS bytes of the child, stderr)."""
    err = tempfile.TemporaryFile()
    start = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    err.seek(0)
    return (os.waitstatus_to_exitcode(status), wall, ru.ru_utime + ru.ru_stime,
            ru.ru_maxrss * 1024, err.read().decode(errors="replace"))


def timed(cmd):
    """Runs `cmd`; returns (wall s, cpu s, peak RSS MB, stderr text); stops on a failure."""
    code, wall, cpu, rss, text = measure(cmd)
    if code != 0:
        sys.exit(f"{' '.join(cmd)} failed ({code}):\n{text[-2000:]}")
    return wall, cpu, rss / 2**20, text


# The run's phases in the order they happen; an `evaluate` line belongs to the phase its
# message opens with (the value candidates, the booster and the final BTYD fit run side by side).
PHASES = [
    ("selection (value ∥ booster ∥ final BTYD)", ("value candidate", "value champion", "booster:")),
    ("out-of-time evaluation", ("value challenger", "out-of-time")),
    ("BTYD holdout", ("BTYD holdout",)),
]


def phase(rec):
    stage = rec.get("stage", "?")
    if stage == "evaluate":
        msg = rec.get("message", "")
        for name, prefixes in PHASES:
            if msg.startswith(prefixes):
                return name
    if stage in ("drift", "publish"):
        return "drift + publish"
    return stage


def stages(log):
    """Wall seconds by phase from churnclv's JSON log: each line's `ts` minus the previous
    line's, given to the line's phase (stage, or the evaluate phase of its message), so the
    phases add up to the run from its first log line to its last. (The lines' own
    `duration_ms` overlap where fits run side by side, and do not add up.)"""
    out, last = {}, None
    for line in log.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        rec = rec.get("fields", rec) | {"ts": rec.get("ts")}
        if not rec["ts"]:
            continue
        ts = datetime.datetime.fromisoformat(rec["ts"].replace("Z", "+00:00")).timestamp()
        if last is not None:
            name = phase(rec)
            out[name] = out.get(name, 0) + ts - last
        last = ts
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--as-of", default="2025-12-31")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as tmp:
        jobs = {
            "churnclv run": lambda i: [a.bin, "--log-format", "json", "run", "--events", a.events,
                                       "--as-of", a.as_of, "--out", os.path.join(tmp, f"run{i}")],
            "churnclv features": lambda i: [a.bin, "--quiet", "features", "--events", a.events,
                                            "--as-of", a.as_of,
                                            "--out", os.path.join(tmp, f"f{i}.parquet")],
            "duckdb aggregation": lambda i: [a.python, os.path.join(here, "agg_duckdb.py"),
                                             a.events, os.path.join(tmp, f"d{i}.parquet"), a.as_of],
            "python stack": lambda i: [a.python, os.path.join(here, "python_stack.py"),
                                       "--events", a.events, "--as-of", a.as_of,
                                       "--out", os.path.join(tmp, f"p{i}.parquet")],
        }
        res = {k: [] for k in jobs}
        stage_runs = []
        load = [os.getloadavg()]
        for i in range(a.repeats):
            for name, cmd in jobs.items():
                wall, cpu, rss, err = timed(cmd(i))
                res[name].append((wall, cpu, rss))
                if name == "churnclv run":
                    stage_runs.append(stages(err))
            load.append(os.getloadavg())
    med = {k: tuple(statistics.median(r[j] for r in v) for j in range(3)) for k, v in res.items()}
    print(f"\nwhole job, {a.repeats} alternated runs each (median; peak RSS = max), "
          f"load average {' → '.join(f'{l[0]:.2f}' for l in load)}")
    print(f"{'':22} {'wall s':>8} {'CPU s':>8} {'peak RSS MB':>12}")
    for k, (w, c, _) in med.items():
        print(f"{k:22} {w:8.2f} {c:8.2f} {max(r[2] for r in res[k]):12.0f}")
    names = list(dict.fromkeys(s for r in stage_runs for s in r))
    print("churnclv run phases, wall from the JSON log's timestamps (median s):")
    for s in names:
        print(f"  {s:42} {statistics.median(r.get(s, 0) for r in stage_runs):6.2f}")
    feat = statistics.median(r.get("features", 0) for r in stage_runs)
    total = med["churnclv run"][0]
    run_rss = max(r[2] for r in res["churnclv run"])
    feat_rss = max(r[2] for r in res["churnclv features"])
    print(f"after the scan: {total - feat:.2f} s vs the scan {feat:.2f} s")
    print(f"whole run / DuckDB aggregation: {total / med['duckdb aggregation'][0]:.2f}×  (target ≤ 1.5)")
    print(f"Python stack / whole run: {med['python stack'][0] / total:.2f}×  (target ≥ 3)")
    print(f"peak RSS run / features stage: {run_rss / feat_rss:.2f}×  (target ≤ 1.25; run {run_rss:.0f} MB, target ≤ 350)")


if __name__ == "__main__":
    main()
