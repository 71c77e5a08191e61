// API keys (admin only): list, create with a role (the key is shown once), revoke.

import { api, explain, seg } from '../api.js';
import { $, el, fill, say } from '../dom.js';

export function apiKeysPanel(ctx) {
  const root = $('#panel-apikeys');
  const tbody = $('#apikeys-rows', root);
  const msg = $('#apikeys-msg', root);
  const made = $('#apikeys-new', root);
  const form = $('#apikeys-form', root);

  async function load() {
    try {
      const keys = await api('GET', '/v1/auth/keys');
      const fragment = document.createDocumentFragment();
      for (const k of keys) {
        fragment.append(el('tr', {},
          el('td', {}, k.name),
          el('td', {}, k.role),
          el('td', { class: 'mono' }, k.id),
          el('td', {}, new Date(k.created_at_ms).toLocaleString()),
          el('td', { class: 'actions' }, el('button', { type: 'button', class: 'danger', on: { click: () => revoke(k) } }, 'revoke'))));
      }
      tbody.replaceChildren(fragment);
    } catch (error) {
      say(msg, explain(error, ctx.role), 'error');
    }
  }

  async function create(event) {
    event.preventDefault();
    const f = form.elements;
    try {
      const key = await api('POST', '/v1/auth/keys', { body: { name: f.name.value, role: f.role.value } });
      fill(made,
        el('p', {}, `Key for "${f.name.value}" (${f.role.value}). It is shown only now: copy it.`),
        el('input', { type: 'text', readonly: 'readonly', class: 'secret', value: key.key, size: 60 }));
      made.hidden = false;
      f.name.value = '';
      say(msg, '');
      load();
    } catch (error) {
      say(msg, explain(error, ctx.role), 'error');
    }
  }

  async function revoke(k) {
    if (!window.confirm(`Revoke the key "${k.name}"? Requests with it fail from now on.`)) return;
    try {
      await api('DELETE', `/v1/auth/keys/${seg(k.id)}`);
      say(msg, `revoked ${k.name}`, 'ok');
      load();
    } catch (error) {
      say(msg, explain(error, ctx.role), 'error');
    }
  }

  form.addEventListener('submit', create);
  return {
    reset() { tbody.replaceChildren(); fill(made); made.hidden = true; say(msg, ''); },
    shown: load,
  };
}
