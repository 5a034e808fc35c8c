"""Secrets that must never reach a log line, whoever logged them."""

from __future__ import annotations

import logging
import re

# A Telegram bot token travels in the Bot API's URL path (/bot<id>:<secret>/method); HTTP clients log URLs.
_BOT_TOKEN = re.compile(r"/bot\d+:[A-Za-z0-9_-]+")


class RedactBotToken(logging.Filter):
    """Cuts a bot token out of any record before it is written (at any level)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/bot" in message:
            redacted = _BOT_TOKEN.sub("/bot<token>", message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True
