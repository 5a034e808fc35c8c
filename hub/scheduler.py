"""Timed work: retention runs and the user's arm/disarm schedules (APScheduler, on the hub's event loop)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from hub.retention import PrunePlan, apply_prune, plan_prune
from hub.store import Store

if TYPE_CHECKING:
    from hub.app import Hub

log = logging.getLogger(__name__)

# After a write failed for lack of space, retention frees this much beyond storage.min_free_gb: room for a few
# more clips, so the next event is not cut short too.
DISK_FULL_HEADROOM = 64 * 1024 * 1024


class HubScheduler:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.scheduler = AsyncIOScheduler()
        self._prune_lock = asyncio.Lock()

    def start(self) -> None:
        cfg = self.hub.config
        self.scheduler.add_job(self.prune, "interval", minutes=cfg.storage.prune_interval_min, id="retention",
                               max_instances=1, coalesce=True)
        for i, sched in enumerate(cfg.arming.schedules):
            self.scheduler.add_job(self._apply_schedule, CronTrigger.from_crontab(sched.cron), id=f"arm-{i}",
                                   args=[sched.armed, sched.camera], coalesce=True, max_instances=1)
        self.scheduler.start()

    async def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        async with self._prune_lock:  # a retention pass in its thread finishes before the store closes
            pass

    def _apply_schedule(self, armed: bool, camera: str | None) -> None:
        try:
            self.hub.control.set_armed(armed, camera)
            log.info("schedule applied", extra={"armed": armed, "camera_id": camera})
        except KeyError:
            log.warning("arm schedule names an unknown camera", extra={"camera_id": camera})

    def _plan(self, extra_free: int = 0) -> PrunePlan:
        # Its own connection: sqlite3 connections must not be shared between threads without a lock, and the
        # loop's connection keeps serving the cameras meanwhile.
        store = Store(self.hub.data.db_path)
        try:
            return plan_prune(store, self.hub.config.storage, self.hub.data.clips_dir, extra_free=extra_free)
        finally:
            store.close()

    async def prune(self, emergency: bool = False) -> int:
        """Run retention now; ``emergency`` (a write hit a full disk) also frees room for the next clips."""
        async with self._prune_lock:
            hub = self.hub
            if hub.closing:
                return 0
            plan = await asyncio.to_thread(self._plan, DISK_FULL_HEADROOM if emergency else 0)
            removed = apply_prune(hub.store, plan, on_deleted=lambda ev: hub.bus.publish(
                "event.deleted", event_id=ev["id"], camera_id=ev["camera_id"]))
            # One line per pass (every storage.prune_interval_min): the log shows retention is alive.
            log.info("retention pass done", extra={"removed": removed, "emergency": emergency})
            return removed
