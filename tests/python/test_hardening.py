"""Bad input and attack, against real servers: TLS on every listener (`--tls-self-signed`) with
real clients verifying the certificate, plain clients on TLS ports and the reverse, garbage bytes
on each port, oversized requests, path traversal in the file-taking APIs, and a planted secret
that must appear in no response, log line, audit entry, `config show` or catalog file.

After each refusal the server must keep serving everyone else."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
import uuid
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import psycopg
import pytest
import requests

from conftest import POLDER_BIN, SECURED_ADMIN_PASSWORD, _running_polder

ADMIN = ("admin", SECURED_ADMIN_PASSWORD)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    env = {"POLDER_AUTH_ENABLED": "true", "POLDER_ADMIN_PASSWORD": SECURED_ADMIN_PASSWORD}
    with _running_polder(tmp_path_factory, demo=False, env_overrides=env, extra_args=("--tls-self-signed",), tls=True) as server:
        cert = server.data_dir / "tls" / "self-signed.crt"
        assert cert.is_file(), "--tls-self-signed writes the certificate into <data_dir>/tls"
        server.cert = cert
        yield server


def tls_pg_conninfo(server, **extra: str) -> str:
    options = {
        "host": "localhost",
        "port": str(server.pg_port),
        "user": "admin",
        "password": SECURED_ADMIN_PASSWORD,
        "dbname": "polder",
        "connect_timeout": "10",
        "sslmode": "verify-full",
        "sslrootcert": str(server.cert),
    }
    options.update(extra)
    return " ".join(f"{key}={value}" for key, value in options.items())


def refusals_in_audit(server, needle: str, tls: bool = False) -> list[tuple[str, str]]:
    """Audit entries of refused connections and requests whose message contains `needle`,
    waited for briefly (they are written in the background)."""
    base = f"https://localhost:{server.http_port}" if tls else server.http_url
    verify = str(server.cert) if tls else True
    sql = "SELECT client, message FROM system.audit WHERE action = 'refused'"
    deadline = time.monotonic() + 10
    while True:
        response = requests.post(f"{base}/api/v1/sql", json={"sql": sql}, auth=ADMIN, verify=verify, timeout=30)
        assert response.status_code == 200, response.text
        found = [(r["client"], r["message"]) for r in response.json()["rows"] if needle in r["message"]]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def assert_still_serving_tls(server):
    response = requests.get(f"https://localhost:{server.http_port}/health", verify=str(server.cert), timeout=10)
    assert response.status_code == 200
    with psycopg.connect(tls_pg_conninfo(server), autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_https_with_the_certificate_verified(tls_server):
    response = requests.post(
        f"https://localhost:{tls_server.http_port}/api/v1/sql",
        json={"sql": "SELECT 6 * 7 AS answer"},
        auth=ADMIN,
        verify=str(tls_server.cert),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == [{"answer": 42}]
    # A client that does not know the certificate refuses the server, as it should.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://localhost:{tls_server.http_port}/health", timeout=10)


def test_postgres_over_tls_with_channel_binding(tls_server):
    # channel_binding=require: SCRAM-SHA-256-PLUS, the login is tied to this TLS session.
    with psycopg.connect(tls_pg_conninfo(tls_server, channel_binding="require"), autocommit=True) as conn:
        assert conn.info.pgconn.ssl_in_use
        assert conn.execute("SELECT 40 + 2").fetchone() == (42,)


def test_plain_postgres_is_refused_on_a_tls_server(tls_server):
    with pytest.raises(psycopg.OperationalError, match="only TLS"):
        psycopg.connect(tls_pg_conninfo(tls_server, sslmode="disable"))
    assert_still_serving_tls(tls_server)
    refused = refusals_in_audit(tls_server, "plain-text connection", tls=True)
    assert refused and refused[0][0].startswith("postgres 127.0.0.1:")


def test_flight_sql_over_tls(tls_server):
    kwargs = {
        "username": "admin",
        "password": SECURED_ADMIN_PASSWORD,
        "adbc.flight.sql.client_option.tls_root_certs": tls_server.cert.read_text(),
    }
    with flight_sql.connect(f"grpc+tls://localhost:{tls_server.flight_port}", db_kwargs=kwargs) as conn, conn.cursor() as cur:
        cur.execute("SELECT 'encrypted' AS word")
        assert cur.fetchall() == [("encrypted",)]


def test_plain_clients_on_tls_ports_are_refused(tls_server):
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{tls_server.http_port}/health", timeout=10)
    kwargs = {"username": "admin", "password": SECURED_ADMIN_PASSWORD}
    with pytest.raises(Exception):
        with flight_sql.connect(f"grpc://127.0.0.1:{tls_server.flight_port}", db_kwargs=kwargs) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    assert_still_serving_tls(tls_server)
    clients = {client.split(" 127.0.0.1")[0] for client, _ in refusals_in_audit(tls_server, "TLS handshake", tls=True)}
    assert {"http", "flight sql"} <= clients, clients


def tls_handshake(port: int) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost"):
            pass


def test_tls_clients_on_plain_ports_are_refused(polder_secured):
    for port in (polder_secured.http_port, polder_secured.flight_port):
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            tls_handshake(port)
    # A PostgreSQL client asking for TLS from a plain server gets "no" and stops (sslmode=require).
    conninfo = f"host=127.0.0.1 port={polder_secured.pg_port} user=admin password={SECURED_ADMIN_PASSWORD} dbname=polder sslmode=require connect_timeout=10"
    with pytest.raises(psycopg.OperationalError, match="(?i)ssl|tls"):
        psycopg.connect(conninfo)
    assert_still_serving_plain(polder_secured)


def assert_still_serving_plain(server):
    response = requests.post(f"{server.http_url}/api/v1/sql", json={"sql": "SELECT 1 AS one"}, auth=ADMIN, timeout=30)
    assert response.status_code == 200, response.text
    conninfo = f"host=127.0.0.1 port={server.pg_port} user=admin password={SECURED_ADMIN_PASSWORD} dbname=polder connect_timeout=10"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with flight_sql.connect(server.flight_uri, db_kwargs={"username": "admin", "password": SECURED_ADMIN_PASSWORD}) as conn, conn.cursor() as cur:
        cur.execute("SELECT 2")
        assert cur.fetchall() == [(2,)]


GARBAGE = [
    os.urandom(4096),
    b"\x00\x00\x00\x08\x04\xd2\x16\x2f",  # a PostgreSQL SSLRequest and nothing after it
    b"\x7f\xff\xff\xff" + os.urandom(64),  # a length prefix of 2 GB
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\nabc",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(512),  # an HTTP/2 preface, then noise
]


@pytest.mark.parametrize("listener", ["http", "pg", "flight"])
def test_garbage_bytes_do_not_hurt_the_server(polder_secured, listener):
    port = {"http": polder_secured.http_port, "pg": polder_secured.pg_port, "flight": polder_secured.flight_port}[listener]
    for payload in GARBAGE:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.settimeout(5)
            try:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
                sock.recv(65536)
            except OSError:
                pass  # the server may hang up on us; it must not fall over
    assert_still_serving_plain(polder_secured)
    if listener == "pg":
        assert any(client.startswith("postgres ") for client, _ in refusals_in_audit(polder_secured, "not a PostgreSQL client"))


def test_garbage_bytes_on_tls_ports(tls_server):
    for port in (tls_server.http_port, tls_server.pg_port, tls_server.flight_port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.settimeout(5)
            try:
                sock.sendall(os.urandom(2048))
                sock.recv(4096)
            except OSError:
                pass
    assert_still_serving_tls(tls_server)


def test_oversized_requests_are_refused(polder_secured):
    huge_sql = "SELECT 1 -- " + "x" * (3 * 1024 * 1024)
    response = requests.post(f"{polder_secured.http_url}/api/v1/sql", json={"sql": huge_sql}, auth=ADMIN, timeout=60)
    assert response.status_code == 413, response.text[:200]
    huge_login = requests.post(
        f"{polder_secured.http_url}/api/v1/login",
        json={"username": "admin", "password": "p" * (3 * 1024 * 1024)},
        timeout=60,
    )
    assert huge_login.status_code in (400, 401, 413)
    assert_still_serving_plain(polder_secured)
    assert refusals_in_audit(polder_secured, "request body too large")


@pytest.mark.parametrize(
    "body",
    [
        {"source": "../../../../etc/passwd", "table": "public.stolen"},
        {"source": "/etc/passwd", "table": "public.stolen"},
        {"source": "file:///etc/passwd", "table": "public.stolen"},
    ],
)
def test_server_side_imports_never_read_local_paths(polder_secured, body):
    response = requests.post(f"{polder_secured.http_url}/api/v1/import", json=body, auth=ADMIN, timeout=30)
    assert response.status_code == 400, response.text
    assert "s3://" in response.json()["error"]["message"]
    assert refusals_in_audit(polder_secured, "refused import request")


def test_path_traversal_in_names_and_sql_is_refused(polder_secured):
    # An upload's table name cannot climb out of the lake.
    response = requests.post(
        f"{polder_secured.http_url}/api/v1/import",
        params={"table": "../../etc.passwd", "format": "csv"},
        data=b"a\n1\n",
        auth=ADMIN,
        timeout=30,
    )
    assert response.status_code == 400, response.text
    for sql in [
        "SELECT * FROM '/etc/passwd'",
        "CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '/etc/passwd'",
        "COPY (SELECT 1) TO '/tmp/polder-escape.csv'",
    ]:
        response = requests.post(f"{polder_secured.http_url}/api/v1/sql", json={"sql": sql}, auth=ADMIN, timeout=30)
        assert response.status_code >= 400, (sql, response.text)
    assert not Path("/tmp/polder-escape.csv").exists()
    response = requests.put(
        f"{polder_secured.http_url}/api/v1/secrets/..%2F..%2Fetc",
        json={"value": "x"},
        auth=ADMIN,
        timeout=30,
    )
    assert response.status_code in (400, 404), response.text
    assert_still_serving_plain(polder_secured)


def test_a_planted_secret_appears_nowhere(tmp_path_factory):
    planted = f"planted-{uuid.uuid4().hex}"
    planted_s3 = f"s3key-{uuid.uuid4().hex}"
    planted_admin = f"adminpw-{uuid.uuid4().hex}"
    env = {
        "POLDER_AUTH_ENABLED": "true",
        "POLDER_ADMIN_PASSWORD": planted_admin,
        "AWS_SECRET_ACCESS_KEY": planted_s3,
        "POLDER_LOG_LEVEL": "debug",
    }
    with _running_polder(tmp_path_factory, demo=False, env_overrides=env) as server:
        admin = ("admin", planted_admin)
        seen: list[str] = []

        def call(method: str, path: str, **kwargs) -> requests.Response:
            response = requests.request(method, f"{server.http_url}{path}", auth=admin, timeout=30, **kwargs)
            seen.append(response.text)
            return response

        created = call("PUT", "/api/v1/secrets/warehouse_password", json={"value": planted, "description": "warehouse"})
        assert created.status_code == 201, created.text
        replaced = call("PUT", "/api/v1/secrets/warehouse_password", json={"value": planted, "description": "rotated"})
        assert replaced.status_code == 200
        listed = call("GET", "/api/v1/secrets")
        assert [s["name"] for s in listed.json()["secrets"]] == ["warehouse_password"]
        assert call("PUT", "/api/v1/secrets/bad name", json={"value": planted}).status_code == 400
        # Wrong credentials, with the secret as the password: refused and still not echoed.
        refused = requests.post(f"{server.http_url}/api/v1/sql", json={"sql": "SELECT 1"}, auth=("admin", planted), timeout=30)
        seen.append(refused.text)
        assert refused.status_code == 401
        audit = call("POST", "/api/v1/sql", json={"sql": "SELECT action, statement, message FROM system.audit"})
        assert audit.status_code == 200
        assert any("warehouse_password" in row["statement"] for row in audit.json()["rows"])
        queries = call("POST", "/api/v1/sql", json={"sql": "SELECT statement, error FROM system.queries"})
        assert queries.status_code == 200
        config_show = subprocess.run(
            [POLDER_BIN, "config", "show", "--data-dir", str(server.data_dir)],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        seen.append(config_show.stdout + config_show.stderr)
        assert "AWS_SECRET_ACCESS_KEY" in config_show.stdout

    log = server.stderr()
    # The search below is only worth something if the debug log really covers the requests.
    assert "http query" in log and "system.audit" in log
    seen.append(log)
    for text in seen:
        for value in (planted, planted_s3, planted_admin):
            assert value not in text
    # At rest: the catalog holds only ciphertext (of a secret it does hold).
    catalog_files = [p for p in server.data_dir.rglob("catalog.db*") if p.is_file()]
    assert any(b"warehouse_password" in p.read_bytes() for p in catalog_files)
    for path in server.data_dir.rglob("*"):
        if path.is_file() and "lake" not in path.parts:
            data = path.read_bytes()
            assert planted.encode() not in data, f"the secret is readable in {path}"
            assert planted_admin.encode() not in data, f"the admin password is readable in {path}"


def _openssl_pair(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-days", "2"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


@pytest.mark.skipif(subprocess.run(["which", "openssl"], capture_output=True).returncode != 0, reason="needs the openssl command")
def test_configured_certificate_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("certs")
    cert, key = _openssl_pair(directory, "server")
    env = {
        "POLDER_AUTH_ENABLED": "true",
        "POLDER_ADMIN_PASSWORD": SECURED_ADMIN_PASSWORD,
        "POLDER_TLS_CERT": str(cert),
        "POLDER_TLS_KEY": str(key),
    }
    with _running_polder(tmp_path_factory, demo=False, env_overrides=env, tls=True) as server:
        response = requests.get(f"https://localhost:{server.http_port}/health", verify=str(cert), timeout=10)
        assert response.status_code == 200
        conninfo = (f"host=localhost port={server.pg_port} user=admin password={SECURED_ADMIN_PASSWORD} "
                    f"dbname=polder sslmode=verify-full sslrootcert={cert} connect_timeout=10")
        with psycopg.connect(conninfo, autocommit=True) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)

    # A key that is not the certificate's stops the start, naming the files but not the key.
    _, other_key = _openssl_pair(directory, "other")
    data_dir = directory / "data"
    result = subprocess.run(
        [POLDER_BIN, "serve", "--data-dir", str(data_dir), "--http-listen", "127.0.0.1:0",
         "--pg-listen", "127.0.0.1:0", "--flight-listen", "127.0.0.1:0"],
        env={**os.environ, **env, "POLDER_TLS_KEY": str(other_key)},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "usable pair" in result.stderr and str(other_key) in result.stderr, result.stderr
    assert "PRIVATE KEY" not in result.stderr
    # Only one of the two settings is a configuration error, said before anything starts.
    result = subprocess.run(
        [POLDER_BIN, "config", "show"],
        env={**os.environ, "POLDER_TLS_CERT": str(cert)},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0 and "tls.key is needed too" in result.stderr, result.stderr
