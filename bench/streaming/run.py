#!/usr/bin/env python3
"""Streaming a large result: rows/s out of Polder (Flight SQL, PostgreSQL wire) and PostgreSQL.

The table has --rows rows (default 10,000,000) of (id bigint, b bigint, c double, s text):
- Polder: bench.big, made once with CREATE TABLE ... AS SELECT ... FROM generate_series(1, N)
  in a data directory of its own (remade when the row count changes);
- PostgreSQL (--pg-dsn, default the local server): a TEMP table with the same rows, made in the
  session that reads it and dropped at the end.

Methods, each timed from the query until the last row has been received and decoded:
- Flight SQL: ADBC `execute` + `fetch_record_batch()` reader, counting rows batch by batch;
- PostgreSQL wire, `COPY (SELECT ...) TO STDOUT` (text) through psycopg, counting lines;
- PostgreSQL wire, a server-side cursor: BEGIN; DECLARE c CURSOR FOR SELECT ...; FETCH FORWARD
  --fetch-size FROM c until empty (psycopg, rows decoded to Python tuples); COMMIT.
Methods an engine does not support are reported with their error. psycopg's own server-side
cursor (`conn.cursor(name=...)`) is also probed on Polder, in a subprocess since it can crash.

Run: /root/.cache/polder-venv/bin/python bench/streaming/run.py --rows 100000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import common  # noqa: E402

try:
    import adbc_driver_flightsql.dbapi as flight_sql
    import psycopg
except ImportError as err:  # pragma: no cover
    sys.exit(f"{err}: run with /root/.cache/polder-venv/bin/python or pip install -r bench/requirements.txt")

POLDER_SELECT = "SELECT id, b, c, s FROM bench.big"
PG_SELECT = "SELECT id, b, c, s FROM pg_temp.bench_big"
# The probes run in sessions of their own, which do not see the TEMP table.
PG_PROBE_SELECT = ("SELECT g::bigint AS id, g::bigint * 2 AS b, g::float8 * 0.5 AS c, 'row-' || g AS s "
                   "FROM generate_series(1, 100) AS g")


def polder_table_sql(rows: int) -> str:
    return ("CREATE TABLE bench.big AS SELECT value AS id, value * 2 AS b, "
            "CAST(value AS DOUBLE) * 0.5 AS c, 'row-' || CAST(value AS VARCHAR) AS s "
            f"FROM generate_series(1, {rows})")


def pg_table_sql(rows: int) -> str:
    return ("CREATE TEMP TABLE bench_big AS SELECT g::bigint AS id, g::bigint * 2 AS b, "
            "g::float8 * 0.5 AS c, 'row-' || g AS s "
            f"FROM generate_series(1, {rows}) AS g")


def prepare_polder(binary: Path, data_dir: Path, rows: int) -> dict:
    marker = data_dir / "bench-streaming.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("rows") == rows:
            print(f"polder: bench.big with {rows} rows already in {data_dir}")
            info["reused"] = True
            return info
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    common.run_polder(binary, ["sql", "CREATE SCHEMA bench", "--data-dir", str(data_dir)])
    _, seconds = common.run_polder(binary, ["sql", polder_table_sql(rows), "--data-dir", str(data_dir)])
    info = {"rows": rows, "create_seconds": round(seconds, 3), "date": common.now_iso(), "binary": str(binary)}
    marker.write_text(json.dumps(info, indent=2))
    print(f"polder: created bench.big ({rows} rows) in {seconds:.2f} s")
    info["reused"] = False
    return info


# --------------------------------------------------------------------------------------------
# Methods: each returns the number of rows received.
# --------------------------------------------------------------------------------------------

def flight_reader(uri: str, sql: str) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conn = flight_sql.connect(uri, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            reader = cur.fetch_record_batch()
            n = 0
            for batch in reader:
                n += batch.num_rows
            return n
    finally:
        conn.close()


def pg_copy(conn, sql: str) -> int:
    n = 0
    with conn.cursor() as cur:
        with cur.copy(f"COPY ({sql}) TO STDOUT") as copy:
            for data in copy:
                n += bytes(data).count(b"\n")
    return n


def pg_declare_fetch(conn, sql: str, fetch_size: int) -> int:
    """prepare=False keeps psycopg on the simple query protocol for every FETCH (by default it
    prepares a statement run 5 times and moves to the extended protocol; see the probes)."""
    n = 0
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        try:
            cur.execute(f"DECLARE bench_cur NO SCROLL CURSOR FOR {sql}")
            while True:
                cur.execute(f"FETCH FORWARD {fetch_size} FROM bench_cur", prepare=False)
                rows = cur.fetchall()
                if not rows:
                    break
                n += len(rows)
            cur.execute("CLOSE bench_cur")
        finally:
            cur.execute("COMMIT")
    return n


PROBE_NAMED_CURSOR = r"""
import sys, psycopg
with psycopg.connect(sys.argv[1]) as conn:
    with conn.cursor(name="bench_probe") as cur:
        cur.execute(sys.argv[2])
        rows = cur.fetchmany(10)
        print(len(rows), cur.description is not None)
