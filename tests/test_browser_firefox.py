"""Firefox as a phone: Debian's firefox-esr (headless, fresh profile, nothing leaves 127.0.0.1) pairs with the
real hub, streams WebRTC, and a walk in front of it makes a motion event.

Firefox's WebRTC differs from Chrome's where it matters here: under ``bundlePolicy: 'max-bundle'`` it offers
every m-section after the first with port 0 and ``a=bundle-only``. The hub used to take those for "not sending"
and blackholed the detect track and the audio (``detect_frames`` 0, ``audio_chunks`` 0) while the page said all
was well; these tests assert what the hub counts, and that the page shows the hub's view.

Camera: Firefox's fake camera (``media.navigator.streams.fake``) is a uniform frame whose colour drifts by a
luma step or two per second: nothing a motion detector should call motion. So the page's video comes from a
canvas (``captureStream``) with a textured background and, on the test's signal, a person-sized figure walking
across; the microphone is Firefox's fake one (a tone). The canvas stream goes through the page's own code and
Firefox's real encoder, RTP stack and DTLS; only the camera is painted.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import av
import httpx
import pytest

from hub.store import Store
from tests.harness.firefox import FirefoxBrowser, WebDriverError, process_alive
from tests.hubproc import HubProcess
from tests.test_browser_ingest import cameras, frames, pairing_code, track, wait_hub

pytestmark = pytest.mark.browser

STREAM_TIMEOUT_S = 45.0

# Resolves once the page's state is `state` (now or at a later 'pingwatch:state' event).
WAIT_STATE_JS = """
const state = arguments[0], done = arguments[arguments.length - 1];
if (window.pingwatch && window.pingwatch.state === state) { done(true); return; }
window.addEventListener('pingwatch:state', function on(e) {
  if (e.detail.state === state) { window.removeEventListener('pingwatch:state', on); done(true); }
});
"""

# Replaces the camera (not the microphone) by a painted one: 640x360 at 15 fps, a smooth textured background,
# and `window.__pwWalk()` sends a dark, person-sized figure across the frame once (about 3 s).
CANVAS_CAMERA_JS = """
const W = 640, H = 360, FPS = 15;
const canvas = document.createElement('canvas');
canvas.width = W; canvas.height = H;
const g = canvas.getContext('2d');
const bg = g.createImageData(W, H);
for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
  const v = 110 + 40 * (Math.sin(x / 18) + Math.cos(y / 12)) + ((x * 7 + y * 13) % 9);
  const i = 4 * (y * W + x);
  bg.data[i] = bg.data[i + 1] = bg.data[i + 2] = v; bg.data[i + 3] = 255;
}
let walkStart = null;
function paint() {
  g.putImageData(bg, 0, 0);
  if (walkStart !== null) {
    const t = (performance.now() - walkStart) / 1000;
    const bodyW = 0.12 * W, bodyH = 0.75 * H, x = -bodyW + t * 0.3 * W;
    if (x < W) {
      g.fillStyle = 'rgb(30,30,30)';
      g.fillRect(x, H * 0.97 - bodyH * 0.85, bodyW, bodyH * 0.85);
      g.beginPath(); g.arc(x + bodyW / 2, H * 0.97 - bodyH * 0.92, bodyW * 0.4, 0, 2 * Math.PI); g.fill();
    }
  }
}
paint();
setInterval(paint, 1000 / FPS);
const painted = canvas.captureStream(FPS);
window.__pwWalk = () => { walkStart = performance.now(); };
// The page's transceivers, so the test can stop one sender behind the page's back.
window.__pwTransceivers = [];
const addTransceiver = RTCPeerConnection.prototype.addTransceiver;
RTCPeerConnection.prototype.addTransceiver = function (...args) {
  const t = addTransceiver.apply(this, args);
  window.__pwTransceivers.push(t);
  return t;
};
const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (c) => {
  const audio = c && c.audio ? await original({ audio: c.audio }) : null;
  const tracks = [painted.getVideoTracks()[0].clone(), ...(audio ? audio.getAudioTracks() : [])];
  return new MediaStream(tracks);
};
return true;
"""


STOP_DETECT_JS = """
const done = arguments[arguments.length - 1];
const sender = window.__pwTransceivers[1].sender;
const p = sender.getParameters();
p.encodings.forEach((e) => { e.active = false; });
sender.setParameters(p).then(() => done(true), (e) => done(String(e)));
"""

# What the status screen shows (text of the rows the hub's view drives, and whether the warning is hidden).
DOM_JS = """
const text = (id) => document.getElementById(id).textContent;
return {'big-state': text('big-state'), 'st-fps': text('st-fps'), 'st-detect': text('st-detect'),
        'st-audio': text('st-audio'), warn: text('warn'), warn_hidden: document.getElementById('warn').hidden};
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    h = HubProcess.create(tmp_path_factory.mktemp("firefox_hub"),
                          events={"pre_roll_s": 2, "post_roll_s": 2, "cooldown_s": 60})
    try:
        h.start()
        yield h
    finally:
        h.stop()


