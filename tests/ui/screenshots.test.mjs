/**
 * Screenshots of every screen at 1280×800, the dashboard and SQL Lab on a phone (390×844) and
 * the dashboard in the dark theme, into the artifacts folder, for people to look at. Each screen
 * is captured once it has its content (not a spinner), and the phone layout is checked to fit.
 */

import assert from 'node:assert/strict';

import {
  ARTIFACTS_DIR, PHONE, byTestId, fileSize, go, login, newPage, runInSqlLab, shot, uiTest, useSuite, waitForTiles,
} from './harness.mjs';

const suite = useSuite();
const taken = [];

async function capture(page, name) {
  taken.push(await shot(page, name));
}

uiTest(suite, 'every screen at 1280×800', async () => {
  const overview = await suite.rest.dashboardByName('Shop overview');
  const page = await newPage(suite);
  await page.goto(`${suite.server.url}/`);
  await byTestId(page, 'login-form').waitFor({ state: 'visible' });
  await capture(page, 'login');

  await login(page, suite, { hash: '#/data/gold/daily_revenue' });
  await byTestId(page, 'table-detail').waitFor({ state: 'visible' });
  await page.locator('[data-testid="table-preview"] [data-testid="grid-row"], [data-testid="table-columns"]').first().waitFor({ state: 'visible' });
  await capture(page, 'data');

  await go(page, '#/sql');
  await runInSqlLab(page, 'SELECT * FROM gold.daily_revenue ORDER BY order_date DESC');
  await byTestId(page, 'results-grid').locator('[data-testid="grid-row"]').first().waitFor({ state: 'visible' });
  await capture(page, 'sql');

  await go(page, '#/charts');
  await byTestId(page, 'chart-list').locator('[data-testid="chart-item"]').first().waitFor({ state: 'visible' });
  await capture(page, 'charts');

  const firstChart = overview.tiles?.[0]?.chart_id
    || (await suite.rest.call('GET', `/api/v1/dashboards/${overview.id}`)).tiles[0].chart_id;
  await go(page, `#/charts/${firstChart}`);
  await byTestId(page, 'chart-canvas').locator('canvas, svg, [data-testid="grid-row"]').first().waitFor({ state: 'visible', timeout: 30_000 });
  await capture(page, 'chart-builder');

  await go(page, '#/dashboards');
  await byTestId(page, 'dashboard-list').locator('[data-testid="dashboard-item"]').first().waitFor({ state: 'visible' });
  await capture(page, 'dashboards');

  await go(page, `#/dashboards/${overview.id}`);
  await waitForTiles(page, { minTiles: 6 });
  await capture(page, 'dashboard');

  await go(page, '#/pipelines');
  await byTestId(page, 'connections-list').or(byTestId(page, 'projects-list')).first().waitFor({ state: 'visible' });
  await capture(page, 'pipelines');

  await go(page, '#/admin');
  await byTestId(page, 'users-list').locator('[data-testid="user-row"]').first().waitFor({ state: 'visible' });
  await capture(page, 'admin');
  assert.deepEqual(page.pageErrors, [], 'uncaught errors in the page');
});

uiTest(suite, 'the dashboard and SQL Lab on a phone (390×844) fit the screen', async () => {
  const overview = await suite.rest.dashboardByName('Shop overview');
  const page = await newPage(suite, { viewport: PHONE });
  await login(page, suite, { hash: `#/dashboards/${overview.id}` });
  const tiles = await waitForTiles(page, { minTiles: 6 });
  assert.ok(tiles.every((t) => t.state === 'drawn'));
  const layout = await page.evaluate(() => ({
    pageWidth: document.documentElement.scrollWidth,
    tiles: Array.from(document.querySelectorAll('[data-testid="dashboard-tile"]'), (t) => {
      const r = t.getBoundingClientRect();
      return { left: Math.round(r.left), right: Math.round(r.right) };
    }),
  }));
  assert.ok(layout.pageWidth <= 390, `the dashboard page is ${layout.pageWidth}px wide on a 390px screen`);
  assert.equal(new Set(layout.tiles.map((t) => t.left)).size, 1, `tiles are not in one column: ${JSON.stringify(layout.tiles)}`);
  assert.ok(layout.tiles.every((t) => t.right <= 390), 'a tile sticks out of the screen');
  await capture(page, 'dashboard-phone');

  await go(page, '#/sql');
  await runInSqlLab(page, 'SELECT * FROM gold.customer_lifetime_value ORDER BY revenue DESC');
  await byTestId(page, 'results-grid').locator('[data-testid="grid-row"]').first().waitFor({ state: 'visible' });
  const sqlWidth = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(sqlWidth <= 390, `SQL Lab is ${sqlWidth}px wide on a 390px screen (the grid should scroll on its own)`);
  await capture(page, 'sql-phone');
  assert.deepEqual(page.pageErrors, [], 'uncaught errors in the page');
});

uiTest(suite, 'the dashboard in the dark theme (switched with the toggle)', async () => {
  const overview = await suite.rest.dashboardByName('Shop overview');
  const page = await newPage(suite, { colorScheme: 'light' });
  await login(page, suite, { hash: `#/dashboards/${overview.id}` });
  await waitForTiles(page, { minTiles: 6 });
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'light');
  const lightBackground = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  await byTestId(page, 'theme-toggle').click();
  await page.waitForFunction(() => document.documentElement.dataset.theme === 'dark');
  assert.equal(await page.evaluate(() => localStorage.getItem('polder.theme')), 'dark', 'the theme is not remembered');
  const darkBackground = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.notEqual(darkBackground, lightBackground, 'the background did not change with the theme');
  // Charts redraw in the new colours; wait for the tiles to settle again.
  await waitForTiles(page, { minTiles: 6 });
  await capture(page, 'dashboard-dark');
  assert.deepEqual(page.pageErrors, [], 'uncaught errors in the page');
});

uiTest(suite, 'the screenshots are in the artifacts folder', async () => {
  const expected = ['login', 'data', 'sql', 'charts', 'chart-builder', 'dashboards', 'dashboard', 'pipelines', 'admin',
    'dashboard-phone', 'sql-phone', 'dashboard-dark'];
  for (const name of expected) {
    const file = `${ARTIFACTS_DIR}/${name}.png`;
    assert.ok(taken.includes(file), `${name}.png was not taken (an earlier test failed)`);
    assert.ok(fileSize(file) > 1000, `${file} is missing or empty`);
  }
});
