"""Row access policies, column masks and query history, through the clients users connect with:
psycopg (PostgreSQL wire), ADBC (Flight SQL) and the HTTP API, on a server with authentication.

One module-scoped setup: a customers table with four regions, analysts ann (EU) and bob (US),
engineer eve; a policy that shows each analyst the rows of its region and a mask that hides
emails from everyone but engineers."""

from __future__ import annotations

import time
import uuid

import adbc_driver_flightsql.dbapi as flight_sql
import psycopg
import pytest
import requests

from conftest import SECURED_ADMIN_PASSWORD

PASSWORDS = {"ann": "ann-password-1234", "bob": "bob-password-1234", "eve": "eve-password-1234"}


def admin_session(server) -> requests.Session:
    session = requests.Session()
    session.auth = ("admin", SECURED_ADMIN_PASSWORD)
    return session


def pg(server, user: str) -> psycopg.Connection:
    password = SECURED_ADMIN_PASSWORD if user == "admin" else PASSWORDS[user]
    conninfo = f"host=127.0.0.1 port={server.pg_port} user={user} password={password} dbname=polder connect_timeout=10"
    return psycopg.connect(conninfo, autocommit=True)


def http_sql(server, user: str, sql: str) -> requests.Response:
    password = SECURED_ADMIN_PASSWORD if user == "admin" else PASSWORDS[user]
    return requests.post(f"{server.http_url}/api/v1/sql", json={"sql": sql}, auth=(user, password), timeout=60)


def rows(server, user: str, sql: str) -> list[tuple]:
    with pg(server, user) as conn:
        return [tuple(r) for r in conn.execute(sql).fetchall()]


@pytest.fixture(scope="module")
def governed(polder_secured):
    server = polder_secured
    schema = f"gov_{uuid.uuid4().hex[:6]}"
    session = admin_session(server)
    for name, role in [("ann", "analyst"), ("bob", "analyst"), ("eve", "engineer")]:
        response = session.post(
            f"{server.http_url}/api/v1/users",
            json={"name": name, "role": role, "password": PASSWORDS[name]},
            timeout=30,
        )
        assert response.status_code in (201, 409), response.text
    for name, region in [("ann", "EU"), ("bob", "US")]:
        response = session.put(f"{server.http_url}/api/v1/users/{name}/attributes", json={"region": region}, timeout=30)
        assert response.status_code == 200, response.text
    with pg(server, "admin") as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.customers (id INT, region TEXT, email TEXT, revenue DOUBLE)")
        conn.execute(
            f"INSERT INTO {schema}.customers VALUES (1, 'EU', 'a@x.eu', 10), (2, 'EU', 'b@x.eu', 20), "
            f"(3, 'US', 'c@x.us', 30), (4, 'APAC', 'd@x.ap', 40)"
        )
        conn.execute(f"CREATE TABLE {schema}.orders (customer_id INT, amount DOUBLE)")
        conn.execute(f"INSERT INTO {schema}.orders VALUES (1, 1.5), (2, 2.5), (3, 100), (4, 1000)")
        conn.execute(f"GRANT SELECT ON SCHEMA {schema} TO analyst")
        conn.execute(
            f"CREATE POLICY by_region ON {schema}.customers USING (region = current_user_attribute('region'))"
        )
        conn.execute(f"CREATE POLICY engineers_see_all ON {schema}.customers TO engineer USING (true)")
        conn.execute(f"CREATE COLUMN MASK hide_email ON {schema}.customers (email) USING ('***') EXEMPT engineer")
        # A view owned by the admin: readers still see only their rows through it.
        conn.execute(f"CREATE VIEW {schema}.all_customers AS SELECT * FROM {schema}.customers")
    return schema


def test_each_analyst_sees_its_region_with_emails_masked(polder_secured, governed):
    assert rows(polder_secured, "ann", f"SELECT id, region, email FROM {governed}.customers ORDER BY id") == [
        (1, "EU", "***"),
        (2, "EU", "***"),
    ]
    assert rows(polder_secured, "bob", f"SELECT id, email FROM {governed}.customers") == [(3, "***")]


def test_engineers_and_admins_see_everything(polder_secured, governed):
    expected = [(1, "a@x.eu"), (2, "b@x.eu"), (3, "c@x.us"), (4, "d@x.ap")]
    assert rows(polder_secured, "eve", f"SELECT id, email FROM {governed}.customers ORDER BY id") == expected
    assert rows(polder_secured, "admin", f"SELECT id, email FROM {governed}.customers ORDER BY id") == expected


