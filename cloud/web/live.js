// The live channel: one WebSocket to /api/v1/live. The first message carries the token (a browser cannot set
// Authorization on a WebSocket) and the last cursor seen, so a reconnect replays exactly what was missed.
//
// Callbacks: onFresh() after a hello that starts from now (first connect, or after a "reload"): the page re-reads
// its lists, which then include every change up to the hello's cursor; onMessage(msg) for each change;
// onState('connecting' | 'open' | 'closed'); onUnauthorized() when the token is refused.

const RELOAD = 4000;
const UNAUTHENTICATED = 4401;

export class LiveLink {
  constructor(getToken, { onFresh, onMessage, onState, onUnauthorized }) {
    this.getToken = getToken;
    this.cb = { onFresh, onMessage, onState, onUnauthorized };
    this.cursor = null;
    this.ws = null;
    this.stopped = false;
    this.retryMs = 1000;
    this.timer = null;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, 'bye');
    this.ws = null;
  }

  connect() {
    const t = this.getToken();
    if (!t || this.stopped) return;
    this.cb.onState('connecting');
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${scheme}//${location.host}/api/v1/live`);
    this.ws = ws;
    ws.addEventListener('open', () => ws.send(JSON.stringify({ token: t, after: this.cursor })));
    ws.addEventListener('message', (ev) => this.receive(ev.data));
    ws.addEventListener('close', (ev) => this.closed(ws, ev));
  }

  receive(data) {
    let msg;
    try { msg = JSON.parse(data); } catch { return; }
    if (!msg || typeof msg !== 'object') return;
    if (msg.type === 'hello') {
      const fresh = this.cursor === null;
      this.cursor = msg.cursor;
      this.retryMs = 1000;
      this.cb.onState('open');
      if (fresh) this.cb.onFresh();
      return;
    }
    if (typeof msg.cursor === 'number' && (this.cursor === null || msg.cursor > this.cursor)) this.cursor = msg.cursor;
    this.cb.onMessage(msg);
  }

  closed(ws, ev) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.cb.onState('closed');
    if (this.stopped) return;
    if (ev.code === UNAUTHENTICATED) { this.cb.onUnauthorized(); return; }
    if (ev.code === RELOAD) this.cursor = null;  // too far behind: start from now and re-read the lists
    const wait = ev.code === RELOAD ? 200 : this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, 30000);
    this.timer = setTimeout(() => this.connect(), wait + Math.random() * 300);
  }
}
