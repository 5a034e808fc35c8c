// The event timeline: filters, thumbnails, a player with download and delete, live updates.
import { api } from './api.js';
import { h, clear, fmtTime, fmtDuration, toast, debounce, triggerLabel } from './dom.js';

const PAGE = 30;

export function mount(el, _params, ctx) {
  const cameraSel = h('select', { name: 'camera', 'aria-label': 'Camera' }, h('option', { value: '' }, 'All cameras'));
  const triggerSel = h('select', { name: 'trigger', 'aria-label': 'Trigger' },
    h('option', { value: '' }, 'All triggers'), h('option', { value: 'motion' }, 'Motion'),
    h('option', { value: 'sound' }, 'Sound'));
  const fromIn = h('input', { type: 'date', name: 'from', 'aria-label': 'From' });
  const toIn = h('input', { type: 'date', name: 'to', 'aria-label': 'To' });
  const list = h('ul', { class: 'events', id: 'event-list' });
  const more = h('button', { type: 'button', class: 'ghost wide', id: 'load-older', hidden: true,
    onclick: () => load(true) }, 'Load older events');
  const status = h('p', { class: 'muted' });
  const player = h('div', { class: 'player-slot' });
  const names = new Map();
  let nextBefore = null;
  let count = 0;
  let ctrl = null;
  let selected = null;

  el.append(
    h('div', { class: 'row spread' }, h('h1', {}, 'Events'), status),
    h('form', { class: 'filters card', onsubmit: (e) => e.preventDefault(), onchange: () => load(false) },
      cameraSel, triggerSel, h('label', {}, 'From ', fromIn), h('label', {}, 'To ', toIn),
      h('button', { type: 'reset', class: 'ghost small', onclick: () => setTimeout(() => load(false)) }, 'Clear')),
    player, list, more);

  api('/api/ui/cameras').then((d) => {
    for (const c of d.cameras) {
      names.set(c.id, c.name);
      cameraSel.append(h('option', { value: c.id }, c.name));
    }
    for (const row of list.children) row.querySelector('.ev-camera').textContent = names.get(row.dataset.camera) || row.dataset.camera;
  }).catch(() => {});

  function query(before) {
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (cameraSel.value) q.set('camera', cameraSel.value);
    if (triggerSel.value) q.set('trigger', triggerSel.value);
    if (fromIn.value) q.set('since', String(new Date(`${fromIn.value}T00:00:00`).getTime() / 1000));
    if (toIn.value) q.set('until', String(new Date(`${toIn.value}T00:00:00`).getTime() / 1000 + 86400));
    if (before != null) q.set('before', String(before));
    return q;
  }

  async function load(append) {
    // Nothing older to page to: without this guard a stray click would load the first page again onto the end.
    if (append && nextBefore == null) return;
    if (ctrl) ctrl.abort();
    const mine = ctrl = new AbortController();
    list.setAttribute('aria-busy', 'true');
    let data;
    try {
      data = await api(`/api/ui/events?${query(append ? nextBefore : null)}`, { signal: mine.signal });
    } catch (err) {
      if (err.name !== 'AbortError') status.textContent = err.message;
      return;
    } finally {
      if (ctrl === mine) list.removeAttribute('aria-busy');
    }
    if (!append) { clear(list); count = 0; }
    for (const ev of data.events) {
      if (list.querySelector(`[data-event-id="${CSS.escape(ev.id)}"]`)) continue;  // listed already
      list.append(row(ev));
      count += 1;
    }
    nextBefore = data.next_before;
    more.hidden = nextBefore == null;
    status.textContent = count ? `${count}${nextBefore != null ? '+' : ''} event${count === 1 ? '' : 's'}` : '';
    if (!count) list.append(h('li', { class: 'empty muted' }, 'No events match.'));
  }

  function row(ev) {
    const thumb = ev.thumb_url
      ? h('img', { src: ev.thumb_url, alt: '', loading: 'lazy', decoding: 'async' })
      : h('div', { class: 'no-picture' }, '–');
    const li = h('li', { class: 'event', dataset: { eventId: ev.id, camera: ev.camera_id }, tabindex: 0,
      onclick: () => open(ev, li), onkeydown: (e) => { if (e.key === 'Enter') open(ev, li); } },
    h('div', { class: 'thumb' }, thumb),
    h('div', { class: 'ev-main' },
      h('div', { class: 'ev-time' }, fmtTime(ev.start)),
      h('div', { class: 'ev-camera muted' }, names.get(ev.camera_id) || ev.camera_id),
      h('div', { class: 'chips' }, (ev.triggers || []).map((t) => h('span', { class: `chip ${t}` }, triggerLabel(t))))),
    h('div', { class: 'ev-side' },
      h('span', { class: 'ev-duration', title: 'How long the event lasted' },
        ev.end == null ? 'recording…' : fmtDuration(eventLength(ev))),
      ev.has_clip ? h('span', { class: 'ev-clip muted small' }, `▶ ${clipLength(ev)}`) : null));
    return li;
  }

  function open(ev, li) {
    if (selected) selected.classList.remove('selected');
    selected = li;
    li.classList.add('selected');
    const video = ev.clip_url
      ? h('video', { src: ev.clip_url, controls: true, autoplay: true, muted: true, playsinline: true,
        preload: 'auto', id: 'player', poster: ev.snapshot_url || undefined })
      : h('div', { class: 'no-picture tall' }, 'This event has no clip.');
    if (video.tagName === 'VIDEO') video.muted = true;  // autoplay needs it; the controls unmute
    const delBtn = h('button', { type: 'button', class: 'danger', id: 'delete-event' }, 'Delete');
    let armed = false;
    delBtn.addEventListener('click', async () => {
      if (!armed) { armed = true; delBtn.textContent = 'Really delete?'; setTimeout(() => { armed = false; delBtn.textContent = 'Delete'; }, 4000); return; }
      delBtn.disabled = true;
      try {
        await api(`/api/ui/events/${encodeURIComponent(ev.id)}`, { method: 'DELETE' });
        toast('Event deleted');
        removeRow(ev.id);
      } catch (err) { toast(err.message, 'error'); delBtn.disabled = false; }
    });
    clear(player, h('section', { class: 'card player' },
      video,
      h('div', { class: 'row spread' },
        h('div', {},
          h('strong', {}, names.get(ev.camera_id) || ev.camera_id), ' · ', fmtTime(ev.start), ' · ',
          ev.end == null ? 'recording…' : `${fmtDuration(eventLength(ev))} event`,
          ev.has_clip ? ` · ${clipLength(ev)}` : '', ' · ', (ev.triggers || []).map(triggerLabel).join(', ')),
        h('div', { class: 'row' },
          ev.download_url ? h('a', { class: 'button ghost', href: ev.download_url, download: '' }, 'Download') : null,
          delBtn,
          h('button', { type: 'button', class: 'ghost', onclick: closePlayer }, 'Close')))));
    player.scrollIntoView({ behavior: 'smooth', block: 'start' });
  }

  function closePlayer() {
    const v = player.querySelector('video');
    if (v) { v.pause(); v.removeAttribute('src'); v.load(); }
    clear(player);
    if (selected) selected.classList.remove('selected');
    selected = null;
  }

  function removeRow(id) {
    const li = list.querySelector(`[data-event-id="${CSS.escape(id)}"]`);
    if (li) {
      if (li === selected) closePlayer();
      li.remove();
      count = Math.max(0, count - 1);
      status.textContent = count ? `${count} event${count === 1 ? '' : 's'}` : '';
    }
  }

  const refresh = debounce(() => { if (count <= PAGE) load(false); }, 400);
  const offs = [
    ctx.live.on('event.ended', refresh),
    ctx.live.on('event.started', refresh),
    ctx.live.on('ui.resync', refresh),
    ctx.live.on('event.deleted', (d) => removeRow(d.event_id)),
  ];
  load(false);
  return () => { offs.forEach((off) => off()); if (ctrl) ctrl.abort(); closePlayer(); };
}

// An event's length is end − start: from its first activity to its end (post-roll included), the same number
// `pingwatch events list` shows. Its clip is longer by the pre-roll (and up to a keyframe interval before it).
function eventLength(ev) {
  return ev.end == null || ev.start == null ? null : Math.max(0, ev.end - ev.start);
}

function clipLength(ev) {
  return ev.clip_duration_s == null ? 'clip' : `${fmtDuration(ev.clip_duration_s)} clip`;
}
