/**
 * Web UI benchmark: how fast a dashboard over SF1-sized data opens in a browser, what each chart
 * query costs on the server, next to DuckDB on the same data, and how many bytes of JavaScript
 * and CSS the first pages ship. See README.md beside this file.
 *
 *   node bench/ui/run.mjs [--rows 6000000] [--cold-runs 3] [--warm-runs 5] [--reload]
 *
 * POLDER_BIN names the binary (default: the release build in $CARGO_TARGET_DIR or
 * ~/.cache/polder-target). Reuses tests/ui's harness and its playwright-core (run
 * `npm ci` in tests/ui once). Writes bench/results/ui.md and ui.json.
 */

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { ADMIN_PASSWORD, REPO_DIR, Rest, launchBrowser, startServer } from '../../tests/ui/harness.mjs';

const BENCH_DIR = path.join(REPO_DIR, 'bench');
const DATA_DIR = path.join(BENCH_DIR, 'data', 'ui');
const POLDER_DATA = path.join(DATA_DIR, 'polder');
const PARQUET_FILE = path.join(DATA_DIR, 'orders.parquet');
const MARKER = path.join(DATA_DIR, 'bench-load.json');
const RESULTS_DIR = path.join(BENCH_DIR, 'results');
const TARGET_DIR = process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache', 'polder-target');
const DASHBOARD_NAME = 'Orders at scale';
const TARGET_COLD_MS = 1000;
const TARGET_WARM_MS = 300;

const { values: options } = parseArgs({
  options: {
    rows: { type: 'string', default: '6000000' },
    'cold-runs': { type: 'string', default: '3' },
    'warm-runs': { type: 'string', default: '5' },
    reload: { type: 'boolean', default: false },
  },
});
const ROWS = Number(options.rows);
const COLD_RUNS = Number(options['cold-runs']);
const WARM_RUNS = Number(options['warm-runs']);

process.env.POLDER_BIN ||= path.join(TARGET_DIR, 'release', 'polder');
const BINARY = process.env.POLDER_BIN;
if (!existsSync(BINARY)) {
  console.error(`no polder binary at ${BINARY}: build the release binary or set POLDER_BIN`);
  process.exit(2);
}
const PROFILE = BINARY.split(path.sep).includes('release') ? 'release' : BINARY.split(path.sep).includes('debug') ? 'debug' : 'unknown';

// ---------------------------------------------------------------------------------------------
// Data: an order table the size of TPC-H SF1's lineitem, made with SQL (no download), shaped
// like the demo shop's orders so the charts are the kind a shop dashboard has.

const COUNTRIES = ['Netherlands', 'Germany', 'France', 'Belgium', 'Spain', 'Italy', 'Denmark', 'Poland'];
const CATEGORIES = ['Bikes', 'Components', 'Clothing', 'Accessories', 'Helmets', 'Lights', 'Tools', 'Nutrition'];

function pick(expression, items) {
  return `CASE ${expression} ${items.map((item, i) => `WHEN ${i} THEN '${item}'`).join(' ')} END`;
}

function ordersSql(rows) {
  // h: a deterministic pseudo-random number per row (a multiplicative hash modulo a prime),
  // so every run generates the same data. 2024-01-01 is day 19723 since the epoch.
  return `CREATE TABLE bench.orders AS
WITH base AS (SELECT value AS order_id, (value * 2654435761) % 4294967291 AS h FROM generate_series(1, ${rows}))
SELECT order_id,
       arrow_cast(CAST(19723 + h % 731 AS INT), 'Date32') AS order_date,
       1 + (h / 731) % 200000 AS customer_id,
       ${pick('(h / 7) % 8', COUNTRIES)} AS country,
       CASE (h / 13) % 6 WHEN 0 THEN 'web' WHEN 1 THEN 'web' WHEN 2 THEN 'web' WHEN 3 THEN 'mobile' WHEN 4 THEN 'mobile' ELSE 'store' END AS channel,
       ${pick('(h / 17) % 8', CATEGORIES)} AS category,
       CASE WHEN (h / 19) % 100 < 4 THEN 'returned' WHEN (h / 19) % 100 < 11 THEN 'shipped' WHEN (h / 19) % 100 < 14 THEN 'placed' ELSE 'delivered' END AS status,
       CAST(1 + (h / 23) % 4 AS INT) AS quantity,
       CAST(5 + ((h / 29) % 50000) / 100.0 AS DECIMAL(12, 2)) AS amount
FROM base`;
}

