"""Fixtures for the cloud Telegram notifier: the real cloud API (SQLite and PostgreSQL, real Azurite) from
tests/cloud/conftest.py, the fake Telegram Bot API (tests/harness/telegram.py) and a `Notifier` running
in-process against the API's own context (same database, same blob storage)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import cv2
import numpy as np
import pytest_asyncio
import sqlalchemy as sa

from cloud.api.db.schema import leases, telegram_cursor, telegram_deliveries, telegram_updates
from cloud.notify import Notifier
from tests.cloud.conftest import (  # noqa: F401  (fixtures used by these tests)
    Clip,
    CloudApi,
    HubSession,
    UserSession,
    api_factory,
    cloud_db_url,
    mp4_clip,
)
from tests.harness.telegram import FakeTelegram, SentMessage

T = TypeVar("T")
_chat_ids = itertools.count(random.randint(10_000, 10_000_000) * 100)


def new_chat() -> int:
    """Chat ids unique across tests: the database (and so the chats table) is shared by the session."""
    return next(_chat_ids)


def jpeg(shade: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((48, 64, 3), shade, np.uint8))
    assert ok
    return bytes(buf)


async def until(check: Callable[[], Awaitable[T | None]], timeout: float = 15.0, what: str = "condition") -> T:
    """Poll `check` under a deadline (the database has no condition to await)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        await asyncio.sleep(0.05)  # polling interval of the wait, not synchronisation by time


def telegram_config(fake: FakeTelegram, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"enabled": True, "bot_token": fake.token, "api_base_url": fake.base_url,
                           "api_file_url": fake.base_file_url, "bot_username": fake.bot_username,
                           "min_interval_s": 0, "global_per_s": 30}
    cfg.update(over)
    return cfg


@dataclass
class Rig:
    api: CloudApi
    fake: FakeTelegram
    notifier: Notifier
    user: UserSession
    hub: HubSession
    chat: int
    made: list[Notifier] = field(default_factory=list)

    @property
    def http(self) -> Any:
        return self.api.http

    def new_notifier(self, **kw: Any) -> Notifier:
        n = Notifier(self.api.services.ctx, retry_base_s=0.05, retry_max_s=0.2, poll_timeout_s=1,
                     conflict_wait_s=0.2, housekeeping_s=0.2, **kw)
        self.made.append(n)
        return n

    async def link(self, chat: int | None = None, user: UserSession | None = None,
                   expect: str = "✅ Linked") -> None:
        chat = chat or self.chat
        r = await self.http.post("/api/v1/telegram/links", headers=(user or self.user).headers)
        assert r.status_code == 201, r.text
        before = len(self.fake.sent_to(chat))
        await self.fake.push_message(chat, f"/start {r.json()['token']}")
        sent = await self.fake.wait_messages(chat, before + 1)
        assert sent[-1].text is not None and sent[-1].text.startswith(expect), sent[-1].text

    async def start_event(self, hub_event_id: str, snapshot: bytes | None = None, camera: str = "front",
                          hub: HubSession | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"event_id": hub_event_id, "camera_id": camera, "trigger": "motion",
                                "started_at": "2026-12-01T10:00:00+00:00"}
        if snapshot is not None:
            body["snapshot_jpeg"] = base64.b64encode(snapshot).decode()
        r = await self.http.post("/api/v1/hub/event-starts", json=body, headers=(hub or self.hub).headers)
        assert r.status_code == 201, r.text
        return r.json()

    async def queued(self, hub_event_id: str, clip: Clip, hub: HubSession | None = None) -> str:
        """The clip uploaded and finalized (state queued): the cloud's event id."""
        hub = hub or self.hub
        ev = await self.api.uploaded_event(hub, clip, event_id=hub_event_id)
        r = await self.api.finalize(hub, ev["id"])
        assert r.status_code == 200 and r.json()["state"] == "queued", r.text
        return str(ev["id"])

    async def done(self, event_id: str, notify: bool = True, text: str = "A person walked up to Front.") -> None:
        worker = self.api.services.worker
        assert await worker.start(event_id) is not None
        summary = {"text": text, "notify": notify,
                   "reason": "person (0.91) at 10:00" if notify else "saw cat, but the rules ask for person",
                   "labels": [{"label": "person" if notify else "cat", "count": 1}]}
        assert await worker.complete(event_id, {"person" if notify else "cat": 0.91}, summary)

    async def rows(self, hub_event_id: str | None = None, chat: int | None = None) -> list[Any]:
        d = telegram_deliveries
        q = sa.select(d).where(d.c.chat_id == (chat or self.chat)).order_by(d.c.id)
        if hub_event_id is not None:
            q = q.where(d.c.event_key == hub_event_id)
        return await self.api.services.ctx.db.read(lambda conn: conn.execute(q).all())

    async def settled(self, hub_event_id: str, stage: str, chat: int | None = None) -> Any:
        async def check() -> Any:
            for r in await self.rows(hub_event_id, chat):
                if r.stage == stage and r.state != "pending":
                    return r
            return None

        return await until(check, what=f"{stage} row of {hub_event_id} settled")

    def messages(self, chat: int | None = None) -> list[SentMessage]:
        return self.fake.sent_to(chat or self.chat)


async def isolate(api: CloudApi) -> None:
    """The session shares one database: this test's notifier starts at the newest change and does not take
    over what earlier tests left pending."""
    def work(conn: Any) -> None:
        conn.execute(sa.delete(telegram_cursor))
        conn.execute(sa.delete(leases))  # a lease an earlier test's notifier held
        conn.execute(sa.update(telegram_deliveries).where(telegram_deliveries.c.state == "pending")
                     .values(state="failed", last_error="left by an earlier test"))
        # Each test's fake Bot API numbers its updates from 1: ids of an earlier test's bot are not this one's.
        conn.execute(sa.delete(telegram_updates))

    await api.services.ctx.db.tx(work)


@pytest_asyncio.fixture
async def rig_factory(api_factory: Any, telegram: FakeTelegram) -> AsyncIterator[Callable[..., Awaitable[Rig]]]:  # noqa: F811
    rigs: list[Rig] = []

    async def make(start: bool = True, **telegram_over: Any) -> Rig:
        server = telegram_over.pop("server", {"public_url": "http://127.0.0.1:9"})
        api = await api_factory(telegram=telegram_config(telegram, **telegram_over), server=server)
        await isolate(api)
        hub = await api.hub()
        rig = Rig(api=api, fake=telegram, notifier=None, user=hub.user, hub=hub, chat=new_chat())  # type: ignore
        rig.notifier = rig.new_notifier()
        rigs.append(rig)
        if start:
            await rig.notifier.start()
        return rig

    try:
        yield make
    finally:
        for rig in rigs:
            for n in rig.made:
                await n.stop()


@pytest_asyncio.fixture
async def rig(rig_factory: Callable[..., Awaitable[Rig]]) -> Rig:
    return await rig_factory()
