"""A loopback UDP endpoint that records what its protocol receives (tests of the hub's socket readers)."""

from __future__ import annotations

import asyncio
from typing import Any


async def collecting_endpoint() -> tuple[Any, list[bytes]]:
    """(asyncio datagram transport bound to 127.0.0.1, list its protocol appends each datagram to)."""
    got: list[bytes] = []

    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            got.append(data)

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
    await asyncio.sleep(0)  # the transport registers its reader with call_soon
    return transport, got