/** The dashboard's charts: one of each kind a shop dashboard has, all over bench.orders. */
const CHARTS = [
  { name: 'Revenue by month', spec: { type: 'line', dimensions: [{ column: 'order_date', time_grain: 'month' }], measures: [{ agg: 'sum', column: 'amount', label: 'Revenue' }] } },
  { name: 'Revenue by country', spec: { type: 'bar', dimensions: [{ column: 'country' }], measures: [{ agg: 'sum', column: 'amount', label: 'Revenue' }], sort: { by: 'Revenue', desc: true } } },
  { name: 'Orders by channel', spec: { type: 'pie', dimensions: [{ column: 'channel' }], measures: [{ agg: 'count', label: 'Orders' }] } },
  { name: 'Revenue by month and channel', spec: { type: 'stacked_bar', dimensions: [{ column: 'order_date', time_grain: 'month' }, { column: 'channel' }], measures: [{ agg: 'sum', column: 'amount', label: 'Revenue' }] } },
  { name: 'Total revenue', spec: { type: 'big_number', dimensions: [], measures: [{ agg: 'sum', column: 'amount', label: 'Revenue' }] } },
  { name: 'Revenue by category and country', spec: { type: 'heatmap', dimensions: [{ column: 'category' }, { column: 'country' }], measures: [{ agg: 'sum', column: 'amount', label: 'Revenue' }] } },
  { name: 'Categories', spec: { type: 'table', dimensions: [{ column: 'category' }], measures: [{ agg: 'sum', column: 'amount', label: 'Revenue' }, { agg: 'count_distinct', column: 'customer_id', label: 'Customers' }, { agg: 'avg', column: 'amount', label: 'Average order' }], sort: { by: 'Revenue', desc: true } } },
  { name: 'Average order by status', spec: { type: 'bar', dimensions: [{ column: 'status' }], measures: [{ agg: 'avg', column: 'amount', label: 'Average order' }] } },
];

async function timed(fn) {
  const started = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - started };
}

