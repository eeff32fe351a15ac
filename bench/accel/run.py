#!/usr/bin/env python3
"""Acceleration (issue 7): dashboard queries over TPC-H lineitem answered from an aggregate
reflection, against the same queries without it and against DuckDB, same data, same run; the
reflection's build and refresh rates; the results cache.

Steps: generate TPC-H with tpchgen-cli (skipped when present, shared with bench/tpch), load it
into a fresh Polder data dir with `polder import`, start `polder serve` with the results cache
off (POLDER_RESULTS_CACHE_MB=0) and create one aggregate reflection on tpch.lineitem (timed).
Each dashboard query then runs over HTTP with acceleration, with `"acceleration": false`, and on
DuckDB in-process over the same Parquet files (one warm-up, then N timed runs each); the three
answers must agree and EXPLAIN must say the reflection served. Then ~1% of lineitem is appended
and the reflection refreshed incrementally and in full (timed, the kind read back from
system.reflections). Last, a second server with the results cache on runs each query twice.
Writes bench/results/<stem>.json and .md; exits 1 when an answer differs or a step fails.

Run with the project's venv: /root/.cache/polder-venv/bin/python bench/accel/run.py --scale 1
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import math
import re
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import common  # noqa: E402

try:
    import duckdb
    import pyarrow as pa
    import pyarrow.compute as pc
except ImportError as err:  # pragma: no cover
    sys.exit(f"{err}: run with /root/.cache/polder-venv/bin/python or pip install -r bench/requirements.txt")


def _import_tpch():
    """bench/tpch/run.py as a module: its data generation, load and answer check are reused."""
    spec = importlib.util.spec_from_file_location("bench_tpch_run", common.BENCH_DIR / "tpch" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tpch = _import_tpch()

REFLECTION = "lineitem_dash"
# REFRESH MANUAL so that the refresh after the INSERT below is the one this script times (the
# default, ON COMMIT, would start it right after the commit).
REFLECTION_SQL = f"""CREATE REFLECTION {REFLECTION} ON tpch.lineitem
    AGGREGATE DIMENSIONS (l_shipdate BY DAY, l_returnflag, l_linestatus, l_shipmode)
    MEASURES (l_quantity (SUM, COUNT, MIN, MAX), l_extendedprice (SUM, COUNT, MIN, MAX),
              l_discount (SUM, COUNT, MIN, MAX))
    REFRESH MANUAL"""

# About 1% of lineitem: TPC-H order keys are sparse (8 of every 32), and a quarter of the
# multiples of 100 fall among them, so this selects ~1% of the orders and their lines.
APPEND_SQL = "INSERT INTO tpch.lineitem SELECT * FROM tpch.lineitem WHERE l_orderkey % 100 = 0"

# Dashboard-style queries: group by a date grain and/or a dimension, filters on dimensions only.
# The same text runs on Polder and DuckDB (date_trunc, DATE literals and IN lists mean the same
# in both; date_trunc of a DATE is a DATE in DuckDB and a timestamp in Polder, which the check
# treats as equal at midnight). ORDER BY names output columns, so the check can parse it.
QUERIES = [
    {
        "name": "revenue_by_month_flag",
        "title": "revenue by month of l_shipdate and l_returnflag",
        "sql": """SELECT date_trunc('month', l_shipdate) AS month, l_returnflag,
       sum(l_extendedprice) AS revenue, count(*) AS line_count
FROM tpch.lineitem
GROUP BY date_trunc('month', l_shipdate), l_returnflag
ORDER BY month, l_returnflag""",
    },
    {
        "name": "quantity_by_mode_1995",
        "title": "quantity by l_shipmode in 1995 (day-range filter on l_shipdate)",
        "sql": """SELECT l_shipmode, sum(l_quantity) AS quantity, count(*) AS line_count
FROM tpch.lineitem
WHERE l_shipdate >= DATE '1995-01-01' AND l_shipdate < DATE '1996-01-01'
GROUP BY l_shipmode
ORDER BY l_shipmode""",
    },
    {
        # avg() of a DECIMAL is not answered from a reflection (its scale rules would not be
        # reproduced digit for digit, see docs/reflections.md), so the average is sum / count.
        "name": "lines_by_status_modes",
        "title": "count(*) and average quantity by l_linestatus for three ship modes",
        "sql": """SELECT l_linestatus, count(*) AS line_count,
       CAST(sum(l_quantity) AS DOUBLE) / count(l_quantity) AS avg_quantity
FROM tpch.lineitem
WHERE l_shipmode IN ('AIR', 'MAIL', 'SHIP')
GROUP BY l_linestatus
ORDER BY l_linestatus""",
    },
    {
        "name": "revenue_by_year",
        "title": "sum(l_extendedprice) by year",
        "sql": """SELECT date_trunc('year', l_shipdate) AS ship_year, sum(l_extendedprice) AS revenue
FROM tpch.lineitem
GROUP BY date_trunc('year', l_shipdate)
ORDER BY ship_year""",
    },
    {
        "name": "discount_range_by_flag",
        "title": "min/max l_discount (and l_extendedprice) by l_returnflag",
        "sql": """SELECT l_returnflag, min(l_discount) AS min_discount, max(l_discount) AS max_discount,
       min(l_extendedprice) AS min_price, max(l_extendedprice) AS max_price
