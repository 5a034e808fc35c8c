"""What the hub's faces (CLI API, web UI, MQTT) may ask of it: arming, snapshots, camera descriptions.

One small surface instead of each face reaching into the store and pipelines; every state change is echoed on
the bus ("armed"), so all faces stay in step whichever one made the change.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.app import Hub


class Controller:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._rearm: dict[str | None, asyncio.TimerHandle] = {}

    # -- arming ----------------------------------------------------------------------------------------

    def is_armed(self, camera_id: str | None = None) -> bool:
        """Global arm state, or a camera's effective state (armed only if both it and the hub are)."""
        row = self.hub.store.db.execute("SELECT value FROM meta WHERE key = 'armed'").fetchone()
        hub_armed = row is None or row[0] == "1"
        if camera_id is None:
            return hub_armed
        cam = self.hub.store.get_camera(camera_id)
        return hub_armed and bool(cam and cam["armed"])

    def set_armed(self, armed: bool, camera_id: str | None = None, for_s: float | None = None) -> None:
        """Arm or disarm the hub or one camera; with ``for_s`` the change reverts by itself after that long."""
        if camera_id is None:
            self.hub.store.db["meta"].upsert({"key": "armed", "value": "1" if armed else "0"}, pk="key")
        else:
            if self.hub.store.get_camera(camera_id) is None:
                raise KeyError(camera_id)
            self.hub.store.update_camera(camera_id, armed=int(armed))
        old = self._rearm.pop(camera_id, None)
        if old is not None:
            old.cancel()
        until = None
        if for_s:
            until = time.time() + for_s
            self._rearm[camera_id] = asyncio.get_running_loop().call_later(
                for_s, self.set_armed, not armed, camera_id)
        if self.hub.cameras is not None:
            self.hub.cameras.apply_armed()
        self.hub.bus.publish("armed", camera_id=camera_id, armed=armed, until=until)

    # -- cameras ---------------------------------------------------------------------------------------

    def cameras(self) -> list[dict[str, Any]]:
        out = self.hub.cameras.describe_all()
        for cam in out:
            cam["camera_armed"] = cam["armed"]  # the camera's own switch
            cam["armed"] = self.is_armed(cam["id"])  # effective: the hub and the camera armed
        return out

    async def snapshot(self, camera_id: str) -> bytes | None:
        """A JPEG of the camera's latest keyframe, or None when nothing is buffered."""
        pipe = self.hub.cameras.pipelines.get(camera_id)
        if pipe is None:
            return None
        return await pipe.snapshot_now()