/** Generates the data and the dashboard once; later runs reuse them (unless --reload). */
async function prepare() {
  if (!options.reload && existsSync(MARKER)) {
    const marker = JSON.parse(readFileSync(MARKER, 'utf8'));
    if (marker.rows === ROWS && existsSync(PARQUET_FILE)) return { ...marker, reused: true };
  }
  rmSync(DATA_DIR, { recursive: true, force: true });
  mkdirSync(POLDER_DATA, { recursive: true });
  console.log(`generating bench.orders (${ROWS.toLocaleString('en-US')} rows) in ${POLDER_DATA}`);
  const server = await startServer({ demo: false, dataDir: POLDER_DATA });
  try {
    const rest = await Rest.login(server.url, 'admin', ADMIN_PASSWORD);
    await rest.sql('CREATE SCHEMA bench');
    const load = await timed(() => rest.sql(ordersSql(ROWS)));
    const charts = [];
    for (const chart of CHARTS) {
      charts.push(await rest.call('POST', '/api/v1/charts', { name: chart.name, spec: { ...chart.spec, source: { table: 'bench.orders' } } }));
    }
    const tiles = charts.map((chart, i) => ({ chart_id: chart.id, x: (i % 2) * 6, y: Math.floor(i / 2) * 4, w: 6, h: 4 }));
    const dashboard = await rest.call('POST', '/api/v1/dashboards', {
      name: DASHBOARD_NAME,
      filters: [{ column: 'country', label: 'Country', op: '=' }],
      tiles,
    });
    // The same rows as one Parquet file for DuckDB, exported through the REST API.
    const exported = await timed(async () => {
      const response = await fetch(`${server.url}/api/v1/sql`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${rest.token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ sql: 'SELECT * FROM bench.orders', format: 'parquet' }),
      });
      if (!response.ok) throw new Error(`Parquet export failed: ${response.status} ${await response.text()}`);
      writeFileSync(PARQUET_FILE, Buffer.from(await response.arrayBuffer()));
    });
    const marker = {
      rows: ROWS,
      load_ms: Math.round(load.ms),
      export_ms: Math.round(exported.ms),
      parquet_bytes: statSync(PARQUET_FILE).size,
      dashboard_id: dashboard.id,
      charts: charts.map((c) => ({ id: c.id, name: c.name, type: c.spec.type })),
      generated_with: BINARY,
      generated_at: new Date().toISOString(),
    };
    writeFileSync(MARKER, JSON.stringify(marker, null, 2));
    return { ...marker, reused: false };
  } finally {
    await server.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Browser measurements

/** Records JS/CSS responses (sizes) and chart data responses (server time) of a page. */
function recorder(page) {
  const record = { assets: [], chartData: [] };
  page.on('response', async (response) => {
    const url = new URL(response.url());
    try {
      if (/\/api\/v1\/charts\/[^/]+\/data$/.test(url.pathname)) {
        const body = await response.json();
        record.chartData.push({ chartId: url.pathname.split('/')[4], status: response.status(), elapsedMs: body.elapsed_ms, sql: body.sql, rows: body.row_count });
      } else if (/\.(m?js|css)$/.test(url.pathname)) {
        const [body, sizes] = await Promise.all([response.body(), response.request().sizes()]);
        record.assets.push({ path: url.pathname, status: response.status(), encoding: response.headers()['content-encoding'] || 'identity', transferred: sizes.responseBodySize, uncompressed: body.length });
      }
    } catch {
      // A response the page navigated away from: not part of a finished load.
    }
  });
  return record;
}

/** Waits for the dashboard to finish; answers window.__polderDashboard (doneAt is ms since navigation start). */
async function dashboardDone(page, expectedCharts) {
  await page.waitForFunction(() => window.__polderDashboard && window.__polderDashboard.doneAt != null, null, { timeout: 300_000 });
  const progress = await page.evaluate(() => ({ ...window.__polderDashboard }));
  if (progress.errors > 0 || progress.drawn !== expectedCharts) {
    const errors = await page.locator('[data-testid="dashboard-tile"][data-state="error"]').allTextContents();
    throw new Error(`the dashboard finished with ${progress.errors} errors and ${progress.drawn}/${expectedCharts} drawn: ${errors.join(' | ')}`);
  }
  return progress;
}

async function settledRecord(record, expectedCharts) {
  // Response bodies are read asynchronously; wait until each chart's arrived.
  const deadline = Date.now() + 10_000;
  while (record.chartData.length < expectedCharts && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return record;
}

async function contextWithToken(browser, token) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.addInitScript((t) => localStorage.setItem('polder.token', t), token);
  return context;
}

async function measureLoginPage(browser, url) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const record = recorder(page);
  await page.goto(`${url}/`, { waitUntil: 'networkidle' });
  await page.locator('[data-testid="login-form"]').waitFor();
  await context.close();
  return record.assets;
}

