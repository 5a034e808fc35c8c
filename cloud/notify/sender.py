"""Sends the delivery rows: each chat's rows in order, chats in parallel, paced, retried, never twice.

A row is due when `next_at` has come. A stage that needs an earlier one waits for it without depending on the
order changes arrived in: the clip goes as a reply to the start's photo once that is sent (alone, with the full
caption, when there is no start photo: an old hub that reports no start, or a start that failed); the summary
edits whichever message is the alert, and waits while it is still pending.

Failures: RetryAfter (429) → the row (and the chat) waits exactly what Telegram asked, not counted as a try;
5xx, timeouts, no connection → backoff with jitter, failed after `max_tries`; a file Telegram refuses (413, bad
file) → the same stage as text; 403 (the chat blocked the bot) → failed for good and the chat unlinked; any
other 400 → failed. A send whose answer was lost is the one case that can repeat (at-least-once beats losing
an alert); everything else is keyed by the row's UNIQUE key and its conditional state change.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError

from cloud.api.context import Context
from cloud.api.db.engine import DatabaseClosed
from cloud.api.db.schema import cameras, event_labels, event_starts, events
from cloud.api.services.telegram import unlink_chat
from cloud.notify import store, texts
from cloud.notify.bot import EntityTooLarge, retry_after_s
from cloud.notify.store import FAILED, PENDING, SENT, SKIPPED, Delivery
from cloud.storage.blob import BlobNotFound, StorageError
from pingwatch_common.aio import wait_event

log = logging.getLogger(__name__)

FINAL = ("done", "failed", "rejected")
TEXT_AFTER_TRIES = 3  # a picture storage cannot give after this many tries: the alert goes out as text


@dataclass
class NotifierStats:
    """What delivery did, for tests and benchmarks: asserted on instead of wall time."""

    sent: Counter[str] = field(default_factory=Counter)  # Bot API method -> successful calls
    retry_after_s: list[float] = field(default_factory=list)  # each RetryAfter honoured: the seconds asked
    network_retries: int = 0
    fallbacks: int = 0  # media stages sent as text
    failed: int = 0
    skipped: int = 0
    unlinked: int = 0  # chats that blocked the bot
    duplicate_updates: int = 0
    conflicts: int = 0  # getUpdates refused (409: a webhook is set)
    paced: int = 0


class Pacer:
    """At most one message per `min_interval_s` per chat and `global_per_s` overall (Telegram's limits)."""

    def __init__(self, min_interval_s: float, global_per_s: float) -> None:
        self.min_interval_s = min_interval_s
        self.global_gap_s = 1.0 / global_per_s
        self._chat_next: dict[int, float] = {}
        self._global_next = 0.0

    def reserve(self, chat_id: int) -> float:
        """Book the next slot for this chat; how long to wait for it."""
        now = time.monotonic()
        slot = max(now, self._chat_next.get(chat_id, 0.0), self._global_next)
        self._chat_next[chat_id] = slot + self.min_interval_s
        self._global_next = slot + self.global_gap_s
        return slot - now

    def hold(self, chat_id: int, seconds: float) -> None:
        """Telegram said wait: nothing more to this chat before then."""
        self._chat_next[chat_id] = max(self._chat_next.get(chat_id, 0.0), time.monotonic() + seconds)


def markup(rows: list[list[dict[str, str]]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(b["text"], callback_data=b.get("callback_data"),
                                                       url=b.get("url")) for b in row] for row in rows])


@dataclass(frozen=True)
class EventInfo:
    """What the messages of one event say, read when a stage is sent."""

    hub_id: str
    hub_event_id: str
    camera_id: str
    camera_name: str
    started_at: datetime
    trigger: str | None
    late: str | None
    start_snapshot: str | None
    event_id: str | None
    start_id: str | None
    state: str | None
    summary: dict[str, Any] | None
    labels: list[str]
    reason: str | None
    blob_name: str | None
    mime: str | None
    size_bytes: int | None
    worker_snapshot: str | None


