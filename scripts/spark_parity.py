"""Parity of `churnclv sql features` on a Spark Connect engine with `churnclv features`.

Starts Sail's Spark Connect server (pysail, pinned in scripts/requirements-spark.txt) in
local mode and in local-cluster mode with 2 workers — or, with --apache-connect PYTHON,
Apache Spark 4's own Spark Connect server in local[2] from the pyspark installed beside
PYTHON (`make spark-check`), or, with --remote, a running server — registers each data set's events as
the view `events`, runs the printed query and compares its table with the one
`churnclv features` writes: same columns in the same order, same types, same nulls; counts,
days and money exactly; ratios (and the few columns that are sums of floats in Rust) to
1e-9 relative. It also checks `churnclv sql rejects` against the reject counts of
`churnclv features`, and that the physical plan has one scan of the events and one shuffle.

Data sets: the CDNOW sample (data/cdnow) and a generated file to which one heavily skewed
customer (every event type, duplicates, rejected rows) is added. Any difference fails
(exit 1) with the customer, column and both values.

On Sail local and on Apache Spark Connect it also runs spark/churnclv_spark.py, unchanged,
through the server's sc:// URL (features -> train -> score/publish; the skew guard; scoring
in shards; training on a 10% sample) and compares what it publishes with `churnclv run`'s.

    python scripts/spark_parity.py --bin target/release/churnclv [--modes local,local-cluster]
    python scripts/spark_parity.py --bin target/release/churnclv --apache-connect .venv-spark-classic/bin/python
    python scripts/spark_parity.py --bin target/release/churnclv --classic   # in .venv-spark-classic
"""

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

