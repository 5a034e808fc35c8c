"""What the hub's remote faces (the MQTT bridge, the hub's own Telegram bot, the cloud channel) may ask of it.

One small protocol, so each face depends on these four calls only and not on the controller's construction;
``hub.control.Controller`` is the implementation the composition root hands them.
"""

from __future__ import annotations

from typing import Any, Protocol


class ControlLike(Protocol):
    def is_armed(self, camera_id: str | None = None) -> bool: ...

    def set_armed(self, armed: bool, camera_id: str | None = None, for_s: float | None = None) -> float | None: ...

    def cameras(self) -> list[dict[str, Any]]: ...

    async def snapshot(self, camera_id: str) -> bytes | None: ...
