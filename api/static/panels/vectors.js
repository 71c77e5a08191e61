// Vectors: collections with count, dim, metric and index kind (and the DiskANN status when the
// server reports one); search by an id ("more like this") or a pasted vector, with filters;
// hits with scores and metas.

import { api, explain, seg } from '../api.js';
import { $, brief, el, fill, pretty, readJson, say } from '../dom.js';

/** The DiskANN status of a DISKANN collection (`info.diskann`, see GET /v1/vector/{c}/diskann/status):
 * building (rows done / total), serving (when built, rows in the graph, rows written since), or not built. */
function diskannStatus(info) {
  const d = info.diskann;
  if (d === undefined || d === null) return '';
  if (typeof d !== 'object') return String(d);
  const p = d.progress;
  const state = d.building ? `building${p ? ` ${p.rows_done}/${p.rows_total} rows` : ''}`
    : (d.available ? 'serving' : 'not built');
  return [state,
    d.available && d.last_built_ms ? `built ${new Date(d.last_built_ms).toLocaleString()}` : '',
    d.available ? `${d.rows} rows in the graph` : '',
    d.unindexed_rows ? `${d.unindexed_rows} since` : ''].filter(Boolean).join(' · ') || brief(d, 80);
}

export function vectorsPanel(ctx) {
  const root = $('#panel-vectors');
  const tbody = $('#vec-collections', root);
  const hits = $('#vec-hits', root);
  const msg = $('#vec-msg', root);
  const detail = $('#vec-detail', root);
  const form = $('#vec-search', root);

  async function load() {
    try {
      const { collections } = await api('GET', '/v1/vector');
      const fragment = document.createDocumentFragment();
      for (const c of collections) {
        fragment.append(el('tr', { on: { click: () => choose(c.collection) } },
          el('td', { class: 'key' }, c.collection),
          el('td', { class: 'num' }, c.live_count),
          el('td', { class: 'num' }, c.dim),
          el('td', {}, c.metric ?? '–'),
          el('td', {}, c.index ?? ''),
          el('td', {}, c.status ?? ''),
          el('td', { class: 'diskann' }, diskannStatus(c))));
      }
      tbody.replaceChildren(fragment);
      say(msg, collections.length ? '' : 'no vector collections yet', 'info');
    } catch (error) {
      say(msg, explain(error, ctx.role), 'error');
    }
  }

  async function choose(name) {
    form.elements.collection.value = name;
    try {
      const info = await api('GET', `/v1/vector/${seg(name)}`);
      const status = diskannStatus(info);
      fill(detail, el('h3', {}, name), status ? el('p', { class: 'meta' }, `DiskANN: ${status}`) : null,
        el('pre', {}, pretty(info)));
    } catch (error) {
      say(msg, explain(error, ctx.role), 'error');
    }
  }

  async function search(event) {
    event.preventDefault();
    const f = form.elements;
    try {
      const name = f.collection.value;
      if (!name) throw new Error('collection: choose one above');
      let vector;
      if (f.by.value === 'id') {
        if (!f.id.value) throw new Error('id: enter the id of a vector to find neighbours of');
        vector = (await api('GET', `/v1/vector/${seg(name)}/get`, { query: { id: f.id.value } })).vector;
      } else {
        vector = readJson(f.vector.value, 'vector');
        if (!Array.isArray(vector)) throw new Error('vector: paste a JSON array of numbers');
      }
      const body = { vector, k: Number(f.k.value) || 10, include_meta: true };
      const filters = readJson(f.filters.value, 'filters', null);
      if (filters !== null) body.filters = filters;
      const answer = await api('POST', `/v1/vector/${seg(name)}/search`, { body });
      const fragment = document.createDocumentFragment();
      for (const hit of answer.hits) {
        fragment.append(el('tr', { on: { click: () => fill(detail, el('h3', {}, hit.id), el('pre', {}, pretty(hit.meta))) } },
          el('td', { class: 'key' }, hit.id),
          el('td', { class: 'num' }, hit.score.toFixed(4)),
          el('td', { class: 'mono' }, brief(hit.meta, 200))));
      }
      hits.replaceChildren(fragment);
      say(msg, `${answer.hits.length} hits`, 'ok');
    } catch (error) {
      say(msg, explain(error, ctx.role), 'error');
    }
  }

  form.addEventListener('submit', search);
  form.elements.by.forEach((radio) => radio.addEventListener('change', () => {
    $('#vec-by-id', root).hidden = form.elements.by.value !== 'id';
    $('#vec-by-vector', root).hidden = form.elements.by.value === 'id';
  }));
  $('#vec-refresh', root).addEventListener('click', load);

  return {
    reset() { tbody.replaceChildren(); hits.replaceChildren(); fill(detail); say(msg, ''); },
    shown: load,
  };
}
