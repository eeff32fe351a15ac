"""End-to-end fixtures: one real `polder serve --demo` for the whole test session.

The binary comes from $POLDER_BIN (default: the debug build in /root/.cache/polder-target).
Every test that writes uses its own schema (the `schema` fixture) so tests stay independent
and can run in any order.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

POLDER_BIN = os.environ.get("POLDER_BIN", "/root/.cache/polder-target/debug/polder")
STARTUP_TIMEOUT_S = 120.0


def _free_ports(count: int) -> list[int]:
    """Ports the kernel hands out now; all sockets stay open until every port is chosen."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _ready(http_port: int, tls: bool = False) -> bool:
    scheme = "https" if tls else "http"
    # Readiness only: the TLS tests check the certificate themselves.
    context = ssl._create_unverified_context() if tls else None
    try:
        with urllib.request.urlopen(f"{scheme}://127.0.0.1:{http_port}/ready", timeout=2, context=context) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class PolderServer:
    http_port: int
    pg_port: int
    flight_port: int
    data_dir: Path
    stderr_path: Path
    process: subprocess.Popen

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def flight_uri(self) -> str:
        return f"grpc://127.0.0.1:{self.flight_port}"

    @property
    def pg_conninfo(self) -> str:
        return f"host=127.0.0.1 port={self.pg_port} user=admin password=unused dbname=polder connect_timeout=10"

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg://admin@127.0.0.1:{self.pg_port}/polder"

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def connect(self, autocommit: bool = True, **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.pg_conninfo, autocommit=autocommit, **kwargs)

    def catalog(self) -> dict:
        with urllib.request.urlopen(f"{self.http_url}/api/v1/catalog", timeout=30) as response:
            return json.load(response)

    def catalog_table(self, schema: str, table: str) -> dict:
        for entry in self.catalog()["schemas"]:
            if entry["name"] == schema:
                for item in entry["tables"]:
                    if item["name"] == table:
                        return item
        raise KeyError(f"{schema}.{table} is not in /api/v1/catalog")

    def catalog_tables(self, schema: str, kind: str | None = None) -> list[str]:
        for entry in self.catalog()["schemas"]:
            if entry["name"] == schema:
                return sorted(t["name"] for t in entry["tables"] if kind is None or t["kind"] == kind)
        return []


@contextlib.contextmanager
def _running_polder(
    tmp_path_factory,
    demo: bool,
    env_overrides: dict[str, str],
    extra_args: tuple[str, ...] = (),
    tls: bool = False,
):
    """`polder serve` on free loopback ports, stopped (and checked for a crash) afterwards."""
    binary = Path(POLDER_BIN)
    if not binary.is_file():
        pytest.fail(f"polder binary not found at {binary} (set POLDER_BIN)", pytrace=False)

    root = tmp_path_factory.mktemp("polder")
    data_dir = root / "data"
    stderr_path = root / "polder.stderr.log"
    stdout_path = root / "polder.stdout.log"
    http_port, pg_port, flight_port = _free_ports(3)
    command = [
        str(binary),
        "serve",
        *(["--demo"] if demo else []),
        "--data-dir", str(data_dir),
        "--http-listen", f"127.0.0.1:{http_port}",
        "--pg-listen", f"127.0.0.1:{pg_port}",
        "--flight-listen", f"127.0.0.1:{flight_port}",
        *extra_args,
    ]
    env = dict(os.environ)
    env.setdefault("POLDER_LOG_LEVEL", "warn")
    env.update(env_overrides)
    with open(stderr_path, "wb") as err, open(stdout_path, "wb") as out:
        # cwd=root so that a stray ./polder.toml is never picked up.
        process = subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    server = PolderServer(http_port, pg_port, flight_port, data_dir, stderr_path, process)

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"polder exited with code {process.returncode} during startup\n"
                    f"command: {' '.join(command)}\n--- stderr ---\n{server.stderr()}",
                    pytrace=False,
                )
            if _port_open(pg_port) and _ready(http_port, tls):
                break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"polder was not ready after {STARTUP_TIMEOUT_S:.0f} s\n"
                    f"command: {' '.join(command)}\n--- stderr ---\n{server.stderr()}",
                    pytrace=False,
                )
            time.sleep(0.2)
        yield server
    finally:
        crashed = process.poll() is not None
        if not crashed:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
    if crashed:
        pytest.fail(
            f"polder died while the tests ran (exit code {process.returncode})\n--- stderr ---\n{server.stderr()[-20000:]}",
            pytrace=False,
        )


class PolderCli:
    """The `polder` command line on one data directory (embedded: no server needed)."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.env = dict(os.environ, POLDER_LOG_LEVEL="warn", POLDER_AUTH_ENABLED="false", NO_COLOR="1")

    def run(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [POLDER_BIN, "--data-dir", str(self.data_dir), *args],
            capture_output=True, text=True, env=self.env, timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"polder {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def sql(self, query: str) -> list[dict]:
        done = self.run("sql", query, "--format", "json")
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def scalar(self, query: str):
        rows = self.sql(query)
        assert len(rows) == 1, rows
        return next(iter(rows[0].values()))


@pytest.fixture(scope="session")
def polder(tmp_path_factory) -> PolderServer:
    # The client suites test protocol compatibility with authentication off (loopback only);
    # test_auth.py and tests/e2e/security.rs cover logins, SCRAM and grants.
    with _running_polder(tmp_path_factory, demo=True, env_overrides={"POLDER_AUTH_ENABLED": "false"}) as server:
        yield server


SECURED_ADMIN_PASSWORD = "admin-secret-4242"


@pytest.fixture(scope="session")
def polder_secured(tmp_path_factory) -> PolderServer:
    """A server with authentication on; its admin password is SECURED_ADMIN_PASSWORD."""
    env = {"POLDER_AUTH_ENABLED": "true", "POLDER_ADMIN_PASSWORD": SECURED_ADMIN_PASSWORD}
    with _running_polder(tmp_path_factory, demo=False, env_overrides=env) as server:
        yield server


@pytest.fixture
def pg(polder) -> psycopg.Connection:
    """A psycopg connection in autocommit mode."""
    conn = polder.connect(autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


def _unique_name(prefix: str, test_name: str) -> str:
    cleaned = re.sub(r"[^a-z0-9]+", "_", test_name.lower()).strip("_")
    return f"{prefix}_{cleaned[:30]}_{uuid.uuid4().hex[:6]}"


@pytest.fixture
def schema(polder, request) -> str:
    """A fresh schema for one test; tests that change data work only inside it."""
    name = _unique_name("e2e", request.node.name)
    with polder.connect(autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    return name
