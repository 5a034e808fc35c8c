"""The change feed under the live page and the notifier: per-account delivery, ids committed out of order
(PostgreSQL), a reader that falls behind, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.engine import Connection

from cloud.api import changes
from cloud.api.changes import ChangeFeed
from cloud.api.db.engine import Database, DatabaseClosed

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


async def test_a_feed_whose_database_is_closed_under_it_ends_instead_of_retrying(cloud_db_url: str) -> None:
    """An owner that closes the database before stopping the feed (a shutdown in the wrong order) must not leave
    it retrying for ever: that loop spun thousands of warnings and hung the event loop's shutdown."""
    db = Database(cloud_db_url)
    feed = ChangeFeed(db, poll_interval_s=0.01, listen=False)
    await feed.start()
    try:
        await asyncio.to_thread(db.close)
        feed.wake()
        await asyncio.wait(feed._tasks, timeout=10)
        assert not feed.running
    finally:
        await feed.stop()
    with pytest.raises(DatabaseClosed):
        await db.read(changes.latest_id)


async def test_stop_ends_the_reader_even_when_a_wake_up_comes_with_it(api: CloudApi) -> None:
    """A write's wake-up in the same loop step as stop()'s cancel used to be swallowed by asyncio.wait_for on
    Python 3.11, leaving the reader running after stop() (and retrying on a closed database after it)."""
    db = api.services.ctx.db
    account = str(uuid.uuid4())
    for _ in range(3):
        feed = ChangeFeed(db, poll_interval_s=30, listen=False)
        await feed.start()
        sub = feed.subscribe(account)
        await db.tx(_record(account))
        feed.wake()
        await _next(sub)  # delivered: the reader went on, in the same step, to wait for its next wake-up
        tasks = list(feed._tasks)
        feed.wake()
        await feed.stop()
        assert all(task.done() for task in tasks)


class _ReadThenHold:
    """The feed's database, whose first read returns only when the test lets it (after the read itself ran)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.engine = db.engine
        self.read_done = asyncio.Event()
        self.release = asyncio.Event()

    async def read(self, fn: Any) -> Any:
        result = await self._db.read(fn)
        if not self.read_done.is_set():
            self.read_done.set()
            await self.release.wait()
        return result


async def test_a_wake_up_during_a_read_is_not_lost(api: CloudApi) -> None:
    """A change committed and announced while the reader's read is on its way back must be read at once, not at
    the next poll (the reader used to clear its wake-up after the read, dropping the one that came during it)."""
    db = api.services.ctx.db
    account = str(uuid.uuid4())
    held = _ReadThenHold(db)
    feed = ChangeFeed(held, poll_interval_s=60, listen=False)  # type: ignore[arg-type]
    await feed.start(after_id=await db.read(changes.latest_id))
    sub = feed.subscribe(account)
    try:
        await held.read_done.wait()  # the first read ran and saw nothing of this account
        await db.tx(_record(account, "during"))
        feed.wake()
        held.release.set()
        assert (await _next(sub)).kind == "during"  # within 10 s, far below the 60 s poll
    finally:
        await feed.stop()


class _CountingDb:
    """The feed's database, counting the feed's reads."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.engine = db.engine
        self.reads = 0

    async def read(self, fn: Any) -> Any:
        self.reads += 1
        return await self._db.read(fn)


async def test_an_idle_feed_reads_nothing_until_a_reader_opens_it(api: CloudApi) -> None:
    """The API's live feed: with no page open, a change costs no read in this process; the first page then
    gets what commits after it opened, not what committed while nobody listened."""
    db = api.services.ctx.db
    account = str(uuid.uuid4())
    counting = _CountingDb(db)
    feed = ChangeFeed(counting, poll_interval_s=0.01, listen=False, idle_unsubscribed=True)  # type: ignore[arg-type]
    await feed.start()
    try:
        for i in range(5):
            await db.tx(_record(account, f"unseen-{i}"))
            feed.wake()
            await asyncio.sleep(0.02)  # two poll intervals: the feed would read here if it were not idle
        assert counting.reads == 0
        sub = await feed.open(account)
        await db.tx(_record(account, "seen"))
        feed.wake()
        assert (await _next(sub)).kind == "seen"
        sub.close()  # the last reader leaves: idle again
        before = counting.reads
        for i in range(5):
            await db.tx(_record(account, f"after-{i}"))
            feed.wake()
            await asyncio.sleep(0.02)
        assert counting.reads <= before + 1  # at most the read that was on its way when the reader left
    finally:
        await feed.stop()


async def test_opening_an_idle_feed_still_delivers_a_lower_id_committed_later(api: CloudApi) -> None:
    """PostgreSQL: an id below the newest, still committing when the first reader opens the feed, is delivered
    when it commits (open() takes it as a gap, as reading does), not skipped."""
    db = api.services.ctx.db
    if db.engine.dialect.name == "sqlite":
        return  # one writer: ids cannot commit out of order (the PostgreSQL run covers it)
    account = str(uuid.uuid4())
    feed = ChangeFeed(db, poll_interval_s=0.05, listen=False, idle_unsubscribed=True)
    await feed.start()
    slow = db.engine.connect()
    try:
        tx = slow.begin()
        _record(account, "first")(slow)  # takes the lower id, not committed yet
        await db.tx(_record(account, "second"))
        sub = await feed.open(account)
        assert feed.safe_cursor < feed.cursor  # the missing lower id holds the safe cursor back
        tx.commit()
        feed.wake()
        first = await _next(sub)
        assert first.kind == "first"
    finally:
        slow.close()
        await feed.stop()
