"""`make test`, warehouse step: publish two as-of runs into one output folder and mount each
table folder (`DIR/scores`, `DIR/features`, `DIR/rejects`) the way a warehouse does — one
hive-partitioned dataset per table, `as_of` from the path, in DuckDB and in pyarrow — then
check every column's name, order, type and nullability against the tables of docs/schema.md
and docs/features.md (parsed here, so the docs and this check cannot drift apart), and the
rows per as_of against each run's manifest.json (`DIR/runs/as_of=D/`, read only once that
run's `_SUCCESS` is there, as a loader waits for it).

Run by `make test` with the pinned venv of scripts/requirements-check.txt; exits non-zero on
any failure (every failure is listed). Usage: load_check.py BINARY
"""
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
AS_OFS = ["2025-12-01", "2026-01-01"]
TABLES = ["scores", "features", "rejects"]

# The documented Arrow types, as each reader reports them.
PYARROW_TYPES = {"Utf8": "string", "Date32": "date32[day]", "Float64": "double", "Int64": "int64"}
DUCKDB_TYPES = {"Utf8": "VARCHAR", "Date32": "DATE", "Float64": "DOUBLE", "Int64": "BIGINT"}

# How to mount one table folder as one dataset. These are the reads docs/operations.md gives
# ("Loading the tables"): the folder's `as_of=` value is a date, not text; `as_of` is in the
# path only (no file column of that name).
# DuckDB's `*` also matches names starting with a dot (a staging folder a killed run left):
# `as_of=*` matches partitions only.
DUCKDB_READ = ("read_parquet('{dir}/{table}/as_of=*/*.parquet', hive_partitioning = true, "
               "hive_types = {{'as_of': DATE}})")
PYARROW_PARTITIONING = ds.partitioning(pa.schema([("as_of", pa.date32())]), flavor="hive")


def pyarrow_read(out_dir, table):
    """The documented pyarrow read: the table folder itself, hive partitions typed as dates
    (pyarrow skips the `.`/`_`-prefixed entries: markers, staging folders)."""
    dataset = ds.dataset(os.path.join(out_dir, table), format="parquet",
                         partitioning=PYARROW_PARTITIONING)
    return dataset.to_table()


def doc_tables():
    """{table: [(column, type, nullable)]} from the column tables of the docs."""
    def rows(path, heading):
        text = open(os.path.join(ROOT, "docs", path), encoding="utf-8").read()
        section = text.split(heading, 1)[1].split("\n#", 1)[0]
        for line in section.splitlines():
            if not line.startswith("| `"):  # table rows only, not prose with |x| in it
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            yield cells

    def names(cell):
        for name in re.findall(r"`([^`]+)`", cell):
            m = re.fullmatch(r"(.*_)(\d+)\.\.(\d+)", name)  # churn_reason_1..3
            if m:
                yield from (f"{m[1]}{i}" for i in range(int(m[2]), int(m[3]) + 1))
            else:
                yield name

    contract = {}
    for table in ["scores", "rejects"]:
        cols = []
        for cells in rows("schema.md", f"## `{table}.parquet`"):
            kind, null = cells[1], cells[2]
            assert null in ("yes", "no"), (table, cells)
            cols += [(n, kind, null == "yes") for n in names(cells[0])]
        contract[table] = cols
    cols = []
    for cells in rows("features.md", "| column | type |"):
        kind, _, null = cells[1].partition(",")
        cols += [(n, kind.strip(), null.strip() == "null") for n in names(cells[0])]
    contract["features"] = cols
    # schema.md's shorter features table must agree with features.md where it speaks.
    full = {n: (k, nl) for n, k, nl in cols}
    for cells in rows("schema.md", "## `features.parquet`"):
        for n in names(cells[0]):
            assert full.get(n) == (cells[1], cells[2] == "yes"), ("schema.md vs features.md", n)
    for table, cols in contract.items():
        assert cols and all(k in PYARROW_TYPES for _, k, _ in cols), (table, cols)
    return contract


def bad_rows(path):
    """Rows for each reject reason, so rejects.parquet has rows to load."""
    t = dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)
    pq.write_table(pa.table({
        "customer_id": pa.array([None, "", "bad-1", "bad-2", "bad-3", "bad-4"], pa.string()),
        "event_time": pa.array([t, t, None, t, t, t], pa.timestamp("us", tz="UTC")),
        "event_type": pa.array(["purchase"] * 6),
        "amount": pa.array([1.0, 1.0, 1.0, float("nan"), -5.0, 1e308]),
    }), path)
    return 6


def publish(binary, work):
    events = os.path.join(work, "events")
    os.makedirs(events)
    subprocess.run([binary, "--quiet", "generate", "--customers", "3000", "--seed", "11",
                    "--start", "2024-01-01", "--days", "730",
                    "--out", os.path.join(events, "gen.parquet")], check=True,
                   stdout=subprocess.DEVNULL)
    os.remove(os.path.join(events, "gen.truth.parquet"))
    bad = bad_rows(os.path.join(events, "bad.parquet"))
    out = os.path.join(work, "out")
    for as_of in AS_OFS:
        subprocess.run([binary, "--quiet", "run", "--events", events, "--out", out,
                        "--as-of", as_of], check=True, stdout=subprocess.DEVNULL)
    # What a killed run can leave behind: a staging folder in each table folder, with half a
    # file. The documented reads skip it (its name starts with a dot).
    for table in TABLES:
        os.makedirs(os.path.join(out, table, ".tmp-killed"))
        with open(os.path.join(out, table, ".tmp-killed", f"{table}.parquet"), "wb") as f:
            f.write(b"PAR1 half a file")
    return out, bad


