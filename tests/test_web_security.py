"""The web edge under attack (issue 10, items 1, 7, 8 and 9), against the real hub process.

Each test replays what the adversarial review did: a cookie captured on another port of the same host, the
loopback HTTP port used as a second way in, guesses from one and from many source addresses, input that used to
answer 500, and the headers each kind of response must carry.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import closing

import httpx
import pytest
from aiohttp import web

from hub.datadir import DataDir
from hub.store import Store
from tests.hubproc import HubProcess, free_port
from tests.test_web_ui import make_clip, make_jpeg

CAM = "frontdoor"
DAY = "2024-05-01"


def _ctx(hub: HubProcess) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(hub.cert_path))


def admin(hub: HubProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {hub.admin_secret}"}


def _seeded_hub(root) -> HubProcess:
    h = HubProcess.create(root)
    data = DataDir(h.data_dir).ensure()
    day = data.clips_dir / CAM / DAY
    day.mkdir(parents=True)
    make_clip(day / "ev-1.mp4")
    make_jpeg(day / "ev-1.jpg", (320, 180), (90, 60, 30))
    make_jpeg(day / "ev-1.thumb.jpg", (160, 90), (90, 60, 30))
    store = Store(data.db_path)
    store.ensure_static_camera(CAM, "Front door", "file")
    rel = f"{CAM}/{DAY}/ev-1"
    store.insert_event({"id": "ev-1", "camera_id": CAM, "triggers": ["motion"], "status": "done",
                        "start": time.time() - 60, "end": time.time() - 57, "clip_duration_s": 3.0,
                        "clip_path": f"{rel}.mp4", "snapshot_path": f"{rel}.jpg", "thumb_path": f"{rel}.thumb.jpg",
                        "clip_size": (day / "ev-1.mp4").stat().st_size, "clip_codec": "h264"})
    store.close()
    return h.start()


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Iterator[HubProcess]:
    h = _seeded_hub(tmp_path_factory.mktemp("websec"))
    yield h
    h.stop()


def _client(hub: HubProcess, address: str = "127.0.0.1") -> httpx.Client:
    transport = httpx.HTTPTransport(verify=_ctx(hub), local_address=address)
    return httpx.Client(base_url=hub.https, transport=transport)


def _login(hub: HubProcess) -> tuple[httpx.Client, str]:
    c = _client(hub)
    r = c.post("/api/ui/login", json={"secret": hub.admin_secret})
    assert r.status_code == 200, r.text
    return c, r.json()["csrf"]


def _no_tracebacks(hub: HubProcess) -> None:
    bad = [ln for ln in hub.lines if "unhandled error" in ln or "Traceback" in ln]
    assert not bad, bad[:3]


# -- 1: a session cookie replayed from another port --------------------------------------------------------


class _CookieCatcher:
    """Another program on the hub's host: an HTTP server on another port that keeps the cookies it is sent."""

    def __init__(self) -> None:
        self.cookies: list[str] = []
        self.port = free_port()

    async def start(self) -> web.AppRunner:
        async def catch(request: web.Request) -> web.Response:
            self.cookies.append(request.headers.get("Cookie", ""))
            return web.Response(text="<!doctype html><title>innocent</title>", content_type="text/html")

        app = web.Application()
        app.router.add_get("/{tail:.*}", catch)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner


@pytest.mark.browser
async def test_cookie_sent_to_another_port_reads_and_changes_nothing(hub):
    from playwright.async_api import async_playwright

    catcher = _CookieCatcher()
    runner = await catcher.start()
    args = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-quic", f"--ignore-certificate-errors-spki-list={hub.spki}"]
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=args)
            try:
                page = await browser.new_page()
                await page.goto(f"{hub.https}/")
                await page.fill("#secret", hub.admin_secret)
                await page.click("button[type=submit]")
                await page.wait_for_selector(f"article.camera[data-camera-id={CAM}] .snapshot.loaded")
                await page.goto(f"http://127.0.0.1:{catcher.port}/")  # the user follows a link to it
                await page.goto(f"{hub.https}/")  # and comes back: the page still has its session
                await page.wait_for_selector(f"article.camera[data-camera-id={CAM}]")
            finally:
                await browser.close()
    finally:
        await runner.cleanup()
    # The precondition of the attack: Chromium did send the hub's Secure cookie to another port, over HTTP.
    stolen = next((c for c in catcher.cookies if "pw_session=" in c), None)
    assert stolen is not None, catcher.cookies
    sid = stolen.split("pw_session=", 1)[1].split(";")[0]
    cookies = {"pw_session": sid}
    with httpx.Client(base_url=hub.https, verify=_ctx(hub), cookies=cookies, headers={"Origin": hub.https}) as c:
        me = c.get("/api/ui/session")
        assert me.status_code == 403 and "csrf" not in me.json(), me.text  # the key is not handed out
        disarm = c.post("/api/ui/arm", json={"armed": False})
        assert disarm.status_code == 403, disarm.text
        assert c.get(f"/api/ui/cameras/{CAM}/snapshot").status_code == 403
        assert c.get("/api/ui/events/ev-1/clip").status_code == 403
        assert c.get("/api/ui/events").status_code == 403
    with _client(hub) as c:
        assert c.get("/api/ui/arm", headers=admin(hub)).json()["armed"] is True  # nothing was disarmed


