"""Telegram routes: link a chat (deep link + QR), the account's chats with per-camera subscriptions, the alert
mode, and Telegram's webhook. The notifier process (cloud/notify) sends the alerts and acts on the updates the
webhook stores."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from cloud.api import errors
from cloud.api.services.telegram import ChatView, TelegramService
from cloud.api.web.registry import Call, Route

V1 = "/api/v1"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_UPDATE_BYTES = 256 * 1024  # a Telegram update is a few KB; this bounds what an unauthenticated caller can send
Uuid = Annotated[str, Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TelegramLink(BaseModel):
    token: str = Field(..., description="One-time; `/start <token>` in the bot links the chat.")
    deep_link: str = Field(..., description="https://t.me/<bot>?start=<token>")
    expires_at: datetime
    qr_svg: str = Field(..., description="The deep link as a QR code (SVG).")


class TelegramChatCamera(BaseModel):
    id: str
    name: str
    subscribed: bool
    muted_until: datetime | None = Field(default=None, description="Muted in this chat until then.")


class TelegramChat(BaseModel):
    id: str = Field(..., description="The link's id (for DELETE and PUT .../cameras).")
    chat_id: int = Field(..., description="Telegram's chat id.")
    title: str | None
    linked_at: datetime
    all_cameras: bool = Field(..., description="Subscribed to every camera, present and future.")
    cameras: list[TelegramChatCamera]


class TelegramChatList(BaseModel):
    chats: list[TelegramChat]


class TelegramCamerasPut(_In):
    all: bool = Field(default=False, description="Every camera, including cameras added later.")
    camera_ids: list[Uuid] = Field(default_factory=list, max_length=200)


class TelegramSettings(_In):
    mode: Literal["all", "matches"] = Field(
        ..., description="all: every event, in stages; matches: one message after the analysis, only on a match.")


class WebhookAck(BaseModel):
    ok: bool


def _chat(v: ChatView) -> TelegramChat:
    return TelegramChat(id=v.id, chat_id=v.chat_id, title=v.title, linked_at=v.linked_at, all_cameras=v.all_cameras,
                        cameras=[TelegramChatCamera(id=c.id, name=c.name, subscribed=c.subscribed,
                                                    muted_until=c.muted_until) for c in v.cameras])


def _service(call: Call) -> TelegramService:
    return TelegramService(call.services.ctx)


async def create_telegram_link(call: Call) -> TelegramLink:
    t = await _service(call).start_link(call.user)
    return TelegramLink(token=t.token, deep_link=t.deep_link, expires_at=t.expires_at, qr_svg=t.qr_svg)


async def list_telegram_chats(call: Call) -> TelegramChatList:
    return TelegramChatList(chats=[_chat(c) for c in await _service(call).list_chats(call.user)])


async def delete_telegram_chat(call: Call) -> None:
    await _service(call).unlink(call.user, call.params["chat_id"])


async def put_telegram_chat_cameras(call: Call) -> TelegramChat:
    body: TelegramCamerasPut = call.body
    return _chat(await _service(call).set_cameras(call.user, call.params["chat_id"], body.all, body.camera_ids))


async def get_telegram_settings(call: Call) -> TelegramSettings:
    return TelegramSettings(mode=await _service(call).get_mode(call.user))


async def put_telegram_settings(call: Call) -> TelegramSettings:
    body: TelegramSettings = call.body
    return TelegramSettings(mode=await _service(call).set_mode(call.user, body.mode))


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


async def telegram_webhook(call: Call) -> web.StreamResponse:
    """Checked (secret, constant time) before a byte of the body is read; stored, then answered at once."""
    service = _service(call)
    service.check_secret(call.request.headers.get(SECRET_HEADER))
    req = call.request
    if req.content_length is not None and req.content_length > MAX_UPDATE_BYTES:
        raise errors.TooLarge("update too large", reason="body_too_large")
    raw = await req.content.read(MAX_UPDATE_BYTES + 1)
    if len(raw) > MAX_UPDATE_BYTES:
        raise errors.TooLarge("update too large", reason="body_too_large")
    try:
        # NaN/Infinity are not JSON (PostgreSQL refuses to store them); nesting past the parser's depth is no
        # Telegram update either: both are the sender's error, never a 500 that Telegram would retry for ever.
        update = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise errors.InvalidInput("malformed JSON", "send a Telegram Update object", reason="invalid_input") from None
    update_id = update.get("update_id") if isinstance(update, dict) else None
    if not isinstance(update_id, int) or isinstance(update_id, bool) or not 0 <= update_id < 2**62:
        raise errors.InvalidInput("field 'update_id': an integer is required", "send a Telegram Update object",
                                  reason="invalid_input")
    await service.receive_update(update)  # False for a redelivered update: answered 200 all the same
    return web.json_response({"ok": True})


ROUTES: list[Route] = [
    Route("POST", f"{V1}/telegram/links", create_telegram_link,
          "Start linking a Telegram chat: a one-time deep link and its QR code", "telegram", auth="user",
          response=TelegramLink, status=201, errors=(409, 503)),
    Route("GET", f"{V1}/telegram/chats", list_telegram_chats, "Linked chats with per-camera subscriptions and mutes",
          "telegram", auth="user", response=TelegramChatList),
    Route("DELETE", f"{V1}/telegram/chats/{{chat_id}}", delete_telegram_chat, "Unlink a chat", "telegram",
          auth="user", status=204, errors=(404,)),
    Route("PUT", f"{V1}/telegram/chats/{{chat_id}}/cameras", put_telegram_chat_cameras,
          "Which cameras alert this chat", "telegram", auth="user", body=TelegramCamerasPut, response=TelegramChat,
          errors=(404,)),
    Route("GET", f"{V1}/telegram/settings", get_telegram_settings, "The account's alert mode", "telegram",
          auth="user", response=TelegramSettings),
    Route("PUT", f"{V1}/telegram/settings", put_telegram_settings, "Set the alert mode", "telegram", auth="user",
          body=TelegramSettings, response=TelegramSettings),
    Route("POST", f"{V1}/telegram/webhook", telegram_webhook,
          "Telegram's webhook (X-Telegram-Bot-Api-Secret-Token required)", "telegram", response=WebhookAck,
          errors=(401, 413)),
]
