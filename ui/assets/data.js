/**
 * Data screen: the catalog as a schema tree (with a filter) and, for the selected
 * table or view, its summary, columns, a 100-row preview and the Delta history, from
 * which any version can be opened in SQL Lab.
 */
import { api, runSql, quoteIdent } from './api.js';
import { h, icon, errorBox, spinner, emptyState, formatNumber, formatBytes, formatTime, timeAgo, formatValue } from './dom.js';
import { createGrid } from './grid.js';
import { openInSqlLab } from './sql.js';

/** The catalog is kept between visits so moving from table to table does not reload it. */
let catalogCache = null; // {at, promise}
const CATALOG_TTL_MS = 30_000;
const openSchemas = new Set();
let filterText = '';
let lastTab = 'columns';

function loadCatalog(force = false) {
  if (force || !catalogCache || Date.now() - catalogCache.at > CATALOG_TTL_MS) {
    const promise = api('GET', '/api/v1/catalog');
    catalogCache = { at: Date.now(), promise };
    promise.catch(() => { catalogCache = null; });
  }
  return catalogCache.promise;
}

function qualified(schema, table) {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}

export async function mount(root, params, ctx) {
  const selected = params.schema && params.table ? { schema: params.schema, table: params.table } : null;
  if (selected) openSchemas.add(selected.schema);

  const tree = h('div', { class: 'tree', role: 'tree' }, spinner());
  const filter = h('input', { type: 'search', placeholder: 'Filter tables…', value: filterText, 'aria-label': 'Filter tables' });
  const refresh = h('button', { class: 'btn btn-ghost btn-icon', type: 'button', title: 'Reload the catalog', 'aria-label': 'Reload the catalog' }, icon('refresh'));
  const detail = h('section', { class: 'detail-pane' });
  const split = h('div', { class: ['split', selected && 'has-detail'] },
    h('aside', { class: 'tree-pane' },
      h('div', { class: 'tree-filter row' }, h('div', { style: { flex: 1, display: 'flex' } }, filter), refresh),
      tree),
    detail);
  root.append(split);

  let catalog = null;
  const drawTree = () => renderTree(tree, catalog, selected);
  filter.addEventListener('input', () => {
    filterText = filter.value;
    drawTree();
  });

  async function load(force) {
    tree.replaceChildren(spinner());
    try {
      catalog = await loadCatalog(force);
    } catch (err) {
      tree.replaceChildren(errorBox(err));
      detail.replaceChildren();
      return;
    }
    drawTree();
    renderDetail(detail, catalog, selected, ctx);
  }
  refresh.addEventListener('click', () => load(true));
  detail.replaceChildren(spinner());
  await load(false);
}

function renderTree(tree, catalog, selected) {
  const needle = filterText.trim().toLowerCase();
  const nodes = [];
  for (const schema of catalog.schemas || []) {
    const tables = (schema.tables || []).filter((t) => !needle
      || t.name.toLowerCase().includes(needle)
      || schema.name.toLowerCase().includes(needle)
      || `${schema.name}.${t.name}`.toLowerCase().includes(needle));
    if (needle && tables.length === 0) continue;
    const node = h('div', { class: ['tree-schema', (needle || openSchemas.has(schema.name)) && 'open'], role: 'treeitem' });
    const toggle = h('button', { type: 'button', 'data-testid': `schema-${schema.name}`, 'aria-expanded': String(node.classList.contains('open')) },
      icon('chevron', 14), schema.name, h('span', { class: 'count' }, String(schema.tables.length)));
    toggle.addEventListener('click', () => {
      const open = node.classList.toggle('open');
      toggle.setAttribute('aria-expanded', String(open));
      if (open) openSchemas.add(schema.name);
      else openSchemas.delete(schema.name);
    });
    const list = h('div', { class: 'tree-tables', role: 'group' }, tables.map((t) => {
      const active = selected && selected.schema === schema.name && selected.table === t.name;
      return h('a', {
        href: `#/data/${encodeURIComponent(schema.name)}/${encodeURIComponent(t.name)}`,
        'data-testid': `table-${schema.name}.${t.name}`,
        class: active ? 'active' : null,
        title: t.error ? `${t.name}: ${t.error}` : `${schema.name}.${t.name}`,
      }, icon(t.kind === 'view' ? 'view' : 'table', 14), t.name);
    }));
    node.append(toggle, list);
    nodes.push(node);
  }
  if (nodes.length === 0) {
    nodes.push(needle
      ? emptyState('No table matches', 'Try another part of the name.')
      : emptyState('The catalog is empty', 'Create a table in SQL Lab or load data with a pipeline.'));
  }
  tree.replaceChildren(...nodes);
}

