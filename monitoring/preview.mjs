#!/usr/bin/env node
// A picture of the Grafana dashboard without Grafana: reads the dashboard
// JSON, runs each panel's queries against Prometheus (query_range over the
// last few minutes, with Grafana's variables substituted as Grafana does),
// renders one self-contained HTML page laid out on the dashboard's grid
// (rows, panel titles, line charts with legends, stat panels as big numbers)
// and screenshots it with headless Chromium.
//
//   node monitoring/preview.mjs PROMETHEUS_URL DASHBOARD.json OUT.png
//        [--range 5m] [--scrape-interval 5s] [--var NAME=VALUE]... [--width 1280]
//
// PROMETHEUS_URL is Prometheus' base URL (http://127.0.0.1:9090). --range is
// how far back the charts go (seconds, or with s/m/h; default 5m). The
// `$__rate_interval` of the queries is what Grafana makes of
// --scrape-interval (the data source's scrape interval, default 5s as in
// monitoring/prometheus.yml): max(step + scrape interval, 4 x scrape
// interval). Template variables take their default (All: the variable's
// allValue) unless --var sets them. The HTML page is kept next to the PNG
// (OUT.html).
//
// It needs playwright-core from tests/e2e/node_modules (scripts/ensure-node;
// it is found from this file's place, so the script runs from any
// directory) and /usr/bin/chromium (scripts/ensure-chromium). The Rust test
// chat-server/tests/prometheus.rs runs it at its end, writing
// target/monitoring/dashboard.png from what its Prometheus scraped.
//
// Exit status: 0 with the picture written; 1 when Prometheus refuses a query,
// cannot be reached, or the browser fails (the message says which).

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const E2E_PACKAGE = path.join(HERE, '..', 'tests', 'e2e', 'package.json');
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
/** Points per series at most (Grafana asks for about one per pixel; fewer is plenty here). */
const MAX_POINTS = 240;
/** Grafana's grid: 24 columns, rows of 30 px, 8 px between panels. */
const GRID = { columns: 24, cell: 30, margin: 8 };

function fail(message) {
  process.stderr.write(`preview: ${message}\n`);
  process.exit(1);
}

// ===== arguments =====

function seconds(text) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(String(text).trim());
  if (!m) fail(`not a duration: ${text} (use e.g. 90, 90s, 5m, 1h)`);
  const scale = { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2] || 's'];
  return Number(m[1]) * scale;
}

function parseArgs(argv) {
  const args = { range: 300, scrape: 5, vars: {}, width: 1280, positional: [] };
  for (let i = 0; i < argv.length; i += 1) {
    const next = () => {
      i += 1;
      if (i >= argv.length) fail(`${argv[i - 1]} needs a value`);
      return argv[i];
    };
    if (argv[i] === '--range') args.range = seconds(next());
    else if (argv[i] === '--scrape-interval') args.scrape = seconds(next());
    else if (argv[i] === '--width') args.width = Number(next());
    else if (argv[i] === '--var') {
      const [name, ...value] = next().split('=');
      args.vars[name] = value.join('=');
    } else if (argv[i].startsWith('--')) fail(`unknown option ${argv[i]}`);
    else args.positional.push(argv[i]);
  }
  if (args.positional.length !== 3) {
    fail('usage: node monitoring/preview.mjs PROMETHEUS_URL DASHBOARD.json OUT.png '
      + '[--range 5m] [--scrape-interval 5s] [--var NAME=VALUE]... [--width 1280]');
  }
  [args.prometheus, args.dashboard, args.out] = args.positional;
  args.prometheus = args.prometheus.replace(/\/+$/, '');
  return args;
}

// ===== the dashboard =====

/** Top-level panels and the panels of collapsed rows, in grid order. */
function allPanels(dashboard) {
  const out = [];
  for (const panel of dashboard.panels || []) {
    out.push(panel);
    if (panel.type === 'row') out.push(...(panel.panels || []));
  }
  return out;
}

