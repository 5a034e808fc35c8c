"""Hubs: the link flow (one-time code, poll token, hub token once), unlink, mirrored cameras, prompts, tenancy."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import sqlalchemy as sa

from cloud.api.db.schema import cameras, hub_link_codes, hubs, monitoring
from tests.cloud.conftest import CloudApi

MISSING = "00000000-0000-4000-8000-000000000000"


async def _start_link(api: CloudApi) -> dict:
    r = await api.http.post("/api/v1/hub-links", json={"hub_name": "kitchen-pi"})
    assert r.status_code == 201, r.text
    return r.json()


async def test_link_flow(api: CloudApi):
    user = await api.account()
    link = await _start_link(api)
    assert len(link["code"]) == 9 and link["code"][4] == "-" and link["poll_token"].startswith("pwp_")
    # Until the user enters the code the hub's poll is pending.
    r = await api.http.post("/api/v1/hub-links/claim", json={"poll_token": link["poll_token"]})
    assert r.status_code == 200 and r.json() == {"status": "pending", "hub_id": None, "hub_name": None,
                                                  "hub_token": None}
    # The user types it in lower case with a space instead of the dash: still the code.
    code = link["code"].lower().replace("-", " ")
    r = await api.http.post("/api/v1/hubs/link", json={"code": code, "name": "Kitchen"}, headers=user.headers)
    assert r.status_code == 201 and r.json()["name"] == "Kitchen" and r.json()["linked"] is False
    hub_id = r.json()["id"]
    r = await api.http.post("/api/v1/hub-links/claim", json={"poll_token": link["poll_token"]})
    assert r.status_code == 200
    claim = r.json()
    assert claim["status"] == "linked" and claim["hub_id"] == hub_id and claim["hub_token"].startswith("pwh_")
    # The token is given once.
    r = await api.http.post("/api/v1/hub-links/claim", json={"poll_token": link["poll_token"]})
    assert r.status_code == 410 and r.json()["reason"] == "link_claimed"
    # Stored hashed only.
    stored = await api.services.ctx.db.tx(lambda c: c.execute(
        sa.select(hubs.c.token_hash).where(hubs.c.id == hub_id)).scalar_one())
    assert stored == hashlib.sha256(claim["hub_token"].encode()).hexdigest()
    r = await api.http.get("/api/v1/hub", headers={"Authorization": f"Bearer {claim['hub_token']}"})
    assert r.status_code == 200 and r.json()["hub_id"] == hub_id and r.json()["plan"]["name"] == "free"
    r = await api.http.get("/api/v1/hubs", headers=user.headers)
    assert [h["id"] for h in r.json()["hubs"]] == [hub_id] and r.json()["hubs"][0]["linked"] is True


async def test_a_code_links_one_hub_once(api: CloudApi):
    user, other = await api.account(), await api.account()
    link = await _start_link(api)
    r = await api.http.post("/api/v1/hubs/link", json={"code": link["code"], "name": "A"}, headers=user.headers)
    assert r.status_code == 201
    r = await api.http.post("/api/v1/hubs/link", json={"code": link["code"], "name": "B"}, headers=other.headers)
    assert r.status_code == 404 and r.json()["reason"] == "link_code_invalid"
    r = await api.http.get("/api/v1/hubs", headers=other.headers)
    assert r.json()["hubs"] == []  # nothing written for the loser


async def test_expired_code_cannot_be_entered_and_the_poll_says_so(api: CloudApi):
    user = await api.account()
    link = await _start_link(api)
    api.clock.advance(seconds=api.config.auth.link_code_ttl_s + 1)
    r = await api.http.post("/api/v1/hubs/link", json={"code": link["code"], "name": "Late"}, headers=user.headers)
    assert r.status_code == 404
    r = await api.http.post("/api/v1/hub-links/claim", json={"poll_token": link["poll_token"]})
    assert r.status_code == 410 and r.json()["reason"] == "link_expired"
    r = await api.http.get("/api/v1/hubs", headers=user.headers)
    assert r.json()["hubs"] == []


async def test_link_needs_a_user_and_a_real_code(api: CloudApi):
    link = await _start_link(api)
    r = await api.http.post("/api/v1/hubs/link", json={"code": link["code"], "name": "X"})
    assert r.status_code == 401
    user = await api.account()
    r = await api.http.post("/api/v1/hubs/link", json={"code": "ZZZZ-ZZZZ", "name": "X"}, headers=user.headers)
    assert r.status_code == 404
    r = await api.http.post("/api/v1/hub-links/claim", json={"poll_token": "pwp_unknown"})
    assert r.status_code == 404 and r.json()["reason"] == "link_unknown"
    codes = await api.services.ctx.db.tx(lambda c: c.execute(
        sa.select(hub_link_codes.c.hub_id).where(hub_link_codes.c.poll_token_hash ==
                                                 hashlib.sha256(link["poll_token"].encode()).hexdigest())
    ).scalar_one())
    assert codes is None


async def test_unlink_revokes_the_hub_token(api: CloudApi, mp4_clip):
    hub = await api.hub()
    r = await api.http.delete(f"/api/v1/hubs/{hub.hub_id}", headers=hub.user.headers)
    assert r.status_code == 204
    r = await api.http.get("/api/v1/hub", headers=hub.headers)
    assert r.status_code == 401 and r.json()["reason"] == "hub_unlinked"
    assert (await api.initiate(hub, mp4_clip)).status_code == 401
    # Unlinking again is fine (idempotent); the hub is still listed, as unlinked, with its cameras.
    assert (await api.http.delete(f"/api/v1/hubs/{hub.hub_id}", headers=hub.user.headers)).status_code == 204
    listed = (await api.http.get("/api/v1/hubs", headers=hub.user.headers)).json()["hubs"]
    assert listed[0]["linked"] is False and listed[0]["cameras"][0]["hub_camera_id"] == "front"


async def test_cameras_are_mirrored(api: CloudApi):
    hub = await api.hub(cameras=("front", "garden"))
    front_id = hub.cameras["front"]
    r = await api.http.put("/api/v1/hub/cameras", headers=hub.headers,
                           json={"cameras": [{"id": "front", "name": "Front door"}, {"id": "porch", "name": "Porch"}]})
    assert r.status_code == 200
    by_id = {c["hub_camera_id"]: c for c in r.json()["cameras"]}
    assert by_id["front"]["id"] == front_id and by_id["front"]["name"] == "Front door"
    assert by_id["garden"]["removed"] is True and by_id["porch"]["removed"] is False
    # A camera that comes back keeps its cloud id.
    garden_id = by_id["garden"]["id"]
    r = await api.http.put("/api/v1/hub/cameras", headers=hub.headers,
                           json={"cameras": [{"id": "garden", "name": "Garden"}]})
    by_id = {c["hub_camera_id"]: c for c in r.json()["cameras"]}
    assert by_id["garden"]["id"] == garden_id and by_id["garden"]["removed"] is False
    r = await api.http.get("/api/v1/cameras", params={"hub_id": hub.hub_id}, headers=hub.user.headers)
    assert {c["hub_camera_id"] for c in r.json()["cameras"]} == {"front", "garden", "porch"}


async def test_bad_camera_lists_are_400_and_write_nothing(api: CloudApi):
    hub = await api.hub()
    for body in ({"cameras": [{"id": "Bad Id!", "name": "x"}]},
                 {"cameras": [{"id": "a", "name": "x"}, {"id": "a", "name": "y"}]},
                 {"cameras": [{"id": "a", "name": "nul\u0000name"}]},
                 {"cameras": [{"id": "a", "name": "x", "extra": 1}]},
                 {"cameras": "front"}):
        r = await api.http.put("/api/v1/hub/cameras", headers=hub.headers, json=body)
        assert r.status_code == 400, body
        assert r.json()["reason"] == "invalid_input" and r.json()["hint"]
    names = await api.services.ctx.db.tx(lambda c: c.execute(
        sa.select(cameras.c.hub_camera_id).where(cameras.c.hub_id == hub.hub_id)).scalars().all())
    assert names == ["front"]


async def test_prompts_for_camera_and_hub(api: CloudApi):
    hub = await api.hub()
    cam = hub.cameras["front"]
    prompt = "alert me if a person comes to the door at night"
    r = await api.http.put(f"/api/v1/cameras/{cam}/prompt", json={"prompt": prompt}, headers=hub.user.headers)
    assert r.status_code == 200 and r.json()["scope"] == "camera" and r.json()["enabled"] is True
    r = await api.http.put(f"/api/v1/cameras/{cam}/prompt", json={"prompt": "only cars", "enabled": False},
                           headers=hub.user.headers)
    assert r.json()["prompt"] == "only cars" and r.json()["enabled"] is False
    r = await api.http.put(f"/api/v1/hubs/{hub.hub_id}/prompt", json={"prompt": "packages"},
                           headers=hub.user.headers)
    assert r.status_code == 200 and r.json()["scope"] == "hub"
    listed = (await api.http.get("/api/v1/hubs", headers=hub.user.headers)).json()["hubs"][0]
    assert listed["prompt"]["prompt"] == "packages"
    assert listed["cameras"][0]["prompt"] == {**listed["cameras"][0]["prompt"], "prompt": "only cars",
                                              "enabled": False}
    rows = await api.services.ctx.db.tx(lambda c: c.execute(
        sa.select(sa.func.count()).select_from(monitoring).where(monitoring.c.hub_id == hub.hub_id)).scalar_one())
    assert rows == 2  # one per camera or hub, updated in place


async def test_a_hub_call_marks_it_seen_after_the_answer(api: CloudApi):
    hub = await api.hub()

    async def listed() -> dict:
        return (await api.http.get("/api/v1/hubs", headers=hub.user.headers)).json()["hubs"][0]

    linked_at = (await listed())["last_seen_at"]
    api.clock.advance(minutes=10)  # silent for longer than the online window
    assert (await listed())["online"] is False
    r = await api.http.put("/api/v1/hub/cameras", headers=hub.headers,
                           json={"cameras": [{"id": "front", "name": "Front"}]})
    assert r.status_code == 200, r.text
    await api.services.hubs.settle()  # written after the answer
    seen = await listed()
    assert seen["online"] is True and seen["last_seen_at"] > linked_at
    # An earlier request's late write never moves it back.
    await api.services.hubs._touch(hub.hub_id, api.services.ctx.clock() - timedelta(minutes=5))
    assert (await listed())["last_seen_at"] == seen["last_seen_at"]


async def test_another_tenants_hub_and_camera_ids_are_404_and_nothing_written(api: CloudApi):
    mine = await api.hub()
    theirs = await api.account()
    cam = mine.cameras["front"]
    attempts = [
        ("DELETE", f"/api/v1/hubs/{mine.hub_id}", None),
        ("PUT", f"/api/v1/hubs/{mine.hub_id}/prompt", {"prompt": "spy"}),
        ("PUT", f"/api/v1/cameras/{cam}/prompt", {"prompt": "spy"}),
        ("DELETE", f"/api/v1/hubs/{MISSING}", None),
        ("PUT", f"/api/v1/cameras/{MISSING}/prompt", {"prompt": "x"}),
        ("PUT", "/api/v1/cameras/not-a-uuid/prompt", {"prompt": "x"}),
    ]
    for method, path, body in attempts:
        r = await api.http.request(method, path, json=body, headers=theirs.headers)
        assert r.status_code == 404, (method, path, r.text)
    r = await api.http.get("/api/v1/cameras", params={"hub_id": mine.hub_id}, headers=theirs.headers)
    assert r.status_code == 200 and r.json()["cameras"] == []
    assert (await api.http.get("/api/v1/hubs", headers=theirs.headers)).json()["hubs"] == []
    # The owner's hub is untouched: still linked, no prompts.
    assert (await api.http.get("/api/v1/hub", headers=mine.headers)).status_code == 200
    prompts = await api.services.ctx.db.tx(lambda c: c.execute(
        sa.select(sa.func.count()).select_from(monitoring).where(monitoring.c.hub_id == mine.hub_id)).scalar_one())
    assert prompts == 0


async def test_a_hub_token_is_not_a_user_token_and_back(api: CloudApi):
    hub = await api.hub()
    assert (await api.http.get("/api/v1/hubs", headers=hub.headers)).status_code == 401
    assert (await api.http.get("/api/v1/hub", headers=hub.user.headers)).status_code == 401


async def test_link_code_requests_are_limited_per_address(api_factory):
    api = await api_factory(auth={"link_requests_per_source": 3})
    for _ in range(3):
        assert (await api.http.post("/api/v1/hub-links", json={})).status_code == 201
    r = await api.http.post("/api/v1/hub-links", json={"hub_name": "flood"})
    assert r.status_code == 429 and r.json()["reason"] == "link_rate_limited" and int(r.headers["Retry-After"]) >= 1
    other = await api.http.post("/api/v1/hub-links", json={}, headers={"X-Forwarded-For": "192.0.2.77"})
    assert other.status_code == 201  # another address is not affected
