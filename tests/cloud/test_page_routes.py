"""The cloud page's own routes: timeline cards with thumbnails (GET /api/v1/page/events) and credits used per day
(GET /api/v1/account/usage). Real API, real database (SQLite and PostgreSQL), real Azurite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from tests.cloud.conftest import Clip, CloudApi
from tests.cloud.test_live import jpeg_b64


def path_of(url: str | None) -> str:
    assert url is not None
    return url.split("?", 1)[0]


async def fetch(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.read()


async def test_usage_per_day(api: CloudApi, mp4_clip: Clip) -> None:
    hub = await api.hub()
    api.clock.advance(days=-2)  # one event charged two days ago ...
    ev = await api.uploaded_event(hub, mp4_clip)
    assert (await api.finalize(hub, ev["id"])).status_code == 200
    api.clock.advance(days=2)  # ... two today, one of them refunded (the worker failed it)
    for fail in (False, True):
        ev = await api.uploaded_event(hub, mp4_clip)
        assert (await api.finalize(hub, ev["id"])).status_code == 200
        if fail:
            assert await api.services.worker.fail(ev["id"], "poison", refund=True)

    r = await api.http.get("/api/v1/account/usage", params={"days": 3}, headers=hub.user.headers)
    assert r.status_code == 200, r.text
    u = r.json()
    today = api.clock().astimezone(UTC).date()
    assert [d["day"] for d in u["days"]] == [(today - timedelta(days=i)).isoformat() for i in (2, 1, 0)]
    assert [(d["charged"], d["refunded"], d["used"]) for d in u["days"]] == [(1, 0, 1), (0, 0, 0), (2, 1, 1)]
    assert u["plan"] == "free" and u["granted"] == u["monthly_credits"] == 360
    this_month = sum(d["used"] for d in u["days"] if d["day"].startswith(u["period"]))
    assert u["used"] == this_month and u["left"] == u["granted"] - u["used"]

    r = await api.http.get("/api/v1/account/usage", headers=hub.user.headers)  # default: 30 days
    assert r.status_code == 200 and len(r.json()["days"]) == 30

    # Another account's usage is its own.
    other = await api.account()
    r = await api.http.get("/api/v1/account/usage", params={"days": 3}, headers=other.headers)
    assert r.status_code == 200 and all(d["used"] == 0 for d in r.json()["days"]) and r.json()["used"] == 0


@pytest.mark.parametrize("query", ["days=0", "days=367", "days=abc", "days=1&days=2", "weeks=2", "days=1.5"])
async def test_usage_bad_input_is_400(api: CloudApi, query: str) -> None:
    user = await api.account()
    r = await api.http.get(f"/api/v1/account/usage?{query}", headers=user.headers)
    assert r.status_code == 400, r.text
    assert set(r.json()) >= {"error", "hint", "reason"}


async def test_page_routes_need_a_user(api: CloudApi) -> None:
    for path in ("/api/v1/account/usage", "/api/v1/page/events"):
        r = await api.http.get(path)
        assert r.status_code == 401 and r.json()["reason"] == "missing_token"


async def test_timeline_cards_with_thumbnails(api: CloudApi, mp4_clip: Clip) -> None:
    hub = await api.hub(cameras=("front", "yard"))
    h = hub.user.headers
    started = datetime.now(UTC).replace(microsecond=0)
    # A: the hub reported the start with a snapshot, then the clip; still queued -> the start's snapshot.
    r = await api.http.post("/api/v1/hub/event-starts", headers=hub.headers, json={
        "event_id": "ev-a", "camera_id": "yard", "started_at": started.isoformat(), "trigger": "motion",
        "snapshot_jpeg": jpeg_b64()})
    assert r.status_code == 201, r.text
    a = await api.uploaded_event(hub, mp4_clip, event_id="ev-a", camera_id="yard")
    assert (await api.finalize(hub, a["id"])).status_code == 200
    # B: done, with the worker's own snapshot -> the worker's.
    b = await api.uploaded_event(hub, mp4_clip, event_id="ev-b")
    assert (await api.finalize(hub, b["id"])).status_code == 200
    assert await api.services.worker.start(b["id"]) is not None
    snap = f"{hub.user.account_id}/{hub.hub_id}/snap-b.jpg"
    await api.services.ctx.blobs.put(snap, bytes.fromhex("ffd8ffe0") + b"worker", "image/jpeg")
    assert await api.services.worker.complete(b["id"], {"person": 0.9, "dog": 0.5}, {"text": "A person and a dog."},
                                              snapshot_blob=snap)
    # C: no snapshot anywhere -> none.
    c = await api.uploaded_event(hub, mp4_clip, event_id="ev-c")

    r = await api.http.get("/api/v1/page/events", headers=h)
    assert r.status_code == 200, r.text
    cards = {e["hub_event_id"]: e for e in r.json()["events"]}
    assert set(cards) == {"ev-a", "ev-b", "ev-c"}
    assert cards["ev-a"]["state"] == "queued" and cards["ev-a"]["camera_name"] == "Yard"
    status, body = await fetch(cards["ev-a"]["thumbnail_url"])
    assert status == 200 and body[:2] == b"\xff\xd8"
    assert f"/{hub.hub_id}/starts/" in path_of(cards["ev-a"]["thumbnail_url"])
    assert path_of(cards["ev-b"]["thumbnail_url"]).endswith("/clips/" + snap)
    status, body = await fetch(cards["ev-b"]["thumbnail_url"])
    assert status == 200 and body.endswith(b"worker")
    assert cards["ev-b"]["labels"] == ["dog", "person"] and cards["ev-b"]["summary"] == "A person and a dog."
    assert cards["ev-c"]["thumbnail_url"] is None and cards["ev-c"]["state"] == "uploading"
    assert cards["ev-c"]["id"] == c["id"]

    # The same filters as /api/v1/events.
    r = await api.http.get("/api/v1/page/events", params={"state": "done"}, headers=h)
    assert [e["id"] for e in r.json()["events"]] == [b["id"]]
    r = await api.http.get("/api/v1/page/events", params={"label": "dog"}, headers=h)
    assert [e["id"] for e in r.json()["events"]] == [b["id"]]
    r = await api.http.get("/api/v1/page/events", params={"camera_id": hub.cameras["yard"]}, headers=h)
    assert [e["id"] for e in r.json()["events"]] == [a["id"]]
    r = await api.http.get("/api/v1/page/events", params={"limit": 2}, headers=h)
    page1 = r.json()
    assert len(page1["events"]) == 2 and page1["next_cursor"]
    r = await api.http.get("/api/v1/page/events", params={"limit": 2, "cursor": page1["next_cursor"]}, headers=h)
    assert len(r.json()["events"]) == 1 and r.json()["next_cursor"] is None

    # Another account sees none of it, through any filter; their event ids are 404 on the detail route.
    other = await api.account()
    for params in ({}, {"camera_id": hub.cameras["yard"]}, {"hub_id": hub.hub_id}):
        r = await api.http.get("/api/v1/page/events", params=params, headers=other.headers)
        assert r.status_code == 200 and r.json()["events"] == [], params
    r = await api.http.get(f"/api/v1/events/{a['id']}", headers=other.headers)
    assert r.status_code == 404


@pytest.mark.parametrize("query", ["state=lost", "camera_id=nope", "since=yesterday", "limit=0", "cursor=%%%",
                                   "cursor=AAAA", "colour=red"])
async def test_timeline_bad_input_is_400(api: CloudApi, query: str) -> None:
    user = await api.account()
    r = await api.http.get(f"/api/v1/page/events?{query}", headers=user.headers)
    assert r.status_code == 400, r.text
    assert set(r.json()) >= {"error", "hint", "reason"}


async def test_page_is_served_with_a_strict_policy(api: CloudApi) -> None:
    r = await api.http.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self';" in csp and "'unsafe-inline'" not in csp
    assert api.config.storage.connection_string
    blob_origin = api.config.storage.connection_string.split("BlobEndpoint=")[1].split(";")[0].rsplit("/", 1)[0]
    assert f"img-src 'self' data: {blob_origin};" in csp and f"media-src 'self' {blob_origin};" in csp
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    assert "<script" in r.text and "<script>" not in r.text and " style=" not in r.text  # nothing inline
    r = await api.http.get("/static/app.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    for bad in ("/static/../live.py", "/static/%2e%2e%2flive.py", "/static/nope.js", "/static/index.html"):
        r = await api.http.get(bad)
        assert r.status_code == 404 and r.json()["reason"] == "not_found", bad
