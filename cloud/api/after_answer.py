"""Work that a request leaves for after its answer has been sent.

A service that has committed something whose follow-up the caller need not wait for (finalize's queue message)
calls `after_answer(start)`. Inside a request (the web edge's `answer_first` middleware opened a collection),
`start` runs once the answer is written, so its CPU does not delay the answer on this event loop; elsewhere (the
CLI, jobs, tests that call services directly) it runs at once. Losing it (the process dies in between) must be
harmless: callers keep their own durable claim (the reconciler re-sends an unsent message).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

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
