"""Ingestion end to end: connections of every source type synced into bronze with the CLI
(`polder connection`, `polder sync`, `polder jobs`) on a data directory, and through the
REST API of a running server. Sources are real: PostgreSQL and MariaDB on this machine, files,
an HTTP JSON API served by this test, and the Airbyte connector source-faker.

Exactly once is tested by killing `polder sync` with SIGKILL at random moments and checking
that re-runs leave every source record in bronze once."""

from __future__ import annotations

import http.server
import json
import os
import random
import signal
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import requests

from conftest import POLDER_BIN, PolderCli

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
FAKER = os.environ.get(
    "POLDER_SOURCE_FAKER",
    str(Path.home() / ".cache/polder-airbyte/source-faker/bin/source-faker"),
)


# ---------------------------------------------------------------- helpers


class Polder(PolderCli):
    """The CLI on one data directory, with the ingestion commands."""

    def add(self, name: str, source: str, config: dict, *streams: str, extra: tuple[str, ...] = ()) -> None:
        args = ["connection", "add", name, "--source", source, "--source-config", json.dumps(config)]
        for stream in streams:
            args += ["--stream", stream]
        self.run(*args, *extra)

    def sync(self, name: str) -> dict:
        done = self.run("sync", name, "--json", "--retries", "0", check=False)
        try:
            job = json.loads(done.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"sync printed no job:\n{done.stdout}\n{done.stderr}")
        assert (done.returncode == 0) == (job["status"] == "succeeded"), (done.returncode, job)
        return job


@pytest.fixture
def cli(tmp_path) -> Polder:
    return Polder(tmp_path / "data")


@pytest.fixture
def source_pg():
    """A fresh schema in the machine's PostgreSQL `test` database."""
    schema = f"ing_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        yield conn, schema
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def pg_config(schema: str, **extra) -> dict:
    return {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "test", "schema": schema, **extra}


def make_orders(conn, schema: str, rows: int) -> None:
    conn.execute(
        f"""CREATE TABLE {schema}.orders (
            id bigint PRIMARY KEY, customer text, amount numeric(12,2), qty int,
            paid boolean, placed date, updated_at timestamptz, tags text[])"""
    )
    conn.execute(
        f"""INSERT INTO {schema}.orders
            SELECT g, 'c' || (g % 17), (g * 1.25)::numeric(12,2), g % 7, g % 2 = 0,
                   date '2026-01-01' + (g % 30), timestamptz '2026-01-01 00:00+00' + g * interval '1 minute',
                   ARRAY['a', 'b' || g]
            FROM generate_series(1, {rows}) g"""
    )


# ---------------------------------------------------------------- PostgreSQL


