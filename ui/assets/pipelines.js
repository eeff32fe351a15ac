/**
 * Pipelines screen: ingestion connections (with "Sync now"), their sync jobs, and the
 * transformation projects (with "Build now"), the selected project's model graph
 * (drawn here as SVG) and its recent runs.
 */
import { api } from './api.js';
import { h, svg, icon, errorBox, spinner, emptyState, toast, badge, formatNumber, formatBytes, formatDuration, formatTime, timeAgo } from './dom.js';

const POLL_MS = 1000;

export async function mount(root, params, ctx) {
  const timers = new Set();
  let disposed = false;
  /** Polls `check` every second until it answers true or the screen goes away. */
  function poll(check) {
    return new Promise((resolve) => {
      const tick = async () => {
        if (disposed) return resolve();
        let done = true;
        try { done = await check(); } catch (err) { toast(err.message, 'error'); }
        if (done || disposed) return resolve();
        const timer = setTimeout(() => { timers.delete(timer); tick(); }, POLL_MS);
        timers.add(timer);
      };
      tick();
    });
  }

  const connectionsBox = h('div', { class: 'section' }, spinner());
  const jobsBox = h('div', { class: 'section' }, spinner());
  const projectsBox = h('div', { class: 'section' }, spinner());
  const projectBox = h('div', { class: 'section' });
  root.append(h('div', { class: 'page' },
    h('div', { class: 'page-header' }, h('h1', {}, 'Pipelines'),
      h('span', { class: 'subtitle' }, 'Load data with connections, shape it with projects.')),
    h('section', { class: 'section' }, h('div', { class: 'section-head' }, h('h2', {}, 'Connections')), connectionsBox),
    h('section', { class: 'section' }, h('div', { class: 'section-head' }, h('h2', {}, 'Sync jobs')), jobsBox),
    h('section', { class: 'section' }, h('div', { class: 'section-head' }, h('h2', {}, 'Projects')), projectsBox),
    projectBox,
  ));

  // ---------- Connections and jobs ----------

  let jobs = [];

  async function loadJobs() {
    try {
      ({ jobs } = await api('GET', '/api/v1/jobs?limit=100'));
      renderJobs();
    } catch (err) {
      jobsBox.replaceChildren(errorBox(err));
    }
  }

  function renderJobs() {
    if (jobs.length === 0) {
      jobsBox.replaceChildren(h('div', { class: 'card', 'data-testid': 'jobs-list' }, emptyState('No sync jobs yet', 'Press “Sync now” on a connection to run one.')));
      return;
    }
    const body = h('tbody');
    for (const job of jobs) {
      const detail = jobDetail(job);
      const row = h('tr', { class: 'clickable', 'data-testid': 'job-row', title: 'Show details' },
        h('td', {}, badge(job.status)),
        h('td', {}, job.connection),
        h('td', { class: 'muted' }, job.trigger),
        h('td', { class: 'nowrap', title: formatTime(job.started_at ?? job.created_at) }, timeAgo(job.started_at ?? job.created_at)),
        h('td', { class: 'num' }, job.status === 'running' ? '…' : formatDuration(job.duration_ms)),
        h('td', { class: 'num' }, formatNumber(job.records)),
        h('td', { class: 'num' }, job.rejects ? formatNumber(job.rejects) : '0'),
        h('td', { class: 'num hide-phone' }, formatBytes(job.bytes)),
        h('td', { class: 'error-cell', style: { maxWidth: '320px', overflow: 'hidden', textOverflow: 'ellipsis', whiteSpace: 'nowrap', color: 'var(--danger)' } }, job.error || ''),
      );
      const detailRow = h('tr', { class: 'detail-row', hidden: true }, h('td', { colspan: 9 }, detail));
      row.addEventListener('click', () => { detailRow.hidden = !detailRow.hidden; });
      body.append(row, detailRow);
    }
    jobsBox.replaceChildren(h('div', { class: 'table-wrap', 'data-testid': 'jobs-list' }, h('table', { class: 'table' },
      h('thead', {}, h('tr', {},
        h('th', {}, 'Status'), h('th', {}, 'Connection'), h('th', {}, 'Trigger'), h('th', {}, 'Started'),
        h('th', { class: 'num' }, 'Duration'), h('th', { class: 'num' }, 'Records'), h('th', { class: 'num' }, 'Rejects'),
        h('th', { class: 'num hide-phone' }, 'Bytes'), h('th', {}, 'Error'))),
      body)));
  }

  function jobDetail(job) {
    return h('div', { class: 'section' },
      h('dl', { class: 'kv' },
        h('dt', {}, 'Job'), h('dd', { class: 'mono' }, job.id),
        h('dt', {}, 'Attempt'), h('dd', {}, String(job.attempt)),
        h('dt', {}, 'Started'), h('dd', {}, formatTime(job.started_at) || '—'),
        h('dt', {}, 'Finished'), h('dd', {}, formatTime(job.finished_at) || '—')),
      job.error ? errorBox(job.error) : null,
      (job.streams || []).length ? h('div', { class: 'table-wrap' }, h('table', { class: 'table' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Stream'), h('th', {}, 'Table'), h('th', {}, 'Mode'), h('th', {}, 'Status'),
          h('th', { class: 'num' }, 'Records'), h('th', { class: 'num' }, 'Rejects'), h('th', { class: 'num' }, 'Version'), h('th', {}, 'Notes'))),
        h('tbody', {}, job.streams.map((s) => h('tr', {},
          h('td', {}, s.stream), h('td', { class: 'mono' }, s.table), h('td', {}, String(s.sync_mode ?? '')), h('td', {}, badge(s.status)),
          h('td', { class: 'num' }, formatNumber(s.records)), h('td', { class: 'num' }, formatNumber(s.rejects)),
          h('td', { class: 'num' }, s.version == null ? '—' : String(s.version)),
          h('td', { class: s.error ? null : 'muted' }, s.error || (s.schema_changes || []).join('; '))))))) : null,
      job.log_tail ? h('div', { class: 'section' }, h('h3', {}, 'Connector log (last lines)'), h('pre', { class: 'log-tail' }, job.log_tail)) : null,
    );
  }

  async function loadConnections() {
    let connections;
    try {
      ({ connections } = await api('GET', '/api/v1/connections'));
    } catch (err) {
      connectionsBox.replaceChildren(errorBox(err));
      return;
    }
    if (connections.length === 0) {
      connectionsBox.replaceChildren(h('div', { class: 'card', 'data-testid': 'connections-list' },
        emptyState('No connections yet', 'Add one with `polder connection add` or POST /api/v1/connections (see docs/ingestion.md).')));
      return;
    }
    const body = h('tbody');
    for (const connection of connections) body.append(connectionRow(connection));
    connectionsBox.replaceChildren(h('div', { class: 'table-wrap', 'data-testid': 'connections-list' }, h('table', { class: 'table' },
      h('thead', {}, h('tr', {},
        h('th', {}, 'Name'), h('th', {}, 'Source'), h('th', {}, 'Schedule'), h('th', {}, 'Last sync'),
        h('th', { class: 'num' }, 'Records'), h('th', { class: 'num' }, 'Duration'), h('th', { class: 'hide-phone' }, 'When'), h('th', {}))),
      body)));
  }

  function connectionRow(connection) {
    const statusCell = h('td');
    const recordsCell = h('td', { class: 'num' });
    const durationCell = h('td', { class: 'num' });
    const whenCell = h('td', { class: 'nowrap muted hide-phone' });
    const syncButton = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'sync-now' }, icon('refresh', 14), 'Sync now');
    const show = (job) => {
      statusCell.replaceChildren(badge(job ? job.status : null));
      recordsCell.textContent = job && job.status !== 'running' ? formatNumber(job.records) : '—';
      durationCell.textContent = job && job.status !== 'running' ? formatDuration(job.duration_ms) : '—';
      whenCell.textContent = job ? timeAgo(job.started_at ?? job.created_at) : 'never';
      if (job && job.error) statusCell.title = job.error;
      syncButton.disabled = Boolean(job && job.status === 'running');
    };
    show(jobs.find((j) => j.connection === connection.name));
    syncButton.addEventListener('click', async () => {
      syncButton.disabled = true;
      let job;
      try {
        job = await api('POST', `/api/v1/connections/${encodeURIComponent(connection.name)}/sync`);
      } catch (err) {
        toast(err.message, 'error');
        syncButton.disabled = false;
        return;
      }
      show(job);
      toast(`Sync of ${connection.name} started`);
      await poll(async () => {
        job = await api('GET', `/api/v1/jobs/${encodeURIComponent(job.id)}`);
        show(job);
        return job.status !== 'running';
      });
      if (disposed) return;
      toast(`Sync of ${connection.name} ${job.status}`, job.status === 'succeeded' ? 'ok' : 'error');
      loadJobs();
    });
    return h('tr', { 'data-testid': 'connection-row' },
      h('td', { style: { fontWeight: 600 } }, connection.name),
      h('td', {}, h('span', { class: 'tag' }, connection.source)),
      h('td', { class: connection.schedule ? 'mono nowrap' : 'muted' }, connection.schedule || 'manual'),
      statusCell, recordsCell, durationCell, whenCell,
      h('td', { class: 'actions' }, syncButton));
  }

  // ---------- Projects ----------

  let selectedProject = null;

  async function loadProjects() {
    let projects;
    try {
      ({ projects } = await api('GET', '/api/v1/projects'));
    } catch (err) {
      projectsBox.replaceChildren(errorBox(err));
      return;
    }
    if (projects.length === 0) {
      projectsBox.replaceChildren(h('div', { class: 'card', 'data-testid': 'projects-list' },
        emptyState('No projects yet', 'A dbt project appears here after its first `polder build --project-dir <dir>`.')));
      return;
    }
    const rows = projects.map((project) => projectRow(project));
    projectsBox.replaceChildren(h('div', { class: 'table-wrap', 'data-testid': 'projects-list' }, h('table', { class: 'table' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Project'), h('th', {}, 'Schedule'), h('th', {}, 'Last run'), h('th', { class: 'hide-phone' }, 'Updated'), h('th', {}))),
      h('tbody', {}, rows.map((r) => r.row)))));
    const wanted = projects.find((p) => p.name === selectedProject) || projects[0];
    rows.find((r) => r.project === wanted).select();
  }

  function projectRow(project) {
    const lastRunCell = h('td', {}, h('span', { class: 'muted' }, '…'));
    const buildButton = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'build-now' }, icon('play', 12), 'Build now');
    const row = h('tr', { class: 'clickable', 'data-testid': 'project-row' },
      h('td', { style: { fontWeight: 600 } }, project.name),
      h('td', { class: project.schedule ? 'mono nowrap' : 'muted' }, project.schedule || 'manual'),
      lastRunCell,
      h('td', { class: 'muted nowrap hide-phone' }, timeAgo(project.updated_at)),
      h('td', { class: 'actions' }, buildButton));
    const showLastRun = (run) => lastRunCell.replaceChildren(run
      ? h('span', { class: 'row', style: { gap: '8px', flexWrap: 'nowrap' } }, badge(run.status), h('span', { class: 'muted nowrap' }, timeAgo(run.started_at)))
      : h('span', { class: 'muted' }, 'never'));
    api('GET', `/api/v1/projects/${encodeURIComponent(project.name)}/runs?limit=1`)
      .then(({ runs }) => showLastRun(runs[0]))
      .catch(() => showLastRun(null));

    const select = () => {
      selectedProject = project.name;
      row.parentElement?.querySelectorAll('tr').forEach((r) => r.classList.toggle('selected', r === row));
      showProject(project.name);
    };
    row.addEventListener('click', (event) => {
      if (!event.target.closest('button')) select();
    });
    buildButton.addEventListener('click', async () => {
      buildButton.disabled = true;
      let run;
      try {
        run = await api('POST', `/api/v1/projects/${encodeURIComponent(project.name)}/build`);
      } catch (err) {
        toast(err.message, 'error');
        buildButton.disabled = false;
        return;
      }
      toast(`Build of ${project.name} started`);
      showLastRun({ status: 'running', started_at: Date.now() });
      if (selectedProject !== project.name) select();
      else showProject(project.name);
      await poll(async () => {
        run = await api('GET', `/api/v1/projects/${encodeURIComponent(project.name)}/runs/${encodeURIComponent(run.id)}`);
        return run.status !== 'running';
      });
      buildButton.disabled = false;
      if (disposed) return;
      showLastRun(run);
      toast(`Build of ${project.name} ${run.status}`, run.status === 'succeeded' ? 'ok' : 'error');
      if (selectedProject === project.name) showProject(project.name);
    });
    return { project, row, select };
  }

  let projectLoad = 0;
  async function showProject(name) {
    const token = ++projectLoad;
    projectBox.replaceChildren(h('div', { class: 'section-head' }, h('h2', {}, name)), spinner());
    let detail;
    let runs;
    try {
      [detail, { runs }] = await Promise.all([
        api('GET', `/api/v1/projects/${encodeURIComponent(name)}`),
        api('GET', `/api/v1/projects/${encodeURIComponent(name)}/runs?limit=20`),
      ]);
    } catch (err) {
      if (token === projectLoad) projectBox.replaceChildren(h('h2', {}, name), errorBox(err));
      return;
    }
    if (token !== projectLoad) return;
    const nodeInfo = h('div', { class: 'card card-pad' }, h('div', { class: 'muted' }, 'Click a node to see its details.'));
    const showTests = h('input', { type: 'checkbox' });
    const graphHost = h('div');
    const drawGraph = () => graphHost.replaceChildren(dagView(detail.nodes, { showTests: showTests.checked, onSelect: (node) => nodeInfo.replaceChildren(nodeDetails(node, ctx)) }));
    showTests.addEventListener('change', drawGraph);
    drawGraph();
    projectBox.replaceChildren(
      h('div', { class: 'section-head' }, h('h2', {}, `Lineage · ${name}`), h('div', { class: 'spacer' }),
        h('label', { class: 'row muted', style: { fontSize: '13px', gap: '6px' } }, showTests, 'Show tests')),
      graphHost,
      nodeInfo,
      h('div', { class: 'section-head' }, h('h2', {}, 'Runs')),
      runsTable(runs),
    );
  }

  // Connections need the jobs (for the last status), so jobs load first.
  await loadJobs();
  await Promise.all([loadConnections(), loadProjects()]);

  return () => {
    disposed = true;
    timers.forEach(clearTimeout);
  };
}

