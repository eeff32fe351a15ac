/**
 * SQL Lab and what the UI does with awkward data: running queries (grid and status agree with
 * the REST API), SQL errors shown in place, a result far over the row cap (a notice, a grid that
 * stays small in the DOM, a page that stays responsive), and HTML in values shown as text in
 * the grid, in chart lists and in charts (no script runs).
 */

import assert from 'node:assert/strict';

import { byTestId, go, gridRows, login, newPage, parseShownNumber, runInSqlLab, uiTest, useSuite } from './harness.mjs';

const suite = useSuite();

const XSS_IMG = '<img src=x onerror="window.__xss=1">';
const XSS_BOLD = '<b>bold</b>';
const XSS_CHART_NAME = '<img src=x onerror="window.__xss=2"> chart';

async function openSqlLab(page) {
  await login(page, suite);
  await byTestId(page, 'nav-sql').click();
  await page.waitForFunction(() => location.hash.startsWith('#/sql'));
  await byTestId(page, 'sql-editor').waitFor({ state: 'visible' });
}

/** Waits until the status line reports `rows` rows and answers its text. */
async function statusReporting(page, rows) {
  const pattern = `\\b${rows.toLocaleString('en-US')} rows?\\b`;
  await page.waitForFunction((re) => new RegExp(re, 'i').test(document.querySelector('[data-testid="sql-status"]')?.textContent || ''), pattern);
  return (await byTestId(page, 'sql-status').textContent()).trim();
}

/** What no HTML injection may leave behind. */
async function assertNoInjection(page) {
  assert.equal(await page.evaluate(() => window.__xss), undefined, 'an onerror handler from the data ran');
  assert.equal(await page.locator('img[src="x"]').count(), 0, 'an <img src=x> from the data was created');
  assert.equal(await page.locator('b', { hasText: /^bold$/ }).count(), 0, 'a <b> from the data was created');
}

