"""A fake Telegram Bot API on 127.0.0.1:<free port>, speaking the real protocol well enough for
python-telegram-bot pointed at it (``Bot(token, base_url=fake.base_url, base_file_url=fake.base_file_url)``).

What it does like Telegram: ``POST|GET /bot<token>/<method>`` with query, form, multipart or JSON parameters;
answers ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code", "description", "parameters"}``; a
wrong token is 401 and an unknown method 404; ``getUpdates`` long-polls (``timeout``) and confirms everything
below ``offset``, and refuses with 409 while a webhook is set; ``setWebhook`` delivers later updates by POST to
the webhook (127.0.0.1 only) with ``X-Telegram-Bot-Api-Secret-Token``; uploads (multipart, or
``attach://name`` inside ``media``) are kept byte for byte and get a ``file_id`` that later sends may reuse;
a file over ``max_upload_bytes`` (50 MB like Telegram) is 413.

What the tests get: ``push_message`` / ``press`` (a user's message or button press as an update),
``wait_for`` / ``wait_messages`` / ``wait_answer`` (awaited on an ``asyncio.Condition`` that every request
and state change notifies: no sleeps), ``fail(method, status, retry_after=..., times=...)`` (429, 413, 5xx
once or n times), ``go_offline`` / ``go_online`` (every request, long polls included, loses its connection
without an answer, as when the hub's internet is down), and the log of every call in ``calls``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

from aiohttp import ClientSession, ClientTimeout, web

from .ports import HOST

T = TypeVar("T")

TELEGRAM_MAX_UPLOAD = 50 * 1024 * 1024  # the Bot API's limit for files a bot uploads
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
DEFAULT_TOKEN = "123456789:AAtest-token_for-the-fake-bot-api00"

# Parameters that arrive JSON-encoded (python-telegram-bot encodes every non-string value with json.dumps).
_JSON_FIELDS = {"reply_markup", "allowed_updates", "media", "commands", "reply_parameters", "caption_entities",
                "entities", "link_preview_options", "scope"}
_INT_FIELDS = {"message_id", "offset", "limit", "timeout", "reply_to_message_id", "duration", "width", "height",
               "cache_time", "max_connections"}
_BOOL_FIELDS = {"drop_pending_updates", "supports_streaming", "show_alert", "disable_notification",
                "allow_sending_without_reply"}


@dataclass
class Call:
    """One request the bot made, as the server understood it."""

    method: str
    params: dict[str, Any]
    files: dict[str, bytes]
    status: int = 200
    at: float = field(default_factory=time.monotonic)


@dataclass
class SentMessage:
    """A message the bot sent, with the bytes it uploaded and every later edit."""

    message_id: int
    chat_id: int
    method: str  # sendPhoto, sendVideo, sendMessage
    kind: str  # "photo", "video" or "text"
    text: str | None  # the text, or the caption of a photo/video (the current one, after edits)
    file: bytes | None  # what was uploaded (a send by file_id resolves to the original upload)
    file_id: str | None
    reply_to: int | None
    reply_markup: dict[str, Any] | None
    date: int
    edits: list[dict[str, Any]] = field(default_factory=list)

    def buttons(self) -> list[tuple[str, str]]:
        """(text, callback_data) of every inline button, row by row."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [(b.get("text", ""), b.get("callback_data", "")) for row in rows for b in row]


class ApiError(Exception):
    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


@dataclass
class _Fault:
    method: str
    status: int
    description: str
    retry_after: int | None
    times: int


