"""The web UI's server side, through its REST API: static files, saved queries, charts (and the
SQL they run), dashboards with filters and sharing, the row cap of SQL results.

Chart results are checked against the same aggregate written by hand in SQL, so a chart can
never quietly draw different numbers than a query would return.
"""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request

import pytest

from conftest import _running_polder

ADMIN_PASSWORD = "ui-admin-secret-77"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {"POLDER_AUTH_ENABLED": "true", "POLDER_ADMIN_PASSWORD": ADMIN_PASSWORD}
    with _running_polder(tmp_path_factory, demo=True, env_overrides=env) as running:
        yield running


class Client:
    """One logged-in user of the REST API."""

    def __init__(self, base: str, user: str, password: str):
        self.base = base
        self.token = None
        status, body = self.call("POST", "/api/v1/login", {"username": user, "password": password})
        assert status == 200, body
        self.token = body["token"]

    def call(self, method: str, path: str, body=None, headers=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw = response.read()
                return response.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as err:
            raw = err.read()
            return err.code, (json.loads(raw) if raw else None)

    def ok(self, method: str, path: str, body=None):
        status, answer = self.call(method, path, body)
        assert 200 <= status < 300, (status, answer)
        return answer

    def sql(self, query: str) -> list[dict]:
        """A query's rows (a statement without rows answers an empty list)."""
        return self.ok("POST", "/api/v1/sql", {"sql": query}).get("rows", [])


@pytest.fixture(scope="module")
def admin(server) -> Client:
    return Client(server.http_url, "admin", ADMIN_PASSWORD)


def make_user(admin: Client, server, name: str, role: str) -> Client:
    password = f"{name}-password-123"
    admin.ok("POST", "/api/v1/users", {"name": name, "role": role, "password": password})
    return Client(server.http_url, name, password)


def raw_get(url: str, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def test_the_ui_is_served_without_credentials_with_a_strict_content_policy(server):
    status, headers, body = raw_get(server.http_url + "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b"/assets/app.js" in body
    policy = headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-eval" not in policy

    status, headers, body = raw_get(server.http_url + "/assets/app.js", {"Accept-Encoding": "gzip"})
    assert status == 200
    assert "javascript" in headers["Content-Type"]
    assert headers.get("Content-Encoding") == "gzip"
    assert b"import" in gzip.decompress(body)

    # Revalidation: the same ETag answers 304 with no body.
    etag = headers["ETag"]
    status, _, body = raw_get(server.http_url + "/assets/app.js", {"If-None-Match": etag})
    assert status == 304 and body == b""

    status, headers, _ = raw_get(server.http_url + "/vendor/echarts/echarts.min.js")
    assert status == 200 and "javascript" in headers["Content-Type"]
    status, _, body = raw_get(server.http_url + "/vendor/echarts/LICENSE")
    assert status == 200 and b"Apache License" in body

    status, _, body = raw_get(server.http_url + "/assets/no-such-file.js")
    assert status == 404
    assert json.loads(body)["error"]["code"] == "not_found"
    # The API itself still needs credentials.
    status, _, _ = raw_get(server.http_url + "/api/v1/charts")
    assert status == 401


def test_me_tells_the_caller_and_its_role(server, admin):
    assert admin.ok("GET", "/api/v1/me") == {"user": "admin", "role": "admin", "auth_enabled": True}
    tokens = admin.ok("GET", "/api/v1/tokens")["tokens"]
    assert any(t["kind"] == "session" and t["user"] == "admin" for t in tokens)
    assert all("secret" not in json.dumps(t).lower() for t in tokens)


def test_sql_results_are_capped_on_request(admin):
    answer = admin.ok("POST", "/api/v1/sql", {"sql": "SELECT * FROM generate_series(1, 250000) AS t(n)", "max_rows": 1000})
    assert answer["row_count"] == 1000
    assert len(answer["rows"]) == 1000
    assert answer["truncated"] is True
    # Exactly at the cap is not truncated.
    answer = admin.ok("POST", "/api/v1/sql?max_rows=10", {"sql": "SELECT * FROM generate_series(1, 10) AS t(n)"})
    assert answer["row_count"] == 10 and "truncated" not in answer


def test_saved_queries_belong_to_their_owner(server, admin):
    created = admin.ok("POST", "/api/v1/saved-queries", {"name": "Big countries", "sql": "SELECT 1 AS x"})
    assert created["owner"] == "admin" and created["sql"] == "SELECT 1 AS x"
    analyst = make_user(admin, server, "ana_saved", "analyst")
    mine = analyst.ok("POST", "/api/v1/saved-queries", {"name": "Mine", "sql": "SELECT 2 AS y"})
    listed = [q["name"] for q in analyst.ok("GET", "/api/v1/saved-queries")["saved_queries"]]
    assert listed == ["Mine"]
    status, body = analyst.call("GET", f"/api/v1/saved-queries/{created['id']}")
    assert status == 404
    status, body = analyst.call("PUT", f"/api/v1/saved-queries/{created['id']}", {"name": "x", "sql": "SELECT 3"})
    assert status == 404
    # Admins see everyone's.
    names = {q["name"] for q in admin.ok("GET", "/api/v1/saved-queries")["saved_queries"]}
    assert {"Big countries", "Mine"} <= names
    updated = analyst.ok("PUT", f"/api/v1/saved-queries/{mine['id']}", {"name": "Mine v2", "sql": "SELECT 3 AS z"})
    assert updated["name"] == "Mine v2" and updated["sql"] == "SELECT 3 AS z"
    status, body = analyst.call("POST", "/api/v1/saved-queries", {"name": " ", "sql": "SELECT 1"})
    assert status == 400 and "name" in body["error"]["message"]
    assert analyst.ok("DELETE", f"/api/v1/saved-queries/{mine['id']}") == {"deleted": mine["id"]}


def by_key(rows, *keys):
    return {tuple(row[k] for k in keys): row for row in rows}


def test_a_chart_draws_what_the_same_sql_returns(admin):
    spec = {
        "type": "stacked_bar",
        "source": {"table": "gold.sales"},
        "dimensions": [{"column": "order_date", "time_grain": "quarter"}, {"column": "channel"}],
        "measures": [{"agg": "sum", "column": "revenue", "label": "Revenue"}, {"agg": "count"}],
        "filters": [{"column": "country", "op": "in", "value": ["Germany", "France"]}],
    }
    answer = admin.ok("POST", "/api/v1/charts/data", {"spec": spec})
    assert [c["name"] for c in answer["columns"]] == ["order_date", "channel", "Revenue", "count"]
    assert answer["truncated"] is False and answer["ignored_filters"] == []
    expected = admin.sql(
        "SELECT CAST(date_trunc('quarter', order_date) AS DATE) AS q, channel, CAST(sum(revenue) AS DOUBLE) AS revenue, count(*) AS n "
        "FROM gold.sales WHERE country IN ('Germany', 'France') GROUP BY 1, 2"
    )
    assert len(expected) > 4
    drawn = by_key(answer["rows"], "order_date", "channel")
    assert len(drawn) == len(expected)
    for row in expected:
        got = drawn[(row["q"], row["channel"])]
        assert got["count"] == row["n"]
        assert got["Revenue"] == pytest.approx(row["revenue"])
    # Time runs forward.
    dates = [row["order_date"] for row in answer["rows"]]
    assert dates == sorted(dates)


def test_dashboard_filters_apply_where_the_column_exists(admin):
    spec = {"type": "bar", "source": {"table": "gold.revenue_by_country"},
            "dimensions": [{"column": "country"}], "measures": [{"agg": "sum", "column": "orders", "label": "Orders"}]}
    everything = admin.ok("POST", "/api/v1/charts/data", {"spec": spec})
    filtered = admin.ok("POST", "/api/v1/charts/data", {
        "spec": spec,
        "filters": [{"column": "country", "op": "=", "value": "Netherlands"},
                    {"column": "channel", "op": "=", "value": "web"},
                    {"column": "segment", "op": "=", "value": ""}],
    })
    assert len(everything["rows"]) == 8
    assert [r["country"] for r in filtered["rows"]] == ["Netherlands"]
    assert filtered["ignored_filters"] == ["channel"]
    expected = admin.sql("SELECT orders FROM gold.revenue_by_country WHERE country = 'Netherlands'")[0]["orders"]
    assert filtered["rows"][0]["Orders"] == expected
    # Largest first when no sort is given.
    orders = [r["Orders"] for r in everything["rows"]]
    assert orders == sorted(orders, reverse=True)


@pytest.mark.parametrize("spec, message", [
    ({"type": "pie", "source": {"table": "gold.sales"}, "dimensions": [], "measures": []}, "a pie chart needs"),
    ({"type": "bar", "source": {"table": "gold.sales"}, "dimensions": [{"column": "nope"}], "measures": [{"agg": "count"}]},
     "column 'nope' is not in the chart's source"),
    ({"type": "bar", "source": {"table": "gold.no_such_table"}, "dimensions": [{"column": "x"}], "measures": [{"agg": "count"}]},
     "no_such_table"),
    ({"type": "bar", "source": {"table": "gold.sales"}, "dimensions": [{"column": "country"}],
      "measures": [{"agg": "count"}], "filters": [{"column": "orders", "op": "=", "value": "not a number"}]}, "not a number"),
    ({"type": "donut", "source": {"table": "gold.sales"}}, "donut"),
])
def test_bad_chart_specs_get_a_clear_error(admin, spec, message):
    status, body = admin.call("POST", "/api/v1/charts/data", {"spec": spec})
    assert 400 <= status < 500, (status, body)
    assert message in body["error"]["message"]


def test_a_chart_over_a_saved_query(admin):
    query = admin.ok("POST", "/api/v1/saved-queries", {
        "name": "Segments", "sql": "SELECT segment, revenue FROM gold.customer_lifetime_value;"})
    spec = {"type": "pie", "source": {"saved_query": query["id"]},
            "dimensions": [{"column": "segment"}], "measures": [{"agg": "avg", "column": "revenue", "label": "avg"}]}
    answer = admin.ok("POST", "/api/v1/charts/data", {"spec": spec})
    expected = admin.sql("SELECT segment, CAST(avg(revenue) AS DOUBLE) AS a FROM gold.customer_lifetime_value GROUP BY 1")
    drawn = by_key(answer["rows"], "segment")
    assert set(drawn) == {(r["segment"],) for r in expected}
    for row in expected:
        assert drawn[(row["segment"],)]["avg"] == pytest.approx(row["a"])


def test_the_demo_dashboard_draws_every_chart(admin):
    dashboards = admin.ok("GET", "/api/v1/dashboards")["dashboards"]
    demo = next(d for d in dashboards if d["name"] == "Shop overview")
    full = admin.ok("GET", f"/api/v1/dashboards/{demo['id']}")
    assert len(full["tiles"]) >= 6 and len(full["charts"]) == len(full["tiles"])
    types = {chart["spec"]["type"] for chart in full["charts"]}
    assert len(types) >= 5, types
    for chart in full["charts"]:
        answer = admin.ok("POST", f"/api/v1/charts/{chart['id']}/data", {"filters": [{"column": "country", "op": "=", "value": "Germany"}]})
        assert answer["row_count"] > 0, chart["name"]
    values = admin.ok("GET", f"/api/v1/dashboards/{demo['id']}/values?column=country")["values"]
    assert "Netherlands" in values and values == sorted(values)
    assert admin.ok("GET", f"/api/v1/dashboards/{demo['id']}/values?column=nothing_has_this")["values"] == []


def test_dashboards_are_shared_and_viewers_see_only_theirs(server, admin):
    chart = admin.ok("POST", "/api/v1/charts", {"name": "Orders by country", "spec": {
        "type": "bar", "source": {"table": "gold.revenue_by_country"},
        "dimensions": [{"column": "country"}], "measures": [{"agg": "sum", "column": "orders"}]}})
    private_chart = admin.ok("POST", "/api/v1/charts", {"name": "Private", "spec": {
        "type": "big_number", "source": {"table": "gold.sales"}, "measures": [{"agg": "sum", "column": "revenue"}]}})
    shared = admin.ok("POST", "/api/v1/dashboards", {
        "name": "For viewers", "tiles": [{"chart_id": chart["id"], "x": 0, "y": 0, "w": 6, "h": 4}],
        "shared_with": ["user:vera"]})
    admin.ok("POST", "/api/v1/dashboards", {
        "name": "Not shared", "tiles": [{"chart_id": private_chart["id"], "x": 0, "y": 0, "w": 6, "h": 4}]})
    vera = make_user(admin, server, "vera", "viewer")

    assert [d["name"] for d in vera.ok("GET", "/api/v1/dashboards")["dashboards"]] == ["For viewers"]
    assert [c["name"] for c in vera.ok("GET", "/api/v1/charts")["charts"]] == ["Orders by country"]
    # The shared chart draws with its owner's rights, though a viewer may not read the table.
    drawn = vera.ok("POST", f"/api/v1/charts/{chart['id']}/data", {})
    assert drawn["row_count"] == 8
    status, body = vera.call("POST", "/api/v1/sql", {"sql": "SELECT * FROM gold.revenue_by_country"})
    assert status == 403
    # Everything else stays out of reach.
    assert vera.call("POST", f"/api/v1/charts/{private_chart['id']}/data", {})[0] == 404
    assert vera.call("POST", "/api/v1/charts/data", {"spec": chart["spec"]})[0] == 403
    assert vera.call("POST", "/api/v1/charts", {"name": "x", "spec": chart["spec"]})[0] == 403
    assert vera.call("PUT", f"/api/v1/dashboards/{shared['id']}", {"name": "mine now"})[0] == 403
    assert vera.call("DELETE", f"/api/v1/charts/{chart['id']}")[0] == 403
    assert vera.call("GET", "/api/v1/saved-queries")[0] == 403

    # Sharing with a role works too; bad share entries and tiles are refused.
    status, body = admin.call("PUT", f"/api/v1/dashboards/{shared['id']}", {**shared, "shared_with": ["team:x"]})
    assert status == 400 and "cannot share with 'team:x'" in body["error"]["message"]
    status, body = admin.call("PUT", f"/api/v1/dashboards/{shared['id']}", {
        **shared, "tiles": [{"chart_id": chart["id"], "x": 10, "y": 0, "w": 6, "h": 4}]})
    assert status == 400 and "12-column grid" in body["error"]["message"]
    admin.ok("PUT", f"/api/v1/dashboards/{shared['id']}", {**shared, "shared_with": ["role:viewer"]})
    assert [d["name"] for d in vera.ok("GET", "/api/v1/dashboards")["dashboards"]] == ["For viewers"]
    # Who a dashboard is shared with is in the audit log.
    audited = admin.sql("SELECT user_name, statement FROM system.audit WHERE action = 'dashboard'")
    assert {"user_name": "admin", "statement": f"change dashboard 'For viewers' ({shared['id']}), shared with [role:viewer]"} in audited


def test_row_policies_apply_to_whoever_looks_at_a_shared_chart(server, admin):
    admin.sql("CREATE TABLE bronze.ui_regions AS SELECT * FROM (VALUES ('north', 10), ('south', 20), ('north', 5)) AS t(region, amount)")
    admin.sql("CREATE POLICY own_region ON bronze.ui_regions USING (region = current_user_attribute('region'))")
    chart = admin.ok("POST", "/api/v1/charts", {"name": "Amounts", "spec": {
        "type": "bar", "source": {"table": "bronze.ui_regions"},
        "dimensions": [{"column": "region"}], "measures": [{"agg": "sum", "column": "amount", "label": "total"}]}})
    admin.ok("POST", "/api/v1/dashboards", {
        "name": "Regions", "tiles": [{"chart_id": chart["id"], "x": 0, "y": 0, "w": 6, "h": 4}], "shared_with": ["user:nora"]})
    nora = make_user(admin, server, "nora", "viewer")
    admin.ok("PUT", "/api/v1/users/nora/attributes", {"region": "north"})
    seen = nora.ok("POST", f"/api/v1/charts/{chart['id']}/data", {})["rows"]
    assert seen == [{"region": "north", "total": 15.0}]
    # Its owner (an admin) sees every row.
    assert len(admin.ok("POST", f"/api/v1/charts/{chart['id']}/data", {})["rows"]) == 2


def test_a_chart_whose_table_is_gone_fails_alone(admin):
    admin.sql("CREATE TABLE bronze.ui_doomed AS SELECT 1 AS a")
    doomed = admin.ok("POST", "/api/v1/charts", {"name": "Doomed", "spec": {
        "type": "table", "source": {"table": "bronze.ui_doomed"}, "dimensions": [{"column": "a"}]}})
    admin.sql("DROP TABLE bronze.ui_doomed")
    status, body = admin.call("POST", f"/api/v1/charts/{doomed['id']}/data", {})
    assert 400 <= status < 500
    assert "ui_doomed" in body["error"]["message"]
    # The server keeps serving.
    assert admin.sql("SELECT 1 AS one") == [{"one": 1}]


def test_a_query_whose_client_goes_away_is_cancelled(server, admin):
    """SQL Lab's Cancel aborts the request; the server must stop the query, not finish it."""
    import socket
    import time

    marker = "ui_cancel_marker_4711"
    body = json.dumps({"sql": f"SELECT count(*) AS {marker} FROM generate_series(1, 5000000000) AS t(n)"}).encode()
    request = (
        f"POST /api/v1/sql HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {admin.token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as connection:
        connection.sendall(request)
        time.sleep(1.0)
    deadline = time.monotonic() + 30
    status = None
    while time.monotonic() < deadline:
        rows = admin.sql(
            f"SELECT status FROM system.queries WHERE statement LIKE '%{marker} FROM%' AND statement NOT LIKE '%system.queries%'")
        if rows and rows[0]["status"] != "running":
            status = rows[0]["status"]
            break
        time.sleep(0.3)
    assert status == "cancelled", status
