"""Commands for a hub (arm, disarm, snapshot): a Telegram button or the cloud page asks, the hub fetches and
acts, and reports the result once.

The hub cannot be reached from the cloud (it sits behind the user's router), so it long-polls: `take` waits up
to `wait_s` for a pending command. A command the hub has not fetched by `expires_at` is answered "hub offline"
by `expire_due` and never runs late (a disarm an hour after the press would surprise); one it fetched but did
not answer within `ANSWER_GRACE` after that is closed the same way. The first result wins: a retried result
changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud.api import changes, errors
from cloud.api.context import Context
from cloud.api.db.schema import cameras, hub_commands, hubs
from cloud.api.principals import HubCaller
from cloud.api.security import new_id
from cloud.api.services.starts import decode_jpeg, snapshot_blob_name, store_snapshot

log = logging.getLogger(__name__)

KINDS = ("arm", "disarm", "snapshot")
ANSWER_GRACE = timedelta(seconds=60)
POLL_STEP_S = 0.5  # a long poll re-reads this often (a command may come from another process)
MAX_TAKE = 10


@dataclass(frozen=True)
class CommandView:
    id: str
    hub_id: str
    kind: str
    args: dict[str, Any]
    state: str  # pending | delivered | done | expired
    ok: bool | None
    message: str | None
    origin: str | None
    created_at: datetime
    expires_at: datetime
    done_at: datetime | None
    result: dict[str, Any] | None


def _state(row: Any) -> str:
    if row.done_at is not None:
        return "expired" if (row.result or {}).get("expired") else "done"
    return "delivered" if row.delivered_at is not None else "pending"


def _view(row: Any) -> CommandView:
    return CommandView(id=row.id, hub_id=row.hub_id, kind=row.kind, args=dict(row.args or {}), state=_state(row),
                       ok=row.ok, message=row.message, origin=row.origin, created_at=row.created_at,
                       expires_at=row.expires_at, done_at=row.done_at, result=row.result)


class HubCommands:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # -- the asking side (user, notifier) ----------------------------------------------------------------------

    async def create(self, account_id: str, hub_id: str, kind: str, args: dict[str, Any] | None = None,
                     origin: str | None = None) -> str:
        if kind not in KINDS:
            raise errors.InvalidInput(f"unknown command '{kind}'", f"one of: {', '.join(KINDS)}",
                                      reason="unknown_command")
        now = self.ctx.clock()
        ttl = timedelta(seconds=self.ctx.config.telegram.command_timeout_s)
        command_id = new_id()

        def work(conn: Connection) -> None:
            hub = conn.execute(sa.select(hubs.c.token_hash, hubs.c.unlinked_at)
                               .where(hubs.c.id == hub_id, hubs.c.account_id == account_id)).first()
            if hub is None:
                raise errors.NotFound("no such hub", reason="hub_not_found")
            if hub.token_hash is None or hub.unlinked_at is not None:
                raise errors.Conflict("the hub is not linked", "link it again: pingwatch cloud link on the hub",
                                      reason="hub_unlinked")
            conn.execute(sa.insert(hub_commands).values(
                id=command_id, account_id=account_id, hub_id=hub_id, kind=kind, args=args or {},
                origin=(origin or "")[:120] or None, created_at=now, expires_at=now + ttl))

        await self.ctx.db.tx(work)
        log.info("hub command created", extra={"command_id": command_id, "kind": kind, "hub_id": hub_id})
        return command_id

    async def get(self, account_id: str, command_id: str, hub_id: str | None = None) -> CommandView:
        def work(conn: Connection) -> Any:
            q = sa.select(hub_commands).where(hub_commands.c.id == command_id,
                                              hub_commands.c.account_id == account_id)
            if hub_id is not None:
                q = q.where(hub_commands.c.hub_id == hub_id)
            return conn.execute(q).first()

        row = await self.ctx.db.read(work)
        if row is None:
            raise errors.NotFound("no such command", reason="command_not_found")
        return _view(row)

    # -- the hub's side ----------------------------------------------------------------------------------------

    async def take(self, hub: HubCaller, wait_s: float = 0.0) -> list[CommandView]:
        """Pending commands for this hub, marked delivered; waits up to wait_s for one when there is none."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            taken = await self.ctx.db.tx(lambda conn: self._take(conn, hub.hub_id))
            if taken or loop.time() >= deadline:
                return taken
            await asyncio.sleep(min(POLL_STEP_S, max(0.0, deadline - loop.time())))

    def _take(self, conn: Connection, hub_id: str) -> list[CommandView]:
        now = self.ctx.clock()
        rows = conn.execute(
            sa.select(hub_commands.c.id)
            .where(hub_commands.c.hub_id == hub_id, hub_commands.c.done_at.is_(None),
                   hub_commands.c.delivered_at.is_(None), hub_commands.c.expires_at > now)
            .order_by(hub_commands.c.created_at).limit(MAX_TAKE)
        ).scalars().all()
        if not rows:
            return []
        # Conditional: two polls of the same hub at once (a restarting hub) deliver each command once.
        moved = conn.execute(
            sa.update(hub_commands).where(hub_commands.c.id.in_(rows), hub_commands.c.delivered_at.is_(None))
            .values(delivered_at=now).returning(hub_commands.c.id)
        ).scalars().all()
        if not moved:
            return []
        got = conn.execute(sa.select(hub_commands).where(hub_commands.c.id.in_(moved))
                           .order_by(hub_commands.c.created_at)).all()
        return [_view(r) for r in got]

    async def result(self, hub: HubCaller, command_id: str, ok: bool, message: str,
                     snapshot_b64: str | None = None, hub_camera_id: str | None = None) -> None:
        row = await self.ctx.db.read(lambda conn: conn.execute(
            sa.select(hub_commands).where(hub_commands.c.id == command_id, hub_commands.c.hub_id == hub.hub_id)
        ).first())
        if row is None:
            raise errors.NotFound("no such command", reason="command_not_found")
        if row.done_at is not None:
            return  # answered already (a retry, or it expired first): the first answer stands
        jpeg = decode_jpeg(snapshot_b64, 1024 * 1024) if snapshot_b64 else None
        blob = None
        if jpeg is not None:
            blob = snapshot_blob_name(hub.account_id, hub.hub_id, "commands", command_id)
            await store_snapshot(self.ctx, blob, jpeg)
        now = self.ctx.clock()

        def work(conn: Connection) -> None:
            camera_id = None
            if hub_camera_id is not None:
                camera_id = conn.execute(sa.select(cameras.c.id).where(
                    cameras.c.hub_id == hub.hub_id, cameras.c.hub_camera_id == hub_camera_id)).scalar()
            result = {"snapshot_blob": blob, "camera_id": camera_id, "hub_camera_id": hub_camera_id}
            done = conn.execute(
                sa.update(hub_commands).where(hub_commands.c.id == command_id, hub_commands.c.done_at.is_(None))
                .values(done_at=now, ok=ok, message=message[:300], result=result)
            ).rowcount == 1
            if done:
                changes.record(conn, account_id=hub.account_id, kind=changes.COMMAND_DONE, at=now,
                               subject_id=command_id,
                               data={"kind": row.kind, "ok": ok, "message": message[:300], "origin": row.origin,
                                     "hub_id": hub.hub_id, "expired": False, **result})

        await self.ctx.db.tx(work)

    # -- expiry (a scheduled job) ------------------------------------------------------------------------------

    async def expire_due(self) -> int:
        """Close commands the hub never fetched (or never answered) in time: "hub offline"."""
        now = self.ctx.clock()

        def work(conn: Connection) -> int:
            due = conn.execute(
                sa.select(hub_commands).where(
                    hub_commands.c.done_at.is_(None),
                    sa.or_(sa.and_(hub_commands.c.delivered_at.is_(None), hub_commands.c.expires_at <= now),
                           hub_commands.c.expires_at <= now - ANSWER_GRACE))
                .limit(500)
            ).all()
            n = 0
            for row in due:
                message = ("the hub is offline; nothing changed" if row.delivered_at is None
                           else "the hub did not answer")
                if conn.execute(
                    sa.update(hub_commands).where(hub_commands.c.id == row.id, hub_commands.c.done_at.is_(None))
                    .values(done_at=now, ok=False, message=message, result={"expired": True})
                ).rowcount == 1:
                    n += 1
                    changes.record(conn, account_id=row.account_id, kind=changes.COMMAND_DONE, at=now,
                                   subject_id=row.id,
                                   data={"kind": row.kind, "ok": False, "message": message, "origin": row.origin,
                                         "hub_id": row.hub_id, "expired": True})
            return n

        return await self.ctx.db.tx(work)