@pytest.mark.parametrize(
    "query, expected",
    [
        # a join reaches only the visible customers
        ("SELECT sum(o.amount) FROM {s}.orders o JOIN {s}.customers c ON c.id = o.customer_id", [(4.0,)]),
        # a subquery
        ("SELECT count(*) FROM {s}.orders WHERE customer_id IN (SELECT id FROM {s}.customers)", [(2,)]),
        # a CTE
        ("WITH c AS (SELECT * FROM {s}.customers) SELECT count(*), max(email) FROM c", [(2, "***")]),
        # a view owned by someone who sees everything
        ("SELECT count(*), min(email) FROM {s}.all_customers", [(2, "***")]),
        # time travel to the version with every row
        ("SELECT count(*) FROM {s}.customers VERSION AS OF 1", [(2,)]),
        # a predicate on the masked column sees the mask, so the real value cannot be probed
        ("SELECT count(*) FROM {s}.customers WHERE email = 'a@x.eu'", [(0,)]),
        # aggregates over everything are aggregates over the visible rows
        ("SELECT count(*), sum(revenue) FROM {s}.customers", [(2, 30.0)]),
    ],
)
def test_no_query_path_bypasses_the_policy(polder_secured, governed, query, expected):
    assert rows(polder_secured, "ann", query.format(s=governed)) == expected


def test_flight_sql_and_http_apply_the_same_rules(polder_secured, governed):
    kwargs = {"username": "bob", "password": PASSWORDS["bob"]}
    with flight_sql.connect(polder_secured.flight_uri, db_kwargs=kwargs) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT id, email FROM {governed}.customers ORDER BY id")
        assert cur.fetchall() == [(3, "***")]
    response = http_sql(polder_secured, "ann", f"SELECT id, email FROM {governed}.customers ORDER BY id")
    assert response.status_code == 200, response.text
    assert [[r["id"], r["email"]] for r in response.json()["rows"]] == [[1, "***"], [2, "***"]]