def check(binary):
    contract = doc_tables()
    failures = []

    def expect(ok, what):
        if not ok:
            failures.append(what)

    with tempfile.TemporaryDirectory() as work:
        out, bad = publish(binary, work)
        # A loader waits for the run's commit marker, then trusts its manifest.
        for a in AS_OFS:
            expect(os.path.isfile(os.path.join(out, "runs", f"as_of={a}", "_SUCCESS")),
                   f"runs/as_of={a}/_SUCCESS missing")
        expect(sorted(e for e in os.listdir(out) if not e.startswith(".")) ==
               sorted(TABLES + ["runs"]), f"DIR holds {sorted(os.listdir(out))}")
        manifests = {a: json.load(open(os.path.join(out, "runs", f"as_of={a}",
                                                    "manifest.json")))
                     for a in AS_OFS}
        summary = []
        con = duckdb.connect()
        for table in TABLES:
            doc = contract[table]
            names = [n for n, _, _ in doc]
            # `as_of` is in the path only: no file has the column; the readers add it from
            # the folder, as the last column.
            expect("as_of" not in names, f"{table}: docs list as_of as a file column")
            loaded_names = names + ["as_of"]
            want_rows = {a: next(o["rows"] for o in manifests[a]["outputs"]
                                 if o["file"] == f"{table}/as_of={a}/{table}.parquet")
                         for a in AS_OFS}
            for a in AS_OFS:
                schema = [(c["name"], c["type"], c["nullable"])
                          for c in manifests[a]["schema"][table]]
                expect(schema == doc, f"{table}: manifest schema of {a} differs from the docs: "
                                      f"{sorted(set(schema) ^ set(doc))}")
                file_schema = pq.ParquetFile(os.path.join(out, table, f"as_of={a}",
                                                          f"{table}.parquet")).schema_arrow
                got = [(f.name, str(f.type), f.nullable) for f in file_schema]
                want = [(n, PYARROW_TYPES[k], nl) for n, k, nl in doc]
                expect(got == want, f"{table} ({a}): file schema differs from the docs: "
                                    f"{sorted(set(got) ^ set(want))}")
            if table == "rejects":
                expect(all(r == bad for r in want_rows.values()),
                       f"rejects: manifest rows {want_rows}, {bad} bad rows written")

            # pyarrow
            try:
                t = pyarrow_read(out, table)
                got = [(f.name, str(f.type)) for f in t.schema]
                want = [(n, PYARROW_TYPES[k]) for n, k, _ in doc] + [("as_of", "date32[day]")]
                expect(got == want, f"pyarrow {table}: columns/types {got} != documented {want}")
                counts = dict(zip(*[c.to_pylist() for c in
                                    t.group_by("as_of").aggregate([("as_of", "count")])
                                    .select(["as_of", "as_of_count"]).columns]))
                counts = {str(k): v for k, v in counts.items()}
                expect(counts == {a: n for a, n in want_rows.items() if n}
                       and len(counts) == len(AS_OFS),
                       f"pyarrow {table}: rows per as_of {counts} != manifests {want_rows}")
                for n, _, nullable in doc:
                    if not nullable:
                        expect(t.column(n).null_count == 0, f"pyarrow {table}.{n}: nulls in a "
                                                            "column documented as not null")
            except Exception as e:  # a load that fails is a test failure, with its message
                failures.append(f"pyarrow {table}: load failed: {type(e).__name__}: {e}")

            # DuckDB
            try:
                rel = con.sql(f"SELECT * FROM {DUCKDB_READ.format(dir=out, table=table)}")
                got = list(zip(rel.columns, map(str, rel.types)))
                want = [(n, DUCKDB_TYPES[k]) for n, k, _ in doc] + [("as_of", "DATE")]
                expect(got == want, f"duckdb {table}: columns/types {got} != documented {want}")
                counts = {str(a): n for a, n in con.sql(
                    f"SELECT as_of, count(*) FROM {DUCKDB_READ.format(dir=out, table=table)} "
                    "GROUP BY as_of").fetchall()}
                expect(counts == {a: n for a, n in want_rows.items() if n}
                       and len(counts) == len(AS_OFS),
                       f"duckdb {table}: rows per as_of {counts} != manifests {want_rows}")
                not_null = [n for n, _, nullable in doc if not nullable]
                nulls = con.sql("SELECT " + ", ".join(f'count(*) FILTER (WHERE "{n}" IS NULL)'
                                                      for n in not_null) +
                                f" FROM {DUCKDB_READ.format(dir=out, table=table)}").fetchone()
                for n, k in zip(not_null, nulls):
                    expect(k == 0, f"duckdb {table}.{n}: {k} nulls in a column documented "
                                   "as not null")
            except Exception as e:
                failures.append(f"duckdb {table}: load failed: {type(e).__name__}: {e}")
            summary.append(f"{table} {sum(want_rows.values())} rows x {len(loaded_names)} columns")
    return failures, summary


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: load_check.py BINARY")
    failures, summary = check(sys.argv[1])
    for f in failures:
        print(f"load check: FAILED: {f}", file=sys.stderr)
    if failures:
        sys.exit(1)
    print(f"load check: DuckDB {duckdb.__version__} and pyarrow {pa.__version__} mounted each "
          f"table folder over {len(AS_OFS)} as-of partitions as documented: "
          + "; ".join(summary))


if __name__ == "__main__":
    main()
