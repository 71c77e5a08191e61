// The change stream in the page: connections that resume, and a bounded, batched event table.
//
// `EventStream` reads /v1/stream through sse.js and hands every event to its listeners; when
// the server ends the stream (restart, retention) it reconnects from the last offset it saw.
// `EventTable` shows events without ever holding more than `maxRows` rows in the DOM: events
// wait in a bounded queue (older ones are dropped from it once more than `maxRows` wait) and
// are drawn in an animation frame at most every RENDER_INTERVAL_MS, newest on top. An event's
// JSON is parsed only when something reads it (a drawn row, the Keys panel), so a replay of a
// million events costs the frame splitting, spread over small tasks, and a few thousand rows.

import { ApiError, authHeaders } from './api.js';
import { brief, clock, el, fill, pretty } from './dom.js';
import { readStream } from './sse.js';

// Every event type the server writes (kissvdb/events.py EVENT_TYPES; a test holds the two
// lists equal). Types the page does not know are shown all the same.
export const EVENT_TYPES = [
  'state_updated', 'state_deleted',
  'doc_upserted', 'doc_deleted',
  'vector_collection_created', 'vector_collection_deleted',
  'vector_added', 'vector_upserted', 'vector_updated', 'vector_deleted',
  'sql_exec',
];
const RECONNECT_MS = 1000;
const RENDER_INTERVAL_MS = 200; // a burst redraws the table five times a second, not sixty
const FLUSH_ROWS_MAX = 100; // rows drawn per redraw: in a burst, the newest; older ones are skipped

/** One frame of the stream; `record` parses its JSON the first time it is read. */
export class StreamEvent {
  constructor(type, offset, data) {
    this.type = type;
    this.offset = offset;
    this.data = data;
    this.parsed = undefined;
  }

  get record() {
    if (this.parsed === undefined) {
      try {
        this.parsed = JSON.parse(this.data);
      } catch {
        this.parsed = { unparsed: this.data };
      }
    }
    return this.parsed;
  }
}

async function openError(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  return new ApiError(response.status, body);
}

/** One /v1/stream connection with filters; reconnects from the last offset after an end. */
export class EventStream {
  constructor({ filters = {}, onEvent, onState }) {
    this.filters = filters;
    this.onEvent = onEvent;
    this.onState = onState || (() => {});
    this.controller = null;
    this.lastId = null;
  }

  url(since) {
    const url = new URL('/v1/stream', location.origin);
    url.searchParams.set('since', String(since));
    for (const [name, value] of Object.entries(this.filters)) {
      if (value !== undefined && value !== null && value !== '') url.searchParams.set(name, value);
    }
    return url;
  }

  /** Start from `since` ('now' or an offset), closing any earlier connection. */
  start(since = 'now') {
    this.stop();
    const controller = this.controller = new AbortController();
    this.lastId = null;
    this.run(since, controller);
  }

  stop() {
    if (this.controller) this.controller.abort();
    this.controller = null;
  }

  get running() {
    return this.controller !== null;
  }

  async run(since, controller) {
    const signal = controller.signal;
    while (!signal.aborted) {
      const from = this.lastId === null ? since : this.lastId;
      try {
        await readStream(this.url(from), {
          headers: authHeaders(), signal, openError,
          onOpen: () => this.onState('open', `streaming from ${from === 'now' ? 'now' : `offset ${from}`}`),
          onFrame: (frame) => this.frame(frame),
        });
        if (signal.aborted) return;
        this.onState('ended', 'the server ended the stream; reconnecting');
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof ApiError && error.status !== 503) {
          this.onState('error', error);
          if (this.controller === controller) this.controller = null;
          return; // 401/403/429/400: retrying cannot help
        }
        this.onState('retry', error);
      }
      await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
    }
  }

  frame({ event, id, data }) {
    if (id !== null) this.lastId = id;
    this.onEvent(new StreamEvent(event, id === null ? null : Number(id), data));
  }
}

/** What an event is about, in a few words: key, collection/id, or collection. */
export function subject(type, record) {
  if (type === 'gap') return `offsets ${record.from_offset}..${record.to_offset} no longer retained`;
  const data = record.data || {};
  if (typeof data.key === 'string') return data.key;
  if (typeof data.collection === 'string') {
    return data.id === undefined ? data.collection : `${data.collection} / ${data.id}`;
  }
  if (typeof data.statement === 'string') return brief(data.statement, 80);
  return '';
}

/** A table of events, bounded and drawn once per animation frame. */
export class EventTable {
  constructor({ tbody, detail, counter, maxRows = 200 }) {
    this.tbody = tbody;
    this.detail = detail;
    this.counter = counter;
    this.maxRows = maxRows;
    this.pending = [];
    this.received = 0;
    this.paused = false;
    this.frame = 0;
    this.timer = 0;
    this.drawnAt = 0;
    this.records = new WeakMap();
    tbody.addEventListener('click', (event) => {
      const row = event.target.closest('tr');
      if (row && this.records.has(row)) this.show(this.records.get(row));
    });
  }

  add(event) {
    this.received += 1;
    const pending = this.pending;
    pending.push(event);
    if (pending.length > 2 * this.maxRows) pending.splice(0, pending.length - this.maxRows);
    this.schedule();
  }

  schedule() {
    if (this.frame || this.timer) return;
    const wait = this.drawnAt + RENDER_INTERVAL_MS - performance.now();
    if (wait > 0) {
      this.timer = setTimeout(() => { this.timer = 0; this.schedule(); }, wait);
    } else {
      this.frame = requestAnimationFrame(() => this.flush());
    }
  }

  setPaused(paused) {
    this.paused = paused;
    if (!paused) this.schedule();
    this.count();
  }

  clear() {
    this.pending = [];
    this.received = 0;
    this.tbody.replaceChildren();
    fill(this.detail);
    this.count();
  }

  flush() {
    this.frame = 0;
    this.drawnAt = performance.now();
    if (this.paused) { this.count(); return; } // counted, not drawn
    const batch = this.pending.length > FLUSH_ROWS_MAX ? this.pending.slice(-FLUSH_ROWS_MAX) : this.pending;
    this.pending = [];
    const fragment = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i -= 1) fragment.append(this.row(batch[i]));
    if (batch.length >= this.maxRows) {
      this.tbody.replaceChildren(fragment);
    } else {
      this.tbody.prepend(fragment);
      const rows = this.tbody.rows;
      for (let extra = rows.length - this.maxRows; extra > 0; extra -= 1) this.tbody.lastElementChild.remove();
    }
    this.count();
  }

  row(event) {
    const { type, offset, record } = event;
    const data = type === 'gap' ? record : record.data;
    const row = el('tr', { class: `ev ev-${type.replace(/[^a-z_]/g, '')}` },
      el('td', { class: 'num' }, offset === null ? '' : offset),
      el('td', {}, record.ts_ms ? clock(record.ts_ms) : ''),
      el('td', { class: 'type' }, type),
      el('td', { class: 'subject' }, subject(type, record)),
      el('td', { class: 'mono' }, brief(data, 200)));
    this.records.set(row, event);
    return row;
  }

  show({ record }) {
    fill(this.detail, el('pre', {}, pretty(record)));
  }

  count() {
    const shown = this.tbody.rows.length;
    const paused = this.paused ? ` · paused (${this.pending.length} waiting)` : '';
    this.counter.textContent = `${this.received} events received · ${shown} shown (newest ${this.maxRows} kept)${paused}`;
  }
}
