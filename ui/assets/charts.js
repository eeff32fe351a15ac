/**
 * charts.js — the Charts screen: the list of saved charts (`#/charts`) and the chart
 * builder (`#/charts/new`, `#/charts/<id>`).
 *
 * The builder edits a chart spec (see UI_SPEC.md: source, type, dimensions, measures,
 * filters, sort, limit, options) and shows a live preview: every change re-runs the spec
 * with POST /api/v1/charts/data (debounced) and draws it with chart-view.js, with the SQL
 * the server ran underneath. Save stores it (POST/PUT /api/v1/charts); "Add to dashboard"
 * appends a tile to a dashboard.
 */
import { api, runSql } from './api.js';
import { h, toast, errorBox, modal, timeAgo, icon, confirmDialog, formatNumber } from './dom.js';
import {
  renderChart, ensureChartsCss, CHART_TYPES, isNumericType, isTemporalType, measureKey, measureTitle,
} from './chart-view.js';
import { addChartToDashboard } from './dashboards.js';

const PREVIEW_DELAY_MS = 400;
const DEFAULT_LIMIT = 1000;
const TIME_GRAINS = ['day', 'week', 'month', 'quarter', 'year'];
const AGGS = [
  { value: 'sum', label: 'Sum' },
  { value: 'avg', label: 'Average' },
  { value: 'count', label: 'Count' },
  { value: 'count_distinct', label: 'Count distinct' },
  { value: 'min', label: 'Min' },
  { value: 'max', label: 'Max' },
];
const NUMERIC_AGGS = new Set(['sum', 'avg', 'min', 'max']);
const FILTER_OPS = [
  { value: '=', label: '=' }, { value: '!=', label: '≠' },
  { value: '>', label: '>' }, { value: '>=', label: '≥' },
  { value: '<', label: '<' }, { value: '<=', label: '≤' },
  { value: 'in', label: 'in' }, { value: 'not_in', label: 'not in' },
  { value: 'like', label: 'like' }, { value: 'between', label: 'between' },
  { value: 'is_null', label: 'is null' }, { value: 'not_null', label: 'is not null' },
];
const NO_VALUE_OPS = new Set(['is_null', 'not_null']);
const LIST_OPS = new Set(['in', 'not_in']);

/** What the first and second dimension mean for each chart type (null: not used). */
const DIMENSION_ROLES = {
  bar: ['X axis', 'Series (optional)'],
  stacked_bar: ['X axis', 'Stack by'],
  line: ['X axis', 'Series (optional)'],
  area: ['X axis', 'Series (optional)'],
  pie: ['Slices', null],
  scatter: ['Points', 'Colour by (optional)'],
  big_number: ['Trend over (optional)', null],
  pivot: ['Rows', 'Columns (optional)'],
  table: ['Group by', 'Then by (optional)'],
  heatmap: ['X axis', 'Y axis'],
};
/** How many measures a type uses (null: any number). */
const MEASURE_COUNT = { pie: 1, big_number: 1, heatmap: 1, scatter: 2 };
const MEASURE_ROLES = { scatter: ['X value', 'Y value'] };
/** Dimensions a type cannot draw without (the server refuses the spec otherwise). */
const REQUIRED_DIMENSIONS = { bar: 1, stacked_bar: 1, line: 1, area: 1, pie: 1, pivot: 1, heatmap: 2 };

export async function mount(root, params, ctx) {
  ensureChartsCss();
  if (!params.id) return mountList(root, ctx);
  return mountBuilder(root, params.id === 'new' ? null : params.id, ctx);
}

// ---------------------------------------------------------------------------
// List

function sourceText(spec) {
  if (spec?.source?.table) return spec.source.table;
  if (spec?.source?.saved_query) return 'saved query';
  return '';
}

