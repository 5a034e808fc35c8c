// System: the hub's state, how phones and browsers reach it, storage, versions.
import { api } from './api.js';
import { h, clear, fmtBytes, fmtDuration } from './dom.js';

export function mount(el) {
  el.append(h('h1', {}, 'System'), h('p', { class: 'muted' }, 'Loading…'));
  let stopped = false;
  // "Up for" counts on between loads: the hub's uptime at the last load plus the time since, on the page's
  // monotonic clock (not the wall clock, which the phone may set differently from the hub).
  let uptime = null;
  const uptimeEl = h('span', { id: 'uptime' });
  const tickUptime = () => {
    if (uptime) uptimeEl.textContent = fmtDuration(uptime.s + (performance.now() - uptime.at) / 1000);
  };
  async function load() {
    let s;
    try { s = await api('/api/ui/system'); } catch (err) { clear(el, h('h1', {}, 'System'), h('p', { class: 'error' }, err.message)); return; }
    if (stopped) return;
    uptime = { s: s.uptime_s, at: performance.now() };
    tickUptime();
    const d = s.disk || {};
    const usedPct = d.total_bytes ? Math.round((d.used_bytes / d.total_bytes) * 100) : 0;
    const mq = s.mqtt;
    const mqttText = !mq.enabled ? 'Off' : mq.connected ? `Connected to ${mq.host}:${mq.port}` : mq.connected === false ? `Not connected (${mq.host}:${mq.port})` : 'Enabled (not running)';
    clear(el, h('h1', {}, 'System'),
      h('div', { class: 'grid two' },
        h('section', { class: 'card' }, h('h2', {}, 'Hub'),
          dl([['Status', s.armed ? 'Armed' : 'Disarmed'],
            ['Cameras', `${s.cameras.online ?? 0} online of ${s.cameras.total ?? 0}`],
            ['Up for', uptimeEl],
            ['Home Assistant (MQTT)', mqttText],
            ['Cloud', h('span', { id: 'cloud-state' }, cloudText(s.cloud))]])),
        h('section', { class: 'card' }, h('h2', {}, 'Phones and browsers'),
          dl([['Web UI', url('url-ui', s.urls.ui)], ['Camera page', url('url-camera', s.urls.camera)],
            ['Certificate SHA-256', fingerprint(s.certificate.sha256)],
            ['Certificate valid until', new Date(s.certificate.not_after).toLocaleDateString()]], 'stacked')),
        h('section', { class: 'card' }, h('h2', {}, 'Storage'),
          h('div', { class: 'meter', role: 'meter', 'aria-valuenow': usedPct, 'aria-valuemin': 0, 'aria-valuemax': 100 },
            h('span', { style: `width:${usedPct}%` })),
          dl([['Disk', d.total_bytes ? `${fmtBytes(d.used_bytes)} used of ${fmtBytes(d.total_bytes)} (${fmtBytes(d.free_bytes)} free)` : d.error || '–'],
            ['Events', `${s.events.count} (${fmtBytes(s.events.clip_bytes)} of clips)`],
            ['Keep events for', `${s.retention.retention_days} days`],
            ['Clip budget', `${s.retention.max_disk_gb} GB, keep ${s.retention.min_free_gb} GB free`],
            ['Data folder', s.data_dir]])),
        h('section', { class: 'card' }, h('h2', {}, 'Versions'),
          dl(Object.entries(s.versions).map(([k, v]) => [k, v || 'not installed'])))));
  }
  load();
  const reload = setInterval(load, 30000);
  const tick = setInterval(tickUptime, 1000);
  return () => { stopped = true; clearInterval(reload); clearInterval(tick); };
}

// The uploader's own state (hub/upload/): off in the config, not linked yet, or linked with what is waiting.
function cloudText(c) {
  if (!c.enabled) return 'Uploads off (cloud.enabled: false in the config)';
  if (!c.linked) return 'Not linked: run “pingwatch cloud link” to upload clips and get alerts';
  const counts = c.outbox || {};
  const parts = [`Linked to ${hostOf(c.api_url)}`, `${c.pending ?? 0} upload(s) waiting`];
  if (counts.refused) parts.push(`${counts.refused} refused by the cloud`);
  const starts = c.channel?.starts;
  if (starts?.pending) parts.push(`${starts.pending} alert(s) waiting`);
  if (starts?.error) parts.push(`last error: ${starts.error}`);
  return parts.join('; ');
}

function hostOf(u) {
  try { return new URL(u).host; } catch { return u || '?'; }
}

// A URL that may break after its origin, never inside host:port.
function url(id, href) {
  let origin = href;
  let rest = '';
  try { const u = new URL(href); origin = u.origin; rest = href.slice(origin.length); } catch { /* shown whole */ }
  return h('a', { id, class: 'url', href }, h('span', { class: 'origin' }, origin), h('wbr'), rest);
}

// The fingerprint in full, 8 bytes a line: compared by eye with the browser's and `pingwatch doctor`'s, so no
// byte is split across lines. Each line but the last keeps its trailing colon: a copy gives the whole value.
function fingerprint(sha) {
  const bytes = sha.split(':');
  const lines = [];
  for (let i = 0; i < bytes.length; i += 8) {
    lines.push(bytes.slice(i, i + 8).join(':') + (i + 8 < bytes.length ? ':' : ''));
  }
  return h('span', { id: 'cert-fingerprint', class: 'mono small fingerprint' },
    lines.map((line) => h('span', { class: 'fp-line' }, line)));
}

function dl(rows, kind = '') {
  return h('dl', { class: `kv ${kind}`.trim() }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}
