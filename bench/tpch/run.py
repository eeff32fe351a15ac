#!/usr/bin/env python3
"""TPC-H: Polder (over Arrow Flight SQL) against DuckDB (in-process), same Parquet data, same run.

Steps: generate the data with tpchgen-cli (skipped when present), load it into a Polder data
directory with `polder import` (skipped when already loaded), start `polder serve`, run each of
the 22 queries N times on both engines, check Polder's answers against DuckDB's, print a table
and write bench/results/tpch-sf{scale}.json and .md. Exits 1 when any answer differs or fails.

Run with the project's venv: /root/.cache/polder-venv/bin/python bench/tpch/run.py --scale 0.01
"""

from __future__ import annotations

import argparse
import datetime
import decimal
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import common  # noqa: E402

try:
    import adbc_driver_flightsql
    import adbc_driver_flightsql.dbapi as flight_sql
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError as err:  # pragma: no cover
    sys.exit(f"{err}: run with /root/.cache/polder-venv/bin/python or pip install -r bench/requirements.txt")

TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]
QUERY_DIR = Path(__file__).resolve().parent / "queries"
REL_TOL = 1e-6


def scale_label(scale: float) -> str:
    return f"{scale:g}"


# --------------------------------------------------------------------------------------------
# Data generation and loading
# --------------------------------------------------------------------------------------------

