/**
 * Pipelines: a connection made through the API shows in the list, "Sync now" runs a real sync
 * whose job appears with its status and record count, and the table it loaded holds the rows.
 */

import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { byTestId, go, login, newPage, shot, uiTest, useSuite } from './harness.mjs';

const suite = useSuite();

uiTest(suite, 'sync now runs a connection and shows its job', async () => {
  const landing = mkdtempSync(path.join(os.tmpdir(), 'polder-ui-landing-'));
  const lines = ['id,city'];
  for (let i = 1; i <= 37; i += 1) lines.push(`${i},city ${i}`);
  writeFileSync(path.join(landing, 'cities.csv'), `${lines.join('\n')}\n`);
  await suite.rest.call('POST', '/api/v1/connections', {
    name: 'uiland',
    source: 'files',
    config: { path: path.join(landing, '*.csv') },
    streams: [{ name: 'cities', sync_mode: 'full_refresh_overwrite' }],
  });

  const page = await newPage(suite);
  await login(page, suite);
  await go(page, '#/pipelines');
  const row = byTestId(page, 'connection-row').filter({ hasText: 'uiland' });
  await row.waitFor({ state: 'visible' });
  await row.locator('[data-testid="sync-now"]').click();

  const job = byTestId(page, 'job-row').filter({ hasText: 'uiland' }).filter({ hasText: /succeeded/i });
  await job.first().waitFor({ state: 'visible', timeout: 60_000 });
  assert.match(await job.first().textContent(), /37/, 'the job row shows the 37 records it loaded');

  const answer = await suite.rest.sql('SELECT count(*) AS n FROM bronze.uiland_cities');
  assert.equal(answer.rows[0].n, 37);
  await shot(page, 'pipelines-after-sync');
  assert.deepEqual(page.pageErrors, [], 'uncaught errors in the page');
});
