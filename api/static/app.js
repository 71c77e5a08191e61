// The dashboard: connects with a key, learns its role, and runs the panels.
//
// Connect clears every panel first (a wrong key never leaves the last key's data on screen),
// asks /v1/auth/whoami for the role, hides every control the role may not use (elements
// marked data-needs="write" or "admin"), then starts the panels. Two change-stream
// connections at most: the live feed below (key changes, for the Keys panel) and the Stream
// panel's own.

import { NO_KEY_HELP, allowed, api, explain, getKey, setKey } from './api.js';
import { $, $$, say } from './dom.js';
import { EventStream } from './stream.js';
import { apiKeysPanel } from './panels/apikeys.js';
import { documentsPanel } from './panels/documents.js';
import { keysPanel } from './panels/keys.js';
import { metricsPanel } from './panels/metrics.js';
import { sqlPanel } from './panels/sql.js';
import { streamPanel } from './panels/stream.js';
import { vectorsPanel } from './panels/vectors.js';

const HEALTH_MS = 5000;

const ctx = {
  role: null,
  can(needs) { return allowed(this.role, needs); },
};

const panels = {
  keys: keysPanel(ctx),
  documents: documentsPanel(ctx),
  vectors: vectorsPanel(ctx),
  sql: sqlPanel(ctx),
  stream: streamPanel(ctx),
  metrics: metricsPanel(ctx),
  apikeys: apiKeysPanel(ctx),
};
let current = null;

const live = new EventStream({
  filters: { types: 'state_updated,state_deleted' },
  onEvent: (event) => panels.keys.onEvent(event),
  onState: (state, detail) => {
    if (state === 'error') say($('#status'), `live updates stopped: ${explain(detail, ctx.role)}`, 'error');
  },
});

function applyRole() {
  for (const node of $$('[data-needs]')) node.hidden = !ctx.can(node.dataset.needs);
  const who = $('#whoami');
  who.textContent = ctx.role ? `${ctx.name} · ${ctx.role}` : 'not connected';
  document.body.dataset.role = ctx.role || 'none';
  if (current && $(`#tab-${current}`).hidden) show('keys');
}

function show(name) {
  if (!panels[name]) name = 'keys';
  const tab = $(`#tab-${name}`);
  if (tab.hidden) name = 'keys';
  if (current && current !== name && panels[current].hidden) panels[current].hidden();
  current = name;
  for (const button of $$('nav button')) button.setAttribute('aria-selected', String(button.id === `tab-${name}`));
  for (const section of $$('main > section')) section.hidden = section.id !== `panel-${name}`;
  if (ctx.role && panels[name].shown) panels[name].shown();
  if (location.hash !== `#${name}`) history.replaceState(null, '', `#${name}`);
}

function disconnect() {
  live.stop();
  for (const panel of Object.values(panels)) panel.reset();
  ctx.role = null;
  ctx.name = null;
  applyRole();
}

async function connect(event) {
  if (event) event.preventDefault();
  disconnect();
  const status = $('#status');
  setKey($('#key').value.trim());
  try {
    const me = await api('GET', '/v1/auth/whoami');
    ctx.role = me.role;
    ctx.name = me.name;
  } catch (error) {
    say(status, explain(error, null), 'error');
    return;
  }
  say(status, '');
  applyRole();
  live.start('now');
  for (const panel of Object.values(panels)) if (panel.connected) panel.connected();
  show(current || 'keys');
}

async function health() {
  const badge = $('#health');
  try {
    const r = await fetch('/v1/health', { cache: 'no-store' });
    badge.textContent = r.ok ? 'healthy' : `health ${r.status}`;
    badge.className = r.ok ? 'badge ok' : 'badge down';
  } catch {
    badge.textContent = 'unreachable';
    badge.className = 'badge down';
  }
}

$('#connect-form').addEventListener('submit', connect);
$('#forget').addEventListener('click', () => { setKey(''); $('#key').value = ''; disconnect(); });
for (const button of $$('nav button')) button.addEventListener('click', () => show(button.id.slice(4)));
window.addEventListener('hashchange', () => show(location.hash.slice(1)));

$('#key').value = getKey();
applyRole();
show(location.hash.slice(1) || 'keys');
health();
setInterval(health, HEALTH_MS);
if (getKey()) connect();
else say($('#status'), NO_KEY_HELP, 'info');