FROM tpch.lineitem
GROUP BY l_returnflag
ORDER BY l_returnflag""",
    },
    {
        "name": "modes_by_month",
        "title": "count(DISTINCT l_shipmode) by month",
        "sql": """SELECT date_trunc('month', l_shipdate) AS month, count(DISTINCT l_shipmode) AS ship_modes
FROM tpch.lineitem
GROUP BY date_trunc('month', l_shipdate)
ORDER BY month""",
    },
    {
        # One side of the join (lineitem) can come from the reflection; orders is read in full
        # on every run, so this query's speedup is bounded by that scan.
        "name": "shipped_vs_ordered",
        "title": "join: shipped value per month (lineitem, returnflag N) with orders per month",
        "sql": """WITH shipped AS (
    SELECT date_trunc('month', l_shipdate) AS month, sum(l_extendedprice) AS shipped_value,
           count(*) AS lines
    FROM tpch.lineitem
    WHERE l_returnflag = 'N'
    GROUP BY date_trunc('month', l_shipdate)
), ordered AS (
    SELECT date_trunc('month', o_orderdate) AS month, count(*) AS orders,
           sum(o_totalprice) AS ordered_value
    FROM tpch.orders
    GROUP BY date_trunc('month', o_orderdate)
)
SELECT s.month AS ship_month, s.shipped_value, s.lines, o.orders, o.ordered_value
FROM shipped s JOIN ordered o ON s.month = o.month
ORDER BY ship_month""",
    },
]

TARGET_SPEEDUP = 50.0      # with reflection vs without
TARGET_VS_DUCKDB = 1.0     # DuckDB time / Polder-with-reflection time must exceed this
CACHE_MB = "256"           # the default of POLDER_RESULTS_CACHE_MB, set explicitly for the cache part


# --------------------------------------------------------------------------------------------
# Polder over HTTP
# --------------------------------------------------------------------------------------------

class PolderError(RuntimeError):
    pass


# What a request to Polder can raise: an error answer, the connection, a cut-off Arrow stream.
ERRORS = (PolderError, OSError, http.client.HTTPException, pa.ArrowException, ValueError)


class PolderHttp:
    """POST /api/v1/sql on one kept-alive connection: Arrow IPC answers for queries (typed values
    for the check), JSON for statements, EXPLAIN and system tables."""

    def __init__(self, server: common.PolderServer, timeout_s: float):
        self.host, self.port, self.timeout = "127.0.0.1", server.http_port, timeout_s
        self.base_url = server.http_url
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout_s)

    def _post(self, sql: str, fmt: str, acceleration: bool, retry: bool) -> bytes:
        payload = {"sql": sql, "format": fmt}
        if not acceleration:
            payload["acceleration"] = False
        # Bytes, so that http.client sends headers and body in one packet (no Nagle stall).
        body = json.dumps(payload).encode()
        for attempt in range(2):
            try:
                self.conn.request("POST", "/api/v1/sql", body=body,
                                  headers={"Content-Type": "application/json"})
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A kept-alive connection the server closed: reconnect once (queries only; a
                # statement is never sent twice).
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                if attempt or not retry:
                    raise
        if resp.status != 200:
            raise PolderError(f"HTTP {resp.status}: {data.decode(errors='replace')[:2000]}")
        return data

    def arrow(self, sql: str, acceleration: bool = True) -> pa.Table:
        return pa.ipc.open_stream(self._post(sql, "arrow", acceleration, retry=True)).read_all()

    def json(self, sql: str, acceleration: bool = True, retry: bool = True) -> dict:
        body = json.loads(self._post(sql, "json", acceleration, retry=retry))
        if isinstance(body, dict) and body.get("error"):
            raise PolderError(f"error in the answer: {body['error']}")
        return body

    def rows(self, sql: str, acceleration: bool = True) -> list[dict]:
        return self.json(sql, acceleration)["rows"]

    def statement(self, sql: str) -> tuple[dict, float]:
        """A DDL/DML statement, timed (wall clock of the request); never retried."""
        start = time.perf_counter()
        body = self.json(sql, retry=False)
        return body, time.perf_counter() - start

    def metrics(self) -> str:
        import urllib.request
        with urllib.request.urlopen(self.base_url + "/metrics", timeout=30) as resp:
            return resp.read().decode()

    def close(self):
        self.conn.close()


def metric(text: str, name: str, **labels: str) -> float | None:
    """A Prometheus series from /metrics text, summed over the series matching `labels`; None
    when no series of that name exists."""
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$")
    total, found = 0.0, False
    for line in text.splitlines():
        match = pattern.match(line)
        if not match:
            continue
        present = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(present.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
            found = True
    if not found:
        return None
    return int(total) if total.is_integer() else total


def metrics_snapshot(client: PolderHttp) -> dict:
    try:
        text = client.metrics()
    except OSError as err:
        return {"error": str(err)}
    return {
        "results_cache_hits_total": metric(text, "polder_results_cache_hits_total"),
        "results_cache_misses_total": metric(text, "polder_results_cache_misses_total"),
        "results_cache_entries": metric(text, "polder_results_cache_entries"),
        "results_cache_bytes": metric(text, "polder_results_cache_bytes"),
        "reflection_substitutions_total": metric(text, "polder_reflection_substitutions_total"),
        "reflection_refreshes_full": metric(text, "polder_reflection_refreshes_total", kind="full"),
        "reflection_refreshes_incremental": metric(text, "polder_reflection_refreshes_total", kind="incremental"),
    }


def reflection_row(client: PolderHttp) -> dict | None:
    rows = client.rows(f"SELECT * FROM system.reflections WHERE name = '{REFLECTION}'")
    return rows[0] if rows else None


def explain(client: PolderHttp, sql: str) -> dict:
    """EXPLAIN's reflections row, and whether it says the reflection served and the plan reads it."""
    try:
        plans: dict[str, str] = {}
        for row in client.rows(f"EXPLAIN {sql}"):
            plans[row["plan_type"]] = plans.get(row["plan_type"], "") + row["plan"]
    except ERRORS as err:
        return {"served": False, "reads_reflection": False, "note": None, "error": str(err)}
    note = plans.get("reflections")
    reads = re.compile(rf"polder_reflections\.{re.escape(REFLECTION)}\b")
    return {
        "served": bool(note and re.search(rf"served by reflection {re.escape(REFLECTION)}\b", note)),
        "reads_reflection": any(reads.search(text) for kind, text in plans.items() if kind != "reflections"),
        "note": note,
    }


