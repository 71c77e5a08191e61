// Keys: prefix search, paging by cursor (start_after), live updates from the change stream,
// TTL as time left, values pretty-printed, put and delete with compare-and-set.

import { api, explain, seg } from '../api.js';
import { $, brief, el, fill, pretty, readJson, say, timeLeft } from '../dom.js';

const PAGE = 100;
const TICK_MS = 1000; // TTL cells count down
// Keys under vector: are collection manifests, written by the server only (403 to users).
const isReadOnly = (key) => key.startsWith('vector:');

class KeysPanel {
  constructor(ctx) {
    this.ctx = ctx;
    const root = this.root = $('#panel-keys');
    this.tbody = $('#keys-rows', root);
    this.msg = $('#keys-msg', root);
    this.detail = $('#keys-detail', root);
    this.form = $('#keys-form', root);
    this.reset();
    $('#keys-search', root).addEventListener('submit', (event) => {
      event.preventDefault();
      this.prefix = $('#keys-prefix', root).value;
      this.cursors = [null];
      this.load(null);
    });
    $('#keys-next', root).addEventListener('click', () => this.next());
    $('#keys-prev', root).addEventListener('click', () => this.previous());
    this.form.addEventListener('submit', (event) => this.put(event));
    setInterval(() => this.tick(), TICK_MS);
  }

  reset() {
    this.prefix = '';
    this.cursors = [null]; // start_after of each page seen, for "previous"
    this.items = [];       // the page shown, in key order
    this.full = false;     // the page had PAGE items (more may follow)
    this.tbody.replaceChildren();
    fill(this.detail);
    say(this.msg, '');
    $('#keys-page', this.root).textContent = '';
  }

  connected() { this.load(null); }

  fail(error, extra = '') { say(this.msg, explain(error, this.ctx.role) + extra, 'error'); }

  async load(startAfter) {
    try {
      this.items = await api('GET', '/v1/state', { query: { prefix: this.prefix, limit: PAGE, start_after: startAfter } });
      this.full = this.items.length === PAGE;
      this.draw();
      say(this.msg, '');
    } catch (error) {
      this.fail(error);
    }
  }

  next() {
    if (!this.items.length) return;
    this.cursors.push(this.items[this.items.length - 1].key);
    this.load(this.cursors[this.cursors.length - 1]);
  }

  previous() {
    if (this.cursors.length > 1) this.cursors.pop();
    this.load(this.cursors[this.cursors.length - 1]);
  }

  draw() {
    const { items, cursors, prefix } = this;
    const fragment = document.createDocumentFragment();
    for (const item of items) fragment.append(this.row(item));
    this.tbody.replaceChildren(fragment);
    const n = cursors.length;
    $('#keys-page', this.root).textContent = items.length
      ? `page ${n} · ${items.length} keys · ${brief(items[0].key, 40)} … ${brief(items[items.length - 1].key, 40)}`
      : `page ${n} · no keys${prefix ? ` under ${JSON.stringify(prefix)}` : ''}`;
    $('#keys-prev', this.root).disabled = n <= 1;
    $('#keys-next', this.root).disabled = !this.full;
  }

  row(item) {
    const hidden = !this.ctx.can('write');
    const button = (label, cls, action) => el('button', { type: 'button', class: cls, dataset: { needs: 'write' }, hidden,
      on: { click: (event) => { event.stopPropagation(); action(item); } } }, label);
    return el('tr', { dataset: { key: item.key }, on: { click: () => this.show(item) } },
      el('td', { class: 'key' }, item.key),
      el('td', { class: 'mono' }, brief(item.value)),
      el('td', { class: 'num' }, item.revision),
      el('td', { class: 'ttl', dataset: { expires: item.expires_at_ms ?? '' } }, timeLeft(item.expires_at_ms)),
      el('td', { class: 'actions' }, ...(isReadOnly(item.key)
        ? [el('span', { class: 'meta', title: 'a vector collection\'s manifest: the server refuses writes to vector: keys' }, 'read-only')]
        : [button('edit', null, (it) => this.edit(it)), button('delete', 'danger', (it) => this.remove(it))])));
  }

