# churnclv — the two commands a newcomer needs: `make run` and `make test`.
# Everything builds in release: `make run` and `make test` share one set of artifacts.

CARGO  ?= cargo
BIN    := target/release/churnclv
SAMPLE := data/sample/events.parquet
OUT    ?= out

.PHONY: run test build sample cdnow bench bench-booster bench-data clean fuzz scale spark-check

BENCH_EVENTS := data/bench/events.parquet
VENV         := .venv
CHECK_VENV   := .venv-check
SPARK_VENV   := .venv-spark
CLASSIC_VENV := .venv-spark-classic

## Build, make the sample data if missing, run the whole job on it, print a summary.
run: build sample
	$(BIN) run --events $(SAMPLE) --out $(OUT)

## Every test (unit, integration, CLI), release profile; then two partitions published into one
## folder and loaded with DuckDB and pyarrow (hive discovery, types as in docs/schema.md), and
## the Airflow example's rendered command and retry rules checked — in a pinned venv
## (scripts/requirements-check.txt, installed into .venv-check); then the Spark SQL parity
## check: `churnclv sql features` on Sail (local and local-cluster with 2 workers) equals
## `churnclv features`, and the Spark driver's bucketed scores equal `run`'s (pinned in
## scripts/requirements-spark.txt, installed into .venv-spark). Any failure fails the target.
## `failpoints` compiles the fault-injection points of the publish path, which tests/publish.rs
## needs (its tests fail, saying so, without it); normal builds leave them out.
test: $(CHECK_VENV)/.installed $(SPARK_VENV)/.installed
	$(CARGO) test --release --features failpoints
	$(CHECK_VENV)/bin/python scripts/load_check.py $(BIN)
	$(CHECK_VENV)/bin/python scripts/dag_check.py
	$(SPARK_VENV)/bin/python scripts/spark_parity.py --bin $(BIN)

## The same parity check on Apache Spark 4 classic in local mode (JVM; Java 17), then Apache
## Spark 4's own Spark Connect server (local[2], started from that pyspark) with the SQL
## parity and the whole driver, unchanged, through its sc:// URL from the pyspark-client of
## .venv-spark (features -> train -> score/publish, the skew guard, scoring in shards, the
## 10% sample): the checks `make test` runs on Sail. Slower (~6 min): not part of `make test`.
## pyspark pinned in scripts/requirements-spark-classic.txt.
spark-check: build $(CLASSIC_VENV)/.installed $(SPARK_VENV)/.installed
	$(CLASSIC_VENV)/bin/python scripts/spark_parity.py --bin $(BIN) --classic
	$(SPARK_VENV)/bin/python scripts/spark_parity.py --bin $(BIN) --apache-connect $(CLASSIC_VENV)/bin/python

build:
	$(CARGO) build --release

## Random damage, long campaign: FUZZ_CASES (default 3000) mutations of a valid 200-customer
## file from seed SEED (default 1), `churnclv run` on each; prints counts by exit code, keeps
## failing inputs (exit code other than 0/2/3, or a panic) in FUZZ_KEEP (target/fuzz-failures).
## The suite runs 300 of them (tests/fuzz.rs).
FUZZ_CASES ?= 3000
SEED       ?= 1
FUZZ_KEEP  ?= target/fuzz-failures
fuzz:
	FUZZ_CASES=$(FUZZ_CASES) SEED=$(SEED) FUZZ_KEEP=$(abspath $(FUZZ_KEEP)) \
		$(CARGO) test --release --test integration fuzz::campaign_from_env -- --ignored --nocapture

## Deterministic synthetic sample: 20,000 customers over two years (seed 42).
sample: build
	@test -f $(SAMPLE) || $(BIN) generate --customers 20000 --seed 42 --out $(SAMPLE)

## The real CDNOW cohort, with the literature's calibration/holdout split.
cdnow: build
	$(BIN) run --events data/cdnow/cdnow_events.parquet --as-of 1998-07-01 --horizon 273d --out $(OUT)/cdnow

## Benchmarks against the peer tools, in one run: generates 11M events / 200k customers, times
## the whole `churnclv run` beside DuckDB's aggregation and the same job as a Python stack
## (bench/whole_run.py: ratios, per-stage times, peak RSS), churnclv's feature stage beside DuckDB and Polars and its BTYD fits beside Python lifetimes
## (all pinned in bench/requirements.txt, installed into .venv), checks they agree, then runs
## the criterion benches.
bench: build bench-data $(VENV)/.installed
	$(VENV)/bin/python bench/whole_run.py --bin $(BIN) --events $(BENCH_EVENTS)
	$(VENV)/bin/python bench/compare_features.py --bin $(BIN) --events $(BENCH_EVENTS) --cutoff 2026-01-01
	$(VENV)/bin/python bench/compare_btyd.py --bin $(BIN) \
		--dataset cdnow-sample:data/cdnow/cdnow_sample_events.parquet:1997-10-01:week \
		--dataset generated-200k:$(BENCH_EVENTS):2025-07-01:day
	$(CARGO) bench --bench features --bench btyd -- --noplot

## The scale run of docs/benchmarks.md: 2M customers (~115M events, generated into data/scale/
## once), the whole job with and without a 2GB budget; wall, CPU, peak RSS. Not part of make test.
scale: build
	python3 bench/scale_run.py --bin $(BIN) --events data/scale/events.parquet

## The boosted challengers' six fits of one run done by LightGBM on the same customers
## (bench/booster_peer.py): what issue 12's time budget would have to hold at a peer's speed.
bench-booster: build bench-data $(VENV)/.installed
	$(VENV)/bin/python bench/booster_peer.py --bin $(BIN) --events $(BENCH_EVENTS)

bench-data: build
	@test -f $(BENCH_EVENTS) || $(BIN) generate --customers 200000 --seed 7 --out $(BENCH_EVENTS)

$(VENV)/.installed: bench/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r bench/requirements.txt
	touch $@

# Rebuilt from scratch when the pins change, so it holds exactly what the file lists.
$(CHECK_VENV)/.installed: scripts/requirements-check.txt
	rm -rf $(CHECK_VENV)
	python3 -m venv $(CHECK_VENV)
	$(CHECK_VENV)/bin/pip install -q --disable-pip-version-check -r scripts/requirements-check.txt
	touch $@

$(SPARK_VENV)/.installed: scripts/requirements-spark.txt
	rm -rf $(SPARK_VENV)
	python3 -m venv $(SPARK_VENV)
	$(SPARK_VENV)/bin/pip install -q --disable-pip-version-check -r scripts/requirements-spark.txt
	touch $@

$(CLASSIC_VENV)/.installed: scripts/requirements-spark-classic.txt
	rm -rf $(CLASSIC_VENV)
	python3 -m venv $(CLASSIC_VENV)
	$(CLASSIC_VENV)/bin/pip install -q --disable-pip-version-check -r scripts/requirements-spark-classic.txt
	touch $@

clean:
	rm -rf $(OUT) data/sample data/bench data/scale
