// What the hub says it receives, and what the page makes of it.
//
// Every ~2 s the hub sends, on the `status` data channel, a `received` report:
//   {type: 'received', interval_s, tracks: {record|detect|audio: {mid, per_s, total, width?, height?, codec?}},
//    ignored: [mid, ...]}
// per_s is what reached the hub's recorder, motion detection and sound detection per second since the previous
// report: record frames, decoded detect frames, audio packets. A role missing from `tracks` is one the hub does not use. The page
// shows this instead of what its own encoder claims to send: a browser can send a track perfectly well that the
// hub throws away (Firefox's bundle-only sections did exactly that), and only the hub can tell.

export const REPORT_STALE_MS = 7000; // no report for this long: the hub's view is unknown (old hub, or gone)
export const GRACE_MS = 6000; // after connecting, give a track this long before warning that nothing arrives
export const ROLES = ['record', 'detect', 'audio'];

/** The report if `data` (a data channel message) is one, else null. Never throws. */
export function parseReport(data) {
  if (typeof data !== 'string' || data.length > 16384) return null;
  let msg;
  try {
    msg = JSON.parse(data);
  } catch {
    return null;
  }
  if (!msg || msg.type !== 'received' || typeof msg.tracks !== 'object' || msg.tracks === null) return null;
  const tracks = {};
  for (const role of ROLES) {
    const t = msg.tracks[role];
    if (!t || typeof t !== 'object') continue;
    const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
    tracks[role] = {
      mid: typeof t.mid === 'string' ? t.mid : null,
      per_s: num(t.per_s) ?? 0,
      total: num(t.total) ?? 0,
      width: num(t.width),
      height: num(t.height),
      codec: typeof t.codec === 'string' ? t.codec : null,
    };
  }
  const ignored = Array.isArray(msg.ignored) ? msg.ignored.filter((m) => typeof m === 'string') : [];
  return { tracks, ignored };
}

const WARNINGS = {
  record: 'The hub receives no video from this phone: nothing is recorded.',
  detect: 'The hub receives no motion stream from this phone: motion detection is off for this camera.',
  audio: 'The hub receives no audio from this phone: sound detection is off and clips are silent.',
};

/**
 * The hub's view per role: 'ok' (arriving), 'none' (the page sends it, the hub gets nothing), 'unknown' (no
 * recent report, or too early to tell), 'off' (the page does not send it). `sending` says which roles the page
 * sends; `at` is when the last report came (ms), `connectedSince` when the connection came up (ms).
 */
export function hubView({ report, at, now, connectedSince, sending }) {
  const fresh = !!report && at != null && now - at <= REPORT_STALE_MS;
  const settled = connectedSince != null && now - connectedSince >= GRACE_MS;
  const roles = {};
  const warnings = [];
  for (const role of ROLES) {
    const t = fresh ? report.tracks[role] : null;
    let state;
    if (!sending[role]) state = 'off';
    else if (!fresh) state = 'unknown';
    else if (t && t.per_s > 0) state = 'ok';
    else state = settled ? 'none' : 'unknown';
    roles[role] = { state, per_s: t ? t.per_s : null, width: t ? t.width : null, height: t ? t.height : null, codec: t ? t.codec : null };
    if (state === 'none') warnings.push(WARNINGS[role]);
  }
  return { fresh, roles, warnings };
}
