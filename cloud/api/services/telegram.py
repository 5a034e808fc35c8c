"""Telegram on the API side: linking a chat to an account (one-time deep-link tokens, hashed at rest), the
account's linked chats with their per-camera subscriptions and mutes, the alert mode, and taking in webhook
updates (stored, de-duplicated by update_id; the notifier process acts on them).

The synchronous helpers (`redeem`, `unlink_chat`, `alert_mode`, `store_update`) run inside a caller's
transaction and are shared with the notifier (cloud/notify), so linking has one implementation.
"""

from __future__ import annotations

import asyncio
import enum
import hmac
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud.api import errors
from cloud.api.context import Context
from cloud.api.db.schema import (
    cameras,
    telegram_chats,
    telegram_deliveries,
    telegram_links,
    telegram_mutes,
    telegram_settings,
    telegram_updates,
)
from cloud.api.db.util import insert_ignore
from cloud.api.principals import User
from cloud.api.security import new_id, token_hash

AlertMode = Literal["all", "matches"]
DEFAULT_MODE: AlertMode = "all"
LINK_TOKEN_BYTES = 32  # token_urlsafe(32): 43 chars of [A-Za-z0-9_-], within the deep link's 64


class LinkOutcome(enum.Enum):
    LINKED = "linked"
    ALREADY = "already"  # this chat already used this token, or is already linked to this account
    EXPIRED = "expired"
    INVALID = "invalid"  # unknown, or used by another chat
    OTHER_ACCOUNT = "other_account"  # the chat is linked to another account: /unlink there first


@dataclass(frozen=True)
class LinkTicket:
    token: str
    deep_link: str
    expires_at: datetime
    qr_svg: str


@dataclass(frozen=True)
class ChatCamera:
    id: str
    name: str
    subscribed: bool
    muted_until: datetime | None


@dataclass(frozen=True)
class ChatView:
    id: str
    chat_id: int
    title: str | None
    linked_at: datetime
    all_cameras: bool
    cameras: list[ChatCamera]


# -- shared with the notifier (inside a transaction) ----------------------------------------------------------


def redeem(conn: Connection, token: str, chat_id: int, title: str | None, now: datetime) -> LinkOutcome:
    """`/start <token>` from `chat_id`: link the chat to the token's account, once."""
    if not token or len(token) > 64:
        return LinkOutcome.INVALID
    link = conn.execute(sa.select(telegram_links).where(telegram_links.c.token_hash == token_hash(token))).first()
    if link is None:
        return LinkOutcome.INVALID
    if link.used_at is not None:
        return LinkOutcome.ALREADY if link.chat_id == chat_id else LinkOutcome.INVALID
    if link.expires_at <= now:
        return LinkOutcome.EXPIRED
    existing = conn.execute(sa.select(telegram_chats.c.account_id).where(telegram_chats.c.chat_id == chat_id)).first()
    if existing is not None and existing.account_id != link.account_id:
        return LinkOutcome.OTHER_ACCOUNT
    # The conditional UPDATE is what makes the token one-time when two /start race.
    used = conn.execute(sa.update(telegram_links).where(telegram_links.c.id == link.id,
                                                        telegram_links.c.used_at.is_(None))
                        .values(used_at=now, chat_id=chat_id)).rowcount
    if used != 1:
        return LinkOutcome.INVALID
    if existing is not None:
        return LinkOutcome.ALREADY
    inserted = insert_ignore(conn, telegram_chats, {
        "id": new_id(), "account_id": link.account_id, "chat_id": chat_id, "title": (title or "")[:200] or None,
        "linked_at": now, "cameras": None})
    return LinkOutcome.LINKED if inserted else LinkOutcome.ALREADY


