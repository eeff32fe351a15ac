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
