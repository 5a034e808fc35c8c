"""The user's view of events: a timeline with cursor pagination and filters, and one event with read URLs.

Order: newest first by (started_at, id). The cursor is the last row's (started_at, id), opaque to clients
(base64url JSON); keyset pagination stays correct while new events arrive, unlike OFFSET. Every query is
filtered by the caller's account, so another tenant's ids simply find nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud.api import errors
from cloud.api.context import Context
from cloud.api.db.schema import event_labels, events
from cloud.api.principals import User
from cloud.storage.blob import StorageError

# Read URLs are only useful for something that exists in storage.
_PLAYABLE = ("queued", "processing", "done", "failed")


@dataclass(frozen=True)
class TimelineFilter:
    hub_id: str | None = None
    camera_id: str | None = None
    label: str | None = None
    state: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    cursor: str | None = None
    limit: int = 50


@dataclass
class EventView:
    row: Any
    labels: list[str]
    clip_url: str | None = None
    snapshot_url: str | None = None
    urls_expire_at: datetime | None = None

    @property
    def duration_s(self) -> float:
        d = self.row.probed_duration_s
        return float(d if d is not None else self.row.declared_duration_s)


def encode_cursor(started_at: datetime, event_id: str) -> str:
    raw = json.dumps([started_at.timestamp(), event_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, event_id = json.loads(raw)
        if not isinstance(event_id, str) or not isinstance(ts, (int, float)) or isinstance(ts, bool):
            raise TypeError
        return datetime.fromtimestamp(float(ts), UTC), event_id
    except (ValueError, TypeError, binascii.Error, OverflowError, OSError):
        raise errors.InvalidInput("invalid cursor", "pass next_cursor from the previous page as it was",
                                  reason="invalid_cursor") from None


def _labels(conn: Connection, ids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {i: [] for i in ids}
    if ids:
        for event_id, label in conn.execute(
            sa.select(event_labels.c.event_id, event_labels.c.label)
            .where(event_labels.c.event_id.in_(ids)).order_by(event_labels.c.label)
        ):
            out[event_id].append(label)
    return out


class Timeline:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def page(self, user: User, f: TimelineFilter) -> tuple[list[EventView], str | None]:
        after = decode_cursor(f.cursor) if f.cursor else None

        def work(conn: Connection) -> list[EventView]:
            q = sa.select(events).where(events.c.account_id == user.account_id)
            if f.hub_id:
                q = q.where(events.c.hub_id == f.hub_id)
            if f.camera_id:
                q = q.where(events.c.camera_id == f.camera_id)
            if f.state:
                q = q.where(events.c.state == f.state)
            if f.since:
                q = q.where(events.c.started_at >= f.since)
            if f.until:
                q = q.where(events.c.started_at < f.until)
            if f.label:
                q = q.where(sa.exists().where(event_labels.c.event_id == events.c.id, event_labels.c.label == f.label))
            if after is not None:
                ts, last_id = after
                q = q.where(sa.or_(events.c.started_at < ts, sa.and_(events.c.started_at == ts, events.c.id < last_id)))
            rows = conn.execute(q.order_by(events.c.started_at.desc(), events.c.id.desc()).limit(f.limit + 1)).all()
            labels = _labels(conn, [r.id for r in rows])
            return [EventView(r, labels[r.id]) for r in rows]

        views = await self.ctx.db.tx(work)
        next_cursor = None
        if len(views) > f.limit:
            views = views[: f.limit]
            last = views[-1].row
            next_cursor = encode_cursor(last.started_at, last.id)
        return views, next_cursor

    async def detail(self, user: User, event_id: str) -> EventView:
        def work(conn: Connection) -> EventView:
            row = conn.execute(
                sa.select(events).where(events.c.id == event_id, events.c.account_id == user.account_id)
            ).first()
            if row is None:
                raise errors.NotFound("no such event", reason="event_not_found")
            return EventView(row, _labels(conn, [row.id])[row.id])

        view = await self.ctx.db.tx(work)
        ttl = self.ctx.config.storage.read_url_ttl_s
        try:
            if view.row.state in _PLAYABLE:
                view.clip_url = await self.ctx.blobs.read_url(view.row.blob_name, ttl)
            if view.row.snapshot_blob:
                view.snapshot_url = await self.ctx.blobs.read_url(view.row.snapshot_blob, ttl)
        except StorageError:
            raise errors.Unavailable("storage is unavailable", "retry in a minute", reason="storage_unavailable",
                                     retry_after_s=30) from None
        if view.clip_url or view.snapshot_url:
            view.urls_expire_at = self.ctx.clock() + timedelta(seconds=ttl)
        return view
