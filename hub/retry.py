"""What the hub's background senders (the cloud uploader, the Telegram notifier) share: a wake-up that new work
sets, and the backoff between two tries."""

from __future__ import annotations

import asyncio
import random

from pingwatch_common.aio import wait_event


class Wakeup:
    """Set when new work is queued; a sender waits on it, or until its next retry is due."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, seconds: float | None) -> None:
        """Until ``set()`` (called now or later) or ``seconds`` have passed (None: no limit)."""
        self._event.clear()
        await wait_event(self._event, seconds)


def backoff_s(attempts: int, base_s: float, max_s: float) -> float:
    """Exponential backoff with jitter (between half and all of the step), capped at ``max_s``: senders that lost
    the network together do not all come back in the same second."""
    top = min(max_s, base_s * 2 ** min(attempts, 20))
    return random.uniform(top / 2, top)