"""


def probe_protocol(dsn: str, sql: str) -> dict:
    """Cursor features over the extended query protocol, with libpq directly (PostgreSQL answers
    Describe Portal on a DECLAREd cursor with the row description, and FETCH through
    Parse/Bind/Describe/Execute with RowDescription + DataRows)."""
    from psycopg import pq
    out = {}
    conn = pq.PGconn.connect(dsn.encode())
    if conn.status != pq.ConnStatus.OK:
        return {"connect": {"ok": False, "error": conn.get_error_message()}}
    try:
        conn.exec_(b"BEGIN")
        r = conn.exec_(f"DECLARE probe_cur CURSOR FOR {sql}".encode())
        if r.status != pq.ExecStatus.COMMAND_OK:
            return {"declare": {"ok": False, "error": conn.get_error_message()}}
        d = conn.describe_portal(b"probe_cur")
        out["describe_portal_of_declared_cursor"] = {
            "ok": d.status == pq.ExecStatus.COMMAND_OK and d.nfields == 4,
            "error": None if d.nfields == 4 else
            f"Describe Portal returned {d.nfields} columns (expected 4: NoData instead of RowDescription)",
        }
        r = conn.exec_params(b"FETCH FORWARD 3 FROM probe_cur", [])
        ok = r.status == pq.ExecStatus.TUPLES_OK and r.ntuples == 3 and r.nfields == 4
        out["fetch_over_extended_protocol"] = {
            "ok": ok,
            "error": None if ok else f"{pq.ExecStatus(r.status).name}: {conn.get_error_message().strip()}",
        }
    finally:
        conn.finish()
    return out


def probe_named_cursor(dsn: str, sql: str) -> dict:
    """psycopg's server-side cursor, in a subprocess (a protocol mismatch can crash psycopg's C code)."""
    proc = subprocess.run([sys.executable, "-c", PROBE_NAMED_CURSOR, dsn, sql + " LIMIT 10"],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode == 0:
        return {"ok": True, "output": proc.stdout.strip()}
    err = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    if proc.returncode < 0:
        err = f"client process killed by signal {-proc.returncode} (psycopg C implementation crashed) {err}".strip()
    return {"ok": False, "error": err or f"exit code {proc.returncode}"}


PROBE_LABELS = {
    "describe_portal_of_declared_cursor": "Describe Portal of a DECLAREd cursor",
    "fetch_over_extended_protocol": "FETCH over the extended protocol (PQexecParams)",
    "psycopg_named_cursor": "psycopg server-side cursor (conn.cursor(name=...))",
}


def print_probes(probes: dict) -> None:
    for key, p in probes.items():
        label = PROBE_LABELS.get(key, key)
        print(f"  probe {label}: {'works' if p['ok'] else 'FAILS: ' + str(p['error'])[:300]}")


def measure(label: str, fn, expected: int, runs: int) -> dict:
    times, error = [], None
    for _ in range(runs):
        start = time.perf_counter()
        try:
            n = fn()
        except Exception as err:  # noqa: BLE001 - reported, not raised
            error = f"{type(err).__name__}: {str(err).strip()}"
            break
        elapsed = time.perf_counter() - start
        if n != expected:
            error = f"received {n} rows, expected {expected}"
            break
        times.append(elapsed)
    result = {"method": label, "times": [round(t, 4) for t in times], "error": error}
    if times:
        result["best_s"] = min(times)
        result["median_s"] = common.median(times)
        result["rows_per_s_median"] = expected / result["median_s"]
        result["rows_per_s_best"] = expected / result["best_s"]
    shown = (f"{common.fmt_rate(result['rows_per_s_median'])} (median {common.fmt_s(result['median_s'])}, "
             f"best {common.fmt_s(result['best_s'])})" if times else f"FAILED: {error}"[:400])
    print(f"  {label}: {shown}")
    return result


def probe_cell(p) -> str:
    if p is None:
        return "—"
    return "works" if p["ok"] else "fails: " + str(p["error"]).replace("|", "/")[:200]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--fetch-size", type=int, default=10_000, help="rows per FETCH FORWARD")
    ap.add_argument("--pg-dsn", default="host=127.0.0.1 port=5432 user=postgres dbname=postgres")
    ap.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL comparison")
    ap.add_argument("--polder-bin")
    ap.add_argument("--data-root", type=Path, default=common.DATA_DIR)
    ap.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    args = ap.parse_args()

    binary = common.polder_bin(args.polder_bin)
    bin_info = common.binary_info(binary)
    machine = common.machine_info()
    data_dir = args.data_root / "polder-streaming"
    print(f"polder: {binary} ({bin_info['profile']}, {bin_info['version']}); rows {args.rows}; "
          f"nproc {machine['nproc']}, load {machine['loadavg_at_start']}")
    prep = prepare_polder(binary, data_dir, args.rows)

    results = {"polder": [], "postgres": []}
    probes = {}
    failures = []
    server = common.PolderServer(binary, data_dir, args.data_root / "polder-streaming.serve.log")
    hwm = None
    try:
        server.start()
        server.wait_ready()
        print("Polder:")
        results["polder"].append(measure(
            "Flight SQL (ADBC record batch reader)",
            lambda: flight_reader(server.flight_uri, POLDER_SELECT), args.rows, args.runs))
        with psycopg.connect(server.pg_dsn, autocommit=True) as conn:
            results["polder"].append(measure(
                "PG wire COPY (SELECT ...) TO STDOUT",
                lambda: pg_copy(conn, POLDER_SELECT), args.rows, args.runs))
        with psycopg.connect(server.pg_dsn, autocommit=True) as conn:
            results["polder"].append(measure(
                f"PG wire DECLARE CURSOR + FETCH FORWARD {args.fetch_size}",
                lambda: pg_declare_fetch(conn, POLDER_SELECT, args.fetch_size), args.rows, args.runs))
        probes["polder"] = probe_protocol(server.pg_dsn, POLDER_SELECT)
        probes["polder"]["psycopg_named_cursor"] = probe_named_cursor(server.pg_dsn, POLDER_SELECT)
        print_probes(probes["polder"])
        hwm = server.hwm_kb()
    finally:
        server.stop()

    pg_version = None
    if not args.no_postgres:
        print("PostgreSQL:")
        try:
            with psycopg.connect(args.pg_dsn, autocommit=True) as conn:
                pg_version = conn.execute("SHOW server_version").fetchone()[0]
                probes["postgres"] = probe_protocol(args.pg_dsn, PG_PROBE_SELECT)
                probes["postgres"]["psycopg_named_cursor"] = probe_named_cursor(args.pg_dsn, PG_PROBE_SELECT)
                print_probes(probes["postgres"])
                start = time.perf_counter()
                conn.execute("DROP TABLE IF EXISTS pg_temp.bench_big")
                conn.execute(pg_table_sql(args.rows))
                conn.execute("ANALYZE pg_temp.bench_big")
                print(f"  temp table with {args.rows} rows made in {time.perf_counter() - start:.2f} s")
                try:
                    results["postgres"].append(measure(
                        "PG wire COPY (SELECT ...) TO STDOUT",
                        lambda: pg_copy(conn, PG_SELECT), args.rows, args.runs))
                    results["postgres"].append(measure(
                        f"PG wire DECLARE CURSOR + FETCH FORWARD {args.fetch_size}",
                        lambda: pg_declare_fetch(conn, PG_SELECT, args.fetch_size), args.rows, args.runs))
                finally:
                    conn.execute("DROP TABLE IF EXISTS pg_temp.bench_big")
        except psycopg.OperationalError as err:
            print(f"  PostgreSQL not reachable ({err}); skipped")
            failures.append(f"PostgreSQL not reachable at {args.pg_dsn}: {err}")

    # Unsupported features are reported as limitations; wrong row counts and errors of the
    # methods every engine should support (Flight SQL, DECLARE/FETCH) are failures.
    limitations = []
    for engine, label in (("polder", "Polder"), ("postgres", "PostgreSQL")):
        for r in results[engine]:
            if not r["error"]:
                continue
            line = f"{label} {r['method']}: {r['error']}"
            if engine == "polder" and "COPY" in r["method"] and not r["error"].startswith("received"):
                limitations.append(line)
            else:
                failures.append(line)
    for key, p in probes.get("polder", {}).items():
        if not p["ok"]:
            pg_probe = probes.get("postgres", {}).get(key)
            works_on_pg = " (works on PostgreSQL)" if pg_probe and pg_probe["ok"] else ""
            limitations.append(f"Polder {PROBE_LABELS.get(key, key)}{works_on_pg}: {p['error']}")

    methods = []
    for r in results["polder"] + results["postgres"]:
        if r["method"] not in methods:
            methods.append(r["method"])

    def cell(engine, method):
        for r in results[engine]:
            if r["method"] == method:
                if r["error"]:
                    return "not supported (see below)" if r["error"] in " ".join(limitations) else "FAILED"
                return common.fmt_rate(r["rows_per_s_median"]) + f" ({common.fmt_s(r['median_s'])})"
        return "—"

    headers = ["method", "Polder rows/s (median time)", "PostgreSQL rows/s (median time)", "Polder / PostgreSQL"]
    rows = []
    for m in methods:
        pr = next((r for r in results["polder"] if r["method"] == m and not r["error"]), None)
        gr = next((r for r in results["postgres"] if r["method"] == m and not r["error"]), None)
        rel = f"{pr['rows_per_s_median'] / gr['rows_per_s_median']:.2f}x" if pr and gr else "—"
        rows.append([m, cell("polder", m), cell("postgres", m), rel])
    print()
    print(common.text_table(headers, rows, ["l", "r", "r", "r"]))

    meta = {
        "benchmark": "streaming",
        "date": common.now_iso(),
        "rows": args.rows,
        "runs": args.runs,
        "fetch_size": args.fetch_size,
        "machine": machine,
        "polder_binary": bin_info,
        "polder_table": prep,
        "polder_server_hwm_mb": round(hwm / 1024) if hwm else None,
        "postgres_version": pg_version,
        "psycopg_version": psycopg.__version__,
        "psycopg_impl": psycopg.pq.__impl__,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"streaming-{args.rows}"
    (args.results_dir / f"{stem}.json").write_text(json.dumps(
        {"meta": meta, "results": results, "probes": probes, "limitations": limitations,
         "failures": failures}, indent=2) + "\n")
    m = machine
    md = [
        f"# Streaming {args.rows:,} rows: Polder vs PostgreSQL",
        "",
        f"- Date: {meta['date']}",
        common.machine_line(m),
        f"- Polder binary: `{bin_info['path']}` ({bin_info['profile']} build, {bin_info['version']}, built {bin_info['mtime']}); "
        f"server peak RSS {meta['polder_server_hwm_mb']} MB",
        f"- PostgreSQL {pg_version}; client psycopg {psycopg.__version__} ({meta['psycopg_impl']}), "
        f"ADBC Flight SQL; {args.runs} runs per method, median shown",
        "- Rows: (id bigint, b bigint, c double, s text), `generate_series(1, N)`; Polder: Delta table "
        "bench.big; PostgreSQL: a TEMP table",
        "",
        *common.free_block(m),
        common.md_table(headers, rows, ["l", "r", "r", "r"]),
        "",
        "PostgreSQL-wire cursor protocol probes (libpq / psycopg):",
        "",
        common.md_table(
            ["probe", "Polder", "PostgreSQL"],
            [[PROBE_LABELS.get(k, k),
              probe_cell(probes.get("polder", {}).get(k)), probe_cell(probes.get("postgres", {}).get(k))]
             for k in PROBE_LABELS],
        ),
        "",
        "## Polder limitations found",
        "",
    ]
    md += (["```", *limitations, "```"] if limitations else ["None."])
    md += ["", "## Failures", ""]
    md += (["```", *failures, "```"] if failures else ["None."])
    (args.results_dir / f"{stem}.md").write_text("\n".join(md) + "\n")
    print(f"wrote {args.results_dir / (stem + '.json')} and {args.results_dir / (stem + '.md')}")
    if limitations:
        print("\nPolder limitations found:")
        print("\n".join(limitations))
    if failures:
        print("\nfailures:", file=sys.stderr)
        print("\n".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
