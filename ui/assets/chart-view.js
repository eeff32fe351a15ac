/**
 * chart-view.js — draws one chart from a chart spec and the result of
 * POST /api/v1/charts/data (or /charts/{id}/data) into an element.
 *
 * Used by the chart builder (charts.js) and by dashboard tiles (dashboards.js).
 * ECharts draws bar, stacked_bar, line, area, pie, scatter and heatmap; big numbers,
 * pivot tables and plain tables are DOM. ECharts is loaded lazily, once, the first time
 * a chart that needs it is drawn, so the first page of the app stays small.
 *
 * Data values are never interpreted as HTML: DOM cells use textContent and every ECharts
 * tooltip goes through a formatter that escapes names with echarts.format.encodeHTML.
 */
import { h, formatNumber, formatValue } from './dom.js';

const ECHARTS_URL = '/vendor/echarts/echarts.min.js';
const CHARTS_CSS_URL = '/assets/charts.css';

/** A categorical palette that keeps its contrast on both light and dark surfaces. */
export const PALETTE = [
  '#2b8cbe', '#f28e2b', '#3bb49a', '#e15759', '#8f6fd1',
  '#edc948', '#ff9da7', '#76b7b2', '#9c755f', '#a0cbe8',
];

export const CHART_TYPES = [
  { value: 'bar', label: 'Bar' },
  { value: 'stacked_bar', label: 'Stacked bar' },
  { value: 'line', label: 'Line' },
  { value: 'area', label: 'Area' },
  { value: 'pie', label: 'Pie' },
  { value: 'scatter', label: 'Scatter' },
  { value: 'big_number', label: 'Big number' },
  { value: 'pivot', label: 'Pivot table' },
  { value: 'table', label: 'Table' },
  { value: 'heatmap', label: 'Heatmap' },
];

const AGG_TITLES = {
  sum: 'Sum of', avg: 'Average', min: 'Min', max: 'Max',
  count: 'Count of', count_distinct: 'Distinct',
};

let echartsPromise = null;

/** Loads ECharts once (script tag → window.echarts) and resolves with it. */
export function loadECharts() {
  if (window.echarts) return Promise.resolve(window.echarts);
  if (!echartsPromise) {
    echartsPromise = new Promise((resolve, reject) => {
      const script = document.createElement('script');
      script.src = ECHARTS_URL;
      script.async = true;
      script.onload = () => resolve(window.echarts);
      script.onerror = () => {
        echartsPromise = null; // allow a later retry, e.g. after the network comes back
        script.remove();
        reject(new Error('Could not load the chart library'));
      };
      document.head.appendChild(script);
    });
  }
  return echartsPromise;
}

/** Adds charts.css to the page once; the first page does not need it. */
export function ensureChartsCss() {
  if (document.querySelector(`link[href="${CHARTS_CSS_URL}"]`)) return;
  document.head.appendChild(h('link', { rel: 'stylesheet', href: CHARTS_CSS_URL }));
}

// ---------------------------------------------------------------------------
// Types and value formatting

export const isNumericType = (t) => /^(u?int|float|decimal|double|real|numeric)/i.test(t || '');
export const isTemporalType = (t) => /^(date|timestamp)/i.test(t || '');

/** Numbers may arrive as JSON strings (decimals); charts need real numbers. */
export function toNumber(v) {
  if (v === null || v === undefined || v === '') return null;
  const n = typeof v === 'number' ? v : Number(v);
  return Number.isFinite(n) ? n : null;
}

/** Parses a server date/timestamp string as UTC (the lake stores UTC). */
export function parseTime(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === 'number') return new Date(v);
  const s = String(v).trim();
  if (/^\d{4}-\d{2}-\d{2}$/.test(s)) return new Date(`${s}T00:00:00Z`);
  let iso = s.replace(' ', 'T');
  if (!/(Z|[+-]\d{2}:?\d{2})$/.test(iso)) iso += 'Z';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? null : d;
}

const dateFormats = new Map();
function dateFormat(options) {
  const key = JSON.stringify(options);
  if (!dateFormats.has(key)) dateFormats.set(key, new Intl.DateTimeFormat(undefined, { timeZone: 'UTC', ...options }));
  return dateFormats.get(key);
}

