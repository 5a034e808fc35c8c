// The WebSocket to /api/ui/ws: bus messages as {topic, data}; reconnects with backoff.
// A WebSocket cannot carry headers: the session key goes as a second subprotocol, "key.<key>".
import { sessionKey } from './api.js';

export class Live {
  constructor(onState) {
    this.handlers = new Map();
    this.onState = onState || (() => {});
    this.closed = false;
    this.backoff = 1000;
    this.connect();
  }

  connect() {
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    const key = sessionKey();
    const ws = new WebSocket(`${proto}://${location.host}/api/ui/ws`, key ? ['pingwatch', `key.${key}`] : ['pingwatch']);
    this.ws = ws;
    this.onState('connecting');
    ws.onopen = () => { this.backoff = 1000; this.onState('open'); };
    ws.onmessage = (e) => {
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      this.emit(msg.topic, msg.data || {});
      this.emit('*', msg);
    };
    ws.onclose = (e) => {
      if (this.closed) return;
      this.onState('closed');
      if (e.code === 1008) { this.emit('ui.logged-out', {}); return; }
      setTimeout(() => { if (!this.closed) { this.emit('ui.resync', {}); this.connect(); } }, this.backoff);
      this.backoff = Math.min(this.backoff * 2, 30000);
    };
  }

  on(topic, fn) {
    if (!this.handlers.has(topic)) this.handlers.set(topic, new Set());
    this.handlers.get(topic).add(fn);
    return () => this.handlers.get(topic).delete(fn);
  }

  emit(topic, data) {
    for (const fn of this.handlers.get(topic) || []) {
      try { fn(data); } catch (err) { console.error(err); }
    }
  }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close();
  }
}
