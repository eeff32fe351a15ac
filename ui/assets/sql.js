/**
 * SQL Lab: a CodeMirror editor with catalog-aware completion, running (selection or
 * everything), cancelling, EXPLAIN, the results grid, CSV/Parquet downloads, the
 * caller's query history and saved queries.
 *
 * CodeMirror is vendored and loaded here on first use (script tags injected once), so
 * the first page stays small. Other screens open SQL Lab with a statement through
 * openInSqlLab().
 */
import { api, runSql, download, me, quoteLiteral } from './api.js';
import { h, icon, errorBox, spinner, emptyState, toast, modal, confirmDialog, badge, formatNumber, formatDuration, timeAgo } from './dom.js';
import { createGrid } from './grid.js';

const EDITOR_KEY = 'polder.sql.editor';
const PREFILL_KEY = 'polder.sql.prefill';
const MAX_ROWS = 100_000;
const DEFAULT_SQL = '-- Ctrl+Enter runs the selection, or everything.\nSELECT * FROM system.queries ORDER BY started_at DESC LIMIT 50;\n';

/** Opens SQL Lab with `sql` in the editor and runs it. */
export function openInSqlLab(sql, ctx) {
  sessionStorage.setItem(PREFILL_KEY, sql);
  ctx.navigate('#/sql');
}

// ---------- CodeMirror loading ----------

let codeMirrorReady = null;

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = src;
    script.onload = resolve;
    script.onerror = () => reject(new Error(`Could not load ${src}`));
    document.head.append(script);
  });
}

function loadStyle(href) {
  if (document.querySelector(`link[href="${href}"]`)) return;
  document.head.append(h('link', { rel: 'stylesheet', href }));
}

/** Loads CodeMirror and its SQL addons once; resolves with window.CodeMirror. */
function loadCodeMirror() {
  if (!codeMirrorReady) {
    loadStyle('/vendor/codemirror/codemirror.css');
    loadStyle('/vendor/codemirror/show-hint.css');
    codeMirrorReady = loadScript('/vendor/codemirror/codemirror.js')
      .then(() => Promise.all(['mode-sql.js', 'show-hint.js', 'sql-hint.js', 'matchbrackets.js']
        .map((file) => loadScript(`/vendor/codemirror/${file}`))))
      .then(() => window.CodeMirror)
      .catch((err) => {
        codeMirrorReady = null;
        throw err;
      });
  }
  return codeMirrorReady;
}

/** Completion tables {"schema.table": [columns]} from the catalog. */
async function completionTables() {
  const catalog = await api('GET', '/api/v1/catalog');
  const tables = {};
  for (const schema of catalog.schemas || []) {
    for (const table of schema.tables || []) {
      tables[`${schema.name}.${table.name}`] = (table.columns || []).map((c) => c.name);
    }
  }
  return tables;
}

/**
 * The editor: CodeMirror when it loads, a plain textarea otherwise (the lab still
 * works without highlighting). Exposes the few operations the lab needs.
 */
