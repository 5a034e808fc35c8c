// ping-watch camera page: pairing, capture, the peer to the hub, staying alive, the status screen.
//
// Test hook: window.pingwatch = {state, lastError, cameraId, stats(), version}; document.body.dataset.state
// mirrors state, and a 'pingwatch:state' event fires on window at every change. States:
//   init → insecure | unsupported | unpaired → pairing → checking → camera → connecting → streaming
//   reconnecting (waiting for the next try), media-error (camera denied / missing: needs the user)

import * as api from './pairing.js';
import * as media from './stream.js';
import { Battery, WakeLock, statusMessage } from './status.js';
import { hubView, parseReport } from './received.js';

const VERSION = '1';
const SETTINGS_KEY = 'pingwatch.settings';
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;
const STABLE_MS = 10000; // connected this long → the next failure starts the backoff from 1 s again
const DISCONNECT_GRACE_MS = 4000; // 'disconnected' often heals by itself
const CONNECT_TIMEOUT_MS = 20000; // answer applied but no media connection
const STATS_MS = 2000;
const STATUS_MS = 5000;
const AUTODIM_MS = 60000;

const $ = (id) => document.getElementById(id);

const S = {
  state: 'init',
  lastError: null,
  creds: null,
  verified: false,
  pendingPair: null, // {code, name} from #code=... until used
  settings: loadSettings(),
  stream: null,
  detectTrack: null,
  hasAudio: false,
  can1080: null,
  peer: null,
  peerTimers: [],
  stats: null,
  hub: null, // the hub's latest `received` report (received.js) and when it came: {report, at}
  gen: 0,
  attempt: 0,
  reconnects: 0,
  retryTimer: null,
  retryAt: 0,
  connectedSince: null,
};

const battery = new Battery(() => {
  render();
  sendStatus();
});
const wake = new WakeLock(() => render());

// ---------------------------------------------------------------- settings

function loadSettings() {
  const d = { camera: 'facing:environment', preset: media.DEFAULT_PRESET, audio: true, preview: true, autoDim: true };
  try {
    const s = JSON.parse(localStorage.getItem(SETTINGS_KEY) || '{}');
    const out = { ...d, ...s };
    if (!media.PRESETS[out.preset]) out.preset = d.preset;
    return out;
  } catch {
    return d;
  }
}

function saveSettings() {
  try {
    localStorage.setItem(SETTINGS_KEY, JSON.stringify(S.settings));
  } catch {
    /* private mode: settings last for this visit only */
  }
}

// ---------------------------------------------------------------- state

function viewFor(state) {
  if (state === 'insecure' || state === 'unsupported' || state === 'media-error') return state;
  if (state === 'unpaired' || state === 'pairing') return 'pair';
  return 'main';
}

function setState(state, detail) {
  const changed = state !== S.state;
  S.state = state;
  document.body.dataset.state = state;
  document.body.dataset.view = viewFor(state);
  if (detail !== undefined) S.detail = detail;
  render();
  if (changed) window.dispatchEvent(new CustomEvent('pingwatch:state', { detail: { state, lastError: S.lastError } }));
}

function errorText(err) {
  if (!err) return null;
  if (typeof err === 'string') return err;
  return err.message || String(err);
}

function noteError(err) {
  S.lastError = errorText(err);
  console.warn('[ping-watch]', S.lastError);
}

// ---------------------------------------------------------------- start-up

async function boot() {
  wireUi();
  S.pendingPair = api.pairingFromFragment();
  api.clearFragment();

  if (!window.isSecureContext) {
    const https = `https://${location.host}${location.pathname}`;
    $('https-link').href = https;
    $('https-link').textContent = `Open ${https}`;
    return setState('insecure');
  }
  const missing = media.missingFeatures();
  if (missing.length) {
    $('unsupported-missing').textContent = `Missing: ${missing.join(', ')}.`;
    return setState('unsupported');
  }

  if ('serviceWorker' in navigator) {
    // Fails on a certificate the phone does not trust (the "proceed anyway" path): the page still works online.
    navigator.serviceWorker.register('sw.js').catch((err) => console.info('service worker not registered:', err && err.message));
  }
  battery.start();

  S.creds = api.loadCredentials();
  if (!S.creds) {
    showPair();
    if (S.pendingPair) doPair(S.pendingPair.code, S.pendingPair.name || defaultName());
    return;
  }
  startCapture();
}

