// Add a camera: a one-time code and its QR for the phone to scan.
import { api } from './api.js';
import { h, clear, toast } from './dom.js';

export function mount(el, _params, ctx) {
  const out = h('div', { class: 'pair-out' });
  const btn = h('button', { type: 'button', class: 'primary', id: 'new-code', onclick: make }, 'Show a pairing code');
  let timer = null;
  el.append(
    h('h1', {}, 'Add a camera'),
    h('section', { class: 'card' },
      h('ol', { class: 'steps' },
        h('li', {}, 'On the old phone, scan the QR code below with the camera app (or open the address shown).'),
        h('li', {}, 'The browser warns about the hub’s own certificate: compare the fingerprint below, then continue.'),
        h('li', {}, 'Allow the camera and microphone, give the camera a name, and leave the phone plugged in.')),
      btn, out));

  async function make() {
    btn.disabled = true;
    try {
      const p = await api('/api/ui/pairing', { method: 'POST' });
      const img = h('img', { class: 'qr', alt: `QR code for ${p.url}`,
        src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(p.qr_svg)}` });
      const left = h('span', { class: 'muted' });
      const code = `${p.code.slice(0, 4)}-${p.code.slice(4)}`;
      clear(out,
        h('div', { class: 'pair-grid' },
          h('div', { class: 'qr-tile' }, img),
          h('div', {},
            h('p', { class: 'muted small' }, 'Code'),
            h('p', { class: 'code', id: 'pair-code' }, code),
            left,
            h('p', { class: 'muted small' }, 'Address'),
            h('p', {}, h('a', { href: p.url, class: 'mono', target: '_blank', rel: 'noopener' }, p.url),
              ' ', h('button', { type: 'button', class: 'ghost small', onclick: () => copy(p.url) }, 'Copy')),
            h('p', { class: 'muted small' }, 'Certificate fingerprint (SHA-256)'),
            h('p', { class: 'mono small fingerprint' }, p.cert_sha256))));
      clearInterval(timer);
      const tick = () => {
        const s = Math.round(p.expires_at - Date.now() / 1000);
        if (s <= 0) { left.textContent = 'Expired: make a new code.'; clearInterval(timer); out.classList.add('expired'); return; }
        left.textContent = `Valid for ${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
      };
      out.classList.remove('expired');
      tick();
      timer = setInterval(tick, 1000);
      btn.textContent = 'Make a new code';
    } catch (err) { toast(err.message, 'error'); }
    btn.disabled = false;
  }

  async function copy(text) {
    try { await navigator.clipboard.writeText(text); toast('Copied'); } catch { toast('Copy failed; select the address instead', 'error'); }
  }

  const off = ctx.live.on('camera.added', (d) => toast(`Camera “${d.name}” paired`));
  return () => { clearInterval(timer); off(); };
}
