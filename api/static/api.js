// The one way the page talks to the server: fetch with the key from sessionStorage.
//
// The key is sent as `Authorization: Bearer`, never in a URL (it would land in logs and
// history). It lives in sessionStorage: it survives a reload, not the tab. Every non-2xx
// answer becomes an ApiError carrying the contract's error body (`code`, `message`, `field`),
// and `explain()` turns it into a sentence that says what the key may do.

const STORAGE = 'kissvdb.key';
export const NO_KEY_HELP = 'Enter an API key and press Connect: on loopback the default key is `dev`; otherwise read the admin key from DATA_DIR/bootstrap-admin.key.';

export function getKey() {
  return sessionStorage.getItem(STORAGE) || '';
}

export function setKey(key) {
  if (key) sessionStorage.setItem(STORAGE, key);
  else sessionStorage.removeItem(STORAGE);
}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error; // the contract's error body: {error, message, field}
    this.field = body && body.field;
  }
}

export function authHeaders() {
  const key = getKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** `await api('GET', '/v1/state', {query: {prefix}})` -> parsed JSON (or text for text/*). */
export async function api(method, path, { body, query, signal } = {}) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(name, String(value));
  }
  const headers = authHeaders();
  const init = { method, headers, signal, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  const type = response.headers.get('Content-Type') || '';
  if (!response.ok) {
    let parsed = null;
    if (type.startsWith('application/json')) parsed = await response.json().catch(() => null);
    throw new ApiError(response.status, parsed);
  }
  if (response.status === 204) return null;
  return type.startsWith('application/json') ? response.json() : response.text();
}

/** Path segment for a key or id: `/` inside it must travel as %2F. */
export const seg = (text) => encodeURIComponent(text);

const ROLE_CAN = {
  read: 'may only read',
  write: 'may read and write, not manage API keys',
  user: 'may read and write, not manage API keys',
  admin: 'may do everything',
};

/** A sentence for an error, naming what the current key may do when it is refused. */
export function explain(error, role) {
  if (!(error instanceof ApiError)) return error.message || String(error);
  if (error.status === 401) {
    if (!getKey()) return NO_KEY_HELP;
    return `The server refused the key (${error.message}). Check it and press Connect again.`;
  }
  if (error.status === 403) {
    const can = ROLE_CAN[role] || 'has a role that cannot do this';
    return `This key's role is "${role || '?'}": it ${can}. ${error.message}`;
  }
  const field = error.field ? ` (field: ${error.field})` : '';
  return `${error.status} ${error.code || ''}: ${error.message}${field}`;
}

/** Roles, weakest first, as the server ranks them (api/auth.py ROLE_LEVEL). */
export const ROLE_LEVEL = { read: 1, write: 2, user: 2, admin: 3 };

export function allowed(role, needs) {
  return (ROLE_LEVEL[role] || 0) >= (ROLE_LEVEL[needs] || 99);
}
