"""`pingwatch telegram link | unlink | status`: the chats the hub's own bot alerts (docs/telegram.md).

Linking writes a one-time token's hash into the data folder's database and shows the deep link
``https://t.me/<bot>?start=<token>`` and its QR code; the running hub's bot reads ``/start <token>`` from the
chat and links it. Neither linking nor unlinking needs a restart.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated

import typer

from hub.cli.common import ConfigOpt, JsonOpt, err, fail, get_config, open_store, out
from hub.config import HubConfig

telegram_app = typer.Typer(help="Alerts from the hub to Telegram chats: link, unlink, status.", no_args_is_help=True)

LINK_WAIT_S = 600.0
_POLL_S = 1.0


def _bot_username(cfg: HubConfig) -> str:
    """The bot's @name for the deep link: from the config, else asked of Telegram with the token."""
    tg = cfg.telegram
    if tg.bot_username:
        return tg.bot_username.lstrip("@")
    if not tg.bot_token:
        fail("no bot token: create a bot with @BotFather, then set telegram.bot_token in the config (or "
             "PINGWATCH_TELEGRAM__BOT_TOKEN) and telegram.enabled: true", 2)
    from telegram import Bot
    from telegram.error import TelegramError

    async def ask() -> str | None:
        async with Bot(tg.bot_token, base_url=tg.base_url, base_file_url=tg.base_file_url) as bot:  # type: ignore[arg-type]
            return bot.username

    try:
        name = asyncio.run(ask())
    except TelegramError as exc:
        fail(f"Telegram did not answer for this bot token ({exc}); check telegram.bot_token, or set "
             "telegram.bot_username to link without asking")
    if not name:
        fail("Telegram gave no @name for this bot; set telegram.bot_username in the config")
    return name


@telegram_app.command("link")
def telegram_link(wait: Annotated[bool, typer.Option(
        "--wait/--no-wait", help="Wait until the chat is linked (at most 10 minutes).")] = True,
                  config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Show a one-time link (and QR code) that links the Telegram chat it is opened in to this hub's alerts."""
    from hub.notify.chats import ChatBook

    cfg = get_config(config)
    if not cfg.telegram.enabled:
        err.print("note: telegram.enabled is false in the config: the chat links, but no alerts go out until it is on")
    username = _bot_username(cfg)
    with open_store(cfg, writable=True) as store:
        book = ChatBook(store)
        token = book.new_link_token()
    link = f"https://t.me/{username}?start={token.token}"
    expires = time.strftime("%H:%M", time.localtime(token.expires_at))
    if as_json:
        print(json.dumps({"status": "pending", "link": link, "bot": username, "expires_at": token.expires_at}),
              flush=True)
    else:
        from hub.cli.hub_run import qr_text

        out.print(f"Open this link in the Telegram chat that should get alerts (valid once, until {expires}):\n"
                  f"[bold]{link}[/]\nor scan it with the phone's camera:")
        print(qr_text(link))
        out.print("In a group: add the bot to the group, then send it the link's command: "
                  f"/start@{username} {token.token}")
    if not wait:
        return
    deadline = time.monotonic() + LINK_WAIT_S
    chat_id = None
    with out.status("waiting for Telegram (the hub must be running)…", spinner="dots") if not as_json else _Null():
        while time.monotonic() < deadline:
            with open_store(cfg) as store:
                chat_id = ChatBook(store).token_used(token.token)
            if chat_id is not None:
                break
            time.sleep(_POLL_S)  # polling the database: the running hub links the chat
    if chat_id is None:
        fail("the link expired before it was used; run 'pingwatch telegram link' again")
    if as_json:
        print(json.dumps({"status": "linked", "chat_id": chat_id}))
    else:
        out.print(f"linked chat {chat_id}: it gets this hub's alerts from now on")


@telegram_app.command("unlink")
def telegram_unlink(chat_id: Annotated[int, typer.Argument(help="The chat's id ('pingwatch telegram status').")],
                    config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Stop alerting a chat (it can no longer command the hub either)."""
    from hub.notify.chats import ChatBook

    cfg = get_config(config)
    with open_store(cfg, writable=True) as store:
        removed = ChatBook(store).unlink(chat_id)
    if chat_id in cfg.telegram.allowed_chat_ids:
        err.print(f"chat {chat_id} is also in telegram.allowed_chat_ids: remove it there too")
    if as_json:
        print(json.dumps({"unlinked": removed, "chat_id": chat_id}))
    elif removed:
        out.print(f"unlinked chat {chat_id}")
    else:
        fail(f"chat {chat_id} was not linked")


@telegram_app.command("status")
def telegram_status(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Linked chats and the alerts waiting to be sent."""
    from hub.notify.chats import ChatBook
    from hub.notify.outbox import TABLE

    cfg = get_config(config)
    chats: list[dict[str, object]] = [{"chat_id": c, "title": None, "linked_at": None, "by": "config"}
                                      for c in cfg.telegram.allowed_chat_ids]
    counts: dict[str, int] = {}
    with open_store(cfg, missing_ok=True) as store:
        if store is not None:
            chats = ChatBook(store, cfg.telegram.allowed_chat_ids).chats() if "telegram_chats" in \
                store.db.table_names() else chats
            if TABLE in store.db.table_names():
                counts = dict(store.db.execute(f"SELECT state, COUNT(*) FROM {TABLE} GROUP BY state").fetchall())
    info = {"enabled": cfg.telegram.enabled, "token_set": bool(cfg.telegram.bot_token), "chats": chats,
            "outbox": counts}
    if as_json:
        print(json.dumps(info))
        return
    state = "on" if cfg.telegram.active else ("on, but no bot token" if cfg.telegram.enabled else "off")
    out.print(f"Telegram alerts: {state}")
    for c in chats:
        out.print(f"  chat {c['chat_id']} {c['title'] or ''} ({'config' if c['by'] == 'config' else 'linked'})")
    if not chats:
        out.print("  no chat linked: run 'pingwatch telegram link'")
    out.print(f"alerts waiting: {counts.get('pending', 0)}; sent: {counts.get('sent', 0)}; "
              f"failed: {counts.get('failed', 0)}")


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
