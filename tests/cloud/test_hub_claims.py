"""The two calls of every upload (initiate, finalize) check the hub's token inside their own first statement,
from what the API process last knew of it (cloud.api.principals.HubClaim). What that knowledge must never do:
let a token through after it was revoked, or apply a plan the account no longer has, even when the change was
made through another API process, which this process hears nothing of."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from cloud.api.db.schema import accounts, credit_ledger, events, hubs
from tests.cloud.conftest import ApiFactory, Clip


async def test_a_token_unlinked_through_another_process_is_refused_by_both_upload_calls(api_factory: ApiFactory,
                                                                                      mp4_clip: Clip):
    # Three processes that have each used the token for both calls (a refused call makes a process forget the
    # token, so each case below gets a process that still knows it), and one that unlinks the hub.
    admin = await api_factory()
    hub = await admin.hub()
    procs = [await api_factory() for _ in range(3)]
    for p in procs:
        done = await p.uploaded_event(hub, mp4_clip)
        assert (await p.finalize(hub, done["id"])).status_code == 200
    pending = await procs[0].uploaded_event(hub, mp4_clip)
    assert (await admin.http.delete(f"/api/v1/hubs/{hub.hub_id}", headers=hub.user.headers)).status_code == 204

    r = await procs[0].initiate(hub, mp4_clip)
    assert r.status_code == 401 and r.json()["reason"] == "hub_unlinked", r.text
    r = await procs[1].finalize(hub, pending["id"])
    assert r.status_code == 401 and r.json()["reason"] == "hub_unlinked", r.text
    # An event id it never had answers the same: the token is refused before anything about the event is said.
    r = await procs[2].finalize(hub, str(uuid.uuid4()))
    assert r.status_code == 401 and r.json()["reason"] == "hub_unlinked", r.text

    def facts(conn: sa.Connection) -> tuple[int, str, int]:
        n_events = conn.execute(sa.select(sa.func.count()).select_from(events)
                                .where(events.c.hub_id == hub.hub_id)).scalar_one()
        state = conn.execute(sa.select(events.c.state).where(events.c.id == pending["id"])).scalar_one()
        charges = conn.execute(sa.select(sa.func.count()).select_from(credit_ledger).where(
            credit_ledger.c.account_id == hub.user.account_id, credit_ledger.c.kind == "charge")).scalar_one()
        return n_events, state, charges

    assert await admin.services.ctx.db.read(facts) == (4, "uploading", 3)  # nothing written after the unlink


async def test_an_unknown_event_of_a_linked_hub_is_404(api_factory: ApiFactory, mp4_clip: Clip):
    api = await api_factory()
    hub = await api.hub()
    await api.uploaded_event(hub, mp4_clip)
    r = await api.finalize(hub, str(uuid.uuid4()))
    assert r.status_code == 404 and r.json()["reason"] == "event_not_found", r.text


_PLAN = {"monthly_credits": 360, "max_clip_s": 60, "max_size_bytes": 50 * 1024 * 1024, "retention_days": 7}


async def test_a_plan_changed_through_another_process_applies_to_the_next_upload(api_factory: ApiFactory,
                                                                                 mp4_clip: Clip):
    plans = {"plans": {"free": {**_PLAN, "max_uploads_per_hour": 1}, "paid": {**_PLAN, "max_uploads_per_hour": 50}}}
    a, b = await api_factory(**plans), await api_factory(**plans)
    hub = await a.hub(plan="free")
    assert (await b.initiate(hub, mp4_clip)).status_code == 201
    r = await b.initiate(hub, mp4_clip)
    assert r.status_code == 429 and r.json()["reason"] == "uploads_per_hour", r.text
    # Upgraded by an operator (no process is told): the next upload is under the paid plan's limit.
    await a.services.ctx.db.tx(lambda conn: conn.execute(
        sa.update(accounts).where(accounts.c.id == hub.user.account_id).values(plan="paid")))
    r = await b.initiate(hub, mp4_clip)
    assert r.status_code == 201, r.text


async def test_a_revoked_tokens_call_does_not_mark_the_unlinked_hub_seen(api_factory: ApiFactory, mp4_clip: Clip):
    admin, b = await api_factory(), await api_factory()
    hub = await admin.hub()
    assert (await b.initiate(hub, mp4_clip)).status_code == 201  # b knows the token
    await b.services.hubs.settle()
    assert (await admin.http.delete(f"/api/v1/hubs/{hub.hub_id}", headers=hub.user.headers)).status_code == 204

    def last_seen(conn: sa.Connection) -> object:
        return conn.execute(sa.select(hubs.c.last_seen_at).where(hubs.c.id == hub.hub_id)).scalar_one()

    before = await admin.services.ctx.db.read(last_seen)
    b.clock.advance(seconds=600)  # long enough that b would write "seen" again on the hub's next call
    assert (await b.initiate(hub, mp4_clip)).status_code == 401
    await b.services.hubs.settle()
    assert await admin.services.ctx.db.read(last_seen) == before
