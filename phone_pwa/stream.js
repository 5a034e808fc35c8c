// Capture and the WebRTC peer to the hub (shared/ARCHITECTURE.md, "The hub's media path").
//
// One RTCPeerConnection carries three sendonly m-lines and a data channel:
//   record  the camera track at the chosen preset, never decoded by the hub (goes to the clip buffer)
//   detect  a clone of the same track scaled to ~320 px on the long side at 5 fps (the hub decodes it for motion)
//   audio   the microphone (Opus), when there is one
//   status  data channel, page → hub JSON every few seconds

export const PRESETS = {
  '480p15': { label: '480p · 15 fps', width: 854, height: 480, fps: 15, maxBitrate: 1_200_000 },
  '720p15': { label: '720p · 15 fps', width: 1280, height: 720, fps: 15, maxBitrate: 2_500_000 },
  '1080p15': { label: '1080p · 15 fps', width: 1920, height: 1080, fps: 15, maxBitrate: 4_000_000 },
};
export const DEFAULT_PRESET = '720p15';

const DETECT_LONG_SIDE = 320;
const DETECT_FPS = 5;
const DETECT_MAX_BITRATE = 300_000;
const ICE_GATHER_TIMEOUT_MS = 5000;

/** A failure to get the camera, with a kind the page explains: denied | nocamera | busy | unsupported. */
export class MediaError extends Error {
  constructor(kind, message, cause = null) {
    super(message);
    this.name = 'MediaError';
    this.kind = kind;
    this.cause = cause;
  }
}

/**
 * What the page needs of the browser, checked before anything starts (so a browser that lacks one is told so,
 * instead of failing in a reconnect loop): camera capture, a peer connection with transceivers (Safari 12.1+,
 * Firefox 59+, Chrome 69+) and data channels. Screen wake lock, battery and codec preferences are optional: the
 * page says when it goes without them.
 */
export function missingFeatures() {
  const missing = [];
  if (!(navigator.mediaDevices && typeof navigator.mediaDevices.getUserMedia === 'function')) missing.push('camera capture (getUserMedia)');
  const PC = window.RTCPeerConnection;
  if (typeof PC !== 'function') missing.push('WebRTC (RTCPeerConnection)');
  else {
    if (typeof PC.prototype.addTransceiver !== 'function') missing.push('WebRTC transceivers');
    if (typeof PC.prototype.createDataChannel !== 'function') missing.push('WebRTC data channels');
  }
  return missing;
}

export function mediaSupported() {
  return missingFeatures().length === 0;
}

function videoConstraints(camera, preset, { loose = false } = {}) {
  const p = PRESETS[preset] || PRESETS[DEFAULT_PRESET];
  const v = { width: { ideal: p.width }, height: { ideal: p.height }, frameRate: { ideal: p.fps } };
  if (camera && camera.startsWith('device:') && !loose) v.deviceId = { exact: camera.slice('device:'.length) };
  else v.facingMode = { ideal: camera === 'facing:user' ? 'user' : 'environment' };
  return v;
}

// Raw microphone: the hub's audio trigger measures levels against a noise floor, which AGC and noise
// suppression would flatten.
const AUDIO_CONSTRAINTS = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };

function classify(err) {
  const name = (err && err.name) || '';
  if (name === 'NotAllowedError' || name === 'SecurityError' || name === 'PermissionDeniedError')
    return new MediaError('denied', 'Camera access was blocked for this page.', err);
  if (name === 'NotFoundError' || name === 'OverconstrainedError' || name === 'DevicesNotFoundError')
    return new MediaError('nocamera', 'No camera was found on this device.', err);
  if (name === 'NotReadableError' || name === 'AbortError' || name === 'TrackStartError')
    return new MediaError('busy', 'The camera could not be started (another app may be using it).', err);
  return new MediaError('busy', `The camera failed to start: ${(err && err.message) || name || err}`, err);
}

/**
 * getUserMedia for the chosen camera and preset. Falls back, in order: a missing/unusable microphone →
 * video only; a vanished deviceId → facingMode. Returns {stream, audio: bool}.
 */
export async function openCamera({ camera = 'facing:environment', preset = DEFAULT_PRESET, audio = true } = {}) {
  if (!mediaSupported()) throw new MediaError('unsupported', 'This browser cannot capture video (no getUserMedia or WebRTC).');
  const gum = (c) => navigator.mediaDevices.getUserMedia(c);
  const attempts = [];
  if (audio) attempts.push({ video: videoConstraints(camera, preset), audio: AUDIO_CONSTRAINTS });
  attempts.push({ video: videoConstraints(camera, preset), audio: false });
  if (camera && camera.startsWith('device:')) attempts.push({ video: videoConstraints(camera, preset, { loose: true }), audio: false });
  let first = null;
  for (const c of attempts) {
    try {
      const stream = await gum(c);
      return { stream, audio: stream.getAudioTracks().length > 0 };
    } catch (err) {
      first = first || err;
      // Permission refused: asking again without the microphone would not help and would only hide the cause.
      if (err && (err.name === 'NotAllowedError' || err.name === 'SecurityError')) break;
    }
  }
  throw classify(first);
}