/** A readable label for a time value at a grain: "Mar 2026", "Q1 2026", "Mar 5, 2026". */
export function formatTime(v, grain, type) {
  const d = parseTime(v);
  if (!d) return v === null || v === undefined ? 'NULL' : String(v);
  switch (grain) {
    case 'year': return String(d.getUTCFullYear());
    case 'quarter': return `Q${Math.floor(d.getUTCMonth() / 3) + 1} ${d.getUTCFullYear()}`;
    case 'month': return dateFormat({ month: 'short', year: 'numeric' }).format(d);
    case 'week':
    case 'day': return dateFormat({ day: 'numeric', month: 'short', year: 'numeric' }).format(d);
    default: {
      const midnight = d.getUTCHours() === 0 && d.getUTCMinutes() === 0 && d.getUTCSeconds() === 0;
      if (/^date/i.test(type || '') || midnight) return dateFormat({ day: 'numeric', month: 'short', year: 'numeric' }).format(d);
      return dateFormat({ day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit' }).format(d);
    }
  }
}

const compactFormat = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 });
/** Axis labels: 1.2k, 3.4M. */
export function formatCompact(v) {
  const n = toNumber(v);
  if (n === null) return '';
  return Math.abs(n) < 1000 ? formatNumber(n) : compactFormat.format(n);
}

/** A big number stays exact below a million and becomes "12.35M" above. */
function formatBig(n) {
  if (n === null) return '—';
  if (Math.abs(n) < 1e6) return formatNumber(n);
  return new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 2 }).format(n);
}

// ---------------------------------------------------------------------------
// Spec ↔ result columns

/** The result column name the server gives a measure (its label, else `<agg>_<column>` / `count`). */
export function measureKey(m) {
  if (m.label) return m.label;
  if (!m.column) return 'count';
  return `${m.agg}_${m.column}`;
}

/** A human title for a measure: its label, else "Sum of revenue". */
export function measureTitle(m) {
  if (m.label) return m.label;
  if (!m.column) return 'Count';
  return `${AGG_TITLES[m.agg] || m.agg} ${m.column}`;
}

/**
 * Matches the spec's dimensions and measures to result columns. Names are tried first;
 * position (dimensions then measures, as the server emits them) is the fallback.
 */
function describe(spec, result) {
  const columns = result.columns || [];
  const byName = new Map(columns.map((c) => [c.name, c]));
  const dims = (spec.dimensions || []).map((d, i) => {
    const col = byName.get(d.column) || columns[i] || { name: d.column, type: '' };
    return { key: col.name, type: col.type, grain: d.time_grain, title: d.column };
  });
  const measures = (spec.measures || []).map((m, i) => {
    const col = byName.get(measureKey(m)) || columns[dims.length + i] || { name: measureKey(m), type: '' };
    return { key: col.name, type: col.type, title: measureTitle(m), agg: m.agg };
  });
  return { columns, dims, measures, rows: result.rows || [] };
}

function dimLabel(dim, v) {
  if (v === null || v === undefined) return 'NULL';
  if (dim.grain || isTemporalType(dim.type)) return formatTime(v, dim.grain, dim.type);
  if (isNumericType(dim.type)) return formatNumber(toNumber(v));
  return String(v);
}

/** Distinct values of a dimension, in result order (time ascending). */
function distinct(rows, dim) {
  const seen = new Map();
  for (const r of rows) {
    const v = r[dim.key];
    const k = v === null || v === undefined ? '\u0000null' : String(v);
    if (!seen.has(k)) seen.set(k, v);
  }
  const values = [...seen.values()];
  if (dim.grain || isTemporalType(dim.type)) {
    values.sort((a, b) => (parseTime(a)?.getTime() ?? -Infinity) - (parseTime(b)?.getTime() ?? -Infinity));
  }
  return values;
}

const keyOf = (v) => (v === null || v === undefined ? '\u0000null' : String(v));

// ---------------------------------------------------------------------------
// Theme

