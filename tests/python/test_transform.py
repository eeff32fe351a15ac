"""dbt projects end to end: `polder build|run|test|seed|compile|ls|docs` on the demo project
examples/jaffle_shop, with dbt itself (dbt-core + dbt-duckdb, in the virtualenv that
tests/setup.sh makes at ~/.cache/polder-dbt) as the reference.

The acceptance test builds the project with both and requires every table, view, incremental
model and seed to hold the same rows, and every data test to end the same way. The other tests
use the Polder CLI alone: node selection, `ls`, incremental runs and --full-refresh, --vars,
errors in models and in the project, and the artifacts in target/ (which dbt must be able to
read)."""

from __future__ import annotations

import datetime
import difflib
import json
import math
import os
import re
import shutil
import subprocess
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest
import requests

from conftest import POLDER_BIN, PolderCli, _running_polder

PROJECT = Path(__file__).resolve().parents[2] / "examples" / "jaffle_shop"
DBT_VENV = Path(os.environ.get("POLDER_DBT_VENV", str(Path.home() / ".cache/polder-dbt")))
DBT_BIN = DBT_VENV / "bin" / "dbt"
DBT_PYTHON = DBT_VENV / "bin" / "python"

# The project's relations, as its generate_schema_name macro places them.
SEEDS = ["bronze.raw_customers", "bronze.raw_orders", "bronze.raw_payments"]
VIEWS = ["silver.stg_customers", "silver.stg_orders", "silver.stg_payments"]
TABLES = ["gold.customers", "gold.orders", "gold.daily_revenue"]
# The one data test that warns: gift cards are not in its accepted values.
WARN_TEST = "test.jaffle_shop.accepted_values_stg_payments_payment_method__credit_card__coupon__bank_transfer"
# A generic test's unique_id ends in a hash of its arguments; the expectations below leave it out.
TEST_HASH = re.compile(r"\.[0-9a-f]{10}$")


# ---------------------------------------------------------------- helpers


def require_dbt() -> None:
    if not DBT_BIN.is_file():
        pytest.skip(f"dbt is not installed at {DBT_VENV} (tests/setup.sh makes that virtualenv)")


