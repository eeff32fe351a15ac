"""The PostgreSQL JDBC driver (Debian's libpostgresql-jdbc-java, as Java tools use it) against a
server with authentication on: SCRAM-SHA-256 login, a prepared statement with a parameter,
grants and refusals. Skipped, saying why, where Java or the driver is missing (.ci/run installs
the driver)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import SECURED_ADMIN_PASSWORD, _running_polder

DRIVER = Path("/usr/share/java/postgresql.jar")
PROBE = Path(__file__).parent / "jdbc" / "Probe.java"

pytestmark = pytest.mark.skipif(
    shutil.which("java") is None or not DRIVER.is_file(),
    reason="needs java and the PostgreSQL JDBC driver (apt-get install libpostgresql-jdbc-java)",
)


@pytest.fixture(scope="module")
def polder_secured(tmp_path_factory):
    """A server of its own: the failed login below must not count against the shared one's
    per-address limit (every test client is 127.0.0.1)."""
    env = {"POLDER_AUTH_ENABLED": "true", "POLDER_ADMIN_PASSWORD": SECURED_ADMIN_PASSWORD}
    with _running_polder(tmp_path_factory, demo=False, env_overrides=env) as server:
        yield server


def jdbc(server, user: str, password: str, sql: str, *params: str) -> subprocess.CompletedProcess:
    url = f"jdbc:postgresql://127.0.0.1:{server.pg_port}/polder"
    return subprocess.run(
        ["java", "-cp", str(DRIVER), str(PROBE), url, user, password, sql, *params],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_jdbc_logs_in_with_scram_and_runs_a_prepared_query(polder_secured):
    result = jdbc(polder_secured, "admin", SECURED_ADMIN_PASSWORD, "SELECT upper(?) AS shout, 40 + 2 AS answer", "jdbc")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["JDBC\t42"]


def test_jdbc_with_a_wrong_password_is_refused(polder_secured):
    result = jdbc(polder_secured, "admin", "not-the-password", "SELECT 1")
    assert result.returncode == 2
    assert "SQLSTATE 28P01" in result.stderr, result.stderr
    assert "authentication failed" in result.stderr.lower()


def test_jdbc_reads_only_what_is_granted(polder_secured):
    import requests

    admin = ("admin", SECURED_ADMIN_PASSWORD)
    url = polder_secured.http_url
    response = requests.post(f"{url}/api/v1/users", json={"name": "jdbc_reader", "role": "analyst", "password": "jdbc-reader-pw"}, auth=admin, timeout=30)
    assert response.status_code in (201, 409), response.text
    for sql in [
        "CREATE SCHEMA IF NOT EXISTS jdbc_granted",
        "CREATE SCHEMA IF NOT EXISTS jdbc_secret",
        "CREATE TABLE IF NOT EXISTS jdbc_granted.t AS SELECT 1 AS x",
        "CREATE TABLE IF NOT EXISTS jdbc_secret.t AS SELECT 2 AS x",
        "GRANT SELECT ON SCHEMA jdbc_granted TO jdbc_reader",
    ]:
        assert requests.post(f"{url}/api/v1/sql", json={"sql": sql}, auth=admin, timeout=30).status_code == 200
    ok = jdbc(polder_secured, "jdbc_reader", "jdbc-reader-pw", "SELECT x FROM jdbc_granted.t")
    assert ok.returncode == 0 and ok.stdout.split() == ["1"], ok.stderr
    denied = jdbc(polder_secured, "jdbc_reader", "jdbc-reader-pw", "SELECT g.x FROM jdbc_granted.t g JOIN jdbc_secret.t s ON true")
    assert denied.returncode == 2
    assert "42501" in denied.stderr and "jdbc_secret.t" in denied.stderr
