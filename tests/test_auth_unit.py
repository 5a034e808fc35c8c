"""hub/web/auth.py in this process: the guess limits, the session table, and the web edge's checks over HTTPS.

The mutation benchmark (scripts/bench mutation) runs these against every mutant of hub/web/auth.py, so nothing here
starts a hub process or a browser: the HTTP tests run the real hub in this process (``build_hub`` + ``serve``: its
HTTPS and loopback HTTP ports, the guard, the real routes and database), with a test clock put into its auth and
admin guess limiter so locks and refills pass without waiting. tests/test_web_security.py and tests/test_web_ui.py
replay the same attacks against a real hub process (and Chromium); tests/test_web_sessions.py covers the session
lifetime and the per-client lock.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import httpx
import pytest
import pytest_asyncio

from hub.app import HubRuntime
from hub.store import Store
from hub.web.auth import (
    FREE_FAILURES,
    GLOBAL_BURST,
    GLOBAL_REFILL_S,
    SESSION_KEY,
    SESSION_TTL_S,
    Auth,
    GuessLimiter,
)
from tests.harness.ports import HOST
from tests.test_web_sessions import Clock, LiveHub, log_in, running_hub

CAM = "frontdoor"
EVENT = "ev-1"
T = 1_000_000.0
_TRACKED = 10_000  # auth._MAX_TRACKED_CLIENTS: the per-address table is bounded at this many entries


# -- the guess limits, with explicit times ------------------------------------------------------------------------


def test_wrong_guesses_from_all_addresses_share_one_bucket_per_port_kind() -> None:
    limiter = GuessLimiter()
    for i in range(GLOBAL_BURST):  # one wrong guess each: no address is ever locked on its own
        assert limiter.wait(f"10.0.0.{i}", "https", T) == 0.0
        assert limiter.fail(f"10.0.0.{i}", "https", T) == 0.0
    # the bucket is dry: a new address waits for one refill, exactly
    assert limiter.wait("10.0.1.1", "https", T) == GLOBAL_REFILL_S
    assert limiter.wait("10.0.1.1", "https", T + GLOBAL_REFILL_S / 3) == pytest.approx(GLOBAL_REFILL_S * 2 / 3)
    assert limiter.wait("10.0.1.1", "https", T + GLOBAL_REFILL_S) == 0.0
    # the other port kind has a bucket of its own: the LAN cannot lock the CLI out of the loopback port
    assert limiter.wait("127.0.0.1", "loopback-http", T) == 0.0


def test_the_shared_bucket_refills_one_guess_per_interval_up_to_its_burst() -> None:
    limiter = GuessLimiter(burst=3, refill_s=10.0)
    for i in range(3):
        limiter.fail(f"a{i}", "https", T)
    assert limiter.wait("x", "https", T) == 10.0
    limiter.fail("x", "https", T + 25.0)  # 2.5 guesses came back, one is spent: 1.5 left, no wait
    assert limiter.wait("y", "https", T + 25.0) == 0.0
    limiter.fail("y", "https", T + 25.0)  # 0.5 left: half a refill to wait
    assert limiter.wait("z", "https", T + 25.0) == pytest.approx(5.0)
    # a long quiet refills the bucket to its burst, no further: three guesses, then a wait again
    t = T + 10_000.0
    for i in range(3):
        assert limiter.wait(f"b{i}", "https", t) == 0.0
        limiter.fail(f"b{i}", "https", t)
    assert limiter.wait("c", "https", t) == 10.0


def test_a_locked_address_is_still_locked_after_a_flood_of_new_addresses() -> None:
    """The per-address table is bounded; when a flood overfills it, the addresses that failed longest ago go."""
    limiter = GuessLimiter(burst=10**9)  # the shared bucket out of the way: this is about the per-address table
    for i in range(_TRACKED - 2):  # the flood comes first, so it is the oldest
        limiter.fail(f"flood-{i}", "https", T)
    for _ in range(FREE_FAILURES - 1):  # one recent address has used its free guesses
        limiter.fail("guesser", "https", T + 1)
    locked = 0.0
    for _ in range(FREE_FAILURES + 3):  # another is locked for 8 s
        locked = limiter.fail("locked", "https", T + 1)
    assert locked == 8.0
    limiter.fail("newcomer", "https", T + 2)  # one more address than the table holds
    assert limiter.wait("locked", "https", T + 2) == pytest.approx(7.0)  # still locked
    assert limiter.fail("guesser", "https", T + 2) == 1.0  # its count was kept: this guess locks
    assert limiter.fail("flood-0", "https", T + 2) == 0.0  # the oldest were forgotten
    assert len(limiter.clients._by_client) <= _TRACKED  # and the table is back under its bound


def test_addresses_quiet_for_an_hour_are_dropped_first_when_the_table_is_full() -> None:
    limiter = GuessLimiter(burst=10**9)
    for _ in range(FREE_FAILURES - 1):  # the oldest entry, but recent: it must survive the pass
        limiter.fail("guesser", "https", T + 3000)
    for i in range(_TRACKED - 1):  # quiet for over an hour by the time the table is full
        limiter.fail(f"old-{i}", "https", T)
    limiter.fail("newcomer", "https", T + 3601)
    # every quiet entry is gone (not just the older half), the recent ones stay with their counts
    assert set(limiter.clients._by_client) == {"guesser", "newcomer"}
    assert limiter.fail("guesser", "https", T + 3601) == 1.0


def test_an_hour_of_quiet_to_the_second_still_counts() -> None:
    limiter = GuessLimiter()
    for _ in range(FREE_FAILURES):
        limiter.fail("a", "https", T)
    assert limiter.wait("a", "https", T + 3600) == 0.0  # the 1 s lock is long over ...
    assert limiter.fail("a", "https", T + 3600) == 2.0  # ... but the count stands until the hour has passed


def test_a_table_exactly_at_its_bound_after_dropping_the_quiet_ones_keeps_every_recent_entry() -> None:
    limiter = GuessLimiter(burst=10**9)
    limiter.fail("quiet", "https", T)  # the only entry quiet for over an hour when the table overfills
    for _ in range(FREE_FAILURES - 1):
        limiter.fail("guesser", "https", T + 3000)  # the oldest of the recent ones
    for i in range(_TRACKED - 2):
        limiter.fail(f"recent-{i}", "https", T + 3000)
    limiter.fail("newcomer", "https", T + 3601)  # one over the bound; dropping "quiet" is enough
    assert len(limiter.clients._by_client) == _TRACKED
    assert limiter.fail("guesser", "https", T + 3601) == 1.0  # its count was kept


def test_a_flood_frees_half_the_table_at_once() -> None:
    """The pass sorts the whole table: it frees half of it, so a flood pays for it once per 5 000 new addresses,
    not on every wrong guess."""
    limiter = GuessLimiter(burst=10**9)
    for i in range(_TRACKED + 1):
        limiter.fail(f"flood-{i}", "https", T + i / 100)  # all within the hour, oldest first
    assert len(limiter.clients._by_client) == (_TRACKED + 1) - (_TRACKED + 1) // 2
    assert "flood-4999" not in limiter.clients._by_client and "flood-5000" in limiter.clients._by_client


def test_the_limits_are_the_documented_ones(store: Store) -> None:
    """docs/web-ui.md and docs/security.md: a session lasts 7 days and ends after 2 days without use; 5 free
    wrong guesses per address, then 1 s, 2 s ... up to 15 minutes; 20 from all addresses, then one every 3 s."""
    day = 24 * 3600.0
    clock = Clock(T)
    auth = Auth(store, "secret", clock=clock)
    daily, _ = auth.create("ua", "a")
    idle, _ = auth.create("ua", "b")
    clock.now = T + 2 * day  # two days to the second: still in
    assert auth.lookup(idle) is not None
    clock.now = T + 4 * day + 1  # two days and a second since that use
    assert auth.lookup(idle) is None
    for d in (1, 2, 3, 4, 5, 6):
        clock.now = T + d * day
        assert auth.lookup(daily) is not None, d
    clock.now = T + 7 * day
    assert auth.lookup(daily) is None

    limiter = GuessLimiter()
    locks = [limiter.fail("a", "other", T) for _ in range(5 + 12)]
    assert locks == [0.0] * 4 + [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 900.0, 900.0, 900.0]
    for i in range(20):
        assert limiter.wait(f"b{i}", "https", T) == 0.0
        limiter.fail(f"b{i}", "https", T)
    assert limiter.wait("c", "https", T) == 3.0


# -- the session table (Auth with a test clock, real SQLite) ------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "hub.db")
    yield s
    s.close()


def _stored_last_seen(store: Store) -> list[float]:
    return [r[0] for r in store.db.execute("SELECT last_seen FROM ui_sessions")]


def test_the_last_use_reaches_the_database_at_most_once_a_minute(store: Store) -> None:
    clock = Clock(T)
    auth = Auth(store, "secret", clock=clock)
    sid, _ = auth.create("ua", "127.0.0.1")
    clock.now = T + 60  # a minute to the second: not yet written (SD cards)
    assert auth.lookup(sid) is not None
    assert _stored_last_seen(store) == [T]
    clock.now = T + 61
    assert auth.lookup(sid) is not None
    assert _stored_last_seen(store) == [T + 61]
    clock.now = T + 100
    used = auth.lookup(sid)
    assert used is not None and used.last_seen == T + 100  # the caller sees the use ...
    assert _stored_last_seen(store) == [T + 61]  # ... the database only a minute later


def test_what_a_session_id_cannot_be_is_no_session(store: Store) -> None:
    auth = Auth(store, "secret", clock=Clock(T))
    sid, sess = auth.create("ua", "127.0.0.1")
    assert auth.lookup(sid) is not None
    # "\udcff": what a cookie of bytes that are not UTF-8 decodes to; it cannot be hashed as UTF-8
    for other in ("", sid + "x", sid[:-1], "é" + sid, "\udcff" + sid, sid * 4):
        assert auth.lookup(other) is None, other
    # only the hash of the id is stored: a copy of the database holds no usable session
    row = store.db.execute("SELECT * FROM ui_sessions").fetchone()
    assert sid not in [str(v) for v in row] and sess.id_hash in row


def test_the_stored_user_agent_and_address_are_bounded(store: Store) -> None:
    auth = Auth(store, "secret", clock=Clock(T))
    auth.create("u" * 5000, "c" * 5000)
    ua, client = store.db.execute("SELECT user_agent, client FROM ui_sessions").fetchone()
    assert (len(ua), len(client)) == (200, 64)


def test_media_signatures_are_per_session_and_path_and_survive_a_restart(store: Store) -> None:
    auth = Auth(store, "secret")
    sig = auth.media_sig("session-a", "/api/ui/events/ev-1/clip")
    assert len(sig) == 32 and int(sig, 16) >= 0
    assert Auth(store, "secret").media_sig("session-a", "/api/ui/events/ev-1/clip") == sig  # a restart
    assert auth.media_sig("session-b", "/api/ui/events/ev-1/clip") != sig
    assert auth.media_sig("session-a", "/api/ui/events/ev-1/snapshot") != sig
    assert Auth(store, "other secret").media_sig("session-a", "/api/ui/events/ev-1/clip") != sig


# -- over HTTPS: the real hub in this process ----------------------------------------------------------------------


def _one_event(runtime: HubRuntime) -> None:
    """One finished event with its clip, snapshot and thumbnail (served as they are: their bytes are not looked
    at)."""
    day = runtime.data.clips_dir / CAM / "2024-05-01"
    day.mkdir(parents=True)
    for name in ("ev-1.mp4", "ev-1.jpg", "ev-1.thumb.jpg"):
        (day / name).write_bytes(name.encode() * 10)
    runtime.store.ensure_static_camera(CAM, "Front door", "file")
    rel = f"{CAM}/2024-05-01/ev-1"
    runtime.store.insert_event({"id": EVENT, "camera_id": CAM, "triggers": ["motion"], "status": "complete",
                                "start": time.time() - 60, "end": time.time() - 57, "clip_duration_s": 3.0,
                                "clip_path": f"{rel}.mp4", "snapshot_path": f"{rel}.jpg",
                                "thumb_path": f"{rel}.thumb.jpg"})


@pytest_asyncio.fixture
async def live_hub(tmp_path: Path) -> AsyncIterator[LiveHub]:
    async with running_hub(tmp_path, seed=_one_event) as hub:
        yield hub


async def test_log_in_sets_a_hardened_cookie_and_hands_out_the_key_only_then(live_hub: LiveHub) -> None:
    async with live_hub.client() as c:
        assert (await c.get("/api/ui/session")).status_code == 401
        r = await c.post("/api/ui/login", json={"secret": live_hub.secret})
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        body = r.json()
        assert body["ok"] is True and len(body["csrf"]) >= 32
        assert body["expires_at"] == live_hub.clock.now + SESSION_TTL_S
        cookie = r.headers["set-cookie"]
        parts = {p.strip().split("=")[0].lower(): p.strip() for p in cookie.split(";")}
        assert {"httponly", "secure"} <= set(parts), cookie
        assert parts["samesite"] == "SameSite=Strict" and parts["path"] == "Path=/"
        assert parts["max-age"] == f"Max-Age={SESSION_TTL_S}"
        me = await c.get("/api/ui/session", headers={"X-CSRF-Token": body["csrf"]})
        assert me.status_code == 200 and me.headers["cache-control"] == "no-store"
        assert me.json()["authenticated"] is True and "csrf" not in me.json()  # the key: at log-in only
        assert me.json()["expires_at"] == body["expires_at"]
    # the session's row says which browser and address logged in (for whoever looks at the database)
    rows = live_hub.runtime.store.db.execute("SELECT user_agent, client FROM ui_sessions").fetchall()
    assert [(ua.split("/")[0], client) for ua, client in rows] == [("python-httpx", "127.0.0.1")]


async def test_a_secret_that_is_not_a_string_is_a_wrong_guess(live_hub: LiveHub) -> None:
    async with live_hub.client("127.0.0.6") as c:
        for wrong in (123, None, [live_hub.secret], {"s": live_hub.secret}):
            r = await c.post("/api/ui/login", json={"secret": wrong})
            assert r.status_code == 401 and "set-cookie" not in r.headers, r.text
        r = await c.post("/api/ui/login", json={})
        assert r.status_code == 401
        # five wrong guesses: the next one waits, whatever it is
        assert (await c.post("/api/ui/login", json={"secret": live_hub.secret})).status_code == 429


async def test_the_cookie_without_the_page_key_reads_and_changes_nothing(live_hub: LiveHub) -> None:
    async with live_hub.client() as c:
        key = await log_in(c, live_hub.secret)
        for method, path in [("GET", "/api/ui/session"), ("GET", "/api/ui/cameras"), ("POST", "/api/ui/arm"),
                             ("GET", f"/api/ui/events/{EVENT}/clip"), ("GET", f"/api/ui/events/{EVENT}/thumb"),
                             ("POST", "/api/ui/logout")]:
            for headers in ({}, {"X-CSRF-Token": ""}, {"X-CSRF-Token": "x" + key["X-CSRF-Token"]}):
                r = await c.request(method, path, headers=headers, json={"armed": False})
                assert r.status_code == 403, (method, path, headers, r.status_code)
        assert (await c.get("/api/ui/arm", headers=key)).json()["armed"] is True  # nothing was disarmed
        assert (await c.get("/api/ui/session", headers=key)).status_code == 200  # nor logged out


async def test_state_changes_from_another_origin_are_refused(live_hub: LiveHub) -> None:
    port = live_hub.base.rsplit(":", 1)[1]
    async with live_hub.client() as c:
        key = await log_in(c, live_hub.secret)
        for origin in ("https://evil.example", "null", f"http://{HOST}:{port}", f"https://{HOST}:1",
                       f"https://{HOST}"):
            r = await c.post("/api/ui/arm", json={"armed": False}, headers={**key, "Origin": origin})
            assert r.status_code == 403 and "cross-site" in r.json()["error"], origin
            login = await c.post("/api/ui/login", json={"secret": live_hub.secret}, headers={"Origin": origin})
            assert login.status_code == 403 and "set-cookie" not in login.headers, origin
        # reads may carry a foreign Origin (the key in the header already proves the page)
        assert (await c.get("/api/ui/arm", headers={**key, "Origin": "https://evil.example"})).status_code == 200
        assert (await c.get("/api/ui/arm", headers=key)).json()["armed"] is True
        # the hub's own origin (any case of the host), or none (a non-browser client), may change things
        same = await c.post("/api/ui/arm", json={"armed": False},
                            headers={**key, "Origin": f"HTTPS://{HOST}:{port}".replace("HTTPS", "https")})
        assert same.status_code == 200 and same.json()["hub_armed"] is False
        assert (await c.post("/api/ui/arm", json={"armed": True}, headers=key)).status_code == 200


async def test_media_urls_load_with_the_cookie_alone_only_for_their_own_path_and_session(live_hub: LiveHub) -> None:
    async with live_hub.client() as c, live_hub.client() as other:
        key = await log_in(c, live_hub.secret)
        other_key = await log_in(other, live_hub.secret)
        ev = (await c.get(f"/api/ui/events/{EVENT}", headers=key)).json()
        assert ev["clip_url"].startswith(f"/api/ui/events/{EVENT}/clip?sig=")
        assert ev["download_url"].startswith(f"/api/ui/events/{EVENT}/clip?download=1&sig=")
        clip = await c.get(ev["clip_url"])  # what <video src> does: the cookie, no header
        assert clip.status_code == 200 and clip.content == b"ev-1.mp4" * 10
        assert (await c.get(ev["download_url"])).headers["content-disposition"].startswith("attachment")
        assert (await c.get(ev["thumb_url"])).status_code == 200
        sig = ev["clip_url"].split("sig=")[1]
        assert (await c.get(f"/api/ui/events/{EVENT}/snapshot?sig={sig}")).status_code == 403  # another file
        assert (await other.get(ev["clip_url"])).status_code == 403  # another session's URL
        assert (await other.get((await other.get(f"/api/ui/events/{EVENT}", headers=other_key)).json()["clip_url"])
                ).status_code == 200
        for bad in ("é" * 8, sig + "0" * 40, sig[:-1], ""):  # never a 500, never a pass
            r = await c.get(f"/api/ui/events/{EVENT}/clip", params={"sig": bad})
            assert r.status_code == 403, bad
        # a signed URL is for loading media, not for anything else the session could do, even signed for it
        assert (await c.get(f"/api/ui/events/{EVENT}?sig={sig}")).status_code == 403
        id_hash = hashlib.sha256(dict(c.cookies)["pw_session"].encode()).hexdigest()
        for path in ("/api/ui/arm", f"/api/ui/events/{EVENT}"):
            signed = live_hub.runtime.web[SESSION_KEY].media_sig(id_hash, path)
            assert (await c.get(path, params={"sig": signed})).status_code == 403, path
        # no cookie: no session; and the URL dies with its session
        async with live_hub.client() as nobody:
            assert (await nobody.get(ev["clip_url"])).status_code == 401
        sid = dict(c.cookies)["pw_session"]
        assert (await c.post("/api/ui/logout", headers=key)).status_code == 200
        async with live_hub.client(cookies={"pw_session": sid}) as replay:
            assert (await replay.get(ev["clip_url"])).status_code == 401


async def test_the_bearer_token_needs_no_key_and_gets_unsigned_urls(live_hub: LiveHub) -> None:
    async with live_hub.client() as c:
        ev = (await c.get(f"/api/ui/events/{EVENT}", headers=live_hub.admin)).json()
        assert ev["clip_url"] == f"/api/ui/events/{EVENT}/clip"  # no cookie session: nothing to sign for
        assert ev["download_url"] == f"/api/ui/events/{EVENT}/clip?download=1"
        assert (await c.get(ev["clip_url"], headers=live_hub.admin)).status_code == 200
        armed = await c.post("/api/ui/arm", json={"armed": False},
                             headers={**live_hub.admin, "Origin": "https://evil.example"})  # no ambient credential
        assert armed.status_code == 200 and armed.json()["hub_armed"] is False
        assert (await c.post("/api/ui/logout", headers=live_hub.admin)).status_code == 200
        assert (await c.get("/api/ui/arm", headers=live_hub.admin)).status_code == 200  # nothing was ended
        wrong = await c.get("/api/ui/arm", headers={"Authorization": "Bearer not-the-secret"})
        assert wrong.status_code == 401 and "admin secret" in wrong.json()["error"]
    async with httpx.AsyncClient(base_url=live_hub.http, timeout=10) as cli:  # the CLI's port
        assert (await cli.get("/api/ui/arm", headers=live_hub.admin)).json()["armed"] is False


async def test_wrong_bearer_tokens_count_as_wrong_secrets_and_a_right_one_clears_them(live_hub: LiveHub) -> None:
    async with live_hub.client("127.0.0.7") as c:
        bad = {"Authorization": "Bearer guess"}
        for _ in range(FREE_FAILURES - 1):
            assert (await c.get("/api/ui/arm", headers=bad)).status_code == 401
        assert (await c.get("/api/ui/arm", headers=live_hub.admin)).status_code == 200
        for _ in range(FREE_FAILURES - 1):  # free guesses again
            assert (await c.get("/api/ui/arm", headers=bad)).status_code == 401
        assert (await c.get("/api/ui/arm", headers=live_hub.admin)).status_code == 200
        for _ in range(FREE_FAILURES):  # each wrong token counts as a wrong secret: the fifth locks
            assert (await c.get("/api/ui/arm", headers=bad)).status_code == 401
        locked = await c.get("/api/ui/arm", headers=live_hub.admin)
        assert locked.status_code == 429 and locked.headers["Retry-After"] == "1"


async def test_the_wait_is_rounded_up_to_whole_seconds(live_hub: LiveHub) -> None:
    async with live_hub.client("127.0.0.8") as c:
        wrong = {"secret": "not it"}
        for _ in range(FREE_FAILURES):  # the last of these locks for 1 s
            assert (await c.post("/api/ui/login", json=wrong)).status_code == 401
        live_hub.clock.advance(1)
        assert (await c.post("/api/ui/login", json=wrong)).status_code == 401  # a 2 s lock from here
        live_hub.clock.advance(0.5)
        locked = await c.post("/api/ui/login", json=wrong)
        assert locked.status_code == 429 and locked.headers["Retry-After"] == "2"  # 1.5 s left
        assert "try again in 2 s" in locked.json()["error"]
        live_hub.clock.advance(1.25)
        assert (await c.post("/api/ui/login", json=wrong)).headers["Retry-After"] == "1"  # 0.25 s left


async def test_guesses_from_many_addresses_lock_the_lan_but_not_the_cli(live_hub: LiveHub) -> None:
    for i in range(GLOBAL_BURST):  # one wrong secret from each of 20 addresses: never a per-address lock
        async with live_hub.client(f"127.0.0.{10 + i}") as c:
            assert (await c.post("/api/ui/login", json={"secret": f"guess-{i}"})).status_code == 401
    async with live_hub.client("127.0.0.99") as c:
        locked = await c.post("/api/ui/login", json={"secret": live_hub.secret})
        assert locked.status_code == 429 and locked.headers["Retry-After"] == str(int(GLOBAL_REFILL_S))
        bearer = await c.get("/api/ui/arm", headers=live_hub.admin)  # the same secret, the same bucket
        assert bearer.status_code == 429
        # the loopback HTTP port has a bucket of its own
        async with httpx.AsyncClient(base_url=live_hub.http, timeout=10) as cli:
            assert (await cli.get("/api/admin/cameras", headers=live_hub.admin)).status_code == 200
        live_hub.clock.advance(GLOBAL_REFILL_S)  # one guess came back
        await log_in(c, live_hub.secret)


async def test_the_websocket_takes_the_key_as_a_subprotocol_and_closes_at_log_out(live_hub: LiveHub) -> None:
    async with live_hub.client() as c:
        key = await log_in(c, live_hub.secret)
        sid = dict(c.cookies)["pw_session"]
        url = live_hub.base.replace("https", "wss") + "/api/ui/ws"
        protocols = ("pingwatch", f"key.{key['X-CSRF-Token']}")
        async with aiohttp.ClientSession(cookies={"pw_session": sid}) as http:
            for origin, protos in [("https://evil.example", protocols), (live_hub.base, ("pingwatch",)),
                                   (live_hub.base, ("pingwatch", "key.wrong")),
                                   (live_hub.base, ("pingwatch", key["X-CSRF-Token"]))]:
                with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
                    await http.ws_connect(url, ssl=live_hub.ctx, origin=origin, protocols=protos)
                assert exc.value.status == 403, (origin, protos)
            async with http.ws_connect(url, ssl=live_hub.ctx, origin=live_hub.base,
                                       protocols=(f"key.{key['X-CSRF-Token']}", "pingwatch")) as ws:
                assert ws.protocol == "pingwatch"
                assert (await asyncio.wait_for(ws.receive_json(), 10))["topic"] == "ui.hello"
                out = await c.post("/api/ui/logout", headers=key)
                assert out.status_code == 200 and out.headers["clear-site-data"] == '"cache"'
                closed = await asyncio.wait_for(ws.receive(), 10)
                assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == aiohttp.WSCloseCode.POLICY_VIOLATION
        # the key only on the WebSocket's path: elsewhere the subprotocol header is no key
        async with live_hub.client() as again:
            key2 = await log_in(again, live_hub.secret)
            r = await again.get("/api/ui/arm", headers={"Sec-WebSocket-Protocol": f"key.{key2['X-CSRF-Token']}"})
            assert r.status_code == 403


async def test_logging_out_ends_the_session_for_good(live_hub: LiveHub) -> None:
    async with live_hub.client() as c, live_hub.client() as other:
        key = await log_in(c, live_hub.secret)
        other_key = await log_in(other, live_hub.secret)
        sid = dict(c.cookies)["pw_session"]
        out = await c.post("/api/ui/logout", headers=key)
        assert out.status_code == 200 and out.json() == {"ok": True}
        dropped = out.headers["set-cookie"]
        assert dropped.startswith("pw_session=") and "Path=/" in dropped and "Max-Age=0" in dropped
        # the clearing cookie carries the same flags as the one it replaces (no script-readable cookie, ever)
        assert "HttpOnly" in dropped and "SameSite=Strict" in dropped
        async with live_hub.client(cookies={"pw_session": sid}) as replay:  # the old cookie and key, replayed
            r = await replay.get("/api/ui/session", headers=key)
            assert r.status_code == 401 and "log in" in r.json()["hint"]
        assert (await other.get("/api/ui/session", headers=other_key)).status_code == 200  # only that one ended


async def test_a_cookie_of_bytes_that_are_not_text_is_no_session(live_hub: LiveHub) -> None:
    async with live_hub.client() as c:
        for raw in (b"pw_session=\xff\xfe\xfd", b"pw_session=" + b"a" * 200, b"pw_session="):
            r = await c.get("/api/ui/session", headers={"Cookie": raw})  # type: ignore[dict-item]
            assert r.status_code == 401 and r.json()["error"] == "not logged in", (raw, r.status_code)