function renderDetail(detail, catalog, selected, ctx) {
  if (!selected) {
    const schemas = catalog.schemas || [];
    const tables = schemas.flatMap((s) => s.tables || []);
    detail.replaceChildren(h('div', { class: 'page' },
      h('div', { class: 'page-header' }, h('h1', {}, 'Data'), h('span', { class: 'subtitle' }, `Catalog ${catalog.catalog || ''}`)),
      h('div', { class: 'stat-cards' },
        statCard('Schemas', formatNumber(schemas.length)),
        statCard('Tables', formatNumber(tables.filter((t) => t.kind !== 'view').length)),
        statCard('Views', formatNumber(tables.filter((t) => t.kind === 'view').length)),
        statCard('Rows', formatNumber(tables.reduce((n, t) => n + (t.row_count || 0), 0))),
        statCard('Size', formatBytes(tables.reduce((n, t) => n + (t.size_bytes || 0), 0))),
      ),
      h('div', { class: 'card' }, emptyState('Pick a table', 'See its columns, preview its rows and browse its history.')),
    ));
    return;
  }
  const schema = (catalog.schemas || []).find((s) => s.name === selected.schema);
  const table = schema && (schema.tables || []).find((t) => t.name === selected.table);
  if (!table) {
    detail.replaceChildren(h('div', { class: 'page' },
      errorBox(`There is no table ${selected.schema}.${selected.table} in the catalog (it may have been dropped).`)));
    return;
  }
  detail.replaceChildren(tableDetail(selected.schema, table, ctx));
}