def test_postgres_sync_modes_and_metadata(cli, source_pg):
    conn, schema = source_pg
    make_orders(conn, schema, 500)
    config = pg_config(schema)
    cli.add("pg_over", "postgres", config, "orders:full_refresh_overwrite")
    cli.add("pg_app", "postgres", config, "orders:full_refresh_append")
    cli.add("pg_inc", "postgres", config, "orders:incremental_append:updated_at")
    cli.add("pg_dedup", "postgres", config, "orders:incremental_append_deduped:updated_at")

    for name in ["pg_over", "pg_app", "pg_inc", "pg_dedup"]:
        job = cli.sync(name)
        assert job["status"] == "succeeded", job
        assert job["records"] == 500 and job["streams"][0]["records"] == 500, job

    # Values arrive exactly, with the metadata columns of the run.
    row = cli.sql("SELECT id, customer, amount, qty, paid, placed, tags, _polder_sync_id FROM bronze.pg_inc_orders WHERE id = 42")[0]
    assert row["customer"] == "c8" and float(row["amount"]) == 52.5 and row["qty"] == 0 and row["paid"] is True
    assert row["placed"] == "2026-01-13" and "b42" in row["tags"]
    first_sync = row["_polder_sync_id"]
    assert cli.scalar("SELECT count(DISTINCT _polder_extracted_at) FROM bronze.pg_inc_orders") == 1

    # New rows, changed rows.
    conn.execute(f"INSERT INTO {schema}.orders SELECT g, 'new', 1, 1, true, date '2026-02-01', now(), NULL FROM generate_series(501, 510) g")
    conn.execute(f"UPDATE {schema}.orders SET customer = 'changed', updated_at = now() + interval '1 hour' WHERE id <= 5")

    assert cli.sync("pg_over")["records"] == 510
    assert cli.scalar("SELECT count(*) FROM bronze.pg_over_orders") == 510
    assert cli.sync("pg_app")["records"] == 510
    assert cli.scalar("SELECT count(*) FROM bronze.pg_app_orders") == 1010

    job = cli.sync("pg_inc")
    assert job["records"] == 15, job
    assert cli.scalar("SELECT count(*) FROM bronze.pg_inc_orders") == 515
    assert cli.scalar("SELECT count(DISTINCT _polder_sync_id) FROM bronze.pg_inc_orders") == 2
    assert cli.scalar(f"SELECT count(*) FROM bronze.pg_inc_orders WHERE _polder_sync_id = '{job['id']}'") == 15

    job = cli.sync("pg_dedup")
    assert job["records"] == 15, job
    assert cli.scalar("SELECT count(*) FROM bronze.pg_dedup_orders") == 510
    assert cli.scalar("SELECT count(DISTINCT id) FROM bronze.pg_dedup_orders") == 510
    assert cli.scalar("SELECT count(*) FROM bronze.pg_dedup_orders WHERE customer = 'changed'") == 5

    # Nothing new: no commit, the job says so.
    history_before = cli.sql("DESCRIBE HISTORY bronze.pg_inc_orders")
    job = cli.sync("pg_inc")
    assert job["status"] == "succeeded" and job["records"] == 0
    assert job["streams"][0]["status"] == "up_to_date", job
    assert cli.scalar("SELECT count(*) FROM bronze.pg_inc_orders") == 515
    assert cli.sql("DESCRIBE HISTORY bronze.pg_inc_orders") == history_before
    assert first_sync != job["id"]

    # Jobs are listed by the CLI and readable as system.jobs.
    listing = cli.run("jobs", "pg_inc").stdout
    assert listing.count("succeeded") == 3, listing
    rows = cli.sql("SELECT status, records FROM system.jobs WHERE connection = 'pg_inc' ORDER BY created_at")
    assert [r["records"] for r in rows] == [500, 15, 0]


def test_postgres_parallel_ranges_read_every_row_once(cli, source_pg):
    conn, schema = source_pg
    make_orders(conn, schema, 20_000)
    conn.execute(f"DELETE FROM {schema}.orders WHERE id % 10 = 3")  # holes in the key
    cli.add("pg_par", "postgres", pg_config(schema, parallelism=3, parallel_threshold_rows=0), "orders:full_refresh_append")
    job = cli.sync("pg_par")
    assert job["records"] == 18_000, job
    assert cli.scalar("SELECT count(*) FROM bronze.pg_par_orders") == 18_000
    assert cli.scalar("SELECT count(DISTINCT id) FROM bronze.pg_par_orders") == 18_000
    assert cli.scalar("SELECT sum(qty) FROM bronze.pg_par_orders") == conn.execute(f"SELECT sum(qty) FROM {schema}.orders").fetchone()[0]


def test_discover_check_and_credentials_never_shown(cli, source_pg):
    conn, schema = source_pg
    make_orders(conn, schema, 10)
    conn.execute(f"CREATE TABLE {schema}.customers (code text PRIMARY KEY, since date)")
    conn.execute("DROP ROLE IF EXISTS polder_ingest_reader")
    conn.execute("CREATE ROLE polder_ingest_reader LOGIN PASSWORD 'Pw-secret-9931'")
    conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO polder_ingest_reader")
    conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO polder_ingest_reader")
    try:
        config = dict(pg_config(schema), user="polder_ingest_reader", password="Pw-secret-9931")
        cli.add("pg_sec", "postgres", config)  # no --stream: every table is selected
        shown = cli.run("connection", "show", "pg_sec").stdout
        assert "Pw-secret-9931" not in shown
        assert json.loads(shown)["config"]["password"] == "secret:connection.pg_sec.password"
        assert sorted(s["name"] for s in json.loads(shown)["streams"]) == ["customers", "orders"]
        assert "ok:" in cli.run("connection", "check", "pg_sec").stdout
        discovered = json.loads(cli.run("connection", "discover", "pg_sec", "--json").stdout)
        orders = next(s for s in discovered if s["name"] == "orders")
        assert orders["primary_key"] == ["id"] and "updated_at" in orders["cursor_candidates"]
        assert ["amount", "decimal(12,2)"] in orders["columns"]
        assert cli.sync("pg_sec")["status"] == "succeeded"
        # Editing with the masked value keeps the stored credential.
        cli.run("connection", "edit", "pg_sec", "--source-config", json.dumps({"password": "********", "parallelism": 1}))
        assert json.loads(cli.run("connection", "show", "pg_sec").stdout)["config"]["password"] == "secret:connection.pg_sec.password"
        # The data directory holds only ciphertext.
        for path in cli.data_dir.rglob("*"):
            if path.is_file() and path.stat().st_size < 50_000_000:
                assert b"Pw-secret-9931" not in path.read_bytes(), path
    finally:
        conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM polder_ingest_reader")
        conn.execute(f"REVOKE USAGE ON SCHEMA {schema} FROM polder_ingest_reader")
        conn.execute("DROP ROLE polder_ingest_reader")


