"""Who the hub's bot talks to, in the hub's own SQLite: linked chats, one-time link tokens, per-chat camera
mutes, and the last Telegram update handled.

A link token is shown once (``pingwatch telegram link``) and only its SHA-256 is stored: a copied database
links no chat. It works once, for ``LINK_TTL_S`` after it was made. Used by the CLI (its own connection) and
by the running hub; every statement is one indexed row, so both may hold the database at once (WAL).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from enum import Enum

from hub.store import Store

LINK_TTL_S = 600.0
CHATS = "telegram_chats"
TOKENS = "telegram_link_tokens"
MUTES = "telegram_mutes"
STATE = "telegram_state"


class LinkOutcome(Enum):
    LINKED = "linked"
    ALREADY = "already"  # the chat was linked before; the token is spent all the same
    INVALID = "invalid"  # unknown, used or expired: the same answer for all three, nothing to learn from it


@dataclass(frozen=True)
class LinkToken:
    token: str  # shown once, never stored
    expires_at: float


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ChatBook:
    def __init__(self, store: Store, config_chats: list[int] | tuple[int, ...] = ()) -> None:
        self._store = store
        self._config_chats = tuple(config_chats)
        ensure_tables(store)

    # -- linking ---------------------------------------------------------------------------------------

    def new_link_token(self, now: float | None = None) -> LinkToken:
        now = time.time() if now is None else now
        token = secrets.token_urlsafe(24)  # 32 characters of A-Z a-z 0-9 _ -: what a deep link's start= allows
        db = self._store.db
        with db.conn:
            db.execute(f"DELETE FROM {TOKENS} WHERE expires_at < ?", [now - LINK_TTL_S])  # old ones, kept a while
            db.execute(f"INSERT INTO {TOKENS} (token_hash, created_at, expires_at) VALUES (?, ?, ?)",
                       [_hash(token), now, now + LINK_TTL_S])
        return LinkToken(token, now + LINK_TTL_S)

    def redeem(self, token: str, chat_id: int, title: str, sent_at: float, now: float | None = None) -> LinkOutcome:
        """``/start <token>`` arrived in ``chat_id``. ``sent_at`` is when the user sent it (Telegram's date), so
        a hub that was offline for a minute still honours a token that was fresh when it was used."""
        now = time.time() if now is None else now
        when = min(sent_at, now)
        db = self._store.db
        with db.conn:
            # One statement claims the token: two chats racing for it cannot both win.
            cur = db.execute(f"UPDATE {TOKENS} SET used_at = ?, chat_id = ? WHERE token_hash = ? AND used_at IS NULL "
                             "AND expires_at >= ?", [now, chat_id, _hash(token), when])
            if cur.rowcount != 1:
                return LinkOutcome.INVALID
            known = self.is_linked(chat_id)
            db.execute(f"INSERT OR REPLACE INTO {CHATS} (chat_id, title, linked_at) VALUES (?, ?, ?)",
                       [chat_id, title[:200], now])
        return LinkOutcome.ALREADY if known else LinkOutcome.LINKED

    def token_used(self, token: str) -> int | None:
        """The chat a token linked, or None while it is unused (the CLI waits on this)."""
        row = self._store.db.execute(f"SELECT chat_id FROM {TOKENS} WHERE token_hash = ? AND used_at IS NOT NULL",
                                     [_hash(token)]).fetchone()
        return int(row[0]) if row else None

    def unlink(self, chat_id: int) -> bool:
        with self._store.db.conn:
            cur = self._store.db.execute(f"DELETE FROM {CHATS} WHERE chat_id = ?", [chat_id])
            self._store.db.execute(f"DELETE FROM {MUTES} WHERE chat_id = ?", [chat_id])
        return cur.rowcount == 1

    # -- who gets alerts -----------------------------------------------------------------------------------

    def linked(self) -> list[int]:
        rows = self._store.db.execute(f"SELECT chat_id FROM {CHATS} ORDER BY linked_at").fetchall()
        chats = [int(r[0]) for r in rows]
        return chats + [c for c in self._config_chats if c not in chats]

    def is_linked(self, chat_id: int) -> bool:
        if chat_id in self._config_chats:
            return True
        return self._store.db.execute(f"SELECT 1 FROM {CHATS} WHERE chat_id = ?", [chat_id]).fetchone() is not None

    def chats(self) -> list[dict[str, object]]:
        rows = self._store.db.execute(f"SELECT chat_id, title, linked_at FROM {CHATS} ORDER BY linked_at").fetchall()
        out: list[dict[str, object]] = [{"chat_id": c, "title": t, "linked_at": at, "by": "link"} for c, t, at in rows]
        seen = {r[0] for r in rows}
        out += [{"chat_id": c, "title": None, "linked_at": None, "by": "config"}
                for c in self._config_chats if c not in seen]
        return out

    # -- mutes -----------------------------------------------------------------------------------------

    def mute(self, chat_id: int, camera_id: str, until: float) -> None:
        self._store.db.execute(f"INSERT OR REPLACE INTO {MUTES} (chat_id, camera_id, until) VALUES (?, ?, ?)",
                               [chat_id, camera_id, until])

    def unmute(self, chat_id: int, camera_id: str) -> bool:
        cur = self._store.db.execute(f"DELETE FROM {MUTES} WHERE chat_id = ? AND camera_id = ?", [chat_id, camera_id])
        return cur.rowcount == 1

    def muted_until(self, chat_id: int, camera_id: str, now: float | None = None) -> float | None:
        now = time.time() if now is None else now
        row = self._store.db.execute(f"SELECT until FROM {MUTES} WHERE chat_id = ? AND camera_id = ? AND until > ?",
                                     [chat_id, camera_id, now]).fetchone()
        return float(row[0]) if row else None

    def mutes(self, chat_id: int, now: float | None = None) -> dict[str, float]:
        now = time.time() if now is None else now
        rows = self._store.db.execute(f"SELECT camera_id, until FROM {MUTES} WHERE chat_id = ? AND until > ?",
                                      [chat_id, now]).fetchall()
        return {str(c): float(u) for c, u in rows}

    # -- updates ---------------------------------------------------------------------------------------

    def last_update_id(self) -> int:
        row = self._store.db.execute(f"SELECT value FROM {STATE} WHERE key = 'last_update_id'").fetchone()
        return int(row[0]) if row else 0

    def claim_update(self, update_id: int) -> bool:
        """True once per update_id: it is recorded before the update is acted on, so an update Telegram hands
        over again (a restart before the offset was confirmed) never acts twice."""
        with self._store.db.conn:
            if update_id <= self.last_update_id():
                return False
            self._store.db.execute(f"INSERT OR REPLACE INTO {STATE} (key, value) VALUES ('last_update_id', ?)",
                                   [str(update_id)])
        return True


def ensure_tables(store: Store) -> None:
    db = store.db
    names = set(db.table_names())
    if CHATS not in names:
        db.table(CHATS).create({"chat_id": int, "title": str, "linked_at": float}, pk="chat_id", not_null={"linked_at"})
    if TOKENS not in names:
        db.table(TOKENS).create({"token_hash": str, "created_at": float, "expires_at": float, "used_at": float,
                           "chat_id": int}, pk="token_hash", not_null={"created_at", "expires_at"})
    if MUTES not in names:
        db.table(MUTES).create({"chat_id": int, "camera_id": str, "until": float}, pk=("chat_id", "camera_id"),
                         not_null={"until"})
    if STATE not in names:
        db.table(STATE).create({"key": str, "value": str}, pk="key")