async function mountList(root, ctx) {
  const listHost = h('div', { class: 'pc-cards', 'data-testid': 'chart-list' });
  const search = h('input', { type: 'search', placeholder: 'Filter charts…', 'aria-label': 'Filter charts' });
  const count = h('span', { class: 'subtitle' });
  root.replaceChildren(h('div', { class: 'page' },
    h('div', { class: 'page-header' },
      h('h1', {}, 'Charts'), count, h('div', { class: 'spacer' }),
      h('div', { class: 'pc-list-tools' }, search,
        h('a', { class: 'btn btn-primary', href: '#/charts/new', 'data-testid': 'chart-new' }, '+ New chart'))),
    listHost));
  listHost.append(h('div', { class: 'loading' }, h('span', { class: 'spinner' }), 'Loading charts…'));

  let charts;
  try {
    charts = (await api('GET', '/api/v1/charts')).charts || [];
  } catch (err) {
    listHost.replaceChildren(errorBox(err));
    return;
  }
  const typeLabel = new Map(CHART_TYPES.map((t) => [t.value, t.label]));
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const shown = charts
      .filter((c) => !q || `${c.name} ${c.description || ''} ${sourceText(c.spec)} ${c.owner}`.toLowerCase().includes(q))
      .sort((a, b) => String(b.updated_at || '').localeCompare(String(a.updated_at || '')));
    count.textContent = `${charts.length} chart${charts.length === 1 ? '' : 's'}`;
    if (!charts.length) {
      listHost.replaceChildren(h('div', { class: 'empty', style: { gridColumn: '1 / -1' } },
        h('div', { class: 'empty-title' }, 'No charts yet'),
        h('div', { class: 'empty-hint' }, 'Build one from a table or a saved query with “New chart”.')));
      return;
    }
    if (!shown.length) {
      listHost.replaceChildren(h('div', { class: 'empty', style: { gridColumn: '1 / -1' } }, 'No chart matches the filter.'));
      return;
    }
    listHost.replaceChildren(...shown.map((c) => h('a', {
      class: 'pc-card', href: `#/charts/${encodeURIComponent(c.id)}`, 'data-testid': 'chart-item', dataset: { chartId: c.id },
    },
    h('div', { class: 'pc-card-title' }, icon('charts'), h('span', {}, c.name)),
    c.description ? h('div', { class: 'pc-card-desc' }, c.description) : null,
    h('div', { class: 'pc-card-meta' },
      h('span', { class: 'tag' }, typeLabel.get(c.spec?.type) || c.spec?.type || '?'),
      h('span', {}, sourceText(c.spec)),
      h('span', {}, c.owner ? `by ${c.owner}` : ''),
      h('span', {}, c.updated_at ? `updated ${timeAgo(c.updated_at)}` : '')))));
  };
  search.addEventListener('input', draw);
  draw();
}

// ---------------------------------------------------------------------------
// Builder

function blankSpec() {
  return { type: 'bar', source: null, dimensions: [], measures: [], filters: [], sort: null, limit: DEFAULT_LIMIT, options: {} };
}

/** The spec as the server should see it: incomplete rows are left out. */
function cleanSpec(spec, columns) {
  const known = new Set(columns.map((c) => c.name));
  const roles = DIMENSION_ROLES[spec.type] || [];
  const dimensions = spec.dimensions
    .filter((d, i) => d && d.column && known.has(d.column) && roles[i])
    .map((d) => (d.time_grain ? { column: d.column, time_grain: d.time_grain } : { column: d.column }));
  const maxMeasures = MEASURE_COUNT[spec.type] || Infinity;
  const measures = spec.measures
    .filter((m) => m.agg && (m.agg === 'count' ? !m.column || known.has(m.column) : known.has(m.column)))
    .slice(0, maxMeasures)
    .map((m) => {
      const out = { agg: m.agg };
      if (m.column) out.column = m.column;
      if (m.label && m.label.trim()) out.label = m.label.trim();
      return out;
    });
  const filters = spec.filters
    .filter((f) => f.column && known.has(f.column) && f.op)
    .map((f) => ({ column: f.column, op: f.op, value: filterValue(f, columns) }))
    .filter((f) => NO_VALUE_OPS.has(f.op) || (f.value !== undefined && f.value !== ''))
    .map((f) => (NO_VALUE_OPS.has(f.op) ? { column: f.column, op: f.op } : f));
  const out = { type: spec.type, source: spec.source, dimensions, measures, filters };
  const sortTargets = new Set([...dimensions.map((d) => d.column), ...measures.map(measureKey)]);
  if (spec.sort?.by && sortTargets.has(spec.sort.by)) out.sort = { by: spec.sort.by, desc: !!spec.sort.desc };
  const limit = Number(spec.limit);
  if (Number.isInteger(limit) && limit > 0) out.limit = limit;
  out.options = spec.options || {};
  return out;
}

/** Turns the text the user typed into the JSON value the filter needs. */
function filterValue(f, columns) {
  if (NO_VALUE_OPS.has(f.op)) return null;
  const type = columns.find((c) => c.name === f.column)?.type;
  const conv = (s) => {
    const t = String(s ?? '').trim();
    if (t !== '' && isNumericType(type) && Number.isFinite(Number(t))) return Number(t);
    return t;
  };
  if (f.op === 'between') {
    const [a, b] = Array.isArray(f.value) ? f.value : ['', ''];
    if (String(a ?? '').trim() === '' || String(b ?? '').trim() === '') return undefined;
    return [conv(a), conv(b)];
  }
  if (LIST_OPS.has(f.op)) {
    const parts = (Array.isArray(f.value) ? f.value : String(f.value ?? '').split(','))
      .map((s) => String(s).trim()).filter(Boolean).map(conv);
    return parts.length ? parts : undefined;
  }
  return Array.isArray(f.value) ? conv(f.value[0]) : conv(f.value);
}

