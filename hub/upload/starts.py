"""An event's start, reported to the cloud the moment it happens, with the camera's snapshot: the first stage of
the user's Telegram alert from the cloud (target: the message within ~2 s of the trigger).

Data flow: ``event.started`` on the bus → a row in ``cloud_starts`` (the hub's SQLite: a hub without internet
keeps it, and sends it when it is back; the cloud marks it late) → the camera's live snapshot, taken at once
through the hub's control surface (the same ``snapshot`` the hub's own Telegram alert uses) and kept in the row
→ POST /hub/event-starts by this module's own task, so a start never waits behind a clip upload.

Idempotent by the hub's event id at the cloud: a retry (an answer lost in the network, a restart) creates no
second start. A snapshot that was not ready when the start left (slow camera) is sent with a second report, which
the cloud uses to add the picture the first lacked. Failures: down, 5xx, 429 → backoff with jitter (or the
server's Retry-After); a camera the cloud does not know yet → the cameras are mirrored and the start tried again;
a snapshot the cloud refuses → the start is sent without it; an unknown hub token → paused until linked again.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hub.bus import Bus, Subscription
from hub.config import CloudConfig
from hub.control_api import ControlLike
from hub.retry import Wakeup, backoff_s
from hub.store import Store
from hub.upload.channel import UNLINKED_RECHECK_S, ApiFactory, CameraMirror, LinkedClient
from hub.upload.cloud_api import CloudApi, CloudAuthError, CloudRefused, CloudRetry
from hub.upload.link import CloudLink
from pingwatch_common.aio import within

log = logging.getLogger(__name__)

TABLE = "cloud_starts"
RETRY_BASE_S = 1.0  # a start is urgent: the first retry comes quickly
SNAPSHOT_WAIT_S = 1.5  # the start must reach the cloud within ~2 s of the trigger: a slower snapshot follows later
MAX_SNAPSHOT_BYTES = 1_000_000  # the cloud's limit (decoded); a larger picture is not sent
KEEP_S = 7 * 86_400  # sent and refused rows are kept this long (for status), then pruned at start-up
_EVENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")  # what the cloud accepts as a hub's event id
_TRIGGER = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_SNAPSHOT_REFUSALS = {"bad_snapshot", "snapshot_too_large"}


@dataclass(frozen=True)
class StartRow:
    event_id: str
    camera_id: str
    started_at: float
    trigger: str
    snapshot: bytes | None
    state: str  # pending | sent | refused
    attempts: int
    next_at: float
    sent_with_snapshot: bool
    created_at: float


_COLUMNS = "event_id, camera_id, started_at, trigger, snapshot, state, attempts, next_at, sent_with_snapshot, " \
           "created_at"


class StartsOutbox:
    """The durable queue of starts to report, one row per event."""

    def __init__(self, store: Store) -> None:
        self._db = store.db
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (event_id TEXT PRIMARY KEY, camera_id TEXT NOT NULL, "
            "started_at REAL NOT NULL, trigger TEXT NOT NULL, snapshot BLOB, state TEXT NOT NULL, "
            "attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL, sent_with_snapshot INTEGER NOT NULL "
            "DEFAULT 0, reason TEXT, cloud_id TEXT, late INTEGER, created_at REAL NOT NULL, sent_at REAL)")
        self._db.execute(f"CREATE INDEX IF NOT EXISTS ix_{TABLE}_due ON {TABLE} (state, next_at)")

    def add(self, event_id: str, camera_id: str, started_at: float, trigger: str, now: float | None = None) -> bool:
        """Queue a start; False when it is queued already (a second bus delivery changes nothing)."""
        now = time.time() if now is None else now
        with self._db.conn:
            cur = self._db.execute(
                f"INSERT OR IGNORE INTO {TABLE} (event_id, camera_id, started_at, trigger, state, next_at, "
                "created_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                [event_id, camera_id, started_at, trigger, now, now])
        return cur.rowcount == 1

    def get(self, event_id: str) -> StartRow | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM {TABLE} WHERE event_id = ?", [event_id]).fetchone()
        return _row(row) if row else None

    def next_due(self, now: float) -> tuple[StartRow | None, float | None]:
        """The oldest pending row that is due, and when the next pending one is due (None: nothing pending)."""
        row = self._db.execute(f"SELECT {_COLUMNS} FROM {TABLE} WHERE state = 'pending' AND next_at <= ? "
                               "ORDER BY created_at, event_id LIMIT 1", [now]).fetchone()
        nxt = self._db.execute(f"SELECT MIN(next_at) FROM {TABLE} WHERE state = 'pending'").fetchone()[0]
        return (_row(row) if row else None), nxt

    def set_snapshot(self, event_id: str, jpeg: bytes | None) -> bool:
        """Keep the start's snapshot (None: drop it). True when the start already left without a picture, so it
        is queued again: the second report adds the snapshot."""
        with self._db.conn:
            self._db.execute(f"UPDATE {TABLE} SET snapshot = ? WHERE event_id = ?", [jpeg, event_id])
            if jpeg is None:
                return False
            cur = self._db.execute(
                f"UPDATE {TABLE} SET state = 'pending', next_at = ? WHERE event_id = ? AND state = 'sent' "
                "AND sent_with_snapshot = 0", [time.time(), event_id])
        return cur.rowcount == 1

    def sent(self, row: StartRow, *, with_snapshot: bool, cloud_id: str | None, late: bool | None) -> None:
        now = time.time()
        with self._db.conn:
            # The snapshot stays while it has not reached the cloud (it may still be added by a later report).
            # A snapshot kept while this report was on its way (it left without one) sends the start again.
            self._db.execute(
                f"UPDATE {TABLE} SET state = CASE WHEN ? = 0 AND snapshot IS NOT NULL THEN 'pending' ELSE 'sent' "
                "END, attempts = ?, sent_with_snapshot = ?, reason = NULL, cloud_id = ?, late = ?, sent_at = ?, "
                "next_at = ?, snapshot = CASE WHEN ? THEN NULL ELSE snapshot END WHERE event_id = ?",
                [int(with_snapshot), row.attempts + 1, int(with_snapshot), cloud_id,
                 None if late is None else int(late), now, now, int(with_snapshot), row.event_id])

    def retry(self, row: StartRow, reason: str, after_s: float, count: bool = True) -> None:
        self._db.execute(f"UPDATE {TABLE} SET attempts = ?, next_at = ?, reason = ? WHERE event_id = ?",
                         [row.attempts + int(count), time.time() + after_s, reason, row.event_id])

    def refuse(self, row: StartRow, reason: str) -> None:
        self._db.execute(f"UPDATE {TABLE} SET state = 'refused', attempts = ?, reason = ?, snapshot = NULL "
                         "WHERE event_id = ?", [row.attempts + 1, reason, row.event_id])

    def retry_now(self) -> int:
        """The link changed (or came back): what was waiting goes now."""
        cur = self._db.execute(f"UPDATE {TABLE} SET next_at = ? WHERE state = 'pending'", [time.time()])
        return cur.rowcount

    def counts(self) -> dict[str, int]:
        rows = self._db.execute(f"SELECT state, COUNT(*) FROM {TABLE} GROUP BY state").fetchall()
        return {state: n for state, n in rows}

    def last_error(self) -> str | None:
        row = self._db.execute(f"SELECT reason FROM {TABLE} WHERE state = 'pending' AND reason IS NOT NULL "
                               "ORDER BY created_at DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def prune(self, before: float) -> int:
        cur = self._db.execute(f"DELETE FROM {TABLE} WHERE state != 'pending' AND created_at < ?", [before])
        return cur.rowcount


def _row(r: Any) -> StartRow:
    return StartRow(event_id=r[0], camera_id=r[1], started_at=r[2], trigger=r[3], snapshot=r[4], state=r[5],
                    attempts=r[6], next_at=r[7], sent_with_snapshot=bool(r[8]), created_at=r[9])


class StartReporter:
    def __init__(self, config: CloudConfig, store: Store, bus: Bus, control: ControlLike,
                 load_link: Callable[[], CloudLink | None], *, retry_base_s: float = RETRY_BASE_S,
                 recheck_s: float = UNLINKED_RECHECK_S, api_factory: ApiFactory | None = None) -> None:
        self._config = config
        self._store = store
        self._bus = bus
        self._control = control
        self._load_link = load_link
        self._retry_base_s = retry_base_s
        self._recheck_s = recheck_s
        self._client = LinkedClient(load_link, api_factory)
        self._mirror = CameraMirror(store)
        self.outbox = StartsOutbox(store)
        self._wake = Wakeup()
        self._tasks: list[asyncio.Task[None]] = []
        self._snapshots: dict[str, asyncio.Task[bytes | None]] = {}
        self.reported = 0  # starts the cloud accepted in this process (for tests and status)

    @property
    def active(self) -> bool:
        return self._config.enabled and self._config.report_starts

    async def start(self) -> None:
        if not self.active:
            return
        self.outbox.prune(time.time() - KEEP_S)
        sub = self._bus.subscribe("event.started", maxsize=1024)
        self._tasks = [asyncio.create_task(self._listen(sub), name="cloud-starts-bus"),
                       asyncio.create_task(self._run(), name="cloud-starts")]

    async def stop(self) -> None:
        """Stop between sends; a start not yet reported stays queued for the next run."""
        tasks = self._tasks + list(self._snapshots.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks, self._snapshots = [], {}
        await self._client.close()

    def cloud_is_back(self) -> None:
        """Another sender reached the cloud: starts waiting out a backoff go now (an alert is worth more early)."""
        if self._tasks and self.outbox.retry_now():
            self._wake.set()

    def status(self) -> dict[str, Any]:
        counts = self.outbox.counts()
        return {"enabled": self.active, "pending": counts.get("pending", 0), "sent": counts.get("sent", 0),
                "refused": counts.get("refused", 0), "reported": self.reported, "error": self.outbox.last_error()}

    # -- the bus: starts into the outbox ---------------------------------------------------------------------

    async def _listen(self, sub: Subscription) -> None:
        try:
            async for msg in sub:
                try:
                    self.queue_started(msg.data)
                except Exception:  # one bad message must not end the listener
                    log.exception("could not queue an event start for the cloud")
        finally:
            sub.close()

    def queue_started(self, data: dict[str, Any]) -> bool:
        """An event started: queue its report and take the snapshot now, if the hub is linked. True when added."""
        event_id, camera_id = str(data.get("event_id") or ""), str(data.get("camera_id") or "")
        if not _EVENT_ID.match(event_id) or not camera_id:
            return False
        if self._load_link() is None:
            return False
        triggers = data.get("triggers") or ["motion"]
        started = float(data.get("start") or data.get("detected_at") or time.time())
        trigger = str(triggers[0]).lower()
        if not self.outbox.add(event_id, camera_id, started, trigger if _TRIGGER.match(trigger) else "motion"):
            return False
        self._snapshots[event_id] = asyncio.create_task(self._take_snapshot(event_id, camera_id),
                                                        name=f"cloud-start-snapshot-{event_id}")
        self._wake.set()
        return True

    async def _take_snapshot(self, event_id: str, camera_id: str) -> bytes | None:
        try:
            jpeg = await self._control.snapshot(camera_id)
        except Exception as exc:  # noqa: BLE001 - no picture is no reason to lose the start
            log.warning("no snapshot for the cloud's alert", extra={"event_id": event_id, "error": str(exc)})
            jpeg = None
        if jpeg is not None and len(jpeg) > MAX_SNAPSHOT_BYTES:
            log.warning("the snapshot is over the cloud's limit; the start is sent without it",
                        extra={"event_id": event_id, "size": len(jpeg)})
            jpeg = None
        try:
            if jpeg and self.outbox.set_snapshot(event_id, jpeg):
                self._wake.set()  # the start left without it: a second report adds it
        finally:
            self._snapshots.pop(event_id, None)
        return jpeg

    # -- the sender ------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            api = self._client.current()
            if api is None:
                await self._wake.wait(self._recheck_s)
                continue
            row, next_at = self.outbox.next_due(time.time())
            if row is None:
                await self._wake.wait(None if next_at is None else max(0.0, next_at - time.time()))
                continue
            try:
                await self._report(api, row)
            except CloudAuthError as exc:
                log.error("the cloud refused the hub's token; event starts wait until the hub is linked again",
                          extra={"error": exc.message, "hint": "run 'pingwatch cloud link'"})
                self.outbox.retry(row, exc.message, self._recheck_s, count=False)
                await self._wake.wait(self._recheck_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("reporting an event start failed unexpectedly; retrying later",
                              extra={"event_id": row.event_id})
                self._retry(row, f"{type(exc).__name__}: {exc}", None)

    async def _report(self, api: CloudApi, row: StartRow) -> None:
        snapshot = await self._snapshot_for(row)
        body: dict[str, Any] = {"event_id": row.event_id, "camera_id": row.camera_id,
                                "started_at": datetime.fromtimestamp(row.started_at, tz=UTC).isoformat(),
                                "trigger": row.trigger}
        if snapshot:
            body["snapshot_jpeg"] = base64.b64encode(snapshot).decode()
        try:
            await self._mirror.sync(api)
            try:
                answer = await api.report_start(body)
            except CloudRefused as exc:
                if exc.reason != "camera_unknown":
                    raise
                await self._mirror.sync(api, force=True)  # added on the hub since the last mirror
                answer = await api.report_start(body)
        except CloudRetry as exc:
            self._retry(row, exc.message, exc.retry_after_s)
            return
        except CloudRefused as exc:
            if snapshot and (exc.reason in _SNAPSHOT_REFUSALS or exc.status == 413):
                log.warning("the cloud refused the start's snapshot; sending the start without it",
                            extra={"event_id": row.event_id, "error": exc.message})
                self.outbox.set_snapshot(row.event_id, None)
                self.outbox.retry(row, exc.message, 0.0)
                return
            self.outbox.refuse(row, exc.message + (f" ({exc.hint})" if exc.hint else ""))
            log.warning("the cloud refused an event start", extra={"event_id": row.event_id,
                                                                   "reason": exc.reason, "error": exc.message})
            return
        late = answer.get("late")
        self.outbox.sent(row, with_snapshot=bool(snapshot), cloud_id=_str_or_none(answer.get("id")),
                         late=late if isinstance(late, bool) else None)
        self.reported += 1
        log.info("event start reported to the cloud", extra={
            "event_id": row.event_id, "snapshot": bool(snapshot), "late": late,
            "after_s": round(time.time() - row.started_at, 2)})

    async def _snapshot_for(self, row: StartRow) -> bytes | None:
        """The row's snapshot; while it is still being taken, wait for it a moment (the alert must not be late
        for it: a snapshot that comes later is added by a second report)."""
        if row.snapshot:
            return row.snapshot
        task = self._snapshots.get(row.event_id)
        if task is None:  # taken (and kept in the row) since the row was read, or never to come
            current = self.outbox.get(row.event_id)
            return current.snapshot if current is not None else None
        try:
            return await within(asyncio.shield(task), SNAPSHOT_WAIT_S)
        except TimeoutError:
            return None

    def _retry(self, row: StartRow, why: str, after_s: float | None) -> None:
        if after_s is None:
            after_s = backoff_s(row.attempts + 1, self._retry_base_s, self._config.retry_max_s)
        self.outbox.retry(row, why, after_s)
        log.info("event start will be reported again", extra={"event_id": row.event_id, "error": why,
                                                             "retry_in_s": round(after_s, 1)})


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