async function createEditor(host, initial, { onRun, onChange }) {
  let CodeMirror;
  try {
    CodeMirror = await loadCodeMirror();
  } catch (err) {
    toast(`The SQL editor could not load (${err.message}); using a plain text box.`, 'error');
    const area = h('textarea', { class: 'fallback', spellcheck: 'false', value: initial });
    area.addEventListener('input', onChange);
    area.addEventListener('keydown', (event) => {
      if ((event.ctrlKey || event.metaKey) && event.key === 'Enter') {
        event.preventDefault();
        onRun();
      }
    });
    host.replaceChildren(area);
    return {
      getValue: () => area.value,
      setValue: (v) => { area.value = v; onChange(); },
      getSelection: () => area.value.slice(area.selectionStart, area.selectionEnd),
      focus: () => area.focus(),
      setTables: () => {},
      refresh: () => {},
    };
  }

  let tables = {};
  const complete = (cm) => {
    // Columns of the table named after FROM complete without a prefix.
    const from = /\b(?:FROM|JOIN|UPDATE|INTO)\s+([\w.]+)/i.exec(cm.getValue());
    const defaultTable = from && tables[from[1]] ? from[1] : undefined;
    cm.showHint({ hint: CodeMirror.hint.sql, completeSingle: false, tables, defaultTable });
  };
  host.replaceChildren();
  const cm = CodeMirror(host, {
    value: initial,
    mode: 'text/x-sql',
    lineNumbers: true,
    matchBrackets: true,
    indentWithTabs: false,
    smartIndent: true,
    tabSize: 2,
    lineWrapping: false,
    extraKeys: {
      'Ctrl-Space': complete,
      'Ctrl-Enter': onRun,
      'Cmd-Enter': onRun,
      Tab: (editor) => editor.replaceSelection('  '),
    },
  });
  cm.on('change', onChange);
  cm.on('inputRead', (editor, change) => {
    if (change.text.length === 1 && change.text[0] === '.') complete(editor);
  });
  new ResizeObserver(() => cm.refresh()).observe(host);
  return {
    getValue: () => cm.getValue(),
    setValue: (v) => { cm.setValue(v); cm.setCursor(cm.lineCount(), 0); },
    getSelection: () => cm.getSelection(),
    focus: () => cm.focus(),
    setTables: (t) => { tables = t; },
    refresh: () => cm.refresh(),
  };
}

// ---------- The screen ----------

