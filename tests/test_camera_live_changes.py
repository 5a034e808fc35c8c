"""Changes to a camera while it streams: a real Chromium phone page (fake camera filming a moving bar) and the
real hub process.

- Revoked while streaming: the hub drops the peer at once, the page learns it was removed (its reconnect is
  refused) and forgets its token, and nothing of the camera is left on the hub (no peer, no sockets).
- Settings changed while streaming reach the running pipeline: motion switched on starts an event; a mask over
  the whole picture ends motion and the event; taking the mask away starts the next event.

Every wait is on an event: the hub's bus (the web UI's WebSocket, read with the admin token on the loopback
port), the page's state events, or the admin camera list polled until a condition holds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from tests.hubproc import HubProcess
from tests.test_browser_ingest import admin, stream_camera, wait_hub, wait_state, write_scene_y4m, write_tone_wav
from tests.test_hub_security import udp_sockets, wait_until

pytestmark = pytest.mark.browser

WHOLE_PICTURE = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    # Motion off in the config: a camera starts without it, so the test decides when motion may start an event.
    h = HubProcess.create(tmp_path_factory.mktemp("live_changes"), motion={"enabled": False},
                          events={"pre_roll_s": 1, "post_roll_s": 1, "cooldown_s": 1})
    try:
        h.start()
        yield h
    finally:
        h.stop()


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("live_changes_media")
    # A bright bar crossing the picture every 2 s (the fake camera loops the file): motion all the time.
    return {"video": write_scene_y4m(d / "bar.y4m", 640, 360), "audio": write_tone_wav(d / "tone.wav")}


class BusWatch:
    """The hub's bus as the web UI sees it: every message kept, waits scan from a mark."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    def mark(self) -> int:
        return len(self.seen)

    async def until(self, pred: Callable[[dict[str, Any]], bool], what: str, since: int = 0,
                    timeout: float = 30.0) -> dict[str, Any]:
        i = since
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            while i < len(self.seen):
                if pred(self.seen[i]):
                    return self.seen[i]
                i += 1
            left = deadline - loop.time()
            if left <= 0:
                pytest.fail(f"no {what} on the bus within {timeout}s; seen: {json.dumps(self.seen[since:])[-3000:]}")
            try:
                msg = await asyncio.wait_for(self.ws.receive(), left)
            except TimeoutError:
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                pytest.fail(f"the hub's WebSocket closed ({msg.type}) while waiting for {what}")
            self.seen.append(json.loads(msg.data))


def topic(name: str, cid: str, **data: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["topic"] == name and m["data"].get("camera_id") == cid and \
        all(m["data"].get(k) == v for k, v in data.items())


async def open_bus(hub: HubProcess, http: aiohttp.ClientSession) -> BusWatch:
    ws = await http.ws_connect(f"{hub.http}/api/ui/ws", headers=admin(hub))
    bus = BusWatch(ws)
    await bus.until(lambda m: m["topic"] == "ui.hello", "hello")
    return bus


def detect_frames(cams: dict[str, Any], cid: str) -> int:
    return ((cams.get(cid) or {}).get("stats") or {}).get("detect_frames", 0)


async def test_a_camera_revoked_while_streaming_is_cut_off_and_told(camera_browser, hub, api, media) -> None:
    base = udp_sockets(hub.proc.pid)
    browser = await camera_browser(media["video"], media["audio"], spki=hub.spki)
    async with aiohttp.ClientSession() as http:
        bus = await open_bus(hub, http)
        context, page, cid = await stream_camera(browser, hub, api)
        try:
            token = json.loads(await page.evaluate("localStorage.getItem('pingwatch.camera')"))["token"]
            assert udp_sockets(hub.proc.pid) > base  # the peer's ICE socket
            mark = bus.mark()
            r = await api.post(f"/api/admin/cameras/{cid}/revoke", headers=admin(hub))
            assert r.json() == {"camera_id": cid, "revoked": True}
            await bus.until(topic("camera.removed", cid), "camera.removed", mark)
            # The page saw the hub close the connection, tried again, was refused, and forgot its token.
            await wait_state(page, "unpaired")
            assert await page.evaluate("localStorage.getItem('pingwatch.camera')") is None
            states = await page.evaluate("window.__pwStates")
            assert states[states.index("streaming"):][-1] == "unpaired", states
            # Nothing of the camera is left on the hub: no peer (so no socket), no entry in the list.
            assert await asyncio.to_thread(wait_until, lambda: udp_sockets(hub.proc.pid) == base), \
                (udp_sockets(hub.proc.pid), base)
            listed = (await api.get("/api/admin/cameras", headers=admin(hub))).json()["cameras"]
            assert cid not in [c["id"] for c in listed]
            again = await api.post("/api/camera/offer", headers={"Authorization": f"Bearer {token}"},
                                   json={"type": "offer", "sdp": "v=0"})
            assert again.status_code == 401, again.text
        finally:
            await context.close()
            await bus.ws.close()


async def test_settings_changed_while_streaming_reach_the_pipeline(camera_browser, hub, api, media) -> None:
    browser = await camera_browser(media["video"], media["audio"], spki=hub.spki)
    async with aiohttp.ClientSession() as http:
        bus = await open_bus(hub, http)
        context, _page, cid = await stream_camera(browser, hub, api)

        async def change(settings: dict[str, Any]) -> int:
            mark = bus.mark()
            r = await api.patch(f"/api/ui/cameras/{cid}", json={"settings": settings}, headers=admin(hub))
            assert r.status_code == 200, r.text
            return mark

        try:
            # Motion off (the config's default): the bar is seen moving, and no event starts.
            await bus.until(topic("motion", cid, active=True), "motion seen by the detector")
            seen_at = detect_frames(await _cameras(api, hub), cid)
            cams = await wait_hub(api, hub, lambda cs: detect_frames(cs, cid) >= seen_at + 15,
                                  "15 more detect frames of the moving bar")
            assert cams[cid]["stats"]["engine"] == "idle" and not cams[cid]["stats"]["recording"], cams[cid]
            assert not [m for m in bus.seen if topic("event.started", cid)(m)]

            # Motion on: the moving bar starts an event on the running camera.
            mark = await change({"motion_enabled": True})
            started = await bus.until(topic("event.started", cid), "an event once motion is on", mark)

            # A mask over the whole picture: motion ends, and so does the event (after its post-roll).
            mark = await change({"masks": [WHOLE_PICTURE]})
            await bus.until(topic("motion", cid, active=False), "motion ending under the mask", mark)
            ended = await bus.until(topic("event.ended", cid), "the event ending under the mask", mark)
            assert ended["data"]["event_id"] == started["data"]["event_id"]
            after = detect_frames(await _cameras(api, hub), cid)
            cams = await wait_hub(api, hub, lambda cs: detect_frames(cs, cid) >= after + 15,
                                  "15 more detect frames under the mask")
            assert not cams[cid]["stats"]["recording"], cams[cid]
            assert not [m for m in bus.seen[mark:] if topic("motion", cid, active=True)(m)]

            # The mask taken away: the bar starts the next event.
            mark = await change({"masks": []})
            nxt = await bus.until(topic("event.started", cid), "an event once the mask is gone", mark)
            assert nxt["data"]["event_id"] != started["data"]["event_id"]
        finally:
            await context.close()
            await bus.ws.close()


async def _cameras(api: httpx.AsyncClient, hub: HubProcess) -> dict[str, Any]:
    r = await api.get("/api/admin/cameras", headers=admin(hub))
    assert r.status_code == 200, r.text
    return {c["id"]: c for c in r.json()["cameras"]}
