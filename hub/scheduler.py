"""Timed work: retention runs and the user's arm/disarm schedules (APScheduler, on the hub's event loop).

An arm schedule that fell due while the hub was stopped is applied when it starts: the state at start is what the
schedule says, not what the hub had before it stopped. "Fell due while stopped" is measured against a mark in the
store (``meta.arm_schedules_done_until``: every schedule time up to it has been applied; set at start and at each
schedule applied), so a change made by hand after the last schedule time survives a restart, and a schedule time
passed while running is not applied again at the next start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from hub.arming import ArmState
from hub.bus import Bus
from hub.config import ArmingConfig, StorageConfig
from hub.errors import CameraError
from hub.retention import PrunePlan, apply_prune, plan_prune
from hub.store import Store

log = logging.getLogger(__name__)

# After a write failed for lack of space, retention frees this much beyond storage.min_free_gb: room for a few
# more clips, so the next event is not cut short too.
DISK_FULL_HEADROOM = 64 * 1024 * 1024

_DONE_UNTIL_KEY = "arm_schedules_done_until"
# Without a mark (the first start with schedules), start-up looks this far back for each target's last schedule
# time: weekly schedules are the longest a home's crontab has. Nearer windows first, so a schedule firing every
# minute costs a few dozen trigger steps, not thousands.
_LOOKBACK = (timedelta(hours=1), timedelta(days=1), timedelta(days=8))
_PAST_IT = timedelta(microseconds=1)  # CronTrigger rounds up to the next whole second: "strictly after"


def _local_now() -> datetime:
    return datetime.now().astimezone()


def _last_fire(trigger: CronTrigger, since: datetime | None, now: datetime) -> datetime | None:
    """The trigger's latest fire time in (since, now], looking back at most _LOOKBACK[-1]."""
    for back in _LOOKBACK:
        lo = now - back
        final = since is not None and lo <= since
        if final:
            assert since is not None
            lo = since
        last = None
        t = trigger.get_next_fire_time(None, lo + _PAST_IT)
        while t is not None and t <= now:
            last = t
            t = trigger.get_next_fire_time(None, t + _PAST_IT)
        if last is not None or final:
            return last
    return None


class HubScheduler:
    def __init__(self, storage: StorageConfig, arming_cfg: ArmingConfig, db_path: Path, clips_dir: Path,
                 store: Store, bus: Bus, arming: ArmState, clock: Callable[[], datetime] = _local_now) -> None:
        self._storage = storage
        self._arming_cfg = arming_cfg
        self._db_path = db_path
        self._clips_dir = clips_dir
        self._store = store
        self._bus = bus
        self._arming = arming
        self.scheduler = AsyncIOScheduler()
        self._prune_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[int]] = set()
        self._stopped = False
        # Start-up's notion of "now" (tests pass their own); the running jobs follow APScheduler's clock.
        self._clock = clock

    async def start(self) -> None:
        """Apply the arm schedules that fell due while stopped, start the jobs, and one retention pass now (in the
        background: start-up does not wait for it)."""
        self._stopped = False
        self.scheduler.add_job(self.prune, "interval", minutes=self._storage.prune_interval_min, id="retention",
                               max_instances=1, coalesce=True)
        arm_jobs = [(sched.armed, sched.camera, CronTrigger.from_crontab(sched.cron))
                    for sched in self._arming_cfg.schedules]
        self._catch_up(arm_jobs)
        for i, (armed, camera, trigger) in enumerate(arm_jobs):
            # misfire_grace_time=None: a loop held up past the minute (a slow disk, a busy Pi) applies the
            # schedule late instead of skipping it until tomorrow (APScheduler's default grace is 1 s).
            self.scheduler.add_job(self._scheduled, trigger, id=f"arm-{i}", args=[armed, camera],
                                   coalesce=True, max_instances=1, misfire_grace_time=None)
        self.scheduler.start()
        self.prune_soon()

    async def stop(self) -> None:
        self._stopped = True
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
            # AsyncIOScheduler.shutdown only schedules itself with call_soon_threadsafe: one pass of the loop
            # runs it, so the scheduler is really down (and says so) before the store closes.
            await asyncio.sleep(0)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        async with self._prune_lock:  # a retention pass in its thread finishes before the store closes
            pass

    def prune_soon(self, emergency: bool = False) -> None:
        """Start a retention pass without waiting for it (start-up; a write that hit a full disk)."""
        task = asyncio.ensure_future(self.prune(emergency=emergency))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _scheduled(self, armed: bool, camera: str | None) -> None:
        # A coroutine on purpose: APScheduler's asyncio executor runs a plain function in a worker thread, where
        # the arm change would touch the store, the camera engines and the bus's queues off the event loop.
        self._apply_schedule(armed, camera)

    def _apply_schedule(self, armed: bool, camera: str | None) -> None:
        try:
            self._arming.set_armed(armed, camera)
            log.info("schedule applied", extra={"armed": armed, "camera_id": camera})
        except CameraError:
            log.warning("arm schedule names an unknown camera", extra={"camera_id": camera})
        self._mark_done(self._clock())

    def _catch_up(self, arm_jobs: list[tuple[bool, str | None, CronTrigger]]) -> None:
        """Apply, per target (the hub, a camera), the latest schedule time between the mark and now."""
        now = self._clock()
        since = self._done_until(now)
        latest: dict[str | None, tuple[datetime, bool]] = {}
        for armed, camera, trigger in arm_jobs:  # config order breaks ties: the later line wins
            fired = _last_fire(trigger, since, now)
            if fired is not None and (camera not in latest or fired >= latest[camera][0]):
                latest[camera] = (fired, armed)
        for camera, (fired, armed) in latest.items():
            log.info("arm schedule fell due while the hub was stopped; applying it",
                     extra={"armed": armed, "camera_id": camera, "due": fired.isoformat()})
            self._apply_schedule(armed, camera)
        self._mark_done(now)

    def _done_until(self, now: datetime) -> datetime | None:
        row = self._store.db.execute("SELECT value FROM meta WHERE key = ?", [_DONE_UNTIL_KEY]).fetchone()
        try:
            return datetime.fromtimestamp(float(row[0]), tz=now.tzinfo) if row is not None else None
        except (TypeError, ValueError, OverflowError):
            return None  # a damaged mark: treated as a first start

    def _mark_done(self, until: datetime) -> None:
        self._store.db.table("meta").upsert({"key": _DONE_UNTIL_KEY, "value": repr(until.timestamp())}, pk="key")

    def _plan(self, extra_free: int = 0) -> PrunePlan:
        # Its own connection: sqlite3 connections must not be shared between threads without a lock, and the
        # loop's connection keeps serving the cameras meanwhile.
        store = Store(self._db_path)
        try:
            return plan_prune(store, self._storage, self._clips_dir, extra_free=extra_free)
        finally:
            store.close()

    async def prune(self, emergency: bool = False) -> int:
        """Run retention now; ``emergency`` (a write hit a full disk) also frees room for the next clips."""
        async with self._prune_lock:
            if self._stopped:
                return 0
            plan = await asyncio.to_thread(self._plan, DISK_FULL_HEADROOM if emergency else 0)
            removed = apply_prune(self._store, plan, on_deleted=lambda ev: self._bus.publish(
                "event.deleted", event_id=ev["id"], camera_id=ev["camera_id"]))
            # One line per pass (every storage.prune_interval_min): the log shows retention is alive.
            log.info("retention pass done", extra={"removed": removed, "emergency": emergency})
            return removed
