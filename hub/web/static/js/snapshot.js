// An <img> that reloads a snapshot URL every few seconds while the page is visible, without flicker.
import { h } from './dom.js';

export function refreshingImage(url, everyMs, alt) {
  const img = h('img', { alt: alt || 'Camera picture', decoding: 'async' });
  const placeholder = h('div', { class: 'no-picture' }, 'No picture yet');
  const el = h('div', { class: 'snapshot' }, img, placeholder);
  let timer = null;
  let stopped = false;
  let inflight = false;

  function load() {
    if (stopped || inflight) return;
    if (document.hidden) { schedule(); return; }
    inflight = true;
    const next = new Image();
    next.onload = () => {
      inflight = false;
      img.src = next.src;
      el.classList.add('loaded');
      el.dispatchEvent(new CustomEvent('snapshot', { detail: { width: next.naturalWidth, height: next.naturalHeight } }));
      schedule();
    };
    next.onerror = () => { inflight = false; el.classList.remove('loaded'); schedule(); };
    next.src = `${url}${url.includes('?') ? '&' : '?'}t=${Date.now()}`;
  }
  function schedule() {
    clearTimeout(timer);
    if (!stopped && everyMs) timer = setTimeout(load, everyMs);
  }
  load();
  return {
    el, img, reload: load,
    stop() { stopped = true; clearTimeout(timer); },
    start() { if (stopped) { stopped = false; load(); } },
  };
}
