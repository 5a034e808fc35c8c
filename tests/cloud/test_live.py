"""The live channel (GET /api/v1/live): authentication by first message, every change of the account pushed in
order, resume after a cursor without gap or duplicate, tenant isolation, limits, and fan-out across two API
processes on one PostgreSQL database (LISTEN/NOTIFY). Real API, real database, real Azurite."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest

from cloud.api import changes
from cloud.api.web import live
from tests.cloud.conftest import ApiFactory, Clip, CloudApi, HubSession

WAIT_S = 20.0  # a generous bound on each awaited message, not a timing assertion


def jpeg_b64() -> str:
    img = np.full((48, 64, 3), (40, 90, 160), np.uint8)
    return base64.b64encode(cv2.imencode(".jpg", img)[1].tobytes()).decode()


class Live:
    """A page's socket: opened, authenticated, reading messages."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session = session
        self.ws = ws
        self.hello: dict[str, Any] = {}
        self.seen: list[dict[str, Any]] = []

    async def next(self) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=WAIT_S)
        assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
        data = json.loads(msg.data)
        self.seen.append(data)
        return data

    async def until(self, pred: Any) -> list[dict[str, Any]]:
        """Messages up to and including the first that satisfies `pred`."""
        got = []
        while True:
            m = await self.next()
            got.append(m)
            if pred(m):
                return got

    async def closed(self) -> tuple[int | None, str]:
        msg = await self.ws.receive(timeout=WAIT_S)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), (msg.type, msg.data)
        return self.ws.close_code, str(msg.extra or "")

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


async def connect(api: CloudApi, first: str | None) -> Live:
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(api.base_url + live.LIVE_PATH, autoclose=False, autoping=True)
    if first is not None:
        await ws.send_str(first)
    return Live(session, ws)


async def open_live(api: CloudApi, token: str, after: int | None = None) -> Live:
    sock = await connect(api, json.dumps({"token": token, "after": after}))
    sock.hello = await sock.next()
    assert sock.hello["type"] == "hello" and isinstance(sock.hello["cursor"], int)
    return sock


def event_msg(event_id: str, state: str | None = None) -> Any:
    return lambda m: m["type"] == "event" and m["event"]["id"] == event_id and (state is None
                                                                                 or m["event"]["state"] == state)


async def drive_to_done(api: CloudApi, event_id: str, hub: HubSession) -> None:
    r = await api.finalize(hub, event_id)
    assert r.status_code == 200 and r.json()["state"] == "queued", r.text
    item = await api.services.worker.start(event_id)
    assert item is not None
    assert await api.services.worker.complete(event_id, {"person": 0.91},
                                              {"text": "A person walks to the door.", "notify": True})


async def test_refuses_bad_token_bad_message_and_silence(api: CloudApi, monkeypatch: pytest.MonkeyPatch) -> None:
    sock = await connect(api, json.dumps({"token": "pwu_not-a-real-token", "after": None}))
    code, reason = await sock.closed()
    assert code == live.CLOSE_UNAUTHENTICATED and "token" in reason
    await sock.close()

    for bad in ("not json", json.dumps({"token": "x y"}), json.dumps({"tokn": "abc"}), json.dumps([1, 2])):
        sock = await connect(api, bad)
        code, _ = await sock.closed()
        assert code == live.CLOSE_BAD_MESSAGE, bad
        await sock.close()

    monkeypatch.setattr(live, "AUTH_TIMEOUT_S", 0.3)
    sock = await connect(api, None)  # says nothing
    code, reason = await sock.closed()
    assert code == live.CLOSE_UNAUTHENTICATED and "in time" in reason
    await sock.close()

    sock = await connect(api, "x" * (live.MAX_MESSAGE_BYTES + 10))
    code, _ = await sock.closed()
    assert code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    await sock.close()

    # A plain GET (no upgrade) is a clear 400, not a 500.
    r = await api.http.get(live.LIVE_PATH)
    assert r.status_code == 400 and r.json()["reason"] == "websocket_expected"