  show(item) {
    const expiry = item.expires_at_ms
      ? ` · expires ${new Date(item.expires_at_ms).toLocaleString()} (${timeLeft(item.expires_at_ms)})` : ' · no expiry';
    fill(this.detail,
      el('h3', {}, item.key),
      el('p', { class: 'meta' }, `revision ${item.revision} · last written at offset ${item.mod_offset}`, expiry),
      el('pre', {}, pretty(item.value)));
  }

  edit(item) {
    const f = this.form.elements;
    f.key.value = item.key;
    f.value.value = pretty(item.value);
    f.if_revision.value = item.revision;
    f.ttl_ms.value = '';
    f.value.focus();
  }

  async remove(item) {
    try {
      await api('DELETE', `/v1/state/${seg(item.key)}`, { query: { if_revision: item.revision } });
      say(this.msg, `deleted ${item.key}`, 'ok');
      this.removeKey(item.key);
    } catch (error) {
      this.fail(error, error.status === 409 ? ' It changed since this page was loaded: refresh.' : '');
    }
  }

  async put(event) {
    event.preventDefault();
    const f = this.form.elements;
    try {
      const body = { value: readJson(f.value.value, 'value') };
      if (f.ttl_ms.value) body.ttl_ms = Number(f.ttl_ms.value);
      if (f.if_revision.value) body.if_revision = Number(f.if_revision.value);
      if (!f.key.value) throw new Error('key: enter a key');
      const done = await api('PUT', `/v1/state/${seg(f.key.value)}`, { body });
      say(this.msg, `saved ${done.key} at revision ${done.revision}`, 'ok');
      f.if_revision.value = done.revision;
    } catch (error) {
      this.fail(error);
    }
  }

  // -- live updates: only what belongs on the page shown -----------------------------------

  onPage(key) {
    const { items, cursors } = this;
    if (!key.startsWith(this.prefix)) return false;
    const after = cursors[cursors.length - 1];
    if (after !== null && !(key > after)) return false;
    return !this.full || (items.length > 0 && key <= items[items.length - 1].key);
  }

  rowOf(key) {
    return this.tbody.querySelector(`tr[data-key="${CSS.escape(key)}"]`);
  }

  removeKey(key) {
    const i = this.items.findIndex((it) => it.key === key);
    if (i < 0) return;
    this.items.splice(i, 1);
    const tr = this.rowOf(key);
    if (tr) tr.remove();
  }

  onEvent({ type, offset, record }) {
    const data = record.data || {};
    if (type === 'state_deleted') this.removeKey(data.key);
    if (type !== 'state_updated' || !this.onPage(data.key)) return;
    const item = { key: data.key, value: data.value, revision: data.revision, expires_at_ms: data.expires_at_ms, mod_offset: offset };
    // JS compares strings by UTF-16 units, the server by UTF-8 bytes: the same order except
    // between astral characters and U+E000..U+FFFF, where a live insert may sit one row off.
    const items = this.items;
    let i = items.findIndex((it) => it.key >= item.key);
    if (i < 0) i = items.length;
    const row = this.row(item);
    if (items[i] && items[i].key === item.key) {
      items[i] = item;
      const old = this.rowOf(item.key);
      if (old) old.replaceWith(row);
    } else {
      items.splice(i, 0, item);
      this.tbody.insertBefore(row, this.tbody.rows[i] || null);
      row.classList.add('fresh');
    }
  }

  tick() {
    const now = Date.now();
    for (const cell of this.tbody.querySelectorAll('td.ttl')) {
      if (cell.dataset.expires) cell.textContent = timeLeft(Number(cell.dataset.expires), now);
    }
  }
}

export function keysPanel(ctx) {
  return new KeysPanel(ctx);
}
