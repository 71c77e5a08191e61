// The Prometheus text format, read: enough for /v1/metrics (HELP, TYPE, samples with labels).

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function unescape(value) {
  return value.replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
}

/** Text -> {samples: Map(name -> [{labels, value}]), help: Map, type: Map}. */
export function parseMetrics(text) {
  const samples = new Map();
  const help = new Map();
  const type = new Map();
  for (const line of text.split('\n')) {
    if (line.startsWith('# HELP ')) {
      const rest = line.slice(7);
      const space = rest.indexOf(' ');
      help.set(rest.slice(0, space), rest.slice(space + 1));
      continue;
    }
    if (line.startsWith('# TYPE ')) {
      const [name, kind] = line.slice(7).split(' ');
      type.set(name, kind);
      continue;
    }
    if (!line || line[0] === '#') continue;
    const m = SAMPLE.exec(line);
    if (!m) continue;
    const labels = {};
    for (const [, name, value] of (m[2] || '').matchAll(LABEL)) labels[name] = unescape(value);
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    if (!samples.has(m[1])) samples.set(m[1], []);
    samples.get(m[1]).push({ labels, value });
  }
  return { samples, help, type };
}

/** The value of an unlabelled series, or NaN. */
export function scalar(parsed, name) {
  const found = parsed.samples.get(name);
  return found && found.length ? found[0].value : NaN;
}

/**
 * Histograms by label set (without `le`): Map(key -> {labels, buckets: [[le, cumulative]], count, sum}).
 */
export function histograms(parsed, name) {
  const out = new Map();
  const keyOf = (labels) => JSON.stringify(Object.entries(labels).filter(([k]) => k !== 'le').sort());
  const get = (labels) => {
    const key = keyOf(labels);
    if (!out.has(key)) {
      const { le, ...rest } = labels;
      out.set(key, { labels: rest, buckets: [], count: 0, sum: 0 });
    }
    return out.get(key);
  };
  for (const { labels, value } of parsed.samples.get(`${name}_bucket`) || []) {
    get(labels).buckets.push([labels.le === '+Inf' ? Infinity : Number(labels.le), value]);
  }
  for (const { labels, value } of parsed.samples.get(`${name}_count`) || []) get(labels).count = value;
  for (const { labels, value } of parsed.samples.get(`${name}_sum`) || []) get(labels).sum = value;
  for (const h of out.values()) h.buckets.sort((a, b) => a[0] - b[0]);
  return out;
}

/** Bucket counts of `now` minus `before` (same bounds): the requests between two scrapes. */
export function subtractBuckets(now, before) {
  if (!before) return now;
  return now.map(([le, count], i) => [le, count - (before[i] ? before[i][1] : 0)]);
}

/**
 * The q-quantile from cumulative buckets, interpolated inside the bucket as Prometheus's
 * histogram_quantile does; NaN without observations. Past the last finite bound: that bound.
 */
export function quantile(q, buckets) {
  if (!buckets.length) return NaN;
  const total = buckets[buckets.length - 1][1];
  if (!(total > 0)) return NaN;
  const rank = q * total;
  let prevBound = 0;
  let prevCount = 0;
  for (const [bound, count] of buckets) {
    if (count >= rank) {
      if (bound === Infinity) return prevBound;
      const inBucket = count - prevCount;
      return inBucket > 0 ? prevBound + (bound - prevBound) * ((rank - prevCount) / inBucket) : bound;
    }
    prevBound = bound;
    prevCount = count;
  }
  return prevBound;
}
