/**
 * The results grid: a virtually scrolled table for query results (SQL Lab, Data
 * preview, table charts). Only the rows in view (plus a small margin) exist in the
 * DOM, with a fixed row height, so 100,000 rows scroll as smoothly as 100. Row
 * elements are recycled while scrolling: scrolling only rewrites text.
 *
 * Cells are filled with textContent only, so HTML in data shows as text.
 */
import { h, formatValue, isNumericType } from './dom.js';

const ROW_HEIGHT = 28;
const HEADER_HEIGHT = 32;
const OVERSCAN = 8;
const SAMPLE_ROWS = 200;
const CHAR_WIDTH = 7.4;
const MIN_WIDTH = 64;
const MAX_WIDTH = 360;

/** Column widths guessed from the header and a sample of formatted values. */
function measureColumns(columns, rows) {
  const sample = rows.length > SAMPLE_ROWS ? rows.slice(0, SAMPLE_ROWS) : rows;
  return columns.map((column) => {
    let chars = column.name.length + Math.min(String(column.type || '').length, 14) * 0.85;
    for (const row of sample) {
      const text = formatValue(row[column.name], column.type);
      if (text.length > chars) chars = text.length;
    }
    return Math.round(Math.min(MAX_WIDTH, Math.max(MIN_WIDTH, chars * CHAR_WIDTH + 26)));
  });
}

/** Short type names for the header ("Decimal128(14, 2)" → "decimal(14,2)"). */
function shortType(type) {
  const t = String(type || '');
  return t
    .replace(/^Decimal(128|256)\((\d+),\s*(-?\d+)\)/i, 'decimal($2,$3)')
    .replace(/^Timestamp\((\w+),\s*None\)/i, 'timestamp')
    .replace(/^Timestamp\((\w+),\s*Some\("?([^")]*)"?\)\)/i, 'timestamp $2')
    .replace(/^Timestamp\((\w+),\s*"([^"]*)"\)/i, 'timestamp $2')
    .replace(/^Timestamp\((\w+)\)/i, 'timestamp')
    .replace(/^(Utf8View|LargeUtf8|Utf8)$/i, 'text')
    .toLowerCase();
}

/**
 * Builds a grid element for `columns` ([{name, type}]) and `rows` (objects keyed by
 * column name).
 * Options: testid (default "results-grid"), rowNumbers (default true),
 * fitHeight (shrink to the content when it is shorter than the CSS height).
 */