function defaultName() {
  return $('pair-name').value.trim() || api.defaultCameraName();
}

function startCapture({ verified = false } = {}) {
  S.verified = verified;
  S.attempt = 0;
  wake.acquire();
  resetIdle();
  connect();
}

// ---------------------------------------------------------------- pairing

function showPair(message = null, kind = 'error') {
  setState('unpaired');
  const m = $('pair-message');
  m.hidden = !message;
  m.textContent = message || '';
  m.dataset.kind = kind;
  if (S.pendingPair) $('pair-code').value = S.pendingPair.code;
  if (!$('pair-name').value) $('pair-name').value = (S.pendingPair && S.pendingPair.name) || api.defaultCameraName();
}

async function doPair(code, name) {
  const form = $('pair-form');
  $('pair-code').value = api.normaliseCode(code);
  $('pair-name').value = name;
  $('pair-submit').disabled = true;
  $('pair-message').hidden = true;
  setState('pairing');
  try {
    const r = await api.pair(code, name);
    api.saveCredentials(r);
    S.creds = api.loadCredentials() || r;
    S.pendingPair = null;
    form.reset();
    notice(`Paired as “${r.name}”.`);
    startCapture({ verified: true });
  } catch (err) {
    noteError(err);
    S.pendingPair = null;
    let msg;
    if (err.status === 403) msg = 'That code is wrong or has expired. Make a new one on the hub and try again.';
    else if (err.unreachable) msg = `Cannot reach the hub (${err.message}). Is the phone on the same Wi-Fi?`;
    else msg = `Pairing failed: ${err.message}`;
    showPair(msg);
  } finally {
    $('pair-submit').disabled = false;
  }
}

// Stop streaming and forget the token: the hub revoked it, or the user unpaired.
function dropPairing() {
  S.gen++;
  clearRetry();
  teardownPeer();
  stopMedia();
  api.clearCredentials();
  S.creds = null;
  S.verified = false;
  wake.release();
}

function revoked() {
  dropPairing();
  undim();
  showPair('This camera was removed from the hub; pair it again.');
  if (S.pendingPair) doPair(S.pendingPair.code, S.pendingPair.name || defaultName());
}

function unpair() {
  if (!confirm('Unpair this phone? It stops sending video. Remove it on the hub too, or it stays listed there as offline.')) return;
  dropPairing();
  showPair('Unpaired. Enter a new code to pair again.', 'info');
}

// ---------------------------------------------------------------- capture and connection

async function openMedia() {
  const { stream, audio } = await media.openCamera(S.settings);
  const video = stream.getVideoTracks()[0];
  S.stream = stream;
  S.hasAudio = audio;
  S.detectTrack = video.clone();
  S.can1080 = media.supports1080p(video);
  video.addEventListener('ended', () => {
    if (S.stream !== stream) return;
    stopMedia();
    scheduleReconnect('the camera stopped (another app may have taken it)');
  });
  showPreview();
  refreshCameraList();
  renderPresetOptions();
}

function stopMedia() {
  if (S.stream) S.stream.getTracks().forEach((t) => t.stop());
  if (S.detectTrack) S.detectTrack.stop();
  S.stream = null;
  S.detectTrack = null;
  $('preview').srcObject = null;
}

