"""The live channel's source: rows of the `changes` table, written with each change, read by every API process
(WebSocket fan-out to the page) and by the Telegram notifier.

Writing (`record`) happens inside the transaction that makes the change, so what readers see has committed, and
nothing that committed is missed. On PostgreSQL the same transaction NOTIFYs `pingwatch_changes` (delivered at
commit), so readers in any process wake at once; on SQLite (one API process) readers poll every
`poll_interval_s`. Either way the notification only wakes a reader: the rows are the truth, so a lost
notification delays a change by at most one poll.

Reading (`ChangeFeed`) follows the highest id seen. Ids come from a sequence, and on PostgreSQL two transactions
can commit out of id order (id 8 visible before id 7): an id below the highest seen that is not there yet is a
gap, re-read until it appears or `gap_grace_s` passes (a rolled-back transaction leaves a gap for ever). So the
highest id seen is not a place to resume from: each delivered change carries `safe_cursor`, the highest id
below which every change has been delivered (in this order) at the moment it was; a reader that saves its
position (the notifier) or hands one to a client (the live page) uses that, and a resume re-reads at most a few
changes it has already seen.

An API process's feed reads only while a live page is connected to it (`idle_unsubscribed`): with N processes and
no page open, each change would otherwise cost N reads that nobody uses (measured: 8 % of an API process's samples
under upload load).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud.api.db.engine import Database, DatabaseClosed
from cloud.api.db.schema import changes, events
from pingwatch_common.aio import wait_event

log = logging.getLogger(__name__)

CHANNEL = "pingwatch_changes"
READ_BATCH = 500
STOP_TIMEOUT_S = 5.0

# Kinds of change (the `kind` column). Data fields for each are listed beside it.
EVENT_STARTED = "event.started"  # subject: event_starts.id; data: hub_event_id, camera_id, hub_id, late
EVENT_STATE = "event.state"  # subject: events.id; data: state, hub_event_id, camera_id, hub_id
HUB_STATE = "hub.state"  # subject: hubs.id; data: armed, disarmed_until, online cameras
COMMAND_DONE = "command.done"  # subject: hub_commands.id; data: kind, ok, message, origin


@dataclass(frozen=True)
class Change:
    id: int
    account_id: str
    kind: str
    subject_id: str | None
    at: datetime
    data: dict[str, Any]
    # Set by ChangeFeed: every change with an id up to this one was delivered no later than this one (0: unknown,
    # e.g. a change read straight from the table).
    safe_cursor: int = 0


def record(conn: Connection, *, account_id: str, kind: str, at: datetime, subject_id: str | None = None,
           data: dict[str, Any] | None = None) -> None:
    """Add a change inside the caller's transaction (and wake PostgreSQL listeners when it commits)."""
    conn.execute(_record_statement(conn.dialect.name),
                 _change_params(account_id=account_id, kind=kind, at=at, subject_id=subject_id, data=data or {}))


_CHANGE_COLUMNS = ("account_id", "kind", "subject_id", "at", "data")


def _change_params(**change: Any) -> dict[str, Any]:
    return {f"c_{k}": v for k, v in change.items()} | {"c_channel": CHANNEL}


def _change_values() -> dict[str, Any]:
    """The change's columns as the bind parameters that ``_change_params`` fills."""
    return {k: sa.bindparam(f"c_{k}", type_=changes.c[k].type) for k in _CHANGE_COLUMNS}


def _notify() -> Any:
    return sa.func.pg_notify(sa.bindparam("c_channel", type_=sa.String), sa.bindparam("c_account_id", type_=sa.String))


# The statements below are built once: on the upload calls' path, building one cost more than running it
# (SQLAlchemy makes a proxy of every returned column for a CTE, ~2 ms a call here).
@functools.cache
def _record_statement(dialect: str) -> Any:
    insert = sa.insert(changes).values(_change_values())
    if dialect == "postgresql":
        # One round trip: the insert as a data-modifying CTE of the NOTIFY (PostgreSQL runs it whether or not
        # the outer query reads it). Upload initiate and finalize each record a change on their request's path.
        return sa.select(_notify()).add_cte(insert.cte("recorded"))
    return insert


