"""The scale run of docs/benchmarks.md ("Scale run"): generates 2M customers (~115M events,
`churnclv generate --customers 2000000 --seed 7`) unless the file exists, then runs the whole
job on it without a budget and with `--memory-limit` (2GB by default), and prints wall time,
CPU time, peak RSS (the child's own, from os.wait4), bytes per customer and per event, and the
shard count each run logged. Not part of `make test` (`make scale`)."""
import argparse
import json
import os
import sys
import tempfile

from whole_run import measure


def logged(log, stage, key):
    for line in log.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("stage") == stage and key in rec:
            return rec[key]
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--customers", type=int, default=2_000_000)
    ap.add_argument("--as-of", default="2025-12-31")
    ap.add_argument("--limit", default="2GB")
    a = ap.parse_args()
    if not os.path.exists(a.events):
        os.makedirs(os.path.dirname(os.path.abspath(a.events)), exist_ok=True)
        code, wall, cpu, rss, log = measure([a.bin, "--log-format", "json", "generate", "--customers",
                                          str(a.customers), "--seed", "7", "--out", a.events])
        if code != 0:
            sys.exit(f"generate failed ({code}):\n{log[-2000:]}")
        print(f"generate: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {rss / 2**20:.0f} MiB")
    print(f"{'run':28} {'exit':>4} {'wall s':>8} {'CPU s':>8} {'peak RSS MiB':>13} "
          f"{'B/customer':>10} {'B/event':>8} {'shards':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in [("no budget", []), (f"--memory-limit {a.limit}", ["--memory-limit", a.limit])]:
            out = os.path.join(tmp, name.replace(" ", "_"))
            code, wall, cpu, rss, log = measure([a.bin, "--log-format", "json", "run", "--events",
                                               a.events, "--as-of", a.as_of, "--out", out] + extra)
            customers = logged(log, "score", "customers") or 0
            rows = sum(json.loads(l).get("rows_read", 0) for l in log.splitlines()
                       if l.startswith("{") and '"stage":"features"' in l)
            shards = logged(log, "model inputs", "shards")
            per_c = rss / customers if customers else float("nan")
            per_e = rss / rows if rows else float("nan")
            print(f"{name:28} {code:>4} {wall:8.1f} {cpu:8.1f} {rss / 2**20:13.0f} "
                  f"{per_c:10.0f} {per_e:8.1f} {shards if shards is not None else '-':>6}")
            if code != 0:
                print("   " + log.strip().splitlines()[-1][:300])


if __name__ == "__main__":
    main()
