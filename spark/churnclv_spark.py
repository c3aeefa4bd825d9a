"""churnclv on a Spark Connect engine (Apache Spark 4 Connect or Sail): the O(events) feature
stage runs on the engine as the SQL `churnclv sql features` prints; the models train on one
node from a deterministic sample of customers; scoring and publishing use the churnclv
binary, so the output has the layout, manifest and _SUCCESS of a single-node run.

    python spark/churnclv_spark.py --remote sc://HOST:PORT --events PATH --as-of D \
        --out DIR [--horizon 90d] [--buckets 16] [--train-sample SHARE] [--work DIR] \
        [--bin churnclv] [--config churnclv.toml] [--map customer_id=user_id ...]
        [--max-customer-events 3000000] [--step all|features|train|score] [--model FILE]

Steps (docs/scale-out.md):
1. features at the four cutoffs of `run` (as_of − 3H, − 2H, − H labelled with H; as_of) on
   the engine, one query each over the view `events`, written as Parquet in --buckets
   customer-hash buckets (WORK/features/as_of=C/bucket=k/);
2. the training sample: customers with pmod(hash(customer_id), 10^6) < share × 10^6 (the
   share is `[spark] train_sample` in --config, 1 by default; --train-sample overrides it;
   the same customers at every cutoff, the same on every run), pulled to the driver as four
   files, then `churnclv train` (the churn model and the BTYD / spend fits all see the sample);
3. scoring in shards: pass 1 on the executors, one task per as-of bucket (`churnclv score
   --raw`: each customer's rank keys); the global cut points — r/f/m quintile and CLV decile
   boundaries, the last VIP, the median CLV — from the raw files (`churnclv cuts`); pass 2 on
   the executors (`churnclv score --cuts --part`); `churnclv publish` gathers the buckets and
   publishes DIR/{scores,features,runs}/as_of=D/ through the binary's one publisher (layout,
   manifest, _SUCCESS last). The scores equal a single-node run's exactly.

`--step` runs one of the three (with --work shared by them), as three tasks of a scheduler
(examples/airflow_spark_dag.py). Exit codes are churnclv's: 2 bad input / usage (also a
customer over --max-customer-events), 3 quality gate, 1 internal. The binary and --work must
be at the same paths on the driver and the executors (a shared volume, or the image).
Needs pyspark-client (pinned in scripts/requirements-spark.txt); nothing else.
"""

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

OPTIONAL = ["amount", "channel", "category", "order_id", "event_id"]