async def test_event_moves_through_its_states_in_order(api: CloudApi, mp4_clip: Clip) -> None:
    hub = await api.hub(cameras=("front",))
    sock = await open_live(api, hub.user.token)
    try:
        ev = await api.uploaded_event(hub, mp4_clip)
        await drive_to_done(api, ev["id"], hub)
        got = await sock.until(event_msg(ev["id"], "done"))
        mine = [m for m in got if m["type"] == "event" and m["event"]["id"] == ev["id"]]
        assert [m["event"]["state"] for m in mine] == ["uploading", "queued", "processing", "done"]
        cursors = [m["cursor"] for m in got]
        assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
        assert all(c > sock.hello["cursor"] for c in cursors)
        done = mine[-1]["event"]
        assert done["labels"] == ["person"] and done["summary"] == "A person walks to the door."
        assert done["camera_name"] == "Front" and done["camera_id"] == hub.cameras["front"]
        assert done["hub_event_id"].startswith("ev-") and done["state"] == "done"
    finally:
        await sock.close()


async def test_event_start_hub_state_and_thumbnail(api: CloudApi, mp4_clip: Clip) -> None:
    hub = await api.hub(cameras=("front", "yard"))
    sock = await open_live(api, hub.user.token)
    try:
        started = datetime.now(UTC).isoformat()
        r = await api.http.post("/api/v1/hub/event-starts", headers=hub.headers, json={
            "event_id": "ev-start-1", "camera_id": "yard", "started_at": started, "trigger": "motion",
            "snapshot_jpeg": jpeg_b64()})
        assert r.status_code == 201, r.text
        [m] = [x for x in await sock.until(lambda m: m["type"] == "event_started")]
        s = m["event_start"]
        assert s["hub_event_id"] == "ev-start-1" and s["camera_name"] == "Yard" and s["late"] is False
        async with aiohttp.ClientSession() as http:  # the thumbnail is a working read SAS
            async with http.get(s["thumbnail_url"]) as resp:
                assert resp.status == 200 and (await resp.read())[:2] == b"\xff\xd8"

        # the event's card uses the start's snapshot until the worker has its own
        ev = await api.uploaded_event(hub, mp4_clip, event_id="ev-start-1", camera_id="yard")
        [card] = [x for x in await sock.until(event_msg(ev["id"], "uploading"))
                  if x["type"] == "event"]
        assert card["event"]["thumbnail_url"].split("?")[0] == s["thumbnail_url"].split("?")[0]

        r = await api.http.put("/api/v1/hub/state", headers=hub.headers, json={
            "armed": False, "disarmed_until": None, "cameras": [{"id": "front", "online": True},
                                                                {"id": "yard", "online": False}]})
        assert r.status_code == 204, r.text
        [h] = [x for x in await sock.until(lambda m: m["type"] == "hub")]
        assert h["hub"]["id"] == hub.hub_id and h["hub"]["armed"] is False
        assert {c["name"]: c["online"] for c in h["hub"]["cameras"]} == {"Front": True, "Yard": False}
    finally:
        await sock.close()


async def test_resume_after_a_cursor_has_no_gap_and_no_duplicate(api: CloudApi, mp4_clip: Clip) -> None:
    hub = await api.hub()
    sock = await open_live(api, hub.user.token)
    ev = await api.uploaded_event(hub, mp4_clip)
    r = await api.finalize(hub, ev["id"])
    assert r.status_code == 200, r.text
    got = await sock.until(event_msg(ev["id"], "queued"))
    cursor = got[-1]["cursor"]
    await sock.close()

    # Missed while away: processing and done, and a second event's upload.
    assert await api.services.worker.start(ev["id"]) is not None
    assert await api.services.worker.complete(ev["id"], {"car": 0.8}, {"text": "A car."})
    ev2 = await api.uploaded_event(hub, mp4_clip)

    sock = await open_live(api, hub.user.token, after=cursor)
    try:
        assert sock.hello["cursor"] == cursor
        got = await sock.until(event_msg(ev2["id"], "uploading"))
        # ... then live ones, after the replay, without a seam
        await drive_to_done(api, ev2["id"], hub)
        got += await sock.until(event_msg(ev2["id"], "done"))
        events = [(m["event"]["id"], m["event"]["state"]) for m in got if m["type"] == "event"]
        assert events == [(ev["id"], "processing"), (ev["id"], "done"), (ev2["id"], "uploading"),
                          (ev2["id"], "queued"), (ev2["id"], "processing"), (ev2["id"], "done")]
        # Cursors never go back; replayed messages keep the resume point, live ones move it on.
        cursors = [m["cursor"] for m in got]
        assert cursors == sorted(cursors) and cursors[0] >= cursor and cursors[-1] > cursor
    finally:
        await sock.close()


