"""The worker's side of the event state machine: queued → processing → done | failed (no HTTP; the inference
worker calls these with the same Context).

Each transition is a conditional UPDATE, so a message delivered twice (at-least-once) does the work at most
once more and never moves an event backwards: a done or failed event is not picked up again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud.api import changes
from cloud.api.context import Context
from cloud.api.db.schema import Timestamp, cameras, event_labels, events, monitoring
from cloud.api.services import credits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkItem:
    """What the worker needs for one event."""

    event_id: str
    account_id: str
    hub_id: str
    camera_id: str
    camera_name: str
    blob_name: str
    mime: str
    duration_s: float
    credits: int
    started_at: datetime
    trigger: str
    motion: dict[str, Any] | None
    prompts: list[str]  # the hub's and the camera's enabled prompts, hub first
    attempts: int
    # What finalize verified, so the worker can check the blob is still that clip (an upload SAS stays valid
    # for minutes after finalize and could replace it).
    size_bytes: int = 0
    md5: str = ""  # base64 of the MD5


class WorkerHooks:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def start(self, event_id: str) -> WorkItem | None:
        """Mark the event processing (also when a previous attempt died mid-way); None when there is nothing to
        do (unknown id, or already done/failed/rejected): the worker then just deletes the message."""
        now = self.ctx.clock()

        def work(conn: Connection) -> WorkItem | None:
            moved = conn.execute(
                sa.update(events).where(events.c.id == event_id, events.c.state.in_(("queued", "processing")))
                .values(state="processing", processing_started_at=now, attempts=events.c.attempts + 1,
                        # a message reached the worker, so one was sent even if the sender died before noting it
                        enqueued_at=sa.func.coalesce(events.c.enqueued_at, sa.literal(now, Timestamp())))
            ).rowcount
            if moved != 1:
                return None
            changes.record_event_state(conn, event_id, now)
            row = conn.execute(
                sa.select(events, cameras.c.name.label("camera_name"))
                .join(cameras, cameras.c.id == events.c.camera_id).where(events.c.id == event_id)
            ).one()
            prompts = conn.execute(
                sa.select(monitoring.c.prompt)
                .where(monitoring.c.scope.in_((f"hub:{row.hub_id}", f"camera:{row.camera_id}")),
                       monitoring.c.enabled.is_(True))
                .order_by(monitoring.c.camera_id.is_not(None))
            ).scalars().all()
            return WorkItem(
                event_id=row.id, account_id=row.account_id, hub_id=row.hub_id, camera_id=row.camera_id,
                camera_name=row.camera_name, blob_name=row.blob_name, mime=row.mime,
                duration_s=float(row.probed_duration_s or row.declared_duration_s), credits=int(row.credits or 0),
                started_at=row.started_at, trigger=row.trigger, motion=row.motion, prompts=list(prompts),
                attempts=int(row.attempts), size_bytes=int(row.size_bytes), md5=str(row.md5),
            )

        return await self.ctx.db.tx(work)

    async def complete(self, event_id: str, labels: dict[str, float], summary: dict[str, Any] | None,
                       snapshot_blob: str | None = None) -> bool:
        """processing → done with the results; False when the event was not processing (a duplicate)."""
        now = self.ctx.clock()

        def work(conn: Connection) -> bool:
            done = conn.execute(
                sa.update(events).where(events.c.id == event_id, events.c.state == "processing")
                .values(state="done", summary=summary, snapshot_blob=snapshot_blob, completed_at=now, reason=None)
            ).rowcount == 1
            if done:
                changes.record_event_state(conn, event_id, now)
                conn.execute(sa.delete(event_labels).where(event_labels.c.event_id == event_id))
                if labels:
                    conn.execute(sa.insert(event_labels), [
                        {"event_id": event_id, "label": name[:64], "confidence": conf} for name, conf in labels.items()
                    ])
            return done

        return await self.ctx.db.tx(work)

    async def fail(self, event_id: str, reason: str, refund: bool = True) -> bool:
        """queued/processing → failed (e.g. a poison message); refunds the charge once when asked."""
        now = self.ctx.clock()

        def work(conn: Connection) -> bool:
            failed = conn.execute(
                sa.update(events).where(events.c.id == event_id, events.c.state.in_(("queued", "processing")))
                .values(state="failed", reason=reason[:300], completed_at=now)
            ).rowcount == 1
            if failed:
                changes.record_event_state(conn, event_id, now)
            if failed and refund:
                credits.refund(conn, event_id, now)
            return failed

        return await self.ctx.db.tx(work)

    async def review(self, event_id: str, key: str, value: Any) -> bool:
        """Add ``key`` to a done event's summary (the optional VLM's second opinion, which arrives after the local
        result); False when the event is not done or already has it, so a repeat changes nothing."""

        def work(conn: Connection) -> bool:
            row = conn.execute(sa.select(events.c.summary).where(events.c.id == event_id, events.c.state == "done")
                               .with_for_update()).first()
            if row is None or (row.summary or {}).get(key) is not None:
                return False
            updated = conn.execute(
                sa.update(events).where(events.c.id == event_id, events.c.state == "done")
                .values(summary={**(row.summary or {}), key: value})
            ).rowcount == 1
            if updated:
                changes.record_event_state(conn, event_id, self.ctx.clock(), reviewed=key)
            return updated

        return await self.ctx.db.tx(work)
