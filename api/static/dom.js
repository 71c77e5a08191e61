// Building the page from data without ever parsing data as HTML.
//
// Every value that came from the server (keys, documents, metas, error messages, SQL cells)
// reaches the DOM as a text node or an attribute set through the DOM API: nothing here calls
// innerHTML, insertAdjacentHTML or document.write, so a value like `<img onerror=...>` is shown
// as those characters and never runs. The Content-Security-Policy (no inline script) is the
// second wall.

/** el('td', {class: 'num', title: t}, 'text', childNode, ...): a new element. Strings and
 *  numbers become text nodes; null/undefined/false children are skipped. `on*` attributes
 *  are refused: handlers are attached with addEventListener (the `on` option). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'on') {
      for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    } else if (name.startsWith('on')) {
      throw new Error(`el(): inline handler ${name} refused`);
    } else if (name === 'dataset') {
      Object.assign(node.dataset, value);
    } else if (name === 'hidden' || name === 'disabled' || name === 'checked' || name === 'selected') {
      node[name] = Boolean(value);
    } else if (name === 'value') {
      node.value = value;
    } else {
      node.setAttribute(name, String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace every child of `node` with `children` (text or nodes). */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/** JSON as indented text, for <pre> blocks. */
export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

/** JSON on one line, cut to `max` characters (table cells). */
export function brief(value, max = 160) {
  const text = typeof value === 'string' ? JSON.stringify(value) : JSON.stringify(value);
  if (text === undefined) return '';
  return text.length > max ? text.slice(0, max - 1) + '…' : text;
}

/** "3m 20s left", "expired", or "" for no expiry, from an absolute epoch ms. */
export function timeLeft(expiresAtMs, nowMs = Date.now()) {
  if (expiresAtMs === null || expiresAtMs === undefined) return '';
  const left = expiresAtMs - nowMs;
  if (left <= 0) return 'expired';
  const s = Math.floor(left / 1000);
  if (s < 60) return `${s}s left`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s left`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m left`;
  return `${Math.floor(h / 24)}d ${h % 24}h left`;
}

/** Local time of day with milliseconds, for event rows. */
export function clock(tsMs) {
  const d = new Date(tsMs);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function bytes(n) {
  if (!Number.isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** Parse a textarea's JSON, or throw an Error naming the field. Empty -> `fallback`. */
export function readJson(text, field, fallback = undefined) {
  if (!text.trim()) {
    if (fallback !== undefined) return fallback;
    throw new Error(`${field}: enter JSON`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${field}: not valid JSON (${error.message})`);
  }
}

/** A table body's rows from items: `cells(item)` returns the row's cells (text or nodes). */
export function rows(tbody, items, cells, rowAttrs = () => ({})) {
  const fragment = document.createDocumentFragment();
  for (const item of items) {
    fragment.append(el('tr', rowAttrs(item), ...cells(item).map((c) => (c instanceof Node && c.tagName === 'TD' ? c : el('td', {}, c)))));
  }
  tbody.replaceChildren(fragment);
}

/** A message line: kind is 'error', 'ok' or 'info'. */
export function say(node, text, kind = 'info') {
  node.className = `msg ${kind}`;
  node.textContent = text;
  node.hidden = !text;
}