/** NAME -> value: defaults (All = allValue), then --var. */
function variables(dashboard, overrides) {
  const out = {};
  for (const v of dashboard.templating?.list || []) {
    if (v.type === 'datasource') continue;
    let value = v.current?.value;
    if (Array.isArray(value)) value = value[0];
    if (value === '$__all' || value === undefined) value = v.allValue ?? '.*';
    out[v.name] = String(value);
  }
  return { ...out, ...overrides };
}

/** Grafana's substitution of built-in and template variables. */
function substitute(expr, vars, timing) {
  let out = expr
    .replaceAll('$__rate_interval', `${timing.rateInterval}s`)
    .replaceAll('$__interval', `${timing.step}s`)
    .replaceAll('$__range', `${Math.round(timing.range)}s`);
  const names = Object.keys(vars).sort((a, b) => b.length - a.length);
  for (const name of names) {
    out = out.replaceAll(`\${${name}}`, vars[name]).replaceAll(`$${name}`, vars[name]);
  }
  return out;
}

function timingOf(args) {
  const end = Math.floor(Date.now() / 1000);
  const start = end - args.range;
  const step = Math.max(args.scrape, Math.ceil(args.range / MAX_POINTS));
  // Grafana: $__rate_interval = max($__interval + scrape interval, 4 * scrape interval).
  const rateInterval = Math.max(step + args.scrape, 4 * args.scrape);
  return { start, end, step, rateInterval, range: args.range };
}

// ===== Prometheus =====

async function queryRange(base, expr, timing) {
  const params = new URLSearchParams({
    query: expr, start: String(timing.start), end: String(timing.end), step: String(timing.step),
  });
  let reply;
  try {
    reply = await fetch(`${base}/api/v1/query_range?${params}`);
  } catch (e) {
    fail(`cannot reach Prometheus at ${base}: ${e.cause?.message || e.message}`);
  }
  const body = await reply.json().catch(() => null);
  if (!body || body.status !== 'success') {
    fail(`Prometheus refused ${JSON.stringify(expr)}: ${body ? `${body.errorType}: ${body.error}` : `HTTP ${reply.status}`}`);
  }
  return body.data.result;
}

/** `{{label}}` of a legendFormat; without one, the series' labels. */
function legendOf(format, metric) {
  if (format && format !== '__auto') {
    return format.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, label) => metric[label] ?? '');
  }
  const labels = Object.entries(metric).filter(([k]) => k !== '__name__');
  return labels.length ? labels.map(([k, v]) => `${k}="${v}"`).join(', ') : (metric.__name__ || 'value');
}

async function panelData(args, panel, vars, timing) {
  const series = [];
  for (const target of panel.targets || []) {
    if (target.hide || !target.expr) continue;
    const expr = substitute(target.expr, vars, timing);
    for (const s of await queryRange(args.prometheus, expr, timing)) {
      series.push({
        name: legendOf(target.legendFormat, s.metric),
        points: s.values.map(([t, v]) => [Number(t), Number(v)]),
      });
    }
  }
  return series;
}

// ===== the page =====

function esc(text) {
  return String(text).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));
}

/** JSON that is safe inside <script> (no `</script>` can end it early). */
function scriptJson(value) {
  return JSON.stringify(value).replace(/</g, '\\u003c');
}

function layout(panel, width) {
  const col = (width - GRID.margin) / GRID.columns;
  const { x = 0, y = 0, w = 12, h = 8 } = panel.gridPos || {};
  return {
    left: x * col + GRID.margin,
    top: y * (GRID.cell + GRID.margin) + GRID.margin,
    width: w * col - GRID.margin,
    height: h * GRID.cell + (h - 1) * GRID.margin,
  };
}

function panelHtml(panel, width) {
  const box = layout(panel, width);
  const style = `left:${box.left}px;top:${box.top}px;width:${box.width}px;height:${box.height}px`;
  if (panel.type === 'row') {
    return `<div class="row" style="${style}">${esc(panel.title)}</div>`;
  }
  return `<div class="panel" id="p${panel.id}" style="${style}">`
    + `<div class="title" title="${esc(panel.description || '')}">${esc(panel.title)}</div>`
    + '<div class="body"></div></div>';
}

