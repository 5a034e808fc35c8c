// The hub's HTTP API (docs/architecture.md, "Signaling") and the camera's stored credentials.
//
// Every call goes to the origin that served this page: the hub serves the page at /cam/ and the API at /api/.

const STORE_KEY = 'pingwatch.camera';

/** An API failure. status 0 means the hub could not be reached (network error or timeout). */
export class ApiError extends Error {
  constructor(status, message, body = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.body = body;
  }
  get unreachable() {
    return this.status === 0;
  }
}

export function loadCredentials() {
  try {
    const raw = localStorage.getItem(STORE_KEY);
    if (!raw) return null;
    const c = JSON.parse(raw);
    return c && typeof c.token === 'string' && c.token ? c : null;
  } catch {
    return null;
  }
}

export function saveCredentials({ token, camera_id, name }) {
  localStorage.setItem(STORE_KEY, JSON.stringify({ token, camera_id, name, paired_at: Date.now() }));
}

export function clearCredentials() {
  localStorage.removeItem(STORE_KEY);
}

/** Pairing codes are 8 characters without 0/O/1/I/L; the hub ignores case, spaces and dashes. */
export function normaliseCode(code) {
  return String(code || '').trim().toUpperCase().replace(/[\s-]+/g, '');
}

/** `#code=XXXX[&name=...]` from the hub's QR code, or null. */
export function pairingFromFragment(hash = location.hash) {
  const params = new URLSearchParams(String(hash || '').replace(/^#/, ''));
  const code = normaliseCode(params.get('code'));
  if (!code) return null;
  return { code, name: (params.get('name') || '').trim() || null };
}

/** Remove the pairing code from the address bar, so a reload does not try a spent code again. */
export function clearFragment() {
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);
}

/** A default camera name when the QR code brings none: the hub lets the user rename it. */
export function defaultCameraName() {
  const ua = navigator.userAgent || '';
  if (/iPhone/.test(ua)) return 'iPhone camera';
  if (/iPad/.test(ua)) return 'iPad camera';
  const m = ua.match(/Android [\d.]+; ([^;)]+?)(?: Build|\))/);
  if (m && m[1] && !/^K$/.test(m[1].trim())) return `${m[1].trim()} camera`.slice(0, 64);
  if (/Android/.test(ua)) return 'Android camera';
  return 'Phone camera';
}

async function api(path, { method = 'GET', token = null, body = undefined, timeoutMs = 10000 } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), timeoutMs);
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: ctrl.signal,
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (err) {
    const timedOut = err && err.name === 'AbortError';
    throw new ApiError(0, timedOut ? `the hub did not answer within ${timeoutMs / 1000} s` : 'cannot reach the hub');
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  const text = await res.text().catch(() => '');
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const msg = (data && typeof data.error === 'string' && data.error) || `${res.status} ${res.statusText || 'error'}`.trim();
    throw new ApiError(res.status, msg, data);
  }
  if (data === null || typeof data !== 'object') throw new ApiError(res.status, 'the hub sent an unreadable answer');
  return data;
}

/** POST /api/pair → {camera_id, token, name}; 403 = wrong or expired code. */
export async function pair(code, name) {
  const data = await api('/api/pair', { method: 'POST', body: { code: normaliseCode(code), name } });
  if (typeof data.token !== 'string' || !data.token) throw new ApiError(500, 'the hub sent no token');
  return { token: data.token, camera_id: data.camera_id, name: data.name || name };
}

/** GET /api/camera → {camera_id, name}; 401 = this camera was removed from the hub. */
export function fetchCamera(token) {
  return api('/api/camera', { token });
}

/**
 * POST /api/camera/offer with the complete (non-trickle) offer → {type: 'answer', sdp}.
 * roles maps each m-line's mid to 'record' | 'detect' | 'audio'.
 */
export async function postOffer(token, { sdp, roles }) {
  const data = await api('/api/camera/offer', {
    method: 'POST',
    token,
    body: { type: 'offer', sdp, roles },
    timeoutMs: 15000,
  });
  if (data.type !== 'answer' || typeof data.sdp !== 'string') throw new ApiError(502, 'the hub sent no SDP answer');
  return { type: 'answer', sdp: data.sdp };
}