# --------------------------------------------------------------------------------------------
# Timing and checking
# --------------------------------------------------------------------------------------------

def measure(run, runs: int) -> dict:
    """One untimed warm-up, then `runs` timed runs; the warm-up's answer is the one checked."""
    out = {"times": [], "best": None, "median": None, "error": None}
    answer = None
    try:
        answer = run()
        for _ in range(runs):
            start = time.perf_counter()
            run()
            out["times"].append(time.perf_counter() - start)
    except Exception as err:  # noqa: BLE001 - any failure is reported, not raised
        out["error"] = f"{type(err).__name__}: {err}".strip()
    if out["times"]:
        out["best"] = min(out["times"])
        out["median"] = common.median(out["times"])
    out["times"] = [round(t, 6) for t in out["times"]]
    return out, answer


def check(sql: str, got: pa.Table, want: pa.Table, want_label: str) -> dict:
    """tpch's check (same columns and rows, ORDER BY respected, numbers within 1e-6 relative),
    with its messages naming the side compared against."""
    result = tpch.check_result(sql, got, want)
    if "reason" in result:
        result["reason"] = result["reason"].replace("DuckDB's", want_label)
    for d in result.get("diff", []):
        d["expected"] = d.pop("duckdb")
        d["got"] = d.pop("polder")
    result["against"] = want_label
    return result


def ratio(a, b):
    return a / b if a is not None and b else None


def geomean(values):
    values = [v for v in values if v]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def fmt_ratio(r):
    if r is None:
        return "—"
    return f"{r:.0f}x" if r >= 100 else f"{r:.1f}x" if r >= 10 else f"{r:.2f}x"


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


# --------------------------------------------------------------------------------------------
# The parts of the run
# --------------------------------------------------------------------------------------------

CHECK_LABELS = {
    "accelerated_vs_duckdb": "Polder with the reflection vs DuckDB",
    "plain_vs_duckdb": "Polder without the reflection vs DuckDB",
}


def run_queries(client: PolderHttp, duck, queries, runs: int) -> list[dict]:
    results = []
    for q in queries:
        sql = q["sql"]
        r = {"query": q["name"], "title": q["title"], "sql": sql, "explain": explain(client, sql)}
        accel, a_table = measure(lambda: client.arrow(sql, acceleration=True), runs)
        plain, p_table = measure(lambda: client.arrow(sql, acceleration=False), runs)
        peer, d_table = measure(lambda: duck.run(sql), runs)
        r.update({"accelerated": accel, "plain": plain, "duckdb": peer,
                  "rows": d_table.num_rows if d_table is not None else None})
        failures = []
        if accel["error"]:
            failures.append(f"Polder with acceleration failed: {accel['error']}")
        if plain["error"]:
            failures.append(f"Polder without acceleration failed: {plain['error']}")
        if peer["error"]:
            failures.append(f"DuckDB failed: {peer['error']}")
        r["checks"] = {}
        if d_table is not None:
            if a_table is not None:
                r["checks"]["accelerated_vs_duckdb"] = check(sql, a_table, d_table, "DuckDB's")
            if p_table is not None:
                r["checks"]["plain_vs_duckdb"] = check(sql, p_table, d_table, "DuckDB's")
        for label, c in r["checks"].items():
            if not c["ok"]:
                failures.append(f"{CHECK_LABELS[label]}: {c.get('reason')}")
        r["failures"] = failures
        r["status"] = "ok" if not failures else (
            "mismatch" if any(not c["ok"] for c in r["checks"].values()) else "error")
        r["speedup_best"] = ratio(plain["best"], accel["best"])
        r["speedup_median"] = ratio(plain["median"], accel["median"])
        r["vs_duckdb_best"] = ratio(peer["best"], accel["best"])
        r["vs_duckdb_median"] = ratio(peer["median"], accel["median"])
        results.append(r)
        served = "served" if r["explain"]["served"] else "NOT served"
        print(f"{q['name']}: reflection {common.fmt_s(accel['median']):>9}, without "
              f"{common.fmt_s(plain['median']):>9}, duckdb {common.fmt_s(peer['median']):>9}; "
              f"speedup {fmt_ratio(r['speedup_median'])}, duckdb/polder {fmt_ratio(r['vs_duckdb_median'])}, "
              f"{served}, {r['status']}" + (f" - {'; '.join(failures)}"[:400] if failures else ""))
    return results


