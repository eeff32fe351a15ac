"""Reflections and the results cache, end to end against a real `polder serve`.

Every test builds its own small sales table in its own schema (rows generated with SQL), makes
its reflections (names are global, so each carries the schema's unique name) and checks the one
promise that matters most: a query answers the same rows with acceleration as without it
(`"acceleration": false` on POST /api/v1/sql). On top of that: EXPLAIN says which reflection
served, `system.reflections` tells the truth about status, versions, refreshes and usage, bad
definitions are refused with a message naming the problem, the REST API manages reflections,
the results cache hits and never hands out a stale answer, and analysts may not manage
reflections.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import time
import uuid
from decimal import Decimal

import pytest
import requests

from conftest import SECURED_ADMIN_PASSWORD

# How long background work (refresh on commit, usage counts flushed to the catalog) may take.
POLL_SECONDS = 15.0
FLOAT_TOLERANCE = 1e-9

# The generated rows: row n happens at 2024-01-01 00:00 UTC + n half hours; country and channel
# cycle (5 x 3 combinations, all present); every 50th row has no amount.
FIRST_INSTANT = dt.datetime(2024, 1, 1)
SECONDS_APART = 1800
SALES_COLUMNS = "day DATE, ts TIMESTAMP, country VARCHAR, channel VARCHAR, amount DECIMAL(12, 2), qty INT, price DOUBLE"
SALES_ROWS = """
SELECT CAST(ts AS DATE) AS day, ts, country, channel, amount, qty, price FROM (
    SELECT CAST(to_timestamp(1704067200 + n * {seconds}) AS TIMESTAMP) AS ts,
           CASE n % 5 WHEN 0 THEN 'NL' WHEN 1 THEN 'DE' WHEN 2 THEN 'FR' WHEN 3 THEN 'ES' ELSE 'IT' END AS country,
           CASE n % 3 WHEN 0 THEN 'web' WHEN 1 THEN 'app' ELSE 'store' END AS channel,
           CASE WHEN n % 50 = 0 THEN NULL ELSE CAST((n * 37 % 1000) * 1.25 AS DECIMAL(12, 2)) END AS amount,
           CAST(n % 13 + 1 AS INT) AS qty,
           CAST(n % 89 AS DOUBLE) / 7.0 AS price
    FROM generate_series({first}, {last}) AS g(n)
) AS generated"""


# --- talking to the server ------------------------------------------------------------------


class Sql:
    """POST /api/v1/sql as one user (anonymous on a server without authentication)."""

    def __init__(self, server, auth: tuple[str, str] | None = None):
        self.server = server
        self.auth = auth

    def post(self, statement: str, *, acceleration: bool = True) -> requests.Response:
        payload = {"sql": statement}
        if not acceleration:
            payload["acceleration"] = False
        return requests.post(f"{self.server.http_url}/api/v1/sql", json=payload, auth=self.auth, timeout=120)

    def run(self, statement: str, *, acceleration: bool = True) -> dict:
        """The answer of a statement that must succeed (decimals parsed exactly)."""
        response = self.post(statement, acceleration=acceleration)
        assert response.status_code == 200, f"{statement}\n-> {response.status_code}: {response.text}"
        body = json.loads(response.content, parse_float=Decimal)
        assert "error" not in body, f"{statement}\n-> {body['error']}"
        return body

    def rows(self, statement: str, *, acceleration: bool = True) -> list[dict]:
        return self.run(statement, acceleration=acceleration)["rows"]

    def refused(self, statement: str) -> tuple[int, str]:
        """Status and error message of a statement that must fail with a 4xx."""
        response = self.post(statement)
        assert 400 <= response.status_code < 500, f"{statement}\n-> {response.status_code}: {response.text}"
        error = response.json()["error"]
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["message"], str) and error["message"]
        return response.status_code, error["message"]

    def reflection(self, name: str) -> dict | None:
        """The reflection's row in system.reflections, or None."""
        found = self.rows(f"SELECT * FROM system.reflections WHERE name = '{name}'")
        assert len(found) <= 1, found
        return found[0] if found else None

    def latest_version(self, table: str) -> int:
        return self.rows(f"SELECT max(version) AS v FROM table_history('{table}')")[0]["v"]

    def serves(self) -> bool:
        return self.rows("SELECT 1 AS one") == [{"one": 1}]


@pytest.fixture
def db(polder) -> Sql:
    return Sql(polder)


def create_sales(db: Sql, schema: str, rows: int = 4000, first: int = 1) -> str:
    """`schema.sales` with `rows` generated rows (row numbers from `first`); returns its name."""
    table = f"{schema}.sales"
    db.run(f"CREATE TABLE {table} ({SALES_COLUMNS})")
    append_sales(db, table, first, first + rows - 1)
    return table


def append_sales(db: Sql, table: str, first: int, last: int) -> None:
    body = db.run(f"INSERT INTO {table} " + SALES_ROWS.format(seconds=SECONDS_APART, first=first, last=last))
    assert body["rows_affected"] == last - first + 1, body


