"""The notifier process: changes in, Telegram messages out, updates acted on.

Data flow:
- `ChangeFeed` (all accounts) → `planner.plan` adds delivery rows, in the transaction that also saves the cursor
  (table `telegram_cursor`), so a restart resumes after the last planned change and replans nothing twice
  (rows are UNIQUE per hub, event, chat and stage anyway);
- `Sender` sends the rows (sender.py), woken by the planner;
- updates: long polling (mode "polling") stores each update in `telegram_updates`; in mode "webhook" the API's
  webhook route does; either way one loop here claims each stored update once and hands it to `UpdateHandler`.
  A webhook is never deleted: a 409 from getUpdates is logged and retried later.
- housekeeping: `HubCommands.expire_due` (a command the hub never fetched is answered "hub offline"; harmless
  when the API's scheduler runs it too), and old rows are pruned.

One notifier works at a time: pacing is kept in memory, and two would each allow a message per second and race
for every row. Each holds the "telegram-notifier" lease (cloud/api/services/leases.py) while it works; a second
process stands by and takes over within LEASE_TTL once the first stops renewing (crash) or at once when it stops
cleanly (a rolling deploy).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from telegram import Bot, BotCommand, Update
from telegram.error import Conflict, InvalidToken, RetryAfter, TelegramError

from cloud.api.changes import ChangeFeed, Subscription, latest_id
from cloud.api.context import Context
from cloud.api.db.engine import DatabaseClosed
from cloud.api.db.schema import telegram_links, telegram_mutes, telegram_updates
from cloud.api.security import new_id
from cloud.api.services import leases
from cloud.api.services.commands import HubCommands
from cloud.api.services.telegram import store_update
from cloud.config import CloudConfig
from cloud.notify import planner, store
from cloud.notify.bot import make_bot, retry_after_s
from cloud.notify.sender import NotifierStats, Sender
from cloud.notify.updates import UpdateHandler
from pingwatch_common.aio import wait_event

log = logging.getLogger(__name__)

__all__ = ["Notifier", "NotifierStats"]

BOT_COMMANDS = [("status", "Hubs and cameras"), ("arm", "Arm the hub"), ("disarm", "Disarm, e.g. /disarm 1h"),
                ("snapshot", "A picture now"), ("events", "The last 5 events"), ("mute", "Mute a camera here"),
                ("unlink", "Stop alerts in this chat"), ("help", "What I can do")]
WEBHOOK_PATH = "/api/v1/telegram/webhook"
PRUNE_AFTER = timedelta(days=30)
LEASE = "telegram-notifier"
LEASE_TTL = timedelta(seconds=30)
LEASE_RENEW_S = 10.0
# A lower change id may commit this long after a higher one (a slow transaction) and still be planned.
FEED_GAP_GRACE_S = 120.0


class Notifier:
    """`Notifier(ctx, bot=None)`: `await start()`, `await stop()`. `ctx` is the API's Context (database, blob
    storage, config with its `telegram` section, clock); `bot` a python-telegram-bot Bot (default: one made
    from telegram.bot_token and api_base_url)."""

    def __init__(self, ctx: Context, *, bot: Bot | None = None, retry_base_s: float = 1.0,
                 retry_max_s: float = 300.0, max_tries: int = 8, poll_timeout_s: float = 25.0,
                 conflict_wait_s: float = 30.0, housekeeping_s: float = 5.0, feed_poll_s: float = 0.25,
                 lease_renew_s: float = LEASE_RENEW_S) -> None:
        self.ctx = ctx
        self.config = ctx.config.telegram
        self._own_bot = bot is None
        self.bot = bot or make_bot(self.config, poll_timeout_s)
        self.stats = NotifierStats()
        self.sender = Sender(ctx, self.bot, self.stats, retry_base_s=retry_base_s, retry_max_s=retry_max_s,
                             max_tries=max_tries)
        self.username: str | None = (self.config.bot_username or "").lstrip("@") or None
        self.handler = UpdateHandler(ctx, self.bot, self.stats, self.sender.pacer, lambda: self.username)
        self.poll_timeout_s = poll_timeout_s
        self.conflict_wait_s = conflict_wait_s
        self.housekeeping_s = housekeeping_s
        self._feed_poll_s = feed_poll_s
        self._feed: ChangeFeed | None = None
        self._updates_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._holder = new_id()
        self._leader: asyncio.Task[None] | None = None
        self.working = False  # holds the lease and runs (False: standing by)
        self._lease_renew_s = lease_renew_s

    @classmethod
    def from_config(cls, config: CloudConfig, **kwargs: Any) -> Notifier:
        """The notifier with its own database and storage handles (`pingwatch-cloud notify`)."""
        from cloud.api.app import build_storage
        from cloud.api.db.engine import Database
        from cloud.api.security import Passwords

        blobs, queue = build_storage(config)
        ctx = Context(config=config, db=Database(config.database.url, config.database.pool_size), blobs=blobs,
                      queue=queue, passwords=Passwords(config.auth.argon2_time_cost, config.auth.argon2_memory_kib))
        return cls(ctx, **kwargs)

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Take the lease and start working, or stand by when another notifier holds it (returns either way)."""
        await self._prepare_bot()
        if await self._lease():
            await self._start_work()
        else:
            log.warning("another Telegram notifier is working; standing by", extra={"lease": LEASE})
        self._leader = asyncio.create_task(self._lead(), name="telegram-lease")

    async def stop(self) -> None:
        if self._leader is not None:
            self._leader.cancel()
            await asyncio.gather(self._leader, return_exceptions=True)
            self._leader = None
        was_working = self.working
        await self._stop_work()
        if was_working:
            with contextlib.suppress(Exception):  # the lease then just expires
                await self.ctx.db.tx(lambda conn: leases.release(conn, LEASE, self._holder))
        if self._own_bot:
            with contextlib.suppress(Exception):
                await self.bot.shutdown()

    async def _lease(self) -> bool:
        now = self.ctx.clock()
        try:
            return await self.ctx.db.tx(lambda conn: leases.acquire(conn, LEASE, self._holder, now, LEASE_TTL))
        except Exception:  # the database is down: keep what we have until the lease would expire
            log.warning("renewing the notifier lease failed", exc_info=True)
            return self.working

    async def _lead(self) -> None:
        while True:
            await asyncio.sleep(self._lease_renew_s)  # renewal period, well inside LEASE_TTL
            held = await self._lease()
            if held and not self.working:
                log.info("Telegram notifier taking over", extra={"lease": LEASE})
                await self._start_work()
            elif not held and self.working:
                log.error("the Telegram notifier lost its lease to another; standing by", extra={"lease": LEASE})
                await self._stop_work()

    async def _start_work(self) -> None:
        cursor = await self.ctx.db.read(store.load_cursor)
        if cursor is None:
            # First start: alerts begin now; a year of old changes would be a flood, not an alert.
            now = self.ctx.clock()

            def first(conn: Connection) -> int:
                at = latest_id(conn)
                store.save_cursor(conn, at, now)
                return at

            cursor = await self.ctx.db.tx(first)
        self._feed = ChangeFeed(self.ctx.db, poll_interval_s=self._feed_poll_s, gap_grace_s=FEED_GAP_GRACE_S)
        sub = self._feed.subscribe(None, max_pending=5000)
        await self._feed.start(after_id=cursor)
        self._tasks = [asyncio.create_task(self._follow(sub), name="telegram-changes"),
                       asyncio.create_task(self.sender.run(), name="telegram-sender"),
                       asyncio.create_task(self._updates_loop(), name="telegram-updates"),
                       asyncio.create_task(self._housekeeping(), name="telegram-housekeeping")]
        if self.config.mode == "polling":
            self._tasks.append(asyncio.create_task(self._poll_loop(), name="telegram-poll"))
        log.info("Telegram notifier started", extra={"mode": self.config.mode, "cursor": cursor})
        self.working = True

    async def _stop_work(self) -> None:
        self.working = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.sender.stop()
        if self._feed is not None:
            await self._feed.stop()
            self._feed = None

    async def _prepare_bot(self) -> None:
        """The bot's name, its command list, and in webhook mode the webhook. Failures here are logged, not
        fatal: alerts must go out even if Telegram refused a cosmetic call at start."""
        try:
            if self.username is None:
                self.username = (await self.bot.get_me()).username
            await self.bot.set_my_commands([BotCommand(c, d) for c, d in BOT_COMMANDS])
        except TelegramError as exc:
            log.warning("Telegram getMe/setMyCommands failed at start", extra={"error": str(exc)})
        if self.config.mode == "webhook":
            public = self.ctx.config.server.public_url
            if not public:
                log.error("telegram.mode is webhook but server.public_url is not set: Telegram cannot reach us; "
                          "commands and buttons are not read")
                return
            try:
                await self.bot.set_webhook(url=public.rstrip("/") + WEBHOOK_PATH,
                                           secret_token=self.config.webhook_secret,
                                           allowed_updates=["message", "callback_query"])
            except TelegramError as exc:
                log.error("setWebhook failed; commands and buttons are not read until it works",
                          extra={"error": str(exc)})

    # -- changes → rows ------------------------------------------------------------------------------------

    async def _follow(self, sub: Subscription) -> None:
        while True:
            change = await sub.get()
            if change is None:
                if not sub.overflowed or self._feed is None:
                    return
                # Fell behind by thousands: start again from the saved cursor (rows are keyed; nothing doubles).
                log.warning("the notifier fell behind the change feed; re-reading from its cursor")
                await self._feed.stop()
                cursor = await self.ctx.db.read(store.load_cursor)
                self._feed = ChangeFeed(self.ctx.db, poll_interval_s=self._feed_poll_s, gap_grace_s=FEED_GAP_GRACE_S)
                sub = self._feed.subscribe(None, max_pending=5000)
                await self._feed.start(after_id=cursor)
                continue
            delay = 0.5
            while True:
                now = self.ctx.clock()

                def work(conn: Connection, change: Any = change, now: Any = now) -> int:
                    added = planner.plan(conn, change, now)
                    # The feed's safe cursor, not the change's id: a lower id may still be on its way (PostgreSQL
                    # commits out of id order); resuming here re-plans at most a few changes (rows are keyed).
                    store.save_cursor(conn, change.safe_cursor, now)
                    return added

                try:
                    added = await self.ctx.db.tx(work)
                    break
                except (asyncio.CancelledError, DatabaseClosed):  # stopping: no retry can succeed
                    raise
                except Exception:  # the database is down: the same change again, later (never skipped)
                    log.warning("planning a change failed; retrying", extra={"change": change.id}, exc_info=True)
                    await asyncio.sleep(delay)  # retry pacing
                    delay = min(30.0, delay * 2)
            if added:
                self.sender.wake.set()

    # -- updates -------------------------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        offset = await self.ctx.db.read(lambda conn: conn.execute(
            sa.select(sa.func.max(telegram_updates.c.update_id))).scalar())
        offset = int(offset) + 1 if offset is not None else None
        backoff = 1.0
        conflict_logged = False
        while True:
            try:
                updates = await self.bot.get_updates(offset=offset, timeout=int(self.poll_timeout_s),
                                                     allowed_updates=["message", "callback_query"])
            except asyncio.CancelledError:
                raise
            except Conflict as exc:
                # A webhook is set (or another program polls this bot). Deleting the webhook would silently break
                # whoever set it (production): alerts still go out; commands wait until a person sorts it out.
                self.stats.conflicts += 1
                if not conflict_logged:
                    log.error("Telegram refuses long polling (409 Conflict): a webhook is set for this bot, or "
                              "another program reads its updates; alerts are still sent, commands and buttons "
                              "are not read; retrying later", extra={"error": str(exc)})
                    conflict_logged = True
                await asyncio.sleep(self.conflict_wait_s)  # retry pacing
                continue
            except RetryAfter as exc:
                await asyncio.sleep(retry_after_s(exc))  # Telegram asked for this pause
                continue
            except InvalidToken as exc:
                log.error("Telegram rejected the bot token", extra={"error": str(exc)})
                await asyncio.sleep(self.conflict_wait_s)  # a person has to fix the token
                continue
            except TelegramError as exc:  # network, timeouts, 5xx
                log.debug("Telegram poll failed", extra={"error": str(exc)})
                await asyncio.sleep(random.uniform(backoff / 2, backoff))  # retry pacing with jitter
                backoff = min(60.0, backoff * 2)
                continue
            backoff, conflict_logged = 1.0, False
            for update in updates:
                payload = json.loads(update.to_json())
                now = self.ctx.clock()
                try:
                    if not await self.ctx.db.tx(functools.partial(_store, update=payload, now=now)):
                        self.stats.duplicate_updates += 1
                except (asyncio.CancelledError, DatabaseClosed):  # stopping: no retry can succeed
                    raise
                except Exception:  # the database is down: not confirmed to Telegram, so it comes again
                    log.warning("storing a Telegram update failed; it is fetched again", exc_info=True)
                    await asyncio.sleep(random.uniform(backoff / 2, backoff))  # retry pacing with jitter
                    break
                offset = max(offset or 0, update.update_id + 1)
            if updates:
                self._updates_wake.set()

    async def _updates_loop(self) -> None:
        """Stored updates, oldest first, each claimed (conditionally) before it acts: once, whatever the path."""
        while True:
            self._updates_wake.clear()
            try:
                rows = await self.ctx.db.read(lambda conn: conn.execute(
                    sa.select(telegram_updates.c.update_id, telegram_updates.c.payload, telegram_updates.c.received_at)
                    .where(telegram_updates.c.claimed_at.is_(None))
                    .order_by(telegram_updates.c.update_id).limit(50)).all())
            except (asyncio.CancelledError, DatabaseClosed):  # stopping: no retry can succeed
                raise
            except Exception:
                log.warning("reading Telegram updates failed; retrying", exc_info=True)
                rows = []
            for row in rows:
                try:
                    await self._act(row)
                except (asyncio.CancelledError, DatabaseClosed):  # stopping: no retry can succeed
                    raise
                except Exception:  # one update (or a database hiccup) must not end the loop that answers buttons
                    log.warning("acting on a Telegram update failed", extra={"update_id": row.update_id},
                                exc_info=True)
            if not rows:
                # The webhook route writes from another process; its rows are found by this poll.
                await wait_event(self._updates_wake, 0.25)

    async def _act(self, row: Any) -> None:
        now = self.ctx.clock()
        claimed = await self.ctx.db.read(functools.partial(_claim, update_id=int(row.update_id), now=now))
        if not claimed:
            return
        try:
            update = Update.de_json(dict(row.payload), self.bot)
        except Exception:  # noqa: BLE001 - a malformed stored update must not stop the others
            log.warning("an update Telegram sent could not be read", extra={"update_id": row.update_id})
            return
        await self.handler.handle(update, row.received_at)

    # -- housekeeping --------------------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        commands = HubCommands(self.ctx)
        passes = 0
        while True:
            try:
                await commands.expire_due()
                if passes % 720 == 0:
                    await self.ctx.db.tx(lambda conn: store.prune(conn, self.ctx.clock() - PRUNE_AFTER))
                    await self.ctx.db.tx(lambda conn: conn.execute(sa.delete(telegram_updates).where(
                        telegram_updates.c.claimed_at.is_not(None),
                        telegram_updates.c.received_at < self.ctx.clock() - timedelta(days=2))))
                    await self.ctx.db.tx(lambda conn: _prune_links_and_mutes(conn, self.ctx.clock()))
            except (asyncio.CancelledError, DatabaseClosed):  # stopping: no retry can succeed
                raise
            except Exception:
                log.warning("Telegram housekeeping failed", exc_info=True)
            passes += 1
            await asyncio.sleep(self.housekeeping_s)  # a periodic job, not synchronisation


def _prune_links_and_mutes(conn: Connection, now: datetime) -> None:
    """Link tokens a day past their expiry (used or not) and mutes that ended."""
    conn.execute(sa.delete(telegram_links).where(telegram_links.c.expires_at < now - timedelta(days=1)))
    conn.execute(sa.delete(telegram_mutes).where(telegram_mutes.c.until < now))


def _store(conn: Connection, *, update: dict[str, Any], now: datetime) -> bool:
    return store_update(conn, update, now)


def _claim(conn: Connection, *, update_id: int, now: datetime) -> bool:
    """The one notifier that acts on this update (conditional: a second claim changes no row)."""
    return conn.execute(sa.update(telegram_updates).where(telegram_updates.c.update_id == update_id,
                                                          telegram_updates.c.claimed_at.is_(None))
                        .values(claimed_at=now)).rowcount == 1
