// System: storage, retention, connections, versions.
import { api } from './api.js';
import { h, clear, fmtBytes, fmtDuration } from './dom.js';

export function mount(el) {
  el.append(h('h1', {}, 'System'), h('p', { class: 'muted' }, 'Loading…'));
  let stopped = false;
  async function load() {
    let s;
    try { s = await api('/api/ui/system'); } catch (err) { clear(el, h('h1', {}, 'System'), h('p', { class: 'error' }, err.message)); return; }
    if (stopped) return;
    const d = s.disk || {};
    const usedPct = d.total_bytes ? Math.round((d.used_bytes / d.total_bytes) * 100) : 0;
    const mq = s.mqtt;
    const mqttText = !mq.enabled ? 'Off' : mq.connected ? `Connected to ${mq.host}:${mq.port}` : mq.connected === false ? `Not connected (${mq.host}:${mq.port})` : 'Enabled (not running)';
    clear(el, h('h1', {}, 'System'),
      h('div', { class: 'grid two' },
        h('section', { class: 'card' }, h('h2', {}, 'Storage'),
          h('div', { class: 'meter', role: 'meter', 'aria-valuenow': usedPct, 'aria-valuemin': 0, 'aria-valuemax': 100 },
            h('span', { style: `width:${usedPct}%` })),
          dl([['Disk', d.total_bytes ? `${fmtBytes(d.used_bytes)} used of ${fmtBytes(d.total_bytes)} (${fmtBytes(d.free_bytes)} free)` : d.error || '–'],
            ['Events', `${s.events.count} (${fmtBytes(s.events.clip_bytes)} of clips)`],
            ['Keep events for', `${s.retention.retention_days} days`],
            ['Clip budget', `${s.retention.max_disk_gb} GB, keep ${s.retention.min_free_gb} GB free`],
            ['Data folder', s.data_dir]])),
        h('section', { class: 'card' }, h('h2', {}, 'Hub'),
          dl([['Status', s.armed ? 'Armed' : 'Disarmed'],
            ['Cameras', `${s.cameras.online ?? 0} online of ${s.cameras.total ?? 0}`],
            ['Up for', fmtDuration(s.uptime_s)],
            ['Home Assistant (MQTT)', mqttText],
            ['Cloud', !s.cloud.enabled ? 'Off' : !s.cloud.linked ? 'Not linked (pingwatch cloud link)'
                : `Linked; ${s.cloud.pending} upload(s) waiting; ${s.cloud.channel?.starts?.pending ?? 0} alert(s) waiting`
                  + (s.cloud.channel?.starts?.error ? ` (${s.cloud.channel.starts.error})` : '')],
            ['Web UI', s.urls.ui], ['Camera page', s.urls.camera],
            ['Certificate SHA-256', h('span', { class: 'mono small fingerprint' }, s.certificate.sha256)],
            ['Certificate valid until', new Date(s.certificate.not_after).toLocaleDateString()]])),
        h('section', { class: 'card' }, h('h2', {}, 'Versions'),
          dl(Object.entries(s.versions).map(([k, v]) => [k, v || 'not installed'])))));
  }
  load();
  const t = setInterval(load, 30000);
  return () => { stopped = true; clearInterval(t); };
}

function dl(rows) {
  return h('dl', { class: 'kv' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}
