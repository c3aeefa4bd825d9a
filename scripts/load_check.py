"""`make test`, last step: load a fresh scores.parquet the way a warehouse would — with DuckDB
or pyarrow, whichever is installed (skipped, saying so, when neither is) — and check its
columns, types and row count against the documented contract."""
import json
import os
import subprocess
import sys
import tempfile

COLUMNS = ["customer_id", "as_of", "recency_days", "frequency", "monetary_total", "avg_order_value",
           "tenure_days", "r_score", "f_score", "m_score", "rfm_segment", "lifecycle_stage",
           "churn_probability", "churn_risk", "p_alive", "expected_purchases", "expected_order_value",
           "clv", "clv_decile", "engagement_tier", "next_best_action", "churn_reason_1",
           "churn_reason_2", "churn_reason_3", "model_version", "run_id"]


def main():
    binary = sys.argv[1]
    try:
        import pyarrow.parquet as pq  # noqa: F401
        reader = "pyarrow"
    except ImportError:
        try:
            import duckdb  # noqa: F401
            reader = "duckdb"
        except ImportError:
            print("load check: skipped (neither pyarrow nor duckdb is installed for python3)")
            return
    with tempfile.TemporaryDirectory() as out:
        events = os.path.join(os.path.dirname(__file__), "..", "data", "cdnow", "cdnow_events.parquet")
        subprocess.run([binary, "--quiet", "run", "--events", events, "--as-of", "1998-07-01",
                        "--horizon", "273d", "--out", out], check=True, stdout=subprocess.DEVNULL)
        part = os.path.join(out, "as_of=1998-07-01")
        path = os.path.join(part, "scores.parquet")
        manifest = json.load(open(os.path.join(part, "manifest.json")))
        rows = next(o["rows"] for o in manifest["outputs"] if o["file"] == "scores.parquet")
        if reader == "pyarrow":
            import pyarrow.parquet as pq
            t = pq.ParquetFile(path).read()  # a single file: no hive partition inference
            names, n = t.schema.names, t.num_rows
            types = {f.name: str(f.type) for f in t.schema}
            assert types["as_of"] == "date32[day]" and types["frequency"] == "int64", types
        else:
            import duckdb
            rel = duckdb.sql(f"SELECT * FROM read_parquet('{path}')")
            names, n = rel.columns, rel.count("*").fetchone()[0]
            types = dict(zip(rel.columns, map(str, rel.types)))
            assert types["as_of"] == "DATE" and types["frequency"] == "BIGINT", types
    assert names == COLUMNS, names
    assert n == rows == 23570, (n, rows)
    print(f"load check: {reader} read scores.parquet: {n} rows, {len(names)} columns as documented")


if __name__ == "__main__":
    main()
