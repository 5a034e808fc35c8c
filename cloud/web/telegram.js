// Telegram on the cloud page: the account's alert mode, its linked chats (which cameras alert each, mutes set from
// the chat), unlinking, and linking a new chat with a deep link and its QR code.
//
// Linking finishes in Telegram (the person presses Start), and no live message says so: while a QR is shown the
// chat list is re-read every few seconds, until a new chat appears or the link expires.
import { api } from './api.js';
import { clear, fmtTime, h, toast } from './dom.js';

const POLL_MS = 3000;
const DEEP_LINK = /^https:\/\/t\.me\/[A-Za-z0-9_]+\?start=[A-Za-z0-9_-]+$/;
// "14:05", or "Dec 2, 14:05" when not today: short enough to sit next to a camera's name.
function until(iso) {
  const d = new Date(iso);
  const today = d.toDateString() === new Date().toDateString();
  return d.toLocaleString(undefined, today ? { hour: '2-digit', minute: '2-digit' }
    : { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

const MODES = [
  ['all', 'Every event', 'the snapshot at once, then the summary and the clip'],
  ['matches', 'Only matches', 'one message after the analysis, when it matches the camera\'s prompt'],
];

export class TelegramView {
  constructor(root) {
    this.root = root;
    this.chats = [];
    this.hubOf = new Map();  // camera id -> hub name (a chat's camera list has no hub)
    this.confirming = null;  // the chat whose unlink waits for a second press
    this.poll = null;  // {timer, known: Set of chat ids, expires: ms}
    this.stopped = false;
    this.modeForm = this.modeChooser();
    this.list = h('div', { class: 'tg-chats', id: 'tg-chats' }, h('p', { class: 'muted small' }, 'Loading…'));
    this.out = h('div', { class: 'tg-out' });
    root.append(h('h2', {}, 'Telegram alerts'),
      h('p', { class: 'muted small' }, 'A message with a snapshot the moment a camera triggers, then the summary and the clip.'),
      this.modeForm,
      h('h3', { class: 'tg-sub' }, 'Linked chats'), this.list,
      h('button', { id: 'tg-link', onclick: () => this.startLink() }, 'Link a Telegram chat'), this.out);
  }

  stop() {
    this.stopped = true;
    this.stopPolling();
  }

  setCameras(cameras) {
    this.hubOf = new Map(cameras.map((c) => [c.id, c.hubName]));
    if (this.chats.length) this.render();
  }

  async load() {
    const [chats, settings] = await Promise.all([
      api('/api/v1/telegram/chats'),
      api('/api/v1/telegram/settings'),
    ]);
    this.chats = chats.chats || [];
    this.setMode(settings.mode);
    this.render();
  }

  // -- the alert mode ------------------------------------------------------------------------------------------

  modeChooser() {
    const form = h('form', { class: 'tg-mode', id: 'tg-mode', onsubmit: (e) => e.preventDefault() },
      h('fieldset', {},
        h('legend', {}, 'Alert me on'),
        MODES.map(([value, title, detail]) => h('label', { class: 'tg-mode-option' },
          h('input', { type: 'radio', name: 'mode', value, id: `tg-mode-${value}` }),
          h('span', {}, h('strong', {}, title), h('span', { class: 'muted small' }, detail))))),
      h('p', { class: 'muted small tg-mode-state', role: 'status' }));
    form.addEventListener('change', () => this.saveMode());
    return form;
  }

  setMode(mode) {
    for (const input of this.modeForm.elements.mode) input.checked = input.value === mode;
    this.mode = mode;
  }

  async saveMode() {
    const wanted = this.modeForm.elements.mode.value;
    const state = this.modeForm.querySelector('.tg-mode-state');
    state.textContent = 'Saving…';
    try {
      const r = await api('/api/v1/telegram/settings', { method: 'PUT', body: { mode: wanted } });
      this.setMode(r.mode);
      state.textContent = 'Saved.';
    } catch (err) {
      this.setMode(this.mode);  // back to what the server has
      state.textContent = '';
      toast(`Alert mode not saved: ${err.message}`, 'error');
    }
  }

  // -- the chats -----------------------------------------------------------------------------------------------

  render() {
    if (!this.chats.length) {
      clear(this.list, h('p', { class: 'muted small', id: 'tg-no-chats' }, 'No chat linked yet.'));
      return;
    }
    clear(this.list, this.chats.map((c) => this.chatCard(c)));
  }

  chatCard(chat) {
    const name = chat.title || `Chat ${chat.chat_id}`;
    const box = h('article', { class: 'tg-chat', dataset: { chatId: chat.id } });
    const cams = chat.cameras || [];
    const all = h('input', { type: 'checkbox', name: 'all', checked: chat.all_cameras });
    const form = h('form', { class: 'tg-cams', onsubmit: (e) => e.preventDefault() },
      h('label', { class: 'check' }, all, 'All cameras, also ones added later'),
      cams.length ? h('ul', {}, cams.map((cam) => h('li', { dataset: { cameraId: cam.id } },
        h('label', { class: 'check' },
          h('input', { type: 'checkbox', name: 'camera', value: cam.id, checked: cam.subscribed, disabled: chat.all_cameras }),
          cam.name, this.hubOf.get(cam.id) ? h('span', { class: 'muted small' }, ` · ${this.hubOf.get(cam.id)}`) : null),
        cam.muted_until ? h('span', { class: 'pill warn small-pill tg-muted', title: `Muted from the chat until ${fmtTime(cam.muted_until)}` },
          `muted until ${until(cam.muted_until)}`) : null)))
        : h('p', { class: 'muted small' }, 'No cameras yet.'),
      !chat.all_cameras && !cams.some((c) => c.subscribed)
        ? h('p', { class: 'small error tg-silent' }, 'No camera selected: this chat gets no alerts.') : null);
    form.addEventListener('change', () => this.saveCameras(chat, form));
    const actions = this.confirming === chat.id
      ? h('span', { class: 'row' },
        h('span', { class: 'small' }, 'Unlink this chat?'),
        h('button', { class: 'small danger tg-unlink-yes', onclick: () => this.unlink(chat) }, 'Unlink'),
        h('button', { class: 'small ghost', onclick: () => { this.confirming = null; this.render(); } }, 'Cancel'))
      : h('button', { class: 'small ghost tg-unlink', onclick: () => { this.confirming = chat.id; this.render(); } }, 'Unlink');
    return clear(box,
      h('div', { class: 'row spread wrap' },
        h('div', {}, h('strong', { class: 'tg-chat-name' }, name),
          h('div', { class: 'muted small' }, `linked ${fmtTime(chat.linked_at)}`)),
        actions),
      form);
  }

  async saveCameras(chat, form) {
    const all = form.elements.all.checked;
    const ids = [...form.querySelectorAll('input[name=camera]')].filter((i) => i.checked).map((i) => i.value);
    const round = (this.saving = (this.saving || 0) + 1);
    try {
      const updated = await api(`/api/v1/telegram/chats/${encodeURIComponent(chat.id)}/cameras`, {
        method: 'PUT', body: { all, camera_ids: all ? [] : ids } });
      if (round !== this.saving) return;  // a later change is on its way: its answer is the one to show
      this.chats = this.chats.map((c) => (c.id === updated.id ? updated : c));
    } catch (err) {
      toast(err.status === 404 ? 'That chat or camera is gone: the list is re-read' : `Not saved: ${err.message}`, 'error');
      await this.load().catch(() => {});
      return;
    }
    this.render();
  }

  async unlink(chat) {
    this.confirming = null;
    try {
      await api(`/api/v1/telegram/chats/${encodeURIComponent(chat.id)}`, { method: 'DELETE' });
      toast(`Unlinked ${chat.title || 'the chat'}: it gets no more alerts`);
    } catch (err) {
      if (err.status !== 404) { toast(`Not unlinked: ${err.message}`, 'error'); this.render(); return; }
    }
    this.chats = this.chats.filter((c) => c.id !== chat.id);
    this.render();
  }

  // -- linking a chat ------------------------------------------------------------------------------------------

  async startLink() {
    this.stopPolling();
    let link;
    try {
      link = await api('/api/v1/telegram/links', { method: 'POST', body: {} });
    } catch (err) {
      if (err.status === 404 || err.status === 405 || err.reason === 'telegram_off') {
        clear(this.out, h('p', { class: 'muted', id: 'tg-none' }, 'Telegram is not set up on this server.'));
      } else if (err.status === 503) {
        clear(this.out, h('p', { class: 'error' }, `Telegram cannot be reached right now: ${err.message}`));
      } else {
        toast(`Telegram: ${err.message}`, 'error');
      }
      return;
    }
    const deep = typeof link.deep_link === 'string' && DEEP_LINK.test(link.deep_link) ? link.deep_link : null;
    // The SVG is shown as an image (a data: URL): an <img> never runs scripts or loads anything an SVG names.
    const qr = typeof link.qr_svg === 'string' && link.qr_svg.trim().startsWith('<')
      ? h('img', { class: 'qr', alt: 'QR code that opens the bot', src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(link.qr_svg)}` })
      : null;
    clear(this.out, h('div', { class: 'tg-grid' },
      qr ? h('div', { class: 'qr-tile' }, qr) : null,
      h('div', {},
        h('p', {}, 'Scan with your phone, or open the link, and press Start in Telegram.'),
        deep ? h('p', {}, h('a', { href: deep, target: '_blank', rel: 'noopener noreferrer', id: 'tg-deep' }, 'Open the bot')) : null,
        h('p', { class: 'muted small' }, `The link works once, until ${fmtTime(link.expires_at)}.`),
        h('p', { class: 'muted small tg-waiting', id: 'tg-waiting' }, 'Waiting for Start in Telegram…'))));
    const expires = new Date(link.expires_at).getTime();
    this.poll = { timer: null, known: new Set(this.chats.map((c) => c.id)), expires: Number.isNaN(expires) ? Date.now() + 600000 : expires };
    this.schedulePoll();
  }

  schedulePoll() {
    if (!this.poll) return;
    this.poll.timer = setTimeout(() => this.pollOnce(), POLL_MS);
  }

  stopPolling() {
    if (this.poll) clearTimeout(this.poll.timer);
    this.poll = null;
  }

  async pollOnce() {
    const poll = this.poll;
    if (!poll || this.stopped || !this.root.isConnected) { this.stopPolling(); return; }
    let chats = null;
    try {
      chats = (await api('/api/v1/telegram/chats')).chats || [];
    } catch { /* a blip: the next round retries; a 401 has already sent the page to log-in */ }
    if (this.poll !== poll || this.stopped) return;  // a new link, or log-out, while this was on its way
    if (chats) {
      this.chats = chats;
      this.render();
      const fresh = chats.find((c) => !poll.known.has(c.id));
      if (fresh) {
        this.stopPolling();
        clear(this.out, h('p', { class: 'ok-text', id: 'tg-linked' }, `Linked ${fresh.title || `chat ${fresh.chat_id}`}: alerts go there from now on.`));
        return;
      }
    }
    if (Date.now() >= poll.expires) {
      this.stopPolling();
      clear(this.out, h('p', { class: 'muted', id: 'tg-expired' }, 'The link expired before Start was pressed. Make a new one.'));
      return;
    }
    this.schedulePoll();
  }
}
