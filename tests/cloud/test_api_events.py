"""The upload protocol against real Azurite: initiate → SAS upload with the SDK → finalize → one queue message,
one charge. Bad metadata, bad uploads, plan limits, retries."""

from __future__ import annotations

import asyncio
import os

import pytest
import sqlalchemy as sa
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.storage.blob.aio import BlobClient

from cloud.api.db.schema import accounts, credit_ledger, events
from cloud.storage.blob import API_VERSION
from cloud.storage.queue import JobQueue, QueueMessage
from tests.cloud.conftest import PASSWORD, Clip, CloudApi, HubSession, upload


async def drain(queue: JobQueue) -> list[QueueMessage]:
    out: list[QueueMessage] = []
    while batch := await queue.receive(max_messages=32, visibility_timeout_s=300):
        out += batch
    return out


async def _count_events(api: CloudApi, hub: HubSession) -> int:
    return await api.services.ctx.db.tx(lambda c: c.execute(
        sa.select(sa.func.count()).select_from(events).where(events.c.hub_id == hub.hub_id)).scalar_one())


async def _ledger(api: CloudApi, account_id: str) -> list[tuple[str, int]]:
    rows = await api.services.ctx.db.tx(lambda c: c.execute(
        sa.select(credit_ledger.c.kind, credit_ledger.c.amount).where(credit_ledger.c.account_id == account_id)
        .order_by(credit_ledger.c.id)).all())
    return [(r.kind, r.amount) for r in rows]


async def _status(coro) -> int:
    try:
        await coro
    except HttpResponseError as exc:
        return int(exc.status_code or 0)
    return 200


# -- the happy path and its retries ----------------------------------------------------------------------------


async def test_upload_and_finalize(api: CloudApi, mp4_clip: Clip):
    hub = await api.hub()
    r = await api.initiate(hub, mp4_clip)
    assert r.status_code == 201
    ticket = r.json()
    assert ticket["state"] == "uploading" and ticket["created"] is True
    assert ticket["blob"].startswith(f"{hub.user.account_id}/{hub.hub_id}/") and ticket["blob"].endswith(".mp4")
    assert "sp=cw" in ticket["upload_url"]  # create + write, no read
    await upload(ticket["upload_url"], mp4_clip.data, mp4_clip.mime)
    r = await api.finalize(hub, ticket["id"])
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["state"] == "queued" and done["credits"] == 1
    assert done["duration_s"] == pytest.approx(mp4_clip.duration_s, abs=0.2)
    messages = await drain(api.services.ctx.queue)
    assert [m.body for m in messages] == [{"event_id": ticket["id"], "v": 1}]
    assert await _ledger(api, hub.user.account_id) == [("grant", 360), ("charge", -1)]
    account = (await api.http.get("/api/v1/account", headers=hub.user.headers)).json()
    assert account["credits"]["used"] == 1 and account["credits"]["left"] == 359

    # Retries: initiate answers the same event (no new SAS needed once queued), finalize the same state;
    # nothing is charged or sent again.
    r = await api.initiate(hub, mp4_clip, event_id=(await _hub_event_id(api, ticket["id"])))
    assert r.status_code == 201 and r.json()["id"] == ticket["id"] and r.json()["created"] is False
    assert r.json()["state"] == "queued" and r.json()["upload_url"] is None
    for _ in range(2):
        r = await api.finalize(hub, ticket["id"])
        assert r.status_code == 200 and r.json()["state"] == "queued" and r.json()["credits"] == 1
    assert await drain(api.services.ctx.queue) == []
    assert await _ledger(api, hub.user.account_id) == [("grant", 360), ("charge", -1)]


async def _hub_event_id(api: CloudApi, event_id: str) -> str:
    return await api.services.ctx.db.tx(lambda c: c.execute(
        sa.select(events.c.hub_event_id).where(events.c.id == event_id)).scalar_one())


