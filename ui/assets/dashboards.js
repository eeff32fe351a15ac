/**
 * dashboards.js — the Dashboards screen: the list (`#/dashboards`) and one dashboard
 * (`#/dashboards/<id>?f.<column>=<value>`).
 *
 * A dashboard is a 12-column grid of chart tiles (rows of 80px). Every tile fetches its
 * own data (POST /api/v1/charts/{id}/data with the dashboard's filter values), all at
 * once, and draws independently: one failing tile shows its error in place while the
 * others draw. Filter values live in the URL so a dashboard view can be shared.
 * Edit mode arranges tiles (drag by the header, resize from the corner, snapping to the
 * grid) with plain pointer events.
 *
 * Progress is published for tests and the benchmark: each tile carries
 * data-state = loading | drawn | error, and window.__polderDashboard =
 * {charts, drawn, errors, startedAt, doneAt} (doneAt once every tile drew or failed).
 */
import { api } from './api.js';
import { h, toast, errorBox, modal, timeAgo, icon, confirmDialog, copyText } from './dom.js';
import { renderChart, ensureChartsCss, isTemporalType } from './chart-view.js';

const COLUMNS = 12;
const MIN_W = 2;
const MIN_H = 2;
const REFRESH_CHOICES = [
  { value: 0, label: 'Off' }, { value: 10, label: '10s' }, { value: 30, label: '30s' },
  { value: 60, label: '1m' }, { value: 300, label: '5m' },
];
const ROLES = ['viewer', 'analyst', 'engineer', 'admin'];
const RANGE_SEPARATOR = '..';

export async function mount(root, params, ctx) {
  ensureChartsCss();
  if (!params.id) return mountList(root, ctx);
  return mountDashboard(root, params.id, ctx);
}

// ---------------------------------------------------------------------------
// Layout helpers (also used by the chart builder's "Add to dashboard")

const overlaps = (a, b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;

/** The first free place (top to bottom, left to right) for a w×h tile. */
function findSpot(tiles, w, hgt) {
  const bottom = tiles.reduce((m, t) => Math.max(m, t.y + t.h), 0);
  for (let y = 0; y <= bottom; y += 1) {
    for (let x = 0; x + w <= COLUMNS; x += 1) {
      const probe = { x, y, w, h: hgt };
      if (!tiles.some((t) => overlaps(t, probe))) return { x, y };
    }
  }
  return { x: 0, y: bottom };
}

function defaultTileSize(type) {
  if (type === 'big_number') return { w: 3, h: 2 };
  if (type === 'table' || type === 'pivot') return { w: 6, h: 5 };
  return { w: 6, h: 4 };
}

/**
 * Pushes tiles down until nothing overlaps `moved` (which keeps its place). Tiles are
 * settled top to bottom so that the layout keeps its reading order.
 */
function settle(tiles, moved) {
  const placed = [moved];
  const others = tiles.filter((t) => t !== moved).sort((a, b) => a.y - b.y || a.x - b.x);
  for (const t of others) {
    let hits = placed.filter((p) => overlaps(p, t));
    while (hits.length) {
      t.y = Math.max(...hits.map((p) => p.y + p.h));
      hits = placed.filter((p) => overlaps(p, t));
    }
    placed.push(t);
  }
}

/** The fields PUT /api/v1/dashboards/{id} takes. */
function dashboardBody(d) {
  return {
    name: d.name,
    description: d.description || '',
    refresh_seconds: d.refresh_seconds || 0,
    shared_with: d.shared_with || [],
    filters: d.filters || [],
    tiles: (d.tiles || []).map(({ chart_id, x, y, w, h: hgt }) => ({ chart_id, x, y, w, h: hgt })),
  };
}

/** Appends a tile for `chart` in the first free spot and saves the dashboard. */
export async function addChartToDashboard(dashboard, chart) {
  const tiles = [...(dashboard.tiles || [])];
  const size = defaultTileSize(chart.spec?.type);
  tiles.push({ chart_id: chart.id, ...findSpot(tiles, size.w, size.h), ...size });
  const saved = await api('PUT', `/api/v1/dashboards/${encodeURIComponent(dashboard.id)}`, dashboardBody({ ...dashboard, tiles }));
  return saved || { ...dashboard, tiles };
}

// ---------------------------------------------------------------------------
// List

async function mountList(root, ctx) {
  const isViewer = ctx.me?.role === 'viewer';
  const listHost = h('div', { class: 'pc-cards', 'data-testid': 'dashboard-list' },
    h('div', { class: 'loading', style: { gridColumn: '1 / -1' } }, h('span', { class: 'spinner' }), 'Loading dashboards…'));
  const newButton = isViewer ? null
    : h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'dashboard-new' }, '+ New dashboard');
  const count = h('span', { class: 'subtitle' });
  root.replaceChildren(h('div', { class: 'page' },
    h('div', { class: 'page-header' }, h('h1', {}, 'Dashboards'), count, h('div', { class: 'spacer' }), newButton),
    listHost));
  newButton?.addEventListener('click', () => createDashboard(ctx));

  let dashboards;
  try {
    dashboards = (await api('GET', '/api/v1/dashboards')).dashboards || [];
  } catch (err) {
    listHost.replaceChildren(errorBox(err));
    return;
  }
  count.textContent = `${dashboards.length} dashboard${dashboards.length === 1 ? '' : 's'}`;
  if (!dashboards.length) {
    listHost.replaceChildren(h('div', { class: 'empty', style: { gridColumn: '1 / -1' } },
      h('div', { class: 'empty-title' }, 'No dashboards yet'),
      h('div', { class: 'empty-hint' }, isViewer
        ? 'Dashboards shared with you will appear here.'
        : 'Create one with “New dashboard”, or add a chart to a dashboard from the chart builder.')));
    return;
  }
  dashboards.sort((a, b) => String(a.name).localeCompare(String(b.name)));
  listHost.replaceChildren(...dashboards.map((d) => {
    const n = d.tiles?.length ?? 0;
    return h('a', { class: 'pc-card', href: `#/dashboards/${encodeURIComponent(d.id)}`, 'data-testid': 'dashboard-item', dataset: { dashboardId: d.id } },
      h('div', { class: 'pc-card-title' }, icon('dashboards'), h('span', {}, d.name)),
      d.description ? h('div', { class: 'pc-card-desc' }, d.description) : null,
      h('div', { class: 'pc-card-meta' },
        h('span', { class: 'pd-card-count' }, `${n} chart${n === 1 ? '' : 's'}`),
        d.owner ? h('span', {}, `by ${d.owner}`) : null,
        d.updated_at ? h('span', {}, `updated ${timeAgo(d.updated_at)}`) : null,
        d.shared_with?.length ? h('span', {}, 'shared') : null));
  }));
}

