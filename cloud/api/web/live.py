"""The live channel (a WebSocket per page, fed by the account's changes) and the cloud page's static files.

Protocol of GET /api/v1/live (a browser cannot set Authorization on a WebSocket, so the token is the first
message, never a URL parameter that would end up in access logs):
- client → server, first and within AUTH_TIMEOUT_S: {"token": "<bearer>", "after": <cursor> | null}
- server → client: {"type": "hello", "account_id", "cursor"}; then, in change order, one message per change of
  that account: "event" (an event's state), "event_started", "hub", "command" (page_models.Live*Msg). Each
  carries a "cursor": a position every earlier change was sent before (the change feed's safe cursor, which can
  lag the change's own id while a lower id is still uncommitted); a page that reconnects sends the last one as
  "after" and gets the changes after it (read from the database, a few perhaps again), then live ones, with no
  gap. Changes are kept two days (retention): an "after" older than the oldest kept change is told to reload.
- close codes: 4400 bad first message, 4401 bad token or none in time, 4429 too many sockets for the account,
  4000 "reload" (the page fell too far behind: re-read everything, then reconnect with after=null), 1001 the
  server is stopping, 1009 a message over MAX_MESSAGE_BYTES (aiohttp's own).

One ChangeFeed per process (started and stopped with the app) reads the `changes` table and hands each change to
the sockets of its account; on PostgreSQL it LISTENs, so a change committed by any API process (or the worker)
reaches sockets on every process at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import OrderedDict
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloud.api import errors
from cloud.api.changes import (
    COMMAND_DONE,
    EVENT_STARTED,
    EVENT_STATE,
    HUB_STATE,
    Change,
    ChangeFeed,
    oldest_id,
    read_after,
)
from cloud.api.services.page import PageQueries
from cloud.api.web import page_models as pm
from cloud.config import CloudConfig
from cloud.storage.blob import account_from_connection_string

if TYPE_CHECKING:
    from cloud.api.app import Services

log = logging.getLogger(__name__)

LIVE_PATH = "/api/v1/live"
WEB_DIR = Path(__file__).resolve().parents[2] / "web"  # cloud/web
AUTH_TIMEOUT_S = 5.0
HEARTBEAT_S = 25.0  # a ping this often; a peer that does not answer is closed (phones on flaky networks)
MAX_MESSAGE_BYTES = 4096  # the client only ever sends the small auth message
MAX_PER_ACCOUNT = 16  # per process: a handful of tabs and phones, not a connection flood
MAX_SOCKETS = 5000  # per process, authenticated or not
MAX_PENDING = 1000  # changes queued for one socket before it is told to reload
MAX_REPLAY = 5000  # changes replayed on resume before the page is told to reload instead
REPLAY_PAGE = 500
RECHECK_TOKEN_S = 300.0  # a socket outliving its token (log-out elsewhere, expiry) is closed within this

PING, PONG = '{"type":"ping"}', '{"type":"pong"}'
CLOSE_RELOAD = 4000
CLOSE_BAD_MESSAGE = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_MANY = 4429

_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".html": "text/html"}
_STATIC_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,60}\.(js|css|svg)$")
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$")
_ORIGIN = re.compile(r"^https?://(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$")


class LiveAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(..., pattern=r"^[A-Za-z0-9_-]{1,200}$")
    after: int | None = Field(default=None, ge=0, le=2**62)


# -- the page's files and headers ------------------------------------------------------------------------------


def blob_origin(config: CloudConfig) -> str | None:
    """Where read SAS URLs point (thumbnails, clips): the only other origin the page may load images and media
    from. From the same settings storage is built from."""
    s = config.storage
    url = s.blob_url
    if not url and s.connection_string:
        with contextlib.suppress(ValueError):
            url = account_from_connection_string(s.connection_string, "blob")[0]
    if not url and s.account_name:
        url = f"https://{s.account_name}.blob.core.windows.net"
    if not url:
        return None
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    return origin if _ORIGIN.match(origin) else None  # nothing that could add a directive to the policy


def page_csp(host: str | None, blobs: str | None) -> str:
    media = f" {blobs}" if blobs else ""
    ws = f" ws://{host} wss://{host}" if host and _HOST.match(host) else ""
    return ("default-src 'self'; script-src 'self'; style-src 'self'; "
            f"img-src 'self' data:{media}; media-src 'self'{media}; connect-src 'self'{ws}; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


class PageFiles:
    """cloud/web read once at start: a fixed set of names, so no request path ever reaches the file system."""

    def __init__(self, root: Path, blobs: str | None) -> None:
        self._files: dict[str, tuple[bytes, str]] = {}
        if root.is_dir():
            for path in sorted(root.iterdir()):
                if path.is_file() and (_STATIC_NAME.match(path.name) or path.name == "index.html"):
                    self._files[path.name] = (path.read_bytes(), _STATIC_TYPES[path.suffix])
        self._blobs = blobs

    def response(self, request: web.Request, name: str) -> web.Response:
        found = self._files.get(name)
        if found is None:
            raise errors.NotFound("no such file", reason="not_found")
        body, ctype = found
        resp = web.Response(body=body, content_type=ctype, charset="utf-8")
        h = resp.headers
        h["Content-Security-Policy"] = page_csp(request.host, self._blobs)
        h["X-Frame-Options"] = "DENY"
        h["X-Content-Type-Options"] = "nosniff"
        h["Referrer-Policy"] = "no-referrer"  # SAS URLs and the page's address stay out of Referer headers
        h["Cross-Origin-Opener-Policy"] = "same-origin"
        h["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
        h["Cache-Control"] = "no-cache"  # revalidate: a new release's files replace the old at once
        return resp


# -- the live channel ------------------------------------------------------------------------------------------


class LiveChannel:
    """The sockets of this process, by account, and the conversion of changes into page messages."""

    def __init__(self, services: Services, feed: ChangeFeed) -> None:
        self.services = services
        self.feed = feed
        self.queries = PageQueries(services.ctx, services.timeline)
        self.by_account: dict[str, set[web.WebSocketResponse]] = {}
        self.open = 0
        # A change concerns every socket of its account: its message is built once (bounded, recent changes).
        self._messages: OrderedDict[int, BaseModel | None] = OrderedDict()

    async def message(self, change: Change, cursor: int) -> str | None:
        """The change as the page's JSON message with this resume cursor (None: nothing to show, e.g. the event
        was deleted since)."""
        if change.id in self._messages:
            self._messages.move_to_end(change.id)
            model = self._messages[change.id]
        else:
            model = await self._build(change)
            self._messages[change.id] = model
            while len(self._messages) > 512:
                self._messages.popitem(last=False)
        return None if model is None else model.model_copy(update={"cursor": cursor}).model_dump_json()

    async def _build(self, change: Change) -> BaseModel | None:
        q, acct, subject = self.queries, change.account_id, change.subject_id or ""
        model: BaseModel | None = None
        if change.kind == EVENT_STATE:
            card = await q.event_card(acct, subject)
            if card is not None:
                event = pm.PageEvent.of(card)
                state = change.data.get("state")
                if isinstance(state, str) and state != event.state:
                    # The state this change is about, not the one the event has reached since: the page sees
                    # every step (uploading → queued → processing → done) even when they come close together.
                    event = event.model_copy(update={"state": state})
                model = pm.LiveEventMsg(cursor=change.id, event=event)
        elif change.kind == EVENT_STARTED:
            start = await q.start_card(acct, subject)
            if start is not None:
                model = pm.LiveStartedMsg(cursor=change.id, event_start=pm.EventStarted.of(start))
        elif change.kind == HUB_STATE:
            hub = await q.hub_state(acct, subject)
            if hub is not None:
                model = pm.LiveHubMsg(cursor=change.id, hub=pm.LiveHub.of(hub))
        elif change.kind == COMMAND_DONE:
            cmd = await q.command_card(acct, subject, change.data)
            if cmd is not None:
                model = pm.LiveCommandMsg(cursor=change.id, command=pm.LiveCommand.of(cmd))
        return model

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES)
        if not ws.can_prepare(request).ok:
            raise errors.InvalidInput("this is a WebSocket endpoint", "open it with a WebSocket client",
                                      reason="websocket_expected")
        if self.open >= MAX_SOCKETS:
            raise errors.Unavailable("too many live connections on this server", "retry in a minute",
                                     reason="live_full", retry_after_s=30)
        await ws.prepare(request)
        self.open += 1
        try:
            await self._serve(ws)
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the page went away, or the server is stopping
        except Exception:
            log.exception("live socket failed")
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"server error; reconnect")
        finally:
            self.open -= 1
        return ws

    async def _authenticate(self, ws: web.WebSocketResponse) -> tuple[str, str, int | None] | None:
        """(account id, token, after) from the first message, or None once the socket is closed with a reason."""
        try:
            msg = await ws.receive(timeout=AUTH_TIMEOUT_S)
        except TimeoutError:
            await ws.close(code=CLOSE_UNAUTHENTICATED, message=b"no token in time: send {token, after} first")
            return None
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return None
        if msg.type != WSMsgType.TEXT:
            await ws.close(code=CLOSE_BAD_MESSAGE, message=b"the first message is JSON text {token, after}")
            return None
        try:
            auth = LiveAuth.model_validate_json(msg.data)
        except ValidationError:
            await ws.close(code=CLOSE_BAD_MESSAGE, message=b"the first message is JSON text {token, after}")
            return None
        try:
            user = await self.services.accounts.authenticate(auth.token)
        except errors.Unauthenticated:
            await ws.close(code=CLOSE_UNAUTHENTICATED, message=b"unknown, expired or revoked token; log in again")
            return None
        return user.account_id, auth.token, auth.after

    async def _serve(self, ws: web.WebSocketResponse) -> None:
        authed = await self._authenticate(ws)
        if authed is None:
            return
        account_id, token, after = authed
        mine = self.by_account.setdefault(account_id, set())
        if len(mine) >= MAX_PER_ACCOUNT:
            await ws.close(code=CLOSE_TOO_MANY, message=b"too many live connections for this account")
            return
        mine.add(ws)
        # Subscribe before reading anything: a change committed from here on is in the subscription, one
        # committed before is in what is read next; ids already sent are skipped, so none is sent twice.
        try:
            sub = await self.feed.open(account_id, max_pending=MAX_PENDING)
        except BaseException:
            self._forget(account_id, ws)
            raise
        reader = asyncio.create_task(self._read_client(ws, token), name="live-reader")
        try:
            # Fresh: the feed's safe cursor (every change up to it committed before the page reads its lists);
            # not the table's newest id, which may sit above a change still uncommitted.
            if after is not None:
                oldest = await self.services.ctx.db.read(oldest_id)
                if oldest is not None and after < oldest - 1:
                    # Retention deleted changes this page has not seen: a replay would have a hole. Re-read.
                    await ws.close(code=CLOSE_RELOAD, message=b"reload")
                    return
            floor = after if after is not None else self.feed.safe_cursor
            await ws.send_str(pm.LiveHello(account_id=account_id, cursor=floor).model_dump_json())
            sent = await self._replay(ws, account_id, floor) if after is not None else set()
            if sent is None:
                return
            while not ws.closed:
                getter = asyncio.ensure_future(sub.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    break  # the page closed, or its token stopped working
                change = getter.result()
                if change is None:
                    await ws.close(code=CLOSE_RELOAD, message=b"reload")
                    break
                if change.id <= floor or change.id in sent:
                    continue
                text = await self.message(change, max(floor, change.safe_cursor))
                if text is not None:
                    await ws.send_str(text)
        finally:
            sub.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self._forget(account_id, ws)

    def _forget(self, account_id: str, ws: web.WebSocketResponse) -> None:
        mine = self.by_account.get(account_id, set())
        mine.discard(ws)
        if not mine:
            self.by_account.pop(account_id, None)

    async def _replay(self, ws: web.WebSocketResponse, account_id: str, after: int) -> set[int] | None:
        """The account's changes after `after`, from the database; their ids (None: told to reload instead)."""
        sent: set[int] = set()
        last = after
        while True:
            rows = await self.services.ctx.db.read(partial(read_after, after_id=last, account_id=account_id,
                                                           limit=REPLAY_PAGE))
            for change in rows:
                # The replay's cursor stays at `after`: a lower id may still commit and arrive live.
                text = await self.message(change, after)
                if text is not None:
                    await ws.send_str(text)
                sent.add(change.id)
                last = change.id
            if len(rows) < REPLAY_PAGE:
                return sent
            if len(sent) >= MAX_REPLAY:
                await ws.close(code=CLOSE_RELOAD, message=b"reload")
                return None

    async def _read_client(self, ws: web.WebSocketResponse, token: str) -> None:
        """Until the page closes: answer its pings; close a socket whose token stopped working (log-out)."""
        loop = asyncio.get_running_loop()
        next_check = loop.time() + RECHECK_TOKEN_S
        while not ws.closed:
            try:
                msg = await ws.receive(timeout=max(0.1, next_check - loop.time()))
            except TimeoutError:
                try:
                    await self.services.accounts.authenticate(token)
                except errors.Unauthenticated:
                    await ws.close(code=CLOSE_UNAUTHENTICATED, message=b"the token is no longer valid; log in again")
                    return
                next_check = loop.time() + RECHECK_TOKEN_S
                continue
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
            if msg.type == WSMsgType.TEXT and msg.data == PING:
                await ws.send_str(PONG)  # for pages that want to see the link alive; anything else is ignored

    async def close_all(self) -> None:
        for sockets in list(self.by_account.values()):
            for ws in list(sockets):
                with contextlib.suppress(Exception):
                    await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping; reconnect")


