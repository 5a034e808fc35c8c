// Cameras: one card each with its latest picture, online state, battery and an armed switch.
import { api } from './api.js';
import { h, clear, fmtAgo, toast, debounce } from './dom.js';
import { refreshingImage } from './snapshot.js';

export function mount(el, _params, ctx) {
  const cards = new Map();
  const grid = h('div', { class: 'grid cameras' });
  const armInfo = h('p', { class: 'muted' });
  const armBtn = h('button', { type: 'button', class: 'big-arm', id: 'dash-arm', onclick: () => arm(!ctx.armed) });
  const disarm1h = h('button', { type: 'button', class: 'ghost', id: 'dash-disarm-1h', onclick: () => arm(false, 3600) },
    'Disarm for 1 hour');
  el.append(
    h('section', { class: 'card arm-panel' },
      h('div', {}, h('h1', {}, 'Cameras'), armInfo),
      h('div', { class: 'row arm-buttons' }, disarm1h, armBtn)),
    grid);

  function showArm(armed, until) {
    armBtn.textContent = armed ? 'Disarm hub' : 'Arm hub';
    armBtn.classList.toggle('danger', armed);
    armBtn.classList.toggle('primary', !armed);
    armInfo.textContent = armed
      ? 'Armed: motion and sound make events.'
      : 'Disarmed: nothing is recorded' + (until ? ` until ${new Date(until * 1000).toLocaleTimeString()}` : '') + '.';
  }

  async function arm(armed, forS) {
    try {
      const r = await api('/api/ui/arm', { method: 'POST', body: forS ? { armed, for_s: forS } : { armed } });
      ctx.setArmed(r.hub_armed, r.until);
      toast(armed ? 'Hub armed' : forS ? 'Hub disarmed for 1 hour' : 'Hub disarmed');
      load();
    } catch (err) { toast(err.message, 'error'); }
  }

  const onArmed = (e) => showArm(e.detail.armed, e.detail.until);
  document.addEventListener('pw:armed', onArmed);
  if (ctx.armed !== null) showArm(ctx.armed);

  async function load() {
    let data;
    try { data = await api('/api/ui/cameras'); } catch (err) {
      clear(grid, h('p', { class: 'error' }, err.message));
      return;
    }
    showArm(data.armed);
    const seen = new Set();
    for (const cam of data.cameras) {
      seen.add(cam.id);
      let card = cards.get(cam.id);
      if (!card) { card = cameraCard(cam); cards.set(cam.id, card); }
      card.update(cam);
    }
    for (const [id, card] of cards) {
      if (!seen.has(id)) { card.destroy(); cards.delete(id); }
    }
    if (!data.cameras.length) {
      clear(grid, h('div', { class: 'card empty' },
        h('h2', {}, 'No cameras yet'),
        h('p', {}, 'Turn an old phone into a camera: open the pairing page and scan the code with it.'),
        h('a', { class: 'button primary', href: '#/pair' }, 'Add a camera')));
    } else {
      // Re-insert only when the set or order changed: moving a card's element would eat a click in flight.
      const want = data.cameras.map((c) => cards.get(c.id).el);
      const have = [...grid.children];
      if (want.length !== have.length || want.some((e, i) => e !== have[i])) clear(grid, ...want);
    }
  }

  const reload = debounce(load, 250);
  const offs = ['camera.added', 'camera.removed', 'camera.online', 'camera.offline', 'camera.settings', 'armed',
    'camera.detect', 'ui.resync'].map((t) => ctx.live.on(t, reload));
  offs.push(ctx.live.on('camera.status', (d) => cards.get(d.camera_id)?.status(d)));
  load();

  return () => {
    offs.forEach((off) => off());
    document.removeEventListener('pw:armed', onArmed);
    cards.forEach((c) => c.destroy());
  };
}

function cameraCard(cam) {
  const pic = refreshingImage(`/api/ui/cameras/${encodeURIComponent(cam.id)}/snapshot`, 5000, cam.name);
  const name = h('h2', {});
  const online = h('span', { class: 'pill' });
  // An RTSP camera whose detect sub-stream is down records but cannot see motion: say so on its card.
  const detect = h('span', { class: 'pill warn detect-state', hidden: true }, 'Motion detection down');
  const battery = h('span', { class: 'battery' });
  const seen = h('span', { class: 'muted small' });
  const sw = h('input', { type: 'checkbox', role: 'switch', class: 'switch', 'aria-label': 'Armed' });
  const swLabel = h('label', { class: 'switch-label' }, sw, h('span', {}, 'Armed'));
  let current = cam;
  sw.addEventListener('change', async () => {
    sw.disabled = true;
    try {
      await api(`/api/ui/cameras/${encodeURIComponent(current.id)}/arm`, { method: 'POST', body: { armed: sw.checked } });
      toast(`${current.name}: ${sw.checked ? 'armed' : 'disarmed'}`);
    } catch (err) { sw.checked = !sw.checked; toast(err.message, 'error'); }
    sw.disabled = false;
  });
  const el = h('article', { class: 'card camera', dataset: { cameraId: cam.id } },
    h('a', { class: 'pic', href: `#/live/${encodeURIComponent(cam.id)}`, title: 'Live view' }, pic.el),
    h('div', { class: 'camera-body' },
      h('div', { class: 'row spread' }, name, h('span', { class: 'row' }, detect, online)),
      h('div', { class: 'row spread' }, battery, seen),
      h('div', { class: 'row spread' }, swLabel,
        h('span', { class: 'row' },
          h('a', { class: 'button ghost small', href: `#/live/${encodeURIComponent(cam.id)}` }, 'Live'),
          h('a', { class: 'button ghost small', href: `#/camera/${encodeURIComponent(cam.id)}` }, 'Settings')))));

  function status(s) {
    if (s.battery != null) current = { ...current, battery: s.battery };
    if (s.charging != null) current = { ...current, charging: s.charging };
    showBattery();
  }
  function showBattery() {
    if (current.battery == null) { battery.textContent = current.kind === 'phone' ? 'Battery: –' : ''; return; }
    const pct = Math.round(current.battery * 100);
    battery.textContent = `${current.charging ? '⚡ ' : ''}${pct} %`;
    battery.className = 'battery' + (pct <= 15 && !current.charging ? ' low' : '');
    battery.title = current.charging ? 'Charging' : 'On battery';
  }
  function update(c) {
    current = c;
    name.textContent = c.name;
    online.textContent = c.online ? 'Online' : 'Offline';
    online.className = 'pill ' + (c.online ? 'ok' : 'off');
    seen.textContent = c.online ? '' : `seen ${fmtAgo(c.last_seen)}`;
    if (!sw.disabled) sw.checked = !!c.camera_armed;  // not while a change of ours is in flight
    swLabel.title = c.armed ? 'Recording events' : c.camera_armed ? 'Armed, but the hub is disarmed' : 'Disarmed';
    el.classList.toggle('offline', !c.online);
    detect.hidden = c.detect !== 'down';
    detect.title = c.detect === 'down' ? `Detect stream down: ${c.detect_reason || 'no frames'}` : '';
    showBattery();
  }
  return { el, update, status, destroy: () => pic.stop() };
}
