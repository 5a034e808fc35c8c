// Service worker: caches the app shell only, so the page opens (and shows "Reconnecting…") while the hub
// restarts. It never touches /api/ (or anything else outside the shell): those go straight to the network.
// Network first for the shell, so an updated hub serves an updated page; the cache is the fallback.

const CACHE = 'pingwatch-cam-v1';
const SHELL = [
  './',
  'index.html',
  'app.js',
  'pairing.js',
  'stream.js',
  'status.js',
  'received.js',
  'style.css',
  'manifest.webmanifest',
  'icons/icon.svg',
  'icons/icon-192.png',
  'icons/icon-512.png',
];
const SHELL_URLS = new Set(SHELL.map((p) => new URL(p, self.registration.scope).href));
const NETWORK_TIMEOUT_MS = 4000;

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((c) => c.addAll(SHELL.map((p) => new Request(p, { cache: 'reload' }))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('pingwatch-cam-') && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

function shellKey(request) {
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return null;
  if (url.pathname.startsWith('/api/')) return null; // never cache or answer API calls
  url.search = '';
  url.hash = '';
  if (request.mode === 'navigate' && url.href.startsWith(self.registration.scope)) {
    // Any navigation inside /cam/ gets the page itself (index.html).
    return new URL('./', self.registration.scope).href;
  }
  if (url.href === new URL('index.html', self.registration.scope).href) return new URL('./', self.registration.scope).href;
  return SHELL_URLS.has(url.href) ? url.href : null;
}

async function networkFirst(request, key) {
  const cache = await caches.open(CACHE);
  try {
    const response = await Promise.race([
      fetch(request),
      new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), NETWORK_TIMEOUT_MS)),
    ]);
    if (response.ok && response.type === 'basic') cache.put(key, response.clone());
    return response;
  } catch (err) {
    const cached = await cache.match(key);
    if (cached) return cached;
    throw err;
  }
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const key = shellKey(request);
  if (!key) return; // not ours: the browser fetches it as if there were no service worker
  event.respondWith(networkFirst(request, key));
});