export function createGrid(columns, rows, { testid = 'results-grid', rowNumbers = true, fitHeight = false } = {}) {
  const numeric = columns.map((c) => isNumericType(c.type));
  const widths = measureColumns(columns, rows);
  const rowNumberWidth = rowNumbers ? Math.max(44, String(rows.length).length * 8 + 20) : 0;
  const totalWidth = rowNumberWidth + widths.reduce((a, b) => a + b, 0);

  const header = h('div', { class: 'grid-header', style: { width: `${totalWidth}px` }, role: 'row' },
    rowNumbers ? h('div', { class: 'grid-rownum', style: { width: `${rowNumberWidth}px` } }, '#') : null,
    columns.map((column, i) => h('div', {
      'data-testid': 'grid-header', role: 'columnheader', title: `${column.name} · ${column.type || ''}`,
      class: numeric[i] ? 'num' : null,
      style: { width: `${widths[i]}px`, justifyContent: numeric[i] ? 'flex-end' : null },
    }, h('span', {}, column.name), h('span', { class: 'col-type' }, shortType(column.type)))),
  );
  const body = h('div', { class: 'grid-rows', role: 'rowgroup' });
  const inner = h('div', {
    class: 'grid-inner',
    style: { width: `${totalWidth}px`, height: `${HEADER_HEIGHT + Math.max(rows.length, 0) * ROW_HEIGHT}px` },
  }, header, body);
  const el = h('div', { class: 'grid', 'data-testid': testid, role: 'table', 'aria-rowcount': rows.length, tabindex: 0 }, inner);
  if (rows.length === 0) {
    el.append(h('div', { class: 'grid-empty', style: { position: 'absolute', top: `${HEADER_HEIGHT}px`, left: 0, right: 0 } }, 'The query returned no rows.'));
  }
  if (fitHeight) el.style.height = `${Math.min(HEADER_HEIGHT + Math.max(rows.length, 3) * ROW_HEIGHT + 2, 520)}px`;

  /** Recycled row elements: pool[i] shows rows[first + i]. */
  const pool = [];
  let first = -1;
  let count = 0;
  let frame = 0;

  function makeRow() {
    const row = h('div', { class: 'grid-row', 'data-testid': 'grid-row', role: 'row' });
    if (rowNumbers) row.append(h('div', { class: 'grid-rownum', style: { width: `${rowNumberWidth}px` } }));
    columns.forEach((_, i) => {
      row.append(h('div', {
        class: numeric[i] ? 'grid-cell num' : 'grid-cell', 'data-testid': 'grid-cell', role: 'cell',
        style: { width: `${widths[i]}px` },
      }));
    });
    return row;
  }

  function fillRow(rowEl, index) {
    const data = rows[index];
    const cells = rowEl.children;
    let offset = 0;
    if (rowNumbers) {
      cells[0].textContent = String(index + 1);
      offset = 1;
    }
    for (let i = 0; i < columns.length; i += 1) {
      const cell = cells[i + offset];
      const value = data[columns[i].name];
      const text = formatValue(value, columns[i].type);
      cell.textContent = text;
      const isNull = value == null;
      cell.className = `grid-cell${numeric[i] || typeof value === 'number' ? ' num' : ''}${isNull ? ' null' : ''}`;
      if (text.length > 40) cell.title = text;
      else if (cell.title) cell.removeAttribute('title');
    }
  }

  function render() {
    frame = 0;
    const viewport = el.clientHeight || 400;
    const scrolled = Math.max(0, el.scrollTop - HEADER_HEIGHT);
    const start = Math.max(0, Math.floor(scrolled / ROW_HEIGHT) - OVERSCAN);
    const visible = Math.ceil(viewport / ROW_HEIGHT) + OVERSCAN * 2;
    const end = Math.min(rows.length, start + visible);
    if (start === first && end - start === count) return;
    while (pool.length < end - start) {
      const row = makeRow();
      pool.push(row);
      body.append(row);
    }
    for (let i = 0; i < pool.length; i += 1) {
      const index = start + i;
      const rowEl = pool[i];
      if (index < end) {
        // Rows that keep their data index (small scrolls) are not rewritten.
        if (rowEl.hidden || rowEl.dataset.index !== String(index)) {
          fillRow(rowEl, index);
          rowEl.dataset.index = String(index);
          rowEl.setAttribute('aria-rowindex', String(index + 1));
        }
        rowEl.hidden = false;
      } else {
        rowEl.hidden = true;
      }
    }
    body.style.top = `${HEADER_HEIGHT + start * ROW_HEIGHT}px`;
    first = start;
    count = end - start;
  }

  const schedule = () => {
    if (!frame) frame = requestAnimationFrame(render);
  };
  el.addEventListener('scroll', schedule, { passive: true });
  new ResizeObserver(schedule).observe(el);

  // Click selects a cell; Ctrl/Cmd+C copies its text.
  let selected = null;
  el.addEventListener('click', (event) => {
    const cell = event.target.closest('.grid-cell');
    if (!cell) return;
    if (selected) selected.classList.remove('selected');
    selected = cell;
    cell.classList.add('selected');
  });
  el.addEventListener('keydown', (event) => {
    if (selected && (event.ctrlKey || event.metaKey) && event.key === 'c' && !String(window.getSelection())) {
      navigator.clipboard?.writeText(selected.textContent);
    }
  });

  // Draw the first screen right away so the grid is never blank, even before layout.
  render();
  return el;
}
