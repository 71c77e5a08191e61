// Metrics: the series that matter, as numbers and sparklines, from /v1/metrics every few
// seconds. Rates are differences between two scrapes; p99s come from the request-latency
// histogram's buckets (interpolated as Prometheus's histogram_quantile does).

import { api, explain } from '../api.js';
import { $, bytes, el, fill, say } from '../dom.js';
import { histograms, parseMetrics, quantile, scalar, subtractBuckets } from '../prometheus.js';

const REFRESH_MS = 3000;
const POINTS = 60; // three minutes of history per sparkline
const HISTOGRAM = 'kissvdb_http_request_seconds';
const WRITES = ['state_put_total', 'state_delete_total', 'kissvdb_doc_put_total', 'kissvdb_doc_delete_total', 'vector_ops_total', 'kissvdb_sql_execs_total'];
const SVG = 'http://www.w3.org/2000/svg';

const ms = (s) => (Number.isFinite(s) ? `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)} ms` : '–');
const num = (x, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : '–');

function sparkline(values) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${POINTS} 20`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('class', 'spark');
  const finite = values.filter(Number.isFinite);
  if (finite.length > 1) {
    const max = Math.max(...finite) || 1;
    const start = POINTS - values.length;
    const points = values.map((v, i) => (Number.isFinite(v) ? `${start + i},${(20 - (v / max) * 18 - 1).toFixed(2)}` : null)).filter(Boolean);
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('points', points.join(' '));
    svg.append(line);
  }
  return svg;
}

export function metricsPanel(ctx) {
  const root = $('#panel-metrics');
  const cards = $('#metrics-cards', root);
  const routes = $('#metrics-routes', root);
  const msg = $('#metrics-msg', root);
  let timer = 0;
  let before = null; // {at, parsed}
  const history = new Map();

  function remember(name, value) {
    if (!history.has(name)) history.set(name, []);
    const list = history.get(name);
    list.push(value);
    if (list.length > POINTS) list.shift();
    return list;
  }

  function allRequests(parsed) {
    // Every route's buckets added up: the bounds are the same for every label set.
    let sum = null;
    for (const h of histograms(parsed, HISTOGRAM).values()) {
      sum = sum ? sum.map(([le, c], i) => [le, c + h.buckets[i][1]]) : h.buckets.map(([le, c]) => [le, c]);
    }
    return sum || [];
  }

  async function scrape() {
    try {
      const parsed = parseMetrics(await api('GET', '/v1/metrics'));
      const at = performance.now();
      const figures = [];
      const rate = (names) => {
        if (!before) return NaN;
        const seconds = (at - before.at) / 1000;
        const delta = names.reduce((acc, n) => acc + ((scalar(parsed, n) || 0) - (scalar(before.parsed, n) || 0)), 0);
        return seconds > 0 ? delta / seconds : NaN;
      };
      const fsyncs = rate(['kissvdb_wal_fsync_total']);
      const records = rate(['kissvdb_wal_records_total']);
      const all = allRequests(parsed);
      const windowBuckets = before ? subtractBuckets(all, allRequests(before.parsed)) : all;
      figures.push(['writes/s', rate(WRITES), (v) => num(v)]);
      figures.push(['fsyncs/s', fsyncs, (v) => num(v)]);
      figures.push(['writes per fsync', fsyncs > 0 ? records / fsyncs : NaN, (v) => num(v, 2)]);
      figures.push(['SSE subscribers', scalar(parsed, 'sse_clients'), (v) => num(v, 0)]);
      figures.push(['WAL size', scalar(parsed, 'kissvdb_wal_retained_bytes'), bytes]);
      figures.push(['p99 request (window)', quantile(0.99, windowBuckets), ms]);
      const fragment = document.createDocumentFragment();
      for (const [label, value, format] of figures) {
        fragment.append(el('div', { class: 'card', dataset: { metric: label } },
          el('div', { class: 'label' }, label), el('div', { class: 'value' }, format(value)), sparkline(remember(label, value))));
      }
      cards.replaceChildren(fragment);
      drawRoutes(parsed);
      before = { at, parsed };
      say(msg, `updated ${new Date().toLocaleTimeString()} · every ${REFRESH_MS / 1000} s`, 'info');
    } catch (error) {
      say(msg, explain(error, ctx.role), 'error');
    }
  }

  function drawRoutes(parsed) {
    const list = [...histograms(parsed, HISTOGRAM).values()].filter((h) => h.count > 0);
    list.sort((a, b) => b.count - a.count);
    const fragment = document.createDocumentFragment();
    for (const h of list.slice(0, 15)) {
      fragment.append(el('tr', {},
        el('td', {}, h.labels.method), el('td', { class: 'key' }, h.labels.route), el('td', { class: 'num' }, h.count),
        el('td', { class: 'num' }, ms(quantile(0.5, h.buckets))), el('td', { class: 'num' }, ms(quantile(0.99, h.buckets))),
        el('td', { class: 'num' }, ms(h.sum / h.count))));
    }
    routes.replaceChildren(fragment);
  }

  return {
    reset() { clearInterval(timer); timer = 0; before = null; history.clear(); fill(cards); routes.replaceChildren(); say(msg, ''); },
    shown() { if (!timer) { scrape(); timer = setInterval(scrape, REFRESH_MS); } },
    hidden() { clearInterval(timer); timer = 0; before = null; },
  };
}