class Polder(PolderCli):
    """The CLI on one data directory, with the dbt commands."""

    def dbt(self, command: str, project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`polder COMMAND --project-dir PROJECT ARGS` (build, run, test, seed, compile, ls)."""
        return self.run(command, "--project-dir", str(project), *args, check=check)

    def readable(self, relation: str) -> bool:
        return self.run("sql", f"SELECT * FROM {relation} LIMIT 1", "--format", "json", check=False).returncode == 0


def output(done: subprocess.CompletedProcess) -> str:
    return done.stdout + done.stderr


def copy_project(target: Path) -> Path:
    shutil.copytree(PROJECT, target, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    return target


def run_results(project: Path) -> dict[str, str]:
    """unique_id -> status of the last command's target/run_results.json (exposures left out)."""
    data = json.loads((project / "target" / "run_results.json").read_text())
    return {r["unique_id"]: r["status"] for r in data["results"] if not r["unique_id"].startswith("exposure.")}


def short_ids(results: dict[str, str]) -> dict[str, str]:
    return {TEST_HASH.sub("", uid) if uid.startswith("test.") else uid: status for uid, status in results.items()}


class Dbt:
    """dbt-core with dbt-duckdb on one project copy and one DuckDB file."""

    def __init__(self, project: Path, work: Path):
        self.project = project
        self.database = work / "jaffle.duckdb"
        work.mkdir(parents=True, exist_ok=True)
        (work / "profiles.yml").write_text(
            "jaffle_shop:\n  target: dev\n  outputs:\n    dev:\n"
            f"      type: duckdb\n      path: {self.database}\n      schema: main\n      threads: 4\n"
        )
        self.profiles_dir = work
        self.env = dict(os.environ, DBT_SEND_ANONYMOUS_USAGE_STATS="false", DBT_USE_COLORS="false")

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(DBT_BIN), *args, "--project-dir", str(self.project), "--profiles-dir", str(self.profiles_dir)],
            capture_output=True, text=True, env=self.env, timeout=600, cwd=self.project,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"dbt {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def rows(self, relations: list[str]) -> dict[str, dict]:
        """Columns (name, DuckDB type) and rows of each relation, read by the dbt venv's duckdb."""
        script = r"""
import datetime, decimal, json, sys
import duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
def plain(value):
    if isinstance(value, decimal.Decimal):
        return {"decimal": str(value)}
    if isinstance(value, (datetime.date, datetime.datetime, datetime.time)):
        return value.isoformat()
    return value
out = {}
for relation in sys.argv[2:]:
    result = con.execute(f"SELECT * FROM {relation}")
    columns = [(d[0], str(d[1])) for d in result.description]
    out[relation] = {"columns": columns, "rows": [[plain(v) for v in row] for row in result.fetchall()]}
print(json.dumps(out))
"""
        done = subprocess.run([str(DBT_PYTHON), "-c", script, str(self.database), *relations],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def normalise(value, duckdb_type: str):
    """One cell as a comparable value, guided by the type DuckDB gave the column: numbers rounded
    to 6 places (Polder may print decimals as strings), dates and times as ISO strings."""
    if value is None:
        return None
    if isinstance(value, dict) and "decimal" in value:
        value = value["decimal"]
    kind = duckdb_type.upper()
    try:
        if kind.startswith(("DECIMAL", "NUMERIC", "DOUBLE", "FLOAT", "REAL")):
            number = float(Decimal(str(value)))
            return None if math.isnan(number) else round(number, 6)
        if kind in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            return int(value) if isinstance(value, (int, str)) else value
        if kind == "BOOLEAN":
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            return value
        if kind == "DATE":
            return str(value)[:10]
        if kind.startswith("TIMESTAMP"):
            text = str(value).replace(" ", "T").removesuffix("Z").removesuffix("+00:00")
            parsed = datetime.datetime.fromisoformat(text)
            return parsed.isoformat()
    except (ValueError, InvalidOperation, TypeError):
        return value  # left as is: the comparison shows it
    return value


def comparable(columns: list[tuple[str, str]], rows: list[list]) -> list[tuple]:
    """Rows as sorted tuples; None sorts first in every column."""
    normalised = [tuple(normalise(v, t) for v, (_, t) in zip(row, columns)) for row in rows]
    return sorted(normalised, key=lambda row: [(v is not None, str(type(v).__name__), v if v is not None else 0)
                                               for v in row])


def polder_table(cli: Polder, relation: str, columns: list[tuple[str, str]]) -> tuple[list[str], list[list]]:
    """Column names (from the first row; [] when empty) and rows of a relation in Polder."""
    records = cli.sql(f"SELECT * FROM {relation}")
    names = list(records[0].keys()) if records else []
    return names, [[record.get(name) for name, _ in columns] for record in records]


def assert_same_relation(relation: str, expected: dict, cli: Polder) -> None:
    columns = [tuple(c) for c in expected["columns"]]
    names, rows = polder_table(cli, relation, columns)
    expected_names = [name for name, _ in columns]
    if expected["rows"]:
        assert names == expected_names, f"{relation}: columns differ\n dbt:    {expected_names}\n polder: {names}"
    want = comparable(columns, expected["rows"])
    got = comparable(columns, rows)
    if want != got:
        diff = "\n".join(difflib.unified_diff([repr(r) for r in want], [repr(r) for r in got],
                                              "dbt-duckdb", "polder", lineterm="", n=1))
        raise AssertionError(f"{relation}: rows differ ({len(want)} rows from dbt, {len(got)} from polder)\n"
                             f"columns: {expected_names}\n{diff[:8000]}")


def built_relations(manifest: dict) -> list[str]:
    """schema.alias of every model and seed that leaves a relation (not ephemeral)."""
    relations = []
    for node in manifest["nodes"].values():
        if node["resource_type"] in ("model", "seed") and node["config"]["materialized"] in (
            "table", "view", "incremental", "seed",
        ):
            relations.append(f"{node['schema']}.{node['alias']}")
    return sorted(relations)


def data_test_outcomes(project: Path) -> dict[str, str]:
    return {uid: status for uid, status in run_results(project).items() if uid.startswith("test.")}


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def cli(tmp_path) -> Polder:
    return Polder(tmp_path / "data")


@pytest.fixture
def project(tmp_path) -> Path:
    """A fresh copy of the demo project that a test may change."""
    return copy_project(tmp_path / "jaffle_shop")


@pytest.fixture
def built(cli, project) -> tuple[Polder, Path]:
    """The demo project after one successful `polder build`."""
    cli.dbt("build", project)
    return cli, project


# ---------------------------------------------------------------- against dbt


def test_jaffle_shop_equals_dbt_duckdb(tmp_path):
    require_dbt()
    dbt_project = copy_project(tmp_path / "dbt" / "jaffle_shop")
    polder_project = copy_project(tmp_path / "polder" / "jaffle_shop")
    dbt = Dbt(dbt_project, tmp_path / "dbt")
    cli = Polder(tmp_path / "polder" / "data")

    dbt_done = dbt.run("build")
    polder_done = cli.dbt("build", polder_project)
    assert "WARN=1" in dbt_done.stdout, dbt_done.stdout

    # What was built: every model and seed of dbt's manifest that leaves a relation.
    manifest = json.loads((dbt_project / "target" / "manifest.json").read_text())
    relations = built_relations(manifest)
    assert relations == sorted(SEEDS + VIEWS + TABLES), relations
    expected = dbt.rows(relations)
    for relation in relations:
        assert_same_relation(relation, expected[relation], cli)

    # Polder's artifacts name the same nodes: every model, seed and test of dbt's manifest.
    polder_manifest = json.loads((polder_project / "target" / "manifest.json").read_text())
    kinds = ("model", "seed", "test")
    dbt_nodes = sorted(u for u, n in manifest["nodes"].items() if n["resource_type"] in kinds)
    polder_nodes = sorted(u for u, n in polder_manifest["nodes"].items() if n["resource_type"] in kinds)
    assert polder_nodes == dbt_nodes, "\n".join(difflib.unified_diff(dbt_nodes, polder_nodes, "dbt", "polder", lineterm=""))

    # Every data test ended the same way (one warns); every model and seed succeeded.
    dbt_tests, polder_tests = data_test_outcomes(dbt_project), data_test_outcomes(polder_project)
    assert polder_tests == dbt_tests, (dbt_tests, polder_tests)
    assert list(short_ids(polder_tests).values()).count("warn") == 1
    assert short_ids(polder_tests)[WARN_TEST] == "warn"
    others = {u: s for u, s in run_results(polder_project).items() if not u.startswith("test.")}
    dbt_others = {u for u in run_results(dbt_project) if not u.startswith("test.")}
    assert set(others) == dbt_others, (sorted(others), sorted(dbt_others))  # ephemeral models do not run
    assert set(others.values()) == {"success"}, others
    assert re.search(r"Done\. PASS=\d+ WARN=1 ERROR=0 SKIP=0", polder_done.stdout), polder_done.stdout

    # A second build takes the incremental path of daily_revenue; results stay equal.
    dbt.run("build")
    cli.dbt("build", polder_project)
    expected = dbt.rows(relations)
    for relation in relations:
        assert_same_relation(relation, expected[relation], cli)
    assert data_test_outcomes(polder_project) == data_test_outcomes(dbt_project)


# ---------------------------------------------------------------- selection and ls


def test_select_descendants_exclude_tag_and_path(built):
    cli, project = built
    cli.dbt("run", project, "-s", "stg_orders+")
    assert run_results(project) == {
        "model.jaffle_shop.stg_orders": "success",
        "model.jaffle_shop.orders": "success",
        "model.jaffle_shop.customers": "success",
        "model.jaffle_shop.daily_revenue": "success",
    }

    cli.dbt("run", project, "--select", "tag:finance")
    assert run_results(project) == {"model.jaffle_shop.orders": "success", "model.jaffle_shop.daily_revenue": "success"}

    cli.dbt("run", project, "-s", "path:models/marts", "--exclude", "daily_revenue")
    assert run_results(project) == {"model.jaffle_shop.orders": "success", "model.jaffle_shop.customers": "success"}

    cli.dbt("seed", project)
    assert set(run_results(project)) == {f"seed.jaffle_shop.{name.split('.')[1]}" for name in SEEDS}

    # build selects the tests of the selected models too, also those with another parent
    # that is not selected (dbt's "eager" indirect selection).
    cli.dbt("build", project, "-s", "stg_orders+")
    results = short_ids(run_results(project))
    assert results == {
        "model.jaffle_shop.stg_orders": "success",
        "model.jaffle_shop.orders": "success",
        "model.jaffle_shop.customers": "success",
        "model.jaffle_shop.daily_revenue": "success",
        "test.jaffle_shop.accepted_values_stg_orders_status__placed__shipped__completed__return_pending__returned": "pass",
        "test.jaffle_shop.assert_order_amount_is_sum_of_methods": "pass",
        "test.jaffle_shop.not_null_customers_customer_id": "pass",
        "test.jaffle_shop.not_null_daily_revenue_order_date": "pass",
        "test.jaffle_shop.not_null_orders_amount": "pass",
        "test.jaffle_shop.not_null_orders_customer_id": "pass",
        "test.jaffle_shop.not_null_orders_order_id": "pass",
        "test.jaffle_shop.not_null_stg_orders_customer_id": "pass",
        "test.jaffle_shop.not_null_stg_orders_order_id": "pass",
        "test.jaffle_shop.relationships_orders_customer_id__customer_id__ref_customers_": "pass",
        "test.jaffle_shop.relationships_stg_orders_customer_id__customer_id__ref_stg_customers_": "pass",
        "test.jaffle_shop.unique_customers_customer_id": "pass",
        "test.jaffle_shop.unique_daily_revenue_order_date": "pass",
        "test.jaffle_shop.unique_orders_order_id": "pass",
        "test.jaffle_shop.unique_stg_orders_order_id": "pass",
    }


def test_ls_prints_selected_nodes(cli, project):
    done = cli.dbt("ls", project, "-s", "stg_orders+")
    assert sorted(done.stdout.split()) == sorted([
        "exposure:jaffle_shop.revenue_dashboard",
        "jaffle_shop.marts.customers",
        "jaffle_shop.marts.daily_revenue",
        "jaffle_shop.marts.orders",
        "jaffle_shop.staging.stg_orders",
        "jaffle_shop.staging.accepted_values_stg_orders_status__placed__shipped__completed__return_pending__returned",
        "jaffle_shop.assert_order_amount_is_sum_of_methods",
        "jaffle_shop.marts.not_null_customers_customer_id",
        "jaffle_shop.marts.not_null_daily_revenue_order_date",
        "jaffle_shop.marts.not_null_orders_amount",
        "jaffle_shop.marts.not_null_orders_customer_id",
        "jaffle_shop.marts.not_null_orders_order_id",
        "jaffle_shop.staging.not_null_stg_orders_customer_id",
        "jaffle_shop.staging.not_null_stg_orders_order_id",
        "jaffle_shop.marts.relationships_orders_customer_id__customer_id__ref_customers_",
        "jaffle_shop.staging.relationships_stg_orders_customer_id__customer_id__ref_stg_customers_",
        "jaffle_shop.marts.unique_customers_customer_id",
        "jaffle_shop.marts.unique_daily_revenue_order_date",
        "jaffle_shop.marts.unique_orders_order_id",
        "jaffle_shop.staging.unique_stg_orders_order_id",
    ]), done.stdout

    # --exclude of a model drops its tests as well; the exposure is under models/marts.
    done = cli.dbt("ls", project, "-s", "path:models/marts", "--exclude", "orders")
    assert sorted(done.stdout.split()) == sorted([
        "exposure:jaffle_shop.revenue_dashboard",
        "jaffle_shop.marts.customers",
        "jaffle_shop.marts.daily_revenue",
        "jaffle_shop.marts.not_null_customers_customer_id",
        "jaffle_shop.marts.not_null_daily_revenue_order_date",
        "jaffle_shop.marts.unique_customers_customer_id",
        "jaffle_shop.marts.unique_daily_revenue_order_date",
    ]), done.stdout

    # Everything: 7 models (one ephemeral), 3 seeds, 21 data tests, 1 exposure; nothing is built.
    lines = cli.dbt("ls", project).stdout.split()
    assert len(lines) == 32 and "jaffle_shop.intermediate.int_order_totals" in lines, lines
    assert "jaffle_shop.raw_payments" in lines
    assert not cli.readable("bronze.raw_orders")


# ---------------------------------------------------------------- incremental, vars


def test_incremental_run_keeps_rows_and_full_refresh_rebuilds(built):
    cli, project = built
    before = cli.sql("SELECT order_date, number_of_orders, revenue FROM gold.daily_revenue ORDER BY order_date")
    assert before and before[0]["order_date"] < "2024-03-01"

    # Incremental: only the newest day is aggregated again, the older days stay.
    late = json.dumps({"revenue_since": "2024-03-01"})
    cli.dbt("run", project, "-s", "daily_revenue", "--vars", late)
    after = cli.sql("SELECT order_date, number_of_orders, revenue FROM gold.daily_revenue ORDER BY order_date")
    assert after == before

    # Full refresh: the table is rebuilt from the filtered orders.
    cli.dbt("run", project, "-s", "daily_revenue", "--vars", late, "--full-refresh")
    rebuilt = cli.sql("SELECT order_date, number_of_orders, revenue FROM gold.daily_revenue ORDER BY order_date")
    assert rebuilt == [row for row in before if row["order_date"] >= "2024-03-01"]
    assert rebuilt and len(rebuilt) < len(before)


def test_vars_change_a_result(built):
    cli, project = built
    assert cli.scalar("SELECT count(*) FROM gold.orders WHERE is_large_order") == 10
    cli.dbt("run", project, "-s", "orders", "--vars", '{"large_order_dollars": 1000}')
    assert cli.scalar("SELECT count(*) FROM gold.orders WHERE is_large_order") == 0
    cli.dbt("run", project, "-s", "orders", "--vars", '{"large_order_dollars": 5}')
    assert cli.scalar("SELECT count(*) FROM gold.orders WHERE is_large_order") > 10


# ---------------------------------------------------------------- tests and errors


def test_test_command_warns_and_a_failing_test_fails(built):
    cli, project = built
    done = cli.dbt("test", project)
    assert "WARN" in done.stdout and re.search(r"Done\. PASS=20 WARN=1 ERROR=0 SKIP=0", done.stdout), done.stdout
    assert all(uid.startswith("test.") for uid in run_results(project))

    (project / "tests" / "assert_no_orders.sql").write_text("select order_id from {{ ref('orders') }}\n")
    done = cli.dbt("test", project, "-s", "assert_no_orders", check=False)
    assert done.returncode == 1, output(done)
    assert "FAIL" in done.stdout, done.stdout
    assert run_results(project) == {"test.jaffle_shop.assert_no_orders": "fail"}


def test_model_sql_error_keeps_old_table_and_skips_descendants(built):
    cli, project = built
    orders_before = cli.sql("SELECT * FROM gold.orders ORDER BY order_id")
    model = project / "models" / "marts" / "orders.sql"
    model.write_text(model.read_text().replace("orders.status,", "orders.no_such_column,"))

    done = cli.dbt("build", project, check=False)
    assert done.returncode == 1, output(done)
    assert "models/marts/orders.sql" in output(done), output(done)
    assert re.search(r"Done\. PASS=\d+ WARN=1 ERROR=1 SKIP=(?:9|10)\b", done.stdout), done.stdout

    results = short_ids(run_results(project))
    assert results["model.jaffle_shop.orders"] == "error"
    assert results["model.jaffle_shop.daily_revenue"] == "skipped"
    assert results["test.jaffle_shop.unique_orders_order_id"] == "skipped"
    assert results["test.jaffle_shop.relationships_orders_customer_id__customer_id__ref_customers_"] == "skipped"
    assert results["model.jaffle_shop.customers"] == "success"
    assert sorted(u for u, s in results.items() if s == "skipped") == sorted([
        "model.jaffle_shop.daily_revenue",
        "test.jaffle_shop.assert_order_amount_is_sum_of_methods",
        "test.jaffle_shop.not_null_daily_revenue_order_date",
        "test.jaffle_shop.not_null_orders_amount",
        "test.jaffle_shop.not_null_orders_customer_id",
        "test.jaffle_shop.not_null_orders_order_id",
        "test.jaffle_shop.relationships_orders_customer_id__customer_id__ref_customers_",
        "test.jaffle_shop.unique_daily_revenue_order_date",
        "test.jaffle_shop.unique_orders_order_id",
    ])
    assert re.search(r"SKIP .*daily_revenue", done.stdout), done.stdout
    # The failed rebuild left the previous version of gold.orders in place.
    assert cli.sql("SELECT * FROM gold.orders ORDER BY order_id") == orders_before


def test_jinja_syntax_error_names_file_and_line(cli, project):
    model = project / "models" / "staging" / "stg_customers.sql"
    text = model.read_text()
    assert "{{ ref('raw_customers') }}" in text.splitlines()[2]
    model.write_text(text.replace("{{ ref('raw_customers') }}", "{{ ref('raw_customers' }}"))
    done = cli.dbt("build", project, check=False)
    assert done.returncode != 0
    assert "models/staging/stg_customers.sql" in output(done), output(done)
    assert re.search(r"line 3\b|stg_customers\.sql:3\b", output(done)), output(done)
    assert not cli.readable("bronze.raw_customers"), "nothing may run when the project does not parse"


@pytest.mark.parametrize(
    "case",
    ["cycle", "missing_ref", "duplicate_name"],
)
def test_project_errors_stop_before_anything_runs(cli, project, case):
    if case == "cycle":
        model = project / "models" / "staging" / "stg_customers.sql"
        model.write_text(model.read_text().replace("ref('raw_customers')", "ref('customers')"))
        expected = ["cycle", "customers", "stg_customers"]
    elif case == "missing_ref":
        model = project / "models" / "marts" / "orders.sql"
        model.write_text(model.read_text().replace("ref('stg_payments')", "ref('no_such_model')"))
        expected = ["no_such_model", "models/marts/orders.sql"]
    else:
        shutil.copy(project / "models" / "staging" / "stg_orders.sql", project / "models" / "marts" / "stg_orders.sql")
        expected = ["stg_orders", "models/staging/stg_orders.sql", "models/marts/stg_orders.sql"]

    done = cli.dbt("build", project, check=False)
    assert done.returncode != 0, output(done)
    text = output(done)
    for needle in expected:
        assert needle.lower() in text.lower(), f"{needle!r} not in:\n{text}"
    for relation in SEEDS + VIEWS + TABLES:
        assert not cli.readable(relation), f"{relation} was built although the project has an error"


# ---------------------------------------------------------------- artifacts and docs


def test_artifacts_are_readable_by_dbt(built):
    require_dbt()
    cli, project = built
    manifest_path = project / "target" / "manifest.json"
    results_path = project / "target" / "run_results.json"
    assert manifest_path.is_file() and results_path.is_file()
    script = r"""
import json, sys
from dbt.artifacts.schemas.manifest import WritableManifest
from dbt.artifacts.schemas.run import RunResultsArtifact
manifest = WritableManifest.read_and_check_versions(sys.argv[1])
results = RunResultsArtifact.read_and_check_versions(sys.argv[2])
print(json.dumps({
    "nodes": sorted(manifest.nodes),
    "exposures": sorted(manifest.exposures),
    "parent_map_orders": sorted((manifest.parent_map or {}).get("model.jaffle_shop.orders", [])),
    "results": {r.unique_id: str(r.status) for r in results.results},
}))
"""
    done = subprocess.run([str(DBT_PYTHON), "-c", script, str(manifest_path), str(results_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"dbt cannot read Polder's artifacts:\n{done.stderr}"
    read = json.loads(done.stdout)
    for uid in ["model.jaffle_shop.customers", "model.jaffle_shop.int_order_totals",
                "seed.jaffle_shop.raw_payments", "test.jaffle_shop.assert_order_amount_is_sum_of_methods"]:
        assert uid in read["nodes"], read["nodes"]
    assert read["exposures"] == ["exposure.jaffle_shop.revenue_dashboard"]
    assert read["parent_map_orders"] == ["model.jaffle_shop.stg_orders", "model.jaffle_shop.stg_payments"]
    assert read["results"]["model.jaffle_shop.daily_revenue"] == "success"
    assert short_ids(read["results"])[WARN_TEST] == "warn"


def test_compile_renders_sql_without_running_it(cli, project):
    cli.dbt("compile", project)
    compiled = project / "target" / "compiled" / "jaffle_shop" / "models" / "marts" / "orders.sql"
    sql = compiled.read_text()
    assert "{{" not in sql and "{%" not in sql, sql
    for method in ["credit_card", "coupon", "bank_transfer", "gift_card"]:
        assert f"{method}_amount" in sql
    assert "stg_orders" in sql and "stg_payments" in sql
    # The ephemeral model is inlined into the models that use it.
    customers = (compiled.parent / "customers.sql").read_text()
    assert "int_order_totals" in customers and "group by order_id" in customers
    assert not cli.readable("gold.orders")


def test_docs_generate_writes_index_html(built):
    cli, project = built
    cli.run("docs", "generate", "--project-dir", str(project))
    index = project / "target" / "index.html"
    assert index.is_file()
    html = index.read_text()
    for name in ["customers", "orders", "daily_revenue", "stg_payments", "raw_customers", "revenue_dashboard"]:
        assert name in html, name


# ---------------------------------------------------------------- REST API


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server of its own: the demo dataset has tables named like the project's."""
    with _running_polder(tmp_path_factory, demo=False, env_overrides={"POLDER_AUTH_ENABLED": "false"}) as running:
        yield running


def test_rest_api_runs_a_project_and_reports_lineage_and_last_runs(server, tmp_path):
    project = copy_project(tmp_path / "jaffle_shop")
    cli = Polder(server.data_dir)
    api = f"{server.http_url}/api/v1"

    missing = requests.post(f"{api}/projects/jaffle_shop/build", json={}, timeout=30)
    assert missing.status_code == 404 and "polder build" in missing.json()["error"]["message"], missing.text

    # A CLI run makes the project known to the server (the API never takes a path).
    cli.dbt("seed", project)
    projects = requests.get(f"{api}/projects", timeout=30).json()["projects"]
    assert [p["name"] for p in projects] == ["jaffle_shop"], projects

    run = requests.post(f"{api}/projects/jaffle_shop/build?wait=true", json={"select": ["+orders"], "exclude": ["stg_customers", "customers"], "threads": 2}, timeout=300)
    assert run.status_code == 200, run.text
    run = run.json()
    assert run["status"] == "succeeded" and run["command"] == "build", [(r["unique_id"], r["status"], r["message"]) for r in run["results"] if r["status"] not in ("success", "pass")]
    statuses = {r["unique_id"]: r["status"] for r in run["results"]}
    assert statuses["model.jaffle_shop.orders"] == "success", statuses
    assert "model.jaffle_shop.customers" not in statuses, "only orders and its ancestors were selected"
    assert not any("stg_customers" in u for u in statuses), "stg_customers and its tests were excluded"
    assert run["summary"]["ERROR"] == 0 and run["summary"]["PASS"] + run["summary"]["WARN"] == len(statuses), run["summary"]
    with server.connect() as pg:
        assert pg.execute("SELECT count(*) FROM gold.orders").fetchone()[0] == 99

    # Lineage and each node's last run, for the UI.
    detail = requests.get(f"{api}/projects/jaffle_shop", timeout=30).json()
    nodes = {n["unique_id"]: n for n in detail["nodes"]}
    orders = nodes["model.jaffle_shop.orders"]
    assert set(orders["depends_on"]) == {"model.jaffle_shop.stg_orders", "model.jaffle_shop.stg_payments"}, orders
    assert orders["relation"] == "gold.orders" and orders["last_run"]["status"] == "success", orders
    assert orders["last_run"]["run_id"] == run["id"]
    assert nodes["seed.jaffle_shop.raw_orders"]["last_run"]["status"] == "success"
    assert nodes["model.jaffle_shop.stg_customers"]["last_run"] is None, "never run"
    assert nodes["exposure.jaffle_shop.revenue_dashboard"]["resource_type"] == "exposure"

    # Without ?wait the answer comes at once with the run's id; the run finishes on its own.
    started = requests.post(f"{api}/projects/jaffle_shop/test", json={"select": ["stg_payments"]}, timeout=60)
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    for _ in range(300):
        later = requests.get(f"{api}/projects/jaffle_shop/runs/{run_id}", timeout=30).json()
        if later["status"] != "running":
            break
        time.sleep(0.1)
    assert later["status"] == "succeeded", later
    assert {r["status"] for r in later["results"]} == {"pass", "warn"}, later["results"]
    history = requests.get(f"{api}/projects/jaffle_shop/runs?limit=10", timeout=30).json()["runs"]
    assert [r["id"] for r in history[:2]] == [run_id, run["id"]], history
    assert history[-1]["command"] == "seed" and history[-1]["trigger"].startswith("cli:")

    # Bad input: a clear error, and the server keeps serving.
    bad_selector = requests.post(f"{api}/projects/jaffle_shop/run?wait=true", json={"select": ["tag:"]}, timeout=60)
    assert bad_selector.status_code == 400, bad_selector.text
    unknown_field = requests.post(f"{api}/projects/jaffle_shop/run", json={"selcet": ["orders"]}, timeout=60)
    assert unknown_field.status_code in (400, 422) and "selcet" in unknown_field.text, unknown_field.text
    unknown_command = requests.post(f"{api}/projects/jaffle_shop/deploy", json={}, timeout=60)
    assert unknown_command.status_code == 404, unknown_command.text
    assert requests.get(f"{api}/projects/jaffle_shop/runs/nope", timeout=30).status_code == 404
    assert requests.get(f"{server.http_url}/health", timeout=30).status_code == 200


# ---------------------------------------------------------------- source freshness


def test_source_freshness_judges_each_table_by_its_newest_load(cli, tmp_path):
    for name, age in [("events", "5 minutes"), ("warm_events", "2 hours"), ("old_events", "3 days"), ("unchecked", "9 days")]:
        cli.run("sql", f"CREATE TABLE bronze.{name} AS SELECT 1 AS id, now() - INTERVAL '{age}' AS _polder_extracted_at")
    project = tmp_path / "fresh"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text("name: fresh\nversion: '1.0'\nconfig-version: 2\n")
    (project / "models" / "sources.yml").write_text(
        "version: 2\nsources:\n  - name: raw\n    schema: bronze\n    loaded_at_field: _polder_extracted_at\n"
        "    freshness:\n      warn_after: {count: 1, period: hour}\n      error_after: {count: 1, period: day}\n"
        "    tables:\n      - name: events\n      - name: warm_events\n      - name: old_events\n"
        "      - name: unchecked\n        freshness: null\n"
    )
    (project / "models" / "all_events.sql").write_text("select * from {{ source('raw', 'events') }}\n")

    done = cli.run("source", "freshness", "--project-dir", str(project), check=False)
    assert done.returncode == 1, output(done)
    assert "ERROR STALE freshness of raw.old_events" in done.stdout, done.stdout
    report = json.loads((project / "target" / "sources.json").read_text())
    statuses = {r["unique_id"]: r["status"] for r in report["results"]}
    assert statuses == {
        "source.fresh.raw.events": "pass",
        "source.fresh.raw.warm_events": "warn",
        "source.fresh.raw.old_events": "error",
    }, statuses
    old = next(r for r in report["results"] if r["unique_id"] == "source.fresh.raw.old_events")
    assert 3 * 86400 - 120 < old["max_loaded_at_time_ago_in_s"] < 3 * 86400 + 600, old

    fresh_only = cli.run("source", "freshness", "--project-dir", str(project), "-s", "source:raw.events")
    assert "PASS freshness of raw.events" in fresh_only.stdout, fresh_only.stdout
    assert len(json.loads((project / "target" / "sources.json").read_text())["results"]) == 1


# ---------------------------------------------------------------- schedules, kill -9


def chain_project(root: Path, models: int) -> Path:
    """`models` table models in a chain: m000 <- m001 <- ...; model i holds step = i."""
    (root / "models").mkdir(parents=True)
    (root / "dbt_project.yml").write_text(
        "name: chain\nversion: '1.0'\nconfig-version: 2\nmodels:\n  chain:\n    +materialized: table\n")
    (root / "models" / "m000.sql").write_text("select 0 as step, 1 as v\n")
    for i in range(1, models):
        (root / "models" / f"m{i:03d}.sql").write_text(
            f"select step + 1 as step, (v * 2) % 1000003 as v from {{{{ ref('m{i - 1:03d}') }}}}\n")
    return root


def test_kill_9_during_a_build_keeps_every_committed_model_and_the_next_build_finishes(cli, tmp_path):
    project = chain_project(tmp_path / "chain", 120)
    build = subprocess.Popen(
        [POLDER_BIN, "--data-dir", str(cli.data_dir), "build", "--project-dir", str(project), "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli.env,
    )
    finished = []
    try:
        for line in build.stdout:
            match = re.search(r"OK created sql table model public\.(m\d{3})", line)
            if match:
                finished.append(match.group(1))
            if len(finished) >= 15:
                build.kill()  # SIGKILL, in the middle of the next model
                break
    finally:
        build.kill()
        build.wait(timeout=60)
    assert len(finished) >= 15, f"the build ended before it could be killed: {finished}"

    # Everything that was reported done is there, with its rows.
    for name in finished:
        assert cli.scalar(f"SELECT step FROM public.{name}") == int(name[1:]), name

    # The next build finishes the job, and the killed run is on record as interrupted.
    again = cli.dbt("build", project)
    assert "Done. PASS=120 WARN=0 ERROR=0 SKIP=0 TOTAL=120" in again.stdout, again.stdout
    assert cli.scalar("SELECT step FROM public.m119") == 119
    runs = json.loads(cli.run("project", "runs", "chain", "--json").stdout)
    assert [r["status"] for r in runs] == ["succeeded", "failed"], runs
    assert runs[1]["error"].startswith("interrupted"), runs[1]


def test_a_schedule_runs_the_project_inside_serve(server, tmp_path):
    project = copy_project(tmp_path / "jaffle_shop")
    cli = Polder(server.data_dir)
    api = f"{server.http_url}/api/v1"
    cli.dbt("seed", project)

    bad = requests.patch(f"{api}/projects/jaffle_shop", json={"schedule": "every hour"}, timeout=30)
    assert bad.status_code == 400 and "5 fields" in bad.json()["error"]["message"], bad.text
    unknown = requests.patch(f"{api}/projects/nope", json={"schedule": "* * * * *"}, timeout=30)
    assert unknown.status_code == 404, unknown.text

    before = {r["id"] for r in requests.get(f"{api}/projects/jaffle_shop/runs?limit=100", timeout=30).json()["runs"]}
    cli.run("project", "schedule", "jaffle_shop", "--cron", "*/2 * * * * *", "--command", "run", "-s", "stg_customers")
    listed = requests.get(f"{api}/projects", timeout=30).json()["projects"]
    mine = next(p for p in listed if p["name"] == "jaffle_shop")
    assert mine["schedule"] == "*/2 * * * * *" and mine["scheduled_run"]["command"] == "run", mine
    scheduled = []
    for _ in range(150):
        runs = requests.get(f"{api}/projects/jaffle_shop/runs?limit=100", timeout=30).json()["runs"]
        scheduled = [r for r in runs if r["id"] not in before and r["trigger"] == "schedule" and r["status"] != "running"]
        if scheduled:
            break
        time.sleep(0.2)
    assert scheduled, "no scheduled run within 30 s"
    assert scheduled[0]["status"] == "succeeded", scheduled[0]
    assert [r["unique_id"] for r in scheduled[0]["results"]] == ["model.jaffle_shop.stg_customers"]

    cli.run("project", "schedule", "jaffle_shop", "--none")
    assert "manual" in cli.run("project", "list").stdout
