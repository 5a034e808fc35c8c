"""A loopback UDP endpoint that records what its protocol receives (tests of the hub's socket readers)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class Arrivals:
    """Wakes a test whenever something it waits for arrives (a datagram, a media packet), so it awaits the
    arrival instead of sleeping. One object can be told by several receivers."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()

    async def until(self, cond: Callable[[], bool], what: str = "arrival", timeout: float = 5.0) -> None:
        """Return once ``cond()`` holds (checked after every arrival); TimeoutError naming ``what`` otherwise."""
        try:
            async with asyncio.timeout(timeout):
                while not cond():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"no {what} within {timeout} s") from None


async def collecting_endpoint(arrivals: Arrivals | None = None) -> tuple[Any, list[bytes]]:
    """(asyncio datagram transport bound to 127.0.0.1, list its protocol appends each datagram to); each
    datagram also notifies ``arrivals``."""
    got: list[bytes] = []

    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            got.append(data)
            if arrivals is not None:
                arrivals.notify()

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
    await asyncio.sleep(0)  # one loop step, not a wait: the transport registers its reader with call_soon
    return transport, got
