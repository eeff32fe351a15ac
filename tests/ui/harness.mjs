/**
 * Shared fixtures for the browser tests of Polder's web UI.
 *
 * Each test file calls `useSuite()` once: it starts one real `polder serve --demo` (free loopback
 * ports, a temporary data directory, authentication on with a known admin password) and one
 * headless Chromium for the whole file, and stops both afterwards. `uiTest()` wraps node:test's
 * `test()` so that a failing test leaves a screenshot and prints the tail of the server's
 * stderr, which is usually where the reason is.
 *
 * Environment:
 *   POLDER_BIN            the binary (default: $CARGO_TARGET_DIR/debug/polder, else
 *                         ~/.cache/polder-target/debug/polder)
 *   POLDER_UI_ARTIFACTS   where screenshots go (default: <repo>/artifacts/ui)
 *   POLDER_CHROMIUM       the browser (default: /usr/bin/chromium)
 */

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';

export const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const ADMIN_PASSWORD = 'admin-ui-test-4711';
export const ARTIFACTS_DIR = path.resolve(REPO_DIR, process.env.POLDER_UI_ARTIFACTS || 'artifacts/ui');
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

const STARTUP_TIMEOUT_MS = 120_000;
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export function polderBin() {
  if (process.env.POLDER_BIN) return process.env.POLDER_BIN;
  const target = process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache', 'polder-target');
  return path.join(target, 'debug', 'polder');
}

/** `count` distinct ports the kernel hands out now (all held open until every one is chosen). */
export async function freePorts(count) {
  const servers = [];
  try {
    for (let i = 0; i < count; i += 1) {
      const server = net.createServer();
      await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
      });
      servers.push(server);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  }
}

function portAccepts(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.setTimeout(500);
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => { socket.destroy(); resolve(false); });
  });
}

async function httpReady(url) {
  try {
    const res = await fetch(`${url}/ready`, { signal: AbortSignal.timeout(2000) });
    return res.status === 200;
  } catch {
    return false;
  }
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A running `polder serve`. `stderr()` reads what it logged so far; `stop()` ends it (SIGTERM,
 * then SIGKILL after 15 s) and removes its data directory.
 */
export class PolderServer {
  constructor({ process: child, url, httpPort, pgPort, flightPort, root, stderrPath }) {
    Object.assign(this, { process: child, url, httpPort, pgPort, flightPort, root, stderrPath });
    this.exited = false;
    child.once('exit', (code, signal) => {
      this.exited = true;
      this.exitCode = code;
      this.exitSignal = signal;
    });
  }

  stderr() {
    try {
      return readFileSync(this.stderrPath, 'utf8');
    } catch {
      return '';
    }
  }

  async stop() {
    if (!this.exited) {
      const exited = new Promise((resolve) => this.process.once('exit', resolve));
      this.process.kill('SIGTERM');
      const done = await Promise.race([exited.then(() => true), delay(15_000).then(() => false)]);
      if (!done) {
        this.process.kill('SIGKILL');
        await exited;
      }
    }
    rmSync(this.root, { recursive: true, force: true });
  }
}

/**
 * Starts `polder serve` (with --demo unless `demo: false`) and waits until it is ready. The data
 * lives in a temporary directory removed by `stop()`, unless `dataDir` names one to keep.
 */
export async function startServer({ demo = true, env = {}, extraArgs = [], dataDir = null } = {}) {
  const binary = polderBin();
  if (!existsSync(binary)) throw new Error(`polder binary not found at ${binary} (set POLDER_BIN)`);
  const root = mkdtempSync(path.join(os.tmpdir(), 'polder-ui-'));
  const stderrPath = path.join(root, 'polder.stderr.log');
  const [httpPort, pgPort, flightPort] = await freePorts(3);
  const args = [
    'serve',
    ...(demo ? ['--demo'] : []),
    '--data-dir', dataDir || path.join(root, 'data'),
    '--http-listen', `127.0.0.1:${httpPort}`,
    '--pg-listen', `127.0.0.1:${pgPort}`,
    '--flight-listen', `127.0.0.1:${flightPort}`,
    ...extraArgs,
  ];
  const child = spawn(binary, args, {
    // cwd=root so that a stray ./polder.toml is never picked up.
    cwd: root,
    env: {
      ...process.env,
      POLDER_LOG_LEVEL: process.env.POLDER_LOG_LEVEL || 'warn',
      POLDER_AUTH_ENABLED: 'true',
      POLDER_ADMIN_PASSWORD: ADMIN_PASSWORD,
      ...env,
    },
    stdio: ['ignore', openSync(path.join(root, 'polder.stdout.log'), 'w'), openSync(stderrPath, 'w')],
  });
  const server = new PolderServer({
    process: child, url: `http://127.0.0.1:${httpPort}`, httpPort, pgPort, flightPort, root, stderrPath,
  });
  // A test run that dies must not leave a server behind.
  process.once('exit', () => { if (!server.exited) child.kill('SIGKILL'); });

  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (;;) {
    if (server.exited) {
      const log = server.stderr();
      rmSync(root, { recursive: true, force: true });
      throw new Error(`polder exited (code ${server.exitCode}) during startup\n${binary} ${args.join(' ')}\n--- stderr ---\n${log}`);
    }
    if ((await portAccepts(pgPort)) && (await httpReady(server.url))) return server;
    if (Date.now() > deadline) {
      const log = server.stderr();
      await server.stop();
      throw new Error(`polder was not ready after ${STARTUP_TIMEOUT_MS / 1000} s\n--- stderr ---\n${log}`);
    }
    await delay(200);
  }
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.POLDER_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
  });
}