function statCard(label, value) {
  return h('div', { class: 'card stat' }, h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value' }, value));
}

function tableDetail(schemaName, table, ctx) {
  const name = qualified(schemaName, table.name);
  const isView = table.kind === 'view';
  const tabs = [
    { id: 'columns', label: `Columns (${table.columns.length})`, draw: () => columnsTab(table) },
    { id: 'preview', label: 'Preview', draw: () => previewTab(name) },
  ];
  if (!isView) tabs.push({ id: 'history', label: 'History', draw: () => historyTab(name, ctx) });
  if (!tabs.some((t) => t.id === lastTab)) lastTab = 'columns';

  const panel = h('div', { class: 'tab-panel', role: 'tabpanel' });
  const tabButtons = tabs.map((tab) => h('button', {
    type: 'button', class: 'tab', role: 'tab', 'data-tab': tab.id,
    on: { click: () => select(tab.id) },
  }, tab.label));
  function select(id) {
    lastTab = id;
    tabButtons.forEach((b) => b.setAttribute('aria-selected', String(b.dataset.tab === id)));
    panel.replaceChildren(tabs.find((t) => t.id === id).draw());
  }

  const page = h('div', { class: 'page table-detail', 'data-testid': 'table-detail' },
    h('a', { class: 'btn btn-ghost btn-small phone-only', href: '#/data' }, '← All tables'),
    h('div', { class: 'page-header' },
      icon(isView ? 'view' : 'table', 20),
      h('h1', {}, h('span', { class: 'muted' }, `${schemaName}.`), table.name),
      h('span', { class: 'badge badge-muted' }, table.kind),
      h('div', { class: 'spacer' }),
      h('button', {
        type: 'button', class: 'btn',
        on: { click: () => openInSqlLab(`SELECT * FROM ${name} LIMIT 100`, ctx) },
      }, icon('sql'), 'Query in SQL Lab'),
    ),
    table.error ? errorBox(table.error) : null,
    isView ? null : h('div', { class: 'stat-cards' },
      statCard('Rows', table.row_count == null ? '—' : formatNumber(table.row_count)),
      statCard('Size', formatBytes(table.size_bytes)),
      statCard('Files', table.num_files == null ? '—' : formatNumber(table.num_files)),
      statCard('Version', table.version == null ? '—' : String(table.version)),
    ),
    isView && table.definition ? h('div', { class: 'section' },
      h('h3', {}, 'Definition'),
      h('pre', { class: 'definition' }, table.definition)) : null,
    h('div', { class: 'muted', style: { fontSize: '12px' } }, `Created ${formatTime(table.created_at)} (${timeAgo(table.created_at)})`),
    h('div', { class: 'tabs', role: 'tablist' }, tabButtons),
    panel,
  );
  select(lastTab);
  return page;
}

function columnsTab(table) {
  return h('div', { class: 'table-wrap', 'data-testid': 'table-columns' },
    h('table', { class: 'table' },
      h('thead', {}, h('tr', {}, h('th', { class: 'num', style: { width: '48px' } }, '#'), h('th', {}, 'Name'), h('th', {}, 'Type'), h('th', {}, 'Nullable'))),
      h('tbody', {}, table.columns.map((c, i) => h('tr', {},
        h('td', { class: 'num muted' }, String(i + 1)),
        h('td', { class: 'mono' }, c.name),
        h('td', {}, h('span', { class: 'tag' }, c.data_type)),
        h('td', { class: c.nullable ? 'muted' : null }, c.nullable ? 'yes' : 'not null'),
      )))));
}

function previewTab(name) {
  const box = h('div', { 'data-testid': 'table-preview', class: 'section' }, spinner('Reading the first 100 rows…'));
  runSql(`SELECT * FROM ${name} LIMIT 100`, { maxRows: 100 })
    .then((result) => {
      box.replaceChildren(
        h('div', { class: 'muted', style: { fontSize: '12px' } }, `First ${formatNumber(result.rows.length)} rows`),
        createGrid(result.columns, result.rows));
    })
    .catch((err) => box.replaceChildren(errorBox(err)));
  return box;
}

/** Turns Delta operation metrics into a short "12,000 output rows · 3 files" line. */
function summariseMetrics(metrics) {
  let m = metrics;
  if (typeof m === 'string') {
    try { m = JSON.parse(m); } catch { return m; }
  }
  if (!m || typeof m !== 'object') return '';
  const wanted = [
    ['numOutputRows', 'rows written'], ['num_added_rows', 'rows added'], ['numTargetRowsInserted', 'inserted'],
    ['numTargetRowsUpdated', 'updated'], ['numTargetRowsDeleted', 'deleted'], ['numDeletedRows', 'deleted'],
    ['num_deleted_rows', 'deleted'], ['numAddedFiles', 'files added'], ['num_added_files', 'files added'],
    ['numFiles', 'files'], ['numRemovedFiles', 'files removed'], ['num_removed_files', 'files removed'],
    ['numOutputBytes', 'bytes'], ['executionTimeMs', 'ms'], ['execution_time_ms', 'ms'],
  ];
  const parts = [];
  for (const [key, label] of wanted) {
    // Zero counts ("0 files removed") are noise, except for rows.
    if (m[key] == null || (Number(m[key]) === 0 && !label.includes('rows'))) continue;
    if (label === 'bytes') parts.push(formatBytes(Number(m[key])));
    else if (label === 'ms') parts.push(`${formatNumber(Number(m[key]))} ms`);
    else parts.push(`${formatNumber(Number(m[key]))} ${label}`);
  }
  if (parts.length === 0) {
    return Object.entries(m).slice(0, 4).map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`).join(' · ');
  }
  return parts.join(' · ');
}

function historyTab(name, ctx) {
  const box = h('div', { 'data-testid': 'table-history', class: 'section' }, spinner('Reading the history…'));
  runSql(`DESCRIBE HISTORY ${name}`, { maxRows: 1000 })
    .then((result) => {
      const rows = [...result.rows].sort((a, b) => Number(b.version) - Number(a.version));
      if (rows.length === 0) {
        box.replaceChildren(emptyState('No history yet'));
        return;
      }
      const types = Object.fromEntries(result.columns.map((c) => [c.name, c.type]));
      box.replaceChildren(h('div', { class: 'table-wrap' }, h('table', { class: 'table' },
        h('thead', {}, h('tr', {},
          h('th', { class: 'num' }, 'Version'), h('th', {}, 'When'), h('th', {}, 'Operation'),
          h('th', {}, 'User'), h('th', {}, 'Metrics'), h('th', {}))),
        h('tbody', {}, rows.map((row) => h('tr', { 'data-testid': 'history-row' },
          h('td', { class: 'num' }, String(row.version)),
          h('td', { class: 'nowrap', title: String(row.timestamp ?? '') },
            typeof row.timestamp === 'number' ? formatTime(row.timestamp) : formatValue(row.timestamp, types.timestamp || 'Timestamp')),
          h('td', {}, h('span', { class: 'tag' }, row.operation ?? '')),
          h('td', {}, row.user_name ?? h('span', { class: 'muted' }, '—')),
          h('td', { class: 'muted', style: { fontSize: '12.5px' } }, summariseMetrics(row.operation_metrics)),
          h('td', { class: 'actions' }, h('button', {
            type: 'button', class: 'btn btn-small', 'data-testid': 'query-version',
            on: { click: () => openInSqlLab(`SELECT * FROM ${name} VERSION AS OF ${Number(row.version)} LIMIT 100`, ctx) },
          }, 'Query this version')),
        ))))));
    })
    .catch((err) => box.replaceChildren(errorBox(err)));
  return box;
}