async def test_concurrent_finalizes_send_one_message_and_charge_once(api: CloudApi, mp4_clip: Clip):
    hub = await api.hub()
    ticket = await api.uploaded_event(hub, mp4_clip)
    answers = await asyncio.gather(*(api.finalize(hub, ticket["id"]) for _ in range(4)))
    assert {r.status_code for r in answers} == {200}
    assert {r.json()["state"] for r in answers} == {"queued"}
    assert len(await drain(api.services.ctx.queue)) == 1
    assert [k for k, _ in await _ledger(api, hub.user.account_id)].count("charge") == 1


async def test_finalize_waits_for_the_accounts_lock_and_then_sees_the_charge_that_held_it(api: CloudApi,
                                                                                         mp4_clip: Clip):
    """Two events of one account cannot both spend its last credits: finalize takes the account's row lock before
    it reads the balance. Here another transaction holds that lock while it spends everything; finalize must wait
    for it, then refuse (402) instead of charging from the balance it would have read before."""
    db = api.services.ctx.db
    if db.engine.dialect.name == "sqlite":
        return  # one writer: a second write transaction cannot run beside the first (the PostgreSQL run covers it)
    hub = await api.hub()
    ticket = await api.uploaded_event(hub, mp4_clip)
    account = hub.user.account_id
    spender = db.engine.connect()
    try:
        tx = spender.begin()
        spender.execute(sa.select(accounts.c.id).where(accounts.c.id == account).with_for_update())
        finalize = asyncio.create_task(api.finalize(hub, ticket["id"]))

        def finalize_waits_for_a_lock(conn: sa.Connection) -> bool:
            return conn.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )).scalar_one() > 0

        waiting = False
        for _ in range(400):  # polled, up to ~10 s: the finalize reaches its transaction after verifying the clip
            assert not finalize.done(), f"finalize did not wait for the account's lock: {finalize.result().text}"
            if waiting := await db.read(finalize_waits_for_a_lock):
                break
            await asyncio.sleep(0.025)
        assert waiting, "finalize never waited for the account's lock"
        left = sum(amount for _, amount in await _ledger(api, account))
        spender.execute(sa.insert(credit_ledger).values(
            account_id=account, kind="charge", amount=-left, period=api.clock().strftime("%Y-%m"),
            idempotency_key="test:spend-all", event_id=None, created_at=api.clock()))
        tx.commit()
    finally:
        spender.close()
    r = await finalize
    assert r.status_code == 402 and r.json()["reason"] == "no_credits", r.text
    assert [k for k, _ in await _ledger(api, account)].count("charge") == 1  # the spender's only
    state = await db.read(lambda c: c.execute(sa.select(events.c.state).where(events.c.id == ticket["id"])).scalar())
    assert state == "uploading"  # rolled back with the refused charge: it can be finalized once credits come


async def test_initiate_retry_is_idempotent_and_a_reused_id_with_another_clip_is_409(api: CloudApi, mp4_clip: Clip):
    hub = await api.hub()
    body = api.event_body(mp4_clip)
    first = await api.http.post("/api/v1/events", json=body, headers=hub.headers)
    again = await api.http.post("/api/v1/events", json=body, headers=hub.headers)
    assert first.json()["id"] == again.json()["id"] and again.json()["created"] is False
    assert again.json()["upload_url"]  # still uploading: a usable SAS for the same blob
    assert again.json()["blob"] == first.json()["blob"]
    r = await api.http.post("/api/v1/events", json={**body, "size": body["size"] + 1}, headers=hub.headers)
    assert r.status_code == 409 and r.json()["reason"] == "event_id_reused"
    assert await _count_events(api, hub) == 1


async def test_webm_clip(api: CloudApi, webm_clip: Clip):
    hub = await api.hub()
    ticket = await api.uploaded_event(hub, webm_clip)
    assert ticket["blob"].endswith(".webm")
    r = await api.finalize(hub, ticket["id"])
    assert r.status_code == 200 and r.json()["state"] == "queued"


