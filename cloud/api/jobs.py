"""Scheduled work inside an API process (APScheduler): the queue reconciler and retention.

Safe to run in every API process at once: the reconciler claims each send in the database, and retention's
deletes are idempotent. Either can be switched off per process in the config.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from cloud.api.services.commands import HubCommands

if TYPE_CHECKING:
    from cloud.api.app import Services

log = logging.getLogger(__name__)


class Jobs:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        cfg = services.ctx.config
        # coalesce + max_instances=1: a slow pass is never run twice at once, missed runs collapse into one.
        if cfg.reconciler.enabled:
            self.scheduler.add_job(self._reconcile, "interval", seconds=cfg.reconciler.interval_s, id="reconciler",
                                   coalesce=True, max_instances=1, next_run_time=datetime.now(UTC))
        # Commands the hub never fetched are answered "offline" within a few seconds of their expiry.
        self.scheduler.add_job(self._expire_commands, "interval", seconds=5, id="command-expiry", coalesce=True,
                               max_instances=1, next_run_time=datetime.now(UTC))
        if cfg.retention.enabled:
            self.scheduler.add_job(self._retention, "interval", minutes=cfg.retention.interval_min, id="retention",
                                   coalesce=True, max_instances=1, next_run_time=datetime.now(UTC))

    @property
    def job_ids(self) -> list[str]:
        return [j.id for j in self.scheduler.get_jobs()]

    def start(self) -> None:
        self.scheduler.start()

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    async def _reconcile(self) -> None:
        try:
            await self.services.enqueuer.reconcile()
        except Exception:
            log.exception("reconciler pass failed")

    async def _retention(self) -> None:
        try:
            await self.services.retention.run_once()
        except Exception:
            log.exception("retention pass failed")

    async def _expire_commands(self) -> None:
        try:
            await HubCommands(self.services.ctx).expire_due()
        except Exception:
            log.exception("command expiry pass failed")
