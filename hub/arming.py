"""Arm state: the hub's switch and each camera's, and timed changes that revert by themselves.

The state lives in the store (``meta.armed``, ``cameras.armed``), so every face (CLI API, web UI, MQTT, a
schedule) reads the same truth. A timed change (``disarm --for 1h``) is persisted too (``meta.rearm:<target>``):
a hub restarted in the middle of it still switches back on time, or at once if the time has passed.
Each change is echoed on the bus ("armed") and handed to the listeners (the camera manager), so engines learn
their effective state synchronously, before ``set_armed`` returns.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from hub.bus import Bus
from hub.errors import CameraError, ErrorKind
from hub.store import Store

log = logging.getLogger(__name__)

_REARM_PREFIX = "rearm:"
_HUB_TARGET = "*"  # the meta key's suffix for the hub's own switch (camera ids never contain '*')


class ArmState:
    def __init__(self, store: Store, bus: Bus) -> None:
        self._store = store
        self._bus = bus
        self._timers: dict[str | None, asyncio.TimerHandle] = {}
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, listener: Callable[[], None]) -> None:
        """``listener()`` runs after every change (the camera manager re-applies every engine's state)."""
        self._listeners.append(listener)

    def is_armed(self, camera_id: str | None = None) -> bool:
        """Global arm state, or a camera's effective state (armed only if both it and the hub are)."""
        row = self._store.db.execute("SELECT value FROM meta WHERE key = 'armed'").fetchone()
        hub_armed = row is None or row[0] == "1"
        if camera_id is None:
            return hub_armed
        cam = self._store.get_camera(camera_id)
        return hub_armed and bool(cam and cam["armed"])

    def camera_switch(self, camera_id: str) -> bool:
        """The camera's own switch, whatever the hub's state."""
        cam = self._store.get_camera(camera_id)
        return bool(cam and cam["armed"])

    def set_armed(self, armed: bool, camera_id: str | None = None, for_s: float | None = None) -> float | None:
        """Arm or disarm the hub or one camera; with ``for_s`` the change reverts by itself after that long.
        Returns when it reverts (epoch seconds), or None."""
        if camera_id is not None and self._store.get_camera(camera_id) is None:
            raise CameraError(ErrorKind.NOT_FOUND, f"no camera '{camera_id}'",
                              "list cameras with 'pingwatch cameras list'")
        self._write(armed, camera_id)
        self._cancel(camera_id)
        until = None
        if for_s:
            until = time.time() + for_s
            self._store.db.table("meta").upsert(
                {"key": _key(camera_id), "value": json.dumps({"armed": not armed, "at": until})}, pk="key")
            self._schedule(camera_id, not armed, for_s)
        self._changed(camera_id, armed, until)
        return until

    def rearms_at(self, camera_id: str | None = None) -> float | None:
        """When a timed disarm of the hub (or one camera) ends and it arms again by itself (epoch s), or None."""
        row = self._store.db.execute("SELECT value FROM meta WHERE key = ?", [_key(camera_id)]).fetchone()
        if row is None:
            return None
        try:
            pending = json.loads(row[0])
            return float(pending["at"]) if pending.get("armed") is True else None
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # a damaged record: restore() drops it at the next start

    def restore(self) -> int:
        """Re-schedule timed changes saved by an earlier run; apply those already due. Returns how many."""
        rows = self._store.db.execute("SELECT key, value FROM meta WHERE key LIKE ?", [_REARM_PREFIX + "%"]).fetchall()
        now = time.time()
        for key, value in rows:
            suffix = key[len(_REARM_PREFIX):]
            camera_id = None if suffix == _HUB_TARGET else suffix
            try:
                pending = json.loads(value)
                armed, at = bool(pending["armed"]), float(pending["at"])
            except (ValueError, KeyError, TypeError):
                self._store.db.execute("DELETE FROM meta WHERE key = ?", [key])
                continue
            if camera_id is not None and self._store.get_camera(camera_id) is None:
                self._store.db.execute("DELETE FROM meta WHERE key = ?", [key])
                continue
            if at <= now:
                log.info("timed arm change was due while the hub was stopped; applying it",
                         extra={"camera_id": camera_id, "armed": armed})
                self._revert(armed, camera_id)
            else:
                self._schedule(camera_id, armed, at - now)
        return len(rows)

    def close(self) -> None:
        """Stop the timers (the persisted changes stay for the next start)."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    # -- internals ---------------------------------------------------------------------------------------

    def _write(self, armed: bool, camera_id: str | None) -> None:
        if camera_id is None:
            self._store.db.table("meta").upsert({"key": "armed", "value": "1" if armed else "0"}, pk="key")
        else:
            self._store.update_camera(camera_id, armed=int(armed))

    def _cancel(self, camera_id: str | None) -> None:
        old = self._timers.pop(camera_id, None)
        if old is not None:
            old.cancel()
        self._store.db.execute("DELETE FROM meta WHERE key = ?", [_key(camera_id)])

    def _schedule(self, camera_id: str | None, armed: bool, delay_s: float) -> None:
        self._timers[camera_id] = asyncio.get_running_loop().call_later(delay_s, self._revert, armed, camera_id)

    def _revert(self, armed: bool, camera_id: str | None) -> None:
        self._timers.pop(camera_id, None)
        if camera_id is not None and self._store.get_camera(camera_id) is None:
            self._cancel(camera_id)
            return
        self._write(armed, camera_id)
        self._cancel(camera_id)
        self._changed(camera_id, armed, None)

    def _changed(self, camera_id: str | None, armed: bool, until: float | None) -> None:
        for listener in self._listeners:
            listener()
        self._bus.publish("armed", camera_id=camera_id, armed=armed, until=until)


def _key(camera_id: str | None) -> str:
    return _REARM_PREFIX + (camera_id if camera_id is not None else _HUB_TARGET)