function themeColors() {
  const css = getComputedStyle(document.documentElement);
  const v = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  return {
    text: v('--text', '#1f2933'),
    muted: v('--text-muted', '#6b7785'),
    border: v('--border', '#e3e8ee'),
    surface: v('--surface', '#ffffff'),
    surface2: v('--surface-2', '#f4f6f8'),
    accent: v('--accent', '#1c7ed6'),
    ok: v('--ok', '#2f9e44'),
    danger: v('--danger', '#e03131'),
    font: v('--font', '-apple-system, "Segoe UI", Inter, Roboto, sans-serif'),
  };
}

// ---------------------------------------------------------------------------
// ECharts options

function tooltipBase(c, trigger) {
  return {
    trigger,
    confine: true,
    backgroundColor: c.surface,
    borderColor: c.border,
    borderWidth: 1,
    padding: [6, 10],
    textStyle: { color: c.text, fontSize: 12, fontFamily: c.font },
    extraCssText: 'box-shadow: 0 4px 14px rgba(0,0,0,.12); border-radius: 6px;',
  };
}

function tooltipRow(marker, name, value) {
  return `<div class="pc-tt-row"><span>${marker || ''}${name}</span><b>${value}</b></div>`;
}

function categoryAxis(c, labels, extra = {}) {
  return {
    type: 'category',
    data: labels,
    axisLine: { lineStyle: { color: c.border } },
    axisTick: { show: false },
    axisLabel: { color: c.muted, hideOverlap: true },
    ...extra,
  };
}

function valueAxis(c, extra = {}) {
  return {
    type: 'value',
    axisLine: { show: false },
    axisTick: { show: false },
    axisLabel: { color: c.muted, formatter: formatCompact },
    splitLine: { lineStyle: { color: c.border } },
    ...extra,
  };
}

function legend(c, show) {
  return {
    show,
    type: 'scroll',
    top: 0,
    icon: 'roundRect',
    itemWidth: 10,
    itemHeight: 10,
    textStyle: { color: c.muted },
    pageTextStyle: { color: c.muted },
    pageIconColor: c.text,
    pageIconInactiveColor: c.border,
  };
}

