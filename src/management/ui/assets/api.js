// The one way the UI talks to the broker: fetch() against our own /api, with the logged-in
// user's basic-auth header. Never synchronous, always with a timeout; every failure becomes an
// ApiError whose message says in words what the API answered.

const KEY = 'lagomorph.auth';
const USER = 'lagomorph.user';
const TIMEOUT_MS = 20000;

/** An API call that failed, with RabbitMQ's {error, reason} when the body had them. */
export class ApiError extends Error {
  constructor(method, path, status, error, reason) {
    const what = status ? `${status}${error ? ` ${error}` : ''}` : error;
    super(`${method} ${path} failed: ${what}${reason ? ` – ${reason}` : ''}`);
    this.status = status;
    this.error = error;
    this.reason = reason;
    this.path = path;
  }
}

function b64(text) {
  let bin = '';
  for (const byte of new TextEncoder().encode(text)) bin += String.fromCharCode(byte);
  return btoa(bin);
}

/** Remembers the login for this tab (sessionStorage: gone when the tab closes or on logout). */
export function setLogin(user, password) {
  sessionStorage.setItem(KEY, b64(`${user}:${password}`));
  sessionStorage.setItem(USER, user);
}

export function clearLogin() {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(USER);
}

export function loggedIn() {
  return sessionStorage.getItem(KEY) !== null;
}

/** Path segment encoding: the default vhost "/" is %2F, as RabbitMQ's API wants. */
export const enc = encodeURIComponent;

/** `?a=1&b=2` from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const t = q.toString();
  return t ? `?${t}` : '';
}

/**
 * Calls the API. Resolves with the parsed JSON (null for empty answers); rejects with an
 * ApiError. A 401 "Login failed" also fires a `lagomorph:logout` event (the password changed or
 * the user was deleted); other 401s (not allowed to do this) only reject.
 */
export async function api(method, path, body, extraHeaders = {}) {
  const headers = { Accept: 'application/json', ...extraHeaders };
  const auth = sessionStorage.getItem(KEY);
  if (auth) headers.Authorization = `Basic ${auth}`;
  const init = { method, headers, credentials: 'omit', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), TIMEOUT_MS);
  init.signal = ctrl.signal;
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    const why = e && e.name === 'AbortError' ? `no answer within ${TIMEOUT_MS / 1000} s` : 'the broker cannot be reached';
    throw new ApiError(method, path, 0, why, '');
  } finally {
    clearTimeout(timer);
  }
  const text = await resp.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!resp.ok) {
    const error = data && typeof data.error === 'string' ? data.error : resp.statusText;
    const reason = data && typeof data.reason === 'string' ? data.reason : data ? '' : text.slice(0, 200);
    if (resp.status === 401 && error === 'not_authorized') {
      window.dispatchEvent(new CustomEvent('lagomorph:logout', { detail: reason }));
    }
    throw new ApiError(method, path, resp.status, error, reason);
  }
  return data;
}

export const get = (path) => api('GET', path);
export const put = (path, body) => api('PUT', path, body ?? {});
export const post = (path, body) => api('POST', path, body ?? {});
export const del = (path, headers) => api('DELETE', path, undefined, headers);
