"""The local web UI against the real hub process: log-in, CSRF, media serving, settings, and a real browser.

Events and a small real H.264 MP4 are put into the hub's data directory before it starts, the way the clip
writer leaves them (relative paths under clips/).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import ssl
import time
from pathlib import Path

import aiohttp
import av
import cv2
import httpx
import numpy as np
import pytest

from hub.datadir import DataDir
from hub.store import Store
from tests.hubproc import HubProcess

CAM = "frontdoor"
DAY = "2024-05-01"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
OLD_EVENTS = 31
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}


def make_clip(path: Path, frames: int = 60, fps: int = 20, size: tuple[int, int] = (320, 180)) -> None:
    w, h = size
    with av.open(str(path), "w", container_options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": str(fps)}
        for i in range(frames):
            img = np.full((h, w, 3), 40, np.uint8)
            x = 10 + i * (w - 60) // frames
            img[60:110, x:x + 40] = (250, 200, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def make_jpeg(path: Path, size: tuple[int, int], color: tuple[int, int, int]) -> None:
    w, h = size
    img = np.full((h, w, 3), color, np.uint8)
    cv2.rectangle(img, (w // 3, h // 3), (w // 2, h // 2), (255, 255, 255), -1)
    path.write_bytes(cv2.imencode(".jpg", img)[1].tobytes())


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    h = HubProcess.create(tmp_path_factory.mktemp("webui"))
    data = DataDir(h.data_dir).ensure()
    day = data.clips_dir / CAM / DAY
    day.mkdir(parents=True)
    for name in ("ev-play", "ev-del"):
        make_clip(day / f"{name}.mp4")
        make_jpeg(day / f"{name}.jpg", (640, 360), (60, 90, 120))
        make_jpeg(day / f"{name}.thumb.jpg", (160, 90), (60, 90, 120))
    outside = h.root / "outside.mp4"
    shutil.copy(day / "ev-play.mp4", outside)
    (day / "link.mp4").symlink_to(outside)
    store = Store(data.db_path)
    store.ensure_static_camera(CAM, "Front door", "file")
    store.ensure_static_camera("garden", "Garden", "file")
    now = time.time()

    def event(eid, start, triggers, clip=True, **extra):
        row = {"id": eid, "camera_id": CAM, "triggers": triggers, "status": "done", "start": start,
               "end": start + 3.0, "clip_duration_s": 3.0, "peak_motion": 0.2}
        if clip:
            rel = f"{CAM}/{DAY}/{eid}"
            row |= {"clip_path": f"{rel}.mp4", "snapshot_path": f"{rel}.jpg", "thumb_path": f"{rel}.thumb.jpg",
                    "clip_size": (data.clips_dir / f"{rel}.mp4").stat().st_size, "clip_codec": "h264"}
        store.insert_event(row | extra)

    event("ev-play", now - 600, ["motion"])
    event("ev-del", now - 1200, ["motion", "sound"])
    event("ev-sound", now - 1800, ["sound"], clip=False)
    event("ev-evil", now - 2400, ["motion"], clip=False, clip_path="../secrets.json", snapshot_path="/etc/passwd")
    event("ev-link", now - 3000, ["motion"], clip=False, clip_path=f"{CAM}/{DAY}/link.mp4")
    # More than one page of the events view (30), older than the rows above: "Load older events" has a page to
    # load. Each lasted 8 s (first activity to the end, post-roll included); its clip is 13 s (5 s pre-roll).
    for i in range(OLD_EVENTS):
        store.insert_event({"id": f"ev-old-{i:02d}", "camera_id": CAM, "triggers": ["motion"], "status": "done",
                            "start": now - 4000 - 60 * i, "end": now - 4000 - 60 * i + 8.0,
                            "clip_duration_s": 13.0, "peak_motion": 0.1})
    store.close()
    h.start()
    yield h
    h.stop()


def _ctx(hub: HubProcess) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(hub.cert_path))


def _login(hub: HubProcess, **kw) -> tuple[httpx.Client, str]:
    c = httpx.Client(base_url=hub.https, verify=_ctx(hub), **kw)
    r = c.post("/api/ui/login", json={"secret": hub.admin_secret})
    assert r.status_code == 200, r.text
    return c, r.json()["csrf"]


@pytest.fixture(scope="module")
def session(hub):
    c, csrf = _login(hub)
    c.headers["X-CSRF-Token"] = csrf
    yield c
    c.close()


def admin(hub):
    return {"Authorization": f"Bearer {hub.admin_secret}"}


# -- log-in -------------------------------------------------------------------------------------------


def test_session_cookie_is_hardened(hub):
    with httpx.Client(base_url=hub.https, verify=_ctx(hub)) as c:
        assert c.get("/api/ui/session").status_code == 401
        r = c.post("/api/ui/login", json={"secret": hub.admin_secret})
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        cookie = r.headers["set-cookie"]
        flags = {p.strip().split("=")[0].lower() for p in cookie.split(";")}
        assert {"httponly", "secure", "samesite", "max-age", "path"} <= flags, cookie
        assert "SameSite=Strict" in cookie and "Path=/" in cookie
        key = r.json()["csrf"]
        me = c.get("/api/ui/session", headers={"X-CSRF-Token": key})
        assert me.status_code == 200 and "csrf" not in me.json()  # the key is handed out at log-in only
        # log out ends the session for good, even with the old cookie and key replayed
        sid = c.cookies["pw_session"]
        out = c.post("/api/ui/logout", headers={"X-CSRF-Token": key})
        assert out.status_code == 200 and out.headers["clear-site-data"] == '"cache"'
        replay = httpx.get(f"{hub.https}/api/ui/session", verify=_ctx(hub), cookies={"pw_session": sid},
                           headers={"X-CSRF-Token": key})
        assert replay.status_code == 401 and "log in" in replay.json()["hint"]
    # plain HTTP (loopback only) makes no sessions at all: it serves the CLI's bearer API
    r = httpx.post(f"{hub.http}/api/ui/login", json={"secret": hub.admin_secret})
    assert r.status_code == 404 and "set-cookie" not in r.headers and "CLI" in r.json()["error"]


def test_wrong_secrets_are_slowed_then_locked_out(hub):
    # A client of its own (127.0.0.2 reaches the hub on 127.0.0.1 too), so the lock does not hit other tests.
    transport = httpx.HTTPTransport(verify=_ctx(hub), local_address="127.0.0.2")
    with httpx.Client(base_url=hub.https, transport=transport) as c:
        codes = [c.post("/api/ui/login", json={"secret": f"guess{i}"}).status_code for i in range(5)]
        assert codes == [401] * 5
        locked = c.post("/api/ui/login", json={"secret": hub.admin_secret})  # even the right one waits
        assert locked.status_code == 429
        assert int(locked.headers["Retry-After"]) >= 1 and "try again" in locked.json()["error"]
    # other clients are not affected
    _login(hub)[0].close()


def test_csrf_and_origin_are_enforced(hub, session):
    csrf = session.headers["X-CSRF-Token"]
    no_token = session.post("/api/ui/arm", json={"armed": True}, headers={"X-CSRF-Token": ""})
    assert no_token.status_code == 403 and "CSRF" in no_token.json()["error"]
    wrong = session.post("/api/ui/arm", json={"armed": True}, headers={"X-CSRF-Token": "x" + csrf})
    assert wrong.status_code == 403
    foreign = session.post("/api/ui/arm", json={"armed": True}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "cross-site" in foreign.json()["error"]
    delete = session.delete("/api/ui/events/ev-play", headers={"X-CSRF-Token": ""})
    assert delete.status_code == 403
    ok = session.post("/api/ui/arm", json={"armed": True}, headers={"Origin": hub.https})
    assert ok.status_code == 200 and ok.json()["hub_armed"] is True
    login = httpx.post(f"{hub.https}/api/ui/login", json={"secret": hub.admin_secret}, verify=_ctx(hub),
                       headers={"Origin": "https://evil.example"})
    assert login.status_code == 403
    # the CLI's bearer token carries no ambient authority: no CSRF token needed
    bearer = httpx.post(f"{hub.https}/api/ui/arm", json={"armed": True}, headers=admin(hub), verify=_ctx(hub))
    assert bearer.status_code == 200


async def test_websocket_refuses_foreign_origins_and_forwards_the_bus(hub, session):
    cookies = {"pw_session": session.cookies["pw_session"]}
    protocols = ("pingwatch", f"key.{session.headers['X-CSRF-Token']}")  # how the page sends its session key
    url = f"{hub.https.replace('https', 'wss')}/api/ui/ws"
    async with aiohttp.ClientSession(cookies=cookies) as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await http.ws_connect(url, ssl=_ctx(hub), origin="https://evil.example", protocols=protocols)
        assert exc.value.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:  # the cookie alone
            await http.ws_connect(url, ssl=_ctx(hub), origin=hub.https, protocols=("pingwatch",))
        assert exc.value.status == 403
        async with http.ws_connect(url, ssl=_ctx(hub), origin=hub.https, protocols=protocols) as ws:
            assert ws.protocol == "pingwatch"
            hello = await asyncio.wait_for(ws.receive_json(), 10)
            assert hello["topic"] == "ui.hello"
            r = await asyncio.to_thread(session.post, f"/api/ui/cameras/{CAM}/arm", json={"armed": False})
            assert r.status_code == 200
            msg = await asyncio.wait_for(ws.receive_json(), 10)
            assert msg == {"topic": "armed", "data": {"camera_id": CAM, "armed": False, "until": None}}
            await asyncio.to_thread(session.post, f"/api/ui/cameras/{CAM}/arm", json={"armed": True})


# -- events and media -----------------------------------------------------------------------------------


def test_events_list_filters_and_pages(session):
    all_ = session.get("/api/ui/events").json()
    assert [e["id"] for e in all_["events"]][:3] == ["ev-play", "ev-del", "ev-sound"]
    assert not any(k.endswith("_path") for e in all_["events"] for k in e), "no server paths leak"
    sound = session.get("/api/ui/events", params={"trigger": "sound"}).json()["events"]
    assert {e["id"] for e in sound} == {"ev-del", "ev-sound"}
    page1 = session.get("/api/ui/events", params={"limit": 2}).json()
    assert len(page1["events"]) == 2 and page1["next_before"] is not None
    page2 = session.get("/api/ui/events", params={"limit": 2, "before": page1["next_before"]}).json()
    assert [e["id"] for e in page2["events"]] == ["ev-sound", "ev-evil"]
    assert session.get("/api/ui/events", params={"camera": "garden"}).json()["events"] == []
    recent = session.get("/api/ui/events", params={"since": time.time() - 900}).json()["events"]
    assert [e["id"] for e in recent] == ["ev-play"]
    assert session.get("/api/ui/events", params={"limit": 0}).status_code == 400
    assert session.get("/api/ui/events", params={"since": "yesterday"}).status_code == 400


@pytest.mark.parametrize("path", [
    "/api/ui/events/nope", "/api/ui/events/nope/clip", "/api/ui/events/nope/thumb",
    "/api/ui/cameras/nope", "/api/ui/cameras/nope/snapshot",
])
def test_unknown_ids_are_json_404s(session, path):
    r = session.get(path)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")
    assert "error" in r.json()


def test_unknown_ids_on_writes_are_404s(session):
    assert session.delete("/api/ui/events/nope").status_code == 404
    assert session.post("/api/ui/cameras/nope/arm", json={"armed": True}).status_code == 404
    assert session.patch("/api/ui/cameras/nope", json={"name": "x"}).status_code == 404


@pytest.mark.parametrize("path", [
    "/api/ui/events/ev-evil/clip",  # row says ../secrets.json
    "/api/ui/events/ev-evil/snapshot",  # row says /etc/passwd
    "/api/ui/events/ev-link/clip",  # a symlink inside clips/ pointing outside
    "/api/ui/events/..%2F..%2Fsecrets.json/clip",
    "/api/ui/events/%2E%2E/clip",
    "/ui/static/..%2F..%2F..%2Fdata%2Fsecrets.json",
    "/ui/static/../../app.py",
])
def test_path_traversal_is_refused(session, path):
    r = session.get(path)
    assert r.status_code == 404, (path, r.status_code, r.text[:200])
    assert "admin_secret" not in r.text and "root:" not in r.text


def test_clip_supports_range_requests(hub, session):
    clip = (hub.data_dir / "clips" / CAM / DAY / "ev-play.mp4").read_bytes()
    full = session.get("/api/ui/events/ev-play/clip")
    assert full.status_code == 200 and full.content == clip
    assert full.headers["content-type"] == "video/mp4" and full.headers["accept-ranges"] == "bytes"
    assert full.headers["cache-control"] == "no-store"  # nothing of it stays in the browser after log-out
    part = session.get("/api/ui/events/ev-play/clip", headers={"Range": "bytes=100-299"})
    assert part.status_code == 206 and part.content == clip[100:300]
    assert part.headers["content-range"] == f"bytes 100-299/{len(clip)}"
    tail = session.get("/api/ui/events/ev-play/clip", headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == clip[-50:]
    dl = session.get("/api/ui/events/ev-play/clip", params={"download": 1})
    assert dl.headers["content-disposition"].startswith('attachment; filename="frontdoor-')
    thumb = session.get("/api/ui/events/ev-play/thumb")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    # a camera with no live picture falls back to its newest event snapshot
    snap = session.get(f"/api/ui/cameras/{CAM}/snapshot")
    assert snap.status_code == 200 and snap.headers["x-snapshot-source"] == "event"
    assert session.get("/api/ui/cameras/garden/snapshot").status_code == 404


def test_media_needs_a_session(hub):
    r = httpx.get(f"{hub.https}/api/ui/events/ev-play/clip", verify=_ctx(hub))
    assert r.status_code == 401


def test_delete_event_removes_its_files(hub, session):
    day = hub.data_dir / "clips" / CAM / DAY
    files = [day / "ev-del.mp4", day / "ev-del.jpg", day / "ev-del.thumb.jpg"]
    assert all(f.exists() for f in files)
    r = session.delete("/api/ui/events/ev-del")
    assert r.status_code == 200 and r.json() == {"event_id": "ev-del", "deleted": True, "files_removed": 3}
    assert not any(f.exists() for f in files)
    assert (day / "ev-play.mp4").exists()
    assert session.get("/api/ui/events/ev-del").status_code == 404
    assert session.delete("/api/ui/events/ev-del").status_code == 404
    assert hub.wait_for_log('"event deleted"', timeout=5)


# -- cameras, pairing, system ---------------------------------------------------------------------------


def _stored_settings(hub, camera_id=CAM):
    with sqlite3.connect(hub.data_dir / "hub.db") as db:
        name, raw = db.execute("SELECT name, settings FROM cameras WHERE id = ?", [camera_id]).fetchone()
    return name, json.loads(raw)


def test_camera_settings_are_validated_and_stored(hub, session):
    bad = [
        {"settings": {"sensitivity": "extreme"}},
        {"settings": {"masks": [[[0.1, 0.1], [0.2, 0.2]]]}},  # two points
        {"settings": {"zones": [[[0.1, 0.1], [1.5, 0.2], [0.3, 0.9]]]}},  # outside the frame
        {"settings": {"pre_roll_s": 59}},  # longer than the buffer
        {"settings": {"colour": "red"}},
        {"name": ""},
        {"owner": "x"},
    ]
    for body in bad:
        r = session.patch("/api/ui/cameras/garden", json=body)
        assert r.status_code == 400, (body, r.text)
    ok = session.patch("/api/ui/cameras/garden", json={"name": "Back garden", "settings": {
        "sensitivity": "high", "audio_enabled": False, "audio_level_dbfs": -30,
        "zones": [[[0, 0], [0.5, 0], [0.5, 0.5]]]}})
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["name"] == "Back garden" and body["settings"]["sensitivity"] == "high"
    assert body["settings"]["pre_roll_s"] == 5  # the hub's default where nothing was set
    name, stored = _stored_settings(hub, "garden")
    assert name == "Back garden"
    assert stored == {"sensitivity": "high", "audio_enabled": False, "audio_level_dbfs": -30.0,
                      "zones": [[[0.0, 0.0], [0.5, 0.0], [0.5, 0.5]]], "masks": []}
    cams = {c["id"]: c for c in session.get("/api/ui/cameras").json()["cameras"]}
    assert cams["garden"]["name"] == "Back garden" and cams[CAM]["online"] is False


def test_pairing_code_with_qr(session):
    r = session.post("/api/ui/pairing")
    assert r.status_code == 201
    p = r.json()
    assert p["url"].endswith(f"#code={p['code']}") and "/cam/" in p["url"]
    assert p["qr_svg"].startswith("<svg") and "<path" in p["qr_svg"]


def test_system_info(session):
    s = session.get("/api/ui/system").json()
    assert s["disk"]["total_bytes"] > 0 and s["events"]["count"] >= 3
    assert s["retention"]["retention_days"] == 30 and s["mqtt"]["enabled"] is False
    assert s["versions"]["hub"] and s["versions"]["aiohttp"]


def test_page_is_served_with_a_strict_policy(hub):
    r = httpx.get(f"{hub.https}/", verify=_ctx(hub))
    assert r.status_code == 200 and '<script type="module" src="/ui/static/app.js">' in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    js = httpx.get(f"{hub.https}/ui/static/app.js", verify=_ctx(hub))
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]


# -- the browser ----------------------------------------------------------------------------------------

PLAYING_JS = """() => new Promise((resolve, reject) => {
  const v = document.querySelector('#player');
  const check = () => {
    if (v.error) reject(new Error(`video error ${v.error.code}: ${v.error.message}`));
    else if (v.readyState >= 2 && v.currentTime > 0.3)
      resolve({readyState: v.readyState, currentTime: v.currentTime, width: v.videoWidth});
  };
  for (const e of ['timeupdate', 'loadeddata', 'error']) v.addEventListener(e, check);
  check();
})"""


@pytest.mark.browser
async def test_browser_login_events_playback_masks_and_arming(hub):
    from playwright.async_api import async_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    args = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-quic", f"--ignore-certificate-errors-spki-list={hub.spki}",
            "--autoplay-policy=no-user-gesture-required"]
    api = httpx.Client(base_url=hub.https, verify=_ctx(hub), headers=admin(hub))
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=args)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 860})
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)

            await page.goto(f"{hub.https}/")
            await page.fill("#secret", "not the secret")
            await page.click("button[type=submit]")
            await page.wait_for_selector("text=Wrong admin secret")
            await page.fill("#secret", hub.admin_secret)
            await page.click("button[type=submit]")
            await page.wait_for_selector(f"article.camera[data-camera-id={CAM}]")
            await page.wait_for_selector(".conn[data-state=open]")
            await page.wait_for_selector(f"article.camera[data-camera-id={CAM}] .snapshot.loaded")
            await page.screenshot(path=str(SCREENSHOTS / "dashboard.png"))

            # arm / disarm the whole hub and one camera from the dashboard
            await page.wait_for_selector("#dash-arm:has-text('Disarm hub')")
            await page.click("#dash-arm")
            await page.wait_for_selector("#dash-arm:has-text('Arm hub')")
            assert api.get("/api/ui/arm").json()["armed"] is False
            await page.click("#dash-arm")
            await page.wait_for_selector("#dash-arm:has-text('Disarm hub')")
            assert api.get("/api/ui/arm").json()["armed"] is True
            switch = page.locator(f"article.camera[data-camera-id={CAM}] input.switch")
            assert await switch.is_checked()
            await switch.click()
            await page.wait_for_selector("text=Front door: disarmed")
            cams = {c["id"]: c for c in api.get("/api/ui/cameras").json()["cameras"]}
            assert cams[CAM]["camera_armed"] is False
            await switch.click()
            await page.wait_for_selector("text=Front door: armed")
            assert api.get(f"/api/ui/cameras/{CAM}").json()["camera_armed"] is True

            # events: the inserted event is listed; its clip plays
            await page.click("nav >> text=Events")
            row = page.locator("li.event[data-event-id=ev-play]")
            await row.wait_for()
            assert "Motion" in await row.inner_text()
            await row.click()
            await page.wait_for_selector("#player")
            # The page's CSP forbids eval, which wait_for_function's polling needs: wait on the element's events.
            played = await asyncio.wait_for(page.evaluate(PLAYING_JS), 15)
            assert played["readyState"] >= 2 and played["currentTime"] > 0.3 and played["width"] == 320
            await page.screenshot(path=str(SCREENSHOTS / "events.png"))

            # settings: draw a four-point mask on the snapshot and save it
            await page.goto(f"{hub.https}/#/camera/{CAM}")
            canvas = page.locator("#zone-canvas")
            await canvas.wait_for()
            await page.wait_for_selector(".editor-stage .snapshot.loaded")
            box = await canvas.bounding_box()
            assert box and box["width"] > 100
            pts = [(0.1, 0.1), (0.6, 0.15), (0.55, 0.7), (0.15, 0.6)]
            for x, y in pts:
                await page.mouse.click(box["x"] + x * box["width"], box["y"] + y * box["height"])
            await page.click("#close-polygon")
            await page.click("#save-settings")
            await page.wait_for_selector("text=Settings saved")
            await page.screenshot(path=str(SCREENSHOTS / "camera-settings.png"))
            _, stored = _stored_settings(hub)
            assert len(stored["masks"]) == 1 and len(stored["masks"][0]) == 4
            for (sx, sy), (x, y) in zip(stored["masks"][0], pts, strict=False):
                assert abs(sx - x) < 0.02 and abs(sy - y) < 0.02

            await page.click("nav >> text=Add camera")
            await page.click("#new-code")
            await page.wait_for_selector("#pair-code")
            await page.screenshot(path=str(SCREENSHOTS / "pairing.png"))
            await page.click("nav >> text=System")
            await page.wait_for_selector("text=Versions")
            await page.screenshot(path=str(SCREENSHOTS / "system.png"))
            assert not problems, problems
        finally:
            await browser.close()
            api.close()


# -- the browser: what a newcomer trips over (issue 14) -------------------------------------------------

# Distinct line boxes an element's text is laid out on (a Range gives one rectangle per line fragment).
LINES_JS = """(el) => {
  const r = document.createRange();
  r.selectNodeContents(el);
  return new Set([...r.getClientRects()].filter((b) => b.width > 0).map((b) => Math.round(b.top))).size;
}"""


def _seconds(text: str) -> int:
    """'5 s', '2 min 7 s', '1 h 3 min' (the page's fmtDuration) -> seconds."""
    units = {"s": 1, "min": 60, "h": 3600}
    parts = text.split()
    return sum(int(n) * units[u] for n, u in zip(parts[::2], parts[1::2], strict=True))


async def _ui_page(browser, hub, viewport, *, fake_clock: bool = False):
    context = await browser.new_context(viewport=viewport)
    page = await context.new_page()
    if fake_clock:
        await page.clock.install()  # timers run on real time until the test moves the clock on
    await page.goto(f"{hub.https}/")
    await page.fill("#secret", hub.admin_secret)
    await page.click("button[type=submit]")
    await page.wait_for_selector(f"article.camera[data-camera-id={CAM}] .snapshot.loaded")
    return page


def _rows(boxes: list[dict[str, float]]) -> int:
    """How many rows boxes sit on: a box starts a new row when it does not overlap the previous row vertically."""
    rows: list[tuple[float, float]] = []
    for b in sorted(boxes, key=lambda b: b["y"]):
        top, bottom = b["y"], b["y"] + b["height"]
        if rows and top < rows[-1][1] - 1:
            rows[-1] = (rows[-1][0], max(rows[-1][1], bottom))
        else:
            rows.append((top, bottom))
    return len(rows)


@pytest.mark.browser
async def test_browser_events_paging_lengths_system_page_and_phone_layout(hub):
    from playwright.async_api import async_playwright, expect

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    args = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-quic", f"--ignore-certificate-errors-spki-list={hub.spki}"]
    api = httpx.Client(base_url=hub.https, verify=_ctx(hub), headers=admin(hub))
    total = len(api.get("/api/ui/events", params={"limit": 500}).json()["events"])
    sound = [e["id"] for e in api.get("/api/ui/events", params={"trigger": "sound"}).json()["events"]]
    system = api.get("/api/ui/system").json()
    assert total > 30 and 0 < len(sound) < 30
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=args)
        try:
            for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
                page = await _ui_page(browser, hub, viewport, fake_clock=True)
                problems: list[str] = []
                page.on("pageerror", lambda e, p=problems: p.append(f"page error: {e}"))
                await page.screenshot(path=str(SCREENSHOTS / f"dashboard-{name}.png"))
                # the header is one row of brand and buttons plus the nav, not three rows
                header = [await page.locator(s).bounding_box() for s in (".topbar .brand", ".topbar .nav",
                                                                          ".topbar-actions")]
                assert _rows([b for b in header if b]) <= 2, (name, header)
                nav = await page.locator(".topbar .nav").evaluate("(n) => n.scrollWidth - n.clientWidth")
                assert nav <= 0, f"{name}: the links overflow the nav by {nav}px"
                # the arm buttons side by side are the same height, each on one line
                arm, disarm_1h = page.locator("#dash-arm"), page.locator("#dash-disarm-1h")
                await expect(arm).to_have_text("Disarm hub")
                heights = {(await b.bounding_box() or {}).get("height") for b in (arm, disarm_1h)}
                assert len(heights) == 1, (name, heights)
                assert await arm.evaluate(LINES_JS) == 1 and await disarm_1h.evaluate(LINES_JS) == 1
                top = {(await page.locator(s).bounding_box() or {}).get("height")
                       for s in ("#global-arm", ".topbar-actions button.ghost")}
                assert len(top) == 1, (name, top)

                await page.click("nav >> text=System")
                fingerprint = page.locator("#cert-fingerprint")
                await fingerprint.wait_for()
                await page.screenshot(path=str(SCREENSHOTS / f"system-{name}.png"), full_page=True)
                # the whole fingerprint, in byte groups on at most 4 lines, no byte split across two
                assert "".join((await fingerprint.inner_text()).split()) == system["certificate"]["sha256"]
                lines = fingerprint.locator(".fp-line")
                assert await lines.count() <= 4
                for i in range(await lines.count()):
                    assert await lines.nth(i).evaluate(LINES_JS) == 1
                # URLs never break inside host:port
                for key in ("ui", "camera"):
                    url = page.locator(f"#url-{key}")
                    assert await url.inner_text() == system["urls"][key]
                    assert await url.locator(".origin").evaluate(LINES_JS) == 1
                # the cloud uploader's real state, not "Off"
                cloud = await page.locator("#cloud-state").inner_text()
                assert "Not linked" in cloud and "pingwatch cloud link" in cloud, cloud
                # "Up for" ticks with the clock (the page's own clock, moved on by the test)
                up = page.locator("#uptime")
                before = await up.inner_text()
                await page.clock.run_for(20_000)
                await expect(up).not_to_have_text(before)
                assert _seconds(await up.inner_text()) >= _seconds(before) + 19
                assert not problems, problems
                await page.context.close()

            page = await _ui_page(browser, hub, DESKTOP)
            await page.click("nav >> text=Events")
            rows, more = page.locator("li.event"), page.locator("#load-older")
            await expect(rows).to_have_count(30)
            # "Length" is how long the event lasted (end - start), as in `pingwatch events list`; not its clip's
            old = page.locator("li.event[data-event-id=ev-old-00]")
            assert await old.locator(".ev-duration").inner_text() == "8 s"
            await expect(page.locator("li.event[data-event-id=ev-play] .ev-clip")).to_have_text("▶ 3 s clip")
            await more.click()
            await expect(rows).to_have_count(total)
            await expect(more).to_be_hidden()  # nothing older: no button
            # even a click that still reaches it loads nothing twice
            await more.dispatch_event("click")
            await page.wait_for_selector("#event-list:not([aria-busy=true])", state="attached")
            ids = [await r.get_attribute("data-event-id") for r in await rows.all()]
            assert len(ids) == total == len(set(ids))
            # a filter with one short page: no "Load older events" at all
            await page.select_option("select[name=trigger]", "sound")
            await expect(rows).to_have_count(len(sound))
            await expect(more).to_be_hidden()
            await page.context.close()
        finally:
            await browser.close()
            api.close()