/** bar, stacked_bar, line, area: dim[0] on x; series from dim[1] or one per measure. */
function cartesianOption(spec, d, c, enc, width) {
  const type = spec.type;
  const [xDim, seriesDim] = d.dims;
  const horizontal = !!spec.options?.horizontal && (type === 'bar' || type === 'stacked_bar');
  const xValues = xDim ? distinct(d.rows, xDim) : [null];
  const xIndex = new Map(xValues.map((v, i) => [keyOf(v), i]));
  const labels = xDim ? xValues.map((v) => dimLabel(xDim, v)) : [''];
  const series = [];
  const seriesType = type === 'line' || type === 'area' ? 'line' : 'bar';
  const stacked = type === 'stacked_bar' || (type === 'area' && !!seriesDim);
  const lineLike = seriesType === 'line';
  const showSymbol = labels.length <= 40;
  const makeSeries = (name, data) => ({
    name,
    type: seriesType,
    data,
    stack: stacked ? 'total' : undefined,
    barMaxWidth: 48,
    showSymbol: lineLike ? showSymbol : undefined,
    symbolSize: 5,
    lineStyle: lineLike ? { width: 2 } : undefined,
    areaStyle: type === 'area' ? { opacity: stacked ? 0.55 : 0.18 } : undefined,
    emphasis: { focus: 'series' },
    itemStyle: seriesType === 'bar' ? { borderRadius: stacked ? 0 : horizontal ? [0, 3, 3, 0] : [3, 3, 0, 0] } : undefined,
    label: spec.options?.show_labels ? { show: true, position: stacked ? 'inside' : 'top', color: c.text, formatter: (p) => formatCompact(p.value) } : undefined,
  });
  if (seriesDim && d.measures[0]) {
    const m = d.measures[0];
    const bySeries = new Map();
    for (const v of distinct(d.rows, seriesDim)) bySeries.set(keyOf(v), { name: dimLabel(seriesDim, v), data: new Array(xValues.length).fill(null) });
    for (const r of d.rows) {
      const s = bySeries.get(keyOf(r[seriesDim.key]));
      const i = xDim ? xIndex.get(keyOf(r[xDim.key])) : 0;
      if (s && i !== undefined) s.data[i] = toNumber(r[m.key]);
    }
    for (const s of bySeries.values()) series.push(makeSeries(s.name, s.data));
  } else {
    for (const m of d.measures) {
      const data = new Array(xValues.length).fill(null);
      for (const r of d.rows) {
        const i = xDim ? xIndex.get(keyOf(r[xDim.key])) : 0;
        if (i !== undefined) data[i] = toNumber(r[m.key]);
      }
      series.push(makeSeries(m.title, data));
    }
  }
  const multi = series.length > 1;
  // Names that do not fit side by side are slanted rather than dropped.
  const temporal = xDim && (xDim.grain || isTemporalType(xDim.type));
  const needed = labels.reduce((sum, l) => sum + String(l).length * 6.5 + 14, 0);
  const slant = !horizontal && !temporal && labels.length <= 40 && needed > Math.max(120, width - 80);
  const catAxis = categoryAxis(c, labels, { boundaryGap: seriesType === 'bar' });
  if (slant) Object.assign(catAxis.axisLabel, { rotate: 35, interval: 0, width: 100, overflow: 'truncate' });
  const valAxis = valueAxis(c);
  return {
    legend: legend(c, multi),
    grid: { left: 8, right: 16, top: multi ? 36 : 16, bottom: 8, containLabel: true },
    tooltip: {
      ...tooltipBase(c, 'axis'),
      axisPointer: seriesType === 'bar' ? { type: 'shadow', shadowStyle: { color: 'rgba(127,127,127,.12)' } } : { type: 'line', lineStyle: { color: c.border } },
      formatter: (params) => {
        const list = Array.isArray(params) ? params : [params];
        if (!list.length) return '';
        const head = `<div class="pc-tt-head">${enc(labels[list[0].dataIndex] ?? '')}</div>`;
        return head + list
          .filter((p) => p.value !== null && p.value !== undefined)
          .map((p) => tooltipRow(p.marker, enc(p.seriesName), enc(formatNumber(p.value))))
          .join('');
      },
    },
    xAxis: horizontal ? valAxis : catAxis,
    yAxis: horizontal ? { ...catAxis, inverse: true } : valAxis,
    series,
  };
}

/** pie: dim[0] slices of measure[0]; past nine slices the rest becomes "Other". */
function pieOption(spec, d, c, enc, width) {
  const [dim] = d.dims;
  const m = d.measures[0];
  let slices = d.rows.map((r) => ({ name: dim ? dimLabel(dim, r[dim.key]) : m?.title || '', value: toNumber(r[m?.key]) ?? 0 }));
  slices.sort((a, b) => b.value - a.value);
  if (slices.length > 10) {
    const other = slices.slice(9).reduce((s, x) => s + x.value, 0);
    slices = [...slices.slice(0, 9), { name: 'Other', value: other }];
  }
  // A narrow pie has no room for outside labels: a legend below names the slices instead.
  const narrow = width < 400;
  return {
    legend: { ...legend(c, narrow), top: undefined, bottom: 0 },
    tooltip: {
      ...tooltipBase(c, 'item'),
      formatter: (p) => `<div class="pc-tt-head">${enc(p.name)}</div>` +
        tooltipRow(p.marker, enc(m?.title || ''), `${enc(formatNumber(p.value))} · ${enc(p.percent)}%`),
    },
    series: [{
      type: 'pie',
      radius: narrow ? ['40%', '68%'] : ['36%', '60%'],
      center: narrow ? ['50%', '45%'] : ['50%', '52%'],
      avoidLabelOverlap: true,
      itemStyle: { borderColor: c.surface, borderWidth: 2, borderRadius: 3 },
      // Labels align to the edges so long names stay inside the chart instead of being cut off.
      label: narrow
        ? { show: false }
        : { color: c.text, formatter: (p) => `${p.name}  ${Math.round(p.percent)}%`, alignTo: 'edge', edgeDistance: 8, minMargin: 4, overflow: 'truncate' },
      labelLine: { show: !narrow, lineStyle: { color: c.border } },
      data: slices,
    }],
  };
}

