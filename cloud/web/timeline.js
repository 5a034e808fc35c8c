// The timeline: cards with thumbnail, camera, time, state badge, labels and summary; filters; "load more";
// live updates (an event's badge moves uploading → queued → processing → done); playback in a <dialog>.
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
    this.filters = this.filterBar();
    this.list = h('ul', { class: 'timeline', id: 'timeline' });
    this.more = h('button', { class: 'wide', hidden: true, onclick: () => this.load(true) }, 'Load older events');
    this.root.append(h('h2', {}, 'Timeline'), this.filters, this.list, this.more);
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
      h('button', { type: 'button', class: 'small ghost', onclick: () => { form.reset(); this.load(false); } }, 'Clear'));
    form.addEventListener('change', () => this.load(false));
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
    const dialog = document.getElementById('player');
    let detail;
    try {
      detail = await api(`/api/v1/events/${encodeURIComponent(e.id)}`);
    } catch (err) {
      toast(`Cannot play: ${err.message}`, 'error');
      return;
    }
    const src = safeUrl(detail.clip_url);
    const video = src ? h('video', { id: 'clip', controls: true, autoplay: true, muted: true, playsInline: true, preload: 'auto', src }) : null;
    clear(dialog,
      h('div', { class: 'row spread' }, h('h2', {}, `${e.camera_name} · ${fmtTime(e.started_at)}`),
        h('button', { class: 'small', onclick: () => dialog.close() }, 'Close')),
      video || h('p', { class: 'muted' }, 'The clip is not available.'),
      detail.labels && detail.labels.length ? h('div', { class: 'chips' }, detail.labels.map((l) => h('span', { class: 'chip' }, l))) : null,
      e.summary ? h('p', {}, e.summary) : null,
      h('p', { class: 'muted small' }, 'The link to this clip expires in a few minutes; reopen it to watch again.'));
    dialog.addEventListener('close', () => { if (video) { video.pause(); video.removeAttribute('src'); video.load(); } }, { once: true });
    if (!dialog.open) dialog.showModal();
  }
}
