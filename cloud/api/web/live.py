"""The live channel (WebSocket per account) and the cloud page's static files."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from cloud.api.app import Services


def install(app: web.Application, services: Services) -> None:
    """Add the WebSocket route, the page's files and the change feed's start/stop to the app."""