def test_cookie_alone_is_refused_on_every_kind_of_route(hub):
    c, key = _login(hub)
    with closing(c):
        for method, path in [("GET", "/api/ui/session"), ("GET", "/api/ui/system"), ("POST", "/api/ui/pairing"),
                             ("GET", f"/api/ui/cameras/{CAM}/snapshot"), ("GET", "/api/ui/events/ev-1/thumb"),
                             ("POST", "/api/ui/logout")]:
            r = c.request(method, path, headers={"Origin": hub.https})
            assert r.status_code == 403, (method, path, r.status_code)
        assert c.get("/api/ui/system", headers={"X-CSRF-Token": key}).status_code == 200


def test_media_urls_are_signed_per_session_and_path(hub):
    c, key = _login(hub)
    with closing(c):
        ev = c.get("/api/ui/events", headers={"X-CSRF-Token": key}).json()["events"][0]
        assert "sig=" in ev["clip_url"] and "sig=" in ev["thumb_url"] and "download=1" in ev["download_url"]
        assert c.get(ev["clip_url"]).status_code == 200  # what <video src> does: cookie, no header
        assert c.get(ev["download_url"]).headers["content-disposition"].startswith("attachment")
        sig = ev["clip_url"].split("sig=")[1]
        assert c.get(f"/api/ui/events/ev-1/snapshot?sig={sig}").status_code == 403  # another file
        assert c.post(f"{ev['clip_url']}").status_code in (403, 405)
        assert httpx.get(f"{hub.https}{ev['clip_url']}", verify=_ctx(hub)).status_code == 401  # no cookie
        sid = c.cookies["pw_session"]
        assert c.post("/api/ui/logout", headers={"X-CSRF-Token": key}).status_code == 200
        replay = httpx.get(f"{hub.https}{ev['clip_url']}", cookies={"pw_session": sid}, verify=_ctx(hub))
        assert replay.status_code == 401  # the signed URL died with the session


def test_loopback_http_port_serves_only_the_cli(hub):
    for method, path in [("GET", "/"), ("GET", "/cam/"), ("GET", "/ui/static/app.js"), ("GET", "/hub.crt"),
                         ("POST", "/api/ui/login"), ("POST", "/api/pair"), ("GET", "/api/camera")]:
        r = httpx.request(method, f"{hub.http}{path}", json={"secret": hub.admin_secret})
        assert r.status_code == 404 and "CLI" in r.json()["error"], (path, r.status_code, r.text[:100])
    assert httpx.get(f"{hub.http}/api/health").json()["status"] == "ok"
    assert httpx.get(f"{hub.http}/api/ui/arm", headers=admin(hub)).status_code == 200
    assert httpx.get(f"{hub.http}/api/admin/cameras", headers=admin(hub)).status_code == 200
    # a session made on HTTPS is no key to the HTTP port either
    c, key = _login(hub)
    with closing(c):
        r = httpx.get(f"{hub.http}/api/ui/arm", cookies={"pw_session": c.cookies["pw_session"]},
                      headers={"X-CSRF-Token": key})
        assert r.status_code == 404


# -- 9: headers on every response --------------------------------------------------------------------------


def _camera_token(hub: HubProcess) -> tuple[str, str]:
    with _client(hub) as c:
        code = c.post("/api/admin/pairing-codes", headers=admin(hub))
        assert code.status_code == 201
        paired = c.post("/api/pair", json={"code": code.json()["code"], "name": "Hall"})
        assert paired.status_code == 201
        return paired.json()["camera_id"], paired.json()["token"]


def test_token_and_pairing_answers_are_not_cached(hub):
    with _client(hub) as c:
        code = c.post("/api/admin/pairing-codes", headers=admin(hub))
        assert code.status_code == 201 and code.headers.get("cache-control") == "no-store"
        paired = c.post("/api/pair", json={"code": code.json()["code"], "name": "Hall"})
        assert paired.status_code == 201 and paired.headers.get("cache-control") == "no-store"


