"""Alerts from the hub itself, no cloud needed: the hub's own Telegram bot (``telegram.Notifier``), its
outbox (``outbox``), linked chats and link tokens (``chats``), wording (``messages``) and config section
(``config.TelegramConfig``). See docs/telegram.md."""

from hub.notify.config import TelegramConfig
from hub.notify.telegram import ControlLike, Notifier, NotifierStats

__all__ = ["ControlLike", "Notifier", "NotifierStats", "TelegramConfig"]
