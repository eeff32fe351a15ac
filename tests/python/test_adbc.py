"""ADBC Flight SQL driver (DB-API) against the Flight SQL listener.

Placeholders: DataFusion numbers them ($1, $2, ...); that is the style tested here. (The
ADBC DB-API module advertises paramstyle 'qmark', but a `?` placeholder is a syntax error
for DataFusion's parser.)
"""

from __future__ import annotations

import json
import urllib.request

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pyarrow as pa
import pyarrow.ipc
import pytest


@pytest.fixture(scope="module")
def conn(polder):
    connection = flightsql.connect(polder.flight_uri, autocommit=True)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def cur(conn):
    cursor = conn.cursor()
    try:
        yield cursor
    finally:
        cursor.close()


def query(cur, sql: str, parameters=None) -> pa.Table:
    if parameters is None:
        cur.execute(sql)
    else:
        cur.execute(sql, parameters=parameters)
    return cur.fetch_arrow_table()


def rows_of(table: pa.Table) -> list[tuple]:
    return [tuple(row.values()) for row in table.to_pylist()]


DAILY = "SELECT * FROM gold.daily_revenue ORDER BY order_date"


def test_query_returns_arrow_table(polder, cur):
    table = query(cur, DAILY)
    catalog = polder.catalog_table("gold", "daily_revenue")
    assert table.num_rows == catalog["row_count"] > 0
    assert table.column_names == [c["name"] for c in catalog["columns"]]
    assert table.schema.field("order_date").type == pa.date32()
    assert table.schema.field("orders").type == pa.int64()
    assert table.schema.field("revenue").type == pa.decimal128(14, 2)


def test_result_equals_psycopg(polder, cur):
    table = query(cur, DAILY)
    with polder.connect() as pg:
        expected = pg.execute(DAILY).fetchall()
    assert rows_of(table) == expected


def test_fetchall_dbapi_rows(polder, cur):
    sql = "SELECT country, customers, revenue FROM gold.revenue_by_country ORDER BY country"
    cur.execute(sql)
    rows = cur.fetchall()
    with polder.connect() as pg:
        assert rows == pg.execute(sql).fetchall()
    assert [d[0] for d in cur.description] == ["country", "customers", "revenue"]