function pageHtml(dashboard, panels, data, meta, width) {
  const bottom = Math.max(...panels.map((p) => { const b = layout(p, width); return b.top + b.height; }));
  const spec = panels.filter((p) => p.type !== 'row').map((p) => ({
    id: p.id,
    type: p.type,
    defaults: p.fieldConfig?.defaults || {},
    options: p.options || {},
    series: data.get(p.id) || [],
  }));
  return `<!doctype html><html><head><meta charset="utf-8"><title>${esc(dashboard.title)}</title>
<style>
  body { margin: 0; background: #111217; color: #ccccdc; font: 13px/1.3 "Liberation Sans", Arial, sans-serif; }
  header { display: flex; align-items: baseline; gap: 16px; padding: 12px ${GRID.margin}px 0; }
  header h1 { margin: 0; font-size: 20px; font-weight: 500; color: #fff; }
  header .meta { color: #8e8e9e; font-size: 12px; }
  header .vars span { background: #22252b; border: 1px solid #34373d; border-radius: 2px; padding: 2px 6px; margin-right: 6px; font-size: 12px; }
  main { position: relative; width: ${width}px; height: ${bottom + GRID.margin}px; }
  .row { position: absolute; font-size: 15px; font-weight: 500; color: #d8d9da; display: flex; align-items: flex-end; border-bottom: 1px solid #2c3235; }
  .panel { position: absolute; box-sizing: border-box; background: #181b1f; border: 1px solid #2c3235; border-radius: 2px; display: flex; flex-direction: column; overflow: hidden; }
  .title { padding: 6px 8px 2px; font-weight: 500; color: #d8d9da; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
  .body { flex: 1; position: relative; min-height: 0; display: flex; flex-direction: column; }
  .chart { flex: 1; min-height: 0; }
  .legend { display: flex; flex-wrap: wrap; gap: 1px 12px; padding: 2px 8px 6px; font-size: 11.5px; }
  .legend i { display: inline-block; width: 12px; height: 3px; margin-right: 5px; vertical-align: middle; border-radius: 1px; }
  .legend b { font-weight: 400; color: #8e8e9e; margin-left: 4px; }
  .stats { flex: 1; display: flex; flex-wrap: wrap; align-content: center; justify-content: center; gap: 6px 16px; padding: 0 8px 8px; position: relative; }
  .item { text-align: center; position: relative; z-index: 1; }
  .item .v { font-weight: 500; line-height: 1.05; white-space: nowrap; }
  .item .n { font-size: 11.5px; color: #8e8e9e; }
  .spark { position: absolute; left: 0; right: 0; bottom: 0; height: 55%; }
  .nodata { margin: auto; color: #8e8e9e; }
  footer { color: #6e6e7e; font-size: 11px; padding: 0 ${GRID.margin}px 10px; }
</style></head><body>
<header><h1>${esc(dashboard.title)}</h1>
  <span class="vars">${meta.vars.map(([k, v]) => `<span>${esc(k)} = ${esc(v)}</span>`).join('')}</span>
  <span class="meta">${esc(meta.when)} · last ${esc(meta.range)} · step ${meta.step}s · $__rate_interval = ${meta.rateInterval}s · ${esc(meta.prometheus)}</span></header>
<main>${panels.map((p) => panelHtml(p, width)).join('\n')}</main>
<footer>Rendered by monitoring/preview.mjs from ${esc(meta.file)} and Prometheus query_range data (a preview: Grafana draws the real thing).</footer>
<script>
(${drawPanels.toString()})(${scriptJson(spec)}, ${scriptJson({ start: meta.start, end: meta.end })});
</script></body></html>`;
}

// ===== in the page =====

/**
 * Draws every panel into the page; runs in the browser (its source is copied
 * into the HTML page), so it uses nothing from this module.
 */
