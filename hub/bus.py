"""In-process event bus: the store publishes, the MQTT bridge, web UI and uploader listen.

Each subscriber gets its own bounded queue so a slow consumer (a stalled WebSocket, a broker that is down) can
never block the media path or the other consumers; when a queue is full the oldest message is dropped and
counted.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Message:
    topic: str  # e.g. "event.started", "event.ended", "camera.online", "camera.status", "motion", "armed"
    data: dict[str, Any] = field(default_factory=dict)


class Subscription:
    def __init__(self, bus: Bus, prefixes: tuple[str, ...], maxsize: int) -> None:
        self._bus = bus
        self.prefixes = prefixes
        self.queue: asyncio.Queue[Message] = asyncio.Queue(maxsize)
        self.dropped = 0

    def matches(self, topic: str) -> bool:
        return not self.prefixes or topic.startswith(self.prefixes)

    def offer(self, msg: Message) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(msg)

    async def get(self) -> Message:
        return await self.queue.get()

    def close(self) -> None:
        self._bus._subs.discard(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        return await self.queue.get()


class Bus:
    def __init__(self) -> None:
        self._subs: set[Subscription] = set()

    def subscribe(self, *prefixes: str, maxsize: int = 256) -> Subscription:
        sub = Subscription(self, prefixes, maxsize)
        self._subs.add(sub)
        return sub

    def publish(self, topic: str, **data: Any) -> None:
        msg = Message(topic, data)
        for sub in list(self._subs):
            if sub.matches(topic):
                sub.offer(msg)
