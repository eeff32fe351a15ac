#!/usr/bin/env python3
"""Ingestion: `polder sync` from PostgreSQL and from an Airbyte connector, next to a peer.

Three measurements, each against a peer measured in the same run:
1. PostgreSQL -> bronze. A table of --rows rows (default 10,000,000) with 13 mixed-type columns
   in the local PostgreSQL (schema --pg-schema of its own, reused while it has the right row
   count). `polder sync` of a full_refresh_overwrite connection (parallelism 2; the Delta write
   included) against ConnectorX reading the same table into Arrow (partition_on="id",
   partition_num=2, and partition_num=1). Best of --runs each; rows/s and the ratio
   Polder / ConnectorX in rows/s (target: >= 1.0 for Polder including the Delta write against
   ConnectorX's read alone). Polder's peak RSS is recorded.
2. Incremental sync with nothing new: a second connection, `TABLE:incremental_append:id`, is
   synced once (the full load), then --incremental-runs more times; median seconds (target < 1 s).
3. Airbyte protocol overhead: source-faker (--faker-records, seed 42, parallelism 1, stream
   users) alone, `read` to /dev/null, against `polder sync` of the same stream, alternating;
   overhead = (polder - alone) / alone on the best times (target < 15 %).

The polder CLI runs on a data directory of its own (bench/data/polder-ingest/, made afresh at
every run); no server is started.

Run: /root/.cache/polder-venv/bin/python bench/ingest/run.py --rows 100000 --faker-records 20000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import common  # noqa: E402

try:
    import connectorx
    import psycopg
except ImportError as err:  # pragma: no cover
    sys.exit(f"{err}: run with /root/.cache/polder-venv/bin/python or pip install -r bench/requirements.txt")

DEFAULT_ROWS = 10_000_000
DEFAULT_FAKER_RECORDS = 1_000_000
TABLE = "events"
FAKER_BIN = Path("/root/.cache/polder-airbyte/source-faker/bin/source-faker")
TIME_BIN = Path("/usr/bin/time")
# Bumped whenever the table definition below changes, so an older table is remade.
TABLE_VERSION = 1

# Polder's connection names: lowercase letters, digits and _, starting with a letter.
CONN_FULL = "bench_pg_full"
CONN_INC = "bench_pg_inc"
CONN_FAKER = "bench_faker"


def pg_table_sql(schema: str, rows: int) -> list[str]:
    """13 columns: bigint key, int, smallint, numeric(12,2), double, text of 0-79 characters,
    varchar, boolean, date, timestamp, timestamptz, uuid, jsonb; some NULLs."""
    t = f"{schema}.{TABLE}"
    return [
        f"DROP SCHEMA IF EXISTS {schema} CASCADE",
        f"CREATE SCHEMA {schema}",
        f"""CREATE TABLE {t} (
            id bigint NOT NULL,
            customer_id integer NOT NULL,
            quantity smallint,
            amount numeric(12,2),
            score double precision,
            note text,
            code varchar(16),
            active boolean,
            day date,
            created_at timestamp,
            updated_at timestamptz,
            ref uuid,
            attrs jsonb
        )""",
        f"""INSERT INTO {t}
            SELECT g,
                   ((g * 7919) % 1000003)::int,
                   CASE WHEN g % 17 = 0 THEN NULL ELSE (g % 1000)::smallint END,
                   CASE WHEN g % 23 = 0 THEN NULL ELSE round(((g * 37) % 100000000) / 100.0, 2) END,
                   (g % 100003) / 7.0,
                   CASE WHEN g % 10 = 0 THEN NULL ELSE left(repeat(md5(g::text), 3), ((g * 13) % 80)::int) END,
                   'C-' || (g % 50000),
                   g % 3 = 0,
                   date '2020-01-01' + (g % 2000)::int,
                   timestamp '2020-01-01' + g * interval '1 second',
                   timestamptz '2020-01-01 00:00:00+00' + g * interval '1 second' + interval '0.123456 second',
                   md5(g::text)::uuid,
                   jsonb_build_object('k', g % 100, 'tag', 't' || (g % 7))
            FROM generate_series(1::bigint, {rows}::bigint) AS g""",
        f"ALTER TABLE {t} ADD PRIMARY KEY (id)",
        # VACUUM sets the hint bits and the visibility map, so the first reader does not pay
        # for them; ANALYZE gives the planner (and ConnectorX's partitioning) statistics.
        f"VACUUM (ANALYZE) {t}",
        f"COMMENT ON TABLE {t} IS 'polder bench ingest v{TABLE_VERSION} rows={rows}'",
    ]


def prepare_pg(dsn: str, schema: str, rows: int) -> dict:
    """Makes schema.events with `rows` rows unless it is already there; warms the OS cache."""
    t = f"{schema}.{TABLE}"
    comment = f"polder bench ingest v{TABLE_VERSION} rows={rows}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        found = conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", [t]).fetchone()[0]
        reused = False
        seconds = None
        if found == comment and conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] == rows:
            reused = True
            print(f"postgres: {t} with {rows:,} rows already there")
        else:
            print(f"postgres: making {t} with {rows:,} rows ...", flush=True)
            start = time.perf_counter()
            for stmt in pg_table_sql(schema, rows):
                conn.execute(stmt)
            seconds = time.perf_counter() - start
            print(f"postgres: {t} made in {seconds:.1f} s")
        # Reads every heap page once, so that no measured reader is the first from disk.
        conn.execute(f"SELECT count(*) FROM {t}")
        size = conn.execute("SELECT pg_relation_size(%s::regclass), pg_total_relation_size(%s::regclass)",
                            [t, t]).fetchone()
        columns = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            [t]).fetchall()
    return {
        "table": t, "rows": rows, "reused": reused,
        "create_seconds": round(seconds, 2) if seconds is not None else None,
        "heap_bytes": size[0], "total_bytes": size[1],
        "columns": [f"{n} {ty}" for n, ty in columns],
        "postgres_version": version,
    }


# --------------------------------------------------------------------------------------------
# Child processes, with wall time and peak RSS.
# --------------------------------------------------------------------------------------------

def rss_method() -> str:
    return "/usr/bin/time -v" if TIME_BIN.is_file() and os.access(TIME_BIN, os.X_OK) else "wait4 rusage"


def run_measured(cmd: list[str], env: dict | None = None, stdout_path: str | None = None) -> dict:
    """Runs cmd; returns returncode, stdout (unless sent to stdout_path), stderr, wall seconds
    and peak RSS in kB: from /usr/bin/time -v when present, else the child's own rusage (wait4)."""
    with tempfile.TemporaryDirectory() as tmp:
        out_path = stdout_path or os.path.join(tmp, "stdout")
        err_path = os.path.join(tmp, "stderr")
        time_path = os.path.join(tmp, "time")
        use_time = rss_method() == "/usr/bin/time -v"
        full = [str(TIME_BIN), "-v", "-o", time_path, *cmd] if use_time else cmd
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(full, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
            _, status, rusage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
        peak_kb = None
        if use_time:
            try:
                for line in Path(time_path).read_text().splitlines():
                    if "Maximum resident set size" in line:
                        peak_kb = int(line.rsplit(":", 1)[1])
            except (OSError, ValueError):
                pass
        else:
            peak_kb = rusage.ru_maxrss
        stdout = "" if stdout_path else Path(out_path).read_text(errors="replace")
        stderr = Path(err_path).read_text(errors="replace")
    return {"returncode": proc.returncode, "stdout": stdout, "stderr": stderr,
            "wall_s": wall, "peak_rss_kb": peak_kb}


def polder_env() -> dict:
    env = dict(os.environ)
    env["POLDER_LOG_LEVEL"] = "warn"
    env["POLDER_AUTH_ENABLED"] = "false"
    return env


def polder_cli(binary: Path, data_dir: Path, args: list[str]) -> str:
    """A polder command that must succeed; returns its stdout."""
    proc = subprocess.run([str(binary), "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, env=polder_env())
    if proc.returncode != 0:
        raise RuntimeError(f"polder {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def add_connection(binary: Path, data_dir: Path, work_dir: Path, name: str, source: str, config: dict,
                   stream: str) -> None:
    """`polder connection add NAME --source S --source-config JSON --stream SPEC`."""
    del work_dir  # kept in the signature for the callers
    polder_cli(binary, data_dir, ["connection", "add", name, "--source", source,
                                  "--source-config", json.dumps(config), "--stream", stream])


class SyncFailed(RuntimeError):
    pass


def polder_sync(binary: Path, data_dir: Path, connection: str) -> dict:
    """`polder sync NAME --json --retries 0`, timed; raises SyncFailed with the full output."""
    cmd = [str(binary), "--data-dir", str(data_dir), "sync", connection, "--json", "--retries", "0"]
    r = run_measured(cmd, env=polder_env())
    job = None
    text = r["stdout"]
    if "{" in text:
        try:
            job = json.loads(text[text.index("{"):])
        except json.JSONDecodeError:
            job = None
    if r["returncode"] != 0 or job is None or job.get("status") != "succeeded":
        raise SyncFailed(
            f"$ {' '.join(cmd)}\nexit code {r['returncode']}\n--- stdout ---\n{text.rstrip()}\n"
            f"--- stderr ---\n{r['stderr'].rstrip()}")
    return {
        "wall_s": r["wall_s"],
        "job_s": job["duration_ms"] / 1000 if job.get("duration_ms") is not None else None,
        "records": job.get("records"),
        "bytes": job.get("bytes"),
        "peak_rss_kb": r["peak_rss_kb"],
        "job_id": job.get("id"),
        "streams": [{k: s.get(k) for k in ("stream", "records", "status", "version")}
                    for s in job.get("streams", [])],
    }


def polder_count(binary: Path, data_dir: Path, table: str) -> int:
    out = polder_cli(binary, data_dir, ["sql", f"SELECT count(*) AS n FROM {table}", "--format", "json"])
    return int(json.loads(out.strip().splitlines()[0])["n"])


CX_CHILD = r"""
import json, sys, time
import connectorx as cx
conn, query, column, parts = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
start = time.perf_counter()
table = cx.read_sql(conn, query, return_type="arrow", partition_on=column, partition_num=parts)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "rows": table.num_rows, "columns": table.num_columns,
                  "nbytes": table.nbytes, "types": [f"{f.name} {f.type}" for f in table.schema]}))
"""


def connectorx_read(conn: str, query: str, parts: int) -> dict:
    """One ConnectorX read in a child Python (so each run starts with empty memory and its peak
    RSS is its own). The time is read_sql alone, measured in the child."""
    r = run_measured([sys.executable, "-c", CX_CHILD, conn, query, "id", str(parts)])
    if r["returncode"] != 0:
        raise RuntimeError(f"ConnectorX failed ({r['returncode']}):\n{r['stderr'][-3000:]}")
    out = json.loads(r["stdout"].strip().splitlines()[-1])
    out["peak_rss_kb"] = r["peak_rss_kb"]
    out["process_wall_s"] = r["wall_s"]
    return out


# --------------------------------------------------------------------------------------------
# Airbyte source-faker
# --------------------------------------------------------------------------------------------

def faker_files(faker: Path, work: Path, records: int) -> tuple[Path, Path, dict]:
    """config.json and a configured catalog of the users stream (full_refresh / overwrite),
    built from what `discover` answers."""
    work.mkdir(parents=True, exist_ok=True)
    config = {"count": records, "seed": 42, "parallelism": 1}
    config_path = work / "faker-config.json"
    config_path.write_text(json.dumps(config))
    start = time.perf_counter()
    proc = subprocess.run([str(faker), "discover", "--config", str(config_path)],
                          capture_output=True, text=True)
    discover_s = time.perf_counter() - start
    stream = None
    for line in proc.stdout.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("type") == "CATALOG":
            stream = next((s for s in msg["catalog"]["streams"] if s["name"] == "users"), None)
    if stream is None:
        raise RuntimeError(f"source-faker discover gave no users stream ({proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    configured = {"streams": [{
        "stream": stream,
        "sync_mode": "full_refresh",
        "destination_sync_mode": "overwrite",
        **({"cursor_field": stream["default_cursor_field"]} if stream.get("default_cursor_field") else {}),
        **({"primary_key": stream["source_defined_primary_key"]} if stream.get("source_defined_primary_key") else {}),
    }]}
    catalog_path = work / "faker-catalog-users.json"
    catalog_path.write_text(json.dumps(configured))
    return config_path, catalog_path, {"config": config, "discover_s": discover_s}


def faker_alone(faker: Path, config: Path, catalog: Path) -> dict:
    r = run_measured([str(faker), "read", "--config", str(config), "--catalog", str(catalog)],
                     stdout_path="/dev/null")
    if r["returncode"] != 0:
        raise RuntimeError(f"source-faker read failed ({r['returncode']}):\n{r['stderr'][-3000:]}")
    return {"wall_s": r["wall_s"], "peak_rss_kb": r["peak_rss_kb"]}


def faker_count(faker: Path, config: Path, catalog: Path) -> int:
    """The number of users RECORD messages the connector emits (checked once, untimed)."""
    n = 0
    with subprocess.Popen([str(faker), "read", "--config", str(config), "--catalog", str(catalog)],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
        for line in proc.stdout:
            if b'"RECORD"' in line[:40]:
                n += 1
    return n


# --------------------------------------------------------------------------------------------
# Report helpers
# --------------------------------------------------------------------------------------------

def summarize(times: list[float], rows: int | None = None) -> dict:
    out = {"times": [round(t, 4) for t in times], "best_s": min(times), "median_s": common.median(times)}
    if rows:
        out["rows_per_s_best"] = rows / out["best_s"]
        out["rows_per_s_median"] = rows / out["median_s"]
    return out


def mb(kb) -> str:
    return "—" if kb is None else f"{kb / 1024:.0f} MB"


def ratio(a, b) -> str:
    return "—" if not a or not b else f"{a / b:.2f}x"


def pct(x) -> str:
    return "—" if x is None else f"{x * 100:+.1f} %"


def met(ok) -> str:
    return "—" if ok is None else ("met" if ok else "NOT met")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows of the PostgreSQL table")
    ap.add_argument("--faker-records", type=int, default=DEFAULT_FAKER_RECORDS, help="source-faker users")
    ap.add_argument("--runs", type=int, default=3, help="runs of each full load (best is reported)")
    ap.add_argument("--faker-runs", type=int, default=3, help="runs of each side of the Airbyte comparison")
    ap.add_argument("--incremental-runs", type=int, default=5, help="timed syncs with nothing new")
    ap.add_argument("--parallelism", type=int, default=2,
                    help="Polder's postgres parallelism and ConnectorX's partition_num (also run with 1)")
    ap.add_argument("--pg-dsn", default="host=127.0.0.1 port=5432 user=postgres dbname=test")
    ap.add_argument("--pg-schema", default="polder_bench_ingest")
    ap.add_argument("--only", default="postgres,incremental,airbyte",
                    help="comma list of the parts to run: postgres, incremental, airbyte")
    ap.add_argument("--no-polder", action="store_true",
                    help="measure the peers only (checks the harness without a polder binary); writes nothing")
    ap.add_argument("--faker-bin", type=Path, default=FAKER_BIN)
    ap.add_argument("--polder-bin")
    ap.add_argument("--data-root", type=Path, default=common.DATA_DIR)
    ap.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    ap.add_argument("--output", help="report file stem (default: ingest for a release build at the default "
                                     "sizes, else ingest-smoke)")
    args = ap.parse_args()
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    unknown = parts - {"postgres", "incremental", "airbyte"}
    if unknown:
        sys.exit(f"--only: unknown part(s) {', '.join(sorted(unknown))}")

    machine = common.machine_info()
    binary = bin_info = None
    if not args.no_polder:
        binary = common.polder_bin(args.polder_bin)
        bin_info = common.binary_info(binary)
        print(f"polder: {binary} ({bin_info['profile']}, {bin_info['version']})")
    print(f"rows {args.rows:,}; faker records {args.faker_records:,}; nproc {machine['nproc']}, "
          f"load {machine['loadavg_at_start']}; peak RSS via {rss_method()}")

    data_dir = args.data_root / "polder-ingest"
    work_dir = args.data_root / "ingest-work"
    if not args.no_polder:
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
    work_dir.mkdir(parents=True, exist_ok=True)

    failures: list[str] = []
    result: dict = {}
    pg_info = None
    pg_kv = dict(item.split("=", 1) for item in args.pg_dsn.split())
    pg_config = {"host": pg_kv.get("host", "127.0.0.1"), "port": int(pg_kv.get("port", 5432)),
                 "user": pg_kv.get("user", "postgres"), "database": pg_kv.get("dbname", "test"),
                 "schema": args.pg_schema, "parallelism": args.parallelism}
    if "password" in pg_kv:
        pg_config["password"] = pg_kv["password"]
    cx_conn = (f"postgresql://{pg_config['user']}{':' + pg_kv['password'] if 'password' in pg_kv else ''}"
               f"@{pg_config['host']}:{pg_config['port']}/{pg_config['database']}")
    cx_query = f"SELECT * FROM {args.pg_schema}.{TABLE}"

    # ---------------------------------------------------------------- 1. PostgreSQL -> bronze
    if parts & {"postgres", "incremental"}:
        pg_info = prepare_pg(args.pg_dsn, args.pg_schema, args.rows)

    if "postgres" in parts:
        print(f"\n1. PostgreSQL -> bronze, {args.rows:,} rows, best of {args.runs}")
        if not args.no_polder:
            add_connection(binary, data_dir, work_dir, CONN_FULL, "postgres", pg_config,
                           f"{TABLE}:full_refresh_overwrite")
        cx_parts = sorted({args.parallelism, 1}, reverse=True)
        runs = {"polder": [], **{f"cx{p}": [] for p in cx_parts}}
        sync_error = None
        cx_info = {}
        # Alternating, so that machine noise falls on both sides alike.
        for i in range(args.runs):
            for p in cx_parts:
                try:
                    r = connectorx_read(cx_conn, cx_query, p)
                except RuntimeError as err:
                    failures.append(f"ConnectorX partition_num={p}: {err}")
                    break
                if r["rows"] != args.rows:
                    failures.append(f"ConnectorX partition_num={p} read {r['rows']} rows, expected {args.rows}")
                runs[f"cx{p}"].append(r)
                cx_info = {"columns": r["columns"], "types": r["types"], "arrow_nbytes": r["nbytes"]}
                print(f"  run {i + 1}: ConnectorX partition_num={p}: {r['seconds']:.2f} s "
                      f"({common.fmt_rate(args.rows / r['seconds'])}), peak RSS {mb(r['peak_rss_kb'])}", flush=True)
            if args.no_polder or sync_error:
                continue
            try:
                s = polder_sync(binary, data_dir, CONN_FULL)
            except SyncFailed as err:
                sync_error = str(err)
                failures.append(f"polder sync {CONN_FULL} failed:\n{err}")
                print(f"  run {i + 1}: polder sync FAILED:\n{err}", flush=True)
                continue
            if s["records"] != args.rows:
                failures.append(f"polder sync {CONN_FULL} run {i + 1}: {s['records']} records, expected {args.rows}")
            runs["polder"].append(s)
            print(f"  run {i + 1}: polder sync: {s['wall_s']:.2f} s wall, job {common.fmt_s(s['job_s'])} "
                  f"({common.fmt_rate(args.rows / s['wall_s'])}), peak RSS {mb(s['peak_rss_kb'])}", flush=True)

        bronze = f"bronze.{CONN_FULL}_{TABLE}"
        count = None
        if runs["polder"]:
            count = polder_count(binary, data_dir, bronze)
            if count != args.rows:
                failures.append(f"{bronze} has {count} rows after the sync, expected {args.rows}")
        pg_result = {"polder_runs": runs["polder"], "bronze_table": bronze, "bronze_count": count,
                     "polder_error": sync_error, "connectorx": cx_info}
        if runs["polder"]:
            pg_result["polder_wall"] = summarize([s["wall_s"] for s in runs["polder"]], args.rows)
            pg_result["polder_job"] = summarize([s["job_s"] for s in runs["polder"]], args.rows)
            pg_result["polder_peak_rss_kb"] = max(s["peak_rss_kb"] or 0 for s in runs["polder"]) or None
        for p in cx_parts:
            key = f"cx{p}"
            pg_result[f"connectorx_p{p}_runs"] = runs[key]
            if runs[key]:
                pg_result[f"connectorx_p{p}"] = summarize([r["seconds"] for r in runs[key]], args.rows)
                pg_result[f"connectorx_p{p}_peak_rss_kb"] = max(r["peak_rss_kb"] or 0 for r in runs[key]) or None
        peer = pg_result.get(f"connectorx_p{args.parallelism}")
        if peer and runs["polder"]:
            pg_result["ratio_wall"] = pg_result["polder_wall"]["rows_per_s_best"] / peer["rows_per_s_best"]
            pg_result["ratio_job"] = pg_result["polder_job"]["rows_per_s_best"] / peer["rows_per_s_best"]
            pg_result["target_met"] = pg_result["ratio_wall"] >= 1.0
        result["postgres"] = pg_result

    # ---------------------------------------------------------------- 2. incremental, nothing new
    if "incremental" in parts and not args.no_polder:
        print(f"\n2. incremental_append on id, nothing new, {args.incremental_runs} syncs")
        add_connection(binary, data_dir, work_dir, CONN_INC, "postgres", pg_config,
                       f"{TABLE}:incremental_append:id")
        inc = {"first": None, "runs": [], "error": None}
        try:
            first = polder_sync(binary, data_dir, CONN_INC)
            inc["first"] = first
            print(f"  first sync (full load): {first['wall_s']:.2f} s wall, {first['records']:,} records", flush=True)
            if first["records"] != args.rows:
                failures.append(f"incremental first sync: {first['records']} records, expected {args.rows}")
            for i in range(args.incremental_runs):
                s = polder_sync(binary, data_dir, CONN_INC)
                inc["runs"].append(s)
                print(f"  sync {i + 1}: {s['wall_s'] * 1000:.0f} ms wall, job {common.fmt_s(s['job_s'])}, "
                      f"{s['records']} records", flush=True)
                if s["records"] != 0:
                    failures.append(f"incremental sync {i + 1} with nothing new read {s['records']} records")
        except SyncFailed as err:
            inc["error"] = str(err)
            failures.append(f"polder sync {CONN_INC} failed:\n{err}")
            print(f"  FAILED:\n{err}", flush=True)
        if inc["runs"]:
            inc["wall"] = summarize([s["wall_s"] for s in inc["runs"]])
            inc["job"] = summarize([s["job_s"] for s in inc["runs"]])
            inc["target_met"] = inc["wall"]["median_s"] < 1.0
        result["incremental"] = inc

    # ---------------------------------------------------------------- 3. Airbyte overhead
    if "airbyte" in parts:
        print(f"\n3. Airbyte source-faker users, {args.faker_records:,} records, {args.faker_runs} runs each")
        faker = args.faker_bin
        if not (faker.is_file() and os.access(faker, os.X_OK)):
            sys.exit(f"{faker} not found: python3 -m venv {faker.parent.parent} && "
                     f"{faker.parent}/pip install airbyte-source-faker==7.2.1")
        config_path, catalog_path, finfo = faker_files(faker, work_dir, args.faker_records)
        emitted = faker_count(faker, config_path, catalog_path)
        print(f"  discover: {finfo['discover_s']:.2f} s; the connector emits {emitted:,} users records")
        if emitted != args.faker_records:
            failures.append(f"source-faker emitted {emitted} users records, expected {args.faker_records}")
        if not args.no_polder:
            add_connection(binary, data_dir, work_dir, CONN_FAKER, "airbyte",
                           {"command": [str(faker)], "config": finfo["config"]}, "users:full_refresh_overwrite")
        alone, synced, sync_error = [], [], None
        for i in range(args.faker_runs):
            a = faker_alone(faker, config_path, catalog_path)
            alone.append(a)
            print(f"  run {i + 1}: source-faker read > /dev/null: {a['wall_s']:.2f} s", flush=True)
            if args.no_polder or sync_error:
                continue
            try:
                s = polder_sync(binary, data_dir, CONN_FAKER)
            except SyncFailed as err:
                sync_error = str(err)
                failures.append(f"polder sync {CONN_FAKER} failed:\n{err}")
                print(f"  run {i + 1}: polder sync FAILED:\n{err}", flush=True)
                continue
            if s["records"] != args.faker_records:
                failures.append(f"polder sync {CONN_FAKER} run {i + 1}: {s['records']} records, "
                                f"expected {args.faker_records}")
            synced.append(s)
            print(f"  run {i + 1}: polder sync: {s['wall_s']:.2f} s wall, job {common.fmt_s(s['job_s'])}, "
                  f"peak RSS {mb(s['peak_rss_kb'])}", flush=True)
        ab = {"discover_s": finfo["discover_s"], "emitted": emitted, "config": finfo["config"],
              "alone_runs": alone, "polder_runs": synced, "polder_error": sync_error,
              "alone": summarize([a["wall_s"] for a in alone], args.faker_records)}
        if synced:
            bronze = f"bronze.{CONN_FAKER}_users"
            ab["bronze_table"] = bronze
            ab["bronze_count"] = polder_count(binary, data_dir, bronze)
            if ab["bronze_count"] != args.faker_records:
                failures.append(f"{bronze} has {ab['bronze_count']} rows, expected {args.faker_records}")
            ab["polder_wall"] = summarize([s["wall_s"] for s in synced], args.faker_records)
            ab["polder_job"] = summarize([s["job_s"] for s in synced], args.faker_records)
            ab["polder_peak_rss_kb"] = max(s["peak_rss_kb"] or 0 for s in synced) or None
            ab["overhead_best"] = (ab["polder_wall"]["best_s"] - ab["alone"]["best_s"]) / ab["alone"]["best_s"]
            ab["overhead_median"] = (ab["polder_wall"]["median_s"] - ab["alone"]["median_s"]) / ab["alone"]["median_s"]
            ab["overhead_job_best"] = (ab["polder_job"]["best_s"] - ab["alone"]["best_s"]) / ab["alone"]["best_s"]
            ab["target_met"] = ab["overhead_best"] < 0.15
        result["airbyte"] = ab

    if args.no_polder:
        print("\n--no-polder: peers measured, no report written")
        if failures:
            print("\nfailures:\n" + "\n".join(failures), file=sys.stderr)
            return 1
        return 0

    # ---------------------------------------------------------------- report
    profile = bin_info["profile"]
    stem = args.output or ("ingest" if profile == "release" and args.rows == DEFAULT_ROWS
                           and args.faker_records == DEFAULT_FAKER_RECORDS else "ingest-smoke")
    meta = {
        "benchmark": "ingest",
        "date": common.now_iso(),
        "rows": args.rows,
        "faker_records": args.faker_records,
        "runs": args.runs,
        "faker_runs": args.faker_runs,
        "incremental_runs": args.incremental_runs,
        "parallelism": args.parallelism,
        "parts": sorted(parts),
        "machine": machine,
        "loadavg_at_end": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "polder_binary": bin_info,
        "peak_rss_method": rss_method(),
        "postgres_table": pg_info,
        "connectorx_version": getattr(connectorx, "__version__", "unknown"),
        "faker_bin": str(args.faker_bin),
        "faker_version": "airbyte-source-faker " + faker_version(args.faker_bin),
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"{stem}.json").write_text(json.dumps(
        {"meta": meta, "results": result, "failures": failures}, indent=2) + "\n")

    headers = ["measure", "Polder", "peer", "Polder / peer", "target"]
    rows = []
    pg = result.get("postgres")
    if pg and pg.get("polder_wall"):
        p = args.parallelism
        peer = pg.get(f"connectorx_p{p}")
        rows.append([f"PostgreSQL → bronze, {args.rows:,} rows, `polder sync` process wall (best of {args.runs}) "
                     f"vs ConnectorX partition_num={p}",
                     f"{common.fmt_rate(pg['polder_wall']['rows_per_s_best'])} ({common.fmt_s(pg['polder_wall']['best_s'])})",
                     f"{common.fmt_rate(peer['rows_per_s_best'])} ({common.fmt_s(peer['best_s'])})" if peer else "—",
                     "rows/s " + ratio(pg["polder_wall"]["rows_per_s_best"], peer and peer["rows_per_s_best"]),
                     f"≥ 1.00x: {met(pg.get('target_met'))}"])
        rows.append(["same, the job's duration_ms (best)",
                     f"{common.fmt_rate(pg['polder_job']['rows_per_s_best'])} ({common.fmt_s(pg['polder_job']['best_s'])})",
                     f"{common.fmt_rate(peer['rows_per_s_best'])}" if peer else "—",
                     "rows/s " + ratio(pg["polder_job"]["rows_per_s_best"], peer and peer["rows_per_s_best"]), ""])
        if p != 1 and pg.get("connectorx_p1"):
            c1 = pg["connectorx_p1"]
            rows.append(["same, process wall vs ConnectorX partition_num=1",
                         f"{common.fmt_rate(pg['polder_wall']['rows_per_s_best'])}",
                         f"{common.fmt_rate(c1['rows_per_s_best'])} ({common.fmt_s(c1['best_s'])})",
                         "rows/s " + ratio(pg["polder_wall"]["rows_per_s_best"], c1["rows_per_s_best"]), ""])
        rows.append(["peak RSS during the full load",
                     mb(pg.get("polder_peak_rss_kb")),
                     f"ConnectorX p={p}: {mb(pg.get(f'connectorx_p{p}_peak_rss_kb'))}", "", ""])
    elif pg:
        rows.append([f"PostgreSQL → bronze, {args.rows:,} rows", "FAILED (see below)",
                     common.fmt_rate(pg.get(f"connectorx_p{args.parallelism}", {}).get("rows_per_s_best")), "—", "—"])
    inc = result.get("incremental")
    if inc and inc.get("wall"):
        rows.append([f"incremental_append sync with nothing new, median of {len(inc['runs'])} (process wall)",
                     common.fmt_s(inc["wall"]["median_s"]), "—", "—", f"< 1 s: {met(inc.get('target_met'))}"])
        rows.append(["same, the job's duration_ms (median)", common.fmt_s(inc["job"]["median_s"]), "—", "—", ""])
    elif inc:
        rows.append(["incremental_append sync with nothing new", "FAILED (see below)", "—", "—", "—"])
    ab = result.get("airbyte")
    if ab and ab.get("polder_wall"):
        rows.append([f"Airbyte source-faker users, {args.faker_records:,} records, `polder sync` (best of "
                     f"{len(ab['polder_runs'])}) vs the connector alone to /dev/null",
                     f"{common.fmt_s(ab['polder_wall']['best_s'])} ({common.fmt_rate(ab['polder_wall']['rows_per_s_best'])})",
                     f"{common.fmt_s(ab['alone']['best_s'])} ({common.fmt_rate(ab['alone']['rows_per_s_best'])})",
                     f"time {ratio(ab['polder_wall']['best_s'], ab['alone']['best_s'])}: overhead {pct(ab['overhead_best'])}",
                     f"< +15 %: {met(ab.get('target_met'))}"])
        rows.append(["same, medians",
                     common.fmt_s(ab["polder_wall"]["median_s"]), common.fmt_s(ab["alone"]["median_s"]),
                     f"time {ratio(ab['polder_wall']['median_s'], ab['alone']['median_s'])}: "
                     f"overhead {pct(ab['overhead_median'])}", ""])
        rows.append(["same, the job's duration_ms (best)", common.fmt_s(ab["polder_job"]["best_s"]),
                     common.fmt_s(ab["alone"]["best_s"]),
                     f"time {ratio(ab['polder_job']['best_s'], ab['alone']['best_s'])}: overhead {pct(ab['overhead_job_best'])}",
                     ""])
    elif ab:
        rows.append([f"Airbyte source-faker users, {args.faker_records:,} records", "FAILED (see below)",
                     common.fmt_s(ab["alone"]["best_s"]), "—", "—"])
    align = ["l", "r", "r", "r", "l"]
    print()
    print(common.text_table(headers, rows, align))

    m = machine
    warn = "" if profile == "release" else (
        "\n**Debug build: a smoke run of the harness. These Polder numbers are not its performance.**\n")
    md = [
        "# Ingestion: `polder sync` vs ConnectorX and the bare Airbyte connector",
        warn,
        f"- Date: {meta['date']}",
        common.machine_line(m, f"; at end {meta['loadavg_at_end']}"),
        f"- Polder binary: `{bin_info['path']}` ({profile} build, {bin_info['version']}, built {bin_info['mtime']}); "
        f"CLI on a fresh data dir, `POLDER_LOG_LEVEL=warn`; peak RSS via {meta['peak_rss_method']}",
    ]
    if pg_info:
        md.append(f"- PostgreSQL {pg_info['postgres_version']}, table `{pg_info['table']}`: {args.rows:,} rows, "
                  f"{len(pg_info['columns'])} columns, heap {pg_info['heap_bytes'] / 2**20:.0f} MB "
                  f"({'reused' if pg_info['reused'] else 'made in this run'}); ConnectorX "
                  f"{meta['connectorx_version']} `read_sql(..., return_type=\"arrow\", partition_on=\"id\", "
                  f"partition_num=N)` in a child Python, timing read_sql alone; Polder connection parallelism "
                  f"{args.parallelism}, `full_refresh_overwrite`, Delta write included")
    if ab:
        md.append(f"- Airbyte: `{args.faker_bin}` ({meta['faker_version']}), config "
                  f"`{json.dumps(ab['config'])}`, stream users full_refresh/overwrite; alone = `read` with "
                  f"stdout to /dev/null; runs alternate with `polder sync`; Polder's peak RSS there is the "
                  f"larger of Polder's and the connector's (the kernel's figure covers waited-for children)")
    md += ["", *common.free_block(m), common.md_table(headers, rows, align), ""]

    md += ["## All runs", ""]
    run_rows = []
    if pg:
        for i, s in enumerate(pg["polder_runs"]):
            run_rows.append([f"PostgreSQL full load, polder sync run {i + 1}",
                             f"{s['wall_s']:.3f} s wall, job {s['job_s']:.3f} s, {s['records']:,} records, "
                             f"{(s['bytes'] or 0) / 2**20:.0f} MB, version {s['streams'][0]['version'] if s['streams'] else '?'}, "
                             f"peak RSS {mb(s['peak_rss_kb'])}"])
        for key in sorted(k for k in pg if k.startswith("connectorx_p") and k.endswith("_runs")):
            for i, r in enumerate(pg[key]):
                run_rows.append([f"ConnectorX partition_num={key[len('connectorx_p'):-len('_runs')]} run {i + 1}",
                                 f"{r['seconds']:.3f} s ({r['nbytes'] / 2**20:.0f} MB of Arrow), peak RSS "
                                 f"{mb(r['peak_rss_kb'])}"])
    if inc:
        if inc.get("first"):
            f = inc["first"]
            run_rows.append(["incremental, first sync (full load)",
                             f"{f['wall_s']:.3f} s wall, job {f['job_s']:.3f} s, {f['records']:,} records"])
        for i, s in enumerate(inc["runs"]):
            run_rows.append([f"incremental, nothing new, sync {i + 1}",
                             f"{s['wall_s'] * 1000:.0f} ms wall, job {s['job_s'] * 1000:.0f} ms, {s['records']} records"])
    if ab:
        run_rows.append(["source-faker discover (once, for information)", f"{ab['discover_s']:.3f} s"])
        for i, a in enumerate(ab["alone_runs"]):
            run_rows.append([f"source-faker read > /dev/null run {i + 1}",
                             f"{a['wall_s']:.3f} s, peak RSS {mb(a['peak_rss_kb'])}"])
        for i, s in enumerate(ab["polder_runs"]):
            run_rows.append([f"polder sync (airbyte) run {i + 1}",
                             f"{s['wall_s']:.3f} s wall, job {s['job_s']:.3f} s, {s['records']:,} records, "
                             f"peak RSS of polder or the connector {mb(s['peak_rss_kb'])}"])
    md += [common.md_table(["run", "result"], run_rows), ""]
    if pg and pg.get("connectorx", {}).get("types"):
        md += ["Column types as ConnectorX reads them: " +
               ", ".join(f"`{t}`" for t in pg["connectorx"]["types"]), ""]
    md += ["## Failures", ""]
    md += (["```", *failures, "```"] if failures else ["None."])
    (args.results_dir / f"{stem}.md").write_text("\n".join(md) + "\n")
    print(f"wrote {args.results_dir / (stem + '.json')} and {args.results_dir / (stem + '.md')}")
    if failures:
        print("\nfailures:", file=sys.stderr)
        print("\n".join(failures), file=sys.stderr)
        return 1
    return 0


def faker_version(faker: Path) -> str:
    """The airbyte-source-faker version installed in the connector's venv."""
    for site in faker.parent.parent.glob("lib/python*/site-packages"):
        for dist in site.glob("airbyte_source_faker-*.dist-info"):
            return dist.name[len("airbyte_source_faker-"):-len(".dist-info")]
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