async function connect() {
  clearRetry();
  if (!S.creds) return;
  const gen = ++S.gen;
  teardownPeer();
  try {
    if (!S.verified) {
      setState('checking', 'Checking this camera with the hub…');
      const cam = await api.fetchCamera(S.creds.token);
      if (gen !== S.gen) return;
      S.verified = true;
      if (cam && (cam.name !== S.creds.name || cam.camera_id !== S.creds.camera_id)) {
        S.creds = { ...S.creds, name: cam.name || S.creds.name, camera_id: cam.camera_id || S.creds.camera_id };
        api.saveCredentials(S.creds);
      }
      if (S.pendingPair) {
        notice(`This phone is already paired as “${S.creds.name}”. To use the new code, unpair first.`);
        S.pendingPair = null;
      }
    }
    if (!S.stream) {
      setState('camera', 'Starting the camera…');
      await openMedia();
      if (gen !== S.gen) return;
    }
    setState('connecting', S.reconnects ? `Reconnecting to the hub (try ${S.attempt + 1})…` : 'Connecting to the hub…');
    const peer = await media.createPeer({ stream: S.stream, detectTrack: S.detectTrack, preset: S.settings.preset });
    if (gen !== S.gen) return peer.pc.close();
    S.peer = peer;
    wirePeer(peer);
    const answer = await api.postOffer(S.creds.token, { sdp: peer.sdp, roles: peer.roles });
    if (gen !== S.gen || S.peer !== peer) return;
    await media.applyAnswer(peer, answer);
    peerTimer(setTimeout(() => {
      if (S.peer === peer && peer.pc.connectionState !== 'connected') scheduleReconnect('no media connection to the hub (firewall or wrong network?)');
    }, CONNECT_TIMEOUT_MS));
  } catch (err) {
    if (gen !== S.gen) return;
    if (err instanceof api.ApiError && err.status === 401) return revoked();
    if (err instanceof media.MediaError && err.kind !== 'busy') return mediaFailed(err);
    if (err instanceof api.ApiError && !err.unreachable) scheduleReconnect(`the hub refused the connection: ${err.message}`);
    else scheduleReconnect(err);
  }
}

function mediaFailed(err) {
  noteError(err);
  teardownPeer();
  stopMedia();
  $('media-title').textContent = {
    denied: 'Camera access is blocked',
    nocamera: 'No camera found',
    unsupported: 'This browser cannot capture video',
  }[err.kind] || 'Camera unavailable';
  $('media-text').textContent = err.message;
  for (const k of ['denied', 'nocamera', 'busy']) $(`media-help-${k}`).hidden = k !== err.kind;
  setState('media-error');
}

function peerTimer(id, interval = false) {
  S.peerTimers.push({ id, interval });
  return id;
}

function wirePeer(peer) {
  const { pc, channel } = peer;
  let graceTimer = null;
  const onState = () => {
    if (S.peer !== peer) return;
    const st = pc.connectionState || pc.iceConnectionState;
    if (st === 'connected' || st === 'completed') {
      clearTimeout(graceTimer);
      if (S.state !== 'streaming') {
        S.connectedSince = Date.now();
        setState('streaming', '');
        peerTimer(setTimeout(() => {
          if (S.peer === peer) S.attempt = 0;
        }, STABLE_MS));
        updateStats(peer);
      }
    } else if (st === 'disconnected') {
      setState('connecting', 'Connection interrupted, waiting for it to recover…');
      clearTimeout(graceTimer);
      graceTimer = peerTimer(setTimeout(() => {
        if (S.peer === peer && (pc.connectionState || pc.iceConnectionState) !== 'connected') scheduleReconnect('lost the connection to the hub');
      }, DISCONNECT_GRACE_MS));
    } else if (st === 'failed' || st === 'closed') {
      scheduleReconnect(`the connection to the hub ${st === 'failed' ? 'failed' : 'was closed'}`);
    }
  };
  pc.addEventListener('connectionstatechange', onState);
  if (!('connectionState' in RTCPeerConnection.prototype)) pc.addEventListener('iceconnectionstatechange', onState);
  channel.addEventListener('open', () => sendStatus());
  // The hub closes the status channel (SCTP abort) the moment it stops or drops this peer; ICE would only
  // notice ~7 s later (consent freshness) plus the disconnect grace.
  channel.addEventListener('close', () => {
    if (S.peer === peer) scheduleReconnect('the hub closed the connection');
  });
  // The hub's `received` reports: what actually reaches it per track (received.js).
  channel.addEventListener('message', (e) => {
    if (S.peer !== peer) return;
    const report = parseReport(e.data);
    if (!report) return console.debug('[ping-watch] hub says', e.data);
    S.hub = { report, at: Date.now() };
    render();
  });
  peerTimer(setInterval(() => updateStats(peer), STATS_MS), true);
  peerTimer(setInterval(() => sendStatus(), STATUS_MS), true);
}

