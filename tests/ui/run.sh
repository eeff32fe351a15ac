#!/usr/bin/env bash
# Runs the browser tests of the web UI (tests/ui/*.test.mjs) against a real `polder serve --demo`
# in headless Chromium. Installs what they need first: playwright-core (npm ci, pinned by
# package-lock.json) and Debian's chromium when /usr/bin/chromium is missing.
#
#   POLDER_BIN            the binary under test (default: $CARGO_TARGET_DIR/debug/polder, else
#                         ~/.cache/polder-target/debug/polder)
#   POLDER_UI_ARTIFACTS   screenshots (default: artifacts/ui at the repository root)
set -euo pipefail
cd "$(dirname "$0")/../.."

target_dir="${CARGO_TARGET_DIR:-$HOME/.cache/polder-target}"
export POLDER_BIN="${POLDER_BIN:-$target_dir/debug/polder}"
export POLDER_UI_ARTIFACTS="${POLDER_UI_ARTIFACTS:-artifacts/ui}"

(cd tests/ui && npm ci --silent --no-audit --no-fund)

if [ ! -x /usr/bin/chromium ]; then
    apt-get install -y -q chromium >/dev/null 2>&1 \
        || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null)
fi

mkdir -p "$POLDER_UI_ARTIFACTS"
node --test --test-concurrency=1 tests/ui/*.test.mjs