function runsTable(runs) {
  if (!runs.length) return h('div', { class: 'card', 'data-testid': 'project-runs' }, emptyState('No runs yet', 'Press “Build now” to run the project.'));
  const body = h('tbody');
  for (const run of runs) {
    const summary = run.summary || {};
    const results = Array.isArray(run.results) ? run.results : [];
    const row = h('tr', { class: results.length || run.error ? 'clickable' : null, 'data-testid': 'run-row' },
      h('td', {}, badge(run.status)),
      h('td', {}, h('span', { class: 'tag' }, String(run.command))),
      h('td', { class: 'muted' }, run.trigger),
      h('td', { class: 'nowrap', title: formatTime(run.started_at) }, timeAgo(run.started_at)),
      h('td', { class: 'num' }, run.finished_at ? formatDuration(run.finished_at - run.started_at) : '…'),
      h('td', {}, summaryText(summary)),
      h('td', { style: { color: 'var(--danger)', maxWidth: '280px', overflow: 'hidden', textOverflow: 'ellipsis', whiteSpace: 'nowrap' } }, run.error || ''));
    body.append(row);
    if (results.length || run.error) {
      const detailRow = h('tr', { class: 'detail-row', hidden: true }, h('td', { colspan: 7 },
        run.error ? errorBox(run.error) : null,
        results.length ? nodeResultsTable(results) : null));
      row.addEventListener('click', () => { detailRow.hidden = !detailRow.hidden; });
      body.append(detailRow);
    }
  }
  return h('div', { class: 'table-wrap', 'data-testid': 'project-runs' }, h('table', { class: 'table' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Status'), h('th', {}, 'Command'), h('th', {}, 'Trigger'), h('th', {}, 'Started'),
      h('th', { class: 'num' }, 'Duration'), h('th', {}, 'Results'), h('th', {}, 'Error'))),
    body));
}