/** One cold sample (fresh server, fresh context) followed by `warmRuns` reloads. */
async function measureDashboard(prepared, warmRuns) {
  const server = await startServer({ demo: false, dataDir: POLDER_DATA });
  const browser = await launchBrowser();
  try {
    const rest = await Rest.login(server.url, 'admin', ADMIN_PASSWORD);
    const context = await contextWithToken(browser, rest.token);
    const page = await context.newPage();
    let record = recorder(page);
    await page.goto(`${server.url}/#/dashboards/${prepared.dashboard_id}`);
    const cold = await dashboardDone(page, prepared.charts.length);
    await settledRecord(record, prepared.charts.length);
    const coldSample = { doneMs: cold.doneAt, startedMs: cold.startedAt, chartData: record.chartData, assets: record.assets };
    const warm = [];
    for (let run = 0; run < warmRuns; run += 1) {
      page.removeAllListeners('response');
      record = recorder(page);
      await page.reload();
      const done = await dashboardDone(page, prepared.charts.length);
      await settledRecord(record, prepared.charts.length);
      warm.push({ doneMs: done.doneAt, startedMs: done.startedAt, chartData: record.chartData, assets: record.assets });
    }
    // Each chart query alone (no other query competing for the 2 cores), as DuckDB runs them.
    const alone = {};
    for (const chart of prepared.charts) {
      alone[chart.id] = [];
      for (let run = 0; run < warmRuns; run += 1) {
        const answer = await rest.call('POST', `/api/v1/charts/${chart.id}/data`, {});
        alone[chart.id].push(answer.elapsed_ms);
      }
    }
    await context.close();
    return { cold: coldSample, warm, alone, browserVersion: browser.version() };
  } finally {
    await browser.close();
    await server.stop();
  }
}

