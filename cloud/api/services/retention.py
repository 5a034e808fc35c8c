"""Retention: delete events (rows and blobs) past their account plan's retention, uploads abandoned mid-way, event
starts and their snapshots like events, command snapshots after a day, old live changes, and expired secrets.
Run on a schedule (cloud/api/jobs.py) and by tests directly.

Blobs go first, rows second: a row whose blob could not be deleted (storage down) stays for the next pass, so
no blob is ever orphaned without a row pointing at it. The credit ledger is kept (it is the billing record).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud.api.context import Context
from cloud.api.db.schema import (
    accounts,
    api_tokens,
    changes,
    event_labels,
    event_starts,
    events,
    hub_commands,
    hub_link_codes,
)
from cloud.api.services import ratelimit
from cloud.storage.blob import StorageError

log = logging.getLogger(__name__)

_KEEP_DEAD_SECRETS = timedelta(days=1)
# A command's snapshot was sent to the person who asked; a day later nobody needs it (or the command's row).
_KEEP_COMMANDS = timedelta(days=1)
# Live changes: a page or notifier away longer than this re-reads everything instead of replaying.
_KEEP_CHANGES = timedelta(days=2)


@dataclass
class RetentionReport:
    events_deleted: int = 0
    starts_deleted: int = 0
    commands_deleted: int = 0
    changes_deleted: int = 0
    blobs_deleted: int = 0
    blob_errors: int = 0
    secrets_pruned: int = 0


class Retention:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def run_once(self) -> RetentionReport:
        cfg = self.ctx.config
        now = self.ctx.clock()
        report = RetentionReport()
        shortest = min(p.retention_days for p in cfg.plans.values())
        abandoned_before = now - timedelta(hours=cfg.retention.abandoned_upload_hours)

        def candidates(conn: Connection) -> list[Any]:
            return list(conn.execute(
                sa.select(events.c.id, events.c.blob_name, events.c.snapshot_blob, events.c.created_at,
                          events.c.state, accounts.c.plan)
                .join(accounts, accounts.c.id == events.c.account_id)
                .where(sa.or_(events.c.created_at < now - timedelta(days=shortest),
                              sa.and_(events.c.state == "uploading", events.c.created_at < abandoned_before)))
                .order_by(events.c.created_at).limit(cfg.retention.batch)
            ).all())

        doomed = []
        for r in await self.ctx.db.tx(candidates):
            expired = r.created_at < now - timedelta(days=cfg.plan(r.plan).retention_days)
            abandoned = r.state == "uploading" and r.created_at < abandoned_before
            if expired or abandoned:
                doomed.append(r)
        deletable = []
        for r in doomed:
            try:
                for name in (r.blob_name, r.snapshot_blob):
                    if name and await self.ctx.blobs.delete(name):
                        report.blobs_deleted += 1
            except StorageError as exc:
                report.blob_errors += 1
                log.warning("retention: blob delete failed; will retry", extra={"event_id": r.id, "error": str(exc)})
                break  # storage is likely down: stop this pass, keep the rows
            deletable.append(r.id)

        def delete_rows(conn: Connection) -> int:
            if not deletable:
                return 0
            conn.execute(sa.delete(event_labels).where(event_labels.c.event_id.in_(deletable)))
            return conn.execute(sa.delete(events).where(events.c.id.in_(deletable))).rowcount

        report.events_deleted = await self.ctx.db.tx(delete_rows)
        if not report.blob_errors:
            await self._starts_and_commands(report, shortest)

        def prune(conn: Connection) -> int:
            dead = now - _KEEP_DEAD_SECRETS
            n = conn.execute(sa.delete(api_tokens).where(
                sa.or_(api_tokens.c.expires_at < dead, api_tokens.c.revoked_at < dead))).rowcount
            n += conn.execute(sa.delete(hub_link_codes).where(hub_link_codes.c.expires_at < dead)).rowcount
            n += ratelimit.prune(conn, cfg.auth.login_window_s, now)
            return n

        report.secrets_pruned = await self.ctx.db.tx(prune)
        report.changes_deleted = await self.ctx.db.tx(lambda conn: conn.execute(
            sa.delete(changes).where(changes.c.at < now - _KEEP_CHANGES)).rowcount)
        if report.events_deleted or report.starts_deleted or report.blob_errors:
            log.info("retention pass", extra=report.__dict__)
        return report

    async def _starts_and_commands(self, report: RetentionReport, shortest_days: float) -> None:
        """Event starts past their plan's retention and old commands, snapshot blobs first (as for events)."""
        cfg = self.ctx.config
        now = self.ctx.clock()

        def candidates(conn: Connection) -> tuple[list[Any], list[Any]]:
            starts = conn.execute(
                sa.select(event_starts.c.id, event_starts.c.snapshot_blob, event_starts.c.reported_at, accounts.c.plan)
                .join(accounts, accounts.c.id == event_starts.c.account_id)
                .where(event_starts.c.reported_at < now - timedelta(days=shortest_days))
                .order_by(event_starts.c.reported_at).limit(cfg.retention.batch)
            ).all()
            commands = conn.execute(
                sa.select(hub_commands.c.id, hub_commands.c.result)
                .where(hub_commands.c.created_at < now - _KEEP_COMMANDS).limit(cfg.retention.batch)
            ).all()
            return list(starts), list(commands)

        starts, commands = await self.ctx.db.tx(candidates)
        doomed_starts = [r for r in starts
                         if r.reported_at < now - timedelta(days=cfg.plan(r.plan).retention_days)]
        gone_starts: list[str] = []
        gone_commands: list[str] = []
        try:
            for r in doomed_starts:
                if r.snapshot_blob and await self.ctx.blobs.delete(r.snapshot_blob):
                    report.blobs_deleted += 1
                gone_starts.append(r.id)
            for r in commands:
                blob = (r.result or {}).get("snapshot_blob")
                if blob and await self.ctx.blobs.delete(blob):
                    report.blobs_deleted += 1
                gone_commands.append(r.id)
        except StorageError as exc:
            report.blob_errors += 1
            log.warning("retention: snapshot delete failed; will retry", extra={"error": str(exc)})

        def delete_rows(conn: Connection) -> tuple[int, int]:
            n_starts = n_commands = 0
            if gone_starts:
                n_starts = conn.execute(sa.delete(event_starts).where(event_starts.c.id.in_(gone_starts))).rowcount
            if gone_commands:
                n_commands = conn.execute(
                    sa.delete(hub_commands).where(hub_commands.c.id.in_(gone_commands))).rowcount
            return n_starts, n_commands

        report.starts_deleted, report.commands_deleted = await self.ctx.db.tx(delete_rows)
