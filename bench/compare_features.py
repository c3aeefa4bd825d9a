"""`make bench`, feature stage: churnclv vs DuckDB vs Polars on the same per-customer
aggregation, in one run. Prints wall time, peak RSS and ratios, and checks that the three agree
on every customer's counts and sums."""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import pyarrow.compute as pc
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
COUNTS = ["n_events", "n_purchases", "n_refunds", "n_page_views", "n_sessions", "n_add_to_cart",
          "n_support_tickets", "n_email_opens", "n_email_clicks", "n_sms_clicks",
          "n_categories", "n_channels"]


def measure(cmd):
    """Runs cmd; returns (wall seconds, peak RSS MB) of that one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed with status {status}")
    return wall, usage.ru_maxrss / 1024.0


def table(path):
    t = pq.read_table(path)
    order = pc.sort_indices(t, sort_keys=[("customer_id", "ascending")])
    return t.take(order)


def check(name, ours, theirs):
    if ours.num_rows != theirs.num_rows:
        sys.exit(f"bench: {name} has {theirs.num_rows} customers, churnclv {ours.num_rows}")
    if ours["customer_id"] != theirs["customer_id"].cast(ours["customer_id"].type):
        sys.exit(f"bench: {name} customer ids differ")
    for c in COUNTS:
        a = ours[c].cast("int64").to_pylist()
        b = theirs[c].cast("int64").to_pylist()
        if a != b:
            bad = next(i for i in range(len(a)) if a[i] != b[i])
            sys.exit(f"bench: {name} {c} differs for {ours['customer_id'][bad]}: {a[bad]} vs {b[bad]}")
    spend = pc.multiply(ours["avg_order_value"].fill_null(0), ours["n_purchases"].cast("double"))
    for c, a, b in [("purchase_amount", spend, theirs["purchase_amount"].fill_null(0)),
                    ("avg_order_value", ours["avg_order_value"].fill_null(0), theirs["avg_order_value"].fill_null(0)),
                    ("recency_days", ours["recency_days"].fill_null(-1), theirs["recency_days"].fill_null(-1))]:
        diff = pc.max(pc.abs(pc.subtract(a.cast("double"), b.cast("double")))).as_py() or 0.0
        if diff > 1e-6 * max(1.0, pc.max(pc.abs(b.cast("double"))).as_py() or 1.0):
            sys.exit(f"bench: {name} {c} differs by up to {diff}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--cutoff", required=True)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ours_path = os.path.join(tmp, "churnclv.parquet")
        # DuckDB's and Polars' queries do not deduplicate: churnclv runs once with the same
        # work (deduplication off) and once with its defaults (later duplicate order ids
        # rejected), so both figures are on the table.
        nodedup_cfg = os.path.join(tmp, "nodedup.toml")
        with open(nodedup_cfg, "w") as f:
            f.write("[validation]\ndeduplicate = false\n")
        runs = {
            "churnclv": [a.bin, "--quiet", "features", "--config", nodedup_cfg, "--events", a.events, "--as-of", a.cutoff, "--out", ours_path],
            "churnclv+dedup": [a.bin, "--quiet", "features", "--events", a.events, "--as-of", a.cutoff, "--out", os.path.join(tmp, "dedup.parquet")],
            "duckdb": [sys.executable, os.path.join(HERE, "agg_duckdb.py"), a.events, os.path.join(tmp, "duckdb.parquet"), a.cutoff],
            "polars": [sys.executable, os.path.join(HERE, "agg_polars.py"), a.events, os.path.join(tmp, "polars.parquet"), a.cutoff],
        }
        # Each tool runs `--repeat` times, interleaved, so machine noise hits all alike; the
        # median wall time and the largest peak RSS are reported.
        samples = {name: [] for name in runs}
        for _ in range(a.repeat):
            for name, cmd in runs.items():
                samples[name].append(measure(cmd))
        results = {name: (statistics.median(w for w, _ in xs), max(r for _, r in xs))
                   for name, xs in samples.items()}
        ours = table(ours_path)
        for name in ["duckdb", "polars"]:
            check(name, ours, table(os.path.join(tmp, f"{name}.parquet")))
        # The bench data has no duplicate order ids: deduplication must not change a row.
        if not ours.equals(table(os.path.join(tmp, "dedup.parquet"))):
            sys.exit("bench: churnclv with deduplication gave a different table")
    rows = pq.ParquetFile(a.events).metadata.num_rows
    print(f"feature stage on {a.events}: {rows:,} events, {ours.num_rows:,} customers, cutoff {a.cutoff}, "
          f"{os.cpu_count()} cores, median of {a.repeat} runs")
    print(f"{'tool':<16}{'wall s':>9}{'peak RSS MB':>13}{'time vs churnclv':>18}")
    for name, (wall, rss) in results.items():
        print(f"{name:<16}{wall:>9.2f}{rss:>13.0f}{wall / results['churnclv'][0]:>17.2f}x")
    for name, note in [("churnclv", "same work"), ("churnclv+dedup", "defaults")]:
        ratio = results[name][0] / results["duckdb"][0]
        print(f"ratio {name} / duckdb wall time ({note}): {ratio:.2f} (target <= 0.5, goal <= 0.2); "
              f"peak RSS {name} / duckdb: {results[name][1] / results['duckdb'][1]:.2f}")
    print("per-customer counts, sums, means and recency agree across the three tools")


if __name__ == "__main__":
    main()
