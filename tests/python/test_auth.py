"""Real clients against a server with authentication on: ADBC (Flight SQL handshake with basic
credentials, as the Go Flight client sends them), psycopg and SQLAlchemy (SCRAM-SHA-256 through
libpq). Grants and refusals in depth are in tests/e2e/security.rs."""

from __future__ import annotations

import adbc_driver_flightsql.dbapi as flight_sql
import psycopg
import pytest
import sqlalchemy

from conftest import SECURED_ADMIN_PASSWORD


def pg_conninfo(server, password: str) -> str:
    return f"host=127.0.0.1 port={server.pg_port} user=admin password={password} dbname=polder connect_timeout=10"


def test_adbc_logs_in_with_username_and_password(polder_secured):
    kwargs = {"username": "admin", "password": SECURED_ADMIN_PASSWORD}
    with flight_sql.connect(polder_secured.flight_uri, db_kwargs=kwargs) as conn, conn.cursor() as cur:
        cur.execute("SELECT 40 + 2 AS answer")
        assert cur.fetchall() == [(42,)]


def test_adbc_with_a_wrong_password_is_refused(polder_secured):
    kwargs = {"username": "admin", "password": "not-the-password"}
    with pytest.raises(Exception, match="invalid credentials"):
        with flight_sql.connect(polder_secured.flight_uri, db_kwargs=kwargs) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")


def test_psycopg_logs_in_with_scram(polder_secured):
    with psycopg.connect(pg_conninfo(polder_secured, SECURED_ADMIN_PASSWORD), autocommit=True) as conn:
        assert conn.execute("SELECT current_user IS NOT NULL").fetchone() is not None
        conn.execute("CREATE TABLE IF NOT EXISTS public.auth_probe (a INT)")
        conn.execute("INSERT INTO public.auth_probe VALUES (7)")
        assert conn.execute("SELECT max(a) FROM public.auth_probe").fetchone() == (7,)


def test_psycopg_with_a_wrong_password_is_refused(polder_secured):
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg_conninfo(polder_secured, "not-the-password"))
    # The server keeps serving the others.
    with psycopg.connect(pg_conninfo(polder_secured, SECURED_ADMIN_PASSWORD), autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_sqlalchemy_inspector_with_a_password(polder_secured):
    url = f"postgresql+psycopg://admin:{SECURED_ADMIN_PASSWORD}@127.0.0.1:{polder_secured.pg_port}/polder"
    engine = sqlalchemy.create_engine(url)
    try:
        schemas = sqlalchemy.inspect(engine).get_schema_names()
        assert {"bronze", "silver", "gold"} <= set(schemas)
    finally:
        engine.dispose()


def test_users_are_managed_through_the_rest_api(polder_secured):
    import requests

    url = polder_secured.http_url
    admin = ("admin", SECURED_ADMIN_PASSWORD)
    created = requests.post(f"{url}/api/v1/users", json={"name": "carl", "role": "analyst", "password": "carl-first-pw"}, auth=admin, timeout=30)
    assert created.status_code == 201, created.text

    def can_query(password: str) -> int:
        return requests.post(f"{url}/api/v1/sql", json={"sql": "SELECT 1"}, auth=("carl", password), timeout=30).status_code

    assert can_query("carl-first-pw") == 200
    # A user changes its own password, but not its role.
    changed = requests.patch(f"{url}/api/v1/users/carl", json={"password": "carl-second-pw"}, auth=("carl", "carl-first-pw"), timeout=30)
    assert changed.status_code == 200, changed.text
    assert can_query("carl-first-pw") == 401
    assert can_query("carl-second-pw") == 200
    promoted = requests.patch(f"{url}/api/v1/users/carl", json={"role": "admin"}, auth=("carl", "carl-second-pw"), timeout=30)
    assert promoted.status_code == 403
    # Admins disable, re-enable and delete.
    assert requests.patch(f"{url}/api/v1/users/carl", json={"disabled": True}, auth=admin, timeout=30).status_code == 200
    assert can_query("carl-second-pw") == 401
    assert requests.patch(f"{url}/api/v1/users/carl", json={"disabled": False, "role": "engineer"}, auth=admin, timeout=30).status_code == 200
    assert can_query("carl-second-pw") == 200
    assert requests.patch(f"{url}/api/v1/users/carl", json={"role": "superuser"}, auth=admin, timeout=30).status_code == 400
    assert requests.delete(f"{url}/api/v1/users/carl", auth=admin, timeout=30).status_code == 200
    assert requests.delete(f"{url}/api/v1/users/carl", auth=admin, timeout=30).status_code == 404
    assert requests.delete(f"{url}/api/v1/users/admin", auth=admin, timeout=30).status_code == 400
    audit = requests.post(
        f"{url}/api/v1/sql",
        json={"sql": "SELECT statement FROM system.audit WHERE action = 'user' AND statement LIKE '%carl%'"},
        auth=admin,
        timeout=30,
    ).json()["rows"]
    statements = [row["statement"] for row in audit]
    assert any("delete user carl" in s for s in statements)
    assert any("change user carl: password" in s for s in statements)
    assert not any("carl-second-pw" in s for s in statements)