/** A small REST client for set-up steps and for cross-checking what the UI shows. */
export class Rest {
  constructor(url, token) {
    this.url = url;
    this.token = token;
  }

  static async login(url, username, password) {
    const res = await fetch(`${url}/api/v1/login`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username, password }),
    });
    const body = await res.json();
    if (!res.ok) throw new Error(`login as ${username} failed: ${res.status} ${JSON.stringify(body)}`);
    return new Rest(url, body.token);
  }

  /** JSON request; throws with the server's error message on a non-2xx answer. */
  async call(method, apiPath, body) {
    const res = await fetch(`${this.url}${apiPath}`, {
      method,
      headers: { Authorization: `Bearer ${this.token}`, 'Content-Type': 'application/json', Accept: 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    const parsed = text ? JSON.parse(text) : null;
    if (!res.ok) throw new Error(`${method} ${apiPath} → ${res.status}: ${text.slice(0, 500)}`);
    return parsed;
  }

  /** Runs SQL over REST; a JSON answer with an `error` member throws too. */
  async sql(sql, extra = {}) {
    const answer = await this.call('POST', '/api/v1/sql', { sql, format: 'json', ...extra });
    if (answer && answer.error) throw new Error(`SQL failed: ${answer.error.message}\n${sql}`);
    return answer;
  }

  async dashboardByName(name) {
    const { dashboards } = await this.call('GET', '/api/v1/dashboards');
    const found = dashboards.find((d) => d.name === name);
    if (!found) throw new Error(`no dashboard named '${name}' (have: ${dashboards.map((d) => d.name).join(', ')})`);
    return found;
  }
}

/**
 * One server and one browser for a test file. Returns an object whose fields are filled in
 * by the `before` hook: { server, browser, rest (admin) }.
 */
export function useSuite(options = {}) {
  const suite = { server: null, browser: null, rest: null };
  before(async () => {
    suite.server = await startServer(options);
    suite.browser = await launchBrowser();
    suite.rest = await Rest.login(suite.server.url, 'admin', ADMIN_PASSWORD);
  });
  after(async () => {
    if (suite.browser) await suite.browser.close();
    if (suite.server) {
      const crashed = suite.server.exited;
      const log = suite.server.stderr();
      await suite.server.stop();
      if (crashed) throw new Error(`polder died while the tests ran (code ${suite.server.exitCode})\n--- stderr ---\n${log.slice(-20_000)}`);
    }
  });
  return suite;
}

/**
 * A fresh browser context (own localStorage, so own login) and page. Errors the page throws
 * are collected in `page.pageErrors` so tests can assert the app did not crash.
 */
export async function newPage(suite, { viewport = DESKTOP, colorScheme = 'light' } = {}) {
  const context = await suite.browser.newContext({ viewport, colorScheme });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.pageErrors = [];
  page.on('pageerror', (err) => page.pageErrors.push(err));
  return page;
}

/** A locator for a data-testid. */
export function byTestId(page, id) {
  return page.locator(`[data-testid="${id}"]`);
}

/** Opens the app and logs in through the login form; resolves once the app shell shows. */
export async function login(page, suite, { username = 'admin', password = ADMIN_PASSWORD, hash = '' } = {}) {
  await page.goto(`${suite.server.url}/${hash}`);
  await byTestId(page, 'login-username').fill(username);
  await byTestId(page, 'login-password').fill(password);
  await byTestId(page, 'login-submit').click();
  await byTestId(page, 'nav-dashboards').waitFor({ state: 'visible' });
  return page;
}

/** Navigates inside the logged-in app by hash (keeps the page, so no new login). */
export async function go(page, hash) {
  await page.evaluate((h) => { window.location.hash = h; }, hash);
}

/** Saves a screenshot into the artifacts folder and returns its path. */
export async function shot(page, name) {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const file = path.join(ARTIFACTS_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: false });
  return file;
}

export function fileSize(file) {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/** All pages of all contexts of the browser: screenshotted when a test fails. */
function openPages(browser) {
  return browser ? browser.contexts().flatMap((c) => c.pages()) : [];
}

/**
 * node:test's `test()`, plus on failure: a screenshot of every open page
 * (`FAILED-<test>-<n>.png`) and the tail of the server's stderr on the console.
 * Pages are closed after each test so tests do not see each other's state.
 */
export function uiTest(suite, name, fn, options = {}) {
  return test(name, options, async (t) => {
    try {
      await fn(t);
    } catch (err) {
      const slug = name.replace(/[^a-z0-9]+/gi, '-').toLowerCase().slice(0, 60);
      let n = 0;
      for (const page of openPages(suite.browser)) {
        n += 1;
        await shot(page, `FAILED-${slug}-${n}`).catch(() => {});
      }
      const log = suite.server ? suite.server.stderr() : '';
      console.error(`--- ${name}: failed; screenshots in ${ARTIFACTS_DIR}; server stderr (tail) ---\n${log.slice(-8000)}`);
      throw err;
    } finally {
      for (const context of suite.browser ? suite.browser.contexts() : []) await context.close().catch(() => {});
    }
  });
}

/** The texts of the cells of each rendered grid row inside `scope` (a locator or page). */
export async function gridRows(scope) {
  return scope.locator('[data-testid="grid-row"]').evaluateAll((rows) =>
    rows.map((row) => Array.from(row.querySelectorAll('[data-testid="grid-cell"]'), (c) => c.textContent.trim())));
}

/** "1,234,567.89" / "1 234 567,89"-free parsing: the UI formats numbers in en-US (Intl). */
export function parseShownNumber(text) {
  const cleaned = String(text).replace(/[,\s\u00a0\u202f]/g, '');
  return cleaned === '' ? NaN : Number(cleaned);
}

/** Sets the SQL Lab editor's text through CodeMirror's own API and runs it with Ctrl+Enter. */
export async function runInSqlLab(page, sql) {
  await page.locator('.CodeMirror').waitFor({ state: 'visible' });
  await page.evaluate((text) => {
    const cm = document.querySelector('.CodeMirror').CodeMirror;
    cm.setValue(text);
    cm.focus();
    cm.setCursor(cm.lineCount(), 0);
  }, sql);
  await page.keyboard.press('Control+Enter');
}

/** Resolves when every dashboard tile on the page has left the loading state; returns the states. */
export async function waitForTiles(page, { minTiles = 1, timeout = 60_000 } = {}) {
  await page.waitForFunction((min) => {
    const tiles = document.querySelectorAll('[data-testid="dashboard-tile"]');
    return tiles.length >= min && Array.from(tiles).every((t) => t.dataset.state === 'drawn' || t.dataset.state === 'error');
  }, minTiles, { timeout });
  return page.locator('[data-testid="dashboard-tile"]').evaluateAll((tiles) =>
    tiles.map((t) => ({ chartId: t.dataset.chartId, state: t.dataset.state, text: t.textContent })));
}

/**
 * Polls `probe` (an async function) until it answers something truthy; for server-side effects
 * the page cannot be asked about (a save finished, N responses arrived).
 */
export async function eventually(probe, { timeout = 15_000, interval = 100, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${message}`);
    await delay(interval);
  }
}
