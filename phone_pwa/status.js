// Staying alive and reporting: battery, screen wake lock, and the `status` data channel payload.

/** Battery level/charging via navigator.getBattery where the browser has it (not Safari, not Firefox). */
export class Battery {
  constructor(onChange = () => {}) {
    this.level = null; // 0.0-1.0
    this.charging = null;
    this.supported = typeof navigator.getBattery === 'function';
    this._onChange = onChange;
  }

  async start() {
    if (!this.supported) return;
    try {
      const b = await navigator.getBattery();
      const read = () => {
        this.level = typeof b.level === 'number' ? b.level : null;
        this.charging = typeof b.charging === 'boolean' ? b.charging : null;
        this._onChange(this);
      };
      b.addEventListener('levelchange', read);
      b.addEventListener('chargingchange', read);
      read();
    } catch {
      this.supported = false;
    }
  }
}

/**
 * Screen Wake Lock. The browser drops the lock whenever the page is hidden; it is requested again when the
 * page becomes visible. state: 'held' | 'released' | 'unsupported' | 'error: ...'.
 */
export class WakeLock {
  constructor(onChange = () => {}) {
    this.supported = !!(navigator.wakeLock && navigator.wakeLock.request);
    this.state = this.supported ? 'released' : 'unsupported';
    this.wanted = false;
    this._sentinel = null;
    this._onChange = onChange;
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && this.wanted) this.acquire();
    });
  }

  _set(state) {
    if (state !== this.state) {
      this.state = state;
      this._onChange(this);
    }
  }

  async acquire() {
    this.wanted = true;
    if (!this.supported || this._sentinel || document.visibilityState !== 'visible') return;
    try {
      const s = await navigator.wakeLock.request('screen');
      this._sentinel = s;
      s.addEventListener('release', () => {
        if (this._sentinel === s) this._sentinel = null;
        this._set('released');
      });
      this._set('held');
    } catch (err) {
      this._set(`error: ${(err && err.message) || err}`);
    }
  }

  async release() {
    this.wanted = false;
    const s = this._sentinel;
    this._sentinel = null;
    if (s) await s.release().catch(() => {});
    if (this.supported) this._set('released');
  }
}

/** The status message, exactly the fields of the contract in docs/architecture.md. */
export function statusMessage(battery, recordStats) {
  const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  return {
    battery: battery && typeof battery.level === 'number' ? Math.round(battery.level * 100) / 100 : null,
    charging: battery && typeof battery.charging === 'boolean' ? battery.charging : null,
    visible: document.visibilityState === 'visible',
    temperature: null, // no browser exposes the device temperature
    fps: num(recordStats && recordStats.fps),
    bitrate_kbps: num(recordStats && recordStats.bitrate_kbps),
  };
}