def compare_accelerated(client: PolderHttp, queries, stage: str) -> list[dict]:
    """After a refresh: each query once with and once without acceleration (DuckDB's Parquet
    files no longer hold the appended rows); the answers must agree, and EXPLAIN says whether
    the refreshed reflection served."""
    out = []
    for q in queries:
        entry = {"query": q["name"], "stage": stage, "explain": explain(client, q["sql"])}
        try:
            fast = client.arrow(q["sql"], acceleration=True)
            slow = client.arrow(q["sql"], acceleration=False)
            entry["check"] = check(q["sql"], fast, slow, "the unaccelerated answer's")
        except ERRORS as err:
            entry["check"] = {"ok": False, "reason": f"{type(err).__name__}: {err}"}
        out.append(entry)
    return out


def refresh_step(client: PolderHttp, sql: str, expect_kind: str, rows: int | None) -> dict:
    step = {"sql": sql, "expected_kind": expect_kind, "rows": rows}
    try:
        _, seconds = client.statement(sql)
        row = reflection_row(client) or {}
        step.update({
            "seconds": round(seconds, 4),
            "rows_per_s": round(rows / seconds) if rows and seconds > 0 else None,
            "kind": row.get("last_refresh_kind"),
            "last_refresh_ms": row.get("last_refresh_ms"),
            "reflection_rows": row.get("rows"),
            "status": row.get("status"),
        })
        step["ok"] = step["kind"] == expect_kind
        if not step["ok"]:
            step["error"] = f"system.reflections says last_refresh_kind {step['kind']!r}, expected {expect_kind!r}"
    except ERRORS as err:
        step.update({"ok": False, "error": f"{type(err).__name__}: {err}"})
    print(f"refresh ({expect_kind}): {common.fmt_s(step.get('seconds'))}, {rows} rows, "
          f"{common.fmt_rate(step.get('rows_per_s'))}, kind {step.get('kind')}"
          + (f" - {step['error']}" if step.get("error") else ""))
    return step


def run_cache(client: PolderHttp, queries) -> dict:
    """Each query twice on a server with the results cache on: the second run should be a hit."""
    before = metrics_snapshot(client)
    entries = []
    for q in queries:
        sql = q["sql"]
        e = {"query": q["name"]}
        try:
            m0 = metrics_snapshot(client)
            start = time.perf_counter()
            first = client.arrow(sql)
            e["first"] = time.perf_counter() - start
            m1 = metrics_snapshot(client)
            start = time.perf_counter()
            second = client.arrow(sql)
            e["second"] = time.perf_counter() - start
            m2 = metrics_snapshot(client)
            e["first_misses"] = delta(m0, m1, "results_cache_misses_total")
            e["second_hits"] = delta(m1, m2, "results_cache_hits_total")
            e["hit"] = e["second_hits"] == 1
            e["check"] = check(sql, second, first, "the first run's")
        except ERRORS as err:
            e["error"] = f"{type(err).__name__}: {err}"
        e["ratio"] = ratio(e.get("first"), e.get("second"))
        entries.append(e)
        print(f"cache {q['name']}: first {common.fmt_s(e.get('first'))}, second {common.fmt_s(e.get('second'))}, "
              f"hit {e.get('hit')}" + (f" - {e['error']}" if e.get("error") else ""))
    after = metrics_snapshot(client)
    return {"queries": entries, "metrics_before": before, "metrics_after": after,
            "hits": delta(before, after, "results_cache_hits_total"),
            "misses": delta(before, after, "results_cache_misses_total")}


def delta(a: dict, b: dict, key: str):
    if a.get(key) is None or b.get(key) is None:
        return None
    return b[key] - a[key]


# --------------------------------------------------------------------------------------------
# --duckdb-only: the SQL on DuckDB and a self-test of the answer check, without Polder
# --------------------------------------------------------------------------------------------

def polder_like(table: pa.Table) -> pa.Table:
    """DuckDB's answer with the types Polder gives: date_trunc results as nanosecond timestamps
    (DuckDB: microseconds), sums of decimals as DECIMAL(25, s) (DuckDB: DECIMAL(38, s))."""
    cols = []
    for col in table.columns:
        t = col.type
        if pa.types.is_date32(t) or pa.types.is_timestamp(t):
            col = pc.cast(col, pa.timestamp("ns"))
        elif pa.types.is_decimal(t) and t.precision > 25:
            col = pc.cast(col, pa.decimal128(25, t.scale))
        cols.append(col)
    return pa.Table.from_arrays(cols, names=table.column_names)


def perturbed(table: pa.Table) -> pa.Table | None:
    """The same answer with the last numeric value of the first row doubled (plus one)."""
    for i in reversed(range(table.num_columns)):
        t = table.column(i).type
        if (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t)) and table.num_rows:
            values = table.column(i).to_pylist()
            if values[0] is None:
                continue
            values[0] = values[0] * 2 + 1
            arrays = list(table.columns)
            arrays[i] = pa.array(values, type=t)
            return pa.Table.from_arrays(arrays, names=table.column_names)
    return None