def instant_of(n: int) -> str:
    """The `ts` of generated row n, as a SQL timestamp literal's text."""
    return (FIRST_INSTANT + dt.timedelta(seconds=n * SECONDS_APART)).strftime("%Y-%m-%d %H:%M:%S")


def wait_for_reflection(db: Sql, name: str, condition, what: str) -> dict:
    """Polls system.reflections until the reflection's row satisfies `condition`."""
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        row = db.reflection(name)
        if row is not None and condition(row):
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"after {POLL_SECONDS:.0f} s reflection {name} is still not {what}: {row}")
        time.sleep(0.25)


def metric(server, name: str, **labels: str) -> float:
    """A Prometheus counter or gauge from /metrics, summed over the series matching `labels`
    (0 while the series does not exist yet)."""
    response = requests.get(f"{server.http_url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    total = 0.0
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$")
    for line in response.text.splitlines():
        match = pattern.match(line)
        if not match:
            continue
        present = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(present.get(key) == value for key, value in labels.items()):
            total += float(match.group(2))
    return total


# --- comparing results ----------------------------------------------------------------------


def _is_float(type_name: str) -> bool:
    return type_name.startswith("Float")


def _sort_text(value, is_float: bool) -> str:
    # Floats are rounded for ordering only, so that last-bit differences cannot reorder rows;
    # decimals are normalized so that 1.50 and 1.5 sort alike.
    if value is None:
        return ""
    if is_float:
        return f"{float(value):.9g}"
    if isinstance(value, Decimal):
        return str(value.normalize())
    return str(value)


def _sort_key(row: tuple, floats: list[bool]) -> tuple:
    return tuple((value is None, _sort_text(value, is_float)) for value, is_float in zip(row, floats))


def result(db: Sql, statement: str, *, acceleration: bool) -> tuple[list[tuple[str, str]], list[tuple]]:
    """(column names and types, rows as tuples) of a query."""
    body = db.run(statement, acceleration=acceleration)
    columns = [(c["name"], c["type"]) for c in body["columns"]]
    assert len({name for name, _ in columns}) == len(columns), f"ambiguous column names in {statement}"
    return columns, [tuple(row[name] for name, _ in columns) for row in body["rows"]]


def assert_same_rows(expected: list[tuple], actual: list[tuple], columns: list[tuple[str, str]], context: str) -> None:
    """Equal as multisets of rows: exact for everything but floats, which may differ in the last
    bits (a parallel sum adds in another order)."""
    floats = [_is_float(type_name) for _, type_name in columns]
    assert len(actual) == len(expected), f"{context}: {len(actual)} rows, expected {len(expected)}"
    for want, got in zip(sorted(expected, key=lambda r: _sort_key(r, floats)), sorted(actual, key=lambda r: _sort_key(r, floats))):
        for (name, _), is_float, x, y in zip(columns, floats, want, got):
            if is_float and x is not None and y is not None:
                assert math.isclose(float(x), float(y), rel_tol=FLOAT_TOLERANCE, abs_tol=1e-12), (
                    f"{context}: column {name}: {y} != {x} (row {got}, expected {want})"
                )
            else:
                assert x == y, f"{context}: column {name}: {y!r} != {x!r} (row {got}, expected {want})"


def assert_accelerated_equals_plain(db: Sql, statement: str) -> list[tuple]:
    """Runs the query without and with acceleration; same columns, same types, same rows.
    Returns the rows (never empty: an empty comparison would prove nothing)."""
    plain_columns, plain_rows = result(db, statement, acceleration=False)
    fast_columns, fast_rows = result(db, statement, acceleration=True)
    assert fast_columns == plain_columns, f"{statement}: columns {fast_columns} != {plain_columns}"
    assert plain_rows, f"{statement} returned no rows"
    assert_same_rows(plain_rows, fast_rows, plain_columns, statement)
    return plain_rows


# --- EXPLAIN --------------------------------------------------------------------------------


def explain(db: Sql, statement: str) -> dict[str, str]:
    """EXPLAIN's rows as {plan_type: plan}."""
    plans: dict[str, str] = {}
    for row in db.rows(f"EXPLAIN {statement}"):
        plans[row["plan_type"]] = plans.get(row["plan_type"], "") + row["plan"]
    return plans


# Whole names only: `r` must not match a plan that mentions `r_raw`.
def _reads_reflection(plans: dict[str, str], name: str) -> bool:
    pattern = re.compile(rf"polder_reflections\.{re.escape(name)}\b")
    return any(pattern.search(text) for kind, text in plans.items() if kind != "reflections")


def _says_served(note: str, name: str) -> bool:
    return re.search(rf"served by reflection {re.escape(name)}\b", note) is not None


def served_note(db: Sql, statement: str, name: str) -> str | None:
    """None when EXPLAIN says `name` served the query (and the plan reads it), else what it said."""
    plans = explain(db, statement)
    note = plans.get("reflections", "")
    if _says_served(note, name) and _reads_reflection(plans, name):
        return None
    return f"reflections row: {note!r}; plan reads polder_reflections.{name}: {_reads_reflection(plans, name)}"


def assert_served(db: Sql, statement: str, name: str) -> None:
    problem = served_note(db, statement, name)
    assert problem is None, f"{statement} was not served by {name}: {problem}"


def wait_until_served(db: Sql, statement: str, name: str) -> None:
    """After a background refresh: the catalog row may change a moment before the planner has
    re-read it, so EXPLAIN is asked again until it says `name` served (or the time is up)."""
    deadline = time.monotonic() + POLL_SECONDS
    while (problem := served_note(db, statement, name)) is not None:
        if time.monotonic() > deadline:
            raise AssertionError(f"after {POLL_SECONDS:.0f} s {statement} is still not served by {name}: {problem}")
        time.sleep(0.25)


def assert_not_served(db: Sql, statement: str, name: str, *, says_not_used: bool = True) -> str:
    """EXPLAIN does not read `name`; with `says_not_used`, its reflections row says `name` was not
    used. Returns that row's text."""
    plans = explain(db, statement)
    note = plans.get("reflections", "")
    assert not _says_served(note, name), f"{statement}: {note}"
    assert not _reads_reflection(plans, name), f"{statement} reads polder_reflections.{name}: {plans}"
    if says_not_used:
        assert re.search(rf"\b{re.escape(name)} not used", note), f"{statement}: EXPLAIN's reflections row is {note!r}"
    return note


# --- aggregate reflections ------------------------------------------------------------------

AGGREGATE_DEFINITION = (
    "AGGREGATE DIMENSIONS (day BY DAY, country, channel) "
    "MEASURES (amount (SUM, COUNT, MIN, MAX), qty (SUM, COUNT, MIN, MAX), price (SUM, COUNT))"
)

# Queries the reflection above answers: its exact groups, roll-ups, filters on dimensions, and
# every derivable aggregate.
SERVED_QUERIES = [
    "SELECT day, country, channel, sum(amount) AS amount, count(*) AS n FROM {t} GROUP BY day, country, channel",
    "SELECT date_trunc('month', day) AS month, country, sum(amount) AS amount, count(*) AS n FROM {t} GROUP BY 1, 2",
    "SELECT channel, sum(qty) AS qty, max(amount) AS top FROM {t} WHERE country = 'NL' GROUP BY channel",
    "SELECT country, count(*) AS n FROM {t} WHERE day >= DATE '2024-02-01' AND channel IN ('web', 'app') GROUP BY country",
    "SELECT count(*) AS n FROM {t}",
    "SELECT country, sum(amount) AS amount, count(amount) AS priced, sum(qty) AS qty, sum(price) AS price FROM {t} GROUP BY country",
    "SELECT channel, min(amount) AS low, max(amount) AS high, min(qty) AS few, max(qty) AS many FROM {t} GROUP BY channel",
    "SELECT country, avg(qty) AS avg_qty, avg(price) AS avg_price FROM {t} GROUP BY country",
    "SELECT channel, count(DISTINCT country) AS countries FROM {t} GROUP BY channel",
    "SELECT sum(amount) AS amount, min(qty) AS few FROM {t} WHERE country = 'FR'",
    "WITH monthly AS (SELECT date_trunc('month', day) AS month, channel, sum(qty) AS qty FROM {t} GROUP BY 1, 2) "
    "SELECT month, sum(qty) AS qty FROM monthly GROUP BY month",
]

# Queries it cannot answer exactly: they must read the source, and EXPLAIN must say so.
NOT_SERVED_QUERIES = [
    # a filter on a column that is not a dimension
    "SELECT country, sum(amount) AS amount FROM {t} WHERE qty > 5 GROUP BY country",
    # a group key that is not a dimension
    "SELECT qty, count(*) AS n FROM {t} GROUP BY qty",
    # avg of a DECIMAL is not derived from the stored sum and count
    "SELECT country, avg(amount) AS avg_amount FROM {t} GROUP BY country",
]


def test_aggregate_reflection_answers_roll_ups_and_dimension_filters_exactly(db, schema):
    """An aggregate reflection is built by CREATE REFLECTION (ready, one row per group, the
    source's version recorded); every query it may answer — exact groups, a month roll-up of
    days, filters on dimensions, count(*), sum, count, min, max, avg of integers and floats,
    count(DISTINCT dimension), a CTE — returns the same rows as without acceleration and is
    served by it per EXPLAIN; queries filtering or grouping on a non-dimension, or averaging a
    decimal, are not served and EXPLAIN says it was not used."""
    table = create_sales(db, schema)
    name = f"{schema}_agg"
    body = db.run(f"CREATE REFLECTION {name} ON {table} {AGGREGATE_DEFINITION}")
    assert body["command"] == "CREATE REFLECTION"

    row = db.reflection(name)
    assert row is not None, "the reflection is not in system.reflections"
    assert row["status"] == "ready", row
    assert row["kind"] == "aggregate"
    assert row["source"] == table
    assert row["refresh_policy"] == "on commit"
    assert row["staleness_seconds"] == 0
    groups = db.rows(f"SELECT count(*) AS n FROM (SELECT DISTINCT day, country, channel FROM {table}) AS g", acceleration=False)[0]["n"]
    assert row["rows"] == groups > 0
    assert row["size_bytes"] > 0
    assert json.loads(row["source_versions"]) == {table: db.latest_version(table)}
    assert "CREATE REFLECTION" in row["definition"].upper()
    assert row["last_refresh_kind"] == "full"
    assert row["owner"]

    not_served = []
    for query in SERVED_QUERIES:
        statement = query.format(t=table)
        assert_accelerated_equals_plain(db, statement)
        problem = served_note(db, statement, name)
        if problem is not None:
            not_served.append(f"{statement}\n    {problem}")
    assert not not_served, "queries the reflection should serve were not served:\n" + "\n".join(not_served)

    for query in NOT_SERVED_QUERIES:
        statement = query.format(t=table)
        assert_accelerated_equals_plain(db, statement)
        assert_not_served(db, statement, name)


def test_time_grains_roll_up_only_to_coarser_grains(db, schema):
    """A timestamp dimension stored BY DAY serves date_trunc to day, week, month and year, and
    gives the same rows as the plain query; an hour grain (finer than stored) is not served."""
    table = create_sales(db, schema, rows=3000)
    name = f"{schema}_daily"
    db.run(f"CREATE REFLECTION {name} ON {table} AGGREGATE DIMENSIONS (ts BY DAY, channel) MEASURES (qty (SUM, COUNT))")
    for grain in ("day", "week", "month", "year"):
        statement = f"SELECT date_trunc('{grain}', ts) AS period, channel, sum(qty) AS qty, count(*) AS n FROM {table} GROUP BY 1, 2"
        assert_accelerated_equals_plain(db, statement)
        assert_served(db, statement, name)
    finer = f"SELECT date_trunc('hour', ts) AS period, sum(qty) AS qty FROM {table} GROUP BY 1"
    assert_accelerated_equals_plain(db, finer)
    assert_not_served(db, finer, name)


# --- raw reflections ------------------------------------------------------------------------


def test_raw_reflection_with_sort_serves_point_filters(db, schema, pg):
    """A sorted raw reflection created over the PostgreSQL wire holds every row of its columns; a
    point filter and a narrow range that read only its columns return the same rows as without
    acceleration and are served by it; a query reading a column it lacks is not, and EXPLAIN
    names that column."""
    table = create_sales(db, schema)
    name = f"{schema}_raw"
    cursor = pg.execute(f"CREATE REFLECTION {name} ON {table} RAW COLUMNS (ts, country, channel, amount, qty) SORT BY (country, ts)")
    # The PostgreSQL command tag may carry a row count after the command ("CREATE REFLECTION 4000").
    assert cursor.statusmessage.startswith("CREATE REFLECTION"), cursor.statusmessage
    row = db.reflection(name)
    assert row["status"] == "ready" and row["kind"] == "raw", row
    assert row["rows"] == 4000

    # Row 101 is the only row at its instant (and is in DE).
    point = f"SELECT ts, country, channel, amount, qty FROM {table} WHERE ts = TIMESTAMP '{instant_of(101)}'"
    rows = assert_accelerated_equals_plain(db, point)
    assert len(rows) == 1 and rows[0][1] == "DE", rows
    assert_served(db, point, name)

    narrow = (
        f"SELECT ts, amount, qty FROM {table} WHERE country = 'DE' "
        f"AND ts >= TIMESTAMP '{instant_of(1000)}' AND ts < TIMESTAMP '{instant_of(1100)}'"
    )
    rows = assert_accelerated_equals_plain(db, narrow)
    assert len(rows) == 20  # rows 1001, 1006, ..., 1096
    assert_served(db, narrow, name)

    wider = f"SELECT ts, price FROM {table} WHERE ts = TIMESTAMP '{instant_of(101)}'"
    assert_accelerated_equals_plain(db, wider)
    note = assert_not_served(db, wider, name)
    assert "price" in note, note


def test_raw_reflection_partitioned_by_a_text_column_serves_queries_reading_it(db, schema):
    """PARTITION BY a text column keeps the reflection usable for queries that read and filter
    on that column: same rows as without acceleration, served by the reflection."""
    table = create_sales(db, schema, rows=2000)
    name = f"{schema}_parted"
    db.run(f"CREATE REFLECTION {name} ON {table} RAW COLUMNS (country, channel, qty) PARTITION BY (channel) SORT BY (country)")
    assert db.reflection(name)["rows"] == 2000
    query = f"SELECT channel, country, qty FROM {table} WHERE channel = 'web' AND country = 'NL'"
    rows = assert_accelerated_equals_plain(db, query)
    assert {(row[0], row[1]) for row in rows} == {("web", "NL")}
    assert_served(db, query, name)


# --- freshness ------------------------------------------------------------------------------

FRESHNESS_QUERY = (
    "SELECT date_trunc('month', ts) AS month, country, sum(amount) AS amount, sum(qty) AS qty, count(*) AS n "
    "FROM {t} GROUP BY 1, 2"
)


def _total(rows: list[tuple], index: int) -> int:
    return sum(row[index] for row in rows)


def test_on_commit_reflection_is_never_stale_and_refreshes_incrementally_then_fully(polder, db, schema):
    """Default freshness: right after an INSERT the accelerated answer already includes the new
    rows (the reflection is not used while it lags); within seconds the reflection is refreshed
    incrementally (higher data_version, the source's new version recorded, counted in /metrics)
    and serves again with the same rows; after a DELETE the refresh is a full one, and answers
    are still equal."""
    table = create_sales(db, schema, rows=3000)
    name = f"{schema}_fresh"
    db.run(f"CREATE REFLECTION {name} ON {table} AGGREGATE DIMENSIONS (ts BY DAY, country) MEASURES (amount (SUM, COUNT), qty (SUM))")
    query = FRESHNESS_QUERY.format(t=table)
    assert _total(assert_accelerated_equals_plain(db, query), 4) == 3000
    assert_served(db, query, name)
    built = db.reflection(name)
    assert isinstance(built["data_version"], int), built
    incremental_refreshes = metric(polder, "polder_reflection_refreshes_total", kind="incremental")

    # Rows 3001..3500: later days, and more rows in the last day already stored (an append).
    append_sales(db, table, 3001, 3500)
    assert _total(assert_accelerated_equals_plain(db, query), 4) == 3500

    appended = wait_for_reflection(
        db, name,
        lambda r: r["data_version"] > built["data_version"] and r["last_refresh_kind"] == "incremental" and r["status"] == "ready",
        "refreshed incrementally after the INSERT",
    )
    assert json.loads(appended["source_versions"]) == {table: db.latest_version(table)}
    assert appended["refreshed_at"] is not None and appended["last_refresh_ms"] is not None
    assert metric(polder, "polder_reflection_refreshes_total", kind="incremental") >= incremental_refreshes + 1
    wait_until_served(db, query, name)
    assert _total(assert_accelerated_equals_plain(db, query), 4) == 3500

    # A DELETE is not an append: the next refresh rebuilds.
    full_refreshes = metric(polder, "polder_reflection_refreshes_total", kind="full")
    deleted = db.run(f"DELETE FROM {table} WHERE country = 'IT'")["rows_affected"]
    assert deleted == 700
    rows = assert_accelerated_equals_plain(db, query)
    assert _total(rows, 4) == 2800 and "IT" not in {row[1] for row in rows}
    rebuilt = wait_for_reflection(
        db, name,
        lambda r: r["data_version"] > appended["data_version"] and r["last_refresh_kind"] == "full" and r["status"] == "ready",
        "refreshed fully after the DELETE",
    )
    assert json.loads(rebuilt["source_versions"]) == {table: db.latest_version(table)}
    assert metric(polder, "polder_reflection_refreshes_total", kind="full") >= full_refreshes + 1
    wait_until_served(db, query, name)
    assert _total(assert_accelerated_equals_plain(db, query), 4) == 2800


def test_manual_reflection_is_skipped_while_behind_until_refresh_reflection(db, schema, pg):
    """A REFRESH MANUAL reflection does not follow commits: after an INSERT it is stale and not
    used (answers still equal the source's); REFRESH REFLECTION (over the PostgreSQL wire)
    refreshes it incrementally and it serves again; REFRESH REFLECTION ... FULL rebuilds it."""
    table = create_sales(db, schema, rows=2000)
    name = f"{schema}_manual"
    db.run(f"CREATE REFLECTION {name} ON {table} AGGREGATE DIMENSIONS (day BY MONTH, channel) MEASURES (qty (SUM, MIN, MAX)) REFRESH MANUAL")
    built = db.reflection(name)
    assert built["refresh_policy"] == "manual" and built["status"] == "ready", built
    query = f"SELECT date_trunc('year', day) AS year, channel, sum(qty) AS qty, max(qty) AS most, count(*) AS n FROM {table} GROUP BY 1, 2"
    assert_served(db, query, name)

    append_sales(db, table, 2001, 2300)
    assert _total(assert_accelerated_equals_plain(db, query), 4) == 2300
    assert_not_served(db, query, name)
    behind = db.reflection(name)
    assert behind["data_version"] == built["data_version"], "a manual reflection refreshed on its own"
    assert behind["last_refresh_kind"] == "full", behind

    cursor = pg.execute(f"REFRESH REFLECTION {name}")
    assert cursor.statusmessage.startswith("REFRESH REFLECTION"), cursor.statusmessage
    refreshed = db.reflection(name)
    assert refreshed["status"] == "ready", refreshed
    assert refreshed["data_version"] > built["data_version"]
    assert refreshed["last_refresh_kind"] == "incremental"
    assert json.loads(refreshed["source_versions"]) == {table: db.latest_version(table)}
    assert_served(db, query, name)
    assert _total(assert_accelerated_equals_plain(db, query), 4) == 2300

    pg.execute(f"REFRESH REFLECTION {name} FULL")
    rebuilt = db.reflection(name)
    assert rebuilt["last_refresh_kind"] == "full" and rebuilt["data_version"] > refreshed["data_version"], rebuilt
    assert_accelerated_equals_plain(db, query)


def test_staleness_lets_a_lagging_reflection_serve(db, schema):
    """STALENESS is the one way to trade exactness for speed: a manual reflection allowed to be an
    hour behind still serves after an INSERT, and answers from before the INSERT, while the
    same query without acceleration sees the new rows."""
    table = create_sales(db, schema, rows=1000)
    name = f"{schema}_lagging"
    db.run(
        f"CREATE REFLECTION {name} ON {table} AGGREGATE DIMENSIONS (country) MEASURES (qty (SUM)) "
        "REFRESH MANUAL STALENESS '1 hour'"
    )
    assert db.reflection(name)["staleness_seconds"] == 3600
    query = f"SELECT country, count(*) AS n FROM {table} GROUP BY country"
    append_sales(db, table, 1001, 1100)
    assert_served(db, query, name)
    accelerated = sum(r["n"] for r in db.rows(query))
    plain = sum(r["n"] for r in db.rows(query, acceleration=False))
    assert (accelerated, plain) == (1000, 1100)


# --- usage ----------------------------------------------------------------------------------


def test_usage_count_grows_with_served_queries(polder, db, schema):
    """Each query a reflection serves counts: after three served queries, system.reflections'
    usage_count has grown by at least three (counts are flushed every few seconds), last_used_at
    is set, and polder_reflection_substitutions_total grew as much."""
    table = create_sales(db, schema, rows=1500)
    name = f"{schema}_used"
    db.run(f"CREATE REFLECTION {name} ON {table} AGGREGATE DIMENSIONS (country, channel) MEASURES (qty (SUM))")
    queries = [f"SELECT channel, sum(qty) AS qty FROM {table} WHERE country = '{c}' GROUP BY channel" for c in ("NL", "DE", "FR")]
    assert_served(db, queries[0], name)
    before = db.reflection(name)["usage_count"]
    substitutions = metric(polder, "polder_reflection_substitutions_total")
    for query in queries:  # different queries: the results cache cannot answer them
        assert len(db.rows(query)) == 3
    used = wait_for_reflection(db, name, lambda r: r["usage_count"] >= before + 3, f"used 3 more times than {before}")
    assert used["last_used_at"] is not None
    assert metric(polder, "polder_reflection_substitutions_total") >= substitutions + 3


# --- the source goes away -------------------------------------------------------------------


def test_dropping_the_source_invalidates_the_reflection_for_good(db, schema):
    """DROP TABLE of the source marks its reflection invalid with a reason; a new table under
    the same name with other rows does not revive it: queries on it are answered from the new
    table (same rows as without acceleration) and the reflection stays invalid and unused."""
    table = create_sales(db, schema, rows=2000)
    name = f"{schema}_orphan"
    db.run(f"CREATE REFLECTION {name} ON {table} AGGREGATE DIMENSIONS (country, channel) MEASURES (amount (SUM))")
    query = f"SELECT country, channel, sum(amount) AS amount, count(*) AS n FROM {table} GROUP BY country, channel"
    assert_served(db, query, name)

    db.run(f"DROP TABLE {table}")
    invalid = wait_for_reflection(db, name, lambda r: r["status"] == "invalid", "invalid after DROP TABLE")
    assert isinstance(invalid["status_reason"], str) and "drop" in invalid["status_reason"].lower(), invalid

    create_sales(db, schema, rows=700, first=10_001)
    rows = assert_accelerated_equals_plain(db, query)
    assert _total(rows, 3) == 700
    assert_not_served(db, query, name, says_not_used=False)
    assert db.reflection(name)["status"] == "invalid"


# --- bad input ------------------------------------------------------------------------------

BAD_DEFINITIONS = [
    ("unknown_column", "CREATE REFLECTION {name} ON {t} RAW COLUMNS (country, no_such_column)", "no_such_column"),
    ("unknown_table", "CREATE REFLECTION {name} ON {schema}.no_such_table RAW COLUMNS (country)", "no_such_table"),
    ("grain_on_text", "CREATE REFLECTION {name} ON {t} AGGREGATE DIMENSIONS (country BY DAY) MEASURES (qty (SUM))", "country"),
    ("unknown_measure", "CREATE REFLECTION {name} ON {t} AGGREGATE DIMENSIONS (country) MEASURES (qty (MEDIAN))", "median"),
]


@pytest.mark.parametrize("case", BAD_DEFINITIONS, ids=[c[0] for c in BAD_DEFINITIONS])
def test_bad_definitions_are_refused_with_the_problem_named(db, schema, case):
    """A definition naming an unknown column or table, a time grain on a text column, or an
    unknown measure function is refused with a 4xx whose message names the culprit; nothing is
    created and the server keeps serving."""
    _, template, culprit = case
    table = create_sales(db, schema, rows=200)
    name = f"{schema}_bad"
    _, message = db.refused(template.format(name=name, t=table, schema=schema))
    assert culprit in message.lower(), message
    assert db.reflection(name) is None
    assert db.serves()


def test_a_reflection_name_is_taken_once(db, schema):
    """Reflection names are one namespace: a second CREATE REFLECTION with a taken name is refused
    (409, the name in the message), even on another table; IF NOT EXISTS is a no-op that keeps
    the first definition; the server keeps serving."""
    table = create_sales(db, schema, rows=300)
    other = f"{schema}.other"
    db.run(f"CREATE TABLE {other} AS SELECT * FROM {table}")
    name = f"{schema}_taken"
    db.run(f"CREATE REFLECTION {name} ON {table} RAW COLUMNS (country, qty)")
    first = db.reflection(name)

    status, message = db.refused(f"CREATE REFLECTION {name} ON {table} RAW COLUMNS (country)")
    assert status == 409 and name in message, (status, message)
    status, message = db.refused(f"CREATE REFLECTION {name} ON {other} RAW COLUMNS (qty)")
    assert status == 409 and name in message, (status, message)
    db.run(f"CREATE REFLECTION IF NOT EXISTS {name} ON {other} RAW COLUMNS (qty)")
    kept = db.reflection(name)
    assert kept["source"] == table and kept["definition"] == first["definition"], kept
    assert db.serves()


# --- REST API -------------------------------------------------------------------------------


def test_rest_api_creates_lists_refreshes_and_deletes(polder, db, schema):
    """POST /api/v1/reflections creates (201, the system.reflections row), GET lists and shows
    one, POST .../refresh refreshes (incremental after an append, full with ?full=true), bad
    input is 400 and a taken name 409, DELETE is 204 and then GET is 404."""
    table = create_sales(db, schema, rows=1000)
    base = f"{polder.http_url}/api/v1/reflections"
    name = f"{schema}_rest"
    created = requests.post(base, json={
        "name": name, "source": table, "kind": "aggregate",
        "dimensions": [{"column": "day", "grain": "month"}, {"column": "country", "grain": None}],
        "measures": [{"column": "amount", "functions": ["sum", "count"]}],
        "refresh": "manual", "staleness_seconds": 0,
    }, timeout=120)
    assert created.status_code == 201, created.text
    row = created.json()
    assert (row["name"], row["source"], row["kind"], row["status"], row["refresh_policy"]) == (name, table, "aggregate", "ready", "manual")
    assert row["rows"] > 0
    listed_row = db.reflection(name)
    for key in ("definition", "data_version", "rows", "source_versions", "staleness_seconds"):
        assert row[key] == listed_row[key], (key, row[key], listed_row[key])

    query = f"SELECT date_trunc('year', day) AS year, country, sum(amount) AS amount FROM {table} GROUP BY 1, 2"
    assert_accelerated_equals_plain(db, query)
    assert_served(db, query, name)

    raw = requests.post(base, json={
        "name": f"{name}_raw", "source": table, "kind": "raw", "columns": ["ts", "country", "amount"],
        "partition_by": ["country"], "sort_by": ["ts"], "refresh": {"every_seconds": 3600},
    }, timeout=120)
    assert raw.status_code == 201, raw.text
    assert raw.json()["kind"] == "raw" and raw.json()["refresh_policy"] == "every 3600 s"

    listed = requests.get(base, timeout=30)
    assert listed.status_code == 200
    names = [r["name"] for r in listed.json()["reflections"]]
    assert {name, f"{name}_raw"} <= set(names)
    one = requests.get(f"{base}/{name}", timeout=30)
    assert one.status_code == 200 and one.json()["name"] == name and one.json()["source"] == table

    append_sales(db, table, 1001, 1200)
    refreshed = requests.post(f"{base}/{name}/refresh", timeout=120)
    assert refreshed.status_code == 200, refreshed.text
    refreshed = refreshed.json()
    assert refreshed["data_version"] > row["data_version"] and refreshed["last_refresh_kind"] == "incremental", refreshed
    assert json.loads(refreshed["source_versions"]) == {table: db.latest_version(table)}
    full = requests.post(f"{base}/{name}/refresh", params={"full": "true"}, timeout=120)
    assert full.status_code == 200, full.text
    assert full.json()["last_refresh_kind"] == "full" and full.json()["data_version"] > refreshed["data_version"]
    assert_accelerated_equals_plain(db, query)
    assert_served(db, query, name)

    bad = requests.post(base, json={"name": f"{name}_bad", "source": table, "kind": "raw", "columns": ["no_such_column"]}, timeout=30)
    assert bad.status_code == 400, bad.text
    assert "no_such_column" in bad.json()["error"]["message"]
    taken = requests.post(base, json={"name": name, "source": table, "kind": "raw", "columns": ["country"]}, timeout=30)
    assert taken.status_code == 409, taken.text
    assert name in taken.json()["error"]["message"]

    deleted = requests.delete(f"{base}/{name}", timeout=30)
    assert deleted.status_code == 204, deleted.text
    gone = requests.get(f"{base}/{name}", timeout=30)
    assert gone.status_code == 404
    assert gone.json()["error"]["message"]
    assert db.reflection(name) is None
    assert_accelerated_equals_plain(db, query)
    assert_not_served(db, query, name, says_not_used=False)


# --- results cache --------------------------------------------------------------------------


def test_results_cache_hits_and_never_answers_stale(polder, db, schema):
    """The second run of the same SELECT is a cache hit; after an INSERT into the table it read,
    the next run is a miss and its answer has the new row; with acceleration off (in the body or
    as ?acceleration=false) the cache is not used."""
    table = create_sales(db, schema, rows=500)
    query = f"SELECT country, count(*) AS n, sum(amount) AS amount FROM {table} GROUP BY country"
    hits = metric(polder, "polder_results_cache_hits_total")
    misses = metric(polder, "polder_results_cache_misses_total")
    first = db.rows(query)
    second = db.rows(query)
    assert sorted(map(str, first)) == sorted(map(str, second))
    assert metric(polder, "polder_results_cache_hits_total") >= hits + 1
    assert metric(polder, "polder_results_cache_misses_total") >= misses + 1
    assert metric(polder, "polder_results_cache_entries") >= 1
    assert metric(polder, "polder_results_cache_bytes") > 0

    db.run(f"INSERT INTO {table} (day, ts, country, channel, amount, qty, price) "
           "VALUES (DATE '2030-01-01', TIMESTAMP '2030-01-01 12:00:00', 'ZZ', 'web', CAST('9.99' AS DECIMAL(12, 2)), 1, 1.5)")
    misses = metric(polder, "polder_results_cache_misses_total")
    third = {row["country"]: row for row in db.rows(query)}
    assert third["ZZ"]["n"] == 1 and third["ZZ"]["amount"] == Decimal("9.99"), third
    assert sum(row["n"] for row in third.values()) == 501
    assert metric(polder, "polder_results_cache_misses_total") >= misses + 1

    # acceleration: false bypasses the cache both ways it can be asked for.
    hits = metric(polder, "polder_results_cache_hits_total")
    db.rows(query, acceleration=False)
    response = requests.post(f"{polder.http_url}/api/v1/sql", params={"acceleration": "false"}, json={"sql": query}, timeout=60)
    assert response.status_code == 200, response.text
    assert len(response.json()["rows"]) == 6
    assert metric(polder, "polder_results_cache_hits_total") == hits


# --- rights ---------------------------------------------------------------------------------


def test_analysts_may_not_manage_reflections(polder_secured):
    """On a server with authentication, an analyst who may read the table is refused CREATE
    REFLECTION (SQL and REST) with permission denied, and may not refresh or drop an engineer's
    reflection; the engineer may create and drop it."""
    server = polder_secured
    admin = Sql(server, ("admin", SECURED_ADMIN_PASSWORD))
    suffix = uuid.uuid4().hex[:6]
    analyst_name, engineer_name = f"ana_refl_{suffix}", f"eng_refl_{suffix}"
    for user, role in ((analyst_name, "analyst"), (engineer_name, "engineer")):
        response = requests.post(
            f"{server.http_url}/api/v1/users",
            json={"name": user, "role": role, "password": f"{user}-password-123"},
            auth=admin.auth, timeout=30,
        )
        assert response.status_code == 201, response.text
    analyst = Sql(server, (analyst_name, f"{analyst_name}-password-123"))
    engineer = Sql(server, (engineer_name, f"{engineer_name}-password-123"))

    schema = f"refl_rights_{suffix}"
    admin.run(f"CREATE SCHEMA {schema}")
    table = create_sales(admin, schema, rows=300)
    admin.run(f"GRANT SELECT ON SCHEMA {schema} TO {analyst_name}")
    assert analyst.rows(f"SELECT count(*) AS n FROM {table}") == [{"n": 300}]

    name = f"{schema}_agg"
    definition = f"ON {table} AGGREGATE DIMENSIONS (country) MEASURES (qty (SUM))"
    status, message = analyst.refused(f"CREATE REFLECTION {name} {definition}")
    assert status == 403 and "permission denied" in message.lower(), (status, message)
    response = requests.post(
        f"{server.http_url}/api/v1/reflections",
        json={"name": name, "source": table, "kind": "raw", "columns": ["country"]},
        auth=analyst.auth, timeout=30,
    )
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "permission_denied"
    assert admin.reflection(name) is None

    assert engineer.run(f"CREATE REFLECTION {name} {definition}")["command"] == "CREATE REFLECTION"
    for statement in (f"REFRESH REFLECTION {name}", f"DROP REFLECTION {name}"):
        status, message = analyst.refused(statement)
        assert status == 403 and "permission denied" in message.lower(), (statement, status, message)
    response = requests.delete(f"{server.http_url}/api/v1/reflections/{name}", auth=analyst.auth, timeout=30)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "permission_denied"
    assert admin.reflection(name)["status"] == "ready"
    assert analyst.serves()

    engineer.run(f"DROP REFLECTION {name}")
    assert admin.reflection(name) is None