/** scatter: one point per dim[0] value at (measure[0], measure[1]); colour by dim[1]. */
function scatterOption(spec, d, c, enc) {
  const [pointDim, groupDim] = d.dims;
  const [mx, my] = d.measures;
  const yMeasure = my || mx;
  const groups = new Map();
  for (const r of d.rows) {
    const g = groupDim ? dimLabel(groupDim, r[groupDim.key]) : yMeasure?.title || '';
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push({
      value: [toNumber(r[mx?.key]), toNumber(r[yMeasure?.key])],
      name: pointDim ? dimLabel(pointDim, r[pointDim.key]) : '',
    });
  }
  const series = [...groups.entries()].map(([name, data]) => ({
    name, type: 'scatter', data, symbolSize: data.length > 500 ? 5 : 9,
    itemStyle: { opacity: 0.8 }, emphasis: { focus: 'series' },
  }));
  const multi = series.length > 1;
  return {
    legend: legend(c, multi),
    grid: { left: 16, right: 24, top: multi ? 48 : 28, bottom: 28, containLabel: true },
    tooltip: {
      ...tooltipBase(c, 'item'),
      formatter: (p) => `<div class="pc-tt-head">${enc(p.name || p.seriesName)}</div>` +
        tooltipRow('', enc(mx?.title || ''), enc(formatNumber(p.value[0]))) +
        (my ? tooltipRow('', enc(my.title), enc(formatNumber(p.value[1]))) : ''),
    },
    xAxis: valueAxis(c, { name: mx?.title, nameLocation: 'middle', nameGap: 28, nameTextStyle: { color: c.muted }, scale: true, splitLine: { show: false } }),
    yAxis: valueAxis(c, { name: my?.title, nameTextStyle: { color: c.muted, align: 'left' }, scale: true }),
    series,
  };
}

/** heatmap: dim[0] on x, dim[1] on y, measure[0] as colour. */
function heatmapOption(spec, d, c, enc) {
  const [xDim, yDim] = d.dims;
  const m = d.measures[0];
  const xValues = xDim ? distinct(d.rows, xDim) : [null];
  const yValues = yDim ? distinct(d.rows, yDim) : [null];
  const xi = new Map(xValues.map((v, i) => [keyOf(v), i]));
  const yi = new Map(yValues.map((v, i) => [keyOf(v), i]));
  const xLabels = xValues.map((v) => (xDim ? dimLabel(xDim, v) : ''));
  const yLabels = yValues.map((v) => (yDim ? dimLabel(yDim, v) : ''));
  let min = Infinity;
  let max = -Infinity;
  const data = [];
  for (const r of d.rows) {
    const v = toNumber(r[m?.key]);
    const x = xDim ? xi.get(keyOf(r[xDim.key])) : 0;
    const y = yDim ? yi.get(keyOf(r[yDim.key])) : 0;
    if (v !== null) { min = Math.min(min, v); max = Math.max(max, v); }
    data.push([x, y, v]);
  }
  if (!Number.isFinite(min)) { min = 0; max = 1; }
  return {
    grid: { left: 8, right: 16, top: 8, bottom: 44, containLabel: true },
    tooltip: {
      ...tooltipBase(c, 'item'),
      formatter: (p) => `<div class="pc-tt-head">${enc(xLabels[p.value[0]])} · ${enc(yLabels[p.value[1]])}</div>` +
        tooltipRow(p.marker, enc(m?.title || ''), enc(formatNumber(p.value[2]))),
    },
    xAxis: categoryAxis(c, xLabels, { splitArea: { show: false } }),
    yAxis: categoryAxis(c, yLabels, { splitArea: { show: false } }),
    visualMap: {
      min, max, calculable: false, orient: 'horizontal', left: 'center', bottom: 0,
      itemHeight: 120, itemWidth: 10, textStyle: { color: c.muted }, formatter: formatCompact,
      inRange: { color: [c.surface2, PALETTE[0]] },
    },
    series: [{
      type: 'heatmap', data,
      itemStyle: { borderColor: c.surface, borderWidth: 1 },
      emphasis: { itemStyle: { borderColor: c.text, borderWidth: 1 } },
    }],
  };
}