def duckdb_only(duck, queries, runs: int) -> int:
    failures = []
    for q in queries:
        timing, answer = measure(lambda: duck.run(q["sql"]), runs)
        if timing["error"]:
            failures.append(f"{q['name']}: DuckDB failed: {timing['error']}")
            print(f"{q['name']}: FAILED {timing['error']}")
            continue
        same = check(q["sql"], polder_like(answer), answer, "DuckDB's")
        wrong = perturbed(answer)
        caught = wrong is not None and not check(q["sql"], wrong, answer, "DuckDB's")["ok"]
        if not same["ok"]:
            failures.append(f"{q['name']}: the check rejects DuckDB's own answer with Polder's types: {same.get('reason')}")
        if not caught:
            failures.append(f"{q['name']}: the check accepts an answer with a changed value")
        print(f"{q['name']}: duckdb {common.fmt_s(timing['median'])} (best {common.fmt_s(timing['best'])}), "
              f"{answer.num_rows} rows, types {', '.join(str(t) for t in answer.schema.types)}; "
              f"check self-test: {'ok' if same['ok'] and caught else 'FAILED'}"
              + (f" ({'; '.join(same['notes'])})" if same.get("notes") else ""))
    if failures:
        print("\n".join(failures), file=sys.stderr)
        return 1
    print("duckdb-only: every query ran; the check accepts Polder-typed equal answers and rejects a changed one "
          "(no report written)")
    return 0


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

QUERY_HEADERS = ["query", "served", "reflection best", "reflection median", "no reflection best",
                 "no reflection median", "duckdb best", "duckdb median", "speedup (median)",
                 "duckdb / polder (median)", "rows", "check"]
QUERY_ALIGN = ["l", "c", "r", "r", "r", "r", "r", "r", "r", "r", "r", "l"]


def query_rows(results) -> list[list[str]]:
    rows = []
    for r in results:
        a, p, d = r["accelerated"], r["plain"], r["duckdb"]
        rows.append([
            r["query"], "yes" if r["explain"]["served"] else "**no**",
            common.fmt_s(a["best"]), common.fmt_s(a["median"]),
            common.fmt_s(p["best"]), common.fmt_s(p["median"]),
            common.fmt_s(d["best"]), common.fmt_s(d["median"]),
            fmt_ratio(r["speedup_median"]), fmt_ratio(r["vs_duckdb_median"]),
            str(r["rows"]) if r["rows"] is not None else "—",
            "ok" if r["status"] == "ok" else r["status"].upper(),
        ])
    return rows


def summarize(results) -> dict:
    speedups = [r["speedup_median"] for r in results if r["speedup_median"]]
    vs_duck = [r["vs_duckdb_median"] for r in results if r["vs_duckdb_median"]]
    s = {
        "queries": len(results),
        "served": sum(1 for r in results if r["explain"]["served"]),
        "geomean_speedup_median": geomean(speedups),
        "geomean_speedup_best": geomean([r["speedup_best"] for r in results if r["speedup_best"]]),
        "geomean_vs_duckdb_median": geomean(vs_duck),
        "geomean_vs_duckdb_best": geomean([r["vs_duckdb_best"] for r in results if r["vs_duckdb_best"]]),
        "speedup_target_queries": sum(1 for x in speedups if x >= TARGET_SPEEDUP),
        "vs_duckdb_target_queries": sum(1 for x in vs_duck if x > TARGET_VS_DUCKDB),
    }
    complete = len(speedups) == len(results) and len(vs_duck) == len(results) and results
    s["speedup_target_met"] = bool(complete and s["geomean_speedup_median"] >= TARGET_SPEEDUP)
    s["speedup_target_met_every_query"] = bool(complete and s["speedup_target_queries"] == len(results))
    s["vs_duckdb_target_met"] = bool(complete and s["geomean_vs_duckdb_median"] > TARGET_VS_DUCKDB)
    s["vs_duckdb_target_met_every_query"] = bool(complete and s["vs_duckdb_target_queries"] == len(results))
    return s


def target_lines(s: dict) -> list[str]:
    n = s["queries"]
    return [
        f"- Target: with the reflection at least {TARGET_SPEEDUP:.0f}x faster than without: geometric mean "
        f"{fmt_ratio(s['geomean_speedup_median'])} — **{met(s['speedup_target_met'])}**; "
        f"{s['speedup_target_queries']} of {n} queries reach it.",
        f"- Target: with the reflection faster than DuckDB (DuckDB / Polder > 1): geometric mean "
        f"{fmt_ratio(s['geomean_vs_duckdb_median'])} — **{met(s['vs_duckdb_target_met'])}**; "
        f"{s['vs_duckdb_target_queries']} of {n} queries are faster than DuckDB.",
        f"- EXPLAIN says the reflection served {s['served']} of {n} queries.",
    ]


def failure_lines(report: dict) -> list[str]:
    lines = [f"setup: {f}" for f in report.get("setup_failures", [])]
    for r in report.get("queries", []):
        lines += [f"{r['query']}: {f}" for f in r["failures"]]
        for c in r["checks"].values():
            for d in c.get("diff", []):
                lines.append(f"    sorted row {d['sorted_row']}: got {d['got']}, expected {d['expected']}")
    refresh = report.get("refresh") or {}
    for step in refresh.get("steps", []):
        if not step.get("ok"):
            lines.append(f"refresh ({step['expected_kind']}): {step.get('error')}")
    for e in refresh.get("checks", []):
        if not e["check"]["ok"]:
            lines.append(f"{e['query']} after the {e['stage']}: with acceleration vs without: {e['check'].get('reason')}")
            for d in e["check"].get("diff", []):
                lines.append(f"    sorted row {d['sorted_row']}: got {d['got']}, expected {d['expected']}")
    for e in (report.get("cache") or {}).get("queries", []):
        if e.get("error"):
            lines.append(f"cache {e['query']}: {e['error']}")
        elif not e["check"]["ok"]:
            lines.append(f"cache {e['query']}: second answer differs from the first: {e['check'].get('reason')}")
    return lines