def test_unreachable_source_retries_and_bad_input(cli):
    spec = cli.data_dir.parent / "down.json"
    spec.write_text(json.dumps({
        "name": "ignored", "source": "postgres",
        "config": {"host": "127.0.0.1", "port": 1, "user": "x", "database": "x"},
        "streams": [{"name": "t"}],
        "options": {"retries": 1, "retry_backoff_secs": 1, "max_rejects": 0},
    }))
    cli.run("connection", "add", "down", "--file", str(spec))
    started = time.monotonic()
    done = cli.run("sync", "down", "--json", check=False)  # the connection's retries (1)
    assert done.returncode != 0
    assert time.monotonic() - started >= 1.0, "the retry did not wait its backoff"
    # One retry: two attempts, both recorded.
    jobs = json.loads(cli.run("jobs", "down", "--json").stdout)
    assert [j["attempt"] for j in jobs] == [2, 1], jobs
    assert all(j["status"] == "failed" and "cannot read postgres 127.0.0.1:1" in j["error"] for j in jobs), jobs

    bad = cli.run("connection", "add", "Bad-Name", "--source", "postgres", "--source-config", "{}", check=False)
    assert bad.returncode != 0 and "not a connection name" in bad.stderr
    bad = cli.run("connection", "add", "nomode", "--source", "postgres", "--source-config", "{}", "--stream", "t:upsert", check=False)
    assert bad.returncode != 0 and "unknown sync mode 'upsert'" in bad.stderr
    bad = cli.run("connection", "add", "nocursor", "--source", "postgres", "--source-config", "{}", "--stream", "t:incremental_append", check=False)
    assert bad.returncode != 0 and "needs cursor_field" in bad.stderr
    bad = cli.run("connection", "add", "cron", "--source", "postgres", "--source-config", "{}", "--stream", "t", "--schedule", "every hour", check=False)
    assert bad.returncode != 0 and "not a cron expression" in bad.stderr
    missing = cli.run("sync", "nothing_here", check=False)
    assert missing.returncode != 0 and "connection 'nothing_here' does not exist" in missing.stderr


# ---------------------------------------------------------------- schema changes


def test_schema_changes_add_widen_and_refuse(cli, source_pg):
    conn, schema = source_pg
    conn.execute(f"CREATE TABLE {schema}.items (id int PRIMARY KEY, qty int, seen timestamptz)")
    conn.execute(f"INSERT INTO {schema}.items VALUES (1, 10, now() - interval '1 day')")
    cli.add("sch", "postgres", pg_config(schema), "items:incremental_append:seen")
    assert cli.sync("sch")["records"] == 1

    conn.execute(f"ALTER TABLE {schema}.items ADD COLUMN note text")
    conn.execute(f"ALTER TABLE {schema}.items ALTER COLUMN qty TYPE bigint")
    conn.execute(f"INSERT INTO {schema}.items VALUES (2, 5000000000, now(), 'big')")
    job = cli.sync("sch")
    assert job["status"] == "succeeded", job
    changes = job["streams"][0]["schema_changes"]
    assert "added column note" in changes and any("widened column qty" in c for c in changes), changes
    rows = cli.sql("SELECT id, qty, note FROM bronze.sch_items ORDER BY id")
    assert rows == [{"id": 1, "qty": 10, "note": None}, {"id": 2, "qty": 5000000000, "note": "big"}]

    conn.execute(f"ALTER TABLE {schema}.items ALTER COLUMN qty TYPE text")
    conn.execute(f"INSERT INTO {schema}.items VALUES (3, 'lots', now() + interval '1 minute', 'x')")
    job = cli.sync("sch")
    assert job["status"] == "failed", job
    assert "column 'qty' changed from bigint to text" in job["error"] and "nothing was committed" in job["error"], job
    assert cli.scalar("SELECT count(*) FROM bronze.sch_items") == 2


