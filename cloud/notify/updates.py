"""Acting on Telegram updates (from the webhook route or long polling; both store them in `telegram_updates`
first, so each update_id acts once): /start <token> links a chat; linked chats may /status, /arm, /disarm,
/snapshot, /events, /mute, /unmute, /unlink, /help; alert buttons disarm the hub or mute a camera.

A chat acts only on its own account's hubs and cameras: every id in a command or a button's callback data is
looked up together with the chat's account, so a forged update naming another account's hub does nothing.
Hub actions go through HubCommands (the hub fetches them); the outcome comes back as a "command.done" change,
which the planner turns into a reply (origin "telegram:<chat>:<message>").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from telegram import Bot, CallbackQuery, Message, ReplyParameters, Update

from cloud.api import errors
from cloud.api.context import Context
from cloud.api.db.schema import cameras, event_labels, events, hubs, telegram_mutes
from cloud.api.db.util import insert_ignore
from cloud.api.principals import User
from cloud.api.security import new_id
from cloud.api.services.commands import HubCommands
from cloud.api.services.hubs import Hubs
from cloud.api.services.telegram import LinkOutcome, redeem, unlink_chat
from cloud.notify import store, texts
from cloud.notify.sender import NotifierStats, Pacer
from pingwatch_common.telegram import answer

log = logging.getLogger(__name__)

# A command or button press that waited longer than this (the notifier was down) is not acted on: a disarm
# minutes after the press would surprise; the person is asked to send it again.
STALE_AFTER = timedelta(minutes=2)
ACTING = {"arm", "disarm", "snapshot", "mute", "unmute"}

LINK_TEXT = {LinkOutcome.LINKED: texts.LINKED, LinkOutcome.ALREADY: texts.ALREADY_LINKED,
             LinkOutcome.EXPIRED: texts.LINK_EXPIRED, LinkOutcome.INVALID: texts.LINK_INVALID,
             LinkOutcome.OTHER_ACCOUNT: texts.LINK_OTHER}


def _origin(chat_id: int, message_id: int | None) -> str:
    return f"telegram:{chat_id}:{message_id or ''}"


class UpdateHandler:
    def __init__(self, ctx: Context, bot: Bot, stats: NotifierStats, pacer: Pacer,
                 username: Callable[[], str | None]) -> None:
        self.ctx = ctx
        self.bot = bot
        self.stats = stats
        self.pacer = pacer
        self._username = username
        self.commands = HubCommands(ctx)

    async def handle(self, update: Update, received_at: datetime | None = None) -> None:
        """Act on one update (already claimed once); never raises. `received_at`: when it was stored; an update
        that waited longer than STALE_AFTER (the notifier was down) does not act on the hub any more."""
        try:
            if update.callback_query is not None:
                stale = received_at is not None and self.ctx.clock() - received_at > STALE_AFTER
                await self._on_button(update.callback_query, stale)
            elif update.message is not None and update.message.text:
                await self._on_message(update.message)
        except asyncio.CancelledError:
            raise
        except Exception:  # one bad update must not stop the bot
            log.exception("could not handle a Telegram update", extra={"update_id": update.update_id})

    # -- messages ----------------------------------------------------------------------------------------

    async def _account(self, chat_id: int) -> tuple[str, str] | None:
        return await self.ctx.db.read(lambda conn: store.chat_account(conn, chat_id))

    async def _on_message(self, msg: Message) -> None:
        text = (msg.text or "").strip()
        if not text.startswith("/"):
            return
        word, *args = text.split()
        command, _, addressed = word[1:].partition("@")
        me = self._username()
        if addressed and me and addressed.lower() != me.lower():
            return  # meant for another bot in a group
        command = command.lower()
        chat_id = msg.chat.id
        if command in ACTING and msg.date is not None and self.ctx.clock() - msg.date > STALE_AFTER:
            await self.reply(chat_id, texts.TOO_LATE, msg.message_id)
            return
        if command == "start":
            await self._cmd_start(msg, args)
            return
        linked = await self._account(chat_id)
        if linked is None:
            await self.reply(chat_id, texts.NOT_LINKED, msg.message_id)
            return
        account_id, chat_row_id = linked
        handlers: dict[str, Callable[[str, str, Message, list[str]], Awaitable[str | None]]] = {
            "help": self._cmd_help, "status": self._cmd_status, "arm": self._cmd_arm, "disarm": self._cmd_disarm,
            "snapshot": self._cmd_snapshot, "events": self._cmd_events, "mute": self._cmd_mute,
            "unmute": self._cmd_unmute, "unlink": self._cmd_unlink, "stop": self._cmd_unlink}
        handler = handlers.get(command)
        if handler is None:
            await self.reply(chat_id, f"I do not know /{command}.\n\n{texts.HELP}", msg.message_id)
            return
        try:
            answer = await handler(account_id, chat_row_id, msg, args)
        except errors.DomainError as exc:
            answer = exc.error + (f" ({exc.hint})" if exc.hint else "")
        if answer:
            await self.reply(chat_id, answer, msg.message_id)

    async def _cmd_start(self, msg: Message, args: list[str]) -> None:
        chat_id = msg.chat.id
        if not args:
            linked = await self._account(chat_id)
            await self.reply(chat_id, texts.HELP if linked else texts.NOT_LINKED, msg.message_id)
            return
        title = msg.chat.title or msg.chat.username or msg.chat.first_name or str(chat_id)
        now = self.ctx.clock()
        outcome = await self.ctx.db.tx(lambda conn: redeem(conn, args[0], chat_id, title, now))
        if outcome is LinkOutcome.LINKED:
            log.info("Telegram chat linked", extra={"chat_id": chat_id})
        await self.reply(chat_id, LINK_TEXT[outcome], msg.message_id)

    async def _cmd_help(self, account_id: str, chat_row_id: str, msg: Message, args: list[str]) -> str:
        return texts.HELP

    async def _cmd_unlink(self, account_id: str, chat_row_id: str, msg: Message, args: list[str]) -> str:
        await self.ctx.db.tx(lambda conn: unlink_chat(conn, msg.chat.id))
        return texts.UNLINKED

    async def _cmd_status(self, account_id: str, chat_row_id: str, msg: Message, args: list[str]) -> str:
        views = await Hubs(self.ctx).list_hubs(User(account_id=account_id, email="", plan="", token_id=""))
        views = [h for h in views if h.linked]
        if not views:
            return "No hub is linked to this account yet."
        lines = []
        for h in views:
            if h.armed is None:
                armed = "arming state not reported"
            elif h.armed:
                armed = "🛡 armed"
            elif h.disarmed_until:
                armed = f"💤 disarmed until {texts.clock(h.disarmed_until, self.ctx.config.worker.timezone)[:5]}"
            else:
                armed = "💤 disarmed"
            lines.append(f"{'🟢' if h.online else '🔴'} {h.name}: {'online' if h.online else 'offline'}, {armed}")
            for c in h.cameras:
                if not c.removed:
                    state = {True: "online", False: "offline", None: "not reported"}[c.online]
                    lines.append(f"   📷 {c.name}: {state}")
        return "\n".join(lines)

    async def _hub_ids(self, account_id: str) -> list[str]:
        return await self.ctx.db.read(lambda conn: [r.id for r in conn.execute(
            sa.select(hubs.c.id).where(hubs.c.account_id == account_id, hubs.c.unlinked_at.is_(None),
                                       hubs.c.token_hash.is_not(None)).order_by(hubs.c.created_at))])

    async def _to_hubs(self, account_id: str, msg: Message, kind: str, args: dict[str, Any],
                       hub_ids: list[str] | None = None) -> str:
        hub_ids = hub_ids if hub_ids is not None else await self._hub_ids(account_id)
        if not hub_ids:
            return "No hub is linked to this account yet."
        for hub_id in hub_ids:
            await self.commands.create(account_id, hub_id, kind, args, _origin(msg.chat.id, msg.message_id))
        return texts.SENT_TO_HUB

    async def _cmd_arm(self, account_id: str, chat_row_id: str, msg: Message, args: list[str]) -> str:
        return await self._to_hubs(account_id, msg, "arm", {})

    async def _cmd_disarm(self, account_id: str, chat_row_id: str, msg: Message, args: list[str]) -> str:
        for_s = None
        if args:
            for_s = texts.parse_duration(args[0])
            if for_s is None or len(args) > 1:
                return f"Use /disarm [time], e.g. /disarm 1h ('{' '.join(args)}' is not a time)."
        return await self._to_hubs(account_id, msg, "disarm", {"for_s": for_s})

    async def _cameras(self, account_id: str) -> list[Any]:
        return await self.ctx.db.read(lambda conn: conn.execute(
            sa.select(cameras.c.id, cameras.c.hub_id, cameras.c.hub_camera_id, cameras.c.name)
            .where(cameras.c.account_id == account_id, cameras.c.removed_at.is_(None))
            .order_by(cameras.c.name)).all())  # type: ignore[arg-type,return-value]

    @staticmethod
    def _find_camera(cams: list[Any], word: str) -> Any | None:
        w = word.lower()
        for c in cams:
            if w in (c.name.lower(), c.hub_camera_id.lower()):
                return c
        return None

    async def _cmd_snapshot(self, account_id: str, chat_row_id: str, msg: Message, args: list[str]) -> str:
        if not args:
            return await self._to_hubs(account_id, msg, "snapshot", {"camera_id": None})
        cam = self._find_camera(await self._cameras(account_id), " ".join(args))
        if cam is None:
            return f"I do not know the camera '{' '.join(args)}'. /status lists them."
        return await self._to_hubs(account_id, msg, "snapshot", {"camera_id": cam.hub_camera_id}, [cam.hub_id])

    async def _cmd_events(self, account_id: str, chat_row_id: str, msg: Message, args: list[str]) -> str:
        tz = self.ctx.config.worker.timezone

        def work(conn: Connection) -> list[str]:
            rows = conn.execute(
                sa.select(events.c.id, events.c.state, events.c.started_at, cameras.c.name)
                .join(cameras, cameras.c.id == events.c.camera_id)
                .where(events.c.account_id == account_id)
                .order_by(events.c.started_at.desc(), events.c.id).limit(5)).all()
            out = []
            for r in rows:
                labels = [x.label for x in conn.execute(sa.select(event_labels.c.label)
                                                         .where(event_labels.c.event_id == r.id))]
                when = r.started_at.astimezone(ZoneInfo(tz)).strftime("%d %b %H:%M")
                out.append(f"• {when} {r.name}: {r.state}" + (f" – {', '.join(labels)}" if labels else ""))
            return out

        lines = await self.ctx.db.read(work)
        return "Last events:\n" + "\n".join(lines) if lines else "No events yet."

    async def _mute(self, chat_row_id: str, camera_id: str, seconds: int) -> datetime:
        until = self.ctx.clock() + timedelta(seconds=seconds)

        def work(conn: Connection) -> None:
            if not insert_ignore(conn, telegram_mutes, {"id": new_id(), "chat_row_id": chat_row_id,
                                                        "camera_id": camera_id, "until": until}):
                conn.execute(sa.update(telegram_mutes).where(telegram_mutes.c.chat_row_id == chat_row_id,
                                                             telegram_mutes.c.camera_id == camera_id)
                             .values(until=until))

        await self.ctx.db.tx(work)
        return until

    async def _cmd_mute(self, account_id: str, chat_row_id: str, msg: Message, args: list[str]) -> str:
        cams = await self._cameras(account_id)
        seconds = texts.ONE_HOUR_S
        if args and texts.parse_duration(args[-1]) is not None:
            seconds = texts.parse_duration(args[-1]) or seconds
            args = args[:-1]
        cam = self._find_camera(cams, " ".join(args)) if args else (cams[0] if len(cams) == 1 else None)
        if cam is None:
            names = ", ".join(c.name for c in cams) or "none yet"
            return f"Use /mute <camera> [time], e.g. /mute {cams[0].name if cams else 'porch'} 1h. Cameras: {names}."
        until = await self._mute(chat_row_id, cam.id, seconds)
        return (f"🔕 {cam.name}: no alerts in this chat until "
                f"{texts.clock(until, self.ctx.config.worker.timezone)[:5]}. /unmute {cam.name} ends it.")

    async def _cmd_unmute(self, account_id: str, chat_row_id: str, msg: Message, args: list[str]) -> str:
        cams = await self._cameras(account_id)
        cam = self._find_camera(cams, " ".join(args)) if args else (cams[0] if len(cams) == 1 else None)
        if cam is None:
            return "Use /unmute <camera>."
        await self.ctx.db.tx(lambda conn: conn.execute(sa.delete(telegram_mutes).where(
            telegram_mutes.c.chat_row_id == chat_row_id, telegram_mutes.c.camera_id == cam.id)))
        return f"🔔 {cam.name}: alerts again in this chat."

    # -- buttons -----------------------------------------------------------------------------------------

    async def _on_button(self, query: CallbackQuery, stale: bool = False) -> None:
        """Every press is answered (Telegram shows a spinner until it is), whatever it asked."""
        text, alert = "This button is no longer valid.", False
        try:
            chat_id = query.message.chat.id if query.message is not None else None
            message_id = query.message.message_id if query.message is not None else None
            action = texts.parse_button(query.data)
            linked = await self._account(chat_id) if chat_id is not None else None
            if stale:
                # Pressed while the notifier was down: a disarm or mute acted on minutes later would surprise.
                text, alert = texts.TOO_LATE, True
            elif linked is None or chat_id is None:
                text, alert = texts.NOT_LINKED, True
            elif action is not None:
                account_id, chat_row_id = linked
                kind, target, seconds = action
                if kind == "disarm":
                    # HubCommands.create checks the hub is this account's: another account's id is "no such hub".
                    await self.commands.create(account_id, target, "disarm", {"for_s": seconds},
                                               _origin(chat_id, message_id))
                    text = texts.SENT_TO_HUB
                else:
                    cam = await self.ctx.db.read(lambda conn: conn.execute(
                        sa.select(cameras.c.name).where(cameras.c.id == target,
                                                        cameras.c.account_id == account_id)).first())
                    if cam is not None:
                        until = await self._mute(chat_row_id, target, seconds)
                        text = (f"🔕 {cam.name}: muted in this chat until "
                                f"{texts.clock(until, self.ctx.config.worker.timezone)[:5]}.")
        except errors.DomainError as exc:
            text, alert = exc.error, True
        finally:
            await self._call(lambda: self.bot.answer_callback_query(query.id, text=text[:200], show_alert=alert),
                             "answerCallbackQuery")

    # -- answers to people -------------------------------------------------------------------------------

    async def reply(self, chat_id: int, text: str, reply_to: int | None = None) -> None:
        wait = self.pacer.reserve(chat_id)
        if wait > 0:
            await asyncio.sleep(wait)  # rate pacing: the chat's next slot
        params = ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None
        await self._call(lambda: self.bot.send_message(chat_id, text[:texts.TEXT_MAX], reply_parameters=params),
                         "sendMessage")

    async def _call(self, send: Callable[[], Awaitable[Any]], method: str) -> None:
        await answer(send, method, self.stats, retry_pause_s=0.5)
