"""Waiting with a deadline in background loops, without losing a cancellation.

Python 3.11's ``asyncio.wait_for`` swallows a cancellation that arrives in the same loop step as the awaited
thing completes (CPython bpo-42130, fixed in 3.12 by rewriting ``wait_for`` on ``asyncio.timeout``): the caller
gets the result instead of ``CancelledError``. A loop like "wait for a wake-up or the poll interval, then read"
then survives ``task.cancel()`` whenever a wake-up coincides with the stop, keeps running after its owner has
closed the database under it, and hangs the event loop's shutdown, which cancels it again and waits. The
functions here use ``asyncio.timeout``, which delivers both; ruff bans ``asyncio.wait_for`` outside the tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def wait_event(event: asyncio.Event, timeout_s: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout_s`` passed (None: no limit); True when it was set."""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def within(aw: Awaitable[T], timeout_s: float | None) -> T:
    """``await aw`` under a deadline (``TimeoutError`` when it passes): ``asyncio.wait_for`` without its race."""
    async with asyncio.timeout(timeout_s):
        return await aw
