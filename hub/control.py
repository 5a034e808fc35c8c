"""What the hub's faces (CLI API, web UI, MQTT) may ask of it: arming, snapshots, camera descriptions.

One small surface instead of each face reaching into the store and pipelines; every state change is echoed on
the bus ("armed") by ``ArmState``, so all faces stay in step whichever one made the change.
"""

from __future__ import annotations

from typing import Any

from hub.arming import ArmState
from hub.cameras import CameraManager


class Controller:
    def __init__(self, arming: ArmState, cameras: CameraManager) -> None:
        self._arming = arming
        self._cameras = cameras

    # -- arming ----------------------------------------------------------------------------------------

    def is_armed(self, camera_id: str | None = None) -> bool:
        """Global arm state, or a camera's effective state (armed only if both it and the hub are)."""
        return self._arming.is_armed(camera_id)

    def set_armed(self, armed: bool, camera_id: str | None = None, for_s: float | None = None) -> float | None:
        """Arm or disarm the hub or one camera (``CameraError`` NOT_FOUND for an unknown one); with ``for_s``
        the change reverts by itself. Returns when it reverts, or None."""
        return self._arming.set_armed(armed, camera_id, for_s)

    def rearms_at(self, camera_id: str | None = None) -> float | None:
        """When a timed disarm ends (epoch seconds), or None."""
        return self._arming.rearms_at(camera_id)

    # -- cameras ---------------------------------------------------------------------------------------

    def cameras(self) -> list[dict[str, Any]]:
        out = self._cameras.describe_all()
        for cam in out:
            cam["camera_armed"] = cam["armed"]  # the camera's own switch
            cam["armed"] = self.is_armed(cam["id"])  # effective: the hub and the camera armed
        return out

    async def snapshot(self, camera_id: str) -> bytes | None:
        """A JPEG of the camera's latest keyframe, or None when nothing is buffered."""
        pipe = self._cameras.pipelines.get(camera_id)
        if pipe is None:
            return None
        return await pipe.snapshot_now()