/** The full ECharts option; `width` (px) lets labels adapt to the space there is. */
function echartsOption(spec, d, width, animate = true) {
  const c = themeColors();
  const enc = window.echarts.format.encodeHTML;
  const base = {
    color: PALETTE,
    backgroundColor: 'transparent',
    textStyle: { color: c.text, fontFamily: c.font, fontSize: 12 },
    animation: animate,
    animationDuration: 300,
    animationDurationUpdate: 200,
  };
  const build = { pie: pieOption, scatter: scatterOption, heatmap: heatmapOption }[spec.type] || cartesianOption;
  return { ...base, ...build(spec, d, c, enc, width) };
}

// ---------------------------------------------------------------------------
// DOM charts

/** big_number: measure[0] of the last period, its change vs the previous one, a sparkline. */
function drawBigNumber(el, spec, d) {
  const m = d.measures[0];
  const dim = d.dims[0];
  let rows = d.rows;
  if (dim) {
    const order = distinct(rows, dim).map(keyOf);
    const pos = new Map(order.map((k, i) => [k, i]));
    rows = [...rows].sort((a, b) => pos.get(keyOf(a[dim.key])) - pos.get(keyOf(b[dim.key])));
  }
  const values = rows.map((r) => toNumber(r[m?.key]));
  const last = values.length ? values[values.length - 1] : null;
  const prev = values.length > 1 ? values[values.length - 2] : null;
  const parts = [
    h('div', { class: 'pc-big-title' }, m?.title || ''),
    h('div', { class: 'pc-big-value', title: last === null ? '' : formatNumber(last) }, formatBig(last)),
  ];
  if (dim && prev !== null && last !== null) {
    const change = prev === 0 ? null : (last - prev) / Math.abs(prev);
    const dir = last > prev ? 'up' : last < prev ? 'down' : 'flat';
    const arrow = dir === 'up' ? '▲' : dir === 'down' ? '▼' : '■';
    const pct = change === null ? '' : `${change > 0 ? '+' : ''}${(change * 100).toFixed(1)}%`;
    parts.push(h('div', { class: 'pc-big-delta' },
      h('span', { class: `pc-delta pc-delta-${dir}` }, `${arrow} ${pct || formatNumber(last - prev)}`),
      h('span', { class: 'pc-big-period' }, ` vs ${dimLabel(dim, rows[rows.length - 2][dim.key])}`)));
  }
  if (dim && values.length > 2) parts.push(sparkline(values));
  el.replaceChildren(h('div', { class: 'pc-big' }, parts));
}

function sparkline(values) {
  const points = values.map((v, i) => [i, v ?? 0]);
  const ys = points.map((p) => p[1]);
  const min = Math.min(...ys);
  const max = Math.max(...ys);
  const span = max - min || 1;
  const w = 100;
  const hgt = 30;
  const step = w / Math.max(1, points.length - 1);
  const coords = points.map(([i, v]) => `${(i * step).toFixed(2)},${(hgt - ((v - min) / span) * (hgt - 2) - 1).toFixed(2)}`);
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${w} ${hgt}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('class', 'pc-spark');
  svg.setAttribute('aria-hidden', 'true');
  const area = document.createElementNS(ns, 'polygon');
  area.setAttribute('points', `0,${hgt} ${coords.join(' ')} ${w},${hgt}`);
  area.setAttribute('class', 'pc-spark-area');
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute('points', coords.join(' '));
  line.setAttribute('class', 'pc-spark-line');
  line.setAttribute('vector-effect', 'non-scaling-stroke');
  svg.append(area, line);
  return svg;
}

/** Totals only where adding up is meaningful; an average of averages would lie. */
function combine(agg, values) {
  const nums = values.filter((v) => v !== null);
  if (!nums.length) return null;
  if (agg === 'sum' || agg === 'count') return nums.reduce((a, b) => a + b, 0);
  if (agg === 'min') return Math.min(...nums);
  if (agg === 'max') return Math.max(...nums);
  return null;
}

