"""What runs after finalize: the reconciler (a queue outage never strands an event), the worker's state
transitions, retention, and their schedule."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from cloud.api.db.schema import credit_ledger, events
from cloud.api.jobs import Jobs
from cloud.storage.blob import AzureBlobStore, parse_connection_string
from tests.cloud.conftest import Clip, CloudApi, cloud_config, start_api
from tests.cloud.test_api_events import drain
from tests.harness.ports import free_port


async def _row(api: CloudApi, event_id: str):
    return await api.services.ctx.db.tx(lambda c: c.execute(sa.select(events).where(events.c.id == event_id)).first())


async def test_reconciler_sends_what_a_queue_outage_held_back(api_factory, mp4_clip: Clip):
    # An API whose queue endpoint is a closed port: a real connection refused, not a mock.
    dead = f"http://127.0.0.1:{free_port()}/devstoreaccount1"
    down = await api_factory(storage={"queue_url": dead, "retry_total": 0, "connection_timeout_s": 1})
    hub = await down.hub()
    ticket = await down.uploaded_event(hub, mp4_clip)
    r = await down.finalize(hub, ticket["id"])
    assert r.status_code == 200 and r.json()["state"] == "queued"  # the hub is done; the message is ours
    row = await _row(down, ticket["id"])
    assert row.enqueued_at is None and row.enqueue_claimed_at is None  # claim released for the reconciler
    assert await down.services.enqueuer.reconcile() == 0  # still down: nothing sent, nothing lost
    # The queue is back (same database, same queue name, reachable endpoint).
    cfg = down.config.model_copy(deep=True)
    cfg.storage.queue_url = None
    up = await start_api(cfg)
    try:
        assert await up.services.enqueuer.reconcile() >= 1
        assert (await _row(up, ticket["id"])).enqueued_at is not None
        assert await up.services.enqueuer.reconcile() == 0
        mine = [m for m in await drain(up.services.ctx.queue) if m.body["event_id"] == ticket["id"]]
        assert len(mine) == 1
        # A finalize retry now changes nothing either.
        assert (await up.finalize(hub, ticket["id"])).json()["state"] == "queued"
        assert await drain(up.services.ctx.queue) == []
    finally:
        await up.close()


async def test_a_stale_send_claim_is_retried(api: CloudApi, mp4_clip: Clip):
    """A process that died between claiming a send and sending leaves a claim that expires."""
    hub = await api.hub()
    ticket = await api.uploaded_event(hub, mp4_clip)
    await api.finalize(hub, ticket["id"])
    assert len(await drain(api.services.ctx.queue)) == 1
    now = api.clock()
    await api.services.ctx.db.tx(lambda c: c.execute(
        sa.update(events).where(events.c.id == ticket["id"]).values(enqueued_at=None, enqueue_claimed_at=now)))
    assert await api.services.enqueuer.reconcile() == 0  # the claim is fresh: someone may be sending
    api.clock.advance(seconds=api.config.reconciler.claim_timeout_s + 1)
    assert await api.services.enqueuer.reconcile() == 1
    assert len(await drain(api.services.ctx.queue)) == 1


async def test_finalize_answers_before_the_send_and_shutdown_still_sends(cloud_db_url, azurite, mp4_clip: Clip):
    """The message goes out after finalize has answered; an API stopped right after still sends it (and marks
    it sent), so neither the reconciler nor a second message is needed."""
    first = await start_api(cloud_config(cloud_db_url, azurite))
    hub = await first.hub()
    ticket = await first.uploaded_event(hub, mp4_clip)
    r = await first.http.post(f"/api/v1/events/{ticket['id']}/finalize", headers=hub.headers)  # no settle()
    assert r.status_code == 200 and r.json()["state"] == "queued"
    await first.close()  # what SIGTERM does after the last request
    again = await start_api(first.config)
    try:
        assert (await _row(again, ticket["id"])).enqueued_at is not None
        assert [m.body["event_id"] for m in await drain(again.services.ctx.queue)] == [ticket["id"]]
        assert await again.services.enqueuer.reconcile() == 0
    finally:
        await again.close()


async def test_worker_transitions_are_idempotent_and_failure_refunds_once(api: CloudApi, mp4_clip: Clip):
    hub = await api.hub()
    await api.http.put(f"/api/v1/hubs/{hub.hub_id}/prompt", json={"prompt": "parcels"}, headers=hub.user.headers)
    await api.http.put(f"/api/v1/cameras/{hub.cameras['front']}/prompt", json={"prompt": "people at night"},
                       headers=hub.user.headers)
    a = await api.uploaded_event(hub, mp4_clip)
    b = await api.uploaded_event(hub, mp4_clip)
    for t in (a, b):
        assert (await api.finalize(hub, t["id"])).status_code == 200
    worker = api.services.worker
    item = await worker.start(a["id"])
    assert item is not None and item.prompts == ["parcels", "people at night"] and item.attempts == 1
    assert item.blob_name == a["blob"] and item.credits == 1 and item.camera_name == "Front"
    again = await worker.start(a["id"])  # redelivered while processing (the first worker died)
    assert again is not None and again.attempts == 2
    assert await worker.complete(a["id"], {"person": 0.9}, {"text": "someone"}) is True
    assert await worker.complete(a["id"], {"person": 0.9}, {"text": "someone"}) is False
    assert await worker.start(a["id"]) is None  # done stays done
    assert await worker.start("00000000-0000-4000-8000-000000000000") is None

    assert await worker.fail(b["id"], "poison: could not decode") is True
    assert await worker.fail(b["id"], "poison: could not decode") is False
    kinds = await api.services.ctx.db.tx(lambda c: c.execute(
        sa.select(credit_ledger.c.kind, credit_ledger.c.amount)
        .where(credit_ledger.c.account_id == hub.user.account_id).order_by(credit_ledger.c.id)).all())
    assert [(k, n) for k, n in kinds] == [("grant", 360), ("charge", -1), ("charge", -1), ("refund", 1)]
    me = (await api.http.get("/api/v1/account", headers=hub.user.headers)).json()
    assert me["credits"]["used"] == 1 and me["credits"]["left"] == 359
    assert (await _row(api, b["id"])).state == "failed"


async def test_retention_deletes_expired_events_and_their_blobs(api: CloudApi, mp4_clip: Clip):
    hub = await api.hub()
    old = await api.uploaded_event(hub, mp4_clip)
    await api.finalize(hub, old["id"])
    abandoned = (await api.initiate(hub, mp4_clip)).json()  # never uploaded
    api.clock.advance(days=api.config.plans["free"].retention_days, hours=1)
    fresh = await api.uploaded_event(hub, mp4_clip)
    await api.finalize(hub, fresh["id"])
    blobs = api.services.ctx.blobs
    report = await api.services.retention.run_once()
    assert report.events_deleted >= 2 and report.blob_errors == 0
    assert await _row(api, old["id"]) is None and await _row(api, abandoned["id"]) is None
    assert await blobs.info(old["blob"]) is None
    assert await _row(api, fresh["id"]) is not None and await blobs.info(fresh["blob"]) is not None
    # The billing record stays.
    charges = await api.services.ctx.db.tx(lambda c: c.execute(
        sa.select(sa.func.count()).select_from(credit_ledger)
        .where(credit_ledger.c.event_id == old["id"])).scalar_one())
    assert charges == 1


async def test_abandoned_upload_is_deleted_before_retention(api: CloudApi, mp4_clip: Clip):
    hub = await api.hub(plan="paid")
    stuck = (await api.initiate(hub, mp4_clip)).json()
    api.clock.advance(hours=api.config.retention.abandoned_upload_hours + 1)
    await api.services.retention.run_once()
    assert await _row(api, stuck["id"]) is None


async def test_retention_keeps_rows_while_storage_is_down(api_factory, mp4_clip: Clip):
    api = await api_factory()
    hub = await api.hub()
    ticket = await api.uploaded_event(hub, mp4_clip)
    await api.finalize(hub, ticket["id"])
    key = parse_connection_string(api.config.storage.connection_string or "")["AccountKey"]
    dead_blobs = AzureBlobStore(f"http://127.0.0.1:{free_port()}/devstoreaccount1", "clips", key,
                                retry_total=0, connection_timeout_s=1)
    real = api.services.ctx.blobs
    api.services.ctx.blobs = dead_blobs
    try:
        api.clock.advance(days=8)
        report = await api.services.retention.run_once()
        assert report.blob_errors == 1 and report.events_deleted == 0
        assert await _row(api, ticket["id"]) is not None  # never a row deleted with its blob left behind
    finally:
        api.services.ctx.blobs = real
        await dead_blobs.close()
    assert (await api.services.retention.run_once()).events_deleted >= 1
    assert await _row(api, ticket["id"]) is None and await real.info(ticket["blob"]) is None


async def test_jobs_are_scheduled_and_run(api_factory, mp4_clip: Clip):
    api = await api_factory(reconciler={"enabled": True, "interval_s": 3600},
                            retention={"enabled": True, "interval_min": 60})
    hub = await api.hub()
    ticket = await api.uploaded_event(hub, mp4_clip)
    await api.finalize(hub, ticket["id"])
    await drain(api.services.ctx.queue)
    await api.services.ctx.db.tx(lambda c: c.execute(
        sa.update(events).where(events.c.id == ticket["id"]).values(enqueued_at=None, enqueue_claimed_at=None)))
    jobs = Jobs(api.services)
    assert sorted(jobs.job_ids) == ["command-expiry", "reconciler", "retention"]
    ran = asyncio.Event()
    original = api.services.enqueuer.reconcile

    async def observed(limit: int = 100) -> int:
        try:
            return await original(limit)
        finally:
            ran.set()

    api.services.enqueuer.reconcile = observed  # type: ignore[method-assign]
    jobs.start()  # both jobs are due at once on start
    try:
        await asyncio.wait_for(ran.wait(), 30)
    finally:
        jobs.stop()
    assert (await _row(api, ticket["id"])).enqueued_at is not None
