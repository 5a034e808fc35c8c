// fetch() wrapper: JSON in and out, the session's CSRF token on state-changing calls, errors as ApiError.

let csrf = null;
let onUnauthorized = () => {};

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.hint = body && body.hint;
    this.retryAfter = retryAfter ? Number(retryAfter) : null;
  }
}

export function setCsrf(token) { csrf = token; }
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

export async function api(path, { method = 'GET', body, signal } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
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
    if (resp.status === 401 && path !== '/api/ui/login') onUnauthorized();
    throw err;
  }
  return data;
}