def write_markdown(path: Path, report: dict) -> None:
    meta, m, b = report["meta"], report["meta"]["machine"], report["meta"]["polder_binary"]
    out = [
        f"# Acceleration: TPC-H SF{meta['scale']} lineitem dashboard queries with an aggregate reflection, "
        "without it, and on DuckDB",
        "",
        f"- Date: {meta['date']}",
        common.machine_line(m, f", at end {meta['loadavg_at_end']}"),
        f"- Polder binary: `{b['path']}` ({b['profile']} build, {b['version']}, built {b['mtime']}); "
        "queried over HTTP `POST /api/v1/sql` (JSON body, Arrow IPC answer) on one kept-alive connection",
        f"- DuckDB: {meta['duckdb_version']} (Python, in-process), threads = {meta['threads']}, views over the "
        "same Parquet files, `to_arrow_table()`",
        f"- Runs per query and side: one untimed warm-up, then {meta['runs']}; times are wall clock until every "
        "row is in client memory as Arrow. Queries: results cache off (`POLDER_RESULTS_CACHE_MB=0`); "
        "\"no reflection\" is the same query with `\"acceleration\": false`",
        "- speedup = no reflection / reflection; duckdb / polder = DuckDB / Polder with the reflection "
        "(above 1: Polder faster)",
    ]
    if b["profile"] != "release":
        out += ["", "**Not a release build: a smoke run of the harness. These Polder numbers are not its "
                "performance.**"]
    out += ["", *common.free_block(m), "## Reflection", "", "```sql", REFLECTION_SQL, "```", ""]
    c = report.get("reflection") or {}
    if c.get("error"):
        out.append(f"Creating it failed: `{c['error']}`")
    else:
        out.append(common.md_table(
            ["source rows", "build (CREATE REFLECTION)", "rows/s", "groups stored", "size", "server's last_refresh_ms"],
            [[c.get("source_rows"), common.fmt_s(c.get("seconds")), common.fmt_rate(c.get("rows_per_s")),
              c.get("rows", "—"), f"{c['size_bytes'] / 2**20:.1f} MiB" if c.get("size_bytes") else "—",
              c.get("last_refresh_ms", "—")]],
            ["r", "r", "r", "r", "r", "r"]))
    out += ["", "## Dashboard queries", ""]
    results = report["queries"]
    s = report["summary"]
    rows = query_rows(results)
    rows.append(["**geometric mean**", "", "", "", "", "", "", "",
                 fmt_ratio(s["geomean_speedup_median"]), fmt_ratio(s["geomean_vs_duckdb_median"]), "", ""])
    out += [common.md_table(QUERY_HEADERS, rows, QUERY_ALIGN), "", *target_lines(s), ""]
    out += ["Queries (EXPLAIN's `reflections` row in brackets):", ""]
    for r in results:
        note = (r["explain"].get("note") or r["explain"].get("error") or "no reflections row").replace("\n", " / ")
        out.append(f"- `{r['query']}`: {r['title']} [{note}]")
    notes = [f"- {r['query']}: {n}" for r in results for c in r["checks"].values() for n in c.get("notes", [])]
    if notes:
        out += ["", "Check notes:", "", *sorted(set(notes))]
    out += ["", "The query texts are in `bench/accel/run.py` and in the JSON report.", ""]

    out += ["## Refresh", ""]
    refresh = report.get("refresh") or {}
    if refresh.get("error"):
        out.append(f"Failed: `{refresh['error']}`")
    else:
        text = (f"Appended with `{APPEND_SQL}`: {refresh.get('appended_rows')} rows "
                f"({refresh.get('appended_pct') or 0:.2f}% of {refresh.get('rows_before')}) in "
                f"{common.fmt_s(refresh.get('append_seconds'))}.")
        if results and not c.get("error"):
            text += (f" Right after it, EXPLAIN of `{results[0]['query']}` "
                     + ("still said served: **not expected**, the reflection is behind its source."
                        if refresh.get("served_when_stale")
                        else "said not served, as expected (the reflection is behind its source)."))
        out.append(text)
        out.append("")
        step_rows = []
        for st in refresh.get("steps", []):
            step_rows.append([f"`{st['sql']}`", st["expected_kind"], st.get("kind") or "—", st.get("rows"),
                              common.fmt_s(st.get("seconds")), common.fmt_rate(st.get("rows_per_s")),
                              st.get("last_refresh_ms", "—"), "ok" if st.get("ok") else "**FAILED**"])
        out.append(common.md_table(
            ["statement", "expected", "last_refresh_kind", "rows read", "time", "rows/s", "server's last_refresh_ms", ""],
            step_rows, ["l", "l", "l", "r", "r", "r", "r", "l"]))
        out += ["", "Rows read: the appended rows for the incremental refresh, every source row for the full one. "
                "After each refresh every query ran once with and once without acceleration:"]
        checks = refresh.get("checks", [])
        bad = [e for e in checks if not e["check"]["ok"]]
        unserved = [e for e in checks if not e["explain"]["served"]]
        out.append(f"{len(checks) - len(bad)} of {len(checks)} answers equal; "
                   f"{len(checks) - len(unserved)} of {len(checks)} served by the reflection.")
    out += ["", "## Results cache", ""]
    cache = report.get("cache") or {}
    if cache.get("error"):
        out.append(f"Failed: `{cache['error']}`")
    else:
        out.append(f"A second `polder serve` on the same data dir with `POLDER_RESULTS_CACHE_MB={CACHE_MB}` (the "
                   "default), the reflection in place; each query twice in a row, with acceleration.")
        out.append("")
        out.append(common.md_table(
            ["query", "first", "second", "first / second", "hits counted on the second", "same answer"],
            [[e["query"], common.fmt_s(e.get("first")), common.fmt_s(e.get("second")), fmt_ratio(e.get("ratio")),
              e.get("second_hits", "—") if e.get("second_hits") is not None else "—",
              "yes" if e.get("check", {}).get("ok") else "**no**"] for e in cache.get("queries", [])],
            ["l", "r", "r", "r", "r", "l"]))
        ma = cache.get("metrics_after", {})
        out += ["", f"`/metrics` over the whole part: {cache.get('hits')} hits, {cache.get('misses')} misses; "
                f"afterwards {ma.get('results_cache_entries')} entries, {ma.get('results_cache_bytes')} bytes."]
    mm = report.get("metrics_main") or {}
    if mm:
        out += ["", f"`/metrics` of the first server at its end: "
                f"{mm.get('reflection_substitutions_total')} reflection substitutions, refreshes "
                f"{mm.get('reflection_refreshes_full')} full / {mm.get('reflection_refreshes_incremental')} incremental."]
    out += ["", "## Failures", ""]
    fails = report["failures"]
    out += (["```", *fails, "```"] if fails else ["None: every answer matched and every step ran."])
    path.write_text("\n".join(out) + "\n")


