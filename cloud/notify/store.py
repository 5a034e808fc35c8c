"""The notifier's rows: delivery attempts (one per event, chat and stage), its cursor in `changes`, and who gets
an account's alerts. Plain functions over a connection, called inside the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud.api.db.schema import telegram_chats, telegram_cursor, telegram_deliveries, telegram_mutes
from cloud.api.db.util import insert_ignore

CURSOR = "notifier"
PENDING, SENT, FAILED, SKIPPED = "pending", "sent", "failed", "skipped"
D = telegram_deliveries


@dataclass(frozen=True)
class Delivery:
    id: int
    account_id: str
    hub_id: str
    event_key: str
    chat_id: int
    stage: str
    state: str
    message_id: int | None
    kind: str | None
    text: str | None
    payload: dict[str, Any]
    tries: int
    next_at: datetime
    last_error: str | None


def _delivery(r: Any) -> Delivery:
    return Delivery(id=int(r.id), account_id=r.account_id, hub_id=r.hub_id, event_key=r.event_key,
                    chat_id=int(r.chat_id), stage=r.stage, state=r.state,
                    message_id=int(r.message_id) if r.message_id is not None else None, kind=r.kind, text=r.text,
                    payload=dict(r.payload or {}), tries=int(r.tries), next_at=r.next_at, last_error=r.last_error)


# -- cursor --------------------------------------------------------------------------------------------------


def load_cursor(conn: Connection) -> int | None:
    value = conn.execute(sa.select(telegram_cursor.c.change_id).where(telegram_cursor.c.name == CURSOR)).scalar()
    return None if value is None else int(value)


def save_cursor(conn: Connection, change_id: int, now: datetime) -> None:
    if not insert_ignore(conn, telegram_cursor, {"name": CURSOR, "change_id": change_id, "updated_at": now}):
        # Never backwards: a change handled twice (redelivered) must not rewind the cursor.
        conn.execute(sa.update(telegram_cursor).where(telegram_cursor.c.name == CURSOR,
                                                      telegram_cursor.c.change_id < change_id)
                     .values(change_id=change_id, updated_at=now))


# -- recipients ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    chat_id: int
    chat_row_id: str
    muted: bool


def recipients(conn: Connection, account_id: str, camera_id: str | None, now: datetime) -> list[Recipient]:
    """The account's chats subscribed to the camera; `muted` when that chat muted it (the row is kept, skipped)."""
    chats = conn.execute(sa.select(telegram_chats).where(telegram_chats.c.account_id == account_id)
                         .order_by(telegram_chats.c.linked_at)).all()
    muted: set[str] = set()
    if camera_id is not None and chats:
        muted = {r.chat_row_id for r in conn.execute(sa.select(telegram_mutes.c.chat_row_id).where(
            telegram_mutes.c.camera_id == camera_id, telegram_mutes.c.until > now,
            telegram_mutes.c.chat_row_id.in_([c.id for c in chats])))}
    return [Recipient(int(c.chat_id), c.id, c.id in muted) for c in chats
            if c.cameras is None or camera_id is None or camera_id in c.cameras]


def chat_account(conn: Connection, chat_id: int) -> tuple[str, str] | None:
    """(account id, chat row id) of a linked chat."""
    row = conn.execute(sa.select(telegram_chats.c.account_id, telegram_chats.c.id)
                       .where(telegram_chats.c.chat_id == chat_id)).first()
    return None if row is None else (row.account_id, row.id)


# -- delivery rows -------------------------------------------------------------------------------------------


def add(conn: Connection, *, account_id: str, hub_id: str, event_key: str, chat_id: int, stage: str, now: datetime,
        state: str = PENDING, payload: dict[str, Any] | None = None, error: str | None = None) -> bool:
    """One attempt row; False when (hub, event key, chat, stage) exists: a redelivered change adds nothing."""
    return insert_ignore(conn, D, {
        "account_id": account_id, "hub_id": hub_id, "event_key": event_key, "chat_id": chat_id, "stage": stage,
        "state": state, "payload": payload or {}, "tries": 0, "next_at": now, "created_at": now,
        "last_error": error[:300] if error else None})


def get(conn: Connection, hub_id: str, event_key: str, chat_id: int, stage: str) -> Delivery | None:
    row = conn.execute(sa.select(D).where(D.c.hub_id == hub_id, D.c.event_key == event_key, D.c.chat_id == chat_id,
                                          D.c.stage == stage)).first()
    return None if row is None else _delivery(row)


def by_id(conn: Connection, row_id: int) -> Delivery | None:
    row = conn.execute(sa.select(D).where(D.c.id == row_id)).first()
    return None if row is None else _delivery(row)


def due(conn: Connection, now: datetime, limit: int = 200) -> list[Delivery]:
    return [_delivery(r) for r in conn.execute(sa.select(D).where(D.c.state == PENDING, D.c.next_at <= now)
                                               .order_by(D.c.id).limit(limit))]


def next_due_at(conn: Connection) -> datetime | None:
    value: datetime | None = conn.execute(sa.select(sa.func.min(D.c.next_at)).where(D.c.state == PENDING)).scalar()
    if value is not None and not isinstance(value, datetime):  # min() over the column loses its type on SQLite
        from datetime import UTC

        value = datetime.fromtimestamp(float(value), UTC)
    return value


def rows_of_chat_event(conn: Connection, hub_id: str, event_key: str, chat_id: int) -> dict[str, Delivery]:
    return {d.stage: d for d in (_delivery(r) for r in conn.execute(
        sa.select(D).where(D.c.hub_id == hub_id, D.c.event_key == event_key, D.c.chat_id == chat_id)))}


def chats_with(conn: Connection, hub_id: str, event_key: str, stage: str, states: tuple[str, ...]) -> list[int]:
    return [int(r.chat_id) for r in conn.execute(sa.select(D.c.chat_id).where(
        D.c.hub_id == hub_id, D.c.event_key == event_key, D.c.stage == stage, D.c.state.in_(states)))]


def mark_sent(conn: Connection, row_id: int, *, message_id: int | None, kind: str, text: str | None,
              now: datetime, payload: dict[str, Any] | None = None) -> bool:
    values: dict[str, Any] = {"state": SENT, "message_id": message_id, "kind": kind, "text": text, "sent_at": now,
                              "tries": D.c.tries + 1}
    if payload is not None:
        values["payload"] = payload
    return conn.execute(sa.update(D).where(D.c.id == row_id, D.c.state == PENDING).values(**values)).rowcount == 1


def close(conn: Connection, row_id: int, state: str, error: str | None, now: datetime) -> bool:
    return conn.execute(sa.update(D).where(D.c.id == row_id, D.c.state == PENDING).values(
        state=state, last_error=error[:300] if error else None, sent_at=now)).rowcount == 1


def retry(conn: Connection, row_id: int, next_at: datetime, error: str | None, *, count: bool = True) -> None:
    values: dict[str, Any] = {"next_at": next_at, "last_error": error[:300] if error else None}
    if count:
        values["tries"] = D.c.tries + 1
    conn.execute(sa.update(D).where(D.c.id == row_id, D.c.state == PENDING).values(**values))


def fail_chat(conn: Connection, chat_id: int, error: str, now: datetime) -> int:
    """A chat that blocked the bot: everything still pending for it fails for good."""
    return conn.execute(sa.update(D).where(D.c.chat_id == chat_id, D.c.state == PENDING).values(
        state=FAILED, last_error=error[:300], sent_at=now)).rowcount


def prune(conn: Connection, before: datetime) -> int:
    return conn.execute(sa.delete(D).where(D.c.state != PENDING, D.c.created_at < before)).rowcount
