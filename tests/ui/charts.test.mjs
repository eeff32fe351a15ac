/**
 * Charts and dashboards: building and saving a chart in the builder, putting it on a new
 * dashboard, the demo "Shop overview" dashboard drawing all its tiles, a dashboard filter that
 * changes the charts and is kept in the URL, and a broken chart failing inside its own tile only.
 */

import assert from 'node:assert/strict';

import { byTestId, eventually, go, login, newPage, uiTest, useSuite, waitForTiles } from './harness.mjs';

const suite = useSuite();

const CHART_NAME = 'Revenue by country (UI test)';
const DASHBOARD_NAME = 'UI test dashboard';

/** Selects the option of `select` whose value or label contains `needle` (values are the UI's business). */
async function selectContaining(page, testId, needle) {
  const select = byTestId(page, testId).first();
  await select.waitFor({ state: 'visible' });
  await page.waitForFunction(([id, text]) => {
    const el = document.querySelector(`[data-testid="${id}"]`);
    return el && Array.from(el.options || []).some((o) => o.value.includes(text) || o.textContent.includes(text));
  }, [testId, needle]);
  const value = await select.evaluate((el, text) => {
    const options = Array.from(el.options);
    const exact = options.find((o) => o.value === text || o.textContent.trim() === text);
    return (exact || options.find((o) => o.value.includes(text) || o.textContent.includes(text))).value;
  }, needle);
  await select.selectOption(value);
}

/** Records the JSON bodies of chart data responses (saved charts and builder previews). */
function recordChartData(page) {
  const seen = [];
  page.on('response', async (response) => {
    const url = new URL(response.url());
    if (!/^\/api\/v1\/charts\/([^/]+\/)?data$/.test(url.pathname)) return;
    const request = response.request();
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    seen.push({ path: url.pathname, status: response.status(), requestBody: request.postDataJSON(), body });
  });
  return seen;
}

uiTest(suite, 'build a bar chart in the builder, run it, save it; it is listed', async () => {
  const page = await newPage(suite);
  const data = recordChartData(page);
  await login(page, suite);
  await byTestId(page, 'nav-charts').click();
  await byTestId(page, 'chart-new').click();
  await page.waitForFunction(() => location.hash.startsWith('#/charts/new'));

  await byTestId(page, 'chart-name').fill(CHART_NAME);
  await selectContaining(page, 'chart-source', 'gold.revenue_by_country');
  await byTestId(page, 'chart-type').selectOption('bar');
  await selectContaining(page, 'chart-dimension', 'country');
  await byTestId(page, 'chart-measure-agg').selectOption('sum');
  await selectContaining(page, 'chart-measure-column', 'revenue');
  // The builder also previews on its own while the form changes: wait for the run of the final spec.
  const isFinalSpec = (response) => {
    if (!response.url().endsWith('/api/v1/charts/data')) return false;
    const spec = response.request().postDataJSON()?.spec;
    return spec?.type === 'bar' && spec.dimensions?.[0]?.column === 'country'
      && spec.measures?.[0]?.agg === 'sum' && spec.measures?.[0]?.column === 'revenue';
  };
  const [response] = await Promise.all([page.waitForResponse(isFinalSpec), byTestId(page, 'chart-run').click()]);
  assert.equal(response.status(), 200, await response.text());
  const run = await response.json();
  assert.equal(run.rows.length, 8, 'one bar per demo country');
  assert.ok(run.columns.some((c) => c.name === 'country'));

  const canvas = byTestId(page, 'chart-canvas');
  await canvas.locator('canvas, svg').first().waitFor({ state: 'visible', timeout: 30_000 });
  await page.waitForFunction(() => document.querySelector('[data-testid="chart-sql"]')?.textContent.includes('revenue_by_country'));
  assert.equal(data.filter((d) => d.status !== 200).length, 0, `failed chart data requests: ${JSON.stringify(data.filter((d) => d.status !== 200))}`);

  await byTestId(page, 'chart-save').click();
  const saved = await eventually(async () => (await suite.rest.call('GET', '/api/v1/charts')).charts.find((c) => c.name === CHART_NAME),
    { message: 'the chart to be saved' });
  assert.equal(saved.spec.type, 'bar');
  assert.deepEqual(saved.spec.source, { table: 'gold.revenue_by_country' });
  assert.equal(saved.spec.dimensions[0].column, 'country');
  assert.equal(saved.spec.measures[0].agg, 'sum');
  assert.equal(saved.spec.measures[0].column, 'revenue');

  // The builder moves to the saved chart's own URL once its save answered; going to the list
  // before that would be undone by it (the REST poll above can see the chart first).
  await page.waitForFunction((id) => window.location.hash === `#/charts/${encodeURIComponent(id)}`, saved.id);
  await go(page, '#/charts');
  await byTestId(page, 'chart-list').locator('[data-testid="chart-item"]', { hasText: CHART_NAME }).waitFor({ state: 'visible' });
  assert.deepEqual(page.pageErrors, [], 'uncaught errors in the page');
});

