"""The composition root: configuration → database, storage, services → the aiohttp application.

The process holds no state of its own between requests (everything is in the database and storage), so N of
them can run behind a load balancer on PostgreSQL. On SQLite run one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from cloud import __version__
from cloud.api.context import Context, utcnow
from cloud.api.db import migrate
from cloud.api.db.engine import Database
from cloud.api.principals import HubCaller
from cloud.api.security import Passwords
from cloud.api.services import credits
from cloud.api.services.accounts import Accounts
from cloud.api.services.enqueue import Enqueuer
from cloud.api.services.events import Events
from cloud.api.services.hubs import Hubs
from cloud.api.services.retention import Retention
from cloud.api.services.timeline import Timeline
from cloud.api.services.worker import WorkerHooks
from cloud.api.web import live, routes_page, routes_telegram
from cloud.api.web.middleware import answer_first, json_errors
from cloud.api.web.openapi import build_openapi
from cloud.api.web.registry import SERVICES_KEY, add_routes
from cloud.api.web.routes import ROUTES as CORE_ROUTES
from cloud.config import CloudConfig
from cloud.storage.blob import AzureBlobStore, BlobStore, StorageError, parse_connection_string
from cloud.storage.queue import AzureJobQueue, JobQueue
from pingwatch_common.heap import freeze_startup_heap

log = logging.getLogger(__name__)

ROUTES = CORE_ROUTES + routes_telegram.ROUTES + routes_page.ROUTES


class SchemaOutOfDate(RuntimeError):
    pass


def build_storage(config: CloudConfig) -> tuple[BlobStore, JobQueue]:
    """Blob store and job queue from the storage section. In account_key mode the connection string supplies
    whatever blob_url / queue_url / account_key do not override (tests point just the queue elsewhere)."""
    s = config.storage
    opts: dict[str, Any] = {"retry_total": s.retry_total, "connection_timeout_s": s.connection_timeout_s}
    if s.credential == "account_key":
        parts = parse_connection_string(s.connection_string or "")
        key = s.account_key or parts.get("AccountKey")
        blob_url = s.blob_url or parts.get("BlobEndpoint")
        queue_url = s.queue_url or parts.get("QueueEndpoint")
        if not (key and blob_url and queue_url):
            raise ValueError("storage: account_key mode needs the blob and queue endpoints and the account key")
        return AzureBlobStore(blob_url, s.container, key, **opts), AzureJobQueue(queue_url, s.queue, key, **opts)
    from azure.identity.aio import DefaultAzureCredential

    cred = DefaultAzureCredential()  # managed identity in Azure; `az login` on a workstation
    assert s.blob_url and s.queue_url  # checked by StorageConfig
    return (AzureBlobStore(s.blob_url, s.container, cred, **opts),
            AzureJobQueue(s.queue_url, s.queue, cred, **opts))


@dataclass
class Services:
    ctx: Context
    accounts: Accounts
    hubs: Hubs
    enqueuer: Enqueuer
    events: Events
    timeline: Timeline
    worker: WorkerHooks
    retention: Retention
    openapi: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, config: CloudConfig, *, blobs: BlobStore | None = None, queue: JobQueue | None = None,
              clock: Callable[[], datetime] = utcnow, db: Database | None = None) -> Services:
        if blobs is None or queue is None:
            built_blobs, built_queue = build_storage(config)
            blobs, queue = blobs or built_blobs, queue or built_queue
        ctx = Context(
            config=config,
            db=db or Database(config.database.url, config.database.pool_size),
            blobs=blobs, queue=queue,
            passwords=Passwords(config.auth.argon2_time_cost, config.auth.argon2_memory_kib),
            clock=clock,
        )
        enqueuer = Enqueuer(ctx)
        return cls(ctx=ctx, accounts=Accounts(ctx), hubs=Hubs(ctx), enqueuer=enqueuer, events=Events(ctx, enqueuer),
                   timeline=Timeline(ctx), worker=WorkerHooks(ctx), retention=Retention(ctx),
                   openapi=build_openapi(ROUTES, "ping-watch cloud API", __version__))

    async def hub_balance(self, hub: HubCaller) -> credits.Balance:
        now = self.ctx.clock()
        plan = self.ctx.config.plan(hub.plan)

        def work(conn: Any) -> credits.Balance:
            return credits.granted_balance(conn, hub.account_id, plan, now)

        return await self.ctx.db.tx(work)

    async def start(self) -> None:
        """Check (or apply) the schema, then make sure the container and queues exist."""
        engine = self.ctx.db.engine
        if self.ctx.config.database.migrate_on_start:
            await asyncio.to_thread(migrate.upgrade, engine)
        if not await asyncio.to_thread(migrate.is_current, engine):
            raise SchemaOutOfDate("the database schema is not current; run `pingwatch-cloud migrate` "
                                  "(or set database.migrate_on_start)")
        try:
            await self.ctx.blobs.ensure_container()
            await self.ctx.queue.ensure()
        except StorageError as exc:
            # The API still serves accounts and timelines; uploads answer 503 until storage is back.
            log.warning("storage not reachable at start", extra={"error": str(exc)})

    async def close(self) -> None:
        await self.enqueuer.settle()  # messages of events finalized just before shutdown go out first
        await self.hubs.settle()
        for closer in (self.ctx.blobs.close, self.ctx.queue.close):
            try:
                await closer()
            except Exception:
                log.debug("close failed", exc_info=True)
        await asyncio.to_thread(self.ctx.db.close)


def build_app(services: Services, *, with_jobs: bool = True) -> web.Application:
    from cloud.api.jobs import Jobs

    config = services.ctx.config
    app = web.Application(client_max_size=config.server.max_body_bytes, middlewares=[answer_first, json_errors])
    app[SERVICES_KEY] = services
    add_routes(app, ROUTES)
    live.install(app, services)
    if with_jobs:
        jobs = Jobs(services)

        async def start_jobs(_: web.Application) -> None:
            jobs.start()

        async def stop_jobs(_: web.Application) -> None:
            jobs.stop()

        app.on_startup.append(start_jobs)
        app.on_cleanup.append(stop_jobs)
    return app


async def serve(config: CloudConfig) -> web.Application:
    """The app for `pingwatch-cloud run` (web.run_app awaits this inside its loop)."""
    services = Services.build(config)
    await services.start()
    app = build_app(services)

    async def close(_: web.Application) -> None:
        await services.close()

    app.on_cleanup.append(close)
    # Everything built so far lives as long as the process: out of the collector's full passes, which would
    # otherwise stall a request every few hundred (pingwatch_common.heap).
    frozen = freeze_startup_heap()
    log.debug("start-up heap frozen", extra={"objects": frozen})
    return app
