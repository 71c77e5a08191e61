// Keys: prefix search, paging by cursor (start_after), live updates from the change stream,
// TTL as time left, values pretty-printed, put and delete with compare-and-set.

import { api, explain, seg } from '../api.js';
import { $, brief, el, fill, pretty, readJson, say, timeLeft } from '../dom.js';

const PAGE = 100;

export function keysPanel(ctx) {
  const root = $('#panel-keys');
  const tbody = $('#keys-rows', root);
  const msg = $('#keys-msg', root);
  const detail = $('#keys-detail', root);
  const pageInfo = $('#keys-page', root);
  const form = $('#keys-form', root);
  let prefix = '';
  let cursors = [null]; // start_after of each page seen, for "previous"
  let items = [];       // the page shown, in key order
  let full = false;     // the page had PAGE items (more may follow)

  async function load(startAfter) {
    try {
      const page = await api('GET', '/v1/state', { query: { prefix, limit: PAGE, start_after: startAfter } });
      items = page;
      full = page.length === PAGE;
      draw();
      say(msg, '');
    } catch (error) {
      say(msg, explain(error, ctx.role), 'error');
    }
  }

  function draw() {
    const fragment = document.createDocumentFragment();
    for (const item of items) fragment.append(row(item));
    tbody.replaceChildren(fragment);
    const n = cursors.length;
    pageInfo.textContent = items.length
      ? `page ${n} · ${items.length} keys · ${brief(items[0].key, 40)} … ${brief(items[items.length - 1].key, 40)}`
      : `page ${n} · no keys${prefix ? ` under ${JSON.stringify(prefix)}` : ''}`;
    $('#keys-prev', root).disabled = n <= 1;
    $('#keys-next', root).disabled = !full;
  }

  function row(item) {
    const actions = el('td', { class: 'actions' },
      el('button', { type: 'button', dataset: { needs: 'write' }, hidden: !ctx.can('write'),
        on: { click: (e) => { e.stopPropagation(); edit(item); } } }, 'edit'),
      el('button', { type: 'button', class: 'danger', dataset: { needs: 'write' }, hidden: !ctx.can('write'),
        on: { click: (e) => { e.stopPropagation(); remove(item); } } }, 'delete'));
    const tr = el('tr', { dataset: { key: item.key }, on: { click: () => show(item) } },
      el('td', { class: 'key' }, item.key),
      el('td', { class: 'mono' }, brief(item.value)),
      el('td', { class: 'num' }, item.revision),
      el('td', { class: 'ttl', dataset: { expires: item.expires_at_ms ?? '' } }, timeLeft(item.expires_at_ms)),
      actions);
    return tr;
  }

  function show(item) {
    fill(detail,
      el('h3', {}, item.key),
      el('p', { class: 'meta' }, `revision ${item.revision} · last written at offset ${item.mod_offset}`,
        item.expires_at_ms ? ` · expires ${new Date(item.expires_at_ms).toLocaleString()} (${timeLeft(item.expires_at_ms)})` : ' · no expiry'),
      el('pre', {}, pretty(item.value)));
  }

  function edit(item) {
    form.elements.key.value = item.key;
    form.elements.value.value = pretty(item.value);
    form.elements.if_revision.value = item.revision;
    form.elements.ttl_ms.value = '';
    form.elements.value.focus();
  }

  async function remove(item) {
    try {
      await api('DELETE', `/v1/state/${seg(item.key)}`, { query: { if_revision: item.revision } });
      say(msg, `deleted ${item.key}`, 'ok');
      removeKey(item.key);
    } catch (error) {
      const stale = error.status === 409 ? ' It changed since this page was loaded: refresh.' : '';
      say(msg, explain(error, ctx.role) + stale, 'error');
    }
  }

  async function put(event) {
    event.preventDefault();
    const f = form.elements;
    try {
      const body = { value: readJson(f.value.value, 'value') };
      if (f.ttl_ms.value) body.ttl_ms = Number(f.ttl_ms.value);
      if (f.if_revision.value) body.if_revision = Number(f.if_revision.value);
      if (!f.key.value) throw new Error('key: enter a key');
      const done = await api('PUT', `/v1/state/${seg(f.key.value)}`, { body });
      say(msg, `saved ${done.key} at revision ${done.revision}`, 'ok');
      f.if_revision.value = done.revision;
    } catch (error) {
      say(msg, explain(error, ctx.role), 'error');
    }
  }

  // -- live updates: only what belongs on the page shown ------------------------------------

  const onPage = (key) => {
    if (!key.startsWith(prefix)) return false;
    const after = cursors[cursors.length - 1];
    if (after !== null && !(key > after)) return false;
    return !full || (items.length && key <= items[items.length - 1].key);
  };

  function removeKey(key) {
    const i = items.findIndex((it) => it.key === key);
    if (i < 0) return;
    items.splice(i, 1);
    const tr = tbody.querySelector(`tr[data-key="${CSS.escape(key)}"]`);
    if (tr) tr.remove();
  }

  function onEvent({ type, offset, record }) {
    const data = record.data || {};
    if (type === 'state_deleted') removeKey(data.key);
    if (type !== 'state_updated' || !onPage(data.key)) return;
    const item = { key: data.key, value: data.value, revision: data.revision, expires_at_ms: data.expires_at_ms, mod_offset: offset };
    // JS compares strings by UTF-16 units, the server by UTF-8 bytes: the same order except
    // between astral characters and U+E000..U+FFFF, where a live insert may sit one row off.
    let i = items.findIndex((it) => it.key >= item.key);
    if (i < 0) i = items.length;
    const newRow = row(item);
    if (items[i] && items[i].key === item.key) {
      items[i] = item;
      const old = tbody.querySelector(`tr[data-key="${CSS.escape(item.key)}"]`);
      if (old) old.replaceWith(newRow);
    } else {
      items.splice(i, 0, item);
      const before = tbody.rows[i];
      tbody.insertBefore(newRow, before || null);
      newRow.classList.add('fresh');
    }
  }

  function tick() {
    const now = Date.now();
    for (const cell of tbody.querySelectorAll('td.ttl')) {
      if (cell.dataset.expires) cell.textContent = timeLeft(Number(cell.dataset.expires), now);
    }
  }

  $('#keys-search', root).addEventListener('submit', (event) => {
    event.preventDefault();
    prefix = $('#keys-prefix', root).value;
    cursors = [null];
    load(null);
  });
  $('#keys-next', root).addEventListener('click', () => {
    if (!items.length) return;
    cursors.push(items[items.length - 1].key);
    load(cursors[cursors.length - 1]);
  });
  $('#keys-prev', root).addEventListener('click', () => {
    if (cursors.length > 1) cursors.pop();
    load(cursors[cursors.length - 1]);
  });
  form.addEventListener('submit', put);
  setInterval(tick, 1000);

  return {
    reset() {
      items = []; cursors = [null]; full = false;
      tbody.replaceChildren(); fill(detail); say(msg, ''); pageInfo.textContent = '';
    },
    connected() { load(null); },
    onEvent,
  };
}
