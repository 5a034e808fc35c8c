"""Telegram routes (linking a chat, the webhook)."""

from __future__ import annotations

from cloud.api.web.registry import Route

ROUTES: list[Route] = []
