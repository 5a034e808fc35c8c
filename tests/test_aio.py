"""pingwatch_common.aio: a deadline wait must never swallow the cancellation that stops a background loop
(Python 3.11's asyncio.wait_for does when the awaited thing completes in the same loop step)."""

from __future__ import annotations

import asyncio

import pytest

from pingwatch_common.aio import wait_event, within


async def _loop_until_cancelled(event: asyncio.Event, rounds: list[int]) -> None:
    while len(rounds) < 2:  # bounded, so that a lost cancellation fails the test instead of hanging it
        rounds.append(1)
        event.clear()
        await wait_event(event, 5 if len(rounds) == 1 else 0.01)


async def test_a_wake_up_in_the_same_step_as_the_cancel_still_stops_the_loop() -> None:
    event, rounds = asyncio.Event(), []
    task = asyncio.create_task(_loop_until_cancelled(event, rounds))
    await asyncio.sleep(0)  # the loop is now waiting on the event
    event.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(rounds) == 1


async def test_wait_event_says_whether_the_event_came() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 0.01) is True


async def test_within_gives_the_result_or_times_out() -> None:
    assert await within(asyncio.sleep(0, result=7), 1) == 7
    with pytest.raises(TimeoutError):
        await within(asyncio.Event().wait(), 0.01)


async def test_within_passes_the_cancel_of_a_shielded_task_that_just_finished() -> None:
    inner = asyncio.get_running_loop().create_future()

    async def waiter() -> object:
        return await within(asyncio.shield(inner), 5)

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    inner.set_result("done")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
