"""The DuckDB side of bench/ui: runs the dashboard's chart queries on the same data as Parquet.

Reads JSON on stdin: {"tables": {"schema.table": "/path/file.parquet"}, "queries": [{"name", "sql"}],
"runs": N}. Each table becomes a view over read_parquet under the same schema-qualified name, so
the SQL that Polder generated for a chart runs unchanged. Writes JSON on stdout: the DuckDB
version and, per query, the row count and the best and median wall time (ms) of N runs after one
untimed warm-up, each run fetching every row into Python.
"""

import json
import os
import statistics
import sys
import time

import duckdb


def main() -> None:
    job = json.load(sys.stdin)
    con = duckdb.connect()
    con.execute(f"SET threads = {os.cpu_count() or 1}")
    for name, path in job["tables"].items():
        schema, table = name.split(".", 1)
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        escaped = path.replace("'", "''")
        con.execute(f"CREATE VIEW \"{schema}\".\"{table}\" AS SELECT * FROM read_parquet('{escaped}')")
    results = []
    for query in job["queries"]:
        try:
            rows = len(con.execute(query["sql"]).fetchall())
            times = []
            for _ in range(job["runs"]):
                started = time.perf_counter()
                con.execute(query["sql"]).fetchall()
                times.append((time.perf_counter() - started) * 1000)
            results.append({"name": query["name"], "rows": rows, "best_ms": min(times), "median_ms": statistics.median(times)})
        except duckdb.Error as err:
            results.append({"name": query["name"], "error": str(err)})
    json.dump({"version": duckdb.__version__, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
