"""Event starts: the hub reports an event the moment it starts, with the snapshot taken at the trigger, long
before its clip is cut and uploaded. This is what the first alert is made of (the notifier reads the
"event.started" change), so it is one small request: the metadata and the JPEG together.

Idempotent by (hub, hub event id): a retry answers the same start and records no second change; a retry that
brings a snapshot the first report lacked stores it.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud.api import changes, errors
from cloud.api.context import Context
from cloud.api.db.schema import event_starts
from cloud.api.db.util import insert_ignore
from cloud.api.principals import HubCaller
from cloud.api.security import new_id
from cloud.api.services.hubs import live_camera_id
from cloud.storage.blob import StorageError

log = logging.getLogger(__name__)

# Reported this long after the trigger: the hub was offline, and the alert says the news is old.
LATE_AFTER = timedelta(seconds=60)
JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass(frozen=True)
class StartReport:
    hub_event_id: str
    hub_camera_id: str
    started_at: datetime
    trigger: str
    snapshot_b64: str | None


@dataclass(frozen=True)
class StartView:
    id: str
    hub_event_id: str
    late: bool
    snapshot: bool


def decode_jpeg(b64: str, max_bytes: int) -> bytes:
    """The JPEG inside a base64 field, or InvalidInput naming what is wrong."""
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise errors.InvalidInput("snapshot_jpeg is not valid base64", reason="bad_snapshot") from None
    if len(data) > max_bytes:
        raise errors.TooLarge(f"the snapshot is {len(data)} bytes; {max_bytes} at most",
                              "send a smaller JPEG (lower quality or size)", reason="snapshot_too_large")
    if not data.startswith(JPEG_MAGIC):
        raise errors.InvalidInput("snapshot_jpeg is not a JPEG", "send the frame encoded as JPEG",
                                  reason="bad_snapshot")
    return data


def snapshot_blob_name(account_id: str, hub_id: str, kind: str, item_id: str) -> str:
    return f"{account_id}/{hub_id}/{kind}/{item_id}.jpg"


async def store_snapshot(ctx: Context, name: str, jpeg: bytes) -> None:
    try:
        await ctx.blobs.put(name, jpeg, "image/jpeg")
    except StorageError as exc:
        raise errors.Unavailable(f"storage is unavailable: {exc}", "retry later; nothing was recorded",
                                 reason="storage_unavailable") from None


def _view(row: Any) -> StartView:
    return StartView(id=row.id, hub_event_id=row.hub_event_id, late=bool(row.late),
                     snapshot=row.snapshot_blob is not None)


class EventStarts:
    def __init__(self, ctx: Context, *, snapshot_max_bytes: int = 1024 * 1024) -> None:
        self.ctx = ctx
        self.snapshot_max_bytes = snapshot_max_bytes

    async def report(self, hub: HubCaller, req: StartReport) -> StartView:
        now = self.ctx.clock()
        jpeg = decode_jpeg(req.snapshot_b64, self.snapshot_max_bytes) if req.snapshot_b64 else None

        def lookup(conn: Connection) -> tuple[str, Any]:
            camera_id = live_camera_id(conn, hub.hub_id, req.hub_camera_id)
            return camera_id, self._existing(conn, hub.hub_id, req.hub_event_id)

        camera_id, existing = await self.ctx.db.read(lookup)
        if existing is not None and (existing.snapshot_blob is not None or jpeg is None):
            return _view(existing)  # a retry: same answer, nothing recorded again
        start_id = existing.id if existing is not None else new_id()
        blob = None
        if jpeg is not None:
            # Stored before the row is written: a reader who sees the row finds its snapshot.
            blob = snapshot_blob_name(hub.account_id, hub.hub_id, "starts", start_id)
            await store_snapshot(self.ctx, blob, jpeg)
        late = now - req.started_at > LATE_AFTER

        def write(conn: Connection) -> Any:
            if existing is not None:
                if conn.execute(sa.update(event_starts).where(event_starts.c.id == start_id,
                                                              event_starts.c.snapshot_blob.is_(None))
                                .values(snapshot_blob=blob)).rowcount == 1:
                    # The picture came after the start (a slow camera): the live page shows it now.
                    changes.record(conn, account_id=hub.account_id, kind=changes.EVENT_STARTED, at=now,
                                   subject_id=start_id,
                                   data={"hub_event_id": req.hub_event_id, "camera_id": camera_id,
                                         "hub_id": hub.hub_id, "late": bool(existing.late), "snapshot_added": True})
            elif insert_ignore(conn, event_starts, {
                "id": start_id, "account_id": hub.account_id, "hub_id": hub.hub_id, "camera_id": camera_id,
                "hub_event_id": req.hub_event_id, "started_at": req.started_at, "reported_at": now,
                "trigger": req.trigger, "snapshot_blob": blob, "late": late,
            }):
                changes.record(conn, account_id=hub.account_id, kind=changes.EVENT_STARTED, at=now,
                               subject_id=start_id,
                               data={"hub_event_id": req.hub_event_id, "camera_id": camera_id, "hub_id": hub.hub_id,
                                     "late": late})
            return self._existing(conn, hub.hub_id, req.hub_event_id)  # ours, or a concurrent retry's

        row = await self.ctx.db.tx(write)
        if row.id != start_id and blob is not None:
            await self._forget(blob)  # a concurrent retry won with its own snapshot
        return _view(row)

    @staticmethod
    def _existing(conn: Connection, hub_id: str, hub_event_id: str) -> Any:
        return conn.execute(sa.select(event_starts).where(event_starts.c.hub_id == hub_id,
                                                          event_starts.c.hub_event_id == hub_event_id)).first()

    async def _forget(self, blob: str) -> None:
        try:
            await self.ctx.blobs.delete(blob)
        except StorageError:
            log.warning("could not delete a duplicate snapshot; retention will", extra={"blob": blob})
