"""The queries behind the cloud page: timeline cards with thumbnails, one card per live change, and credits used
per day for the chart.

A card is the event as the page shows it: camera name, state, labels, the summary sentence and a thumbnail as a
short read SAS. The thumbnail is the worker's snapshot once the event is done, else the snapshot the hub sent
when the event started (event_starts, matched by hub and the hub's event id), so a card has a picture from the
first second. Every query filters by the caller's account: another tenant's ids find nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud.api import errors
from cloud.api.context import Context
from cloud.api.db.schema import cameras, credit_ledger, event_labels, event_starts, events, hub_commands, hubs
from cloud.api.principals import User
from cloud.api.services import credits
from cloud.api.services.timeline import Timeline, TimelineFilter
from cloud.storage.blob import StorageError

log = logging.getLogger(__name__)

MAX_USAGE_DAYS = 366


@dataclass(frozen=True)
class EventCard:
    id: str
    hub_id: str
    camera_id: str
    camera_name: str
    hub_event_id: str
    state: str
    started_at: datetime
    duration_s: float
    trigger: str
    labels: list[str]
    summary: str | None
    reason: str | None
    thumbnail_url: str | None


@dataclass(frozen=True)
class StartCard:
    id: str
    hub_id: str
    camera_id: str
    camera_name: str
    hub_event_id: str
    started_at: datetime
    trigger: str
    late: bool
    thumbnail_url: str | None


@dataclass(frozen=True)
class CameraState:
    id: str
    name: str
    online: bool | None


@dataclass(frozen=True)
class HubState:
    id: str
    name: str
    armed: bool | None
    disarmed_until: datetime | None
    state_at: datetime | None
    cameras: list[CameraState] = field(default_factory=list)


@dataclass(frozen=True)
class CommandCard:
    id: str
    hub_id: str
    kind: str
    ok: bool | None
    message: str | None
    origin: str | None
    snapshot_url: str | None


@dataclass(frozen=True)
class UsageDay:
    day: str  # YYYY-MM-DD (UTC)
    charged: int
    refunded: int

    @property
    def used(self) -> int:
        return self.charged - self.refunded


@dataclass(frozen=True)
class Usage:
    plan: str
    monthly_credits: int
    period: str
    granted: int
    used: int
    left: int
    days: list[UsageDay]


def summary_text(summary: Any) -> str | None:
    """The worker's sentence (summary["text"]); other keys are for the detail view and the notifier."""
    if isinstance(summary, dict) and isinstance(summary.get("text"), str):
        return summary["text"]
    return None