uiTest(suite, 'a query runs with Ctrl+Enter; grid and status agree with the REST API', async () => {
  const page = await newPage(suite);
  await openSqlLab(page);
  const sql = 'SELECT country, orders, revenue FROM gold.revenue_by_country ORDER BY country';
  await runInSqlLab(page, sql);

  const grid = byTestId(page, 'results-grid');
  await grid.locator('[data-testid="grid-row"]').first().waitFor({ state: 'visible' });
  // The same query over REST, with the token the UI keeps (so the UI's login is a real one).
  const expected = await page.evaluate(async (text) => {
    const response = await fetch('/api/v1/sql', {
      method: 'POST',
      headers: { Authorization: `Bearer ${localStorage.getItem('polder.token')}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ sql: text, format: 'json' }),
    });
    return { status: response.status, body: await response.json() };
  }, sql);
  assert.equal(expected.status, 200, JSON.stringify(expected.body));
  const apiRows = expected.body.rows;
  assert.equal(apiRows.length, 8, 'the demo has 8 countries');

  const status = await statusReporting(page, apiRows.length);
  assert.match(status, /\d+(\.\d+)?\s*(ms|s)\b/, `sql-status gives no duration: ${status}`);
  const headers = (await grid.locator('[data-testid="grid-header"]').allTextContents()).map((h) => h.trim());
  for (const column of ['country', 'orders', 'revenue']) {
    assert.ok(headers.some((h) => h.startsWith(column)), `grid-header lacks ${column}: ${headers}`);
  }
  const shown = await gridRows(grid);
  assert.equal(shown.length, apiRows.length, 'the grid shows a different number of rows than the API answers');
  apiRows.forEach((apiRow, i) => {
    const cells = shown[i];
    assert.ok(cells.includes(apiRow.country), `row ${i}: ${cells} lacks ${apiRow.country}`);
    assert.ok(cells.some((c) => parseShownNumber(c) === Number(apiRow.orders)), `row ${i}: ${cells} lacks orders ${apiRow.orders}`);
    assert.ok(cells.some((c) => Math.abs(parseShownNumber(c) - Number(apiRow.revenue)) < 0.006),
      `row ${i}: ${cells} lacks revenue ${apiRow.revenue}`);
  });
  assert.deepEqual(page.pageErrors, [], 'uncaught errors in the page');
});

uiTest(suite, 'a SQL error shows in sql-error and the next query still runs', async () => {
  const page = await newPage(suite);
  await openSqlLab(page);
  await runInSqlLab(page, 'SELECT no_such_column FROM gold.revenue_by_country');
  const error = byTestId(page, 'sql-error');
  await error.waitFor({ state: 'visible' });
  assert.match(await error.textContent(), /no_such_column/);

  await runInSqlLab(page, 'SELECT 41 + 1 AS answer');
  await statusReporting(page, 1);
  const rows = await gridRows(byTestId(page, 'results-grid'));
  assert.equal(rows.length, 1);
  assert.ok(rows[0].includes('42'), `the answer row shows ${rows[0]}`);
  assert.equal(await error.isVisible().catch(() => false), false, 'the old error is still shown after a good query');
  assert.deepEqual(page.pageErrors, [], 'uncaught errors in the page');
});

uiTest(suite, 'a million-row result is capped with a notice; the grid stays virtual and the page responsive', async () => {
  const page = await newPage(suite);
  await openSqlLab(page);
  await runInSqlLab(page, 'SELECT value AS n, value * 2 AS twice FROM generate_series(1, 1000000) ORDER BY n');

  const notice = byTestId(page, 'sql-notice');
  await notice.waitFor({ state: 'visible', timeout: 60_000 });
  assert.match(await notice.textContent(), /\d[\d,]*/, 'the cap notice does not say where the cap is');
  const grid = byTestId(page, 'results-grid');
  await grid.locator('[data-testid="grid-row"]').first().waitFor({ state: 'visible' });

  // Responsive: a script call and the next animation frame come back quickly.
  const started = Date.now();
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => resolve())));
  const frameMs = Date.now() - started;
  assert.ok(frameMs < 1000, `the page took ${frameMs} ms to render a frame with the capped result`);
  const rendered = await grid.locator('[data-testid="grid-row"]').count();
  assert.ok(rendered > 0 && rendered < 200, `${rendered} grid-row elements in the DOM: the grid is not virtual`);

  // Scrolling to the end renders the last rows (still only a window of them).
  const scrolled = await grid.evaluate((root) => {
    const scroller = [root, ...root.querySelectorAll('*')].find((el) => {
      const style = getComputedStyle(el);
      return el.scrollHeight > el.clientHeight + 1000 && /(auto|scroll)/.test(style.overflowY);
    });
    if (!scroller) return false;
    scroller.scrollTop = scroller.scrollHeight;
    scroller.dispatchEvent(new Event('scroll'));
    return true;
  });
  assert.ok(scrolled, 'no scrollable element holds the capped result in results-grid');
  await page.waitForFunction(() => Array.from(document.querySelectorAll('[data-testid="results-grid"] [data-testid="grid-row"]'))
    .some((row) => Array.from(row.querySelectorAll('[data-testid="grid-cell"]'))
      .some((cell) => Number(cell.textContent.replace(/[,\s]/g, '')) >= 90_000)));
  const renderedAtEnd = await grid.locator('[data-testid="grid-row"]').count();
  assert.ok(renderedAtEnd < 200, `${renderedAtEnd} grid-row elements after scrolling to the end`);

  // The app still works: the next query runs.
  await runInSqlLab(page, 'SELECT 7 AS seven');
  await statusReporting(page, 1);
  assert.deepEqual(page.pageErrors, [], 'uncaught errors in the page');
});

uiTest(suite, 'HTML in values shows as text in the grid, the chart list and charts; no script runs', async () => {
  await suite.rest.sql(`CREATE TABLE bronze.xss AS SELECT '${XSS_IMG.replace(/'/g, "''")}' AS v, '${XSS_BOLD}' AS w`);
  const barChart = await suite.rest.call('POST', '/api/v1/charts', {
    name: XSS_CHART_NAME,
    spec: {
      type: 'bar',
      source: { table: 'bronze.xss' },
      dimensions: [{ column: 'v' }],
      measures: [{ agg: 'count', label: 'n' }],
    },
  });
  const tableChart = await suite.rest.call('POST', '/api/v1/charts', {
    name: 'XSS table',
    spec: {
      type: 'table',
      source: { table: 'bronze.xss' },
      dimensions: [{ column: 'v' }, { column: 'w' }],
      measures: [{ agg: 'count', label: 'n' }],
    },
  });

  const page = await newPage(suite);
  await openSqlLab(page);
  await runInSqlLab(page, 'SELECT v, w FROM bronze.xss');
  await statusReporting(page, 1);
  const [row] = await gridRows(byTestId(page, 'results-grid'));
  assert.ok(row.includes(XSS_IMG), `the grid does not show the literal text: ${row}`);
  assert.ok(row.includes(XSS_BOLD), `the grid does not show the literal text: ${row}`);
  await assertNoInjection(page);

  await go(page, '#/charts');
  const item = byTestId(page, 'chart-list').locator('[data-testid="chart-item"]', { hasText: 'onerror' });
  await item.first().waitFor({ state: 'visible' });
  assert.ok((await item.first().textContent()).includes(XSS_CHART_NAME), 'the chart list does not show the literal name');
  await assertNoInjection(page);

  // The bar chart: ECharts draws the label on a canvas; its tooltip is HTML, so hover the bar.
  await go(page, `#/charts/${barChart.id}`);
  const canvas = byTestId(page, 'chart-canvas');
  await canvas.locator('canvas, svg').first().waitFor({ state: 'visible', timeout: 30_000 });
  const box = await canvas.boundingBox();
  for (let step = 1; step < 10; step += 1) {
    await page.mouse.move(box.x + box.width / 2, box.y + (box.height * step) / 10);
  }
  await assertNoInjection(page);

  await go(page, `#/charts/${tableChart.id}`);
  const cell = byTestId(page, 'chart-canvas').locator('[data-testid="grid-cell"]', { hasText: 'onerror' });
  await cell.first().waitFor({ state: 'visible', timeout: 30_000 });
  assert.equal((await cell.first().textContent()).trim(), XSS_IMG);
  await assertNoInjection(page);
  assert.deepEqual(page.pageErrors, [], 'uncaught errors in the page');
});