# ---------------------------------------------------------------- exactly once under kill -9


def test_kill_9_at_random_moments_loses_and_doubles_nothing(cli, source_pg):
    conn, schema = source_pg
    make_orders(conn, schema, 60_000)
    cli.add("k9", "postgres", pg_config(schema, parallelism=2, parallel_threshold_rows=0),
            "orders:incremental_append:id", extra=("--retries", "0"))
    rng = random.Random(int(os.environ.get("POLDER_KILL_SEED", "7")))
    next_id = 60_001
    # How long one sync takes here, to aim the kills inside it.
    started = time.monotonic()
    assert cli.sync("k9")["status"] == "succeeded"
    duration = time.monotonic() - started
    kills = 0
    for round_ in range(6):
        conn.execute(
            f"INSERT INTO {schema}.orders SELECT g, 'k', 1, 1, true, date '2026-03-01', now(), NULL "
            f"FROM generate_series({next_id}, {next_id + 20_000 - 1}) g"
        )
        next_id += 20_000
        process = subprocess.Popen(
            [POLDER_BIN, "--data-dir", str(cli.data_dir), "sync", "k9", "--json", "--retries", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli.env,
        )
        time.sleep(rng.uniform(0.0, duration * 1.2))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.communicate(timeout=60)
        # Sometimes kill the re-run too, before it could finish.
        if rng.random() < 0.3:
            again = subprocess.Popen(
                [POLDER_BIN, "--data-dir", str(cli.data_dir), "sync", "k9", "--json", "--retries", "0"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli.env,
            )
            time.sleep(rng.uniform(0.0, duration))
            if again.poll() is None:
                again.send_signal(signal.SIGKILL)
                kills += 1
            again.communicate(timeout=60)
        job = cli.sync("k9")
        assert job["status"] == "succeeded", job
        total = next_id - 1
        assert cli.scalar("SELECT count(*) FROM bronze.k9_orders") == total, f"round {round_}"
        assert cli.scalar("SELECT count(DISTINCT id) FROM bronze.k9_orders") == total, f"round {round_}"
    assert kills >= 2, "the kills never landed inside a sync; the test proved nothing"
    # The killed runs are in the history as interrupted, not left running.
    jobs = json.loads(cli.run("jobs", "k9", "--json", "--limit", "100").stdout)
    assert not [j for j in jobs if j["status"] == "running"], jobs
    assert [j for j in jobs if j.get("error", "").startswith("interrupted")], jobs


# ---------------------------------------------------------------- MySQL / MariaDB


def mariadb(sql: str) -> str:
    done = subprocess.run(["mariadb", "-h", "127.0.0.1", "-P", "3306", "-u", "root", "test", "-N", "-e", sql],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def source_mysql():
    if shutil.which("mariadb") is None:
        pytest.fail("the mariadb client is needed (Debian package mariadb-client; .ci/run installs it)")
    table = f"ing_{uuid.uuid4().hex[:8]}"
    mariadb(f"""CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(40), price DECIMAL(10,2),
               active TINYINT(1), created DATETIME(6), updated TIMESTAMP(6) NULL)""")
    mariadb(f"""INSERT INTO {table} SELECT seq, CONCAT('n', seq), seq / 4, seq % 2,
               '2026-01-01 00:00:00' + INTERVAL seq MINUTE, '2026-01-01 00:00:00' + INTERVAL seq SECOND
               FROM seq_1_to_3000""")
    yield table
    mariadb(f"DROP TABLE {table}")


def test_wrong_password_fails_the_job_without_showing_it(cli, source_mysql):
    # PostgreSQL on these machines trusts loopback connections; MariaDB checks passwords.
    user = f"pr_{uuid.uuid4().hex[:6]}"
    mariadb(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'Right-pw-5521'")
    mariadb(f"GRANT SELECT ON test.* TO '{user}'@'%'")
    try:
        config = {"host": "127.0.0.1", "user": user, "password": "Right-pw-5521", "database": "test"}
        cli.add("my_sec", "mysql", config, source_mysql)
        assert cli.sync("my_sec")["records"] == 3000
        cli.run("connection", "edit", "my_sec", "--source-config", json.dumps({"password": "Wrong-pw-1234"}))
        job = cli.sync("my_sec")
        assert job["status"] == "failed" and "Access denied" in job["error"], job
        assert "Wrong-pw-1234" not in json.dumps(job) and "Right-pw-5521" not in json.dumps(job)
        assert cli.scalar(f"SELECT count(*) FROM bronze.my_sec_{source_mysql}") == 3000
        assert "Wrong-pw-1234" not in cli.run("connection", "show", "my_sec").stdout
        for path in cli.data_dir.rglob("*"):
            if path.is_file() and path.stat().st_size < 50_000_000:
                data = path.read_bytes()
                assert b"Right-pw-5521" not in data and b"Wrong-pw-1234" not in data, path
    finally:
        mariadb(f"DROP USER '{user}'@'%'")


def test_mysql_incremental_deduped_and_parallel(cli, source_mysql):
    table = source_mysql
    config = {"host": "127.0.0.1", "port": 3306, "user": "root", "database": "test", "parallelism": 3, "parallel_threshold_rows": 0}
    cli.add("my", "mysql", config, f"{table}:incremental_append_deduped:updated:id")
    job = cli.sync("my")
    assert job["status"] == "succeeded" and job["records"] == 3000, job
    bronze = f"bronze.my_{table}"
    row = cli.sql(f"SELECT name, price, active, created FROM {bronze} WHERE id = 10")[0]
    assert row == {"name": "n10", "price": "2.50", "active": False, "created": "2026-01-01T00:10:00"} or (
        row["name"] == "n10" and float(row["price"]) == 2.5 and row["active"] is False), row
    mariadb(f"UPDATE {table} SET name = 'renamed', updated = '2027-01-01' WHERE id <= 3")
    mariadb(f"INSERT INTO {table} VALUES (5000, 'late', 1, 1, NOW(), '2027-01-02')")
    job = cli.sync("my")
    assert job["records"] == 4, job
    assert cli.scalar(f"SELECT count(*) FROM {bronze}") == 3001
    assert cli.scalar(f"SELECT count(*) FROM {bronze} WHERE name = 'renamed'") == 3
    assert cli.sync("my")["streams"][0]["status"] == "up_to_date"


# ---------------------------------------------------------------- files


def test_files_rejects_threshold_and_new_files(cli, tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "a.csv").write_text("id,amount,city\n1,10.5,Oslo\n2,abc,Bergen\n3,7,\"Tromsø\n4,1,Bodø,extra\n")
    (landing / "b.csv").write_text("id,amount,city\n5,1.25,Molde\n")
    config = {"path": str(landing / "*.csv"), "columns": {"id": "bigint", "amount": "double"}}
    cli.add("land", "files", config, "sales:incremental_append", extra=("--max-rejects", "5"))
    job = cli.sync("land")
    assert job["status"] == "succeeded", job
    assert job["streams"][0]["rejects"] >= 2, job
    ids = sorted(r["id"] for r in cli.sql("SELECT id FROM bronze.land_sales"))
    assert 1 in ids and 5 in ids and 2 not in ids, ids
    rejects = cli.sql("SELECT position, reason FROM bronze.land_sales_rejects ORDER BY position")
    assert any("a.csv" in r["position"] and "line 3" in r["position"] and "amount" in r["reason"] for r in rejects), rejects

    # A new file: only it is loaded.
    (landing / "c.csv").write_text("id,amount,city\n6,2,Ålesund\n7,3,Hamar\n")
    job = cli.sync("land")
    assert job["records"] == 2, job
    assert cli.scalar("SELECT count(*) FROM bronze.land_sales WHERE id IN (6, 7)") == 2
    assert cli.sync("land")["streams"][0]["status"] == "up_to_date"

    # More rejects than allowed: the stream fails, its table is untouched.
    strict = tmp_path / "strict"
    strict.mkdir()
    (strict / "x.jsonl").write_text('{"id": 1, "v": 1}\n{"id": "two", "v": 2}\nnot json\n{"id": 4, "v": 4}\n')
    cli.add("strict", "files", {"path": str(strict / "*.jsonl"), "columns": {"id": "bigint"}}, "events", extra=("--max-rejects", "1"))
    job = cli.sync("strict")
    assert job["status"] == "failed" and "2 records were rejected" in job["error"], job
    assert "bronze.strict_events_rejects" in job["error"]
    assert cli.scalar("SELECT count(*) FROM bronze.strict_events_rejects") == 2
    tables = [r["table_name"] for r in cli.sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'bronze'")]
    assert "strict_events" not in tables


# ---------------------------------------------------------------- HTTP JSON API


class _Api(http.server.BaseHTTPRequestHandler):
    records = [{"id": i, "name": f"item {i}", "updated": f"2026-01-{i:02d}T00:00:00Z", "price": i * 1.5} for i in range(1, 24)]

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        from urllib.parse import parse_qs, urlparse
        if self.headers.get("Authorization") != "Bearer tok-77":
            self.send_response(401)
            self.end_headers()
            return
        query = parse_qs(urlparse(self.path).query)
        page = int(query.get("page", ["1"])[0])
        since = query.get("since", [""])[0]
        rows = [r for r in self.records if r["updated"] > since]
        body = json.dumps({"data": {"items": rows[(page - 1) * 5: page * 5]}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_http_api_pages_incrementally(cli):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = {
            "url": f"http://127.0.0.1:{server.server_port}/items",
            "headers": {"Authorization": "Bearer tok-77"},
            "records_path": "data.items",
            "pagination": {"type": "page_number", "param": "page", "size": 5},
            "cursor_field": "updated",
            "cursor_param": "since",
        }
        cli.add("api", "http", config, "items:incremental_append_deduped:updated:id")
        assert "tok-77" not in cli.run("connection", "show", "api").stdout
        job = cli.sync("api")
        assert job["status"] == "succeeded" and job["records"] == 23, job
        assert cli.scalar("SELECT sum(price) FROM bronze.api_items") == sum(r["price"] for r in _Api.records)
        _Api.records.append({"id": 3, "name": "item 3 v2", "updated": "2026-02-01T00:00:00Z", "price": 99.0})
        job = cli.sync("api")
        assert job["records"] == 1, job
        assert cli.scalar("SELECT name FROM bronze.api_items WHERE id = 3") == "item 3 v2"
        assert cli.scalar("SELECT count(*) FROM bronze.api_items") == 23
    finally:
        server.shutdown()


# ---------------------------------------------------------------- Airbyte connectors


def faker_or_skip() -> str:
    if not Path(FAKER).exists():
        pytest.skip(f"source-faker is not installed at {FAKER} (tests/setup.sh installs it)")
    return FAKER


def test_airbyte_source_faker_full_and_incremental(cli):
    faker = faker_or_skip()
    config = {"command": [faker], "config": {"count": 300, "seed": 42, "parallelism": 1}}
    cli.add("fake", "airbyte", config, "users:incremental_append_deduped", "products:full_refresh_overwrite")
    discovered = json.loads(cli.run("connection", "discover", "fake", "--json").stdout)
    users = next(s for s in discovered if s["name"] == "users")
    assert users["primary_key"] == ["id"] and users["default_cursor"] == "updated_at"
    assert "ok:" in cli.run("connection", "check", "fake").stdout

    job = cli.sync("fake")
    assert job["status"] == "succeeded", job
    counts = {s["stream"]: s["records"] for s in job["streams"]}
    assert counts["users"] == 300 and counts["products"] > 0, counts
    assert cli.scalar("SELECT count(DISTINCT id) FROM bronze.fake_users") == 300
    emails = cli.scalar("SELECT count(*) FROM bronze.fake_users WHERE email LIKE '%@%'")
    assert emails == 300

    # The connector's STATE went into the commit: the next run continues from it.
    job = cli.sync("fake")
    assert job["status"] == "succeeded", job
    assert cli.scalar("SELECT count(DISTINCT id) FROM bronze.fake_users") == 300
    assert cli.scalar("SELECT count(*) FROM bronze.fake_users") == 300


def write_script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_broken_connectors_fail_cleanly(cli, tmp_path):
    catalog = json.dumps({"type": "CATALOG", "catalog": {"streams": [
        {"name": "s", "json_schema": {"properties": {"id": {"type": "integer"}}}, "supported_sync_modes": ["full_refresh"]}]}})
    record = json.dumps({"type": "RECORD", "record": {"stream": "s", "data": {"id": 1}, "emitted_at": 0}})
    spec = json.dumps({"type": "SPEC", "spec": {"connectionSpecification": {"properties": {}}}})
    crash = write_script(tmp_path / "crash.sh", f"""case "$1" in
  spec) echo '{spec}' ;;
  discover) echo '{catalog}' ;;
  read) echo '{record}'; echo 'Traceback: database exploded' >&2; exit 3 ;;
esac
""")
    garbage = write_script(tmp_path / "garbage.sh", f"""case "$1" in
  spec) echo '{spec}' ;;
  discover) echo '{catalog}' ;;
  read) echo '{record}'; echo 'hello, I am not JSON' ;;
esac
""")
    cli.add("crashy", "airbyte", {"command": [crash]}, "s")
    job = cli.sync("crashy")
    assert job["status"] == "failed", job
    assert "database exploded" in job["log_tail"], job
    tables = [r["table_name"] for r in cli.sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'bronze'")]
    assert "crashy_s" not in tables, "a crashed connector committed data"

    cli.add("noisy", "airbyte", {"command": [garbage]}, "s")
    job = cli.sync("noisy")
    assert job["status"] == "failed" and "not an Airbyte message" in job["error"], job

    absent = cli.run("connection", "add", "absent", "--source", "airbyte", "--source-config",
                     json.dumps({"command": [str(tmp_path / "no-such-connector")]}), "--stream", "s", check=False)
    assert absent.returncode != 0 and "no-such-connector" in absent.stderr, absent.stderr


# ---------------------------------------------------------------- REST API and schedules


def test_rest_api_connections_jobs_and_schedule(polder, source_pg):
    conn, schema = source_pg
    make_orders(conn, schema, 50)
    api = f"{polder.http_url}/api/v1"
    name = f"rest_{uuid.uuid4().hex[:6]}"
    body = {
        "name": name, "source": "postgres",
        "config": dict(pg_config(schema), password="not-needed-but-secret-77"),
        "streams": [{"name": "orders", "sync_mode": "incremental_append", "cursor_field": "id"}],
    }
    created = requests.post(f"{api}/connections", json=body, timeout=30)
    assert created.status_code == 201, created.text
    assert "not-needed-but-secret-77" not in created.text
    again = requests.post(f"{api}/connections", json=body, timeout=30)
    assert again.status_code == 409, again.text
    bad = requests.post(f"{api}/connections", json={"name": "x", "source": "oracle"}, timeout=30)
    assert bad.status_code == 400, bad.text

    assert requests.post(f"{api}/connections/{name}/check", timeout=30).json()["ok"] is True
    streams = requests.post(f"{api}/connections/{name}/discover", timeout=30).json()["streams"]
    assert [s["name"] for s in streams] == ["orders"]

    job = requests.post(f"{api}/connections/{name}/sync?wait=true", timeout=120).json()
    assert job["status"] == "succeeded" and job["records"] == 50, job
    assert requests.get(f"{api}/jobs/{job['id']}", timeout=30).json()["records"] == 50
    with polder.connect() as pg:
        assert pg.execute(f"SELECT count(*) FROM bronze.{name}_orders").fetchone()[0] == 50
        status = pg.execute(f"SELECT status FROM system.jobs WHERE job_id = '{job['id']}'").fetchone()[0]
        assert status == "succeeded"

    # A schedule every 2 seconds fires inside the server.
    patched = requests.patch(f"{api}/connections/{name}", json={"schedule": "*/2 * * * * *"}, timeout=30)
    assert patched.status_code == 200, patched.text
    conn.execute(f"INSERT INTO {schema}.orders SELECT g, 's', 1, 1, true, date '2026-01-01', now(), NULL FROM generate_series(51, 60) g")
    deadline = time.monotonic() + 30
    scheduled = []
    while time.monotonic() < deadline and not scheduled:
        jobs = requests.get(f"{api}/jobs", params={"connection": name}, timeout=30).json()["jobs"]
        scheduled = [j for j in jobs if j["trigger"] == "schedule" and j["status"] == "succeeded"]
        time.sleep(0.5)
    assert scheduled, "no scheduled sync ran"
    requests.patch(f"{api}/connections/{name}", json={"schedule": None}, timeout=30)
    with polder.connect() as pg:
        assert pg.execute(f"SELECT count(*) FROM bronze.{name}_orders").fetchone()[0] == 60

    deleted = requests.delete(f"{api}/connections/{name}", timeout=30)
    assert deleted.status_code == 200
    assert requests.get(f"{api}/connections/{name}", timeout=30).status_code == 404
