"""End-to-end phone ingest: real headless Chromium (fake camera from a generated Y4M) → HTTPS → the real hub.

The browser trusts exactly the hub's self-signed certificate (``--ignore-certificate-errors-spki-list``), opens
``/cam/`` like a phone, pairs with a code from the admin API and streams WebRTC to the hub on 127.0.0.1. All
checks on the hub side go through the admin API (``GET /api/admin/cameras``: ring-buffer stats and per-track
ingest stats measured by the hub). Waiting is on events: the page's test hook (``window.pingwatch.state`` and a
recorded list of its ``pingwatch:state`` events), the hub's log, or the stats API polled with a deadline.

One hub serves the whole module (the restart test runs last and leaves it running); every test pairs its own
camera(s) and closes its browser contexts. Media files are 640x360 except for the 720p test.

Hub stats these tests rely on beyond the record track: ``ingest.tracks.detect.codec/width/height`` (the
detect track's codec and decoded size) and ``ingest.tracks.audio.codec``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.hubproc import HubProcess

pytestmark = pytest.mark.browser

FPS = 15
STREAM_TIMEOUT_MS = 30_000

# Records every state the page goes through (the page fires 'pingwatch:state' on window at each change).
RECORD_STATES = """
window.__pwStates = [];
window.addEventListener('pingwatch:state', (e) => window.__pwStates.push(e.detail.state));
"""

# Resolves once the page's state is `state` (now or at a later 'pingwatch:state' event).
STATE_REACHED_JS = """(state) => new Promise((resolve) => {
  if ((window.pingwatch && window.pingwatch.state === state) ||
      (state === 'reconnecting' && window.__pwStates.includes(state))) { resolve(true); return; }
  window.addEventListener('pingwatch:state', function on(e) {
    if (e.detail.state === state) { window.removeEventListener('pingwatch:state', on); resolve(true); }
  });
})"""

# Keep only VP8 in the page's codec preferences (the page prefers H.264 otherwise).
FORCE_VP8 = """
(() => {
  const orig = RTCRtpTransceiver.prototype.setCodecPreferences;
  RTCRtpTransceiver.prototype.setCodecPreferences = function (codecs) {
    return orig.call(this, codecs.filter((c) => /^video\\/vp8$/i.test(c.mimeType)));
  };
})();
"""

# A complete (non-trickle) offer from this Chromium: two sendonly video m-lines + audio + the status channel,
# the same shape the page sends. Returns the SDP text.
CHROME_OFFER = """
async ({video, audio}) => {
  const pc = new RTCPeerConnection({iceServers: [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require'});
  if (video) {
    pc.addTransceiver('video', {direction: 'sendonly'});
    pc.addTransceiver('video', {direction: 'sendonly'});
  }
  if (audio) pc.addTransceiver('audio', {direction: 'sendonly'});
  pc.createDataChannel('status');
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
    setTimeout(resolve, 5000);
  });
  const sdp = pc.localDescription.sdp;
  pc.close();
  return sdp;
}
"""


# ------------------------------------------------------------------------------------------------------------
# media
# ------------------------------------------------------------------------------------------------------------


def write_scene_y4m(path: Path, w: int, h: int, fps: int = FPS, seconds: float = 2.0) -> Path:
    """A smooth textured grey scene with mild noise and a bright bar moving across (4:2:0, grey chroma).

    Smooth texture + mild noise keeps the encoders at full frame rate (pure random noise makes OpenH264
    fall to ~1 fps at 720p on a small machine) while still giving motion and non-trivial frames.
    """
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg = 110 + 40 * (np.sin(xx / (w / 35)) + np.cos(yy / (h / 31))) + rng.normal(0, 3, (h, w))
    bg = bg.clip(0, 255).astype(np.uint8)
    chroma = np.full((h // 2) * (w // 2) * 2, 128, np.uint8).tobytes()
    n = int(fps * seconds)
    bar_w, bar_h = w // 12, h // 3
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(n):
            y = bg.copy()
            x = int((w - bar_w) * i / max(n - 1, 1))
            y[h // 3 : h // 3 + bar_h, x : x + bar_w] = 235
            f.write(b"FRAME\n")
            f.write(y.tobytes())
            f.write(chroma)
    return path.resolve()


def write_tone_wav(path: Path, seconds: float = 1.0, rate: int = 48000) -> Path:
    from tests.harness.media import sine_wave, write_wav

    return write_wav(path, sine_wave(440.0, seconds, rate), rate=rate)


# ------------------------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("browser_media")
    return {
        "720p": write_scene_y4m(d / "scene_1280x720.y4m", 1280, 720),
        "360p": write_scene_y4m(d / "scene_640x360.y4m", 640, 360),
        "tone": write_tone_wav(d / "tone.wav"),
    }


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    h = HubProcess.create(tmp_path_factory.mktemp("browser_hub"))
    try:
        h.start()  # inside the try: a start that times out still stops the process
        yield h
    finally:
        h.stop()


def admin(hub: HubProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {hub.admin_secret}"}


async def pairing_code(api: httpx.AsyncClient, hub: HubProcess) -> str:
    r = await api.post("/api/admin/pairing-codes", headers=admin(hub))
    assert r.status_code == 201, r.text
    return r.json()["code"]


async def cameras(api: httpx.AsyncClient, hub: HubProcess) -> dict[str, dict[str, Any]]:
    r = await api.get("/api/admin/cameras", headers=admin(hub))
    assert r.status_code == 200, r.text
    return {c["id"]: c for c in r.json()["cameras"]}


async def wait_hub(api: httpx.AsyncClient, hub: HubProcess, pred: Callable[[dict], Any], what: str,
                   timeout: float = 15.0) -> dict[str, dict[str, Any]]:
    """Poll the admin camera list until ``pred(cameras)`` is truthy; fail with the last snapshot otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        cams = await cameras(api, hub)
        if pred(cams):
            return cams
        if time.monotonic() > deadline:
            pytest.fail(f"hub: no {what} within {timeout}s; cameras: {json.dumps(cams, indent=1)[:4000]}")
        await asyncio.sleep(0.25)  # poll interval of a bounded wait


def track(cam: dict[str, Any] | None, role: str) -> dict[str, Any]:
    ingest = (cam or {}).get("ingest") or {}
    return (ingest.get("tracks") or {}).get(role) or {}


def frames(cam: dict[str, Any] | None, role: str = "record") -> int:
    return track(cam, role).get("frames", 0)


async def open_page(browser, hub: HubProcess, *, code: str | None = None, token: str | None = None,
                    init_scripts: tuple[str, ...] = ()):
    """A fresh context (its own localStorage) with the camera page open; paired via ``#code=`` if given."""
    context = await browser.new_context()
    await context.add_init_script(RECORD_STATES)
    if token is not None:
        creds = json.dumps({"token": token, "camera_id": "cam-bogus", "name": "Bogus", "paired_at": 0})
        await context.add_init_script(f"localStorage.setItem('pingwatch.camera', {json.dumps(creds)});")
    for s in init_scripts:
        await context.add_init_script(s)
    page = await context.new_page()
    def console(msg) -> None:  # shown with the failure output of the test
        if msg.type in ("error", "warning"):
            print(f"[page] {msg.type}: {msg.text}")

    page.on("console", console)
    url = f"{hub.https}/cam/" + (f"#code={code}" if code else "")
    await page.goto(url)
    return context, page


async def wait_state(page, state: str, timeout_ms: int = STREAM_TIMEOUT_MS) -> None:
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    try:
        # The page's CSP forbids eval, which wait_for_function's polling needs: wait on the page's state event.
        await asyncio.wait_for(page.evaluate(STATE_REACHED_JS, state), timeout_ms / 1000)
    except (TimeoutError, PlaywrightTimeout):
        info = await page.evaluate("({states: window.__pwStates, stats: window.pingwatch && window.pingwatch.stats()})")
        pytest.fail(f"page never reached '{state}': {json.dumps(info)[:3000]}")


async def stream_camera(browser, hub: HubProcess, api: httpx.AsyncClient,
                        init_scripts: tuple[str, ...] = ()) -> tuple[Any, Any, str]:
    """Pair a new page and wait until it streams and the hub has its first record frames."""
    context, page = await open_page(browser, hub, code=await pairing_code(api, hub), init_scripts=init_scripts)
    await wait_state(page, "streaming")
    cid = await page.evaluate("window.pingwatch.cameraId")
    assert cid
    await wait_hub(api, hub, lambda cs: frames(cs.get(cid)) > 0, f"record frames from {cid}")
    return context, page, cid


async def measure(api: httpx.AsyncClient, hub: HubProcess, cid: str, *, seconds: float, keyframes: int = 0,
                  timeout: float = 15.0) -> tuple[dict, dict, float]:
    """Two snapshots of camera ``cid`` at least ``seconds`` apart with at least ``keyframes`` new record
    keyframes between them. Returns (before, after, elapsed_s)."""
    before = (await cameras(api, hub))[cid]
    t0 = time.monotonic()
    k0 = track(before, "record").get("keyframes", 0)
    after = (await wait_hub(
        api, hub,
        lambda cs: time.monotonic() - t0 >= seconds and track(cs[cid], "record").get("keyframes", 0) >= k0 + keyframes,
        f"{seconds}s of stream with {keyframes} keyframes", timeout=timeout,
    ))[cid]
    return before, after, time.monotonic() - t0


# ------------------------------------------------------------------------------------------------------------
# tests (in file order: the hub restart comes last)
# ------------------------------------------------------------------------------------------------------------


async def test_unpaired_page_is_refused_before_media(camera_browser, hub, api, scene):
    browser = await camera_browser(scene["360p"], scene["tone"], spki=hub.spki)
    mark = len(hub.lines)
    before = await cameras(api, hub)

    offers: list[str] = []
    ctx_none, page_none = await open_page(browser, hub)
    ctx_bogus, page_bogus = await open_page(browser, hub, token="not-a-real-token-" + "x" * 20)
    try:
        for p in (page_none, page_bogus):
            p.on("request", lambda r: "/api/camera/offer" in r.url and offers.append(r.url))
        await wait_state(page_none, "unpaired", 10_000)
        await wait_state(page_bogus, "unpaired", 10_000)
        # The bogus token was checked (GET /api/camera → 401) and forgotten; the camera was never opened.
        bogus = await page_bogus.evaluate("({states: window.__pwStates,"
                                          " stored: localStorage.getItem('pingwatch.camera'),"
                                          " stats: window.pingwatch.stats()})")
        assert "checking" in bogus["states"], bogus
        assert not {"camera", "connecting", "streaming"} & set(bogus["states"]), bogus
        assert bogus["stored"] is None and bogus["stats"]["track"] is None, bogus
        assert not {"camera", "connecting", "streaming"} & set(await page_none.evaluate("window.__pwStates"))

        # A real Chrome offer with a bad token: refused before any peer exists.
        sdp = await page_bogus.evaluate(CHROME_OFFER, {"video": True, "audio": True})
        assert sdp.startswith("v=0") and "m=video" in sdp
        for headers in ({"Authorization": "Bearer not-a-real-token"}, {}):
            r = await api.post("/api/camera/offer", headers=headers, json={"type": "offer", "sdp": sdp})
            assert r.status_code == 401, r.text
            assert r.headers["content-type"].startswith("application/json") and r.json()["error"], r.text
    finally:
        await ctx_none.close()
        await ctx_bogus.close()

    assert offers == [], "an unpaired page must not send an offer"
    after = await cameras(api, hub)
    assert after.keys() == before.keys(), "no camera may appear"
    for cid, cam in after.items():  # no ring buffer and no peer received anything
        b0 = (before[cid]["stats"] or {}).get("buffer", {}).get("frames", 0)
        assert (cam["stats"] or {}).get("buffer", {}).get("frames", 0) == b0, cam
        assert frames(cam) == frames(before[cid]), cam
    new_lines = "\n".join(hub.lines[mark:])
    for text in ("accepted offer", "camera connected", "camera stream", "camera online"):
        assert text not in new_lines, new_lines


async def test_paired_page_streams_720p_h264(camera_browser, hub, api, scene):
    browser = await camera_browser(scene["720p"], scene["tone"], spki=hub.spki)
    context, page, cid = await stream_camera(browser, hub, api)
    try:
        # Let the sender ramp up to full resolution, then measure a window with at least two keyframes.
        await wait_hub(api, hub, lambda cs: (track(cs[cid], "record").get("width"),
                                             track(cs[cid], "record").get("height"))
                       == (1280, 720) and cs[cid]["stats"]["detect_frames"] > 0, "1280x720 record track")
        before, after, dt = await measure(api, hub, cid, seconds=3.0, keyframes=1)
        page_stats = await page.evaluate("window.pingwatch.stats()")
        # Every frame the page has sent so far must reach the hub (bounded wait for those still in flight).
        sent = {role: (page_stats[role] or {}).get("frames_sent", 0) for role in ("record", "detect")}
        got = await wait_hub(api, hub, lambda cs: all(frames(cs[cid], role) >= n for role, n in sent.items()),
                             f"every frame the page sent ({sent})")
    finally:
        await context.close()

    msg = json.dumps({"hub": after, "page": page_stats}, indent=1)[:6000]
    rec, rec0 = track(after, "record"), track(before, "record")
    det, det0 = track(after, "detect"), track(before, "detect")
    aud, aud0 = track(after, "audio"), track(before, "audio")

    # H.264 negotiated and stored for the camera; the record stream is 720p all the way into the ring buffer.
    assert after["codec"] == "h264" and rec["codec"] == "h264", msg
    assert (after["width"], after["height"]) == (1280, 720), msg
    assert after["stats"]["stream"] == {"codec": "h264", "width": 1280, "height": 720}, msg
    assert (rec["width"], rec["height"]) == (1280, 720), msg
    buf = after["stats"]["buffer"]
    assert buf["video_frames"] > 0 and buf["keyframes"] >= 1 and buf["audio_frames"] > 0, msg
    assert buf["dropped_broken"] == 0 and buf["dropped_no_keyframe"] == 0, msg
    assert page_stats["record"]["codec"].lower() == "h264", msg

    # Frames arrive, and every frame the page sent is received: the hub's count catches up with what Chrome
    # reported as sent (loopback, NACK/RTX repair: nothing may be lost or throttled; the pinned REMB keeps Chrome
    # from limiting itself for bandwidth). How many per second is a benchmark (scripts/bench ingest), not this.
    assert page_stats["record"]["limitation"] != "bandwidth", msg
    assert rec["frames"] > rec0["frames"] and det["frames"] > det0["frames"], msg
    assert all(frames(got[cid], role) >= n > 0 for role, n in sent.items()), msg

    # Keyframes keep coming, spaced by the hub's keyframe requests (ingest.keyframe_interval_s, 2 s: the ring
    # buffer needs a recent one to start a clip's pre-roll); the bound is the policy with a margin, not a speed.
    assert rec["keyframes"] >= 2, msg
    assert rec["max_keyframe_gap_s"] is not None and 0 < rec["max_keyframe_gap_s"] <= 2 * 2.0, msg

    # The detect track: small (≤ 320 wide), decoded by the hub. (Its codec and decoded size in the ingest stats
    # need the hub to record them for the detect/audio taps, see the module docstring.)
    print(f"\n720p: record {rec['frames'] - rec0['frames']} frames in {dt:.1f} s, max keyframe gap "
          f"{rec['max_keyframe_gap_s']} s, detect {det['frames'] - det0['frames']} frames at "
          f"{det.get('width')}x{det.get('height')}, audio {aud['frames'] - aud0['frames']} packets")
    assert page_stats["detect"]["width"] <= 320, msg
    assert det.get("codec") == "h264", msg
    assert det.get("width") and det["width"] <= 320 and det["height"] <= 180, msg
    assert after["stats"]["detect_frames"] > before["stats"]["detect_frames"], msg

    # Audio: Opus packets tapped and decoded.
    assert aud.get("codec") == "opus", msg
    assert aud["frames"] > aud0["frames"], msg
    assert after["stats"]["audio_chunks"] > before["stats"]["audio_chunks"], msg


async def test_vp8_forced_in_page(camera_browser, hub, api, scene):
    browser = await camera_browser(scene["360p"], scene["tone"], spki=hub.spki)
    context, page, cid = await stream_camera(browser, hub, api, init_scripts=(FORCE_VP8,))
    try:
        before, after, _ = await measure(api, hub, cid, seconds=2.0, keyframes=1)
        page_stats = await page.evaluate("window.pingwatch.stats()")
    finally:
        await context.close()
    msg = json.dumps({"hub": after, "page": page_stats}, indent=1)[:6000]
    rec, rec0 = track(after, "record"), track(before, "record")
    assert page_stats["record"]["codec"].lower() == "vp8", msg
    assert after["codec"] == "vp8" and rec["codec"] == "vp8", msg
    assert after["stats"]["stream"]["codec"] == "vp8", msg
    assert (rec["width"], rec["height"]) == (640, 360), msg
    assert rec["frames"] - rec0["frames"] >= 10 and rec["keyframes"] >= 2, msg
    assert after["stats"]["buffer"]["video_frames"] > 0 and after["stats"]["buffer"]["keyframes"] >= 1, msg
    assert track(after, "detect").get("codec") == "vp8" and after["stats"]["detect_frames"] > 0, msg


async def test_two_cameras_at_once(camera_browser, hub, api, scene):
    browser = await camera_browser(scene["360p"], scene["tone"], spki=hub.spki)
    ctx1, page1 = await open_page(browser, hub, code=await pairing_code(api, hub))
    ctx2, page2 = await open_page(browser, hub, code=await pairing_code(api, hub))
    try:
        await wait_state(page1, "streaming")
        await wait_state(page2, "streaming")
        ids = [await p.evaluate("window.pingwatch.cameraId") for p in (page1, page2)]
        assert ids[0] and ids[1] and ids[0] != ids[1]
        await wait_hub(api, hub, lambda cs: all(frames(cs.get(i)) > 0 for i in ids), "frames from both cameras")
        before = await cameras(api, hub)
        after = await wait_hub(api, hub, lambda cs: all(frames(cs[i]) - frames(before[i]) >= 10 for i in ids),
                               "10 more frames from both cameras")
        assert [await p.evaluate("window.pingwatch.state") for p in (page1, page2)] == ["streaming", "streaming"]
    finally:
        await ctx1.close()
        await ctx2.close()
    for i in ids:
        cam = after[i]
        assert cam["online"] and cam["codec"] == "h264", cam
        assert cam["stats"]["buffer"]["video_frames"] > 0 and cam["stats"]["detect_frames"] > 0, cam
        assert cam["stats"]["audio_chunks"] > 0, cam


async def test_bad_offers_get_json_4xx_and_streaming_goes_on(camera_browser, hub, api, scene):
    browser = await camera_browser(scene["360p"], scene["tone"], spki=hub.spki)
    context, page, cid = await stream_camera(browser, hub, api)
    try:
        # A second, paired camera's token: its offers are valid requests as far as auth goes.
        r = await api.post("/api/pair", json={"code": await pairing_code(api, hub), "name": "Spare"})
        assert r.status_code == 201, r.text
        spare = {"Authorization": f"Bearer {r.json()['token']}"}
        audio_only = await page.evaluate(CHROME_OFFER, {"video": False, "audio": True})
        assert "m=audio" in audio_only and "m=video" not in audio_only
        full = await page.evaluate(CHROME_OFFER, {"video": True, "audio": True})
        peer0 = (await cameras(api, hub))[cid]["ingest"]

        cases = [
            ("malformed SDP", spare, {"type": "offer", "sdp": "v=0\r\nthis is not SDP\r\n"}, 400),
            ("not SDP at all", spare, {"type": "offer", "sdp": "hello"}, 400),
            ("no sdp", spare, {"type": "offer"}, 400),
            ("audio-only offer", spare, {"type": "offer", "sdp": audio_only}, 400),
            ("huge body", spare, {"type": "offer", "sdp": full + "a=x-pad:" + "x" * 100_000 + "\r\n"}, 413),
            ("bad token", {"Authorization": "Bearer nope"}, {"type": "offer", "sdp": full}, 401),
        ]
        for what, headers, body, status in cases:
            r = await api.post("/api/camera/offer", headers=headers, json=body)
            assert r.status_code == status, f"{what}: {r.status_code} {r.text[:300]}"
            assert r.headers["content-type"].startswith("application/json"), f"{what}: {r.headers}"
            err = r.json().get("error")
            assert isinstance(err, str) and err, f"{what}: {r.text[:300]}"
        r = await api.post("/api/camera/offer", headers={**spare, "Content-Type": "application/json"},
                           content=b"{not json")
        assert r.status_code == 400 and r.json()["error"], r.text

        # The streaming camera did not notice: same peer, still connected, frames still arriving.
        before = (await cameras(api, hub))[cid]
        after = (await wait_hub(api, hub, lambda cs: frames(cs[cid]) - frames(before) >= 15,
                                "frames after the bad offers"))[cid]
        assert await page.evaluate("window.pingwatch.state") == "streaming"
        assert await page.evaluate("window.__pwStates.filter((s) => s === 'streaming').length") == 1
        assert after["ingest"]["state"] == "connected" and after["online"], after
        assert track(after, "record")["frames"] > track({"ingest": peer0}, "record")["frames"]
        health = await api.get("/api/health")
        assert health.status_code == 200 and health.json()["status"] == "ok", health.text
    finally:
        await context.close()


async def test_bad_offer_with_the_streaming_cameras_own_token_leaves_it_streaming(camera_browser, hub, api, scene):
    browser = await camera_browser(scene["360p"], scene["tone"], spki=hub.spki)
    context, page, cid = await stream_camera(browser, hub, api)
    try:
        token = json.loads(await page.evaluate("localStorage.getItem('pingwatch.camera')"))["token"]
        r = await api.post("/api/camera/offer", headers={"Authorization": f"Bearer {token}"},
                           json={"type": "offer", "sdp": "v=0\r\nthis is not SDP\r\n"})
        assert r.status_code == 400 and r.json()["error"], r.text
        before = (await cameras(api, hub))[cid]
        after = (await wait_hub(api, hub, lambda cs: frames(cs[cid]) - frames(before) >= 10,
                                "frames after the bad offer"))[cid]
        assert after["ingest"] is not None and after["ingest"]["state"] == "connected", after
    finally:
        await context.close()


async def test_page_reconnects_after_hub_restart(camera_browser, hub, api, scene):
    browser = await camera_browser(scene["360p"], scene["tone"], spki=hub.spki)
    context, page, cid = await stream_camera(browser, hub, api)
    try:
        await asyncio.to_thread(hub.stop)
        await asyncio.to_thread(hub.start)
        # The page notices the drop, goes 'reconnecting', and streams to the new hub process by itself.
        await wait_state(page, "reconnecting")
        await wait_state(page, "streaming")  # after 'reconnecting': the promise starts listening after it
        cams = await wait_hub(api, hub, lambda cs: frames(cs.get(cid)) >= 10 and cs[cid]["online"],
                              "frames at the restarted hub")
        assert cams[cid]["codec"] == "h264" and cams[cid]["stats"]["buffer"]["video_frames"] > 0, cams[cid]
        stats = await page.evaluate("window.pingwatch.stats()")
        assert stats["reconnects"] >= 1, stats
    finally:
        await context.close()