class FakeTelegram:
    def __init__(self, token: str = DEFAULT_TOKEN, bot_username: str = "pingwatch_test_bot",
                 max_upload_bytes: int = TELEGRAM_MAX_UPLOAD) -> None:
        self.token = token
        self.bot_username = bot_username
        self.bot_id = int(token.split(":", 1)[0])
        self.max_upload_bytes = max_upload_bytes
        self.port = 0
        self.calls: list[Call] = []
        self.messages: list[SentMessage] = []
        self.answers: dict[str, dict[str, Any]] = {}  # callback query id -> the answer's parameters
        self.commands: list[dict[str, Any]] = []  # what setMyCommands set
        self.webhook: dict[str, Any] | None = None  # url, secret_token while a webhook is set
        self.webhook_deliveries: list[tuple[int, int]] = []  # (update_id, HTTP status) per POST to the webhook
        self.offline = False
        self.dropped: list[str] = []  # methods whose request lost its connection while offline
        self._updates: list[dict[str, Any]] = []  # not yet confirmed by an offset
        self._user_messages: set[tuple[int, int]] = set()  # (chat, message id) users wrote: replies may quote them
        self._redeliver: list[int] = []  # update ids pushed again on purpose (see push_update)
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._query_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._files: dict[str, tuple[str, bytes]] = {}  # file_id -> (kind, bytes)
        self._faults: list[_Fault] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._http: ClientSession | None = None

    # -- lifecycle -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        """For python-telegram-bot's ``base_url`` (it appends the token)."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.url}/file/bot"

    async def start(self) -> Self:
        app = web.Application(client_max_size=self.max_upload_bytes + 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # port 0: the kernel's pick
        self._http = ClientSession(timeout=ClientTimeout(total=10))
        return self

    async def stop(self) -> None:
        async with self._changed:
            self._changed.notify_all()
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- what tests do -----------------------------------------------------------------------------------

    def fail(self, method: str, status: int, *, retry_after: int | None = None, times: int = 1,
             description: str | None = None) -> None:
        """The next ``times`` calls of ``method`` fail with ``status`` (429 carries ``retry_after``)."""
        default = {429: f"Too Many Requests: retry after {retry_after}", 413: "Request Entity Too Large",
                   400: "Bad Request", 500: "Internal Server Error", 502: "Bad Gateway"}.get(status, "Error")
        self._faults.append(_Fault(method, status, description or default, retry_after, times))

    async def go_offline(self) -> None:
        """Every request from now on (long polls already waiting too) loses its connection unanswered."""
        self.offline = True
        await self._notify()

    async def go_online(self) -> None:
        self.offline = False
        await self._notify()

    def user(self, chat_id: int) -> dict[str, Any]:
        return {"id": chat_id if chat_id > 0 else 4242, "is_bot": False, "first_name": "Ada", "username": "ada"}

    def chat(self, chat_id: int) -> dict[str, Any]:
        if chat_id > 0:
            return {"id": chat_id, "type": "private", "first_name": "Ada", "username": "ada"}
        return {"id": chat_id, "type": "group", "title": "Home"}

    async def push_message(self, chat_id: int, text: str, *, update_id: int | None = None) -> int:
        """A user writes ``text`` in ``chat_id`` (a leading /command is marked as a bot_command entity).
        Returns the update_id; pass an old ``update_id`` to hand the same update over again (as Telegram does
        when it never saw the offset that confirmed it)."""
        msg: dict[str, Any] = {"message_id": next(self._message_ids), "date": int(time.time()),
                               "chat": self.chat(chat_id), "from": self.user(chat_id), "text": text}
        self._user_messages.add((chat_id, msg["message_id"]))
        if text.startswith("/"):
            msg["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return await self.push_update({"message": msg}, update_id=update_id)

    async def press(self, message: SentMessage, data: str | None = None, *, button: str | None = None,
                    query_id: str | None = None, update_id: int | None = None) -> str:
        """A user presses an inline button of ``message`` (by ``data``, or by a word in its ``button`` text).
        Returns the callback query id, which ``wait_answer`` awaits."""
        if data is None:
            matches = [d for t, d in message.buttons() if button and button.lower() in t.lower()]
            assert matches, f"no button like {button!r} on message {message.message_id}: {message.buttons()}"
            data = matches[0]
        qid = query_id or f"q{next(self._query_ids)}"
        await self.push_update({"callback_query": {
            "id": qid, "from": self.user(message.chat_id), "chat_instance": f"ci{message.chat_id}", "data": data,
            "message": self._message_json(message)}}, update_id=update_id)
        return qid

    async def push_update(self, body: dict[str, Any], *, update_id: int | None = None) -> int:
        update = {"update_id": update_id if update_id is not None else next(self._update_ids), **body}
        if update_id is not None:  # an update handed over again: delivered whatever offset was confirmed
            self._updates = [u for u in self._updates if u["update_id"] != update_id]
            self._redeliver.append(update["update_id"])
        if self.webhook is not None:
            await self._post_webhook(update)
        else:
            self._updates.append(update)
        await self._notify()
        return update["update_id"]

    async def wait_for(self, check: Callable[[], T | None], timeout: float = 10.0, what: str = "condition") -> T:
        """Wait until ``check()`` is truthy (re-checked whenever the bot calls the server or tests change it)."""

        async def waiter() -> T:
            async with self._changed:
                while True:
                    result = check()
                    if result:
                        return result
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(waiter(), timeout)
        except TimeoutError:
            raise AssertionError(f"fake Telegram: no {what} within {timeout} s; calls: "
                                 f"{[(c.method, c.status) for c in self.calls][-20:]}") from None

    async def wait_messages(self, chat_id: int, n: int, timeout: float = 10.0) -> list[SentMessage]:
        """The first ``n`` messages the bot sent to ``chat_id``, once there are that many."""
        def check() -> list[SentMessage] | None:
            sent = self.sent_to(chat_id)
            return sent[:n] if len(sent) >= n else None

        return await self.wait_for(check, timeout, f"{n} messages to chat {chat_id}")

    async def wait_answer(self, query_id: str, timeout: float = 10.0) -> dict[str, Any]:
        return await self.wait_for(lambda: self.answers.get(query_id), timeout, f"answer to callback {query_id}")

    async def wait_calls(self, method: str, n: int = 1, timeout: float = 10.0, status: int | None = None) -> list[Call]:
        def check() -> list[Call] | None:
            got = [c for c in self.calls if c.method == method and (status is None or c.status == status)]
            return got if len(got) >= n else None

        return await self.wait_for(check, timeout, f"{n} x {method}" + (f" ({status})" if status else ""))

    def sent_to(self, chat_id: int) -> list[SentMessage]:
        return [m for m in self.messages if m.chat_id == chat_id]

    def calls_of(self, method: str, status: int | None = 200) -> list[Call]:
        return [c for c in self.calls if c.method == method and (status is None or c.status == status)]

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- the HTTP side -----------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        if self.offline:
            return await self._drop(request, method)
        try:
            params, files = await self._params(request)
        except ApiError as exc:
            return await self._error(Call(method, {}, {}), exc)
        call = Call(method, params, files)
        if request.match_info["token"] != self.token:
            return await self._error(call, ApiError(401, "Unauthorized"))
        handler = getattr(self, f"_m_{method.lower()}", None)
        if handler is None:
            return await self._error(call, ApiError(404, "Not Found"))
        try:
            self._inject_fault(method)
            result = await handler(call, request)
        except ApiError as exc:
            return await self._error(call, exc)
        if self.offline:  # went offline during a long poll: the answer is lost
            return await self._drop(request, method)
        self.calls.append(call)
        await self._notify()
        return web.json_response({"ok": True, "result": result})

    async def _drop(self, request: web.Request, method: str) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.abort()
        self.dropped.append(method)
        await self._notify()
        return web.Response(status=204)  # never written: the connection is gone

    async def _error(self, call: Call, exc: ApiError) -> web.Response:
        call.status = exc.status
        self.calls.append(call)
        await self._notify()
        body: dict[str, Any] = {"ok": False, "error_code": exc.status, "description": exc.description}
        if exc.parameters:
            body["parameters"] = exc.parameters
        return web.json_response(body, status=exc.status)

    def _inject_fault(self, method: str) -> None:
        for fault in self._faults:
            if fault.method == method and fault.times > 0:
                fault.times -= 1
                params = {"retry_after": fault.retry_after} if fault.retry_after is not None else None
                raise ApiError(fault.status, fault.description, params)

    async def _params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
        raw: dict[str, Any] = dict(request.query)
        files: dict[str, bytes] = {}
        ctype = request.content_type
        if request.method == "POST" and request.can_read_body:
            if ctype == "application/json":
                body = await request.json()
                if not isinstance(body, dict):
                    raise ApiError(400, "Bad Request: the body must be a JSON object")
                raw.update(body)
                return self._coerce(raw, decoded=True), files
            if ctype == "multipart/form-data":
                reader = await request.multipart()
                async for part in reader:
                    if part.name is None:
                        continue
                    data = await part.read(decode=False)  # type: ignore[union-attr]
                    if part.filename is not None:  # type: ignore[union-attr]
                        if len(data) > self.max_upload_bytes:
                            raise ApiError(413, "Request Entity Too Large")
                        files[part.name] = bytes(data)
                    else:
                        raw[part.name] = bytes(data).decode()
            else:
                raw.update(dict(await request.post()))
        return self._coerce(raw, decoded=False), files

    @staticmethod
    def _coerce(raw: dict[str, Any], decoded: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if not decoded and isinstance(value, str):
                if key in _JSON_FIELDS:
                    try:
                        value = json.loads(value)
                    except ValueError:
                        raise ApiError(400, f"Bad Request: can't parse {key} JSON object") from None
                elif key in _INT_FIELDS or (key == "chat_id" and value.lstrip("-").isdigit()):
                    try:
                        value = int(value)
                    except ValueError:
                        raise ApiError(400, f"Bad Request: {key} must be an integer") from None
                elif key in _BOOL_FIELDS:
                    value = value.lower() == "true"
            out[key] = value
        return out

    async def _file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            raise web.HTTPUnauthorized()
        entry = self._files.get(request.match_info["path"].rsplit("/", 1)[-1])
        if entry is None:
            raise web.HTTPNotFound()
        return web.Response(body=entry[1])

    # -- methods ---------------------------------------------------------------------------------------

    async def _m_getme(self, call: Call, request: web.Request) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": "ping-watch", "username": self.bot_username,
                "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}

    async def _m_getupdates(self, call: Call, request: web.Request) -> list[dict[str, Any]]:
        if self.webhook is not None:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook "
                                "to delete the webhook first")
        p = call.params
        offset = int(p.get("offset") or 0)
        if offset:
            self._updates = [u for u in self._updates
                             if u["update_id"] >= offset or u["update_id"] in self._redeliver]
        limit = max(1, min(100, int(p.get("limit") or 100)))
        timeout = max(0, int(p.get("timeout") or 0))
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                if self.offline or self.webhook is not None:
                    return []  # dropped or refused by the caller's re-check
                ready = [u for u in self._updates
                         if u["update_id"] >= offset or u["update_id"] in self._redeliver][:limit]
                left = deadline - time.monotonic()
                if ready or left <= 0:
                    for u in ready:  # a redelivered update goes out once more, then is confirmed as usual
                        if u["update_id"] in self._redeliver:
                            self._redeliver.remove(u["update_id"])
                            if u["update_id"] < offset:
                                self._updates.remove(u)
                    return ready
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except TimeoutError:
                    pass

    async def _m_setwebhook(self, call: Call, request: web.Request) -> bool:
        url = str(call.params.get("url") or "")
        if not url:
            self.webhook = None
            return True
        host = urlsplit(url).hostname
        if host != HOST:
            raise ApiError(400, f"Bad Request: bad webhook: this fake only delivers to {HOST}")
        self.webhook = {"url": url, "secret_token": call.params.get("secret_token")}
        if call.params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _m_deletewebhook(self, call: Call, request: web.Request) -> bool:
        self.webhook = None
        if call.params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _m_getwebhookinfo(self, call: Call, request: web.Request) -> dict[str, Any]:
        return {"url": (self.webhook or {}).get("url", ""), "has_custom_certificate": False,
                "pending_update_count": len(self._updates)}

    async def _m_setmycommands(self, call: Call, request: web.Request) -> bool:
        commands = call.params.get("commands")
        if not isinstance(commands, list) or not all(isinstance(c, dict) and c.get("command") for c in commands):
            raise ApiError(400, "Bad Request: commands must be a list of BotCommand")
        self.commands = commands
        return True

    async def _m_sendmessage(self, call: Call, request: web.Request) -> dict[str, Any]:
        text = call.params.get("text")
        if not text:
            raise ApiError(400, "Bad Request: message text is empty")
        return self._message_json(self._new_message(call, "text", text, None, None))

    async def _m_sendphoto(self, call: Call, request: web.Request) -> dict[str, Any]:
        return await self._send_media(call, "photo")

    async def _m_sendvideo(self, call: Call, request: web.Request) -> dict[str, Any]:
        return await self._send_media(call, "video")

    async def _send_media(self, call: Call, kind: str) -> dict[str, Any]:
        file_id, data = self._resolve_file(call, kind, call.params.get(kind))
        caption = call.params.get("caption")
        return self._message_json(self._new_message(call, kind, caption, data, file_id))

    async def _m_editmessagecaption(self, call: Call, request: web.Request) -> dict[str, Any]:
        msg = self._find(call)
        if msg.kind == "text":
            raise ApiError(400, "Bad Request: there is no caption in the message to edit")
        caption = call.params.get("caption")
        markup = call.params.get("reply_markup")
        if caption == msg.text and markup == msg.reply_markup:
            raise ApiError(400, "Bad Request: message is not modified: specified new message content and reply "
                                "markup are exactly the same as a current content and reply markup of the message")
        msg.edits.append({"method": call.method, "caption": caption})
        msg.text, msg.reply_markup = caption, markup
        return self._message_json(msg)

    async def _m_editmessagetext(self, call: Call, request: web.Request) -> dict[str, Any]:
        msg = self._find(call)
        if msg.kind != "text":
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        text = call.params.get("text")
        if not text:
            raise ApiError(400, "Bad Request: message text is empty")
        markup = call.params.get("reply_markup")
        if text == msg.text and markup == msg.reply_markup:
            raise ApiError(400, "Bad Request: message is not modified")
        msg.edits.append({"method": call.method, "text": text})
        msg.text, msg.reply_markup = text, markup
        return self._message_json(msg)

    async def _m_editmessagemedia(self, call: Call, request: web.Request) -> dict[str, Any]:
        msg = self._find(call)
        media = call.params.get("media")
        if not isinstance(media, dict) or media.get("type") not in ("photo", "video"):
            raise ApiError(400, "Bad Request: media must be an InputMedia object")
        file_id, data = self._resolve_file(call, media["type"], media.get("media"))
        msg.edits.append({"method": call.method, "kind": media["type"], "caption": media.get("caption")})
        msg.kind, msg.file, msg.file_id, msg.text = media["type"], data, file_id, media.get("caption")
        if "reply_markup" in call.params:
            msg.reply_markup = call.params["reply_markup"]
        return self._message_json(msg)

    async def _m_answercallbackquery(self, call: Call, request: web.Request) -> bool:
        qid = str(call.params.get("callback_query_id") or "")
        if not qid:
            raise ApiError(400, "Bad Request: callback_query_id is empty")
        if qid in self.answers:
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        self.answers[qid] = dict(call.params)
        return True

    # -- helpers ---------------------------------------------------------------------------------------

    def _resolve_file(self, call: Call, kind: str, value: Any) -> tuple[str, bytes]:
        if isinstance(value, str) and value.startswith("attach://"):
            data = call.files.get(value[len("attach://"):])
        elif value is None or value == "":
            data = call.files.get(kind)
        else:
            known = self._files.get(str(value))
            if known is None:
                raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
            return str(value), known[1]
        if data is None:
            raise ApiError(400, f"Bad Request: there is no {kind} in the request")
        if not data:
            raise ApiError(400, "Bad Request: file must be non-empty")
        file_id = f"F{kind}{next(self._file_ids)}"
        self._files[file_id] = (kind, data)
        return file_id, data

    def _find(self, call: Call) -> SentMessage:
        chat_id, message_id = call.params.get("chat_id"), call.params.get("message_id")
        for msg in self.messages:
            if msg.chat_id == chat_id and msg.message_id == message_id:
                return msg
        raise ApiError(400, "Bad Request: message to edit not found")

    def _new_message(self, call: Call, kind: str, text: str | None, data: bytes | None,
                     file_id: str | None) -> SentMessage:
        chat_id = call.params.get("chat_id")
        if not isinstance(chat_id, int):
            raise ApiError(400, "Bad Request: chat not found")
        reply = call.params.get("reply_parameters") or {}
        reply_to = reply.get("message_id") if isinstance(reply, dict) else None
        reply_to = reply_to or call.params.get("reply_to_message_id")
        known = (chat_id, reply_to) in self._user_messages or any(
            m.chat_id == chat_id and m.message_id == reply_to for m in self.messages)
        if reply_to is not None and not known:
            if not (isinstance(reply, dict) and reply.get("allow_sending_without_reply")):
                raise ApiError(400, "Bad Request: message to be replied not found")
            reply_to = None
        msg = SentMessage(next(self._message_ids), chat_id, call.method, kind, text, data, file_id, reply_to,
                          call.params.get("reply_markup"), int(time.time()))
        self.messages.append(msg)
        return msg

    def _message_json(self, msg: SentMessage) -> dict[str, Any]:
        out: dict[str, Any] = {"message_id": msg.message_id, "date": msg.date, "chat": self.chat(msg.chat_id)}
        if msg.method.startswith("send"):
            out["from"] = {"id": self.bot_id, "is_bot": True, "first_name": "ping-watch",
                           "username": self.bot_username}
        else:  # a user's message the bot is shown again (a button press carries its message)
            out["from"] = self.user(msg.chat_id)
        size = len(msg.file or b"")
        if msg.kind == "photo":
            out["photo"] = [{"file_id": msg.file_id, "file_unique_id": f"u{msg.file_id}", "width": 640,
                             "height": 360, "file_size": size}]
        elif msg.kind == "video":
            out["video"] = {"file_id": msg.file_id, "file_unique_id": f"u{msg.file_id}", "width": 640,
                            "height": 360, "duration": 1, "file_size": size, "mime_type": "video/mp4"}
        if msg.kind == "text":
            out["text"] = msg.text or ""
        elif msg.text:
            out["caption"] = msg.text
        if msg.reply_to is not None:
            out["reply_to_message"] = {"message_id": msg.reply_to, "date": msg.date, "chat": self.chat(msg.chat_id)}
        if msg.reply_markup:
            out["reply_markup"] = msg.reply_markup
        if msg.edits:
            out["edit_date"] = int(time.time())
        return out

    async def _post_webhook(self, update: dict[str, Any]) -> None:
        assert self.webhook is not None and self._http is not None
        headers = {SECRET_HEADER: self.webhook["secret_token"]} if self.webhook.get("secret_token") else {}
        try:
            async with self._http.post(self.webhook["url"], json=update, headers=headers) as r:
                status = r.status
        except OSError:
            status = 0
        self.webhook_deliveries.append((update["update_id"], status))