CHANNEL_KEY: web.AppKey[LiveChannel] = web.AppKey("live_channel", LiveChannel)


def install(app: web.Application, services: Services) -> None:
    """Add the WebSocket route, the page's files and the change feed's start/stop to the app."""
    files = PageFiles(WEB_DIR, blob_origin(services.ctx.config))
    feed = ChangeFeed(services.ctx.db, idle_unsubscribed=True)
    channel = LiveChannel(services, feed)
    app[CHANNEL_KEY] = channel

    async def index(request: web.Request) -> web.StreamResponse:
        return files.response(request, "index.html")

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if not _STATIC_NAME.match(name):  # the page itself only at "/"
            raise errors.NotFound("no such file", reason="not_found")
        return files.response(request, name)

    async def start(_: web.Application) -> None:
        await feed.start()

    async def stop_sockets(_: web.Application) -> None:
        await channel.close_all()

    async def stop_feed(_: web.Application) -> None:
        await feed.stop()

    async def wake_feed(request: web.Request, _: web.StreamResponse) -> None:
        # A write through this process committed before its answer is sent: read it now instead of at the next
        # poll (SQLite runs one process, so this is most of its changes).
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            feed.wake()

    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    app.router.add_get(LIVE_PATH, channel.handle)
    app.on_startup.append(start)
    app.on_shutdown.append(stop_sockets)
    app.on_cleanup.append(stop_feed)
    app.on_response_prepare.append(wake_feed)