def test_parameters_with_dollar_placeholders(cur):
    everything = rows_of(query(cur, "SELECT order_date, orders FROM gold.daily_revenue ORDER BY order_date"))
    threshold = sorted(r[1] for r in everything)[len(everything) // 2]
    since = everything[len(everything) // 3][0]
    expected = [r for r in everything if r[1] > threshold and r[0] >= since]
    assert 0 < len(expected) < len(everything)
    table = query(
        cur,
        "SELECT order_date, orders FROM gold.daily_revenue WHERE orders > $1 AND order_date >= $2 ORDER BY order_date",
        parameters=(threshold, since),
    )
    assert rows_of(table) == expected

    country = rows_of(query(cur, "SELECT country FROM gold.revenue_by_country ORDER BY country"))[-1][0]
    table = query(cur, "SELECT country FROM gold.revenue_by_country WHERE country = $1", parameters=(country,))
    assert rows_of(table) == [(country,)]


def test_get_objects(polder, conn):
    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    assert [c["catalog_name"] for c in objects] == ["polder"]
    schemas = {s["db_schema_name"]: s for s in objects[0]["catalog_db_schemas"]}
    assert {"bronze", "silver", "gold", "public"} <= set(schemas)
    gold = sorted(t["table_name"] for t in schemas["gold"]["db_schema_tables"])
    assert gold == polder.catalog_tables("gold") and "daily_revenue" in gold

    detailed = conn.adbc_get_objects(
        depth="all", catalog_filter="polder", db_schema_filter="gold", table_name_filter="daily_revenue"
    ).read_all().to_pylist()
    (table,) = detailed[0]["catalog_db_schemas"][0]["db_schema_tables"]
    assert table["table_name"] == "daily_revenue"
    assert [c["column_name"] for c in table["table_columns"]] == [
        c["name"] for c in polder.catalog_table("gold", "daily_revenue")["columns"]
    ]


def test_get_table_schema(polder, conn, cur):
    schema = conn.adbc_get_table_schema("daily_revenue", db_schema_filter="gold")
    result_schema = query(cur, "SELECT * FROM gold.daily_revenue LIMIT 0").schema
    assert schema.names == result_schema.names
    assert [f.type for f in schema] == [f.type for f in result_schema]
    catalog = polder.catalog_table("gold", "daily_revenue")["columns"]
    assert [f.nullable for f in schema] == [c["nullable"] for c in catalog]
    with pytest.raises(adbc_driver_manager.Error):
        conn.adbc_get_table_schema("no_such_table_e2e", db_schema_filter="gold")


def test_ddl_and_dml_via_execute(cur, schema):
    cur.execute(f"CREATE TABLE {schema}.t (id BIGINT, name TEXT)")
    cur.execute(f"INSERT INTO {schema}.t VALUES (1, 'one'), (2, 'two'), (3, 'three')")
    cur.execute(f"UPDATE {schema}.t SET name = 'TWO' WHERE id = 2")
    cur.execute(f"DELETE FROM {schema}.t WHERE id = 3")
    assert rows_of(query(cur, f"SELECT id, name FROM {schema}.t ORDER BY id")) == [(1, "one"), (2, "TWO")]
    cur.execute(f"DROP TABLE {schema}.t")
    with pytest.raises(adbc_driver_manager.Error):
        query(cur, f"SELECT * FROM {schema}.t")


def test_dml_via_adbc_statement_execute_update(cur, schema):
    cur.execute(f"CREATE TABLE {schema}.t (id BIGINT, name TEXT)")
    statement = cur.adbc_statement
    statement.set_sql_query(f"INSERT INTO {schema}.t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    assert statement.execute_update() == 3
    statement.set_sql_query(f"DELETE FROM {schema}.t WHERE id >= 2")
    assert statement.execute_update() == 2
    # a prepared statement with one bound row of parameters
    statement.set_sql_query(f"INSERT INTO {schema}.t VALUES ($1, $2)")
    statement.prepare()
    statement.bind(pa.record_batch({"id": pa.array([10], pa.int64()), "name": pa.array(["ten"])}))
    assert statement.execute_update() == 1
    assert rows_of(query(cur, f"SELECT id, name FROM {schema}.t ORDER BY id")) == [(1, "a"), (10, "ten")]


def test_insert_with_parameters_via_execute(cur, schema):
    cur.execute(f"CREATE TABLE {schema}.t (id BIGINT, name TEXT)")
    cur.execute(f"INSERT INTO {schema}.t VALUES ($1, $2)", parameters=(1, "one"))
    cur.execute(f"UPDATE {schema}.t SET name = $1 WHERE id = $2", parameters=("uno", 1))
    assert rows_of(query(cur, f"SELECT id, name FROM {schema}.t")) == [(1, "uno")]


def test_executemany_insert(cur, schema):
    cur.execute(f"CREATE TABLE {schema}.t (id BIGINT, name TEXT)")
    rows = [(1, "one"), (2, "two"), (3, "three")]
    cur.executemany(f"INSERT INTO {schema}.t VALUES ($1, $2)", rows)
    assert rows_of(query(cur, f"SELECT id, name FROM {schema}.t ORDER BY id")) == rows


def test_time_travel_over_flight(cur, schema):
    cur.execute(f"CREATE TABLE {schema}.t (id BIGINT)")
    cur.execute(f"INSERT INTO {schema}.t VALUES (1)")
    cur.execute(f"INSERT INTO {schema}.t VALUES (2)")
    assert rows_of(query(cur, f"SELECT id FROM {schema}.t VERSION AS OF 1 ORDER BY id")) == [(1,)]
    history = query(cur, f"DESCRIBE HISTORY {schema}.t")
    assert history.column("version").to_pylist() == [2, 1, 0]


def test_unknown_table_error(conn, cur):
    with pytest.raises(adbc_driver_manager.ProgrammingError) as info:
        query(cur, "SELECT * FROM no_such_table_e2e")
    message = str(info.value)
    assert "no_such_table_e2e" in message and "not found" in message
    assert info.value.status_code == adbc_driver_manager.AdbcStatusCode.NOT_FOUND
    # the connection keeps working
    with conn.cursor() as other:
        assert rows_of(query(other, "SELECT 40 + 2 AS x")) == [(42,)]


def test_syntax_error(cur):
    with pytest.raises(adbc_driver_manager.ProgrammingError) as info:
        query(cur, "SELEC 1")
    assert "SELEC" in str(info.value)
    assert info.value.status_code == adbc_driver_manager.AdbcStatusCode.INVALID_ARGUMENT


def test_same_rows_as_http_arrow(polder, cur):
    sql = "SELECT * FROM gold.channel_performance ORDER BY month, channel"
    request = urllib.request.Request(
        f"{polder.http_url}/api/v1/sql",
        data=json.dumps({"sql": sql}).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/vnd.apache.arrow.stream"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        over_http = pyarrow.ipc.open_stream(response.read()).read_all()
    over_flight = query(cur, sql)
    assert over_flight.num_rows == over_http.num_rows > 0
    assert over_flight.to_pylist() == over_http.to_pylist()
