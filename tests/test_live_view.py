"""The dashboard's live view: a WebRTC relay of the camera's encoded video, end to end against the real hub.

A real headless Chromium streams a generated 640x360 scene as a paired phone camera; a second page, logged into
the web UI, opens the camera's live view. The page must play the relayed stream in its <video> (full size,
frames advancing), and the hub must have forwarded the camera's own encoded frames: packets handed to aiortc
as ``av.Packet`` (packed, never encoded), no encoder opened, the record track never decoded.

Waiting is on events (the video element's, the page's camera state) or on the hub's stats polled with a
deadline. The UI's CSP forbids eval, so waits in the UI page are promises passed to ``page.evaluate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from pathlib import Path

import httpx
import pytest

from hub.web.errors import STATUS_OF_KIND
from tests.hubproc import HubProcess
from tests.test_browser_ingest import admin, open_page, pairing_code, track, wait_hub, wait_state

SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"

# Resolves when the live <video> shows the 640-wide stream and at least `frames` new frames were presented
# (requestVideoFrameCallback) with currentTime advancing; rejects after `ms`.
LIVE_PLAYING_JS = """({frames, ms}) => new Promise((resolve, reject) => {
  const v = document.querySelector('#live-video');
  const frame = document.querySelector('#live-frame');
  const t0 = v.currentTime;
  let count = 0;
  const timer = setTimeout(() => reject(new Error(
    `live video: readyState ${v.readyState}, ${v.videoWidth}x${v.videoHeight}, ${count} frames, ` +
    `currentTime ${v.currentTime}, mode ${frame && frame.dataset.mode}`)), ms);
  const tick = (_now, meta) => {
    count += 1;
    if (v.readyState >= 2 && v.videoWidth === 640 && count >= frames && v.currentTime > t0 &&
        frame.dataset.mode === 'webrtc') {
      clearTimeout(timer);
      resolve({readyState: v.readyState, width: v.videoWidth, height: v.videoHeight, frames: count,
               currentTime: v.currentTime, presented: meta.presentedFrames, mode: frame.dataset.mode});
    } else {
      v.requestVideoFrameCallback(tick);
    }
  };
  v.requestVideoFrameCallback(tick);
})"""


# Resolves with the live frame's mode once it becomes `want`.
MODE_CHANGES_JS = """(want) => new Promise((resolve) => {
  const frame = document.querySelector('#live-frame');
  if (frame.dataset.mode === want) { resolve(want); return; }
  new MutationObserver((_m, obs) => {
    if (frame.dataset.mode === want) { obs.disconnect(); resolve(want); }
  }).observe(frame, {attributes: true, attributeFilter: ['data-mode']});
})"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    h = HubProcess.create(tmp_path_factory.mktemp("live_hub"))
    try:
        h.start()  # inside the try: a start that times out still stops the process
        yield h
    finally:
        h.stop()


async def viewers(api: httpx.AsyncClient, hub: HubProcess, cid: str) -> list[dict]:
    r = await api.get(f"/api/ui/cameras/{cid}/live", headers=admin(hub))
    assert r.status_code == 200, r.text
    return r.json()["viewers"]


