// Stream: the change stream as a table. Starts at "now"; can replay from an offset. Filters
// by type, key prefix and collection (sent to the server, so filtered-out events never cross
// the wire). Pause, clear, and a bounded number of rows (stream.js EventTable).

import { explain } from '../api.js';
import { $, $$, el, say } from '../dom.js';
import { EVENT_TYPES, EventStream, EventTable } from '../stream.js';

// Rows kept in the DOM. Measured on the 300k replay (tests/browser/test_stream.py): the
// browser's work per redraw grows with the rows in the table; at 200 no task passed 65 ms,
// at 500 they reached 150-300 ms on a 2-core box.
const MAX_ROWS = 200;

export function streamPanel(ctx) {
  const root = $('#panel-stream');
  const form = $('#stream-form', root);
  const msg = $('#stream-msg', root);
  const typeBox = $('#stream-types', root);
  for (const type of EVENT_TYPES) {
    typeBox.append(el('label', { class: 'chip' }, el('input', { type: 'checkbox', name: 'type', value: type, checked: true }), type));
  }
  const table = new EventTable({
    tbody: $('#stream-rows', root), detail: $('#stream-detail', root), counter: $('#stream-count', root), maxRows: MAX_ROWS,
  });
  const stream = new EventStream({
    onEvent: (event) => table.add(event),
    onState: (state, detail) => {
      if (state === 'open') say(msg, detail, 'ok');
      else if (state === 'error') { say(msg, explain(detail, ctx.role), 'error'); button(); }
      else say(msg, typeof detail === 'string' ? detail : `stream interrupted (${detail.message}); reconnecting`, 'info');
    },
  });

  function filters() {
    const f = form.elements;
    const boxes = $$('input[name=type]', typeBox);
    const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
    return {
      types: chosen.length === boxes.length ? undefined : chosen.join(','),
      key_prefix: f.key_prefix.value || undefined,
      collection: f.collection.value || undefined,
    };
  }

  function start() {
    const f = form.elements;
    const since = f.from.value === 'offset' ? String(Math.max(0, Number(f.offset.value) || 0)) : 'now';
    table.clear();
    stream.filters = filters();
    stream.start(since);
    button();
  }

  function button() {
    $('#stream-stop', root).textContent = stream.running ? 'Stop' : 'Start';
  }

  form.addEventListener('submit', (event) => { event.preventDefault(); start(); });
  $('#stream-stop', root).addEventListener('click', () => {
    if (stream.running) { stream.stop(); say(msg, 'stopped', 'info'); } else start();
    button();
  });
  $('#stream-pause', root).addEventListener('click', (event) => {
    table.setPaused(!table.paused);
    event.target.textContent = table.paused ? 'Resume' : 'Pause';
  });
  $('#stream-clear', root).addEventListener('click', () => table.clear());
  form.elements.offset.addEventListener('focus', () => { form.elements.from.value = 'offset'; });

  return {
    reset() { stream.stop(); table.clear(); say(msg, ''); button(); },
    connected() { start(); },
    stop() { stream.stop(); button(); },
  };
}