function drawPanels(PANELS, RANGE) {
  const PALETTE = ['#73bf69', '#f2cc0c', '#5794f2', '#ff9830', '#f2495c', '#b877d9', '#8ab8ff', '#fade2a', '#37872d', '#fa6400'];
  const COLORS = { green: '#73bf69', red: '#f2495c', orange: '#ff9830', yellow: '#fade2a', blue: '#5794f2' };

  function scaled(v, steps) {
    for (const [limit, div, suffix] of steps) if (Math.abs(v) >= limit) return [v / div, suffix];
    const last = steps[steps.length - 1];
    return [v / last[1], last[2]];
  }

  function num(v) {
    const a = Math.abs(v);
    if (a === 0) return '0';
    if (a >= 100) return v.toFixed(0);
    if (a >= 10) return v.toFixed(1).replace(/\.0$/, '');
    return v.toFixed(2).replace(/\.?0+$/, '');
  }

  function fmt(v, unit, decimals) {
    if (v === null || Number.isNaN(v)) return '–';
    const d = (x) => (decimals !== undefined ? x.toFixed(decimals) : num(x));
    const rate = { mps: ' msg/s', cps: ' c/s', ops: ' ops/s', reqps: ' req/s' }[unit];
    switch (unit) {
      case 's': {
        const [x, s] = scaled(v, [[3600, 3600, ' h'], [60, 60, ' min'], [1, 1, ' s'], [1e-3, 1e-3, ' ms'], [1e-6, 1e-6, ' µs'], [0, 1e-9, ' ns']]);
        return d(x) + s;
      }
      case 'bytes': {
        const [x, s] = scaled(v, [[2 ** 30, 2 ** 30, ' GiB'], [2 ** 20, 2 ** 20, ' MiB'], [2 ** 10, 2 ** 10, ' KiB'], [0, 1, ' B']]);
        return d(x) + s;
      }
      case 'percentunit': return `${d(v * 100)}%`;
      default: {
        const [x, s] = scaled(v, [[1e9, 1e9, ' G'], [1e6, 1e6, ' M'], [1e3, 1e3, ' k'], [0, 1, '']]);
        return d(x) + s + (rate || '');
      }
    }
  }

  function niceStep(span, ticks) {
    const raw = span / ticks;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const norm = raw / mag;
    return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10) * mag;
  }

  function lastValue(points) {
    for (let i = points.length - 1; i >= 0; i -= 1) if (Number.isFinite(points[i][1])) return points[i][1];
    return NaN;
  }

  function thresholdColor(defaults, v) {
    let color = 'green';
    for (const step of defaults.thresholds?.steps || []) if (step.value === null || v >= step.value) color = step.color;
    return COLORS[color] || color;
  }

  function mapped(defaults, v) {
    for (const m of defaults.mappings || []) {
      const hit = m.type === 'value' && m.options?.[String(v)];
      if (hit) return hit;
    }
    return null;
  }

  function svg(tag, attrs, inner = '') {
    return `<${tag} ${Object.entries(attrs).map(([k, v]) => `${k}="${v}"`).join(' ')}>${inner}</${tag}>`;
  }

  function timeLabel(t, span) {
    const d = new Date(t * 1000);
    const hm = `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
    return span <= 600 ? `${hm}:${String(d.getSeconds()).padStart(2, '0')}` : hm;
  }

  function lineChart(el, p) {
    const w = el.clientWidth;
    const h = el.clientHeight;
    const values = p.series.flatMap((s) => s.points.map(([, v]) => v)).filter((v) => Number.isFinite(v));
    let lo = p.defaults.min ?? Math.min(0, ...values);
    let hi = p.defaults.max ?? Math.max(...values, lo);
    if (hi <= lo) hi = lo + (p.defaults.unit === 'percentunit' ? 0.01 : 1);
    const step = niceStep(hi - lo, 4);
    hi = p.defaults.max ?? Math.ceil(hi / step - 1e-9) * step;
    lo = Math.floor(lo / step + 1e-9) * step;
    const labels = [];
    for (let v = lo; v <= hi + step / 2; v += step) labels.push(v);
    const axisW = Math.max(...labels.map((v) => fmt(v, p.defaults.unit).length)) * 6.4 + 10;
    const left = axisW;
    const right = w - 10;
    const top = 6;
    const bottom = h - 18;
    const { start, end } = RANGE;
    const x = (t) => left + ((t - start) / (end - start)) * (right - left);
    const y = (v) => bottom - ((v - lo) / (hi - lo)) * (bottom - top);
    let out = '';
    for (const v of labels) {
      out += svg('line', { x1: left, x2: right, y1: y(v), y2: y(v), stroke: '#2c3235' });
      out += svg('text', { x: left - 6, y: y(v) + 4, 'text-anchor': 'end', fill: '#8e8e9e', 'font-size': 11 }, fmt(v, p.defaults.unit));
    }
    const span = end - start;
    const tstep = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200].find((s) => span / s <= Math.max(2, (right - left) / 90)) || 7200;
    for (let t = Math.ceil(start / tstep) * tstep; t <= end; t += tstep) {
      out += svg('text', { x: x(t), y: h - 4, 'text-anchor': 'middle', fill: '#8e8e9e', 'font-size': 11 }, timeLabel(t, span));
    }
    p.series.forEach((s, i) => {
      const color = PALETTE[i % PALETTE.length];
      let d = '';
      let pen = 'M';
      for (const [t, v] of s.points) {
        if (!Number.isFinite(v)) { pen = 'M'; continue; }
        d += `${pen}${x(t).toFixed(1)},${y(Math.min(Math.max(v, lo), hi)).toFixed(1)} `;
        pen = 'L';
      }
      if (s.points.length === 1 || d.split('L').length === 1) {
        const [t, v] = s.points.find(([, v]) => Number.isFinite(v)) || [];
        if (t !== undefined) out += svg('circle', { cx: x(t), cy: y(v), r: 2, fill: color });
      }
      const fill = d && p.type === 'timeseries'
        ? svg('path', { d: `${d} L${x(s.points[s.points.length - 1][0]).toFixed(1)},${bottom} L${x(s.points[0][0]).toFixed(1)},${bottom} Z`, fill: color, 'fill-opacity': 0.06, stroke: 'none' })
        : '';
      out += fill + svg('path', { d, fill: 'none', stroke: color, 'stroke-width': 1.5, 'stroke-linejoin': 'round' });
    });
    el.innerHTML = svg('svg', { width: w, height: h, xmlns: 'http://www.w3.org/2000/svg' }, out);
  }

  function timeseries(body, p) {
    if (!p.series.length) { body.innerHTML = '<div class="nodata">No data</div>'; return; }
    body.innerHTML = '<div class="chart"></div><div class="legend"></div>';
    body.querySelector('.legend').innerHTML = p.series.map((s, i) => `<span><i style="background:${PALETTE[i % PALETTE.length]}"></i>${s.name.replace(/</g, '&lt;')}<b>${fmt(lastValue(s.points), p.defaults.unit, p.defaults.decimals)}</b></span>`).join('');
    lineChart(body.querySelector('.chart'), p);
  }

  function stat(body, p) {
    if (!p.series.length) { body.innerHTML = '<div class="nodata">No data</div>'; return; }
    const n = p.series.length;
    const shown = p.series.map((s) => {
      const v = lastValue(s.points);
      const m = mapped(p.defaults, v);
      const color = m?.color ? (COLORS[m.color] || m.color) : thresholdColor(p.defaults, v);
      return { name: s.name, color, text: m?.text ?? fmt(v, p.defaults.unit, p.defaults.decimals) };
    });
    // As large as fits: the height shared by the values, the width by the longest text.
    const longest = Math.max(...shown.map((s) => s.text.length));
    const perLine = n > 1 ? Math.max(1, Math.floor(body.clientWidth / 140)) : 1;
    const lines = Math.ceil(n / perLine);
    const size = Math.max(14, Math.min(
      (body.clientHeight - 8) / (lines * (n > 1 ? 1.9 : 1.4)),
      (body.clientWidth - 16) / perLine / (0.58 * longest),
      48,
    ));
    const items = shown.map((s) => {
      const name = n > 1 ? `<div class="n">${s.name.replace(/</g, '&lt;')}</div>` : '';
      return `<div class="item"><div class="v" style="color:${s.color};font-size:${size.toFixed(0)}px">${s.text}</div>${name}</div>`;
    }).join('');
    body.innerHTML = `<div class="stats">${items}</div>`;
    if (p.options.graphMode === 'area' && n === 1) {
      const spark = document.createElement('div');
      spark.className = 'spark';
      body.querySelector('.stats').appendChild(spark);
      const s = p.series[0];
      const values = s.points.map(([, v]) => v).filter(Number.isFinite);
      const lo = Math.min(...values);
      const hi = Math.max(...values) > lo ? Math.max(...values) : lo + 1;
      const w = spark.clientWidth;
      const h = spark.clientHeight;
      const color = thresholdColor(p.defaults, lastValue(s.points));
      const pts = s.points.filter(([, v]) => Number.isFinite(v))
        .map(([t, v]) => `${(((t - RANGE.start) / (RANGE.end - RANGE.start)) * w).toFixed(1)},${(h - ((v - lo) / (hi - lo)) * (h - 2) - 1).toFixed(1)}`);
      if (pts.length > 1) {
        spark.innerHTML = svg('svg', { width: w, height: h }, svg('path', { d: `M${pts.join(' L')} L${pts[pts.length - 1].split(',')[0]},${h} L${pts[0].split(',')[0]},${h} Z`, fill: color, 'fill-opacity': 0.15, stroke: color, 'stroke-opacity': 0.6 }));
      }
    }
  }

  function renderAll() {
    for (const p of PANELS) {
      const body = document.querySelector(`#p${p.id} .body`);
      if (p.type === 'stat') stat(body, p);
      else timeseries(body, p);
    }
    document.body.dataset.rendered = 'yes';
  }

  renderAll();
}

