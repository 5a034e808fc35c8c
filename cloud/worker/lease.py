"""Holding one queue message while its job runs: the visibility timeout is renewed in the background, and the
message is then deleted, released, put back for a later retry, or moved to the poison queue.

Every ``extend`` returns a new pop receipt and invalidates the old one, so renewal and the final action share a
lock: the final action never runs with a receipt that an extend in flight is about to replace (which would make
the delete fail and the message come back for nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable

from cloud.storage.blob import StorageError
from cloud.storage.queue import JobQueue, MessageLost, QueueMessage

log = logging.getLogger(__name__)


class Lease:
    def __init__(self, queue: JobQueue, msg: QueueMessage, visibility_timeout_s: int) -> None:
        self.queue = queue
        self.msg = msg
        self.visibility_timeout_s = visibility_timeout_s
        self.lost = False  # the receipt stopped holding the message: another consumer may have it now
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._renew(), name=f"lease-{self.msg.id}")

    async def _renew(self) -> None:
        # A third of the timeout leaves two more chances when one renewal fails (storage briefly unreachable).
        period = max(0.5, self.visibility_timeout_s / 3)
        while True:
            await asyncio.sleep(period)
            async with self._lock:
                try:
                    self.msg = await self.queue.extend(self.msg, self.visibility_timeout_s)
                except MessageLost:
                    self.lost = True
                    log.warning("message %s: lease lost while its job ran; another worker may repeat it",
                                self.msg.id)
                    return
                except StorageError as exc:
                    log.warning("message %s: could not renew the lease (%s); trying again", self.msg.id, exc)

    async def _stop(self) -> None:
        if self._task is None:
            return
        async with self._lock:  # the renewer is asleep (not mid-extend) when the lock is ours
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def delete(self) -> None:
        await self._stop()
        if not self.lost:
            await self._guard("delete", self.queue.delete(self.msg))

    async def release(self) -> None:
        """Visible again at once: another worker takes it now (graceful shutdown)."""
        await self._stop()
        if not self.lost:
            await self._guard("release", self.queue.release(self.msg))

    async def retry_after(self, delay_s: int) -> None:
        """Hidden for ``delay_s`` more, then delivered again (a failure that may pass)."""
        await self._stop()
        if not self.lost:
            await self._guard("retry", self.queue.extend(self.msg, delay_s))

    async def poison(self, reason: str) -> None:
        await self._stop()
        if not self.lost:
            await self._guard("poison", self.queue.to_poison(self.msg, reason))

    async def _guard(self, what: str, action: Awaitable[object]) -> None:
        try:
            await action
        except MessageLost:
            self.lost = True
            log.warning("message %s: lost before %s (its visibility timeout ran out)", self.msg.id, what)
