"""Work that a request leaves for after its answer has been sent.

A service that has committed something whose follow-up the caller need not wait for (finalize's queue message)
calls `after_answer(start)`. Inside a request (the web edge's `answer_first` middleware opened a collection),
`start` runs once the answer is written, so its CPU does not delay the answer on this event loop; elsewhere (the
CLI, jobs, tests that call services directly) it runs at once. Losing it (the process dies in between) must be
harmless: callers keep their own durable claim (the reconciler re-sends an unsent message). `FollowUps` starts
such work as tasks and lets shutdown wait for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_pending: ContextVar[list[Callable[[], None]] | None] = ContextVar("pingwatch_after_answer", default=None)


def after_answer(start: Callable[[], None]) -> None:
    """Run ``start`` after the current request's answer is sent (at once outside a request)."""
    pending = _pending.get()
    if pending is None:
        start()
    else:
        pending.append(start)


@contextmanager
def collecting() -> Iterator[list[Callable[[], None]]]:
    """What `after_answer` is given while the block runs (the web edge runs it after answering)."""
    pending: list[Callable[[], None]] = []
    token = _pending.set(pending)
    try:
        yield pending
    finally:
        _pending.reset(token)


class FollowUps:
    """Tasks started by `after_answer`, each kept until it ends (the event loop holds only a weak reference to a
    task) so that shutdown can wait for the last ones."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def start_after_answer(self, work: Callable[[], Coroutine[Any, Any, Any]], name: str) -> None:
        def begin() -> None:
            task = asyncio.create_task(work(), name=name)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        after_answer(begin)

    async def settle(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) for the tasks started so far."""
        pending = set(self._tasks)
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)