export async function mount(root, _params, ctx) {
  const prefill = sessionStorage.getItem(PREFILL_KEY);
  sessionStorage.removeItem(PREFILL_KEY);
  const initial = prefill ?? localStorage.getItem(EDITOR_KEY) ?? DEFAULT_SQL;

  const editorHost = h('div', { class: 'sql-editor', 'data-testid': 'sql-editor' }, spinner('Loading the editor…'));
  const runButton = h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'sql-run', title: 'Run (Ctrl/Cmd+Enter). Runs the selection if there is one.' },
    icon('play', 14), 'Run', h('kbd', { class: 'hide-phone' }, navigator.platform.startsWith('Mac') ? '⌘↵' : 'Ctrl+↵'));
  const cancelButton = h('button', { type: 'button', class: 'btn', 'data-testid': 'sql-cancel', disabled: true }, icon('stop', 14), 'Cancel');
  const explainButton = h('button', { type: 'button', class: 'btn', 'data-testid': 'sql-explain' }, 'Explain');
  const status = h('span', { class: 'sql-status', 'data-testid': 'sql-status', 'aria-live': 'polite' });
  const saveButton = h('button', { type: 'button', class: 'btn', 'data-testid': 'save-query' }, 'Save');
  const csvButton = h('button', { type: 'button', class: 'btn', 'data-testid': 'download-csv', title: 'Download the full result as CSV' }, icon('download', 14), 'CSV');
  const parquetButton = h('button', { type: 'button', class: 'btn', 'data-testid': 'download-parquet', title: 'Download the full result as Parquet' }, icon('download', 14), 'Parquet');
  const results = h('div', { class: 'sql-results' },
    h('div', { class: 'card', style: { flex: 1 } }, emptyState('Run a query to see its result here', 'Ctrl+Space completes table and column names.')));

  const historyList = h('div', { class: 'side-list', 'data-testid': 'query-history' });
  const savedList = h('div', { class: 'side-list', 'data-testid': 'saved-queries', hidden: true });
  const historyTab = h('button', { type: 'button', class: 'tab', role: 'tab', 'aria-selected': 'true' }, 'History');
  const savedTab = h('button', { type: 'button', class: 'tab', role: 'tab', 'aria-selected': 'false' }, 'Saved');

  root.append(h('div', { class: 'sql-lab' },
    h('div', { class: 'sql-main' },
      editorHost,
      h('div', { class: 'sql-toolbar' },
        runButton, cancelButton, explainButton, status,
        h('div', { class: 'spacer' }),
        saveButton, csvButton, parquetButton),
      results),
    h('aside', { class: 'sql-side' },
      h('div', { class: 'tabs', role: 'tablist' }, historyTab, savedTab),
      historyList, savedList),
  ));

  let running = null; // {controller, timer}
  let currentSaved = null; // the saved query loaded into the editor: {id, name, description}
  let persistTimer = 0;
  let disposed = false;

  const editor = await createEditor(editorHost, initial, {
    onRun: () => run(),
    onChange: () => {
      clearTimeout(persistTimer);
      persistTimer = setTimeout(() => localStorage.setItem(EDITOR_KEY, editor.getValue()), 300);
    },
  });
  completionTables().then((t) => editor.setTables(t)).catch(() => {});

  function statementText() {
    return (editor.getSelection() || editor.getValue()).trim();
  }

  function showResults(...nodes) {
    results.replaceChildren(...nodes);
  }

  function showError(err) {
    showResults(h('div', { 'data-testid': 'sql-error' }, errorBox(err)));
  }

  function startRunning() {
    const controller = new AbortController();
    const started = performance.now();
    const timer = setInterval(() => {
      status.textContent = `Running… ${formatDuration(performance.now() - started)}`;
    }, 100);
    running = { controller, timer, started };
    status.textContent = 'Running…';
    runButton.disabled = true;
    explainButton.disabled = true;
    cancelButton.disabled = false;
    showResults(h('div', { class: 'card', style: { flex: 1 } }, spinner('Running the query…')));
    return running;
  }

  function stopRunning() {
    if (!running) return 0;
    clearInterval(running.timer);
    const elapsed = performance.now() - running.started;
    running = null;
    runButton.disabled = false;
    explainButton.disabled = false;
    cancelButton.disabled = true;
    return elapsed;
  }

  async function run() {
    const sql = statementText();
    if (!sql || running) return;
    const job = startRunning();
    try {
      const result = await runSql(sql, { maxRows: MAX_ROWS, signal: job.controller.signal });
      const elapsed = stopRunning();
      if (result.command !== undefined) {
        const affected = result.rows_affected ?? 0;
        const text = `${result.command} — ${formatNumber(affected)} ${affected === 1 ? 'row' : 'rows'} affected`;
        status.textContent = `${text} in ${formatDuration(elapsed)}`;
        showResults(h('div', { class: 'card', style: { flex: 1 } }, emptyState(text, 'The statement ran; it returns no rows.')));
        // DDL may have added or dropped tables: refresh completion.
        completionTables().then((t) => editor.setTables(t)).catch(() => {});
      } else {
        const count = result.rows.length;
        status.textContent = `${formatNumber(count)} ${count === 1 ? 'row' : 'rows'} in ${formatDuration(elapsed)}`;
        const nodes = [];
        if (result.truncated) {
          nodes.push(h('div', { class: 'notice', 'data-testid': 'sql-notice' },
            `Showing the first ${formatNumber(MAX_ROWS)} rows; the query returned more. Add a LIMIT or download the full result as CSV/Parquet.`));
        }
        nodes.push(createGrid(result.columns, result.rows));
        showResults(...nodes);
      }
    } catch (err) {
      const elapsed = stopRunning();
      if (err.name === 'AbortError') {
        status.textContent = `Cancelled after ${formatDuration(elapsed)}`;
        showResults(h('div', { class: 'card', style: { flex: 1 } }, emptyState('Query cancelled', 'The server stopped the query.')));
      } else {
        status.textContent = `Failed after ${formatDuration(elapsed)}`;
        showError(err);
      }
    }
    refreshHistory();
  }

  async function explain() {
    const sql = statementText().replace(/;\s*$/, '');
    if (!sql || running) return;
    const job = startRunning();
    try {
      const result = await runSql(`EXPLAIN ${sql}`, { maxRows: 1000, signal: job.controller.signal });
      const elapsed = stopRunning();
      status.textContent = `Plan in ${formatDuration(elapsed)}`;
      const rows = result.rows || [];
      showResults(h('div', { class: 'card plan' }, rows.map((row) => h('div', { class: 'section', style: { marginBottom: '16px' } },
        h('h3', {}, String(row.plan_type ?? 'plan').replace(/_/g, ' ')),
        h('pre', {}, String(row.plan ?? JSON.stringify(row)))))));
    } catch (err) {
      const elapsed = stopRunning();
      status.textContent = err.name === 'AbortError' ? 'Cancelled' : `Failed after ${formatDuration(elapsed)}`;
      if (err.name !== 'AbortError') showError(err);
    }
  }

  async function downloadAs(format) {
    const sql = statementText();
    if (!sql) return;
    const button = format === 'csv' ? csvButton : parquetButton;
    button.disabled = true;
    toast(`Preparing the ${format === 'csv' ? 'CSV' : 'Parquet'} file…`);
    try {
      const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-');
      await download('/api/v1/sql', { sql, format }, `polder-${stamp}.${format}`);
    } catch (err) {
      toast(err.message, 'error');
      showError(err);
    } finally {
      button.disabled = false;
    }
  }

  runButton.addEventListener('click', () => run());
  cancelButton.addEventListener('click', () => running && running.controller.abort());
  explainButton.addEventListener('click', () => explain());
  csvButton.addEventListener('click', () => downloadAs('csv'));
  parquetButton.addEventListener('click', () => downloadAs('parquet'));
  saveButton.addEventListener('click', () => saveQuery());

  // ---------- History and saved queries ----------

  function selectSideTab(which) {
    historyTab.setAttribute('aria-selected', String(which === 'history'));
    savedTab.setAttribute('aria-selected', String(which === 'saved'));
    historyList.hidden = which !== 'history';
    savedList.hidden = which !== 'saved';
    if (which === 'saved') refreshSaved();
    else refreshHistory();
  }
  historyTab.addEventListener('click', () => selectSideTab('history'));
  savedTab.addEventListener('click', () => selectSideTab('saved'));

  function loadIntoEditor(sql, saved = null) {
    currentSaved = saved;
    editor.setValue(sql);
    editor.focus();
  }

  let historySql = null;
  async function refreshHistory() {
    if (historyList.hidden || disposed) return;
    if (!historyList.firstChild) historyList.append(spinner());
    try {
      if (!historySql) {
        const who = await me();
        // Admins see everyone's queries in system.queries; the lab shows one's own.
        const own = who.auth_enabled && who.user ? `WHERE user_name = ${quoteLiteral(who.user)} ` : '';
        historySql = `SELECT statement, started_at, duration_ms, rows, status, error FROM system.queries ${own}ORDER BY started_at DESC LIMIT 60`;
      }
      const result = await runSql(historySql, { maxRows: 60 });
      const items = result.rows.filter((row) => row.statement && row.statement.trim() !== historySql);
      if (items.length === 0) {
        historyList.replaceChildren(emptyState('No queries yet', 'Queries you run appear here.'));
        return;
      }
      historyList.replaceChildren(...items.slice(0, 50).map((row) => h('button', {
        type: 'button', class: 'side-item', title: row.error || row.statement,
        on: { click: () => loadIntoEditor(row.statement) },
      },
      h('div', { class: 'sql-snippet' }, row.statement),
      h('div', { class: 'meta' },
        badge(row.status),
        h('span', {}, timeAgo(row.started_at)),
        row.duration_ms != null ? h('span', {}, formatDuration(row.duration_ms)) : null,
        row.rows != null ? h('span', {}, `${formatNumber(row.rows)} ${row.rows === 1 ? 'row' : 'rows'}`) : null))));
    } catch (err) {
      historyList.replaceChildren(errorBox(err));
    }
  }

  async function refreshSaved() {
    if (savedList.hidden || disposed) return;
    if (!savedList.firstChild) savedList.append(spinner());
    try {
      const { saved_queries: saved } = await api('GET', '/api/v1/saved-queries');
      if (saved.length === 0) {
        savedList.replaceChildren(emptyState('No saved queries', 'Write a query and press Save to keep it.'));
        return;
      }
      saved.sort((a, b) => a.name.localeCompare(b.name));
      savedList.replaceChildren(...saved.map((query) => h('div', { class: 'side-item-row', 'data-testid': 'saved-query' },
        h('button', {
          type: 'button', class: 'side-item', title: query.description || query.sql,
          on: { click: () => loadIntoEditor(query.sql, query) },
        },
        h('div', { class: 'title' }, query.name),
        query.description ? h('div', { class: 'muted', style: { fontSize: '12px' } }, query.description) : null,
        h('div', { class: 'sql-snippet muted' }, query.sql),
        h('div', { class: 'meta' }, h('span', {}, query.owner), h('span', {}, `updated ${timeAgo(query.updated_at)}`))),
        h('button', {
          type: 'button', class: 'btn btn-ghost btn-small btn-icon', title: 'Delete', 'aria-label': `Delete ${query.name}`,
          on: { click: () => deleteSaved(query) },
        }, icon('close', 14)))));
    } catch (err) {
      savedList.replaceChildren(errorBox(err));
    }
  }

  async function deleteSaved(query) {
    if (!await confirmDialog('Delete saved query', `Delete “${query.name}”? This cannot be undone.`)) return;
    try {
      await api('DELETE', `/api/v1/saved-queries/${encodeURIComponent(query.id)}`);
      if (currentSaved && currentSaved.id === query.id) currentSaved = null;
      toast('Saved query deleted', 'ok');
      refreshSaved();
    } catch (err) {
      toast(err.message, 'error');
    }
  }

  async function saveQuery() {
    const sql = editor.getValue().trim();
    if (!sql) {
      toast('Write a query first.', 'error');
      return;
    }
    const name = h('input', { 'data-testid': 'save-query-name', required: true, value: currentSaved ? currentSaved.name : '', placeholder: 'Revenue by month' });
    const description = h('input', { 'data-testid': 'save-query-description', value: currentSaved ? currentSaved.description || '' : '', placeholder: 'Optional' });
    const body = () => {
      if (!name.value.trim()) throw new Error('Give the query a name.');
      return { name: name.value.trim(), sql, description: description.value.trim() };
    };
    const actions = [{ label: 'Cancel', value: null }];
    if (currentSaved) {
      actions.push({ label: 'Save as new', run: () => api('POST', '/api/v1/saved-queries', body()) });
      actions.push({
        label: 'Update', kind: 'primary', testid: 'save-query-confirm',
        run: () => api('PUT', `/api/v1/saved-queries/${encodeURIComponent(currentSaved.id)}`, body()),
      });
    } else {
      actions.push({ label: 'Save', kind: 'primary', testid: 'save-query-confirm', run: () => api('POST', '/api/v1/saved-queries', body()) });
    }
    const saved = await modal(currentSaved ? 'Save query' : 'Save query as', h('div', { class: 'form-grid' },
      h('label', { class: 'field' }, 'Name', name),
      h('label', { class: 'field' }, 'Description', description)), actions);
    if (!saved) return;
    currentSaved = saved;
    toast(`Saved “${saved.name}”`, 'ok');
    selectSideTab('saved');
  }

  refreshHistory();
  if (prefill) run();
  else editor.focus();

  return () => {
    disposed = true;
    if (running) running.controller.abort();
    clearTimeout(persistTimer);
    localStorage.setItem(EDITOR_KEY, editor.getValue());
  };
}
