// Documents: the collections with their counts, a `find` form with the operators, paging by
// cursor, and one document's JSON with its revision; put and delete (with CAS) for write keys.

import { api, explain, seg } from '../api.js';
import { $, brief, el, fill, pretty, readJson, say } from '../dom.js';

export function documentsPanel(ctx) {
  const root = $('#panel-documents');
  const list = $('#docs-collections', root);
  const tbody = $('#docs-rows', root);
  const msg = $('#docs-msg', root);
  const detail = $('#docs-detail', root);
  const find = $('#docs-find', root);
  const form = $('#docs-form', root);
  let collection = '';
  let query = null;
  let cursors = [null];
  let nextCursor = null;

  async function loadCollections() {
    try {
      const { collections } = await api('GET', '/v1/doc');
      const fragment = document.createDocumentFragment();
      for (const c of collections) {
        fragment.append(el('li', {},
          el('button', { type: 'button', class: c.name === collection ? 'link current' : 'link',
            on: { click: () => choose(c.name) } }, c.name),
          el('span', { class: 'count' }, String(c.count))));
      }
      list.replaceChildren(fragment);
      if (!collections.length) fill(list, el('li', { class: 'meta' }, 'no collections yet'));
    } catch (error) {
      say(msg, explain(error, ctx.role), 'error');
    }
  }

  function choose(name) {
    collection = name;
    find.elements.collection.value = name;
    form.elements.collection.value = name;
    loadCollections();
    run();
  }

  async function run(cursor = null) {
    try {
      const f = find.elements;
      collection = f.collection.value;
      if (!collection) throw new Error('collection: choose or type one');
      if (cursor === null) {
        query = { filter: readJson(f.filter.value, 'filter', {}), limit: Number(f.limit.value) || 20 };
        const sort = f.sort.value.split(',').map((field) => field.trim()).filter(Boolean);
        if (sort.length) query.sort = sort;
        cursors = [null];
      }
      const page = await api('POST', `/v1/doc/${seg(collection)}/find`, { body: { ...query, cursor } });
      nextCursor = page.next_cursor;
      const fragment = document.createDocumentFragment();
      for (const d of page.documents) {
        fragment.append(el('tr', { on: { click: () => open(d.id) } },
          el('td', { class: 'key' }, d.id),
          el('td', { class: 'num' }, d.revision),
          el('td', { class: 'mono' }, brief(d.doc, 200))));
      }
      tbody.replaceChildren(fragment);
      $('#docs-page', root).textContent = `${collection} · page ${cursors.length} · ${page.documents.length} documents${nextCursor ? ' · more' : ''}`;
      $('#docs-next', root).disabled = !nextCursor;
      $('#docs-prev', root).disabled = cursors.length <= 1;
      say(msg, '');
    } catch (error) {
      say(msg, explain(error, ctx.role), 'error');
    }
  }

  async function open(id) {
    try {
      const d = await api('GET', `/v1/doc/${seg(collection)}/${seg(id)}`);
      fill(detail,
        el('h3', {}, `${collection} / ${d.id}`),
        el('p', { class: 'meta' }, `revision ${d.revision}`, d.expires_at_ms ? ` · expires ${new Date(d.expires_at_ms).toLocaleString()}` : ''),
        el('pre', {}, pretty(d.doc)),
        el('p', { dataset: { needs: 'write' }, hidden: !ctx.can('write') },
          el('button', { type: 'button', on: { click: () => edit(d) } }, 'edit'), ' ',
          el('button', { type: 'button', class: 'danger', on: { click: () => remove(d) } }, 'delete')));
    } catch (error) {
      say(msg, explain(error, ctx.role), 'error');
    }
  }

  function edit(d) {
    form.elements.collection.value = collection;
    form.elements.id.value = d.id;
    form.elements.doc.value = pretty(d.doc);
    form.elements.if_revision.value = d.revision;
  }

  async function remove(d) {
    try {
      await api('DELETE', `/v1/doc/${seg(collection)}/${seg(d.id)}`, { query: { if_revision: d.revision } });
      say(msg, `deleted ${collection} / ${d.id}`, 'ok');
      fill(detail);
      run();
      loadCollections();
    } catch (error) {
      say(msg, explain(error, ctx.role) + (error.status === 409 ? ' It changed since you opened it.' : ''), 'error');
    }
  }

  async function put(event) {
    event.preventDefault();
    const f = form.elements;
    try {
      const doc = readJson(f.doc.value, 'document');
      if (!f.collection.value || !f.id.value) throw new Error('collection and id: enter both');
      const saved = await api('PUT', `/v1/doc/${seg(f.collection.value)}/${seg(f.id.value)}`,
        { body: doc, query: { if_revision: f.if_revision.value } });
      say(msg, `saved ${f.collection.value} / ${saved.id} at revision ${saved.revision}`, 'ok');
      f.if_revision.value = saved.revision;
      loadCollections();
    } catch (error) {
      say(msg, explain(error, ctx.role), 'error');
    }
  }

  find.addEventListener('submit', (event) => { event.preventDefault(); run(); });
  $('#docs-next', root).addEventListener('click', () => { cursors.push(nextCursor); run(nextCursor); });
  $('#docs-prev', root).addEventListener('click', () => {
    cursors.pop();
    run(cursors[cursors.length - 1]);
  });
  $('#docs-refresh', root).addEventListener('click', loadCollections);
  form.addEventListener('submit', put);

  return {
    reset() {
      collection = ''; cursors = [null]; nextCursor = null;
      list.replaceChildren(); tbody.replaceChildren(); fill(detail); say(msg, '');
      $('#docs-page', root).textContent = '';
    },
    shown() { loadCollections(); },
  };
}