/** Video inputs (labels are empty until the camera permission is granted). */
export async function listCameras() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return [];
  try {
    const all = await navigator.mediaDevices.enumerateDevices();
    return all.filter((d) => d.kind === 'videoinput' && d.deviceId).map((d, i) => ({ id: d.deviceId, label: d.label || `Camera ${i + 1}` }));
  } catch {
    return [];
  }
}

/**
 * Whether the track's camera can do at least 1920x1080: true / false, or null when the browser does not say
 * (no getCapabilities, or no sizes in it): then 1080p stays selectable and the page claims nothing.
 */
export function supports1080p(track) {
  try {
    const caps = track.getCapabilities ? track.getCapabilities() : null;
    if (!caps || !caps.width || !caps.height || !caps.width.max || !caps.height.max) return null;
    const long = Math.max(caps.width.max || 0, caps.height.max || 0);
    const short = Math.min(caps.width.max || 0, caps.height.max || 0);
    return long >= 1920 && short >= 1080;
  } catch {
    return null;
  }
}

/** H.264 constrained baseline first (42e01f, then 42001f, packetization-mode=1 before 0), then VP8, then RTX. */
export function orderVideoCodecs(codecs) {
  const fmtp = (c) => (c.sdpFmtpLine || '').toLowerCase();
  const score = (c) => {
    const mime = (c.mimeType || '').toLowerCase();
    if (mime === 'video/h264') {
      const f = fmtp(c);
      const pm1 = /packetization-mode=1/.test(f);
      if (/profile-level-id=42e01f/.test(f)) return pm1 ? 0 : 2;
      if (/profile-level-id=42001f/.test(f)) return pm1 ? 1 : 3;
      return -1; // other H.264 profiles: the hub cannot take them
    }
    if (mime === 'video/vp8') return 10;
    if (mime === 'video/rtx') return 20;
    return -1; // VP9, AV1, H.265, RED, ULPFEC, FlexFEC: not for this hub
  };
  return codecs
    .map((c, i) => ({ c, s: score(c), i }))
    .filter((x) => x.s >= 0)
    .sort((a, b) => a.s - b.s || a.i - b.i)
    .map((x) => x.c);
}

function preferCodecs(transceiver) {
  if (typeof transceiver.setCodecPreferences !== 'function') return 'default';
  const caps = (window.RTCRtpReceiver && RTCRtpReceiver.getCapabilities && RTCRtpReceiver.getCapabilities('video')) ||
    (window.RTCRtpSender && RTCRtpSender.getCapabilities && RTCRtpSender.getCapabilities('video'));
  if (!caps || !caps.codecs) return 'default';
  const ordered = orderVideoCodecs(caps.codecs);
  if (!ordered.some((c) => /^video\/(h264|vp8)$/i.test(c.mimeType))) return 'default';
  try {
    transceiver.setCodecPreferences(ordered);
    return (ordered[0].mimeType || '').split('/')[1] || 'default';
  } catch (err) {
    console.warn('setCodecPreferences failed; using the browser default order', err);
    return 'default';
  }
}

async function maintainResolution(sender) {
  try {
    const p = sender.getParameters();
    if (!p.encodings || !p.encodings.length) return false;
    if (p.degradationPreference === 'maintain-resolution') return true;
    p.degradationPreference = 'maintain-resolution';
    await sender.setParameters(p);
    return true;
  } catch {
    return false; // some browsers refuse before negotiation; applied again after the answer
  }
}

function waitIceComplete(pc, timeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok) => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', onChange);
      pc.removeEventListener('icecandidate', onCandidate);
      resolve(ok);
    };
    const onChange = () => pc.iceGatheringState === 'complete' && done(true);
    const onCandidate = (e) => !e.candidate && done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    pc.addEventListener('icegatheringstatechange', onChange);
    pc.addEventListener('icecandidate', onCandidate);
  });
}

/**
 * Build the peer and its complete offer. Returns {pc, channel, record, detect, audio, roles, sdp,
 * codecPref, iceComplete}. The caller POSTs {type:'offer', sdp, roles} and applies the answer with applyAnswer().
 */