def load_event(conn: Connection, hub_id: str, hub_event_id: str) -> EventInfo | None:
    start = conn.execute(sa.select(event_starts).where(event_starts.c.hub_id == hub_id,
                                                       event_starts.c.hub_event_id == hub_event_id)).first()
    ev = conn.execute(sa.select(events).where(events.c.hub_id == hub_id,
                                              events.c.hub_event_id == hub_event_id)).first()
    if start is None and ev is None:
        return None
    camera_id = (start or ev).camera_id  # type: ignore[union-attr]
    name = conn.execute(sa.select(cameras.c.name).where(cameras.c.id == camera_id)).scalar() or "camera"
    labels = [] if ev is None else [r.label for r in conn.execute(
        sa.select(event_labels.c.label).where(event_labels.c.event_id == ev.id)
        .order_by(event_labels.c.confidence.desc(), event_labels.c.label))]
    late = texts.late_note(start.started_at, start.reported_at) if start is not None and start.late else None
    return EventInfo(
        hub_id=hub_id, hub_event_id=hub_event_id, camera_id=camera_id, camera_name=name,
        started_at=(start or ev).started_at, trigger=(start or ev).trigger, late=late,  # type: ignore[union-attr]
        start_snapshot=start.snapshot_blob if start is not None else None,
        event_id=ev.id if ev is not None else None, start_id=start.id if start is not None else None,
        state=ev.state if ev is not None else None, summary=ev.summary if ev is not None else None,
        labels=labels, reason=ev.reason if ev is not None else None,
        blob_name=ev.blob_name if ev is not None else None, mime=ev.mime if ev is not None else None,
        size_bytes=int(ev.size_bytes) if ev is not None else None,
        worker_snapshot=ev.snapshot_blob if ev is not None and ev.state == "done" else None)


class Blocked(Exception):
    """This stage waits for an earlier one of the same chat and event (still pending until `until`)."""

    def __init__(self, until: datetime) -> None:
        super().__init__("waiting for an earlier stage")
        self.until = until


