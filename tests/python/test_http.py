"""The HTTP API: POST /api/v1/sql in four formats, errors, catalog, probes and metrics."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute
import pyarrow.ipc
import pyarrow.parquet
import pytest
import requests

ARROW_STREAM = "application/vnd.apache.arrow.stream"


def post_sql(polder, sql: str, *, accept: str | None = None, fmt: str | None = None, timeout: float = 60) -> requests.Response:
    headers = {"Accept": accept} if accept else {}
    params = {"format": fmt} if fmt else None
    return requests.post(f"{polder.http_url}/api/v1/sql", json={"sql": sql}, headers=headers, params=params, timeout=timeout)


def json_body(response: requests.Response) -> dict:
    return json.loads(response.content, parse_float=Decimal)


# --- formats ---------------------------------------------------------------------------------


def test_json_shape(polder):
    response = post_sql(polder, "SELECT country, customers, revenue FROM gold.revenue_by_country ORDER BY country")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = json_body(response)
    assert set(body) == {"columns", "rows", "row_count"}
    assert [c["name"] for c in body["columns"]] == ["country", "customers", "revenue"]
    assert all(isinstance(c["type"], str) and c["type"] for c in body["columns"])
    assert body["row_count"] == len(body["rows"]) == polder.catalog_table("gold", "revenue_by_country")["row_count"]
    with polder.connect() as pg:
        expected = pg.execute("SELECT country, customers, revenue FROM gold.revenue_by_country ORDER BY country").fetchall()
    assert [(r["country"], r["customers"], r["revenue"]) for r in body["rows"]] == expected


def test_json_nulls_and_types(polder):
    body = json_body(post_sql(polder, "SELECT 1 AS i, 'x' AS s, CAST(NULL AS INT) AS n, true AS b, DATE '2024-01-02' AS d"))
    assert body["rows"] == [{"i": 1, "s": "x", "n": None, "b": True, "d": "2024-01-02"}]
    assert body["row_count"] == 1


# A query over several types (date, text, integers, decimals, a NULL column).
FORMAT_QUERY = (
    "SELECT month, channel, orders, revenue, return_rate, CAST(NULL AS BIGINT) AS nothing "
    "FROM gold.channel_performance ORDER BY month, channel"
)


def _canonical(value, kind: str):
    """One representation per value, whatever format it came from."""
    if value is None or value == "" and kind != "text":
        return None
    if kind == "number":
        return Decimal(str(value)).normalize()
    if kind == "date":
        return value.isoformat() if isinstance(value, dt.date) else str(value)
    if kind == "bool":
        return value if isinstance(value, bool) else {"true": True, "false": False}[value]
    return str(value)


def _kind(arrow_type_name: str) -> str:
    if arrow_type_name.startswith(("Int", "UInt", "Float", "Decimal")):
        return "number"
    if arrow_type_name.startswith("Date"):
        return "date"
    if arrow_type_name == "Boolean":
        return "bool"
    return "text"


def _canonical_rows(rows: list[list], kinds: list[str]) -> list[tuple]:
    return [tuple(_canonical(v, k) for v, k in zip(row, kinds)) for row in rows]


def test_four_formats_give_the_same_rows(polder):
    as_json = json_body(post_sql(polder, FORMAT_QUERY))
    names = [c["name"] for c in as_json["columns"]]
    kinds = [_kind(c["type"]) for c in as_json["columns"]]
    assert kinds == ["date", "text", "number", "number", "number", "number"]
    json_rows = _canonical_rows([[r[n] for n in names] for r in as_json["rows"]], kinds)
    assert len(json_rows) == as_json["row_count"] == polder.catalog_table("gold", "channel_performance")["row_count"]

    response = post_sql(polder, FORMAT_QUERY, accept="text/csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    reader = csv.reader(io.StringIO(response.content.decode("utf-8")))
    header, *csv_values = list(reader)
    assert header == names
    csv_rows = _canonical_rows(csv_values, kinds)

    response = post_sql(polder, FORMAT_QUERY, accept=ARROW_STREAM)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(ARROW_STREAM)
    arrow_table = pyarrow.ipc.open_stream(response.content).read_all()
    assert arrow_table.column_names == names
    arrow_rows = _canonical_rows([list(r.values()) for r in arrow_table.to_pylist()], kinds)

    response = post_sql(polder, FORMAT_QUERY, fmt="parquet")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/vnd.apache.parquet")
    parquet_table = pyarrow.parquet.read_table(io.BytesIO(response.content))
    assert parquet_table.column_names == names
    parquet_rows = _canonical_rows([list(r.values()) for r in parquet_table.to_pylist()], kinds)

    assert json_rows == csv_rows
    assert json_rows == arrow_rows
    assert json_rows == parquet_rows
    assert arrow_table.schema.equals(parquet_table.schema) or [f.type for f in arrow_table.schema] == [
        f.type for f in parquet_table.schema
    ]

    with polder.connect() as pg:
        expected = pg.execute(FORMAT_QUERY).fetchall()
    assert json_rows == _canonical_rows([list(r) for r in expected], kinds)


def test_format_in_body_and_empty_result(polder):
    response = requests.post(
        f"{polder.http_url}/api/v1/sql",
        json={"sql": "SELECT country, customers FROM gold.revenue_by_country WHERE customers < 0", "format": "csv"},
        timeout=60,
    )
    assert response.status_code == 200
    assert response.text.splitlines() == ["country,customers"]  # a header even without rows
    body = json_body(post_sql(polder, "SELECT country FROM gold.revenue_by_country WHERE customers < 0"))
    assert body["rows"] == [] and body["row_count"] == 0


def test_large_result_arrow(polder):
    expected = polder.catalog_table("bronze", "shop_order_items")["row_count"]
    response = post_sql(polder, "SELECT * FROM bronze.shop_order_items", accept=ARROW_STREAM)
    assert response.status_code == 200
    table = pyarrow.ipc.open_stream(response.content).read_all()
    assert table.num_rows == expected
    body = json_body(post_sql(polder, "SELECT sum(quantity) AS q FROM bronze.shop_order_items"))
    assert pa.compute.sum(table.column("quantity")).as_py() == body["rows"][0]["q"]


def test_statements_and_commands(polder, schema):
    body = post_sql(polder, f"CREATE TABLE {schema}.t (id BIGINT, name TEXT)").json()
    assert body == {"command": "CREATE TABLE", "rows_affected": None}
    body = post_sql(polder, f"INSERT INTO {schema}.t VALUES (1, 'a'), (2, 'b'), (3, 'c')").json()
    assert body == {"command": "INSERT", "rows_affected": 3}
    body = post_sql(polder, f"UPDATE {schema}.t SET name = 'B' WHERE id = 2; DELETE FROM {schema}.t WHERE id = 3").json()
    assert body == {"command": "DELETE", "rows_affected": 1}  # the last statement's result
    body = json_body(post_sql(polder, f"SELECT id, name FROM {schema}.t ORDER BY id"))
    assert body["rows"] == [{"id": 1, "name": "a"}, {"id": 2, "name": "B"}]


# --- errors ----------------------------------------------------------------------------------

ERROR_CASES = [
    ("unknown_table", {"sql": "SELECT * FROM no_such_table_e2e"}, None, 404, "42P01"),
    ("syntax_error", {"sql": "SELEC 1"}, None, 400, "42601"),
    ("unknown_column", {"sql": "SELECT no_such_column FROM gold.daily_revenue"}, None, 400, "42703"),
    ("unknown_format", {"sql": "SELECT 1"}, {"format": "xml"}, 400, None),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_errors_are_4xx_with_code_and_message(polder, case):
    _, payload, params, status, sqlstate = case
    response = requests.post(f"{polder.http_url}/api/v1/sql", json=payload, params=params, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if sqlstate:
        assert error.get("sqlstate") == sqlstate


def test_malformed_body_is_400(polder):
    response = requests.post(f"{polder.http_url}/api/v1/sql", data=b"not json", timeout=60)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] and error["message"]


def test_unknown_endpoint_is_404(polder):
    response = requests.get(f"{polder.http_url}/api/v1/no-such-endpoint", timeout=60)
    assert response.status_code == 404
    assert response.json()["error"]["code"]


def test_runtime_error_is_4xx(polder):
    """An error raised while the first batch is computed (division by zero) is an error answer too."""
    response = post_sql(polder, "SELECT 1 / 0 AS x")
    assert 400 <= response.status_code < 500, f"{response.status_code}: {response.text}"
    error = response.json()["error"]
    assert error["code"] and "zero" in error["message"].lower()


def test_runtime_error_is_reported_in_json_body(polder):
    response = post_sql(polder, "SELECT 1 / 0 AS x")
    body = response.json()
    assert "error" in body, body
    assert body["error"]["code"] and "zero" in body["error"]["message"].lower()


@pytest.mark.parametrize("fmt", ["csv", "arrow", "parquet"])
def test_runtime_error_is_not_silent_in_binary_formats(polder, fmt):
    """A failing result in a format that cannot carry an error must not look like a complete one."""
    try:
        response = post_sql(polder, "SELECT 1 / 0 AS x", fmt=fmt)
    except requests.exceptions.ChunkedEncodingError:
        return  # the stream was cut: the client sees the failure
    if response.status_code >= 400:
        return
    raise AssertionError(f"{fmt}: status {response.status_code} with a complete body {response.content[:200]!r}")


# --- catalog, probes, metrics ----------------------------------------------------------------


def test_catalog_lists_daily_revenue(polder):
    response = requests.get(f"{polder.http_url}/api/v1/catalog", timeout=60)
    assert response.status_code == 200
    body = response.json()
    schemas = {s["name"]: s for s in body["schemas"]}
    assert {"bronze", "silver", "gold", "public"} <= set(schemas)
    tables = {t["name"]: t for t in schemas["gold"]["tables"]}
    daily = tables["daily_revenue"]
    count = json_body(post_sql(polder, "SELECT count(*) AS n FROM gold.daily_revenue"))["rows"][0]["n"]
    assert daily["row_count"] == count > 0
    latest = json_body(post_sql(polder, "SELECT max(version) AS v FROM table_history('gold.daily_revenue')"))["rows"][0]["v"]
    assert daily["version"] == latest
    columns = json_body(post_sql(polder, "SELECT * FROM gold.daily_revenue LIMIT 0"))["columns"]
    assert [c["name"] for c in daily["columns"]] == [c["name"] for c in columns]
    assert [c["data_type"] for c in daily["columns"]] == [c["type"] for c in columns]


def test_catalog_follows_writes(polder, schema):
    post_sql(polder, f"CREATE TABLE {schema}.t (id BIGINT)")
    post_sql(polder, f"INSERT INTO {schema}.t VALUES (1), (2)")
    post_sql(polder, f"INSERT INTO {schema}.t VALUES (3)")
    post_sql(polder, f"CREATE VIEW {schema}.v AS SELECT id FROM {schema}.t")
    table = polder.catalog_table(schema, "t")
    assert table["row_count"] == 3
    assert table["version"] == 2
    assert table["kind"] == "table"
    assert polder.catalog_table(schema, "v")["kind"] == "view"


def test_health_and_ready(polder):
    health = requests.get(f"{polder.http_url}/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    ready = requests.get(f"{polder.http_url}/ready", timeout=10)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def _http_ok_count(text: str) -> float:
    match = re.search(r'^polder_queries_total\{interface="http",outcome="ok"\} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_queries(polder):
    before = requests.get(f"{polder.http_url}/metrics", timeout=10)
    assert before.status_code == 200
    assert "polder_queries_total" in before.text
    assert post_sql(polder, "SELECT 1").status_code == 200
    assert post_sql(polder, "SELECT 2").status_code == 200
    after = requests.get(f"{polder.http_url}/metrics", timeout=10).text
    assert "# TYPE polder_queries_total counter" in after
    assert _http_ok_count(after) >= _http_ok_count(before.text) + 2


def test_openapi_document_describes_the_running_api(polder):
    response = requests.get(f"{polder.http_url}/api/v1/openapi.json", timeout=60)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert document["openapi"].startswith("3.1")
    assert {"/api/v1/sql", "/api/v1/connections", "/api/v1/projects/{name}/{command}"} <= set(document["paths"])
    assert "post" in document["paths"]["/api/v1/sql"]