function summaryText(summary) {
  const order = ['PASS', 'WARN', 'ERROR', 'SKIP'];
  const parts = order.filter((k) => summary[k]).map((k) => `${summary[k]} ${k.toLowerCase()}`);
  if (summary.TOTAL != null) parts.push(`${summary.TOTAL} total`);
  return parts.length ? parts.join(' · ') : h('span', { class: 'muted' }, '—');
}

function nodeResultsTable(results) {
  return h('table', { class: 'table', style: { marginTop: '8px' } },
    h('thead', {}, h('tr', {}, h('th', {}, 'Node'), h('th', {}, 'Status'), h('th', { class: 'num' }, 'Time'), h('th', {}, 'Message'))),
    h('tbody', {}, results.map((r) => h('tr', {},
      h('td', { class: 'mono' }, r.unique_id || r.name || ''),
      h('td', {}, badge(r.status)),
      h('td', { class: 'num' }, r.execution_time == null ? '—' : formatDuration(Number(r.execution_time) * 1000)),
      h('td', { class: 'muted' }, r.message == null ? '' : String(r.message))))));
}

// ---------- The lineage graph ----------

const NODE_W = 184;
const NODE_H = 46;
const GAP_X = 72;
const GAP_Y = 14;
const PAD = 16;

const TYPE_FILL = {
  source: 'var(--surface-2)',
  seed: 'var(--ok-soft)',
  model: 'var(--accent-soft)',
  snapshot: 'var(--warn-soft)',
  test: 'var(--surface)',
  exposure: 'var(--surface-2)',
};

