"""High availability with real processes: several `polder serve` coordinators on one PostgreSQL
catalog and one S3 lake (moto's server on loopback), concurrent writers, the scheduler lease
with kill -9 failover, a catalog PostgreSQL that restarts under a running coordinator, SIGTERM
drains, and a catalog migrated by a newer version.

Each test starts its own servers (not the shared session server): they are killed or stopped
on purpose here.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import requests

from conftest import POLDER_BIN, _free_ports, _port_open

ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


# ---------------------------------------------------------------- pieces


class Coordinator:
    """One `polder serve` process (authentication off, loopback)."""

    def __init__(self, root: Path, name: str, args: list[str], env: dict[str, str]):
        self.root = root / name
        self.root.mkdir(parents=True, exist_ok=True)
        self.args = args
        self.env = env
        self.log_path = self.root / "polder.log"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        for _attempt in range(5):
            self.http_port, self.pg_port, self.flight_port = _free_ports(3)
            command = [
                POLDER_BIN, "serve", "--data-dir", str(self.root / "data"),
                "--http-listen", f"127.0.0.1:{self.http_port}",
                "--pg-listen", f"127.0.0.1:{self.pg_port}",
                "--flight-listen", f"127.0.0.1:{self.flight_port}",
                *self.args,
            ]
            env = dict(os.environ)
            env.update({"POLDER_AUTH_ENABLED": "false", "POLDER_LOG_LEVEL": "info"})
            env.update(self.env)
            log = open(self.log_path, "ab")
            self.process = subprocess.Popen(command, cwd=self.root, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                if self.ready() and _port_open(self.pg_port):
                    return
                time.sleep(0.2)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            if "Address already in use" not in self.log():
                break
        pytest.fail(f"polder did not start\n{self.log()[-5000:]}", pytrace=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/ready", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def ready_body(self) -> dict:
        return requests.get(f"{self.url}/ready", timeout=30).json()

    def sql(self, query: str, timeout: float = 120) -> requests.Response:
        return requests.post(f"{self.url}/api/v1/sql", json={"sql": query}, timeout=timeout)

    def rows(self, query: str) -> list[dict]:
        response = self.sql(query)
        assert response.status_code == 200, f"{query}: {response.status_code} {response.text}"
        return response.json()["rows"]

    def scalar(self, query: str):
        row = self.rows(query)[0]
        return next(iter(row.values()))

    def pg(self) -> psycopg.Connection:
        return psycopg.connect(f"host=127.0.0.1 port={self.pg_port} user=admin dbname=polder connect_timeout=10", autocommit=True)

    def kill9(self) -> None:
        self.process.kill()
        self.process.wait()

    def terminate(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def catalog_db():
    """A throwaway database on the machine's PostgreSQL: the shared catalog."""
    name = f"polder_ha_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield f"postgres://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def s3_lake():
    """moto's S3-compatible server on loopback with a bucket; yields (lake URL, environment)."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    # One line per S3 request would bury a failure's message.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    (port,) = _free_ports(1)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test-secret",
                 region_name="us-east-1").create_bucket(Bucket="ha-lake")
    env = {
        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test-secret", "AWS_REGION": "us-east-1",
        "POLDER_S3_ENDPOINT": endpoint, "POLDER_S3_PATH_STYLE": "true",
    }
    yield "s3://ha-lake/warehouse", env
    server.stop()


@contextmanager
def coordinators(tmp_path: Path, count: int, args: list[str], env: dict[str, str]):
    started: list[Coordinator] = []
    try:
        for i in range(count):
            started.append(Coordinator(tmp_path, f"c{i}", args, env))
        yield started
    finally:
        for coordinator in started:
            coordinator.stop()


def wait_for(what: str, check, timeout: float = 60, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}", pytrace=False)
        time.sleep(every)


# ---------------------------------------------------------------- shared catalog and lake, writers


def test_two_coordinators_share_one_catalog_and_s3_lake_and_write_concurrently(tmp_path, catalog_db, s3_lake):
    lake, env = s3_lake
    with coordinators(tmp_path, 2, ["--catalog", catalog_db, "--lake", lake], env) as (a, b):
        assert a.sql("CREATE SCHEMA ha").status_code == 200
        assert a.sql("CREATE TABLE ha.events (writer VARCHAR, n BIGINT)").status_code == 200
        assert a.sql("INSERT INTO ha.events VALUES ('seed', 0)").status_code == 200
        # Written through one, read through the other (and over its PostgreSQL wire).
        assert b.scalar("SELECT count(*) FROM ha.events") == 1
        with b.pg() as conn:
            assert conn.execute("SELECT writer FROM ha.events").fetchone()[0] == "seed"

        # Appends from both at once commute: every row lands exactly once.
        per_writer = 12
        failures: list[str] = []

        def append(coordinator: Coordinator, writer: str):
            for n in range(per_writer):
                response = coordinator.sql(f"INSERT INTO ha.events VALUES ('{writer}', {n})")
                if response.status_code != 200:
                    failures.append(f"{writer} {n}: {response.status_code} {response.text}")

        threads = [threading.Thread(target=append, args=(c, w)) for c, w in ((a, "a1"), (a, "a2"), (b, "b1"), (b, "b2"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures
        rows = a.rows("SELECT writer, count(*) AS c, count(DISTINCT n) AS d FROM ha.events GROUP BY writer ORDER BY writer")
        assert rows == [{"writer": w, "c": per_writer, "d": per_writer} for w in ("a1", "a2", "b1", "b2")] + [{"writer": "seed", "c": 1, "d": 1}], rows
        assert b.scalar("SELECT count(*) FROM ha.events") == 4 * per_writer + 1

        # Rewrites of the same rows from both at once do not commute: each either commits or
        # fails with a clear conflict; no update is lost or applied twice.
        assert a.sql("CREATE TABLE ha.counter (id BIGINT, v BIGINT)").status_code == 200
        assert a.sql("INSERT INTO ha.counter VALUES (1, 0)").status_code == 200
        outcomes: list[tuple[int, str]] = []

        def bump(coordinator: Coordinator):
            for _ in range(6):
                response = coordinator.sql("UPDATE ha.counter SET v = v + 1 WHERE id = 1")
                outcomes.append((response.status_code, response.text))

        threads = [threading.Thread(target=bump, args=(c,)) for c in (a, b, a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        committed = sum(1 for status, _ in outcomes if status == 200)
        conflicts = [text for status, text in outcomes if status != 200]
        for text in conflicts:
            assert "conflict" in text.lower() or "concurrent" in text.lower(), text
        assert all(status in (200, 409) for status, _ in outcomes), outcomes
        assert committed >= 1
        assert a.scalar("SELECT v FROM ha.counter WHERE id = 1") == committed, (committed, conflicts[:3])
        assert b.scalar("SELECT count(*) FROM ha.counter") == 1


# ---------------------------------------------------------------- scheduled work and failover


class _SlowPages(http.server.BaseHTTPRequestHandler):
    """An HTTP JSON API whose pages take a while: a sync of it lasts a few seconds."""

    pages = 8
    per_page = 25
    delay = 0.4

    def log_message(self, *args):
        pass

    def do_GET(self):
        from urllib.parse import parse_qs, urlparse
        page = int(parse_qs(urlparse(self.path).query).get("page", ["1"])[0])
        time.sleep(self.delay)
        start = (page - 1) * self.per_page
        items = [] if page > self.pages else [{"id": start + i, "v": (start + i) * 2} for i in range(self.per_page)]
        body = json.dumps({"items": items}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def leader_of(nodes: list[Coordinator]) -> list[Coordinator]:
    return [n for n in nodes if n.process.poll() is None and n.ready_body().get("scheduler") == "leader"]


def jobs(node: Coordinator, connection: str) -> list[dict]:
    response = requests.get(f"{node.url}/api/v1/jobs", params={"connection": connection}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["jobs"]


def test_scheduled_work_runs_once_across_coordinators_and_fails_over_after_kill_9(tmp_path, catalog_db):
    api = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowPages)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    lake = f"file://{tmp_path}/shared-lake"
    env = {"POLDER_LEASE_TTL": "3"}
    try:
        with coordinators(tmp_path, 2, ["--catalog", catalog_db, "--lake", lake], env) as nodes:
            leaders = wait_for("one scheduler leader", lambda: leader_of(nodes) or None)
            assert len(leaders) == 1, "exactly one coordinator holds the scheduler lease"
            leader = leaders[0]
            standby = next(n for n in nodes if n is not leader)
            assert standby.ready_body()["scheduler"] == "standby"

            # A schedule every 2 seconds, on a source whose sync takes ~3.5 s: each fire runs
            # once, on the leader, and a fire during a running sync is skipped.
            body = {
                "name": "slow", "source": "http",
                "config": {"url": f"http://127.0.0.1:{api.server_port}/items", "records_path": "items",
                           "pagination": {"type": "page_number", "param": "page", "size": _SlowPages.per_page}},
                "streams": [{"name": "items", "sync_mode": "full_refresh_overwrite"}],
                "schedule": "*/2 * * * * *",
            }
            created = requests.post(f"{standby.url}/api/v1/connections", json=body, timeout=30)
            assert created.status_code == 201, created.text

            running = wait_for("a scheduled sync running on the leader", lambda: [
                j for j in jobs(standby, "slow") if j["status"] == "running"] or None, timeout=60)
            assert len(running) == 1, running
            assert running[0]["trigger"] == "schedule"
            assert running[0]["runner"].endswith(f":{leader.pid}"), (running, leader.pid)

            # kill -9 the leader in the middle of that sync.
            killed_at = time.monotonic()
            leader.kill9()
            wait_for("the standby to take the scheduler lease", lambda: standby.ready_body()["scheduler"] == "leader", timeout=30)
            failover_s = time.monotonic() - killed_at
            assert failover_s < 15, f"failover took {failover_s:.1f} s with a 3 s lease"

            def resumed():
                all_jobs = jobs(standby, "slow")
                interrupted = [j for j in all_jobs if j["id"] == running[0]["id"]]
                redo = [j for j in all_jobs if j["trigger"] == "resume" and j["status"] == "succeeded"]
                return (interrupted, redo) if interrupted and interrupted[0]["status"] == "failed" and redo else None

            interrupted, redo = wait_for("the interrupted sync to be resumed by the standby", resumed, timeout=60)
            assert "interrupted" in interrupted[0]["error"], interrupted
            assert redo[0]["runner"].endswith(f":{standby.pid}"), redo
            expected = _SlowPages.pages * _SlowPages.per_page
            assert standby.scalar("SELECT count(*) FROM bronze.slow_items") == expected
            assert standby.scalar("SELECT count(DISTINCT id) FROM bronze.slow_items") == expected

            # From now on the survivor runs the schedule alone; no two syncs ever overlapped.
            wait_for("a scheduled sync by the survivor", lambda: [
                j for j in jobs(standby, "slow")
                if j["trigger"] == "schedule" and j["runner"].endswith(f":{standby.pid}") and j["status"] == "succeeded"] or None,
                timeout=60)
            requests.patch(f"{standby.url}/api/v1/connections/slow", json={"schedule": None}, timeout=30)
            history = jobs(standby, "slow")
            assert {int(j["runner"].rsplit(":", 1)[1]) for j in history} <= {leader.pid, standby.pid}
            finished = sorted((j for j in history if j["started_at"] and j["finished_at"] and j["id"] != running[0]["id"]),
                              key=lambda j: j["started_at"])
            assert len(finished) >= 2
            for earlier, later in zip(finished, finished[1:]):
                assert later["started_at"] >= earlier["finished_at"], ("two syncs of one connection overlapped", earlier, later)
    finally:
        api.shutdown()


# ---------------------------------------------------------------- catalog outage


def _private_postgres():
    """A PostgreSQL cluster of our own (so it can be restarted): initdb + pg_ctl."""
    initdb = shutil.which("initdb") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)
    if not initdb:
        pytest.skip("PostgreSQL's initdb/pg_ctl are not installed (Debian: postgresql); the outage test needs a server it may restart")
    bindir = Path(initdb).resolve().parent
    # Outside pytest's own temp dirs: those are private to root, and initdb runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="polder-ha-pg-"))
    data = root / "pgdata"
    run_as: list[str] = []
    if os.geteuid() == 0:
        # initdb refuses to run as root.
        shutil.chown(root, user="postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    (port,) = _free_ports(1)

    def pg_ctl(*args: str):
        return subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-w", *args],
                              check=True, capture_output=True, timeout=60)

    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    start = lambda: pg_ctl("-o", options, "-l", str(root / "pg.log"), "start")  # noqa: E731
    stop = lambda: pg_ctl("-m", "fast", "stop")  # noqa: E731
    start()
    return port, start, stop, root


def test_catalog_postgres_restart_fails_cleanly_and_recovers(tmp_path):
    port, start_pg, stop_pg, pg_root = _private_postgres()
    try:
        catalog = f"postgres://postgres@127.0.0.1:{port}/postgres"
        with coordinators(tmp_path, 1, ["--catalog", catalog, "--lake", f"file://{tmp_path}/lake"], {}) as (node,):
            assert node.sql("CREATE TABLE bronze.kept AS SELECT * FROM (VALUES (1), (2), (3)) t(x)").status_code == 200
            stop_pg()
            # During the outage: clear errors, quickly enough, and the server keeps serving.
            for query in ("SELECT sum(x) FROM bronze.kept", "CREATE TABLE bronze.during (x BIGINT)"):
                started = time.monotonic()
                response = node.sql(query, timeout=60)
                assert response.status_code == 503, (query, response.status_code, response.text)
                message = response.json()["error"]["message"]
                assert "catalog" in message.lower(), message
                assert time.monotonic() - started < 30
            assert requests.get(f"{node.url}/ready", timeout=30).status_code == 503
            assert requests.get(f"{node.url}/health", timeout=30).status_code == 200
            start_pg()
            # After it: recovered by itself, nothing lost, nothing half-done.
            wait_for("the coordinator to be ready again", node.ready, timeout=60)
            assert node.scalar("SELECT sum(x) FROM bronze.kept") == 6
            assert node.sql("SELECT * FROM bronze.during").status_code == 404
            assert node.sql("INSERT INTO bronze.kept VALUES (4)").status_code == 200
            assert node.scalar("SELECT sum(x) FROM bronze.kept") == 10
            assert node.process.poll() is None
    finally:
        try:
            stop_pg()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(pg_root, ignore_errors=True)


# ---------------------------------------------------------------- SIGTERM


def test_sigterm_drains_running_statements_then_exits(tmp_path):
    lake = f"file://{tmp_path}/lake"
    catalog = f"sqlite://{tmp_path}/catalog.db"
    with coordinators(tmp_path, 1, ["--catalog", catalog, "--lake", lake], {"POLDER_SHUTDOWN_TIMEOUT": "30"}) as (node,):
        assert node.sql("CREATE TABLE bronze.drained (x BIGINT, note VARCHAR)").status_code == 200
        results: dict[str, object] = {}

        def slow_http_insert():
            results["insert"] = node.sql("INSERT INTO bronze.drained SELECT 1, pg_sleep(2.5)")

        def slow_pg_query():
            with node.pg() as conn:
                results["query"] = conn.execute("SELECT 42 AS answer, pg_sleep(2.5)").fetchone()[0]

        idle = node.pg()
        threads = [threading.Thread(target=slow_http_insert), threading.Thread(target=slow_pg_query)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        sent_at = time.monotonic()
        node.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        # Draining: no new connections.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", node.pg_port), timeout=2).close()
        for thread in threads:
            thread.join(timeout=60)
        code = node.process.wait(timeout=60)
        assert code == 0, node.log()[-3000:]
        assert results["insert"].status_code == 200, results["insert"].text
        assert results["query"] == 42
        assert time.monotonic() - sent_at < 25, "an idle connection does not hold the shutdown"
        idle.close()
        assert "drained" in node.log()

        # The commit that was running when SIGTERM came is there after a restart.
        node.start()
        assert node.scalar("SELECT count(*) FROM bronze.drained") == 1

        # A statement longer than the timeout is cut off at the timeout.
        node.stop()
        node.env = {"POLDER_SHUTDOWN_TIMEOUT": "1"}
        node.start()
        cut_off: list[object] = []

        def too_long():
            try:
                cut_off.append(node.sql("SELECT pg_sleep(60)", timeout=90))
            except requests.RequestException as err:
                cut_off.append(err)

        worker = threading.Thread(target=too_long, daemon=True)
        worker.start()
        time.sleep(1.0)
        sent_at = time.monotonic()
        node.process.send_signal(signal.SIGTERM)
        node.process.wait(timeout=30)
        assert time.monotonic() - sent_at < 10
        assert "shutdown timeout" in node.log()
        worker.join(timeout=30)
        assert cut_off and isinstance(cut_off[0], requests.RequestException), cut_off


# ---------------------------------------------------------------- rolling upgrade


def test_a_catalog_migrated_by_a_newer_version_still_serves(tmp_path, catalog_db):
    lake = f"file://{tmp_path}/lake"
    with coordinators(tmp_path, 1, ["--catalog", catalog_db, "--lake", lake], {}) as (node,):
        assert node.sql("CREATE TABLE bronze.before_upgrade AS SELECT 7 AS x").status_code == 200
        # What version N+1 would do while N keeps running: an additive migration (a new table,
        # a new nullable column) recorded in the migrations table.
        with psycopg.connect(catalog_db.replace("postgres://", "postgresql://"), autocommit=True) as conn:
            conn.execute("CREATE TABLE polder_future_feature (id BIGINT PRIMARY KEY)")
            conn.execute("ALTER TABLE polder_tables ADD COLUMN future_note TEXT")
            conn.execute("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) "
                         "VALUES (9999, 'future', true, '\\x00'::bytea, 1)")
        # The running version-N coordinator keeps serving ...
        assert node.sql("CREATE TABLE bronze.during_upgrade AS SELECT 8 AS x").status_code == 200
        assert node.scalar("SELECT x FROM bronze.before_upgrade") == 7
        # ... and a version-N coordinator starting now (a pod restarted mid-rollout) starts.
        node.stop()
        node.start()
        assert node.scalar("SELECT x FROM bronze.during_upgrade") == 8
        assert node.sql("CREATE TABLE bronze.after_restart AS SELECT 9 AS x").status_code == 200