def unlink_chat(conn: Connection, chat_id: int) -> bool:
    """The chat side of unlinking (/unlink, or a chat that blocked the bot). Its mutes go with it (cascade)."""
    row = conn.execute(sa.select(telegram_chats.c.id).where(telegram_chats.c.chat_id == chat_id)).first()
    if row is None:
        return False
    conn.execute(sa.delete(telegram_mutes).where(telegram_mutes.c.chat_row_id == row.id))
    # What was still on its way to this chat stays undelivered: an unlinked person gets no more of the account's
    # alerts (not the clip of an event that started while they were linked either).
    conn.execute(sa.update(telegram_deliveries).where(telegram_deliveries.c.chat_id == chat_id,
                                                      telegram_deliveries.c.state == "pending")
                 .values(state="skipped", last_error="the chat was unlinked"))
    return conn.execute(sa.delete(telegram_chats).where(telegram_chats.c.id == row.id)).rowcount == 1


def alert_mode(conn: Connection, account_id: str) -> AlertMode:
    mode = conn.execute(sa.select(telegram_settings.c.mode)
                        .where(telegram_settings.c.account_id == account_id)).scalar()
    return "matches" if mode == "matches" else DEFAULT_MODE


def store_update(conn: Connection, update: dict[str, Any], now: datetime) -> bool:
    """Keep an update for the notifier; False when this update_id was seen already (Telegram redelivers)."""
    return insert_ignore(conn, telegram_updates, {"update_id": int(update["update_id"]), "received_at": now,
                                                  "payload": update, "claimed_at": None})


def secret_matches(expected: str | None, given: str | None) -> bool:
    """The webhook's secret header, compared in constant time; no secret configured accepts nothing."""
    if not expected or given is None:
        return False
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogatepass"))


def qr_svg(text: str) -> str:
    import qrcode
    import qrcode.image.svg

    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, border=2)
    out = io.BytesIO()
    image.save(out)
    return out.getvalue().decode()


# -- the service --------------------------------------------------------------------------------------------

_usernames: dict[str, str] = {}  # bot token -> @username, asked from Telegram once per process


