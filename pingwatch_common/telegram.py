"""What both programs' Telegram bots need from python-telegram-bot and the library leaves out: a 413 that is a
refusal (not a network error retried for ever), RetryAfter in seconds whatever the library's version, and the
two-tries rule for answers to people."""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Protocol

from telegram.error import NetworkError, RetryAfter, TelegramError
from telegram.request import BaseRequest, HTTPXRequest, RequestData

log = logging.getLogger(__name__)


class EntityTooLarge(TelegramError):
    """413 from the Bot API: the upload is over its limit. python-telegram-bot maps 413 to a generic NetworkError
    (which would be retried for ever); this makes it a refusal the sender falls back from (text instead)."""


class BotRequest(HTTPXRequest):
    """python-telegram-bot's HTTPX transport, raising EntityTooLarge on 413."""

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


def retry_after_s(exc: RetryAfter) -> float:
    # python-telegram-bot 22 moves retry_after from int to timedelta and warns on access; either is fine here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class AnswerStats(Protocol):
    sent: Counter[str]
    retry_after_s: list[float]
    network_retries: int


async def answer(send: Callable[[], Awaitable[Any]], method: str, stats: AnswerStats, retry_pause_s: float) -> bool:
    """An answer to a person (a command's reply, a button's acknowledgement): tried twice at most, after a
    RetryAfter (waiting what Telegram asks) or a network error, then dropped with a log line; a refusal is not
    retried. The person can ask again; alerts, unlike answers, are kept by their senders. True when sent."""
    for attempt in range(2):
        try:
            await send()
            stats.sent[method] += 1
            return True
        except RetryAfter as exc:
            seconds = retry_after_s(exc)
            stats.retry_after_s.append(seconds)
            await asyncio.sleep(seconds)  # Telegram asked for this pause
        except NetworkError as exc:
            stats.network_retries += 1
            if attempt == 0:
                await asyncio.sleep(retry_pause_s)  # one retry after a short pause
            else:
                log.warning("could not answer on Telegram", extra={"method": method, "error": str(exc)})
        except TelegramError as exc:
            log.warning("Telegram refused an answer", extra={"method": method, "error": str(exc)})
            return False
    return False