class Sender:
    def __init__(self, ctx: Context, bot: Bot, stats: NotifierStats, *, retry_base_s: float = 1.0,
                 retry_max_s: float = 300.0, max_tries: int = 8) -> None:
        self.ctx = ctx
        self.bot = bot
        self.stats = stats
        cfg = ctx.config.telegram
        self.pacer = Pacer(cfg.min_interval_s, cfg.global_per_s)
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.max_tries = max_tries
        self.wake = asyncio.Event()
        self._busy: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def _tz(self) -> str:
        return self.ctx.config.worker.timezone

    # -- the loop ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            self.wake.clear()
            try:
                started = await self._pass()
                nxt = await self.ctx.db.read(store.next_due_at)
            except (asyncio.CancelledError, DatabaseClosed):  # stopping: no retry can succeed
                raise
            except Exception:
                log.warning("reading the Telegram outbox failed; retrying", exc_info=True)
                started, nxt = 0, None
            timeout = 1.0 if nxt is None else min(5.0, max(0.0, (nxt - self.ctx.clock()).total_seconds()))
            if timeout == 0.0 and not started:
                timeout = 0.2  # due rows whose chats are busy: their task wakes us when it is done
            await wait_event(self.wake, timeout)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _pass(self) -> int:
        now = self.ctx.clock()
        rows = await self.ctx.db.read(lambda conn: store.due(conn, now))
        by_chat: dict[int, list[Delivery]] = {}
        for row in rows:
            if row.chat_id not in self._busy:
                by_chat.setdefault(row.chat_id, []).append(row)
        for chat_id, chat_rows in by_chat.items():
            self._busy.add(chat_id)
            task = asyncio.create_task(self._chat_run(chat_id, chat_rows), name=f"telegram-chat-{chat_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(by_chat)

    async def _chat_run(self, chat_id: int, rows: list[Delivery]) -> None:
        try:
            for row in rows:
                await self.deliver(row.id)
        finally:
            self._busy.discard(chat_id)
            self.wake.set()

    # -- one row -------------------------------------------------------------------------------------------

    def _backoff(self, tries: int) -> float:
        base = min(self.retry_max_s, self.retry_base_s * (2 ** tries))
        return random.uniform(base / 2, base)  # jitter: chats that failed together do not retry together

    async def deliver(self, row_id: int) -> None:
        """Send one row once, or schedule its next try."""
        row = await self.ctx.db.read(lambda conn: store.by_id(conn, row_id))
        if row is None or row.state != PENDING:
            return
        now = self.ctx.clock()
        try:
            await self._send(row)
        except Blocked as exc:
            until = max(exc.until, now) + timedelta(seconds=0.05)
            await self.ctx.db.tx(lambda conn: store.retry(conn, row.id, until, row.last_error, count=False))
        except RetryAfter as exc:
            seconds = retry_after_s(exc)
            self.stats.retry_after_s.append(seconds)
            self.pacer.hold(row.chat_id, seconds)
            at = self.ctx.clock() + timedelta(seconds=seconds)
            await self.ctx.db.tx(lambda conn: store.retry(conn, row.id, at, f"Telegram asked to wait {seconds:g} s",
                                                          count=False))
            log.info("Telegram flood control: waiting", extra={"chat_id": row.chat_id, "retry_in_s": seconds})
        except Forbidden as exc:
            # The chat blocked the bot (or the bot left the group): nothing will ever reach it.
            self.stats.failed += 1
            self.stats.unlinked += 1
            why = str(exc)

            def blocked(conn: Connection) -> None:
                store.close(conn, row.id, FAILED, why, now)
                store.fail_chat(conn, row.chat_id, f"the chat blocked the bot: {why}", now)
                unlink_chat(conn, row.chat_id)

            await self.ctx.db.tx(blocked)
            log.warning("Telegram chat blocked the bot; unlinked", extra={"chat_id": row.chat_id})
        except (BadRequest, EntityTooLarge, InvalidToken) as exc:
            self.stats.failed += 1
            refusal = str(exc)
            await self.ctx.db.tx(lambda conn: store.close(conn, row.id, FAILED, refusal, now))
            log.warning("Telegram refused an alert", extra={"chat_id": row.chat_id, "stage": row.stage,
                                                            "error": refusal})
        except (NetworkError, StorageError) as exc:  # 5xx, timeouts, no connection; a blob not readable now
            await self._retry_later(row, f"{type(exc).__name__}: {exc}")
        except TelegramError as exc:
            await self._retry_later(row, f"{type(exc).__name__}: {exc}")
        except (asyncio.CancelledError, DatabaseClosed):  # stopping: no retry can succeed
            raise
        except Exception as exc:  # a bug in one row must not stop every alert
            log.exception("Telegram alert failed unexpectedly", extra={"row": row.id})
            await self._retry_later(row, f"{type(exc).__name__}: {exc}")

    async def _retry_later(self, row: Delivery, error: str) -> None:
        self.stats.network_retries += 1
        now = self.ctx.clock()
        if row.tries + 1 >= self.max_tries:
            self.stats.failed += 1
            await self.ctx.db.tx(lambda conn: store.close(conn, row.id, FAILED, f"gave up: {error}", now))
            return
        at = now + timedelta(seconds=self._backoff(row.tries))
        await self.ctx.db.tx(lambda conn: store.retry(conn, row.id, at, error))

    async def _pace(self, chat_id: int) -> None:
        wait = self.pacer.reserve(chat_id)
        if wait > 0:
            self.stats.paced += 1
            await asyncio.sleep(wait)  # rate pacing: the chat's (or the bot's) next slot

    async def _close(self, row: Delivery, state: str, why: str) -> None:
        if state == SKIPPED:
            self.stats.skipped += 1
        now = self.ctx.clock()
        await self.ctx.db.tx(lambda conn: store.close(conn, row.id, state, why, now))

    async def _done(self, row: Delivery, method: str, msg_id: int | None, kind: str, text: str | None,
                    payload: dict[str, Any] | None = None) -> None:
        self.stats.sent[method] += 1
        now = self.ctx.clock()
        await self.ctx.db.tx(lambda conn: store.mark_sent(conn, row.id, message_id=msg_id, kind=kind, text=text,
                                                          now=now, payload=payload))
        log.info("Telegram alert sent", extra={"chat_id": row.chat_id, "stage": row.stage, "kind": kind})

    # -- stages --------------------------------------------------------------------------------------------

    async def _send(self, row: Delivery) -> None:
        linked = await self.ctx.db.read(lambda conn: store.chat_account(conn, row.chat_id))
        if linked is None or linked[0] != row.account_id:
            # Unlinked after the row was planned, or re-linked to another account since: never send it there.
            await self._close(row, SKIPPED, "the chat is no longer linked to this account")
            return
        if row.stage == "outcome":
            await self._send_outcome(row)
            return
        info = await self.ctx.db.read(lambda conn: load_event(conn, row.hub_id, row.event_key))
        if info is None:
            await self._close(row, SKIPPED, "the event is gone")
            return
        stage = {"started": self._send_started, "clip": self._send_clip, "summary": self._send_summary,
                 "match": self._send_match}.get(row.stage)
        if stage is None:
            await self._close(row, FAILED, f"unknown stage {row.stage}")
            return
        await stage(row, info)

    def _buttons(self, info: EventInfo) -> InlineKeyboardMarkup:
        anchor = f"{info.event_id}" if info.event_id else None
        url = texts.timeline_url(self.ctx.config.server.public_url, anchor) if anchor else None
        return markup(texts.alert_buttons(info.hub_id, info.camera_id, url))

    def _caption(self, info: EventInfo) -> str:
        if info.state in FINAL:
            return texts.final_caption(info.camera_name, info.started_at, self._tz, info.trigger, info.state or "",
                                       info.summary, info.labels, info.reason, info.late)
        return texts.started_caption(info.camera_name, info.started_at, self._tz, info.trigger, info.late)

    async def _blob(self, name: str | None, row: Delivery) -> bytes | None:
        """The picture for a message; None (send text) when it is gone. Storage that is down is a passing
        failure: the row is retried (StorageError), and only after TEXT_AFTER_TRIES goes out as text."""
        if not name:
            return None
        try:
            return await self.ctx.blobs.read(name)
        except BlobNotFound:
            log.warning("alert picture is gone; sending text", extra={"blob": name})
            return None
        except StorageError as exc:
            if row.tries + 1 < TEXT_AFTER_TRIES:
                raise
            log.warning("alert picture still not readable; sending text", extra={"blob": name, "error": str(exc)})
            return None

    async def _photo_or_text(self, row: Delivery, photo: bytes | None, caption: str,
                             reply_markup: InlineKeyboardMarkup | None,
                             reply: ReplyParameters | None = None) -> tuple[Message, str]:
        """A photo with its caption, or the caption as text when there is no photo or Telegram refuses it."""
        await self._pace(row.chat_id)
        if photo:
            try:
                msg = await self.bot.send_photo(row.chat_id, photo=photo, caption=caption, reply_markup=reply_markup,
                                                reply_parameters=reply)
                return msg, "photo"
            except (EntityTooLarge, BadRequest) as exc:
                if isinstance(exc, BadRequest) and "chat not found" in str(exc).lower():
                    raise
                log.warning("Telegram refused the photo; sending text", extra={"error": str(exc)})
                self.stats.fallbacks += 1
                await self._pace(row.chat_id)
        msg = await self.bot.send_message(row.chat_id, caption, reply_markup=reply_markup, reply_parameters=reply)
        return msg, "text"

    async def _send_started(self, row: Delivery, info: EventInfo) -> None:
        caption = self._caption(info)
        photo = await self._blob(info.start_snapshot or info.worker_snapshot, row)
        msg, kind = await self._photo_or_text(row, photo, caption, self._buttons(info))
        await self._done(row, "sendPhoto" if kind == "photo" else "sendMessage", msg.message_id, kind, caption)

    async def _stages(self, row: Delivery) -> dict[str, Delivery]:
        return await self.ctx.db.read(
            lambda conn: store.rows_of_chat_event(conn, row.hub_id, row.event_key, row.chat_id))

    async def _send_clip(self, row: Delivery, info: EventInfo) -> None:
        start = (await self._stages(row)).get("started")
        if start is not None and start.state == PENDING:
            raise Blocked(start.next_at)
        if start is not None and start.state == SKIPPED:
            await self._close(row, SKIPPED, "the alert was not sent to this chat")
            return
        if not info.blob_name:
            await self._close(row, SKIPPED, "no clip")
            return
        reply_to = start.message_id if start is not None and start.state == SENT else None
        alone = reply_to is None  # no start photo: this message is the alert itself
        caption = self._caption(info) if alone else texts.clip_caption(info.camera_name, info.started_at, self._tz)
        buttons = self._buttons(info) if alone else None
        reply = ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None
        limit = self.ctx.config.telegram.max_video_mb * 1024 * 1024
        link = texts.timeline_url(self.ctx.config.server.public_url, info.event_id)
        why = None
        if info.mime != "video/mp4":
            why = "this clip's format does not play in Telegram"
        elif (info.size_bytes or 0) > limit:
            why = f"the clip ({(info.size_bytes or 0) / 1048576:.0f} MB) is too large for Telegram"
        if why is None:
            data = await self.ctx.blobs.read(info.blob_name)  # StorageError: retried later
            await self._pace(row.chat_id)
            try:
                msg = await self.bot.send_video(row.chat_id, video=data, caption=caption, reply_markup=buttons,
                                                reply_parameters=reply, supports_streaming=True,
                                                filename=f"{info.hub_event_id}.mp4")
                await self._done(row, "sendVideo", msg.message_id, "video", caption, {"anchor": alone})
                return
            except (EntityTooLarge, BadRequest) as exc:
                if isinstance(exc, BadRequest) and "chat not found" in str(exc).lower():
                    raise
                log.warning("Telegram refused the clip; sending a link", extra={"error": str(exc)})
                self.stats.fallbacks += 1
                why = ("the clip is too large for Telegram" if isinstance(exc, EntityTooLarge)
                       else "Telegram did not take the clip")
        text = texts.clip_elsewhere(info.camera_name, why, link)
        if alone:
            text = f"{caption}\n{text}"
        await self._pace(row.chat_id)
        msg = await self.bot.send_message(row.chat_id, text, reply_markup=buttons, reply_parameters=reply)
        await self._done(row, "sendMessage", msg.message_id, "text", text, {"anchor": alone})

    async def _send_summary(self, row: Delivery, info: EventInfo) -> None:
        stages = await self._stages(row)
        start, clip = stages.get("started"), stages.get("clip")
        anchor: Delivery | None = None
        for dep in (start, clip):
            if dep is None:
                continue
            if dep.state == PENDING:
                raise Blocked(dep.next_at)  # the alert is not out yet: edit it once it is
            if dep.state == SKIPPED:
                await self._close(row, SKIPPED, "the alert was not sent to this chat")
                return
            if dep.state == SENT and (dep is start or dep.payload.get("anchor")):
                anchor = dep
            break  # the start decides when there is one; else the clip
        caption = self._caption(info)
        if anchor is not None and anchor.message_id is not None:
            if anchor.text == caption:
                await self._close(row, SKIPPED, "the alert says it already")
                return
            await self._pace(row.chat_id)
            try:
                if anchor.kind in ("photo", "video"):
                    await self.bot.edit_message_caption(row.chat_id, anchor.message_id, caption=caption,
                                                        reply_markup=self._buttons(info))
                    method = "editMessageCaption"
                else:
                    await self.bot.edit_message_text(caption, row.chat_id, anchor.message_id,
                                                     reply_markup=self._buttons(info))
                    method = "editMessageText"
                await self._done(row, method, anchor.message_id, "edit", caption)
                return
            except BadRequest as exc:
                if "not modified" in str(exc).lower():
                    await self._done(row, "none", anchor.message_id, "edit", caption)
                    return
                if "not found" not in str(exc).lower():
                    raise
                log.info("the alert to edit is gone; sending the summary on its own", extra={"error": str(exc)})
        photo = await self._blob(info.worker_snapshot or info.start_snapshot, row)
        msg, kind = await self._photo_or_text(row, photo, caption, self._buttons(info))
        await self._done(row, "sendPhoto" if kind == "photo" else "sendMessage", msg.message_id, kind, caption)

    async def _send_match(self, row: Delivery, info: EventInfo) -> None:
        caption = texts.match_caption(info.camera_name, info.started_at, self._tz, info.trigger, info.summary,
                                      info.labels, info.late)
        photo = await self._blob(info.worker_snapshot or info.start_snapshot, row)
        msg, kind = await self._photo_or_text(row, photo, caption, self._buttons(info))
        await self._done(row, "sendPhoto" if kind == "photo" else "sendMessage", msg.message_id, kind, caption)

    async def _send_outcome(self, row: Delivery) -> None:
        p = row.payload
        text = str(p.get("text") or "Done.")
        reply = ReplyParameters(int(p["reply_to"]), allow_sending_without_reply=True) if p.get("reply_to") else None
        photo = await self._blob(p.get("snapshot_blob"), row)
        msg, kind = await self._photo_or_text(row, photo, text, None, reply)
        await self._done(row, "sendPhoto" if kind == "photo" else "sendMessage", msg.message_id, kind, text)