# -- initiate validation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides,status,reason", [
    ({"mime": "video/avi"}, 400, "invalid_input"),
    ({"mime": "video/quicktime"}, 400, "invalid_input"),
    ({"camera_id": "attic"}, 404, "camera_unknown"),
    ({"size": 60 * 1024 * 1024}, 413, "size_over_plan"),
    ({"duration_s": 61}, 413, "duration_over_plan"),
    ({"duration_s": 0}, 400, "invalid_input"),
    ({"size": -1}, 400, "invalid_input"),
    ({"md5": "not-base64"}, 400, "invalid_input"),
    ({"started_at": "2026-12-01T10:00:00"}, 400, "invalid_input"),  # no time zone
    ({"ended_at": "2020-01-01T00:00:00Z"}, 400, "invalid_input"),  # before started_at
    ({"event_id": "../../etc"}, 400, "invalid_input"),
    ({"trigger": "x" * 40}, 400, "invalid_input"),
    ({"unexpected": True}, 400, "invalid_input"),
])
async def test_initiate_refusals_write_nothing(api: CloudApi, mp4_clip: Clip, overrides, status, reason):
    hub = await api.hub()
    r = await api.initiate(hub, mp4_clip, **overrides)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["reason"] == reason and body["error"] and body["hint"]
    assert await _count_events(api, hub) == 0
    assert await _ledger(api, hub.user.account_id) == []


