/**
 * A viewer: sees only the dashboards shared with it, can open and draw them, and has no SQL
 * Lab (nor Data, chart building or pipelines) in the navigation.
 */

import assert from 'node:assert/strict';

import { byTestId, login, newPage, uiTest, useSuite, waitForTiles } from './harness.mjs';

const suite = useSuite();

const VIEWER = 'vera';
const VIEWER_PASSWORD = 'vera-sees-dashboards-1';

uiTest(suite, 'a viewer lists only the dashboard shared with it, draws it, and has no SQL Lab', async () => {
  await suite.rest.call('POST', '/api/v1/users', { name: VIEWER, role: 'viewer', password: VIEWER_PASSWORD });
  const overview = await suite.rest.dashboardByName('Shop overview');
  const shared = await suite.rest.call('GET', `/api/v1/dashboards/${overview.id}`);
  await suite.rest.call('PUT', `/api/v1/dashboards/${overview.id}`, { ...shared, shared_with: [...(shared.shared_with || []), `user:${VIEWER}`] });
  // A second dashboard the viewer must not see.
  await suite.rest.call('POST', '/api/v1/dashboards', { name: 'Not for viewers', tiles: [] });
  const { dashboards } = await suite.rest.call('GET', '/api/v1/dashboards');
  assert.ok(dashboards.length >= 2, 'the admin should see at least two dashboards');

  const page = await newPage(suite);
  await login(page, suite, { username: VIEWER, password: VIEWER_PASSWORD });
  // Viewers land on the dashboards.
  await page.waitForFunction(() => location.hash.startsWith('#/dashboards'));
  const items = byTestId(page, 'dashboard-list').locator('[data-testid="dashboard-item"]');
  await items.first().waitFor({ state: 'visible' });
  assert.equal(await items.count(), 1, `the viewer sees ${await items.count()} dashboards`);
  assert.match(await items.first().textContent(), /Shop overview/);

  for (const hidden of ['nav-sql', 'nav-data', 'nav-pipelines', 'nav-admin']) {
    assert.equal(await byTestId(page, hidden).filter({ visible: true }).count(), 0, `${hidden} is shown to a viewer`);
  }
  assert.equal(await byTestId(page, 'nav-dashboards').isVisible(), true);
  assert.equal(await byTestId(page, 'dashboard-new').filter({ visible: true }).count(), 0, 'a viewer is offered to create a dashboard');

  await items.first().click();
  await page.waitForFunction((id) => location.hash.startsWith(`#/dashboards/${id}`), overview.id);
  const tiles = await waitForTiles(page, { minTiles: shared.tiles.length });
  assert.deepEqual(tiles.filter((t) => t.state !== 'drawn').map((t) => `${t.chartId}: ${t.text.slice(0, 200)}`), [],
    'tiles the viewer could not draw');
  assert.equal(await byTestId(page, 'dashboard-edit').filter({ visible: true }).count(), 0, 'a viewer is offered to edit');
  assert.deepEqual(page.pageErrors, [], 'uncaught errors in the page');
});
