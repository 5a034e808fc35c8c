// fetch() wrapper: JSON in and out, the session key on every call, errors as ApiError.
//
// The session key (the log-in answer's "csrf") is the half of the session that is not a cookie: browsers send
// cookies to every port of the hub's address, but this origin's localStorage is readable only by pages of this
// origin (scheme, host and port). It is read from storage at each call, so every tab uses the current one.

const KEY_STORE = 'pingwatch.ui.key';
let onUnauthorized = () => {};

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.hint = body && body.hint;
    this.retryAfter = retryAfter ? Number(retryAfter) : null;
  }
}

export function sessionKey() {
  try { return localStorage.getItem(KEY_STORE); } catch { return null; }
}

export function setSessionKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORE, key); else localStorage.removeItem(KEY_STORE);
  } catch { /* storage disabled: the session cannot be used */ }
}

export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

// Headers for a call to the hub: the session key, always (reads need it too).
export function authHeaders(extra) {
  const headers = { ...(extra || {}) };
  const key = sessionKey();
  if (key) headers['X-CSRF-Token'] = key;
  return headers;
}

export async function api(path, { method = 'GET', body, signal } = {}) {
  const headers = authHeaders({ Accept: 'application/json' });
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path, {
      method, headers, signal, credentials: 'same-origin', cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, { error: 'the hub cannot be reached', hint: 'check that it is running' });
  }
  let data = null;
  try { data = await resp.json(); } catch { /* empty or non-JSON body */ }
  if (!resp.ok) {
    const err = new ApiError(resp.status, data, resp.headers.get('Retry-After'));
    // 401: no session; 403 on a read: the cookie's session is not this page's key (logged in elsewhere).
    if (path !== '/api/ui/login' && (resp.status === 401 || (resp.status === 403 && method === 'GET'))) {
      onUnauthorized();
    }
    throw err;
  }
  return data;
}