function teardownPeer() {
  for (const t of S.peerTimers) (t.interval ? clearInterval : clearTimeout)(t.id);
  S.peerTimers = [];
  const peer = S.peer;
  S.peer = null;
  S.stats = null;
  S.hub = null;
  S.connectedSince = null;
  if (peer) {
    try {
      peer.channel.close();
    } catch {}
    try {
      peer.pc.close();
    } catch {}
  }
}

function scheduleReconnect(reason) {
  S.gen++; // abandons any connect() in flight
  teardownPeer();
  noteError(reason);
  if (!S.creds) return;
  if (S.retryTimer) return render();
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** S.attempt);
  const delay = Math.min(BACKOFF_MAX_MS, Math.round(base * (0.8 + Math.random() * 0.4)));
  S.attempt = Math.min(S.attempt + 1, 10);
  S.retryAt = Date.now() + delay;
  S.retryTimer = setTimeout(() => {
    S.retryTimer = null;
    S.reconnects++;
    connect();
  }, delay);
  S.countdown = setInterval(render, 1000);
  setState('reconnecting', errorText(reason));
}

function clearRetry() {
  clearTimeout(S.retryTimer);
  clearInterval(S.countdown);
  S.retryTimer = null;
  S.countdown = null;
}

/** Reconnect now (settings changed, network came back): keeps the backoff count unless reset. */
function reconnectNow({ newMedia = false } = {}) {
  if (!S.creds || S.state === 'unpaired' || S.state === 'pairing') return;
  S.gen++;
  clearRetry();
  teardownPeer();
  if (newMedia) stopMedia();
  S.attempt = 0;
  connect();
}

async function updateStats(peer) {
  if (S.peer !== peer) return;
  try {
    const st = await media.collectStats(peer, S.stats);
    if (S.peer !== peer) return;
    S.stats = st;
    render();
  } catch (err) {
    console.debug('getStats failed', err);
  }
}

function sendStatus() {
  const ch = S.peer && S.peer.channel;
  if (!ch || ch.readyState !== 'open') return;
  try {
    ch.send(JSON.stringify(statusMessage(battery, S.stats && S.stats.record)));
  } catch (err) {
    console.debug('status send failed', err);
  }
}

// ---------------------------------------------------------------- the hub's view

/** Which tracks the page sends now, and what the hub says of each (received.js). */
function currentHubView() {
  const st = S.stats;
  const sent = (x) => !!(x && (x.frames_sent > 0 || x.bitrate_kbps > 0));
  const sending = {
    record: !!S.peer && (st ? sent(st.record) : true),
    detect: !!S.peer && (st ? sent(st.detect) : true),
    audio: !!S.peer && !!S.peer.audio && S.hasAudio,
  };
  return hubView({ report: S.hub && S.hub.report, at: S.hub && S.hub.at, now: Date.now(), connectedSince: S.connectedSince, sending });
}

// ---------------------------------------------------------------- test hook

function snapshot() {
  const peer = S.peer;
  const track = S.stream && S.stream.getVideoTracks()[0];
  const ts = track && track.getSettings ? track.getSettings() : null;
  const st = S.stats;
  return JSON.parse(JSON.stringify({
    state: S.state,
    connection: peer ? peer.pc.connectionState || peer.pc.iceConnectionState : null,
    camera_id: S.creds ? S.creds.camera_id : null,
    preset: S.settings.preset,
    camera: S.settings.camera,
    track: ts ? { width: ts.width, height: ts.height, frameRate: ts.frameRate, facingMode: ts.facingMode || null } : null,
    audio_track: S.hasAudio,
    roles: peer ? peer.roles : null,
    codec_preference: peer ? peer.codecPref : null,
    ice_complete: peer ? peer.iceComplete : null,
    maintain_resolution: peer ? !!peer.maintainResolution : null,
    record: st ? st.record : null,
    detect: st ? st.detect : null,
    audio: st ? st.audio : null,
    rtt_ms: st ? st.rtt_ms : null,
    available_kbps: st ? st.available_kbps : null,
    stats_at: st ? st.at : null,
    battery: battery.level,
    charging: battery.charging,
    wake_lock: wake.state,
    attempt: S.attempt,
    reconnects: S.reconnects,
    retry_in_s: S.retryTimer ? Math.max(0, Math.ceil((S.retryAt - Date.now()) / 1000)) : null,
    connected_since: S.connectedSince,
    last_error: S.lastError,
    hub: S.hub ? { ...S.hub.report, at: S.hub.at } : null,
    hub_view: currentHubView(),
  }));
}

