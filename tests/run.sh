#!/usr/bin/env bash
# Runs every test of Polder:
#   1. Rust unit tests, the SQL behaviour suite (tests/sql/*.slt) and the end-to-end tests
#      (tests/e2e: the real binary with psql-compatible, HTTP, Flight SQL clients, kill -9,
#      a PostgreSQL catalog, an S3 lake on moto's server);
#   2. the Python client suite (tests/python: psycopg, SQLAlchemy, ADBC, HTTP, psql);
#   3. the offline checks of deploy/ (tests/deploy: kubectl kustomize, Kubernetes schemas,
#      promtool and haproxy where installed);
#   4. the web UI in headless Chromium (tests/ui, playwright-core; screenshots in artifacts/ui).
# Needs PostgreSQL on 127.0.0.1:5432 (trust auth for user postgres), Python 3, psql, Node.js
# (and Debian's chromium, which tests/ui/run.sh installs when it is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
export POLDER_TEST_VENV="${POLDER_TEST_VENV:-$HOME/.cache/polder-venv}"
bash tests/setup.sh

target_dir="${CARGO_TARGET_DIR:-$(pwd)/target}"
cargo test --workspace --no-fail-fast

POLDER_BIN="$target_dir/debug/polder" "$POLDER_TEST_VENV/bin/python" -m pytest -q tests/python

# Offline checks of deploy/: compose files, Dockerfile, Kustomize overlays rendered and checked
# against Kubernetes schemas, Terraform, monitoring rules and dashboard, load-balancer configs.
"$POLDER_TEST_VENV/bin/python" -m pytest -q tests/deploy

POLDER_BIN="$target_dir/debug/polder" bash tests/ui/run.sh
