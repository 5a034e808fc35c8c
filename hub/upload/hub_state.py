"""The hub's state as the cloud shows it (its page, the Telegram bot's /status): armed, disarmed until when, and
which cameras are online. PUT /hub/state at once when it changes (``armed`` and ``camera.*`` on the bus) and
every ``heartbeat_s`` otherwise, so the cloud can tell a hub that went quiet from one with nothing to say.

Only the newest state matters, so nothing is queued: a failed report is simply tried again (backoff with
jitter) with whatever the state is by then. A camera the cloud does not know yet is mirrored first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hub.bus import Bus, Subscription
from hub.config import CloudConfig
from hub.control_api import ControlLike
from hub.retry import Wakeup, backoff_s
from hub.store import Store
from hub.upload.channel import UNLINKED_RECHECK_S, ApiFactory, CameraMirror, LinkedClient
from hub.upload.cloud_api import CloudApi, CloudAuthError, CloudError, CloudRefused
from hub.upload.link import CloudLink

log = logging.getLogger(__name__)

RETRY_BASE_S = 2.0
SENT_AT_KEY = "cloud.state_sent_at"  # in the store's meta table: when the cloud last took the state (for the CLI)


class StateReporter:
    def __init__(self, config: CloudConfig, store: Store, bus: Bus, control: ControlLike,
                 disarmed_until: Callable[[], float | None], load_link: Callable[[], CloudLink | None], *,
                 retry_base_s: float = RETRY_BASE_S, recheck_s: float = UNLINKED_RECHECK_S,
                 api_factory: ApiFactory | None = None, on_reached: Callable[[], None] | None = None) -> None:
        self._config = config
        self._store = store
        self._bus = bus
        self._control = control
        self._disarmed_until = disarmed_until
        self._retry_base_s = retry_base_s
        self._recheck_s = recheck_s
        self._client = LinkedClient(load_link, api_factory)
        self._mirror = CameraMirror(store)
        self._on_reached = on_reached or (lambda: None)
        self._wake = Wakeup()
        self._tasks: list[asyncio.Task[None]] = []
        self._last: tuple[CloudApi, dict[str, Any]] | None = None  # what the cloud has, through which client
        self._last_at = 0.0
        self._failures = 0
        self.error: str | None = None
        self.reports = 0  # states the cloud took in this process (for tests and status)

    @property
    def active(self) -> bool:
        return self._config.enabled

    async def start(self) -> None:
        if not self.active:
            return
        sub = self._bus.subscribe("armed", "camera.", maxsize=256)
        self._tasks = [asyncio.create_task(self._listen(sub), name="cloud-state-bus"),
                       asyncio.create_task(self._run(), name="cloud-state")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._client.close()

    def status(self) -> dict[str, Any]:
        row = self._store.db.execute("SELECT value FROM meta WHERE key = ?", [SENT_AT_KEY]).fetchone()
        return {"enabled": self.active, "reported_at": float(row[0]) if row else None, "error": self.error}

    def current(self) -> dict[str, Any]:
        """The state to report, read fresh from the hub."""
        armed = self._control.is_armed()
        until = None if armed else self._disarmed_until()
        cameras = sorted(({"id": str(c["id"]), "online": bool(c.get("online"))} for c in self._control.cameras()),
                         key=lambda c: str(c["id"]))
        return {"armed": armed, "disarmed_until": datetime.fromtimestamp(until, tz=UTC).isoformat() if until else None,
                "cameras": cameras}

    async def _listen(self, sub: Subscription) -> None:
        try:
            async for msg in sub:
                if msg.topic == "camera.status":
                    continue  # frequent stats, no state change
                if msg.topic in ("camera.added", "camera.removed", "camera.settings"):
                    self._mirror.forget()  # a new camera or name: mirror again before the state names it
                self._wake.set()
        finally:
            sub.close()

    async def _run(self) -> None:
        while True:
            api = self._client.current()
            if api is None:
                self._last = None
                await self._wake.wait(self._recheck_s)
                continue
            state = self.current()
            due = self._last_at + self._config.heartbeat_s
            if self._last == (api, state) and time.monotonic() < due:
                await self._wake.wait(max(0.0, due - time.monotonic()))
                continue
            try:
                await self._mirror.sync(api)
                await api.put_state(state)
            except asyncio.CancelledError:
                raise
            except CloudAuthError as exc:
                self.error = exc.message
                log.error("the cloud refused the hub's token; the hub's state is not reported until it is linked "
                          "again", extra={"error": exc.message, "hint": "run 'pingwatch cloud link'"})
                await self._wake.wait(self._recheck_s)
                continue
            except Exception as exc:
                self._failures += 1
                self.error = exc.message if isinstance(exc, CloudError) else f"{type(exc).__name__}: {exc}"
                if isinstance(exc, CloudRefused) and exc.reason == "camera_unknown":
                    self._mirror.forget()
                elif not isinstance(exc, CloudError):
                    log.exception("reporting the hub's state failed unexpectedly; retrying later")
                after = exc.retry_after_s if isinstance(exc, CloudError) else None
                # A change wakes it early: only the newest state matters, and it is worth a try at once.
                await self._wake.wait(after if after is not None else
                                      backoff_s(self._failures, self._retry_base_s, self._config.retry_max_s))
                continue
            self._last, self._last_at = (api, state), time.monotonic()
            self._failures, self.error = 0, None
            self.reports += 1
            self._store.db.table("meta").upsert({"key": SENT_AT_KEY, "value": str(time.time())}, pk="key")
            self._on_reached()
            log.debug("hub state reported to the cloud", extra={"armed": state["armed"],
                                                               "cameras": len(state["cameras"])})