def test_changing_governed_rows_is_for_admins(polder_secured, governed):
    with pg(polder_secured, "admin") as conn:
        conn.execute(f"GRANT ALL ON TABLE {governed}.customers TO bob")
    with pg(polder_secured, "bob") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row policies or column masks"):
            conn.execute(f"DELETE FROM {governed}.customers WHERE region = 'EU'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"UPDATE {governed}.customers SET region = 'US'")
        # Inserting shows nothing and is allowed with the grant.
        conn.execute(f"INSERT INTO {governed}.customers VALUES (5, 'US', 'e@x.us', 5)")
    assert rows(polder_secured, "admin", f"SELECT count(*) FROM {governed}.customers") == [(5,)]
    assert rows(polder_secured, "bob", f"SELECT id FROM {governed}.customers ORDER BY id") == [(3,), (5,)]


def test_only_admins_define_rules_and_bad_rules_are_refused(polder_secured, governed):
    with pg(polder_secured, "eve") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="admin"):
            conn.execute(f"CREATE POLICY mine ON {governed}.customers USING (true)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="admin"):
            conn.execute(f"DROP COLUMN MASK hide_email ON {governed}.customers")
    with pg(polder_secured, "admin") as conn:
        with pytest.raises(psycopg.Error, match="no_such_column"):
            conn.execute(f"CREATE POLICY typo ON {governed}.customers USING (no_such_column = 1)")
        with pytest.raises(psycopg.Error, match="boolean"):
            conn.execute(f"CREATE POLICY not_a_condition ON {governed}.customers USING (revenue)")
        with pytest.raises(psycopg.Error, match="cannot stand in"):
            conn.execute(f"CREATE COLUMN MASK bad ON {governed}.customers (revenue) USING ('hidden')")
        with pytest.raises(psycopg.Error, match="neither a role"):
            conn.execute(f"CREATE POLICY nobody ON {governed}.customers TO no_such_user USING (true)")
        with pytest.raises(psycopg.Error, match="view"):
            conn.execute(f"CREATE POLICY on_view ON {governed}.all_customers USING (true)")
        policies = conn.execute(
            f"SELECT policy_name FROM system.row_policies WHERE schema_name = '{governed}' ORDER BY policy_name"
        ).fetchall()
        assert [p[0] for p in policies] == ["by_region", "engineers_see_all"]
        masks = conn.execute(
            f"SELECT mask_name, column_name, exempt FROM system.column_masks WHERE schema_name = '{governed}'"
        ).fetchall()
        assert [tuple(m) for m in masks] == [("hide_email", "email", "engineer")]
        audit = conn.execute(
            "SELECT count(*) FROM system.audit WHERE action = 'policy' AND statement LIKE '%by_region%'"
        ).fetchone()
        assert audit[0] >= 1
    # The server kept serving through the refusals.
    assert rows(polder_secured, "ann", f"SELECT count(*) FROM {governed}.customers") == [(2,)]


def test_dropping_the_only_policy_for_a_reader_shows_it_nothing(polder_secured, governed):
    table = f"{governed}.narrow"
    with pg(polder_secured, "admin") as conn:
        conn.execute(f"CREATE TABLE {table} AS SELECT * FROM {governed}.customers")
        conn.execute(f"CREATE POLICY eu ON {table} TO ann USING (region = 'EU')")
    # The policy is for ann; bob has none, so he sees no rows at all (deny by default).
    assert rows(polder_secured, "ann", f"SELECT count(*) FROM {table}") == [(2,)]
    assert rows(polder_secured, "bob", f"SELECT count(*) FROM {table}") == [(0,)]
    with pg(polder_secured, "admin") as conn:
        conn.execute(f"DROP POLICY eu ON {table}")
        with pytest.raises(psycopg.Error, match="does not exist"):
            conn.execute(f"DROP POLICY eu ON {table}")
        conn.execute(f"DROP POLICY IF EXISTS eu ON {table}")
    # No policies left: the table is governed by grants alone again.
    assert rows(polder_secured, "bob", f"SELECT count(*) FROM {table}") == [(5,)]


def test_query_history_shows_users_their_own_statements(polder_secured, governed):
    marker = uuid.uuid4().hex[:8]
    rows(polder_secured, "ann", f"SELECT 'ann-{marker}' AS probe")
    rows(polder_secured, "bob", f"SELECT 'bob-{marker}' AS probe")
    with pytest.raises(psycopg.Error):
        rows(polder_secured, "ann", f"SELECT 'ann-fail-{marker}', no_such_column FROM {governed}.customers")
    response = http_sql(polder_secured, "ann", f"SELECT 'ann-http-{marker}' AS probe")
    assert response.status_code == 200

    def history(user: str) -> list[tuple]:
        return rows(
            polder_secured,
            user,
            f"SELECT user_name, interface, status, rows, statement FROM system.queries "
            f"WHERE statement LIKE '%-{marker}%' AND statement NOT LIKE '%system.queries%' ORDER BY started_at",
        )

    deadline = time.monotonic() + 10
    while len(history("admin")) < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    everything = history("admin")
    assert {(r[0], r[1], r[2]) for r in everything} == {
        ("ann", "postgres", "ok"),
        ("bob", "postgres", "ok"),
        ("ann", "postgres", "error"),
        ("ann", "http", "ok"),
    }
    http_row = next(r for r in everything if r[1] == "http")
    assert http_row[3] == 1, "the HTTP listener counts the rows it sent"
    mine = history("ann")
    assert {r[0] for r in mine} == {"ann"} and len(mine) == 3
    assert all(f"bob-{marker}" not in r[4] for r in mine)


def test_the_catalog_does_not_count_hidden_rows(polder_secured, governed):
    def described(user: str) -> dict:
        password = SECURED_ADMIN_PASSWORD if user == "admin" else PASSWORDS[user]
        response = requests.get(f"{polder_secured.http_url}/api/v1/catalog", auth=(user, password), timeout=60)
        assert response.status_code == 200, response.text
        schema = next(s for s in response.json()["schemas"] if s["name"] == governed)
        return {t["name"]: t for t in schema["tables"]}

    as_admin = described("admin")
    assert as_admin["customers"]["row_count"] >= 4
    as_ann = described("ann")
    assert as_ann["customers"]["row_count"] is None and as_ann["customers"]["size_bytes"] is None
    assert [c["name"] for c in as_ann["customers"]["columns"]] == ["id", "region", "email", "revenue"]
    # An ungoverned table ann may read keeps its figures.
    assert as_ann["orders"]["row_count"] == 4


def test_writes_and_history_cannot_be_used_to_read_around_the_rules(polder_secured, governed):
    # bob holds ALL on customers (granted above); copying the table into itself would read it raw.
    with pg(polder_secured, "bob") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="itself"):
            conn.execute(f"INSERT INTO {governed}.customers SELECT id + 100, 'US', email, revenue FROM {governed}.customers")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="itself"):
            conn.execute(
                f"INSERT INTO {governed}.customers SELECT * FROM {governed}.customers VERSION AS OF 1"
            )
    # The commit history (operation parameters, row metrics) is for admins on a governed table.
    with pg(polder_secured, "ann") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="history"):
            conn.execute(f"DESCRIBE HISTORY {governed}.customers")
    # EXPLAIN ANALYZE would run the write it explains: refused for everyone.
    with pg(polder_secured, "admin") as conn:
        with pytest.raises(psycopg.Error, match="EXPLAIN ANALYZE"):
            conn.execute(f"EXPLAIN ANALYZE DELETE FROM {governed}.customers")
        conn.execute(f"EXPLAIN DELETE FROM {governed}.customers WHERE id = -1")
        assert conn.execute(f"SELECT count(*) FROM {governed}.customers").fetchone()[0] >= 5
