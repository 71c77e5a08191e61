// Documents: the collections with their counts, a `find` form with the operators, paging by
// cursor, and one document's JSON with its revision; put and delete (with CAS) for write keys.

import { api, explain, seg } from '../api.js';
import { $, brief, el, fill, pretty, readJson, say } from '../dom.js';

class DocumentsPanel {
  constructor(ctx) {
    this.ctx = ctx;
    const root = this.root = $('#panel-documents');
    this.list = $('#docs-collections', root);
    this.tbody = $('#docs-rows', root);
    this.msg = $('#docs-msg', root);
    this.detail = $('#docs-detail', root);
    this.find = $('#docs-find', root);
    this.form = $('#docs-form', root);
    this.reset();
    this.find.addEventListener('submit', (event) => { event.preventDefault(); this.run(); });
    $('#docs-next', root).addEventListener('click', () => { this.cursors.push(this.nextCursor); this.run(this.nextCursor); });
    $('#docs-prev', root).addEventListener('click', () => { this.cursors.pop(); this.run(this.cursors[this.cursors.length - 1]); });
    $('#docs-refresh', root).addEventListener('click', () => this.loadCollections());
    this.form.addEventListener('submit', (event) => this.put(event));
  }

  reset() {
    this.collection = '';
    this.query = null;
    this.cursors = [null];
    this.nextCursor = null;
    this.list.replaceChildren();
    this.tbody.replaceChildren();
    fill(this.detail);
    say(this.msg, '');
    $('#docs-page', this.root).textContent = '';
  }

  shown() { this.loadCollections(); }

  fail(error, extra = '') { say(this.msg, explain(error, this.ctx.role) + extra, 'error'); }

  async loadCollections() {
    try {
      const { collections } = await api('GET', '/v1/doc');
      const items = collections.map((c) => el('li', {},
        el('button', { type: 'button', class: c.name === this.collection ? 'link current' : 'link',
          on: { click: () => this.choose(c.name) } }, c.name),
        el('span', { class: 'count' }, String(c.count))));
      fill(this.list, items.length ? items : el('li', { class: 'meta' }, 'no collections yet'));
    } catch (error) {
      this.fail(error);
    }
  }

  choose(name) {
    this.collection = name;
    this.find.elements.collection.value = name;
    this.form.elements.collection.value = name;
    this.loadCollections();
    this.run();
  }

  /** The find form as a query: filter (JSON), sort ("-age, name"), limit. */
  formQuery() {
    const f = this.find.elements;
    const query = { filter: readJson(f.filter.value, 'filter', {}), limit: Number(f.limit.value) || 20 };
    const sort = f.sort.value.split(',').map((field) => field.trim()).filter(Boolean);
    if (sort.length) query.sort = sort;
    return query;
  }

  async run(cursor = null) {
    try {
      this.collection = this.find.elements.collection.value;
      if (!this.collection) throw new Error('collection: choose or type one');
      if (cursor === null) {
        this.query = this.formQuery();
        this.cursors = [null];
      }
      const page = await api('POST', `/v1/doc/${seg(this.collection)}/find`, { body: { ...this.query, cursor } });
      this.nextCursor = page.next_cursor;
      this.draw(page.documents);
      say(this.msg, '');
    } catch (error) {
      this.fail(error);
    }
  }

  draw(documents) {
    const fragment = document.createDocumentFragment();
    for (const d of documents) {
      fragment.append(el('tr', { on: { click: () => this.open(d.id) } },
        el('td', { class: 'key' }, d.id), el('td', { class: 'num' }, d.revision), el('td', { class: 'mono' }, brief(d.doc, 200))));
    }
    this.tbody.replaceChildren(fragment);
    const more = this.nextCursor ? ' · more' : '';
    $('#docs-page', this.root).textContent = `${this.collection} · page ${this.cursors.length} · ${documents.length} documents${more}`;
    $('#docs-next', this.root).disabled = !this.nextCursor;
    $('#docs-prev', this.root).disabled = this.cursors.length <= 1;
  }

  async open(id) {
    try {
      const d = await api('GET', `/v1/doc/${seg(this.collection)}/${seg(id)}`);
      const expiry = d.expires_at_ms ? ` · expires ${new Date(d.expires_at_ms).toLocaleString()}` : '';
      fill(this.detail,
        el('h3', {}, `${this.collection} / ${d.id}`),
        el('p', { class: 'meta' }, `revision ${d.revision}`, expiry),
        el('pre', {}, pretty(d.doc)),
        el('p', { dataset: { needs: 'write' }, hidden: !this.ctx.can('write') },
          el('button', { type: 'button', on: { click: () => this.edit(d) } }, 'edit'), ' ',
          el('button', { type: 'button', class: 'danger', on: { click: () => this.remove(d) } }, 'delete')));
    } catch (error) {
      this.fail(error);
    }
  }

  edit(d) {
    const f = this.form.elements;
    f.collection.value = this.collection;
    f.id.value = d.id;
    f.doc.value = pretty(d.doc);
    f.if_revision.value = d.revision;
  }

  async remove(d) {
    try {
      await api('DELETE', `/v1/doc/${seg(this.collection)}/${seg(d.id)}`, { query: { if_revision: d.revision } });
      fill(this.detail);
      this.loadCollections();
      await this.run(); // first: a successful run clears the message line
      say(this.msg, `deleted ${this.collection} / ${d.id}`, 'ok');
    } catch (error) {
      this.fail(error, error.status === 409 ? ' It changed since you opened it.' : '');
    }
  }

  async put(event) {
    event.preventDefault();
    const f = this.form.elements;
    try {
      const doc = readJson(f.doc.value, 'document');
      if (!f.collection.value || !f.id.value) throw new Error('collection and id: enter both');
      const saved = await api('PUT', `/v1/doc/${seg(f.collection.value)}/${seg(f.id.value)}`,
        { body: doc, query: { if_revision: f.if_revision.value } });
      say(this.msg, `saved ${f.collection.value} / ${saved.id} at revision ${saved.revision}`, 'ok');
      f.if_revision.value = saved.revision;
      this.loadCollections();
    } catch (error) {
      this.fail(error);
    }
  }
}

export function documentsPanel(ctx) {
  return new DocumentsPanel(ctx);
}