const STATUS_STROKE = {
  success: 'var(--ok)', pass: 'var(--ok)',
  error: 'var(--danger)', fail: 'var(--danger)',
  warn: 'var(--warn)', skipped: 'var(--text-muted)',
};

/** Nodes of the project plus stand-ins for ids they depend on that are not listed (sources). */
function graphNodes(nodes, showTests) {
  const byId = new Map();
  for (const node of nodes) {
    if (!showTests && node.resource_type === 'test') continue;
    byId.set(node.unique_id, node);
  }
  for (const node of [...byId.values()]) {
    for (const dep of node.depends_on || []) {
      if (!byId.has(dep)) {
        const parts = dep.split('.');
        byId.set(dep, {
          unique_id: dep, resource_type: parts[0], name: parts.slice(2).join('.') || dep,
          depends_on: [], last_run: null, relation: '', materialized: '', description: '', file_path: '',
        });
      }
    }
  }
  return byId;
}

/** Layer = length of the longest path from a node without parents. */
function layers(byId) {
  const layer = new Map();
  const visiting = new Set();
  const depth = (id) => {
    if (layer.has(id)) return layer.get(id);
    if (visiting.has(id)) return 0; // a cycle would be a project error; do not loop on it
    visiting.add(id);
    const deps = (byId.get(id).depends_on || []).filter((d) => byId.has(d));
    const value = deps.length ? Math.max(...deps.map(depth)) + 1 : 0;
    visiting.delete(id);
    layer.set(id, value);
    return value;
  };
  for (const id of byId.keys()) depth(id);
  return layer;
}

