"""The user's timeline: newest first, cursor pages, filters, and one event's detail with short read URLs."""

from __future__ import annotations

import httpx
import pytest
from azure.storage.blob.aio import BlobClient

from cloud.storage.blob import API_VERSION
from tests.cloud.conftest import Clip, CloudApi


async def _timeline(api: CloudApi, headers: dict[str, str], **params) -> list[dict]:
    """Every page, following next_cursor."""
    out: list[dict] = []
    cursor = None
    while True:
        q = {k: v for k, v in params.items() if v is not None} | ({"cursor": cursor} if cursor else {})
        r = await api.http.get("/api/v1/events", params=q, headers=headers)
        assert r.status_code == 200, r.text
        page = r.json()
        out += page["events"]
        cursor = page["next_cursor"]
        if not cursor:
            return out


async def test_pages_filters_and_labels(api: CloudApi, mp4_clip: Clip):
    hub = await api.hub(cameras=("front", "back"))
    ids = []
    for i in range(5):
        r = await api.initiate(hub, mp4_clip, camera_id="front" if i % 2 == 0 else "back",
                               started_at=f"2026-11-0{i + 1}T12:00:00Z", ended_at=f"2026-11-0{i + 1}T12:00:03Z")
        ids.append(r.json()["id"])
    # Two share a start time: the id breaks the tie, so no page repeats or skips one.
    r = await api.initiate(hub, mp4_clip, started_at="2026-11-03T12:00:00Z", ended_at="2026-11-03T12:00:03Z")
    ids.append(r.json()["id"])
    # One goes through the worker with labels.
    ticket = await api.uploaded_event(hub, mp4_clip, started_at="2026-11-09T08:00:00Z",
                                      ended_at="2026-11-09T08:00:03Z")
    assert (await api.finalize(hub, ticket["id"])).status_code == 200
    item = await api.services.worker.start(ticket["id"])
    assert item is not None
    await api.services.worker.complete(ticket["id"], {"person": 0.81, "cat": 0.4}, {"text": "a person"})
    ids.append(ticket["id"])

    everything = await _timeline(api, hub.user.headers, limit=2)
    assert sorted(e["id"] for e in everything) == sorted(ids) and len(everything) == 7
    keys = [(e["started_at"], e["id"]) for e in everything]
    assert keys == sorted(keys, reverse=True)  # newest first, stable order

    front = await _timeline(api, hub.user.headers, camera_id=hub.cameras["front"])
    assert {e["camera_id"] for e in front} == {hub.cameras["front"]} and len(front) == 5
    assert [e["id"] for e in await _timeline(api, hub.user.headers, label="person")] == [ticket["id"]]
    assert await _timeline(api, hub.user.headers, label="dog") == []
    done = await _timeline(api, hub.user.headers, state="done")
    assert [(e["id"], e["labels"], e["summary"]) for e in done] == [(ticket["id"], ["cat", "person"],
                                                                     {"text": "a person"})]
    window = await _timeline(api, hub.user.headers, since="2026-11-02T00:00:00Z", until="2026-11-04T00:00:00Z")
    assert len(window) == 3 and all(e["started_at"].startswith(("2026-11-02", "2026-11-03")) for e in window)
    assert len(await _timeline(api, hub.user.headers, hub_id=hub.hub_id)) == 7


@pytest.mark.parametrize("params", [
    {"cursor": "!!!"}, {"cursor": "bm90LWpzb24"}, {"cursor": "WzEsMl0"}, {"limit": "0"}, {"limit": "1000"},
    {"state": "lost"}, {"since": "yesterday"}, {"since": "2026-11-01T00:00:00"}, {"hub_id": "not-a-uuid"},
    {"label": "x" * 100}, {"unknown": "1"},
])
async def test_bad_query_parameters_are_400(api: CloudApi, params):
    user = await api.account()
    r = await api.http.get("/api/v1/events", params=params, headers=user.headers)
    assert r.status_code == 400, r.text
    assert r.json()["reason"] in ("invalid_input", "invalid_cursor")


async def test_repeated_query_parameter_is_400(api: CloudApi):
    user = await api.account()
    r = await api.http.get("/api/v1/events?state=done&state=queued", headers=user.headers)
    assert r.status_code == 400


async def test_detail_has_a_short_read_url_that_plays_and_cannot_write(api: CloudApi, mp4_clip: Clip):
    hub = await api.hub()
    ticket = await api.uploaded_event(hub, mp4_clip, motion={"boxes": [[0.1, 0.2, 0.3, 0.4]]})
    r = await api.http.get(f"/api/v1/events/{ticket['id']}", headers=hub.user.headers)
    assert r.status_code == 200 and r.json()["clip_url"] is None  # still uploading: nothing to play
    await api.finalize(hub, ticket["id"])
    r = await api.http.get(f"/api/v1/events/{ticket['id']}", headers=hub.user.headers)
    detail = r.json()
    assert detail["state"] == "queued" and detail["motion"] == {"boxes": [[0.1, 0.2, 0.3, 0.4]]}
    assert "sp=r&" in detail["clip_url"] and detail["urls_expire_at"]
    async with httpx.AsyncClient() as plain:
        got = await plain.get(detail["clip_url"])
    assert got.status_code == 200 and got.content == mp4_clip.data
    client = BlobClient.from_blob_url(detail["clip_url"], api_version=API_VERSION)
    try:
        with pytest.raises(Exception) as exc:
            await client.upload_blob(b"overwrite", overwrite=True)
        assert getattr(exc.value, "status_code", None) == 403
    finally:
        await client.close()


async def test_timeline_shows_only_the_callers_events(api: CloudApi, mp4_clip: Clip):
    mine, theirs = await api.hub(), await api.hub()
    await api.initiate(mine, mp4_clip)
    await api.initiate(theirs, mp4_clip)
    mine_ids = {e["hub_id"] for e in await _timeline(api, mine.user.headers)}
    assert mine_ids == {mine.hub_id}
    assert await _timeline(api, theirs.user.headers, camera_id=mine.cameras["front"]) == []
