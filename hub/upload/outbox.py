"""The upload outbox: one row per finished event of a linked hub, in the hub's own SQLite, so an upload
survives a restart and a cloud that is down for days.

States: ``pending`` (not started) → ``uploading`` (the cloud knows the event; the clip is going up) →
``finalizing`` → ``done``; or ``refused`` (the cloud said no for good: the reason is kept, the clip stays
local). Every change is mirrored into ``events.upload_status`` (and the reason into ``upload_reason``), which
the CLI, the web UI and MQTT show.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from hub.store import Store

TABLE = "upload_outbox"
OPEN_STATES = ("pending", "uploading", "finalizing")


@dataclass(frozen=True)
class OutboxRow:
    event_id: str
    state: str
    attempts: int
    next_at: float
    cloud_event_id: str | None
    reason: str | None
    created_at: float


class Outbox:
    def __init__(self, store: Store) -> None:
        self._store = store
        db = store.db
        if TABLE not in db.table_names():
            db.table(TABLE).create(
                {"event_id": str, "state": str, "attempts": int, "next_at": float, "cloud_event_id": str,
                 "reason": str, "created_at": float, "updated_at": float},
                pk="event_id", not_null={"state", "attempts", "next_at", "created_at"},
                defaults={"attempts": 0},
            )
            db.table(TABLE).create_index(["state", "next_at"])
        if "upload_reason" not in db.table("events").columns_dict:
            db.table("events").add_column("upload_reason", str)

    def enqueue(self, event_id: str, now: float | None = None) -> bool:
        """Queue an event; False when it is queued already (an event is uploaded once, whatever happens)."""
        now = time.time() if now is None else now
        with self._store.db.conn:
            cur = self._store.db.execute(
                f"INSERT OR IGNORE INTO {TABLE} (event_id, state, attempts, next_at, created_at, updated_at) "
                "VALUES (?, 'pending', 0, ?, ?, ?)", [event_id, now, now, now])
            added = cur.rowcount == 1
        if added:
            self._mirror(event_id, "pending", None)
        return added

    def get(self, event_id: str) -> OutboxRow | None:
        row = self._store.db.execute(
            f"SELECT event_id, state, attempts, next_at, cloud_event_id, reason, created_at FROM {TABLE} "
            "WHERE event_id = ?", [event_id]).fetchone()
        return OutboxRow(*row) if row else None

    def next_due(self, now: float) -> tuple[OutboxRow | None, float | None]:
        """The oldest open row that is due now, and when the next one is due (None when nothing is open)."""
        marks = ",".join("?" * len(OPEN_STATES))
        row = self._store.db.execute(
            f"SELECT event_id, state, attempts, next_at, cloud_event_id, reason, created_at FROM {TABLE} "
            f"WHERE state IN ({marks}) AND next_at <= ? ORDER BY created_at, event_id LIMIT 1",
            [*OPEN_STATES, now]).fetchone()
        nxt = self._store.db.execute(
            f"SELECT MIN(next_at) FROM {TABLE} WHERE state IN ({marks})", list(OPEN_STATES)).fetchone()[0]
        return (OutboxRow(*row) if row else None), nxt

    def update(self, event_id: str, *, state: str, cloud_event_id: str | None = None, reason: str | None = None,
               attempts: int | None = None, next_at: float | None = None) -> None:
        fields: dict[str, Any] = {"state": state, "reason": reason, "updated_at": time.time()}
        if cloud_event_id is not None:
            fields["cloud_event_id"] = cloud_event_id
        if attempts is not None:
            fields["attempts"] = attempts
        if next_at is not None:
            fields["next_at"] = next_at
        self._store.db.table(TABLE).update(event_id, fields)
        self._mirror(event_id, state, reason)

    def counts(self) -> dict[str, int]:
        rows = self._store.db.execute(f"SELECT state, COUNT(*) FROM {TABLE} GROUP BY state").fetchall()
        return {state: n for state, n in rows}

    def open_count(self) -> int:
        counts = self.counts()
        return sum(counts.get(s, 0) for s in OPEN_STATES)

    def forget(self, event_id: str) -> None:
        """The event was deleted on the hub: nothing is left to send."""
        self._store.db.execute(f"DELETE FROM {TABLE} WHERE event_id = ?", [event_id])

    def _mirror(self, event_id: str, state: str, reason: str | None) -> None:
        if self._store.get_event(event_id) is not None:
            self._store.update_event(event_id, upload_status=state, upload_reason=reason)
