#!/usr/bin/env bash
# Prepares what the tests need besides Rust: a Python virtualenv with the real clients
# (psycopg, SQLAlchemy, ADBC Flight SQL, pyarrow) and moto's S3-compatible server.
# The virtualenv lives outside the clone so that reruns are fast: $POLDER_TEST_VENV
# (default ~/.cache/polder-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${POLDER_TEST_VENV:-$HOME/.cache/polder-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
stamp="$venv/.polder-requirements"
if ! cmp -s tests/python/requirements.txt "$stamp" 2>/dev/null; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
    cp tests/python/requirements.txt "$stamp"
fi
command -v psql >/dev/null || { echo "psql (PostgreSQL client) is needed by the tests" >&2; exit 1; }
command -v mariadb >/dev/null || { echo "mariadb (MariaDB client) is needed by the tests" >&2; exit 1; }

# An Airbyte source connector for the ingestion tests, in a virtualenv of its own (its
# dependencies are not the test clients'): $POLDER_SOURCE_FAKER.
faker_venv="$HOME/.cache/polder-airbyte/source-faker"
if [ ! -x "$faker_venv/bin/source-faker" ]; then
    python3 -m venv "$faker_venv"
    "$faker_venv/bin/pip" install --quiet --disable-pip-version-check "airbyte-source-faker==7.2.1"
fi

# dbt-core with dbt-duckdb, the reference for the dbt runner tests (tests/python/test_transform.py)
# and bench/transform, in a virtualenv of its own: $POLDER_DBT_VENV (default ~/.cache/polder-dbt).
# Pinned in tests/python/requirements-dbt.txt; a fresh install takes about 25 s.
dbt_venv="${POLDER_DBT_VENV:-$HOME/.cache/polder-dbt}"
if [ ! -x "$dbt_venv/bin/python" ]; then
    python3 -m venv "$dbt_venv"
fi
dbt_stamp="$dbt_venv/.polder-requirements"
if ! cmp -s tests/python/requirements-dbt.txt "$dbt_stamp" 2>/dev/null; then
    "$dbt_venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements-dbt.txt
    cp tests/python/requirements-dbt.txt "$dbt_stamp"
fi
echo "test virtualenv ready: $venv"
