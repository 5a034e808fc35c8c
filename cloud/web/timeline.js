// The timeline: cards with thumbnail, camera, time, state badge, labels and summary; filters; "load more";
// live updates (an event's badge moves uploading → queued → processing → done); playback in a <dialog>; one event
// picked out (a Telegram "Open in timeline" link): scrolled to and highlighted, fetched when it is older than the
// loaded pages.
import { api } from './api.js';
import { clear, fmtDuration, fmtTime, h, safeUrl, toast } from './dom.js';

const STATES = ['uploading', 'queued', 'processing', 'done', 'failed', 'rejected'];
const RANK = { uploading: 0, queued: 1, processing: 2, done: 3, failed: 3, rejected: 3 };
const STATE_TEXT = { uploading: 'uploading', queued: 'queued', processing: 'analysing', done: 'done',
  failed: 'failed', rejected: 'rejected' };

export class TimelineView {
  constructor(root) {
    this.root = root;
    this.events = new Map();  // id -> card data
    this.starts = new Map();  // hub_id/hub_event_id -> event_started data, until its event arrives
    this.cursor = null;
    this.cameraNames = new Map();
    this.loaded = false;
    this.target = null;  // the event picked out by a link: {id, scrolled}
    this.filters = this.filterBar();
    this.list = h('ul', { class: 'timeline', id: 'timeline' });
    this.more = h('button', { class: 'wide', hidden: true, onclick: () => this.load(true) }, 'Load older events');
    this.note = h('div', { class: 'note', id: 'event-note', role: 'alert', hidden: true });
    this.root.append(h('h2', {}, 'Timeline'), this.note, this.filters, this.list, this.more);
  }

  // A line above the timeline (e.g. a link to an event that is not this account's); null hides it.
  showNote(text) {
    if (!text) { this.note.hidden = true; clear(this.note); return; }
    clear(this.note, h('span', {}, text),
      h('button', { class: 'small ghost', 'aria-label': 'Dismiss', onclick: () => this.showNote(null) }, 'OK'));
    this.note.hidden = false;
    this.note.scrollIntoView({ block: 'nearest' });
  }

  setCameras(cameras) {
    const sel = this.filters.elements.camera_id;
    const keep = sel.value;
    this.cameraNames = new Map(cameras.map((c) => [c.id, c.name]));
    clear(sel, h('option', { value: '' }, 'All cameras'),
      cameras.map((c) => h('option', { value: c.id }, `${c.name} (${c.hubName})`)));
    sel.value = keep;
  }

  filterBar() {
    const form = h('form', { class: 'filters', onsubmit: (e) => { e.preventDefault(); this.load(false); } },
      h('select', { name: 'camera_id', 'aria-label': 'Camera' }, h('option', { value: '' }, 'All cameras')),
      h('select', { name: 'state', 'aria-label': 'State' }, h('option', { value: '' }, 'Any state'),
        STATES.map((s) => h('option', { value: s }, STATE_TEXT[s]))),
      h('input', { name: 'label', placeholder: 'Label, e.g. person', maxlength: 64, 'aria-label': 'Label',
        pattern: '[A-Za-z0-9 _\\-]{1,64}' }),
      h('input', { name: 'day', type: 'date', 'aria-label': 'Day' }),
      h('button', { type: 'submit', class: 'small' }, 'Filter'),
      h('button', { type: 'button', class: 'small ghost', onclick: () => { form.reset(); this.target = null; this.load(false); } }, 'Clear'));
    form.addEventListener('change', () => { this.target = null; this.load(false); });
    return form;
  }

  query() {
    const f = this.filters.elements;
    const q = { camera_id: f.camera_id.value, state: f.state.value, label: f.label.value.trim(), limit: 30 };
    if (f.day.value) {  // the chosen day in the browser's time zone
      const since = new Date(`${f.day.value}T00:00:00`);
      const until = new Date(since.getTime() + 86400000);
      q.since = since.toISOString();
      q.until = until.toISOString();
    }
    return q;
  }

