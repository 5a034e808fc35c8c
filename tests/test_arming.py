"""Arm state: a timed disarm switches back by itself, and survives a hub restart (issue 15)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from hub.arming import ArmState
from hub.bus import Bus
from hub.store import Store

TIMEOUT = 10.0


async def _next_armed(sub) -> dict:
    return (await asyncio.wait_for(sub.get(), TIMEOUT)).data


async def test_a_timed_disarm_switches_back_by_itself(tmp_path: Path) -> None:
    store, bus = Store(tmp_path / "hub.db"), Bus()
    try:
        arming = ArmState(store, bus)
        sub = bus.subscribe("armed")
        until = arming.set_armed(False, for_s=0.2)
        assert until is not None and arming.is_armed() is False
        first = await _next_armed(sub)
        assert first["armed"] is False and first["until"] == until
        back = await _next_armed(sub)  # the revert, published when it happens
        assert back["armed"] is True and arming.is_armed() is True
        assert store.db.execute("SELECT COUNT(*) FROM meta WHERE key LIKE 'rearm:%'").fetchone()[0] == 0
        arming.close()
    finally:
        store.close()


async def test_a_timed_disarm_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    store = Store(db)
    store.ensure_static_camera("yard", "Yard", "file")
    first = ArmState(store, Bus())
    first.set_armed(False, for_s=3600)  # the hub
    first.set_armed(False, camera_id="yard", for_s=0.3)  # and a camera, due soon
    first.close()  # the hub stops: its timers go, the pending changes stay in the database
    store.close()

    store = Store(db)  # the hub starts again
    try:
        bus = Bus()
        sub = bus.subscribe("armed")
        second = ArmState(store, bus)
        assert second.restore() == 2
        assert second.is_armed() is False and second.camera_switch("yard") is False
        msg = await _next_armed(sub)  # the camera's change comes back on time, after the restart
        assert msg == {"camera_id": "yard", "armed": True, "until": None}
        assert second.camera_switch("yard") is True and second.is_armed() is False  # the hub's hour is not over
        second.close()
    finally:
        store.close()


def test_a_change_that_fell_due_while_stopped_is_applied_at_start(tmp_path: Path) -> None:
    store = Store(tmp_path / "hub.db")
    try:
        store.db.table("meta").upsert({"key": "armed", "value": "0"}, pk="key")
        store.db.table("meta").upsert({"key": "rearm:*", "value": json.dumps({"armed": True, "at": time.time() - 60})},
                                      pk="key")
        arming = ArmState(store, Bus())
        assert arming.restore() == 1
        assert arming.is_armed() is True
        assert store.db.execute("SELECT COUNT(*) FROM meta WHERE key LIKE 'rearm:%'").fetchone()[0] == 0
    finally:
        store.close()
