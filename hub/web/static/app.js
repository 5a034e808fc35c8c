// ping-watch web UI: log-in, shell, hash router and the live connection to the hub.
import { api, ApiError, sessionKey, setSessionKey, setUnauthorizedHandler } from './js/api.js';
import { h, clear, toast } from './js/dom.js';
import { Live } from './js/live.js';
import * as dashboard from './js/dashboard.js';
import * as events from './js/events.js';
import * as camera from './js/camera.js';
import * as liveview from './js/liveview.js';
import * as pairing from './js/pairing.js';
import * as system from './js/system.js';

const root = document.getElementById('app');
const routes = [
  { re: /^#?\/?$/, view: dashboard, nav: 'dashboard' },
  { re: /^#\/dashboard$/, view: dashboard, nav: 'dashboard' },
  { re: /^#\/events$/, view: events, nav: 'events' },
  { re: /^#\/camera\/([^/]+)$/, view: camera, nav: 'dashboard' },
  { re: /^#\/live\/([^/]+)$/, view: liveview, nav: 'dashboard' },
  { re: /^#\/pair$/, view: pairing, nav: 'pair' },
  { re: /^#\/system$/, view: system, nav: 'system' },
];

const ctx = { live: null, armed: null };
let unmount = null;
let shell = null;

async function boot() {
  setUnauthorizedHandler(() => { setSessionKey(null); showLogin('Your session ended; log in again.'); });
  if (!sessionKey()) { showLogin(); return; }  // the cookie alone is no session
  try {
    await api('/api/ui/session');
    showApp();
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) showLogin();
    else clear(root, h('p', { class: 'boot error' }, err.message));
  }
}

// -- log-in ------------------------------------------------------------------------------------------

function showLogin(notice) {
  teardown();
  const input = h('input', {
    type: 'password', name: 'secret', id: 'secret', autocomplete: 'current-password', required: true,
    placeholder: 'Admin secret', autofocus: true, spellcheck: 'false', autocapitalize: 'off',
  });
  const msg = h('p', { class: 'form-error', role: 'alert' }, notice || '');
  const button = h('button', { type: 'submit', class: 'primary wide' }, 'Log in');
  let timer = null;
  const form = h('form', { class: 'login-card card', onsubmit: async (e) => {
    e.preventDefault();
    button.disabled = true;
    msg.textContent = '';
    try {
      const r = await api('/api/ui/login', { method: 'POST', body: { secret: input.value } });
      setSessionKey(r.csrf);
      input.value = '';
      showApp();
    } catch (err) {
      if (err.status === 429 && err.retryAfter) {
        let left = err.retryAfter;
        const tick = () => {
          msg.textContent = `Too many wrong secrets. Try again in ${left} s.`;
          if (left-- <= 0) { clearInterval(timer); msg.textContent = ''; button.disabled = false; }
        };
        clearInterval(timer);
        tick();
        timer = setInterval(tick, 1000);
        return;
      }
      msg.textContent = err.status === 401 ? 'Wrong admin secret.' : err.message;
      if (err.hint && err.status === 401) msg.append(h('span', { class: 'hint' }, ` (${err.hint})`));
      button.disabled = false;
      input.select();
    }
  } },
  h('div', { class: 'brand big' }, h('img', { src: '/ui/static/icon.svg', alt: '' }), 'ping-watch'),
  h('label', { for: 'secret' }, 'Admin secret'),
  input, msg, button,
  h('p', { class: 'muted small' }, 'The secret was printed by “pingwatch init”.'));
  clear(root, h('main', { class: 'login' }, form));
  input.focus();
}

// -- app shell ---------------------------------------------------------------------------------------

function showApp() {
  teardown();
  const armButton = h('button', { class: 'arm-toggle', id: 'global-arm', type: 'button', onclick: toggleArm },
    '…');
  const navLink = (id, href, label) => h('a', { href, dataset: { nav: id } }, label);
  const conn = h('span', { class: 'conn', title: 'Live connection to the hub' });
  const header = h('header', { class: 'topbar' },
    h('a', { class: 'brand', href: '#/' }, h('img', { src: '/ui/static/icon.svg', alt: '' }), 'ping-watch', conn),
    h('nav', { class: 'nav' },
      navLink('dashboard', '#/', 'Cameras'), navLink('events', '#/events', 'Events'),
      navLink('pair', '#/pair', 'Add camera'), navLink('system', '#/system', 'System')),
    h('div', { class: 'topbar-actions' }, armButton,
      h('button', { type: 'button', class: 'ghost', onclick: logout, title: 'Log out' }, 'Log out')));
  const view = h('main', { id: 'view', class: 'view' });
  clear(root, header, view);
  shell = { header, view, armButton, conn };
  ctx.live = new Live((state) => conn.dataset.state = state);
  ctx.live.on('ui.hello', (d) => setArmed(d.armed));
  ctx.live.on('armed', (d) => { if (d.camera_id == null) setArmed(d.armed, d.until); });
  ctx.live.on('ui.logged-out', () => showLogin('You logged out in another tab.'));
  api('/api/ui/arm').then((a) => setArmed(a.armed)).catch(() => {});
  window.addEventListener('hashchange', route);
  route();
}

function setArmed(armed, until) {
  ctx.armed = armed;
  if (!shell) return;
  const b = shell.armButton;
  b.textContent = armed ? 'Armed' : 'Disarmed';
  b.classList.toggle('armed', armed);
  b.setAttribute('aria-pressed', String(armed));
  b.title = (armed ? 'Click to disarm' : 'Click to arm') +
    (until ? ` (reverts ${new Date(until * 1000).toLocaleTimeString()})` : '');
  document.dispatchEvent(new CustomEvent('pw:armed', { detail: { armed, until } }));
}
ctx.setArmed = setArmed;

async function toggleArm() {
  const want = !ctx.armed;
  try {
    const r = await api('/api/ui/arm', { method: 'POST', body: { armed: want } });
    setArmed(r.hub_armed);
    toast(want ? 'Hub armed' : 'Hub disarmed');
  } catch (err) { toast(err.message, 'error'); }
}

async function logout() {
  try { await api('/api/ui/logout', { method: 'POST' }); } catch { /* session already gone */ }
  setSessionKey(null);
  showLogin('Logged out.');
}

function teardown() {
  window.removeEventListener('hashchange', route);
  if (unmount) { try { unmount(); } catch { /* ignore */ } unmount = null; }
  if (ctx.live) { ctx.live.close(); ctx.live = null; }
  shell = null;
}

function route() {
  if (!shell) return;
  const hash = location.hash || '#/';
  let match = null;
  let entry = routes.find((r) => (match = hash.match(r.re)));
  if (!entry) { entry = routes[0]; match = []; }
  if (unmount) { try { unmount(); } catch { /* ignore */ } unmount = null; }
  for (const a of shell.header.querySelectorAll('[data-nav]')) {
    a.classList.toggle('active', a.dataset.nav === entry.nav);
  }
  const container = clear(shell.view);
  window.scrollTo(0, 0);
  unmount = entry.view.mount(container, match.slice(1).map(decodeURIComponent), ctx) || null;
}

boot();