/** A spec loaded from the server, with filter values back in their editable form. */
function editableSpec(spec) {
  const s = { ...blankSpec(), ...structuredClone(spec || {}) };
  s.dimensions = s.dimensions || [];
  s.measures = s.measures || [];
  s.filters = (s.filters || []).map((f) => ({
    ...f,
    value: f.op === 'between' ? (Array.isArray(f.value) ? f.value : ['', ''])
      : LIST_OPS.has(f.op) && Array.isArray(f.value) ? f.value.join(', ') : f.value ?? '',
  }));
  s.options = s.options || {};
  return s;
}

function select(attrs, options, value) {
  const el = h('select', attrs, options.map((o) => h('option', { value: o.value }, o.label)));
  el.value = value ?? '';
  return el;
}

function optgroup(label, options) {
  return h('optgroup', { label }, options.map((o) => h('option', { value: o.value }, o.label)));
}

const sourceKey = (source) => (source?.table ? `t:${source.table}` : source?.saved_query ? `q:${source.saved_query}` : '');

async function mountBuilder(root, chartId, ctx) {
  const isAdmin = ctx.me?.role === 'admin';
  let chart = null; // the saved chart, when editing one
  let catalog = null;
  let savedQueries = [];
  const loading = h('div', { class: 'loading' }, h('span', { class: 'spinner' }), 'Loading…');
  root.replaceChildren(loading);

  try {
    const [cat, saved, existing] = await Promise.all([
      api('GET', '/api/v1/catalog'),
      api('GET', '/api/v1/saved-queries').catch(() => ({ saved_queries: [] })),
      chartId ? api('GET', `/api/v1/charts/${encodeURIComponent(chartId)}`) : null,
    ]);
    catalog = cat;
    savedQueries = saved?.saved_queries || [];
    chart = existing;
  } catch (err) {
    root.replaceChildren(h('div', { class: 'page' },
      h('div', { class: 'page-header' }, h('a', { href: '#/charts' }, '← Charts')), errorBox(err)));
    return;
  }

  const state = {
    name: chart?.name || '',
    description: chart?.description || '',
    spec: chart ? editableSpec(chart.spec) : blankSpec(),
    columns: [], // [{name, type}] of the current source
    columnsError: null,
    typeTouched: !!chart,
    dirty: false,
  };
  const canDelete = chart && (isAdmin || chart.owner === ctx.me?.user);

  // --- layout
  const form = h('form', { class: 'pc-form', autocomplete: 'off' });
  form.addEventListener('submit', (e) => e.preventDefault());
  const title = h('h1', {}, chart?.name || 'New chart');
  const status = h('span', { class: 'pc-status', 'data-testid': 'chart-status' });
  const canvas = h('div', { class: 'pc-canvas', 'data-testid': 'chart-canvas' });
  const canvasCard = h('div', { class: 'card pc-canvas-card' }, canvas);
  const notice = h('div', { class: 'pc-notice', hidden: true });
  const sqlPre = h('pre', {});
  const sqlBox = h('details', { class: 'pc-sql', 'data-testid': 'chart-sql', hidden: true }, h('summary', {}, 'SQL'), sqlPre);
  const preview = h('section', { class: 'pc-preview' },
    h('div', { class: 'pc-preview-head' }, h('a', { href: '#/charts', class: 'muted' }, '← Charts'), title, h('div', { class: 'spacer' }), status),
    canvasCard, notice, sqlBox);
  root.replaceChildren(h('div', { class: 'pc-builder', style: { height: 'calc(100dvh - var(--topbar-height, 48px))' } }, form, preview));

  // --- columns of the current source
  const tableColumns = (name) => {
    const [schema, table] = name.split('.');
    const t = catalog.schemas?.find((s) => s.name === schema)?.tables?.find((x) => x.name === table);
    return t ? (t.columns || []).map((c) => ({ name: c.name, type: c.data_type })) : null;
  };
  const queryColumns = new Map();
  async function loadColumns() {
    state.columnsError = null;
    const src = state.spec.source;
    if (!src) { state.columns = []; return; }
    if (src.table) {
      const cols = tableColumns(src.table);
      state.columns = cols || [];
      if (!cols) state.columnsError = `The table ${src.table} is not in the catalog (deleted, or no access).`;
      return;
    }
    const query = savedQueries.find((q) => String(q.id) === String(src.saved_query));
    if (!query) {
      state.columns = [];
      state.columnsError = 'This saved query no longer exists.';
      return;
    }
    if (!queryColumns.has(query.id)) {
      try {
        const res = await runSql(query.sql, { maxRows: 1 });
        queryColumns.set(query.id, (res.columns || []).map((c) => ({ name: c.name, type: c.type })));
      } catch (err) {
        state.columns = [];
        state.columnsError = `The saved query fails: ${err.message}`;
        return;
      }
    }
    state.columns = queryColumns.get(query.id);
  }

  /** New charts start with a sensible dimension and measure, so the first preview shows something. */
  function suggestFields() {
    const spec = state.spec;
    const cols = state.columns;
    if (spec.dimensions.length || spec.measures.length || !cols.length) return;
    const temporal = cols.find((c) => isTemporalType(c.type));
    const text = cols.find((c) => /^(utf8|largeutf8|string|utf8view)/i.test(c.type));
    const numeric = cols.find((c) => isNumericType(c.type) && !/(^id$|_id$)/i.test(c.name));
    const dim = temporal || text;
    if (dim) spec.dimensions = [temporal ? { column: dim.name, time_grain: 'month' } : { column: dim.name }];
    spec.measures = [numeric ? { agg: 'sum', column: numeric.name } : { agg: 'count' }];
    if (!state.typeTouched && temporal) spec.type = 'line';
  }

  /** Drops parts of the spec that name columns the new source does not have. */
  function pruneToColumns() {
    const known = new Set(state.columns.map((c) => c.name));
    const spec = state.spec;
    spec.dimensions = spec.dimensions.filter((d) => !d.column || known.has(d.column));
    spec.measures = spec.measures.filter((m) => !m.column || known.has(m.column));
    spec.filters = spec.filters.filter((f) => !f.column || known.has(f.column));
  }

  const colType = (name) => state.columns.find((c) => c.name === name)?.type;
  const changed = () => { state.dirty = true; schedulePreview(); };
  const rerender = () => { renderForm(); changed(); };

  // --- the form
  function renderForm() {
    const spec = state.spec;
    const cols = state.columns;
    const colOptions = cols.map((c) => ({ value: c.name, label: c.name }));

    const name = h('input', { value: state.name, placeholder: 'e.g. Revenue by month', 'data-testid': 'chart-name', maxlength: 200 });
    name.addEventListener('input', () => { state.name = name.value; state.dirty = true; title.textContent = name.value || 'New chart'; });

    const source = h('select', { 'data-testid': 'chart-source' },
      h('option', { value: '' }, 'Choose a table or saved query…'),
      (catalog.schemas || []).filter((s) => s.tables?.length).map((s) => optgroup(s.name,
        s.tables.map((t) => ({ value: `t:${s.name}.${t.name}`, label: `${s.name}.${t.name}${t.kind === 'view' ? ' (view)' : ''}` })))),
      savedQueries.length ? optgroup('Saved queries', savedQueries.map((q) => ({ value: `q:${q.id}`, label: q.name }))) : null);
    source.value = sourceKey(spec.source);
    if (spec.source && !source.value) {
      // A source that disappeared from the catalog stays visible rather than silently blank.
      source.append(h('option', { value: sourceKey(spec.source) }, spec.source.table || 'missing saved query'));
      source.value = sourceKey(spec.source);
    }
    source.addEventListener('change', async () => {
      const v = source.value;
      spec.source = v.startsWith('t:') ? { table: v.slice(2) } : v.startsWith('q:') ? { saved_query: v.slice(2) } : null;
      source.disabled = true;
      await loadColumns();
      pruneToColumns();
      suggestFields();
      rerender();
    });

    const type = select({ 'data-testid': 'chart-type' }, CHART_TYPES, spec.type);
    type.addEventListener('change', () => { spec.type = type.value; state.typeTouched = true; rerender(); });

    const parts = [
      h('label', { class: 'field' }, 'Name', name),
      h('label', { class: 'field' }, 'Source', source),
      state.columnsError ? errorBox(state.columnsError) : null,
      h('label', { class: 'field' }, 'Chart type', type),
    ];

    if (spec.source && !state.columnsError) {
      parts.push(dimensionsSection(spec, colOptions), measuresSection(spec, cols), filtersSection(spec, colOptions),
        sortSection(spec), optionsSection(spec));
    } else if (!spec.source) {
      parts.push(h('div', { class: 'pc-hint' }, 'Pick a source to choose dimensions and measures from its columns.'));
    }
    parts.push(actionsSection());
    form.replaceChildren(...parts.filter(Boolean));
  }

  function dimensionsSection(spec, colOptions) {
    const roles = DIMENSION_ROLES[spec.type] || [];
    const rows = [];
    roles.forEach((role, i) => {
      if (!role) return;
      const dim = spec.dimensions[i] || {};
      const testid = i === 0 ? 'chart-dimension' : 'chart-series';
      const sel = select({ 'data-testid': testid, 'aria-label': role }, [{ value: '', label: '— none —' }, ...colOptions], dim.column);
      sel.addEventListener('change', () => {
        const column = sel.value;
        if (!column) {
          spec.dimensions[i] = null;
        } else {
          const temporal = isTemporalType(colType(column));
          spec.dimensions[i] = temporal ? { column, time_grain: dim.column === column ? dim.time_grain : 'month' } : { column };
        }
        // Keep the array dense where possible: trailing empties go away.
        while (spec.dimensions.length && !spec.dimensions[spec.dimensions.length - 1]) spec.dimensions.pop();
        rerender();
      });
      const line = h('div', { class: 'pc-line' }, sel);
      if (dim.column && isTemporalType(colType(dim.column))) {
        const grain = select({ 'data-testid': i === 0 ? 'chart-time-grain' : 'chart-series-time-grain', class: 'pc-narrow', 'aria-label': 'Time grain' },
          [{ value: '', label: 'exact' }, ...TIME_GRAINS.map((g) => ({ value: g, label: g }))], dim.time_grain || '');
        grain.addEventListener('change', () => {
          spec.dimensions[i] = grain.value ? { column: dim.column, time_grain: grain.value } : { column: dim.column };
          changed();
        });
        line.append(grain);
      }
      rows.push(h('label', { class: 'field' }, role, line));
    });
    if (!rows.length) return null;
    return h('div', { class: 'pc-form-section' }, h('div', { class: 'pc-form-section-head' }, 'Dimensions'), rows);
  }

  function measureColumnOptions(agg, cols) {
    const fit = NUMERIC_AGGS.has(agg) ? cols.filter((c) => isNumericType(c.type)) : cols;
    const opts = fit.map((c) => ({ value: c.name, label: c.name }));
    return agg === 'count' ? [{ value: '', label: '(all rows)' }, ...opts] : opts;
  }

  function measuresSection(spec, cols) {
    const max = MEASURE_COUNT[spec.type] || Infinity;
    const roles = MEASURE_ROLES[spec.type] || [];
    const rows = spec.measures.slice(0, max).map((m, i) => {
      const agg = select({ 'data-testid': 'chart-measure-agg', class: 'pc-narrow', 'aria-label': 'Aggregate' }, AGGS, m.agg);
      const column = select({ 'data-testid': 'chart-measure-column', 'aria-label': 'Column' }, measureColumnOptions(m.agg, cols), m.column || '');
      if (m.agg !== 'count' && !column.value && column.options.length) {
        m.column = column.options[0].value;
        column.value = m.column;
      }
      agg.addEventListener('change', () => {
        m.agg = agg.value;
        const options = measureColumnOptions(m.agg, cols);
        if (!options.some((o) => o.value === (m.column || ''))) m.column = options[0]?.value || undefined;
        if (m.agg === 'count' && !m.column) delete m.column;
        rerender();
      });
      column.addEventListener('change', () => { m.column = column.value || undefined; rerender(); });
      const label = h('input', { value: m.label || '', placeholder: `Label (${measureTitle({ agg: m.agg, column: m.column })})`, 'aria-label': 'Label', 'data-testid': 'chart-measure-label' });
      label.addEventListener('input', () => { m.label = label.value; changed(); });
      label.addEventListener('change', () => renderForm()); // refresh the sort choices with the new name
      const remove = h('button', { type: 'button', class: 'btn btn-ghost btn-icon btn-small', title: 'Remove measure', 'aria-label': 'Remove measure' }, icon('close'));
      remove.addEventListener('click', () => { spec.measures.splice(i, 1); rerender(); });
      return h('div', { class: 'form-grid', style: { gap: '6px' } },
        roles[i] ? h('div', { class: 'pc-hint' }, roles[i]) : null,
        h('div', { class: 'pc-line' }, agg, column, remove),
        label);
    });
    const add = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'chart-add-measure' }, '+ Measure');
    add.addEventListener('click', () => {
      const numeric = cols.find((c) => isNumericType(c.type) && !spec.measures.some((m) => m.column === c.name));
      spec.measures.push(numeric ? { agg: 'sum', column: numeric.name } : { agg: 'count' });
      rerender();
    });
    const canAdd = spec.measures.length < max;
    return h('div', { class: 'pc-form-section' },
      h('div', { class: 'pc-form-section-head' }, 'Measures', canAdd ? add : null),
      rows.length ? rows : h('div', { class: 'pc-hint' }, 'Add what to measure, e.g. the sum of revenue.'));
  }

  function filtersSection(spec, colOptions) {
    const rows = spec.filters.map((f, i) => {
      const column = select({ 'data-testid': 'chart-filter-column', 'aria-label': 'Filter column' }, [{ value: '', label: 'Column…' }, ...colOptions], f.column);
      const op = select({ 'data-testid': 'chart-filter-op', class: 'pc-narrow', 'aria-label': 'Operator' }, FILTER_OPS, f.op || '=');
      column.addEventListener('change', () => { f.column = column.value; rerender(); });
      op.addEventListener('change', () => {
        const wasBetween = f.op === 'between';
        f.op = op.value;
        if (f.op === 'between' && !wasBetween) f.value = [typeof f.value === 'string' ? f.value : '', ''];
        else if (f.op !== 'between' && wasBetween) f.value = Array.isArray(f.value) ? f.value[0] : '';
        rerender();
      });
      const remove = h('button', { type: 'button', class: 'btn btn-ghost btn-icon btn-small', title: 'Remove filter', 'aria-label': 'Remove filter' }, icon('close'));
      remove.addEventListener('click', () => { spec.filters.splice(i, 1); rerender(); });
      const type = colType(f.column);
      const inputType = isTemporalType(type) && !LIST_OPS.has(f.op) && f.op !== 'like' ? 'date' : 'text';
      const valueInput = (value, onInput, placeholder) => {
        const input = h('input', { type: inputType, value: value ?? '', placeholder, 'data-testid': 'chart-filter-value', 'aria-label': 'Value' });
        input.addEventListener('input', () => { onInput(input.value); changed(); });
        return input;
      };
      let values = null;
      if (f.op === 'between') {
        const pair = Array.isArray(f.value) ? f.value : ['', ''];
        f.value = pair;
        values = h('div', { class: 'pc-line' },
          valueInput(pair[0], (v) => { pair[0] = v; }, 'from'),
          h('span', { class: 'muted' }, '–'),
          valueInput(pair[1], (v) => { pair[1] = v; }, 'to'));
      } else if (!NO_VALUE_OPS.has(f.op)) {
        const placeholder = LIST_OPS.has(f.op) ? 'a, b, c' : f.op === 'like' ? '%text%' : 'value';
        values = valueInput(f.value, (v) => { f.value = v; }, placeholder);
      }
      return h('div', { class: 'form-grid', style: { gap: '6px' } },
        h('div', { class: 'pc-line' }, column, op, remove), values);
    });
    const add = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'chart-add-filter' }, '+ Filter');
    add.addEventListener('click', () => { spec.filters.push({ column: '', op: '=', value: '' }); renderForm(); });
    return h('div', { class: 'pc-form-section' },
      h('div', { class: 'pc-form-section-head' }, 'Filters', add),
      rows.length ? rows : h('div', { class: 'pc-hint' }, 'No filters: all rows are used.'));
  }

  function sortSection(spec) {
    const roles = DIMENSION_ROLES[spec.type] || [];
    const targets = [
      ...spec.dimensions.filter((d, i) => d?.column && roles[i]).map((d) => ({ value: d.column, label: d.column })),
      ...spec.measures.map((m) => ({ value: measureKey(m), label: measureTitle(m) })),
    ];
    const by = select({ 'data-testid': 'chart-sort', 'aria-label': 'Sort by' }, [{ value: '', label: 'Default order' }, ...targets], spec.sort?.by || '');
    const dir = select({ 'data-testid': 'chart-sort-dir', class: 'pc-narrow', 'aria-label': 'Direction' },
      [{ value: 'desc', label: 'desc' }, { value: 'asc', label: 'asc' }], spec.sort?.desc === false ? 'asc' : 'desc');
    dir.disabled = !by.value;
    const update = () => {
      spec.sort = by.value ? { by: by.value, desc: dir.value === 'desc' } : null;
      dir.disabled = !by.value;
      changed();
    };
    by.addEventListener('change', update);
    dir.addEventListener('change', update);
    const limit = h('input', { type: 'number', min: 1, step: 1, value: spec.limit ?? '', placeholder: 'no limit', 'data-testid': 'chart-limit', class: 'pc-narrow', 'aria-label': 'Row limit' });
    limit.addEventListener('input', () => { spec.limit = limit.value === '' ? null : Number(limit.value); changed(); });
    return h('div', { class: 'pc-form-section' },
      h('div', { class: 'pc-form-section-head' }, 'Sort and limit'),
      h('div', { class: 'pc-line' }, by, dir),
      h('label', { class: 'field' }, 'Row limit', limit));
  }

  function optionsSection(spec) {
    const checks = [];
    const check = (key, label) => {
      const box = h('input', { type: 'checkbox', checked: !!spec.options[key], 'data-testid': `chart-option-${key}` });
      box.addEventListener('change', () => {
        if (box.checked) spec.options[key] = true;
        else delete spec.options[key];
        changed();
      });
      checks.push(h('label', {}, box, label));
    };
    if (spec.type === 'bar' || spec.type === 'stacked_bar') check('horizontal', 'Horizontal bars');
    if (['bar', 'stacked_bar', 'line', 'area'].includes(spec.type)) check('show_labels', 'Value labels');
    if (!checks.length) return null;
    return h('div', { class: 'pc-form-section' }, h('div', { class: 'pc-form-section-head' }, 'Display'), h('div', { class: 'pc-checks' }, checks));
  }

  function actionsSection() {
    const run = h('button', { type: 'button', class: 'btn', 'data-testid': 'chart-run', title: 'Run the preview now' }, icon('play'), 'Run');
    run.addEventListener('click', () => runPreview());
    const save = h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'chart-save' }, chart ? 'Save' : 'Save chart');
    save.addEventListener('click', () => saveChart().catch(() => {}));
    const addTo = h('button', { type: 'button', class: 'btn', 'data-testid': 'chart-add-to-dashboard' }, icon('dashboards'), 'Add to dashboard');
    addTo.addEventListener('click', () => addToDashboard());
    let del = null;
    if (canDelete) {
      del = h('button', { type: 'button', class: 'btn btn-danger btn-ghost', 'data-testid': 'chart-delete' }, 'Delete');
      del.addEventListener('click', deleteChart);
    }
    return h('div', { class: 'pc-form-actions' }, save, run, addTo, del);
  }

  // --- preview
  let previewTimer = null;
  let previewSeq = 0;
  let handle = null;

  function schedulePreview() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(runPreview, PREVIEW_DELAY_MS);
  }

  function showCanvasMessage(node) {
    handle?.dispose();
    handle = null;
    canvasCard.querySelector(':scope > .error-box')?.remove();
    canvas.replaceChildren(node);
  }

  async function runPreview() {
    clearTimeout(previewTimer);
    const spec = cleanSpec(state.spec, state.columns);
    if (!spec.source || state.columnsError) {
      showCanvasMessage(h('div', { class: 'pc-empty' }, 'Pick a source to start.'));
      status.textContent = '';
      sqlBox.hidden = true;
      return;
    }
    if (!spec.measures.length && !(spec.type === 'table' && spec.dimensions.length)) {
      showCanvasMessage(h('div', { class: 'pc-empty' }, 'Add a measure to see the chart.'));
      status.textContent = '';
      return;
    }
    // An incomplete form (while the user is still choosing) is not sent: say what is missing.
    if (spec.dimensions.length < (REQUIRED_DIMENSIONS[spec.type] || 0)) {
      const roles = DIMENSION_ROLES[spec.type].slice(0, REQUIRED_DIMENSIONS[spec.type]).join(' and ');
      showCanvasMessage(h('div', { class: 'pc-empty' }, `Pick the ${roles.toLowerCase()} to see the chart.`));
      status.textContent = '';
      return;
    }
    const seq = ++previewSeq;
    status.replaceChildren(h('span', { class: 'spinner', style: { width: '12px', height: '12px', verticalAlign: '-2px' } }), ' Running…');
    let result;
    try {
      result = await api('POST', '/api/v1/charts/data', { spec });
    } catch (err) {
      if (seq !== previewSeq) return;
      handle?.dispose();
      handle = null;
      canvas.replaceChildren();
      canvasCard.querySelector(':scope > .error-box')?.remove();
      canvasCard.append(errorBox(err));
      status.textContent = 'Failed';
      return;
    }
    if (seq !== previewSeq) return;
    canvasCard.querySelector(':scope > .error-box')?.remove();
    handle?.dispose();
    canvas.replaceChildren();
    handle = renderChart(canvas, spec, result);
    handle.drawn.catch((err) => { if (seq === previewSeq) canvasCard.append(errorBox(err)); });
    const rows = result.row_count ?? result.rows?.length ?? 0;
    status.textContent = `${formatNumber(rows)} row${rows === 1 ? '' : 's'}${result.elapsed_ms != null ? ` in ${formatNumber(Math.round(result.elapsed_ms))} ms` : ''}`;
    notice.hidden = !result.truncated;
    notice.textContent = result.truncated ? `Only the first ${formatNumber(rows)} rows are drawn: raise the limit or aggregate more coarsely.` : '';
    sqlBox.hidden = !result.sql;
    sqlPre.textContent = result.sql || '';
  }

  // --- actions
  async function saveChart() {
    const name = state.name.trim();
    if (!name) {
      toast('Give the chart a name first', 'error');
      form.querySelector('[data-testid="chart-name"]')?.focus();
      throw new Error('unnamed');
    }
    const spec = cleanSpec(state.spec, state.columns);
    if (!spec.source) {
      toast('Pick a source first', 'error');
      throw new Error('no source');
    }
    const body = { name, description: state.description, spec };
    try {
      const saved = chart
        ? await api('PUT', `/api/v1/charts/${encodeURIComponent(chart.id)}`, body)
        : await api('POST', '/api/v1/charts', body);
      state.dirty = false;
      toast(`Saved “${saved?.name || name}”`, 'ok');
      if (!chart) {
        chart = saved;
        // A new URL for the new chart; the builder is rebuilt from the saved copy.
        ctx.navigate(`#/charts/${encodeURIComponent(saved.id)}`);
      } else {
        chart = saved || chart;
      }
      return chart;
    } catch (err) {
      toast(`Could not save: ${err.message}`, 'error');
      throw err;
    }
  }

  async function addToDashboard() {
    const wasNew = !chart;
    let saved = chart;
    if (!saved || state.dirty) {
      try { saved = await saveChartQuietly(); } catch { return; }
    }
    let dashboards = [];
    try {
      dashboards = (await api('GET', '/api/v1/dashboards')).dashboards || [];
    } catch (err) {
      toast(err.message, 'error');
      return;
    }
    const picker = h('select', { 'data-testid': 'chart-dashboard-picker' },
      dashboards.map((d) => h('option', { value: d.id }, d.name)),
      h('option', { value: '__new' }, 'New dashboard…'));
    const newName = h('input', { placeholder: 'Dashboard name', 'data-testid': 'chart-new-dashboard-name' });
    const newField = h('label', { class: 'field', hidden: dashboards.length > 0 }, 'Name of the new dashboard', newName);
    picker.addEventListener('change', () => { newField.hidden = picker.value !== '__new'; if (!newField.hidden) newName.focus(); });
    const result = await modal(`Add “${saved.name}” to a dashboard`,
      h('div', { class: 'form-grid' }, h('label', { class: 'field' }, 'Dashboard', picker), newField),
      [
        { label: 'Cancel', value: null },
        {
          label: 'Add', kind: 'primary', testid: 'chart-add-to-dashboard-confirm',
          run: async () => {
            if (picker.value === '__new') {
              const name = newName.value.trim();
              if (!name) throw new Error('Name the new dashboard.');
              const created = await api('POST', '/api/v1/dashboards', { name, tiles: [], filters: [] });
              return addChartToDashboard(created, saved);
            }
            const current = await api('GET', `/api/v1/dashboards/${encodeURIComponent(picker.value)}`);
            return addChartToDashboard(current, saved);
          },
        },
      ]);
    if (result) {
      toast(h('span', {}, `Added to ${result.name}. `,
        h('a', { href: `#/dashboards/${encodeURIComponent(result.id)}`, style: { color: 'inherit', textDecoration: 'underline' } }, 'Open it')), 'ok');
    }
    // A chart saved on the way gets its own address (this rebuilds the builder from it).
    if (wasNew && chart) ctx.navigate(`#/charts/${encodeURIComponent(chart.id)}`);
  }

  /** Saves without navigating away (used before adding to a dashboard). */
  async function saveChartQuietly() {
    const name = state.name.trim();
    if (!name) {
      toast('Name and save the chart first', 'error');
      form.querySelector('[data-testid="chart-name"]')?.focus();
      throw new Error('unnamed');
    }
    const body = { name, description: state.description, spec: cleanSpec(state.spec, state.columns) };
    try {
      chart = chart
        ? await api('PUT', `/api/v1/charts/${encodeURIComponent(chart.id)}`, body)
        : await api('POST', '/api/v1/charts', body);
    } catch (err) {
      toast(`Could not save: ${err.message}`, 'error');
      throw err;
    }
    state.dirty = false;
    renderForm();
    return chart;
  }

  async function deleteChart() {
    const ok = await confirmDialog('Delete chart', `Delete “${chart.name}”? Dashboards that show it lose the tile.`);
    if (!ok) return;
    try {
      await api('DELETE', `/api/v1/charts/${encodeURIComponent(chart.id)}`);
      toast('Chart deleted', 'ok');
      ctx.navigate('#/charts');
    } catch (err) {
      toast(err.message, 'error');
    }
  }

  // --- start
  await loadColumns();
  suggestFields();
  renderForm();
  runPreview();

  const warnUnsaved = (e) => { if (state.dirty) { e.preventDefault(); e.returnValue = ''; } };
  window.addEventListener('beforeunload', warnUnsaved);
  return () => {
    clearTimeout(previewTimer);
    previewSeq += 1;
    handle?.dispose();
    window.removeEventListener('beforeunload', warnUnsaved);
  };
}