def execute_recorded(conn: Connection, dml: Any, params: dict[str, Any], *, account_id: str, kind: str,
                     at: datetime, subject_id: str, data: dict[str, Any]) -> Any:
    """Run ``dml`` (an INSERT or UPDATE ... RETURNING, built once for this connection's dialect) with ``params``
    and `record` a change when it returned a row; answers that row (None: it wrote nothing, nothing recorded).

    On PostgreSQL one statement, atomic without a transaction of its own: the change's insert and the NOTIFY ride
    on ``dml`` as CTEs (upload initiate and finalize run this on their request's path: a round trip less each).
    On SQLite, which has no writing CTEs, two statements: the caller holds a transaction (``Database.statements``).
    """
    if conn.dialect.name != "postgresql":
        row = conn.execute(dml, params).first()
        if row is not None:
            record(conn, account_id=account_id, kind=kind, at=at, subject_id=subject_id, data=data)
        return row
    change = _change_params(account_id=account_id, kind=kind, at=at, subject_id=subject_id, data=data)
    return conn.execute(_recorded_statement(dml), params | change).first()


# Bounded: keyed by the statement object, so a caller that built ``dml`` per call would otherwise grow it for ever.
@functools.lru_cache(maxsize=32)
def _recorded_statement(dml: Any) -> Any:
    done = dml.cte("done")
    values = _change_values()
    recorded = sa.insert(changes).from_select(list(values), sa.select(*values.values()).select_from(done))
    # pg_notify once per returned row: none when nothing was written, as no change was recorded then.
    return sa.select(*done.c, _notify().label("notified")).add_cte(recorded.cte("recorded"))


def event_state_data(event: Mapping[Any, Any], **extra: Any) -> dict[str, Any]:
    """An event.state change's data, from the event's columns (a row's mapping, or the values being inserted)."""
    return {key: event[key] for key in ("state", "hub_event_id", "camera_id", "hub_id")} | extra


def record_event_state(conn: Connection, event_id: str, at: datetime, *, row: Any = None, **extra: Any) -> None:
    """The event's current state as a change (called in the transaction that moved it). ``row``: the event's
    row as that transaction just wrote it (an INSERT/UPDATE ... RETURNING), which saves reading it again."""
    if row is None:
        row = conn.execute(sa.select(events.c.account_id, events.c.hub_id, events.c.camera_id,
                                     events.c.hub_event_id, events.c.state).where(events.c.id == event_id)).first()
    if row is not None:
        record(conn, account_id=row.account_id, kind=EVENT_STATE, at=at, subject_id=event_id,
               data=event_state_data(row._mapping, **extra))


def _change(row: Any) -> Change:
    return Change(id=int(row.id), account_id=row.account_id, kind=row.kind, subject_id=row.subject_id, at=row.at,
                  data=dict(row.data or {}))


def read_after(conn: Connection, after_id: int, *, account_id: str | None = None, limit: int = 500) -> list[Change]:
    """Changes with an id above `after_id`, oldest first (one account's, or everyone's)."""
    q = sa.select(changes).where(changes.c.id > after_id).order_by(changes.c.id).limit(limit)
    if account_id is not None:
        q = q.where(changes.c.account_id == account_id)
    return [_change(r) for r in conn.execute(q)]


def oldest_id(conn: Connection) -> int | None:
    """The oldest change still kept (retention deletes old ones), None when there is none."""
    value = conn.execute(sa.select(sa.func.min(changes.c.id))).scalar()
    return None if value is None else int(value)


def latest_id(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(changes.c.id), 0))).scalar_one())


GAP_WINDOW = 64  # how many of the newest ids open() checks for ones still committing


def _newest_with_gaps(conn: Connection) -> tuple[int, list[int]]:
    """The newest change id, and the ids below it that may still be committing.

    SQLite has one writer, so ids commit in order: none. On PostgreSQL, an id missing among the GAP_WINDOW ids
    below the newest is either a transaction still in progress or a row that will never be there (rolled back,
    or deleted by retention); only the first matters, and only while some transaction is in progress at all, so
    with none (the snapshot's in-progress list is empty) there is nothing to wait for."""
    if conn.dialect.name != "postgresql":
        return latest_id(conn), []
    ids = [int(i) for i in conn.execute(
        sa.select(changes.c.id).order_by(changes.c.id.desc()).limit(GAP_WINDOW)).scalars()]
    if not ids:
        return 0, []
    in_progress = conn.execute(sa.text("SELECT EXISTS (SELECT 1 FROM pg_snapshot_xip(pg_current_snapshot()))")).scalar()
    if not in_progress:
        return ids[0], []
    present = set(ids)
    return ids[0], [i for i in range(max(1, ids[0] - GAP_WINDOW + 1), ids[0]) if i not in present]


