"""The python-telegram-bot `Bot` the notifier talks through, and the few error details the library leaves out."""

from __future__ import annotations

from telegram import Bot

from cloud.config import TelegramConfig

# Re-exported: the notifier's modules import them from here.
from pingwatch_common.telegram import BotRequest
from pingwatch_common.telegram import EntityTooLarge as EntityTooLarge
from pingwatch_common.telegram import retry_after_s as retry_after_s


def make_bot(cfg: TelegramConfig, poll_timeout_s: float = 25) -> Bot:
    """Two connection pools: a long poll must never hold up an alert."""
    assert cfg.bot_token
    send = BotRequest(connection_pool_size=8, connect_timeout=10, read_timeout=30, write_timeout=30,
                    media_write_timeout=300)
    poll = BotRequest(connection_pool_size=1, connect_timeout=10, read_timeout=poll_timeout_s + 10)
    return Bot(cfg.bot_token, base_url=cfg.api_base_url, base_file_url=cfg.api_file_url, request=send,
               get_updates_request=poll)
