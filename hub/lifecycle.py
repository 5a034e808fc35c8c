"""Start-up and shutdown order as data: a list of stages, started in order and stopped in reverse.

The composition root (``hub.app``) writes the list once. A stage that fails to start stops the ones already
started (in reverse) before the error propagates; a stage that fails to stop is logged and the rest still stop,
so one broken component never leaves the others (open clips, the database) unfinished.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)


async def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Stage:
    name: str
    start: Callable[[], Awaitable[None]] = _nothing
    stop: Callable[[], Awaitable[None]] = _nothing


class Lifecycle:
    def __init__(self, stages: Sequence[Stage]) -> None:
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique: {names}")
        self.stages = tuple(stages)
        self._started: list[Stage] = []
        self.stopping = False

    @property
    def order(self) -> list[str]:
        return [s.name for s in self.stages]

    async def start(self) -> None:
        for stage in self.stages:
            try:
                await stage.start()
            except BaseException:
                log.error("start-up failed", extra={"stage": stage.name})
                await self.stop()
                raise
            self._started.append(stage)
            log.debug("started", extra={"stage": stage.name})

    async def stop(self) -> None:
        """Stop the started stages in reverse order. Idempotent."""
        self.stopping = True
        while self._started:
            stage = self._started.pop()
            try:
                await stage.stop()
            except Exception:
                log.exception("stage failed to stop", extra={"stage": stage.name})
            log.debug("stopped", extra={"stage": stage.name})