/** pivot: rows = dim[0], columns = dim[1], measures in the cells, with totals. */
function drawPivot(el, spec, d) {
  const [rowDim, colDim] = d.dims;
  const rowValues = rowDim ? distinct(d.rows, rowDim) : [null];
  const colValues = colDim ? distinct(d.rows, colDim) : [null];
  const cells = new Map(); // "row\u0001col" -> result row
  for (const r of d.rows) cells.set(`${rowDim ? keyOf(r[rowDim.key]) : ''}\u0001${colDim ? keyOf(r[colDim.key]) : ''}`, r);
  const ms = d.measures;
  const cell = (rv, cv, m) => {
    const r = cells.get(`${rowDim ? keyOf(rv) : ''}\u0001${colDim ? keyOf(cv) : ''}`);
    return r ? toNumber(r[m.key]) : null;
  };
  // Decimal measures keep their scale so the digits line up down a column.
  const num = (v, m, cls = '') => h('td', { class: `pc-num ${cls}` }, v === null ? '' : /^decimal/i.test(m.type || '') ? formatValue(v, m.type) : formatNumber(v));
  const multiMeasure = ms.length > 1;

  const head = [];
  const corner = rowDim ? rowDim.title : '';
  if (colDim) {
    head.push(h('tr', {},
      h('th', { class: 'pc-corner', rowspan: multiMeasure ? 2 : 1 }, corner),
      colValues.map((cv) => h('th', { colspan: ms.length, class: 'pc-colhead' }, dimLabel(colDim, cv))),
      h('th', { colspan: ms.length, class: 'pc-colhead pc-total' }, 'Total')));
    if (multiMeasure) {
      head.push(h('tr', {}, [...colValues, 'total'].flatMap((cv) =>
        ms.map((m) => h('th', { class: `pc-num${cv === 'total' ? ' pc-total' : ''}` }, m.title)))));
    }
  } else {
    head.push(h('tr', {}, rowDim ? h('th', { class: 'pc-corner' }, corner) : null, ms.map((m) => h('th', { class: 'pc-num' }, m.title))));
  }

  const body = rowValues.map((rv) => {
    const tds = [];
    for (const cv of colValues) for (const m of ms) tds.push(num(cell(rv, cv, m), m));
    if (colDim) for (const m of ms) tds.push(num(combine(m.agg, colValues.map((cv) => cell(rv, cv, m))), m, 'pc-total'));
    return h('tr', {}, rowDim ? h('th', { class: 'pc-rowhead' }, dimLabel(rowDim, rv)) : null, tds);
  });

  const foot = [];
  if (rowDim && rowValues.length > 1) {
    const tds = [];
    for (const cv of colValues) for (const m of ms) tds.push(num(combine(m.agg, rowValues.map((rv) => cell(rv, cv, m))), m));
    if (colDim) {
      for (const m of ms) tds.push(num(combine(m.agg, rowValues.flatMap((rv) => colValues.map((cv) => cell(rv, cv, m)))), m));
    }
    foot.push(h('tr', { class: 'pc-total' }, h('th', { class: 'pc-rowhead' }, 'Total'), tds));
  }
  el.replaceChildren(h('div', { class: 'pc-pivot' },
    h('table', {}, h('thead', {}, head), h('tbody', {}, body), foot.length ? h('tfoot', {}, foot) : null)));
}

/** table: the result as a grid (helper A's virtual grid when available). */
async function drawTable(el, spec, d) {
  // Time dimensions read better at their grain ("Mar 2026") than as full timestamps.
  const grained = d.dims.filter((x) => x.grain);
  const columns = d.columns.map((c) => (grained.some((x) => x.key === c.name) ? { name: c.name, type: 'Utf8' } : c));
  const rows = grained.length
    ? d.rows.map((r) => {
      const copy = { ...r };
      for (const x of grained) copy[x.key] = r[x.key] == null ? null : dimLabel(x, r[x.key]);
      return copy;
    })
    : d.rows;
  let createGrid = null;
  try {
    ({ createGrid } = await import('./grid.js'));
  } catch {
    // grid.js is optional for charts: fall back to a plain table below.
  }
  if (typeof createGrid === 'function') {
    el.replaceChildren(h('div', { class: 'pc-table-grid' }, createGrid(columns, rows, { rowNumbers: false })));
    return;
  }
  const display = (c, v) => {
    if (v === null || v === undefined) return 'NULL';
    if (isNumericType(c.type)) return formatNumber(toNumber(v));
    if (isTemporalType(c.type)) return formatTime(v, null, c.type);
    return String(v);
  };
  el.replaceChildren(h('div', { class: 'pc-pivot pc-plain-table' }, h('table', {},
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { class: isNumericType(c.type) ? 'pc-num' : '' }, c.name)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, columns.map((c) =>
      h('td', { class: isNumericType(c.type) ? 'pc-num' : '' }, display(c, r[c.name])))))))));
}