async def test_another_accounts_changes_never_arrive(api: CloudApi, mp4_clip: Clip) -> None:
    mine = await api.hub()
    theirs = await api.hub()
    sock = await open_live(api, mine.user.token)
    spy = await open_live(api, theirs.user.token)
    try:
        other = await api.uploaded_event(theirs, mp4_clip)
        await drive_to_done(api, other["id"], theirs)
        await spy.until(event_msg(other["id"], "done"))  # it was delivered to its own account
        own = await api.uploaded_event(mine, mp4_clip)
        # Changes arrive in id order, so anything of theirs (written earlier) would come before this one.
        got = await sock.until(event_msg(own["id"], "uploading"))
        assert all(m["type"] == "event" and m["event"]["id"] == own["id"] for m in got), got
        assert not any(m.get("event", {}).get("id") == own["id"] for m in spy.seen)
        # Resuming with a cursor from before their changes replays only mine.
        again = await open_live(api, mine.user.token, after=sock.hello["cursor"])
        replay = await again.until(event_msg(own["id"], "uploading"))
        assert [m["event"]["id"] for m in replay] == [own["id"]]
        await again.close()
    finally:
        await sock.close()
        await spy.close()


async def test_per_account_cap_overflow_reload_and_logout(api: CloudApi, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = await api.hub()
    monkeypatch.setattr(live, "MAX_PER_ACCOUNT", 2)
    a = await open_live(api, hub.user.token)
    b = await open_live(api, hub.user.token)
    c = await connect(api, json.dumps({"token": hub.user.token, "after": None}))
    code, reason = await c.closed()
    assert code == live.CLOSE_TOO_MANY and "too many" in reason
    await c.close()
    await b.close()

    # A page that falls behind (its queue overflows) is told to reload, not silently skipped.
    monkeypatch.setattr(live, "MAX_PENDING", 2)
    slow = await open_live(api, hub.user.token)

    def burst(conn: Any) -> None:
        for _ in range(6):
            changes.record(conn, account_id=hub.user.account_id, kind=changes.HUB_STATE,
                           at=api.clock(), subject_id=hub.hub_id)

    await api.services.ctx.db.tx(burst)
    api.runner.app[live.CHANNEL_KEY].feed.wake()
    while True:
        msg = await slow.ws.receive(timeout=WAIT_S)
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
    assert slow.ws.close_code == live.CLOSE_RELOAD and msg.extra == "reload"
    await slow.close()

    # Logging out closes the page's socket once the token is re-checked.
    monkeypatch.setattr(live, "RECHECK_TOKEN_S", 0.2)
    d = await open_live(api, hub.user.token)
    r = await api.http.post("/api/v1/auth/logout", headers=hub.user.headers)
    assert r.status_code == 204
    code, _ = await d.closed()
    assert code == live.CLOSE_UNAUTHENTICATED
    await d.close()
    await a.close()


# PostgreSQL only: SQLite runs one API process; fan-out across processes is PostgreSQL's (LISTEN/NOTIFY).
@pytest.mark.parametrize("cloud_db_url", ["postgres"], indirect=True)
async def test_two_api_processes_on_postgres(api_factory: ApiFactory, cloud_db_url: str, mp4_clip: Clip) -> None:
    assert cloud_db_url.startswith("postgresql")
    api_a = await api_factory()
    api_b = await api_factory()
    feed_b = api_b.runner.app[live.CHANNEL_KEY].feed
    await feed_b.wait_listening()
    hub = await api_a.hub()
    sock = await open_live(api_b, hub.user.token)
    try:
        ev = await api_a.uploaded_event(hub, mp4_clip)  # written through A ...
        await drive_to_done(api_a, ev["id"], hub)
        got = await sock.until(event_msg(ev["id"], "done"))  # ... pushed by B
        states = [m["event"]["state"] for m in got if m["type"] == "event"]
        assert states == ["uploading", "queued", "processing", "done"]
        assert feed_b.listening
    finally:
        await sock.close()


async def test_a_resume_from_before_what_retention_kept_is_told_to_reload(api: CloudApi) -> None:
    hub = await api.hub()

    def one(conn: Any) -> None:
        changes.record(conn, account_id=hub.user.account_id, kind=changes.HUB_STATE, at=api.clock(),
                       subject_id=hub.hub_id)

    await api.services.ctx.db.tx(one)
    api.clock.advance(days=3)
    await api.services.retention.run_once()  # every change so far is older than two days now
    await api.services.ctx.db.tx(one)
    c = await connect(api, json.dumps({"token": hub.user.token, "after": 0}))
    code, reason = await c.closed()
    assert code == live.CLOSE_RELOAD and reason == "reload"
    await c.close()
