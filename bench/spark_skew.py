"""Skew measurement for the Spark SQL feature stage: one customer with N events (every event
type, 70 categories, a purchase in every 7 rows) beside nothing else, `churnclv sql features`
on one engine; prints wall time and, for Sail, the server's peak RSS (VmHWM).

    python bench/spark_skew.py --bin target/release/churnclv --events 1000000,5000000 [--classic --memory 2g]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import spark_parity as sp  # noqa: E402

KINDS = ["page_view", "purchase", "add_to_cart", "refund", "email_open", "session_start",
         "checkout_start"]


def whale(path, n):
    i = np.arange(n, dtype=np.int64)
    start = 1_704_067_200_000_000  # 2024-01-01 in µs
    t = start + (i * 419_000_000) % (730 * 86_400_000_000)
    kind = np.array(KINDS)[(i * 7 // 3) % len(KINDS)]
    money = np.isin(kind, ["purchase", "refund"])
    table = pa.table({
        "customer_id": pa.array(np.full(n, "WHALE")),
        "event_time": pa.array(t, pa.timestamp("us", tz="UTC")),
        "event_type": pa.array(kind),
        "amount": pa.array(np.where(money, 1 + (i % 997) * 0.37, np.nan), mask=~money),
        "channel": pa.array(np.array(["web", "app", "store", "email"])[i % 4]),
        "category": pa.array(np.char.add("cat", (i % 70).astype(str))),
    })
    pq.write_table(table, path, row_group_size=1_000_000)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--events", default="1000000")
    ap.add_argument("--classic", action="store_true")
    ap.add_argument("--memory", default="2g")
    args = ap.parse_args()
    from pyspark.sql import SparkSession
    with tempfile.TemporaryDirectory() as work:
        proc = None
        if args.classic:
            spark = (SparkSession.builder.master("local[1]")
                     .config("spark.driver.memory", args.memory)
                     .config("spark.sql.session.timeZone", "UTC")
                     .config("spark.ui.showConsoleProgress", "false").getOrCreate())
            spark.sparkContext.setLogLevel("ERROR")
        else:
            proc, url = sp.start_sail("local", open(os.path.join(work, "sail.log"), "w"))
            spark = SparkSession.builder.remote(url).getOrCreate()
            spark.conf.set("spark.sql.session.timeZone", "UTC")
        for n in [int(x) for x in args.events.split(",")]:
            path = os.path.join(work, f"whale-{n}.parquet")
            whale(path, n)
            q = subprocess.run([args.bin, "sql", "features", "--as-of", "2026-01-01",
                                "--absent", "order_id,event_id"],
                               capture_output=True, text=True, check=True).stdout
            spark.read.parquet(path).createOrReplaceTempView("events")
            started = time.time()
            try:
                rows = spark.sql(q).collect()
                outcome = f"ok, n_events {rows[0]['n_events']}"
            except Exception as e:  # the measurement is whether it fails
                outcome = f"FAILED: {str(e).splitlines()[0][:200]}"
            took = time.time() - started
            rss = ""
            if proc is not None:
                with open(f"/proc/{proc.pid}/status") as f:
                    hwm = [line for line in f if line.startswith("VmHWM")][0].split()[1]
                rss = f", server peak RSS {int(hwm) / 1024:.0f} MB"
            engine = f"spark classic local[1] {args.memory}" if args.classic else "sail local"
            print(f"{engine}: one customer with {n:,} events: {took:.1f} s{rss}: {outcome}",
                  flush=True)
        spark.stop()
        if proc is not None:
            proc.terminate()


if __name__ == "__main__":
    main()
