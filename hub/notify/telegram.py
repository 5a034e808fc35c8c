"""Telegram alerts straight from the hub (no cloud): the hub's own bot, python-telegram-bot, long polling.

Data flow: ``event.started`` on the bus → the camera's live snapshot is taken at once (kept on disk until every
chat has it) and one ``started`` row per linked chat goes into the outbox → the photo with camera, time and
"recording…" and two buttons. ``event.ended`` → ``clip`` (the video as a reply to the photo; over
``max_video_mb``, or refused by Telegram, a text saying where the clip is) and ``caption`` (the photo's caption
edited to the summary). One worker sends the outbox, each chat strictly in order, at most one message per
``min_interval_s`` per chat.

Failures: ``RetryAfter`` (429) → that row waits exactly what Telegram asked; 5xx, timeouts, no internet → the
row waits with exponential backoff and jitter and is marked late (its caption says so); a file Telegram
refuses (413, bad file) → the same stage as text; a chat that blocked the bot → the row fails for good. The
outbox is in the hub's SQLite, so a restart or a week offline loses nothing, and the (event, chat, stage) key
means nothing is sent twice (a send whose answer was lost in the network is the one case sent again: losing an
alert is worse than a duplicate).

Each row's outcome (sent, skipped, failed) is published on the bus as ``telegram.alert`` (``event_id``,
``chat_id``, ``stage``, ``state``, and ``kind``/``late`` or ``reason``).

Commands and buttons arrive by long polling (``getUpdates``). A webhook is never deleted: while one is set
(409 Conflict, e.g. the cloud's bot uses this token), the hub still sends alerts but reads no commands, and
says so in the log. Each update id is recorded before it is acted on, so a redelivered update never acts
twice. Only linked chats (``pingwatch telegram link``, or ``allowed_chat_ids``) may command the hub, and the hub
acts only through the ``ControlLike`` it is handed (arm, disarm, cameras, snapshots).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telegram import (
    Bot,
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
    Update,
)
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.request import HTTPXRequest

from hub.bus import Bus, Subscription
from hub.control_api import ControlLike
from hub.datadir import contained_file
from hub.errors import HubError
from hub.notify import messages as m
from hub.notify.chats import ChatBook, LinkOutcome
from hub.notify.config import TelegramConfig
from hub.notify.outbox import AlertOutbox, AlertRow
from hub.retry import Wakeup, backoff_s
from hub.store import Store
from pingwatch_common.aio import within
from pingwatch_common.telegram import BotRequest, EntityTooLarge, answer, retry_after_s

log = logging.getLogger(__name__)

SNAPSHOT_WAIT_S = 1.5  # the photo must leave within ~2 s of the trigger: a slower snapshot is sent as text
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_OPEN_EVENT = ("recording", "active")


@dataclass
class NotifierStats:
    """What delivery did, for tests and the status: asserted on instead of wall time."""

    sent: Counter[str] = field(default_factory=Counter)  # Bot API method -> successful calls
    retry_after_s: list[float] = field(default_factory=list)  # each RetryAfter honoured: the seconds asked
    network_retries: int = 0  # sends retried after 5xx, a timeout or no connection
    fallbacks: int = 0  # media stages sent as text
    failed: int = 0  # rows given up
    late: int = 0  # alerts sent marked late
    paced: int = 0  # sends held back by the per-chat interval
    duplicate_updates: int = 0  # updates skipped: already handled
    conflicts: int = 0  # getUpdates refused (409: a webhook is set)
    polls_failed: int = 0


class ChatPacer:
    """At most one message per ``interval_s`` per chat (Telegram throttles a chat beyond about one a second)."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._next: dict[int, float] = {}

    def free_at(self, chat_id: int) -> float:
        """When the chat may get its next message, on this pacer's clock."""
        return self._next.get(chat_id, 0.0)

    def reserve(self, chat_id: int) -> float:
        """Book the chat's next slot; returns how long to wait for it (0 when free now)."""
        now = self._clock()
        slot = max(now, self._next.get(chat_id, 0.0))
        self._next[chat_id] = slot + self.interval_s
        return slot - now