class PageQueries:
    def __init__(self, ctx: Context, timeline: Timeline) -> None:
        self.ctx = ctx
        self._timeline = timeline

    async def _read_url(self, blob: str | None) -> str | None:
        """A short read SAS, or None: a missing picture must not cost the page its timeline."""
        if not blob:
            return None
        try:
            return await self.ctx.blobs.read_url(blob, self.ctx.config.storage.read_url_ttl_s)
        except (StorageError, ValueError):
            log.warning("no read URL for a thumbnail", extra={"blob": blob})
            return None

    # -- cards -------------------------------------------------------------------------------------------------

    @staticmethod
    def _card_rows(conn: Connection, event_rows: list[Any]) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
        """Camera names and start snapshots for these events, in two queries."""
        cam_ids = {r.camera_id for r in event_rows}
        names: dict[str, str] = {}
        if cam_ids:
            names = dict(conn.execute(sa.select(cameras.c.id, cameras.c.name).where(cameras.c.id.in_(cam_ids))).all())
        starts: dict[tuple[str, str], str] = {}
        need = [r for r in event_rows if not (r.state == "done" and r.snapshot_blob)]
        if need:
            q = sa.select(event_starts.c.hub_id, event_starts.c.hub_event_id, event_starts.c.snapshot_blob).where(
                event_starts.c.account_id == need[0].account_id,
                event_starts.c.hub_event_id.in_({r.hub_event_id for r in need}),
                event_starts.c.snapshot_blob.is_not(None))
            # Pairs (hub_id, hub_event_id) are matched here: a row-value IN is not portable to every SQLite.
            for row in conn.execute(q):
                starts[(row.hub_id, row.hub_event_id)] = row.snapshot_blob
        return names, starts

    async def _cards(self, rows: list[Any], labels: dict[str, list[str]], names: dict[str, str],
                     starts: dict[tuple[str, str], str]) -> list[EventCard]:
        out = []
        for r in rows:
            done_snapshot = r.snapshot_blob if r.state == "done" else None
            blob = done_snapshot or starts.get((r.hub_id, r.hub_event_id))
            duration = r.probed_duration_s if r.probed_duration_s is not None else r.declared_duration_s
            out.append(EventCard(
                id=r.id, hub_id=r.hub_id, camera_id=r.camera_id, camera_name=names.get(r.camera_id, ""),
                hub_event_id=r.hub_event_id, state=r.state, started_at=r.started_at, duration_s=float(duration),
                trigger=r.trigger, labels=labels.get(r.id, []), summary=summary_text(r.summary), reason=r.reason,
                thumbnail_url=await self._read_url(blob),
            ))
        return out

    async def timeline(self, user: User, f: TimelineFilter) -> tuple[list[EventCard], str | None]:
        """The core timeline's page (same filters, same cursor) as cards."""
        views, cursor = await self._timeline.page(user, f)
        rows = [v.row for v in views]
        names, starts = await self.ctx.db.read(lambda conn: self._card_rows(conn, rows))
        return await self._cards(rows, {v.row.id: v.labels for v in views}, names, starts), cursor

    async def event_card(self, account_id: str, event_id: str) -> EventCard | None:
        """One event's card now (None: not this account's, or deleted by retention since)."""

        def work(conn: Connection) -> tuple[Any, list[str], dict[str, str], dict[tuple[str, str], str]] | None:
            row = conn.execute(sa.select(events).where(events.c.id == event_id,
                                                       events.c.account_id == account_id)).first()
            if row is None:
                return None
            labels = list(conn.execute(sa.select(event_labels.c.label).where(event_labels.c.event_id == event_id)
                                       .order_by(event_labels.c.label)).scalars())
            names, starts = self._card_rows(conn, [row])
            return row, labels, names, starts

        got = await self.ctx.db.read(work)
        if got is None:
            return None
        row, labels, names, starts = got
        return (await self._cards([row], {row.id: labels}, names, starts))[0]

    async def start_card(self, account_id: str, start_id: str) -> StartCard | None:
        def work(conn: Connection) -> Any:
            return conn.execute(
                sa.select(event_starts, cameras.c.name.label("camera_name"))
                .join(cameras, cameras.c.id == event_starts.c.camera_id)
                .where(event_starts.c.id == start_id, event_starts.c.account_id == account_id)
            ).first()

        row = await self.ctx.db.read(work)
        if row is None:
            return None
        return StartCard(id=row.id, hub_id=row.hub_id, camera_id=row.camera_id, camera_name=row.camera_name,
                         hub_event_id=row.hub_event_id, started_at=row.started_at, trigger=row.trigger,
                         late=bool(row.late), thumbnail_url=await self._read_url(row.snapshot_blob))

    async def hub_state(self, account_id: str, hub_id: str) -> HubState | None:
        def work(conn: Connection) -> HubState | None:
            row = conn.execute(sa.select(hubs).where(hubs.c.id == hub_id, hubs.c.account_id == account_id)).first()
            if row is None:
                return None
            cams = conn.execute(
                sa.select(cameras.c.id, cameras.c.name, cameras.c.online)
                .where(cameras.c.hub_id == hub_id, cameras.c.removed_at.is_(None)).order_by(cameras.c.hub_camera_id)
            ).all()
            return HubState(id=row.id, name=row.name, armed=row.armed, disarmed_until=row.disarmed_until,
                            state_at=row.state_at, cameras=[CameraState(c.id, c.name, c.online) for c in cams])

        return await self.ctx.db.read(work)

    async def command_card(self, account_id: str, command_id: str, data: dict[str, Any]) -> CommandCard | None:
        def work(conn: Connection) -> Any:
            return conn.execute(sa.select(hub_commands.c.id, hub_commands.c.hub_id).where(
                hub_commands.c.id == command_id, hub_commands.c.account_id == account_id)).first()

        row = await self.ctx.db.read(work)
        if row is None:
            return None
        snap = data.get("snapshot_blob")
        return CommandCard(id=row.id, hub_id=row.hub_id, kind=str(data.get("kind", "")),
                           ok=data.get("ok") if isinstance(data.get("ok"), bool) else None,
                           message=data.get("message") if isinstance(data.get("message"), str) else None,
                           origin=data.get("origin") if isinstance(data.get("origin"), str) else None,
                           snapshot_url=await self._read_url(snap if isinstance(snap, str) else None))

    # -- credits per day ---------------------------------------------------------------------------------------

    async def usage(self, user: User, days: int) -> Usage:
        """Credits charged and refunded per UTC day over the last `days` days (today included), and this month's
        balance. Refunds count on the day they happened (the ledger row's time)."""
        if not 1 <= days <= MAX_USAGE_DAYS:
            raise errors.InvalidInput(f"days must be 1..{MAX_USAGE_DAYS}", reason="invalid_input")
        now = self.ctx.clock()
        plan_name = user.plan if user.plan in self.ctx.config.plans else self.ctx.config.default_plan
        plan = self.ctx.config.plan(plan_name)
        today = now.astimezone(UTC).date()
        first = today - timedelta(days=days - 1)
        since = datetime(first.year, first.month, first.day, tzinfo=UTC)

        def work(conn: Connection) -> tuple[credits.Balance, list[Any]]:
            balance = credits.granted_balance(conn, user.account_id, plan, now)
            # Summed here, not in SQL: grouping epoch seconds by day is spelt differently on each engine, and a
            # month of one account's ledger is a few thousand small rows at most.
            rows = conn.execute(
                sa.select(credit_ledger.c.kind, credit_ledger.c.amount, credit_ledger.c.created_at)
                .where(credit_ledger.c.account_id == user.account_id, credit_ledger.c.created_at >= since,
                       credit_ledger.c.kind.in_(("charge", "refund")))
            ).all()
            return balance, list(rows)

        balance, rows = await self.ctx.db.tx(work)
        charged: dict[str, int] = {}
        refunded: dict[str, int] = {}
        for kind, amount, at in rows:
            day = at.astimezone(UTC).date().isoformat()
            if kind == "charge":
                charged[day] = charged.get(day, 0) - int(amount)
            else:
                refunded[day] = refunded.get(day, 0) + int(amount)
        series = []
        for i in range(days):
            d = (first + timedelta(days=i)).isoformat()
            series.append(UsageDay(day=d, charged=charged.get(d, 0), refunded=refunded.get(d, 0)))
        return Usage(plan=plan_name, monthly_credits=plan.monthly_credits, period=balance.period,
                     granted=balance.granted, used=balance.used, left=balance.left, days=series)
