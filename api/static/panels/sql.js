// SQL: a console on /v1/sql/query (read keys) and /v1/sql/exec (write keys only); rows as a
// table, errors with SQLite's message.

import { api, explain } from '../api.js';
import { $, el, readJson, say } from '../dom.js';

function cell(value) {
  if (value === null) return el('td', { class: 'null' }, 'NULL');
  if (typeof value === 'object') return el('td', { class: 'mono' }, JSON.stringify(value));
  return el('td', { class: typeof value === 'number' ? 'num' : '' }, String(value));
}

export function sqlPanel(ctx) {
  const root = $('#panel-sql');
  const form = $('#sql-form', root);
  const table = $('#sql-result', root);
  const msg = $('#sql-msg', root);

  function draw(rows) {
    const columns = [];
    for (const row of rows) for (const name of Object.keys(row)) if (!columns.includes(name)) columns.push(name);
    const thead = el('thead', {}, el('tr', {}, columns.map((c) => el('th', {}, c))));
    const tbody = el('tbody', {}, rows.map((row) => el('tr', {}, columns.map((c) => cell(row[c] === undefined ? null : row[c])))));
    table.replaceChildren(thead, tbody);
  }

  async function submit(event) {
    event.preventDefault();
    const exec = event.submitter && event.submitter.value === 'exec';
    const f = form.elements;
    try {
      const body = { sql: f.sql.value, params: readJson(f.params.value, 'params', []) };
      if (exec) {
        const done = await api('POST', '/v1/sql/exec', { body });
        table.replaceChildren();
        say(msg, `${done.rows_affected} rows affected`, 'ok');
      } else {
        const started = performance.now();
        const { rows } = await api('POST', '/v1/sql/query', { body });
        draw(rows);
        say(msg, `${rows.length} rows in ${Math.round(performance.now() - started)} ms`, 'ok');
      }
    } catch (error) {
      table.replaceChildren();
      say(msg, explain(error, ctx.role), 'error');
    }
  }

  form.addEventListener('submit', submit);
  return {
    reset() { table.replaceChildren(); say(msg, ''); },
  };
}