window.pingwatch = Object.freeze({
  get state() {
    return S.state;
  },
  get lastError() {
    return S.lastError;
  },
  get cameraId() {
    return S.creds ? S.creds.camera_id : null;
  },
  stats: snapshot,
  version: VERSION,
});

// ---------------------------------------------------------------- UI

function notice(text) {
  const n = $('notice');
  n.textContent = text;
  n.hidden = false;
  clearTimeout(notice.t);
  notice.t = setTimeout(() => (n.hidden = true), 8000);
}

function fmtKbps(k) {
  if (k == null) return '—';
  return k >= 1000 ? `${(k / 1000).toFixed(1)} Mbps` : `${k} kbps`;
}

function render() {
  const state = S.state;
  const hv = currentHubView();
  const big = {
    init: 'Starting…',
    checking: 'Connecting…',
    camera: 'Starting camera…',
    connecting: 'Connecting…',
    // Only the hub can say capture works: a connection that carries nothing usable is not "active".
    streaming: hv.roles.record.state === 'none' ? 'No video reaches the hub' : 'Capture active',
    reconnecting: `Reconnecting in ${Math.max(0, Math.ceil((S.retryAt - Date.now()) / 1000))} s`,
  }[state];
  if (big) $('big-state').textContent = big;
  $('sub-state').textContent = state === 'streaming' ? `Sending to the hub since ${new Date(S.connectedSince || Date.now()).toLocaleTimeString()}` : S.detail || '';
  $('dim-label').textContent = big || state;

  const pill = $('hub-pill');
  const [lvl, txt] = {
    streaming: ['ok', 'hub: connected'],
    connecting: ['warn', 'hub: connecting'],
    checking: ['warn', 'hub: connecting'],
    camera: ['warn', 'hub: reachable'],
    reconnecting: ['bad', 'hub: offline'],
    unpaired: ['idle', 'not paired'],
    pairing: ['warn', 'pairing…'],
    'media-error': ['bad', 'camera error'],
    insecure: ['bad', 'not secure'],
  }[state] || ['idle', 'hub: —'];
  pill.dataset.level = lvl;
  pill.textContent = txt;

  $('st-name').textContent = S.creds ? S.creds.name || S.creds.camera_id : '—';
  $('st-hub').textContent = S.peer ? S.peer.pc.connectionState || S.peer.pc.iceConnectionState : state === 'reconnecting' ? 'unreachable' : '—';
  if (S.stats && S.stats.rtt_ms != null && state === 'streaming') $('st-hub').textContent += ` · ${S.stats.rtt_ms} ms`;
  const r = S.stats && S.stats.record;
  const p = media.PRESETS[S.settings.preset];
  $('st-res').textContent = r && r.width ? `${r.width}×${r.height}` : '—';
  const hr = hv.roles.record;
  if (hr.state === 'ok' || hr.state === 'none') $('st-fps').textContent = `${hr.per_s ?? 0} / ${p.fps} fps at the hub`;
  else $('st-fps').textContent = r && r.fps != null ? `${r.fps} / ${p.fps} fps sent` : '—';
  $('st-bitrate').textContent = r ? fmtKbps(r.bitrate_kbps) : '—';
  $('st-codec').textContent = r && r.codec ? r.codec : '—';
  const d = S.stats && S.stats.detect;
  const hd = hv.roles.detect;
  if (hd.state === 'ok') $('st-detect').textContent = `${hd.width && hd.height ? `${hd.width}×${hd.height} @ ` : ''}${hd.per_s} fps at the hub`;
  else if (hd.state === 'none') $('st-detect').textContent = 'not reaching the hub';
  else $('st-detect').textContent = d && d.width ? `${d.width}×${d.height} @ ${d.fps ?? '?'} fps sent` : '—';
  const a = S.stats && S.stats.audio;
  const ha = hv.roles.audio;
  if (!S.stream) $('st-audio').textContent = '—';
  else if (!S.hasAudio) $('st-audio').textContent = 'off';
  else if (ha.state === 'ok') $('st-audio').textContent = `reaching the hub${a && a.codec ? ` (${a.codec})` : ''}`;
  else if (ha.state === 'none') $('st-audio').textContent = 'not reaching the hub';
  else $('st-audio').textContent = a ? `${a.codec || 'on'} · ${fmtKbps(a.bitrate_kbps)} sent` : 'on';
  for (const [id, role] of [['st-fps', 'record'], ['st-detect', 'detect'], ['st-audio', 'audio']]) $(id).dataset.hub = hv.roles[role].state;
  $('st-battery').textContent =
    battery.level == null ? 'unknown' : `${Math.round(battery.level * 100)} %${battery.charging === true ? ' · charging' : battery.charging === false ? ' · on battery' : ''}`;
  $('st-wake').textContent = wake.state === 'held' ? 'yes' : wake.state === 'unsupported' ? 'not supported' : wake.state;

  const warns = state === 'streaming' ? [...hv.warnings] : [];
  if (r && r.limitation && r.limitation !== 'none') warns.push(`Quality limited by ${r.limitation}.`);
  if (S.settings.preset === '1080p15' && S.can1080 === false) warns.push('This camera cannot do 1080p; it sends the best it can.');
  if (battery.charging === false) warns.push(battery.level != null && battery.level < 0.2 ? 'Battery low: plug the phone in.' : 'Running on battery: keep the phone plugged in.');
  if (wake.state === 'unsupported') warns.push('This browser cannot keep the screen on: set the phone’s auto-lock to “Never”.');
  $('warn').hidden = !warns.length;
  $('warn').textContent = warns.join(' ');
}