def test_every_response_carries_the_security_headers(hub):
    _, token = _camera_token(hub)
    c, key = _login(hub)
    ev = c.get("/api/ui/events", headers={"X-CSRF-Token": key}).json()["events"][0]
    checks = [
        ("GET", "/", {}), ("GET", "/cam/", {}), ("GET", "/cam/app.js", {}), ("GET", "/cam/nope.js", {}),
        ("GET", "/api/health", {}), ("POST", "/api/pair", {}), ("GET", "/api/admin/cameras", {}),
        ("GET", "/api/admin/cameras", admin(hub)), ("GET", "/api/camera", {"Authorization": f"Bearer {token}"}),
        ("GET", "/api/ui/events", {}), ("GET", ev["clip_url"], {}), ("GET", ev["snapshot_url"], {}),
        ("GET", "/hub.crt", {}), ("GET", "/ui/static/app.js", {}), ("GET", "/no/such/page", {}),
    ]
    with closing(c):
        for method, path, headers in checks:
            r = c.request(method, path, headers=headers)
            h = r.headers
            assert "frame-ancestors 'none'" in h.get("content-security-policy", ""), (path, dict(h))
            assert h.get("x-frame-options") == "DENY" and h.get("x-content-type-options") == "nosniff", path
            assert h.get("server") == "ping-watch", (path, h.get("server"))
            if path.startswith("/api/"):
                assert h.get("cache-control") == "no-store", (path, h.get("cache-control"))
        pairing = c.post("/api/ui/pairing", headers={"X-CSRF-Token": key, "Origin": hub.https})
        assert pairing.status_code == 201 and pairing.headers["cache-control"] == "no-store"
    cam = httpx.get(f"{hub.https}/cam/", verify=_ctx(hub)).headers["content-security-policy"]
    assert "script-src 'self'" in cam and "unsafe-inline" not in cam


def test_parser_errors_do_not_tell_versions(hub):
    with socket.create_connection(("127.0.0.1", hub.http_port), timeout=10) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        head = s.recv(4096).decode("latin-1")
    assert head.split("\r\n")[0].endswith("400 Bad Request"), head
    assert "aiohttp" not in head.lower() and "python" not in head.lower(), head


def test_only_the_pages_own_files_are_served_under_cam(hub):
    base = hub.https
    assert httpx.get(f"{base}/cam/icons/icon.svg", verify=_ctx(hub)).status_code == 200
    manifest = httpx.get(f"{base}/cam/manifest.webmanifest", verify=_ctx(hub))
    assert manifest.status_code == 200 and "manifest+json" in manifest.headers["content-type"]
    for path in ("/cam/icons/make_icons.py", "/cam/icons/", "/cam/.hidden.js", "/cam/..%2Fhub%2Fapp.py",
                 "/cam/%2E%2E/README.md"):
        r = httpx.get(f"{base}{path}", verify=_ctx(hub))
        assert r.status_code == 404, (path, r.status_code)
        assert "import" not in r.text


def test_health_tells_the_lan_nothing_about_cameras(hub):
    public = httpx.get(f"{hub.https}/api/health", verify=_ctx(hub)).json()
    assert public == {"status": "ok", "db": "ok"}
    mine = httpx.get(f"{hub.https}/api/health", headers=admin(hub), verify=_ctx(hub)).json()
    assert mine["cameras"]["total"] >= 1 and mine["version"]
    wrong = httpx.get(f"{hub.https}/api/health", headers={"Authorization": "Bearer nope"}, verify=_ctx(hub))
    assert wrong.status_code == 401  # a bearer token here is checked (and counted) like anywhere else


# -- 8: bad input is a 4xx, never a 500 ----------------------------------------------------------------------

SURROGATE = '"\\ud800"'  # JSON text for a lone UTF-16 surrogate