async function measureLoginAssets() {
  const server = await startServer({ demo: false, dataDir: POLDER_DATA });
  const browser = await launchBrowser();
  try {
    return await measureLoginPage(browser, server.url);
  } finally {
    await browser.close();
    await server.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// DuckDB

function pythonWithDuckdb() {
  const candidates = [process.env.POLDER_BENCH_PYTHON, path.join(os.homedir(), '.cache', 'polder-venv', 'bin', 'python'), 'python3'].filter(Boolean);
  for (const python of candidates) {
    const probe = spawnSync(python, ['-c', 'import duckdb'], { encoding: 'utf8' });
    if (probe.status === 0) return python;
  }
  return null;
}

function runDuckdb(queries, runs) {
  const python = pythonWithDuckdb();
  if (!python) return { error: 'no Python with duckdb (pip install -r bench/requirements.txt into ~/.cache/polder-venv)' };
  const output = execFileSync(python, [path.join(BENCH_DIR, 'ui', 'duckdb_peer.py')], {
    input: JSON.stringify({ tables: { 'bench.orders': PARQUET_FILE }, queries, runs }),
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  return JSON.parse(output);
}

// ---------------------------------------------------------------------------------------------
// Report

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length === 0 ? null : sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const best = (values) => (values.length ? Math.min(...values) : null);
const ms = (value) => (value == null ? '–' : `${value < 10 ? value.toFixed(1) : Math.round(value).toLocaleString('en-US')} ms`);
const kib = (bytes) => `${(bytes / 1024).toFixed(1)} KiB`;

function sumAssets(assets) {
  const ok = assets.filter((a) => a.status === 200);
  return {
    files: ok.length,
    transferred: ok.reduce((n, a) => n + a.transferred, 0),
    uncompressed: ok.reduce((n, a) => n + a.uncompressed, 0),
    list: ok.map((a) => ({ path: a.path, encoding: a.encoding, transferred: a.transferred, uncompressed: a.uncompressed })),
  };
}

function machine() {
  let free = '';
  try {
    free = execFileSync('free', ['-g'], { encoding: 'utf8' }).trimEnd();
  } catch {
    free = 'unavailable';
  }
  return { nproc: os.cpus().length, cpu: os.cpus()[0]?.model || 'unknown', kernel: os.release(), loadavg: os.loadavg().map((l) => l.toFixed(2)).join(' '), free };
}

function binaryVersion() {
  try {
    return execFileSync(BINARY, ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

async function main() {
  const host = machine();
  const prepared = await prepare();
  console.log(prepared.reused ? `reusing ${DATA_DIR} (${prepared.rows.toLocaleString('en-US')} rows)` : `generated in ${prepared.load_ms} ms`);

  const samples = [];
  for (let run = 0; run < COLD_RUNS; run += 1) {
    console.log(`dashboard run ${run + 1}/${COLD_RUNS}: cold open + ${WARM_RUNS} reloads`);
    samples.push(await measureDashboard(prepared, WARM_RUNS));
  }
  const loginAssets = sumAssets(await measureLoginAssets());
  const dashboardAssets = sumAssets(samples[0].cold.assets);

  // Per chart: server time when the dashboard opens cold, warm (reloads), and alone.
  const perChart = prepared.charts.map((chart) => {
    const of = (sample) => sample.chartData.filter((d) => d.chartId === chart.id && d.status === 200).map((d) => d.elapsedMs);
    const sql = samples[0].cold.chartData.find((d) => d.chartId === chart.id)?.sql;
    return {
      ...chart,
      sql,
      cold_ms: median(samples.flatMap((s) => of(s.cold))),
      warm_ms: median(samples.flatMap((s) => s.warm.flatMap(of))),
      alone_ms: median(samples.flatMap((s) => s.alone[chart.id])),
      alone_best_ms: best(samples.flatMap((s) => s.alone[chart.id])),
    };
  });
  const duckdb = runDuckdb(perChart.filter((c) => c.sql).map((c) => ({ name: c.id, sql: c.sql })), WARM_RUNS);
  for (const chart of perChart) {
    const peer = (duckdb.results || []).find((r) => r.name === chart.id);
    chart.duckdb_ms = peer?.median_ms ?? null;
    chart.duckdb_best_ms = peer?.best_ms ?? null;
    chart.duckdb_error = peer?.error ?? null;
    chart.ratio = chart.duckdb_ms ? chart.alone_ms / chart.duckdb_ms : null;
  }

  const coldDone = samples.map((s) => s.cold.doneMs);
  const warmDone = samples.flatMap((s) => s.warm.map((w) => w.doneMs));
  const result = {
    date: new Date().toISOString(),
    machine: host,
    binary: { path: BINARY, version: binaryVersion(), profile: PROFILE },
    chromium: samples[0].browserVersion,
    duckdb: duckdb.version || duckdb.error,
    data: { rows: prepared.rows, load_ms: prepared.load_ms, parquet_bytes: prepared.parquet_bytes, reused: prepared.reused },
    dashboard: {
      charts: prepared.charts.length,
      cold_ms: { median: median(coldDone), best: best(coldDone), samples: coldDone },
      warm_ms: { median: median(warmDone), best: best(warmDone), samples: warmDone },
    },
    charts: perChart,
    assets: { login: loginAssets, dashboard: dashboardAssets },
  };

  const markdown = report(result);
  console.log(`\n${markdown}`);
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(path.join(RESULTS_DIR, 'ui.md'), markdown);
  writeFileSync(path.join(RESULTS_DIR, 'ui.json'), JSON.stringify(result, null, 2));
  console.log(`wrote ${path.join(RESULTS_DIR, 'ui.md')} and ui.json`);
}

function verdict(value, target) {
  return value == null ? '–' : value < target ? 'met' : 'missed';
}

function report(r) {
  const lines = [
    '# Web UI: dashboard load over SF1-sized data',
    '',
    `- Date: ${r.date}`,
    `- Machine: nproc ${r.machine.nproc}, ${r.machine.cpu}, Linux ${r.machine.kernel}, load average at start ${r.machine.loadavg}`,
    `- Binary: ${r.binary.path} (${r.binary.version}, ${r.binary.profile} build)${r.binary.profile === 'release' ? '' : ' — **not a release build: the times say nothing about performance**'}`,
    `- Browser: headless Chromium ${r.chromium} (playwright-core), 1280×800`,
    `- Peer: DuckDB ${r.duckdb} (Python, in-process, threads = nproc) on the same rows as one Parquet file`,
    `- Data: \`bench.orders\`, ${r.data.rows.toLocaleString('en-US')} rows generated with SQL (\`generate_series\`), ${kib(r.data.parquet_bytes)} as Parquet${r.data.reused ? ' (reused from an earlier run)' : `; generated in ${ms(r.data.load_ms)}`}`,
    '',
    '`free -g`:',
    '',
    '```',
    r.machine.free,
    '```',
    '',
    `## Dashboard "${DASHBOARD_NAME}" (${r.dashboard.charts} charts)`,
    '',
    'Time from navigation start to `window.__polderDashboard.doneAt` (every tile drawn). Cold: a new',
    'browser context (empty cache) opening the dashboard first after the server started; warm: a reload.',
    '',
    '| load | median | best | samples | target | |',
    '| --- | ---: | ---: | ---: | ---: | --- |',
    `| cold | ${ms(r.dashboard.cold_ms.median)} | ${ms(r.dashboard.cold_ms.best)} | ${r.dashboard.cold_ms.samples.length} | < ${TARGET_COLD_MS} ms | ${verdict(r.dashboard.cold_ms.median, TARGET_COLD_MS)} |`,
    `| warm | ${ms(r.dashboard.warm_ms.median)} | ${ms(r.dashboard.warm_ms.best)} | ${r.dashboard.warm_ms.samples.length} | < ${TARGET_WARM_MS} ms | ${verdict(r.dashboard.warm_ms.median, TARGET_WARM_MS)} |`,
    '',
    '## Chart queries (server time)',
    '',
    '`elapsed_ms` of each chart\'s data response: while the dashboard opens cold and warm (all charts',
    'at once, sharing the cores), and the chart alone (one request at a time). DuckDB runs the SQL',
    'Polder generated for the chart, one query at a time; the ratio is Polder alone / DuckDB (medians;',
    'above 1 means Polder is slower).',
    '',
    '| chart | type | cold | warm | alone | DuckDB | Polder/DuckDB |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: |',
    ...r.charts.map((c) => `| ${c.name} | ${c.type} | ${ms(c.cold_ms)} | ${ms(c.warm_ms)} | ${ms(c.alone_ms)} | ${c.duckdb_error ? 'error' : ms(c.duckdb_ms)} | ${c.ratio == null ? '–' : c.ratio.toFixed(2)} |`),
    '',
    '## JavaScript and CSS shipped',
    '',
    'Sum over the .js/.css responses of a fresh browser context: transferred is the body as sent',
    '(compressed when the server compressed it), uncompressed is what the browser got after decoding.',
    '',
    '| page | files | transferred | uncompressed |',
    '| --- | ---: | ---: | ---: |',
    `| login | ${r.assets.login.files} | ${kib(r.assets.login.transferred)} | ${kib(r.assets.login.uncompressed)} |`,
    `| dashboard (after login, charts drawn) | ${r.assets.dashboard.files} | ${kib(r.assets.dashboard.transferred)} | ${kib(r.assets.dashboard.uncompressed)} |`,
    '',
    'Files of the dashboard page:',
    '',
    '| file | encoding | transferred | uncompressed |',
    '| --- | --- | ---: | ---: |',
    ...r.assets.dashboard.list.map((a) => `| \`${a.path}\` | ${a.encoding} | ${kib(a.transferred)} | ${kib(a.uncompressed)} |`),
    '',
  ];
  const failed = r.charts.filter((c) => c.duckdb_error);
  if (failed.length) {
    lines.push('DuckDB errors:', '', ...failed.map((c) => `- ${c.name}: ${c.duckdb_error}`), '');
  }
  return lines.join('\n');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