function renderPresetOptions() {
  const sel = $('set-preset');
  sel.textContent = '';
  for (const [key, p] of Object.entries(media.PRESETS)) {
    const o = document.createElement('option');
    o.value = key;
    o.textContent = key === '1080p15' && S.can1080 === false ? `${p.label} (not supported)` : p.label + (key === media.DEFAULT_PRESET ? ' (default)' : '');
    if (key === '1080p15' && S.can1080 === false && S.settings.preset !== key) o.disabled = true;
    sel.append(o);
  }
  sel.value = S.settings.preset;
}

async function refreshCameraList() {
  const sel = $('set-camera');
  const cams = await media.listCameras();
  sel.querySelectorAll('option[data-device]').forEach((o) => o.remove());
  for (const c of cams) {
    const o = document.createElement('option');
    o.value = `device:${c.id}`;
    o.textContent = c.label;
    o.dataset.device = '1';
    sel.append(o);
  }
  if (![...sel.options].some((o) => o.value === S.settings.camera)) {
    const o = document.createElement('option');
    o.value = S.settings.camera;
    o.textContent = 'Saved camera';
    o.dataset.device = '1';
    sel.append(o);
  }
  sel.value = S.settings.camera;
}

function showPreview() {
  const v = $('preview');
  const on = S.settings.preview && !isDimmed();
  $('preview-off').hidden = on;
  if (on && S.stream) {
    if (v.srcObject !== S.stream) v.srcObject = S.stream;
    v.play().catch(() => {});
  } else {
    v.pause();
    v.srcObject = null;
  }
}

// ---------------------------------------------------------------- dim mode

let idleTimer = null;
let dimMover = null;

function isDimmed() {
  return !$('dim').hidden;
}

function dim() {
  $('dim').hidden = false;
  moveDimText();
  clearInterval(dimMover);
  dimMover = setInterval(moveDimText, 20000); // no burn-in on OLED screens
  showPreview();
}