// ===== main =====

async function main() {
  const args = parseArgs(process.argv.slice(2));
  let dashboard;
  try {
    dashboard = JSON.parse(fs.readFileSync(args.dashboard, 'utf8'));
  } catch (e) {
    fail(`cannot read the dashboard ${args.dashboard}: ${e.message}`);
  }
  let chromium;
  try {
    ({ chromium } = createRequire(E2E_PACKAGE)('playwright-core'));
  } catch (e) {
    fail(`playwright-core is not installed in ${path.dirname(E2E_PACKAGE)}: run scripts/ensure-node (${e.message})`);
  }
  if (!fs.existsSync(CHROMIUM)) fail(`${CHROMIUM} is missing: run scripts/ensure-chromium`);

  const timing = timingOf(args);
  const vars = variables(dashboard, args.vars);
  const panels = allPanels(dashboard);
  const data = new Map();
  let queries = 0;
  let empty = 0;
  for (const panel of panels.filter((p) => p.type !== 'row')) {
    const series = await panelData(args, panel, vars, timing);
    queries += (panel.targets || []).length;
    if (!series.length) {
      empty += 1;
      process.stderr.write(`preview: no data for panel "${panel.title}"\n`);
    }
    data.set(panel.id, series);
  }

  const meta = {
    vars: Object.entries(vars),
    when: new Date(timing.end * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC'),
    range: args.range >= 120 ? `${Math.round(args.range / 60)} min` : `${Math.round(args.range)} s`,
    step: timing.step,
    rateInterval: timing.rateInterval,
    prometheus: args.prometheus,
    file: path.basename(args.dashboard),
    start: timing.start,
    end: timing.end,
  };
  const html = pageHtml(dashboard, panels, data, meta, args.width);
  fs.mkdirSync(path.dirname(path.resolve(args.out)), { recursive: true });
  const htmlPath = args.out.replace(/\.png$/i, '') + '.html';
  fs.writeFileSync(htmlPath, html);

  let browser;
  try {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  } catch (e) {
    fail(`cannot start ${CHROMIUM}: ${e.message}`);
  }
  try {
    const page = await browser.newPage({ viewport: { width: args.width, height: 900 }, deviceScaleFactor: 1 });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.setContent(html, { waitUntil: 'load' });
    await page.waitForSelector('body[data-rendered="yes"]', { timeout: 10_000 }).catch(() => {
      fail(`the page did not render: ${errors.join('; ') || 'no error reported'}`);
    });
    await page.screenshot({ path: args.out, fullPage: true });
  } finally {
    await browser.close();
  }
  process.stdout.write(`preview: ${panels.filter((p) => p.type !== 'row').length} panels, ${queries} queries`
    + ` (${empty} panels without data) -> ${args.out} (and ${htmlPath})\n`);
}

main().catch((e) => fail(e.stack || e.message));