  async load(older) {
    const q = this.query();
    if (older && this.cursor) q.cursor = this.cursor;
    let page;
    try {
      page = await api('/api/v1/page/events', { query: q });
    } catch (err) {
      toast(`Timeline: ${err.message}`, 'error');
      return;
    }
    if (!older) { this.events.clear(); }
    for (const e of page.events) this.events.set(e.id, e);
    this.cursor = page.next_cursor;
    this.more.hidden = !this.cursor;
    this.loaded = true;
    this.render();
    if (this.target && !this.events.has(this.target.id)) await this.fetchTarget();
  }

  // Pick out one event (its detail from GET /api/v1/events/{id}): highlighted and scrolled to once it is listed.
  async reveal(detail) {
    this.target = { id: detail.id, started_at: detail.started_at, camera_id: detail.camera_id, scrolled: false };
    // Fetched at once even before the first page is loaded: the player's title needs the card's camera name.
    if (!this.events.has(detail.id)) await this.fetchTarget();
    else this.render();
  }

  forgetTarget() {
    if (!this.target) return;
    this.target = null;
    this.render();
  }

  // An event older than the loaded pages (or outside the filters): its own card, read by its start time.
  async fetchTarget() {
    const t = this.target;
    const at = new Date(t.started_at).getTime();
    if (Number.isNaN(at)) return;
    try {  // a window of a few seconds around its start: rounding of the time cannot miss it
      const page = await api('/api/v1/page/events', { query: { camera_id: t.camera_id,
        since: new Date(at - 2000).toISOString(), until: new Date(at + 2000).toISOString(), limit: 50 } });
      const card = page.events.find((e) => e.id === t.id);
      if (card && this.target === t) this.events.set(card.id, card);
    } catch { /* the player still opens; the card just is not in the list */ }
    this.render();
  }

  matches(e) {
    const q = this.query();
    if (q.camera_id && e.camera_id !== q.camera_id) return false;
    if (q.state && e.state !== q.state) return false;
    if (q.label && !(e.labels || []).includes(q.label)) return false;
    if (q.since && (e.started_at < q.since || e.started_at >= q.until)) return false;
    return true;
  }

  // An "event" message: a new event, or a known one's new state (never moved back by a late message).
  applyEvent(e) {
    this.starts.delete(`${e.hub_id}/${e.hub_event_id}`);
    const known = this.events.get(e.id);
    if (known && RANK[e.state] < RANK[known.state]) return;
    if (!known && !this.matches(e)) { this.render(); return; }
    this.events.set(e.id, { ...(known || {}), ...e });
    this.render();
    const li = this.list.querySelector(`li[data-event-id="${CSS.escape(e.id)}"]`);
    if (li && !known) li.classList.add('fresh');
  }

  applyStart(s) {
    const key = `${s.hub_id}/${s.hub_event_id}`;
    for (const e of this.events.values()) if (`${e.hub_id}/${e.hub_event_id}` === key) return;
    if (this.query().camera_id && this.query().camera_id !== s.camera_id) return;
    this.starts.set(key, s);
    this.render();
  }

