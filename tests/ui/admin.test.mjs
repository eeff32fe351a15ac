/**
 * Admin: a user added in the browser can log in with the password shown once, a token created
 * in the browser authenticates, a grant applied in the form lets that user read the table, and
 * the audit log lists what happened.
 */

import assert from 'node:assert/strict';

import { Rest, byTestId, eventually, go, login, newPage, shot, uiTest, useSuite } from './harness.mjs';

const suite = useSuite();

async function readSecretAndClose(page) {
  const secret = byTestId(page, 'secret-value');
  await secret.waitFor({ state: 'visible' });
  const value = (await secret.textContent()).trim();
  await page.getByRole('button', { name: 'Done' }).click();
  await secret.waitFor({ state: 'detached' });
  return value;
}

uiTest(suite, 'users, grants, tokens and the audit log from the Admin screen', async () => {
  const page = await newPage(suite);
  await login(page, suite);
  await go(page, '#/admin');

  // A new analyst, whose generated password is shown once.
  await byTestId(page, 'user-add').click();
  await byTestId(page, 'user-add-name').fill('ursula');
  await byTestId(page, 'user-add-role').selectOption('analyst');
  await byTestId(page, 'user-add-confirm').click();
  const password = await readSecretAndClose(page);
  assert.ok(password.length >= 12, `a short generated password: ${password}`);
  await byTestId(page, 'user-row').filter({ hasText: 'ursula' }).waitFor({ state: 'visible' });
  const ursula = await Rest.login(suite.server.url, 'ursula', password);
  assert.deepEqual(await ursula.call('GET', '/api/v1/me'), { user: 'ursula', role: 'analyst', auth_enabled: true });

  // Without a grant the analyst cannot read gold; the form's GRANT changes that.
  await assert.rejects(ursula.sql('SELECT count(*) AS n FROM gold.sales'), /403/);
  await byTestId(page, 'grant-object').fill('gold.sales');
  await byTestId(page, 'grant-grantee').fill('ursula');
  await byTestId(page, 'grant-submit').click();
  await byTestId(page, 'grant-row').filter({ hasText: 'ursula' }).waitFor({ state: 'visible' });
  const counted = await ursula.sql('SELECT count(*) AS n FROM gold.sales');
  assert.ok(counted.rows[0].n > 0);

  // A personal token, shown once, that works as credentials.
  await byTestId(page, 'token-create').click();
  await byTestId(page, 'token-label').fill('nightly export');
  await byTestId(page, 'token-create-confirm').click();
  const token = await readSecretAndClose(page);
  const viaToken = new Rest(suite.server.url, token);
  assert.equal((await viaToken.call('GET', '/api/v1/me')).user, 'admin');
  await byTestId(page, 'token-row').filter({ hasText: 'nightly export' }).waitFor({ state: 'visible' });
  assert.equal(await page.getByText(token).count(), 0, 'the token is shown again after its dialog closed');

  // The audit log (reloaded) names the new user and the grant.
  await go(page, '#/dashboards');
  await go(page, '#/admin');
  await eventually(async () => {
    const text = await byTestId(page, 'audit-list').textContent();
    return text.includes('ursula') && /GRANT SELECT/i.test(text);
  }, { message: 'the audit log lists the new user and the grant' });
  await shot(page, 'admin-after-changes');
  assert.deepEqual(page.pageErrors, [], 'uncaught errors in the page');
});