class Notifier:
    def __init__(self, config: TelegramConfig, store: Store, bus: Bus, control: ControlLike, clips_dir: Path,
                 cache_dir: Path, *, hub_url: Callable[[], str | None] | None = None) -> None:
        self.config = config
        self._store = store
        self._bus = bus
        self._control = control
        self._clips_dir = clips_dir
        self._cache_dir = cache_dir
        self._hub_url = hub_url or (lambda: None)
        self.chats = ChatBook(store, config.allowed_chat_ids)
        self.outbox = AlertOutbox(store)
        self.stats = NotifierStats()
        self.pacer = ChatPacer(config.min_interval_s)
        self.username: str | None = config.bot_username
        self._bot: Bot | None = None
        self._requests: list[HTTPXRequest] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._photos: dict[str, asyncio.Task[bytes | None]] = {}
        self._file_ids: dict[tuple[str, str], str] = {}  # (event, "photo"|"video") -> Telegram's file_id, reused
        self._wake = Wakeup()
        self._online = True
        self._offset = 0

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.config.active:
            if self.config.enabled:
                log.warning("Telegram alerts are on but telegram.bot_token is not set; no alerts are sent",
                            extra={"hint": "create a bot with @BotFather and set PINGWATCH_TELEGRAM__BOT_TOKEN"})
            return
        assert self.config.bot_token is not None
        # Two connection pools: a long poll must never hold up an alert.
        send = BotRequest(connection_pool_size=4, connect_timeout=10, read_timeout=30, write_timeout=30,
                        media_write_timeout=300)
        poll = BotRequest(connection_pool_size=1, connect_timeout=10, read_timeout=10)
        self._requests = [send, poll]
        self._bot = Bot(self.config.bot_token, base_url=self.config.base_url,
                        base_file_url=self.config.base_file_url, request=send, get_updates_request=poll)
        self._offset = self.chats.last_update_id() + 1
        sub = self._bus.subscribe("event.started", "event.ended", "event.deleted", maxsize=1024)
        self._tasks = [asyncio.create_task(self._listen(sub), name="telegram-bus"),
                       asyncio.create_task(self._deliver_loop(), name="telegram-outbox"),
                       asyncio.create_task(self._poll_loop(), name="telegram-poll")]
        log.info("Telegram alerts on", extra={"chats": len(self.chats.linked()), "api": self.config.api_url})

    async def stop(self) -> None:
        """Stop between sends; what is queued stays in the outbox for the next start."""
        tasks = self._tasks + list(self._photos.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks, self._photos = [], {}
        await asyncio.gather(*(r.shutdown() for r in self._requests), return_exceptions=True)
        self._requests, self._bot = [], None

    def status(self) -> dict[str, Any]:
        return {"enabled": self.config.active, "chats": len(self.chats.linked()), "online": self._online,
                "outbox": self.outbox.counts()}

    @property
    def bot(self) -> Bot:
        if self._bot is None:
            raise RuntimeError("the notifier is not started")
        return self._bot

    # -- the bus: alerts into the outbox -------------------------------------------------------------------

    async def _listen(self, sub: Subscription) -> None:
        try:
            async for msg in sub:
                try:
                    if msg.topic == "event.started":
                        self.queue_started(msg.data)
                    elif msg.topic == "event.ended":
                        self.queue_ended(msg.data.get("event") or {})
                    elif msg.topic == "event.deleted":
                        self.outbox.forget_event(str(msg.data.get("event_id")))
                except Exception:  # one bad message must not end the listener
                    log.exception("could not queue a Telegram alert", extra={"topic": msg.topic})
        finally:
            sub.close()

    def recipients(self, camera_id: str) -> list[int]:
        if camera_id in self.config.muted_cameras:
            return []
        return [c for c in self.chats.linked() if self.chats.muted_until(c, camera_id) is None]

    def queue_started(self, data: dict[str, Any]) -> int:
        """An event started: a ``started`` row per chat, and the live snapshot taken now. Returns rows added."""
        event_id, camera_id = str(data.get("event_id") or ""), str(data.get("camera_id") or "")
        if not _SAFE_ID.match(event_id) or not camera_id:
            return 0
        added = sum(self.outbox.add(event_id, chat, "started") for chat in self.recipients(camera_id))
        if added and event_id not in self._photos and not self._photo_path(event_id).exists():
            self._photos[event_id] = asyncio.create_task(self._take_photo(event_id, camera_id))
        if added:
            self._wake.set()
        return added

    def queue_ended(self, event: dict[str, Any]) -> int:
        """An event ended: the clip and the caption edit for every chat that gets this camera's alerts (a chat
        that missed the start gets it now, with the final caption). Returns rows added."""
        event_id, camera_id = str(event.get("id") or ""), str(event.get("camera_id") or "")
        if not _SAFE_ID.match(event_id) or not camera_id:
            return 0
        added = 0
        for chat in self.recipients(camera_id):
            added += self.outbox.add(event_id, chat, "started")  # ignored when it is there: keeps seq order
            added += self.outbox.add(event_id, chat, "clip")
            added += self.outbox.add(event_id, chat, "caption")
        for chat in self.outbox.chats_of(event_id, "started"):  # muted since: the photo's caption still ends
            added += self.outbox.add(event_id, chat, "caption")
        if added:
            self._wake.set()
        return added

    def _photo_path(self, event_id: str) -> Path:
        return self._cache_dir / f"{event_id}.jpg"

    async def _take_photo(self, event_id: str, camera_id: str) -> bytes | None:
        try:
            jpeg = await self._control.snapshot(camera_id)
        except Exception as exc:  # noqa: BLE001 - no picture is no reason to lose the alert
            log.warning("no snapshot for the Telegram alert", extra={"event_id": event_id, "error": str(exc)})
            return None
        if jpeg:
            try:  # kept until every chat has it, so the photo survives a restart or a day offline
                self._cache_dir.mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(self._photo_path(event_id).write_bytes, jpeg)
            except OSError as exc:
                log.warning("could not keep the alert's snapshot", extra={"event_id": event_id, "error": str(exc)})
        return jpeg

    async def _photo(self, event_id: str, event: dict[str, Any]) -> bytes | None:
        task = self._photos.get(event_id)
        if task is not None:
            try:
                return await within(asyncio.shield(task), SNAPSHOT_WAIT_S)
            except TimeoutError:
                return None
        path = self._photo_path(event_id)
        if path.is_file():
            return await asyncio.to_thread(path.read_bytes)
        snap = contained_file(self._clips_dir, event.get("snapshot_path"))  # the event's own, once it ended
        return await asyncio.to_thread(snap.read_bytes) if snap is not None else None

    def _photo_done(self, event_id: str) -> None:
        if self.outbox.open_stage_count(event_id, "started") == 0:
            self._photos.pop(event_id, None)
            self._photo_path(event_id).unlink(missing_ok=True)

    # -- the outbox worker ---------------------------------------------------------------------------------

    async def _deliver_loop(self) -> None:
        while True:
            now, mono = time.time(), time.monotonic()
            best: tuple[float, int, AlertRow] | None = None
            for row in self.outbox.heads():
                at = max(row.next_at, now + self.pacer.free_at(row.chat_id) - mono)
                if best is None or (at, row.seq) < best[:2]:
                    best = (at, row.seq, row)
            if best is None:
                await self._sleep(None)
                continue
            at, _, row = best
            if at > now:
                await self._sleep(at - now)
                continue
            try:
                await self.deliver(row)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug in one row must not stop every alert
                log.exception("Telegram alert failed unexpectedly; retrying later",
                              extra={"event_id": row.event_id, "chat_id": row.chat_id, "stage": row.stage})
                self.outbox.retry(row, time.time() + self._backoff(row), f"{type(exc).__name__}: {exc}")

    async def _sleep(self, seconds: float | None) -> None:
        """Until something is queued (the bus or the poller wakes us) or the next row is due."""
        await self._wake.wait(seconds)

    def _backoff(self, row: AlertRow) -> float:
        return backoff_s(row.attempts, self.config.retry_base_s, self.config.retry_max_s)

    async def deliver(self, row: AlertRow) -> None:
        """Send one outbox row once, or schedule its next try."""
        event = self._store.get_event(row.event_id)
        if event is None:
            self._close(row, "skipped", "the event was deleted")
            return
        now = time.time()
        if now - row.created_at > self.config.give_up_after_s:
            self._close(row, "failed", "too old: Telegram could not be reached in time")
            self.stats.failed += 1
            log.warning("Telegram alert dropped: too old", extra={"event_id": row.event_id, "chat_id": row.chat_id})
            return
        late = row.late or now - row.created_at > self.config.late_after_s
        wait = self.pacer.reserve(row.chat_id)
        if wait > 0:
            self.stats.paced += 1
            await asyncio.sleep(wait)  # rate pacing: the chat's next slot
        try:
            if row.stage == "started":
                await self._send_started(row, event, late)
            elif row.stage == "clip":
                await self._send_clip(row, event, late)
            else:
                await self._edit_caption(row, event)
        except RetryAfter as exc:
            seconds = retry_after_s(exc)
            self.stats.retry_after_s.append(seconds)
            self.outbox.retry(row, time.time() + seconds, f"Telegram asked to wait {seconds:g} s", count=False)
            log.info("Telegram flood control: waiting", extra={"chat_id": row.chat_id, "retry_in_s": seconds})
        except NetworkError as exc:  # 5xx, timeouts, no connection (TimedOut is one too)
            self.stats.network_retries += 1
            after = self._backoff(row)
            self.outbox.retry(row, time.time() + after, str(exc), late=True)
            log.info("Telegram not reachable; the alert waits", extra={"event_id": row.event_id, "error": str(exc),
                                                                       "retry_in_s": round(after, 1)})
        except (Forbidden, BadRequest, EntityTooLarge, InvalidToken) as exc:
            # InvalidToken included: a revoked token is fixed by a person, and the row says why it failed.
            self._close(row, "failed", str(exc))
            self.stats.failed += 1
            log.warning("Telegram refused an alert", extra={"event_id": row.event_id, "chat_id": row.chat_id,
                                                            "stage": row.stage, "error": str(exc)})
            if row.stage == "started":
                self._photo_done(row.event_id)

    async def _send_started(self, row: AlertRow, event: dict[str, Any], late: bool) -> None:
        camera = self._camera_name(event["camera_id"])
        note = m.late_note(row.created_at) if late else None
        if event.get("status") in _OPEN_EVENT:
            caption = m.started_caption(camera, float(event["start"]), event.get("triggers"), note)
        else:  # it ended while the alert waited: one message with the final words, nothing to edit later
            caption = m.ended_caption(camera, event, note)
        markup = _markup(m.alert_buttons(event["camera_id"], camera))
        photo = await self._photo(row.event_id, event)
        msg: Message | None = None
        kind = "photo"
        if photo:
            key = (row.event_id, "photo")
            try:
                msg = await self.bot.send_photo(row.chat_id, photo=self._file_ids.get(key) or photo, caption=caption,
                                                reply_markup=markup)
                if msg.photo:
                    self._file_ids[key] = msg.photo[-1].file_id  # the next chat gets it without a new upload
            except (EntityTooLarge, BadRequest) as exc:
                log.warning("Telegram refused the alert's photo; sending text", extra={"error": str(exc)})
                self.stats.fallbacks += 1
        if msg is None:
            kind = "text"
            caption = m.no_photo(caption) if not photo else caption
            msg = await self.bot.send_message(row.chat_id, caption, reply_markup=markup)
        self._sent(row, "sendPhoto" if kind == "photo" else "sendMessage", msg, kind, caption, late)
        self._photo_done(row.event_id)

    async def _send_clip(self, row: AlertRow, event: dict[str, Any], late: bool) -> None:
        camera = self._camera_name(event["camera_id"])
        first = self.outbox.get(row.event_id, row.chat_id, "started")
        reply = (ReplyParameters(first.message_id, allow_sending_without_reply=True)
                 if first is not None and first.state == "sent" and first.message_id else None)
        clip = contained_file(self._clips_dir, event.get("clip_path"))
        why: str | None = None
        if clip is None:
            why = "no clip was recorded" if not event.get("clip_path") else "the clip is no longer on the hub"
        elif clip.stat().st_size > self.config.max_video_mb * 1024 * 1024:
            why = f"the clip ({clip.stat().st_size / 1048576:.0f} MB) is too large for Telegram"
        if clip is not None and why is None:
            key = (row.event_id, "video")
            try:
                video: str | bytes | None = self._file_ids.get(key)
                if not video:
                    video = await asyncio.to_thread(clip.read_bytes)
                msg = await self.bot.send_video(
                    row.chat_id, video=video, caption=m.clip_caption(camera, event), reply_parameters=reply,
                    supports_streaming=True, filename=clip.name,
                    duration=int(event["clip_duration_s"]) if event.get("clip_duration_s") else None)
                if msg.video:
                    self._file_ids[key] = msg.video.file_id
                self._sent(row, "sendVideo", msg, "video", msg.caption, late)
                return
            except (EntityTooLarge, BadRequest) as exc:
                log.warning("Telegram refused the clip; sending where to find it", extra={"error": str(exc)})
                self.stats.fallbacks += 1
                why = ("the clip is too large for Telegram" if isinstance(exc, EntityTooLarge)
                       else "Telegram did not take the clip")
        text = m.clip_elsewhere(camera, event, why or "the clip could not be sent", self._hub_url())
        msg = await self.bot.send_message(row.chat_id, text, reply_parameters=reply)
        self._sent(row, "sendMessage", msg, "text", text, late)

    async def _edit_caption(self, row: AlertRow, event: dict[str, Any]) -> None:
        first = self.outbox.get(row.event_id, row.chat_id, "started")
        if first is None or first.state != "sent" or not first.message_id:
            self._close(row, "skipped", "no alert message to edit")
            return
        camera = self._camera_name(event["camera_id"])
        note = m.late_note(first.created_at, first.sent_at) if first.late else None
        caption = m.ended_caption(camera, event, note)
        if first.kind == "text" and first.text and "(no picture" in first.text:
            caption = m.no_photo(caption)
        if caption == first.text:
            self._close(row, "skipped", "the alert says it already")
            return
        markup = _markup(m.alert_buttons(event["camera_id"], camera))
        try:
            if first.kind == "photo":
                await self.bot.edit_message_caption(row.chat_id, first.message_id, caption=caption,
                                                    reply_markup=markup)
                method = "editMessageCaption"
            else:
                await self.bot.edit_message_text(caption, row.chat_id, first.message_id, reply_markup=markup)
                method = "editMessageText"
        except BadRequest as exc:
            if "not modified" not in str(exc).lower():
                raise
            method = "none"
        self.stats.sent[method] += 1
        self.outbox.sent(row, first.message_id, first.kind, caption, False)
        self._announce(row, "sent", kind=first.kind, late=False)

    def _sent(self, row: AlertRow, method: str, msg: Message, kind: str, text: str | None, late: bool) -> None:
        self.outbox.sent(row, msg.message_id, kind, text, late)
        self._announce(row, "sent", kind=kind, late=late)
        self.stats.sent[method] += 1
        if late:
            self.stats.late += 1
        log.info("Telegram alert sent", extra={"event_id": row.event_id, "chat_id": row.chat_id, "stage": row.stage,
                                               "kind": kind, "late": late,
                                               "after_s": round(time.time() - row.created_at, 2)})

    def _close(self, row: AlertRow, state: str, reason: str) -> None:
        self.outbox.close(row, state, reason)
        self._announce(row, state, reason=reason)

    def _announce(self, row: AlertRow, state: str, **extra: Any) -> None:
        """Each alert row's outcome on the bus (``telegram.alert``), for whoever shows delivery (and tests)."""
        self._bus.publish("telegram.alert", event_id=row.event_id, chat_id=row.chat_id, stage=row.stage,
                          state=state, **extra)

    def _camera_name(self, camera_id: str) -> str:
        for cam in self._control.cameras():
            if cam.get("id") == camera_id:
                return str(cam.get("name") or camera_id)
        row = self._store.get_camera(camera_id)
        return str(row["name"]) if row and row.get("name") else camera_id

    # -- updates: long polling -----------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        backoff = self.config.retry_base_s
        commands_set = False
        conflict_logged = False
        while True:
            try:
                if self.username is None:
                    self.username = (await self.bot.get_me()).username
                if not commands_set:
                    await self.bot.set_my_commands([BotCommand(c, d) for c, d in m.COMMANDS])
                    commands_set = True
                updates = await self.bot.get_updates(offset=self._offset, timeout=self.config.poll_timeout_s,
                                                     allowed_updates=["message", "callback_query"])
            except asyncio.CancelledError:
                raise
            except Conflict as exc:
                # A webhook is set (or another program polls this bot). Deleting it would silently break whoever
                # set it: alerts still go out; commands wait until a person sorts it out.
                self.stats.conflicts += 1
                if not conflict_logged:
                    log.error("Telegram refuses long polling: a webhook is set for this bot, or another program "
                              "reads its updates; alerts are still sent, commands and buttons are not read",
                              extra={"error": str(exc), "hint": "give the hub a bot of its own (@BotFather)"})
                    conflict_logged = True
                await asyncio.sleep(self.config.retry_max_s)  # retry pacing, not synchronisation
                continue
            except RetryAfter as exc:
                await asyncio.sleep(retry_after_s(exc))  # Telegram asked for this pause
                continue
            except InvalidToken as exc:
                log.error("Telegram rejected the bot token", extra={"error": str(exc),
                                                                     "hint": "check telegram.bot_token"})
                await asyncio.sleep(self.config.retry_max_s)  # retry pacing: a person has to fix the token
                continue
            except TelegramError as exc:  # NetworkError, TimedOut, a 5xx
                self.stats.polls_failed += 1
                self._online = False
                await asyncio.sleep(random.uniform(backoff / 2, backoff))  # retry pacing with jitter
                backoff = min(self.config.retry_max_s, backoff * 2)
                log.debug("Telegram poll failed", extra={"error": str(exc)})
                continue
            backoff = self.config.retry_base_s
            conflict_logged = False
            if not self._online:
                self._online = True
                if self.outbox.retry_now():  # the network is back: what waited for it goes now
                    self._wake.set()
            for update in updates:
                self._offset = max(self._offset, update.update_id + 1)
                await self.process(update)

    async def process(self, update: Update) -> None:
        """Act on one update, once per update id, whatever it holds; never raises."""
        if not self.chats.claim_update(update.update_id):
            self.stats.duplicate_updates += 1
            return
        try:
            if update.callback_query is not None:
                await self._on_button(update.callback_query)
            elif update.message is not None and update.message.text:
                await self._on_message(update.message)
        except asyncio.CancelledError:
            raise
        except Exception:  # one bad update must not stop the bot
            log.exception("could not handle a Telegram update", extra={"update_id": update.update_id})

    async def _on_message(self, msg: Message) -> None:
        text = (msg.text or "").strip()
        if not text.startswith("/"):
            return
        word, *args = text.split()
        command, _, addressed = word[1:].partition("@")
        if addressed and self.username and addressed.lower() != self.username.lower():
            return  # meant for another bot in a group
        command = command.lower()
        chat_id = msg.chat.id
        if command == "start":
            await self._cmd_start(msg, args)
            return
        if not self.chats.is_linked(chat_id):
            await self.reply(chat_id, m.NOT_LINKED, msg.message_id)
            return
        handler = {"status": self._cmd_status, "arm": self._cmd_arm, "disarm": self._cmd_disarm,
                   "snapshot": self._cmd_snapshot, "events": self._cmd_events, "mute": self._cmd_mute,
                   "unmute": self._cmd_unmute, "help": self._cmd_help}.get(command)
        if handler is None:
            await self.reply(chat_id, f"I do not know /{command}.\n\n{m.HELP}", msg.message_id)
            return
        try:
            answer = await handler(chat_id, args)
        except HubError as exc:
            answer = exc.message + (f" ({exc.hint})" if exc.hint else "")
        if answer:
            await self.reply(chat_id, answer, msg.message_id)

    async def _cmd_start(self, msg: Message, args: list[str]) -> None:
        chat_id = msg.chat.id
        if not args:
            await self.reply(chat_id, m.HELP if self.chats.is_linked(chat_id) else m.NOT_LINKED, msg.message_id)
            return
        title = msg.chat.title or msg.chat.username or msg.chat.first_name or str(chat_id)
        outcome = self.chats.redeem(args[0], chat_id, title, msg.date.timestamp())
        if outcome is LinkOutcome.LINKED:
            log.info("Telegram chat linked", extra={"chat_id": chat_id})
        text = {LinkOutcome.LINKED: m.LINKED, LinkOutcome.ALREADY: m.ALREADY_LINKED,
                LinkOutcome.INVALID: m.LINK_INVALID}[outcome]
        await self.reply(chat_id, text, msg.message_id)

    async def _cmd_help(self, chat_id: int, args: list[str]) -> str:
        return m.HELP

    async def _cmd_status(self, chat_id: int, args: list[str]) -> str:
        waiting = self.outbox.counts().get("pending", 0)
        return m.status_text(self._control.is_armed(), self._control.cameras(), self.chats.mutes(chat_id), waiting)

    def _camera_arg(self, args: list[str]) -> tuple[dict[str, Any] | None, list[str]]:
        """A leading camera id or name (case-insensitive) among ``args``; the rest of the args."""
        if not args:
            return None, args
        wanted = args[0].lower()
        for cam in self._control.cameras():
            if wanted in (str(cam.get("id", "")).lower(), str(cam.get("name") or "").lower()):
                return cam, args[1:]
        return None, args

    async def _cmd_arm(self, chat_id: int, args: list[str]) -> str:
        cam, rest = self._camera_arg(args)
        if rest:
            return f"I do not know the camera '{rest[0]}'. /status lists them."
        self._control.set_armed(True, cam["id"] if cam else None)
        return f"🛡 Armed: {cam['name'] if cam else 'the hub'}."

    async def _cmd_disarm(self, chat_id: int, args: list[str]) -> str:
        cam, rest = self._camera_arg(args)
        for_s = None
        if rest:
            for_s = m.parse_duration(rest[0])
            if for_s is None or len(rest) > 1:
                return f"Use /disarm [camera] [time], e.g. /disarm 1h ('{' '.join(rest)}' is not a camera or a time)."
        until = self._control.set_armed(False, cam["id"] if cam else None, for_s)
        return f"💤 Disarmed: {cam['name'] if cam else 'the hub'}, {m.until_text(until)}."

    async def _cmd_snapshot(self, chat_id: int, args: list[str]) -> str | None:
        cam, rest = self._camera_arg(args)
        if rest:
            return f"I do not know the camera '{rest[0]}'. /status lists them."
        cameras = [cam] if cam else [c for c in self._control.cameras() if c.get("online")]
        if not cameras:
            return "No camera is online."
        missing = []
        for c in cameras:
            jpeg = await self._control.snapshot(str(c["id"]))
            if not jpeg:
                missing.append(str(c.get("name") or c["id"]))
                continue
            await self._paced(chat_id)

            def send(c: dict[str, Any] = c, jpeg: bytes = jpeg) -> Awaitable[Message]:
                return self.bot.send_photo(
                    chat_id, photo=jpeg, caption=f"📷 {c.get('name') or c['id']} · {m.clock(time.time())}")

            await self._call(send, "sendPhoto")
        return f"No picture from {', '.join(missing)} yet (offline, or nothing buffered)." if missing else None

    async def _cmd_events(self, chat_id: int, args: list[str]) -> str:
        names = {str(c["id"]): str(c.get("name") or c["id"]) for c in self._control.cameras()}
        return m.events_text(self._store.list_events(limit=8), names)

    async def _cmd_mute(self, chat_id: int, args: list[str]) -> str:
        cam, rest = self._camera_arg(args)
        cameras = self._control.cameras()
        if cam is None and len(cameras) == 1 and (not rest or m.parse_duration(rest[0]) is not None):
            cam = cameras[0]
        if cam is None:
            names = ", ".join(str(c["id"]) for c in cameras) or "none yet"
            return f"Use /mute <camera> [time], e.g. /mute {cameras[0]['id'] if cameras else 'porch'} 1h. " \
                   f"Cameras: {names}."
        for_s = m.parse_duration(rest[0]) if rest else m.ONE_HOUR_S
        if for_s is None:
            return f"'{rest[0]}' is not a time: use e.g. 30m, 2h, 1d."
        until = time.time() + for_s
        self.chats.mute(chat_id, str(cam["id"]), until)
        return f"🔕 {cam['name']}: no alerts in this chat {m.until_text(until)}. /unmute {cam['id']} ends it."

    async def _cmd_unmute(self, chat_id: int, args: list[str]) -> str:
        cam, _ = self._camera_arg(args)
        mutes = self.chats.mutes(chat_id)
        if cam is None and len(mutes) == 1:
            cam = {"id": next(iter(mutes)), "name": self._camera_name(next(iter(mutes)))}
        if cam is None:
            return "Use /unmute <camera>." + (f" Muted here: {', '.join(mutes)}." if mutes else " Nothing is muted.")
        self.chats.unmute(chat_id, str(cam["id"]))
        return f"🔔 {cam['name']}: alerts again in this chat."

    async def _on_button(self, query: CallbackQuery) -> None:
        """Every press is answered (Telegram shows a spinner until it is), whatever it asked."""
        chat = query.message.chat.id if query.message is not None else None
        action = m.parse_button(query.data)
        text, alert = "This button is no longer valid.", False
        try:
            if chat is None or not self.chats.is_linked(chat):
                text, alert = m.NOT_LINKED, True
            elif action is not None and action[0] == "disarm":
                until = self._control.set_armed(False, None, action[2])
                text = f"💤 Disarmed {m.until_text(until)}."
            elif action is not None and action[0] == "mute" and action[1] is not None:
                until = time.time() + action[2]
                self.chats.mute(chat, action[1], until)
                text = f"🔕 {self._camera_name(action[1])}: no alerts in this chat {m.until_text(until)}."
        except HubError as exc:
            text, alert = exc.message, True
        finally:
            await self._call(lambda: self.bot.answer_callback_query(query.id, text=text[:200], show_alert=alert),
                             "answerCallbackQuery")

    # -- interactive sends -------------------------------------------------------------------------------

    async def reply(self, chat_id: int, text: str, reply_to: int | None = None) -> None:
        await self._paced(chat_id)
        params = ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None
        await self._call(lambda: self.bot.send_message(chat_id, text, reply_parameters=params), "sendMessage")

    async def _paced(self, chat_id: int) -> None:
        wait = self.pacer.reserve(chat_id)
        if wait > 0:
            self.stats.paced += 1
            await asyncio.sleep(wait)  # rate pacing: the chat's next slot

    async def _call(self, send: Callable[[], Any], method: str) -> None:
        await answer(send, method, self.stats, self.config.retry_base_s)


def _markup(rows: list[list[tuple[str, str]]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(t, callback_data=d) for t, d in row] for row in rows])