export async function createPeer({ stream, detectTrack, preset = DEFAULT_PRESET }) {
  const p = PRESETS[preset] || PRESETS[DEFAULT_PRESET];
  const video = stream.getVideoTracks()[0];
  const mic = stream.getAudioTracks()[0] || null;
  if (!video) throw new Error('no video track');
  const s = video.getSettings ? video.getSettings() : {};
  const long = Math.max(s.width || p.width, s.height || p.height);

  const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
  try {
    const record = pc.addTransceiver(video, {
      direction: 'sendonly',
      streams: [stream],
      sendEncodings: [{ maxBitrate: p.maxBitrate, maxFramerate: p.fps }],
    });
    const detect = pc.addTransceiver(detectTrack, {
      direction: 'sendonly',
      sendEncodings: [{ scaleResolutionDownBy: Math.max(1, long / DETECT_LONG_SIDE), maxFramerate: DETECT_FPS, maxBitrate: DETECT_MAX_BITRATE }],
    });
    const audio = mic ? pc.addTransceiver(mic, { direction: 'sendonly', streams: [stream] }) : null;
    const codecPref = preferCodecs(record);
    preferCodecs(detect);
    await maintainResolution(record.sender);
    const channel = pc.createDataChannel('status', { ordered: true });

    await pc.setLocalDescription(await pc.createOffer());
    const iceComplete = await waitIceComplete(pc, ICE_GATHER_TIMEOUT_MS);

    const roles = {};
    if (record.mid != null) roles[record.mid] = 'record';
    if (detect.mid != null) roles[detect.mid] = 'detect';
    if (audio && audio.mid != null) roles[audio.mid] = 'audio';
    return { pc, channel, record, detect, audio, roles, sdp: pc.localDescription.sdp, codecPref, iceComplete };
  } catch (err) {
    pc.close();
    throw err;
  }
}

export async function applyAnswer(peer, answer) {
  await peer.pc.setRemoteDescription(answer);
  peer.maintainResolution = await maintainResolution(peer.record.sender);
}

async function outbound(sender) {
  if (!sender) return null;
  const report = await sender.getStats();
  let out = null;
  const codecs = new Map();
  report.forEach((r) => {
    if (r.type === 'outbound-rtp' && (!out || (r.bytesSent || 0) > (out.bytesSent || 0))) out = r;
    if (r.type === 'codec') codecs.set(r.id, r);
  });
  if (!out) return null;
  const codec = codecs.get(out.codecId);
  return { out, codec: codec ? (codec.mimeType || '').split('/')[1] || null : null, codecFmtp: codec ? codec.sdpFmtpLine || null : null };
}

function rate(cur, prev, key) {
  if (!prev || cur[key] == null || prev[key] == null) return null;
  const dt = (cur.timestamp - prev.timestamp) / 1000;
  return dt > 0 ? (cur[key] - prev[key]) / dt : null;
}

/** Stats of the peer's senders. prev is the previous result (for bitrates). */
export async function collectStats(peer, prev = null) {
  const [rec, det, aud, all] = await Promise.all([
    outbound(peer.record.sender),
    outbound(peer.detect.sender),
    peer.audio ? outbound(peer.audio.sender) : null,
    peer.pc.getStats(),
  ]);
  const raw = { record: rec && rec.out, detect: det && det.out, audio: aud && aud.out };
  const video = (x, key) => {
    if (!x) return null;
    const o = x.out;
    const prevOut = prev && prev.raw && prev.raw[key];
    const bps = rate(o, prevOut, 'bytesSent');
    const fps = o.framesPerSecond != null ? o.framesPerSecond : rate(o, prevOut, 'framesSent');
    return {
      codec: x.codec,
      fmtp: x.codecFmtp,
      width: o.frameWidth || null,
      height: o.frameHeight || null,
      fps: fps == null ? null : Math.round(fps * 10) / 10,
      bitrate_kbps: bps == null ? null : Math.round((bps * 8) / 1000),
      frames_sent: o.framesSent || 0,
      keyframes_sent: o.keyFramesEncoded || 0,
      limitation: o.qualityLimitationReason || null,
      encoder: o.encoderImplementation || null,
    };
  };
  let rttMs = null;
  let availableKbps = null;
  let selected = null;
  all.forEach((r) => {
    if (r.type === 'transport' && r.selectedCandidatePairId) selected = r.selectedCandidatePairId;
  });
  all.forEach((r) => {
    if (r.type !== 'candidate-pair') return;
    if (selected ? r.id === selected : r.nominated && r.state === 'succeeded') {
      if (r.currentRoundTripTime != null) rttMs = Math.round(r.currentRoundTripTime * 1000);
      if (r.availableOutgoingBitrate != null) availableKbps = Math.round(r.availableOutgoingBitrate / 1000);
    }
  });
  let audio = null;
  if (aud) {
    const bps = rate(aud.out, prev && prev.raw && prev.raw.audio, 'bytesSent');
    audio = { codec: aud.codec, bitrate_kbps: bps == null ? null : Math.round((bps * 8) / 1000) };
  }
  return {
    at: Date.now(),
    record: video(rec, 'record'),
    detect: video(det, 'detect'),
    audio,
    rtt_ms: rttMs,
    available_kbps: availableKbps,
    raw,
  };
}