async function createDashboard(ctx) {
  const name = h('input', { placeholder: 'e.g. Weekly sales', 'data-testid': 'dashboard-name', maxlength: 200 });
  const description = h('input', { placeholder: 'What is it for? (optional)' });
  const created = await modal('New dashboard',
    h('div', { class: 'form-grid' }, h('label', { class: 'field' }, 'Name', name), h('label', { class: 'field' }, 'Description', description)),
    [
      { label: 'Cancel', value: null },
      {
        label: 'Create', kind: 'primary', testid: 'dashboard-create',
        run: async () => {
          if (!name.value.trim()) throw new Error('Give the dashboard a name.');
          return api('POST', '/api/v1/dashboards', { name: name.value.trim(), description: description.value.trim(), tiles: [], filters: [] });
        },
      },
    ]);
  if (created) ctx.navigate(`#/dashboards/${encodeURIComponent(created.id)}`);
}

// ---------------------------------------------------------------------------
// One dashboard

/** Filter values from the hash: `?f.country=Netherlands&f.order_date=2024-01-01..2024-06-30`. */
function filtersFromHash() {
  const query = location.hash.split('?')[1] || '';
  const values = new Map();
  for (const [key, value] of new URLSearchParams(query)) {
    if (key.startsWith('f.')) values.set(key.slice(2), value);
  }
  return values;
}

function closeOnOutsideClick(popover, anchor) {
  const onDown = (e) => {
    if (!popover.contains(e.target) && !anchor.contains(e.target)) close();
  };
  const onKey = (e) => { if (e.key === 'Escape') close(); };
  function close() {
    popover.remove();
    document.removeEventListener('pointerdown', onDown, true);
    document.removeEventListener('keydown', onKey);
  }
  document.addEventListener('pointerdown', onDown, true);
  document.addEventListener('keydown', onKey);
  return close;
}

