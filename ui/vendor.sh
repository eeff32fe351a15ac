#!/usr/bin/env bash
# Vendors the web UI's third-party libraries from npm at pinned versions, with their licenses,
# into ui/vendor/. The files are committed: running Polder needs no Node.js and no build step;
# this script only runs when a version changes. Usage: bash ui/vendor.sh
set -euo pipefail
cd "$(dirname "$0")"
ECHARTS_VERSION=6.1.0        # Apache ECharts: every chart type (Apache-2.0)
CODEMIRROR_VERSION=5.65.21   # CodeMirror 5: the SQL editor, one file + modes/addons (MIT)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fetch() { # package version -> unpacked into $work/<package>
    (cd "$work" && npm pack --silent "$1@$2" >/dev/null && mkdir -p "$1" && tar -xzf "$1-$2.tgz" -C "$1")
}
fetch echarts "$ECHARTS_VERSION"
fetch codemirror "$CODEMIRROR_VERSION"

rm -rf vendor && mkdir -p vendor/echarts vendor/codemirror
cp "$work/echarts/package/dist/echarts.min.js" vendor/echarts/
cp "$work/echarts/package/LICENSE" vendor/echarts/LICENSE
cp "$work/echarts/package/NOTICE" vendor/echarts/NOTICE 2>/dev/null || true
cm="$work/codemirror/package"
cp "$cm/lib/codemirror.js" "$cm/lib/codemirror.css" vendor/codemirror/
cp "$cm/mode/sql/sql.js" vendor/codemirror/mode-sql.js
cp "$cm/addon/hint/show-hint.js" "$cm/addon/hint/show-hint.css" "$cm/addon/hint/sql-hint.js" vendor/codemirror/
cp "$cm/addon/edit/matchbrackets.js" vendor/codemirror/
cp "$cm/LICENSE" vendor/codemirror/LICENSE
cat > vendor/VERSIONS <<VERSIONS
echarts $ECHARTS_VERSION Apache-2.0
codemirror $CODEMIRROR_VERSION MIT
VERSIONS
echo "vendored into ui/vendor:"; du -sh vendor/*
