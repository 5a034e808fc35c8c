"""A Telegram bot token never reaches a log line: httpx logs the Bot API's URLs, which carry the token."""

from __future__ import annotations

import io
import logging

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


def test_the_clouds_log_never_shows_a_bot_token() -> None:
    """Through the cloud programs' own logging set-up (pingwatch-cloud run/notify/worker), at debug level where
    httpx logs every request (logged at warning here: another test may have quietened httpx)."""
    from cloud.cli import _logging
    from cloud.config import load_config

    out = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        root.handlers[:] = [logging.StreamHandler(out)]
        _logging(load_config(None, environ={"PINGWATCH_CLOUD_LOG__LEVEL": "debug"}))
        logging.getLogger("httpx").warning("HTTP Request: POST %s", f"http://127.0.0.1:9/bot{TOKEN}/sendMessage")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert TOKEN not in out.getvalue()
    assert "HTTP Request: POST http://127.0.0.1:9/bot<token>/sendMessage" in out.getvalue()