async function mountDashboard(root, id, ctx) {
  const path = `/api/v1/dashboards/${encodeURIComponent(id)}`;
  root.replaceChildren(h('div', { class: 'loading' }, h('span', { class: 'spinner' }), 'Loading dashboard…'));
  let dashboard;
  try {
    dashboard = await api('GET', path);
  } catch (err) {
    root.replaceChildren(h('div', { class: 'page' },
      h('div', { class: 'page-header' }, h('a', { href: '#/dashboards' }, '← Dashboards')), errorBox(err)));
    return;
  }

  const me = ctx.me || {};
  const isViewer = me.role === 'viewer';
  const canEdit = me.role === 'admin' || (!isViewer && dashboard.owner === me.user);
  const charts = new Map((dashboard.charts || []).map((c) => [String(c.id), c]));

  // Mutable view state. `draft` is what edit mode changes; `dashboard` stays the saved copy.
  let draft = structuredClone(dashboardBody(dashboard));
  let editing = false;
  let generation = 0;
  let refreshTimer = null;
  let filterValues = filtersFromHash(); // column → raw string (ranges as "from..to")
  let lastQuery = location.hash.split('?')[1] || '';
  let allCharts = null; // for the chart picker, loaded when edit mode opens
  const tiles = []; // {tile, el, body, handle, note}

  for (const f of draft.filters) {
    if (!filterValues.has(f.column) && f.default != null && f.default !== '') {
      filterValues.set(f.column, Array.isArray(f.default) ? f.default.join(RANGE_SEPARATOR) : String(f.default));
    }
  }

  // --- header
  const titleEl = h('h1', { 'data-testid': 'dashboard-title' }, dashboard.name);
  const refreshSelect = h('select', { 'data-testid': 'dashboard-refresh', 'aria-label': 'Auto-refresh' },
    REFRESH_CHOICES.map((c) => h('option', { value: c.value }, c.label)));
  if (!REFRESH_CHOICES.some((c) => c.value === Number(draft.refresh_seconds || 0))) {
    refreshSelect.append(h('option', { value: draft.refresh_seconds }, `${draft.refresh_seconds}s`));
  }
  refreshSelect.value = String(draft.refresh_seconds || 0);
  const refreshNow = h('button', { type: 'button', class: 'btn btn-ghost btn-icon', title: 'Refresh now', 'aria-label': 'Refresh now', 'data-testid': 'dashboard-refresh-now' }, icon('refresh'));
  const shareButton = h('button', { type: 'button', class: 'btn', 'data-testid': 'dashboard-share' }, icon('copy'), 'Share');
  const editButton = canEdit ? h('button', { type: 'button', class: 'btn', 'data-testid': 'dashboard-edit' }, 'Edit') : null;
  const head = h('div', { class: 'pd-head' });
  const desc = h('div', { class: 'pd-desc' });
  const filtersBar = h('div', { class: 'pd-filters', 'data-testid': 'dashboard-filters' });
  const editBar = h('div', { class: 'pd-head', hidden: true });
  const grid = h('div', { class: 'pd-grid', 'data-testid': 'dashboard-grid' });
  root.replaceChildren(h('div', { class: 'pd-page' }, head, desc, editBar, filtersBar, grid));

  function renderHead() {
    const title = editing
      ? (() => {
        const input = h('input', { class: 'pd-title-input', value: draft.name, 'aria-label': 'Dashboard name', 'data-testid': 'dashboard-title' });
        input.addEventListener('input', () => { draft.name = input.value; });
        return input;
      })()
      : titleEl;
    titleEl.textContent = draft.name;
    head.replaceChildren(...[
      h('a', { href: '#/dashboards', class: 'muted', title: 'All dashboards' }, '←'),
      title,
      h('div', { class: 'spacer' }),
      h('label', { class: 'pd-refresh' }, 'Auto-refresh', refreshSelect),
      refreshNow,
      shareButton,
      editButton,
    ].filter(Boolean));
    if (editButton) {
      editButton.textContent = editing ? 'Cancel' : 'Edit';
      editButton.classList.toggle('btn-ghost', editing);
    }
    desc.textContent = draft.description || '';
    desc.hidden = !draft.description;
    renderEditBar();
  }

  function renderEditBar() {
    editBar.hidden = !editing;
    if (!editing) { editBar.replaceChildren(); return; }
    const picker = h('select', { 'data-testid': 'dashboard-chart-picker', 'aria-label': 'Chart to add' },
      allCharts === null
        ? h('option', { value: '' }, 'Loading charts…')
        : allCharts.length
          ? allCharts.map((c) => h('option', { value: c.id }, c.name))
          : h('option', { value: '' }, 'No charts yet — build one under Charts'));
    const add = h('button', { type: 'button', class: 'btn', 'data-testid': 'dashboard-add-chart' }, '+ Add chart');
    add.addEventListener('click', () => {
      const chart = allCharts?.find((c) => String(c.id) === picker.value);
      if (chart) addTile(chart);
    });
    const addFilter = h('button', { type: 'button', class: 'btn', 'data-testid': 'dashboard-add-filter' }, '+ Filter');
    addFilter.addEventListener('click', addFilterDialog);
    const save = h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'dashboard-save' }, 'Save');
    save.addEventListener('click', saveLayout);
    const del = h('button', { type: 'button', class: 'btn btn-danger btn-ghost', 'data-testid': 'dashboard-delete' }, 'Delete dashboard');
    del.addEventListener('click', deleteDashboard);
    editBar.replaceChildren(picker, add, addFilter,
      h('span', { class: 'pc-hint' }, 'Drag tiles by their header; resize from the bottom-right corner.'),
      h('div', { class: 'spacer' }), del, save);
  }

  refreshSelect.addEventListener('change', async () => {
    draft.refresh_seconds = Number(refreshSelect.value);
    scheduleRefresh();
    if (canEdit && !editing) {
      try {
        dashboard = await api('PUT', path, { ...dashboardBody(dashboard), refresh_seconds: draft.refresh_seconds }) || dashboard;
      } catch (err) {
        toast(`Could not save the refresh interval: ${err.message}`, 'error');
      }
    }
  });
  refreshNow.addEventListener('click', () => loadAll());
  shareButton.addEventListener('click', shareDialog);
  editButton?.addEventListener('click', () => (editing ? cancelEdit() : startEdit()));

  // --- filters
  function activeFilters() {
    const out = [];
    for (const f of draft.filters) {
      const raw = filterValues.get(f.column);
      if (raw == null || raw === '') continue;
      if (f.op === 'between') {
        const [from, to] = raw.split(RANGE_SEPARATOR);
        if (from && to) out.push({ column: f.column, op: 'between', value: [from, to] });
        else if (from) out.push({ column: f.column, op: '>=', value: from });
        else if (to) out.push({ column: f.column, op: '<=', value: to });
      } else {
        const value = typedValues.get(f.column)?.get(raw) ?? raw;
        out.push(f.op === 'in' ? { column: f.column, op: 'in', value: [value] } : { column: f.column, op: f.op || '=', value });
      }
    }
    return out;
  }
  const typedValues = new Map(); // column → Map(string → value as the server sent it)
  const valuesCache = new Map(); // column → Promise<values>

  function writeUrl() {
    const params = new URLSearchParams();
    for (const [column, value] of filterValues) if (value) params.set(`f.${column}`, value);
    const query = params.toString();
    lastQuery = query;
    const url = `#/dashboards/${encodeURIComponent(id)}${query ? `?${query}` : ''}`;
    // replaceState: the router must not rebuild the screen for a filter change.
    history.replaceState(history.state, '', url);
  }

  function setFilter(column, value) {
    if (value) filterValues.set(column, value);
    else filterValues.delete(column);
    writeUrl();
    loadAll();
  }

  function renderFilters() {
    const items = draft.filters.map((f, index) => {
      const label = f.label || f.column;
      let control;
      if (f.op === 'between') {
        const [from = '', to = ''] = (filterValues.get(f.column) || '').split(RANGE_SEPARATOR);
        const a = h('input', { type: 'date', value: from, 'data-testid': `dashboard-filter-${f.column}`, 'aria-label': `${label} from` });
        const b = h('input', { type: 'date', value: to, 'data-testid': `dashboard-filter-${f.column}-to`, 'aria-label': `${label} to` });
        const onChange = () => setFilter(f.column, a.value || b.value ? `${a.value}${RANGE_SEPARATOR}${b.value}` : '');
        a.addEventListener('change', onChange);
        b.addEventListener('change', onChange);
        control = h('div', { class: 'pd-filter-row' }, a, h('span', { class: 'pd-dash' }, '–'), b);
      } else {
        const current = filterValues.get(f.column) || '';
        const sel = h('select', { 'data-testid': `dashboard-filter-${f.column}`, 'aria-label': label },
          h('option', { value: '' }, 'All'),
          current ? h('option', { value: current }, current) : null);
        sel.value = current;
        sel.addEventListener('change', () => setFilter(f.column, sel.value));
        fillFilterOptions(sel, f.column);
        control = h('div', { class: 'pd-filter-row' }, sel);
      }
      if (editing) {
        const remove = h('button', { type: 'button', class: 'btn btn-ghost btn-icon btn-small', title: 'Remove filter', 'aria-label': `Remove filter ${label}` }, icon('close'));
        remove.addEventListener('click', () => {
          draft.filters.splice(index, 1);
          const had = filterValues.has(f.column);
          filterValues.delete(f.column);
          renderFilters();
          if (had) { writeUrl(); loadAll(); }
        });
        control.append(remove);
      }
      return h('div', { class: 'pd-filter' }, h('span', {}, label), control);
    });
    filtersBar.replaceChildren(...items);
  }

  async function fillFilterOptions(sel, column) {
    if (!valuesCache.has(column)) {
      valuesCache.set(column, api('GET', `${path}/values?column=${encodeURIComponent(column)}`)
        .then((r) => r.values || [])
        .catch((err) => { valuesCache.delete(column); throw err; }));
    }
    let values;
    try {
      values = await valuesCache.get(column);
    } catch (err) {
      sel.title = `Values could not be loaded: ${err.message}`;
      return;
    }
    const typed = new Map();
    for (const v of values) if (v !== null && v !== undefined) typed.set(String(v), v);
    typedValues.set(column, typed);
    const current = sel.value;
    sel.replaceChildren(h('option', { value: '' }, 'All'),
      ...[...typed.keys()].map((v) => h('option', { value: v }, v)));
    if (current && !typed.has(current)) sel.append(h('option', { value: current }, current));
    sel.value = current;
  }

  async function addFilterDialog() {
    let catalog;
    try {
      catalog = await api('GET', '/api/v1/catalog');
    } catch (err) {
      toast(err.message, 'error');
      return;
    }
    // Offer the columns of the tables the dashboard's charts read.
    const columns = new Map();
    for (const t of draft.tiles) {
      const table = charts.get(String(t.chart_id))?.spec?.source?.table;
      if (!table) continue;
      const [schema, name] = table.split('.');
      const cols = catalog.schemas?.find((s) => s.name === schema)?.tables?.find((x) => x.name === name)?.columns || [];
      for (const c of cols) if (!columns.has(c.name)) columns.set(c.name, c.data_type);
    }
    const used = new Set(draft.filters.map((f) => f.column));
    const choices = [...columns.entries()].filter(([name]) => !used.has(name)).sort((a, b) => a[0].localeCompare(b[0]));
    if (!choices.length) {
      toast('Add charts first: filters use the columns of their tables.', 'error');
      return;
    }
    const column = h('select', { 'data-testid': 'dashboard-filter-column' }, choices.map(([name, type]) => h('option', { value: name }, `${name}  (${type})`)));
    const label = h('input', { placeholder: 'Label (optional)', 'data-testid': 'dashboard-filter-label' });
    const added = await modal('Add a filter', h('div', { class: 'form-grid' },
      h('label', { class: 'field' }, 'Column', column),
      h('label', { class: 'field' }, 'Label', label),
      h('div', { class: 'pc-hint' }, 'Charts whose source has no such column ignore the filter.')),
    [{ label: 'Cancel', value: null }, { label: 'Add filter', kind: 'primary', value: true, testid: 'dashboard-filter-confirm' }]);
    if (!added) return;
    const type = columns.get(column.value);
    draft.filters.push({ column: column.value, label: label.value.trim() || column.value, op: isTemporalType(type) ? 'between' : '=' });
    renderFilters();
  }

  // --- tiles
  function applyPosition(t) {
    const s = t.el.style;
    s.setProperty('--pd-col', String(t.tile.x + 1));
    s.setProperty('--pd-row-start', String(t.tile.y + 1));
    s.setProperty('--pd-w', String(t.tile.w));
    s.setProperty('--pd-h', String(t.tile.h));
  }

  function orderTiles() {
    // DOM order = reading order, which is what the one-column phone layout shows.
    tiles.sort((a, b) => a.tile.y - b.tile.y || a.tile.x - b.tile.x);
    for (const t of tiles) grid.append(t.el);
  }

  function buildTile(tile) {
    const chart = charts.get(String(tile.chart_id));
    const titleText = chart?.name || 'Missing chart';
    const title = isViewer || !chart
      ? h('div', { class: 'pd-tile-title', title: titleText }, titleText)
      : h('div', { class: 'pd-tile-title', title: titleText }, h('a', { href: `#/charts/${encodeURIComponent(tile.chart_id)}` }, titleText));
    const menuButton = h('button', { type: 'button', class: 'btn btn-ghost btn-icon btn-small', 'aria-label': 'Tile menu', 'data-testid': 'tile-menu' }, '⋯');
    const menu = h('div', { class: 'pd-tile-menu' }, menuButton);
    const body = h('div', { class: 'pd-tile-body' });
    const resize = h('div', { class: 'pd-resize', title: 'Resize', 'aria-hidden': 'true' });
    const note = h('span', { class: 'pd-tile-note', hidden: true });
    const headEl = h('div', { class: 'pd-tile-head' }, title, note, menu);
    const el = h('div', {
      class: 'pd-tile', 'data-testid': 'dashboard-tile', 'data-chart-id': tile.chart_id, 'data-state': 'loading',
    }, headEl, body, resize);
    const t = { tile, el, body, handle: null, note };
    applyPosition(t);

    menuButton.addEventListener('click', () => {
      if (menu.querySelector('.popover')) return;
      const items = [];
      const item = (text, testid, fn) => {
        const b = h('button', { type: 'button', class: 'item', 'data-testid': testid }, text);
        b.addEventListener('click', () => { close(); fn(); });
        items.push(b);
      };
      if (!isViewer && chart) item('Edit chart', 'tile-edit-chart', () => ctx.navigate(`#/charts/${encodeURIComponent(tile.chart_id)}`));
      item('Refresh', 'tile-refresh', () => loadTile(t, generation, false));
      if (canEdit) {
        item('Remove from dashboard', 'tile-remove', () => {
          if (!editing) startEdit();
          removeTile(t);
        });
      }
      const pop = h('div', { class: 'popover' }, items);
      menu.append(pop);
      const close = closeOnOutsideClick(pop, menuButton);
    });

    headEl.addEventListener('pointerdown', (e) => startDrag(e, t, 'move'));
    resize.addEventListener('pointerdown', (e) => startDrag(e, t, 'resize'));
    return t;
  }

  function renderTiles() {
    for (const t of tiles) t.handle?.dispose();
    tiles.length = 0;
    grid.replaceChildren();
    for (const tile of draft.tiles) tiles.push(buildTile(tile));
    orderTiles();
    renderEmpty();
  }

  function renderEmpty() {
    grid.querySelector(':scope > .pd-empty')?.remove();
    if (tiles.length) return;
    grid.append(h('div', { class: 'pd-empty' }, h('div', {},
      h('div', { class: 'empty-title' }, 'This dashboard has no charts yet'),
      h('div', {}, canEdit ? 'Choose “Edit”, then add charts from the picker.' : 'Its owner has not added any charts.'))));
  }

  // --- loading
  function progressStart(count) {
    const state = { id, charts: count, drawn: 0, errors: 0, startedAt: performance.now(), doneAt: null };
    if (!count) state.doneAt = state.startedAt;
    window.__polderDashboard = state;
    return state;
  }

  let progress = null;

  function loadAll() {
    generation += 1;
    const gen = generation;
    progress = progressStart(tiles.length);
    for (const t of tiles) loadTile(t, gen);
  }

  /** Loads and draws one tile; `counted` adds its outcome to window.__polderDashboard. */
  async function loadTile(t, gen, counted = true) {
    const chart = charts.get(String(t.tile.chart_id));
    const report = (ok) => {
      if (gen !== generation || !counted || !progress) return;
      if (ok) progress.drawn += 1;
      else progress.errors += 1;
      if (progress.drawn + progress.errors >= progress.charts && progress.doneAt === null) progress.doneAt = performance.now();
    };
    t.el.dataset.state = 'loading';
    if (!chart) {
      t.handle?.dispose();
      t.handle = null;
      t.body.replaceChildren(errorBox('This chart was deleted or is not shared with you.'));
      t.el.dataset.state = 'error';
      report(false);
      return;
    }
    try {
      const result = await api('POST', `/api/v1/charts/${encodeURIComponent(chart.id)}/data`, { filters: activeFilters() });
      if (gen !== generation) return;
      t.handle?.dispose();
      const chartEl = h('div', {});
      t.body.replaceChildren(chartEl);
      t.handle = renderChart(chartEl, chart.spec, result, { animate: false });
      // Say so when a dashboard filter does not apply, so nobody misreads the numbers.
      const ignored = result.ignored_filters || [];
      t.note.hidden = !ignored.length;
      t.note.textContent = ignored.length ? `ignores ${ignored.join(', ')}` : '';
      t.note.title = ignored.length ? 'The chart’s source has no such column' : '';
      await t.handle.drawn;
      if (gen !== generation) return;
      t.el.dataset.state = 'drawn';
      report(true);
    } catch (err) {
      if (gen !== generation) return;
      t.handle?.dispose();
      t.handle = null;
      t.body.replaceChildren(errorBox(err));
      t.el.dataset.state = 'error';
      report(false);
    }
  }

  function scheduleRefresh() {
    clearInterval(refreshTimer);
    const seconds = Number(draft.refresh_seconds || 0);
    if (seconds > 0) {
      refreshTimer = setInterval(() => {
        // Background tabs and a layout being arranged are left alone.
        if (!document.hidden && !dragging) loadAll();
      }, seconds * 1000);
    }
  }

  // --- edit mode
  async function startEdit() {
    if (editing) return;
    editing = true;
    grid.classList.add('editing');
    renderHead();
    renderFilters();
    if (allCharts === null) {
      try {
        allCharts = ((await api('GET', '/api/v1/charts')).charts || []).sort((a, b) => String(a.name).localeCompare(String(b.name)));
      } catch (err) {
        allCharts = [];
        toast(`Could not list charts: ${err.message}`, 'error');
      }
      if (editing) renderEditBar();
    }
  }

  function stopEdit() {
    editing = false;
    grid.classList.remove('editing');
    renderHead();
    renderFilters();
  }

  function cancelEdit() {
    draft = structuredClone(dashboardBody(dashboard));
    refreshSelect.value = String(draft.refresh_seconds || 0);
    stopEdit();
    renderTiles();
    loadAll();
  }

  async function saveLayout() {
    if (!draft.name.trim()) {
      toast('The dashboard needs a name', 'error');
      return;
    }
    draft.tiles = tiles.map((t) => t.tile);
    try {
      const saved = await api('PUT', path, dashboardBody(draft));
      dashboard = { ...dashboard, ...dashboardBody(draft), ...(saved || {}) };
      if (saved?.charts) for (const c of saved.charts) charts.set(String(c.id), c);
      toast('Dashboard saved', 'ok');
      stopEdit();
    } catch (err) {
      toast(`Could not save: ${err.message}`, 'error');
    }
  }

  function addTile(chart) {
    charts.set(String(chart.id), chart);
    const size = defaultTileSize(chart.spec?.type);
    const tile = { chart_id: chart.id, ...findSpot(tiles.map((t) => t.tile), size.w, size.h), ...size };
    draft.tiles.push(tile);
    const t = buildTile(tile);
    tiles.push(t);
    orderTiles();
    renderEmpty();
    if (progress) progress.charts += 1;
    loadTile(t, generation);
    t.el.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
  }

  function removeTile(t) {
    const i = tiles.indexOf(t);
    if (i < 0) return;
    t.handle?.dispose();
    t.el.remove();
    tiles.splice(i, 1);
    draft.tiles = tiles.map((x) => x.tile);
    renderEmpty();
  }

  async function deleteDashboard() {
    if (!(await confirmDialog('Delete dashboard', `Delete “${dashboard.name}”? Its charts stay.`))) return;
    try {
      await api('DELETE', path);
      toast('Dashboard deleted', 'ok');
      ctx.navigate('#/dashboards');
    } catch (err) {
      toast(err.message, 'error');
    }
  }

  // --- drag to move, drag the corner to resize
  let dragging = null;

  function startDrag(e, t, mode) {
    if (!editing || e.button !== 0) return;
    if (mode === 'move' && e.target.closest('button, a, input, select')) return;
    if (getComputedStyle(grid).gridTemplateColumns.split(' ').length < COLUMNS) return; // phone layout
    e.preventDefault();
    const target = e.currentTarget;
    target.setPointerCapture(e.pointerId);
    const gap = parseFloat(getComputedStyle(grid).columnGap) || 0;
    const rowGap = parseFloat(getComputedStyle(grid).rowGap) || 0;
    const rowHeight = parseFloat(getComputedStyle(grid).gridAutoRows) || 80;
    const colStep = (grid.clientWidth + gap) / COLUMNS;
    const rowStep = rowHeight + rowGap;
    const scroller = grid.closest('.main') || document.scrollingElement;
    const start = { x: e.clientX, y: e.clientY, scroll: scroller.scrollTop };
    const snapshot = tiles.map((x) => ({ ...x.tile }));
    const origin = { ...t.tile };
    dragging = { t, mode };
    t.el.classList.add('dragging');

    const onMove = (ev) => {
      // Scroll when the pointer nears the bottom or top edge, so a tile can go far down.
      const edge = scroller === document.scrollingElement ? { top: 0, bottom: innerHeight } : scroller.getBoundingClientRect();
      if (ev.clientY > edge.bottom - 40) scroller.scrollTop += 16;
      else if (ev.clientY < edge.top + 40) scroller.scrollTop -= 16;
      const dx = ev.clientX - start.x;
      const dy = ev.clientY - start.y + (scroller.scrollTop - start.scroll);
      tiles.forEach((x, i) => Object.assign(x.tile, snapshot[i]));
      if (mode === 'move') {
        t.tile.x = Math.min(COLUMNS - origin.w, Math.max(0, Math.round(origin.x + dx / colStep)));
        t.tile.y = Math.max(0, Math.round(origin.y + dy / rowStep));
        // The tile follows the pointer; its slot underneath snaps to the grid.
        t.el.style.transform = `translate(${dx - (t.tile.x - origin.x) * colStep}px, ${dy - (t.tile.y - origin.y) * rowStep}px)`;
      } else {
        t.tile.w = Math.min(COLUMNS - origin.x, Math.max(MIN_W, Math.round(origin.w + dx / colStep)));
        t.tile.h = Math.max(MIN_H, Math.round(origin.h + dy / rowStep));
      }
      settle(tiles.map((x) => x.tile), t.tile);
      for (const x of tiles) applyPosition(x);
    };
    const onUp = () => {
      target.removeEventListener('pointermove', onMove);
      target.removeEventListener('pointerup', onUp);
      target.removeEventListener('pointercancel', onUp);
      t.el.style.transform = '';
      t.el.classList.remove('dragging');
      dragging = null;
      draft.tiles = tiles.map((x) => x.tile);
      orderTiles();
    };
    target.addEventListener('pointermove', onMove);
    target.addEventListener('pointerup', onUp);
    target.addEventListener('pointercancel', onUp);
  }

  // --- sharing
  async function shareDialog() {
    const url = location.href;
    const urlInput = h('input', { value: url, readonly: true, 'aria-label': 'Link to this view', 'data-testid': 'dashboard-share-url' });
    const copy = h('button', { type: 'button', class: 'btn', 'data-testid': 'dashboard-share-copy' }, icon('copy'), 'Copy');
    copy.addEventListener('click', () => copyText(url));
    const parts = [
      h('div', { class: 'pc-hint' }, 'The link keeps the current filter values.'),
      h('div', { class: 'pd-url' }, urlInput, copy),
    ];
    const shared = [...(dashboard.shared_with || [])];
    const canShare = me.role === 'admin' || dashboard.owner === me.user;
    if (canShare) {
      const list = h('div', { class: 'pd-share-list', 'data-testid': 'dashboard-shared-with' });
      const drawList = () => list.replaceChildren(...(shared.length ? shared.map((entry, i) => {
        const remove = h('button', { type: 'button', class: 'btn btn-ghost btn-icon btn-small', 'aria-label': `Stop sharing with ${entry}` }, icon('close', 12));
        remove.addEventListener('click', () => { shared.splice(i, 1); drawList(); });
        const [kind, name] = entry.split(':');
        const text = entry === '*' ? 'everyone' : kind === 'role' ? `role ${name}` : name;
        return h('span', { class: 'pd-chip' }, text, remove);
      }) : [h('span', { class: 'pc-hint' }, 'Only you and admins can open it.')]));
      drawList();
      const kind = h('select', { class: 'pc-narrow', 'aria-label': 'Share with a', 'data-testid': 'dashboard-share-kind' },
        h('option', { value: 'user' }, 'User'), h('option', { value: 'role' }, 'Role'), h('option', { value: '*' }, 'Everyone'));
      const userInput = h('input', { placeholder: 'user name', list: 'pd-users', 'data-testid': 'dashboard-share-user' });
      const users = h('datalist', { id: 'pd-users' });
      const roleSelect = h('select', { hidden: true, 'data-testid': 'dashboard-share-role' }, ROLES.map((r) => h('option', { value: r }, r)));
      kind.addEventListener('change', () => { userInput.hidden = kind.value !== 'user'; roleSelect.hidden = kind.value !== 'role'; });
      // "*" is everyone who can sign in; users and roles are "user:<name>" / "role:<role>".
      const entryFor = () => (kind.value === '*' ? '*' : kind.value === 'user' ? (userInput.value.trim() ? `user:${userInput.value.trim()}` : '') : `role:${roleSelect.value}`);
      const add = h('button', { type: 'button', class: 'btn', 'data-testid': 'dashboard-share-add' }, 'Add');
      add.addEventListener('click', () => {
        const entry = entryFor();
        if (!entry) return;
        if (!shared.includes(entry)) shared.push(entry);
        userInput.value = '';
        drawList();
      });
      if (me.role === 'admin') {
        api('GET', '/api/v1/users').then((r) => {
          users.replaceChildren(...(r.users || []).map((u) => h('option', { value: u.name })));
        }).catch(() => {});
      }
      parts.push(h('div', { class: 'pc-form-section' },
        h('div', { class: 'pc-form-section-head' }, 'Shared with'), list,
        h('div', { class: 'pc-line' }, kind, userInput, roleSelect, add), users));
    }
    const actions = canShare
      ? [{ label: 'Close', value: null }, {
        label: 'Save sharing', kind: 'primary', testid: 'dashboard-share-save',
        run: async () => {
          const body = { ...dashboardBody(dashboard), shared_with: shared };
          const saved = await api('PUT', path, body);
          dashboard = { ...dashboard, ...body, ...(saved || {}) };
          draft.shared_with = [...shared];
          return true;
        },
      }]
      : [{ label: 'Close', value: null }];
    copyText(url);
    const result = await modal('Share dashboard', h('div', { class: 'form-grid' }, parts), actions);
    if (result) toast('Sharing saved', 'ok');
  }

  // --- follow the URL when someone pastes or navigates to other filter values
  const onHashChange = () => {
    const [hashPath, query = ''] = location.hash.replace(/^#\/?/, '').split('?');
    if (hashPath !== `dashboards/${id}` && hashPath !== `dashboards/${encodeURIComponent(id)}`) return;
    if (query === lastQuery) return;
    lastQuery = query;
    filterValues = filtersFromHash();
    renderFilters();
    loadAll();
  };
  window.addEventListener('hashchange', onHashChange);

  // --- start
  renderHead();
  renderFilters();
  renderTiles();
  loadAll();
  scheduleRefresh();
  if (canEdit && !draft.tiles.length) startEdit();

  return () => {
    generation += 1;
    clearInterval(refreshTimer);
    window.removeEventListener('hashchange', onHashChange);
    for (const t of tiles) t.handle?.dispose();
  };
}
