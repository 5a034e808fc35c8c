"""A Telegram bot token never reaches a log line: httpx logs the Bot API's URLs, which carry the token."""

from __future__ import annotations

import io
import logging

from cloud.cli import RedactBotToken as CloudRedact
from hub.logs import setup_logging

TOKEN = "123456789:AAtest-token_for-the-fake-bot-api00"


def test_the_hubs_log_never_shows_a_bot_token() -> None:
    out = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_logging("debug", "json", stream=out)
        logging.getLogger("httpx").warning('HTTP Request: POST https://api.telegram.org/bot%s/getUpdates "200"', TOKEN)
        logging.getLogger("hub.test").info("sent to https://api.telegram.org/bot%s/sendPhoto", TOKEN)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    text = out.getvalue()
    assert TOKEN not in text and "AAtest" not in text
    assert text.count("/bot<token>/") == 2


def test_the_clouds_log_filter_cuts_the_token() -> None:
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, "HTTP Request: POST %s", (
        f"http://127.0.0.1:9/bot{TOKEN}/sendMessage",), None)
    assert CloudRedact().filter(record)
    assert record.getMessage() == "HTTP Request: POST http://127.0.0.1:9/bot<token>/sendMessage"
