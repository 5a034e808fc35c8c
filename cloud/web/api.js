// fetch() wrapper for the cloud API: the bearer token from sessionStorage (per tab, gone when the tab closes),
// JSON in and out, errors as ApiError with the API's {error, hint, reason}.

const TOKEN_KEY = 'pingwatch.cloud.token';
let onUnauthorized = () => {};

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || (status ? `HTTP ${status}` : 'the server cannot be reached'));
    this.status = status;
    this.hint = body && body.hint;
    this.reason = body && body.reason;
  }
}

export function token() {
  try { return sessionStorage.getItem(TOKEN_KEY); } catch { return null; }
}

export function setToken(value) {
  try {
    if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
  } catch { /* storage disabled: the page asks to log in again */ }
}

export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

export async function api(path, { method = 'GET', body, query } = {}) {
  const headers = { Accept: 'application/json' };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') params.set(k, v);
    const qs = params.toString();
    if (qs) url += `?${qs}`;
  }
  let resp;
  try {
    resp = await fetch(url, { method, headers, cache: 'no-store', body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, { error: 'the server cannot be reached', hint: 'check the connection and retry' });
  }
  let data = null;
  try { data = await resp.json(); } catch { /* 204 or not JSON */ }
  if (!resp.ok) {
    if (resp.status === 401 && path !== '/api/v1/auth/login') onUnauthorized();
    throw new ApiError(resp.status, data);
  }
  return data;
}