def generate(scale: float, parquet_dir: Path) -> dict:
    if all((parquet_dir / f"{t}.parquet").is_file() for t in TABLES):
        print(f"data: {parquet_dir} present, not regenerated")
        return {"generated": False}
    tmp = parquet_dir.with_name(parquet_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cmd = [common.find_tool("tpchgen-cli"), "parquet", "-s", scale_label(scale),
           "-o", str(tmp), "--no-progress", "-q"]
    print(f"data: generating TPC-H SF{scale_label(scale)} ({' '.join(cmd)})")
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - start
    shutil.rmtree(parquet_dir, ignore_errors=True)
    tmp.rename(parquet_dir)
    print(f"data: generated in {seconds:.1f} s")
    return {"generated": True, "seconds": round(seconds, 3)}


def load(binary: Path, parquet_dir: Path, data_dir: Path) -> dict:
    """Loads the 8 tables into tpch.* of a fresh data dir; a marker file records the load."""
    marker = data_dir / "bench-load.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        info["reused"] = True
        print(f"load: {data_dir} already loaded ({info['total_rows']} rows in "
              f"{info['total_seconds']:.2f} s on {info.get('date', '?')}), not reloaded")
        return info
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    common.run_polder(binary, ["sql", "CREATE SCHEMA tpch", "--data-dir", str(data_dir)])
    tables = {}
    for table in TABLES:
        path = parquet_dir / f"{table}.parquet"
        rows = pq.ParquetFile(path).metadata.num_rows
        proc, seconds = common.run_polder(binary, [
            "import", str(path), "--table", f"tpch.{table}", "--format", "parquet",
            "--mode", "create", "--data-dir", str(data_dir),
        ])
        tables[table] = {
            "rows": rows,
            "bytes": path.stat().st_size,
            "seconds": round(seconds, 3),
            "rows_per_s": round(rows / seconds) if seconds > 0 else None,
            "output": (proc.stdout + proc.stderr).strip(),
        }
        print(f"load: tpch.{table}: {rows} rows in {seconds:.2f} s ({common.fmt_rate(rows / seconds)})")
    total_rows = sum(t["rows"] for t in tables.values())
    total_seconds = sum(t["seconds"] for t in tables.values())
    info = {
        "date": common.now_iso(),
        "binary": str(binary),
        "tables": tables,
        "total_rows": total_rows,
        "total_seconds": round(total_seconds, 3),
        "rows_per_s": round(total_rows / total_seconds) if total_seconds > 0 else None,
        "method": "polder import <file>.parquet --format parquet --mode create --data-dir DIR "
                  "(one process per table, wall time including process start)",
    }
    marker.write_text(json.dumps(info, indent=2))
    info["reused"] = False
    print(f"load: {total_rows} rows in {total_seconds:.2f} s ({common.fmt_rate(info['rows_per_s'])})")
    return info


# --------------------------------------------------------------------------------------------
# Result checking
# --------------------------------------------------------------------------------------------

def strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def order_keys(sql: str) -> list[tuple[str, bool]]:
    """(column, descending) of the outermost (last) ORDER BY; TPC-H orders by plain names."""
    text = strip_comments(sql).lower()
    matches = list(re.finditer(r"\border\s+by\b", text))
    if not matches:
        return []
    tail = text[matches[-1].end():]
    tail = re.split(r"\blimit\b|;", tail)[0]
    keys = []
    for item in tail.split(","):
        words = item.split()
        if not words:
            continue
        keys.append((words[0], len(words) > 1 and words[1] == "desc"))
    return keys


def is_number(v) -> bool:
    return isinstance(v, (int, float, decimal.Decimal)) and not isinstance(v, bool)


def decimal_ulp(v) -> float:
    """One unit in the last place of a decimal value (0 for other types)."""
    if isinstance(v, decimal.Decimal):
        exponent = v.as_tuple().exponent
        if isinstance(exponent, int) and exponent < 0:
            return 10.0 ** exponent
    return 0.0


def values_equal(a, b) -> tuple[bool, str | None]:
    """Equality with numeric tolerance; the note says when a decimal's precision was needed."""
    if a is None or b is None:
        return a is None and b is None, None
    if is_number(a) and is_number(b):
        fa, fb = float(a), float(b)
        if math.isnan(fa) or math.isnan(fb):
            return math.isnan(fa) and math.isnan(fb), None
        if math.isclose(fa, fb, rel_tol=REL_TOL, abs_tol=1e-12):
            return True, None
        ulp = max(decimal_ulp(a), decimal_ulp(b))
        if ulp and abs(fa - fb) <= ulp:
            return True, f"{a!r} vs {b!r} equal within the decimal's last digit ({ulp:g})"
        return False, None
    if isinstance(a, datetime.datetime) and isinstance(b, datetime.date) and not isinstance(b, datetime.datetime):
        return a.date() == b and a.time() == datetime.time(0), None
    if isinstance(b, datetime.datetime) and isinstance(a, datetime.date) and not isinstance(a, datetime.datetime):
        return values_equal(b, a)
    if isinstance(a, (bytes, bytearray)) and isinstance(b, str):
        return a.decode(errors="replace") == b, None
    if isinstance(b, (bytes, bytearray)) and isinstance(a, str):
        return values_equal(b, a)
    return a == b, None


def rows_equal(ra, rb, notes: list[str]) -> bool:
    if len(ra) != len(rb):
        return False
    local = []
    for a, b in zip(ra, rb):
        ok, note = values_equal(a, b)
        if not ok:
            return False
        if note:
            local.append(note)
    notes.extend(local)
    return True


def sort_key(row):
    key = []
    for v in row:
        if v is None:
            key.append((0, 0))
        elif is_number(v):
            f = float(v)
            key.append((1, float(f"{f:.5g}")))
        elif isinstance(v, str):
            key.append((2, v))
        else:
            key.append((3, str(v)))
    return tuple(key)


def compare_order(a, b) -> int:
    if a is None or b is None:
        return 0
    if is_number(a) and is_number(b):
        if values_equal(a, b)[0]:
            return 0
        return -1 if float(a) < float(b) else 1
    try:
        return -1 if a < b else (1 if a > b else 0)
    except TypeError:
        return 0


def order_violation(rows: list[tuple], key_idx: list[tuple[int, bool]]) -> int | None:
    """The first row index that breaks the ORDER BY, or None."""
    for i in range(1, len(rows)):
        for idx, desc in key_idx:
            c = compare_order(rows[i - 1][idx], rows[i][idx])
            if desc:
                c = -c
            if c < 0:
                break
            if c > 0:
                return i
    return None


def table_rows(table: pa.Table) -> list[tuple]:
    cols = [c.to_pylist() for c in table.columns]
    return list(zip(*cols)) if cols else []


def check_result(sql: str, got: pa.Table, want: pa.Table) -> dict:
    """Compares Polder's answer (got) with DuckDB's (want)."""
    result = {"ok": False, "notes": []}
    if got.num_columns != want.num_columns:
        result["reason"] = (f"{got.num_columns} columns {got.column_names} vs DuckDB's "
                            f"{want.num_columns} {want.column_names}")
        return result
    g, w = table_rows(got), table_rows(want)
    if len(g) != len(w):
        result["reason"] = f"{len(g)} rows vs DuckDB's {len(w)}"
        result["diff"] = first_differences(sorted(g, key=sort_key), sorted(w, key=sort_key))
        return result

    keys = order_keys(sql)
    got_names = [n.lower() for n in got.column_names]
    want_names = [n.lower() for n in want.column_names]
    key_idx = []
    for name, desc in keys:
        if name in got_names:
            key_idx.append((got_names.index(name), desc))
        elif name in want_names:
            key_idx.append((want_names.index(name), desc))
        else:
            result["notes"].append(f"ORDER BY key {name} not found among the output columns")
    bad = order_violation(g, key_idx)
    if bad is not None:
        result["reason"] = (f"rows not in ORDER BY order ({', '.join(n + (' desc' if d else '') for n, d in keys)})"
                            f" at row {bad}: {g[bad - 1]!r} then {g[bad]!r}")
        return result

    notes: list[str] = []
    if all(rows_equal(a, b, notes) for a, b in zip(g, w)):
        result["ok"] = True
        result["notes"] += sorted(set(notes))[:5]
        return result
    # Rows may legitimately differ in order where the ORDER BY keys tie (or no ORDER BY):
    # compare as multisets.
    notes = []
    gs, ws = sorted(g, key=sort_key), sorted(w, key=sort_key)
    if all(rows_equal(a, b, notes) for a, b in zip(gs, ws)):
        result["ok"] = True
        result["notes"] += sorted(set(notes))[:5]
        result["notes"].append("same rows in a different order among ORDER BY ties")
        return result
    result["reason"] = "values differ"
    result["diff"] = first_differences(gs, ws)
    return result


def first_differences(g, w, limit: int = 5) -> list[dict]:
    out = []
    for i in range(max(len(g), len(w))):
        a = g[i] if i < len(g) else None
        b = w[i] if i < len(w) else None
        if a is None or b is None or not rows_equal(a, b, []):
            out.append({"sorted_row": i, "polder": repr(a), "duckdb": repr(b)})
            if len(out) >= limit:
                break
    return out


# --------------------------------------------------------------------------------------------
# Engines
# --------------------------------------------------------------------------------------------

class PolderFlight:
    def __init__(self, uri: str, timeout_s: float):
        opts = {
            adbc_driver_flightsql.DatabaseOptions.TIMEOUT_QUERY.value: str(timeout_s),
            adbc_driver_flightsql.DatabaseOptions.TIMEOUT_FETCH.value: str(timeout_s),
        }
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.conn = flight_sql.connect(uri, db_kwargs=opts, autocommit=True)

    def run(self, sql: str) -> pa.Table:
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetch_arrow_table()

    def close(self):
        self.conn.close()


class PolderHttp:
    """POST /api/v1/sql answering an Arrow IPC stream (for comparison with Flight SQL)."""

    def __init__(self, base_url: str, timeout_s: float):
        self.url = base_url + "/api/v1/sql"
        self.timeout = timeout_s

    def run(self, sql: str) -> pa.Table:
        import urllib.error
        import urllib.request
        req = urllib.request.Request(
            self.url, data=json.dumps({"sql": sql}).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/vnd.apache.arrow.stream"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"HTTP {err.code}: {err.read().decode(errors='replace')[:2000]}") from None
        return pa.ipc.open_stream(body).read_all()

    def close(self):
        pass


class DuckDB:
    def __init__(self, parquet_dir: Path, threads: int):
        self.conn = duckdb.connect()
        self.conn.execute(f"SET threads = {int(threads)}")
        self.conn.execute("CREATE SCHEMA tpch")
        for t in TABLES:
            path = str(parquet_dir / f"{t}.parquet").replace("'", "''")
            self.conn.execute(f"CREATE VIEW tpch.{t} AS SELECT * FROM read_parquet('{path}')")

    def run(self, sql: str) -> pa.Table:
        return self.conn.sql(sql).to_arrow_table()

    def close(self):
        self.conn.close()


def timed_runs(engine, sql: str, runs: int):
    """Returns (times, first result, error)."""
    times, first, error = [], None, None
    for _ in range(runs):
        start = time.perf_counter()
        try:
            table = engine.run(sql)
        except Exception as err:  # noqa: BLE001 - any failure is reported, not raised
            error = f"{type(err).__name__}: {err}".strip()
            break
        times.append(time.perf_counter() - start)
        if first is None:
            first = table
    return times, first, error


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def ratio(a, b):
    return a / b if a is not None and b else None


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}x"


def build_rows(results):
    rows = []
    for r in results:
        p, d = r["polder"], r["duckdb"]
        check = "ok" if r["status"] == "ok" else r["status"].upper()
        rows.append([
            r["query"],
            common.fmt_s(p["best"]), common.fmt_s(p["median"]),
            common.fmt_s(d["best"]), common.fmt_s(d["median"]),
            fmt_ratio(r["ratio_best"]), fmt_ratio(r["ratio_median"]),
            str(r["rows"]) if r["rows"] is not None else "—",
            check,
        ])
    return rows


HEADERS = ["query", "polder best", "polder median", "duckdb best", "duckdb median",
           "ratio best", "ratio median", "rows", "check"]
ALIGN = ["l", "r", "r", "r", "r", "r", "r", "r", "l"]


def totals(results):
    both = [r for r in results if r["polder"]["best"] is not None and r["duckdb"]["best"] is not None]
    if not both:
        return None
    t = {
        "queries": len(both),
        "polder_best": sum(r["polder"]["best"] for r in both),
        "polder_median": sum(r["polder"]["median"] for r in both),
        "duckdb_best": sum(r["duckdb"]["best"] for r in both),
        "duckdb_median": sum(r["duckdb"]["median"] for r in both),
    }
    t["ratio_best"] = ratio(t["polder_best"], t["duckdb_best"])
    t["ratio_median"] = ratio(t["polder_median"], t["duckdb_median"])
    ratios = [r["ratio_median"] for r in both if r["ratio_median"]]
    t["geomean_ratio_median"] = math.exp(sum(math.log(x) for x in ratios) / len(ratios)) if ratios else None
    return t


def total_row(t, n_queries):
    if t is None:
        return None
    label = "total" if t["queries"] == n_queries else f"total ({t['queries']} of {n_queries})"
    return [label, common.fmt_s(t["polder_best"]), common.fmt_s(t["polder_median"]),
            common.fmt_s(t["duckdb_best"]), common.fmt_s(t["duckdb_median"]),
            fmt_ratio(t["ratio_best"]), fmt_ratio(t["ratio_median"]), "", ""]


def failure_lines(results) -> list[str]:
    lines = []
    for r in results:
        if r["status"] == "ok":
            continue
        if r["status"] == "polder-error":
            lines.append(f"{r['query']}: Polder failed: {r['polder']['error']}")
        elif r["status"] == "duckdb-error":
            lines.append(f"{r['query']}: DuckDB failed: {r['duckdb']['error']}")
        else:
            c = r["check"]
            lines.append(f"{r['query']}: result differs from DuckDB's: {c.get('reason')}")
            for d in c.get("diff", []):
                lines.append(f"    sorted row {d['sorted_row']}: polder {d['polder']}")
                lines.append(f"    {' ' * len('sorted row ' + str(d['sorted_row']))}  duckdb {d['duckdb']}")
    return lines


def write_markdown(path: Path, meta: dict, load_info: dict, results, tot, fail_lines) -> None:
    m = meta["machine"]
    b = meta["polder_binary"]
    out = [
        f"# TPC-H SF{meta['scale']}: Polder vs DuckDB",
        "",
        f"- Date: {meta['date']}",
        common.machine_line(m, f", at end {meta['loadavg_at_end']}"),
        f"- Polder binary: `{b['path']}` ({b['profile']} build, {b['version']}, built {b['mtime']}); "
        + (f"queried over Arrow Flight SQL (ADBC {meta['adbc_version']}), `fetch_arrow_table()`"
           if meta["via"] == "flight" else "queried over HTTP `POST /api/v1/sql` answering an Arrow IPC stream"),
        f"- DuckDB: {meta['duckdb_version']} (Python, in-process), threads = {meta['threads']}, "
        "views over the same Parquet files, `to_arrow_table()`",
        f"- Runs per query: {meta['runs']}; times are wall clock per query including fetching every "
        "row as Arrow; ratio = Polder / DuckDB (above 1 means Polder is slower)",
        f"- Polder server peak RSS (VmHWM) during the run: {meta.get('server_hwm_mb', '—')} MB",
        "",
        *common.free_block(m),
        "## Load",
        "",
    ]
    if load_info.get("reused"):
        out.append(f"Data directory loaded earlier ({load_info.get('date', '?')}, binary "
                   f"`{load_info.get('binary', '?')}`); the numbers below are from that load.")
        out.append("")
    out.append(common.md_table(
        ["table", "rows", "parquet bytes", "seconds", "rows/s"],
        [[f"tpch.{t}", v["rows"], v["bytes"], f"{v['seconds']:.2f}", common.fmt_rate(v["rows_per_s"])]
         for t, v in load_info["tables"].items()]
        + [["**total**", load_info["total_rows"], "", f"{load_info['total_seconds']:.2f}",
            common.fmt_rate(load_info["rows_per_s"])]],
        ["l", "r", "r", "r", "r"],
    ))
    out += ["", f"Method: {load_info.get('method', '')}", "", "## Queries", ""]
    rows = build_rows(results)
    tr = total_row(tot, len(results))
    if tr:
        rows.append(["**" + tr[0] + "**", *tr[1:]])
    out.append(common.md_table(HEADERS, rows, ALIGN))
    if tot and tot.get("geomean_ratio_median"):
        out += ["", f"Geometric mean of the per-query median ratios: {tot['geomean_ratio_median']:.2f}x"]
    notes = [f"- {r['query']}: {n}" for r in results for n in r.get("check", {}).get("notes", [])]
    if notes:
        out += ["", "Check notes:", "", *notes]
    out += ["", "## Failures", ""]
    out += (["```", *fail_lines, "```"] if fail_lines else ["None: every answer matched DuckDB's."])
    path.write_text("\n".join(out) + "\n")


# --------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="TPC-H scale factor (default 1)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per query and engine (default 3)")
    ap.add_argument("--queries", default="", help="subset, e.g. 1,6,14 (default all 22)")
    ap.add_argument("--polder-bin", help="binary (default $POLDER_BIN, else release, else debug)")
    ap.add_argument("--threads", type=int, default=None, help="DuckDB threads (default nproc)")
    ap.add_argument("--via", choices=["flight", "http"], default="flight",
                    help="Polder protocol: Arrow Flight SQL via ADBC (default) or HTTP Arrow IPC")
    ap.add_argument("--timeout", type=float, default=1800, help="per-query Flight SQL timeout in s")
    ap.add_argument("--query-dir", type=Path, default=QUERY_DIR, help="directory of q01.sql..q22.sql")
    ap.add_argument("--data-root", type=Path, default=common.DATA_DIR)
    ap.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    ap.add_argument("--reload", action="store_true", help="load into a fresh data dir even if loaded")
    args = ap.parse_args()

    binary = common.polder_bin(args.polder_bin)
    machine = common.machine_info()
    threads = args.threads or machine["nproc"]
    label = scale_label(args.scale)
    parquet_dir = args.data_root / f"tpch-sf{label}"
    data_dir = args.data_root / f"polder-tpch-sf{label}"
    args.results_dir.mkdir(parents=True, exist_ok=True)

    wanted = {int(q) for q in args.queries.split(",") if q.strip()} if args.queries else set(range(1, 23))
    queries = [(f"q{n:02d}", (args.query_dir / f"q{n:02d}.sql").read_text()) for n in sorted(wanted)]

    bin_info = common.binary_info(binary)
    print(f"polder: {binary} ({bin_info['profile']}, {bin_info['version']})")
    print(f"duckdb: {duckdb.__version__}, threads {threads}; machine: nproc {machine['nproc']}, "
          f"load {machine['loadavg_at_start']}")

    gen_info = generate(args.scale, parquet_dir)
    if args.reload:
        (data_dir / "bench-load.json").unlink(missing_ok=True)
    load_info = load(binary, parquet_dir, data_dir)

    results = []
    server = common.PolderServer(binary, data_dir, args.data_root / f"polder-tpch-sf{label}.serve.log")
    hwm_kb = None
    try:
        server.start()
        ready = server.wait_ready()
        print(f"polder serve ready in {ready:.2f} s (querying over {args.via}: "
              f"{server.flight_uri if args.via == 'flight' else server.http_url})")
        if args.via == "flight":
            polder = PolderFlight(server.flight_uri, args.timeout)
        else:
            polder = PolderHttp(server.http_url, args.timeout)
        duck = DuckDB(parquet_dir, threads)
        print()
        for name, sql in queries:
            p_times, p_table, p_err = timed_runs(polder, sql, args.runs)
            if p_err:
                server.check_alive()
            d_times, d_table, d_err = timed_runs(duck, sql, args.runs)
            r = {
                "query": name,
                "polder": {"times": [round(t, 6) for t in p_times], "best": min(p_times) if p_times else None,
                           "median": common.median(p_times), "error": p_err},
                "duckdb": {"times": [round(t, 6) for t in d_times], "best": min(d_times) if d_times else None,
                           "median": common.median(d_times), "error": d_err},
                "rows": d_table.num_rows if d_table is not None else (p_table.num_rows if p_table is not None else None),
            }
            if p_err:
                r["status"], r["check"] = "polder-error", {"ok": False, "reason": p_err}
            elif d_err:
                r["status"], r["check"] = "duckdb-error", {"ok": False, "reason": d_err}
            else:
                r["check"] = check_result(sql, p_table, d_table)
                r["status"] = "ok" if r["check"]["ok"] else "mismatch"
            r["ratio_best"] = ratio(r["polder"]["best"], r["duckdb"]["best"])
            r["ratio_median"] = ratio(r["polder"]["median"], r["duckdb"]["median"])
            results.append(r)
            row = build_rows([r])[0]
            print(f"{name}: polder {row[2]:>9} (best {row[1]}), duckdb {row[4]:>9} (best {row[3]}), "
                  f"ratio {row[6]:>7}, rows {row[7]}, {row[8]}"
                  + (f" - {p_err or d_err or r['check'].get('reason', '')}"[:300] if r["status"] != "ok" else ""))
        hwm_kb = server.hwm_kb()
        polder.close()
        duck.close()
    finally:
        server.stop()

    tot = totals(results)
    fail_lines = failure_lines(results)
    meta = {
        "benchmark": "tpch",
        "date": common.now_iso(),
        "scale": label,
        "runs": args.runs,
        "via": args.via,
        "threads": threads,
        "machine": machine,
        "loadavg_at_end": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "polder_binary": bin_info,
        "duckdb_version": duckdb.__version__,
        "pyarrow_version": pa.__version__,
        "adbc_version": getattr(adbc_driver_flightsql, "__version__", "?"),
        "server_hwm_mb": round(hwm_kb / 1024) if hwm_kb else None,
        "generation": gen_info,
        "parquet_dir": str(parquet_dir),
        "polder_data_dir": str(data_dir),
    }

    print()
    rows = build_rows(results)
    tr = total_row(tot, len(results))
    print(common.text_table(HEADERS, rows + ([tr] if tr else []), ALIGN))
    if tot and tot.get("geomean_ratio_median"):
        print(f"geometric mean of median ratios: {tot['geomean_ratio_median']:.2f}x")
    print(f"load: {load_info['total_rows']} rows in {load_info['total_seconds']:.2f} s "
          f"({common.fmt_rate(load_info['rows_per_s'])})" + (" [earlier load]" if load_info.get("reused") else ""))

    suffix = "" if args.via == "flight" else f"-{args.via}"
    json_path = args.results_dir / f"tpch-sf{label}{suffix}.json"
    md_path = args.results_dir / f"tpch-sf{label}{suffix}.md"
    json_path.write_text(json.dumps(
        {"meta": meta, "load": load_info, "queries": results, "totals": tot,
         "failures": fail_lines}, indent=2, default=str) + "\n")
    write_markdown(md_path, meta, load_info, results, tot, fail_lines)
    print(f"wrote {json_path} and {md_path}")

    if fail_lines:
        print(f"\n{sum(r['status'] != 'ok' for r in results)} of {len(results)} queries failed:", file=sys.stderr)
        print("\n".join(fail_lines), file=sys.stderr)
        return 1
    print(f"all {len(results)} answers match DuckDB's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