uiTest(suite, 'create a dashboard, add the saved chart, save it', async () => {
  let { charts } = await suite.rest.call('GET', '/api/v1/charts');
  let chart = charts.find((c) => c.name === CHART_NAME);
  if (!chart) {
    // The builder test failed: make the chart over REST so this test still checks dashboards.
    chart = await suite.rest.call('POST', '/api/v1/charts', {
      name: CHART_NAME,
      spec: { type: 'bar', source: { table: 'gold.revenue_by_country' }, dimensions: [{ column: 'country' }], measures: [{ agg: 'sum', column: 'revenue' }] },
    });
  }

  const page = await newPage(suite);
  await login(page, suite, { hash: '#/dashboards' });
  await byTestId(page, 'nav-dashboards').click();
  await byTestId(page, 'dashboard-new').click();
  // The new-dashboard dialog (dashboards.js's own test ids, beyond the shared contract).
  await byTestId(page, 'dashboard-name').fill(DASHBOARD_NAME);
  await byTestId(page, 'dashboard-create').click();
  await page.waitForFunction(() => /^#\/dashboards\/[^/?]+/.test(location.hash));
  await page.waitForFunction((name) => {
    const title = document.querySelector('[data-testid="dashboard-title"]');
    return title && (title.value ?? title.textContent).includes(name);
  }, DASHBOARD_NAME);

  const picker = byTestId(page, 'dashboard-chart-picker');
  if (!(await picker.isVisible())) await byTestId(page, 'dashboard-edit').click();
  await selectContaining(page, 'dashboard-chart-picker', chart.id);
  await byTestId(page, 'dashboard-add-chart').click();
  const tile = page.locator(`[data-testid="dashboard-tile"][data-chart-id="${chart.id}"]`);
  await tile.waitFor({ state: 'visible' });
  await page.waitForFunction((id) => document.querySelector(`[data-testid="dashboard-tile"][data-chart-id="${id}"]`)?.dataset.state === 'drawn', chart.id);
  await byTestId(page, 'dashboard-save').click();

  const dashboardId = await page.evaluate(() => decodeURIComponent(location.hash.split('/')[2].split('?')[0]));
  const stored = await eventually(async () => {
    const dashboard = await suite.rest.call('GET', `/api/v1/dashboards/${dashboardId}`);
    return dashboard.tiles.some((t) => t.chart_id === chart.id) && dashboard.name === DASHBOARD_NAME ? dashboard : null;
  }, { message: `dashboard ${dashboardId} saved with the name and a tile for chart ${chart.id}` });
  assert.equal(stored.tiles.length, 1);

  await go(page, '#/dashboards');
  await byTestId(page, 'dashboard-list').locator('[data-testid="dashboard-item"]', { hasText: DASHBOARD_NAME }).waitFor({ state: 'visible' });
  assert.deepEqual(page.pageErrors, [], 'uncaught errors in the page');
});

uiTest(suite, 'the demo dashboard draws every tile; a filter changes the charts and is kept in the URL', async () => {
  const overview = await suite.rest.dashboardByName('Shop overview');
  const full = await suite.rest.call('GET', `/api/v1/dashboards/${overview.id}`);
  assert.ok(full.tiles.length >= 6, `the demo dashboard has ${full.tiles.length} tiles`);
  assert.ok(full.filters.length >= 1, 'the demo dashboard has no dashboard filter');

  const page = await newPage(suite);
  const data = recordChartData(page);
  await login(page, suite, { hash: `#/dashboards/${overview.id}` });
  await page.waitForFunction((id) => location.hash.startsWith(`#/dashboards/${id}`), overview.id);
  await byTestId(page, 'dashboard-title').waitFor({ state: 'visible' });
  assert.match(await byTestId(page, 'dashboard-title').evaluate((el) => el.value ?? el.textContent), /Shop overview/);

  const tiles = await waitForTiles(page, { minTiles: full.tiles.length });
  assert.equal(tiles.length, full.tiles.length);
  assert.deepEqual(tiles.filter((t) => t.state !== 'drawn').map((t) => t.chartId), [], 'tiles not drawn');
  const progress = await page.evaluate(() => window.__polderDashboard);
  assert.ok(progress, 'window.__polderDashboard is not set');
  assert.equal(progress.charts, full.tiles.length);
  assert.equal(progress.drawn, full.tiles.length);
  assert.equal(progress.errors, 0);
  assert.ok(progress.doneAt >= progress.startedAt, `doneAt ${progress.doneAt} before startedAt ${progress.startedAt}`);

  // Pick a filter and one of its values (the dropdown's source, over REST).
  // A single-value filter (a dropdown); date ranges have their own inputs.
  const filter = full.filters.find((f) => f.op !== 'between') || full.filters[0];
  const { values } = await suite.rest.call('GET', `/api/v1/dashboards/${overview.id}/values?column=${encodeURIComponent(filter.column)}`);
  assert.ok(values.length >= 2, `filter ${filter.column} offers ${values.length} values`);
  const value = String(values[values.length - 1]);
  await eventually(() => data.filter((d) => d.status === 200).length >= full.tiles.length,
    { message: 'the first load\'s chart data responses' });
  const before = new Map(data.filter((d) => d.status === 200).map((d) => [d.path, JSON.stringify(d.body.rows)]));
  const responsesBefore = data.length;

  const control = byTestId(page, `dashboard-filter-${filter.column}`);
  await control.waitFor({ state: 'visible' });
  if ((await control.evaluate((el) => el.tagName)) === 'SELECT') {
    await control.selectOption(value);
  } else {
    await control.fill(value);
    await control.press('Enter');
  }
  const encoded = `f.${filter.column}=`;
  await page.waitForFunction((prefix) => decodeURIComponent(location.hash).includes(prefix), encoded);
  assert.ok(decodeURIComponent(await page.evaluate(() => location.hash)).includes(`${encoded}${value}`), 'the filter value is not in the URL');

  // Every tile fetches its data again, with the filter.
  await eventually(() => data.length - responsesBefore >= full.tiles.length,
    { timeout: 30_000, message: `${full.tiles.length} chart data responses after setting the filter` });
  await waitForTiles(page, { minTiles: full.tiles.length });
  const after = data.slice(responsesBefore).filter((d) => d.status === 200);
  assert.equal(after.length, full.tiles.length, 'some filtered chart data requests failed');
  assert.ok(after.every((d) => (d.requestBody?.filters || []).some((f) => f.column === filter.column)),
    'a chart was refreshed without the dashboard filter');
  const applied = after.filter((d) => !(d.body.ignored_filters || []).includes(filter.column));
  assert.ok(applied.length > 0, `every chart ignored the filter on ${filter.column}`);
  assert.ok(applied.some((d) => before.has(d.path) && before.get(d.path) !== JSON.stringify(d.body.rows)),
    'no chart that applies the filter changed its data');

  // Shareable: opening the URL in a new session applies the same filter.
  const sharedUrl = page.url();
  const other = await newPage(suite);
  const otherData = recordChartData(other);
  await login(other, suite);
  await other.goto(sharedUrl);
  await waitForTiles(other, { minTiles: full.tiles.length });
  const shownValue = await byTestId(other, `dashboard-filter-${filter.column}`).inputValue();
  assert.equal(shownValue, value, 'the filter control does not show the value from the URL');
  assert.ok(otherData.some((d) => (d.requestBody?.filters || []).some((f) => f.column === filter.column)),
    'opening the shared URL did not send the filter');
  assert.deepEqual(page.pageErrors, [], 'uncaught errors in the page');
});

uiTest(suite, 'a broken chart shows its error in its own tile while the other tile draws', async () => {
  await suite.rest.sql('CREATE TABLE bronze.soon_dropped AS SELECT 1 AS k, 10 AS amount');
  const broken = await suite.rest.call('POST', '/api/v1/charts', {
    name: 'Broken chart',
    spec: { type: 'bar', source: { table: 'bronze.soon_dropped' }, dimensions: [{ column: 'k' }], measures: [{ agg: 'sum', column: 'amount' }] },
  });
  const good = await suite.rest.call('POST', '/api/v1/charts', {
    name: 'Good chart',
    spec: { type: 'bar', source: { table: 'gold.revenue_by_country' }, dimensions: [{ column: 'country' }], measures: [{ agg: 'sum', column: 'orders' }] },
  });
  const dashboard = await suite.rest.call('POST', '/api/v1/dashboards', {
    name: 'Half broken',
    tiles: [
      { chart_id: broken.id, x: 0, y: 0, w: 6, h: 4 },
      { chart_id: good.id, x: 6, y: 0, w: 6, h: 4 },
    ],
  });
  await suite.rest.sql('DROP TABLE bronze.soon_dropped');

  const page = await newPage(suite);
  await login(page, suite, { hash: `#/dashboards/${dashboard.id}` });
  await page.waitForFunction((id) => location.hash.startsWith(`#/dashboards/${id}`), dashboard.id);
  const tiles = await waitForTiles(page, { minTiles: 2 });
  const byChart = Object.fromEntries(tiles.map((t) => [t.chartId, t]));
  assert.equal(byChart[broken.id]?.state, 'error', `the broken chart's tile: ${JSON.stringify(byChart[broken.id])}`);
  assert.equal(byChart[good.id]?.state, 'drawn', `the good chart's tile: ${JSON.stringify(byChart[good.id])}`);
  const brokenTile = page.locator(`[data-testid="dashboard-tile"][data-chart-id="${broken.id}"]`);
  const errorBox = brokenTile.locator('[data-testid="error"]');
  await errorBox.waitFor({ state: 'visible' });
  assert.match(await errorBox.textContent(), /soon_dropped/, 'the tile error does not name the missing table');
  const goodTile = page.locator(`[data-testid="dashboard-tile"][data-chart-id="${good.id}"]`);
  assert.equal(await goodTile.locator('[data-testid="error"]').count(), 0);
  assert.ok((await goodTile.locator('canvas, svg').count()) > 0, 'the good tile has no canvas or svg');
  const progress = await page.evaluate(() => window.__polderDashboard);
  assert.equal(progress.errors, 1);
  assert.equal(progress.drawn, 1);
  assert.deepEqual(page.pageErrors, [], 'uncaught errors in the page');
});
