/**
 * The Data screen: browsing the catalog tree to a gold table, its columns, a preview of its
 * rows, its Delta history, and "query this version" handing a time-travel query to SQL Lab.
 */

import assert from 'node:assert/strict';

import { byTestId, gridRows, login, newPage, uiTest, useSuite } from './harness.mjs';

const suite = useSuite();

/**
 * Some layouts put columns, preview and history on tabs: click the tab named `label` when the
 * part is not visible yet, as a person would.
 */
async function reveal(page, testId, label) {
  const part = byTestId(page, testId);
  if (await part.isVisible().catch(() => false)) return part;
  const tab = page.getByRole('tab', { name: label }).or(page.getByRole('button', { name: label, exact: true })).first();
  if (await tab.count()) await tab.click();
  await part.waitFor({ state: 'visible' });
  return part;
}

uiTest(suite, 'browse to gold.daily_revenue: columns, preview rows, history, query a version', async () => {
  const catalog = await suite.rest.call('GET', '/api/v1/catalog');
  const gold = catalog.schemas.find((s) => s.name === 'gold');
  const expectedColumns = gold.tables.find((t) => t.name === 'daily_revenue').columns.map((c) => c.name);
  assert.ok(expectedColumns.includes('revenue'), `unexpected demo columns: ${expectedColumns}`);

  const page = await newPage(suite);
  await login(page, suite);
  await byTestId(page, 'nav-data').click();
  await page.waitForFunction(() => location.hash.startsWith('#/data'));

  await byTestId(page, 'schema-gold').click();
  const tableLink = byTestId(page, 'table-gold.daily_revenue');
  await tableLink.waitFor({ state: 'visible' });
  // The other gold tables are listed under the same node.
  await byTestId(page, 'table-gold.revenue_by_country').waitFor({ state: 'visible' });
  await tableLink.click();
  await page.waitForFunction(() => location.hash === '#/data/gold/daily_revenue');
  await byTestId(page, 'table-detail').waitFor({ state: 'visible' });

  const columns = await reveal(page, 'table-columns', 'Columns');
  const columnsText = await columns.textContent();
  for (const name of expectedColumns) {
    assert.ok(columnsText.includes(name), `column ${name} not listed in table-columns: ${columnsText.slice(0, 300)}`);
  }
  assert.match(columnsText, /Decimal|decimal|Date32|date/i, 'no data types shown in table-columns');

  const preview = await reveal(page, 'table-preview', 'Preview');
  await preview.locator('[data-testid="grid-row"]').first().waitFor({ state: 'visible' });
  const headers = await preview.locator('[data-testid="grid-header"]').allTextContents();
  assert.ok(headers.some((h) => h.includes('revenue')), `preview headers lack revenue: ${headers}`);
  const rows = await gridRows(preview);
  assert.ok(rows.length > 0, 'the preview grid has no rows');
  assert.ok(rows[0].some((cell) => /^\d{4}-\d{2}-\d{2}|\d{1,2}[/. ]\w+[/. ]\d{4}|\w+ \d{1,2}, \d{4}/.test(cell)),
    `the first preview row shows no date: ${rows[0]}`);

  const history = await reveal(page, 'table-history', 'History');
  const historyRows = history.locator('[data-testid="history-row"]');
  await historyRows.first().waitFor({ state: 'visible' });
  assert.ok((await historyRows.count()) >= 1);
  // The demo builds gold tables with CREATE TABLE AS: version 0 is that write.
  assert.match(await historyRows.last().textContent(), /CREATE|WRITE/i);

  await history.locator('[data-testid="query-version"]').first().click();
  await page.waitForFunction(() => location.hash.startsWith('#/sql'));
  await page.locator('.CodeMirror').waitFor({ state: 'visible' });
  const sql = await page.waitForFunction(() => {
    const value = document.querySelector('.CodeMirror').CodeMirror.getValue();
    return /VERSION AS OF/i.test(value) ? value : null;
  });
  const text = await sql.jsonValue();
  assert.match(text, /FROM\s+gold\.daily_revenue\s+VERSION AS OF\s+\d+/i, `unexpected SQL: ${text}`);
  assert.deepEqual(page.pageErrors, [], 'uncaught errors in the page');
});
