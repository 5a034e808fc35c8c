"""Exactly one queue message per finalized event, and a reconciler for the ones whose send failed.

A send is claimed first (``enqueue_claimed_at``, a conditional UPDATE only one caller can win; finalize sets it
in the same UPDATE that queues the event), then the message goes out, then ``enqueued_at`` is set. So concurrent
finalize retries, the reconciler and several API processes never send twice; a failed send releases the claim
at once; a process that died between claim and send leaves a claim that expires after
``reconciler.claim_timeout_s`` and is retried. (A crash after the send but before ``enqueued_at`` is written can
repeat a message: delivery is at-least-once, and the worker's state transition makes a repeat a no-op.)
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud.api.after_answer import FollowUps
from cloud.api.context import Context
from cloud.api.db.schema import events
from cloud.storage.blob import StorageError

log = logging.getLogger(__name__)

MESSAGE_VERSION = 1
SendResult = Literal["sent", "skipped", "failed"]


class Enqueuer:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._sends = FollowUps()

    def send_claimed_soon(self, event_id: str) -> None:
        """Send a claimed event's message after the caller has answered (finalize does not make the hub wait for
        the queue: a queue round trip and the bookkeeping UPDATE were a quarter of its latency). Nothing is lost
        if this process dies first: the claim expires and the reconciler sends."""
        self._sends.start_after_answer(lambda: self._send_logged(event_id), name=f"enqueue-{event_id}")

    async def _send_logged(self, event_id: str) -> SendResult:
        try:
            return await self.send_claimed(event_id)
        except Exception:  # a database error marking it sent: the claim expires and the reconciler re-sends
            log.warning("enqueue bookkeeping failed; the reconciler will retry", exc_info=True,
                        extra={"event_id": event_id})
            return "failed"

    async def settle(self, timeout_s: float = 30.0) -> None:
        """Wait for the sends started by ``send_claimed_soon`` (at shutdown; tests that read the queue)."""
        await self._sends.settle(timeout_s)

    def _claimable(self) -> sa.ColumnElement[bool]:
        stale = self.ctx.clock() - timedelta(seconds=self.ctx.config.reconciler.claim_timeout_s)
        return sa.and_(
            events.c.state == "queued",
            events.c.enqueued_at.is_(None),
            sa.or_(events.c.enqueue_claimed_at.is_(None), events.c.enqueue_claimed_at < stale),
        )

    async def ensure_sent(self, event_id: str) -> SendResult:
        """Send the event's message unless it was sent (or is being sent by someone else)."""
        now = self.ctx.clock()
        claim = sa.update(events).where(events.c.id == event_id, self._claimable()).values(enqueue_claimed_at=now)
        # Each step is one conditional UPDATE, atomic on its own: autocommit, no BEGIN/COMMIT round trips.
        if await self.ctx.db.read(lambda conn: conn.execute(claim).rowcount) != 1:
            return "skipped"
        return await self.send_claimed(event_id)

    async def send_claimed(self, event_id: str) -> SendResult:
        """Send the message of an event this caller has claimed (finalize claims it in the transaction that
        queues the event), then record it; a failed send releases the claim for the reconciler."""
        try:
            await self.ctx.queue.send({"event_id": event_id, "v": MESSAGE_VERSION})
        except (StorageError, ValueError) as exc:
            log.warning("enqueue failed; the reconciler will retry", extra={"event_id": event_id, "error": str(exc)})
            await self.ctx.db.read(lambda conn: conn.execute(
                sa.update(events).where(events.c.id == event_id, events.c.enqueued_at.is_(None))
                .values(enqueue_claimed_at=None)
            ))
            return "failed"
        sent_at = self.ctx.clock()
        await self.ctx.db.read(lambda conn: conn.execute(
            sa.update(events).where(events.c.id == event_id).values(enqueued_at=sent_at)
        ))
        return "sent"

    async def reconcile(self, limit: int = 100) -> int:
        """Send the messages of queued events that have none (a failed or interrupted send). Returns how many
        were sent; stops at the first failure (the queue is probably down; the next run continues)."""

        def pending(conn: Connection) -> list[str]:
            return list(conn.execute(
                sa.select(events.c.id).where(self._claimable()).order_by(events.c.finalized_at).limit(limit)
            ).scalars())

        sent = 0
        for event_id in await self.ctx.db.tx(pending):
            result = await self.ensure_sent(event_id)
            if result == "failed":
                break
            sent += result == "sent"
        if sent:
            log.info("reconciler re-enqueued events", extra={"count": sent})
        return sent
