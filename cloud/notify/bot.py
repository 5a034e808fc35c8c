"""The python-telegram-bot `Bot` the notifier talks through, and the few error details the library leaves out."""

from __future__ import annotations

import warnings
from datetime import timedelta
from typing import Any

from telegram import Bot
from telegram.error import RetryAfter, TelegramError
from telegram.request import BaseRequest, HTTPXRequest, RequestData

from cloud.config import TelegramConfig


class EntityTooLarge(TelegramError):
    """413 from the Bot API: the upload is over its limit. python-telegram-bot maps 413 to a generic NetworkError
    (which would be retried for ever); this makes it a refusal the sender falls back from (text instead)."""


class _Request(HTTPXRequest):
    async def do_request(
        self, url: str, method: str, request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE, write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE, pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        code, payload = await super().do_request(
            url, method, request_data, read_timeout=read_timeout, write_timeout=write_timeout,
            connect_timeout=connect_timeout, pool_timeout=pool_timeout)
        if code == 413:
            raise EntityTooLarge("Request Entity Too Large (413)")
        return code, payload


def make_bot(cfg: TelegramConfig, poll_timeout_s: float = 25) -> Bot:
    """Two connection pools: a long poll must never hold up an alert."""
    assert cfg.bot_token
    send = _Request(connection_pool_size=8, connect_timeout=10, read_timeout=30, write_timeout=30,
                    media_write_timeout=300)
    poll = _Request(connection_pool_size=1, connect_timeout=10, read_timeout=poll_timeout_s + 10)
    return Bot(cfg.bot_token, base_url=cfg.api_base_url, base_file_url=cfg.api_file_url, request=send,
               get_updates_request=poll)


def retry_after_s(exc: RetryAfter) -> float:
    # python-telegram-bot 22 moves retry_after from int to timedelta and warns on access; either is fine here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