@pytest.mark.parametrize("raw,status", [
    (b"{not json", 400),
    (b'{"event_id": "\\ud800"}', 400),  # a lone surrogate
    (b"\xff\xfe{}", 400),  # not UTF-8
    (b"[" * 5000 + b"]" * 5000, 400),  # deep nesting
    (b"[]", 400),
    (b"", 400),
    (b"x" * 70_000, 413),  # over server.max_body_bytes
])
async def test_malformed_bodies(api: CloudApi, raw, status):
    hub = await api.hub()
    r = await api.http.post("/api/v1/events", content=raw, headers={**hub.headers,
                                                                      "Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert {"error", "hint", "reason"} <= set(r.json())
    assert await _count_events(api, hub) == 0


async def test_uploads_per_hour_limit_is_429_with_retry_after(api_factory, mp4_clip: Clip):
    api = await api_factory(plans={"free": {"monthly_credits": 100, "max_uploads_per_hour": 2, "max_clip_s": 60,
                                            "max_size_bytes": 10_000_000, "retention_days": 7}})
    hub = await api.hub()
    first = api.event_body(mp4_clip)
    assert (await api.http.post("/api/v1/events", json=first, headers=hub.headers)).status_code == 201
    assert (await api.initiate(hub, mp4_clip)).status_code == 201
    r = await api.initiate(hub, mp4_clip)
    assert r.status_code == 429 and r.json()["reason"] == "uploads_per_hour"
    assert 1 <= int(r.headers["Retry-After"]) <= 3600
    # A retry of an event that exists is not a new upload: still answered.
    assert (await api.http.post("/api/v1/events", json=first, headers=hub.headers)).status_code == 201
    assert await _count_events(api, hub) == 2
    api.clock.advance(hours=1, seconds=1)
    assert (await api.initiate(hub, mp4_clip)).status_code == 201


async def test_no_credits_is_402_at_initiate_and_at_finalize(api_factory, mp4_clip: Clip):
    api = await api_factory(plans={"free": {"monthly_credits": 1, "max_uploads_per_hour": 10, "max_clip_s": 60,
                                            "max_size_bytes": 10_000_000, "retention_days": 7}})
    hub = await api.hub()
    # Two uploads started while one credit is left: both may start, only one can be charged.
    a = await api.uploaded_event(hub, mp4_clip)
    b = await api.uploaded_event(hub, mp4_clip)
    assert (await api.finalize(hub, a["id"])).status_code == 200
    r = await api.finalize(hub, b["id"])
    assert r.status_code == 402 and r.json()["reason"] == "no_credits" and int(r.headers["Retry-After"]) >= 1
    assert (await api.finalize(hub, b["id"])).status_code == 402  # stays uploading, retryable, never charged
    r = await api.initiate(hub, mp4_clip)
    assert r.status_code == 402 and int(r.headers["Retry-After"]) >= 1
    assert await _count_events(api, hub) == 2
    assert await _ledger(api, hub.user.account_id) == [("grant", 1), ("charge", -1)]
    assert len(await drain(api.services.ctx.queue)) == 1
    # Next month's grant (keyed per month, so granted once) lets the waiting event through.
    api.clock.advance(days=32)
    assert (await api.finalize(hub, b["id"])).status_code == 200
    login = await api.http.post("/api/v1/auth/login", json={"email": hub.user.email, "password": PASSWORD})
    headers = {"Authorization": f"Bearer {login.json()['token']}"}  # the old token expired meanwhile
    assert (await api.http.get("/api/v1/account", headers=headers)).json()["credits"] == {
        "period": api.clock().strftime("%Y-%m"), "granted": 1, "used": 1, "left": 0, "seconds_per_credit": 10}


async def test_paid_plan_limits(api: CloudApi, mp4_clip: Clip):
    hub = await api.hub(plan="paid")
    r = await api.initiate(hub, mp4_clip, duration_s=250)
    assert r.status_code == 201  # over the free plan's 60 s, within paid's 300 s
    me = (await api.http.get("/api/v1/account", headers=hub.user.headers)).json()
    assert me["plan"]["name"] == "paid" and me["credits"]["granted"] == 30000


# -- finalize checks -------------------------------------------------------------------------------------------


async def _state(api: CloudApi, event_id: str) -> tuple[str, str | None]:
    row = await api.services.ctx.db.tx(lambda c: c.execute(
        sa.select(events.c.state, events.c.reason).where(events.c.id == event_id)).one())
    return row.state, row.reason


async def test_finalize_before_upload_is_409(api: CloudApi, mp4_clip: Clip):
    hub = await api.hub()
    ticket = (await api.initiate(hub, mp4_clip)).json()
    r = await api.finalize(hub, ticket["id"])
    assert r.status_code == 409 and r.json()["reason"] == "blob_missing"
    assert await _state(api, ticket["id"]) == ("uploading", None)


async def test_size_mismatch_deletes_the_blob_for_a_new_upload(api: CloudApi, mp4_clip: Clip):
    hub = await api.hub()
    ticket = (await api.initiate(hub, mp4_clip)).json()
    await upload(ticket["upload_url"], mp4_clip.data[:-100], mp4_clip.mime)  # truncated on the way
    r = await api.finalize(hub, ticket["id"])
    assert r.status_code == 422 and r.json()["reason"] == "size_mismatch"
    assert await api.services.ctx.blobs.info(ticket["blob"]) is None
    assert await _state(api, ticket["id"]) == ("uploading", None)
    assert await _ledger(api, hub.user.account_id) == [("grant", 360)]  # the month's grant, no charge


async def test_corrupted_bytes_are_never_accepted_and_a_reupload_is(api: CloudApi, mp4_clip: Clip):
    hub = await api.hub()
    ticket = (await api.initiate(hub, mp4_clip)).json()
    corrupted = bytearray(mp4_clip.data)
    corrupted[len(corrupted) // 2] ^= 0xFF
    await upload(ticket["upload_url"], bytes(corrupted), mp4_clip.mime)
    r = await api.finalize(hub, ticket["id"])
    assert r.status_code == 422 and r.json()["reason"] == "md5_mismatch"
    assert await api.services.ctx.blobs.info(ticket["blob"]) is None
    assert await drain(api.services.ctx.queue) == []
    # The hub retries: a fresh SAS for the same blob, the right bytes, finalize.
    fresh = (await api.http.post(f"/api/v1/events/{ticket['id']}/upload-url", headers=hub.headers)).json()
    assert fresh["blob"] == ticket["blob"] and fresh["upload_url"]
    await upload(fresh["upload_url"], mp4_clip.data, mp4_clip.mime)
    assert (await api.finalize(hub, ticket["id"])).json()["state"] == "queued"


async def test_a_false_content_md5_property_is_left_to_the_worker(api: CloudApi, mp4_clip: Clip):
    """Put Block List stores whatever Content-MD5 the uploader sends, and finalize no longer downloads the clip
    to hash it: a hub that commits other bytes under the declared Content-MD5 gets its event queued and charged.
    The guarantee lives in the worker, which downloads every clip anyway and fails (refunding the charge) one
    whose bytes do not hash to the declared MD5 (cloud/worker/consumer.py, tests/cloud/test_worker_consumer.py).
    What a lie can buy is bounded: the size and the duration (what is charged) are still checked here."""
    hub = await api.hub()
    ticket = (await api.initiate(hub, mp4_clip)).json()
    other = bytearray(mp4_clip.data)
    other[-1] ^= 0x01
    client = BlobClient.from_blob_url(ticket["upload_url"], api_version=API_VERSION)
    try:
        await client.stage_block("YmxvY2stMA==", bytes(other))
        from azure.storage.blob import BlobBlock, ContentSettings

        await client.commit_block_list([BlobBlock("YmxvY2stMA==")], content_settings=ContentSettings(
            content_type=mp4_clip.mime, content_md5=mp4_clip.md5_raw))  # claims the declared MD5
    finally:
        await client.close()
    info = await api.services.ctx.blobs.info(ticket["blob"])
    assert info is not None and info.content_md5 == mp4_clip.md5_raw  # the property lies ...
    r = await api.finalize(hub, ticket["id"])
    assert r.status_code == 200 and r.json()["state"] == "queued"  # ... finalize takes the hub at its word
    assert await api.services.ctx.blobs.read(ticket["blob"]) == bytes(other)  # the worker gets these bytes
    assert [m.body for m in await drain(api.services.ctx.queue)] == [{"event_id": ticket["id"], "v": 1}]


async def test_duration_is_read_from_the_container(api: CloudApi, mp4_clip: Clip):
    hub = await api.hub()
    # Declared longer than it is: accepted and charged for the real length.
    ticket = await api.uploaded_event(hub, mp4_clip, duration_s=45)
    r = await api.finalize(hub, ticket["id"])
    assert r.status_code == 200 and r.json()["credits"] == 1
    assert r.json()["duration_s"] == pytest.approx(mp4_clip.duration_s, abs=0.2)
    # Declared shorter than it is (to pass the plan's checks cheaply): rejected, never charged, blob deleted.
    ticket = await api.uploaded_event(hub, mp4_clip, duration_s=1.0)
    r = await api.finalize(hub, ticket["id"])
    assert r.status_code == 422 and r.json()["reason"] == "duration_mismatch"
    assert (await _state(api, ticket["id"]))[0] == "rejected"
    assert await api.services.ctx.blobs.info(ticket["blob"]) is None
    r = await api.finalize(hub, ticket["id"])  # a retry gets the same refusal
    assert r.status_code == 422 and r.json()["reason"] == "duration_mismatch"
    assert [k for k, _ in await _ledger(api, hub.user.account_id)].count("charge") == 1


async def test_real_duration_over_the_plan_is_rejected(api_factory, long_mp4_clip: Clip):
    api = await api_factory(plans={"free": {"monthly_credits": 100, "max_uploads_per_hour": 10, "max_clip_s": 10,
                                            "max_size_bytes": 10_000_000, "retention_days": 7}})
    hub = await api.hub()
    ticket = await api.uploaded_event(hub, long_mp4_clip, duration_s=9.5)
    r = await api.finalize(hub, ticket["id"])
    assert r.status_code == 422 and r.json()["reason"] == "duration_over_plan"
    assert (await _state(api, ticket["id"]))[0] == "rejected"


async def test_not_a_video_and_wrong_container_are_rejected(api: CloudApi, mp4_clip: Clip, webm_clip: Clip):
    hub = await api.hub()
    junk = Clip(os.urandom(4096), "video/mp4", 2.0)
    ticket = await api.uploaded_event(hub, junk)
    r = await api.finalize(hub, ticket["id"])
    assert r.status_code == 422 and r.json()["reason"] == "not_media"
    disguised = Clip(webm_clip.data, "video/mp4", webm_clip.duration_s)
    ticket = await api.uploaded_event(hub, disguised)
    r = await api.finalize(hub, ticket["id"])
    assert r.status_code == 422 and r.json()["reason"] == "mime_mismatch"
    assert await _ledger(api, hub.user.account_id) == [("grant", 360)]
    assert await drain(api.services.ctx.queue) == []


# -- the SAS -------------------------------------------------------------------------------------------------


async def test_upload_sas_is_create_write_only(api: CloudApi, mp4_clip: Clip):
    hub = await api.hub()
    ticket = await api.uploaded_event(hub, mp4_clip)
    client = BlobClient.from_blob_url(ticket["upload_url"], api_version=API_VERSION)
    try:
        with pytest.raises(ResourceExistsError):  # a second create-only PUT to the same blob fails
            await client.upload_blob(b"replacement", overwrite=False)
        assert await _status(client.download_blob()) == 403  # no read
        assert await _status(client.delete_blob()) == 403  # no delete
    finally:
        await client.close()
    other = ticket["upload_url"].replace(ticket["blob"], ticket["blob"].replace(".mp4", "-other.mp4"))
    assert await _status(BlobClient.from_blob_url(other, api_version=API_VERSION).upload_blob(b"x")) == 403
    assert (await api.finalize(hub, ticket["id"])).json()["state"] == "queued"


async def test_expired_sas_is_403_and_a_fresh_one_works(api: CloudApi, mp4_clip: Clip, monkeypatch):
    import datetime as dt

    import cloud.storage.blob as blob_module

    hub = await api.hub()
    real_now = blob_module._utcnow
    # The storage module signs with its own clock; an hour behind, its 15-minute SAS is born expired.
    monkeypatch.setattr(blob_module, "_utcnow", lambda: real_now() - dt.timedelta(hours=1))
    ticket = (await api.initiate(hub, mp4_clip)).json()
    monkeypatch.setattr(blob_module, "_utcnow", real_now)
    with pytest.raises(HttpResponseError) as exc:
        await upload(ticket["upload_url"], mp4_clip.data, mp4_clip.mime)
    assert exc.value.status_code == 403
    r = await api.http.post(f"/api/v1/events/{ticket['id']}/upload-url", headers=hub.headers)
    assert r.status_code == 200 and r.json()["upload_url"] != ticket["upload_url"]
    await upload(r.json()["upload_url"], mp4_clip.data, mp4_clip.mime)
    assert (await api.finalize(hub, ticket["id"])).json()["state"] == "queued"
    r = await api.http.post(f"/api/v1/events/{ticket['id']}/upload-url", headers=hub.headers)
    assert r.status_code == 409 and r.json()["reason"] == "not_uploading"


# -- tenancy -------------------------------------------------------------------------------------------------


async def test_another_tenants_event_ids_are_404_and_nothing_written(api: CloudApi, mp4_clip: Clip):
    mine = await api.hub()
    theirs = await api.hub()
    ticket = await api.uploaded_event(mine, mp4_clip)
    for path in (f"/api/v1/events/{ticket['id']}/finalize", f"/api/v1/events/{ticket['id']}/upload-url"):
        r = await api.http.post(path, headers=theirs.headers)
        assert r.status_code == 404 and r.json()["reason"] == "event_not_found"
    r = await api.http.get(f"/api/v1/events/{ticket['id']}", headers=theirs.user.headers)
    assert r.status_code == 404
    # Their hub cannot start an event on my camera either (camera ids are per hub).
    r = await api.initiate(theirs, mp4_clip, camera_id="front")
    assert r.status_code == 201 and r.json()["blob"].startswith(theirs.user.account_id)
    assert await _state(api, ticket["id"]) == ("uploading", None)
    assert await _ledger(api, mine.user.account_id) == [("grant", 360)]  # no charge
    r = await api.http.get("/api/v1/events", params={"hub_id": mine.hub_id}, headers=theirs.user.headers)
    assert r.status_code == 200 and r.json()["events"] == []
