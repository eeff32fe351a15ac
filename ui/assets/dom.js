/**
 * Small DOM and formatting helpers shared by every screen.
 *
 * Data from the server is only ever put into the page as text (text nodes,
 * textContent): `h()` has no way to set innerHTML, on purpose.
 */

const SVG_NS = 'http://www.w3.org/2000/svg';

function applyAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key === 'class') el.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
    else if (key === 'style' && typeof value === 'object') Object.assign(el.style, value);
    else if (key === 'on') for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    // Form state must be set as properties to take effect after the first render.
    else if (key === 'value' || key === 'checked' || key === 'selected' || key === 'disabled') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
}

function appendChildren(el, children) {
  for (const child of children) {
    if (child == null || child === false) continue;
    if (Array.isArray(child)) appendChildren(el, child);
    else if (child instanceof Node) el.append(child);
    else el.append(document.createTextNode(String(child)));
  }
}

/**
 * Creates an element. attrs: class (string or array), style (object), on ({click: fn}),
 * dataset, value/checked/disabled (as properties), any other attribute.
 * Children: strings become text nodes, nodes, arrays (flattened); null/false skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  applyAttrs(el, attrs);
  appendChildren(el, children);
  return el;
}

/** Like h() but in the SVG namespace (for drawings such as the pipeline DAG). */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  applyAttrs(el, attrs);
  appendChildren(el, children);
  return el;
}

const ICONS = {
  data: 'M4 6c0-1.7 3.6-3 8-3s8 1.3 8 3-3.6 3-8 3-8-1.3-8-3Zm0 0v12c0 1.7 3.6 3 8 3s8-1.3 8-3V6M4 12c0 1.7 3.6 3 8 3s8-1.3 8-3',
  sql: 'M8 9l-4 3 4 3m8-6l4 3-4 3M14 5l-4 14',
  charts: 'M4 20V10m6 10V4m6 16v-7m4 7H3',
  dashboards: 'M4 4h7v9H4zM13 4h7v5h-7zM13 11h7v9h-7zM4 15h7v5H4z',
  pipelines: 'M5 7a2 2 0 1 0 0-.01M19 17a2 2 0 1 0 0-.01M7 7h5a3 3 0 0 1 3 3v4a3 3 0 0 0 3 3M5 9v8h10',
  admin: 'M12 3l7 3v6c0 4.5-3 7.5-7 9-4-1.5-7-4.5-7-9V6z',
  menu: 'M4 7h16M4 12h16M4 17h16',
  sun: 'M12 4V2m0 20v-2m8-8h2M2 12h2m13.7-5.7 1.4-1.4M4.9 19.1l1.4-1.4m0-11.4L4.9 4.9m14.2 14.2-1.4-1.4M12 8a4 4 0 1 0 0 8 4 4 0 0 0 0-8Z',
  moon: 'M20 14.5A8 8 0 0 1 9.5 4 8 8 0 1 0 20 14.5Z',
  user: 'M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8Zm-7 8c0-3.3 3.1-6 7-6s7 2.7 7 6',
  table: 'M4 5h16v14H4zM4 10h16M10 10v9',
  view: 'M2 12s3.5-6 10-6 10 6 10 6-3.5 6-10 6S2 12 2 12Zm10-3a3 3 0 1 0 0 6 3 3 0 0 0 0-6Z',
  chevron: 'M9 6l6 6-6 6',
  play: 'M7 5v14l11-7z',
  stop: 'M7 7h10v10H7z',
  download: 'M12 4v11m-5-5 5 5 5-5M5 20h14',
  copy: 'M9 9h10v10H9zM5 15V5h10',
  refresh: 'M20 11a8 8 0 0 0-14.9-3M4 4v4h4m-4 5a8 8 0 0 0 14.9 3M20 20v-4h-4',
  search: 'M11 18a7 7 0 1 0 0-14 7 7 0 0 0 0 14Zm5-2 4 4',
  close: 'M6 6l12 12M18 6 6 18',
};

/** A 16px stroke icon from the small built-in set (names: see ICONS). */
export function icon(name, size = 16) {
  return svg('svg', {
    class: 'icon', width: size, height: size, viewBox: '0 0 24 24', fill: 'none',
    stroke: 'currentColor', 'stroke-width': 1.8, 'stroke-linecap': 'round', 'stroke-linejoin': 'round',
    'aria-hidden': 'true',
  }, svg('path', { d: ICONS[name] || '' }));
}

const intFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const decimalFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const decimalFormats = new Map();

/** 1234567.891 → "1,234,567.89"; integers without decimals; null → "∅". */
export function formatNumber(v) {
  if (v == null || v === '') return '∅';
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isFinite(n)) return String(v);
  return Number.isInteger(n) ? intFormat.format(n) : decimalFormat.format(n);
}