// ---------------------------------------------------------------------------
// Entry point

const DOM_TYPES = new Set(['big_number', 'pivot', 'table']);

/**
 * Draws `result` for `spec` into `el`. Returns a handle:
 *   { drawn: Promise (resolves once the chart finished rendering, rejects on failure),
 *     resize(), redraw(), dispose() }
 * The chart follows its element's size (ResizeObserver) and the app theme (`polder-theme`).
 * opts.onDrawn is called alongside `drawn` resolving, for callers that prefer callbacks.
 * opts.animate = false draws at once (dashboards: many charts, the numbers matter, not the motion).
 */
export function renderChart(el, spec, result, opts = {}) {
  ensureChartsCss();
  let instance = null;
  let disposed = false;
  let observer = null;
  let resolveDrawn;
  let rejectDrawn;
  const drawn = new Promise((resolve, reject) => { resolveDrawn = resolve; rejectDrawn = reject; });
  drawn.then(() => opts.onDrawn?.(), () => {});
  const d = describe(spec, result);
  el.classList.add('pc-chart');
  el.dataset.chartType = spec.type;

  const empty = !d.rows.length;
  const draw = async () => {
    if (empty) {
      el.replaceChildren(h('div', { class: 'pc-empty' }, 'No rows match.'));
      return;
    }
    if (spec.type === 'big_number') return drawBigNumber(el, spec, d);
    if (spec.type === 'pivot') return drawPivot(el, spec, d);
    if (spec.type === 'table') return drawTable(el, spec, d);
    throw new Error('not a DOM chart');
  };

  const onTheme = () => handle.redraw();
  window.addEventListener('polder-theme', onTheme);

  const handle = {
    drawn,
    resize() { instance?.resize(); },
    redraw() {
      if (disposed) return;
      if (instance) instance.setOption(echartsOption(spec, d, el.clientWidth, false), { notMerge: true });
      else if (DOM_TYPES.has(spec.type) || empty) draw();
    },
    dispose() {
      disposed = true;
      window.removeEventListener('polder-theme', onTheme);
      observer?.disconnect();
      instance?.dispose();
      instance = null;
    },
  };

  if (DOM_TYPES.has(spec.type) || empty) {
    Promise.resolve().then(draw).then(() => { if (!disposed) resolveDrawn(); }, rejectDrawn);
    return handle;
  }

  el.replaceChildren(h('div', { class: 'pc-loading' }, h('span', { class: 'pc-spinner' })));
  loadECharts().then((echarts) => {
    if (disposed) return;
    el.replaceChildren();
    instance = echarts.init(el, null, { renderer: 'canvas' });
    let finished = false;
    const finish = () => {
      if (finished || disposed) return;
      finished = true;
      resolveDrawn();
    };
    instance.on('finished', finish);
    let builtWidth = el.clientWidth;
    instance.setOption(echartsOption(spec, d, builtWidth, opts.animate !== false));
    // A zero-sized element (hidden tab, collapsed tile) may never report 'finished'.
    setTimeout(finish, 3000);
    let relayout = null;
    observer = new ResizeObserver(() => {
      instance?.resize();
      // Label layout depends on the width: rebuild once the size settles if it changed a lot.
      clearTimeout(relayout);
      relayout = setTimeout(() => {
        if (!instance || Math.abs(el.clientWidth - builtWidth) < 60) return;
        builtWidth = el.clientWidth;
        instance.setOption(echartsOption(spec, d, builtWidth, false), { notMerge: true });
      }, 150);
    });
    observer.observe(el);
  }).catch((err) => { if (!disposed) rejectDrawn(err); });
  return handle;
}
