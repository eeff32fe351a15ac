/**
 * Logging in and out: a wrong password is refused in place, the right one opens the app, and
 * logging out forgets the token and shows the login form again.
 */

import assert from 'node:assert/strict';

import { ADMIN_PASSWORD, byTestId, newPage, uiTest, useSuite } from './harness.mjs';

const suite = useSuite();

uiTest(suite, 'a wrong password shows an error and stays on the login form', async () => {
  const page = await newPage(suite);
  await page.goto(`${suite.server.url}/`);
  await byTestId(page, 'login-form').waitFor();
  await byTestId(page, 'login-username').fill('admin');
  await byTestId(page, 'login-password').fill('not-the-password');
  await byTestId(page, 'login-submit').click();

  const error = byTestId(page, 'login-error');
  await error.waitFor({ state: 'visible' });
  assert.notEqual((await error.textContent()).trim(), '', 'login-error is empty');
  assert.ok(await byTestId(page, 'login-form').isVisible(), 'the login form went away after a wrong password');
  assert.equal(await byTestId(page, 'nav-dashboards').count(), 0, 'the app shell showed after a wrong password');
  assert.equal(await page.evaluate(() => localStorage.getItem('polder.token')), null, 'a token was stored after a wrong password');
});

uiTest(suite, 'the right password opens the app; logout returns to the login form', async () => {
  const page = await newPage(suite);
  await page.goto(`${suite.server.url}/`);
  await byTestId(page, 'login-username').fill('admin');
  await byTestId(page, 'login-password').fill(ADMIN_PASSWORD);
  await byTestId(page, 'login-submit').click();

  await byTestId(page, 'nav-dashboards').waitFor({ state: 'visible' });
  assert.equal(await byTestId(page, 'login-form').count(), 0, 'the login form is still there after logging in');
  const token = await page.evaluate(() => localStorage.getItem('polder.token'));
  assert.ok(token, 'no token in localStorage after logging in');
  // An admin sees every section and lands on Data (the spec's default route for non-viewers).
  for (const nav of ['nav-data', 'nav-sql', 'nav-charts', 'nav-dashboards', 'nav-admin']) {
    assert.equal(await byTestId(page, nav).count(), 1, `${nav} missing for an admin`);
  }
  await page.waitForFunction(() => location.hash.startsWith('#/data'));
  assert.match(await byTestId(page, 'user-menu').textContent(), /admin/);

  // The token survives a reload (no second login).
  await page.reload();
  await byTestId(page, 'nav-dashboards').waitFor({ state: 'visible' });

  const logout = byTestId(page, 'logout');
  if (!(await logout.isVisible())) await byTestId(page, 'user-menu').click();
  await logout.click();
  await byTestId(page, 'login-form').waitFor({ state: 'visible' });
  assert.equal(await page.evaluate(() => localStorage.getItem('polder.token')), null, 'the token is still stored after logout');
  assert.equal(await byTestId(page, 'nav-dashboards').count(), 0, 'the app shell is still shown after logout');

  // The old token no longer opens the app after a reload.
  await page.reload();
  await byTestId(page, 'login-form').waitFor({ state: 'visible' });
});