function undim() {
  $('dim').hidden = true;
  clearInterval(dimMover);
  showPreview();
  resetIdle();
}

function moveDimText() {
  const t = $('dim-text');
  t.style.left = `${5 + Math.random() * 50}%`;
  t.style.top = `${10 + Math.random() * 75}%`;
}

function resetIdle() {
  clearTimeout(idleTimer);
  if (!S.settings.autoDim) return;
  idleTimer = setTimeout(() => {
    if (['streaming', 'connecting', 'reconnecting', 'checking', 'camera'].includes(S.state) && !isDimmed()) dim();
  }, AUTODIM_MS);
}

// ---------------------------------------------------------------- wiring

function wireUi() {
  renderPresetOptions();
  $('set-camera').value = S.settings.camera;
  $('set-audio').checked = S.settings.audio;
  $('set-preview').checked = S.settings.preview;
  $('set-autodim').checked = S.settings.autoDim;

  $('pair-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const code = api.normaliseCode($('pair-code').value);
    const name = $('pair-name').value.trim();
    if (!code || !name) return;
    doPair(code, name);
  });
  $('pair-code').addEventListener('input', (e) => {
    const v = e.target.value.toUpperCase();
    if (v !== e.target.value) e.target.value = v;
  });

  $('media-retry').addEventListener('click', () => {
    if (S.creds) startCapture();
  });
  $('btn-unpair').addEventListener('click', unpair);
  $('btn-dim').addEventListener('click', (e) => {
    e.stopPropagation();
    dim();
  });
  $('dim').addEventListener('click', (e) => {
    e.preventDefault();
    e.stopPropagation();
    undim();
  });

  $('set-camera').addEventListener('change', (e) => {
    S.settings.camera = e.target.value;
    saveSettings();
    reconnectNow({ newMedia: true });
  });
  $('set-preset').addEventListener('change', (e) => {
    S.settings.preset = e.target.value;
    saveSettings();
    reconnectNow({ newMedia: true });
  });
  $('set-audio').addEventListener('change', (e) => {
    S.settings.audio = e.target.checked;
    saveSettings();
    reconnectNow({ newMedia: true });
  });
  $('set-preview').addEventListener('change', (e) => {
    S.settings.preview = e.target.checked;
    saveSettings();
    showPreview();
  });
  $('set-autodim').addEventListener('change', (e) => {
    S.settings.autoDim = e.target.checked;
    saveSettings();
    resetIdle();
  });

  for (const ev of ['pointerdown', 'keydown']) document.addEventListener(ev, () => !isDimmed() && resetIdle(), { passive: true });

  document.addEventListener('visibilitychange', () => {
    sendStatus();
    if (document.visibilityState === 'visible') {
      render();
      // iOS stops the camera in the background: if it ended, connect() opens it again.
      const v = S.stream && S.stream.getVideoTracks()[0];
      if (S.creds && v && v.readyState === 'ended') {
        stopMedia();
        reconnectNow();
      }
    }
  });
  // A QR code opened while the page is already open only changes the fragment: no reload.
  window.addEventListener('hashchange', () => {
    const pending = api.pairingFromFragment();
    if (!pending) return;
    api.clearFragment();
    if (S.creds) return notice(`This phone is already paired as “${S.creds.name}”. To use the new code, unpair first.`);
    if (S.state === 'pairing' || S.state === 'insecure' || S.state === 'unsupported') return;
    S.pendingPair = pending;
    doPair(pending.code, pending.name || defaultName());
  });
  window.addEventListener('online', () => {
    if (S.retryTimer) {
      clearRetry();
      connect();
    }
  });
  window.addEventListener('pagehide', () => {
    // Tell the hub at once rather than letting it time the peer out.
    S.gen++;
    clearRetry();
    teardownPeer();
  });
  window.addEventListener('pageshow', (e) => {
    if (e.persisted && S.creds) reconnectNow();
  });
}

boot().catch((err) => {
  noteError(err);
  if (S.creds) scheduleReconnect(`start-up failed: ${errorText(err)}`);
  else showPair(`Start-up failed: ${errorText(err)}`);
});
