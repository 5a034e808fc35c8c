// The cloud page: log-in, then one screen with hubs, the live timeline, credits and Telegram. No build step: plain
// modules under a strict Content-Security-Policy (no inline script or style, nothing from other origins but the
// storage account's read URLs for pictures and clips).
import { api, setToken, setUnauthorizedHandler, token } from './api.js';
import { CreditsView } from './account.js';
import { clear, h, toast } from './dom.js';
import { EventLink } from './eventlink.js';
import { HubsView } from './hubs.js';
import { LiveLink } from './live.js';
import { TelegramView } from './telegram.js';
import { TimelineView } from './timeline.js';

const app = document.getElementById('app');
let link = null;
let screen = null;  // the logged-in screen's views: {telegram, eventLink}

function showLogin(message) {
  if (link) { link.stop(); link = null; }
  if (screen) { screen.telegram.stop(); screen = null; }
  setToken(null);
  const err = h('p', { class: 'form-error', role: 'alert' }, message || '');
  const form = h('form', { class: 'card login-card', onsubmit: (e) => { e.preventDefault(); login(form, err); } },
    h('div', { class: 'brand big' }, h('img', { src: '/static/icon.svg', alt: '' }), 'ping-watch'),
    h('label', { for: 'email' }, 'Email'),
    h('input', { id: 'email', name: 'email', type: 'email', autocomplete: 'username', required: true }),
    h('label', { for: 'password' }, 'Password'),
    h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true }),
    err,
    h('button', { type: 'submit', class: 'primary wide' }, 'Log in'));
  clear(app, h('main', { class: 'login' }, form));
  form.elements.email.focus();
}

async function login(form, err) {
  err.textContent = '';
  const button = form.querySelector('button[type=submit]');
  button.disabled = true;
  try {
    const r = await api('/api/v1/auth/login', { method: 'POST',
      body: { email: form.elements.email.value.trim(), password: form.elements.password.value } });
    setToken(r.token);
    await showMain();
  } catch (e) {
    err.textContent = e.status === 401 ? 'Wrong email or password.' : e.status === 429 ? 'Too many attempts: wait a minute and retry.' : e.message;
  } finally {
    button.disabled = false;
  }
}

async function logout() {
  try { await api('/api/v1/auth/logout', { method: 'POST' }); } catch { /* the token is dropped here anyway */ }
  showLogin('Logged out.');
}

async function showMain() {
  let account;
  try {
    account = await api('/api/v1/account');
  } catch (e) {
    if (e.status !== 401) showLogin(e.message);
    return;
  }
  const conn = h('span', { class: 'conn', dataset: { state: 'connecting' }, title: 'Live updates' });
  const hubsBox = h('section', { class: 'card', id: 'hubs' });
  const timelineBox = h('section', { class: 'card', id: 'events' });
  const creditsBox = h('section', { class: 'card', id: 'credits' });
  const telegramBox = h('section', { class: 'card', id: 'telegram' });
  clear(app,
    h('header', { class: 'topbar' },
      h('span', { class: 'brand' }, h('img', { src: '/static/icon.svg', alt: '' }), 'ping-watch'),
      h('span', { class: 'row live-state' }, conn, h('span', { class: 'muted small conn-text' }, 'live')),
      h('span', { class: 'spacer' }),
      h('span', { class: 'muted small account-email' }, account.email),
      h('button', { class: 'small', id: 'logout', onclick: logout }, 'Log out')),
    h('main', { class: 'view layout' },
      h('div', { class: 'side' }, hubsBox, creditsBox, telegramBox),
      h('div', { class: 'main' }, timelineBox)));

  const timeline = new TimelineView(timelineBox);
  const telegram = new TelegramView(telegramBox);
  const hubs = new HubsView(hubsBox, { onCameras: (cams) => { timeline.setCameras(cams); telegram.setCameras(cams); } });
  const credits = new CreditsView(creditsBox);
  const eventLink = new EventLink(timeline);
  if (screen) screen.telegram.stop();
  screen = { telegram, eventLink };

  const refresh = () => Promise.all([
    hubs.load().then(() => hubs.recheck()),
    timeline.load(false),
    credits.load(),
    telegram.load().catch((e) => toast(`Telegram: ${e.message}`, 'error')),
  ]).catch((e) => toast(e.message, 'error'));
  link = new LiveLink(token, {
    onFresh: refresh,
    onState: (s) => { conn.dataset.state = s; },
    onUnauthorized: () => showLogin('Your session ended: log in again.'),
    onMessage: (msg) => {
      if (msg.type === 'event' && msg.event) {
        timeline.applyEvent(msg.event);
        if (msg.event.state === 'queued') credits.load();  // finalize charged it
      } else if (msg.type === 'event_started' && msg.event_start) timeline.applyStart(msg.event_start);
      else if (msg.type === 'hub' && msg.hub) hubs.applyHub(msg.hub);
      else if (msg.type === 'command' && msg.command) hubs.applyCommand(msg.command);
    },
  });
  link.start();
  eventLink.open();  // a #event=<id> address (Telegram's "Open in timeline"), also when it waited for the log-in
}

// Another "Open in timeline" link while the page is open; before log-in, the log-in opens it.
window.addEventListener('hashchange', () => { if (screen) screen.eventLink.open(); });
setUnauthorizedHandler(() => showLogin('Your session ended: log in again.'));
if (token()) showMain(); else showLogin();
