"""The change feed under the live page and the notifier: per-account delivery, ids committed out of order
(PostgreSQL), a reader that falls behind, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from sqlalchemy.engine import Connection

from cloud.api import changes
from cloud.api.changes import ChangeFeed

from .conftest import CloudApi


def _record(account: str, kind: str = "test") -> callable:  # type: ignore[valid-type]
    def work(conn: Connection) -> None:
        changes.record(conn, account_id=account, kind=kind, at=datetime.now(UTC), subject_id=str(uuid.uuid4()))
    return work


async def _next(sub: changes.Subscription) -> changes.Change:
    change = await asyncio.wait_for(sub.get(), 10)
    assert change is not None
    return change


async def test_each_subscription_gets_its_accounts_changes_in_order(api: CloudApi) -> None:
    db = api.services.ctx.db
    feed = ChangeFeed(db, poll_interval_s=0.05)
    await feed.start()
    await feed.wait_listening()
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    sub_a, sub_all = feed.subscribe(a), feed.subscribe(None)
    try:
        for account, kind in ((a, "one"), (b, "two"), (a, "three")):
            await db.tx(_record(account, kind))
        assert [(await _next(sub_a)).kind for _ in range(2)] == ["one", "three"]
        mine = []
        while len(mine) < 3:
            change = await _next(sub_all)
            if change.account_id in (a, b):  # other tests' accounts share the session's database
                mine.append(change.kind)
        assert mine == ["one", "two", "three"]
    finally:
        await feed.stop()
    assert await sub_a.get() is None  # a stopped feed ends its subscriptions


async def test_an_id_committed_after_a_higher_one_is_still_delivered(api: CloudApi) -> None:
    """Two writers: the first takes id n and commits last. The feed must deliver n after n+1, not skip it."""
    db = api.services.ctx.db
    account = str(uuid.uuid4())
    feed = ChangeFeed(db, poll_interval_s=0.05)
    await feed.start()
    sub = feed.subscribe(account)
    slow = db.engine.connect()
    try:
        tx = slow.begin()
        if db.engine.dialect.name == "sqlite":
            # SQLite has one writer: the slow transaction holds the lock, so nothing can commit past it. Commit it
            # first; the out-of-order case exists only on PostgreSQL.
            _record(account, "first")(slow)
            tx.commit()
            await db.tx(_record(account, "second"))
        else:
            _record(account, "first")(slow)  # takes the lower id, not committed yet
            await db.tx(_record(account, "second"))
            second = await _next(sub)
            assert second.kind == "second"
            # Not a place to resume from yet: the lower id is still missing.
            assert second.safe_cursor < second.id - 1
            tx.commit()
            first = await _next(sub)
            assert first.kind == "first" and first.id < second.id
            assert first.safe_cursor >= second.id  # now everything up to the second was delivered
            return
        got = {(await _next(sub)).kind for _ in range(2)}
        assert got == {"first", "second"}
    finally:
        slow.close()
        await feed.stop()


async def test_a_reader_that_falls_behind_is_told_to_reload(api: CloudApi) -> None:
    db = api.services.ctx.db
    account = str(uuid.uuid4())
    feed = ChangeFeed(db, poll_interval_s=0.05)
    await feed.start()
    sub = feed.subscribe(account, max_pending=2)

    def four(conn: Connection) -> None:
        for _ in range(4):
            _record(account)(conn)

    try:
        # One transaction: the feed reads the four in one pass and offers them before the reader can take one.
        await db.tx(four)
        seen = 0
        while (await asyncio.wait_for(sub.get(), 10)) is not None:
            seen += 1
        assert sub.overflowed and seen <= 2
    finally:
        await feed.stop()


async def test_stop_never_hangs_on_a_task_that_swallows_its_cancellation(api: CloudApi, monkeypatch) -> None:
    """psycopg can turn the cancellation of a LISTEN wait into its own error; a shutdown must still finish."""
    monkeypatch.setattr(changes, "STOP_TIMEOUT_S", 0.2)
    feed = ChangeFeed(api.services.ctx.db, poll_interval_s=0.05)
    await feed.start()
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # what a library that converts the cancellation looks like from outside

    task = asyncio.create_task(stubborn())
    feed._tasks.append(task)
    sub = feed.subscribe(None)
    await asyncio.wait_for(feed.stop(), 10)  # returns although one task refused to end
    assert await sub.get() is None
    release.set()
    task.cancel()
    await asyncio.wait({task}, timeout=5)
