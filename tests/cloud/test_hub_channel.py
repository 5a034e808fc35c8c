"""The hub channel of the cloud API: event starts with their snapshot, the hub's state, and commands (long
poll, first result wins, expiry), on SQLite and PostgreSQL with a real Azurite."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from cloud.api import changes
from cloud.api.db.schema import event_starts, hub_commands
from cloud.api.services.commands import HubCommands

from .conftest import CloudApi, HubSession

# The smallest JPEG the API accepts: the magic bytes are what it checks (it never decodes the image).
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 300 + b"\xff\xd9"


def start_body(**overrides: Any) -> dict[str, Any]:
    body = {"event_id": "ev-1", "camera_id": "front", "started_at": datetime.now(UTC).isoformat(),
            "trigger": "motion", "snapshot_jpeg": base64.b64encode(JPEG).decode()}
    body.update(overrides)
    return body


async def all_changes(api: CloudApi, account_id: str) -> list[changes.Change]:
    return await api.services.ctx.db.read(lambda c: changes.read_after(c, 0, account_id=account_id))


async def test_an_event_start_stores_its_snapshot_once_and_records_one_change(api: CloudApi) -> None:
    hub = await api.hub()
    r = await api.http.post("/api/v1/hub/event-starts", json=start_body(), headers=hub.headers)
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["snapshot"] is True and first["late"] is False and first["hub_event_id"] == "ev-1"
    again = await api.http.post("/api/v1/hub/event-starts", json=start_body(), headers=hub.headers)
    assert again.status_code == 201 and again.json()["id"] == first["id"]
    row = await api.services.ctx.db.read(lambda c: c.execute(
        sa.select(event_starts).where(event_starts.c.hub_id == hub.hub_id)).one())
    assert row.camera_id == hub.cameras["front"]
    assert await api.services.ctx.blobs.read(row.snapshot_blob) == JPEG
    started = [c for c in await all_changes(api, hub.user.account_id) if c.kind == changes.EVENT_STARTED]
    assert [(c.subject_id, c.data["hub_event_id"]) for c in started] == [(first["id"], "ev-1")]


async def test_a_retry_adds_the_snapshot_the_first_report_lacked(api: CloudApi) -> None:
    hub = await api.hub()
    r = await api.http.post("/api/v1/hub/event-starts", json=start_body(snapshot_jpeg=None), headers=hub.headers)
    assert r.status_code == 201 and r.json()["snapshot"] is False
    r = await api.http.post("/api/v1/hub/event-starts", json=start_body(), headers=hub.headers)
    assert r.status_code == 201 and r.json()["snapshot"] is True
    started = [c for c in await all_changes(api, hub.user.account_id) if c.kind == changes.EVENT_STARTED]
    assert [c.data.get("snapshot_added", False) for c in started] == [False, True]  # the page gets the picture


async def test_a_start_reported_long_after_the_trigger_is_late(api: CloudApi) -> None:
    hub = await api.hub()
    old = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    r = await api.http.post("/api/v1/hub/event-starts", json=start_body(started_at=old), headers=hub.headers)
    assert r.status_code == 201 and r.json()["late"] is True


async def test_bad_event_starts_are_refused_and_record_nothing(api: CloudApi) -> None:
    hub = await api.hub()
    cases = [
        (start_body(camera_id="garage"), 404, "camera_unknown"),
        (start_body(snapshot_jpeg=base64.b64encode(b"GIF89a....").decode()), 400, "bad_snapshot"),
        (start_body(snapshot_jpeg="not base64!"), 400, "invalid_input"),
        (start_body(snapshot_jpeg="QUJD="), 400, "bad_snapshot"),  # padding in the wrong place
        (start_body(event_id="../../x"), 400, "invalid_input"),
        (start_body(started_at="0001-01-01T00:00:00+14:00"), 400, "invalid_input"),  # would not read back
        (start_body(started_at="9999-12-31T23:59:59-14:00"), 400, "invalid_input"),
        (start_body(snapshot_jpeg=base64.b64encode(b"\xff\xd8\xff" + b"\0" * (1024 * 1024)).decode()), 400,
         "invalid_input"),  # over the model's base64 length: refused before decoding
    ]
    for body, status, reason in cases:
        r = await api.http.post("/api/v1/hub/event-starts", json=body, headers=hub.headers)
        assert (r.status_code, r.json()["reason"]) == (status, reason), (body["event_id"], r.text)
    huge = b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    r = await api.http.post("/api/v1/hub/event-starts", content=huge, headers={**hub.headers,
                                                                                "Content-Type": "application/json"})
    assert r.status_code == 413
    r = await api.http.post("/api/v1/hub/event-starts", json=start_body(), headers=hub.user.headers)
    assert r.status_code == 401  # a user's token is not a hub's
    assert await api.services.ctx.db.read(lambda c: c.execute(sa.select(sa.func.count()).select_from(
        event_starts).where(event_starts.c.hub_id == hub.hub_id)).scalar()) == 0
    assert await all_changes(api, hub.user.account_id) == []


async def test_the_hub_state_shows_in_the_hub_list_and_changes_are_recorded_once(api: CloudApi) -> None:
    hub = await api.hub(cameras=("front", "back"))
    until = datetime.now(UTC) + timedelta(hours=1)
    state = {"armed": False, "disarmed_until": until.isoformat(),
             "cameras": [{"id": "front", "online": True}, {"id": "back", "online": False},
                         {"id": "not-mirrored", "online": True}]}
    for _ in range(2):  # the second report changes nothing
        r = await api.http.put("/api/v1/hub/state", json=state, headers=hub.headers)
        assert r.status_code == 204, r.text
    listed = (await api.http.get("/api/v1/hubs", headers=hub.user.headers)).json()["hubs"][0]
    assert listed["online"] is True and listed["armed"] is False
    assert abs(datetime.fromisoformat(listed["disarmed_until"]) - until) < timedelta(milliseconds=1)
    assert {c["hub_camera_id"]: c["online"] for c in listed["cameras"]} == {"front": True, "back": False}
    recorded = [c for c in await all_changes(api, hub.user.account_id) if c.kind == changes.HUB_STATE]
    assert len(recorded) == 1 and recorded[0].data["cameras"] == {"front": True, "back": False}
    # A time the store could not read back is refused, and the hub list still reads.
    r = await api.http.put("/api/v1/hub/state", headers=hub.headers,
                           json={**state, "disarmed_until": "0001-01-01T00:00:00+14:00"})
    assert r.status_code == 400 and "disarmed_until" in r.json()["error"]
    assert (await api.http.get("/api/v1/hubs", headers=hub.user.headers)).status_code == 200


async def _create(api: CloudApi, hub: HubSession, kind: str, **args: Any) -> dict[str, Any]:
    r = await api.http.post(f"/api/v1/hubs/{hub.hub_id}/commands", json={"kind": kind, "args": args},
                            headers=hub.user.headers)
    assert r.status_code == 201, r.text
    return r.json()


async def test_a_command_reaches_the_hub_once_and_its_first_result_counts(api: CloudApi) -> None:
    hub = await api.hub()
    cmd = await _create(api, hub, "disarm", for_s=3600)
    assert cmd["state"] == "pending" and cmd["args"] == {"for_s": 3600}
    got = (await api.http.get("/api/v1/hub/commands", headers=hub.headers)).json()["commands"]
    assert [(c["id"], c["kind"], c["args"]) for c in got] == [(cmd["id"], "disarm", {"for_s": 3600})]
    assert (await api.http.get("/api/v1/hub/commands", headers=hub.headers)).json()["commands"] == []
    status = (await api.http.get(f"/api/v1/hubs/{hub.hub_id}/commands/{cmd['id']}", headers=hub.user.headers))
    assert status.json()["state"] == "delivered"
    for ok, message in ((True, "disarmed for 1 h"), (False, "a retry that must not count")):
        r = await api.http.post(f"/api/v1/hub/commands/{cmd['id']}/result", json={"ok": ok, "message": message},
                                headers=hub.headers)
        assert r.status_code == 204, r.text
    status = (await api.http.get(f"/api/v1/hubs/{hub.hub_id}/commands/{cmd['id']}", headers=hub.user.headers))
    assert (status.json()["state"], status.json()["ok"], status.json()["message"]) == ("done", True,
                                                                                       "disarmed for 1 h")
    done = [c for c in await all_changes(api, hub.user.account_id) if c.kind == changes.COMMAND_DONE]
    assert [(c.subject_id, c.data["ok"], c.data["origin"]) for c in done] == [(cmd["id"], True, "api")]


async def test_a_snapshot_result_is_stored(api: CloudApi) -> None:
    hub = await api.hub()
    cmd = await _create(api, hub, "snapshot", camera_id="front")
    await api.http.get("/api/v1/hub/commands", headers=hub.headers)
    r = await api.http.post(f"/api/v1/hub/commands/{cmd['id']}/result", headers=hub.headers,
                            json={"ok": True, "message": "", "camera_id": "front",
                                  "snapshot_jpeg": base64.b64encode(JPEG).decode()})
    assert r.status_code == 204, r.text
    done = next(c for c in await all_changes(api, hub.user.account_id) if c.kind == changes.COMMAND_DONE)
    assert done.data["camera_id"] == hub.cameras["front"]
    assert await api.services.ctx.blobs.read(done.data["snapshot_blob"]) == JPEG


async def test_a_long_poll_returns_when_a_command_arrives(api: CloudApi) -> None:
    hub = await api.hub()
    poll = asyncio.create_task(api.http.get("/api/v1/hub/commands", params={"wait_s": 20}, headers=hub.headers))
    cmd = await _create(api, hub, "arm")
    r = await asyncio.wait_for(poll, 15)
    assert [c["id"] for c in r.json()["commands"]] == [cmd["id"]]


async def test_a_command_the_hub_never_fetched_expires_as_offline(api: CloudApi) -> None:
    hub = await api.hub()
    cmd = await _create(api, hub, "disarm")
    commands = HubCommands(api.services.ctx)
    assert await commands.expire_due() == 0  # not due yet
    api.clock.advance(seconds=api.config.telegram.command_timeout_s + 1)
    assert await commands.expire_due() == 1
    assert await commands.expire_due() == 0
    status = (await api.http.get(f"/api/v1/hubs/{hub.hub_id}/commands/{cmd['id']}", headers=hub.user.headers))
    assert (status.json()["state"], status.json()["ok"]) == ("expired", False)
    assert "offline" in status.json()["message"]
    # The hub comes back: the expired command is not handed out, and a late result changes nothing.
    assert (await api.http.get("/api/v1/hub/commands", headers=hub.headers)).json()["commands"] == []
    r = await api.http.post(f"/api/v1/hub/commands/{cmd['id']}/result", json={"ok": True}, headers=hub.headers)
    assert r.status_code == 204
    status = (await api.http.get(f"/api/v1/hubs/{hub.hub_id}/commands/{cmd['id']}", headers=hub.user.headers))
    assert status.json()["state"] == "expired"


async def test_another_accounts_hub_and_commands_are_not_found(api: CloudApi) -> None:
    mine, theirs = await api.hub(), await api.hub()
    cmd = await _create(api, theirs, "arm")
    r = await api.http.post(f"/api/v1/hubs/{theirs.hub_id}/commands", json={"kind": "arm"}, headers=mine.user.headers)
    assert r.status_code == 404
    r = await api.http.get(f"/api/v1/hubs/{theirs.hub_id}/commands/{cmd['id']}", headers=mine.user.headers)
    assert r.status_code == 404
    r = await api.http.post(f"/api/v1/hub/commands/{cmd['id']}/result", json={"ok": True}, headers=mine.headers)
    assert r.status_code == 404
    assert (await api.http.get("/api/v1/hub/commands", headers=mine.headers)).json()["commands"] == []
    r = await api.http.post(f"/api/v1/hubs/{mine.hub_id}/commands", json={"kind": "reboot"},
                            headers=mine.user.headers)
    assert r.status_code == 400
    rows = await api.services.ctx.db.read(lambda c: c.execute(
        sa.select(hub_commands.c.id).where(hub_commands.c.hub_id.in_((mine.hub_id, theirs.hub_id)))).scalars().all())
    assert rows == [cmd["id"]]


async def test_retention_deletes_old_starts_commands_and_changes_with_their_snapshots(api: CloudApi) -> None:
    hub = await api.hub()
    r = await api.http.post("/api/v1/hub/event-starts", json=start_body(event_id="old"), headers=hub.headers)
    start_id = r.json()["id"]
    cmd = await _create(api, hub, "snapshot", camera_id="front")
    await api.http.get("/api/v1/hub/commands", headers=hub.headers)
    await api.http.post(f"/api/v1/hub/commands/{cmd['id']}/result", headers=hub.headers,
                        json={"ok": True, "camera_id": "front", "snapshot_jpeg": base64.b64encode(JPEG).decode()})
    db = api.services.ctx.db
    start_blob = await db.read(lambda c: c.execute(
        sa.select(event_starts.c.snapshot_blob).where(event_starts.c.id == start_id)).scalar_one())
    cmd_result = await db.read(lambda c: c.execute(
        sa.select(hub_commands.c.result).where(hub_commands.c.id == cmd["id"])).scalar_one())
    cmd_blob = cmd_result["snapshot_blob"]
    api.clock.advance(days=2, hours=1)  # past the command's day and the changes' two days, not the plan's 7 days
    report = await api.services.retention.run_once()
    assert report.commands_deleted >= 1 and report.changes_deleted >= 1
    assert await api.services.ctx.blobs.info(cmd_blob) is None
    assert await api.services.ctx.blobs.info(start_blob) is not None  # the start is kept as long as events are
    assert await all_changes(api, hub.user.account_id) == []
    api.clock.advance(days=api.config.plans["free"].retention_days)
    report = await api.services.retention.run_once()
    assert report.starts_deleted >= 1
    assert await api.services.ctx.blobs.info(start_blob) is None
    assert await db.read(lambda c: c.execute(
        sa.select(event_starts.c.id).where(event_starts.c.id == start_id)).first()) is None
