// A camera's settings, with the zone and mask editor drawn over its latest picture.
import { api } from './api.js';
import { h, clear, toast } from './dom.js';
import { refreshingImage } from './snapshot.js';

const COLORS = {
  masks: { fill: 'rgba(239, 68, 68, 0.30)', stroke: '#ef4444' },
  zones: { fill: 'rgba(34, 197, 94, 0.25)', stroke: '#22c55e' },
};

export function mount(el, [cameraId]) {
  let cam = null;
  const stopFns = [];
  el.append(h('p', { class: 'muted' }, 'Loading…'));
  api(`/api/ui/cameras/${encodeURIComponent(cameraId)}`).then((c) => { cam = c; render(); }).catch((err) => {
    clear(el, h('div', { class: 'card empty' }, h('h2', {}, 'Camera not found'), h('p', {}, err.message),
      h('a', { class: 'button', href: '#/' }, 'Back to cameras')));
  });

  function render() {
    const s = cam.settings;
    const polys = { masks: structuredClone(s.masks || []), zones: structuredClone(s.zones || []) };
    let mode = 'masks';
    let pending = [];

    const name = h('input', { name: 'name', value: cam.name, maxlength: 64, required: true });
    const sens = h('select', { name: 'sensitivity' }, ['low', 'medium', 'high'].map((v) =>
      h('option', { value: v, selected: s.sensitivity === v }, v[0].toUpperCase() + v.slice(1))));
    const motionOn = h('input', { type: 'checkbox', name: 'motion_enabled', checked: !!s.motion_enabled, class: 'switch', role: 'switch' });
    const pre = h('input', { type: 'number', name: 'pre_roll_s', min: 0, max: 60, step: 1, value: s.pre_roll_s });
    const post = h('input', { type: 'number', name: 'post_roll_s', min: 0, max: 120, step: 1, value: s.post_roll_s });
    const audioOn = h('input', { type: 'checkbox', name: 'audio_enabled', checked: !!s.audio_enabled, class: 'switch', role: 'switch' });
    const level = h('input', { type: 'range', name: 'audio_level_dbfs', min: -90, max: 0, step: 1, value: s.audio_level_dbfs });
    const levelOut = h('output', {}, `${s.audio_level_dbfs} dBFS`);
    level.addEventListener('input', () => { levelOut.textContent = `${level.value} dBFS`; });

    // -- editor --
    const pic = refreshingImage(`/api/ui/cameras/${encodeURIComponent(cam.id)}/snapshot`, 0, cam.name);
    stopFns.push(() => pic.stop());
    const canvas = h('canvas', { class: 'editor-canvas', id: 'zone-canvas', 'aria-label': 'Zone and mask editor' });
    const stage = h('div', { class: 'editor-stage' }, pic.el, canvas);
    const aspect = cam.width && cam.height ? cam.width / cam.height : 16 / 9;
    stage.style.aspectRatio = String(aspect);
    pic.el.addEventListener('snapshot', (e) => {
      if (e.detail.width && e.detail.height) stage.style.aspectRatio = String(e.detail.width / e.detail.height);
    });
    const hint = h('p', { class: 'muted small' });
    const modeBtns = Object.fromEntries(['masks', 'zones'].map((m) => [m, h('button', {
      type: 'button', class: 'seg', dataset: { mode: m }, onclick: () => { mode = m; pending = []; draw(); },
    }, m === 'masks' ? 'Mask (ignore)' : 'Zone (watch only)')]));
    const closeBtn = h('button', { type: 'button', class: 'ghost small', id: 'close-polygon', onclick: closePolygon }, 'Close polygon');
    const undoBtn = h('button', { type: 'button', class: 'ghost small', onclick: () => { pending.pop(); draw(); } }, 'Undo point');
    const clearBtn = h('button', { type: 'button', class: 'ghost small', id: 'clear-polygons',
      onclick: () => { polys[mode] = []; pending = []; draw(); } }, 'Clear');

    function closePolygon() {
      if (pending.length < 3) { toast('A polygon needs at least 3 points', 'error'); return; }
      polys[mode].push(pending);
      pending = [];
      draw();
    }

    canvas.addEventListener('click', (e) => {
      const r = canvas.getBoundingClientRect();
      const x = Math.min(1, Math.max(0, (e.clientX - r.left) / r.width));
      const y = Math.min(1, Math.max(0, (e.clientY - r.top) / r.height));
      if (pending.length >= 3) {
        const [fx, fy] = pending[0];
        if (Math.hypot((fx - x) * r.width, (fy - y) * r.height) < 12) { closePolygon(); return; }
      }
      if (pending.length >= 64) return;
      pending.push([Number(x.toFixed(4)), Number(y.toFixed(4))]);
      draw();
    });

    function draw() {
      for (const [m, b] of Object.entries(modeBtns)) b.classList.toggle('active', m === mode);
      const dpr = window.devicePixelRatio || 1;
      const w = canvas.clientWidth;
      const hgt = canvas.clientHeight;
      if (!w || !hgt) return;
      if (canvas.width !== Math.round(w * dpr)) canvas.width = Math.round(w * dpr);
      if (canvas.height !== Math.round(hgt * dpr)) canvas.height = Math.round(hgt * dpr);
      const g = canvas.getContext('2d');
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      g.clearRect(0, 0, w, hgt);
      for (const m of ['zones', 'masks']) {
        for (const poly of polys[m]) {
          g.beginPath();
          poly.forEach(([x, y], i) => (i ? g.lineTo(x * w, y * hgt) : g.moveTo(x * w, y * hgt)));
          g.closePath();
          g.fillStyle = COLORS[m].fill;
          g.fill();
          g.lineWidth = 2;
          g.strokeStyle = COLORS[m].stroke;
          g.stroke();
        }
      }
      if (pending.length) {
        g.beginPath();
        pending.forEach(([x, y], i) => (i ? g.lineTo(x * w, y * hgt) : g.moveTo(x * w, y * hgt)));
        g.strokeStyle = '#facc15';
        g.lineWidth = 2;
        g.setLineDash([6, 4]);
        g.stroke();
        g.setLineDash([]);
        for (const [i, [x, y]] of pending.entries()) {
          g.beginPath();
          g.arc(x * w, y * hgt, i === 0 ? 6 : 4, 0, Math.PI * 2);
          g.fillStyle = i === 0 ? '#facc15' : '#fde68a';
          g.fill();
        }
      }
      hint.textContent = `${polys.masks.length} mask${polys.masks.length === 1 ? '' : 's'}, ` +
        `${polys.zones.length} zone${polys.zones.length === 1 ? '' : 's'}. ` +
        (pending.length ? `${pending.length} point${pending.length === 1 ? '' : 's'}: click the first point or “Close polygon” to finish.`
          : 'Click on the picture to start a polygon.');
      closeBtn.disabled = pending.length < 3;
      undoBtn.disabled = !pending.length;
    }
    const ro = new ResizeObserver(draw);
    ro.observe(canvas);
    stopFns.push(() => ro.disconnect());

    const saveBtn = h('button', { type: 'submit', class: 'primary', id: 'save-settings' }, 'Save');
    const form = h('form', { class: 'settings', onsubmit: async (e) => {
      e.preventDefault();
      if (pending.length >= 3) closePolygon();
      saveBtn.disabled = true;
      try {
        cam = await api(`/api/ui/cameras/${encodeURIComponent(cam.id)}`, { method: 'PATCH', body: {
          name: name.value,
          settings: {
            sensitivity: sens.value, motion_enabled: motionOn.checked,
            pre_roll_s: Number(pre.value), post_roll_s: Number(post.value),
            audio_enabled: audioOn.checked, audio_level_dbfs: Number(level.value),
            masks: polys.masks, zones: polys.zones,
          },
        } });
        title.textContent = cam.name;
        toast('Settings saved');
      } catch (err) { toast(err.message, 'error'); }
      saveBtn.disabled = false;
    } },
    h('section', { class: 'card' },
      h('h2', {}, 'Zones and masks'),
      h('p', { class: 'muted small' }, 'Masks hide areas from motion detection (a busy street, a tree). ' +
        'If you draw zones, only motion inside them counts.'),
      h('div', { class: 'row wrap' }, h('div', { class: 'segmented' }, modeBtns.masks, modeBtns.zones),
        closeBtn, undoBtn, clearBtn),
      stage, hint),
    h('section', { class: 'card fields' },
      h('h2', {}, 'Camera'),
      field('Name', name),
      h('h3', {}, 'Motion'),
      field('Motion trigger', motionOn),
      field('Sensitivity', sens),
      h('h3', {}, 'Sound'),
      field('Sound trigger', audioOn),
      field('Ignore sounds quieter than', h('div', { class: 'row' }, level, levelOut)),
      h('h3', {}, 'Clips'),
      field('Seconds before the event', pre),
      field('Seconds after the event', post),
      h('div', { class: 'row end' }, h('a', { class: 'button ghost', href: '#/' }, 'Back'), saveBtn)));

    const title = h('span', {}, cam.name);
    clear(el,
      h('div', { class: 'row spread' }, h('h1', {}, title, h('span', { class: 'muted small' }, ` · ${cam.id}`)),
        h('a', { class: 'button ghost', href: `#/live/${encodeURIComponent(cam.id)}` }, 'Live view')),
      form);
    requestAnimationFrame(draw);
  }

  return () => stopFns.forEach((f) => f());
}

function field(label, control) {
  return h('label', { class: 'field' }, h('span', {}, label), control);
}