class Subscription:
    """What one reader receives: changes in id order, for one account or (account_id None) all of them."""

    def __init__(self, feed: ChangeFeed, account_id: str | None, max_pending: int) -> None:
        self.account_id = account_id
        self._feed = feed
        self._queue: asyncio.Queue[Change | None] = asyncio.Queue(max_pending)
        self.overflowed = False  # the reader fell behind and lost changes: it must re-read (e.g. reload the page)

    def _offer(self, change: Change) -> None:
        if self.overflowed:
            return
        try:
            self._queue.put_nowait(change)
        except asyncio.QueueFull:
            self._end()

    def _end(self) -> None:
        # The same queue object (a reader may be awaiting it): emptied, then the end marker.
        self.overflowed = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def get(self) -> Change | None:
        """The next change; None once the subscription overflowed or the feed stopped."""
        return await self._queue.get()

    def close(self) -> None:
        self._feed._unsubscribe(self)

    def __aiter__(self) -> AsyncIterator[Change]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Change]:
        while (change := await self.get()) is not None:
            yield change


class ChangeFeed:
    """One per process: a background task reads new changes and hands each to the subscriptions it concerns."""

    def __init__(self, db: Database, *, poll_interval_s: float = 0.25, gap_grace_s: float = 5.0,
                 listen: bool = True, idle_unsubscribed: bool = False) -> None:
        self._db = db
        # idle_unsubscribed: read nothing while nobody is subscribed (an API process with no live page open,
        # which is most of them most of the time: each change would otherwise cost a read in every process);
        # the first subscriber after such a pause comes through `open()`, which starts again from the newest
        # change, as start() does.
        self._idle_unsubscribed = idle_unsubscribed
        self._stale = False
        self._opening = asyncio.Lock()
        # With LISTEN working, polling is only the safety net for a notification lost with a dropped connection.
        self._poll_interval_s = poll_interval_s
        self._gap_grace_s = gap_grace_s
        self._listen = listen and db.engine.dialect.name == "postgresql"
        self._subs: set[Subscription] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._cursor = 0
        self._gaps: dict[int, float] = {}  # missing id -> when first noticed (monotonic)
        self.listening = False  # True while a LISTEN connection is up (tests wait on it)
        self._stopping = False
        self._listening = asyncio.Event()

    @property
    def cursor(self) -> int:
        """The highest id seen (ids below it may still be missing: see safe_cursor)."""
        return self._cursor

    @property
    def safe_cursor(self) -> int:
        """The highest id below which no change is still missing: a place to resume from."""
        return min(self._gaps) - 1 if self._gaps else self._cursor

    async def start(self, after_id: int | None = None) -> None:
        """Start following after `after_id` (default: the newest change now; a notifier passes its saved cursor)."""
        if after_id is None and self._idle_unsubscribed:
            self._stale = True  # open() reads the newest change when the first reader comes
        else:
            self._cursor = after_id if after_id is not None else await self._db.read(latest_id)
        self._tasks.append(asyncio.create_task(self._run(), name="change-feed"))
        if self._listen:
            self._tasks.append(asyncio.create_task(self._listen_loop(), name="change-feed-listen"))

    @property
    def running(self) -> bool:
        """True while any of its tasks is still running."""
        return any(not task.done() for task in self._tasks)

    async def wait_listening(self) -> None:
        if self._listen:
            await self._listening.wait()

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: psycopg may turn the cancellation of a LISTEN wait into its own error (the loop then ends
            # on _stopping), and a stop must never hang an API process's shutdown on the database.
            _, pending = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_S)
            if pending:
                log.warning("the change feed did not stop in time; leaving its tasks", extra={"tasks": len(pending)})
        self._tasks.clear()
        for sub in list(self._subs):
            sub._end()
        self._subs.clear()

    def subscribe(self, account_id: str | None, *, max_pending: int = 1000) -> Subscription:
        sub = Subscription(self, account_id, max_pending)
        self._subs.add(sub)
        return sub

    async def open(self, account_id: str | None, *, max_pending: int = 1000) -> Subscription:
        """`subscribe` for a feed that idles unsubscribed: after a pause it first moves to the newest change
        (what committed during the pause was read by nobody and is not replayed; a reader that needs it resumes
        from its own cursor through `read_after`)."""
        async with self._opening:
            if self._stale:
                cursor, missing = await self._db.read(_newest_with_gaps)
                now = time.monotonic()
                self._cursor = cursor
                # Ids just below the newest that are not there yet may be transactions still committing: the
                # same gaps _read_once keeps (waited for, then given up), so none of them is skipped.
                self._gaps = dict.fromkeys(missing, now)
                self._stale = False
            return self.subscribe(account_id, max_pending=max_pending)

    def _unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def wake(self) -> None:
        """Read now (a writer in this process just committed a change)."""
        self._wake.set()

    async def _run(self) -> None:
        # Ends on stop() even if a cancellation were lost, and when the database is closed under it (its owner
        # is shutting down without stopping the feed first): a retry could never succeed.
        while not self._stopping:
            # Cleared before the read, not after: a wake-up that comes while the read runs (a commit it may
            # have missed) must make the next read happen at once, not at the next poll.
            self._wake.clear()
            if self._idle_unsubscribed and not self._subs:
                self._stale = True  # until open() has moved the cursor; reading now would start from the old one
            try:
                if not self._stale:
                    await self._read_once()
            except asyncio.CancelledError:
                raise
            except DatabaseClosed:
                log.warning("the database was closed under a running change feed; the feed stops")
                return
            except Exception:
                log.warning("reading changes failed; retrying", exc_info=True)
            await wait_event(self._wake, self._poll_interval_s if not self.listening else 2.0)

    async def _read_once(self) -> None:
        gaps = sorted(self._gaps)
        cursor = self._cursor

        def read(conn: Connection) -> tuple[list[Change], list[Change]]:
            # Two reads: the gaps by id (a few at most) and what is new. One range read from the lowest gap would
            # stall behind READ_BATCH rows that were delivered already.
            filled = []
            if gaps:
                filled = [_change(r) for r in conn.execute(
                    sa.select(changes).where(changes.c.id.in_(gaps)).order_by(changes.c.id))]
            return filled, read_after(conn, cursor, limit=READ_BATCH)

        filled, new = await self._db.read(read)
        now = time.monotonic()
        for change in filled:
            del self._gaps[change.id]
            self._deliver(change)
        for change in new:
            for missing in range(self._cursor + 1, change.id):
                self._gaps.setdefault(missing, now)
            self._cursor = change.id
            self._deliver(change)
        for missing, since in list(self._gaps.items()):
            if now - since > self._gap_grace_s:
                del self._gaps[missing]  # a rolled-back insert: that id will never appear
                log.info("a change id never appeared; going on without it", extra={"change": missing})
        if len(new) == READ_BATCH:
            self._wake.set()  # more to read

    def _deliver(self, change: Change) -> None:
        change = replace(change, safe_cursor=self.safe_cursor)
        for sub in list(self._subs):
            if sub.account_id is None or sub.account_id == change.account_id:
                sub._offer(change)

    async def _listen_loop(self) -> None:
        import psycopg

        url = self._db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._stopping:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True,
                                                                 connect_timeout=10) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening = True
                    self._listening.set()
                    self._wake.set()  # anything committed while we were not listening
                    async for _ in conn.notifies():
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except (OSError, psycopg.Error) as exc:  # connection refused, dropped, server restarted
                if self._stopping:
                    return  # the cancellation of stop(), surfaced by psycopg as its own error
                log.warning("LISTEN connection lost; polling until it is back", extra={"error": str(exc)})
            finally:
                self.listening = False
            await asyncio.sleep(1.0)  # reconnect back-off; polling covers the time between
