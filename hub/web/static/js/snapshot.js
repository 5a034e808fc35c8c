// An <img> that reloads a snapshot URL every few seconds while the page is visible, without flicker.
// Fetched with the session key (an <img src> could not send it) and shown from a blob: URL.
import { h } from './dom.js';
import { authHeaders } from './api.js';

export function refreshingImage(url, everyMs, alt) {
  const img = h('img', { alt: alt || 'Camera picture', decoding: 'async' });
  const placeholder = h('div', { class: 'no-picture' }, 'No picture yet');
  const el = h('div', { class: 'snapshot' }, img, placeholder);
  let timer = null;
  let stopped = false;
  let inflight = false;
  let shown = null;  // the blob: URL on screen, revoked when replaced

  async function fetchBlob() {
    const resp = await fetch(url, { headers: authHeaders(), credentials: 'same-origin', cache: 'no-store' });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    return URL.createObjectURL(await resp.blob());
  }

  async function load() {
    if (stopped || inflight) return;
    if (document.hidden) { schedule(); return; }
    inflight = true;
    let src;
    try { src = await fetchBlob(); } catch { inflight = false; el.classList.remove('loaded'); schedule(); return; }
    const next = new Image();
    next.onload = () => {
      inflight = false;
      img.src = src;
      if (shown) URL.revokeObjectURL(shown);
      shown = src;
      el.classList.add('loaded');
      el.dispatchEvent(new CustomEvent('snapshot', { detail: { width: next.naturalWidth, height: next.naturalHeight } }));
      schedule();
    };
    next.onerror = () => { inflight = false; URL.revokeObjectURL(src); el.classList.remove('loaded'); schedule(); };
    next.src = src;
  }
  function schedule() {
    clearTimeout(timer);
    if (!stopped && everyMs) timer = setTimeout(load, everyMs);
  }
  load();
  return {
    el, img, reload: load,
    // The picture on screen stays drawn after its blob: URL is revoked; the next load replaces it.
    stop() { stopped = true; clearTimeout(timer); if (shown) { URL.revokeObjectURL(shown); shown = null; } },
    start() { if (stopped) { stopped = false; load(); } },
  };
}
