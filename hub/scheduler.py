"""Timed work: retention runs and the user's arm/disarm schedules (APScheduler, on the hub's event loop)."""

from __future__ import annotations

import asyncio
import logging
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


class HubScheduler:
    def __init__(self, storage: StorageConfig, arming_cfg: ArmingConfig, db_path: Path, clips_dir: Path,
                 store: Store, bus: Bus, arming: ArmState) -> None:
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

    async def start(self) -> None:
        """Start the jobs, and one retention pass now (in the background: start-up does not wait for it)."""
        self._stopped = False
        self.scheduler.add_job(self.prune, "interval", minutes=self._storage.prune_interval_min, id="retention",
                               max_instances=1, coalesce=True)
        for i, sched in enumerate(self._arming_cfg.schedules):
            self.scheduler.add_job(self._apply_schedule, CronTrigger.from_crontab(sched.cron), id=f"arm-{i}",
                                   args=[sched.armed, sched.camera], coalesce=True, max_instances=1)
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

    def _apply_schedule(self, armed: bool, camera: str | None) -> None:
        try:
            self._arming.set_armed(armed, camera)
            log.info("schedule applied", extra={"armed": armed, "camera_id": camera})
        except CameraError:
            log.warning("arm schedule names an unknown camera", extra={"camera_id": camera})

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