class TelegramService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @property
    def _cfg(self) -> Any:
        return self.ctx.config.telegram

    def _require_enabled(self) -> None:
        if not self._cfg.enabled or not self._cfg.bot_token:
            raise errors.Conflict("Telegram alerts are not enabled on this server",
                                  "the operator sets telegram.enabled and telegram.bot_token", reason="telegram_off")

    async def bot_username(self) -> str:
        cfg = self._cfg
        if cfg.bot_username:
            return str(cfg.bot_username).lstrip("@")
        token = str(cfg.bot_token)
        if token not in _usernames:
            from telegram import Bot
            from telegram.error import TelegramError

            bot = Bot(token, base_url=cfg.api_base_url, base_file_url=cfg.api_file_url)
            try:
                me = await bot.get_me()
            except TelegramError as exc:
                raise errors.Unavailable("Telegram cannot be reached to name the bot", "retry in a minute, or set "
                                         "telegram.bot_username", reason="telegram_unreachable") from exc
            finally:
                await bot.shutdown()
            _usernames[token] = str(me.username)
        return _usernames[token]

    async def start_link(self, user: User) -> LinkTicket:
        import secrets

        self._require_enabled()
        username = await self.bot_username()
        token = secrets.token_urlsafe(LINK_TOKEN_BYTES)
        now = self.ctx.clock()
        expires = now + timedelta(seconds=self._cfg.link_ttl_s)

        def work(conn: Connection) -> None:
            conn.execute(sa.insert(telegram_links).values(id=new_id(), account_id=user.account_id,
                                                          token_hash=token_hash(token), created_at=now,
                                                          expires_at=expires))

        await self.ctx.db.tx(work)
        link = f"https://t.me/{username}?start={token}"
        svg = await asyncio.to_thread(qr_svg, link)
        return LinkTicket(token=token, deep_link=link, expires_at=expires, qr_svg=svg)

    def _chat_views(self, conn: Connection, account_id: str, chat_row_id: str | None = None) -> list[ChatView]:
        now = self.ctx.clock()
        q = sa.select(telegram_chats).where(telegram_chats.c.account_id == account_id).order_by(
            telegram_chats.c.linked_at, telegram_chats.c.id)
        if chat_row_id is not None:
            q = q.where(telegram_chats.c.id == chat_row_id)
        chats = conn.execute(q).all()
        cams = conn.execute(sa.select(cameras.c.id, cameras.c.name).where(
            cameras.c.account_id == account_id, cameras.c.removed_at.is_(None)).order_by(cameras.c.name)).all()
        mutes: dict[tuple[str, str], datetime] = {}
        if chats:
            for m in conn.execute(sa.select(telegram_mutes).where(
                    telegram_mutes.c.chat_row_id.in_([c.id for c in chats]), telegram_mutes.c.until > now)):
                mutes[(m.chat_row_id, m.camera_id)] = m.until
        out = []
        for c in chats:
            subscribed = None if c.cameras is None else set(c.cameras)
            out.append(ChatView(
                id=c.id, chat_id=int(c.chat_id), title=c.title, linked_at=c.linked_at, all_cameras=subscribed is None,
                cameras=[ChatCamera(id=cam.id, name=cam.name, subscribed=subscribed is None or cam.id in subscribed,
                                    muted_until=mutes.get((c.id, cam.id))) for cam in cams]))
        return out

    async def list_chats(self, user: User) -> list[ChatView]:
        return await self.ctx.db.tx(lambda conn: self._chat_views(conn, user.account_id))

    async def unlink(self, user: User, chat_row_id: str) -> None:
        def work(conn: Connection) -> None:
            row = conn.execute(sa.select(telegram_chats.c.chat_id).where(
                telegram_chats.c.id == chat_row_id, telegram_chats.c.account_id == user.account_id)).first()
            if row is None:
                raise errors.NotFound("no such chat", reason="not_found")
            unlink_chat(conn, int(row.chat_id))

        await self.ctx.db.tx(work)

    async def set_cameras(self, user: User, chat_row_id: str, all_cameras: bool, camera_ids: list[str]) -> ChatView:
        def work(conn: Connection) -> ChatView:
            owned = {r.id for r in conn.execute(sa.select(cameras.c.id).where(
                cameras.c.account_id == user.account_id, cameras.c.id.in_(camera_ids)))} if camera_ids else set()
            unknown = [c for c in camera_ids if c not in owned]
            if unknown:  # another account's camera looks the same as one that does not exist
                raise errors.NotFound(f"no such camera: {unknown[0]}", reason="not_found")
            value = None if all_cameras else sorted(owned)
            done = conn.execute(sa.update(telegram_chats).where(
                telegram_chats.c.id == chat_row_id, telegram_chats.c.account_id == user.account_id)
                .values(cameras=value)).rowcount
            if done != 1:
                raise errors.NotFound("no such chat", reason="not_found")
            return self._chat_views(conn, user.account_id, chat_row_id)[0]

        return await self.ctx.db.tx(work)

    async def get_mode(self, user: User) -> AlertMode:
        return await self.ctx.db.tx(lambda conn: alert_mode(conn, user.account_id))

    async def set_mode(self, user: User, mode: AlertMode) -> AlertMode:
        now = self.ctx.clock()

        def work(conn: Connection) -> AlertMode:
            if not insert_ignore(conn, telegram_settings, {"account_id": user.account_id, "mode": mode,
                                                           "updated_at": now}):
                conn.execute(sa.update(telegram_settings).where(telegram_settings.c.account_id == user.account_id)
                             .values(mode=mode, updated_at=now))
            return mode

        return await self.ctx.db.tx(work)

    def check_secret(self, given: str | None) -> None:
        if not secret_matches(self._cfg.webhook_secret if self._cfg.mode == "webhook" else None, given):
            raise errors.Unauthenticated("wrong or missing X-Telegram-Bot-Api-Secret-Token",
                                         "this URL is for Telegram's webhook only", reason="bad_secret")

    async def receive_update(self, update: dict[str, Any]) -> bool:
        now = self.ctx.clock()
        return await self.ctx.db.tx(lambda conn: store_update(conn, update, now))