# --------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="TPC-H scale factor (default 1)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per query and side, after one warm-up (default 5)")
    ap.add_argument("--queries", default="", help="subset by name, comma-separated (default all)")
    ap.add_argument("--polder-bin", help="binary (default $POLDER_BIN, else release, else debug)")
    ap.add_argument("--threads", type=int, default=None, help="DuckDB threads (default nproc)")
    ap.add_argument("--timeout", type=float, default=1800, help="per-request HTTP timeout in s")
    ap.add_argument("--keep", action="store_true", help="keep the Polder data dir (bench/data/polder-accel-sf*)")
    ap.add_argument("--output", help="report file stem (default: accel for a release build at SF1, "
                                     "accel-sf<scale> at other scales, with -debug for other builds)")
    ap.add_argument("--duckdb-only", action="store_true",
                    help="run the queries on DuckDB only and self-test the answer check; no Polder, no report")
    ap.add_argument("--data-root", type=Path, default=common.DATA_DIR)
    ap.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    args = ap.parse_args()

    queries = QUERIES
    if args.queries:
        wanted = [n.strip() for n in args.queries.split(",") if n.strip()]
        unknown = sorted(set(wanted) - {q["name"] for q in QUERIES})
        if unknown:
            sys.exit(f"unknown queries {unknown}; known: {', '.join(q['name'] for q in QUERIES)}")
        queries = [q for q in QUERIES if q["name"] in wanted]

    machine = common.machine_info()
    threads = args.threads or machine["nproc"]
    label = tpch.scale_label(args.scale)
    parquet_dir = args.data_root / f"tpch-sf{label}"
    print(f"duckdb: {duckdb.__version__}, threads {threads}; machine: nproc {machine['nproc']}, "
          f"load {machine['loadavg_at_start']}")
    gen_info = tpch.generate(args.scale, parquet_dir)
    duck = tpch.DuckDB(parquet_dir, threads)

    if args.duckdb_only:
        try:
            return duckdb_only(duck, queries, args.runs)
        finally:
            duck.close()

    binary = common.polder_bin(args.polder_bin)
    bin_info = common.binary_info(binary)
    print(f"polder: {binary} ({bin_info['profile']}, {bin_info['version']})")
    data_dir = args.data_root / f"polder-accel-sf{label}"
    log_path = args.data_root / f"polder-accel-sf{label}.serve.log"
    # Always a fresh data dir: the run appends to lineitem.
    shutil.rmtree(data_dir, ignore_errors=True)
    report: dict = {"setup_failures": [], "queries": []}
    try:
        load_info = tpch.load(binary, parquet_dir, data_dir)
        source_rows = load_info["tables"]["lineitem"]["rows"]

        # Part 1: reflection build, the queries three ways, refreshes. Results cache off.
        server = common.PolderServer(binary, data_dir, log_path, env={"POLDER_RESULTS_CACHE_MB": "0"})
        try:
            server.start()
            print(f"polder serve ready in {server.wait_ready():.2f} s ({server.http_url}), results cache off")
            client = PolderHttp(server, args.timeout)
            creation = {"sql": REFLECTION_SQL, "source_rows": source_rows}
            try:
                _, seconds = client.statement(REFLECTION_SQL)
                row = reflection_row(client) or {}
                creation.update({
                    "seconds": round(seconds, 4),
                    "rows_per_s": round(source_rows / seconds) if seconds > 0 else None,
                    "rows": row.get("rows"), "size_bytes": row.get("size_bytes"),
                    "status": row.get("status"), "last_refresh_ms": row.get("last_refresh_ms"),
                    "last_refresh_kind": row.get("last_refresh_kind"), "row": row,
                })
                print(f"reflection: built in {seconds:.2f} s ({common.fmt_rate(creation['rows_per_s'])}), "
                      f"{creation['rows']} groups, status {creation['status']}")
            except ERRORS as err:
                server.check_alive()
                creation["error"] = f"{type(err).__name__}: {err}"
                report["setup_failures"].append(f"CREATE REFLECTION failed: {creation['error']}")
                print(f"reflection: FAILED {creation['error']}")
            report["reflection"] = creation
            print()

            report["queries"] = run_queries(client, duck, queries, args.runs)
            server.check_alive()
            usage = reflection_row(client) if "error" not in creation else None
            report["reflection_after_queries"] = usage
            print()

            refresh: dict = {}
            try:
                rows_before = client.rows("SELECT count(*) AS n FROM tpch.lineitem", acceleration=False)[0]["n"]
                body, seconds = client.statement(APPEND_SQL)
                rows_after = client.rows("SELECT count(*) AS n FROM tpch.lineitem", acceleration=False)[0]["n"]
                appended = rows_after - rows_before
                refresh.update({
                    "rows_before": rows_before, "rows_after": rows_after, "appended_rows": appended,
                    "appended_pct": 100.0 * appended / rows_before if rows_before else None,
                    "rows_affected": body.get("rows_affected"), "append_seconds": round(seconds, 4),
                })
                print(f"append: {appended} rows in {seconds:.2f} s")
                refresh["served_when_stale"] = explain(client, queries[0]["sql"])["served"] if queries else None
                steps = [refresh_step(client, f"REFRESH REFLECTION {REFLECTION}", "incremental", appended)]
                refresh["checks"] = compare_accelerated(client, queries, "incremental refresh")
                steps.append(refresh_step(client, f"REFRESH REFLECTION {REFLECTION} FULL", "full", rows_after))
                refresh["checks"] += compare_accelerated(client, queries, "full refresh")
                refresh["steps"] = steps
                if refresh["served_when_stale"]:
                    report["setup_failures"].append(
                        "EXPLAIN said the reflection served right after the INSERT, before its refresh")
            except (*ERRORS, KeyError, IndexError) as err:
                server.check_alive()
                refresh["error"] = f"{type(err).__name__}: {err}"
                report["setup_failures"].append(f"refresh part failed: {refresh['error']}")
                print(f"refresh: FAILED {refresh['error']}")
            report["refresh"] = refresh
            report["metrics_main"] = metrics_snapshot(client)
            report["server_hwm_mb"] = round(server.hwm_kb() / 1024) if server.hwm_kb() else None
            client.close()
        finally:
            server.stop()
        print()

        # Part 2: the results cache, on a second server over the same data dir.
        server = common.PolderServer(binary, data_dir, log_path, env={"POLDER_RESULTS_CACHE_MB": CACHE_MB})
        try:
            server.start()
            print(f"polder serve ready in {server.wait_ready():.2f} s, results cache {CACHE_MB} MB")
            client = PolderHttp(server, args.timeout)
            try:
                report["cache"] = run_cache(client, queries)
            except ERRORS as err:
                server.check_alive()
                report["cache"] = {"error": f"{type(err).__name__}: {err}"}
                report["setup_failures"].append(f"results cache part failed: {report['cache']['error']}")
            client.close()
        finally:
            server.stop()
    finally:
        duck.close()
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)

    report["summary"] = summarize(report["queries"])
    report["failures"] = failure_lines(report)
    report["meta"] = {
        "benchmark": "accel",
        "date": common.now_iso(),
        "scale": label,
        "runs": args.runs,
        "threads": threads,
        "machine": machine,
        "loadavg_at_end": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "polder_binary": bin_info,
        "duckdb_version": duckdb.__version__,
        "pyarrow_version": pa.__version__,
        "generation": gen_info,
        "load": load_info,
        "parquet_dir": str(parquet_dir),
        "polder_data_dir": str(data_dir) + ("" if args.keep else " (removed)"),
        "reflection_sql": REFLECTION_SQL,
        "append_sql": APPEND_SQL,
        "server_hwm_mb": report.pop("server_hwm_mb", None),
    }

    print()
    rows = query_rows(report["queries"])
    print(common.text_table(QUERY_HEADERS, rows, QUERY_ALIGN).replace("**", ""))
    print("\n".join(line.replace("**", "") for line in target_lines(report["summary"])))

    stem = args.output or (("accel" if args.scale == 1 else f"accel-sf{label}")
                           + ("" if bin_info["profile"] == "release" else "-debug"))
    args.results_dir.mkdir(parents=True, exist_ok=True)
    json_path = args.results_dir / f"{stem}.json"
    md_path = args.results_dir / f"{stem}.md"
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    write_markdown(md_path, report)
    print(f"wrote {json_path} and {md_path}")

    if report["failures"]:
        print(f"\n{len(report['failures'])} failure lines:", file=sys.stderr)
        print("\n".join(report["failures"]), file=sys.stderr)
        return 1
    print("every answer matched")
    return 0


if __name__ == "__main__":
    sys.exit(main())