def test_bad_input_answers_4xx_not_500(hub):
    _, token = _camera_token(hub)
    c, key = _login(hub)
    cam = {"Authorization": f"Bearer {token}"}
    session = {"X-CSRF-Token": key, "Origin": hub.https, "Content-Type": "application/json"}
    deep = b"[" * 5000 + b"]" * 5000
    deep_obj = b'{"a":' * 3000 + b"1" + b"}" * 3000

    def chunks():
        for _ in range(40):
            yield b" " * 8192  # 320 KiB with no Content-Length: chunked

    cases = [
        ("POST", "/api/pair", {"Content-Type": "application/json"}, f'{{"code": {SURROGATE}}}'.encode()),
        ("POST", "/api/pair", {"Content-Type": "application/json"}, f'{{"code": "AB", "name": {SURROGATE}}}'.encode()),
        ("POST", "/api/ui/login", {"Content-Type": "application/json"}, f'{{"secret": {SURROGATE}}}'.encode()),
        ("POST", "/api/camera/offer", cam, f'{{"type": "offer", "sdp": {SURROGATE}}}'.encode()),
        ("PATCH", f"/api/ui/cameras/{CAM}", session, f'{{"name": {SURROGATE}}}'.encode()),
        ("PATCH", f"/api/ui/cameras/{CAM}", session, f'{{{SURROGATE}: 1}}'.encode()),
        ("GET", "/api/admin/cameras", {"Authorization": b"Bearer \xff\xfe\xc3"}, None),
        ("GET", "/api/camera", {"Authorization": b"Bearer \xed\xa0\x80"}, None),
        ("GET", "/api/ui/events", {"Cookie": b"pw_session=\xff\xfe", "X-CSRF-Token": key}, None),
        ("GET", "/api/ui/events", {"Cookie": b"pw_session=x", "X-CSRF-Token": b"\xc3("}, None),
        ("POST", "/api/ui/login", {"User-Agent": b"\xff", "Content-Type": "application/json"}, b'{"secret": "x"}'),
        ("POST", "/api/pair", {"Content-Type": "application/json"}, deep),
        ("POST", "/api/pair", {"Content-Type": "application/json"}, deep_obj),
        ("POST", "/api/camera/offer", cam, chunks()),
        ("POST", "/api/camera/offer", cam, b"\xff\xfe{}"),
    ]
    with closing(c):
        for method, path, headers, body in cases:
            r = c.request(method, path, headers=headers, content=body)
            assert 400 <= r.status_code < 500, (method, path, headers, r.status_code, r.text[:200])
            assert r.json()["error"], r.text
        ok = {"X-CSRF-Token": key}
        for since in ("0001-01-01", "9999-12-31T23:59:59-14:00", "nan", "1e400", "-1", "inf", "0001-01-01T00:00"):
            r = c.get("/api/ui/events", params={"since": since}, headers=ok)
            assert r.status_code == 400 and "ISO 8601" in r.json()["error"], (since, r.status_code, r.text)
        big = c.post("/api/camera/offer", headers=cam, content=chunks())
        assert big.status_code == 413 and "65536" in big.json()["error"], big.text
        assert c.get("/api/health").json()["status"] == "ok"
    _no_tracebacks(hub)


# -- 7: guessing limits --------------------------------------------------------------------------------------


def test_pairing_codes_are_slowed_per_client(hub):
    with _client(hub, "127.0.0.3") as c:
        codes = [c.post("/api/pair", json={"code": f"WRONG{i:03d}", "name": "x"}).status_code for i in range(5)]
        assert codes == [403] * 5
        locked = c.post("/api/pair", json={"code": "WRONG999", "name": "x"})
        assert locked.status_code == 429 and int(locked.headers["Retry-After"]) >= 1
        assert "pairing code" in locked.json()["error"]
    with _client(hub, "127.0.0.1") as other:  # another client's pairing still works
        code = other.post("/api/admin/pairing-codes", headers=admin(hub)).json()["code"]
        assert other.post("/api/pair", json={"code": code, "name": "y"}).status_code == 201


def test_wrong_admin_bearer_tokens_are_slowed(hub):
    with _client(hub, "127.0.0.4") as c:
        bad = {"Authorization": "Bearer guess"}
        codes = [c.get("/api/admin/cameras", headers=bad).status_code for _ in range(3)]
        codes += [c.get("/api/ui/cameras", headers=bad).status_code for _ in range(2)]
        assert codes == [401] * 5
        locked = c.get("/api/admin/cameras", headers=admin(hub))  # even the right one waits now
        assert locked.status_code == 429 and "admin secret" in locked.json()["error"]


@pytest.fixture
def fresh_hub(tmp_path) -> Iterator[HubProcess]:
    h = HubProcess.create(tmp_path).start()
    yield h
    h.stop()


def test_guesses_from_many_addresses_hit_a_global_limit(fresh_hub):
    hub = fresh_hub
    statuses = []
    for i in range(10, 34):  # 24 loopback addresses, one wrong secret each: never a per-address lock
        with _client(hub, f"127.0.0.{i}") as c:
            statuses.append(c.post("/api/ui/login", json={"secret": f"guess-{i}"}).status_code)
    assert statuses[:20] == [401] * 20 and set(statuses[20:]) == {429}, statuses
    with _client(hub, "127.0.0.99") as c:
        r = c.post("/api/ui/login", json={"secret": "another guess"})
        assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 4
    # The loopback HTTP port has a bucket of its own: the LAN cannot lock the CLI out.
    assert httpx.get(f"{hub.http}/api/admin/cameras", headers=admin(hub)).status_code == 200
    # Pairing codes are another secret with another limit.
    with _client(hub, "127.0.0.99") as c:
        assert c.post("/api/pair", json={"code": "NOPE0000"}).status_code == 403
    logs = [json.loads(ln) for ln in hub.lines if ln.startswith("{")]
    assert sum(1 for e in logs if e.get("msg", e.get("message", "")).startswith("wrong admin secret")) >= 20
