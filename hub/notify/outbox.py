"""The alert outbox: one row per (event, chat, stage) in the hub's own SQLite, so an alert is sent once, in
order, whatever happens: the bus delivering a message twice, a restart, days without internet.

Stages of one event's alert, in the order a chat sees them: ``started`` (the photo, "recording…"), ``clip``
(the video, as a reply), ``caption`` (the photo's caption edited to the final summary). Rows are sent per chat
strictly in ``seq`` order (a chat's head row blocks the ones behind it), so the video can never overtake its
photo. States: ``pending`` → ``sent`` | ``skipped`` (nothing left to say: the event was deleted, the caption
already says it) | ``failed`` (refused for good: the bot was blocked, the chat is gone, too old).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hub.store import Store

TABLE = "telegram_outbox"
STAGES = ("started", "clip", "caption")
OPEN = "pending"


@dataclass(frozen=True)
class AlertRow:
    seq: int
    event_id: str
    chat_id: int
    stage: str
    state: str
    attempts: int
    next_at: float
    created_at: float
    sent_at: float | None
    message_id: int | None
    kind: str | None  # what went out: "photo", "video" or "text" (a fallback)
    text: str | None  # the caption or text that went out
    late: bool  # a try failed for the network: the alert is late, and says so
    reason: str | None


_COLUMNS = ("seq, event_id, chat_id, stage, state, attempts, next_at, created_at, sent_at, message_id, kind, text, "
            "late, reason")


def _row(values: tuple[object, ...] | None) -> AlertRow | None:
    if values is None:
        return None
    v = list(values)
    v[12] = bool(v[12])
    return AlertRow(*v)  # type: ignore[arg-type]


class AlertOutbox:
    def __init__(self, store: Store) -> None:
        self._store = store
        if TABLE not in store.db.table_names():
            store.db.execute(
                f"CREATE TABLE {TABLE} (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, "
                "chat_id INTEGER NOT NULL, stage TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending', "
                "attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL, created_at REAL NOT NULL, "
                "sent_at REAL, message_id INTEGER, kind TEXT, text TEXT, late INTEGER NOT NULL DEFAULT 0, "
                "reason TEXT, UNIQUE (event_id, chat_id, stage))")
            store.db.execute(f"CREATE INDEX {TABLE}_open ON {TABLE} (state, chat_id, seq)")

    def add(self, event_id: str, chat_id: int, stage: str, now: float | None = None) -> bool:
        """Queue one stage for one chat; False when it was queued before (whatever became of it since)."""
        assert stage in STAGES, stage
        now = time.time() if now is None else now
        cur = self._store.db.execute(
            f"INSERT OR IGNORE INTO {TABLE} (event_id, chat_id, stage, next_at, created_at) VALUES (?, ?, ?, ?, ?)",
            [event_id, chat_id, stage, now, now])
        return cur.rowcount == 1

    def get(self, event_id: str, chat_id: int, stage: str) -> AlertRow | None:
        return _row(self._store.db.execute(
            f"SELECT {_COLUMNS} FROM {TABLE} WHERE event_id = ? AND chat_id = ? AND stage = ?",
            [event_id, chat_id, stage]).fetchone())

    def heads(self) -> list[AlertRow]:
        """Each chat's oldest pending row: the only one of that chat that may go next."""
        rows = self._store.db.execute(
            f"SELECT {_COLUMNS} FROM {TABLE} o WHERE state = ? AND seq = "
            f"(SELECT MIN(seq) FROM {TABLE} i WHERE i.chat_id = o.chat_id AND i.state = ?)", [OPEN, OPEN]).fetchall()
        return [r for r in map(_row, rows) if r is not None]

    def chats_of(self, event_id: str, stage: str) -> list[int]:
        rows = self._store.db.execute(f"SELECT chat_id FROM {TABLE} WHERE event_id = ? AND stage = ?",
                                      [event_id, stage]).fetchall()
        return [int(r[0]) for r in rows]

    def sent(self, row: AlertRow, message_id: int | None, kind: str | None, text: str | None, late: bool,
             now: float | None = None) -> None:
        self._store.db.execute(
            f"UPDATE {TABLE} SET state = 'sent', sent_at = ?, message_id = ?, kind = ?, text = ?, late = ?, "
            "attempts = attempts + 1, reason = NULL WHERE seq = ?",
            [time.time() if now is None else now, message_id, kind, text, int(late), row.seq])

    def close(self, row: AlertRow, state: str, reason: str) -> None:
        assert state in ("skipped", "failed"), state
        self._store.db.execute(f"UPDATE {TABLE} SET state = ?, reason = ? WHERE seq = ?", [state, reason, row.seq])

    def retry(self, row: AlertRow, next_at: float, reason: str, *, count: bool = True, late: bool = False) -> None:
        """Try again at ``next_at``; ``late`` when it failed for the network (the alert will say it is late)."""
        self._store.db.execute(
            f"UPDATE {TABLE} SET next_at = ?, reason = ?, attempts = attempts + ?, late = MAX(late, ?) WHERE seq = ?",
            [next_at, reason, int(count), int(late), row.seq])

    def retry_now(self, now: float | None = None) -> int:
        """The network is back: every row waiting out a network backoff may go at once."""
        cur = self._store.db.execute(f"UPDATE {TABLE} SET next_at = ? WHERE state = ? AND late = 1 AND next_at > ?",
                                     [time.time() if now is None else now, OPEN, time.time() if now is None else now])
        return cur.rowcount

    def forget_event(self, event_id: str) -> int:
        cur = self._store.db.execute(
            f"UPDATE {TABLE} SET state = 'skipped', reason = 'the event was deleted' WHERE event_id = ? AND state = ?",
            [event_id, OPEN])
        return cur.rowcount

    def open_stage_count(self, event_id: str, stage: str) -> int:
        return int(self._store.db.execute(
            f"SELECT COUNT(*) FROM {TABLE} WHERE event_id = ? AND stage = ? AND state = ?",
                                          [event_id, stage, OPEN]).fetchone()[0])

    def counts(self) -> dict[str, int]:
        rows = self._store.db.execute(f"SELECT state, COUNT(*) FROM {TABLE} GROUP BY state").fetchall()
        return {str(s): int(n) for s, n in rows}

    def rows(self, event_id: str | None = None) -> list[AlertRow]:
        where, params = ("WHERE event_id = ?", [event_id]) if event_id else ("", [])
        got = self._store.db.execute(f"SELECT {_COLUMNS} FROM {TABLE} {where} ORDER BY seq", params).fetchall()
        return [r for r in map(_row, got) if r is not None]
