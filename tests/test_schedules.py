"""Arm/disarm schedules (issue 15): they fire at their local time, on the event loop, even late, and the state at
a hub's start is what the schedule says, across restarts, without undoing a change made by hand.

Real parts: HubScheduler with APScheduler, ArmState, Store (SQLite), Bus. Time: start-up reads an injected clock
(the restarts below happen "hours apart"); a running job is moved a few hundred ms ahead with APScheduler's own
modify_job and awaited through the bus's "armed" topic, never slept for.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import tzlocal

from hub.arming import ArmState
from hub.bus import Bus, Subscription
from hub.config import ArmingConfig, ArmSchedule, StorageConfig
from hub.scheduler import HubScheduler
from hub.store import Store

TZ = "America/New_York"  # not UTC: a schedule read in the wrong zone fires hours off
LOCAL = ZoneInfo(TZ)
TIMEOUT = 10.0
SCHEDULES = ArmingConfig(schedules=[
    ArmSchedule(cron="0 22 * * *", armed=True),  # the hub arms at 22:00
    ArmSchedule(cron="0 7 * * *", armed=False),  # and disarms at 07:00
    ArmSchedule(cron="30 22 * * *", armed=False, camera="yard"),  # the yard camera goes off at 22:30
])


@pytest.fixture(autouse=True)
def local_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", TZ)
    time.tzset()
    tzlocal.reload_localzone()
    yield
    monkeypatch.undo()
    time.tzset()
    tzlocal.reload_localzone()


def at(day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute, second, tzinfo=LOCAL)


class Clock:
    """What the hub takes for 'now' at start-up and when it applies a schedule."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Hub:
    """The parts of a hub that schedules touch, started and stopped like hub/app.py does (arming, scheduler)."""

    def __init__(self, tmp_path: Path, clock: Clock, schedules: ArmingConfig = SCHEDULES) -> None:
        self.store = Store(tmp_path / "hub.db")
        self.store.ensure_static_camera("yard", "Yard", "file")
        self.bus = Bus()
        self.armed: Subscription = self.bus.subscribe("armed")
        self.arming = ArmState(self.store, self.bus)
        (tmp_path / "clips").mkdir(exist_ok=True)
        self.scheduler = HubScheduler(StorageConfig(data_dir=tmp_path, min_free_gb=0), schedules,
                                      tmp_path / "hub.db", tmp_path / "clips", self.store, self.bus, self.arming,
                                      clock=clock)

    async def __aenter__(self) -> Hub:
        self.arming.restore()
        await self.scheduler.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.scheduler.stop()
            self.arming.close()
        finally:
            self.store.close()

    def state(self) -> tuple[bool, bool]:
        return self.arming.is_armed(), self.arming.camera_switch("yard")

    def published(self) -> list[dict]:
        out = []
        while not self.armed.queue.empty():
            out.append(self.armed.queue.get_nowait().data)
        return out

    async def next_armed(self) -> dict:
        return (await asyncio.wait_for(self.armed.get(), TIMEOUT)).data

    def fire_soon(self, job_id: str) -> None:
        """Move a job's next run a few hundred ms ahead (APScheduler's own clock runs the job)."""
        when = datetime.now(LOCAL) + timedelta(milliseconds=300)
        self.scheduler.scheduler.modify_job(job_id, next_run_time=when)