  render() {
    const items = [
      ...[...this.starts.values()].map((s) => ({ kind: 'start', at: s.started_at, data: s })),
      ...[...this.events.values()].map((e) => ({ kind: 'event', at: e.started_at, data: e })),
    ].sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0));
    if (!items.length) {
      clear(this.list, h('li', { class: 'empty muted' }, 'No events yet. They appear here the moment a hub reports one.'));
      return;
    }
    clear(this.list, items.map((it) => (it.kind === 'start' ? this.startCard(it.data) : this.eventCard(it.data))));
    const t = this.target;
    const li = t ? this.list.querySelector(`li[data-event-id="${CSS.escape(t.id)}"]`) : null;
    if (li) {
      li.classList.add('target');
      if (!t.scrolled) { t.scrolled = true; li.scrollIntoView({ block: 'center' }); }
    }
  }

  thumb(url, label) {
    const src = safeUrl(url);
    return h('div', { class: 'thumb' }, src ? h('img', { src, alt: label, loading: 'lazy', decoding: 'async' })
      : h('div', { class: 'no-picture' }, 'no picture'));
  }

  startCard(s) {
    return h('li', { class: 'event starting', dataset: { hubEventId: s.hub_event_id } },
      this.thumb(s.thumbnail_url, `Snapshot from ${s.camera_name}`),
      h('div', { class: 'ev-main' },
        h('div', { class: 'ev-head' }, h('span', { class: 'ev-cam' }, s.camera_name),
          h('span', { class: 'ev-time muted' }, fmtTime(s.started_at)), s.late ? h('span', { class: 'chip late' }, 'late') : null),
        h('p', { class: 'summary muted' }, `${s.trigger} · recording…`)),
      h('span', { class: 'badge', dataset: { state: 'started' } }, 'started'));
  }

  eventCard(e) {
    const playable = ['queued', 'processing', 'done', 'failed'].includes(e.state);
    const li = h('li', { class: `event${playable ? ' playable' : ''}`, tabindex: playable ? 0 : -1,
      dataset: { eventId: e.id, hubEventId: e.hub_event_id, state: e.state } },
      this.thumb(e.thumbnail_url, `Snapshot from ${e.camera_name}`),
      h('div', { class: 'ev-main' },
        h('div', { class: 'ev-head' }, h('span', { class: 'ev-cam' }, e.camera_name || this.cameraNames.get(e.camera_id) || 'Camera'),
          h('span', { class: 'ev-time muted' }, `${fmtTime(e.started_at)} · ${fmtDuration(e.duration_s)}`)),
        (e.labels || []).length ? h('div', { class: 'chips' }, e.labels.map((l) => h('span', { class: 'chip' }, l))) : null,
        e.summary ? h('p', { class: 'summary' }, e.summary)
          : h('p', { class: 'summary muted' }, e.state === 'done' ? 'Nothing recognised.' : (e.reason || `${e.trigger} · ${STATE_TEXT[e.state] || e.state}…`))),
      h('span', { class: 'badge', dataset: { state: e.state } }, STATE_TEXT[e.state] || e.state));
    if (playable) {
      li.addEventListener('click', () => this.play(e));
      li.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') this.play(e); });
    }
    return li;
  }

  async play(e) {
    let detail;
    try {
      detail = await api(`/api/v1/events/${encodeURIComponent(e.id)}`);
    } catch (err) {
      toast(`Cannot play: ${err.message}`, 'error');
      return;
    }
    this.showPlayer(detail, e);
  }

  // The player for an event's detail (its clip through a short read SAS); `card` adds the page's camera name and
  // summary when the event is listed. `onClose` runs once when the dialog closes.
  showPlayer(detail, card, onClose) {
    const dialog = document.getElementById('player');
    const src = safeUrl(detail.clip_url);
    const camera = (card && card.camera_name) || this.cameraNames.get(detail.camera_id) || 'Camera';
    const summary = (card && card.summary) || (detail.summary && typeof detail.summary.text === 'string' ? detail.summary.text : null);
    const video = src ? h('video', { id: 'clip', controls: true, autoplay: true, muted: true, playsInline: true, preload: 'auto', src }) : null;
    clear(dialog,
      h('div', { class: 'row spread' }, h('h2', {}, `${camera} · ${fmtTime(detail.started_at)}`),
        h('button', { class: 'small', onclick: () => dialog.close() }, 'Close')),
      video || h('p', { class: 'muted' }, detail.state === 'uploading' ? 'The clip is still uploading: open it again in a moment.'
        : 'The clip is not available.'),
      detail.labels && detail.labels.length ? h('div', { class: 'chips' }, detail.labels.map((l) => h('span', { class: 'chip' }, l))) : null,
      summary ? h('p', {}, summary) : null,
      h('p', { class: 'muted small' }, 'The link to this clip expires in a few minutes; reopen it to watch again.'));
    dialog.dataset.eventId = detail.id;
    if (this.playerDone) this.playerDone.abort();  // the previous clip's close handler is not this one's
    const done = new AbortController();
    this.playerDone = done;
    dialog.addEventListener('close', () => {
      done.abort();
      if (video) { video.pause(); video.removeAttribute('src'); video.load(); }
      if (onClose) onClose();
    }, { signal: done.signal });
    if (!dialog.open) dialog.showModal();
  }
}