@pytest.fixture
async def firefox(hub: HubProcess, tmp_path: Path):
    # Trust exactly the certificate this hub serves, on exactly its HTTPS port.
    browser = FirefoxBrowser(trust=[("127.0.0.1", hub.https_port, hub.data_dir / "tls" / "server.pem")],
                             root=tmp_path / "firefox")
    try:
        await browser.start()
        yield browser
    finally:
        await browser.close()


async def wait_state(ff: FirefoxBrowser, state: str, timeout_s: float = STREAM_TIMEOUT_S) -> None:
    try:
        await ff.execute_async(WAIT_STATE_JS, state, timeout_s=timeout_s)
    except WebDriverError as e:
        stats = await ff.execute("return window.pingwatch && window.pingwatch.stats()")
        pytest.fail(f"page never reached {state!r} ({e}): {json.dumps(stats)[:3000]}")


async def page_stats(ff: FirefoxBrowser) -> dict:
    return await ff.execute("return window.pingwatch.stats()")


async def wait_page(ff: FirefoxBrowser, pred, what: str, timeout: float = 20.0) -> dict:
    """Poll the page's test hook until ``pred(stats)``; fail with the last snapshot otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        st = await page_stats(ff)
        if pred(st):
            return st
        if time.monotonic() > deadline:
            pytest.fail(f"page: no {what} within {timeout}s: {json.dumps(st)[:3000]}")
        await asyncio.sleep(0.25)  # poll interval of a bounded wait


async def test_firefox_phone_streams_every_track_and_makes_a_motion_event(firefox: FirefoxBrowser, hub, api):
    caps = firefox.capabilities
    assert caps.get("browserName") == "firefox", caps
    await firefox.goto(f"{hub.https}/cam/")
    await wait_state(firefox, "unpaired", 20)
    assert await firefox.execute(CANVAS_CAMERA_JS) is True
    # Pair the way a scanned QR code does: the page reacts to the #code= fragment.
    await firefox.execute("location.hash = '#code=' + arguments[0]", await pairing_code(api, hub))
    await wait_state(firefox, "streaming")
    cid = await firefox.execute("return window.pingwatch.cameraId")
    assert cid

    # What the hub counts: every track of Firefox's bundle-only offer arrives and is used.
    cams = await wait_hub(api, hub, lambda cs: frames(cs.get(cid)) > 0 and cs[cid]["stats"]["detect_frames"] > 0
                          and cs[cid]["stats"]["audio_chunks"] > 0,
                          "record frames, detect frames and audio chunks from Firefox", timeout=STREAM_TIMEOUT_S)
    cam = cams[cid]
    msg = json.dumps(cam, indent=1)[:5000]
    assert cam["codec"] in ("vp8", "h264"), msg
    assert not [k for k in (cam["ingest"] or {}).get("tracks", {}) if k.startswith("blackhole")], msg
    assert {r: track(cam, r).get("mid") for r in ("record", "detect", "audio")} == {
        "record": "0", "detect": "1", "audio": "2"}, msg
    assert track(cam, "detect").get("width") and track(cam, "detect")["width"] <= 320, msg

    # The page shows the hub's view: every track reaches the hub, no warning.
    st = await wait_page(firefox, lambda s: all(s["hub_view"]["roles"][r]["state"] == "ok"
                                                 for r in ("record", "detect", "audio")),
                         "hub report that record, detect and audio arrive")
    assert st["hub"]["ignored"] == [] and st["hub_view"]["warnings"] == [], st
    shown = await firefox.execute(DOM_JS)
    assert shown["big-state"] == "Capture active" and shown["st-detect"].endswith("fps at the hub"), shown
    assert shown["st-audio"].startswith("reaching the hub") and shown["warn_hidden"] is True, shown

    # A walk in front of the phone: one motion event with a clip.
    mark = len(hub.lines)
    await firefox.execute("window.__pwWalk()")
    started = json.loads(hub.wait_for_log('"msg": "event started"', timeout=30, start=mark))
    ended = json.loads(hub.wait_for_log('"msg": "event ended"', timeout=60, start=mark))
    assert started["event_id"] == ended["event_id"], (started, ended)
    after = (await cameras(api, hub))[cid]
    store = Store(hub.data_dir / "hub.db")
    try:
        events = store.list_events(camera_id=cid)
    finally:
        store.close()
    assert [e["id"] for e in events] == [ended["event_id"]], events
    ev = events[0]
    assert ev["status"] == "complete" and "motion" in ev["triggers"], ev
    clip = Path(ev["clip_path"])
    assert clip.suffix in (".mp4", ".webm"), ev  # WebM for VP8 (Debian's Firefox has no OpenH264 plugin)
    with av.open(str(clip)) as c:
        vs = c.streams.video[0]
        assert (vs.codec_context.width, vs.codec_context.height) == (640, 360), ev
        assert sum(1 for _ in c.decode(vs)) >= 15, ev
        assert c.streams.audio, "the clip has Firefox's audio"
    assert after["stats"]["detect_frames"] > cam["stats"]["detect_frames"], after
    assert after["stats"]["audio_chunks"] > cam["stats"]["audio_chunks"], after

    # The detect sender goes quiet while the page still believes it sends: the page says so, from the hub's view.
    # (encodings[0].active = false: the encoder stops; replaceTrack(null) would still send a black frame a second)
    await firefox.execute_async(STOP_DETECT_JS, timeout_s=10)
    st = await wait_page(firefox, lambda s: s["hub_view"]["roles"]["detect"]["state"] == "none",
                         "hub report that the motion stream stopped")
    assert st["hub_view"]["roles"]["record"]["state"] == "ok", st
    assert any("motion detection is off" in w for w in st["hub_view"]["warnings"]), st
    shown = await firefox.execute(DOM_JS)
    deadline = time.monotonic() + 10
    while shown["st-detect"] != "not reaching the hub" and time.monotonic() < deadline:
        await asyncio.sleep(0.25)  # poll interval of a bounded wait for the next render
        shown = await firefox.execute(DOM_JS)
    assert shown["st-detect"] == "not reaching the hub", shown
    assert "motion detection is off" in shown["warn"] and not shown["warn_hidden"], shown


async def test_geckodriver_and_firefox_are_gone_after_close(hub: HubProcess, tmp_path: Path):
    browser = FirefoxBrowser(trust=[("127.0.0.1", hub.https_port, hub.data_dir / "tls" / "server.pem")],
                             root=tmp_path / "ff")
    await browser.start()
    pid, port = browser.firefox_pid, browser.port
    assert pid and port and process_alive(pid)
    await browser.close()
    await browser.close()  # idempotent
    assert not process_alive(pid)
    assert not browser.root.exists() or not any(browser.root.glob("profile/lock")), "profile still locked"
    async with httpx.AsyncClient(timeout=2) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/status")