OPTIONAL = ["amount", "channel", "category", "order_id", "event_id"]
# Real columns compared to 1e-9 relative: ratios, and columns Rust computes as a sum or
# spread of floats (the SQL computes them exactly, in decimals or integers).
LOOSE = {"refund_ratio", "trend_30d", "repeat_spend_mean", "ipt_std_days"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sail(mode, log):
    """A Sail Spark Connect server in `mode`; returns (process, url)."""
    port = free_port()
    env = dict(os.environ, RUST_LOG="warn")
    if mode == "local-cluster":
        env.update(
            SAIL_MODE="local-cluster",
            SAIL_CLUSTER__WORKER_INITIAL_COUNT="2",
            SAIL_CLUSTER__WORKER_MAX_COUNT="2",
        )
    sail = os.path.join(os.path.dirname(sys.executable), "sail")
    proc = subprocess.Popen(
        [sail, "spark", "server", "--ip", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"sail server ({mode}) exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"sc://127.0.0.1:{port}"
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"sail server ({mode}) did not listen on {port} within 60 s")


def start_apache_connect(python, log):
    """Apache Spark 4's Spark Connect server (org.apache.spark.sql.connect.service.
    SparkConnectServer, which pyspark's jars ship; pyspark 4.1.1's pip package has no
    sbin/start-connect-server.sh, and `SparkSession.builder.remote("local")` starts one
    inside the calling process, with a token, for that process only) as its own process:
    `spark-submit` beside `python`, local[2], session time zone UTC. `python` also runs the
    server's Python workers (mapInArrow), so they have pyspark 4.1.1 and pyarrow, while the
    client — this script and the driver — stays the pinned pyspark-client of .venv-spark.
    Returns (process, url)."""
    port = free_port()
    submit = os.path.join(os.path.dirname(python), "spark-submit")
    env = dict(os.environ, PYSPARK_PYTHON=python, PYSPARK_DRIVER_PYTHON=python)
    env.pop("SPARK_HOME", None)  # the pip package finds its own
    proc = subprocess.Popen(
        [submit, "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
         "--master", "local[2]", "--name", "churnclv spark-check",
         "--conf", f"spark.connect.grpc.binding.port={port}",
         "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
         "--conf", "spark.sql.session.timeZone=UTC",
         "--conf", "spark.ui.enabled=false",
         "--conf", "spark.ui.showConsoleProgress=false"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 180  # the JVM's start, on 2 shared cores
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"Apache Spark Connect server exited with {proc.returncode} "
                             f"(log: {log.name})")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"sc://127.0.0.1:{port}"
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"Apache Spark Connect server did not listen on {port} within 180 s")


def churnclv(binary, *args):
    out = subprocess.run([binary, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"churnclv {' '.join(args)}: exit {out.returncode}: {out.stderr.strip()}")
    return out.stdout


def skewed_dataset(binary, folder):
    """A generated history (1,000 customers) plus one customer with 150,000 events of every
    type, repeated order ids, and rows every validation rule rejects."""
    os.makedirs(folder, exist_ok=True)
    churnclv(binary, "generate", "--customers", "1000", "--seed", "5", "--out",
             os.path.join(folder, "base.parquet"), "--quiet")
    os.remove(os.path.join(folder, "base.truth.parquet"))
    base = pq.read_table(os.path.join(folder, "base.parquet"))
    n = 150_000
    start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    kinds = ["page_view", "purchase", "add_to_cart", "refund", "email_open", "session_start",
             "checkout_start", "support_ticket", "email_click", "sms_click", "review",
             "referral", "community_post", "Other_Thing", " PURCHASE "]
    rows = {c: [] for c in base.schema.names}
    for i in range(n):
        kind = kinds[(i * 7) % len(kinds)]
        # Spread over two years, with bursts: many events share a second and a day.
        t = start + dt.timedelta(seconds=(i * 419) % (730 * 86400) // 60 * 60)
        rows["customer_id"].append("WHALE")
        rows["event_time"].append(t)
        rows["event_type"].append(kind)
        money = kind.strip().lower() in ("purchase", "refund")
        rows["amount"].append(round(1 + (i % 997) * 0.37, 2) if money else None)
        # Order ids repeat every 5,000 rows: duplicate keys (same type and order id).
        rows["order_id"].append(f"W{i % 5000}" if money else None)
        rows["quantity"].append(1 if money else None)
        rows["channel"].append(["web", "app", "store", "email"][i % 4])
        rows["category"].append(None if i % 11 == 0 else f"cat{i % 70}")
    # Rows each rule rejects.
    bad = [
        (None, start, "purchase", 1.0),
        ("   ", start, "purchase", 1.0),
        ("WHALE", None, "purchase", 1.0),
        ("WHALE", dt.datetime(1850, 1, 1, tzinfo=dt.timezone.utc), "purchase", 1.0),
        ("WHALE", dt.datetime(2150, 1, 1, tzinfo=dt.timezone.utc), "purchase", 1.0),
        ("WHALE", start, None, 1.0),
        ("WHALE", start, "purchase", float("nan")),
        ("WHALE", start, "purchase", float("inf")),
        ("WHALE", start, "purchase", 5e9),
        ("WHALE", start, "purchase", -3.0),
    ]
    for c, t, k, a in bad:
        for col, v in zip(["customer_id", "event_time", "event_type", "amount"], [c, t, k, a]):
            rows[col].append(v)
        for col in ["order_id", "quantity", "channel", "category"]:
            rows[col].append(None)
    schema = pa.schema([pa.field(f.name, f.type, nullable=True) for f in base.schema])
    pq.write_table(pa.table(rows, schema=schema), os.path.join(folder, "whale.parquet"),
                   row_group_size=40_000)
    pq.write_table(base.cast(schema), os.path.join(folder, "base.parquet"))
    return folder


def rust_rejects(stdout):
    """Reject counts from the `rejected: reason n, …` end of `churnclv features`' line."""
    m = re.search(r"rejected: (.*)\)\s*$", stdout.strip())
    if not m or m.group(1) == "none":
        return {}
    return {r: int(n) for r, n in (p.rsplit(" ", 1) for p in m.group(1).split(", "))}


def normalised(table):
    """Sorted by customer_id, strings as plain utf8 (an engine may send large or view)."""
    cols = []
    for f in table.schema:
        col = table.column(f.name)
        if pa.types.is_large_string(f.type) or str(f.type) == "string_view":
            col = col.cast(pa.string())
        cols.append(col)
    t = pa.table(cols, names=table.schema.names)
    return t.sort_by("customer_id")


def compare(name, rust, spark):
    problems = []
    if rust.schema.names != spark.schema.names:
        return [f"{name}: columns differ:\n rust  {rust.schema.names}\n spark {spark.schema.names}"]
    for f in rust.schema:
        if spark.schema.field(f.name).type != f.type:
            problems.append(f"{name}: column {f.name}: type {spark.schema.field(f.name).type}, "
                            f"expected {f.type}")
    if rust.num_rows != spark.num_rows:
        return problems + [f"{name}: {spark.num_rows} rows, expected {rust.num_rows}"]
    ids_r, ids_s = rust.column("customer_id"), spark.column("customer_id")
    if not ids_r.equals(ids_s):
        return problems + [f"{name}: customer ids differ"]
    ids = ids_r.to_pylist()
    for f in rust.schema:
        if f.name == "customer_id":
            continue
        a = rust.column(f.name).to_pylist()
        b = spark.column(f.name).to_pylist()
        bad = 0
        for i, (x, y) in enumerate(zip(a, b)):
            if x is None or y is None or f.name not in LOOSE:
                ok = x == y
            else:
                ok = abs(x - y) <= 1e-9 * max(1.0, abs(x), abs(y))
            if not ok:
                bad += 1
                if bad <= 3:
                    problems.append(f"{name}: customer {ids[i]}, column {f.name}: "
                                    f"spark {y!r}, churnclv {x!r}")
        if bad > 3:
            problems.append(f"{name}: column {f.name}: {bad} customers differ in all")
    return problems


def plan_problems(name, plan):
    """One scan of the events and one shuffle (a hash repartition by customer_id)."""
    scans = len(re.findall(r"DataSourceExec|ParquetExec|FileScan parquet|Scan parquet", plan))
    shuffles = len(re.findall(r"RepartitionExec: partitioning=Hash|ShuffleWriteExec|"
                              r"ShuffleReadExec|Exchange hashpartitioning", plan))
    # A cluster plan shows each shuffle as a write and a read stage.
    if "ShuffleWriteExec" in plan:
        shuffles = len(re.findall(r"ShuffleWriteExec", plan))
    problems = []
    if scans != 1:
        problems.append(f"{name}: the plan scans the events {scans} times, expected 1")
    if shuffles != 1:
        problems.append(f"{name}: the plan has {shuffles} shuffles, expected 1")
    return problems, scans, shuffles


def check(spark, binary, name, events, as_of, horizon, work):
    schema = pq.read_schema(events if os.path.isfile(events)
                            else os.path.join(events, sorted(os.listdir(events))[0]))
    absent = [c for c in OPTIONAL if c not in schema.names]
    sql_args = ["--as-of", as_of, "--label-horizon", horizon]
    if absent:
        sql_args += ["--absent", ",".join(absent)]
    out = os.path.join(work, f"{name}.parquet")
    said = churnclv(binary, "features", "--quiet", "--events", events, "--as-of", as_of,
                    "--label-horizon", horizon, "--out", out)
    rust = normalised(pq.read_table(out))
    query = churnclv(binary, "sql", "features", *sql_args)
    rejects_query = churnclv(binary, "sql", "rejects", *sql_args)

    spark.read.parquet(events).createOrReplaceTempView("events")
    started = time.time()
    table = normalised(spark.sql(query).toArrow())
    took = time.time() - started
    problems = compare(name, rust, table)
    got = {r["reason"]: r["rows"] for r in spark.sql(rejects_query).collect()}
    want = rust_rejects(said)
    if got != want:
        problems.append(f"{name}: rejects by reason: spark {got}, churnclv {want}")
    plan = "\n".join(r[0] for r in spark.sql("EXPLAIN " + query).collect())
    plan_bad, scans, shuffles = plan_problems(name, plan)
    if plan_bad:
        with open(os.path.join(work, f"{name}.plan.txt"), "w") as f:
            f.write(plan)
    problems += plan_bad
    print(f"  {name}: {table.num_rows} customers x {table.num_columns} columns, "
          f"rejects {sum(want.values())}, {scans} scan / {shuffles} shuffle, query {took:.1f} s: "
          f"{'same' if not problems else 'DIFFERENT'}")
    return problems


def driver_check(url, binary, root, work):
    """spark/churnclv_spark.py (features on the engine in buckets, training on all customers,
    scoring through the binary) publishes the scores `churnclv run` publishes."""
    events = os.path.join(work, "driver-events")
    churnclv(binary, "generate", "--customers", "2000", "--seed", "11", "--quiet", "--out",
             os.path.join(events, "events.parquet"))
    os.remove(os.path.join(events, "events.truth.parquet"))
    single, spark_out = os.path.join(work, "single"), os.path.join(work, "spark-out")
    as_of = "2025-12-01"
    churnclv(binary, "run", "--quiet", "--events", events, "--as-of", as_of, "--horizon", "90d",
             "--out", single)
    started = time.time()
    out = subprocess.run([sys.executable, os.path.join(root, "spark", "churnclv_spark.py"),
                          "--remote", url, "--events", events, "--as-of", as_of, "--horizon", "90d",
                          "--buckets", "4", "--out", spark_out, "--bin", binary],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return [f"driver: exit {out.returncode}: {out.stderr.strip()}"]
    # The skew guard: a customer over --max-customer-events stops the driver before any
    # feature query, exit 2, naming it; nothing is published.
    guarded = os.path.join(work, "guarded-out")
    stop = subprocess.run([sys.executable, os.path.join(root, "spark", "churnclv_spark.py"),
                           "--remote", url, "--events", os.path.join(work, "skewed"),
                           "--as-of", "2025-07-01", "--max-customer-events", "100000",
                           "--out", guarded, "--bin", binary], capture_output=True, text=True)
    want_err = (f"churnclv_spark: error: --events {os.path.join(work, 'skewed')}: customers with "
                f"more than --max-customer-events 100000 rows: 'WHALE' (150008 rows); filter "
                f"them out upstream or raise the limit with executor memory (docs/scale-out.md)\n")
    guard_problems = []
    if (stop.returncode, stop.stderr) != (2, want_err) or os.path.exists(guarded):
        guard_problems.append(f"driver: skew guard: exit {stop.returncode}, stderr {stop.stderr!r}, "
                              f"published {os.path.exists(guarded)}")
    # A training share outside (0, 1] in the config: exit 2 from the binary's validation,
    # before the engine runs anything; nothing published.
    bad_config = os.path.join(work, "bad-sample.toml")
    with open(bad_config, "w") as f:
        f.write("[spark]\ntrain_sample = 1.5\n")
    stop = subprocess.run([sys.executable, os.path.join(root, "spark", "churnclv_spark.py"),
                           "--remote", url, "--events", events, "--as-of", as_of,
                           "--config", bad_config, "--out", guarded, "--bin", binary],
                          capture_output=True, text=True)
    want_err = ("churnclv: error: spark.train_sample must be a share of the customers in "
                "(0, 1], got 1.5\n")
    if (stop.returncode, stop.stderr) != (2, want_err) or os.path.exists(guarded):
        guard_problems.append(f"driver: bad [spark] train_sample: exit {stop.returncode}, "
                              f"stderr {stop.stderr!r}, published {os.path.exists(guarded)}")
    part = os.path.join("scores", f"as_of={as_of}", "scores.parquet")
    want = normalised(pq.read_table(os.path.join(single, part)))
    got = normalised(pq.read_table(os.path.join(spark_out, part)))
    problems = guard_problems + compare_scores(want, got)
    if not os.path.exists(os.path.join(spark_out, "runs", f"as_of={as_of}", "_SUCCESS")):
        problems.append("driver: no _SUCCESS in the published run partition")
    problems += manifest_problems("driver", single, spark_out, as_of, got.num_rows)
    print(f"  driver: {got.num_rows} customers scored, {time.time() - started:.1f} s: "
          f"{'same scores as run (floats to 1e-9), _SUCCESS, manifest' if not problems else 'DIFFERENT'}")
    return problems + sharded_check(url, binary, root, work)


def manifest_problems(name, single, out, as_of, customers):
    """The published run's manifest.json: written by `publish` for this as-of, the score and
    feature tables with `run`'s schemas (docs/schema.md), and every output it lists present
    with its bytes, sha256 and rows."""
    runs = os.path.join(out, "runs", f"as_of={as_of}")
    try:
        m = json.load(open(os.path.join(runs, "manifest.json")))
    except (OSError, ValueError) as e:
        return [f"{name}: manifest.json: {e}"]
    want = json.load(open(os.path.join(single, "runs", f"as_of={as_of}", "manifest.json")))
    problems = []
    if (m.get("command"), m.get("as_of")) != ("publish", as_of):
        problems.append(f"{name}: manifest command {m.get('command')!r}, as_of {m.get('as_of')!r}")
    for table in ("scores", "features"):
        if m.get("schema", {}).get(table) != want["schema"][table]:
            problems.append(f"{name}: manifest schema of {table} differs from run's")
    listed = {o["file"]: o for o in m.get("outputs", [])}
    for f in (f"scores/as_of={as_of}/scores.parquet", f"features/as_of={as_of}/features.parquet",
              f"runs/as_of={as_of}/model.json"):
        if f not in listed:
            problems.append(f"{name}: manifest does not list {f}")
    for f, o in listed.items():
        path = os.path.join(out, f)
        if not os.path.isfile(path):
            problems.append(f"{name}: manifest lists {f}, not published")
            continue
        data = open(path, "rb").read()
        if (len(data), hashlib.sha256(data).hexdigest()) != (o.get("bytes"), o.get("sha256")):
            problems.append(f"{name}: {f}: bytes/sha256 differ from the manifest's")
        if o.get("table") in ("scores", "features") and o.get("rows") != customers:
            problems.append(f"{name}: manifest {f}: {o.get('rows')} rows, published {customers}")
    return problems


def sharded_check(url, binary, root, work, label="local"):
    """Scoring in shards on the engine, exactly: `run`'s own as-of feature table, bucketed by
    the engine as the features step buckets it, scored by the driver's score step (pass 1 on
    the executors, `churnclv cuts`, pass 2 on the executors, `churnclv publish`) with `run`'s
    model.json, equals `run`'s score table exactly — every column, customer by customer, ties
    at the cut points included — but run_id, which names the publishing run."""
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    started = time.time()
    single, as_of = os.path.join(work, "single"), "2025-12-01"  # driver_check's run
    scratch = os.path.join(work, f"sharded-work-{label}")
    out = os.path.join(work, f"sharded-out-{label}")
    spark = SparkSession.builder.remote(url).getOrCreate()
    features = os.path.join(single, "features", f"as_of={as_of}", "features.parquet")
    (spark.read.parquet(features)
     .withColumn("bucket", F.expr("pmod(hash(customer_id), 5)"))
     .repartition(5, "bucket").write.mode("overwrite").partitionBy("bucket")
     .parquet(os.path.join(scratch, "features", f"as_of={as_of}")))
    model = os.path.join(single, "runs", f"as_of={as_of}", "model.json")
    out_ = subprocess.run([sys.executable, os.path.join(root, "spark", "churnclv_spark.py"),
                           "--remote", url, "--events", "unused", "--as-of", as_of,
                           "--step", "score", "--work", scratch, "--model", model,
                           "--buckets", "5", "--out", out, "--bin", binary],
                          capture_output=True, text=True)
    if out_.returncode != 0:
        return [f"sharded: driver exit {out_.returncode}: {out_.stderr.strip()}"]
    part = os.path.join("scores", f"as_of={as_of}", "scores.parquet")
    want = pq.read_table(os.path.join(single, part))
    got = pq.read_table(os.path.join(out, part))
    problems = []
    if want.schema != got.schema or want.num_rows != got.num_rows:
        return [f"sharded: scores {got.schema} x {got.num_rows}, run {want.schema} x {want.num_rows}"]
    ids = want.column("customer_id").to_pylist()
    for name in want.schema.names:
        if name == "run_id":
            continue
        a, b = want.column(name).to_pylist(), got.column(name).to_pylist()
        bad = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        if bad:
            i = bad[0]
            problems.append(f"sharded: column {name}: {len(bad)} customers differ, first "
                            f"{ids[i]}: sharded {b[i]!r}, run {a[i]!r}")
    saved = json.load(open(model))
    run_ids = set(got.column("run_id").to_pylist())
    if run_ids != {f"{as_of.replace('-', '')}-score-{saved['run_id']}"}:
        problems.append(f"sharded: run_id {run_ids}")
    if not os.path.exists(os.path.join(out, "runs", f"as_of={as_of}", "_SUCCESS")):
        problems.append("sharded: no _SUCCESS in the published run partition")
    problems += manifest_problems("sharded", single, out, as_of, got.num_rows)
    # The point of the cut points: customers tied in value on both sides of a cut.
    ties = {}
    for f, q in zip(want.column("frequency").to_pylist(), want.column("f_score").to_pylist()):
        if q is not None:
            ties.setdefault(f, set()).add(q)
    split = sum(1 for v in ties.values() if len(v) > 1)
    if split == 0:
        problems.append("sharded: no tie at an f_score cut point: the check lost its point")
    print(f"  sharded: {got.num_rows} customers in 5 buckets scored on the executors, "
          f"{split} tied frequency values split at f_score cuts, {time.time() - started:.1f} s: "
          f"{'identical to run' if not problems else 'DIFFERENT'}")
    return problems


def sample_check(url, binary, root, work):
    """Training on a 10% customer sample (spark/churnclv_spark.py, `[spark] train_sample = 0.1`
    in --config) gives BTYD
    and spend parameters within 2 standard errors (the sample fit's) of the full fit's, every
    churn coefficient and the intercept within 3 (the sample fit's; why 3 below), and
    out-of-time churn ROC-AUC within 0.02 of it; 20,000 generated customers."""
    import json

    events = os.path.join(work, "sample-events")
    churnclv(binary, "generate", "--customers", "20000", "--seed", "42", "--quiet", "--out",
             os.path.join(events, "events.parquet"))
    os.remove(os.path.join(events, "events.truth.parquet"))
    as_of = "2025-12-31"
    full_out, sample_out = os.path.join(work, "sample-full"), os.path.join(work, "sample-10")
    churnclv(binary, "run", "--quiet", "--events", events, "--as-of", as_of, "--out", full_out)
    # The share from the config, as a scheduled job sets it (`[spark] train_sample`).
    config = os.path.join(work, "sample.toml")
    with open(config, "w") as f:
        f.write("[spark]\ntrain_sample = 0.1\n")
    started = time.time()
    out = subprocess.run([sys.executable, os.path.join(root, "spark", "churnclv_spark.py"),
                          "--remote", url, "--events", events, "--as-of", as_of,
                          "--config", config, "--out", sample_out, "--bin", binary],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return [f"sample: driver exit {out.returncode}: {out.stderr.strip()}"]

    def model(d):
        return json.load(open(os.path.join(d, "runs", f"as_of={as_of}", "model.json")))

    full, sample = model(full_out), model(sample_out)
    problems, worst = [], 0.0
    for part in ("transactions", "spend"):
        def params(m):
            # BG/NBD's parameters are under "params"; Gamma-Gamma's beside its std_errors.
            return m["params"] if "params" in m else {k: m[k] for k in m["std_errors"]}

        f, s_ = params(full["value"][part]), sample["value"][part]
        for k, v in f.items():
            sv, se = params(s_)[k], s_["std_errors"][k]
            z = abs(sv - v) / se
            worst = max(worst, z)
            if z > 2:
                problems.append(f"sample: {part}.{k}: sample {sv:.4g} ± {se:.2g}, full {v:.4g} "
                                f"({z:.1f} standard errors)")
    # The churn coefficients, per unit of the transformed feature (each fit standardises with
    # its own mean and spread), against the sample fit's standard errors in the same unit;
    # the intercept moved to the full fit's feature means (it is the log-odds at each fit's
    # own means). Bound 3: 18 numbers compared, a 5% family-wise (Bonferroni) two-sided bound
    # is 2.99 standard errors of the difference, which is √0.9 of the sample's standard error
    # (the sample is inside the full data): 2.84; 2 (the BTYD bound, 4 numbers) would fail
    # one coefficient in about three runs of 18 by chance alone.
    fc, sc = full["churn"], sample["churn"]
    se = sc["std_errors"] or {}
    sf = {f["name"]: (f, b) for f, b in zip(sc["features"], sc["coefficients"])}
    worst_coef, worst_name = 0.0, None
    b0 = sc["intercept"]
    for f, b in zip(fc["features"], fc["coefficients"]):
        g, bs = sf[f["name"]]
        a, c = b / f["std"], bs / g["std"]
        b0 += c * (f["mean"] - g["mean"])
        z = abs(a - c) / (se[f["name"]] / g["std"])
        if z > worst_coef:
            worst_coef, worst_name = z, f["name"]
        if z > 3:
            problems.append(f"sample: churn coefficient {f['name']}: sample {c:.4g} ± "
                            f"{se[f['name']] / g['std']:.2g}, full {a:.4g} ({z:.1f} standard errors)")
    z0 = abs(b0 - fc["intercept"]) / se["intercept"]
    if z0 > 3:
        problems.append(f"sample: churn intercept (at the full fit's means) {b0:.4g} ± "
                        f"{se['intercept']:.2g}, full {fc['intercept']:.4g} ({z0:.1f} standard errors)")
    auc_f = full["metrics"]["churn"]["model"]["roc_auc"]
    auc_s = sample["metrics"]["churn"]["model"]["roc_auc"]
    if abs(auc_f - auc_s) > 0.02:
        problems.append(f"sample: out-of-time churn ROC-AUC {auc_s:.4f}, full {auc_f:.4f}")
    n = sample["value"]["transactions"]["customers"], full["value"]["transactions"]["customers"]
    print(f"  sample: 10% ({n[0]} of {n[1]} BTYD customers, {sc['train_rows']} of "
          f"{fc['train_rows']} churn rows), BTYD parameters within {worst:.2f} standard errors, "
          f"churn coefficients within {worst_coef:.2f} ({worst_name}), intercept {z0:.2f}, "
          f"ROC-AUC {auc_s:.4f} vs {auc_f:.4f}, {time.time() - started:.1f} s: "
          f"{'ok' if not problems else 'DIFFERENT'}")
    return problems


def compare_scores(want, got):
    """Scores of the whole Spark path: same columns, rows, nulls and labels; numbers to 1e-9
    relative. Not to the bit: repeat_spend_mean is a float sum in Rust and an exact decimal in
    the SQL, so the Gamma-Gamma fit trained on the SQL's tables differs in the last bits
    (~1e-15 relative in expected_order_value and clv). `sharded_check` shows the scoring in
    shards itself is exact."""
    if want.schema.names != got.schema.names or want.num_rows != got.num_rows:
        return [f"driver: scores shape {got.schema.names} x {got.num_rows}, "
                f"run {want.schema.names} x {want.num_rows}"]
    problems = []
    ids = want.column("customer_id").to_pylist()
    for f in want.schema:
        if f.name in ("run_id", "model_version"):
            continue  # which run made the row: different by design
        a, b = want.column(f.name).to_pylist(), got.column(f.name).to_pylist()
        for i, (x, y) in enumerate(zip(a, b)):
            if isinstance(x, float) and isinstance(y, float):
                ok = abs(x - y) <= 1e-9 * max(1.0, abs(x), abs(y))
            else:
                ok = x == y
            if not ok:
                problems.append(f"driver: customer {ids[i]}, column {f.name}: driver {y!r}, run {x!r}")
                break
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--modes", default="local,local-cluster")
    ap.add_argument("--remote", help="a running Spark Connect server (sc://host:port) instead of Sail")
    ap.add_argument("--classic", action="store_true",
                    help="Apache Spark classic in local mode (pyspark with its JVM) instead of Sail")
    ap.add_argument("--apache-connect", metavar="PYTHON",
                    help="instead of Sail, Apache Spark 4's Spark Connect server, local[2], from "
                         "the pyspark beside PYTHON (e.g. .venv-spark-classic/bin/python); the "
                         "SQL parity, the driver, the sharded and the 10%%-sample checks through it")
    args = ap.parse_args()
    from pyspark.sql import SparkSession

    binary = os.path.abspath(args.bin)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    problems = []
    with tempfile.TemporaryDirectory() as work:
        datasets = [
            ("cdnow_sample", os.path.join(root, "data/cdnow/cdnow_sample_events.parquet"),
             "1997-10-01", "273d"),
            ("skewed", skewed_dataset(binary, os.path.join(work, "skewed")), "2025-07-01", "90d"),
        ]
        if args.classic:
            targets = [("spark-classic local[2]", None)]
        elif args.apache_connect:
            targets = [("apache-connect local[2]", "apache")]
        elif args.remote:
            targets = [("remote", None)]
        else:
            targets = [(m, m) for m in args.modes.split(",")]
        for label, mode in targets:
            log = open(os.path.join(work, f"sail-{label}.log"), "w")
            if mode == "apache":
                proc, url = start_apache_connect(os.path.abspath(args.apache_connect), log)
            else:
                proc, url = (None, args.remote) if mode is None else start_sail(mode, log)
            try:
                if args.classic:
                    url = "local[2]"
                    spark = (SparkSession.builder.master(url)
                             .config("spark.sql.session.timeZone", "UTC")
                             .config("spark.ui.enabled", "false")
                             .config("spark.ui.showConsoleProgress", "false").getOrCreate())
                    spark.sparkContext.setLogLevel("ERROR")
                else:
                    spark = SparkSession.builder.remote(url).getOrCreate()
                spark.conf.set("spark.sql.session.timeZone", "UTC")
                print(f"{label} ({url}):")
                for d in datasets:
                    problems += [f"[{label}] {p}" for p in check(spark, binary, *d, work)]
                if label in ("local", "apache-connect local[2]"):
                    # The whole driver, unchanged, through the server's sc:// URL.
                    problems += [f"[{label}] {p}" for p in driver_check(url, binary, root, work)]
                    problems += [f"[{label}] {p}" for p in sample_check(url, binary, root, work)]
                elif label == "local-cluster" and "local" in args.modes.split(","):
                    # Scoring in shards with the tasks on the 2 workers.
                    problems += [f"[{label}] {p}"
                                 for p in sharded_check(url, binary, root, work, label)]
                spark.stop()
            finally:
                if proc is not None:
                    proc.terminate()
                    proc.wait(timeout=30)
        if problems:
            print("spark parity: FAILED", file=sys.stderr)
            for p in problems:
                print("  " + p, file=sys.stderr)
            for f in os.listdir(work):
                if f.endswith(".plan.txt"):
                    print(f"--- {f}\n" + open(os.path.join(work, f)).read(), file=sys.stderr)
            sys.exit(1)
    print("spark parity: ok")


if __name__ == "__main__":
    main()