const dateFormat = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
});

/** Parses an ISO date ("2024-03-05") as a local calendar day, not UTC midnight. */
function parseDay(s) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s);
  return m ? new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3])) : null;
}

/** Milliseconds since the epoch or an ISO string → Date (invalid → null). */
function toDate(v) {
  if (v instanceof Date) return v;
  if (typeof v === 'number') return new Date(v);
  const s = String(v);
  const day = parseDay(s);
  if (day) return day;
  // "2024-03-05 10:00:00" is not ISO for every browser; the T form is.
  const d = new Date(s.includes('T') ? s : s.replace(' ', 'T'));
  return Number.isNaN(d.getTime()) ? null : d;
}

/** A readable local date and time for ms-since-epoch or an ISO string; "" for null. */
export function formatTime(v) {
  if (v == null || v === '') return '';
  const d = toDate(v);
  return d ? dateTimeFormat.format(d) : String(v);
}

/** True for Arrow type strings of numeric columns. */
export function isNumericType(type) {
  return /^(u?int|float|decimal|double|real|bigint|smallint|tinyint|numeric)/i.test(String(type || ''));
}

/**
 * A cell value as text, by Arrow type string (`Int64`, `Decimal128(14, 2)`,
 * `Timestamp(Microsecond, None)`, `Date32`, `Utf8`...): numbers formatted, dates and
 * timestamps in the reader's locale, null → "NULL", nested values as JSON.
 */
export function formatValue(v, type) {
  if (v == null) return 'NULL';
  const t = String(type || '');
  if (typeof v === 'number') {
    if (/^Decimal/i.test(t)) return formatDecimal(v, t);
    if (/^Float/i.test(t)) return formatFloat(v);
    return formatNumber(v);
  }
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'object') return JSON.stringify(v);
  if (/^Decimal/i.test(t)) return formatDecimal(v, t);
  if (/^(u?int|float)/i.test(t)) return formatNumber(v);
  if (/^Date/i.test(t)) {
    const d = toDate(v);
    return d ? dateFormat.format(d) : String(v);
  }
  if (/^Timestamp/i.test(t)) return formatTime(v);
  return String(v);
}

const smallFloatFormat = new Intl.NumberFormat(undefined, { maximumSignificantDigits: 6 });
const floatFormat = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });

/** Floats get two decimals so a column lines up; tiny values keep six significant digits. */
function formatFloat(v) {
  if (!Number.isFinite(v)) return String(v);
  return v !== 0 && Math.abs(v) < 1 ? smallFloatFormat.format(v) : floatFormat.format(v);
}

/** Decimals keep their scale ("12.50" stays "12.50") so columns line up. */
function formatDecimal(v, type) {
  const n = Number(v);
  if (!Number.isFinite(n)) return String(v);
  const scale = Number((/,\s*(-?\d+)\)/.exec(type) || [])[1] || 0);
  const digits = Math.max(0, Math.min(scale, 20));
  let f = decimalFormats.get(digits);
  if (!f) {
    f = new Intl.NumberFormat(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits });
    decimalFormats.set(digits, f);
  }
  return f.format(n);
}

