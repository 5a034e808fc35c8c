// Live view: WebRTC video relayed by the hub from the camera's encoded stream (never re-encoded); while it
// connects, or when it cannot play (no video yet, file camera, codec, network), a snapshot refreshed every second.
import { api } from './api.js';
import { h, clear } from './dom.js';
import { refreshingImage } from './snapshot.js';
import { LivePlayer } from './liveplayer.js';

const RETRY_MIN_MS = 5000;
const RETRY_MAX_MS = 60000;

export function mount(el, [cameraId], ctx) {
  const pic = refreshingImage(`/api/ui/cameras/${encodeURIComponent(cameraId)}/snapshot`, 1000, 'Live picture');
  const video = h('video', { id: 'live-video', class: 'live-video', muted: true, autoplay: true, playsinline: true,
    disablepictureinpicture: true, 'aria-label': 'Live video' });
  video.muted = true;
  const frame = h('div', { class: 'live-frame', id: 'live-frame', dataset: { mode: 'connecting' } }, video, pic.el);
  const title = h('h1', {}, cameraId);
  const state = h('span', { class: 'pill' });
  const mode = h('span', { class: 'pill', id: 'live-mode' });
  const note = h('p', { class: 'muted small', id: 'live-note' });
  clear(el,
    h('div', { class: 'row spread' }, h('div', { class: 'row' }, title, state, mode),
      h('a', { class: 'button ghost', href: `#/camera/${encodeURIComponent(cameraId)}` }, 'Settings')),
    frame, note);

  let stopped = false;
  let retryTimer = null;
  let retryMs = RETRY_MIN_MS;
  let online = null;
  // A stall while the camera is known to be offline waits for it to come back (show() retries then).
  const player = new LivePlayer(cameraId, video, { onFail: (why) => fallback(why, online !== false) });

  function setMode(m, text) {
    frame.dataset.mode = m;
    mode.textContent = m === 'webrtc' ? 'Live' : m === 'connecting' ? 'Connecting…' : 'Snapshots';
    mode.className = 'pill' + (m === 'webrtc' ? ' ok' : '');
    note.textContent = text;
  }

  async function connect() {
    clearTimeout(retryTimer);
    if (stopped) return;
    setMode('connecting', 'Connecting to the live video…');
    try {
      await player.start();
    } catch (err) {
      if (stopped || err.message === 'closed') return;
      fallback(err.message, err.status !== 415 && err.status !== 404, err.status);
      return;
    }
    if (stopped) { player.close(); return; }
    retryMs = RETRY_MIN_MS;
    pic.stop();
    setMode('webrtc', `Live video (${(player.codec || '').toUpperCase()}, relayed by the hub without re-encoding).`);
  }

  function fallback(why, retry, status) {
    if (stopped) return;
    player.close();
    pic.start();
    const reason = status === 409 ? 'the camera has sent no video yet' : why;
    setMode('snapshot', `A new picture every second (live video unavailable: ${reason}).`);
    if (!retry) return;
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
  }

  const show = (on) => {
    const was = online;
    online = on;
    state.textContent = on ? 'Online' : 'Offline';
    state.className = 'pill ' + (on ? 'ok' : 'off');
    // Back online while showing snapshots: try the video again now rather than at the next retry.
    if (on && was === false && frame.dataset.mode === 'snapshot') { retryMs = RETRY_MIN_MS; connect(); }
  };
  api(`/api/ui/cameras/${encodeURIComponent(cameraId)}`).then((c) => { title.textContent = c.name; show(c.online); })
    .catch((err) => { title.textContent = err.message; });
  const offs = [
    ctx.live.on('camera.online', (d) => { if (d.camera_id === cameraId) show(true); }),
    ctx.live.on('camera.offline', (d) => { if (d.camera_id === cameraId) show(false); }),
  ];
  const onUnload = () => player.close();
  window.addEventListener('pagehide', onUnload);
  connect();
  return () => {
    stopped = true;
    clearTimeout(retryTimer);
    player.close();
    pic.stop();
    window.removeEventListener('pagehide', onUnload);
    offs.forEach((off) => off());
  };
}