async def wait_viewers(api: httpx.AsyncClient, hub: HubProcess, cid: str, pred, what: str,
                       timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        vs = await viewers(api, hub, cid)
        if pred(vs):
            return vs
        if time.monotonic() > deadline:
            pytest.fail(f"hub: no {what} within {timeout}s; viewers: {json.dumps(vs, indent=1)}")
        await asyncio.sleep(0.25)  # poll interval of a bounded wait


async def test_live_api_needs_session_csrf_and_a_camera_with_video(hub, api):
    offer = {"type": "offer", "sdp": "v=0\r\n"}
    # a camera that exists but never streamed
    r = await api.post("/api/pair", json={"code": await pairing_code(api, hub), "name": "Quiet"})
    assert r.status_code == 201, r.text
    quiet = r.json()["camera_id"]

    r = await api.post(f"/api/ui/cameras/{quiet}/live", json=offer)
    assert r.status_code == 401, r.text
    r = await api.get(f"/api/ui/cameras/{quiet}/live")
    assert r.status_code == 401, r.text

    r = await api.post("/api/ui/login", json={"secret": hub.admin_secret})
    assert r.status_code == 200, r.text
    csrf = r.json()["csrf"]
    try:
        r = await api.post(f"/api/ui/cameras/{quiet}/live", json=offer)
        assert r.status_code == 403 and "CSRF" in r.json()["error"], r.text
        r = await api.post(f"/api/ui/cameras/{quiet}/live", json=offer, headers={"X-CSRF-Token": "wrong"})
        assert r.status_code == 403, r.text
        r = await api.post(f"/api/ui/cameras/{quiet}/live", json=offer,
                           headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"})
        assert r.status_code == 403, r.text
        r = await api.post("/api/ui/cameras/no-such-camera/live", json=offer, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 404 and r.json()["error"], r.text
        r = await api.post(f"/api/ui/cameras/{quiet}/live", json=offer, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 409 and "no video" in r.json()["error"], r.text
        r = await api.delete(f"/api/ui/cameras/{quiet}/live/nope", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 404, r.text
        r = await api.get(f"/api/ui/cameras/{quiet}/live")
        assert r.status_code == 403, r.text  # a read needs the page's session key too (issue 10, item 1)
        r = await api.get(f"/api/ui/cameras/{quiet}/live", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200 and r.json()["viewers"] == [], r.text
    finally:
        await api.post("/api/ui/logout", headers={"X-CSRF-Token": csrf})
        api.cookies.clear()


@pytest.mark.browser
async def test_live_view_relays_the_cameras_encoded_video(camera_browser, hub, api, smoke_scene):
    browser = await camera_browser(smoke_scene.video, smoke_scene.audio, spki=hub.spki)
    cam_ctx, cam_page = await open_page(browser, hub, code=await pairing_code(api, hub))
    view_ctx = await browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        await wait_state(cam_page, "streaming")
        cid = await cam_page.evaluate("window.pingwatch.cameraId")
        await wait_hub(api, hub, lambda cs: track(cs.get(cid), "record").get("width") == 640
                       and cs[cid]["stats"]["buffer"]["keyframes"] >= 1, "640-wide record keyframes", timeout=20)

        page = await view_ctx.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
        await page.goto(f"{hub.https}/")
        await page.fill("#secret", hub.admin_secret)
        await page.click("button[type=submit]")
        await page.wait_for_selector(f"article.camera[data-camera-id='{cid}']")
        await page.click(f"article.camera[data-camera-id='{cid}'] a:has-text('Live')")
        await page.wait_for_selector("#live-video")
        played = await asyncio.wait_for(page.evaluate(LIVE_PLAYING_JS, {"frames": 15, "ms": 20_000}), 25)
        assert played["readyState"] >= 2 and played["width"] == 640 and played["height"] == 360, played
        assert await page.locator("#live-video").evaluate("v => v.muted && v.autoplay && v.playsInline")
        assert "Live" == (await page.inner_text("#live-mode")).strip()

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / "live-view.png"))

        # The hub relayed the camera's own encoded frames: packed as av.Packet, nothing encoded or decoded.
        [v] = await wait_viewers(api, hub, cid, lambda vs: len(vs) == 1 and vs[0]["rtp_packets_sent"], "RTP sent")
        msg = json.dumps(v, indent=1)
        assert v["state"] == "connected" and v["codec"] == "h264", msg
        assert v["frames_sent"] >= 15 and v["keyframes_sent"] >= 1, msg
        assert v["packets_relayed"] == v["frames_sent"] and v["frames_encoded"] == 0, msg
        assert v["encoder_opened"] is False, msg
        assert v["rtp_packets_sent"] >= v["frames_sent"] and v["bytes_sent"] > 0, msg
        assert v["queued"] <= 5 and v["overflows"] == 0, msg
        cams = await wait_hub(api, hub, lambda cs: True, "cameras")
        rec = track(cams[cid], "record")
        assert cams[cid]["ingest"]["decode_record"] is False and rec["decoded_delivered"] == 0, rec
        assert not problems, problems

        # Leaving the view closes the relay.
        await page.click("nav >> text=Cameras")
        await wait_viewers(api, hub, cid, lambda vs: vs == [], "relay closed after leaving")

        # Shutdown with a viewer watching (this test runs last in the module): the hub closes the relay and
        # exits cleanly; the page falls back to snapshots.
        await page.goto(f"{hub.https}/#/live/{cid}")
        await asyncio.wait_for(page.evaluate(LIVE_PLAYING_JS, {"frames": 5, "ms": 15_000}), 20)
        mark = len(hub.lines)
        assert await asyncio.to_thread(hub.stop) == 0
        closed = [ln for ln in hub.lines[mark:] if "live view closed" in ln]
        assert len(closed) == 1 and "hub shutting down" in closed[0], hub.lines[mark:]
        mode = await asyncio.wait_for(page.evaluate(MODE_CHANGES_JS, "snapshot"), 20)
        assert mode == "snapshot"
    finally:
        await view_ctx.close()
        await cam_ctx.close()


# -- the relay itself, in process -------------------------------------------------------------------------


class PhonePeer:
    """The one stand-in left: the camera's WebRTC peer, of which the relay uses only ``request_keyframe`` (a
    real CameraPeer sends a PLI then, covered end to end by test_ingest_webrtc and the browser test above)."""

    def __init__(self) -> None:
        self.keyframe_requests = 0
        self.asked = asyncio.Event()

    async def request_keyframe(self) -> bool:
        self.keyframe_requests += 1
        self.asked.set()
        return True


@contextlib.asynccontextmanager
async def real_cameras(root: Path, cid: str = "cam", window_s: float = 15.0):
    """The hub's own camera manager with one camera's real CameraPipeline (its RingBuffer, its recorder; the
    camera disarmed so nothing is recorded) and the phone peer stand-in."""
    from hub.bus import Bus
    from hub.cameras import CameraManager
    from hub.config import HubConfig
    from hub.pipeline import PipelineContext
    from hub.store import Store

    store = Store(root / "hub.db")
    config = HubConfig(storage={"data_dir": str(root)}, ingest={"preroll_window_s": window_s})
    cameras = CameraManager(PipelineContext(config=config, store=store, bus=Bus(), clips_dir=root / "clips",
                                            scratch_dir=root, is_armed=lambda _cid: False,
                                            on_disk_full=lambda: None))
    store.ensure_static_camera(cid, cid, "file")
    pipe = cameras.pipeline(cid)
    peer = PhonePeer()
    cameras.peers[cid] = peer  # type: ignore[assignment]
    try:
        yield cameras, pipe, peer
    finally:
        await pipe.close()
        store.close()


async def test_relay_queue_is_bounded_and_resumes_at_a_keyframe(tmp_path):
    import av

    from hub import live
    from tests.test_buffer import stream

    async with real_cameras(tmp_path) as (cameras, pipe, peer):
        await _relay_queue_is_bounded(live, av, stream, cameras, pipe, peer)


async def _relay_queue_is_bounded(live, av, stream, cameras, pipe, peer) -> None:
    frames = [f for f in stream(60.0, gop=37, key_size=2000, p_size=500, audio=True)]
    buf = pipe.buffer
    for f in frames[:200]:  # some history, through the pipeline as a camera delivers it
        pipe.on_frame(f)
    relays = live.LiveRelays(cameras)
    relay = live.LiveRelay(relays, "cam", pipe, "h264", "s")
    relay._start_relaying()
    queued = [f for f, _ in relay._queue]
    assert queued and queued[0].keyframe and all(f.kind == "video" for f in queued)
    assert relay.backlog_frames == len(queued) <= 37
    newest_key = max(f.t for f in frames[:200] if f.kind == "video" and f.keyframe)
    assert queued[0].t == newest_key

    # A viewer that reads nothing: the queue stays bounded; an overflow drops it and it restarts on a keyframe.
    waiting = False
    for f in frames[200:]:
        overflows = relay.overflows
        pipe.on_frame(f)
        assert len(relay._queue) <= live.QUEUE_MAX_FRAMES and relay._queue_bytes <= live.QUEUE_MAX_BYTES
        if relay.overflows > overflows and not f.keyframe:
            assert not relay._queue  # nothing to send until the next keyframe
            waiting = True
        elif waiting and f.kind == "video" and f.keyframe:
            assert len(relay._queue) == 1 and relay._queue[0][0] is f
            break
    assert waiting and relay.overflows >= 1 and relay.dropped > 0
    await asyncio.wait_for(peer.asked.wait(), 5)  # the keyframe request runs as a task
    assert peer.keyframe_requests >= 1

    # What aiortc gets: av.Packet with the frame's bytes, 1/90000 time base, strictly increasing pts.
    n = len(relay._queue)
    pkts = [await relay.track.recv() for _ in range(n)]
    assert all(isinstance(p, av.Packet) for p in pkts) and relay.track.packets == n
    assert all(p.time_base == live.VIDEO_TIME_BASE for p in pkts)
    assert all(b.pts > a.pts for a, b in itertools.pairwise(pkts))
    assert bytes(pkts[0]) == bytes(2000) and relay.frames_sent == n
    await relay.close("test")
    assert buf._listeners == () and relay.closed
    assert pipe.recorder.active is False  # disarmed: the frames never made an event


async def test_in_process_viewer_plays_the_relay_and_close_all_ends_it(tmp_path):
    async with real_cameras(tmp_path) as (cameras, pipe, peer):
        await _viewer_plays_the_relay(cameras, pipe, peer)


async def _viewer_plays_the_relay(cameras, pipe, peer) -> None:
    from aiortc import RTCPeerConnection, RTCSessionDescription

    from hub import live
    from hub.media import h264
    from hub.media.frames import VIDEO_TIME_BASE, EncodedFrame
    from tests.test_clips import encode_video

    encoded = encode_video("h264", n=45, w=320, h=180)  # 3 s at 15 fps, a keyframe every GOP
    t0 = time.time()
    frames = [EncodedFrame("video", "h264", h264.join_annexb(h264.split_annexb(d)), pts, VIDEO_TIME_BASE,
                           t0 + pts / 90000, key) for d, pts, key in encoded]
    buf = pipe.buffer
    for f in frames[:8]:
        pipe.on_frame(f)
    relays = live.LiveRelays(cameras)

    viewer = RTCPeerConnection()
    viewer.addTransceiver("video", direction="recvonly")
    await viewer.setLocalDescription(await viewer.createOffer())
    relay, answer = await relays.open("cam", {"type": "offer", "sdp": viewer.localDescription.sdp}, "s")
    assert answer["type"] == "answer" and "H264/90000" in answer["sdp"] and relay.backlog_frames == 8
    await viewer.setRemoteDescription(RTCSessionDescription(**answer))
    track = next(t.receiver.track for t in viewer.getTransceivers())

    async def feed() -> None:
        for f in frames[8:]:
            pipe.on_frame(f)
            # The camera's pace (15 fps), not a synchronisation: the relay must keep up with a live source, and
            # the viewer's frames are awaited below, on its own track.
            await asyncio.sleep(1 / 15)

    feeder = asyncio.create_task(feed())
    try:
        got = await asyncio.wait_for(track.recv(), 10)
        assert (got.width, got.height) == (320, 180)
        for _ in range(10):
            await asyncio.wait_for(track.recv(), 5)
        stats = await relay.stats()
        assert stats["state"] == "connected" and stats["frames_sent"] >= 11, stats
        assert stats["encoder_opened"] is False and stats["frames_encoded"] == 0, stats
        assert peer.keyframe_requests >= 1  # asked when the viewer joined
    finally:
        feeder.cancel()
        await relays.close_all()
        await viewer.close()
    assert relays.relays == {} and relay.closed and buf._listeners == ()
    with pytest.raises(live.LiveError) as err:
        await relays.open("cam", {"type": "offer", "sdp": "v=0"}, "s")
    assert STATUS_OF_KIND[err.value.kind] == 503


async def test_offers_the_relay_cannot_serve_are_refused(tmp_path):
    async with real_cameras(tmp_path) as (cameras, pipe, _):
        await _offers_refused(cameras, pipe)


async def test_an_h265_camera_gets_pictures_with_the_reason_not_no_video(tmp_path):
    """H.265 is recorded, but not relayed live: the refusal says so (415, what to change), not "no video yet"."""
    from aiortc import RTCPeerConnection

    from hub import live
    from hub.media.frames import VIDEO_TIME_BASE, EncodedFrame

    async with real_cameras(tmp_path) as (cameras, pipe, _):
        # An IDR access unit (VPS, SPS, PPS, IDR_W_RADL NAL types 32/33/34/19): the buffer's H.265 keyframe.
        au = b"".join(b"\x00\x00\x00\x01" + bytes([t << 1, 1]) + bytes(20) for t in (32, 33, 34, 19))
        pipe.on_frame(EncodedFrame("video", "hevc", au, 0, VIDEO_TIME_BASE, 1.0, True))
        relays = live.LiveRelays(cameras)
        pc = RTCPeerConnection()
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        await pc.close()
        with pytest.raises(live.LiveError) as err:
            await relays.open("cam", {"type": "offer", "sdp": pc.localDescription.sdp}, "s")
        assert STATUS_OF_KIND[err.value.kind] == 415
        assert "HEVC" in str(err.value) and "H.264" in (err.value.hint or "")
        assert relays.relays == {}
        await relays.close_all()


async def _offers_refused(cameras, pipe) -> None:
    from aiortc import RTCPeerConnection, RTCRtpReceiver

    from hub import live
    from hub.media.frames import VIDEO_TIME_BASE, EncodedFrame

    buf = pipe.buffer
    pipe.on_frame(EncodedFrame("video", "h264", b"\x00\x00\x00\x01\x65" + bytes(50), 0, VIDEO_TIME_BASE, 1.0,
                               True))
    relays = live.LiveRelays(cameras)

    async def offer(kind: str, mimes: tuple[str, ...] | None = None) -> str:
        pc = RTCPeerConnection()
        tr = pc.addTransceiver(kind, direction="recvonly")
        if mimes:
            tr.setCodecPreferences([c for c in RTCRtpReceiver.getCapabilities(kind).codecs
                                    if c.mimeType.lower() in mimes])
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    cases = [(await offer("video", ("video/vp8",)), 415), (await offer("audio"), 400),
             ("not sdp", 400), ("", 400), ("v=0\r\n" + "a=x\r\n" * 10_000, 413)]
    for sdp, status in cases:
        with pytest.raises(live.LiveError) as err:
            await relays.open("cam", {"type": "offer", "sdp": sdp}, "s")
        assert STATUS_OF_KIND[err.value.kind] == status, (str(err.value), sdp[:200])
    with pytest.raises(live.LiveError) as err:
        await relays.open("cam", {"type": "answer", "sdp": await offer("video")}, "s")
    assert STATUS_OF_KIND[err.value.kind] == 400
    assert relays.relays == {} and buf._listeners == ()
    await relays.close_all()
