# churnclv — the two commands a newcomer needs: `make run` and `make test`.
# Everything builds in release: `make run` and `make test` share one set of artifacts.

CARGO  ?= cargo
BIN    := target/release/churnclv
SAMPLE := data/sample/events.parquet
OUT    ?= out

.PHONY: run test build sample cdnow bench clean

## Build, make the sample data if missing, run the whole job on it, print a summary.
run: build sample
	$(BIN) run --events $(SAMPLE) --out $(OUT)

## Every test (unit, integration, CLI), release profile.
test:
	$(CARGO) test --release

build:
	$(CARGO) build --release

## Deterministic synthetic sample: 20,000 customers over two years (seed 42).
sample: build
	@test -f $(SAMPLE) || $(BIN) generate --customers 20000 --seed 42 --out $(SAMPLE)

## The real CDNOW cohort, with the literature's calibration/holdout split.
cdnow: build
	$(BIN) run --events data/cdnow/cdnow_events.parquet --as-of 1998-07-01 --horizon 273d --out $(OUT)/cdnow

clean:
	rm -rf $(OUT) data/sample
