"""pingwatch_common.heap: the start-up heap leaves the collector's reach; what comes later is still collected."""

from __future__ import annotations

import gc
import weakref

from pingwatch_common.heap import freeze_startup_heap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref[_Node]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_frozen_objects_are_out_of_reach_and_later_garbage_is_collected() -> None:
    before = _cycle()  # unreachable, but still waiting for a collection: the freeze collects it first
    try:
        frozen = freeze_startup_heap()
        assert frozen == gc.get_freeze_count() > 0
        assert before() is None
        later = _cycle()
        assert later() is not None
        gc.collect()
        assert later() is None  # a cycle made after the freeze is garbage as usual
    finally:
        gc.unfreeze()  # the rest of the test session collects as before