async def test_state_at_start_follows_the_schedule_across_restarts(tmp_path: Path) -> None:
    clock = Clock(at(12, 21, 59))
    # First start, 21:59: the last schedule times were 07:00 today (hub off) and 22:30 yesterday (yard off).
    async with Hub(tmp_path, clock) as hub:
        assert hub.state() == (False, False)
        assert {(m["camera_id"], m["armed"]) for m in hub.published()} == {(None, False), ("yard", False)}

    # Stopped over 22:00; started again at 22:01: the hub arms at start, the yard's 22:30 is still ahead.
    clock.now = at(12, 22, 1)
    async with Hub(tmp_path, clock) as hub:
        assert hub.state() == (True, False)
        assert hub.published() == [{"camera_id": None, "armed": True, "until": None}]
        clock.now = at(12, 22, 5)
        hub.arming.set_armed(False)  # someone disarms by hand at 22:05

    # Restarted at 22:20: no schedule time since, so the change by hand stands.
    clock.now = at(12, 22, 20)
    async with Hub(tmp_path, clock) as hub:
        assert hub.state() == (False, False)
        assert hub.published() == []
        hub.arming.set_armed(True)  # armed and the yard switched on by hand before the hub stops for the night
        hub.arming.set_armed(True, "yard")

    # Stopped over 22:30 and 07:00; started at 08:00 the next day: both due changes are applied.
    clock.now = at(13, 8, 0)
    async with Hub(tmp_path, clock) as hub:
        assert hub.state() == (False, False)


async def test_a_schedule_fires_on_the_loop_and_is_not_applied_again_after_a_crash(tmp_path: Path) -> None:
    clock = Clock(at(12, 21, 59))
    async with Hub(tmp_path, clock) as hub:
        hub.published()
        assert hub.state() == (False, False)
        threads: list[int] = []
        hub.arming.add_listener(lambda: threads.append(threading.get_ident()))
        clock.now = at(12, 22, 0, 1)
        hub.fire_soon("arm-0")  # the 22:00 job, run by APScheduler
        assert await hub.next_armed() == {"camera_id": None, "armed": True, "until": None}
        assert hub.state() == (True, False)
        # Applied on the event loop's thread: the store, the camera engines and the bus are not thread-safe.
        assert threads == [threading.get_ident()]
        clock.now = at(12, 22, 5)
        hub.arming.set_armed(False)  # disarmed by hand; then the hub stops (a crash would leave the same mark)
        hub.published()

    clock.now = at(12, 22, 10)
    async with Hub(tmp_path, clock) as hub:
        assert hub.state() == (False, False)  # the 22:00 arm was applied already: not again
        assert hub.published() == []


async def test_a_schedule_held_up_by_a_busy_loop_still_applies(tmp_path: Path) -> None:
    clock = Clock(at(12, 21, 59))
    async with Hub(tmp_path, clock) as hub:
        hub.published()
        hub.fire_soon("arm-0")
        # The loop is held up across the schedule time (a slow disk, a busy Pi): the job runs late, not never.
        time.sleep(1.5)  # noqa: ASYNC251 - blocking the loop on purpose: it is the condition under test
        assert await hub.next_armed() == {"camera_id": None, "armed": True, "until": None}
        assert hub.state() == (True, False)


async def test_schedule_times_are_local_and_a_camera_schedule_touches_only_that_camera(tmp_path: Path) -> None:
    clock = Clock(at(12, 21, 59))
    async with Hub(tmp_path, clock) as hub:
        hub.arming.set_armed(True, "yard")
        hub.published()
        job = hub.scheduler.scheduler.get_job("arm-2")
        assert job is not None and job.next_run_time is not None
        assert (job.next_run_time.hour, job.next_run_time.minute) == (22, 30)
        assert job.next_run_time.utcoffset() == LOCAL.utcoffset(job.next_run_time.replace(tzinfo=None))
        hub.fire_soon("arm-2")
        assert await hub.next_armed() == {"camera_id": "yard", "armed": False, "until": None}
        assert hub.state() == (False, False) and hub.arming.camera_switch("yard") is False
        assert hub.arming.is_armed() is False  # the hub's own switch was not touched (still off from 07:00)


async def test_a_schedule_naming_an_unknown_camera_is_skipped(tmp_path: Path) -> None:
    schedules = ArmingConfig(schedules=[ArmSchedule(cron="0 22 * * *", armed=True),
                                        ArmSchedule(cron="0 21 * * *", armed=False, camera="gone")])
    async with Hub(tmp_path, Clock(at(12, 22, 30)), schedules) as hub:
        assert hub.state()[0] is True
        assert hub.published() == [{"camera_id": None, "armed": True, "until": None}]