/** 1536 → "1.5 KB". */
export function formatBytes(n) {
  if (n == null) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];
  let value = Number(n);
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** 85 → "85 ms", 1250 → "1.3 s", 125000 → "2m 5s", 4000000 → "1h 6m". */
export function formatDuration(ms) {
  if (ms == null || !Number.isFinite(Number(ms))) return '—';
  const v = Number(ms);
  if (v < 1000) return `${Math.round(v)} ms`;
  if (v < 60_000) return `${(v / 1000).toFixed(v < 10_000 ? 1 : 0)} s`;
  const s = Math.round(v / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

/** An ISO string or ms-since-epoch → "5 minutes ago" (falls back to the date after a month). */
export function timeAgo(iso) {
  if (iso == null || iso === '') return '—';
  const d = toDate(iso);
  if (!d) return String(iso);
  const seconds = Math.round((d.getTime() - Date.now()) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 45) return 'just now';
  if (abs < 3600) return relative.format(Math.round(seconds / 60), 'minute');
  if (abs < 86_400) return relative.format(Math.round(seconds / 3600), 'hour');
  if (abs < 30 * 86_400) return relative.format(Math.round(seconds / 86_400), 'day');
  return dateFormat.format(d);
}

function toastHost() {
  let host = document.getElementById('toasts');
  if (!host) {
    host = h('div', { id: 'toasts', class: 'toasts', role: 'status', 'aria-live': 'polite' });
    document.body.append(host);
  }
  return host;
}

/** A short message in the corner that goes away by itself (errors stay longer). */
export function toast(message, kind = 'info') {
  const el = h('div', { class: `toast toast-${kind}` }, message);
  toastHost().append(el);
  setTimeout(() => {
    el.classList.add('leaving');
    setTimeout(() => el.remove(), 200);
  }, kind === 'error' ? 7000 : 3500);
  return el;
}

/** An in-place error message for an ApiError/Error (or a string). */
export function errorBox(err) {
  const message = typeof err === 'string' ? err : (err && err.message) || 'Something went wrong';
  const code = err && typeof err === 'object' && err.code && err.code !== 'error' ? err.code : null;
  return h('div', { class: 'error-box', 'data-testid': 'error', role: 'alert' },
    h('strong', {}, code === 'permission_denied' ? 'Permission denied' : 'Error'),
    h('span', { class: 'error-message' }, message),
  );
}

/** A centred spinner with an optional label, for areas still loading. */
export function spinner(label = 'Loading…') {
  return h('div', { class: 'loading' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), label);
}

/** An empty state: what is missing and what to do about it. */
export function emptyState(title, hint) {
  return h('div', { class: 'empty' }, h('div', { class: 'empty-title' }, title), hint ? h('div', { class: 'empty-hint' }, hint) : null);
}

const STATUS_KIND = {
  succeeded: 'ok', success: 'ok', pass: 'ok', ok: 'ok', up_to_date: 'ok',
  failed: 'danger', error: 'danger', fail: 'danger',
  running: 'running', warn: 'warn', skipped: 'muted', cancelled: 'muted',
};

/** A coloured status pill (succeeded/failed/running/...). */
export function badge(status) {
  const text = status == null || status === '' ? 'never' : String(status);
  return h('span', { class: `badge badge-${STATUS_KIND[text.toLowerCase()] || 'muted'}` }, text.replace(/_/g, ' '));
}

/** Copies text to the clipboard, with a fallback for non-secure (plain http) pages. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = h('textarea', { style: { position: 'fixed', opacity: '0' } }, text);
    document.body.append(area);
    area.select();
    document.execCommand('copy');
    area.remove();
  }
  toast('Copied to the clipboard', 'ok');
}

/**
 * A modal dialog. `actions`: [{label, value, kind: 'primary'|'danger'|undefined, testid,
 * run?: async () => value}] — when `run` throws, its error shows in the dialog and it
 * stays open. Resolves with the chosen action's value (or run's result), null when
 * dismissed (Escape, ✕, backdrop).
 */
export function modal(title, contentNode, actions = [{ label: 'Close', value: null }]) {
  return new Promise((resolve) => {
    const errorSlot = h('div', { class: 'modal-error' });
    const dialog = h('dialog', { class: 'modal', 'aria-label': title });
    let settled = false;
    const finish = (value) => {
      if (settled) return;
      settled = true;
      dialog.close();
      dialog.remove();
      resolve(value);
    };
    const buttons = actions.map((action) => {
      const button = h('button', {
        type: action.kind === 'primary' ? 'submit' : 'button',
        class: ['btn', action.kind && `btn-${action.kind}`],
        'data-testid': action.testid || null,
      }, action.label);
      button.addEventListener('click', async (event) => {
        event.preventDefault();
        if (!action.run) return finish(action.value ?? null);
        errorSlot.replaceChildren();
        buttons.forEach((b) => { b.disabled = true; });
        try {
          finish(await action.run());
        } catch (err) {
          errorSlot.append(errorBox(err));
        } finally {
          buttons.forEach((b) => { b.disabled = false; });
        }
      });
      return button;
    });
    const form = h('form', { method: 'dialog', class: 'modal-body' },
      h('header', { class: 'modal-header' },
        h('h2', {}, title),
        h('button', { type: 'button', class: 'btn btn-ghost btn-icon', 'aria-label': 'Close', on: { click: () => finish(null) } }, icon('close')),
      ),
      h('div', { class: 'modal-content' }, contentNode),
      errorSlot,
      h('footer', { class: 'modal-actions' }, buttons),
    );
    // Enter in a field runs the primary action, like a normal form.
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const primary = buttons[actions.findIndex((a) => a.kind === 'primary')];
      if (primary && !primary.disabled) primary.click();
    });
    dialog.append(form);
    dialog.addEventListener('cancel', (event) => { event.preventDefault(); finish(null); });
    dialog.addEventListener('click', (event) => { if (event.target === dialog) finish(null); });
    document.body.append(dialog);
    dialog.showModal();
    const first = dialog.querySelector('input, select, textarea');
    if (first) first.focus();
  });
}

/** Asks a yes/no question; resolves true when confirmed. */
export async function confirmDialog(title, message, confirmLabel = 'Delete') {
  const answer = await modal(title, h('p', {}, message), [
    { label: 'Cancel', value: false },
    { label: confirmLabel, value: true, kind: 'danger', testid: 'confirm' },
  ]);
  return answer === true;
}