function truncate(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function dagView(nodes, { showTests, onSelect }) {
  const byId = graphNodes(nodes, showTests);
  if (byId.size === 0) return h('div', { class: 'card', 'data-testid': 'project-dag' }, emptyState('The project has no nodes'));
  const layerOf = layers(byId);
  const columns = [];
  for (const [id, l] of layerOf) (columns[l] ||= []).push(id);

  // Order each column by the mean position of its parents to keep edges short.
  const position = new Map();
  columns.forEach((ids, l) => {
    if (l === 0) ids.sort();
    else {
      const score = (id) => {
        const deps = (byId.get(id).depends_on || []).filter((d) => position.has(d));
        return deps.length ? deps.reduce((s, d) => s + position.get(d), 0) / deps.length : Infinity;
      };
      ids.sort((a, b) => score(a) - score(b) || a.localeCompare(b));
    }
    ids.forEach((id, i) => position.set(id, i));
  });

  const tallest = Math.max(...columns.map((c) => c.length));
  const width = PAD * 2 + columns.length * NODE_W + (columns.length - 1) * GAP_X;
  const height = PAD * 2 + tallest * NODE_H + (tallest - 1) * GAP_Y;
  const place = (id) => {
    const l = layerOf.get(id);
    // Centre shorter columns vertically.
    const offset = ((tallest - columns[l].length) * (NODE_H + GAP_Y)) / 2;
    return { x: PAD + l * (NODE_W + GAP_X), y: PAD + offset + position.get(id) * (NODE_H + GAP_Y) };
  };

  const edges = svg('g');
  const nodeLayer = svg('g');
  for (const [id, node] of byId) {
    const to = place(id);
    for (const dep of node.depends_on || []) {
      if (!byId.has(dep)) continue;
      const from = place(dep);
      const x1 = from.x + NODE_W;
      const y1 = from.y + NODE_H / 2;
      const x2 = to.x;
      const y2 = to.y + NODE_H / 2;
      const bend = Math.max(24, (x2 - x1) / 2);
      edges.append(svg('path', { class: 'dag-edge', d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2 - 4},${y2}`, 'marker-end': 'url(#dag-arrow)' }));
    }
  }
  let selectedEl = null;
  for (const [id, node] of byId) {
    const { x, y } = place(id);
    const status = node.last_run ? node.last_run.status : null;
    const group = svg('g', { class: 'dag-node', transform: `translate(${x},${y})`, tabindex: 0, role: 'button', 'data-node': id },
      svg('title', {}, `${node.unique_id}${status ? ` · last run: ${status}` : ''}`),
      svg('rect', {
        width: NODE_W, height: NODE_H, rx: 8,
        style: { fill: TYPE_FILL[node.resource_type] || 'var(--surface)', stroke: STATUS_STROKE[status] || 'var(--border-strong)' },
        'stroke-dasharray': node.resource_type === 'test' ? '4 3' : null,
      }),
      svg('circle', { cx: NODE_W - 12, cy: 12, r: 4, style: { fill: STATUS_STROKE[status] || 'var(--border-strong)' } }),
      svg('text', { x: 10, y: 20 }, truncate(node.name, 24)),
      svg('text', { x: 10, y: 36, class: 'sub' }, [node.resource_type, node.materialized].filter(Boolean).join(' · ')),
    );
    const choose = () => {
      if (selectedEl) selectedEl.classList.remove('selected');
      selectedEl = group;
      group.classList.add('selected');
      onSelect(node);
    };
    group.addEventListener('click', choose);
    group.addEventListener('keydown', (event) => { if (event.key === 'Enter' || event.key === ' ') choose(); });
    nodeLayer.append(group);
  }
  const drawing = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'Model lineage graph' },
    svg('defs', {}, svg('marker', { id: 'dag-arrow', viewBox: '0 0 10 10', refX: 6, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
      svg('path', { d: 'M0,0 L10,5 L0,10 z', style: { fill: 'var(--border-strong)' } }))),
    edges, nodeLayer);
  const legend = h('div', { class: 'dag-legend' },
    Object.entries({ source: 'source', seed: 'seed', model: 'model', snapshot: 'snapshot' }).map(([type, label]) =>
      h('span', {}, h('i', { style: { background: TYPE_FILL[type], border: '1px solid var(--border-strong)' } }), label)),
    h('span', {}, h('i', { style: { background: 'var(--ok)' } }), 'last run ok'),
    h('span', {}, h('i', { style: { background: 'var(--danger)' } }), 'failed'),
    h('span', {}, h('i', { style: { background: 'var(--warn)' } }), 'warning'));
  return h('div', { class: 'section' }, h('div', { class: 'dag-wrap', 'data-testid': 'project-dag' }, drawing), legend);
}

function nodeDetails(node, ctx) {
  const run = node.last_run;
  const [schema, table] = (node.relation || '').split('.');
  return h('div', { class: 'section' },
    h('div', { class: 'row' }, h('h3', {}, node.name), h('span', { class: 'tag' }, node.resource_type),
      node.materialized ? h('span', { class: 'tag' }, node.materialized) : null,
      h('div', { class: 'spacer' }),
      schema && table && node.materialized !== 'ephemeral' ? h('button', { type: 'button', class: 'btn btn-small', on: { click: () => ctx.navigate(`#/data/${encodeURIComponent(schema)}/${encodeURIComponent(table)}`) } }, icon('table', 14), 'Open table') : null),
    node.description ? h('p', { class: 'muted' }, node.description) : null,
    h('dl', { class: 'kv' },
      h('dt', {}, 'Id'), h('dd', { class: 'mono' }, node.unique_id),
      node.relation ? [h('dt', {}, 'Builds'), h('dd', { class: 'mono' }, node.relation)] : null,
      node.file_path ? [h('dt', {}, 'File'), h('dd', { class: 'mono' }, node.file_path)] : null,
      h('dt', {}, 'Depends on'), h('dd', { class: 'mono' }, (node.depends_on || []).join(', ') || '—'),
      h('dt', {}, 'Last run'), h('dd', {}, run
        ? h('span', { class: 'row' }, badge(run.status), formatTime(run.at), run.duration_ms != null ? `(${formatDuration(run.duration_ms)})` : '')
        : 'never'),
      run && run.message ? [h('dt', {}, 'Message'), h('dd', {}, run.message)] : null,
    ));
}
