/**
 * The web UI's only door to the server: every HTTP call goes through here so that
 * authentication, error decoding and the "session expired → log in again" rule live
 * in one place.
 *
 * Errors always arrive as ApiError carrying the server's `{"error": {code, message}}`.
 * Aborted requests (AbortController) reject with the browser's AbortError unchanged,
 * so callers can tell "cancelled by the user" from "failed".
 */

const TOKEN_KEY = 'polder.token';

/** An error answered by the server (or a network failure, status 0). */
export class ApiError extends Error {
  /** HTTP status (0 when the server could not be reached). */
  status;
  /** The server's error code, e.g. `permission_denied`, `invalid_input`. */
  code;
  constructor(message, status = 0, code = 'error') {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

export function token() {
  return localStorage.getItem(TOKEN_KEY);
}

export function setToken(t) {
  localStorage.setItem(TOKEN_KEY, t);
  cachedMe = null;
}

export function clearToken() {
  localStorage.removeItem(TOKEN_KEY);
  cachedMe = null;
}

function authHeaders(extra = {}) {
  const headers = { ...extra };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  return headers;
}

/**
 * A 401 means the token is missing, expired or revoked: forget it and let the shell
 * (app.js listens for `polder-unauthorized`) show the login view.
 */
function onUnauthorized() {
  const hadToken = Boolean(token());
  clearToken();
  window.dispatchEvent(new CustomEvent('polder-unauthorized', { detail: { hadToken } }));
}

async function send(method, path, body, { signal, accept = 'application/json' } = {}) {
  const init = { method, headers: authHeaders({ Accept: accept }), signal };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError('Cannot reach the Polder server. Check that it is running.', 0, 'network');
  }
  if (!res.ok) throw await errorFrom(res, path);
  return res;
}

async function errorFrom(res, path) {
  let code = `http_${res.status}`;
  let message = `${res.status} ${res.statusText || 'error'}`;
  const text = await res.text().catch(() => '');
  try {
    const parsed = JSON.parse(text);
    if (parsed && parsed.error) {
      code = parsed.error.code || code;
      message = parsed.error.message || message;
    }
  } catch {
    if (text) message = text.slice(0, 500);
  }
  // A wrong password at login is a 401 too, but it must stay on the login form.
  if (res.status === 401 && path !== '/api/v1/login') onUnauthorized();
  return new ApiError(message, res.status, code);
}

/**
 * JSON request/response. `opts.signal` aborts it. Answers `null` for empty bodies (204).
 * @returns {Promise<any>}
 */
export async function api(method, path, body, opts = {}) {
  const res = await send(method, path, body, opts);
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

/**
 * Runs SQL and answers the server's JSON: `{columns, rows, row_count, truncated?}` for
 * queries, `{command, rows_affected}` for other statements. Throws ApiError also when a
 * streamed answer ends with an `error` member (the query failed after the first rows).
 */
export async function runSql(sql, { maxRows = 10000, signal } = {}) {
  const body = { sql, format: 'json' };
  if (maxRows != null) body.max_rows = maxRows;
  const result = await api('POST', '/api/v1/sql', body, { signal });
  if (result && result.error) {
    throw new ApiError(result.error.message || 'The query failed', 200, result.error.code || 'error');
  }
  return result;
}

/**
 * POSTs `body` and saves the answer as a file named `filename` (CSV/Parquet exports).
 * The response is read fully before saving because the browser cannot attach the
 * Authorization header to a plain link.
 */
export async function download(path, body, filename, { signal } = {}) {
  const res = await send('POST', path, body, { signal, accept: '*/*' });
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  // Give the browser time to start the save before the blob goes away.
  setTimeout(() => URL.revokeObjectURL(url), 30_000);
}

let cachedMe = null;

/** The signed-in user `{user, role, auth_enabled}`; fetched once per token. */
export async function me() {
  if (!cachedMe) {
    cachedMe = api('GET', '/api/v1/me').catch((err) => {
      cachedMe = null;
      throw err;
    });
  }
  return cachedMe;
}

/** Logs in and keeps the token. Throws ApiError (401 for a wrong password). */
export async function login(username, password) {
  const answer = await api('POST', '/api/v1/login', { username, password });
  setToken(answer.token);
  return answer;
}

/** SQL-quotes a name part when it is not a plain lower-case identifier. */
export function quoteIdent(name) {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${String(name).replace(/"/g, '""')}"`;
}

/** SQL string literal. */
export function quoteLiteral(value) {
  return `'${String(value).replace(/'/g, "''")}'`;
}
