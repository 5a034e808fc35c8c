// Live view: for now a snapshot refreshed every second (WebRTC relay comes later).
import { api } from './api.js';
import { h, clear } from './dom.js';
import { refreshingImage } from './snapshot.js';

export function mount(el, [cameraId], ctx) {
  const pic = refreshingImage(`/api/ui/cameras/${encodeURIComponent(cameraId)}/snapshot`, 1000, 'Live picture');
  const title = h('h1', {}, cameraId);
  const state = h('span', { class: 'pill' });
  clear(el,
    h('div', { class: 'row spread' }, h('div', { class: 'row' }, title, state),
      h('a', { class: 'button ghost', href: `#/camera/${encodeURIComponent(cameraId)}` }, 'Settings')),
    h('div', { class: 'live-frame' }, pic.el),
    h('p', { class: 'muted small' }, 'A new picture every second. Live video is coming in a later version.'));
  const show = (online) => { state.textContent = online ? 'Online' : 'Offline'; state.className = 'pill ' + (online ? 'ok' : 'off'); };
  api(`/api/ui/cameras/${encodeURIComponent(cameraId)}`).then((c) => { title.textContent = c.name; show(c.online); })
    .catch((err) => { title.textContent = err.message; });
  const offs = [
    ctx.live.on('camera.online', (d) => { if (d.camera_id === cameraId) show(true); }),
    ctx.live.on('camera.offline', (d) => { if (d.camera_id === cameraId) show(false); }),
  ];
  return () => { pic.stop(); offs.forEach((off) => off()); };
}