def run(binary, *args):
    """Runs churnclv; its exit code is the driver's (2 bad input, 3 quality gate, …)."""
    out = subprocess.run([binary, *args], capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        sys.exit(out.returncode)
    return out.stdout


def horizon_days(text):
    m = re.fullmatch(r"\s*(\d+)\s*([dw]?)\s*", text)
    if not m:
        raise SystemExit(f"--horizon {text!r}: expected days like 90d, weeks like 13w, or a number of days")
    return int(m.group(1)) * (7 if m.group(2) == "w" else 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--remote", required=True, help="Spark Connect URL, sc://host:port")
    ap.add_argument("--events", required=True, help="events Parquet path as the engine sees it")
    ap.add_argument("--as-of", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--horizon", default="90d")
    ap.add_argument("--buckets", type=int, default=16)
    ap.add_argument("--train-sample", type=float, default=None,
                    help="share of the customers the models train on (0 < share <= 1); "
                         "default: [spark] train_sample in --config, else 1")
    ap.add_argument("--work", default=None,
                    help="scratch folder the engine and the driver both reach (default: a new temporary folder)")
    ap.add_argument("--max-customer-events", type=int, default=3_000_000,
                    help="stop (exit 2) before the feature queries when a customer has more rows "
                         "than this: all of a customer's rows are sorted in one task "
                         "(docs/scale-out.md: ~3.5M fit a 2 GB Sail executor); 0: no check")
    ap.add_argument("--step", choices=["all", "features", "train", "score"], default="all",
                    help="run one step (features on the engine, train, score and publish), e.g. "
                         "as three tasks of a scheduler; needs --work shared by the steps")
    ap.add_argument("--model", default=None,
                    help="--step score: score with this model.json (e.g. an earlier run's) instead "
                         "of the one the train step wrote to WORK/model/")
    ap.add_argument("--bin", default="churnclv")
    ap.add_argument("--config")
    ap.add_argument("--map", action="append", default=[])
    args = ap.parse_args()
    if args.config:
        # The binary validates the whole file first (exit 2 naming the key, `[spark]` included),
        # before anything runs on the engine; then the driver reads its own key.
        run(args.bin, "sql", "rejects", "--as-of", args.as_of, "--config", args.config)
        if args.train_sample is None:
            with open(args.config, "rb") as f:
                args.train_sample = float(tomllib.load(f).get("spark", {}).get("train_sample", 1))
    if args.train_sample is None:
        args.train_sample = 1.0
    if not 0 < args.train_sample <= 1:
        raise SystemExit(f"--train-sample {args.train_sample}: expected a share in (0, 1]")
    if args.buckets < 1:
        raise SystemExit(f"--buckets {args.buckets}: expected at least 1")

    if args.step != "all" and args.work is None:
        sys.stderr.write(f"churnclv_spark: error: --step {args.step} needs --work: the folder "
                         "the steps hand their files over in\n")
        sys.exit(2)
    h = horizon_days(args.horizon)
    as_of = dt.date.fromisoformat(args.as_of)
    cutoffs = [(as_of - dt.timedelta(days=k * h), k > 0) for k in (3, 2, 1, 0)]
    work = args.work or tempfile.mkdtemp(prefix="churnclv-spark-")
    # What the steps hand over: the training sample at each cutoff (the as-of table in
    # buckets stays in WORK/features/ for scoring).
    train_file = {c: os.path.join(work, f"train-{c}.parquet") for c, _ in cutoffs}
    model_dir = os.path.join(work, "model")
    config = ["--config", args.config] if args.config else []

    if args.step in ("all", "features"):
        features_step(args, work, cutoffs, h, train_file)
    if args.step in ("all", "train"):
        (tv, _), (t0, _), (t1, _), (latest, _) = cutoffs
        run(args.bin, "train", "--tune", train_file[tv], "--train", train_file[t0],
            "--validate", train_file[t1], "--latest", train_file[latest], "--as-of", args.as_of,
            "--horizon", f"{h}d", "--out", model_dir, *config)
        print(f"trained on {args.train_sample:.0%} of the customers -> {model_dir}/model.json")
    if args.step in ("all", "score"):
        model = os.path.abspath(args.model or os.path.join(model_dir, "model.json"))
        score_step(args, work, as_of, model, config)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


def on_executors(spark, buckets, task):
    """Runs `task(bucket)` once per bucket on the executors (one partition per bucket, through
    mapInArrow); returns {bucket: (exit code, stderr, stdout)}. The binary and --work must be
    at the same paths on every executor (a shared volume, or the image)."""
    import pyarrow as pa

    # The batches carry exactly the Arrow types of the declared schema: Apache Spark reads
    # them as declared (an int64 `code` under `code int` fails in the JVM with "Cannot call
    # the method getInt"), where Sail casts; from_pydict alone would infer int64.
    arrow = pa.schema([("bucket", pa.int64()), ("code", pa.int32()), ("stderr", pa.string()),
                       ("stdout", pa.string())])

    def run_buckets(batches):
        for batch in batches:
            for k in batch.column("id").to_pylist():
                code, err, out = task(k)
                yield pa.RecordBatch.from_pydict(
                    {"bucket": [k], "code": [code], "stderr": [err], "stdout": [out]},
                    schema=arrow)

    schema = "bucket long, code int, stderr string, stdout string"
    rows = spark.range(0, buckets, 1, buckets).mapInArrow(run_buckets, schema).collect()
    return {r["bucket"]: (r["code"], r["stderr"], r["stdout"]) for r in rows}


def score_step(args, work, as_of, model, config):
    """Scoring in shards (docs/scale-out.md): pass 1 on the executors, one task per bucket
    (`churnclv score --raw`: each customer's rank keys); the global cut points on the driver
    from the raw files (`churnclv cuts`, a few boundary keys); pass 2 on the executors
    (`churnclv score --cuts --part`: the bucket's score rows with the whole table's ranks);
    then `churnclv publish` gathers the buckets and publishes the partition."""
    import glob

    from pyspark.sql import SparkSession

    binary = shutil.which(args.bin) or args.bin
    binary = os.path.abspath(binary) if os.path.exists(binary) else binary
    work = os.path.abspath(work)
    features = os.path.join(work, "features", f"as_of={as_of}")
    raw_dir, parts_dir = os.path.join(work, "raw"), os.path.join(work, "parts")
    for d in (raw_dir, parts_dir):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    cuts = os.path.join(work, "cuts.json")

    def bucket_file(k):
        files = sorted(glob.glob(os.path.join(features, f"bucket={k}", "*.parquet")))
        if len(files) > 1:
            raise SystemExit(f"{features}/bucket={k}: {len(files)} files, expected one")
        return files[0] if files else None  # an empty bucket has no folder

    def scorer(extra):
        def task(k):
            table = bucket_file(k)
            if table is None:
                return 0, "", ""
            out = subprocess.run(
                [binary, "--quiet", "score", "--features", table, "--model", model,
                 "--as-of", as_of.isoformat(), *config, *extra(k)],
                capture_output=True, text=True)
            return out.returncode, out.stderr, out.stdout
        return task

    spark = SparkSession.builder.remote(args.remote).getOrCreate()
    passes = [
        ("pass 1 (rank keys)", lambda k: ["--raw", os.path.join(raw_dir, f"bucket={k}.parquet")]),
        ("pass 2 (scores with the global cut points)",
         lambda k: ["--cuts", cuts, "--part", os.path.join(parts_dir, f"bucket={k}.parquet")]),
    ]
    for i, (name, extra) in enumerate(passes):
        done = on_executors(spark, args.buckets, scorer(extra))
        failed = sorted((k, r) for k, r in done.items() if r[0] != 0)
        if failed:
            k, (code, err, _) = failed[0]
            sys.stderr.write(f"churnclv_spark: {name}, bucket {k}: {err}")
            spark.stop()
            sys.exit(code)
        print(f"{name}: {len(done)} buckets scored on the executors")
        if i == 0:
            sys.stdout.write(run(args.bin, "cuts", "--raw", raw_dir, "--out", cuts, *config))
    spark.stop()
    sys.stdout.write(run(args.bin, "publish", "--features", features, "--scores", parts_dir,
                         "--model", model, "--as-of", as_of.isoformat(), "--out", args.out,
                         *config))


def features_step(args, work, cutoffs, h, train_file):
    """On the engine: the skew guard, then the feature table at each cutoff in buckets, the
    training sample and the as-of table pulled to `work`."""
    import pyarrow.parquet as pq
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = SparkSession.builder.remote(args.remote).getOrCreate()
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    events = spark.read.parquet(args.events)
    events.createOrReplaceTempView("events")

    # The view's optional columns, named as the config and --map say.
    common = []
    if args.config:
        common += ["--config", args.config]
    for m in args.map:
        common += ["--map", m]
    names = {c: c for c in OPTIONAL + ["customer_id"]}
    for m in args.map:
        ours, _, theirs = m.partition("=")
        names[ours.strip()] = theirs.strip()
    absent = [c for c in OPTIONAL if names[c] not in events.columns]
    if absent:
        common += ["--absent", ",".join(absent)]

    # The skew guard: one aggregate (partially aggregated before its shuffle, so a heavy
    # customer costs it nothing) instead of a task that runs out of memory an hour in.
    if args.max_customer_events > 0:
        customer = names.get("customer_id", "customer_id")
        heavy = (events.groupBy(F.col(f"`{customer}`").alias("customer_id")).count()
                 .where(F.col("count") > args.max_customer_events)
                 .orderBy(F.col("count").desc()).limit(5).collect())
        if heavy:
            listed = ", ".join(f"'{r['customer_id']}' ({r['count']} rows)" for r in heavy)
            sys.stderr.write(
                f"churnclv_spark: error: --events {args.events}: customers with more than "
                f"--max-customer-events {args.max_customer_events} rows: {listed}; filter them "
                f"out upstream or raise the limit with executor memory (docs/scale-out.md)\n")
            sys.exit(2)

    # Only what this step writes is replaced; anything else in --work is left alone.
    shutil.rmtree(os.path.join(work, "features"), ignore_errors=True)
    os.makedirs(work, exist_ok=True)
    share = int(round(args.train_sample * 1_000_000))
    for cutoff, labelled in cutoffs:
        sql_args = ["sql", "features", "--as-of", cutoff.isoformat(), *common]
        if labelled:
            sql_args += ["--label-horizon", f"{h}d"]
        df = spark.sql(run(args.bin, *sql_args))
        # 1. The table in customer-hash buckets (the same customer in the same bucket at every
        #    cutoff): what scoring on the executors reads.
        bucketed = os.path.join(work, "features", f"as_of={cutoff}")
        # One partition per bucket before the write: one file per bucket folder, which is
        # what one scoring task reads.
        (df.withColumn("bucket", F.expr(f"pmod(hash(customer_id), {args.buckets})"))
           .repartition(args.buckets, "bucket")
           .write.mode("overwrite").partitionBy("bucket").parquet(bucketed))
        # 2. The training sample: the same customers at every cutoff (the as-of table too:
        #    the final BTYD and spend fits use it). Scoring reads the whole as-of table.
        table = spark.read.parquet(bucketed).drop("bucket")
        sample = table
        if share < 1_000_000:
            sample = table.where(F.expr(f"pmod(hash(customer_id), 1000000) < {share}"))
        pq.write_table(sample.toArrow(), train_file[cutoff])
        print(f"features before {cutoff}{' (labelled)' if labelled else ''}: "
              f"{args.buckets} buckets in {bucketed}")

    spark.stop()


if __name__ == "__main__":
    main()
